"""TotalRecall PUMS experiment (Tables 3, 5): split, groups, metrics by hand and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.data import SyntheticConfig, make_synthetic
from divrec.metrics.groups import (
    genre_popularity_groups,
    group_metrics,
    group_truth,
    item_user_truth,
    single_item_metrics,
)
from divrec.metrics.pums import GROUP_AGGREGATIONS, u2i_diversity
from divrec.retrieval.two_tower import TwoTowerRecommender
from divrec.splitting.pums import holdout_count, pums_split


@pytest.fixture(scope="module")
def synth():
    cfg = SyntheticConfig(
        n_users=300, n_items=150, n_topics=5, interactions_per_user=25, noise=0.02, seed=1
    )
    return make_synthetic(cfg).interactions


# --------------------------------------------------------------------------- split
def test_holdout_count_rounds_half_up_with_floor_of_one():
    n = np.array([50, 99, 149, 150, 151, 250, 349, 1000])
    np.testing.assert_array_equal(holdout_count(n), [1, 1, 1, 2, 2, 3, 3, 10])
    np.testing.assert_array_equal(holdout_count(np.array([10, 30]), fraction=0.05), [1, 2])


def test_pums_split_by_hand():
    # item 0: 4 users, item 1: 2 users, item 2: 3 users, item 3: 1 user; min_users = 3
    rows = [0, 1, 2, 3, 0, 1, 0, 2, 4, 4]
    cols = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3]
    x = sp.csr_matrix((np.full(10, 5.0), (rows, cols)), shape=(5, 4))  # ratings → binary
    s = pums_split(x, min_users=3, fraction=0.5, seed=0)
    np.testing.assert_array_equal(s.chosen_items, [0, 2])
    np.testing.assert_array_equal(s.popularity, [4, 2, 3, 1])
    assert {s.valid_items.size, s.test_items.size} == {1}
    assert set(s.valid_items) | set(s.test_items) == {0, 2}
    held = s.valid + s.test
    # 50% of 4 = 2 users of item 0; 50% of 3 = 1.5 → 2 users of item 2
    np.testing.assert_array_equal(held.getnnz(axis=0), [2, 0, 2, 0])
    assert s.valid[:, s.test_items].nnz == 0 and s.test[:, s.valid_items].nnz == 0
    np.testing.assert_array_equal((s.train + held).toarray(), (x > 0).toarray())
    assert s.train.multiply(held).nnz == 0 and s.train.data.max() == 1


def test_pums_split_partitions_synthetic(synth):
    x = synth.to_csr(binary=True)
    s = pums_split(x, min_users=20, fraction=0.05, seed=3)
    pop = np.diff(x.tocsc().indptr)
    np.testing.assert_array_equal(s.chosen_items, np.flatnonzero(pop >= 20))
    assert s.chosen_items.size > 20
    held = (s.valid + s.test).tocsr()
    np.testing.assert_array_equal(
        held.getnnz(axis=0)[s.chosen_items], holdout_count(pop[s.chosen_items], 0.05)
    )
    assert held.getnnz(axis=0).sum() == held.getnnz(axis=0)[s.chosen_items].sum()
    assert (s.train + held - x).nnz == 0 and s.train.multiply(held).nnz == 0
    assert np.intersect1d(s.valid_items, s.test_items).size == 0
    assert abs(s.valid_items.size - s.test_items.size) <= 1
    stats = s.stats()
    assert stats["train"]["records"] + stats["valid"]["records"] + stats["test"]["records"] == x.nnz
    again = pums_split(x, min_users=20, fraction=0.05, seed=3)
    assert (again.test != s.test).nnz == 0
    other = pums_split(x, min_users=20, fraction=0.05, seed=4)
    assert (other.test != s.test).nnz > 0


# --------------------------------------------------------------------------- Table 3 metrics
def test_single_item_metrics_by_hand():
    top = np.array([[0, 1, 2], [3, 4, -1], [7, 8, 9]])
    truth = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [1, 5, 4])), shape=(3, 10))  # item 2: none
    r = single_item_metrics(top, truth, k=3)
    assert r["n_items"] == 2
    assert np.isclose(r["precision"], (1 / 3 + 1 / 3) / 2)
    assert np.isclose(r["recall"], (1 / 2 + 1 / 1) / 2)
    assert r["distinct_users"] == 5  # users of the item without ground truth are not counted
    r2 = single_item_metrics(top, truth, k=2)
    assert np.isclose(r2["precision"], (1 / 2 + 1 / 2) / 2)


def test_item_user_truth():
    held = sp.csr_matrix(([1, 1, 1], ([0, 2, 2], [1, 1, 3])), shape=(3, 4))
    t = item_user_truth(held, np.array([3, 1]))
    np.testing.assert_array_equal(t.toarray(), [[0, 0, 1], [1, 0, 1]])


# --------------------------------------------------------------------------- Table 5 groups
def test_genre_popularity_groups_by_hand():
    n_items = 26
    pop = np.arange(n_items)[::-1].copy()  # item 0 most popular
    pop[4] = pop[5]  # tie between items 4 and 5: lower index first
    rows = list(range(20)) + [20, 21, 22, 23, 24] + [25]
    cols = [0] * 20 + [1] * 5 + [2]
    cats = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_items, 4))
    groups = genre_popularity_groups(
        np.arange(25), cats, pop, ("A", "B", "C", "D"), fraction=0.1
    )  # item 25 (genre C) not a candidate; genre D empty
    names = [(g["genre"], g["level"]) for g in groups]
    assert names == [("A", "top"), ("A", "middle"), ("A", "bottom")] + [
        ("B", "top"),
        ("B", "middle"),
        ("B", "bottom"),
    ]
    a = {g["level"]: g["items"].tolist() for g in groups if g["genre"] == "A"}
    assert a == {"top": [0, 1], "middle": [9, 10], "bottom": [18, 19]}  # floor(2.0) = 2 each
    b = {g["level"]: g["items"].tolist() for g in groups if g["genre"] == "B"}
    assert b == {"top": [20], "middle": [22], "bottom": [24]}  # max(1, floor(0.5))
    pop2 = pop.copy()
    pop2[5] = pop2[4] = 100  # tie at the top
    g2 = genre_popularity_groups(np.arange(25), cats, pop2, ("A", "B", "C", "D"))
    assert g2[0]["items"].tolist() == [4, 5]


def test_group_truth_by_hand():
    train = sp.csr_matrix(([1, 1], ([0, 1], [0, 3])), shape=(4, 4))
    held = sp.csr_matrix(([1, 1, 1, 1], ([0, 1, 2, 3], [1, 1, 2, 3])), shape=(4, 4))
    # group {0, 1}: user 0 watched 0 in training → not a potential user; user 1 is one
    np.testing.assert_array_equal(group_truth(train, held, np.array([0, 1])), [1])
    # group {1, 2, 3}: users 0, 1 (via 1), 2 (via 2); user 3 via 3 but user 1 saw 3 in train
    np.testing.assert_array_equal(group_truth(train, held, np.array([1, 2, 3])), [0, 2, 3])
    # item scope: training interactions with other group items do not disqualify
    np.testing.assert_array_equal(group_truth(train, held, np.array([0, 1]), "item"), [0, 1])
    got = group_truth(train, held, np.array([1, 2, 3]), "item")
    np.testing.assert_array_equal(got, [0, 1, 2, 3])
    with pytest.raises(ValueError):
        group_truth(train, held, np.array([0]), "user")


class _FixedLists:
    """A stand-in model returning fixed lists (group metrics / diversity arithmetic)."""

    def __init__(self, group_lists=None, u2i_lists=None, n_items=10):
        self.group_lists = group_lists
        self.u2i = u2i_lists
        self.n_items_ = n_items
        self.n_users_ = 0 if u2i_lists is None else len(u2i_lists)
        self.calls = []

    def potential_users_of_group(
        self, items, k, aggregation, candidates_per_item=None, seen_scope="group"
    ):
        self.calls.append((tuple(items), aggregation, candidates_per_item, seen_scope))
        return np.array(self.group_lists[len(self.calls) - 1]), None

    def recommend(self, users, k):
        return np.array([self.u2i[u][:k] for u in users]), None


def test_group_metrics_by_hand():
    groups = [{"genre": "A", "level": "top", "items": np.array([1, 2])}] * 3
    truths = [np.array([0, 5, 6, 7]), np.array([], dtype=np.int64), np.array([2])]
    model = _FixedLists([[0, 1, 5, -1], [9, 8, 7, 6], [2, 3, 4, 0]])
    r = group_metrics(model, groups, truths, "max", k=4, candidates_per_item=7, seen_scope="item")
    assert r["n_groups"] == 2  # the group without potential users is skipped
    assert np.isclose(r["precision"], (2 / 4 + 1 / 4) / 2)
    assert np.isclose(r["recall"], (2 / 4 + 1 / 1) / 2)
    assert r["distinct_users"] == 10  # 0..9 over all three lists
    assert model.calls[0] == ((1, 2), "max", 7, "item")


def test_u2i_diversity_by_hand():
    lists = [[0, 1, 2], [2, 3, -1], [0, 3, 1]]
    cats = sp.csr_matrix(([1, 1, 1, 1, 1], ([0, 1, 2, 3, 5], [0, 0, 1, 3, 2])), shape=(6, 4))
    r = u2i_diversity(_FixedLists(u2i_lists=lists, n_items=6), cats, k=3, chunk=2)
    assert r["distinct_items"] == 4 and r["distinct_genres"] == 3  # genres 0, 1, 3
    # exposure counts 2, 2, 2, 2, 0, 0 → sorted 0, 0, 2, 2, 2, 2; coefficients 2i - 7:
    # G = (-1 + 1 + 3 + 5) * 2 / (6 * 8) = 1/3
    assert np.isclose(r["exposure_gini"], 1 / 3) and r["k"] == 3
    # k = 1: items 0, 2, 0 → 2 distinct items, genres 0, 1
    r1 = u2i_diversity(_FixedLists(u2i_lists=lists, n_items=6), cats, k=1, chunk=1)
    assert r1["distinct_items"] == 2 and r1["distinct_genres"] == 2


# --------------------------------------------------------------------------- on a trained model
@pytest.fixture(scope="module")
def trained(synth):
    split = pums_split(synth.to_csr(binary=True), min_users=20, fraction=0.1, seed=0)
    kw = {"dim": 16, "tau": 0.2, "batch_size": 128, "epochs": 8, "lr": 0.02, "threads": 1}
    model = TwoTowerRecommender(loss="bi", **kw).fit(split.train)
    return split, model


def test_table3_on_synthetic_beats_random_and_matches_bruteforce(synth, trained):
    split, model = trained
    truth = item_user_truth(split.test, split.test_items)
    top, _ = model.potential_users(split.test_items, k=10)
    r = single_item_metrics(top, truth, 10)
    # brute force: exact φ over all users, training users of the item removed
    phi = model.user_factors_ @ model.item_factors_[split.test_items].T / model.tau
    seen = split.train[:, split.test_items].toarray() > 0
    phi = np.where(seen, -np.inf, phi)
    hits, prec, rec = 0, [], []
    for col in range(split.test_items.size):
        users = set(np.argsort(-phi[:, col], kind="stable")[:10].tolist())
        rel = set(truth[col].indices.tolist())
        if rel:
            prec.append(len(users & rel) / 10)
            rec.append(len(users & rel) / len(rel))
            hits += len(users & rel)
    assert np.isclose(r["precision"], np.mean(prec)) and np.isclose(r["recall"], np.mean(rec))
    # random users: expected precision = |U_i| / eligible users ≈ 3 / 280 ≈ 0.01
    rng = np.random.default_rng(0)
    rand = np.array([rng.choice(synth.n_users, 10, replace=False) for _ in split.test_items])
    r_rand = single_item_metrics(rand, truth, 10)
    assert r["precision"] > 3 * r_rand["precision"] and r["precision"] > 0.03


def test_group_metrics_on_trained_model(synth, trained):
    split, model = trained
    groups = genre_popularity_groups(
        split.chosen_items, synth.item_categories, split.popularity, synth.category_names
    )
    assert len(groups) == 3 * synth.n_categories
    held = split.valid + split.test
    for scope in ("group", "item"):
        truths = [group_truth(split.train, held, g["items"], scope) for g in groups]
        for agg in GROUP_AGGREGATIONS:
            r = group_metrics(model, groups, truths, agg, 10, 30, seen_scope=scope)
            assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
            assert r["n_groups"] == sum(t.size > 0 for t in truths)
    # the mean-aggregated exact ranking equals brute force for the first group
    g = groups[0]["items"]
    p = np.exp(model.user_factors_ @ model.item_factors_[g].T / model.tau).mean(axis=1)
    p[np.asarray(split.train[:, g].sum(axis=1)).ravel() > 0] = -np.inf
    ids, _ = model.potential_users_of_group(g, k=10, aggregation="mean")
    assert set(ids.tolist()) == set(np.argsort(-p, kind="stable")[:10].tolist())
