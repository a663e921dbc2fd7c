"""Tests for divrec.splitting: hand-made logs with known splits, plus hypothesis properties
checked against brute-force per-user Python implementations."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divrec.data.interactions import DataError, Interactions
from divrec.splitting import (
    Sequences,
    Split,
    Windows,
    leave_last_one,
    ncf_split,
    random_holdout,
    sample_negatives,
    sliding_windows,
    temporal_split,
    user_sequences,
)

# ---------------------------------------------------------------------------- helpers


def make_log(users, items, timestamps=None, n_users=None, n_items=None) -> Interactions:
    """A log whose `values` hold the row number, so every split part names its source rows."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_users = int(users.max()) + 1 if n_users is None else n_users
    n_items = int(items.max()) + 1 if n_items is None else n_items
    return Interactions(
        users=users,
        items=items,
        values=np.arange(users.shape[0], dtype=np.float32),
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_ids=np.arange(n_items) + 100,
        timestamps=timestamps,
    )


def rows(part: Interactions) -> list[int]:
    return part.values.astype(np.int64).tolist()


def assert_partition(split: Split, data: Interactions) -> None:
    """Parts are disjoint, cover all rows, keep row order, row contents and the universe."""
    parts = [split.train, split.test] + ([] if split.valid is None else [split.valid])
    all_rows = sorted(r for p in parts for r in rows(p))
    assert all_rows == list(range(data.nnz))
    for part in parts:
        idx = np.asarray(rows(part), dtype=np.int64)
        assert np.all(np.diff(idx) > 0)
        np.testing.assert_array_equal(part.users, data.users[idx])
        np.testing.assert_array_equal(part.items, data.items[idx])
        if data.timestamps is not None:
            np.testing.assert_array_equal(part.timestamps, data.timestamps[idx])
        assert part.user_ids is data.user_ids and part.item_ids is data.item_ids


def chrono_rows_by_user(data: Interactions) -> dict[int, list[int]]:
    """Brute force: each user's rows sorted by (timestamp, row), or by row without timestamps."""
    out: dict[int, list[int]] = {}
    for r in range(data.nnz):
        out.setdefault(int(data.users[r]), []).append(r)
    for u, rs in out.items():
        if data.timestamps is not None:
            out[u] = sorted(rs, key=lambda r: (int(data.timestamps[r]), r))
    return out


@st.composite
def logs(draw, timestamps: bool | None = None, max_users=6, max_items=10, max_rows=40):
    n_users = draw(st.integers(1, max_users))
    n_items = draw(st.integers(1, max_items))
    n = draw(st.integers(0, max_rows))
    users = draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=n, max_size=n))
    if timestamps is None:
        timestamps = draw(st.booleans())
    ts = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)) if timestamps else None
    return make_log(users, items, ts, n_users=n_users, n_items=n_items)


fractions = st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.75, 0.9])

# A hand-made log: (user, item, timestamp) per row. Rows 4/5 and 3/7 share timestamps.
#   row:   0   1   2   3   4   5   6   7   8   9
LOG_U = [0, 0, 1, 0, 1, 1, 2, 0, 2, 1]
LOG_I = [0, 1, 2, 2, 0, 3, 1, 3, 4, 1]
LOG_T = [10, 30, 20, 50, 40, 40, 5, 50, 60, 15]
# Global (timestamp, row) order: 6, 0, 9, 2, 1, 4, 5, 3, 7, 8.


@pytest.fixture
def log() -> Interactions:
    return make_log(LOG_U, LOG_I, LOG_T)


# ---------------------------------------------------------------------------- temporal


@pytest.mark.parametrize(
    ("fraction", "expected_test"),
    [
        (0.2, [7, 8]),
        (0.25, [3, 7, 8]),  # 2.5 rows rounds half up to 3
        (0.4, [3, 5, 7, 8]),  # cut inside the tie at t=40: row 4 train, row 5 test
        (0.5, [3, 4, 5, 7, 8]),
        (0.01, []),  # 0.1 rows rounds to 0
    ],
)
def test_temporal_split_hand_made(log, fraction, expected_test):
    split = temporal_split(log, fraction)
    assert rows(split.test) == expected_test
    assert rows(split.train) == sorted(set(range(10)) - set(expected_test))
    assert split.valid is None and split.negatives is None
    assert_partition(split, log)


