"""Fast greedy MAP inference for DPPs (Chen, Zhang & Zhou, NeurIPS 2018).

Greedy MAP picks, at every step, ``j = argmax_{i ∉ Y} log det(L_{Y∪{i}}) − log det(L_Y)``
``= log d_i²``, the Schur complement of ``i`` given ``Y``. Chen et al. keep ``d_i²`` up to
date with an incremental Cholesky factorization (WeChat graph-exploration paper, Eq. 8;
NOTES.md Eq. 8): after picking ``j``, for every remaining ``i``

    e_i = (L_ji − ⟨c_j, c_i⟩) / d_j,   c_i ← [c_i, e_i],   d_i² ← d_i² − e_i²,

which costs ``O(N k²)`` overall (``O(N k)`` memory) instead of one determinant per
candidate and step.

Sliding window (Chen et al. 2018, Sec. 5 / Algorithm 2): with ``window = w`` every ``w``
consecutive items of the output are diversified jointly, i.e. the candidate for position
``t`` is scored by ``log det(L_{W∪{i}}) − log det(L_W)`` where ``W`` holds the ``w − 1``
most recently selected items (the Cholesky factor is kept over the window only; when the
window is full, its oldest item is removed with Givens rotations of the stored ``c_i``,
``O(w N)`` per step). ``window=None`` is the plain algorithm; ``window=1`` gives the
order of the kernel diagonal.

Stopping / degenerate kernels: a candidate is eligible only while
``d_i² > eps · max_i K_ii`` (``eps`` is relative to the scale of the kernel ``K`` the
recursion runs on, so multiplying ``S`` by any positive constant changes nothing); when no
eligible candidate is left (kernel exhausted: rank-deficient, ``N > d``, or not positive
semi-definite) the greedy stops. :func:`fast_greedy_map` then returns fewer than ``k``
positions; :class:`FastGreedyDPP` by default completes the list with the remaining
candidates in relevance order (``fill=True``) so callers always get ``min(k, N)`` items.
No square root or logarithm of a non-positive number is ever taken, so non-PSD inputs
give neither NaN nor duplicates.

Relevance–diversity trade-off (WeChat paper Eq. 4–6): with ranking scores ``r`` and a
similarity ``S``, the kernel ``L = Diag(exp(α r)) S Diag(exp(α r))``, ``α = θ / (2(1 − θ))``,
gives ``log det L_Y = 2α Σ_{i∈Y} r_i + log det S_Y`` (Eq. 5): maximizing it is maximizing
``θ Σ r + (1 − θ) log det S_Y`` up to the factor ``1/(1 − θ)``. :class:`FastGreedyDPP` never
forms ``exp(α r)``: the Schur complements of ``L`` are ``exp(2α r_i)`` times those of
``S``, so it runs the Cholesky recursion on ``S`` and picks ``argmax 2α r_i + log d_i²(S)``
in log space (no overflow for large ``α``; shifting ``r`` by a constant does not change
the argmax). ``θ = 1`` (``α = ∞``) is the relevance order, handled without dividing by 0.
Because the recursion runs on ``S``, the ``eps`` test applies to ``d_i²(S) / max_i S_ii``.

Numerics: at every step the score is evaluated as ``2α (r_i − r_ref) + log d_i²`` with
``r_ref`` a reference relevance (the request's largest one, or, for the sliding window,
explicit kernels and relevance spanning more than ``1e300`` after scaling, the largest
among the eligible candidates at that step), so that the winning scores stay finite for
any finite relevance (raw scores of ``±1e308`` included) and no overflow can ever produce
a duplicate. Ties (scores within ``1e-9 · (1 + |best|)``, i.e. determinant gains equal to
a relative ``1e-9``) go to the lower position. The greedy is a compiled kernel
(:mod:`divrec.rerank._kernels`): ``select`` runs it on a batch of one request,
``select_batch`` on all requests in one compiled loop, so both agree bit for bit.

Speed: with item vectors and no window the kernel is lazy (Minoux's accelerated greedy,
applied to DPPs by Hemmi et al., NeurIPS 2022): ``d_i²`` never increases, so a score
computed at an earlier step bounds the current one, and only the candidates whose bound
can still win are brought up to date; the Schur complements are kept by Gram–Schmidt on
the normalized vectors (``d_i² = 1 − Σ_s ⟨b_s, u_i⟩²``, the same numbers as Eq. 8 at
``O(d)`` per entry). When most candidates need updating anyway (``k`` near the rank of
the kernel) it switches to one sweep over all of them per step. The picks are those of
the eager update (tested against it), at a fraction of its work for short lists.
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
    all_valid,
    apply_constraints,
    as_positions,
    check_k,
    check_relevance,
    check_relevance_batch,
    constant_row,
    constraint_args,
    kernel_inputs,
    kernel_inputs_batch,
    not_finite,
    relevance_array,
    relevance_order,
    run_rows,
    scale_relevance,
    slice_args,
)

__all__ = [
    "FastGreedyDPP",
    "FastGreedyDPPConfig",
    "GreedyDPPConfig",
    "fast_greedy_map",
    "fast_greedy_map_batch",
    "tradeoff_alpha",
]


def tradeoff_alpha(theta: float | np.ndarray) -> np.ndarray:
    """``α = θ / (2(1 − θ))`` (WeChat Eq. 6); ``θ = 1`` maps to ``+inf``.

    Args:
        theta: trade-off(s) in ``[0, 1]``.

    Returns:
        ``α`` with the shape of ``theta`` (float64).
    """
    if isinstance(theta, float | int) and not isinstance(theta, bool):
        return np.asarray(_scalar_alpha(theta))
    t = np.asarray(theta, dtype=np.float64)
    if not np.all((t >= 0.0) & (t <= 1.0)):  # NaN fails both comparisons
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    out = np.full(t.shape, np.inf)
    np.divide(t, 2.0 * (1.0 - t), out=out, where=t < 1.0)
    return out


def _scalar_alpha(theta: float) -> float:
    """:func:`tradeoff_alpha` of one Python number (the same IEEE arithmetic)."""
    x = float(theta)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    return x / (2.0 * max(1.0 - x, 1e-300)) if x < 1.0 else math.inf


def _theta_rows(theta: Any, bsz: int) -> np.ndarray:
    """A per-request ``theta`` (scalar or ``(B,)``) as a ``(B,)`` float64 array."""
    return np.array(np.broadcast_to(np.asarray(theta, dtype=np.float64), (bsz,)))


def _check_window(window: int | None) -> int | None:
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be None or an int >= 1, got {window!r}")
    return int(window)


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not (np.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    return eps


# --------------------------------------------------------------------------- core
def _run(
    vectors: np.ndarray,
    matrix: np.ndarray,
    use_matrix: bool,
    valid: np.ndarray,
    rel: np.ndarray,
    weight: np.ndarray,
    active: np.ndarray,
    k: int,
    eps: float,
    window: int | None,
    lazy: bool = True,
    work: np.ndarray | None = None,
    minmax: bool = False,
    fill: bool = False,
    constraints: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Run the compiled greedy (:func:`divrec.rerank._kernels.dpp_greedy_batch`).

    Args:
        vectors: ``(B, N, d)`` float64 vectors or ``(B, N, 0)``.
        matrix: ``(B, N, N)`` float64 kernels or ``(B, 0, 0)``.
        use_matrix: read the kernel from ``matrix``.
        valid: ``(B, N)`` selectable positions.
        rel: ``(B, N)`` relevance (checked finite at valid positions by the kernel).
        weight: ``(B,)`` ``2α`` per request (finite, ``≥ 0``).
        active: ``(B,)`` requests to run.
        k: list length.
        eps: relative eligibility threshold.
        window: sliding-window size or None.
        lazy: bring candidates up to date only when they can win (same picks; the eager
            update of every candidate at every step is kept for windows and for tests).
        work: optional ``(B, 2)`` int64 output (see the kernel): inner products computed
            and sweep steps of each lazily run request.
        minmax: min-max scale each request's relevance in the kernel (else raw).
        fill: complete short lists by relevance order in the kernel (requests not
            ``active`` always get the relevance order).
        constraints: the batch's resolved rules (position space; ``valid`` and ``rel``
            already filtered and boosted), or None.

    Returns:
        ``out`` ``(B, k)`` int64 (-1 padded), ``counts`` ``(B,)`` greedy picks,
        ``kb`` ``(B,)`` the list lengths ``min(k, number of valid positions)`` and
        whether any row of ``out`` is shorter than ``kb`` (after the fill).
    """
    from . import _kernels  # numba is imported when a re-ranker first runs

    bsz = valid.shape[0]
    if bsz == 0 or k == 0 or valid.shape[1] == 0:
        z = np.zeros(bsz, dtype=np.int64)
        return np.full((bsz, k), -1, dtype=np.int64), z, z, False
    out = np.empty((bsz, k), dtype=np.int64)
    stats = np.empty((bsz, 5), dtype=np.int64)
    valid = np.ascontiguousarray(valid, dtype=np.bool_)
    rel = np.ascontiguousarray(rel, dtype=np.float64)
    weight = np.ascontiguousarray(weight, dtype=np.float64)
    active = np.ascontiguousarray(active, dtype=np.bool_)
    sizes = _kernels.dpp_scratch_sizes(valid.shape[1], vectors.shape[2], k, _work_rows(k, window))
    wsize = 0 if window is None else int(window)
    cargs = constraint_args(constraints, bsz)

    def rows(a: int, b: int) -> int:  # requests a..b-1, with this thread's work buffers
        return _kernels.dpp_greedy_batch(
            vectors[a:b], matrix[a:b], bool(use_matrix), valid[a:b], rel[a:b], bool(minmax),
            weight[a:b], active[a:b], int(k), float(eps), wsize, out[a:b], stats[a:b],
            bool(lazy), bool(fill), *_kernels.scratch(*sizes), *slice_args(cargs, a, b),
        )  # fmt: skip

    summary = run_rows(bsz, rows)
    if work is not None:
        work[...] = stats[:, 2:4]
    if summary & 3:
        raise not_finite("relevance contains" if summary & 2 else "vectors contain", bsz > 1)
    return out, stats[:, 0], stats[:, 4], bool(summary & 4)


