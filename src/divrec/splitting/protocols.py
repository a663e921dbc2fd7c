"""Evaluation splitting protocols: temporal, leave-last-one, NCF sampled, random hold-out.

Every protocol returns a `Split` whose parts are `data.select(...)` of the input, so they keep
the user/item universe, and each part keeps the input's row order. The parts partition the
input rows exactly (disjoint, and together all of them).
"""

from __future__ import annotations

import numpy as np

from divrec.data.interactions import DataError, Interactions
from divrec.splitting._util import (
    check_data,
    check_fraction,
    check_int,
    chronological_order,
    percent_label,
    rank_within_user,
    round_half_up,
)
from divrec.splitting.negatives import sample_negatives
from divrec.splitting.split import Split


def temporal_split(data: Interactions, test_fraction: float = 0.2) -> Split:
    """Global temporal split: the latest interactions of the whole log go to test.

    This is the Test-RT protocol of the HI paper (80:20 by timestamp for the default). Rows
    are ordered by timestamp with ties broken by row position (earlier row = earlier), and the
    last `n_test = floor(test_fraction * nnz + 0.5)` rows of that order (rounded half up) are
    the test set. So every test timestamp is >= every train timestamp, and among rows that
    share the timestamp at the cut the later rows (by position) go to test.

    Args:
        data: the log, with timestamps.
        test_fraction: share of rows in test, in (0, 1).

    Returns:
        A `Split` with `train` and `test`, no `valid`, no negatives.

    Raises:
        DataError: (a ValueError) `data` has no timestamps.
    """
    data = check_data(data, "temporal_split")
    frac = check_fraction(test_fraction, "test_fraction", "temporal_split")
    if data.timestamps is None:
        raise DataError(f"{data.name}: temporal_split needs timestamps, and the log has none")
    n = data.nnz
    n_test = int(round_half_up(frac * n))
    order = np.argsort(data.timestamps, kind="stable")
    is_test = np.zeros(n, dtype=bool)
    is_test[order[n - n_test :]] = True
    return Split(
        train=data.select(~is_test),
        test=data.select(is_test),
        protocol=f"temporal {percent_label(frac)}",
    )


def leave_last_one(data: Interactions, validation: bool = True, min_interactions: int = 3) -> Split:
    """Per-user leave-last-one: each user's latest interaction to test, the one before to valid.

    A user's rows are ordered by timestamp with ties broken by row position, or by row
    position alone when `data` has no timestamps. Users with fewer than `min_interactions`
    rows keep all their rows in train (and so have no test row).

    Args:
        data: the log.
        validation: also hold out each eligible user's second-latest row as `valid`.
        min_interactions: rows a user needs to be held out, >= 1 (a user with a single
            eligible row then has it in test and nothing in train).

    Returns:
        A `Split` with `train`, `test` (one row per eligible user) and `valid` (one row per
        eligible user with at least two rows) or None when `validation` is False.
    """
    data = check_data(data, "leave_last_one")
    min_rows = check_int(min_interactions, "min_interactions", "leave_last_one", 1)
    validation = bool(validation)
    order = chronological_order(data)
    rank, counts = rank_within_user(data.users[order], data.n_users)
    count = counts[data.users[order]]
    eligible = count >= min_rows
    test_sorted = eligible & (rank == count - 1)
    part = np.zeros(data.nnz, dtype=np.int8)  # 0 train, 1 test, 2 valid
    part[order[test_sorted]] = 1
    if validation:
        part[order[eligible & (rank == count - 2)]] = 2
    label = "leave-last-one" + (" + valid" if validation else "")
    return Split(
        train=data.select(part == 0),
        test=data.select(part == 1),
        valid=data.select(part == 2) if validation else None,
        protocol=f"{label} (min {min_rows})",
    )


def ncf_split(
    data: Interactions,
    n_negatives: int = 99,
    seed: int | np.random.Generator | None = 0,
    *,
    min_interactions: int = 2,
) -> Split:
    """The NCF protocol (He et al. 2017): leave-last-one plus sampled negatives.

    Each user's latest interaction is the test item (`leave_last_one` without validation),
    and each test row gets `n_negatives` distinct items the user never interacted with (in
    any row of `data`, hence of train or test), drawn uniformly with
    `np.random.default_rng(seed)` (see `sample_negatives`). Evaluation ranks the test item
    among its negatives (`Split.candidates()`).

    Args:
        data: the log.
        n_negatives: negatives per test row, >= 1 (99 in the paper).
        seed: seed or generator for the negative sampler.
        min_interactions: rows a user needs to get a test row (>= 1); 2 keeps at least one
            training row per test user.

    Returns:
        A `Split` with `train`, `test`, `negatives` `(n_test, n_negatives)`, no `valid`.

    Raises:
        DataError: a test user has fewer than `n_negatives` non-interacted items.
    """
    data = check_data(data, "ncf_split")
    k = check_int(n_negatives, "n_negatives", "ncf_split", 1)
    base = leave_last_one(data, validation=False, min_interactions=min_interactions)
    negatives = sample_negatives(data, base.test.users, k, seed)
    return Split(
        train=base.train,
        test=base.test,
        negatives=negatives,
        protocol=f"ncf leave-last-one + {k} negatives",
    )


def random_holdout(
    data: Interactions,
    test_fraction: float = 0.2,
    seed: int | np.random.Generator | None = 0,
    per_user: bool = False,
) -> Split:
    """Random hold-out of rows, globally or within each user.

    Globally, `n_test = floor(test_fraction * nnz + 0.5)` rows chosen uniformly without
    replacement go to test. Per user, each user with `c` rows has
    `min(floor(test_fraction * c + 0.5), c - 1)` of them chosen uniformly, so every user keeps
    at least one training row (users with one row are never in test).

    Args:
        data: the log.
        test_fraction: share of rows in test, in (0, 1).
        seed: seed or generator for `np.random.default_rng`.
        per_user: hold out a fraction of each user's rows instead of a global fraction.

    Returns:
        A `Split` with `train` and `test`, no `valid`, no negatives.
    """
    data = check_data(data, "random_holdout")
    frac = check_fraction(test_fraction, "test_fraction", "random_holdout")
    rng = np.random.default_rng(seed)
    n = data.nnz
    is_test = np.zeros(n, dtype=bool)
    if per_user:
        # Sort by user with a random permutation as tie-break: a uniform order within users.
        order = np.argsort(data.users * np.int64(n) + rng.permutation(n))
        rank, counts = rank_within_user(data.users[order], data.n_users)
        quota = np.minimum(round_half_up(frac * counts), np.maximum(counts - 1, 0))
        is_test[order[rank < quota[data.users[order]]]] = True
    else:
        n_test = int(round_half_up(frac * n))
        is_test[rng.permutation(n)[:n_test]] = True
    label = "random per-user" if per_user else "random"
    return Split(
        train=data.select(~is_test),
        test=data.select(is_test),
        protocol=f"{label} {percent_label(frac)}",
    )