def test_temporal_split_protocol_label(log):
    assert temporal_split(log).protocol == "temporal 80:20"
    assert temporal_split(log, 0.25).protocol == "temporal 75:25"


def test_temporal_split_needs_timestamps():
    data = make_log([0, 1], [0, 1])
    with pytest.raises(ValueError, match="timestamps"):
        temporal_split(data)


@settings(max_examples=150, deadline=None)
@given(data=logs(timestamps=True), fraction=fractions)
def test_temporal_split_properties(data, fraction):
    split = temporal_split(data, fraction)
    assert_partition(split, data)
    n_test = math.floor(fraction * data.nnz + 0.5)
    assert split.test.nnz == n_test
    if split.test.nnz and split.train.nnz:
        assert split.test.timestamps.min() >= split.train.timestamps.max()
    brute = sorted(range(data.nnz), key=lambda r: (int(data.timestamps[r]), r))
    assert rows(split.test) == sorted(brute[data.nnz - n_test :])


# ---------------------------------------------------------------------------- leave last one


def test_leave_last_one_hand_made(log):
    split = leave_last_one(log)
    # u0: 0,1,3,7 (3 and 7 tie at t=50 -> row order); u1: 9,2,4,5; u2 has 2 rows < 3.
    assert rows(split.test) == [5, 7]
    assert rows(split.valid) == [3, 4]
    assert rows(split.train) == [0, 1, 2, 6, 8, 9]
    assert_partition(split, log)

    split = leave_last_one(log, validation=False, min_interactions=2)
    assert split.valid is None
    assert rows(split.test) == [5, 7, 8]
    assert rows(split.train) == [0, 1, 2, 3, 4, 6, 9]


def test_leave_last_one_without_timestamps_uses_row_order():
    data = make_log(LOG_U, LOG_I)
    split = leave_last_one(data, min_interactions=2)
    # u0: 0,1,3,7; u1: 2,4,5,9; u2: 6,8.
    assert rows(split.test) == [7, 8, 9]
    assert rows(split.valid) == [3, 5, 6]
    assert rows(split.train) == [0, 1, 2, 4]


def test_leave_last_one_min_interactions_one_moves_singletons_to_test():
    data = make_log([0, 1, 1], [0, 0, 1], [5, 1, 2])
    split = leave_last_one(data, validation=True, min_interactions=1)
    assert rows(split.test) == [0, 2]
    assert rows(split.valid) == [1]
    assert rows(split.train) == []


@settings(max_examples=150, deadline=None)
@given(
    data=logs(),
    validation=st.booleans(),
    min_interactions=st.integers(1, 5),
)
def test_leave_last_one_properties(data, validation, min_interactions):
    split = leave_last_one(data, validation=validation, min_interactions=min_interactions)
    assert_partition(split, data)
    exp_test, exp_valid = [], []
    for rs in chrono_rows_by_user(data).values():
        if len(rs) >= min_interactions:
            exp_test.append(rs[-1])
            if validation and len(rs) >= 2:
                exp_valid.append(rs[-2])
    assert rows(split.test) == sorted(exp_test)
    if validation:
        assert rows(split.valid) == sorted(exp_valid)
    else:
        assert split.valid is None
    # One test row per user, and it is the user's latest (timestamp, row).
    assert len(set(split.test.users.tolist())) == split.test.nnz
    for r in rows(split.test):
        same_user = np.flatnonzero(data.users == data.users[r])
        if data.timestamps is not None:
            later = [o for o in same_user if (data.timestamps[o], o) > (data.timestamps[r], r)]
        else:
            later = [o for o in same_user if o > r]
        assert later == []


# ---------------------------------------------------------------------------- NCF negatives


def interacted(data: Interactions) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for u, i in zip(data.users.tolist(), data.items.tolist(), strict=True):
        out.setdefault(u, set()).add(i)
    return out


def test_ncf_split_negatives_forced_when_allowed_equals_k():
    # 6 items; u0 saw {0,1,2} (item 1 twice), u1 saw {1,3,4}: each has exactly 3 unseen items.
    data = make_log([0, 0, 0, 0, 1, 1, 1], [1, 0, 1, 2, 4, 3, 1], [1, 2, 3, 4, 1, 2, 3], 2, 6)
    split = ncf_split(data, n_negatives=3, seed=7)
    assert rows(split.test) == [3, 6]
    np.testing.assert_array_equal(np.sort(split.negatives, axis=1), [[3, 4, 5], [0, 2, 5]])
    cands = split.candidates()
    assert cands.shape == (2, 4)
    np.testing.assert_array_equal(cands[:, 0], [2, 1])
    assert split.negatives.dtype == np.int64
    with pytest.raises(DataError, match="fewer than n_negatives=4"):
        ncf_split(data, n_negatives=4)


