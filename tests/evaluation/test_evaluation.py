"""Tests for divrec.evaluation.harness: sampled and full protocols, bootstrap CIs, config.

Every expected metric value is computed by hand from a fixed score table (arithmetic in the
comments), never copied from running the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from divrec import metrics as M
from divrec.data.interactions import Interactions
from divrec.evaluation.harness import EvalConfig, bootstrap_ci, evaluate
from divrec.retrieval.base import Recommender
from divrec.splitting import Split

L3 = 1 / math.log2(3)  # discount at rank 2: 0.63093
L4 = 1 / math.log2(4)  # discount at rank 3: 0.5


class TableRecommender(Recommender):
    """A recommender whose scores are a fixed `(n_users, n_items)` table."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)

    def _fit(self, matrix, data):
        assert self.table.shape == matrix.shape

    def _score_all(self, users):
        return self.table[users]


def make_split(train_pairs, test_pairs, n_users, n_items, test_values=None, negatives=None):
    """A Split of one log over users 0..n_users-1 / items 0..n_items-1."""
    pairs = list(train_pairs) + list(test_pairs)
    values = np.ones(len(pairs))
    if test_values is not None:
        values[len(train_pairs) :] = test_values
    log = Interactions(
        users=np.array([u for u, _ in pairs]),
        items=np.array([i for _, i in pairs]),
        values=values,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
    )
    n_train = len(train_pairs)
    return Split(
        train=log.select(np.arange(n_train)),
        test=log.select(np.arange(n_train, len(pairs))),
        negatives=negatives,
        protocol="hand",
    )


def quiet(**kw) -> EvalConfig:
    """Accuracy-only config without bootstrap (fast, only hand-checked columns)."""
    kw.setdefault("diversity", ())
    kw.setdefault("n_bootstrap", 0)
    return EvalConfig(**kw)


# ---------------------------------------------------------------------------------------------
# Sampled protocol
# ---------------------------------------------------------------------------------------------

# 3 users, 5 items. Training: u0 {4}, u1 {4}, u2 {0}. Test rows (positive; negatives):
#   row 0: u0, item 0; negatives [1, 2, 3]
#   row 1: u1, item 1; negatives [0, 1, 3]   <- negative 1 duplicates the positive
#   row 2: u2, item 2; negatives [3, 4, 1]
SAMPLED_TABLE = [
    # row 0: pos 0.5; neg 1 = 0.9 (above), neg 2 = 0.5 (tie -> counts against), neg 3 = 0.1
    #        -> 0-based rank 2 (third place)
    [0.5, 0.9, 0.5, 0.1, 0.0],
    # row 1: pos 0.6; neg 0 = 0.2 (below), neg 1 = duplicate (ignored, although 0.6 >= 0.6),
    #        neg 3 = 0.6 (tie -> against) -> rank 1 (second place); rank 2 if the duplicate
    #        counted
    [0.2, 0.6, 0.0, 0.6, 0.0],
    # row 2: pos 0.8; negs 3 = 0.7, 4 = 0.1, 1 = 0.3, all below -> rank 0
    [0.0, 0.3, 0.8, 0.7, 0.1],
]
SAMPLED_NEG = np.array([[1, 2, 3], [0, 1, 3], [3, 4, 1]])


def sampled_split(test_values=None):
    return make_split(
        [(0, 4), (1, 4), (2, 0)],
        [(0, 0), (1, 1), (2, 2)],
        3,
        5,
        test_values=test_values,
        negatives=SAMPLED_NEG,
    )


