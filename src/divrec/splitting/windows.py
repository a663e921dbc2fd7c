"""Labeled history windows for sequence CTR models (PURS Sec. 5.1, time-stratified).

Every event `e` of a user at sequence position `p` (chronological order, see
`divrec.splitting.sequences`) with `p >= min_history` becomes one positive-or-negative
example: the history is the up to `L` events strictly before it (positions `p-L .. p-1`,
oldest first, left-padded with −1), the target is `e`'s item and the label is
`value >= threshold` (explicit ratings, PURS binarizes MovieLens at 3.5) or 1 (implicit
logs). Each example gets `n_negatives` extra copies whose target is an item the user never
interacted with in the whole log (label 0, same history).

Differences from the PURS authors' preprocessing (on purpose): the target is never part of
its own history (their pandas `.loc` slice is inclusive, so the target leaked into the
history), and the split is per user by time (theirs was by row order): each user's earliest
windows train, the following ones validate, the latest ones test. Windows whose target item
already occurs in the history (repeat consumption) are dropped, so the target cannot be read
off the history even when a user re-consumes an item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from divrec.data.interactions import Interactions
from divrec.splitting._util import (
    check_data,
    check_fraction,
    check_int,
    chronological_order,
    rank_within_user,
    round_half_up,
)
from divrec.splitting.negatives import sample_negatives

__all__ = ["LabeledWindows", "WindowSplit", "labeled_windows", "window_split"]


@dataclass(frozen=True, eq=False)
class LabeledWindows:
    """`W` labeled (user, history, target) examples.

    Attributes:
        user: `(W,)` int64 internal user index.
        history: `(W, L)` int64 items before the target, oldest → newest, −1 left-padded.
        item: `(W,)` int64 target item.
        label: `(W,)` float32 1 (click / liked) or 0.
        position: `(W,)` int64 sequence position of the event the window was cut at (the
            sampled negatives share their positive's position).
        sampled: `(W,)` bool whether the target is a sampled unobserved item.
    """

    user: np.ndarray
    history: np.ndarray
    item: np.ndarray
    label: np.ndarray
    position: np.ndarray
    sampled: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, rows: np.ndarray) -> LabeledWindows:
        """The examples `rows` (an index or boolean mask)."""
        return LabeledWindows(
            self.user[rows],
            self.history[rows],
            self.item[rows],
            self.label[rows],
            self.position[rows],
            self.sampled[rows],
        )

    @staticmethod
    def concat(parts: list[LabeledWindows]) -> LabeledWindows:
        """The examples of `parts`, in order."""
        return LabeledWindows(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("user", "history", "item", "label", "position", "sampled")
            )
        )


@dataclass(frozen=True, eq=False)
class WindowSplit:
    """A time-stratified split of labeled windows.

    Attributes:
        train, valid, test: the examples; per user, every train window's event precedes
            every valid window's event, which precedes every test window's event.
        train_log: the events at positions before each user's first valid (else test)
            window: the log a non-sequential model may be fitted on without seeing the
            evaluation events.
        n_users, n_items: the universe.
        stats: counts (windows dropped for a repeated target, users per part, ...).
    """

    train: LabeledWindows
    valid: LabeledWindows
    test: LabeledWindows
    train_log: Interactions
    n_users: int
    n_items: int
    stats: dict = field(default_factory=dict)


def _events(data: Interactions, history: int, min_history: int, threshold: float | None):
    order = chronological_order(data)
    users = data.users[order]
    items = data.items[order]
    values = data.values[order]
    pos, _ = rank_within_user(users, data.n_users)
    idx = np.flatnonzero(pos >= min_history)
    offs = np.arange(-history, 0, dtype=np.int64)
    hist_pos = pos[idx][:, None] + offs
    hist = np.where(hist_pos >= 0, items[np.maximum(idx[:, None] + offs, 0)], -1)
    target = items[idx]
    leak = (hist == target[:, None]).any(axis=1)
    idx, hist, target = idx[~leak], hist[~leak], target[~leak]
    label = np.ones(idx.shape[0], np.float32)
    if threshold is not None:
        label = (values[idx] >= threshold).astype(np.float32)
    return order, users, pos, idx, hist, target, label, int(leak.sum())


def _with_negatives(base: LabeledWindows, data: Interactions, n_negatives: int, rng):
    """Each example followed by `n_negatives` copies with sampled unobserved targets."""
    if n_negatives == 0 or len(base) == 0:
        return base
    w, k1 = len(base), n_negatives + 1
    neg = sample_negatives(data, base.user, n_negatives, seed=rng)
    rep = np.repeat(np.arange(w), k1)
    label = np.zeros((w, k1), np.float32)
    label[:, 0] = base.label
    sampled = np.ones((w, k1), bool)
    sampled[:, 0] = False
    return LabeledWindows(
        base.user[rep],
        base.history[rep],
        np.concatenate([base.item[:, None], neg], axis=1).reshape(-1),
        label.reshape(-1),
        base.position[rep],
        sampled.reshape(-1),
    )


def labeled_windows(
    data: Interactions,
    history: int = 10,
    n_negatives: int = 1,
    threshold: float | None = None,
    min_history: int = 1,
    seed: int | np.random.Generator | None = 0,
) -> LabeledWindows:
    """All labeled windows of a log (no split), e.g. to fit a model on a training log.

    Args:
        data: the log.
        history: `L`, the history length.
        n_negatives: sampled unobserved items per event (label 0), >= 0.
        threshold: `label = value >= threshold` (None: every event is a positive).
        min_history: events with fewer earlier events than this give no window, >= 1.
        seed: for the negatives.

    Returns:
        The windows, each positive followed by its negatives, by user then position.
    """
    data = check_data(data, "labeled_windows")
    history = check_int(history, "history", "labeled_windows", 1)
    n_negatives = check_int(n_negatives, "n_negatives", "labeled_windows", 0)
    min_history = check_int(min_history, "min_history", "labeled_windows", 1)
    _, users, pos, idx, hist, target, label, _ = _events(data, history, min_history, threshold)
    base = LabeledWindows(users[idx], hist, target, label, pos[idx], np.zeros(idx.size, bool))
    return _with_negatives(base, data, n_negatives, np.random.default_rng(seed))


def window_split(
    data: Interactions,
    history: int = 10,
    n_negatives: int = 1,
    threshold: float | None = None,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_history: int = 1,
    seed: int | np.random.Generator | None = 0,
) -> WindowSplit:
    """Time-stratified per-user split of labeled windows (PURS Sec. 6.1).

    A user with `n >= 3` windows gives `max(1, round(test_fraction·n))` latest windows to
    test, the `max(1, round(valid_fraction·n))` before them to validation and the rest
    (at least one) to training; users with fewer windows only train. Negatives are sampled
    per part from the items the user never interacted with in the whole `data`.

    Args:
        data: the log (timestamps, else row order, give the chronology).
        history: `L`, the history length (PURS: 10).
        n_negatives: sampled unobserved items per event, >= 0.
        threshold: binarize values at this (ML-1M: 3.5); None for implicit logs.
        valid_fraction, test_fraction: shares of each user's windows, in (0, 1).
        min_history: minimum number of earlier events for a window, >= 1.
        seed: seed for the negatives.

    Returns:
        A `WindowSplit`.
    """
    data = check_data(data, "window_split")
    history = check_int(history, "history", "window_split", 1)
    n_negatives = check_int(n_negatives, "n_negatives", "window_split", 0)
    min_history = check_int(min_history, "min_history", "window_split", 1)
    vf = check_fraction(valid_fraction, "valid_fraction", "window_split")
    tf = check_fraction(test_fraction, "test_fraction", "window_split")
    if vf + tf >= 1.0:
        raise ValueError("window_split: valid_fraction + test_fraction must be below 1")
    order, users, pos, idx, hist, target, label, n_leak = _events(
        data, history, min_history, threshold
    )
    w_user = users[idx]
    rank, n_win = rank_within_user(w_user, data.n_users)
    n = n_win[w_user]
    split_ok = n >= 3
    n_test = np.where(split_ok, np.maximum(1, round_half_up(tf * n)), 0)
    n_valid = np.where(split_ok, np.maximum(1, round_half_up(vf * n)), 0)
    n_valid = np.minimum(n_valid, np.maximum(n - n_test - 1, 0))
    part = np.where(rank >= n - n_test, 2, np.where(rank >= n - n_test - n_valid, 1, 0))
    base = LabeledWindows(w_user, hist, target, label, pos[idx], np.zeros(idx.size, bool))
    rng = np.random.default_rng(seed)
    parts = [_with_negatives(base.take(part == p), data, n_negatives, rng) for p in range(3)]
    # Training log: every event before the user's first evaluation window.
    first_eval = np.full(data.n_users, np.iinfo(np.int64).max)
    ev = part > 0
    np.minimum.at(first_eval, w_user[ev], pos[idx][ev])
    keep_sorted = pos < first_eval[users]
    train_log = data.select(np.sort(order[keep_sorted]))
    stats = {
        "windows": int(idx.size),
        "dropped_repeated_target": n_leak,
        "train_positives": int(parts[0].label.sum()),
        "users_with_test": int(np.unique(w_user[part == 2]).size),
        "train_log_events": int(train_log.nnz),
    }
    return WindowSplit(parts[0], parts[1], parts[2], train_log, data.n_users, data.n_items, stats)
