"""Rank-biased overlap (Webber, Moffat & Zobel, "A similarity measure for indefinite
rankings", TOIS 2010): how much a re-ranked list still agrees with the input order.

``RBO`` weighs the overlap at depth ``d``, ``A_d = X_d / d`` with ``X_d = |S_{:d} ∩ L_{:d}|``,
by ``p^{d-1}`` (top-weighted: the expected depth a user stops at is ``1 / (1 - p)``). For two
lists seen to depths ``s ≤ l`` the point estimate is the extrapolated ``RBO_EXT`` of Eq. 32::

    RBO_EXT = (1-p)/p · [ Σ_{d=1..l} X_d/d · p^d + Σ_{d=s+1..l} X_s (d-s) / (s d) · p^d ]
              + [ (X_l - X_s) / l + X_s / s ] · p^l

where for ``d > s`` the shorter list contributes its first ``s`` items. With ``s = l`` it is
Eq. 30, ``X_k/k · p^k + (1-p)/p · Σ_{d=1..k} X_d/d · p^d``: 1 for identical lists, 0 for
disjoint ones.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rank_biased_overlap"]


def _rbo_ext(s: list, t: list, p: float) -> float:
    if len(s) > len(t):
        s, t = t, s
    ns, nl = len(s), len(t)
    if ns == 0:
        return float("nan")
    seen_s: set = set()
    seen_l: set = set()
    overlap = 0
    x = np.zeros(nl + 1)
    for d in range(1, nl + 1):
        b = t[d - 1]
        if d <= ns:
            a = s[d - 1]
            if a == b:
                overlap += 1
            else:
                overlap += (a in seen_l) + (b in seen_s)
            seen_s.add(a)
        else:
            overlap += b in seen_s
        seen_l.add(b)
        x[d] = overlap
    d = np.arange(1, nl + 1, dtype=np.float64)
    pw = p**d
    total = float(np.sum(x[1:] / d * pw))
    if nl > ns:
        tail = d[ns:]
        total += float(np.sum(x[ns] * (tail - ns) / (ns * tail) * pw[ns:]))
    return (1 - p) / p * total + ((x[nl] - x[ns]) / nl + x[ns] / ns) * p**nl


def rank_biased_overlap(a: np.ndarray, b: np.ndarray, p: float = 0.9) -> np.ndarray:
    """Per-row extrapolated rank-biased overlap ``RBO_EXT`` (Webber et al. 2010, Eq. 32).

    Args:
        a: ``(U, K)`` item lists, best first, ``-1`` padded (padding is skipped).
        b: ``(U, K')`` item lists to compare with, row for row.
        p: persistence in ``(0, 1)``; larger weighs deeper ranks more (0.9: ~10 ranks).

    Returns:
        ``(U,)`` float64 in ``[0, 1]``; NaN where either list is empty.

    Raises:
        ValueError: row counts differ, `p` outside ``(0, 1)``, an item twice in a list.
    """
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    a = np.atleast_2d(np.asarray(a))
    b = np.atleast_2d(np.asarray(b))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a has {a.shape[0]} rows, b {b.shape[0]}")
    out = np.empty(a.shape[0], dtype=np.float64)
    for u in range(a.shape[0]):
        s = [x for x in a[u].tolist() if x != -1]
        t = [x for x in b[u].tolist() if x != -1]
        if len(set(s)) != len(s) or len(set(t)) != len(t):
            raise ValueError(f"an item appears twice in row {u}")
        out[u] = _rbo_ext(s, t, p) if s and t else np.nan
    return out