def test_sampled_protocol_hand_metrics():
    split = sampled_split()
    model = TableRecommender(SAMPLED_TABLE).fit(split.train)
    res = evaluate(model, split, quiet(ks=(1, 2, 3, 4), protocol="sampled"), progress=False)
    t = res.per_user
    assert t["user"].tolist() == [0, 1, 2]
    # 0-based ranks [2, 1, 0]; HR@k = rank < k
    np.testing.assert_array_equal(t["hr@1"], [0, 0, 1])
    np.testing.assert_array_equal(t["hr@2"], [0, 1, 1])
    np.testing.assert_array_equal(t["hr@3"], [1, 1, 1])
    # one relevant item per row: recall = HR, precision = HR / k
    np.testing.assert_array_equal(t["recall@2"], [0, 1, 1])
    np.testing.assert_allclose(t["precision@3"], [1 / 3, 1 / 3, 1 / 3])
    # NDCG@k = 1 / log2(rank + 2) when rank < k (IDCG = 1)
    np.testing.assert_allclose(t["ndcg@1"], [0, 0, 1])
    np.testing.assert_allclose(t["ndcg@2"], [0, L3, 1])
    np.testing.assert_allclose(t["ndcg@4"], [L4, L3, 1])
    # MRR@k = 1 / (rank + 1) when rank < k
    np.testing.assert_allclose(t["mrr@2"], [0, 1 / 2, 1])
    np.testing.assert_allclose(t["mrr@3"], [1 / 3, 1 / 2, 1])
    np.testing.assert_allclose(t["map@3"], [1 / 3, 1 / 2, 1])
    # AUC over valid pairs, ties 0.5 (Mann-Whitney, not pessimistic):
    #   row 0: vs 1: 0, vs 2: 0.5, vs 3: 1 -> 1.5 / 3 = 0.5
    #   row 1: vs 0: 1, vs 3: 0.5 (duplicate excluded) -> 1.5 / 2 = 0.75
    #   row 2: 3 / 3 = 1
    np.testing.assert_allclose(t["auc"], [0.5, 0.75, 1.0])
    # aggregate = mean over rows: HR@2 = 2/3, NDCG@2 = (0 + L3 + 1) / 3
    assert res.mean("hr", 2) == pytest.approx(2 / 3)
    assert res.mean("ndcg", 2) == pytest.approx((L3 + 1) / 3)
    assert res.info == {"users": 3, "protocol": "hand"}


def test_sampled_protocol_recommendation_list():
    split = sampled_split()
    model = TableRecommender(SAMPLED_TABLE).fit(split.train)
    res = evaluate(model, split, quiet(ks=(6,), protocol="sampled"), progress=False)
    # negatives by score, the positive inserted at its rank, -1 for the ignored duplicate and
    # past the end of the candidate set (4 candidates < 6):
    #   row 0: negs 1 (0.9), 2 (0.5), 3 (0.1); positive 0 at rank 2
    #   row 1: negs 3 (0.6), 0 (0.2); positive 1 at rank 1; duplicate dropped
    #   row 2: negs 3 (0.7), 1 (0.3), 4 (0.1); positive 2 at rank 0
    expected = [
        [1, 2, 0, 3, -1, -1],
        [3, 1, 0, -1, -1, -1],
        [2, 3, 1, 4, -1, -1],
    ]
    assert res.recommendations.tolist() == expected
    # the positive sits exactly at its rank, once
    for row, (pos, rank) in enumerate([(0, 2), (1, 1), (2, 0)]):
        assert res.recommendations[row, rank] == pos
        assert (res.recommendations[row] == pos).sum() == 1
    np.testing.assert_array_equal(res.per_user["hr@6"], [1, 1, 1])


def test_sampled_all_ties_is_pessimistic():
    # every candidate scores the same: the positive ranks after all 3 negatives
    split = sampled_split()
    model = TableRecommender(np.ones((3, 5))).fit(split.train)
    res = evaluate(model, split, quiet(ks=(3, 4), protocol="sampled"), progress=False)
    # rows 0 and 2: 3 valid negatives -> rank 3 -> HR@3 = 0, HR@4 = 1, NDCG@4 = 1/log2(5)
    # row 1: the duplicate is ignored -> 2 valid negatives -> rank 2 -> HR@3 = 1
    np.testing.assert_array_equal(res.per_user["hr@3"], [0, 1, 0])
    np.testing.assert_array_equal(res.per_user["hr@4"], [1, 1, 1])
    np.testing.assert_allclose(
        res.per_user["ndcg@4"], [1 / math.log2(5), 1 / math.log2(4), 1 / math.log2(5)]
    )
    np.testing.assert_allclose(res.per_user["auc"], [0.5, 0.5, 0.5])  # all ties: 0.5


