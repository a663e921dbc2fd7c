"""Tests for divrec.retrieval: `top_k`, the `Recommender` protocol and the baselines.

Expected values are computed by hand (arithmetic in comments) or by an independent
brute force (Python loops and `sorted`), never copied from running the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from divrec.data.interactions import Interactions
from divrec.retrieval.base import NotFittedError, Recommender, _is_seen, top_k
from divrec.retrieval.baselines import (
    ALSRecommender,
    BPRRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RandomRecommender,
)

NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


class TableRecommender(Recommender):
    """A recommender whose scores are a fixed `(n_users, n_items)` table."""

    def __init__(self, table):
        self.table = table

    def _fit(self, matrix, data):
        assert self.table.shape == matrix.shape

    def _score_all(self, users):
        return self.table[users]


def interactions(pairs, n_users, n_items, values=None) -> Interactions:
    """A log over users 0..n_users-1 and items 0..n_items-1 from (user, item) pairs."""
    users = [u for u, _ in pairs]
    items = [i for _, i in pairs]
    return Interactions(
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        values=np.ones(len(pairs)) if values is None else np.asarray(values),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
    )


def brute_top_k(row, k):
    """Top-k of one row by `sorted` on (-score, index); -inf -> id -1; padded to k."""
    order = sorted(range(len(row)), key=lambda j: (-float(row[j]), j))[:k]
    ids = [-1 if float(row[j]) == NEG_INF else j for j in order]
    vals = [float(row[j]) for j in order]
    ids += [-1] * (k - len(ids))
    vals += [NEG_INF] * (k - len(vals))
    return ids, vals


# ---------------------------------------------------------------------------------------------
# top_k
# ---------------------------------------------------------------------------------------------

TIE_VALUES = [NEG_INF, -1.5, 0.0, 0.1, 0.3, 1.0, 2.0]


@settings(max_examples=300, deadline=None)
@given(
    scores=st.sampled_from([np.float32, np.float64]).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
            elements=st.sampled_from(TIE_VALUES),
        )
    ),
    k=st.integers(1, 15),
)
def test_top_k_matches_brute_force_sorted(scores, k):
    # Few distinct values -> many ties, including ties cut at the k-th position (the
    # argpartition boundary), which must resolve to the lowest column indices.
    ids, vals = top_k(scores, k)
    assert ids.shape == (scores.shape[0], k)
    assert vals.shape == (scores.shape[0], k)
    assert vals.dtype == np.float32
    for b, row in enumerate(scores):
        exp_ids, exp_vals = brute_top_k(row, k)
        assert ids[b].tolist() == exp_ids
        np.testing.assert_array_equal(vals[b], np.asarray(exp_vals, dtype=np.float32))


def test_top_k_float64_boundary_tie():
    # 0.1 is not representable in float32; the k-th score must be compared in float64.
    # Row: [0.1, 0.1, 0.1, 0.5], k=2 -> 0.5 (index 3) then the lowest-index 0.1 (index 0).
    scores = np.array([[0.1, 0.1, 0.1, 0.5]], dtype=np.float64)
    ids, vals = top_k(scores, 2)
    assert ids.tolist() == [[3, 0]]
    np.testing.assert_array_equal(vals, np.float32([[0.5, 0.1]]))


def test_top_k_pads_when_k_exceeds_n():
    scores = np.array([[0.2, 0.9, 0.5], [1.0, 1.0, NEG_INF]], dtype=np.float32)
    ids, vals = top_k(scores, 5)
    # row 0: 0.9 (1), 0.5 (2), 0.2 (0), then two pads
    # row 1: tie 1.0 -> index 0 before 1; the -inf entry becomes -1; two pads
    assert ids.tolist() == [[1, 2, 0, -1, -1], [0, 1, -1, -1, -1]]
    np.testing.assert_array_equal(
        vals,
        np.float32([[0.9, 0.5, 0.2, NEG_INF, NEG_INF], [1.0, 1.0, NEG_INF, NEG_INF, NEG_INF]]),
    )


def test_top_k_neg_inf_entries_become_minus_one():
    scores = np.array([[NEG_INF, 3.0, NEG_INF, NEG_INF]], dtype=np.float32)
    ids, vals = top_k(scores, 3)
    # only item 1 is finite; the two other slots are -inf entries (ids -1)
    assert ids.tolist() == [[1, -1, -1]]
    assert vals[0, 0] == 3.0 and np.isneginf(vals[0, 1:]).all()


# ---------------------------------------------------------------------------------------------
# _is_seen
# ---------------------------------------------------------------------------------------------


def test_is_seen_matches_dense_lookup():
    rng = np.random.default_rng(5)
    dense = rng.random((7, 9)) < 0.3
    dense[3] = False  # a user with no training items
    ui = sp.csr_matrix(dense.astype(np.float32))
    users = np.array([3, 0, 6, 0, 2])
    items = rng.integers(0, 9, size=(5, 6))
    expected = dense[users[:, None], items]  # brute force: look the pairs up
    np.testing.assert_array_equal(_is_seen(ui, users, items), expected)
    empty = sp.csr_matrix((7, 9), dtype=np.float32)
    assert not _is_seen(empty, users, items).any()


# ---------------------------------------------------------------------------------------------
# Recommender protocol (with a fixed score table)
# ---------------------------------------------------------------------------------------------


def _random_table_model(seed, n_users=6, n_items=8, density=0.3):
    rng = np.random.default_rng(seed)
    # integer-valued scores in a small range -> many ties
    table = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)
    dense = rng.random((n_users, n_items)) < density
    dense[0, 0] = True  # never empty
    pairs = list(zip(*np.nonzero(dense), strict=True))
    model = TableRecommender(table).fit(interactions(pairs, n_users, n_items))
    return model, table, dense


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [1, 3, 8, 11])
def test_recommend_exclude_seen_matches_brute_force(seed, k):
    model, table, dense = _random_table_model(seed)
    users = np.array([4, 0, 2, 2, 5])
    ids, scores = model.recommend(users, k=k, exclude_seen=True)
    assert ids.shape == (5, k) and scores.shape == (5, k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for b, u in enumerate(users):
        row = np.where(dense[u], NEG_INF, table[u])  # training items removed
        exp_ids, exp_vals = brute_top_k(row, k)
        assert ids[b].tolist() == exp_ids
        np.testing.assert_array_equal(scores[b], np.float32(exp_vals))
        shown = set(ids[b][ids[b] >= 0].tolist())
        assert not shown & set(np.flatnonzero(dense[u]).tolist())
        # every unseen item is shown when k covers them
        if k >= table.shape[1]:
            assert shown == set(np.flatnonzero(~dense[u]).tolist())
    ids2, _ = model.recommend(users, k=k, exclude_seen=False)
    for b, u in enumerate(users):
        assert ids2[b].tolist() == brute_top_k(table[u], k)[0]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_recommend_candidates_matches_brute_force(seed, exclude_seen):
    model, table, dense = _random_table_model(seed)
    rng = np.random.default_rng(100 + seed)
    users = np.array([1, 3, 5, 0])
    cand = rng.integers(0, 8, size=(4, 5))
    cand[rng.random((4, 5)) < 0.25] = -1  # padding
    cand[3] = -1  # a row with no candidate at all
    k = 4
    ids, scores = model.recommend(users, k=k, exclude_seen=exclude_seen, candidates=cand)
    assert ids.shape == (4, k) and scores.shape == (4, k)
    for b, u in enumerate(users):
        # brute force over candidate positions: key (-score, position)
        eligible = [
            p
            for p in range(cand.shape[1])
            if cand[b, p] >= 0
            and not (exclude_seen and dense[u, cand[b, p]])
            and cand[b, p] not in cand[b, :p]  # repeated candidates count once
        ]
        order = sorted(eligible, key=lambda p: (-float(table[u, cand[b, p]]), p))[:k]
        exp_ids = [int(cand[b, p]) for p in order] + [-1] * (k - len(order))
        exp_vals = [float(table[u, cand[b, p]]) for p in order] + [NEG_INF] * (k - len(order))
        assert ids[b].tolist() == exp_ids
        np.testing.assert_array_equal(scores[b], np.float32(exp_vals))
        assert set(ids[b][ids[b] >= 0].tolist()) <= set(cand[b][cand[b] >= 0].tolist())
    assert ids[3].tolist() == [-1] * k


def test_recommend_candidates_hand_example():
    table = np.float32([[0.1, 0.9, 0.4, 0.8, 0.3]])
    model = TableRecommender(table).fit(interactions([(0, 1)], 1, 5))  # item 1 seen
    cand = np.array([[-1, 1, 2, 3, -1]])
    ids, scores = model.recommend([0], k=3, candidates=cand)
    # item 1 is seen -> excluded; 3 (0.8) > 2 (0.4); then padding
    assert ids.tolist() == [[3, 2, -1]]
    np.testing.assert_array_equal(scores, np.float32([[0.8, 0.4, NEG_INF]]))
    ids, _ = model.recommend([0], k=3, exclude_seen=False, candidates=cand)
    assert ids.tolist() == [[1, 3, 2]]


def test_score_equals_gathered_score_all():
    model, table, _ = _random_table_model(3)
    users = np.array([5, 1, 1])
    items = np.array([[0, 7, 3], [2, 2, 6], [1, 0, 5]])
    full = model.score_all(users)
    np.testing.assert_array_equal(full, table[users])
    expected = np.array([[full[b, j] for j in items[b]] for b in range(3)])
    np.testing.assert_array_equal(model.score(users, items), expected)
    # 1-D items are shared by every user
    shared = np.array([4, 0])
    np.testing.assert_array_equal(model.score(users, shared), table[users][:, shared])
    assert model.score(users, items).dtype == np.float32


def test_not_fitted_error():
    model = TableRecommender(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(NotFittedError):
        model.recommend([0], k=2)
    with pytest.raises(NotFittedError):
        model.score_all([0])
    with pytest.raises(NotFittedError):
        model.score([0], [[1]])
    with pytest.raises(NotFittedError):
        PopularityRecommender().recommend([0])


def test_bad_inputs_raise_value_error():
    model, _, _ = _random_table_model(0, n_users=6, n_items=8)
    with pytest.raises(ValueError, match="user index out of range"):
        model.recommend([6], k=2)
    with pytest.raises(ValueError, match="user index out of range"):
        model.recommend([-1], k=2)
    with pytest.raises(ValueError, match="user index out of range"):
        model.score_all([0, 99])
    with pytest.raises(ValueError, match="1-D"):
        model.score_all([[0, 1]])
    for k in (0, -3):
        with pytest.raises(ValueError, match="k must be positive"):
            model.recommend([0], k=k)
    with pytest.raises(ValueError, match="item index out of range"):
        model.score([0], [[8]])
    with pytest.raises(ValueError, match="item index out of range"):
        model.score([0], [[-1]])
    with pytest.raises(ValueError, match="item index out of range"):
        model.recommend([0], k=2, candidates=np.array([[1, 8]]))
    with pytest.raises(ValueError, match="rows"):
        model.score([0, 1], [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(ValueError, match="no interactions"):
        PopularityRecommender().fit(sp.csr_matrix((3, 3), dtype=np.float32))


def test_fit_on_sparse_matrix_equals_fit_on_interactions():
    log = interactions([(0, 1), (1, 1), (1, 2), (2, 0)], 3, 4)
    dense = np.zeros((3, 4), dtype=np.float32)
    dense[[0, 1, 1, 2], [1, 1, 2, 0]] = 5.0  # values are binarized by fit
    a = PopularityRecommender().fit(log)
    b = PopularityRecommender().fit(sp.csr_matrix(dense))
    assert a.n_users_ == b.n_users_ == 3 and a.n_items_ == b.n_items_ == 4
    np.testing.assert_array_equal(a.user_items_.toarray(), b.user_items_.toarray())
    np.testing.assert_array_equal(a.user_items_.toarray(), dense > 0)
    np.testing.assert_array_equal(a.popularity_, b.popularity_)


# ---------------------------------------------------------------------------------------------
# Popularity
# ---------------------------------------------------------------------------------------------


def test_popularity_hand_example():
    # 3 users x 4 items; (0, 2) is logged twice (kept: no dedupe in the constructor)
    #   u0: {1, 2, 2}   u1: {0, 1}   u2: {1, 2}
    # distinct users per item: i0 = 1, i1 = 3, i2 = 2 (u0 counted once), i3 = 0
    log = interactions([(0, 1), (0, 2), (0, 2), (1, 0), (1, 1), (2, 1), (2, 2)], 3, 4)
    model = PopularityRecommender().fit(log)
    np.testing.assert_array_equal(model.popularity_, [1.0, 3.0, 2.0, 0.0])
    ids, scores = model.recommend([0, 1, 2], k=4, exclude_seen=False)
    # global order 1 (3) > 2 (2) > 0 (1) > 3 (0)
    assert ids.tolist() == [[1, 2, 0, 3]] * 3
    np.testing.assert_array_equal(scores, np.float32([[3, 2, 1, 0]] * 3))
    ids, scores = model.recommend([0, 1, 2], k=3, exclude_seen=True)
    # u0 unseen {0, 3}: 0 (1) > 3 (0), then padding
    # u1 unseen {2, 3}: 2 (2) > 3 (0)
    # u2 unseen {0, 3}: 0 (1) > 3 (0)
    assert ids.tolist() == [[0, 3, -1], [2, 3, -1], [0, 3, -1]]
    np.testing.assert_array_equal(
        scores, np.float32([[1, 0, NEG_INF], [2, 0, NEG_INF], [1, 0, NEG_INF]])
    )


# ---------------------------------------------------------------------------------------------
# Random
# ---------------------------------------------------------------------------------------------


def _random_log(n_users=20, n_items=500, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 3, replace=False)]
    return interactions(pairs, n_users, n_items)


def test_random_reproducible_across_calls_and_batchings():
    log = _random_log()
    model = RandomRecommender(seed=7).fit(log)
    all_users = np.arange(20)
    full = model.score_all(all_users)
    np.testing.assert_array_equal(full, model.score_all(all_users))
    # other batchings and orders give the same rows
    parts = np.vstack([model.score_all([3, 1]), model.score_all(np.arange(10, 20))])
    np.testing.assert_array_equal(parts, full[np.r_[3, 1, 10:20]])
    # a fresh instance with the same seed, even fitted on another log of the same shape
    other = RandomRecommender(seed=7).fit(_random_log(seed=99))
    np.testing.assert_array_equal(other.score_all(all_users), full)
    ids_a, _ = model.recommend(all_users, k=5)
    ids_b = np.vstack([model.recommend([u], k=5)[0] for u in all_users])
    np.testing.assert_array_equal(ids_a, ids_b)


def test_random_anonymous_histories_get_their_own_orders():
    from divrec.data.query import Query

    model = RandomRecommender(seed=3).fit(_random_log())
    hist = np.array([[5, 9, -1], [9, 5, -1], [5, 9, -1], [-1, -1, -1]])
    s = model.score_query(Query(users=np.full(4, -1), history=hist))
    # the same history (rows 0, 2) gives the same scores; another order of the same items
    # (row 1) or no history (row 3) another random order
    np.testing.assert_array_equal(s[0], s[2])
    assert (s[0] == s[1]).mean() < 0.01 and (s[0] == s[3]).mean() < 0.01
    # padding and batch composition do not matter: row 0 alone, with wider padding
    alone = model.score_query(Query(users=np.array([-1]), history=np.array([[5, 9, -1, -1, -1]])))
    np.testing.assert_array_equal(alone[0], s[0])
    # an empty history keeps the one shared order of anonymous users
    empty = model.score_query(Query(users=np.array([-1]), history=np.full((1, 2), -1)))
    np.testing.assert_array_equal(empty[0], s[3])


def test_random_seed_changes_scores():
    log = _random_log()
    a = RandomRecommender(seed=0).fit(log).score_all(np.arange(20))
    b = RandomRecommender(seed=1).fit(log).score_all(np.arange(20))
    # 10000 independent 24-bit values: equal pairs are ~10000 / 2^24 in expectation
    assert (a == b).mean() < 0.01
    ids_a = RandomRecommender(seed=0).fit(log).recommend(np.arange(20), k=10)[0]
    ids_b = RandomRecommender(seed=1).fit(log).recommend(np.arange(20), k=10)[0]
    assert not np.array_equal(ids_a, ids_b)


def test_random_scores_roughly_uniform():
    log = _random_log()
    scores = RandomRecommender(seed=3).fit(log).score_all(np.arange(20)).ravel()
    assert scores.min() >= 0.0 and scores.max() < 1.0
    # 10000 draws in 10 bins: expected 1000 per bin, sd = sqrt(10000 * 0.1 * 0.9) = 30;
    # a constant (or otherwise degenerate) score would put everything in one bin.
    counts = np.histogram(scores, bins=10, range=(0.0, 1.0))[0]
    assert np.all(np.abs(counts - 1000) < 150), counts
    assert abs(scores.mean() - 0.5) < 0.02  # sd of the mean = sqrt(1/12 / 10000) = 0.0029
    assert np.unique(scores).size > 9900  # nearly all distinct
    # users get different rankings: top-1 items of 20 users are not all the same
    top1 = np.argmax(RandomRecommender(seed=3).fit(log).score_all(np.arange(20)), axis=1)
    assert np.unique(top1).size > 10


# ---------------------------------------------------------------------------------------------
# ItemKNN
# ---------------------------------------------------------------------------------------------

# users x items (binary):
#   u0: {0, 1}  u1: {0, 1, 2}  u2: {1, 2}  u3: {3}  u4: {0, 1}
# |U_0| = 3 (u0, u1, u4), |U_1| = 4 (u0, u1, u2, u4), |U_2| = 2 (u1, u2), |U_3| = 1
# co-occurrence: c01 = 3, c02 = 1, c12 = 2, c.3 = 0
KNN_PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 0), (4, 1)]
S3, S2 = math.sqrt(3), math.sqrt(2)
# shrink = 1:
A01 = 3 / (S3 * 2 + 1)  # 3 / 4.4641 = 0.67202
A02 = 1 / (S3 * S2 + 1)  # 1 / 3.44949 = 0.28990
A12 = 2 / (2 * S2 + 1)  # 2 / 3.82843 = 0.52241


def test_itemknn_hand_example_full_neighbourhood():
    model = ItemKNNRecommender(neighbors=5, shrink=1.0).fit(interactions(KNN_PAIRS, 5, 4))
    expected = np.array(
        [
            [0, A01, A02, 0],
            [A01, 0, A12, 0],
            [A02, A12, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # score(u2 = {1, 2}, j) = S[1, j] + S[2, j] = [A01 + A02, A12, A12, 0]
    np.testing.assert_allclose(
        model.score_all([2])[0], [A01 + A02, A12, A12, 0.0], rtol=1e-6, atol=1e-7
    )
    # u3 = {3} has no similar item -> all zeros
    np.testing.assert_array_equal(model.score_all([3])[0], np.zeros(4))
    # u2 unseen items: 0 (A01 + A02 = 0.962) > 3 (0)
    assert model.recommend([2], k=2)[0].tolist() == [[0, 3]]


def test_itemknn_hand_example_one_neighbour():
    model = ItemKNNRecommender(neighbors=1, shrink=1.0).fit(interactions(KNN_PAIRS, 5, 4))
    # row 0 keeps 1 (A01 = 0.672 > A02 = 0.290); row 1 keeps 0 (A01 > A12 = 0.522);
    # row 2 keeps 1 (A12 > A02); row 3 has only zeros -> nothing kept
    expected = np.zeros((4, 4))
    expected[0, 1] = A01
    expected[1, 0] = A01
    expected[2, 1] = A12
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    # X_u . S: u2 = {1, 2} -> S[1] + S[2] = [A01, A12, 0, 0]
    #          u0 = {0, 1} -> S[0] + S[1] = [A01, A01, 0, 0]
    np.testing.assert_allclose(model.score_all([2, 0]), [[A01, A12, 0, 0], [A01, A01, 0, 0]])
    x = model.user_items_.toarray()
    np.testing.assert_allclose(model.score_all(np.arange(5)), x @ expected, rtol=1e-6)


def _brute_cosine(dense, shrink):
    n_items = dense.shape[1]
    users_of = [set(np.flatnonzero(dense[:, i]).tolist()) for i in range(n_items)]
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            if i == j:
                continue
            denom = math.sqrt(len(users_of[i])) * math.sqrt(len(users_of[j])) + shrink
            if denom > 0:
                sim[i, j] = len(users_of[i] & users_of[j]) / denom
    return sim


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("neighbors", "shrink"), [(3, 0.0), (3, 2.0), (100, 0.5)])
def test_itemknn_matches_brute_force_cosine_with_pruning(seed, neighbors, shrink):
    rng = np.random.default_rng(seed)
    dense = rng.random((15, 9)) < 0.35
    dense[0, 0] = True
    pairs = list(zip(*np.nonzero(dense), strict=True))
    # block=4 exercises the blocked computation (9 items -> blocks 0-3, 4-7, 8)
    model = ItemKNNRecommender(neighbors=neighbors, shrink=shrink, block=4)
    model.fit(interactions(pairs, 15, 9))
    full = _brute_cosine(dense, shrink)
    got = model.similarity_.toarray()
    for i in range(9):
        kept = np.flatnonzero(got[i])
        positive = np.flatnonzero(full[i] > 0)
        # the kept values are the brute-force similarities
        np.testing.assert_allclose(got[i, kept], full[i, kept], rtol=1e-5)
        # exactly min(neighbors, #positive) kept (zeros are dropped), never the diagonal
        assert kept.size == min(neighbors, positive.size)
        assert i not in kept
        # pruning keeps the largest: every kept similarity >= every dropped positive one
        dropped = np.setdiff1d(positive, kept)
        if kept.size and dropped.size:
            assert full[i, kept].min() >= full[i, dropped].max() - 1e-6
    # scores are X_u . S with the (pruned) similarity
    np.testing.assert_allclose(
        model.score_all(np.arange(15)), dense.astype(float) @ got, rtol=1e-5, atol=1e-6
    )


def test_itemknn_rejects_nonpositive_neighbors():
    with pytest.raises(ValueError, match="neighbors"):
        ItemKNNRecommender(neighbors=0)


# ---------------------------------------------------------------------------------------------
# ALS / BPR via implicit
# ---------------------------------------------------------------------------------------------


def _planted_blocks(seed=0):
    """40 users x 24 items, two blocks: users 0-19 use items 0-11, users 20-39 items 12-23.

    Each user has 6 training items from their block and one held-out item from it.
    """
    rng = np.random.default_rng(seed)
    pairs, held = [], []
    for u in range(40):
        block = np.arange(12) + (12 if u >= 20 else 0)
        pick = rng.choice(block, 7, replace=False)
        pairs += [(u, int(i)) for i in pick[:6]]
        held.append(int(pick[6]))
    return interactions(pairs, 40, 24), np.array(held)


def _held_out_auc(model, held):
    """Per user: fraction of other-block items scored below the held-out item."""
    scores = model.score_all(np.arange(40))
    aucs = np.empty(40)
    for u in range(40):
        other = np.arange(12, 24) if u < 20 else np.arange(12)
        aucs[u] = np.mean(scores[u, held[u]] > scores[u, other])
    return aucs


# (constructor, learned dimension d). ALS uses the planted rank 2 (with more factors iALS
# starts to memorize the 6 training items per user); implicit's BPR appends an item-bias
# column, so its d is factors + 1 (the users' last factor is the constant 1).
FACTOR_MODELS = [
    pytest.param(lambda seed: ALSRecommender(factors=2, iterations=10, seed=seed, threads=1), 2),
    pytest.param(lambda seed: BPRRecommender(factors=8, iterations=60, seed=seed, threads=1), 9),
]


@pytest.mark.parametrize(("make", "d"), FACTOR_MODELS, ids=["als", "bpr"])
@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_factor_models_recover_planted_blocks(make, d, data_seed):
    log, held = _planted_blocks(data_seed)
    model = make(0).fit(log)
    aucs = _held_out_auc(model, held)
    # random scores would give a mean around 0.5 and rarely a perfect row
    assert aucs.mean() > 0.9, aucs
    assert (aucs == 1.0).mean() > 0.75, aucs
    # the held-out item is recommended within the user's own block: the top-6 of unseen items
    # (6 unseen in-block items exist) mostly come from the block
    ids, _ = model.recommend(np.arange(40), k=6)
    in_block = (ids >= 12) == (np.arange(40) >= 20)[:, None]
    assert in_block.mean() > 0.9


def test_planted_block_check_rejects_random_scores():
    # control: the thresholds above are far from what a signal-free model reaches
    log, held = _planted_blocks(0)
    aucs = _held_out_auc(RandomRecommender(seed=0).fit(log), held)
    assert aucs.mean() < 0.75 and (aucs == 1.0).mean() < 0.5


@pytest.mark.parametrize(("make", "d"), FACTOR_MODELS, ids=["als", "bpr"])
def test_factor_models_shapes_and_determinism(make, d):
    log, _ = _planted_blocks(0)
    a = make(0).fit(log)
    assert a.user_factors_.shape == (40, d) and a.item_factors_.shape == (24, d)
    assert a.user_factors_.dtype == np.float32 and a.item_factors_.dtype == np.float32
    assert a.item_vectors() is a.item_factors_
    if isinstance(a, BPRRecommender):
        np.testing.assert_array_equal(a.user_factors_[:, -1], 1.0)
    # scores are the factor dot products
    np.testing.assert_allclose(
        a.score_all([0, 39]), a.user_factors_[[0, 39]] @ a.item_factors_.T, rtol=1e-5
    )
    b = make(0).fit(log)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    c = make(1).fit(log)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ALSRecommender(factors=0), "factors"),
        (lambda: ALSRecommender(regularization=-0.1), "regularization"),
        (lambda: ALSRecommender(threads=-1), "threads"),
        (lambda: BPRRecommender(learning_rate=0.0), "learning_rate"),
        (lambda: BPRRecommender(iterations=0), "iterations"),
        (lambda: BPRRecommender(factors="8"), "factors"),
    ],
)
def test_factor_models_reject_bad_values_at_construction(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_factor_model_hyperparameters_are_read_only_config():
    model = ALSRecommender(factors=8, threads=1)
    assert model.factors == model.config.factors == 8
    assert BPRRecommender().threads == 1 and ALSRecommender().threads is None
    with pytest.raises(AttributeError, match="factors"):
        model.factors = 3
    assert model.with_params(factors=4).get_params() == {**model.get_params(), "factors": 4}


def test_get_params_and_repr():
    model = ItemKNNRecommender(neighbors=7, shrink=2.5)
    assert model.get_params() == {"neighbors": 7, "shrink": 2.5, "block": 2048}
    assert repr(model) == "ItemKNNRecommender(neighbors=7, shrink=2.5, block=2048)"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_als_fold_in_matches_dense_weighted_least_squares(seed):
    """The batched fold-in solves, per request, the full weighted ridge problem
    min_u Σ_i c_i (p_i − u·q_i)² + λ‖u‖² over all items (written out densely here)."""
    from divrec.data.query import Query

    log, _ = _planted_blocks(seed)
    model = ALSRecommender(factors=3, iterations=3, seed=seed, threads=1).fit(log)
    rng = np.random.default_rng(seed)
    n = model.item_factors_.shape[0]
    hists = [rng.choice(n, size=m, replace=False).tolist() for m in (5, 0, 1, 12, 3)]
    vals = [rng.uniform(0.5, 4.0, size=len(h)).tolist() for h in hists]
    width = max(len(h) for h in hists)
    hist_arr = np.full((len(hists), width), -1, dtype=np.int64)
    val_arr = np.zeros((len(hists), width), dtype=np.float32)
    for b, (h, v) in enumerate(zip(hists, vals, strict=True)):
        hist_arr[b, : len(h)], val_arr[b, : len(v)] = h, v
    query = Query(np.full(len(hists), -1), history=hist_arr, history_values=val_arr)
    got = model.fold_in(query)
    q = model.item_factors_.astype(np.float64)
    alpha, lam = model._foldin_alpha, model._foldin_reg

    def dense(q):
        out = np.zeros((len(hists), q.shape[1]))
        for b, (h, v) in enumerate(zip(hists, vals, strict=True)):
            if not h:
                continue  # an empty history folds in to the zero vector
            c = np.ones(n)
            p = np.zeros(n)
            c[h] = 1.0 + alpha * np.asarray(v)
            p[h] = 1.0
            a = q.T @ (c[:, None] * q) + lam * np.eye(q.shape[1])
            out[b] = np.linalg.solve(a, q.T @ (c * p))
        return out

    np.testing.assert_allclose(got, dense(q), rtol=1e-4, atol=1e-5)
    # the cached Gram matrix follows the item factors
    model.item_factors_ = model.item_factors_ * 2.0
    np.testing.assert_allclose(model.fold_in(query), dense(2.0 * q), rtol=1e-4, atol=1e-5)
