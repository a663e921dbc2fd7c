"""Sliding Spectrum Decomposition (Huang, Wang, Zhang & Xu, KDD 2021).

SSD treats the recommended sequence as a time series and measures the diversity of every
window of ``w`` consecutive items by the volume spanned by their (normalized) embeddings.
Its greedy inference picks, at position ``t``,

    i_t = argmax_{i ∉ S}  r_i + γ · ‖v_i^⊥‖,

where ``v_i^⊥`` is the residual of ``v_i`` after Gram–Schmidt orthogonalization against the
vectors of the ``w − 1`` previously selected items (the rest of ``i``'s window; same
window convention as the sliding-window DPP of :mod:`divrec.rerank.dpp`, so ``window=w``
means that every ``w`` consecutive items are diversified jointly). ``window=None``
orthogonalizes against all selected items. The first item maximizes ``r_i + γ‖v_i‖``.

Documented simplification: Huang et al. multiply ``‖v_i^⊥‖`` by the volume already
spanned by the window (a factor common to all candidates of a step); we drop it, as do
the usual open-source implementations without windows, so that ``γ`` weighs one residual
norm at every step. Vectors are L2-normalized first (``normalize=True``, default) so that
``‖v_i^⊥‖ ∈ [0, 1]`` is the sine of the angle between ``v_i`` and the window's span.

Ties (e.g. equal relevance and residual norms that differ only by rounding) go to the
lower position: the tolerance-aware argmax of :mod:`divrec.rerank._base` with
``scale = γ · max_i ‖v_i‖``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from divrec.stage import StageConfig, param

from ._base import (
    RelevanceScaling,
    Reranker,
    _normalize_rows,
    as_positions,
    check_k,
    check_relevance,
    knob_ratio,
    not_finite,
    require_vectors,
    scale_relevance,
    tie_argmax,
    vectors_array,
)

__all__ = ["SSD", "SSDConfig", "gram_schmidt"]


def gram_schmidt(vectors: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis ``(r, d)`` of the span of ``vectors`` ``(m, d)`` (modified G–S).

    Vectors whose residual norm is at most ``tol`` times their norm are dropped (they are
    numerically in the span of the previous ones).
    """
    basis: list[np.ndarray] = []
    for v in np.asarray(vectors, dtype=np.float64):
        w = v.copy()
        for q in basis:
            w -= (q @ w) * q
        nv, nw = float(np.linalg.norm(v)), float(np.linalg.norm(w))
        if nv > 0.0 and nw > tol * nv:
            basis.append(w / nw)
    d = np.asarray(vectors).shape[-1]
    return np.asarray(basis, dtype=np.float64).reshape(len(basis), d)


@dataclass(frozen=True, kw_only=True)
class SSDConfig(StageConfig):
    """`SSD` hyperparameters.

    Attributes:
        gamma: diversity weight ``γ ≥ 0`` (``γ = 0`` is the relevance order).
        window: window size ``w ≥ 1`` (None: all selected items).
        relevance_scaling: ``"minmax"`` (default) or ``"raw"``.
        normalize: L2-normalize the item vectors first (default True).
    """

    gamma: float = param(1.0, ge=0.0)
    window: int | None = param(None, ge=1)
    relevance_scaling: RelevanceScaling = "minmax"
    normalize: bool = True


class SSD(Reranker):
    """Sliding Spectrum Decomposition re-ranking (Huang et al., KDD 2021).

    See the module docstring for the objective and the window convention.
    Hyperparameters: :class:`SSDConfig`.

    SSD has no compiled batch kernel: ``select_batch`` is the loop of :meth:`select`, and
    the diversity knob reaches it as a per-request ``gamma`` (sliced by the loop).
    """

    Config = SSDConfig
    _stage_inputs = ("vectors",)
    _per_request_kwargs = ("gamma",)

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as SSD's γ: ``γ = d / (1 − d)`` (γ = 0: relevance order; d = ½: γ = 1)."""
        return {"gamma": knob_ratio(diversity)}

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        gamma: float | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ``(N, d)`` item vectors (required: SSD works on the vectors).
            similarity: must be None.
            categories: ignored.
            gamma: this request's ``γ ≥ 0`` (the diversity knob), or None: the config's.

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        require_vectors(vectors, similarity, "SSD", "(N, d); got none")
        v = vectors_array(vectors, r.shape)
        if not np.all(np.isfinite(v)):
            raise not_finite("vectors contain")
        n = r.size
        kk = min(k, n)
        if kk == 0:
            return np.zeros(0, dtype=np.int64)
        cfg = self.config
        if gamma is None:
            gamma = float(cfg.gamma)
        else:
            gamma = float(gamma)
            if not (math.isfinite(gamma) and gamma >= 0.0):
                raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
        if cfg.normalize:
            v = _normalize_rows(v)
        rs = scale_relevance(r, cfg.relevance_scaling)
        w = cfg.window
        resid = v.copy()  # residuals w.r.t. the current window's span
        avail = np.ones(n, dtype=bool)
        out: list[int] = []
        vmax = float(np.max(np.linalg.norm(v, axis=1)))
        while len(out) < kk:
            norms = np.linalg.norm(resid, axis=1)
            j = tie_argmax(rs + gamma * norms, avail, gamma * vmax)
            out.append(j)
            avail[j] = False
            if len(out) == kk:
                break
            if w is None or len(out) < w:
                # the window only grew: orthogonalize against the new direction
                q = resid[j]
                nq = float(np.linalg.norm(q))
                if nq > 1e-10 * max(float(np.linalg.norm(v[j])), 1e-300):
                    q = q / nq
                    resid -= np.outer(resid @ q, q)
            else:
                # the oldest item left the window: rebuild from the last w - 1 items
                basis = gram_schmidt(v[out[len(out) - (w - 1) :]]) if w > 1 else None
                resid = v.copy()
                if basis is not None and basis.size:
                    resid -= (v @ basis.T) @ basis
        return as_positions(out)
