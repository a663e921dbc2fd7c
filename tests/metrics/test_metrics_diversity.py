"""Tests for divrec.metrics.diversity: hand-computed examples, brute force, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.metrics import (
    between_user_diversity,
    category_coverage,
    category_ild,
    distinct_categories,
    distinct_ids,
    distinct_items,
    distinct_users,
    exposure_counts,
    exposure_entropy,
    exposure_gini,
    hi_diversity,
    hi_diversity_summary,
    ilad,
    item_coverage,
    novelty,
    unexpectedness,
    unexpectedness_scores,
    user_category_coverage,
)

SQRT2 = math.sqrt(2.0)

# ---------------------------------------------------------------------------------------------
# Hand-computed examples
# ---------------------------------------------------------------------------------------------

# v0=(1,0) v1=(0,1) v2=(1,1) v3=(0,0) v4=(-1,0) v5=(2,0)
VECS = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [-1, 0], [2, 0]], dtype=float)


def test_ilad_hand():
    rec = np.array([[0, 1, 2], [0, 4, -1], [0, 5, -1], [3, 0, 1], [2, -1, -1], [1, 1, -1]])
    expected = [
        # cos(0,1)=0, cos(0,2)=cos(1,2)=1/sqrt2 -> (1 + 2(1 - 1/sqrt2)) / 3 = (3 - sqrt2)/3
        (3 - SQRT2) / 3,
        2.0,  # opposite vectors: 1 - (-1)
        0.0,  # parallel vectors of different norms: 1 - 1
        1.0,  # zero vector v3 is at distance 1 from all; cos(0,1)=0 -> all pairs 1
        np.nan,  # a single valid item has no pair
        0.0,  # a repeated item is at distance 0 from itself
    ]
    np.testing.assert_allclose(ilad(rec, VECS), expected, atol=1e-12)
    assert (3 - SQRT2) / 3 == pytest.approx(0.52860, abs=1e-5)


def test_ilad_validation():
    with pytest.raises(ValueError, match="only 6 items"):
        ilad(np.array([[0, 6]]), VECS)
    with pytest.raises(ValueError, match="2-D"):
        ilad(np.array([0, 1]), VECS)
    with pytest.raises(ValueError, match="finite"):
        ilad(np.array([[0, 1]]), np.array([[np.nan, 0.0], [1.0, 0.0]]))


# items: 0 {A}, 1 {A,B}, 2 {C}, 3 {}, 4 {B}; column D (3) is used by no item
CATS = sp.csr_matrix(
    np.array(
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]],
        dtype=float,
    )
)


def test_category_ild_hand():
    rec = np.array([[0, 1, 2], [0, 3, -1], [1, 4, -1], [0, 0, -1], [-1, -1, -1]])
    d01 = 1 - 1 / SQRT2  # {A} vs {A,B}: 1 - 1/sqrt(1*2) = 0.29289
    expected = [
        (d01 + 1 + 1) / 3,  # d(0,2) = d(1,2) = 1 (no shared category) -> 0.76430
        1.0,  # item 3 has no category -> distance 1
        d01,  # {A,B} vs {B}
        0.0,  # the same item twice
        np.nan,  # empty list
    ]
    np.testing.assert_allclose(category_ild(rec, CATS), expected, atol=1e-12)


def test_category_coverage_hand():
    rec = np.array([[0, 4, -1], [0, 3, -1]])
    # union of categories {A, B}; dataset categories used by some item: {A, B, C} -> 2/3
    assert category_coverage(rec, CATS) == pytest.approx(2 / 3)
    # explicit |C| = 4 (counting the unused column D) -> 2/4
    assert category_coverage(rec, CATS, n_categories=4) == pytest.approx(0.5)
    # per list: u0 {A, B} -> 2/3, u1 {A} (item 3 has none) -> 1/3
    np.testing.assert_allclose(user_category_coverage(rec, CATS), [2 / 3, 1 / 3])
    assert distinct_categories(rec, CATS) == 2
    with pytest.raises(ValueError, match="n_categories"):
        category_coverage(rec, CATS, n_categories=2)  # item 2 uses category id 2
    with pytest.raises(ValueError, match="positive integer"):
        category_coverage(rec, CATS, n_categories=0)


def test_item_coverage_and_distinct_counts_hand():
    rec = np.array([[0, 1, -1], [1, 2, -1]])
    # distinct {0, 1, 2} of 5 items -> 3/5
    assert item_coverage(rec, 5) == pytest.approx(0.6)
    assert distinct_items(rec) == 3
    # i2u lists: users {4, 0}
    assert distinct_users(np.array([[4, 4, -1], [0, -1, -1]])) == 2
    assert distinct_ids(np.array([-1, 3, 3, 7])) == 2
    assert distinct_ids(np.array([-1, -1])) == 0
    with pytest.raises(ValueError, match="only 2 items"):
        item_coverage(rec, 2)
    with pytest.raises(ValueError, match="padding"):
        distinct_ids(np.array([-3, 1]))


def test_exposure_gini_hand():
    rec = np.array([[0, 1], [0, 2]])
    np.testing.assert_array_equal(exposure_counts(rec, 4), [2, 1, 1, 0])
    # sorted counts (0,1,1,2), n=4, sum 4, coefficients 2i-n-1 = (-3,-1,1,3):
    # (0 - 1 + 1 + 6) / (4 * 4) = 6/16 = 0.375
    # check via mean absolute difference: sum_{i,j}|x_i - x_j| = 12, / (2 n^2 mean) = 12/32
    assert exposure_gini(rec, 4) == pytest.approx(0.375)
    # equal exposure -> 0; everything on one item of 4 -> (n-1)/n = 0.75
    assert exposure_gini(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    assert exposure_gini(np.array([[2, -1], [2, 2]]), 4) == pytest.approx(0.75)
    assert math.isnan(exposure_gini(np.full((2, 2), -1), 4))


def test_exposure_entropy_hand():
    rec = np.array([[0, 1], [0, 2]])
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2 nats; / ln 4 = 0.75
    assert exposure_entropy(rec, 4, normalize=False) == pytest.approx(1.5 * math.log(2))
    assert exposure_entropy(rec, 4) == pytest.approx(0.75)
    assert exposure_entropy(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_items >= 2"):
        exposure_entropy(np.array([[0]]), 1)


def test_novelty_hand():
    pop = np.array([10, 5, 0, 1])
    rec = np.array([[0, 1, -1], [2, 3, 1], [-1, -1, -1]])
    # -log2(pop/10): item0 0, item1 1, item2 (pop 0 -> 1/10) log2 10, item3 log2 10
    l10 = math.log2(10)  # 3.32193
    expected = [(0 + 1) / 2, (l10 + l10 + 1) / 3, np.nan]  # 0.5, 2.54795, NaN
    np.testing.assert_allclose(novelty(rec, pop, 10), expected)
    with pytest.raises(ValueError, match=r"\[0, n_users"):
        novelty(rec, np.array([11, 0, 0, 0]), 10)
    with pytest.raises(ValueError, match="only 4 items"):
        novelty(np.array([[4]]), pop, 10)


def test_unexpectedness_hand():
    # user 0 clusters: c0=(3,4) weight 1, c1=(0,1) weight 3, c2 padding (weight 0, NaN center)
    centers = np.array([[[3.0, 4.0], [0.0, 1.0], [np.nan, np.nan]]])
    weights = np.array([[1.0, 3.0, 0.0]])
    items = np.array([[[0.0, 0.0], [3.0, 0.0]]])
    # e=(0,0): (1*5 + 3*1)/4 = 2;  e=(3,0): (1*4 + 3*sqrt(10))/4 = 3.37171
    s = unexpectedness_scores(items, centers, weights)
    np.testing.assert_allclose(s, [[2.0, (4 + 3 * math.sqrt(10)) / 4]], atol=1e-7)

    emb = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])
    rec = np.array([[0, 1, -1], [2, -1, -1]])
    centers2 = np.concatenate([centers, np.zeros((1, 3, 2))])
    weights2 = np.vstack([weights, np.zeros((1, 3))])  # user 1 has no cluster -> NaN
    # user 0: mean(2, 3.37171) = 2.68585
    np.testing.assert_allclose(
        unexpectedness(rec, emb, centers2, weights2),
        [(2 + (4 + 3 * math.sqrt(10)) / 4) / 2, np.nan],
        atol=1e-7,
    )


def test_unexpectedness_validation():
    with pytest.raises(ValueError, match="shape mismatch"):
        unexpectedness_scores(np.zeros((1, 2, 2)), np.zeros((1, 3, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        unexpectedness_scores(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)), -np.ones((1, 3)))
    with pytest.raises(ValueError, match="centers must have shape"):
        unexpectedness(np.array([[0]]), np.zeros((1, 2)), np.zeros((2, 1, 2)), np.ones((2, 1)))


def test_hi_diversity_dense_hand():
    s = np.array(
        [[1, 0.2, 0.5, 0], [0.4, 1, 0.1, 0.3], [0.5, 0.1, 1, 0.9], [0, 0.3, 0.9, 1]],
        dtype=float,
    )
    rec = np.array([[0, 1, 2], [3, 2, -1], [1, -1, -1]])
    # [0,1,2]: S01+S10+S02+S20+S12+S21 = .2+.4+.5+.5+.1+.1 = 1.8 over 6 pairs -> 1 - .3 = .7
    # [3,2]:   S32 + S23 = 1.8 over 2 -> 1 - .9 = .1;   [1] -> NaN
    np.testing.assert_allclose(hi_diversity(rec, s), [0.7, 0.1, np.nan])


def test_hi_diversity_factors_hand():
    p = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    q = np.array([[1, 0, 1, 2], [0, 1, 1, 0]], dtype=float)
    # S = P Q: rows (1,0,1,2), (0,1,1,0), (1,1,2,2), (0,0,0,0)
    # [0,1,2]: S01+S10+S02+S20+S12+S21 = 0+0+1+1+1+1 = 4 over 6 -> 1 - 2/3 = 1/3
    # [3,0]: S30 + S03 = 0 + 2 -> 1 - 2/2 = 0
    rec = np.array([[0, 1, 2], [3, 0, -1]])
    np.testing.assert_allclose(hi_diversity(rec, (p, q)), [1 / 3, 0.0])
    with pytest.raises(ValueError, match="factors"):
        hi_diversity(rec, (p, q.T))
    with pytest.raises(ValueError, match="square"):
        hi_diversity(rec, np.ones((4, 3)))


def test_hi_diversity_summary_hand():
    # non-NaN sorted (.1,.2,.3,.4,.5): median .3; 25th pct at position .25*4 = 1 -> .2
    out = hi_diversity_summary(np.array([0.3, 0.1, np.nan, 0.5, 0.2, 0.4]))
    assert out["median"] == pytest.approx(0.3)
    assert out["p25"] == pytest.approx(0.2)
    assert out["mean"] == pytest.approx(0.3)
    assert out["n_users"] == 5
    empty = hi_diversity_summary(np.array([np.nan]))
    assert math.isnan(empty["median"]) and empty["n_users"] == 0


def test_between_user_diversity_hand():
    rec = np.array([[0, 1, 2], [0, 1, 3], [4, 5, 6]])
    # pairs: (0,1) overlap 2 -> 1 - 2/3; (0,2) -> 1; (1,2) -> 1; mean = (1/3 + 2)/3 = 7/9
    assert between_user_diversity(rec, 7) == pytest.approx(7 / 9)
    # identical padded lists -> 0; empty lists are ignored
    padded = np.array([[0, 1, -1], [1, 0, -1], [-1, -1, -1]])
    assert between_user_diversity(padded, 7) == pytest.approx(0.0)
    assert math.isnan(between_user_diversity(np.array([[0, 1], [-1, -1]]), 7))
    with pytest.raises(ValueError, match="max_pairs"):
        between_user_diversity(rec, 7, max_pairs=0)


# ---------------------------------------------------------------------------------------------
# Brute force on random data
# ---------------------------------------------------------------------------------------------


def _random_rec(rng, n_users, n_items, k, pad=0.2, unique=True):
    if unique:
        rec = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    else:
        rec = rng.integers(0, n_items, size=(n_users, k))
    rec[rng.random((n_users, k)) < pad] = -1
    return rec


def _brute_pairwise_mean(rec_row, dist):
    items = [int(i) for i in rec_row if i >= 0]
    vals = [dist(a, b) for a, b in itertools.permutations(items, 2)]
    return sum(vals) / len(vals) if vals else float("nan")


def _cos_dist(x, y):
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 1.0
    return 1.0 - float(np.dot(x, y)) / (nx * ny)


def test_ilad_vs_brute_force():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(30, 5))
    vecs[3] = 0.0
    rec = _random_rec(rng, 40, 30, 6, unique=False)
    want = [_brute_pairwise_mean(r, lambda a, b: _cos_dist(vecs[a], vecs[b])) for r in rec]
    np.testing.assert_allclose(ilad(rec, vecs), want, atol=1e-10)


def test_category_metrics_vs_brute_force():
    rng = np.random.default_rng(1)
    n_items, n_cat = 25, 6
    dense = rng.random((n_items, n_cat)) < 0.3
    cats = sp.csr_matrix(dense.astype(float))
    sets = [set(np.flatnonzero(row).tolist()) for row in dense]
    rec = _random_rec(rng, 30, n_items, 5)

    def d(a, b):
        if not sets[a] or not sets[b]:
            return 1.0
        return 1.0 - len(sets[a] & sets[b]) / math.sqrt(len(sets[a]) * len(sets[b]))

    want = [_brute_pairwise_mean(r, d) for r in rec]
    np.testing.assert_allclose(category_ild(rec, cats), want, atol=1e-10)

    used = set().union(*sets)
    union = set()
    per_user = []
    for r in rec:
        covered = set()
        for i in r:
            if i >= 0:
                covered |= sets[i]
        union |= covered
        per_user.append(len(covered) / len(used))
    assert category_coverage(rec, cats) == pytest.approx(len(union) / len(used))
    assert distinct_categories(rec, cats) == len(union)
    np.testing.assert_allclose(user_category_coverage(rec, cats), per_user)


def test_exposure_and_coverage_vs_brute_force():
    rng = np.random.default_rng(2)
    n_items = 50
    rec = _random_rec(rng, 20, n_items, 5, unique=False)
    counts = [0] * n_items
    for i in rec.ravel():
        if i >= 0:
            counts[i] += 1
    np.testing.assert_array_equal(exposure_counts(rec, n_items), counts)
    total = sum(counts)
    mean = total / n_items
    mad = sum(abs(a - b) for a in counts for b in counts)
    assert exposure_gini(rec, n_items) == pytest.approx(mad / (2 * n_items**2 * mean))
    h = -sum(c / total * math.log(c / total) for c in counts if c > 0)
    assert exposure_entropy(rec, n_items) == pytest.approx(h / math.log(n_items))
    distinct = {int(i) for i in rec.ravel() if i >= 0}
    assert item_coverage(rec, n_items) == pytest.approx(len(distinct) / n_items)
    assert distinct_items(rec) == len(distinct)


def test_novelty_unexpectedness_vs_brute_force():
    rng = np.random.default_rng(3)
    n_users, n_items, d, n_clusters = 15, 20, 4, 3
    rec = _random_rec(rng, n_users, n_items, 5)
    pop = rng.integers(0, 16, size=n_items)
    emb = rng.normal(size=(n_items, d))
    centers = rng.normal(size=(n_users, n_clusters, d))
    weights = rng.integers(0, 4, size=(n_users, n_clusters)).astype(float)
    weights[0] = 0.0
    got_nov = novelty(rec, pop, 15)
    got_unexp = unexpectedness(rec, emb, centers, weights)
    for u in range(n_users):
        items = [int(i) for i in rec[u] if i >= 0]
        if not items:
            assert math.isnan(got_nov[u]) and math.isnan(got_unexp[u])
            continue
        nov = [-math.log2(max(pop[i], 1) / 15) for i in items]
        assert got_nov[u] == pytest.approx(sum(nov) / len(nov))
        if weights[u].sum() == 0:
            assert math.isnan(got_unexp[u])
            continue
        un = []
        for i in items:
            acc = 0.0
            for c in range(n_clusters):
                acc += weights[u, c] * np.linalg.norm(emb[i] - centers[u, c])
            un.append(acc / weights[u].sum())
        assert got_unexp[u] == pytest.approx(sum(un) / len(un), abs=1e-7)


def test_hi_diversity_vs_brute_force():
    rng = np.random.default_rng(4)
    n_items, rank = 30, 4
    p = rng.normal(size=(n_items, rank))
    q = rng.normal(size=(rank, n_items))
    s = p @ q  # asymmetric
    rec = _random_rec(rng, 25, n_items, 7, unique=False)
    want = [_brute_pairwise_mean(r, lambda a, b: 1.0 - s[a, b]) for r in rec]
    np.testing.assert_allclose(hi_diversity(rec, s), want, atol=1e-10)
    np.testing.assert_allclose(hi_diversity(rec, (p, q)), want, atol=1e-10)


def _brute_between(rec):
    lists = [{int(i) for i in r if i >= 0} for r in rec]
    lists = [x for x in lists if x]
    vals = [1 - len(a & b) / max(len(a), len(b)) for a, b in itertools.combinations(lists, 2)]
    return sum(vals) / len(vals)


def test_between_user_diversity_vs_brute_force_and_sampling():
    rng = np.random.default_rng(5)
    rec = _random_rec(rng, 250, 25, 6, pad=0.1)  # 249 * 248 / 2 = 30876 pairs > 20000
    rec[7] = -1  # an empty list, ignored
    exact = between_user_diversity(rec, 25)
    assert exact == pytest.approx(_brute_between(rec))
    est = between_user_diversity(rec, 25, max_pairs=20_000, seed=1)
    assert est == pytest.approx(exact, abs=0.01)
    assert est == between_user_diversity(rec, 25, max_pairs=20_000, seed=1)
    assert est != between_user_diversity(rec, 25, max_pairs=20_000, seed=2)
    # max_pairs >= number of pairs -> exact computation
    assert between_user_diversity(rec, 25, max_pairs=10**6) == pytest.approx(exact)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@st.composite
def rec_batches(draw, max_items=12):
    n_items = draw(st.integers(2, max_items))
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(n_users, k))
    return rec, n_items, rng


def _permute_rows(rec, rng):
    return np.take_along_axis(
        rec, rng.permuted(np.tile(np.arange(rec.shape[1]), (len(rec), 1)), axis=1), axis=1
    )


def _pad(rec, rng):
    """Insert padding columns at random positions (same items, different layout)."""
    wide = np.hstack([rec, np.full((rec.shape[0], 3), -1)])
    return _permute_rows(wide, rng)


@settings(max_examples=80, deadline=None)
@given(rec_batches())
def test_list_diversity_bounds_permutation_and_padding(case):
    rec, n_items, rng = case
    vecs = rng.normal(size=(n_items, 3))
    vecs[rng.random(n_items) < 0.2] = 0.0
    cats = sp.csr_matrix((rng.random((n_items, 4)) < 0.4).astype(float))
    sim = rng.random((n_items, n_items))
    pop = rng.integers(0, 11, size=n_items)
    centers = rng.normal(size=(rec.shape[0], 2, 3))
    weights = rng.integers(0, 3, size=(rec.shape[0], 2)).astype(float)

    def per_user(r):
        return [
            ilad(r, vecs),
            category_ild(r, cats),
            hi_diversity(r, sim),
            novelty(r, pop, 10),
            unexpectedness(r, vecs, centers, weights),
        ]

    base = per_user(rec)
    v = base[0][~np.isnan(base[0])]
    assert np.all((v >= 0) & (v <= 2))
    v = base[1][~np.isnan(base[1])]
    assert np.all((v >= 0) & (v <= 1))
    v = base[2][~np.isnan(base[2])]
    assert np.all((v >= -1e-12) & (v <= 1 + 1e-12))  # S in [0, 1] -> diversity in [0, 1]
    # NaN exactly for lists with < 2 valid items
    assert np.array_equal(np.isnan(base[0]), (rec >= 0).sum(axis=1) < 2)
    for other in (per_user(_permute_rows(rec, rng)), per_user(_pad(rec, rng))):
        for a, b in zip(base, other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(rec_batches())
def test_system_metrics_bounds_and_padding(case):
    rec, n_items, rng = case
    dense = rng.random((n_items, 4)) < 0.4
    dense[0, 0] = True  # at least one category is used
    cats = sp.csr_matrix(dense.astype(float))
    padded = _pad(rec, rng)
    shuffled_users = rec[rng.permutation(rec.shape[0])]
    cov = item_coverage(rec, n_items)
    assert 0.0 <= cov <= 1.0
    cc = category_coverage(rec, cats)
    assert 0.0 <= cc <= 1.0
    ucc = user_category_coverage(rec, cats)
    assert np.all((ucc >= 0) & (ucc <= cc + 1e-12))  # one list never covers more than all
    if (rec >= 0).any():
        g = exposure_gini(rec, n_items)
        assert 0.0 <= g < 1.0
        e = exposure_entropy(rec, n_items)
        assert -1e-12 <= e <= 1.0 + 1e-12
        for r in (padded, shuffled_users):
            assert exposure_gini(r, n_items) == pytest.approx(g)
    bud = between_user_diversity(rec, n_items)
    if not math.isnan(bud):
        assert -1e-12 <= bud <= 1.0 + 1e-12
    for r in (padded, shuffled_users):
        assert item_coverage(r, n_items) == cov
        assert category_coverage(r, cats) == cc
        b2 = between_user_diversity(r, n_items)
        assert (math.isnan(bud) and math.isnan(b2)) or b2 == pytest.approx(bud)