def test_sampled_relevance_threshold_and_max_users():
    # test values [5, 2, 4]: threshold 4 keeps rows 0 and 2 (users 0 and 2)
    split = sampled_split(test_values=[5.0, 2.0, 4.0])
    model = TableRecommender(SAMPLED_TABLE).fit(split.train)
    cfg = quiet(ks=(1, 3), protocol="sampled", relevance_threshold=4.0)
    res = evaluate(model, split, cfg, progress=False)
    assert res.per_user["user"].tolist() == [0, 2]
    np.testing.assert_array_equal(res.per_user["hr@1"], [0, 1])  # ranks 2 and 0
    np.testing.assert_allclose(res.per_user["ndcg@3"], [L4, 1])
    # max_users=2 of 3 rows: a reproducible subset
    a = evaluate(model, split, quiet(protocol="sampled", max_users=2, seed=4), progress=False)
    b = evaluate(model, split, quiet(protocol="sampled", max_users=2, seed=4), progress=False)
    assert a.per_user["user"].tolist() == b.per_user["user"].tolist()
    assert len(a.per_user) == 2 and set(a.per_user["user"]) <= {0, 1, 2}


def test_sampled_needs_negatives():
    split = make_split([(0, 0)], [(0, 1)], 1, 3)
    model = TableRecommender(np.zeros((1, 3))).fit(split.train)
    with pytest.raises(ValueError, match="no negatives"):
        evaluate(model, split, quiet(protocol="sampled"), progress=False)


# ---------------------------------------------------------------------------------------------
# Full protocol
# ---------------------------------------------------------------------------------------------

# 4 users, 6 items.
#   u0: train {0}; test {1 (value 5), 3 (value 2)}
#   u1: train {1, 2}; test {0 (value 4)}
#   u2: train {5}; test {4 (value 1)}
#   u3: train {0}; no test -> not evaluated
FULL_TRAIN = [(0, 0), (1, 1), (1, 2), (2, 5), (3, 0)]
FULL_TEST = [(0, 1), (0, 3), (1, 0), (2, 4)]
FULL_VALUES = [5.0, 2.0, 4.0, 1.0]
FULL_TABLE = [
    # u0 without item 0: 4 (0.8), 3 (0.7), 1 (0.3), 5 (0.2), 2 (0.1)
    [0.9, 0.3, 0.1, 0.7, 0.8, 0.2],
    # u1 without items 1, 2: 4 (0.6), 0 (0.5), 5 (0.4), 3 (0.1)
    [0.5, 0.9, 0.95, 0.1, 0.6, 0.4],
    # u2 without item 5: 4 (0.5), 3, 2, 1, 0
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
]


def full_split():
    return make_split(FULL_TRAIN, FULL_TEST, 4, 6, test_values=FULL_VALUES)


def test_full_protocol_hand_metrics():
    split = full_split()
    model = TableRecommender(FULL_TABLE).fit(split.train)
    res = evaluate(model, split, quiet(ks=(1, 2, 3)), progress=False)
    t = res.per_user
    assert t["user"].tolist() == [0, 1, 2]  # u3 has no test item
    assert res.recommendations.tolist() == [[4, 3, 1], [4, 0, 5], [4, 3, 2]]
    # hits: u0 [0, 1, 1] (2 relevant), u1 [0, 1, 0] (1 relevant), u2 [1, 0, 0] (1 relevant)
    np.testing.assert_array_equal(t["hr@1"], [0, 0, 1])
    np.testing.assert_array_equal(t["hr@2"], [1, 1, 1])
    np.testing.assert_allclose(t["recall@1"], [0, 0, 1])
    np.testing.assert_allclose(t["recall@2"], [1 / 2, 1, 1])
    np.testing.assert_allclose(t["recall@3"], [1, 1, 1])
    np.testing.assert_allclose(t["precision@3"], [2 / 3, 1 / 3, 1 / 3])
    # u0: DCG@2 = L3, IDCG@2 = 1 + L3; DCG@3 = L3 + L4, IDCG@3 = 1 + L3 (only 2 relevant)
    # u1: DCG = L3, IDCG = 1; u2: 1
    np.testing.assert_allclose(t["ndcg@1"], [0, 0, 1])
    np.testing.assert_allclose(t["ndcg@2"], [L3 / (1 + L3), L3, 1])
    np.testing.assert_allclose(t["ndcg@3"], [(L3 + L4) / (1 + L3), L3, 1])
    np.testing.assert_allclose(t["mrr@3"], [1 / 2, 1 / 2, 1])
    # AP@3 u0 = (P@2 + P@3) / min(2, 3) = (1/2 + 2/3) / 2 = 7/12
    np.testing.assert_allclose(t["map@3"], [7 / 12, 1 / 2, 1])
    assert res.mean("recall", 2) == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert "auc" not in t.columns


