"""Argument checks and ordering helpers shared by the splitting protocols."""

from __future__ import annotations

import numbers

import numpy as np

from divrec.data.interactions import Interactions


def check_data(data: object, func: str) -> Interactions:
    """Raises TypeError unless `data` is an `Interactions`."""
    if not isinstance(data, Interactions):
        raise TypeError(f"{func}: expected Interactions, got {type(data).__name__}")
    return data


def check_fraction(value: object, name: str, func: str) -> float:
    """A float strictly inside (0, 1); raises a one-line ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{func}: {name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{func}: {name} must be in (0, 1), got {value!r}")
    return value


def check_int(value: object, name: str, func: str, minimum: int) -> int:
    """An integer >= `minimum`; raises a one-line ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{func}: {name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")
    return value


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """`floor(x + 0.5)` as int64: the rounding rule used for every split size."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def chronological_order(data: Interactions) -> np.ndarray:
    """`(nnz,)` row order sorted by user, then timestamp, then row position.

    Without timestamps the rows of each user keep their position order. `np.lexsort` is
    stable, so equal timestamps of one user stay in row order.
    """
    if data.timestamps is None or data.nnz == 0:
        return np.argsort(data.users, kind="stable")
    ts = data.timestamps
    low = int(ts.min())
    span = int(ts.max()) - low + 1
    if data.n_users * span < 2**62:
        # One stable argsort of a combined key is about twice as fast as a two-key lexsort.
        return np.argsort(data.users * np.int64(span) + (ts - np.int64(low)), kind="stable")
    return np.lexsort((ts, data.users))


def rank_within_user(users_sorted: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row inside its user's group, for rows already sorted by user.

    Args:
        users_sorted: `(n,)` user indices in non-decreasing order.
        n_users: size of the user universe.

    Returns:
        `rank` `(n,)` int64 position within the user's run (0 = first), and `counts`
        `(n_users,)` int64 number of rows per user.
    """
    counts = np.bincount(users_sorted, minlength=n_users).astype(np.int64)
    offsets = np.cumsum(counts) - counts
    rank = np.arange(users_sorted.shape[0], dtype=np.int64) - offsets[users_sorted]
    return rank, counts


def percent_label(test_fraction: float) -> str:
    """'80:20' for a test fraction of 0.2."""
    test = round(100 * test_fraction, 1)
    train = round(100 - test, 1)
    fmt = "{:g}"
    return f"{fmt.format(train)}:{fmt.format(test)}"
