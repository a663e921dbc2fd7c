"""`evaluate()`'s compiled miscalibration, per-list category coverage, popularity lift and
between-user overlaps give the public functions' values, to the bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec import metrics as M
from divrec.evaluation import _fast


def _case(seed: int, n_users: int, n_items: int, k: int, n_cat: int):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, k))  # repeats and padding included
    rec[rng.random(n_users) < 0.15] = -1  # empty lists
    train = sp.random(n_users + 3, n_items, density=0.3, random_state=seed, format="csr")
    train.data[:] = 1.0
    train.data[rng.random(train.nnz) < 0.1] = 0.0  # explicit zeros are no history
    train = train.astype(np.float32)
    train.sort_indices()
    users = rng.permutation(n_users + 3)[:n_users]
    cats = (rng.random((n_items, n_cat)) < 0.35).astype(np.float64)
    cats[0] = 0.0  # an item without category
    cats[-1, 0] = 1.0  # at least one category in use
    return rec, train, users, sp.csr_matrix(cats)


def _same(got, want):
    """Equal to the bit (−0.0 is not +0.0), NaN where the other is NaN."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 25), st.integers(1, 8),
    st.integers(1, 40),  # ≥ 8 categories: numpy's 8-way pairwise sum of the C_KL terms
)  # fmt: skip
def test_fast_metrics_equal_the_public_functions(seed, n_users, n_items, k, n_cat):
    rec, train, users, cats = _case(seed, n_users, n_items, k, n_cat)
    assert train.has_canonical_format
    history = train[users]
    for alpha in (0.01, 0.37, 1.0):
        _same(
            _fast.miscalibration(rec, train, users, cats, alpha),
            M.miscalibration(rec, history, cats, alpha),
        )
    for alpha in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            _fast.miscalibration(rec, train, users, cats, alpha)
    _same(_fast.user_category_coverage(rec, cats), M.user_category_coverage(rec, cats))
    pop = np.bincount(train.indices[train.data != 0], minlength=n_items).astype(np.float64)
    _same(_fast.popularity_lift(rec, train, users, pop), M.popularity_lift(rec, history, pop))


@pytest.mark.parametrize("n_cat", [7, 8, 9, 16, 17, 128, 129, 300])
def test_fast_miscalibration_equals_the_public_function_for_many_categories(n_cat):
    # above 128 categories numpy splits its sums; the kernel hands those to the public path
    rec, train, users, cats = _case(n_cat, 40, 60, 10, n_cat)
    for alpha in (0.01, 0.5):
        _same(
            _fast.miscalibration(rec, train, users, cats, alpha),
            M.miscalibration(rec, train[users], cats, alpha),
        )


def test_fast_metrics_by_hand():
    # items 0..3; categories: 0 → {a}, 1 → {a, b}, 2 → {b}, 3 → none
    cats = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=float))
    rec = np.array([[0, 1, -1], [2, 2, 3]])
    # list 0 covers {a, b}, list 1 covers {b}: 2/2, 1/2
    np.testing.assert_array_equal(_fast.user_category_coverage(rec, cats), [1.0, 0.5])
    # user 0's history {0}: p = (1, 0); list 0: q = ((1 + 1/2)/2, (1/2)/2) = (3/4, 1/4)
    # C_KL = 1 · log(1 / (0.99 · 3/4 + 0.01))
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 1]], dtype=np.float32))
    got = _fast.miscalibration(rec, train, np.array([0, 1]), cats, 0.01)
    assert abs(got[0] - np.log(1 / (0.99 * 0.75 + 0.01))) < 1e-12
    # user 1's history {2, 3}: p = (0, 1/2) (item 3 counts in the denominator only);
    # list 1 {2, 2, 3}: q = (0, 2/3); C_KL = 1/2 log((1/2) / (0.99 · 2/3 + 0.01 · 1/2))
    assert abs(got[1] - 0.5 * np.log(0.5 / (0.99 * 2 / 3 + 0.005))) < 1e-12
    # popularity lift: history profiles 5 and (1 + 2)/2; lists (5 + 3)/2 and (1 + 1 + 2)/3
    pop = np.array([5.0, 3.0, 1.0, 2.0])
    gp, gr = (5 + 1.5) / 2, (4 + 4 / 3) / 2
    assert abs(_fast.popularity_lift(rec, train, np.array([0, 1]), pop) - (gr - gp) / gp) < 1e-12


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 25), st.integers(1, 8))
def test_fast_category_coverage_equals_the_public_functions(seed, n_users, n_items, k):
    rec, _, _, cats = _case(seed, n_users, n_items, k, 5)
    coverage, distinct = _fast.category_coverage(rec, cats)
    assert coverage == M.category_coverage(rec, cats)
    assert distinct == M.distinct_categories(rec, cats)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 25), st.integers(1, 8),
    st.integers(1, 40),
)  # fmt: skip
def test_fast_ilad_equals_the_public_function(seed, n_users, n_items, k, d):
    rec, _, _, _ = _case(seed, n_users, n_items, k, 3)
    vecs = np.random.default_rng(seed).normal(size=(n_items, d))
    vecs[0] = 0.0  # a zero vector: cosine 0 with everything
    _same(_fast.ilad(rec, vecs), M.ilad(rec, vecs))


