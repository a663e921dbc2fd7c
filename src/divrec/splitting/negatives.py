"""Uniform sampling of distinct non-interacted items (negatives) per user, vectorized."""

from __future__ import annotations

import numpy as np

from divrec.data.interactions import DataError, Interactions
from divrec.splitting._util import check_data, check_int


def sample_negatives(
    data: Interactions,
    users: np.ndarray,
    n_negatives: int,
    seed: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Samples, for each requested user, distinct items that user never interacted with.

    Each row is a uniformly random set of `n_negatives` distinct items among the items with
    no row for that user in `data`, in uniformly random order. Rows are independent, so a
    user listed twice gets two independent samples.

    The sampler works in "allowed rank" space: a user's allowed items are numbered
    `0..n_allowed-1` in item order, and a rank maps to its item with one `searchsorted` over
    the sorted (user, item) keys of `data`, so interacted items are never drawn. Distinctness
    is obtained by bulk rejection: draw every slot, re-draw only the slots that repeat an
    earlier slot of the row, repeat until none do (each set is equally likely by symmetry).
    Rows whose user has fewer than `2 * n_negatives` allowed items instead take the
    `n_negatives` smallest of i.i.d. random keys over all their allowed items.

    Args:
        data: the log that defines "interacted" (all its rows count).
        users: `(n,)` internal user indices.
        n_negatives: items per row, >= 1.
        seed: seed or generator for `np.random.default_rng`.

    Returns:
        `(n, n_negatives)` int64 internal item indices.

    Raises:
        DataError: a requested user has fewer than `n_negatives` non-interacted items.
    """
    data = check_data(data, "sample_negatives")
    k = check_int(n_negatives, "n_negatives", "sample_negatives", 1)
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    if users.size and (users.min() < 0 or users.max() >= data.n_users):
        raise ValueError(f"sample_negatives: user index out of range [0, {data.n_users})")
    rng = np.random.default_rng(seed)
    n_rows = users.shape[0]
    n_items = np.int64(data.n_items)
    if n_rows == 0:
        return np.empty((0, k), dtype=np.int64)

    # Distinct interacted (user, item) pairs, sorted by user then item.
    # (np.sort + a diff mask: np.unique's hash path is several times slower on 1M keys.)
    keys = np.sort(data.users * n_items + data.items)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys
    key_users = keys // n_items
    key_items = keys % n_items
    counts = np.bincount(key_users, minlength=data.n_users).astype(np.int64)
    starts = np.cumsum(counts) - counts
    n_allowed = n_items - counts[users]
    short = n_allowed < k
    if short.any():
        bad = int(users[np.flatnonzero(short)[0]])
        raise DataError(
            f"{data.name}: user {data.user_ids[bad]!r} has {int(n_items - counts[bad])} "
            f"non-interacted items, fewer than n_negatives={k}"
        )

    ranks = np.empty((n_rows, k), dtype=np.int64)
    dense = n_allowed < 2 * k
    if dense.any():
        ranks[dense] = _smallest_keys(n_allowed[dense], k, rng)
    sparse = np.flatnonzero(~dense)
    if sparse.size:
        ranks[sparse] = _distinct_by_rejection(n_allowed[sparse], k, rng)

    # Rank r of user u maps to item r + #{forbidden items f_j of u with f_j - j <= r}, where j
    # is f_j's position among u's forbidden items; `f_j - j` is non-decreasing per user.
    pos = np.arange(keys.shape[0], dtype=np.int64) - starts[key_users]
    stride = n_items + 1
    shifted = key_users * stride + (key_items - pos)
    query = users[:, None] * stride + ranks
    n_before = np.searchsorted(shifted, query, side="right") - starts[users][:, None]
    items = ranks + n_before
    return rng.permuted(items, axis=1)


def _distinct_by_rejection(n_allowed: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`(n, k)` rows of distinct ranks in `[0, n_allowed[i])`, each row a uniform k-set."""
    out = rng.integers(0, n_allowed[:, None], size=(n_allowed.shape[0], k), dtype=np.int64)
    todo = np.arange(out.shape[0])
    while todo.size:
        sub = out[todo]
        order = np.argsort(sub, axis=1, kind="stable")
        vals = np.take_along_axis(sub, order, axis=1)
        repeat_sorted = np.zeros(sub.shape, dtype=bool)
        repeat_sorted[:, 1:] = vals[:, 1:] == vals[:, :-1]
        repeat = np.zeros(sub.shape, dtype=bool)
        np.put_along_axis(repeat, order, repeat_sorted, axis=1)
        has = repeat.any(axis=1)
        todo, repeat = todo[has], repeat[has]
        if not todo.size:
            break
        rows, cols = np.nonzero(repeat)
        out[todo[rows], cols] = rng.integers(0, n_allowed[todo[rows]], dtype=np.int64)
    return out


def _smallest_keys(n_allowed: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`(n, k)` ranks: the k smallest of i.i.d. uniform keys over `[0, n_allowed[i])`."""
    width = int(n_allowed.max())
    scores = rng.random((n_allowed.shape[0], width))
    scores[np.arange(width)[None, :] >= n_allowed[:, None]] = np.inf
    return np.argpartition(scores, k - 1, axis=1)[:, :k].astype(np.int64)