def test_full_protocol_without_exclude_seen():
    split = full_split()
    model = TableRecommender(FULL_TABLE).fit(split.train)
    res = evaluate(model, split, quiet(ks=(3,), exclude_seen=False), progress=False)
    # u0 now ranks its training item 0 (0.9) first: [0, 4, 3] -> one hit at rank 3
    # u1: [2 (0.95), 1 (0.9), 4 (0.6)] -> no hit; u2: [5, 4, 3] -> hit at rank 2
    assert res.recommendations.tolist() == [[0, 4, 3], [2, 1, 4], [5, 4, 3]]
    np.testing.assert_allclose(res.per_user["recall@3"], [1 / 2, 0, 1])
    np.testing.assert_allclose(res.per_user["ndcg@3"], [L4 / (1 + L3), 0, L3])


def test_full_protocol_relevance_threshold():
    split = full_split()
    model = TableRecommender(FULL_TABLE).fit(split.train)
    res = evaluate(model, split, quiet(ks=(3,), relevance_threshold=4.0), progress=False)
    # relevant (value >= 4): u0 {1}, u1 {0}; u2's only test item has value 1 -> dropped
    assert res.per_user["user"].tolist() == [0, 1]
    # u0 list [4, 3, 1]: item 3 no longer relevant -> hit only at rank 3 -> NDCG = L4 / 1
    # u1 list [4, 0, 5]: hit at rank 2
    np.testing.assert_allclose(res.per_user["recall@3"], [1, 1])
    np.testing.assert_allclose(res.per_user["ndcg@3"], [L4, L3])
    np.testing.assert_allclose(res.per_user["precision@3"], [1 / 3, 1 / 3])
    with pytest.raises(ValueError, match="no test user"):
        evaluate(model, split, quiet(relevance_threshold=10.0), progress=False)


def test_full_protocol_recommend_fn_override():
    split = full_split()
    model = TableRecommender(FULL_TABLE).fit(split.train)
    calls = []

    def fixed_lists(users, k):
        calls.append((users.tolist(), k))
        # every user gets items [0, 1, 2, ...] in index order
        return np.tile(np.arange(k), (users.size, 1))

    res = evaluate(model, split, quiet(ks=(1, 3)), progress=False, recommend_fn=fixed_lists)
    assert calls == [([0, 1, 2], 3)]  # called once with the test users and max K
    assert res.recommendations.tolist() == [[0, 1, 2]] * 3
    # u0 relevant {1, 3}: hit at rank 2 -> recall@3 = 1/2, NDCG@3 = L3 / (1 + L3)
    # u1 relevant {0}: hit at rank 1; u2 relevant {4}: no hit
    np.testing.assert_allclose(res.per_user["recall@3"], [1 / 2, 1, 0])
    np.testing.assert_allclose(res.per_user["ndcg@3"], [L3 / (1 + L3), 1, 0])
    np.testing.assert_allclose(res.per_user["hr@1"], [0, 1, 0])
    # batching: batch_size=2 -> two calls
    calls.clear()
    evaluate(model, split, quiet(ks=(3,), batch_size=2), progress=False, recommend_fn=fixed_lists)
    assert [c[0] for c in calls] == [[0, 1], [2]]