def test_ncf_split_reproducible_and_seed_dependent():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(40), 15)
    items = rng.integers(0, 200, users.size)
    data = make_log(users, items, rng.integers(0, 1000, users.size), 40, 200)
    a = ncf_split(data, n_negatives=20, seed=11)
    b = ncf_split(data, n_negatives=20, seed=11)
    c = ncf_split(data, n_negatives=20, seed=12)
    np.testing.assert_array_equal(a.negatives, b.negatives)
    assert not np.array_equal(a.negatives, c.negatives)
    assert a.protocol == "ncf leave-last-one + 20 negatives"
    assert a.test.nnz == 40 and a.negatives.shape == (40, 20)


@settings(max_examples=150, deadline=None)
@given(
    data=logs(max_items=20, max_rows=50),
    k=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
    min_interactions=st.integers(1, 3),
)
def test_ncf_split_properties(data, k, seed, min_interactions):
    seen = interacted(data)
    counts = Counter(data.users.tolist())
    test_users = [u for u, c in counts.items() if c >= min_interactions]
    if any(data.n_items - len(seen[u]) < k for u in test_users):
        with pytest.raises(DataError, match="n_negatives"):
            ncf_split(data, k, seed, min_interactions=min_interactions)
        return
    split = ncf_split(data, k, seed, min_interactions=min_interactions)
    assert_partition(split, data)
    assert split.negatives.shape == (split.test.nnz, k)
    for u, neg in zip(split.test.users.tolist(), split.negatives.tolist(), strict=True):
        assert len(set(neg)) == k
        assert all(0 <= i < data.n_items for i in neg)
        assert not set(neg) & seen[u]
    again = ncf_split(data, k, seed, min_interactions=min_interactions)
    np.testing.assert_array_equal(split.negatives, again.negatives)


@pytest.mark.parametrize("k", [2, 3])  # k=2: rejection path (5 >= 2k); k=3: smallest-keys path
def test_sample_negatives_uniform_over_subsets(k):
    # Every user saw items {0, 1, 2} of 8, so the allowed set is {3..7}: C(5, k) = 10 subsets.
    n_users = 3000
    users = np.repeat(np.arange(n_users), 3)
    items = np.tile([0, 1, 2], n_users)
    data = make_log(users, items, n_users=n_users, n_items=8)
    neg = sample_negatives(data, np.arange(n_users), k, seed=5)
    subsets = Counter(tuple(sorted(row)) for row in neg.tolist())
    expected = list(itertools.combinations(range(3, 8), k))
    assert set(subsets) == set(expected)
    observed = np.array([subsets[s] for s in expected])
    assert stats.chisquare(observed).pvalue > 1e-3
    # Order within a row is uniform too: each column holds each allowed item equally often.
    for col in range(k):
        assert stats.chisquare(np.bincount(neg[:, col], minlength=8)[3:]).pvalue > 1e-3


def test_sample_negatives_order_is_random_when_all_allowed_items_are_drawn():
    # 5 allowed items, k = 5: the set is forced, only the order is random.
    n_users = 2000
    users = np.repeat(np.arange(n_users), 3)
    data = make_log(users, np.tile([0, 1, 2], n_users), n_users=n_users, n_items=8)
    neg = sample_negatives(data, np.arange(n_users), 5, seed=9)
    assert (np.sort(neg, axis=1) == np.arange(3, 8)).all()
    for col in range(5):
        assert stats.chisquare(np.bincount(neg[:, col], minlength=8)[3:]).pvalue > 1e-3


