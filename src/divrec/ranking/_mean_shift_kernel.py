"""Compiled Gaussian mean shift iterations (PURS Eq. 1–2), one trajectory at a time.

Imported by `divrec.ranking.unexpected.mean_shift` on first use (numba compiles on the first
call and caches the machine code, ``cache=True``), so ``import divrec`` does not import numba.

Every real history point of a request starts a trajectory `c ← Σ_j w_j x_j / Σ_j w_j`,
`w_j = exp(−‖c − x_j‖² / (2h²))` over the request's real points, and stops when its own move
`‖c_new − c‖` is below `tol` (the textbook per-point rule, as scikit-learn's `MeanShift`) or
after `max_iter` steps. Since every iterate is a convex combination of the points,
`c = Σ_k a_k x_k`, the iteration runs on the coefficients `a` (length L) and the request's
Gram matrix `K = X Xᵀ`: `c · x_j = (a K)_j` and `‖c_new − c‖² = Δaᵀ K Δa = Δa · (a_new K − a K)`,
one `O(L²)` product per step instead of `O(L² d)`, the same iterates in exact arithmetic.
The factor `exp(−‖c‖²/(2h²))` cancels in the normalization, so
`w_j ∝ exp((2 (aK)_j − K_jj) / (2h²))` (its largest term is subtracted before `exp`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def gaussian_modes(x, mask, inv2h2, tol2, max_iter, out, iters):  # pragma: no cover - compiled
    """Modes of every real point of every request.

    Args:
        x: `(B, L, d)` float64 points.
        mask: `(B, L)` bool, True for real points.
        inv2h2: `(B,)` `1 / (2h²)` per request.
        tol2: squared stop tolerance.
        max_iter: step cap per trajectory.
        out: `(B, L, d)` float64, written: the mode of each real point (padded: the point).
        iters: `(B, L)` int64, written: the steps each trajectory took (0 for padding).
    """
    b_n, n, d = x.shape
    idx = np.empty(n, np.int64)
    gram = np.empty((n, n))
    a = np.empty(n)
    a_new = np.empty(n)
    g = np.empty(n)
    z = np.empty(n)
    for b in range(b_n):
        r = 0
        for j in range(n):
            out[b, j] = x[b, j]
            iters[b, j] = 0
            if mask[b, j]:
                idx[r] = j
                r += 1
        if r == 0:
            continue
        for p in range(r):
            for q in range(p, r):
                s = 0.0
                for k in range(d):
                    s += x[b, idx[p], k] * x[b, idx[q], k]
                gram[p, q] = s
                gram[q, p] = s
        c2 = inv2h2[b]
        for s0 in range(r):
            for j in range(r):
                a[j] = 0.0
                g[j] = gram[s0, j]
            a[s0] = 1.0
            steps = 0
            for _ in range(max_iter):
                steps += 1
                zmax = -np.inf
                for j in range(r):
                    z[j] = (2.0 * g[j] - gram[j, j]) * c2
                    if z[j] > zmax:
                        zmax = z[j]
                tot = 0.0
                for j in range(r):
                    z[j] = math.exp(z[j] - zmax)
                    tot += z[j]
                for j in range(r):
                    a_new[j] = z[j] / tot
                # g ← a_new K and the squared move Δaᵀ K Δa = Δa · (g_new − g) (K symmetric)
                shift2 = 0.0
                for j in range(r):
                    gj = 0.0
                    for k in range(r):
                        gj += a_new[k] * gram[k, j]
                    shift2 += (a_new[j] - a[j]) * (gj - g[j])
                    g[j] = gj
                for j in range(r):
                    a[j] = a_new[j]
                if shift2 < tol2:
                    break
            iters[b, idx[s0]] = steps
            for k in range(d):
                v = 0.0
                for j in range(r):
                    v += a[j] * x[b, idx[j], k]
                out[b, idx[s0], k] = v


@njit(cache=True, nogil=True)
def _before(i, j, support, modes, b):  # pragma: no cover - compiled
    """Visit order of the merge: support descending, then the mode's coordinates descending
    (lexicographic, as scikit-learn sorts (intensity, center) tuples), then index."""
    if support[i] != support[j]:
        return support[i] > support[j]
    for k in range(modes.shape[2]):
        if modes[b, i, k] != modes[b, j, k]:
            return modes[b, i, k] > modes[b, j, k]
    return i < j


@njit(cache=True, nogil=True)
def _sq(u, v):  # pragma: no cover - compiled
    s = 0.0
    for k in range(u.shape[0]):
        t = u[k] - v[k]
        s += t * t
    return s


@njit(cache=True, nogil=True)
def merge_modes(x, mask, modes, h2, centers, weights):  # pragma: no cover - compiled
    """Greedy non-maximum suppression of the modes (as `sklearn.cluster.MeanShift`).

    Support of a mode = real points within `h` of it; modes are visited by decreasing
    support (ties: coordinates descending, then index); a visited mode not within `h` of an
    earlier kept one is kept; every real point joins its nearest kept mode (ties: lowest
    index). Writes `centers (B, L, d)` (kept modes by decreasing support, then index; 0 for
    an empty slot) and `weights (B, L)` (points per kept mode).

    Args:
        x, modes: `(B, L, d)` float64; mask: `(B, L)` bool; h2: `(B,)` squared radii.
    """
    b_n, n, d = x.shape
    support = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    removed = np.empty(n, np.bool_)
    kept = np.empty(n, np.bool_)
    counts = np.empty(n)
    for b in range(b_n):
        for i in range(n):
            support[i] = -1
            if mask[b, i]:
                s = 0
                for j in range(n):
                    if mask[b, j] and _sq(modes[b, i], x[b, j]) <= h2[b]:
                        s += 1
                support[i] = s
        # insertion sort of the indices by `_before`
        for i in range(n):
            order[i] = i
        for i in range(1, n):
            c = order[i]
            p = i - 1
            while p >= 0 and _before(c, order[p], support, modes, b):
                order[p + 1] = order[p]
                p -= 1
            order[p + 1] = c
        for i in range(n):
            removed[i] = not mask[b, i]
            kept[i] = False
            counts[i] = 0.0
        for r in range(n):
            c = order[r]
            if removed[c]:
                continue
            kept[c] = True
            for j in range(n):
                if _sq(modes[b, c], modes[b, j]) <= h2[b]:
                    removed[j] = True
        for p in range(n):
            if not mask[b, p]:
                continue
            best, arg = np.inf, -1
            for i in range(n):
                if kept[i]:
                    dist = _sq(x[b, p], modes[b, i])
                    if dist < best:
                        best, arg = dist, i
            if arg >= 0:
                counts[arg] += 1.0
        # compact: kept modes by decreasing support (ties: index), then the others by index
        slot = 0
        for level in range(n, -1, -1):
            for i in range(n):
                if kept[i] and support[i] == level:
                    weights[b, slot] = counts[i]
                    for k in range(d):
                        centers[b, slot, k] = modes[b, i, k] if counts[i] > 0 else 0.0
                    slot += 1
        for i in range(n):
            if not kept[i]:
                weights[b, slot] = 0.0
                for k in range(d):
                    centers[b, slot, k] = 0.0
                slot += 1
