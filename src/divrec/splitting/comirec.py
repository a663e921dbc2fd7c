"""The ComiRec protocol (Cen et al. 2020, Sec. 4.1; TotalRecall App. A.6.2).

Users (not interactions) are split into training, validation and test users (80/10/10,
seeded). Training users' whole chronological sequences are the training data (next-item or
next-n-item examples, `next_n_examples`). A validation or test user's sequence is cut at
``int(0.8 · length)``: the first part is the history given to the model (a fresh
`Query.history`), the rest the targets, and the model ranks the full catalogue.
`next_n_target_marginal` is the item marginal of the training targets under the next-n
sampler (TotalRecall Fig. 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divrec.data.interactions import Interactions
from divrec.splitting._util import check_data, check_fraction, check_int, chronological_order


@dataclass(frozen=True, eq=False)
class SequenceSplit:
    """Train users' sequences plus history → targets requests for held-out users.

    Attributes:
        train: the training users' rows (same user/item universe as the full log).
        valid_users, test_users: `(V,)`, `(T,)` int64 held-out user indices.
        valid_history, test_history: `(V, Lh)`, `(T, Lh)` int64 histories, oldest → newest,
            right-padded with −1 (the `Query.history` convention).
        valid_targets, test_targets: `(V, Lt)`, `(T, Lt)` int64 targets, −1 padded.
        item_categories: the log's `(n_items, C)` categories (or None).
    """

    train: Interactions
    valid_users: np.ndarray
    valid_history: np.ndarray
    valid_targets: np.ndarray
    test_users: np.ndarray
    test_history: np.ndarray
    test_targets: np.ndarray
    item_categories: object = None

    @property
    def n_items(self) -> int:
        return self.train.n_items


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    width = max((r.size for r in rows), default=0)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def user_item_lists(data: Interactions) -> list[np.ndarray]:
    """Each user's chronological item array (ties by row position), indexed by user."""
    order = chronological_order(data)
    users = data.users[order]
    items = data.items[order]
    counts = np.bincount(users, minlength=data.n_users)
    return np.split(items, np.cumsum(counts)[:-1])


def comirec_split(
    data: Interactions,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    history_fraction: float = 0.8,
    min_length: int = 2,
    seed: int = 0,
) -> SequenceSplit:
    """Splits users 80/10/10 and cuts held-out sequences into history and targets.

    Args:
        data: a log with an order (timestamps, else row order).
        valid_fraction: share of users held out for validation.
        test_fraction: share of users held out for testing.
        history_fraction: share of a held-out sequence given as history
            (``int(history_fraction · length)`` items, at least 1, at most length − 1).
        min_length: users with fewer items are dropped from every part.
        seed: seed of the user permutation.

    Returns:
        A `SequenceSplit`.
    """
    data = check_data(data, "comirec_split")
    valid_fraction = check_fraction(valid_fraction, "valid_fraction", "comirec_split")
    test_fraction = check_fraction(test_fraction, "test_fraction", "comirec_split")
    history_fraction = check_fraction(history_fraction, "history_fraction", "comirec_split")
    min_length = check_int(min_length, "min_length", "comirec_split", 2)
    if valid_fraction + test_fraction >= 1:
        raise ValueError("comirec_split: valid_fraction + test_fraction must be below 1")
    lists = user_item_lists(data)
    eligible = np.flatnonzero(np.asarray([s.size for s in lists]) >= min_length)
    if eligible.size < 3:
        raise ValueError(f"comirec_split: only {eligible.size} users have >= {min_length} items")
    perm = np.random.default_rng(seed).permutation(eligible)
    n_valid = max(1, int(round(valid_fraction * perm.size)))
    n_test = max(1, int(round(test_fraction * perm.size)))
    valid = np.sort(perm[:n_valid])
    test = np.sort(perm[n_valid : n_valid + n_test])
    train_users = np.sort(perm[n_valid + n_test :])
    is_train = np.zeros(data.n_users, dtype=bool)
    is_train[train_users] = True

    def cut(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hist, targ = [], []
        for u in users:
            s = lists[u]
            k = min(max(int(history_fraction * s.size), 1), s.size - 1)
            hist.append(s[:k])
            targ.append(s[k:])
        return _pad(hist), _pad(targ)

    vh, vt = cut(valid)
    th, tt = cut(test)
    return SequenceSplit(
        train=data.select(is_train[data.users]),
        valid_users=valid.astype(np.int64),
        valid_history=vh,
        valid_targets=vt,
        test_users=test.astype(np.int64),
        test_history=th,
        test_targets=tt,
        item_categories=data.item_categories,
    )


def next_n_examples(
    lengths: np.ndarray, n: int, min_history: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (sequence, position) next-n examples and their sampling weights.

    Example (s, k) has history ``seq_s[:k]`` and targets ``seq_s[k : k + n]`` (fewer at the
    end of the sequence), for ``min_history <= k < len_s``. The ComiRec sampler draws a
    sequence uniformly, then k uniformly, so an example's probability is
    ``1 / (S · (len_s − min_history))``.

    Args:
        lengths: `(S,)` sequence lengths.
        n: targets per example (1: next-item prediction).
        min_history: shortest history.

    Returns:
        `(seq (E,), k (E,), prob (E,))`.
    """
    n = check_int(n, "n", "next_n_examples", 1)
    lengths = np.asarray(lengths, dtype=np.int64)
    per = np.maximum(lengths - min_history, 0)
    seq = np.repeat(np.arange(lengths.size), per)
    first = np.cumsum(per) - per
    k = np.arange(seq.size) - first[seq] + min_history
    n_seq = max(int((per > 0).sum()), 1)
    prob = 1.0 / (n_seq * per[seq].astype(np.float64))
    return seq, k, prob


def next_n_target_marginal(data: Interactions, n: int, min_history: int = 1) -> np.ndarray:
    """Item marginal p_data(i) of the next-n training targets (TotalRecall Fig. 6).

    Each example (drawn as in `next_n_examples`) contributes its probability to each of its
    (up to n) target items; the result is normalized to sum to 1.

    Returns:
        `(n_items,)` float64 distribution.
    """
    lists = [s for s in user_item_lists(data) if s.size > min_history]
    lengths = np.asarray([s.size for s in lists], dtype=np.int64)
    seq, k, prob = next_n_examples(lengths, n, min_history)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
    out = np.zeros(data.n_items)
    for j in range(n):
        ok = k + j < lengths[seq]
        np.add.at(out, flat[offsets[seq[ok]] + k[ok] + j], prob[ok])
    return out / out.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray, eps: float = 1e-10) -> float:
    """KL(p ‖ q) = Σ p log(p / q), q floored at `eps` and renormalized (p = 0 terms are 0)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.maximum(np.asarray(q, dtype=np.float64), eps)
    p, q = p / p.sum(), q / q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))
