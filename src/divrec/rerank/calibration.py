"""Calibrated re-ranking (Steck, "Calibrated Recommendations", RecSys 2018, Eq. 6).

The list ``I`` of ``k`` items maximizes

    (1 − λ) · Σ_{i ∈ I} s(u, i)  −  λ · C_KL(p, q̃(I))                       (Steck Eq. 6)

where ``s(u, i)`` is the relevance, ``p = p(g|u)`` the category distribution of the user's
history (Eq. 1), ``q(I)`` the category distribution of the list (Eq. 2, uniform rank
weights) and ``q̃ = (1 − α) q + α p`` its smoothed form (Eq. 5; the paper: ``α = 0.01``).
As in the paper the maximization is greedy (the objective is submodular in the paper's
argument, so greedy gives a ``(1 − 1/e)`` guarantee): starting from the empty list, each
step appends the candidate ``i`` maximizing

    (1 − λ) · s(u, i) − λ · C_KL(p, q̃(S ∪ {i})),

the terms common to every candidate (the relevance already picked) dropped. ``λ = 0`` is
the relevance order. Each item's categories share ``1 / |genres(i)|`` (Steck Sec. 2):
the fitted re-ranker reads the multi-hot ``Interactions.item_categories``, so an ML-1M
movie tagged "Action|Comedy" counts one half to each.

Relevance scaling: ``"minmax"`` (default) maps each request's relevance to ``[0, 1]`` so
that ``λ`` means the same for every request; ``"raw"`` uses the scores as given (the
paper uses predicted scores as they are).

Ties: the tolerance-aware argmax of :mod:`divrec.rerank._base` with scale
``(1 − λ) · max |s| + λ · log(1 / α)`` (a bound on the two terms). Rows with ``λ = 0`` or
without any history category (``p = 0``: nothing to calibrate to) get the relevance order
(stable sort of the given scores).

The diversity knob (``Query.diversity``, the service's ``diversity=auto`` included, which
sets the knob to ``1 − θ_u`` of the real-time propensity tracker) is ``λ`` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.metrics.calibration import category_shares, user_distribution
from divrec.stage import StageConfig, param

from ._base import (
    RelevanceScaling,
    Reranker,
    as_positions,
    batch_chunks,
    check_k,
    check_relevance_batch,
    fitted_user_rows,
    relevance_array,
    request_param,
    scale_relevance_batch,
    tie_argmax,
    tie_argmax_rows,
)
from ._rules import RowRules, apply_rules

__all__ = ["CalibratedReranker", "CalibratedRerankerConfig", "calibrated_greedy"]


@dataclass(frozen=True, kw_only=True)
class CalibratedRerankerConfig(StageConfig):
    """`CalibratedReranker` hyperparameters.

    Attributes:
        lambda_: calibration weight ``λ ∈ [0, 1]`` (0: the relevance order; Steck's λ).
        alpha: smoothing ``α ∈ (0, 1]`` of ``q̃ = (1 − α) q + α p`` (the paper: 0.01).
        relevance_scaling: ``"minmax"`` (default) or ``"raw"``.
    """

    lambda_: float = param(0.5, ge=0.0, le=1.0)
    alpha: float = param(0.01, gt=0.0, le=1.0)
    relevance_scaling: RelevanceScaling = "minmax"


def calibrated_greedy(
    relevance: np.ndarray,
    shares: np.ndarray,
    target: np.ndarray,
    k: int,
    lambda_: np.ndarray,
    alpha: float,
    valid: np.ndarray,
) -> np.ndarray:
    """The greedy of Steck Eq. 6 for a batch of requests (numpy, vectorized over requests).

    Args:
        relevance: ``(B, N)`` relevance (already scaled; 0 at padding).
        shares: ``(B, N, C)`` ``p(g|i)`` of each candidate.
        target: ``(B, C)`` ``p(g|u)``.
        k: list length.
        lambda_: ``(B,)`` calibration weights in ``[0, 1]``.
        alpha: smoothing ``α``.
        valid: ``(B, N)`` mask of real candidates.

    Returns:
        ``(B, k)`` int64 positions in selection order, ``-1`` padded.
    """
    bsz, n = relevance.shape
    out = np.full((bsz, k), -1, dtype=np.int64)
    if bsz == 0 or k == 0 or n == 0:
        return out
    kb = np.minimum(k, valid.sum(axis=1))
    avail = valid.copy()
    counts = np.zeros(target.shape, dtype=np.float64)  # Σ_{j ∈ S} p(g|j)
    pos = target > 0.0
    plogp = np.sum(np.where(pos, target * np.log(np.where(pos, target, 1.0)), 0.0), axis=1)
    lam = np.asarray(lambda_, dtype=np.float64)
    big = np.where(valid, np.abs(relevance), 0.0).max(axis=1)
    scale = (1.0 - lam) * big + lam * math.log(1.0 / alpha)
    rel_part = (1.0 - lam)[:, None] * relevance
    rows = np.arange(bsz)
    a_p = (alpha * target)[:, None, :]
    for t in range(int(kb.max(initial=0))):
        q = (counts[:, None, :] + shares) / float(t + 1)
        qt = (1.0 - alpha) * q + a_p
        cross = np.einsum("bnc,bc->bn", np.log(np.where(pos[:, None, :], qt, 1.0)), target)
        kl = plogp[:, None] - cross
        score = rel_part - lam[:, None] * kl
        pick = tie_argmax_rows(score, avail, scale)
        act = t < kb
        out[act, t] = pick[act]
        avail[rows[act], pick[act]] = False
        counts[act] += shares[rows[act], pick[act]]
    return out


def _calibrated_row(
    rs: np.ndarray,
    shares: np.ndarray,
    target: np.ndarray,
    lam: float,
    alpha: float,
    valid: np.ndarray,
    rules: RowRules,
) -> list[int]:
    """The greedy of Steck Eq. 6 for one request under its business rules: pins enter the
    selected set first (their categories count in ``q``), then each step picks the best
    candidate the rules allow (``λ = 0`` or ``p = 0``: the most relevant, exact ties to
    the lower position)."""
    avail = valid.copy()
    counts = np.zeros(target.shape[0])
    for _, j in rules.pins:
        if avail[j]:
            avail[j] = False
            counts += shares[j]
            rules.count(j, greedy=False)
    pos = target > 0.0
    plain = lam == 0.0 or not pos.any()
    plogp = float(np.sum(target[pos] * np.log(target[pos])))
    big = float(np.abs(rs[valid]).max(initial=0.0))
    scale = (1.0 - lam) * big + lam * math.log(1.0 / alpha)
    greedy: list[int] = []
    while len(rules.pins) + len(greedy) < rules.kb:
        ok = rules.eligible(avail)
        if not ok.any():
            break
        if plain:
            cand = np.flatnonzero(ok)
            j = int(cand[np.argmax(rs[cand])])
        else:
            n_sel = len(rules.pins) + len(greedy)
            q = (counts[None, :] + shares) / float(n_sel + 1)
            qt = (1.0 - alpha) * q + alpha * target[None, :]
            kl = plogp - np.log(np.where(pos[None, :], qt, 1.0)) @ target
            j = tie_argmax((1.0 - lam) * rs - lam * kl, ok, scale)
        greedy.append(j)
        avail[j] = False
        counts += shares[j]
        rules.count(j, greedy=True)
    return rules.place(greedy)


def _relevance_order_rows(r: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` relevance order of each row (stable, invalid last, ``-1`` padded)."""
    key = np.where(valid, -r, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    got = np.take_along_axis(valid, order, axis=1)
    out = np.full((r.shape[0], k), -1, dtype=np.int64)
    out[:, : order.shape[1]] = np.where(got, order, -1)
    return out


class CalibratedReranker(Reranker):
    """Calibrated recommendations (Steck 2018): relevance traded against the KL divergence
    between the history's and the list's category distributions (Eq. 6, greedy).

    As a pipeline stage, `fit` reads the multi-hot ``item_categories`` of the training data
    (each item's categories share ``1 / |genres|``) and each user's training row as the
    history (a ``Query.history`` replaces it, as for the retrievers). The per-request
    target distribution can be given directly with ``Query.extras["target"]`` ``(B, C)``.
    Hyperparameters: :class:`CalibratedRerankerConfig`.
    """

    Config = CalibratedRerankerConfig
    _stage_inputs: tuple[str, ...] = ()
    _query_extras = ("target", "lambda_")
    _per_request_kwargs = ("target", "lambda_")
    _per_item_kwargs = ("shares",)
    #: honours ``Query.constraints`` (python-level rules, :mod:`divrec.rerank._rules`)
    _takes_constraints = True

    # ------------------------------------------------------------------ stage
    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as λ: ``λ = diversity`` (0: the relevance order)."""
        return {"lambda_": np.asarray(diversity, dtype=np.float64)}

    def _fit_stage(self, train) -> None:
        """``item_shares_`` ``(n_items, C)`` CSR ``p(g|i)`` and ``user_target_`` ``(n_users,
        C)`` CSR ``p(g|u)`` of the training rows.

        Raises:
            ValueError: the training data has no ``item_categories``.
        """
        if train.item_categories is None:
            raise ValueError(
                "CalibratedReranker needs item categories (Interactions.item_categories)"
            )
        shares = category_shares(train.item_categories)
        self.item_shares_ = shares
        self.user_target_ = sp.csr_matrix(user_distribution(train.to_csr(binary=True), shares))

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        shares = self.item_shares_
        out: dict[str, Any] = {"shares": _dense_rows(shares, safe_ids)}
        if "target" in query.extras:
            return out
        if query.history is not None:
            out["target"] = user_distribution(query.history_matrix(shares.shape[0]), shares)
        else:
            t = self.user_target_
            users = fitted_user_rows(query.users, t.shape[0], "CalibratedReranker")
            out["target"] = np.asarray(t[users].todense(), dtype=np.float64)
        return out

    # ------------------------------------------------------------------ selection
    def _inputs(
        self,
        relevance: Any,
        shares: Any,
        categories: Any,
        target: Any,
        valid: Any,
        copy: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r, m = check_relevance_batch(relevance, valid, copy=copy)
        bsz, n = r.shape
        if shares is None:
            if categories is None:
                raise ValueError(
                    "CalibratedReranker needs `shares` (B, N, C) p(g|i) or `categories` (B, N)"
                )
            c = np.asarray(categories)
            if c.shape != (bsz, n) or not np.issubdtype(c.dtype, np.integer):
                raise ValueError(f"categories must be integers of shape ({bsz}, {n})")
            width = int(c.max(initial=-1)) + 1
            x = np.zeros((bsz, n, max(width, 1)))
            b_idx, n_idx = np.nonzero((c >= 0) & m)
            x[b_idx, n_idx, c[b_idx, n_idx]] = 1.0
        else:
            x = np.asarray(shares, dtype=np.float64)
            if x.ndim != 3 or x.shape[:2] != (bsz, n):
                raise ValueError(f"shares must have shape ({bsz}, {n}, C), got {x.shape}")
        if target is None:
            raise ValueError("CalibratedReranker needs `target` (B, C): p(g|u) of each user")
        p = np.asarray(target, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != bsz:
            raise ValueError(f"target must have shape ({bsz}, C), got {p.shape}")
        if p.shape[1] != x.shape[2]:
            if shares is not None or p.shape[1] < x.shape[2]:
                raise ValueError(f"target has {p.shape[1]} categories, the candidates {x.shape[2]}")
            x = np.concatenate([x, np.zeros((bsz, n, p.shape[1] - x.shape[2]))], axis=2)
        xv = x[m]
        if not np.all(np.isfinite(xv)) or np.any(xv < 0):
            raise ValueError("shares must be finite and non-negative at valid positions")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("target must be finite and non-negative")
        return r, m, np.where(m[:, :, None], x, 0.0), p

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        shares: np.ndarray | None = None,
        target: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select ``min(k, N)`` positions (the batch path on a batch of one).

        Args:
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ``(N,)`` int single category per item (``-1``: none), used when
                ``shares`` is None (category ``c`` is column ``c`` of ``target``).
            shares: ``(N, C)`` ``p(g|i)`` of each candidate (rows sum to 1), or None.
            target: ``(C,)`` ``p(g|u)`` of the user's history.

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        r = relevance_array(relevance)
        one = self.select_batch(
            r[None],
            k,
            categories=None if categories is None else np.asarray(categories)[None],
            shares=None if shares is None else np.asarray(shares)[None],
            target=None if target is None else np.asarray(target)[None],
        )[0]
        return as_positions(one[one >= 0])

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        shares: np.ndarray | None = None,
        target: np.ndarray | None = None,
        lambda_: np.ndarray | None = None,
        constraints: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Batch selection; ``(B, N)`` in, ``(B, k)`` int64 out (``-1`` padded).

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ``(B, N)`` int single categories, used when ``shares`` is None.
            valid: ``(B, N)`` bool mask of real candidates.
            shares: ``(B, N, C)`` ``p(g|i)``, or None.
            target: ``(B, C)`` ``p(g|u)``.
            lambda_: ``(B,)`` per-request λ in ``[0, 1]`` (the diversity knob), or None:
                the config's.
            constraints: the batch's business rules resolved to positions
                (`divrec.data.constraints.ResolvedConstraints`), or None. Rows with count,
                pin or share rules take a per-request path; the others are unchanged.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        r, m, x, p = self._inputs(relevance, shares, categories, target, valid, copy=True)
        bsz = r.shape[0]
        lam = np.broadcast_to(
            np.asarray(request_param(lambda_, self.lambda_, bsz, "lambda_", 1.0)), (bsz,)
        )
        r, m = apply_rules(constraints, r, m)
        out = _relevance_order_rows(r, m, k)
        ruled = np.zeros(bsz, dtype=bool) if constraints is None else constraints.active
        if ruled.any():
            rs_all = scale_relevance_batch(r, m, self.relevance_scaling)
            for b in np.flatnonzero(ruled):
                rules = RowRules(constraints, int(b), k, int(min(k, m[b].sum())))
                plain = lam[b] == 0.0 or not (p[b] > 0.0).any()  # raw order: exact ties
                rel = r[b] if plain else rs_all[b]
                sel = _calibrated_row(
                    rel, x[b], p[b], float(lam[b]), float(self.alpha), m[b], rules
                )
                rules.check(sel, "CalibratedReranker")
                out[b] = -1
                out[b, : len(sel)] = sel
        rows = np.flatnonzero((lam > 0.0) & (p.sum(axis=1) > 0.0) & ~ruled)
        if rows.size == 0 or k == 0:
            return out
        rs = scale_relevance_batch(r[rows], m[rows], self.relevance_scaling)
        for sl in batch_chunks(rows.size, 256):
            sub = rows[sl]
            out[sub] = calibrated_greedy(
                rs[sl], x[sub], p[sub], k, lam[sub], float(self.alpha), m[sub]
            )
        return out


def _dense_rows(m: sp.csr_matrix, idx: np.ndarray) -> np.ndarray:
    """``m[idx]`` as a dense float64 array of shape ``idx.shape + (C,)``."""
    flat = np.asarray(m[idx.reshape(-1)].todense(), dtype=np.float64)
    return flat.reshape(*idx.shape, m.shape[1])
