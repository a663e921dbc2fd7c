"""Compiled (numba) greedy kernels shared by the single-request and batched re-rankers.

One kernel per greedy scheme, always called on a batch: ``select`` runs it on a batch of
one request, so that ``select`` and ``select_batch`` execute the very same machine code
and agree bit for bit. Requests are processed one after the other (the working set of a
request, ``O(N (d + k))`` floats, stays in cache for its whole greedy), never as a wide
vectorized batch that would stream every request's vectors on every step.

Tie rule (see :mod:`divrec.rerank._base`): at every step the candidates whose score is
within ``TIE_RTOL · (|best| + scale)`` of the best score are tied and the lowest position
among them wins; ``scale`` bounds the magnitude of the terms that were added to form the
score (so that the rounding of those terms is absorbed). NaN scores never win; when no
finite score is left among the available candidates the lowest available position is
taken, so no input can produce a duplicate.

Layouts: ``vectors`` ``(B, N, d)`` are L2-normalized inside the kernel (float64); the
per-request work matrix of the DPP is item-major, ``W[i] = [u_i (d), c_i (k)]``, so that
the Cholesky update ``e_i = (u_j·u_i − ⟨c_j, c_i⟩) / d_j`` of Chen et al. (2018, Alg. 1;
WeChat Eq. 8) is one contiguous dot product of length ``d + t`` per candidate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: relative tolerance under which two scores are considered tied (documented in _base)
TIE_RTOL = 1e-9

_NEG_INF = -np.inf


@njit(cache=True, nogil=True, fastmath=False)
def _normalize_row(src: np.ndarray, dst: np.ndarray) -> float:
    """Write ``src / ‖src‖`` into ``dst`` (zeros for a zero row); return ``‖dst‖²``."""
    d = src.shape[0]
    ss = 0.0
    for f in range(d):
        ss += src[f] * src[f]
    if ss > 0.0 and math.isfinite(ss):
        nr = math.sqrt(ss)
        out = 0.0
        for f in range(d):
            x = src[f] / nr
            dst[f] = x
            out += x * x
        return out
    if ss > 0.0:  # overflow of the squared norm: rescale first
        mx = 0.0
        for f in range(d):
            mx = max(mx, abs(src[f]))
        ss = 0.0
        for f in range(d):
            ss += (src[f] / mx) ** 2
        nr = math.sqrt(ss)
        out = 0.0
        for f in range(d):
            x = (src[f] / mx) / nr
            dst[f] = x
            out += x * x
        return out
    for f in range(d):
        dst[f] = 0.0
    return 0.0


@njit(cache=True, nogil=True, fastmath=True)
def _dot(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """``Σ_{f<n} a_f b_f`` (contiguous, vectorized; same code for every caller)."""
    s = 0.0
    for f in range(n):
        s += a[f] * b[f]
    return s


@njit(cache=True, nogil=True)
def _pick(score: np.ndarray, ok: np.ndarray, n: int, scale: float) -> int:
    """Tolerance-aware argmax over ``ok`` positions (lowest position among the tied).

    Returns -1 when no position is ``ok``.
    """
    best = _NEG_INF
    first = -1
    for i in range(n):
        if ok[i]:
            if first < 0:
                first = i
            s = score[i]
            if s > best:
                best = s
    if first < 0:
        return -1
    if best == _NEG_INF:
        return first
    if best == np.inf:
        for i in range(n):
            if ok[i] and score[i] == np.inf:
                return i
    thr = best - TIE_RTOL * (abs(best) + scale)
    for i in range(n):
        if ok[i] and score[i] >= thr:
            return i
    return first  # unreachable: the best itself passes


# --------------------------------------------------------------------------- DPP
@njit(cache=True, nogil=True)
def dpp_greedy_batch(
    vectors: np.ndarray,
    matrix: np.ndarray,
    use_matrix: bool,
    valid: np.ndarray,
    rel: np.ndarray,
    weight: np.ndarray,
    active: np.ndarray,
    k: int,
    eps: float,
    window: int,
    out: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Fast greedy DPP MAP (Chen et al. 2018, Alg. 1 and 2) for every request.

    Per request ``b`` and step, picks the tolerance-aware argmax over eligible items of
    ``w_b (r_i − r_ref) + log d_i²`` where ``d_i²`` is the Schur complement of the
    similarity kernel ``S`` (WeChat Eq. 5 and 8 in log space) and ``r_ref`` the largest
    relevance among the eligible items (a per-step constant: it changes nothing but keeps
    the winning scores finite for any finite relevance). Eligible: available, valid and
    ``d_i² > eps · max_i S_ii`` (relative threshold).

    Args:
        vectors: ``(B, N, d)`` raw item vectors (cosine kernel; normalized here), or
            ``(B, N, 0)`` when ``use_matrix``.
        matrix: ``(B, N, N)`` kernels (row ``j`` = similarities of ``j``), or ``(B, 0, 0)``.
        use_matrix: read the kernel from ``matrix`` instead of ``vectors``.
        valid: ``(B, N)`` selectable positions.
        rel: ``(B, N)`` relevance (scaled), finite at valid positions.
        weight: ``(B,)`` finite ``w_b = 2 α_b ≥ 0`` (0: no relevance term).
        active: ``(B,)`` requests to run.
        k: list length.
        eps: relative eligibility threshold (``≥ 0``).
        window: sliding-window size (0: none).
        out: ``(B, k)`` int64 output, pre-filled with -1.
        counts: ``(B,)`` int64 output, number of greedy picks per request.
    """
    bsz, n = valid.shape
    d = 0 if use_matrix else vectors.shape[2]
    cap = k if window == 0 else min(window, k)
    cap = max(cap, 1)
    wk = np.zeros((n, d + cap))
    q = np.zeros(d + cap)
    d2 = np.zeros(n)
    score = np.full(n, _NEG_INF)
    ok = np.zeros(n, dtype=np.bool_)
    avail = np.zeros(n, dtype=np.bool_)
    win = np.zeros(cap, dtype=np.int64)
    rot_c = np.zeros(cap)
    rot_s = np.zeros(cap)
    for b in range(bsz):
        counts[b] = 0
        if not active[b]:
            continue
        nvalid = 0
        for i in range(n):
            avail[i] = valid[b, i]
            if avail[i]:
                nvalid += 1
        kb = min(k, nvalid)
        if kb == 0:
            continue
        maxdiag = 0.0
        for i in range(n):
            if not avail[i]:
                d2[i] = 0.0
                continue
            if use_matrix:
                d2[i] = matrix[b, i, i]
            else:
                d2[i] = _normalize_row(vectors[b, i], wk[i, :d])
            if d2[i] > maxdiag:
                maxdiag = d2[i]
        if not maxdiag > 0.0:
            continue
        thr = eps * maxdiag
        w = weight[b]
        m = 0
        for t in range(kb):
            # ---- choose
            rref = _NEG_INF
            for i in range(n):
                e_ok = avail[i] and d2[i] > thr
                ok[i] = e_ok
                if e_ok and w > 0.0 and rel[b, i] > rref:
                    rref = rel[b, i]
            any_ok = False
            for i in range(n):
                if ok[i]:
                    any_ok = True
                    s = math.log(d2[i])
                    if w > 0.0:
                        s += w * (rel[b, i] - rref)
                    score[i] = s
            if not any_ok:
                break
            j = _pick(score, ok, n, 1.0)
            out[b, t] = j
            counts[b] += 1
            avail[j] = False
            if t + 1 >= kb or window == 1:
                continue
            # ---- incremental Cholesky update (Eq. 8)
            dj = math.sqrt(d2[j])
            for f in range(d):
                q[f] = wk[j, f]
            for f in range(m):
                q[d + f] = -wk[j, d + f]
            for i in range(n):
                if not valid[b, i]:
                    continue
                if use_matrix:
                    e = (matrix[b, j, i] + _dot(wk[i], q[d:], m)) / dj
                else:
                    e = _dot(wk[i], q, d + m) / dj
                wk[i, d + m] = e
                d2[i] -= e * e
            win[m] = j
            m += 1
            if window > 0 and m >= window:
                # remove the oldest window item (Alg. 2): Givens rotations of the stored
                # c_i move coordinate 0 into the others; d_i² regains its component.
                for r_ in range(m - 1):
                    y = win[r_ + 1]
                    a = wk[y, d]
                    for rr in range(r_):
                        a = rot_c[rr] * a - rot_s[rr] * wk[y, d + 1 + rr]
                    p = wk[y, d + 1 + r_]
                    h = math.hypot(p, a)
                    if h > 0.0:
                        rot_c[r_] = p / h
                        rot_s[r_] = a / h
                    else:
                        rot_c[r_] = 1.0
                        rot_s[r_] = 0.0
                for i in range(n):
                    if not valid[b, i]:
                        continue
                    a = wk[i, d]
                    for r_ in range(m - 1):
                        old = wk[i, d + 1 + r_]
                        wk[i, d + r_] = rot_c[r_] * old + rot_s[r_] * a
                        a = rot_c[r_] * a - rot_s[r_] * old
                    wk[i, d + m - 1] = 0.0
                    d2[i] += a * a
                for r_ in range(m - 1):
                    win[r_] = win[r_ + 1]
                m -= 1