def test_sample_negatives_maps_ranks_around_gaps():
    # One user saw items 0, 2, 3, 7 of 9; with k = 5 all allowed items {1, 4, 5, 6, 8} appear.
    data = make_log([0, 0, 0, 0], [3, 0, 7, 2], n_users=2, n_items=9)
    neg = sample_negatives(data, [0, 1], 5, seed=1)
    assert sorted(neg[0].tolist()) == [1, 4, 5, 6, 8]
    assert len(set(neg[1].tolist())) == 5  # user 1 saw nothing
    assert sample_negatives(data, [], 3).shape == (0, 3)
    # k = 2 < 5 / 2 goes through the rejection path; over many rows every allowed item shows.
    many = sample_negatives(data, np.zeros(200, dtype=np.int64), 2, seed=2)
    assert set(many.ravel().tolist()) == {1, 4, 5, 6, 8}
    assert (many[:, 0] != many[:, 1]).all()


# ---------------------------------------------------------------------------- random hold-out


def test_random_holdout_sizes_and_seed(log):
    a = random_holdout(log, 0.3, seed=1)
    assert a.test.nnz == 3 and a.train.nnz == 7
    assert_partition(a, log)
    assert rows(random_holdout(log, 0.3, seed=1).test) == rows(a.test)
    tests = {tuple(rows(random_holdout(log, 0.3, seed=s).test)) for s in range(20)}
    assert len(tests) > 5
    assert a.protocol == "random 70:30"


@settings(max_examples=150, deadline=None)
@given(data=logs(), fraction=fractions, seed=st.integers(0, 1000), per_user=st.booleans())
def test_random_holdout_properties(data, fraction, seed, per_user):
    split = random_holdout(data, fraction, seed=seed, per_user=per_user)
    assert_partition(split, data)
    if per_user:
        counts = Counter(data.users.tolist())
        test_counts = Counter(split.test.users.tolist())
        for u, c in counts.items():
            assert test_counts[u] == min(math.floor(fraction * c + 0.5), c - 1)
    else:
        assert split.test.nnz == math.floor(fraction * data.nnz + 0.5)


# ---------------------------------------------------------------------------- sequences


def test_user_sequences_hand_made(log):
    seqs = user_sequences(log, max_len=3, min_len=2)
    assert isinstance(seqs, Sequences) and len(seqs) == 3
    # u0 items by time: 0,1,2,3 -> last 3; u1: 1,2,0,3 -> last 3; u2: 1,4.
    np.testing.assert_array_equal(seqs.users, [0, 1, 2])
    np.testing.assert_array_equal(seqs.items, [[1, 2, 3], [2, 0, 3], [-1, 1, 4]])
    np.testing.assert_array_equal(seqs.lengths, [3, 3, 2])
    seqs = user_sequences(log, max_len=5, min_len=3)
    np.testing.assert_array_equal(seqs.users, [0, 1])
    np.testing.assert_array_equal(seqs.items, [[-1, 0, 1, 2, 3], [-1, 1, 2, 0, 3]])


def test_sliding_windows_hand_made(log):
    win = sliding_windows(log, window=2)
    assert isinstance(win, Windows)
    history, target, user = win
    np.testing.assert_array_equal(history, [[0, 1], [1, 2], [1, 2], [2, 0]])
    np.testing.assert_array_equal(target, [2, 3, 0, 3])
    np.testing.assert_array_equal(user, [0, 0, 1, 1])
    win = sliding_windows(log, window=1, stride=2)
    np.testing.assert_array_equal(win.history, [[0], [2], [1], [0], [1]])
    np.testing.assert_array_equal(win.target, [1, 3, 2, 3, 4])
    np.testing.assert_array_equal(win.user, [0, 0, 1, 1, 2])
    empty = sliding_windows(log, window=4)
    assert empty.history.shape == (0, 4) and empty.target.shape == (0,)


@settings(max_examples=150, deadline=None)
@given(data=logs(), max_len=st.integers(1, 8), min_len=st.integers(1, 5))
def test_user_sequences_match_brute_force(data, max_len, min_len):
    seqs = user_sequences(data, max_len=max_len, min_len=min_len)
    by_user = chrono_rows_by_user(data)
    exp_users, exp_items, exp_len = [], [], []
    for u in sorted(by_user):
        seq = [int(data.items[r]) for r in by_user[u]]
        if len(seq) >= min_len:
            tail = seq[-max_len:]
            exp_users.append(u)
            exp_items.append([-1] * (max_len - len(tail)) + tail)
            exp_len.append(len(tail))
    assert seqs.users.tolist() == exp_users
    assert seqs.items.reshape(-1, max_len).tolist() == exp_items
    assert seqs.lengths.tolist() == exp_len
    assert seqs.items.dtype == np.int64 and seqs.items.shape == (len(exp_users), max_len)


