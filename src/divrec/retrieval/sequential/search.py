"""Multi-interest serving: one faiss search per interest, merged by the max over interests
(Cen et al. 2020 Sec. 3.4: f(u, i) = max_k e_iᵀ v_k), or the controllable aggregation of
Cen et al. Eq. 11-12 (`controllable_aggregation`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.data.query import Candidates
from divrec.retrieval.base import top_k

__all__ = ["controllable_aggregation", "search_interests"]


def controllable_aggregation(
    ids: np.ndarray, scores: np.ndarray, categories: np.ndarray, k: int, lam: float
) -> Candidates:
    """Greedy diversity-controlled selection (Cen et al. 2020 Eq. 11-12).

    S starts empty; k times, add the candidate maximizing
    ``f(u, i) + λ Σ_{j ∈ S} δ(cate(i) ≠ cate(j))``; candidates with score −inf are never
    chosen. Category −1 (unknown) differs from every category, itself included.

    Args:
        ids: `(B, M)` candidate items (the union of the per-interest lists).
        scores: `(B, M)` f(u, i) (−inf: not a candidate).
        categories: `(n_items,)` category of every item.
        k: list length.
        lam: λ ≥ 0.

    Returns:
        `Candidates` `(B, k)` in selection order, scores = f(u, i).
    """
    b, m = ids.shape
    cat = np.where(ids >= 0, categories[np.maximum(ids, 0)], -1)
    avail = np.isfinite(scores)
    same = np.zeros((b, m))
    out_ids = np.full((b, k), -1, dtype=np.int64)
    out_sc = np.full((b, k), -np.inf, dtype=np.float32)
    rows = np.arange(b)
    for step in range(min(k, m)):
        gain = np.where(avail, scores + lam * (step - same), -np.inf)
        pick = gain.argmax(1)
        ok = avail[rows, pick]
        out_ids[ok, step] = ids[rows[ok], pick[ok]]
        out_sc[ok, step] = scores[rows[ok], pick[ok]]
        avail[rows, pick] = False
        pc = cat[rows, pick]
        same += ((cat == pc[:, None]) & (pc[:, None] >= 0) & ok[:, None]).astype(np.float64)
    return Candidates(out_ids, out_sc)


def search_interests(
    index,
    interests: np.ndarray,
    k: int,
    n_items: int,
    excluded: sp.csr_matrix,
    categories: np.ndarray,
    diversity_lambda: float = 0.0,
) -> Candidates:
    """Top-k items of each request by a faiss search per interest.

    Each search fetches `k` plus the request's excluded count, so excluded items never
    shorten a list; the per-interest lists are merged keeping each item's best score
    (f(u, i) = max_k e_iᵀ v_k), and the k best are returned — or, with λ > 0 and several
    interests, the controllable aggregation picks them (Cen et al. 2020 Eq. 11).

    Args:
        index: a faiss inner-product index over the item vectors.
        interests: `(B, K, D)` float32 interest vectors (scaled so that inner products are
            scores).
        k: list length.
        n_items: items in the index.
        excluded: `(B, n_items)` CSR, nonzero = never return this item for this request.
        categories: `(n_items,)` int64 primary category of every item (−1: none).
        diversity_lambda: λ of the controllable aggregation (0: plain max merge).

    Returns:
        `Candidates` `(B, k)`, best first, padded with −1 / −inf.
    """
    b, n_int, d = interests.shape
    extra = int(np.diff(excluded.indptr).max(initial=0))
    kk = min(k + extra, n_items)
    scores, ids = index.search(np.ascontiguousarray(interests.reshape(b * n_int, d)), kk)
    ids = ids.reshape(b, n_int * kk).astype(np.int64)
    scores = scores.reshape(b, n_int * kk).astype(np.float64)
    scores[ids < 0] = -np.inf
    # merge: keep each item's best score over interests
    order = np.lexsort((-scores, ids), axis=1)
    ids_s = np.take_along_axis(ids, order, axis=1)
    sc_s = np.take_along_axis(scores, order, axis=1)
    dup = np.zeros(ids_s.shape, dtype=bool)
    dup[:, 1:] = ids_s[:, 1:] == ids_s[:, :-1]
    sc_s[dup | (ids_s < 0)] = -np.inf
    if excluded.nnz:
        from divrec.retrieval.base import _is_seen

        sc_s[_is_seen(excluded, np.arange(b), np.maximum(ids_s, 0))] = -np.inf
    if diversity_lambda > 0 and n_int > 1:
        return controllable_aggregation(ids_s, sc_s, categories, k, diversity_lambda)
    pos, top = top_k(sc_s, min(k, sc_s.shape[1]))
    out = np.where(pos >= 0, np.take_along_axis(ids_s, np.maximum(pos, 0), axis=1), -1)
    return Candidates(out, top).head(k)