# --------------------------------------------------------------------------- penalized
@njit(cache=True, nogil=True)
def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    ex = math.exp(x)
    return ex / (1.0 + ex)


@njit(cache=True, nogil=True)
def penalized_greedy_batch(
    vectors: np.ndarray,
    matrix: np.ndarray,
    mode: int,
    valid: np.ndarray,
    base: np.ndarray,
    first_key: np.ndarray,
    k: int,
    coef: float,
    agg_mean: bool,
    out: np.ndarray,
) -> None:
    """Greedy ``argmax_{i ∉ S} base_i − coef · agg_{j∈S} sim(i, j)`` for every request.

    The first pick is the exact argmax of ``first_key`` (lowest position on ties); later
    picks use the tolerance-aware argmax with ``scale = coef · max |sim|`` seen so far.

    Args:
        vectors: ``(B, N, d)`` item vectors (modes 0 and 2) or ``(B, N, 0)``.
        matrix: ``(B, N, N)`` similarities (mode 1) or ``(B, 0, 0)``.
        mode: 0: cosine of ``vectors`` (normalized here); 1: ``matrix`` rows; 2:
            ``sigmoid(x_i · x_j)`` of the raw ``vectors`` (CDM Eq. 3).
        valid: ``(B, N)`` selectable positions.
        base: ``(B, N)`` static scores.
        first_key: ``(B, N)`` first-pick scores.
        k: list length.
        coef: penalty weight.
        agg_mean: mean (True) or max (False) aggregation over the selected items.
        out: ``(B, k)`` int64 output, pre-filled with -1.
    """
    bsz, n = valid.shape
    d = vectors.shape[2]
    u = np.zeros((n, d))
    acc = np.zeros(n)
    score = np.zeros(n)
    avail = np.zeros(n, dtype=np.bool_)
    for b in range(bsz):
        nvalid = 0
        for i in range(n):
            avail[i] = valid[b, i]
            if avail[i]:
                nvalid += 1
        kb = min(k, nvalid)
        if kb == 0:
            continue
        for i in range(n):
            acc[i] = 0.0 if agg_mean else _NEG_INF
            if mode == 0 and avail[i]:
                _normalize_row(vectors[b, i], u[i])
            elif mode == 2 and avail[i]:
                for f in range(d):
                    u[i, f] = vectors[b, i, f]
        j = -1
        bestk = _NEG_INF
        for i in range(n):
            if avail[i] and (j < 0 or first_key[b, i] > bestk):
                j = i
                bestk = first_key[b, i]
        seen = 0.0
        for t in range(kb):
            out[b, t] = j
            avail[j] = False
            if t + 1 >= kb:
                break
            for i in range(n):
                if not valid[b, i]:
                    continue
                if mode == 1:
                    s = matrix[b, j, i]
                elif mode == 0:
                    s = _dot(u[i], u[j], d)
                else:
                    s = _sigmoid(_dot(u[i], u[j], d))
                if abs(s) > seen:
                    seen = abs(s)
                if agg_mean:
                    acc[i] += s
                    pen = acc[i] / (t + 1)
                elif s > acc[i]:
                    acc[i] = s
                    pen = s
                else:
                    pen = acc[i]
                score[i] = base[b, i] - coef * pen if coef != 0.0 else base[b, i]
            j = _pick(score, avail, n, coef * seen)
