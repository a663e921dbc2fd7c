"""splitmix64 (Steele, Lea & Flood 2014), the one mixing function behind divrec's
reproducible random baselines (`RandomRecommender` scores, `RandomK` request keys).

Two forms of the same arithmetic modulo 2**64: `splitmix64` on numpy uint64 arrays (many
keys at once) and `splitmix64_int` on one Python int (a sequential chain, where per-element
numpy scalars would cost several times more). They agree bit for bit (tested).
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_GAMMA, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(x) -> np.ndarray:
    """splitmix64 of every element of ``x`` (converted to uint64; wraps modulo 2**64)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(_GAMMA)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def splitmix64_int(x: int) -> int:
    """splitmix64 of one integer in ``[0, 2**64)``, on Python ints."""
    x = (x + _GAMMA) & _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)
