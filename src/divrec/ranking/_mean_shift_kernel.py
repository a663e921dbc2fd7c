"""Compiled Gaussian mean shift iterations (PURS Eq. 1–2), one trajectory at a time.

Imported by `divrec.ranking.unexpected.mean_shift` on first use (numba compiles on the first
call and caches the machine code, ``cache=True``), so ``import divrec`` does not import numba.

Every real history point of a request starts a trajectory `c ← Σ_j w_j x_j / Σ_j w_j`,
`w_j = exp(−‖c − x_j‖² / (2h²))` over the request's real points, and stops when its own move
`‖c_new − c‖` is below `tol` (the textbook per-point rule, as scikit-learn's `MeanShift`) or
after `max_iter` steps. Since every iterate is a convex combination of the points,
`c = Σ_k a_k x_k`, the iteration runs on the coefficients `a` (length L) and the request's
Gram matrix `K = X Xᵀ`: `c · x_j = (a K)_j`, `‖c_new − c‖² = Δaᵀ K Δa` — `O(L²)` per step
instead of `O(L² d)`, and the same iterates in exact arithmetic. The factor `exp(−‖c‖²/(2h²))`
cancels in the normalization, so `w_j ∝ exp((2 (aK)_j − K_jj) / (2h²))` (its largest term is
subtracted before `exp`).
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
                # squared move Δaᵀ K Δa, and g ← a_new K
                shift2 = 0.0
                for j in range(r):
                    gj = 0.0
                    dj = 0.0
                    for k in range(r):
                        gj += a_new[k] * gram[k, j]
                        dj += (a_new[k] - a[k]) * gram[k, j]
                    g[j] = gj
                    shift2 += dj * (a_new[j] - a[j])
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
