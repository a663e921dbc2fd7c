"""Batch candidate generation for every user, streamed in blocks of users (in memory).

The offline batch path: u2i top-`n_candidates` for every user from a fitted retriever's
user and item vectors, optionally re-ranked to `k` by any divrec re-ranker, one block of
users at a time, so memory is bounded by one block plus the model, whatever the number of
users: about `block × (8·n_items + 24·N·d)` bytes with float32 vectors (the float32 scores
and their masked float32 copy, then the re-ranker's gathered candidate vectors;
`divrec.spark.candidates.block_bytes`, measured; float64 vectors need 12–20 bytes per
score). `divrec.spark.candidates` runs the very same `u2i_block` on each Spark partition,
so both paths give identical lists.

The lists equal the in-memory `Pipeline(retriever, reranker, n_candidates)` lists: scores are
the retriever's `score_all` formula on the vectors (`factor_view`), training items are
excluded, `top_k` breaks ties by the lower item index, and the re-ranker is called as the
pipeline calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from divrec.data.query import Candidates, Query
from divrec.retrieval.base import top_k

__all__ = ["FactorView", "factor_view", "stream_u2i", "u2i_block"]


@dataclass(frozen=True)
class FactorView:
    """A retriever's scores as a dot product: `score(u, i) = (U[u] · I[i]) / divisor`.

    Attributes:
        user_vectors: `(n_users, d)` user vectors (float32 or float64, as the model computes).
        item_vectors: `(n_items, d)` item vectors.
        divisor: the model's temperature (two-tower τ) or None.
    """

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    divisor: float | None = None


def factor_view(model) -> FactorView:
    """The user/item vectors that reproduce a fitted divrec retriever's `score_all`.

    Supported: the factor models (`ALSRecommender`, `BPRRecommender`, two-tower /
    TotalRecall with its τ), and the HI models p2p (U = X P, I = Qᵀ, Eq. 5), n2p
    (U = Y R, Eq. 9) and HI-RT (U = X A₁ + β Y A₂, I = Bᵀ, Eq. 17). `HIRecommender`
    mixes two lists and has no single vector space (use its p2p / n2p parts).

    Raises:
        ValueError: the model has no vector form or is not fitted.
    """
    from divrec.retrieval.baselines import FactorRecommender
    from divrec.retrieval.hi import HIRecommender, _HIBase

    name = type(model).__name__
    if not hasattr(model, "user_items_"):
        raise ValueError(f"{name} is not fitted; call fit first")
    if isinstance(model, HIRecommender):
        raise ValueError("HIRecommender mixes two lists; use P2PRecommender / N2PRecommender")
    if isinstance(model, _HIBase):
        users = np.asarray(model._event_vectors(model.X_, model.Y_, model._beta(None)))
        return FactorView(users, np.ascontiguousarray(model._right().T))
    if isinstance(model, FactorRecommender):
        # two-tower / TotalRecall scores are U Iᵀ / τ (checked by name: no torch import here)
        two_tower = any(c.__name__ == "TwoTowerRecommender" for c in type(model).__mro__)
        divisor = float(model.tau) if two_tower else None
        return FactorView(model.user_factors_, model.item_factors_, divisor)
    raise ValueError(f"{name} exposes no user/item vectors for batch generation")


def u2i_block(
    users: np.ndarray,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    n_candidates: int,
    *,
    seen: sp.csr_matrix | None = None,
    divisor: float | None = None,
    reranker=None,
    k: int | None = None,
) -> Candidates:
    """u2i top-`n_candidates` for one block of users, then optionally a re-ranker to `k`.

    Args:
        users: `(B,)` internal user indices (given to the re-ranker's `Query`).
        user_vectors: `(B, d)` the block's user vectors.
        item_vectors: `(n_items, d)` item vectors.
        n_candidates: candidates per user N.
        seen: `(B, n_items)` CSR of items never to return (the training items), or None.
        divisor: scores are `(U Iᵀ) / divisor` when given (two-tower τ).
        reranker: a fitted divrec `Reranker`, or None.
        k: re-ranked list length (default `n_candidates`); without a re-ranker the
            top-`k` of the candidates.

    Returns:
        `(B, k)` `Candidates` (ids −1 / scores −inf padded).
    """
    scores = user_vectors @ item_vectors.T
    if divisor is not None:
        scores = scores / np.float32(divisor)
    scores = np.array(scores, dtype=np.float32)
    if seen is not None and seen.nnz:
        r, c = seen.nonzero()
        scores[r, c] = -np.inf
    ids, vals = top_k(scores, max(n_candidates, k or 0))
    cand = Candidates(ids, vals)
    k = n_candidates if k is None else k
    if reranker is None:
        return cand.head(k)
    return reranker(Query(users=np.asarray(users, dtype=np.int64)), cand, k).head(k)


def stream_u2i(
    view: FactorView,
    n_candidates: int,
    *,
    seen: sp.csr_matrix | None = None,
    reranker=None,
    k: int | None = None,
    block: int = 1024,
    users: np.ndarray | None = None,
    user_vectors: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, Candidates]]:
    """Yields `(users (B,), Candidates (B, k))` for every user, one block at a time.

    Args:
        view: the retriever's `FactorView` (its `user_vectors` may be None when the
            `user_vectors` callable supplies each block).
        n_candidates: candidates per user.
        seen: `(n_users, n_items)` CSR of excluded (training) items, or None.
        reranker: a fitted re-ranker or None.
        k: final list length.
        block: users per block (memory: about `block × (8·n_items + 24·N·d)` bytes, see
            the module docstring).
        users: the users to serve (default: all rows of `view.user_vectors`).
        user_vectors: optional `users (B,) → (B, d)` callable producing a block's vectors
            (e.g. read from disk or generated) instead of `view.user_vectors`.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if users is None:
        if view.user_vectors is None:
            raise ValueError("pass users when the view has no user_vectors")
        users = np.arange(view.user_vectors.shape[0], dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    for start in range(0, users.shape[0], block):
        ub = users[start : start + block]
        vecs = user_vectors(ub) if user_vectors is not None else view.user_vectors[ub]
        out = u2i_block(
            ub,
            vecs,
            view.item_vectors,
            n_candidates,
            seen=None if seen is None else seen[ub],
            divisor=view.divisor,
            reranker=reranker,
            k=k,
        )
        yield ub, out