def _work_rows(k: int, window: int | None) -> int:
    """Cholesky rows kept by the kernel: ``min(k, window)`` (at least 1)."""
    return max(1, k if window is None else min(window, k))


def _check_kernel(mat: np.ndarray, batch: bool) -> np.ndarray:
    mat = np.ascontiguousarray(mat, dtype=np.float64)
    want = 3 if batch else 2
    if mat.ndim != want or mat.shape[-1] != mat.shape[-2]:
        shape = "(B, N, N)" if batch else "(N, N)"
        raise ValueError(f"kernel{'s' if batch else ''} must have shape {shape}, got {mat.shape}")
    return mat


def fast_greedy_map(
    kernel: np.ndarray, k: int, eps: float = 1e-10, window: int | None = None
) -> np.ndarray:
    """Fast greedy MAP inference on an explicit DPP kernel (Chen et al. 2018, Alg. 1/2).

    Args:
        kernel: ``(N, N)`` symmetric kernel ``L`` (PSD expected; non-PSD inputs do not
            crash, their non-positive Schur complements are simply never selected).
        k: maximum number of items.
        eps: relative eligibility threshold: a candidate is eligible only while its
            Schur complement ``d_i² > eps · max_i L_ii`` (scale-free).
        window: sliding-window size ``w`` (None: no window); see the module docstring.

    Returns:
        ``(k',)`` int64 positions in selection order, ``k' ≤ min(k, N)``; fewer than
        ``min(k, N)`` when the kernel is exhausted (no padding, no fill).
    """
    k = check_k(k)
    eps = _check_eps(eps)
    window = _check_window(window)
    mat = _check_kernel(kernel, batch=False)
    if not np.all(np.isfinite(mat)):
        raise ValueError("kernel contains NaN or infinite values")
    n = mat.shape[0]
    out, counts, _, _ = _run(
        np.zeros((1, n, 0)),
        mat[None],
        True,
        np.ones((1, n), dtype=bool),
        np.zeros((1, n)),
        np.zeros(1),
        np.ones(1, dtype=bool),
        k,
        eps,
        window,
    )
    return as_positions(out[0, : counts[0]])


