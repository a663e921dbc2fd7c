"""FA*IR (Zehlike et al. 2017): the table, its adjustment, the test and the re-ranker."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from divrec.data import Interactions
from divrec.data.query import Candidates, Query
from divrec.rerank.fairness import (
    FAIR,
    adjusted_alpha,
    fail_probability,
    fair_mtable,
    ranked_group_fairness,
)


@pytest.mark.parametrize("p, alpha", [(0.5, 0.1), (0.3, 0.05), (0.8, 0.1)])
def test_unadjusted_table_is_the_binomial_inverse_cdf(p, alpha):
    table = fair_mtable(20, p, alpha, adjust=False)
    for i in range(1, 21):  # smallest m with F(m; i, p) > α (scipy's CDF, independent)
        want = next(m for m in range(i + 1) if binom.cdf(m, i, p) > alpha)
        assert table[i - 1] == want


def test_table_of_the_paper_p05_alpha01():
    # p = 0.5, α = 0.1, unadjusted, by hand: F(0; 4) = 1/16 ≤ 0.1 < F(1; 4) = 5/16,
    # F(1; 7) = 8/128 ≤ 0.1 < F(2; 7), F(2; 9) = 46/512 ≤ 0.1, F(3; 12) = 299/4096 ≤ 0.1
    assert fair_mtable(12, 0.5, 0.1, adjust=False).tolist() == [
        0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4,
    ]  # fmt: skip


def _enumerated_fail(table, p):
    """Failure probability by enumerating all 2^k protected/unprotected rankings."""
    k = len(table)
    total = 0.0
    for flags in itertools.product([0, 1], repeat=k):
        if np.any(np.cumsum(flags) < table):
            n = sum(flags)
            total += p**n * (1 - p) ** (k - n)
    return total


@pytest.mark.parametrize("k, p, alpha", [(10, 0.5, 0.1), (12, 0.3, 0.1), (8, 0.7, 0.05)])
def test_fail_probability_and_adjustment_brute_force(k, p, alpha):
    raw = fair_mtable(k, p, alpha, adjust=False)
    assert fail_probability(raw, p) == pytest.approx(_enumerated_fail(raw, p), abs=1e-12)
    adj = fair_mtable(k, p, alpha, adjust=True)
    a_c = adjusted_alpha(k, p, alpha)
    assert 0.0 < a_c <= alpha
    assert _enumerated_fail(adj, p) <= alpha + 1e-12
    assert np.all(adj <= raw)  # the adjusted table is never stricter
    if a_c < alpha:  # the adjustment was needed: the raw table fails a fair ranking too often
        assert _enumerated_fail(raw, p) > alpha


def test_ranked_group_fairness():
    table = fair_mtable(6, 0.5, 0.1, adjust=False)  # [0, 0, 0, 1, 1, 1]
    assert table.tolist() == [0, 0, 0, 1, 1, 1]
    assert ranked_group_fairness([0, 0, 0, 1, 0, 0], 0.5, 0.1, adjust=False)
    assert not ranked_group_fairness([0, 0, 0, 0, 1, 1], 0.5, 0.1, adjust=False)


def test_fair_hand_computed():
    # relevance order 0..7; protected: 5, 6, 7; p = 0.5, α = 0.1, unadjusted table for 6:
    # [0, 0, 0, 1, 1, 1] → positions 1-3 by relevance (0, 1, 2), position 4 needs one
    # protected → 5, then the best remaining: 3, 4
    r = np.arange(8, 0, -1).astype(np.float64)
    prot = np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=bool)
    got = FAIR(p=0.5, alpha=0.1, adjust=False).select(r, 6, protected=prot)
    assert got.tolist() == [0, 1, 2, 5, 3, 4]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 30),
    k=st.integers(0, 20),
    p=st.sampled_from([0.2, 0.5, 0.7]),
    adjust=st.booleans(),
)
def test_fair_lists_pass_the_test(seed, n, k, p, adjust):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 5, n).astype(np.float64)
    prot = rng.random(n) < 0.5
    fair = FAIR(p=p, alpha=0.1, adjust=adjust)
    sel = fair.select(r, k, protected=prot)
    kk = min(k, n)
    assert sel.size == kk and len(set(sel.tolist())) == kk
    table = fair_mtable(k, p, 0.1, adjust)
    if prot.sum() >= table[kk - 1] if kk else True:
        assert ranked_group_fairness(prot[sel], p, 0.1, adjust) or kk < k
        assert np.all(np.cumsum(prot[sel]) >= table[:kk])
    # within each group the relevance order is kept (Alg. 2 pops queue heads)
    for flag in (True, False):
        grp = sel[prot[sel] == flag]
        assert np.all(np.diff(r[grp]) <= 0)


def test_fair_batch_and_stage():
    rng = np.random.default_rng(1)
    r = rng.random((4, 10))
    prot = rng.random((4, 10)) < 0.3
    valid = rng.random((4, 10)) < 0.9
    fair = FAIR(p=0.6)
    got = fair.select_batch(r, 5, protected=prot, valid=valid)
    for b in range(4):
        idx = np.flatnonzero(valid[b])
        one = fair.select(r[b, idx], 5, protected=prot[b, idx])
        assert got[b, : one.size].tolist() == idx[one].tolist()
    users = np.repeat(np.arange(6), 3)
    items = np.array([0, 1, 2, 0, 1, 3, 0, 1, 4, 0, 2, 5, 0, 1, 2, 1, 2, 3])
    data = Interactions.from_arrays(users, items)
    fair = FAIR(p=0.5, adjust=False).fit(data, item_vectors=np.eye(6))
    assert fair.item_protected_.tolist() == [False, True, True, True, True, True]
    cand = Candidates(np.array([[0, 1, 2, 3]]), np.array([[4.0, 3.0, 2.0, 1.0]]))
    assert fair(Query(users=np.array([0])), cand, 3).ids.tolist() == [[0, 1, 2]]


def test_group_column_missing_from_the_data_is_one_line():
    data = Interactions.from_arrays(np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="^group: column 'category=Drama': the data has no"):
        FAIR(group="category=Drama").fit(data, item_vectors=np.eye(2))


def test_bad_input():
    with pytest.raises(ValueError, match="protected"):
        FAIR().select(np.ones(3), 2)
    with pytest.raises(ValueError, match="group"):
        FAIR(group="provider")
    with pytest.raises(ValueError, match="p must"):
        fair_mtable(3, 1.0, 0.1)
    with pytest.raises(ValueError, match="alpha must"):
        fair_mtable(3, 0.5, 0.0)
