"""System-level diversity metrics against brute force over explicit user pairs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.metrics import (
    between_user_distance,
    pairwise_jaccard,
    system_diversity,
    union_concentration,
)


@st.composite
def batches(draw, max_items: int = 7):
    n_items = draw(st.integers(1, max_items))
    n_users = draw(st.integers(0, 6))
    k = draw(st.integers(1, 5))
    rows = [
        draw(st.lists(st.integers(-1, n_items - 1), min_size=k, max_size=k)) for _ in range(n_users)
    ]
    rec = np.array(rows, dtype=np.int64).reshape(n_users, k)
    return rec, n_items


def _sets(rec):
    return [set(int(i) for i in row if i >= 0) for row in rec]


def _brute_jaccard(rec):
    sets = [s for s in _sets(rec) if s]
    vals = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return float(np.mean(vals)) if vals else math.nan


def _brute_distance(rec, vecs):
    lists = [[int(i) for i in row if i >= 0] for row in rec]
    lists = [lst for lst in lists if lst]

    def cos(x, y):
        nx, ny = np.linalg.norm(vecs[x]), np.linalg.norm(vecs[y])
        return 0.0 if nx == 0 or ny == 0 else float(vecs[x] @ vecs[y] / (nx * ny))

    vals = []
    for a, b in itertools.combinations(lists, 2):
        vals.append(1.0 - np.mean([cos(x, y) for x in a for y in b]))
    return float(np.mean(vals)) if vals else math.nan


def _brute_gini(counts):
    # mean absolute difference form: G = sum_i sum_j |x_i - x_j| / (2 n^2 mean)
    x = np.asarray(counts, dtype=float)
    if x.sum() == 0:
        return math.nan
    n = x.size
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()))


def test_jaccard_by_hand():
    rec = np.array([[0, 1, 2], [1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    # pairs over the 3 non-empty sets: {0,1,2}&{1,2,3}=2/4, others 0
    assert pairwise_jaccard(rec, 5) == pytest.approx((0.5 + 0 + 0) / 3)
    out = system_diversity(rec, 5, max_pairs=None)
    assert out["rd"] == pytest.approx(1 - 0.5 / 3)
    assert out["distinct"] == 5 and out["coverage"] == pytest.approx(1.0)


def test_identical_and_disjoint_sets():
    same = np.tile(np.array([[3, 1, 2]]), (4, 1))
    assert pairwise_jaccard(same, 4) == pytest.approx(1.0)
    assert between_user_distance(same, np.eye(4)) == pytest.approx(1 - 1 / 3)
    disjoint = np.array([[0, 1], [2, 3]])
    assert pairwise_jaccard(disjoint, 4) == 0.0
    assert between_user_distance(disjoint, np.eye(4)) == pytest.approx(1.0)


def test_union_concentration_counts_each_list_once():
    # item 0 twice in one list counts once: c = [2, 1, 0, 0]
    rec = np.array([[0, 0, 1], [0, -1, -1]])
    out = union_concentration(rec, 4)
    assert out["distinct"] == 2 and out["coverage"] == 0.5
    assert out["gini"] == pytest.approx(_brute_gini([2, 1, 0, 0]))


@settings(max_examples=80, deadline=None)
@given(batches())
def test_jaccard_matches_brute_force(batch):
    rec, n_items = batch
    got, want = pairwise_jaccard(rec, n_items), _brute_jaccard(rec)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want)
        assert 0.0 <= got <= 1.0


@settings(max_examples=80, deadline=None)
@given(batches(), st.integers(0, 2**16))
def test_between_distance_matches_brute_force(batch, vseed):
    rec, n_items = batch
    vecs = np.random.default_rng(vseed).normal(size=(n_items, 3))
    vecs[0] = 0.0  # a cold item: zero vector, cosine 0 with everything
    got, want = between_user_distance(rec, vecs), _brute_distance(rec, vecs)
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(batches())
def test_union_concentration_matches_brute_force(batch):
    rec, n_items = batch
    sets = _sets(rec)
    counts = [sum(i in s for s in sets) for i in range(n_items)]
    out = union_concentration(rec, n_items)
    assert out["distinct"] == len(set().union(*sets))
    assert out["coverage"] == pytest.approx(out["distinct"] / n_items)
    want = _brute_gini(counts)
    assert math.isnan(out["gini"]) if math.isnan(want) else out["gini"] == pytest.approx(want)


def test_sampled_pairs_are_unbiased_estimates():
    rng = np.random.default_rng(0)
    rec = rng.integers(0, 30, size=(60, 8))
    vecs = rng.normal(size=(30, 4))
    exact_j = pairwise_jaccard(rec, 30)
    exact_d = between_user_distance(rec, vecs)
    sampled_j = pairwise_jaccard(rec, 30, max_pairs=40_000, seed=1)
    sampled_d = between_user_distance(rec, vecs, max_pairs=40_000, seed=1)
    assert sampled_j == pytest.approx(exact_j, abs=0.01)
    assert sampled_d == pytest.approx(exact_d, abs=0.01)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="max_pairs"):
        pairwise_jaccard(np.array([[0, 1]]), 2, max_pairs=0)
    with pytest.raises(ValueError, match="item_vectors"):
        between_user_distance(np.array([[0, 1]]), np.zeros(3))
    with pytest.raises(ValueError, match="recommended"):
        union_concentration(np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="item_vectors"):
        system_diversity(np.array([[0, 1]]), 2, item_vectors=np.zeros((3, 2)))