def _random_full_split(seed=0, n_users=30, n_items=40):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(n_users):
        items = rng.choice(n_items, 6, replace=False)
        train += [(u, int(i)) for i in items[:4]]
        if u % 5 != 4:  # every fifth user has no test item
            test += [(u, int(i)) for i in items[4:]]
    table = rng.random((n_users, n_items))
    return make_split(train, test, n_users, n_items), table


def test_full_protocol_max_users_sampling():
    split, table = _random_full_split()
    model = TableRecommender(table).fit(split.train)
    eligible = set(np.unique(split.test.users).tolist())  # 24 users with test items
    everyone = evaluate(model, split, quiet(ks=(5,)), progress=False).per_user
    runs = [
        evaluate(model, split, quiet(ks=(5,), max_users=10, seed=s), progress=False).per_user
        for s in (3, 3, 4)
    ]
    users = [r["user"].tolist() for r in runs]
    assert users[0] == users[1]  # same seed -> same sample
    assert users[0] != users[2]  # another seed -> another sample (C(24, 10) choices)
    for u in users:
        assert len(u) == 10 and len(set(u)) == 10 and set(u) <= eligible
        assert u == sorted(u)
    # the sampled users' values equal their values in the full evaluation
    full_by_user = everyone.set_index("user")
    for r in runs:
        np.testing.assert_allclose(
            r["ndcg@5"].to_numpy(), full_by_user.loc[r["user"], "ndcg@5"].to_numpy()
        )
    # max_users above the number of users keeps everyone
    big = evaluate(model, split, quiet(ks=(5,), max_users=100), progress=False)
    assert big.per_user["user"].tolist() == sorted(eligible)


def test_full_protocol_matches_brute_force_on_random_data():
    split, table = _random_full_split(seed=1)
    model = TableRecommender(table).fit(split.train)
    res = evaluate(model, split, quiet(ks=(3, 10)), progress=False)
    train = split.train.to_csr().toarray() > 0
    test = split.test.to_csr().toarray() > 0
    for row, u in enumerate(res.per_user["user"]):
        unseen = [i for i in range(40) if not train[u, i]]
        ranked = sorted(unseen, key=lambda i: (-np.float32(table[u, i]), i))[:10]
        rel = set(np.flatnonzero(test[u]).tolist())
        hits = [i in rel for i in ranked]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), 10)))
        assert res.recommendations[row].tolist() == ranked
        assert res.per_user["recall@10"].iloc[row] == pytest.approx(sum(hits) / len(rel))
        assert res.per_user["ndcg@10"].iloc[row] == pytest.approx(dcg / idcg)
        assert res.per_user["hr@3"].iloc[row] == float(any(hits[:3]))


# ---------------------------------------------------------------------------------------------
# Aggregates and bootstrap
# ---------------------------------------------------------------------------------------------


