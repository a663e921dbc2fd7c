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

Stopping / degenerate kernels: a candidate is eligible only while ``d_i² > eps``; when no
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
Because the recursion runs on ``S``, the ``eps`` test applies to ``d_i²(S)`` (scale-free).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._base import (
    BatchSimilarity,
    Reranker,
    Similarity,
    as_positions,
    batch_chunks,
    check_k,
    check_relevance,
    check_relevance_batch,
    check_scaling,
    fill_by_relevance_batch,
    relevance_order,
    scale_relevance,
    scale_relevance_batch,
)

__all__ = [
    "FastGreedyDPP",
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
    t = np.asarray(theta, dtype=np.float64)
    if np.any(~np.isfinite(t)) or np.any(t < 0.0) or np.any(t > 1.0):
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    with np.errstate(divide="ignore"):
        return np.where(t < 1.0, t / (2.0 * np.maximum(1.0 - t, 1e-300)), np.inf)


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


# --------------------------------------------------------------------------- single core
def _greedy_single(
    row: Callable[[int], np.ndarray],
    diag: np.ndarray,
    gain: np.ndarray,
    k: int,
    eps: float,
    window: int | None,
) -> list[int]:
    """Incremental-Cholesky greedy for one request.

    Picks ``argmax_i gain_i + log d_i²`` among eligible items (``d_i² > eps``), where
    ``d_i²`` is the Schur complement of the kernel whose rows ``row(j)`` and diagonal
    ``diag`` are given (``gain = 2 log q`` turns the kernel ``S`` into ``Diag(q) S Diag(q)``).
    """
    n = diag.shape[0]
    kk = min(k, n)
    cap = kk if window is None else min(window, kk)
    cmat = np.zeros((max(cap, 1), n))
    d2 = diag.astype(np.float64, copy=True)
    avail = np.ones(n, dtype=bool)
    win: list[int] = []
    m = 0
    out: list[int] = []
    while len(out) < kk:
        elig = avail & (d2 > eps)
        if not elig.any():
            break
        score = np.where(elig, gain + np.log(np.where(elig, d2, 1.0)), -np.inf)
        j = int(np.argmax(score))
        out.append(j)
        avail[j] = False
        if len(out) == kk:
            break
        if window == 1:
            continue  # nothing is ever kept in the window
        e = (row(j) - cmat[:m, j] @ cmat[:m]) / np.sqrt(d2[j])
        cmat[m] = e
        m += 1
        d2 -= e * e
        win.append(j)
        if window is not None and len(win) >= window:
            # Remove the oldest window item (Algorithm 2): rotate coordinate 0 into the
            # others so that the remaining factor is the Cholesky of the last w-1 items.
            a = cmat[0].copy()
            rest = cmat[1:m]
            for r_ in range(m - 1):
                y = win[r_ + 1]
                p, q = rest[r_, y], a[y]
                h = np.hypot(p, q)
                if h == 0.0:
                    continue
                c, s = p / h, q / h
                new = c * rest[r_] + s * a
                a = c * a - s * rest[r_]
                rest[r_] = new
            d2 += a * a
            cmat[: m - 1] = rest
            cmat[m - 1] = 0.0
            m -= 1
            win.pop(0)
    return out


def fast_greedy_map(
    kernel: np.ndarray, k: int, eps: float = 1e-10, window: int | None = None
) -> np.ndarray:
    """Fast greedy MAP inference on an explicit DPP kernel (Chen et al. 2018, Alg. 1/2).

    Args:
        kernel: ``(N, N)`` symmetric kernel ``L`` (PSD expected; non-PSD inputs do not
            crash, their non-positive Schur complements are simply never selected).
        k: maximum number of items.
        eps: a candidate is eligible only while its Schur complement ``d_i² > eps``.
        window: sliding-window size ``w`` (None: no window); see the module docstring.

    Returns:
        ``(k',)`` int64 positions in selection order, ``k' ≤ min(k, N)``; fewer than
        ``min(k, N)`` when the kernel is exhausted (no padding, no fill).
    """
    k = check_k(k)
    eps = _check_eps(eps)
    window = _check_window(window)
    mat = np.asarray(kernel, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"kernel must have shape (N, N), got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError("kernel contains NaN or infinite values")
    n = mat.shape[0]
    out = _greedy_single(mat.__getitem__, np.diagonal(mat), np.zeros(n), k, eps, window)
    return as_positions(out)


# --------------------------------------------------------------------------- batch core
def _greedy_batch(
    rows: Callable[[np.ndarray], np.ndarray],
    diag: np.ndarray,
    gain: np.ndarray,
    valid: np.ndarray,
    active0: np.ndarray,
    k: int,
    eps: float,
    window: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`_greedy_single` over ``B`` requests.

    Args:
        rows: ``rows(js)`` returns ``(B, N)``, row ``js[b]`` of kernel ``b``.
        diag: ``(B, N)`` kernel diagonals.
        gain: ``(B, N)`` additive log-gains (finite where used).
        valid: ``(B, N)`` selectable positions.
        active0: ``(B,)`` requests to run (others get no greedy picks).
        k: list length.
        eps: eligibility threshold on ``d_i²``.
        window: sliding-window size or None.

    Returns:
        ``out`` ``(B, k)`` int64 (-1 padded) and ``counts`` ``(B,)`` picks per request.
    """
    bsz, n = diag.shape
    out = np.full((bsz, k), -1, dtype=np.int64)
    kb = np.minimum(k, valid.sum(axis=1))
    counts = np.zeros(bsz, dtype=np.int64)
    kmax = int(kb[active0].max(initial=0))
    if kmax == 0:
        return out, counts
    cap = kmax if window is None else min(window, kmax)
    cmat = np.zeros((bsz, max(cap, 1), n))
    wins = np.zeros((bsz, max(cap, 1)), dtype=np.int64)
    d2 = diag.astype(np.float64, copy=True)
    avail = valid.copy()
    active = active0 & (kb > 0)
    ar = np.arange(bsz)
    m = 0
    safe_gain = np.where(np.isfinite(gain), gain, 0.0)
    tiny = np.finfo(np.float64).tiny
    for t in range(kmax):
        elig = d2 > eps
        elig &= avail
        score = np.log(np.maximum(d2, tiny))
        score += safe_gain
        np.putmask(score, ~elig, -np.inf)
        j = np.argmax(score, axis=1)
        has = active & elig[ar, j]
        active = has
        if not has.any():
            break
        out[has, t] = j[has]
        counts[has] += 1
        avail[ar[has], j[has]] = False
        active = has & (counts < kb)
        if t + 1 >= kmax or not active.any():
            break
        if window == 1:
            continue
        dj = np.sqrt(np.where(active, d2[ar, j], 1.0))
        cj = cmat[ar, :m, j]  # (B, m)
        proj = np.matmul(cj[:, None, :], cmat[:, :m, :])[:, 0, :] if m else 0.0
        e = rows(j)
        e -= proj
        e /= dj[:, None]
        if not active.all():
            e[~active] = 0.0
        cmat[:, m, :] = e
        wins[:, m] = j
        m += 1
        d2 -= e * e
        if window is not None and m >= window:
            a = cmat[:, 0, :].copy()
            rest = cmat[:, 1:m, :].copy()
            for r_ in range(m - 1):
                y = wins[:, r_ + 1]
                p = rest[ar, r_, y]
                q = a[ar, y]
                h = np.hypot(p, q)
                nz = h > 0.0
                c = np.where(nz, p / np.where(nz, h, 1.0), 1.0)[:, None]
                s = np.where(nz, q / np.where(nz, h, 1.0), 0.0)[:, None]
                new = c * rest[:, r_, :] + s * a
                a = c * a - s * rest[:, r_, :]
                rest[:, r_, :] = new
            d2 += a * a
            cmat[:, : m - 1, :] = rest
            cmat[:, m - 1, :] = 0.0
            wins[:, : m - 1] = wins[:, 1:m]
            m -= 1
    return out, counts


def _greedy_batch_chunked(
    sims: BatchSimilarity,
    gain: np.ndarray,
    valid: np.ndarray,
    active0: np.ndarray,
    k: int,
    eps: float,
    window: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_greedy_batch` over chunks of ``BATCH_CHUNK`` requests (cache-friendly)."""
    bsz = valid.shape[0]
    out = np.full((bsz, k), -1, dtype=np.int64)
    counts = np.zeros(bsz, dtype=np.int64)
    for sl in batch_chunks(bsz):
        ch = sims.chunk(sl)
        out[sl], counts[sl] = _greedy_batch(
            ch.rows, ch.diag(), gain[sl], valid[sl], active0[sl], k, eps, window
        )
    return out, counts


def fast_greedy_map_batch(
    kernels: np.ndarray,
    k: int,
    eps: float = 1e-10,
    window: int | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Batched :func:`fast_greedy_map`, vectorized over the batch axis.

    Args:
        kernels: ``(B, N, N)`` kernels.
        k: maximum number of items.
        eps: eligibility threshold on the Schur complements.
        window: sliding-window size or None.
        valid: ``(B, N)`` mask of real candidates (default all).

    Returns:
        ``(B, k)`` int64 positions, ``-1`` padded (also when a kernel is exhausted).
    """
    k = check_k(k)
    eps = _check_eps(eps)
    window = _check_window(window)
    mat = np.asarray(kernels)
    if mat.ndim != 3 or mat.shape[1] != mat.shape[2]:
        raise ValueError(f"kernels must have shape (B, N, N), got {mat.shape}")
    bsz, n, _ = mat.shape
    m = np.ones((bsz, n), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if m.shape != (bsz, n):
        raise ValueError(f"valid must have shape ({bsz}, {n}), got {m.shape}")
    sims = BatchSimilarity(mat, None, m, prepared=False)
    out, _ = _greedy_batch_chunked(
        sims, np.zeros((bsz, n)), m, np.ones(bsz, dtype=bool), k, eps, window
    )
    return out


# --------------------------------------------------------------------------- re-ranker
class _GreedyDPPReranker(Reranker):
    """Shared select / select_batch of the DPP re-rankers; subclasses choose θ.

    Subclasses set ``window``, ``eps``, ``relevance_scaling`` and ``fill`` and implement
    :meth:`_theta_for` / :meth:`_thetas_for`.
    """

    window: int | None
    eps: float
    relevance_scaling: str
    fill: bool

    def _set_common(
        self, window: int | None, eps: float, relevance_scaling: str, fill: bool
    ) -> None:
        self.window = _check_window(window)
        self.eps = _check_eps(eps)
        self.relevance_scaling = check_scaling(relevance_scaling)
        self.fill = bool(fill)

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        raise NotImplementedError

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> np.ndarray:
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

        Returns:
            ``(k',)`` int64 positions in selection order; ``k' = min(k, N)`` when
            ``fill`` is True, possibly fewer otherwise.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        theta = self._theta_for(kwargs)
        alpha = float(tradeoff_alpha(theta))
        if k == 0 or r.size == 0:
            return np.zeros(0, dtype=np.int64)
        sim = Similarity.resolve(r.size, vectors, similarity, type(self).__name__)
        if not np.isfinite(alpha):
            return relevance_order(r)[:k]
        rs = scale_relevance(r, self.relevance_scaling)
        out = _greedy_single(sim.row, sim.diag(), 2.0 * alpha * rs, k, self.eps, self.window)
        kk = min(k, r.size)
        if self.fill and len(out) < kk:
            taken = np.zeros(r.size, dtype=bool)
            taken[out] = True
            rest = [i for i in relevance_order(r) if not taken[i]]
            out.extend(rest[: kk - len(out)])
        return as_positions(out)

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
        """Vectorized batch selection (numpy over the batch axis).

        Memory is ``O(B N (k + d))`` with vectors and ``O(B N²)`` with a similarity
        tensor: split very large batches into chunks.

        Args:
            relevance: ``(B, N)`` ranking scores.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        r, m = check_relevance_batch(relevance, valid)
        bsz, n = r.shape
        alpha = tradeoff_alpha(self._thetas_for(bsz, kwargs)).reshape(bsz)
        sims = BatchSimilarity.resolve((bsz, n), m, vectors, similarity, type(self).__name__)
        rs = scale_relevance_batch(r, m, self.relevance_scaling)
        finite = np.isfinite(alpha)
        gain = 2.0 * np.where(finite, alpha, 0.0)[:, None] * rs
        out, counts = _greedy_batch_chunked(sims, gain, m, finite, k, self.eps, self.window)
        kb = np.minimum(k, m.sum(axis=1))
        # θ = 1 rows always fill (relevance order); others only when asked to.
        target = np.where(finite & (not self.fill), counts, kb)
        fill_by_relevance_batch(out, counts, r, m, target)
        return out


class FastGreedyDPP(_GreedyDPPReranker):
    """DPP re-ranking with a relevance/diversity trade-off θ (WeChat Eq. 4–8).

    Kernel ``L = Diag(exp(α r)) S Diag(exp(α r))``, ``α = θ / (2(1 − θ))`` (Eq. 6), greedy
    MAP by the incremental Cholesky of Chen et al. 2018 (Eq. 8), optionally with a sliding
    window (their Algorithm 2). ``S`` is the cosine of ``vectors`` or the given
    ``similarity``; ``r`` is the relevance after ``relevance_scaling``. See the module
    docstring for the log-space evaluation, the window convention and degenerate kernels.

    Args:
        theta: trade-off ``θ ∈ [0, 1]``; larger is more relevance, ``θ = 1`` is the
            relevance order, ``θ = 0`` maximizes ``det S_Y`` only.
        window: sliding-window size ``w`` (``None``: whole list).
        eps: eligibility threshold on the Schur complements of ``S``.
        relevance_scaling: ``"minmax"`` (default: ``r ∈ [0, 1]`` per request, so that θ
            has the same meaning for every request; the WeChat paper feeds ranking scores,
            which are probabilities) or ``"raw"``.
        fill: when the kernel is exhausted before ``min(k, N)`` items, complete the list by
            relevance order (True, default) or return fewer items (False).
    """

    _stage_inputs = ("vectors",)

    def diversity_params(self, diversity: float) -> dict[str, Any]:
        """The knob as the paper's θ: ``θ = 1 − diversity`` (θ = 1 is the relevance order)."""
        return {"theta": 1.0 - float(diversity)}

    def __init__(
        self,
        theta: float = 0.5,
        window: int | None = None,
        eps: float = 1e-10,
        relevance_scaling: str = "minmax",
        fill: bool = True,
    ) -> None:
        tradeoff_alpha(theta)  # validates
        self.theta = theta
        self._set_common(window, eps, relevance_scaling, fill)

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        return float(self.theta)

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> np.ndarray:
        return np.full(bsz, float(self.theta))
