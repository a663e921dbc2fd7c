"""Per-user chronological item sequences and sliding-window training examples.

A user's sequence is their items ordered by timestamp, ties broken by row position (by row
position alone when the log has no timestamps). Everything here is vectorized over users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from divrec.data.interactions import Interactions
from divrec.splitting._util import check_data, check_int, chronological_order, rank_within_user

PAD = -1
"""Item index used for left padding in `Sequences.items`."""


@dataclass(frozen=True, eq=False)
class Sequences:
    """Most recent item sequences of the users, left-padded to a fixed length.

    Attributes:
        users: `(S,)` int64 internal user index of each sequence, ascending.
        items: `(S, max_len)` int64 item indices, oldest to newest, left-padded with -1; the
            last column is each user's latest item.
        lengths: `(S,)` int64 number of real (non-pad) items per row, `<= max_len`.
    """

    users: np.ndarray
    items: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


class Windows(NamedTuple):
    """Next-item training examples; unpacks as `history, target, user`.

    Attributes:
        history: `(W, window)` int64 consecutive items of one user, oldest first.
        target: `(W,)` int64 the item right after the window.
        user: `(W,)` int64 internal user index.
    """

    history: np.ndarray
    target: np.ndarray
    user: np.ndarray


def _sorted_items(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items in (user, time, row) order, the user of each, and rows per user."""
    order = chronological_order(data)
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users).astype(np.int64)
    return data.items[order], users, counts


def user_sequences(data: Interactions, max_len: int, min_len: int = 2) -> Sequences:
    """Each user's chronological items, truncated to the latest `max_len`.

    Args:
        data: the log.
        max_len: width of the output; longer histories keep their latest `max_len` items.
        min_len: users with fewer rows than this are dropped, >= 1.

    Returns:
        A `Sequences` with one row per user having at least `min_len` rows, by user index.
    """
    data = check_data(data, "user_sequences")
    max_len = check_int(max_len, "max_len", "user_sequences", 1)
    min_len = check_int(min_len, "min_len", "user_sequences", 1)
    items, users, counts = _sorted_items(data)
    rank, _ = rank_within_user(users, data.n_users)
    kept_users = np.flatnonzero(counts >= min_len).astype(np.int64)
    row_of_user = np.full(data.n_users, -1, dtype=np.int64)
    row_of_user[kept_users] = np.arange(kept_users.shape[0], dtype=np.int64)
    count = counts[users]
    # Column of a row: the latest item lands in the last column.
    col = max_len - (count - rank)
    keep = (count >= min_len) & (col >= 0)
    out = np.full((kept_users.shape[0], max_len), PAD, dtype=np.int64)
    out[row_of_user[users[keep]], col[keep]] = items[keep]
    return Sequences(
        users=kept_users,
        items=out,
        lengths=np.minimum(counts[kept_users], max_len),
    )


def sliding_windows(data: Interactions, window: int, stride: int = 1) -> Windows:
    """Next-item examples from sliding windows over each user's chronological sequence.

    For a user sequence `s` of length `L`, the windows start at `0, stride, 2*stride, ...`
    while `start + window < L`; each example is `history = s[start:start+window]` and
    `target = s[start+window]`. Only full windows are produced, so users with `L <= window`
    contribute nothing. Examples are ordered by user index, then by start.

    Args:
        data: the log.
        window: history length, >= 1.
        stride: step between consecutive window starts, >= 1.

    Returns:
        `Windows(history (W, window), target (W,), user (W,))`, all int64. The history
        matrix takes `8 * W * window` bytes.
    """
    data = check_data(data, "sliding_windows")
    window = check_int(window, "window", "sliding_windows", 1)
    stride = check_int(stride, "stride", "sliding_windows", 1)
    items, _, counts = _sorted_items(data)
    offsets = np.cumsum(counts) - counts
    n_win = np.where(counts > window, (counts - window - 1) // stride + 1, 0)
    total = int(n_win.sum())
    owner = np.repeat(np.arange(data.n_users, dtype=np.int64), n_win)
    first = np.cumsum(n_win) - n_win
    j = np.arange(total, dtype=np.int64) - first[owner]
    starts = offsets[owner] + stride * j
    history = items[starts[:, None] + np.arange(window, dtype=np.int64)]
    target = items[starts + window]
    return Windows(history=history.reshape(total, window), target=target, user=owner)