def test_aggregate_means_and_cis():
    split, table = _random_full_split(seed=2)
    model = TableRecommender(table).fit(split.train)
    cfg = EvalConfig(ks=(5, 10), n_bootstrap=200, seed=1)
    res = evaluate(model, split, cfg, progress=False)
    agg = res.aggregate
    for _, row in agg.iterrows():
        col = res.per_user[f"{row.metric}@{int(row.k)}"].to_numpy(dtype=float)
        assert row["mean"] == pytest.approx(np.nanmean(col))
        assert row["n"] == np.isfinite(col).sum()
        assert row.ci_low <= row["mean"] + 1e-12 and row["mean"] <= row.ci_high + 1e-12
    again = evaluate(model, split, cfg, progress=False).aggregate
    np.testing.assert_array_equal(agg[["ci_low", "ci_high"]], again[["ci_low", "ci_high"]])
    # system metrics are reported per k, equal to the public metric functions
    assert {"item_coverage@5", "item_coverage@10", "exposure_gini@10"} <= set(res.system)
    n_items = split.train.n_items
    for k in (5, 10):
        r = res.recommendations[:, :k]
        assert res.system[f"item_coverage@{k}"] == M.item_coverage(r, n_items)
        assert res.system[f"distinct_items@{k}"] == M.distinct_items(r)
        assert res.system[f"exposure_gini@{k}"] == M.exposure_gini(r, n_items)
        assert res.system[f"exposure_entropy@{k}"] == M.exposure_entropy(r, n_items)
    # no bootstrap -> NaN intervals
    res0 = evaluate(model, split, quiet(ks=(5,)), progress=False)
    assert res0.aggregate[["ci_low", "ci_high"]].isna().all().all()
    with pytest.raises(KeyError, match="hr@7"):
        res0.mean("hr", 7)


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    values = np.random.default_rng(0).normal(2.0, 1.0, size=60)
    lo, hi = bootstrap_ci(values, 2000, 0.025, np.random.default_rng(1))
    assert lo < values.mean() < hi
    assert bootstrap_ci(values, 2000, 0.025, np.random.default_rng(1)) == (lo, hi)
    assert bootstrap_ci(values, 2000, 0.025, np.random.default_rng(2)) != (lo, hi)
    # normal approximation: width ~ 2 * 1.96 * s / sqrt(n) (a 97.5% interval would be
    # 2.24 / 1.96 = 1.14 times wider, a 90% one 1.645 / 1.96 = 0.84 times)
    approx = 2 * 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert 0.92 * approx < hi - lo < 1.07 * approx
    # a wider level (alpha 0.05 each side -> 90%) gives a narrower interval
    lo90, hi90 = bootstrap_ci(values, 2000, 0.05, np.random.default_rng(1))
    assert lo < lo90 < hi90 < hi


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(3)
    small = rng.binomial(1, 0.3, size=25).astype(float)
    large = rng.binomial(1, 0.3, size=400).astype(float)
    w_small = np.subtract(*bootstrap_ci(small, 1000, 0.025, np.random.default_rng(0))[::-1])
    w_large = np.subtract(*bootstrap_ci(large, 1000, 0.025, np.random.default_rng(0))[::-1])
    # width scales like 1/sqrt(n): 16x the data -> about 1/4 the width
    assert 0 < w_large < 0.5 * w_small


def test_bootstrap_ci_degenerate_cases():
    for c in (0.0, 1.0, 3.0):
        assert bootstrap_ci(np.full(30, c), 500, 0.025, np.random.default_rng(0)) == (c, c)
    lo, hi = bootstrap_ci(np.full(30, 0.7), 500, 0.025, np.random.default_rng(0))
    assert lo == pytest.approx(0.7, abs=1e-12) and hi == pytest.approx(0.7, abs=1e-12)
    # fewer than two values, or no resamples: undefined
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([1.0]), 100, 0.025, None))
    assert all(math.isnan(x) for x in bootstrap_ci(np.arange(5.0), 0, 0.025, None))


# ---------------------------------------------------------------------------------------------
# EvalConfig validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"protocol": "leave-one-out"}, "protocol"),
        ({"ks": (0,)}, "ks"),
        ({"ks": (10, -1)}, "ks"),
        ({"ks": ()}, "ks"),
        ({"accuracy": ("hr", "f1")}, "unknown metric"),
        ({"diversity": ("serendipity",)}, "unknown metric"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"batch_size": -1}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_users": 0}, "max_users"),
        ({"n_bootstrap": -5}, "n_bootstrap"),
        ({"between_user_pairs": -1}, "between_user_pairs"),
        ({"relevance_threshold": float("nan")}, "relevance_threshold"),
    ],
)
def test_eval_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(**kwargs)


def test_eval_config_defaults_are_valid():
    cfg = EvalConfig()
    assert cfg.protocol == "full" and cfg.ks == (10,)
    EvalConfig(ks=(1, 5), protocol="sampled", accuracy=("hr",), diversity=("novelty",))