@settings(max_examples=150, deadline=None)
@given(data=logs(), window=st.integers(1, 6), stride=st.integers(1, 4))
def test_sliding_windows_match_brute_force(data, window, stride):
    history, target, user = sliding_windows(data, window=window, stride=stride)
    by_user = chrono_rows_by_user(data)
    exp_h, exp_t, exp_u = [], [], []
    for u in sorted(by_user):
        seq = [int(data.items[r]) for r in by_user[u]]
        for start in range(0, len(seq) - window, stride):
            exp_h.append(seq[start : start + window])
            exp_t.append(seq[start + window])
            exp_u.append(u)
    assert history.shape == (len(exp_t), window)
    assert history.tolist() == exp_h
    assert target.tolist() == exp_t
    assert user.tolist() == exp_u


# ---------------------------------------------------------------------------- Split


def test_split_methods(log):
    split = ncf_split(log, n_negatives=1, seed=0)
    np.testing.assert_array_equal(split.test_users(), [0, 1, 2])
    assert split.candidates().shape == (3, 2)
    summary = split.summary()
    assert summary["train"] == 7 and summary["test"] == 3 and summary["valid"] is None
    assert summary["test_users"] == 3 and summary["n_negatives"] == 1
    assert summary["users"] == 3 and summary["items"] == 5
    assert "ncf" in repr(split)

    plain = leave_last_one(log)
    assert plain.summary()["valid"] == 2 and plain.summary()["valid_users"] == 2
    with pytest.raises(ValueError, match="no negatives"):
        plain.candidates()


def test_split_validates_its_parts(log):
    other = make_log([0, 1], [0, 1])  # another universe
    with pytest.raises(ValueError, match="universe"):
        Split(train=log, test=other)
    with pytest.raises(ValueError, match="shape"):
        Split(train=log, test=log.select(np.array([0, 1])), negatives=np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="range"):
        Split(train=log, test=log.select(np.array([0])), negatives=np.array([[99]]))


# ---------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d: temporal_split(d, 0.0), "test_fraction"),
        (lambda d: temporal_split(d, 1.0), "test_fraction"),
        (lambda d: temporal_split(d, float("nan")), "test_fraction"),
        (lambda d: temporal_split(d, "0.2"), "test_fraction"),
        (lambda d: temporal_split(d, True), "test_fraction"),
        (lambda d: random_holdout(d, -0.1), "test_fraction"),
        (lambda d: random_holdout(d, 1.5, per_user=True), "test_fraction"),
        (lambda d: leave_last_one(d, min_interactions=0), "min_interactions"),
        (lambda d: leave_last_one(d, min_interactions=2.5), "min_interactions"),
        (lambda d: ncf_split(d, n_negatives=0), "n_negatives"),
        (lambda d: ncf_split(d, n_negatives=2.0), "n_negatives"),
        (lambda d: ncf_split(d, min_interactions=0), "min_interactions"),
        (lambda d: sample_negatives(d, [0], 0), "n_negatives"),
        (lambda d: sample_negatives(d, [7], 1), "user index"),
        (lambda d: user_sequences(d, max_len=0), "max_len"),
        (lambda d: user_sequences(d, max_len=3, min_len=0), "min_len"),
        (lambda d: sliding_windows(d, window=0), "window"),
        (lambda d: sliding_windows(d, window=2, stride=0), "stride"),
    ],
)
def test_bad_arguments_raise_one_line_value_error(log, call, match):
    with pytest.raises(ValueError, match=match) as err:
        call(log)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "func", [temporal_split, leave_last_one, ncf_split, random_holdout, sliding_windows]
)
def test_non_interactions_input_is_a_type_error(func):
    args = (2,) if func is sliding_windows else ()
    with pytest.raises(TypeError, match="Interactions"):
        func(np.zeros((3, 2)), *args)


def test_empty_log():
    data = make_log(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), n_users=2, n_items=3)
    assert temporal_split(data).test.nnz == 0
    assert leave_last_one(data).test.nnz == 0
    assert ncf_split(data, 2).negatives.shape == (0, 2)
    assert random_holdout(data, per_user=True).test.nnz == 0
    assert user_sequences(data, 4).items.shape == (0, 4)
    assert sliding_windows(data, 2).history.shape == (0, 2)
