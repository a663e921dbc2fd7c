"""Compiled (numba) greedy kernels shared by the single-request and batched re-rankers.

The kernels are compiled on first use (a few seconds) and cached on disk by numba
(``cache=True``), so later processes load them directly; this module is only imported
when a re-ranker first runs, so ``import divrec`` does not import numba.

One kernel per greedy scheme, always called on a batch: ``select`` runs it on a batch of
one request, so that ``select`` and ``select_batch`` execute the very same machine code
and agree bit for bit (every per-candidate operation is elementwise, so a candidate's
roundings do not depend on its position or on padding). Requests are processed one after
the other: the working set of a request, ``O(N (d + k))`` floats (L2-sized up to
``N ≈ 1000`` at ``d = 64``, L3 beyond), is reused for its whole greedy, instead of a wide
vectorized batch that would stream every request's vectors on every step.

Tie rule (see :mod:`divrec.rerank._base`): at every step the candidates whose score is
within ``TIE_RTOL · (|best| + scale)`` of the best score are tied and the lowest position
among them wins; ``scale`` bounds the magnitude of the terms that were added to form the
score (so that the rounding of those terms is absorbed). NaN scores never win; when no
finite score is left among the available candidates the lowest available position is
taken, so no input can produce a duplicate.

Layouts: ``vectors`` ``(B, N, d)`` are L2-normalized inside the kernels (float64, which
also checks that they are finite: no separate pass). The per-request work matrices are
feature-major: the DPP keeps ``wt[:d] = Uᵀ`` (normalized vectors) and ``wt[d + t] =
c^{(t)}`` (the rows of the incremental Cholesky factor), so that the update
``e = (S_j − Σ_t c_j^{(t)} c^{(t)}) / d_j`` of Chen et al. (2018, Alg. 1; WeChat Eq. 8) is
one sweep of ``d + t`` contiguous rows, elementwise over the candidates (vectorized
without reassociating any sum, so the roundings of a candidate never depend on its
position). Per request and step this costs ``O(N (d + t))`` multiply-adds and a handful
of ``O(N)`` passes; the logarithms of the DPP scores are only taken for candidates that
can still win.

Precision: the vectors come in float32 or float64 (never converted as a batch). The MMR,
interest-aware MMR and SSD kernels keep their feature-major work matrix in the dtype of
the buffer they are given (:func:`work_matrix_buffer`: float32 for float32 vectors unless
the caller asks for float64), so each greedy step streams half the bytes; products and
sums are float64. The DPP kernels convert float32 entries to float64 as they read them
(exact: the lists are those of the float64 vectors of the same values).

Constraints (:mod:`divrec.data.constraints`): every greedy kernel takes the rules in
position space (``con*`` arguments); a request with rules places its pins first, then picks
among :func:`con_eligible` candidates only; a request without rules runs the unchanged
loop (no cost but one branch per request).

Without a window, the DPP on item vectors runs the lazy kernel :func:`_dpp_lazy_one`
instead (same picks, tested against the eager update): Gram–Schmidt Schur complements,
``O(d)`` per entry, brought up to date only for the candidates whose stale score can
still win (a max-heap), and feature-major sweeps once most candidates need updating
anyway. For short lists it computes a few percent of the eager update's inner products.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
from numba import njit

from ._base import TIE_RTOL  # the tie rule's tolerance (a compile-time constant here)

_NEG_INF = -np.inf

_local = threading.local()


def scratch(nf: int, ni: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reusable float64, int64 and bool work arrays of at least these sizes (this thread).

    The kernels carve their work matrices and per-request arrays out of them
    (:func:`_carve`) instead of allocating: a fresh (multi-megabyte at large ``N``)
    allocation per request costs page faults whenever the allocator has just given
    memory back to the system (after another method freed a large block), which made the
    same call up to 30% slower depending on what ran before it. The largest buffers used
    so far stay allocated (one set per thread).
    """
    bufs = getattr(_local, "scratch", None)
    if bufs is None or bufs[0].size < nf or bufs[1].size < ni or bufs[2].size < nb:
        old = bufs or (np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.bool_))
        bufs = (
            old[0] if old[0].size >= nf else np.empty(max(nf, 1)),
            old[1] if old[1].size >= ni else np.empty(max(ni, 1), dtype=np.int64),
            old[2] if old[2].size >= nb else np.empty(max(nb, 1), dtype=np.bool_),
        )
        _local.scratch = bufs
    return bufs


def work_matrix_buffer(d: int, n: int, dtype) -> np.ndarray:
    """A reusable 1-D buffer (this thread) for a feature-major ``(d, N)`` work matrix of
    ``dtype`` (float32: the float32 path, half the bytes streamed per greedy step), and
    two rows the penalized kernel's float32 path carves after it."""
    dt = np.dtype(dtype)
    size = (d + 2) * (_pad8(max(n, d)) + 16) + 64  # the matrix and two float32-path rows
    key = "wbuf_" + dt.name
    buf = getattr(_local, key, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dt)
        setattr(_local, key, buf)
    return buf