def test_bootstrap_kernel_draws_uniform_multinomial_counts():
    from scipy import stats

    from divrec.evaluation._bootstrap import multinomial_counts, seed_state

    u, r = 37, 4000
    counts = np.empty((r, u))
    state = seed_state(np.random.default_rng(0))
    multinomial_counts(counts, state)
    assert np.all(counts.sum(axis=1) == u) and np.all(counts == np.round(counts))
    # every index equally likely: chi-square over the pooled draws (37 cells, 148,000 draws)
    pooled = counts.sum(axis=0)
    assert stats.chisquare(pooled).pvalue > 1e-3
    # one cell's count is Binomial(U, 1/U): mean 1, variance 1 − 1/U
    col = counts[:, 5]
    assert abs(col.mean() - 1.0) < 0.05 and abs(col.var() - (1 - 1 / u)) < 0.08
    # two cells are negatively correlated: cov = −1/U
    cov = np.cov(counts[:, 0], counts[:, 1])[0, 1]
    assert abs(cov + 1 / u) < 0.03
    # the state advanced: the next block differs; a fresh seed repeats the first one
    again = np.empty((r, u))
    multinomial_counts(again, state)
    assert not np.array_equal(again, counts)
    fresh = np.empty((r, u))
    multinomial_counts(fresh, seed_state(np.random.default_rng(0)))
    np.testing.assert_array_equal(fresh, counts)


def test_shared_bootstrap_matches_the_normal_approximation_and_is_paired():
    from divrec.evaluation._bootstrap import bootstrap_means

    rng = np.random.default_rng(4)
    a = rng.normal(0.0, 1.0, size=3000)
    b = a + rng.normal(0.0, 0.1, size=3000)  # nearly the same metric
    means = bootstrap_means(np.stack([a, b]), 2000, np.random.default_rng(5))
    # replicate means are centred on the sample mean with sd s / sqrt(n)
    se = a.std() / math.sqrt(a.size)
    assert abs(means[0].mean() - a.mean()) < 0.1 * se
    assert 0.93 * se < means[0].std() < 1.07 * se
    # paired: the two rows move together across replicates (correlation ~ 0.995)
    assert np.corrcoef(means[0], means[1])[0, 1] > 0.98
    # the brute-force definition on the first replicates: recover the counts from the
    # kernel's own stream and compare the means
    from divrec.evaluation._bootstrap import multinomial_counts, seed_state

    counts = np.empty((2, a.size))
    multinomial_counts(counts, seed_state(np.random.default_rng(5)))
    np.testing.assert_allclose(means[0, :2], counts @ a / a.size, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Calibration and exposure-fairness columns
# ---------------------------------------------------------------------------------------------
def test_full_protocol_reports_calibration_and_exposure():
    split = full_split()
    cats = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [1, 0]]))
    train = split.train.with_item_side_info(item_categories=cats, category_names=("a", "b"))
    split = Split(train=train, test=split.test, protocol="hand")
    model = TableRecommender(FULL_TABLE).fit(split.train)
    cfg = EvalConfig(ks=(2,), diversity=("miscalibration", "arp"), n_bootstrap=0)
    res = evaluate(model, split, cfg, progress=False)
    recs = res.recommendations[:, :2]
    assert recs.tolist() == [[4, 3], [4, 0], [4, 3]]
    train = split.train.to_csr(binary=True)
    # by hand for user 0: history and shares of items 0 (a), 1 (a, b) …
    rows = [train[u].indices.tolist() for u in (0, 1, 2)]
    shares = np.array([[1, 0], [0.5, 0.5], [0, 1], [0, 1], [1, 0], [1, 0]])
    for u, row in enumerate(rows):
        p = shares[row].mean(axis=0)
        q = shares[recs[u]].mean(axis=0)
        qt = 0.99 * q + 0.01 * p
        want = sum(pg * math.log(pg / qg) for pg, qg in zip(p, qt, strict=True) if pg > 0)
        assert res.per_user["miscalibration@2"][u] == pytest.approx(want, rel=1e-12)
    pop = split.train.item_popularity() / split.train.n_users
    np.testing.assert_allclose(res.per_user["arp@2"], pop[recs].mean(axis=1))
    assert 0.0 <= res.system["tail_exposure@2"] <= 1.0
    assert math.isfinite(res.system["popularity_lift@2"])