def fast_greedy_map_batch(
    kernels: np.ndarray,
    k: int,
    eps: float = 1e-10,
    window: int | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Batched :func:`fast_greedy_map` (one compiled loop over the requests).

    Args:
        kernels: ``(B, N, N)`` kernels.
        k: maximum number of items.
        eps: relative eligibility threshold on the Schur complements.
        window: sliding-window size or None.
        valid: ``(B, N)`` mask of real candidates (default all).

    Returns:
        ``(B, k)`` int64 positions, ``-1`` padded (also when a kernel is exhausted).
    """
    k = check_k(k)
    eps = _check_eps(eps)
    window = _check_window(window)
    mat = _check_kernel(kernels, batch=True)
    bsz, n, _ = mat.shape
    m = np.ones((bsz, n), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if m.shape != (bsz, n):
        raise ValueError(f"valid must have shape ({bsz}, {n}), got {m.shape}")
    if not np.all(np.isfinite(mat[m[:, :, None] & m[:, None, :]])):
        raise ValueError("kernels contain NaN or infinite values at valid positions")
    out, _, _, _ = _run(
        np.zeros((bsz, n, 0)),
        mat,
        True,
        m,
        np.zeros((bsz, n)),
        np.zeros(bsz),
        np.ones(bsz, dtype=bool),
        k,
        eps,
        window,
    )
    return out


# --------------------------------------------------------------------------- re-ranker
@dataclass(frozen=True, kw_only=True)
class GreedyDPPConfig(StageConfig):
    """The hyperparameters every DPP re-ranker shares (fast greedy MAP, Chen et al. 2018).

    Attributes:
        window: sliding-window size ``w ≥ 1`` (``None``: the whole list; Chen et al.'s
            Algorithm 2, see the module docstring).
        eps: relative eligibility threshold ``≥ 0``: an item stays eligible while its
            Schur complement ``d_i²(S) > eps · max_i S_ii``.
        relevance_scaling: ``"minmax"`` (default: ``r ∈ [0, 1]`` per request, so that θ
            has the same meaning for every request; the WeChat paper feeds ranking
            scores, which are probabilities) or ``"raw"``.
        fill: when the kernel is exhausted before ``min(k, N)`` items, complete the list
            by relevance order (True, default) or return fewer items (False).
    """

    window: int | None = param(None, ge=1)
    eps: float = param(1e-10, ge=0.0)
    relevance_scaling: RelevanceScaling = "minmax"
    fill: bool = True


class _GreedyDPPReranker(Reranker):
    """Shared select / select_batch of the DPP re-rankers; subclasses choose θ.

    Subclasses declare a config derived from :class:`GreedyDPPConfig` and implement
    :meth:`_theta_for` / :meth:`_thetas_for`. An explicit per-request ``theta`` keyword
    (the diversity knob) overrides their choice.
    """

    _takes_constraints = True

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as the paper's θ: ``θ = 1 − diversity`` (θ = 1 is the relevance order)."""
        return {"theta": 1.0 - np.asarray(diversity, dtype=np.float64)}

    def _explain_terms(self, query, b, kw, idx, r):
        """The DPP's terms (WeChat Eq. 5): ``2α r_i`` and ``log d_i²``, the log Schur
        complement of ``i`` given the picks (the window's last ``w − 1``)."""
        from ._explain import residual_sq, unit_rows

        if query.diversity is not None:
            theta = 1.0 - float(query.diversity[b])
        elif kw.get("theta") is not None:
            theta = float(np.asarray(kw["theta"], dtype=np.float64).reshape(-1)[b])
        else:
            t = self._thetas_for(len(query), kw)
            theta = float(np.broadcast_to(np.asarray(t, dtype=np.float64), (len(query),))[b])
        alpha = float(tradeoff_alpha(theta))
        w = 2.0 * alpha if math.isfinite(alpha) else 0.0
        rs = scale_relevance(r, self.config.relevance_scaling)
        u = unit_rows(np.asarray(kw["vectors"][b], dtype=np.float64)[idx])
        win = self.config.window

        def terms(sel):
            sel = np.asarray(sel, dtype=np.int64)
            if win is not None:
                sel_w = sel[len(sel) - (win - 1) :] if win > 1 else sel[:0]
            else:
                sel_w = sel
            d2 = residual_sq(u, u[sel_w])
            with np.errstate(divide="ignore"):
                return w * rs, np.log(np.maximum(d2, 0.0)), u @ u[sel].T

        return terms

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        raise NotImplementedError

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> float | np.ndarray:
        """θ of every request: one float for all, or a ``(B,)`` array."""
        raise NotImplementedError

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select up to ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` ranking scores.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine similarity), or None.
            similarity: ``(N, N)`` similarity ``S``, or None.
            categories: ignored (use :func:`~divrec.rerank.category_similarity` to build a
                category kernel).
            **kwargs: ``theta``: this request's θ (the diversity knob; overrides the
                re-ranker's), and the subclass's per-request inputs.

        Returns:
            ``(k',)`` int64 positions in selection order; ``k' = min(k, N)`` when
            ``fill`` is True, possibly fewer otherwise.
        """
        k = check_k(k)
        r = relevance_array(relevance)  # the values: checked by the kernel
        theta = kwargs.get("theta")
        theta = self._theta_for(kwargs) if theta is None else float(theta)
        alpha = float(tradeoff_alpha(theta))
        if k == 0 or r.size == 0:
            check_relevance(r)
            return np.zeros(0, dtype=np.int64)
        vecs, mat, use_matrix = kernel_inputs(r.size, vectors, similarity, type(self).__name__)
        if not math.isfinite(alpha):
            return relevance_order(check_relevance(r))[:k]
        cfg = self.config
        out, counts, kb, _ = _run(  # the kernel checks and scales the relevance
            vecs,
            mat,
            use_matrix,
            all_valid(r.size),
            r[None],
            np.array([2.0 * alpha]),
            all_valid(1)[0],
            k,
            cfg.eps,
            cfg.window,
            minmax=cfg.relevance_scaling == "minmax",
            fill=cfg.fill,
        )
        return as_positions(out[0, : kb[0] if cfg.fill else counts[0]])

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Batch selection: one compiled loop over the requests.

        Each request's greedy runs on a working set of ``O(N (d + k))`` floats that stays
        in cache, bitwise identical to :meth:`select` on the valid candidates of each
        request; the relevance checks, scaling and fill happen in the same compiled call,
        so the batch costs one call's Python overhead instead of one per request.

        Args:
            relevance: ``(B, N)`` ranking scores.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            **kwargs: ``theta``: ``(B,)`` per-request θ (the diversity knob; overrides the
                re-ranker's), and the subclass's per-request inputs.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        cons = kwargs.get("constraints")
        relevance, valid = apply_constraints(cons, relevance, valid)
        r = relevance_array(relevance, batch=True)  # the values: checked by the kernel
        bsz, n = r.shape
        theta = kwargs.get("theta")
        theta = self._thetas_for(bsz, kwargs) if theta is None else _theta_rows(theta, bsz)
        if isinstance(theta, float) and math.isfinite(a := _scalar_alpha(theta)):
            # one θ < 1 for every request: cached arrays, no numpy arithmetic (right after
            # a large batch has streamed through the caches, each numpy call costs
            # microseconds: the array path below cost ~0.1 ms there)
            weight, finite = constant_row(bsz, 2.0 * a), all_valid(bsz)[0]
        else:
            alpha = tradeoff_alpha(np.broadcast_to(theta, (bsz,)))
            finite = np.isfinite(alpha)
            weight = 2.0 * np.where(finite, alpha, 0.0)
        if valid is not None:  # the mask's shape and dtype (the kernel checks relevance)
            r, m = check_relevance_batch(r, valid, copy=False)
        else:
            m = all_valid(n, bsz)
        vecs, mat, use_matrix = kernel_inputs_batch(
            (bsz, n), m, vectors, similarity, type(self).__name__
        )
        # θ = 1 rows get the relevance order, others are completed by it when asked to
        # (in the kernel, which reads no padding)
        cfg = self.config
        return _run(
            vecs, mat, use_matrix, m, r, weight, finite, k, cfg.eps, cfg.window,
            minmax=cfg.relevance_scaling == "minmax", fill=cfg.fill, constraints=cons,
        )[0]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class FastGreedyDPPConfig(GreedyDPPConfig):
    """`FastGreedyDPP` hyperparameters (and those of :class:`GreedyDPPConfig`).

    Attributes:
        theta: trade-off ``θ ∈ [0, 1]``; larger is more relevance, ``θ = 1`` is the
            relevance order, ``θ = 0`` maximizes ``det S_Y`` only.
    """

    theta: float = param(0.5, ge=0.0, le=1.0)


class FastGreedyDPP(_GreedyDPPReranker):
    """DPP re-ranking with a relevance/diversity trade-off θ (WeChat Eq. 4–8).

    Kernel ``L = Diag(exp(α r)) S Diag(exp(α r))``, ``α = θ / (2(1 − θ))`` (Eq. 6), greedy
    MAP by the incremental Cholesky of Chen et al. 2018 (Eq. 8), optionally with a sliding
    window (their Algorithm 2). ``S`` is the cosine of ``vectors`` or the given
    ``similarity``; ``r`` is the relevance after ``relevance_scaling``. See the module
    docstring for the log-space evaluation, the window convention and degenerate kernels.
    Hyperparameters: :class:`FastGreedyDPPConfig`.
    """

    Config = FastGreedyDPPConfig
    _stage_inputs = ("vectors",)

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        return float(self.theta)

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> float:
        return float(self.theta)