def test_fast_ilad_by_hand():
    # e0, e1 and e0 again: cosines 0, 1, 0 over the 3 pairs (each counted twice) → 1 − 2/6
    vecs = np.array([[2.0, 0.0], [0.0, 1.0]])
    rec = np.array([[0, 1, 0], [1, -1, -1]])
    got = _fast.ilad(rec, vecs)
    assert abs(got[0] - (1 - 2 / 6)) < 1e-12 and np.isnan(got[1])


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 60), st.integers(1, 30),
    st.integers(1, 40), st.floats(0.05, 0.9),
)  # fmt: skip
def test_fast_category_ild_equals_the_public_function(seed, n_users, n_items, k, n_cat, dens):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, k))
    rec[rng.random(n_users) < 0.15] = -1
    cats = (rng.random((n_items, n_cat)) < dens).astype(np.float64)
    cats[rng.random(n_items) < 0.1] = 0.0  # items without category
    cats = sp.csr_matrix(cats)
    _same(_fast.category_ild(rec, cats), M.category_ild(rec, cats))


def test_fast_category_ild_by_hand_and_sorted_product():
    # items' categories 1, 0, 1: every list touches category 1 before 0, so each row of the
    # summed matrix is stored sorted (scipy then multiplies in sorted order)
    cats = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    rec = np.array([[0, 1, -1], [2, 2, 2], [0, 1, 2]])
    _same(_fast.category_ild(rec, cats), M.category_ild(rec, cats))
    # list 2: pairs (0,1) and (1,2) differ, (0,2) equal: 2 of 3 → 2/3; list 1: 0
    np.testing.assert_allclose(_fast.category_ild(rec, cats), [1.0, 0.0, 2 / 3], atol=1e-12)


def test_fast_category_ild_long_category_rows_fall_back():
    # lists with more than 129 categories: numpy splits the sum, the public function answers
    rng = np.random.default_rng(0)
    cats = sp.csr_matrix((rng.random((40, 300)) < 0.5).astype(np.float64))
    rec = rng.integers(0, 40, size=(5, 20))
    _same(_fast.category_ild(rec, cats), M.category_ild(rec, cats))


@pytest.mark.parametrize(
    ("bad", "match"), [([[0, -2]], "-2"), ([[0.5, 1.0]], "integer"), ([[0, 3]], "only 3 items")]
)
def test_fast_miscalibration_refuses_what_the_public_function_refuses(bad, match):
    """The compiled path validates its lists like `metrics.miscalibration` (found in review:
    it only checked ids < n_items, treating −2 as padding and truncating floats)."""
    import scipy.sparse as sp

    from divrec.evaluation._fast import miscalibration

    csr = sp.csr_matrix(np.array([[1, 0, 1]], dtype=np.float32))
    cats = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        miscalibration(np.array(bad), csr, np.array([0]), cats)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 40), st.integers(0, 12),
)  # fmt: skip
def test_fast_accuracy_equals_the_public_functions(seed, n_users, width, max_rel):
    rng = np.random.default_rng(seed)
    hits = rng.random((n_users, width)) < rng.uniform(0.0, 0.9)
    n_rel = rng.integers(0, max_rel + 1, n_users)
    n_rel = np.maximum(n_rel, hits.sum(axis=1) * (rng.random(n_users) < 0.8))  # some 0s
    names = ("hr", "recall", "precision", "ndcg", "mrr", "map")
    public = {
        "hr": lambda k: M.hit_rate_at_k(hits, k),
        "recall": lambda k: M.recall_at_k(hits, n_rel, k),
        "precision": lambda k: M.precision_at_k(hits, k),
        "ndcg": lambda k: M.ndcg_at_k(hits, n_rel, k),
        "mrr": lambda k: M.mrr_at_k(hits, k),
        "map": lambda k: M.map_at_k(hits, n_rel, k),
    }
    for k in sorted({1, min(8, width), min(10, width), width}):
        got = _fast.accuracy(names, hits, n_rel, k)
        assert list(got) == [f"{n}@{k}" for n in names]
        for name in names:
            _same(got[f"{name}@{k}"], public[name](k))
    fortran = np.asfortranarray(hits)
    _same(
        _fast.accuracy(("map",), fortran, n_rel, width)[f"map@{width}"],
        M.map_at_k(fortran, n_rel, width),
    )


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 25), st.integers(1, 40))
def test_fast_novelty_and_arp_equal_the_public_functions(seed, n_users, n_items, k):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, k))
    rec[rng.random(n_users) < 0.15] = -1  # empty lists
    pop = rng.integers(0, 51, n_items)
    pop[rng.random(n_items) < 0.3] = 50  # seen by every user: a −0.0 term
    _same(_fast.novelty(rec, pop, 50), M.novelty(rec, pop, 50))
    fortran = np.asfortranarray(rec)  # numpy sums such rows sequentially: the public path
    _same(_fast.novelty(fortran, pop, 50), M.novelty(fortran, pop, 50))
    share = pop / 50
    _same(
        _fast.average_recommendation_popularity(rec, share),
        M.average_recommendation_popularity(rec, share),
    )