def _pad8(x: int) -> int:
    return -(-x // 8) * 8


@functools.lru_cache(maxsize=256)
def dpp_scratch_sizes(n: int, d: int, k: int, cap: int) -> tuple[int, int, int]:
    """Sizes of the :func:`scratch` arrays :func:`dpp_greedy_batch` carves (see there)."""
    nf = _pad8(n) * (d + cap + 13) + (k + 1) * _pad8(d) + _pad8(k) + _pad8(d + cap) + _pad8(3)
    return nf + 8 * 8, 4 * n + cap, 3 * n  # 8 carves, each up to 7 entries of alignment


def penalized_scratch_sizes(n: int, d: int) -> tuple[int, int, int]:
    """Sizes of the :func:`scratch` arrays :func:`penalized_greedy_batch` carves."""
    return (d + 4) * _pad8(n) + _pad8(max(d, 1)) + 3 * 8, 0, 2 * n  # 3 carves


@njit(cache=True, nogil=True)
def _carve(buf: np.ndarray, pos: int, rows: int, cols: int) -> tuple[np.ndarray, int]:
    """``(rows, cols')`` rows of ``buf`` from the first 64-byte boundary at or after ``pos``.

    ``cols'`` is ``cols`` rounded up to a cache line (8 float64 or 16 float32 entries),
    so every row starts on a cache line (rows swept with SIMD loads never straddle lines).
    Returns the view and the position after it. Contents are whatever the buffer held.
    """
    per = 64 // buf.itemsize  # elements per cache line: 8 (float64), 16 (float32)
    stride = (cols + per - 1) // per * per
    addr = buf.ctypes.data + pos * buf.itemsize
    start = pos + ((64 - addr % 64) % 64) // buf.itemsize
    end = start + rows * stride
    return buf[start:end].reshape((rows, stride)), end


@njit(cache=True, nogil=True)
def _load_raw_transposed(vectors: np.ndarray, keep: np.ndarray, vt: np.ndarray) -> None:
    """``vt[:, i] = vectors[i]`` where ``keep``, 0 elsewhere (``vt``: ``(d, N)``)."""
    n, d = vectors.shape
    i0 = 0
    while i0 + 16 <= n:  # blocked: 16 items = whole cache lines per feature row
        for f in range(d):
            dst = vt[f]
            for ii in range(16):
                dst[i0 + ii] = vectors[i0 + ii, f] if keep[i0 + ii] else 0.0
        i0 += 16
    for i in range(i0, n):
        for f in range(d):
            vt[f, i] = vectors[i, f] if keep[i] else 0.0


@njit(cache=True, nogil=True)
def _load_transposed(
    vectors: np.ndarray,
    valid: np.ndarray,
    normalize: bool,
    wt: np.ndarray,
    sq: np.ndarray,
    tmp: np.ndarray,
    need_sq: bool = True,
) -> bool:
    """Write the (L2-normalized) valid ``vectors`` ``(N, d)`` into ``wt[:d]`` ``(d, N)``.

    The squared norms and the scaling are computed feature-major, elementwise over the
    items (vectorized, the same order of operations for every item). Invalid items get
    zeros. ``sq[i]`` receives the squared norm of the written vector (with ``normalize``
    and not ``need_sq``: not written, one pass saved); ``tmp`` ``(N,)`` is scratch. With
    ``normalize``, returns False when a valid vector holds a NaN or an infinity (without,
    the caller checks).
    """
    n, d = vectors.shape
    _load_raw_transposed(vectors, valid, wt)
    for i in range(n):
        tmp[i] = 0.0
    for f in range(d):
        row = wt[f]
        for i in range(n):
            tmp[i] += row[i] * row[i]
    if normalize:
        for i in range(n):
            ss = tmp[i]
            if math.isfinite(ss):
                tmp[i] = 1.0 / math.sqrt(ss) if ss > 0.0 else 0.0
                continue
            mx = 0.0  # a NaN / infinity, or an overflow of the squared norm
            for f in range(d):
                x = wt[f, i]
                if not math.isfinite(x):
                    return False
                mx = max(mx, abs(x))
            pre = 1.0 / mx
            ss = 0.0
            for f in range(d):
                ss += (wt[f, i] * pre) ** 2
            tmp[i] = pre / math.sqrt(ss)
        for f in range(d):
            row = wt[f]
            for i in range(n):
                row[i] *= tmp[i]
        if not need_sq:  # the caller reads only the normalized vectors
            return True
        for i in range(n):
            tmp[i] = 0.0
        for f in range(d):
            row = wt[f]
            for i in range(n):
                tmp[i] += row[i] * row[i]
    for i in range(n):
        sq[i] = tmp[i]
    return True


#: the float32 path's tie tolerance, in units of ``TIE_RTOL``: float32 rounding (2^-24 ≈
#: 6e-8 relative) must not decide a tie that the float64 path resolves by position
F32_TIE = 128.0


@njit(cache=True, nogil=True)
def _resolve_tie(
    score: np.ndarray, ok: np.ndarray, best: float, jbest: int, first: int, scale: float
) -> int:
    """Tolerance-aware argmax over ``ok`` once ``best`` (first reached at ``jbest``) is known.

    The positions whose score is within ``TIE_RTOL · (|best| + scale)`` of ``best`` are
    tied and the lowest one wins. ``first`` is the lowest ``ok`` position (-1: none);
    ``jbest`` is -1 when no score beat ``-inf`` (NaN never wins): then ``first`` is taken.
    """
    if first < 0:
        return -1
    if jbest < 0 or best == _NEG_INF:
        return first
    if best == np.inf:
        return jbest
    thr = best - TIE_RTOL * (abs(best) + scale)
    for i in range(jbest):
        if ok[i] and score[i] >= thr:
            return i
    return jbest


# --------------------------------------------------------------------------- DPP
@njit(cache=True, nogil=True)
def _accumulate(acc: np.ndarray, wt: np.ndarray, q: np.ndarray, nrows: int, n: int) -> None:
    """``acc[i] += Σ_{f < nrows} q_f · wt[f, i]`` for ``i < n`` (8 rows per sweep).

    The loop over items is elementwise (vectorized without reassociation), so every item
    gets the same sequence of roundings whatever its position.
    """
    f = 0
    while f + 8 <= nrows:
        q0, q1, q2, q3 = q[f], q[f + 1], q[f + 2], q[f + 3]
        q4, q5, q6, q7 = q[f + 4], q[f + 5], q[f + 6], q[f + 7]
        w0, w1, w2, w3 = wt[f], wt[f + 1], wt[f + 2], wt[f + 3]
        w4, w5, w6, w7 = wt[f + 4], wt[f + 5], wt[f + 6], wt[f + 7]
        for i in range(n):
            lo = (q0 * w0[i] + q1 * w1[i]) + (q2 * w2[i] + q3 * w3[i])
            hi = (q4 * w4[i] + q5 * w5[i]) + (q6 * w6[i] + q7 * w7[i])
            acc[i] += lo + hi
        f += 8
    while f + 4 <= nrows:
        q0, q1, q2, q3 = q[f], q[f + 1], q[f + 2], q[f + 3]
        w0, w1, w2, w3 = wt[f], wt[f + 1], wt[f + 2], wt[f + 3]
        for i in range(n):
            acc[i] += ((q0 * w0[i] + q1 * w1[i]) + q2 * w2[i]) + q3 * w3[i]
        f += 4
    while f < nrows:
        qf = q[f]
        wf = wt[f]
        for i in range(n):
            acc[i] += qf * wf[i]
        f += 1


@njit(cache=True, nogil=True)
def _dpp_choose(
    avail: np.ndarray,
    d2: np.ndarray,
    rel: np.ndarray,
    w: float,
    thr: float,
    st: np.ndarray,
    vis: np.ndarray,
    vsc: np.ndarray,
    lg: np.ndarray,
    stale: bool,
) -> int:
    """Tolerance-aware argmax of ``w (r_i − r_ref) + log d_i²`` over eligible items.

    Eligible: ``avail`` and ``d_i² > thr``. ``st`` holds the step statistics of
    :func:`_dpp_stats`: ``r_ref`` (largest eligible relevance), its first position, and
    ``dmax ≥ max d_i²`` over the eligible items. Returns -1 when none is eligible.

    With ``w > 0``: ``LB = log d²`` of the ``r_ref`` item is a lower bound of the best
    score and ``score_i ≤ w (r_i − r_ref) + log dmax``, so candidates whose bound is below
    ``LB − 1e-6 (1 + |LB| + |log dmax|)`` (a margin that exceeds the tie tolerance) are
    skipped without a ``log``. With ``w = 0`` the comparison is made on ``d²`` itself
    (``log`` is monotone), with the same tolerance. The winner is the lowest position
    among the candidates within the tolerance of the best.
    """
    n = d2.shape[0]
    ir = int(st[1])
    dmax = st[2]
    if ir < 0 or not dmax > thr:
        return -1
    if w == 0.0:
        cut = dmax * math.exp(-TIE_RTOL * (abs(math.log(dmax)) + 1.0))
        for i in range(n):
            if avail[i] and d2[i] > thr and d2[i] >= cut:
                return i
        return ir  # unreachable
    rref = st[0]
    lmax = math.log(dmax)
    lb = math.log(d2[ir])
    floor = lb - 1e-6 * (1.0 + abs(lb) + abs(lmax))
    best = _NEG_INF
    nvis = 0
    for i in range(n):
        if avail[i] and d2[i] > thr:
            g = w * (rel[i] - rref)
            if g + min(lg[i], lmax) >= floor:
                li = math.log(d2[i])
                if stale:
                    lg[i] = li
                sc = g + li
                vis[nvis] = i
                vsc[nvis] = sc
                nvis += 1
                if sc > best:
                    best = sc
    cut = best - TIE_RTOL * (abs(best) + 1.0)
    for v in range(nvis):
        if vsc[v] >= cut:
            return vis[v]  # visited in increasing position
    return ir  # unreachable: the r_ref item is visited


@njit(cache=True, nogil=True)
def _drop_oldest(wt, d, m, win, d2, rot_a, n):
    """Removes the oldest of the `m` window items (Chen et al. 2018, Alg. 2): Givens rotations
    move the oldest Cholesky row (row `d` of `wt`) into the others, and each `d2[i]` regains
    what is left of it. Shifts `win` and returns the new window size `m - 1`."""
    a = rot_a
    for i in range(n):
        a[i] = wt[d, i]
    for r_ in range(m - 1):
        y = win[r_ + 1]
        rest = wt[d + 1 + r_]
        p = rest[y]
        h = math.hypot(p, a[y])
        if h == 0.0:
            dst = wt[d + r_]
            for i in range(n):
                dst[i] = rest[i]
            continue
        c = p / h
        sn = a[y] / h
        dst = wt[d + r_]
        for i in range(n):
            old = rest[i]
            dst[i] = c * old + sn * a[i]
            a[i] = c * a[i] - sn * old
    for i in range(n):
        wt[d + m - 1, i] = 0.0
        d2[i] += a[i] * a[i]
    for r_ in range(m - 1):
        win[r_] = win[r_ + 1]
    return m - 1


@njit(cache=True, nogil=True)
def _dpp_stats(
    avail: np.ndarray, d2: np.ndarray, rel: np.ndarray, thr: float, st: np.ndarray
) -> None:
    """``st = [r_ref, its first position, max d²]`` over the eligible items (-1: none)."""
    st[0] = _NEG_INF
    st[1] = -1.0
    st[2] = 0.0
    for i in range(d2.shape[0]):
        if avail[i] and d2[i] > thr:
            if d2[i] > st[2]:
                st[2] = d2[i]
            if rel[i] > st[0]:
                st[0] = rel[i]
                st[1] = i


@njit(cache=True, nogil=True)
def _max_avail(avail: np.ndarray, d2: np.ndarray) -> float:
    """``max(0, max_{avail} d_i²)``."""
    m = 0.0
    for i in range(d2.shape[0]):
        if avail[i] and d2[i] > m:
            m = d2[i]
    return m


@njit(cache=True, nogil=True)
def _scaled_relevance(
    r: np.ndarray, valid: np.ndarray, minmax: bool, out: np.ndarray
) -> tuple[float, float]:
    """Write the (min-max scaled) valid relevance into ``out`` (0 elsewhere).

    Same arithmetic as :func:`divrec.rerank._base.scale_relevance`: ``(r − lo) / (hi −
    lo)``, both sides halved when ``hi − lo`` overflows, all zeros for a constant request.
    Returns the largest and smallest written value over the valid positions, or
    ``(nan, nan)`` when a valid relevance is not finite (nothing written then).
    """
    n = r.shape[0]
    lo = np.inf
    hi = _NEG_INF
    for i in range(n):
        if valid[i]:
            x = r[i]
            if not math.isfinite(x):
                return np.nan, np.nan
            lo = min(lo, x)
            hi = max(hi, x)
    if not minmax:
        for i in range(n):
            out[i] = r[i] if valid[i] else 0.0
        return hi, lo
    span = hi - lo
    if not span > 0.0:
        for i in range(n):
            out[i] = 0.0
        return 0.0, 0.0
    if math.isfinite(span):
        for i in range(n):
            out[i] = (r[i] - lo) / span if valid[i] else 0.0
    else:
        h_lo = lo / 2.0
        h_span = hi / 2.0 - h_lo
        for i in range(n):
            out[i] = (r[i] / 2.0 - h_lo) / h_span if valid[i] else 0.0
    top = _NEG_INF
    low = np.inf
    for i in range(n):
        if valid[i]:
            top = max(top, out[i])
            low = min(low, out[i])
    return top, low


@njit(cache=True, nogil=True)
def dpp_greedy_batch(
    vectors: np.ndarray,
    matrix: np.ndarray,
    use_matrix: bool,
    valid: np.ndarray,
    rel: np.ndarray,
    minmax: bool,
    weight: np.ndarray,
    active: np.ndarray,
    k: int,
    eps: float,
    window: int,
    out: np.ndarray,
    stats: np.ndarray,
    lazy: bool,
    fill: bool,
    fs: np.ndarray,
    ints: np.ndarray,
    bools: np.ndarray,
    con: bool,
    cact: np.ndarray,
    ccat: np.ndarray,
    cmin: np.ndarray,
    cmax: np.ndarray,
    cpin: np.ndarray,
    cprot: np.ndarray,
    cfloor: np.ndarray,
    clen: np.ndarray,
) -> int:
    """Fast greedy DPP MAP (Chen et al. 2018, Alg. 1 and 2) for every request.

    Per request ``b`` and step, picks the tolerance-aware argmax over eligible items of
    ``w_b (r_i − r_ref) + log d_i²`` where ``d_i²`` is the Schur complement of the
    similarity kernel ``S`` (WeChat Eq. 5 and 8 in log space) and ``r_ref`` the largest
    relevance among the eligible items (a per-step constant: it changes nothing but keeps
    the winning scores finite for any finite relevance). Eligible: available, valid and
    ``d_i² > eps · max_i S_ii`` (relative threshold). The work matrix is feature-major,
    ``wt[:d] = Uᵀ`` (normalized vectors) and ``wt[d + t] = c^{(t)}`` (Cholesky rows), so
    that the update ``e = (S_j − C_jᵀ C) / d_j`` (Eq. 8) is a sweep over contiguous rows.

    Args:
        vectors: ``(B, N, d)`` raw item vectors (cosine kernel; normalized here), or
            ``(B, N, 0)`` when ``use_matrix``.
        matrix: ``(B, N, N)`` kernels (row ``j`` = similarities of ``j``), or ``(B, 0, 0)``.
        use_matrix: read the kernel from ``matrix`` instead of ``vectors``.
        valid: ``(B, N)`` selectable positions.
        rel: ``(B, N)`` relevance as given (any value at invalid positions).
        minmax: min-max scale each request's relevance (:func:`_scaled_relevance`).
        weight: ``(B,)`` finite ``w_b = 2 α_b ≥ 0`` (0: no relevance term).
        active: ``(B,)`` requests to run.
        k: list length.
        eps: relative eligibility threshold (``≥ 0``).
        window: sliding-window size (0: none).
        out: ``(B, k)`` int64 output (any content; -1 padded here).
        stats: ``(B, 5)`` int64 output (any content): the number of greedy picks; 1 for
            a non-finite valid vector, 2 for a non-finite valid relevance (the request is
            not run), else 0; for the lazily run requests, the inner products computed
            and the steps done by sweeps (0 for eager requests); ``min(k, valid count)``.
        lazy: without a window, run :func:`_dpp_lazy_one` (same picks, less work) on
            every request whose relevance term ``w (max r − min r)`` is below ``1e300``
            (the others, and windows, run the eager update of every candidate).
        fill: complete a list the greedy left short (an exhausted kernel) to its length
            by relevance order (:func:`_fill_by_relevance`). Requests not run
            (``active`` False: θ = 1) always get the relevance order.
        fs, ints, bools: :func:`scratch` arrays of :func:`dpp_scratch_sizes` (any
            content): every work array is carved out of them, nothing is allocated.
        con, cact, ccat, cmin, cmax, cpin, cprot, cfloor: the rules (see the constraints
            section); a constrained request runs the eager update (pins first: they enter
            the Cholesky factor before any greedy pick), picks among its eligible
            candidates only and, when the kernel is exhausted and ``fill`` (or θ = 1),
            continues by relevance among them; ``clen`` ``(B,)`` int64 output: its list
            length (the generic fill is not applied to it).

    Returns:
        A summary for the caller, so that it reads no array when all is well: bit 0 set
        when some request had a non-finite vector, bit 1 a non-finite relevance, bit 2
        when the row of some other request is shorter than its list length (after the
        fill).
    """
    bsz, n = valid.shape
    d = 0 if use_matrix else vectors.shape[2]
    cap = k if window == 0 else min(window, k)
    cap = max(cap, 1)
    counts = stats[:, 0]
    bad = stats[:, 1]
    # ---- work arrays (layout: dpp_scratch_sizes); the work matrix wt is feature-major
    wt, pos = _carve(fs, 0, d + cap, n)
    rows, pos = _carve(fs, pos, 1, n)
    relb = rows[0, :n]
    lazyf, pos = _carve(fs, pos, 7, n)  # the lazy kernel's per-candidate rows
    small, pos = _carve(fs, pos, k + 1, d)  # its basis (k rows) and residual
    coefs, pos = _carve(fs, pos, 1, k)
    fw, pos = _carve(fs, pos, 5, n)  # the eager loop's per-candidate rows
    acc = fw[0, :n]
    d2 = fw[1, :n]
    vsc = fw[2, :n]
    rot_a = fw[3, :n]
    lg = fw[4, :n]
    rows, pos = _carve(fs, pos, 1, d + cap)
    q = rows[0, : d + cap]
    rows, pos = _carve(fs, pos, 1, 3)
    st = rows[0, :3]
    lazyi = ints[: 3 * n].reshape((3, n))
    vis = ints[3 * n : 4 * n]
    win = ints[4 * n : 4 * n + cap]
    avail = bools[:n]
    live = bools[n : 2 * n]
    ok = bools[2 * n : 3 * n]
    for b in range(bsz):
        for c in range(5):
            stats[b, c] = 0
        for t in range(k):
            out[b, t] = -1
        nvalid = 0
        for i in range(n):
            avail[i] = valid[b, i]
            if avail[i]:
                nvalid += 1
        kb = min(k, nvalid)
        stats[b, 4] = kb
        cb = con and cact[b]
        if cb:
            clen[b] = 0
        if kb == 0:
            continue
        rtop, rlow = _scaled_relevance(rel[b], avail, minmax, relb)
        if not math.isfinite(rtop):
            bad[b] = 2
            continue
        if cb:
            clen[b] = _dpp_constrained(
                vectors[b], matrix[b], use_matrix, valid[b], avail, relb, weight[b], active[b], kb,
                eps, window, out[b], fill, wt, d2, acc, rot_a, lg, q, st, vis, vsc, win, ok,
                ccat[b], cmin[b], cmax[b], cpin[b], cprot[b], cfloor[b],
            )  # fmt: skip
            if clen[b] < 0:
                bad[b] = 1
                clen[b] = 0
            counts[b] = clen[b]
            continue
        if not active[b]:
            continue  # the relevance order (the fill below)
        if lazy and window == 0 and not use_matrix:
            span = weight[b] * (rtop - rlow)
            if math.isfinite(span) and span < 1e300:
                picks = _dpp_lazy_one(
                    vectors[b], avail, relb, weight[b], rtop, kb, eps, out[b], stats[b, 2:4],
                    wt[:d], lazyf, lazyi, live, small, coefs[0],
                )  # fmt: skip
                if picks != -2:  # -2: an overflowing norm, rescaled by the eager path
                    counts[b] = max(picks, 0)
                    bad[b] = 1 if picks == -1 else 0
                    continue
        if use_matrix:
            for i in range(n):
                d2[i] = matrix[b, i, i] if avail[i] else 0.0
        elif not _load_transposed(vectors[b], avail, True, wt, d2, rot_a):
            bad[b] = 1
        maxdiag = _max_avail(avail, d2)
        if bad[b] or not maxdiag > 0.0:
            continue
        thr = eps * maxdiag
        w = weight[b]
        _dpp_stats(avail, d2, relb, thr, st)
        lmax0 = math.log(maxdiag)
        for i in range(n):
            lg[i] = lmax0
        m = 0
        for t in range(kb):
            # ---- choose: tolerance-aware argmax of w (r_i - r_ref) + log d_i^2
            j = _dpp_choose(avail, d2, relb, w, thr, st, vis, vsc, lg, window == 0)
            if j < 0:
                break  # nothing eligible: the kernel is exhausted
            out[b, t] = j
            counts[b] += 1
            avail[j] = False
            if t + 1 >= kb:
                break
            if window == 1:
                _dpp_stats(avail, d2, relb, thr, st)
                continue
            # ---- incremental Cholesky update (Eq. 8): e = (S_j - C_j^T C) / d_j
            dj = math.sqrt(d2[j])
            for f in range(d):
                q[f] = wt[f, j]
            for f in range(m):
                q[d + f] = -wt[d + f, j]
            if use_matrix:
                for i in range(n):
                    acc[i] = matrix[b, j, i] if valid[b, i] else 0.0
            else:
                for i in range(n):
                    acc[i] = 0.0
            _accumulate(acc, wt, q, d + m, n)
            row = wt[d + m]
            inv = 1.0 / dj
            rref = _NEG_INF
            ir = -1
            dmax = 0.0
            for i in range(n):
                e = acc[i] * inv  # 0 at invalid positions (zero vectors / zeroed rows)
                row[i] = e
                x = d2[i] - e * e
                d2[i] = x
                if avail[i] and x > thr:
                    if x > dmax:
                        dmax = x
                    if relb[i] > rref:
                        rref = relb[i]
                        ir = i
            st[0] = rref
            st[1] = ir
            st[2] = dmax
            win[m] = j
            m += 1
            if window > 0 and m >= window:
                m = _drop_oldest(wt, d, m, win, d2, rot_a, n)
                _dpp_stats(avail, d2, relb, thr, st)
    summary = 0
    for b in range(bsz):
        if stats[b, 1] > 0:
            summary |= 1 << (stats[b, 1] - 1)
            continue
        got = counts[b]
        if con and cact[b]:
            continue  # constrained: filled by relevance among the eligible in the kernel
        if got < stats[b, 4] and (fill or not active[b]):
            _fill_by_relevance(rel[b], valid[b], out[b], got, stats[b, 4], live, vis)
            got = stats[b, 4]
        if got < stats[b, 4]:
            summary |= 4
    return summary


@njit(cache=True, nogil=True)
def _dpp_constrained(
    vectors, matrix, use_matrix, valid, avail, relb, w, active, kb, eps, window, out, fill,
    wt, d2, acc, rot_a, lg, q, st, vis, vsc, win, ok, ccat, cmin, cmax, cpin, cprot, cfloor,
) -> int:  # fmt: skip
    """The eager greedy of :func:`dpp_greedy_batch` on one request with rules.

    Pins are picked first (in slot order) and enter the Cholesky factor like any pick (a
    pin whose Schur complement is not above the threshold is in the span of the picks
    before it: it changes nothing); every later step picks among the eligible candidates
    (:func:`con_eligible`). Once the kernel is exhausted (or for θ = 1: ``active`` False)
    the picks go by relevance among the eligible when ``fill`` (else the list ends).
    Returns the list length after :func:`con_place`, or -1 for a non-finite vector.
    """
    n = avail.shape[0]
    d = 0 if use_matrix else vectors.shape[1]
    if use_matrix:
        for i in range(n):
            d2[i] = matrix[i, i] if avail[i] else 0.0
    elif not _load_transposed(vectors, avail, True, wt, d2, rot_a):
        return -1
    maxdiag = _max_avail(avail, d2)
    thr = eps * maxdiag
    exhausted = not (maxdiag > 0.0 and active)
    cnt = np.zeros(cmin.shape[0], dtype=np.int64)
    cst = np.zeros(4, dtype=np.int64)
    plist = np.empty(max(out.shape[0], 1), dtype=np.int64)
    gsl = np.empty(kb + 1, dtype=np.int64)
    rneed = np.empty(kb + 1, dtype=np.int64)
    avc = np.zeros(2 * cmin.shape[0] + 2, dtype=np.int64)
    tok = np.zeros(2 * cmin.shape[0] + 2, dtype=np.int64)
    npins = con_setup(kb, cpin, cprot, cfloor, avail, ccat, cmax, plist, gsl, rneed, avc, cst)
    lmax0 = math.log(maxdiag) if maxdiag > 0.0 else 0.0
    for i in range(n):
        lg[i] = lmax0
    m = 0
    picks = 0
    for t in range(kb):
        if t < npins:
            j = plist[t]
        else:
            if con_eligible(avail, ccat, cmin, cmax, cnt, cprot, cst, gsl, rneed, avc, tok,
                            ok) == 0:  # fmt: skip
                break
            j = -1
            if not exhausted:
                _dpp_stats(ok, d2, relb, thr, st)
                j = _dpp_choose(ok, d2, relb, w, thr, st, vis, vsc, lg, window == 0)
                if j < 0:
                    exhausted = True
            if j < 0:
                if not (fill or not active):
                    break
                j = _exact_argmax(relb, ok)
        out[t] = j
        picks += 1
        avail[j] = False
        con_pick(j, t >= npins, ccat, cnt, cprot, cst, avc)
        if t + 1 >= kb or exhausted or window == 1 or not d2[j] > thr:
            continue
        # ---- incremental Cholesky update (Eq. 8), as in dpp_greedy_batch
        dj = math.sqrt(d2[j])
        for f in range(d):
            q[f] = wt[f, j]
        for f in range(m):
            q[d + f] = -wt[d + f, j]
        if use_matrix:
            for i in range(n):
                acc[i] = matrix[j, i] if valid[i] else 0.0
        else:
            for i in range(n):
                acc[i] = 0.0
        _accumulate(acc, wt, q, d + m, n)
        row = wt[d + m]
        inv = 1.0 / dj
        for i in range(n):
            e = acc[i] * inv
            row[i] = e
            d2[i] = d2[i] - e * e
        win[m] = j
        m += 1
        if window > 0 and m >= window:
            m = _drop_oldest(wt, d, m, win, d2, rot_a, n)
    return con_place(out, picks, npins, cpin, plist)


@njit(cache=True, nogil=True)
def _fill_by_relevance(
    r: np.ndarray,
    valid: np.ndarray,
    out: np.ndarray,
    start: int,
    stop: int,
    taken: np.ndarray,
    heap: np.ndarray,
) -> None:
    """``out[start:stop]`` = the best valid positions not in ``out[:start]``, in order.

    Best is by decreasing ``r``, ties towards the lower position: the order of
    :func:`divrec.rerank._base.relevance_order` (a stable sort of ``−r``). A bounded heap
    whose root is the worst kept position: ``O(N log(stop − start))``.

    Args:
        r: ``(N,)`` relevance (finite at valid positions).
        valid: ``(N,)`` selectable positions.
        out: ``(k,)`` the list; ``out[:start]`` are taken positions.
        start, stop: the slots to fill (``stop − start`` valid positions remain).
        taken, heap: ``(N,)`` bool and ``(≥ stop − start,)`` int64 work arrays.
    """
    n = r.shape[0]
    need = stop - start
    for i in range(n):
        taken[i] = False
    for t in range(start):
        taken[out[t]] = True
    size = 0
    for i in range(n):  # increasing positions: a later tie never beats a kept one
        if not valid[i] or taken[i]:
            continue
        if size < need:  # sift up: parents are worse than their children
            pos = size
            size += 1
            while pos > 0:
                p = (pos - 1) // 2
                if not _worse(r, i, heap[p]):
                    break
                heap[pos] = heap[p]
                pos = p
            heap[pos] = i
        elif r[i] > r[heap[0]]:  # i beats the worst kept one (a tie does not)
            _sift_worst(r, heap, size, i)
    for t in range(stop - 1, start - 1, -1):  # pop the worst into the last free slot
        out[t] = heap[0]
        size -= 1
        if size > 0:
            _sift_worst(r, heap, size, heap[size])


@njit(cache=True, nogil=True)
def _worse(r: np.ndarray, i: int, j: int) -> bool:
    """Whether position ``i`` comes after ``j`` in the relevance order."""
    return r[i] < r[j] or (r[i] == r[j] and i > j)


@njit(cache=True, nogil=True)
def _sift_worst(r: np.ndarray, heap: np.ndarray, size: int, x: int) -> None:
    """Put ``x`` at the root of ``heap[:size]`` (worst on top) and sift it down."""
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and _worse(r, heap[c + 1], heap[c]):
            c += 1
        if not _worse(r, heap[c], x):
            break
        heap[pos] = heap[c]
        pos = c
    heap[pos] = x


# --------------------------------------------------------------------------- constraints
# The per-request business rules of `divrec.data.constraints` inside the greedy kernels.
# Arrays (position space, built by `resolve_batch`): ``cact (B,)`` requests with count /
# pin / share rules; ``ccat (B, N)`` compact category code of each candidate (-1: none);
# ``cmin``, ``cmax`` ``(B, C)`` minimum / maximum counts; ``cpin (B, k)`` candidate
# position pinned at each output slot (-1: none); ``cprot (B, N)`` protected-group flags;
# ``cfloor (B, k + 1)`` minimum protected count of every prefix length. A request without
# rules never reads them (its loop is the unconstrained one, unchanged).


@njit(cache=True, nogil=True)
def con_setup(
    kb: int,
    pins: np.ndarray,
    prot: np.ndarray,
    floor: np.ndarray,
    avail: np.ndarray,
    ccat: np.ndarray,
    cmax: np.ndarray,
    plist: np.ndarray,
    gsl: np.ndarray,
    rneed: np.ndarray,
    avc: np.ndarray,
    st: np.ndarray,
) -> int:
    """Per-request set-up: the pinned positions in slot order (``plist``), ``gsl[p]`` the
    greedy (non-pinned) slots among the first ``p`` and ``rneed[p]`` the protected items
    the greedy picks must bring to the first ``p`` slots (``p = 0 … kb``); ``avc[2u + π]``
    the available candidates of type ``(u, π)`` (``u = c + 1`` for the compact category
    ``c``, 0 for none; ``π`` protected); ``st = [g, x, T, npins]`` with ``g = x = 0`` and
    ``T`` the reachable list length: ``min(kb, npins + what the maximums let the greedy
    add)`` (a shorter list is no violation, and the share floors of its missing prefixes
    do not apply). Returns the number of pins."""
    npins = 0
    for s in range(pins.shape[0]):
        if pins[s] >= 0:
            plist[npins] = pins[s]
            npins += 1
    for u in range(avc.shape[0]):
        avc[u] = 0
    for i in range(avail.shape[0]):
        if avail[i]:
            avc[2 * (ccat[i] + 1) + (1 if prot[i] else 0)] += 1
    # what the greedy can add once the pins are in: per category the room below its
    # maximum, at most its candidates (the pins among them taken out)
    cap = avc[0] + avc[1]
    for u in range(npins):
        if ccat[plist[u]] < 0:
            cap -= 1
    for c in range(cmax.shape[0]):
        pc = 0
        for u in range(npins):
            if ccat[plist[u]] == c:
                pc += 1
        room = min(cmax[c] - pc, avc[2 * c + 2] + avc[2 * c + 3] - pc)
        if room > 0:
            cap += room
    st[0] = 0
    st[1] = 0
    st[2] = min(kb, npins + cap)
    st[3] = npins
    g = 0
    pp = 0
    gsl[0] = 0
    rneed[0] = 0
    for p in range(1, kb + 1):
        s = p - 1
        if s < pins.shape[0] and pins[s] >= 0:
            if prot[pins[s]]:
                pp += 1
        else:
            g += 1
        gsl[p] = g
        rneed[p] = floor[p] - pp if p < floor.shape[0] else 0
    return npins


@njit(cache=True, nogil=True)
def _con_term(u: int, take: bool, p0: int, cmin, cmax, cnt, avc) -> tuple:
    """Category ``u``'s part of the completion bounds of :func:`con_eligible` (``take``:
    after one more pick of type ``(u, p0)``): ``(lo, ub, most protected at lo, protected
    room above lo, lo > ub)``, with ``lo`` its unmet minimum, ``ub`` the room below its
    maximum (at most its candidates left; ``u = 0``: the uncounted candidates)."""
    a0 = avc[2 * u]
    a1 = avc[2 * u + 1]
    if u == 0:
        lo = 0
        hi = a0 + a1
    else:
        lo = cmin[u - 1] - cnt[u - 1]
        hi = cmax[u - 1] - cnt[u - 1]
    if take:
        lo -= 1
        hi -= 1
        if p0 == 1:
            a1 -= 1
        else:
            a0 -= 1
    lo = max(lo, 0)
    ub = max(min(hi, a0 + a1), 0)
    return lo, ub, min(lo, a1), max(min(ub, a1) - lo, 0), lo > ub


@njit(cache=True, nogil=True)
def con_eligible(
    avail: np.ndarray,
    ccat: np.ndarray,
    cmin: np.ndarray,
    cmax: np.ndarray,
    cnt: np.ndarray,
    prot: np.ndarray,
    st: np.ndarray,
    gsl: np.ndarray,
    rneed: np.ndarray,
    avc: np.ndarray,
    tok: np.ndarray,
    ok: np.ndarray,
) -> int:
    """``ok[i]``: ``avail[i]`` and allowed by the rules at this greedy step; returns how many.

    A candidate is eligible when, after taking it, the rules can all still be met together
    in the slots left: its category is below its maximum, and some completion of the list
    to its reachable length ``T`` meets every unmet minimum and the protected floor of
    every later prefix within the maximums and the candidates left (decided once per
    candidate type: compact category × protected). Candidates of one
    type are interchangeable for the rules, so the check is exact: a feasible request
    never loses feasibility (the greedy's lists satisfy every rule whenever some list
    does). When no candidate keeps the request feasible (an infeasible request), the
    share rule is dropped and the minimums are met as far as they can be: when the unmet
    minimum units that still have candidates fill the slots left, only candidates of
    unmet categories are eligible (the list then breaks a rule: the caller's check
    reports it); the maximums are never relaxed (a shorter list).
    ``st = [greedy picks so far, protected greedy picks so far, T, pins]``; ``avc``: the
    available candidates per type (:func:`con_setup`, kept by :func:`con_pick`); ``tok``:
    ``(avc.size,)`` work array.
    """
    nc = cnt.shape[0]
    g1 = st[0] + 1
    x = st[1]
    tlen = st[2]
    left = tlen - st[3] - st[0]  # greedy picks still to make, this one included
    # the protected floors of the prefixes still open, for a pick that is / is not
    # protected: the further protected picks needed, and whether the slots suffice
    need0 = 0
    need1 = 0
    room0 = True
    room1 = True
    for p in range(1, tlen + 1):
        gp = gsl[p]
        if gp >= g1:
            d = rneed[p] - x
            if d > need0:
                need0 = d
            if d > gp - g1:
                room0 = False
            if d - 1 > need1:
                need1 = d - 1
            if d - 1 > gp - g1:
                room1 = False
    # Per category u the further picks y_u lie in [lo_u, ub_u]; they must sum to
    # r = min(picks left after this one, Σ ub) (the list is as long as the maximums let
    # it be); at most min(y_u, a1_u) of them are protected (a1: protected candidates
    # left), so the most protected picks are Σ min(lo_u, a1_u) plus the spare picks
    # r − Σ lo spent on protected room first (placed first, they serve every prefix).
    # The sums once, then per type only its category's term changes: O(C) per step.
    slo = 0
    sub = 0
    sbase = 0
    spcap = 0
    sbad = 0
    for u in range(nc + 1):
        lo, ub, base, pcap, bad = _con_term(u, False, 0, cmin, cmax, cnt, avc)
        slo += lo
        sub += ub
        sbase += base
        spcap += pcap
        sbad += 1 if bad else 0
    m = 0
    for u in range(nc + 1):
        under = u == 0 or cnt[u - 1] < cmax[u - 1]
        lo, ub, base, pcap, bad = _con_term(u, False, 0, cmin, cmax, cnt, avc)
        for p0 in range(2):
            e = under and avc[2 * u + p0] > 0 and (room1 if p0 == 1 else room0)
            if e:
                lo1, ub1, base1, pcap1, bad1 = _con_term(u, True, p0, cmin, cmax, cnt, avc)
                nbad = sbad - (1 if bad else 0) + (1 if bad1 else 0)
                tlo = slo - lo + lo1
                r = min(left - 1, sub - ub + ub1)
                most = sbase - base + base1 + min(r - tlo, spcap - pcap + pcap1)
                e = nbad == 0 and tlo <= r and most >= (need1 if p0 == 1 else need0)
            tok[2 * u + p0] = 1 if e else 0
    for i in range(avail.shape[0]):
        e = avail[i] and tok[2 * (ccat[i] + 1) + (1 if prot[i] else 0)] == 1
        ok[i] = e
        if e:
            m += 1
    if m > 0:
        return m
    # infeasible from here: no share rule, the minimums as far as they can be met
    reach = 0
    for c in range(nc):
        lo = cmin[c] - cnt[c]
        if lo > 0:
            reach += min(lo, avc[2 * c + 2] + avc[2 * c + 3])
    only_unmet = reach > 0 and reach >= left
    for i in range(avail.shape[0]):
        e = avail[i]
        if e:
            c = ccat[i]
            if c >= 0 and cnt[c] >= cmax[c]:
                e = False
            elif only_unmet and (c < 0 or cnt[c] >= cmin[c]):
                e = False
        ok[i] = e
        if e:
            m += 1
    return m


@njit(cache=True, nogil=True)
def con_pick(
    j: int,
    greedy: bool,
    ccat: np.ndarray,
    cnt: np.ndarray,
    prot: np.ndarray,
    st: np.ndarray,
    avc: np.ndarray,
) -> None:
    """Count the pick ``j`` (its category and type; a greedy pick also in ``st``)."""
    c = ccat[j]
    if c >= 0:
        cnt[c] += 1
    avc[2 * (c + 1) + (1 if prot[j] else 0)] -= 1
    if greedy:
        st[0] += 1
        if prot[j]:
            st[1] += 1


@njit(cache=True, nogil=True)
def con_place(out: np.ndarray, picks: int, npins: int, pins: np.ndarray, tmp: np.ndarray) -> int:
    """Reorder ``out[:picks]`` (pins first, then the greedy picks) into the output order:
    each pin at its slot, the greedy picks in the other slots in order; holes left by a
    short list are closed up. Returns the list length (``picks``)."""
    for s in range(picks):
        tmp[s] = -1
    late = 0
    for s in range(pins.shape[0]):
        if pins[s] >= 0 and s >= picks:
            late += 1
    for s in range(min(picks, pins.shape[0])):
        if pins[s] >= 0:
            tmp[s] = pins[s]
    gi = npins
    for s in range(picks):
        if tmp[s] < 0 and gi < picks:
            tmp[s] = out[gi]
            gi += 1
    # pins beyond the list's length (a short list): in the slots still free, at the end
    for s in range(pins.shape[0]):
        if pins[s] >= 0 and s >= picks:
            for u in range(picks):
                if tmp[u] < 0:
                    tmp[u] = pins[s]
                    break
    w = 0
    for s in range(picks):
        if tmp[s] >= 0:
            out[w] = tmp[s]
            w += 1
    for s in range(w, out.shape[0]):
        out[s] = -1
    return w


@njit(cache=True, nogil=True)
def _tie_argmax(score: np.ndarray, ok: np.ndarray, scale: float) -> int:
    """Tolerance-aware argmax of ``score`` over ``ok`` (lowest position on ties; -1: none)."""
    best = _NEG_INF
    jbest = -1
    first = -1
    for i in range(score.shape[0]):
        if ok[i]:
            if first < 0:
                first = i
            if score[i] > best:
                best = score[i]
                jbest = i
    return _resolve_tie(score, ok, best, jbest, first, scale)


@njit(cache=True, nogil=True)
def _exact_argmax(key: np.ndarray, ok: np.ndarray) -> int:
    """The first ``ok`` position of the largest ``key`` (exact; -1: none)."""
    j = -1
    bestk = _NEG_INF
    for i in range(key.shape[0]):
        if ok[i] and (j < 0 or key[i] > bestk):
            j = i
            bestk = key[i]
    return j


# --------------------------------------------------------------------------- penalized
@njit(cache=True, nogil=True)
def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    ex = math.exp(x)
    return ex / (1.0 + ex)


@njit(cache=True, nogil=True)
def _penalize(
    sim: np.ndarray, acc: np.ndarray, score: np.ndarray, base: np.ndarray, ok: np.ndarray,
    c: float, inv_t: float, agg_mean: bool, seen: float, inv: np.ndarray, inv_j: float,
    scaled: bool,
) -> tuple[float, float, int, int]:  # fmt: skip
    """One step of :func:`penalized_greedy_batch` over the candidates, in one pass.

    Folds the new similarity row ``sim`` (float32 or float64, widened as read; with
    ``scaled`` the raw dot products, turned into cosines as ``(sim_i · inv_i) · inv_j``) into
    ``acc`` (sum or max), writes ``score = base − c · agg`` and finds the exact argmax over
    ``ok`` (lowest position on ties). Returns ``(max(seen, max |sim|), best, jbest, first)``
    for :func:`_resolve_tie`.
    """
    mx = seen
    best = _NEG_INF
    jbest = -1
    first = -1
    for i in range(sim.shape[0]):
        s = np.float64(sim[i])
        if scaled:
            s = (s * inv[i]) * inv_j
        a = abs(s)
        mx = a if a > mx else mx
        if agg_mean:
            h = acc[i] + s
            acc[i] = h
            sc = base[i] - c * (h * inv_t) if c != 0.0 else base[i]
        else:
            h = acc[i]
            h = s if s > h else h
            acc[i] = h
            sc = base[i] - c * h if c != 0.0 else base[i]
        score[i] = sc
        if ok[i]:
            if first < 0:
                first = i
            if sc > best:
                best = sc
                jbest = i
    return mx, best, jbest, first


@njit(cache=True, nogil=True)
def penalized_greedy_batch(
    vectors: np.ndarray,
    matrix: np.ndarray,
    mode: int,
    valid: np.ndarray,
    base: np.ndarray,
    first_key: np.ndarray,
    k: int,
    coef: np.ndarray,
    agg_mean: bool,
    out: np.ndarray,
    bad: np.ndarray,
    fs: np.ndarray,
    bools: np.ndarray,
    wbuf: np.ndarray,
    con: bool,
    cact: np.ndarray,
    ccat: np.ndarray,
    cmin: np.ndarray,
    cmax: np.ndarray,
    cpin: np.ndarray,
    cprot: np.ndarray,
    cfloor: np.ndarray,
    clen: np.ndarray,
) -> None:
    """Greedy ``argmax_{i ∉ S} base_i − coef_b · agg_{j∈S} sim(i, j)`` for every request.

    The first pick is the exact argmax of ``first_key`` (lowest position on ties); later
    picks use the tolerance-aware argmax with ``scale = coef_b · max |sim|`` seen so far.
    Similarity rows are one sweep over the feature-major vectors (:func:`_accumulate`),
    kept in ``wbuf``'s dtype: float32 halves the bytes every step streams (the products
    and sums stay float64).

    Args:
        vectors: ``(B, N, d)`` item vectors (modes 0 and 2) or ``(B, N, 0)``.
        matrix: ``(B, N, N)`` similarities (mode 1) or ``(B, 0, 0)``.
        mode: 0: cosine of ``vectors`` (normalized here); 1: ``matrix`` rows; 2:
            ``sigmoid(x_i · x_j)`` of the raw ``vectors`` (CDM Eq. 3).
        valid: ``(B, N)`` selectable positions.
        base: ``(B, N)`` static scores.
        first_key: ``(B, N)`` first-pick scores.
        k: list length.
        coef: ``(B,)`` penalty weight of every request (the diversity knob per request).
        agg_mean: mean (True) or max (False) aggregation over the selected items.
        out: ``(B, k)`` int64 output, pre-filled with -1.
        bad: ``(B,)`` bool output: request with a non-finite valid vector (mode 0; not run).
        fs, bools: :func:`scratch` arrays of :func:`penalized_scratch_sizes` (any content).
        wbuf: :func:`work_matrix_buffer` of the work matrix's dtype (any content).
        con: some request has rules (the ``c*`` arrays, see the constraints section);
            ``clen`` ``(B,)`` int64 output: the list length of each constrained request.
    """
    bsz, n = valid.shape
    d = vectors.shape[2]
    f32 = wbuf.itemsize == 4  # the float32 path: float32 sweeps, float32 tie tolerance
    tmul = F32_TIE if f32 else 1.0
    # squared norms between which raw dot products stay normal numbers in the work dtype
    sq_lo, sq_hi = (1e-30, 1e37) if f32 else (1e-280, 1e300)
    ut, wpos = _carve(wbuf, 0, d, n)  # feature-major (raw or normalized) vectors
    w2, _ = _carve(wbuf, wpos, 2, max(n, d, 1))
    sim_w = w2[0, :n]  # the float32 path's similarity row and query (float32 multiply-adds)
    q_w = w2[1, :d]
    fw, pos = _carve(fs, 0, 4, n)  # rows swept with SIMD loads start on cache lines
    sq = fw[0, :n]
    sim = fw[1, :n]
    acc = fw[2, :n]
    score = fw[3, :n]
    rows, pos = _carve(fs, pos, 1, max(d, 1))
    q = rows[0]
    avail = bools[:n]
    ok = bools[n : 2 * n]
    for b in range(bsz):
        nvalid = 0
        for i in range(n):
            avail[i] = valid[b, i]
            if avail[i]:
                nvalid += 1
        kb = min(k, nvalid)
        cb = con and cact[b]
        if cb:
            clen[b] = 0
        if kb == 0:
            continue
        # cosine (mode 0): the raw vectors and their inverse norms (in ``sq``), the similarity
        # row scaled as it is read (one pass over the vectors saved); a squared norm outside
        # [sq_lo, sq_hi] (or not finite) takes the normalizing load (rescaled), scale 1
        scaled = False
        if mode == 2 and not _load_transposed(vectors[b], avail, False, ut, sq, acc, False):
            bad[b] = True
        elif mode == 0:
            _load_transposed(vectors[b], avail, False, ut, sq, acc, True)
            scaled = True
            for i in range(n):
                ss = sq[i]
                if ss == 0.0:
                    continue
                if not sq_lo <= ss <= sq_hi:  # raw dot products could under- or overflow
                    scaled = False
                    break
                sq[i] = 1.0 / math.sqrt(ss)
            if not scaled:
                if _load_transposed(vectors[b], avail, True, ut, sq, acc, False):
                    for i in range(n):
                        sq[i] = 1.0
                else:
                    bad[b] = True
        for i in range(n):
            acc[i] = 0.0 if agg_mean else _NEG_INF
        if bad[b]:
            continue
        c = coef[b]
        okm = avail
        npins = 0
        if cb:  # ---- rules: pins first, then eligible candidates only
            okm = ok
            cnt = np.zeros(cmin.shape[1], dtype=np.int64)
            cst = np.zeros(4, dtype=np.int64)
            plist = np.empty(k, dtype=np.int64)
            gsl = np.empty(kb + 1, dtype=np.int64)
            rneed = np.empty(kb + 1, dtype=np.int64)
            avc = np.zeros(2 * cmin.shape[1] + 2, dtype=np.int64)
            tok = np.zeros(2 * cmin.shape[1] + 2, dtype=np.int64)
            npins = con_setup(kb, cpin[b], cprot[b], cfloor[b], avail, ccat[b], cmax[b], plist,
                              gsl, rneed, avc, cst)  # fmt: skip
            if npins > 0:
                j = plist[0]
            else:
                con_eligible(avail, ccat[b], cmin[b], cmax[b], cnt, cprot[b], cst, gsl, rneed,
                             avc, tok, ok)  # fmt: skip
                j = _exact_argmax(first_key[b], ok)
        else:
            j = -1
            bestk = _NEG_INF
            for i in range(n):
                if avail[i] and (j < 0 or first_key[b, i] > bestk):
                    j = i
                    bestk = first_key[b, i]
        seen = 0.0
        picks = 0
        for t in range(kb):
            if j < 0:
                break
            out[b, t] = j
            picks += 1
            avail[j] = False
            if cb:
                con_pick(j, t >= npins, ccat[b], cnt, cprot[b], cst, avc)
                if t + 1 < kb and t + 1 >= npins:
                    con_eligible(avail, ccat[b], cmin[b], cmax[b], cnt, cprot[b], cst, gsl, rneed,
                                 avc, tok, ok)  # fmt: skip
            if t + 1 >= kb:
                break
            if mode == 1:
                for i in range(n):
                    sim[i] = matrix[b, j, i] if valid[b, i] else 0.0
            elif f32:  # one float32 sweep (16 lanes, half the bytes), widened when read
                for f in range(d):
                    q_w[f] = ut[f, j]
                for i in range(n):
                    sim_w[i] = 0.0
                _accumulate(sim_w, ut, q_w, d, n)
                if mode == 2:
                    for i in range(n):
                        sim[i] = _sigmoid(sim_w[i])
            else:
                for f in range(d):
                    q[f] = ut[f, j]
                for i in range(n):
                    sim[i] = 0.0
                _accumulate(sim, ut, q, d, n)
                if mode == 2:
                    for i in range(n):
                        sim[i] = _sigmoid(sim[i])
            # one pass per candidate: the penalty, the score and the argmax over the eligible
            # ones (the same arithmetic for every candidate), then the tie rule
            src_w = f32 and mode == 0  # the float32 row, widened as it is read
            inv_t = 1.0 / (t + 1)
            if src_w:
                seen, best, jbest, first = _penalize(
                    sim_w, acc, score, base[b], okm, c, inv_t, agg_mean, seen, sq, sq[j], scaled
                )
            else:
                seen, best, jbest, first = _penalize(
                    sim, acc, score, base[b], okm, c, inv_t, agg_mean, seen, sq, sq[j], scaled
                )
            j = _resolve_tie(score, okm, best, jbest, first, c * seen * tmul)
            if cb and t + 1 < npins:
                j = plist[t + 1]
        if cb:
            clen[b] = con_place(out[b], picks, npins, cpin[b], plist)


# --------------------------------------------------------------------------- SSD
def ssd_scratch_sizes(n: int, d: int, k: int) -> tuple[int, int, int]:
    """Sizes of the :func:`scratch` arrays :func:`ssd_greedy_batch` carves."""
    return 5 * _pad8(n) + (k + 2) * _pad8(max(d, 1)) + _pad8(max(k, 1)) + 4 * 8, 0, 2 * n


@njit(cache=True, nogil=True)
def _ssd_add_basis(
    ut: np.ndarray, j: int, sq: np.ndarray, basis: np.ndarray, nb: int, res: np.ndarray,
    coefs: np.ndarray, twice: bool,
) -> int:  # fmt: skip
    """Append the normalized residual of item ``j`` (column ``j`` of ``ut``) against
    ``basis[:nb]`` (Gram–Schmidt, twice when ``twice``); returns the new basis size
    (unchanged when the residual is at most ``1e-10 ‖v_j‖``: ``v_j`` is in the span)."""
    d = ut.shape[0]
    for f in range(d):
        res[f] = ut[f, j]
    for _ in range(2 if twice else 1):
        for r_ in range(nb):
            h = 0.0
            for f in range(d):
                h += basis[r_, f] * res[f]
            coefs[r_] = h
            if not twice:  # modified Gram-Schmidt: project out one direction at a time
                for f in range(d):
                    res[f] -= h * basis[r_, f]
        if twice:
            for r_ in range(nb):
                h = coefs[r_]
                for f in range(d):
                    res[f] -= h * basis[r_, f]
    nr = 0.0
    for f in range(d):
        nr += res[f] * res[f]
    nr = math.sqrt(nr)
    if not nr > 1e-10 * max(math.sqrt(sq[j]), 1e-300):
        return nb
    for f in range(d):
        basis[nb, f] = res[f] / nr
    return nb + 1


#: a squared residual below this fraction of the squared norm is recomputed by projection
SSD_RECOMPUTE = 1e-6


@njit(cache=True, nogil=True)
def _ssd_refresh(
    ut: np.ndarray, basis: np.ndarray, nb: int, sq: np.ndarray, d2: np.ndarray,
    avail: np.ndarray, res: np.ndarray,
) -> None:  # fmt: skip
    """Recompute ``d2[i] = ‖v_i − B Bᵀ v_i‖²`` (projected out twice) for the available
    items whose running ``‖v_i‖² − Σ_s ⟨b_s, v_i⟩²`` fell below ``SSD_RECOMPUTE ‖v_i‖²``.

    Near the span the subtraction cancels (its rounding, ~``1e-16 ‖v_i‖²``, would become
    ~``1e-8`` after the square root and decide ties); the explicit residual is accurate to
    ~``1e-16 ‖v_i‖``, like the numpy reference's residual vectors.
    """
    d = ut.shape[0]
    if nb >= d:  # the basis spans the space: every residual is 0
        for i in range(d2.shape[0]):
            d2[i] = 0.0
        return
    for i in range(d2.shape[0]):
        if not avail[i] or d2[i] >= SSD_RECOMPUTE * sq[i]:
            continue
        for f in range(d):
            res[f] = ut[f, i]
        for _ in range(2):
            for r_ in range(nb):
                h = 0.0
                for f in range(d):
                    h += basis[r_, f] * res[f]
                for f in range(d):
                    res[f] -= h * basis[r_, f]
        x = 0.0
        for f in range(d):
            x += res[f] * res[f]
        d2[i] = x


@njit(cache=True, nogil=True)
def ssd_greedy_batch(
    vectors: np.ndarray,
    valid: np.ndarray,
    rel: np.ndarray,
    minmax: bool,
    gamma: np.ndarray,
    k: int,
    window: int,
    normalize: bool,
    out: np.ndarray,
    bad: np.ndarray,
    fs: np.ndarray,
    bools: np.ndarray,
    wbuf: np.ndarray,
    con: bool,
    cact: np.ndarray,
    ccat: np.ndarray,
    cmin: np.ndarray,
    cmax: np.ndarray,
    cpin: np.ndarray,
    cprot: np.ndarray,
    cfloor: np.ndarray,
    clen: np.ndarray,
) -> None:
    """Greedy SSD (Huang et al., KDD 2021) ``argmax_{i ∉ S} r_i + γ_b ‖v_i^⊥‖`` per request.

    ``‖v_i^⊥‖² = ‖v_i‖² − Σ_s ⟨b_s, v_i⟩²`` with ``b_s`` an orthonormal basis of the
    window's picks (Gram–Schmidt of the residuals, twice): while the window grows, one
    feature-major sweep per step (:func:`_accumulate`, ``O(N d)``) brings every squared
    residual up to date; once it slides, the basis of the last ``w − 1`` picks is rebuilt
    (modified Gram–Schmidt, as :func:`divrec.rerank.ssd.gram_schmidt`) and the residuals
    recomputed, ``O(N d w)``. Tolerance-aware argmax with ``scale = γ · max ‖v_i‖``.

    Args:
        vectors: ``(B, N, d)`` item vectors (float32 or float64).
        valid: ``(B, N)`` selectable positions.
        rel: ``(B, N)`` relevance as given (scaled here; checked finite).
        minmax: min-max scale each request's relevance.
        gamma: ``(B,)`` diversity weights ``γ ≥ 0``.
        k: list length.
        window: window size ``w`` (0: all picks).
        normalize: L2-normalize the vectors first.
        out: ``(B, k)`` int64 output, pre-filled with -1.
        bad: ``(B,)`` int64 output: 1 a non-finite valid vector, 2 a non-finite valid
            relevance (the request is not run).
        fs, bools: :func:`scratch` arrays of :func:`ssd_scratch_sizes`; wbuf:
            :func:`work_matrix_buffer` of the work matrix's dtype.
        con, cact, ccat, cmin, cmax, cpin, cprot, cfloor, clen: the rules, as in
            :func:`penalized_greedy_batch`.
    """
    bsz, n = valid.shape
    d = vectors.shape[2]
    ut, _ = _carve(wbuf, 0, d, n)
    f32 = wbuf.itemsize == 4  # the float32 path: float32 work matrix and tie tolerance
    tmul = F32_TIE if f32 else 1.0
    fw, pos = _carve(fs, 0, 5, n)
    sq = fw[0, :n]
    d2 = fw[1, :n]
    acc = fw[2, :n]
    score = fw[3, :n]
    relb = fw[4, :n]
    small, pos = _carve(fs, pos, k + 2, max(d, 1))
    basis = small[:k]
    res = small[k]
    rows, pos = _carve(fs, pos, 1, max(k, 1))
    coefs = rows[0]
    avail = bools[:n]
    ok = bools[n : 2 * n]
    for b in range(bsz):
        nvalid = 0
        for i in range(n):
            avail[i] = valid[b, i]
            if avail[i]:
                nvalid += 1
        kb = min(k, nvalid)
        cb = con and cact[b]
        if cb:
            clen[b] = 0
        if kb == 0:
            continue
        rtop, _ = _scaled_relevance(rel[b], avail, minmax, relb)
        if not math.isfinite(rtop):
            bad[b] = 2
            continue
        if not _load_transposed(vectors[b], avail, normalize, ut, sq, acc):
            bad[b] = 1
            continue
        vmax = 0.0
        for i in range(n):
            if avail[i]:
                if not math.isfinite(sq[i]):
                    bad[b] = 1
                vmax = max(vmax, sq[i])
            d2[i] = sq[i]
        if bad[b]:
            continue
        g = gamma[b]
        scale = g * math.sqrt(vmax) * tmul
        for i in range(n):
            score[i] = relb[i] + g * math.sqrt(max(d2[i], 0.0))
        okm = avail
        npins = 0
        if cb:
            okm = ok
            cnt = np.zeros(cmin.shape[1], dtype=np.int64)
            cst = np.zeros(4, dtype=np.int64)
            plist = np.empty(k, dtype=np.int64)
            gsl = np.empty(kb + 1, dtype=np.int64)
            rneed = np.empty(kb + 1, dtype=np.int64)
            avc = np.zeros(2 * cmin.shape[1] + 2, dtype=np.int64)
            tok = np.zeros(2 * cmin.shape[1] + 2, dtype=np.int64)
            npins = con_setup(kb, cpin[b], cprot[b], cfloor[b], avail, ccat[b], cmax[b], plist,
                              gsl, rneed, avc, cst)  # fmt: skip
            if npins > 0:
                j = plist[0]
            else:
                con_eligible(avail, ccat[b], cmin[b], cmax[b], cnt, cprot[b], cst, gsl, rneed,
                             avc, tok, ok)  # fmt: skip
                j = _tie_argmax(score, ok, scale)
        else:
            j = _tie_argmax(score, avail, scale)
        nb = 0
        picks = 0
        for t in range(kb):
            if j < 0:
                break
            out[b, t] = j
            picks += 1
            avail[j] = False
            if cb:
                con_pick(j, t >= npins, ccat[b], cnt, cprot[b], cst, avc)
                if t + 1 < kb and t + 1 >= npins:
                    con_eligible(avail, ccat[b], cmin[b], cmax[b], cnt, cprot[b], cst, gsl, rneed,
                                 avc, tok, ok)  # fmt: skip
            if t + 1 >= kb:
                break
            if window == 0 or picks < window:  # the window grew: one more direction
                nb0 = nb
                nb = _ssd_add_basis(ut, j, sq, basis, nb, res, coefs, True)
                if nb > nb0:
                    for i in range(n):
                        acc[i] = 0.0
                    _accumulate(acc, ut, basis[nb0], d, n)
                    for i in range(n):
                        d2[i] -= acc[i] * acc[i]
                    _ssd_refresh(ut, basis, nb, sq, d2, avail, res)
            else:  # the oldest pick left the window: rebuild from the last w - 1 picks
                nb = 0
                for u in range(picks - (window - 1), picks):
                    nb = _ssd_add_basis(ut, out[b, u], sq, basis, nb, res, coefs, False)
                for i in range(n):
                    d2[i] = sq[i]
                for r_ in range(nb):
                    for i in range(n):
                        acc[i] = 0.0
                    _accumulate(acc, ut, basis[r_], d, n)
                    for i in range(n):
                        d2[i] -= acc[i] * acc[i]
                _ssd_refresh(ut, basis, nb, sq, d2, avail, res)
            for i in range(n):
                score[i] = relb[i] + g * math.sqrt(max(d2[i], 0.0))
            j = _tie_argmax(score, okm, scale)
            if cb and t + 1 < npins:
                j = plist[t + 1]
        if cb:
            clen[b] = con_place(out[b], picks, npins, cpin[b], plist)


# --------------------------------------------------------------------------- lazy DPP
@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _dot_rows(a: np.ndarray, ia: int, b: np.ndarray, ib: int, n: int) -> float:
    """``Σ_{f < n} a[ia, f] · b[ib, f]`` (vectorized: the sum is reassociated, always in the
    same way for a given ``n``, so an item's roundings do not depend on its position)."""
    s = 0.0
    ra = a[ia]
    rb = b[ib]
    for f in range(n):
        s += np.float64(ra[f]) * rb[f]  # float32 rows: converted (exactly) first
    return s


@njit(cache=True, nogil=True)
def _sift_down(key: np.ndarray, item: np.ndarray, size: int, pos: int) -> None:
    """Restore the max-heap order of ``key[:size]`` below ``pos``."""
    kx = key[pos]
    ix = item[pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and key[c + 1] > key[c]:
            c += 1
        if not key[c] > kx:
            break
        key[pos] = key[c]
        item[pos] = item[c]
        pos = c
    key[pos] = kx
    item[pos] = ix


@njit(cache=True, nogil=True)
def _heap_push(key: np.ndarray, item: np.ndarray, size: int, kx: float, ix: int) -> int:
    """Push ``(kx, ix)`` on the max-heap ``key[:size]``; returns the new size."""
    pos = size
    while pos > 0:
        p = (pos - 1) // 2
        if not kx > key[p]:
            break
        key[pos] = key[p]
        item[pos] = item[p]
        pos = p
    key[pos] = kx
    item[pos] = ix
    return size + 1


@njit(cache=True, nogil=True)
def _project_out(
    basis: np.ndarray, vectors: np.ndarray, i: int, lv: int, t: int, s: float, x: float, thr: float
) -> tuple[float, int]:
    """``x − Σ_{lv ≤ l < t} (s ⟨b_l, v_i⟩)²``, stopping once ``x ≤ thr``; returns ``(x, l)``."""
    d = vectors.shape[1]
    while lv < t and x > thr:
        e = s * _dot_rows(basis, lv, vectors, i, d)
        x -= e * e
        lv += 1
    return x, lv


@njit(cache=True, nogil=True)
def _out_of_reach(bound: float, best: float) -> bool:
    """Whether a score bounded by ``bound`` cannot come within the tie tolerance of ``best``.

    The margin is twice the tolerance plus ``1e-12`` relative, which absorbs the rounding
    of the bounds themselves.
    """
    return bound < best - 2.0 * TIE_RTOL * (abs(best) + 1.0) - 1e-12 * (abs(bound) + 1.0)


#: measured costs (this machine, d = 64) in units of one inner product ``⟨b_s, v_i⟩`` of a
#: lazy step: a sweep step per live candidate, the one-off transposition per candidate
SWEEP_COST = 0.6
TRANSPOSE_COST = 2.0


@njit(cache=True, nogil=True)
def _dpp_lazy_one(
    vectors: np.ndarray,
    valid: np.ndarray,
    rel: np.ndarray,
    w: float,
    rtop: float,
    kb: int,
    eps: float,
    out: np.ndarray,
    work: np.ndarray,
    vt: np.ndarray,
    fwork: np.ndarray,
    iwork: np.ndarray,
    live: np.ndarray,
    small: np.ndarray,
    coef: np.ndarray,
) -> int:
    """Lazy greedy DPP MAP of one request on the cosine kernel of ``vectors``.

    Picks the same items as the eager loop of :func:`dpp_greedy_batch` (Chen et al. 2018,
    Alg. 1) up to rounding: at every step, the tolerance-aware argmax over the eligible
    candidates of ``w (r_i − r_top) + log d_i²`` (``r_top``: the request's largest
    relevance, ``d_i²`` the Schur complement of ``i`` given the selected items).

    Schur complements by Gram–Schmidt: for the cosine kernel ``S = U Uᵀ`` (rows ``u_i =
    v_i / ‖v_i‖``), ``d_i² = ‖u_i‖² − Σ_s ⟨b_s, u_i⟩²`` with ``b_s`` an orthonormal basis of
    the selected vectors (``b_t`` = the normalized residual of the item picked at step
    ``t``, orthogonalized twice, ``O(t d)``); ``⟨b_t, u_i⟩`` is exactly the Cholesky entry
    ``e = (S_ji − ⟨c_j, c_i⟩) / d_j`` of WeChat Eq. 8, at ``O(d)`` per entry instead of
    ``O(d + t)``, and nothing per candidate is stored but ``d_i²``.

    Lazy evaluation (Minoux's accelerated greedy, applied to DPPs by Hemmi et al. 2022):
    ``d_i²`` never increases as items are selected, so a score evaluated at an earlier step
    bounds its current value from above. The candidates sit in a max-heap keyed by their
    last evaluated score; at every step the top of the heap is brought up to date (the
    missing ``⟨b_s, u_i⟩``) until no stale bound can reach the tie tolerance of the best
    up-to-date score. The winner is the lowest position within ``TIE_RTOL · (|best| + 1)``
    of the best among the up-to-date candidates: a function of the exact scores only,
    whatever was evaluated when. When the kernel runs out of directions (``k`` near
    ``d``) every candidate falls behind the best and a lazy step brings most of them up to
    date anyway; once the recent lazy steps cost more than sweeps would over the steps left
    (with the measured ``SWEEP_COST`` and ``TRANSPOSE_COST``) the request switches to
    sweeps: every live candidate is brought up to date, the vectors
    are transposed once into ``vt`` and every later step updates all live candidates by
    one feature-major sweep (:func:`_accumulate`, ``O(N d)``), without the heap; the
    logarithm is only taken where a candidate's last score, lowered by the bound
    ``log(x / x_last) ≤ x / x_last − 1`` of its decrease since, can still reach the best.

    Args:
        vectors: ``(N, d)`` raw vectors.
        valid: ``(N,)`` selectable positions.
        rel: ``(N,)`` scaled relevance.
        w: relevance weight ``2α ≥ 0``.
        rtop: the largest relevance over the valid positions (score reference).
        kb: number of items to pick (``≤`` number of valid positions).
        eps: relative eligibility threshold (``d_i² > eps``: ``max S_ii = 1``).
        out: ``(≥ kb,)`` int64 output.
        work: ``(2,)`` int64 output: inner products ``⟨b_s, u_i⟩`` computed, steps done
            by sweeps.
        vt: ``(d, ≥ N)`` work matrix (any content).
        fwork: ``(7, ≥ N)`` float64 work rows (any content).
        iwork: ``(3, ≥ N)`` int64 work rows (any content).
        live: ``(≥ N,)`` bool work array (any content).
        small: ``(≥ kb + 1, ≥ d)`` float64 work rows (any content).
        coef: ``(≥ kb,)`` float64 work array (any content).

    Returns:
        The number of items written to ``out``; ``-1`` when a valid vector holds a NaN or
        an infinity, ``-2`` when a squared norm overflows (the caller then runs the eager
        kernel, which rescales such vectors).
    """
    n, d = vectors.shape
    inv = fwork[0, :n]  # 1 / ‖v_i‖; 0: zero vector
    d2 = fwork[1, :n]
    ub = fwork[2, :n]  # last evaluated score: an upper bound of the current one
    hkey = fwork[3, :n]
    vsc = fwork[4, :n]
    acc = fwork[5, :n]
    lastx = fwork[6, :n]  # d_i^2 when ub[i] was evaluated
    level = iwork[0, :n]  # basis vectors accounted for in d2[i]
    hitem = iwork[1, :n]
    vis = iwork[2, :n]
    live = live[:n]  # not selected, possibly still eligible
    basis = small[:kb]  # whole rows: contiguous (the dot products over d vectorize)
    res = small[kb : kb + 1]
    work[0] = 0
    work[1] = 0
    for i in range(n):
        inv[i] = 0.0
        d2[i] = 0.0
        lastx[i] = 0.0
        level[i] = 0
        live[i] = False
    anyv = False
    for i in range(n):
        if valid[i]:
            ss = _dot_rows(vectors, i, vectors, i, d)
            if not math.isfinite(ss):
                for f in range(d):
                    if not math.isfinite(vectors[i, f]):
                        return -1
                return -2
            if ss > 0.0:
                x = 1.0 / math.sqrt(ss)
                inv[i] = x
                d2[i] = ss * x * x
                anyv = True
    if not anyv:
        return 0
    thr = eps  # max_i S_ii = 1 for the cosine kernel of non-zero vectors
    ub0 = 1e-9  # bounds log d_i^2 before the first evaluation (d_i^2 = 1 within ulps)
    size = 0
    for i in range(n):
        if inv[i] > 0.0 and d2[i] > thr:
            live[i] = True
            ub[i] = w * (rel[i] - rtop) + ub0
            hkey[size] = ub[i]
            hitem[size] = i
            size += 1
    for p in range(size // 2 - 1, -1, -1):
        _sift_down(hkey, hitem, size, p)
    nlive = size
    sweep = False
    ema = 0.0
    lead = -1  # sweeps: the live item with the best last score, evaluated first
    picks = 0
    for t in range(kb):
        nvis = 0
        best = _NEG_INF
        done = 0
        if sweep:  # every live item is at level t - 1: one sweep adds b_{t-1}
            work[1] += 1
            for i in range(n):
                acc[i] = 0.0
            _accumulate(acc, vt, basis[t - 1], d, n)
            for i in range(n):  # vectorized; non-live entries are never read again
                e = acc[i] * inv[i]
                d2[i] -= e * e
            done = nlive
        v = 0  # sweeps: the lead first (it sets the best), then every live item in order
        while True:
            # ---- next candidate
            if sweep:
                if v > n:
                    break
                i = lead if v == 0 else v - 1
                v += 1
                if not live[i] or (v > 1 and i == lead):
                    continue
                x = d2[i]
            else:  # the top of the heap, while its stale bound can reach the best
                if size == 0 or (nvis > 0 and _out_of_reach(hkey[0], best)):
                    break
                i = hitem[0]
                size -= 1
                if size > 0:
                    hkey[0] = hkey[size]
                    hitem[0] = hitem[size]
                    _sift_down(hkey, hitem, size, 0)
                x, lv = _project_out(basis, vectors, i, level[i], t, inv[i], d2[i], thr)
                done += lv - level[i]
                d2[i] = x
                level[i] = lv
            if not x > thr:
                live[i] = False  # never eligible again (d_i^2 does not increase)
                nlive -= 1
                continue
            if sweep and nvis > 0:
                # log(x / lastx) <= x / lastx - 1 bounds the current score without a log
                lx = lastx[i]  # 0: never evaluated
                if lx > 0.0 and _out_of_reach(ub[i] + (x / lx - 1.0), best):
                    continue  # (ub stays a bound)
            sc = w * (rel[i] - rtop) + math.log(x)
            ub[i] = sc
            lastx[i] = x
            vis[nvis] = i
            vsc[nvis] = sc
            nvis += 1
            best = max(best, sc)
        work[0] += done
        if nvis == 0:
            break  # nothing eligible: the kernel is exhausted
        cut = best - TIE_RTOL * (abs(best) + 1.0)
        j = n
        for v in range(nvis):
            if vsc[v] >= cut and vis[v] < j:
                j = vis[v]
        out[t] = j
        picks += 1
        live[j] = False
        nlive -= 1
        if t + 1 >= kb:
            break
        # ---- b_t: the residual of u_j against the basis, orthogonalized twice
        # (classical Gram-Schmidt, twice: as accurate as modified Gram-Schmidt)
        s = inv[j]
        for f in range(d):
            res[0, f] = vectors[j, f] * s
        for _ in range(2):
            for r_ in range(t):
                coef[r_] = _dot_rows(basis, r_, res, 0, d)
            for r_ in range(t):
                h = coef[r_]
                for f in range(d):
                    res[0, f] -= h * basis[r_, f]
        nr = math.sqrt(_dot_rows(res, 0, res, 0, d))
        ok = nr > 0.0 and math.isfinite(nr)
        for f in range(d):
            basis[t, f] = res[0, f] / nr if ok else 0.0
        if not sweep:
            for v in range(nvis):
                if vis[v] != j:
                    size = _heap_push(hkey, hitem, size, vsc[v], vis[v])
            ema = 0.5 * (ema + done)  # recent inner products per lazy step
            left = kb - 1 - t  # steps still to come
            if left > 0 and ema > SWEEP_COST * nlive:
                lag = 0  # inner products a switch has to catch up on
                for i in range(n):
                    if live[i]:
                        lag += t - level[i]
                sweep = left * (ema - SWEEP_COST * nlive) > lag + TRANSPOSE_COST * nlive
            if sweep:
                # ---- switch to sweeps: every live item up to level t, V^T once
                for i in range(n):
                    if live[i]:
                        x, lv = _project_out(basis, vectors, i, level[i], t, inv[i], d2[i], thr)
                        work[0] += lv - level[i]
                        d2[i] = x
                        level[i] = lv
                        if not x > thr:
                            live[i] = False
                            nlive -= 1
                _load_raw_transposed(vectors, live, vt)
        if sweep:
            lead = -1
            for v in range(nvis):
                i = vis[v]
                if i != j and live[i] and (lead < 0 or vsc[v] > ub[lead]):
                    lead = i
            if lead < 0:
                for i in range(n):
                    if live[i]:
                        lead = i
                        break
            if lead < 0:
                break  # no live candidate left
    return picks
