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

Inference is a compiled kernel (:func:`divrec.rerank._kernels.ssd_greedy_batch`): the
squared residual norms ``‖v_i‖² − Σ_s ⟨b_s, v_i⟩²`` are kept up to date with one sweep
over the feature-major vectors per step (``b_s``: an orthonormal basis of the window's
picks), recomputed by explicit projection where they cancel (near the span), so the picks
are those of the numpy reference :func:`ssd_reference` (residual vectors; tested).

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
    Precision,
    RelevanceScaling,
    Reranker,
    _kernel_dtype,
    _normalize_rows,
    all_valid,
    apply_constraints,
    as_positions,
    check_k,
    check_relevance,
    check_relevance_batch,
    constant_row,
    constraint_args,
    knob_ratio,
    not_finite,
    require_vectors,
    row_param,
    run_rows,
    scale_relevance,
    slice_args,
    tie_argmax,
    vectors_array,
    work_dtype,
)

__all__ = ["SSD", "SSDConfig", "gram_schmidt", "ssd_reference"]


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
        precision: ``"input"`` (default: float32 vectors stay float32 in the kernel) or
            ``"float64"`` (see :mod:`divrec.rerank._base`).
    """

    gamma: float = param(1.0, ge=0.0)
    window: int | None = param(None, ge=1)
    relevance_scaling: RelevanceScaling = "minmax"
    normalize: bool = True
    precision: Precision = "input"


class SSD(Reranker):
    """Sliding Spectrum Decomposition re-ranking (Huang et al., KDD 2021).

    See the module docstring for the objective and the window convention.
    Hyperparameters: :class:`SSDConfig`.

    ``select`` and ``select_batch`` run the compiled kernel
    (:func:`divrec.rerank._kernels.ssd_greedy_batch`, float32 vectors kept float32 unless
    ``precision="float64"``); the diversity knob reaches it as a per-request ``gamma``.
    :func:`ssd_reference` is the numpy greedy it is tested against.
    """

    Config = SSDConfig
    _takes_constraints = True
    _stage_inputs = ("vectors",)

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as SSD's γ: ``γ = d / (1 − d)`` (γ = 0: relevance order; d = ½: γ = 1)."""
        return {"gamma": knob_ratio(diversity)}

    def _explain_terms(self, query, b, kw, idx, r):
        """SSD's terms: ``r_i`` and ``γ ‖v_i^⊥‖`` (the window's residual)."""
        from ._explain import residual_sq, row_param_of, unit_rows

        gamma = row_param_of(self, query, b, "gamma", kw, lambda d: knob_ratio(np.array([d]))[0])
        cfg = self.config
        rs = scale_relevance(r, cfg.relevance_scaling)
        v = np.asarray(kw["vectors"][b], dtype=np.float64)[idx]
        v = unit_rows(v) if cfg.normalize else v
        u = unit_rows(v)
        win = cfg.window

        def terms(sel):
            sel = np.asarray(sel, dtype=np.int64)
            if win is None or len(sel) < win:
                sel_w = sel
            else:
                sel_w = sel[len(sel) - (win - 1) :] if win > 1 else sel[:0]
            d2 = residual_sq(v, v[sel_w])
            return rs, gamma * np.sqrt(np.maximum(d2, 0.0)), u @ u[sel].T

        return terms

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
        v = vectors_array(vectors, r.shape, _kernel_dtype(vectors), np.ascontiguousarray)
        if gamma is not None:
            gamma = float(gamma)
            if not (math.isfinite(gamma) and gamma >= 0.0):
                raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")
        out = self._run(v[None], all_valid(r.size), r[None], k, gamma, None)
        return as_positions(out[0, : min(k, r.size)])

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        gamma: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Batch selection: one compiled loop over the requests (bitwise equal to
        :meth:`select` on each request's valid candidates).

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ``(B, N, d)`` item vectors (required), float32 or float64 (never
                converted as a whole).
            similarity: must be None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            gamma: ``(B,)`` per-request ``γ ≥ 0`` (the diversity knob), or None: the
                config's.
            **kwargs: ``constraints``: the batch's resolved rules, or None.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        cons = kwargs.get("constraints")
        relevance, valid = apply_constraints(cons, relevance, valid)
        r, m = check_relevance_batch(relevance, valid, copy=False)
        require_vectors(vectors, similarity, "SSD", "(B, N, d); got none")
        v = vectors_array(vectors, r.shape, _kernel_dtype(vectors), np.ascontiguousarray)
        g = None if gamma is None else row_param(gamma, r.shape[0], "gamma")
        return self._run(v, m, r, k, g, cons)

    def _run(self, v, m, r, k, gamma, cons) -> np.ndarray:
        """The compiled kernel (:func:`divrec.rerank._kernels.ssd_greedy_batch`)."""
        from . import _kernels

        bsz, n = m.shape
        out = np.full((bsz, k), -1, dtype=np.int64)
        if bsz == 0 or n == 0 or k == 0:
            return out
        cfg = self.config
        g = constant_row(bsz, float(cfg.gamma)) if gamma is None else np.asarray(gamma, float)
        g = np.ascontiguousarray(np.broadcast_to(g, (bsz,)), dtype=np.float64)
        bad = np.zeros(bsz, dtype=np.int64)
        m = np.ascontiguousarray(m, dtype=np.bool_)
        rr = np.ascontiguousarray(r, dtype=np.float64)
        wdt = work_dtype(v, cfg.precision)
        d = v.shape[2]
        sizes = _kernels.ssd_scratch_sizes(n, d, k)
        cargs = constraint_args(cons, bsz)

        def rows(a: int, b: int) -> int:
            _kernels.ssd_greedy_batch(
                v[a:b], m[a:b], rr[a:b], cfg.relevance_scaling == "minmax", g[a:b], int(k),
                int(cfg.window or 0), bool(cfg.normalize), out[a:b], bad[a:b],
                *_kernels.scratch(*sizes)[::2], _kernels.work_matrix_buffer(d, n, wdt),
                *slice_args(cargs, a, b),
            )  # fmt: skip
            return 0

        run_rows(bsz, rows)
        if bad.any():
            what = "relevance contains" if (bad == 2).any() else "vectors contain"
            raise not_finite(what, batch=bsz > 1)
        return out


def ssd_reference(
    relevance: np.ndarray, vectors: np.ndarray, k: int, config: SSDConfig, gamma=None
) -> np.ndarray:
    """The numpy SSD greedy of one request (the former ``SSD.select``; the reference the
    compiled kernel is tested against). Returns ``(min(k, N),)`` int64 positions."""
    r = check_relevance(relevance)
    v = vectors_array(vectors, r.shape)
    if not np.all(np.isfinite(v)):
        raise not_finite("vectors contain")
    n = r.size
    kk = min(k, n)
    if kk == 0:
        return np.zeros(0, dtype=np.int64)
    cfg = config
    gamma = float(cfg.gamma) if gamma is None else float(gamma)
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