def test_fast_accuracy_and_list_means_by_hand():
    hits = np.array([[False, True, True], [False, False, False]])
    got = _fast.accuracy(("hr", "recall", "precision", "mrr", "map"), hits, np.array([4, 0]), 3)
    assert got["hr@3"].tolist() == [1.0, 0.0]
    assert got["precision@3"].tolist() == [2 / 3, 0.0]
    assert got["recall@3"][0] == 2 / 4 and np.isnan(got["recall@3"][1])
    assert got["mrr@3"].tolist() == [0.5, 0.0]
    # AP@3 = (1/2 + 2/3) / min(4, 3)
    assert abs(got["map@3"][0] - (0.5 + 2 / 3) / 3) < 1e-15 and np.isnan(got["map@3"][1])
    rec = np.array([[0, 2, -1], [-1, -1, -1]])
    arp = _fast.average_recommendation_popularity(rec, np.array([0.5, 0.1, 0.25]))
    assert arp[0] == (0.5 + 0.25) / 2 and np.isnan(arp[1])
    with pytest.raises(ValueError, match="item_popularity"):
        _fast.novelty(rec, np.array([1.0, -1.0, 2.0]), 10)
    with pytest.raises(ValueError, match="n_users"):
        _fast.novelty(rec, np.array([1.0, 1.0, 2.0]), 5.7)
    # nine items every user saw: +0.0 as numpy gives it, not −0.0
    everyone = _fast.novelty(np.zeros((1, 9), np.int64), np.array([10.0]), 10)
    assert everyone[0] == 0.0 and not np.signbit(everyone[0])
    # ARP keeps the public padding rule (any negative id) and its errors
    odd = np.array([[0, -2, 2]])
    share = np.array([0.5, 0.1, 0.25])
    _same(
        _fast.average_recommendation_popularity(odd, share),
        M.average_recommendation_popularity(odd, share),
    )
    with pytest.raises(IndexError):
        _fast.average_recommendation_popularity(np.array([[3]]), share)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(1, 25), st.integers(1, 30),
    st.integers(1, 4), st.booleans(),
)  # fmt: skip
def test_fast_exposure_share_equals_the_public_function(seed, n_users, n_items, k, n_g, given_g):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, k))
    groups = rng.integers(-1, n_g, n_items)  # −1: in no group
    n_groups = n_g if given_g else None
    got = _fast.exposure_share(rec, groups, n_groups)
    want = M.exposure_share(rec, groups, n_groups)
    assert got.shape == want.shape and got.tobytes() == want.tobytes()


def test_fast_exposure_share_errors_and_hand_value():
    rec = np.array([[0, 1], [1, -1]])
    # weights 1 and 1/log2(3): group 0 gets 1, group 1 gets 1/log2(3) + 1
    got = _fast.exposure_share(rec, np.array([0, 1]), 2)
    w2 = 1 / np.log2(3)
    np.testing.assert_allclose(got, [1 / (2 + w2), (1 + w2) / (2 + w2)], rtol=1e-15)
    with pytest.raises(ValueError, match="group code 2 >= n_groups 2"):
        _fast.exposure_share(rec, np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="outside groups"):
        _fast.exposure_share(np.array([[5]]), np.array([0, 1]), 2)
