"""Seed-aware statistics (`divrec.evaluation.stats`): hand-checked values, the false-positive
rate of the seed-aware test against the naive request-level one when two pipelines differ only
by seed noise, power, and the antisymmetry of a paired comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from divrec.evaluation.stats import (
    PairedComparison,
    SeedSummary,
    paired_seed_test,
    request_level_test,
    seed_summary,
    small_sample_factor,
)

A = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]])
B = np.array([[2.0, 2.0, 5.0], [2.0, 4.0, 4.0]])  # b − a = [[1, 0, 2], [0, 1, 0]]


def test_seed_summary_by_hand():
    s = seed_summary(A, n_bootstrap=500)
    assert isinstance(s, SeedSummary)
    assert s.per_seed == (2.0, 3.0)
    assert s.mean == 2.5
    assert s.sd == pytest.approx(math.sqrt(0.5))  # sd of (2, 3), ddof=1
    assert s.n_seeds == 2
    assert s.ci_low < s.mean < s.ci_high
    assert "two-level" in s.method


def test_seed_summary_skips_missing_users():
    s = seed_summary(np.array([[1.0, np.nan, 3.0], [2.0, 3.0, 4.0]]), n_bootstrap=200)
    assert s.per_seed == (2.0, 3.0)
    assert s.mean == 2.5


def test_paired_by_hand():
    p = paired_seed_test(A, B, n_bootstrap=500)
    assert isinstance(p, PairedComparison)
    assert p.per_seed_diff == pytest.approx((1.0, 1.0 / 3.0))
    assert p.diff == pytest.approx(2.0 / 3.0)
    assert (p.n_seeds, p.n_users) == (2, 3)
    # t = mean / (sd / √2) = (2/3) / ((√2/3) / √2) = 2 on 1 df: p = 1 − 2·atan(2)/π
    assert p.p_value == pytest.approx(1.0 - 2.0 * math.atan(2.0) / math.pi)
    assert p.ci_low < p.diff < p.ci_high
    assert p.significant == (p.ci_low > 0 or p.ci_high < 0)
    assert "t-test" in p.method
    naive = request_level_test(A, B, n_bootstrap=500)
    assert naive.diff == pytest.approx(4.0 / 6.0)  # pooled mean of the six differences
    assert "request-level" in naive.method


def test_ci_contains_the_mean_and_shrinks_with_users():
    rng = np.random.default_rng(3)
    seed_effect = np.array([[0.0], [0.02], [-0.01]])
    small = 0.5 + seed_effect + rng.normal(0, 0.3, (3, 20))
    large = 0.5 + seed_effect + rng.normal(0, 0.3, (3, 2000))
    s_small, s_large = seed_summary(small), seed_summary(large)
    for s in (s_small, s_large):
        assert s.ci_low < s.mean < s.ci_high
    assert s_large.ci_high - s_large.ci_low < 0.5 * (s_small.ci_high - s_small.ci_low)
    # the hand case tiled to 300 users (same per-seed means): narrower too
    tiled = seed_summary(np.tile(A, 100), n_bootstrap=1000)
    hand = seed_summary(A, n_bootstrap=1000)
    assert tiled.mean == hand.mean
    assert tiled.ci_high - tiled.ci_low < hand.ci_high - hand.ci_low


def test_one_seed_degrades_to_users():
    row = np.array([0.1, 0.4, 0.3, 0.9, 0.5])
    s = seed_summary(row, n_bootstrap=500)
    assert s.n_seeds == 1 and math.isnan(s.sd) and "one seed" in s.method
    assert s.ci_low < s.mean < s.ci_high
    p = paired_seed_test(row[None], row[None] + 0.2, n_bootstrap=500)
    assert math.isnan(p.p_value) and "users only" in p.method
    assert p.diff == pytest.approx(0.2) and p.significant


def test_small_sample_factor():
    assert small_sample_factor(0.95, 1) == 1.0
    assert small_sample_factor(0.95, 5) == pytest.approx(math.sqrt(5 / 4) * 2.776445 / 1.959964)
    assert small_sample_factor(0.95, 10**6) == pytest.approx(1.0, abs=1e-5)


def test_bootstrap_zero_gives_no_interval():
    p = paired_seed_test(A, B, n_bootstrap=0)
    assert math.isnan(p.ci_low) and math.isnan(p.ci_high) and not p.significant


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), "same"),
        (np.zeros((2, 0)), np.zeros((2, 0)), "fewer than 1 user"),
        (np.full((2, 3), np.nan), np.zeros((2, 3)), "non-finite everywhere"),
        (np.array([[1.0, np.inf]]), np.zeros((1, 2)), "infinite"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "array"),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), np.array([[np.nan, 1.0], [1.0, 2.0]]), "seed"),
    ],
)
def test_bad_input_is_a_value_error(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_seed_test(a, b)


def test_bad_options():
    with pytest.raises(ValueError, match="confidence"):
        seed_summary(A, confidence=1.0)
    with pytest.raises(ValueError, match="n_bootstrap"):
        paired_seed_test(A, B, n_bootstrap=-1)
    with pytest.raises(ValueError, match="no finite"):
        seed_summary(np.array([[1.0, 2.0], [np.nan, np.nan]]))


def _null_pair(rng, s, u, sigma_seed, sigma_user, delta=0.0):
    """Two pipelines on the same users: the same true mean (plus `delta` for b), each with
    its own seed effects N(0, sigma_seed) and per-request noise N(0, sigma_user)."""
    user = rng.normal(0.0, 1.0, u)  # shared per-user difficulty (cancels in the pairs)
    a = 0.5 + user + rng.normal(0.0, sigma_seed, (s, 1)) + rng.normal(0.0, sigma_user, (s, u))
    b = (
        0.5 + delta + user
        + rng.normal(0.0, sigma_seed, (s, 1)) + rng.normal(0.0, sigma_user, (s, u))
    )  # fmt: skip
    return a, b


def test_false_positive_rate_seed_aware_vs_request_level():
    """The issue's demonstration: pipelines that differ only by seed noise."""
    rng = np.random.default_rng(20240522)
    n_rep, s, u = 200, 5, 500
    t_rej = ci_rej = naive_rej = 0
    for r in range(n_rep):
        a, b = _null_pair(rng, s, u, sigma_seed=0.1, sigma_user=1.0)
        seed_aware = paired_seed_test(a, b, n_bootstrap=300, seed=r)
        naive = request_level_test(a, b, n_bootstrap=300, seed=r)
        t_rej += seed_aware.p_value < 0.05
        ci_rej += seed_aware.significant
        naive_rej += naive.significant
    t_rate, ci_rate, naive_rate = t_rej / n_rep, ci_rej / n_rep, naive_rej / n_rep
    print(f"false-positive rates: t {t_rate:.3f}, CI {ci_rate:.3f}, naive {naive_rate:.3f}")
    assert t_rate <= 0.12
    assert ci_rate <= 0.12
    assert naive_rate >= 0.3


def test_power_on_a_real_difference():
    rng = np.random.default_rng(7)
    n_rep, s, u, sigma_seed = 60, 5, 500, 0.1
    t_rej = ci_rej = 0
    for r in range(n_rep):
        a, b = _null_pair(rng, s, u, sigma_seed, 1.0, delta=5 * sigma_seed)
        p = paired_seed_test(a, b, n_bootstrap=300, seed=r)
        t_rej += p.p_value < 0.05
        ci_rej += p.significant and p.diff > 0
    assert t_rej / n_rep >= 0.8
    assert ci_rej / n_rep >= 0.8


_cells = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)


@st.composite
def _pairs(draw):
    s = draw(st.integers(1, 4))
    u = draw(st.integers(1, 8))
    a = draw(hnp.arrays(np.float64, (s, u), elements=_cells))
    b = draw(hnp.arrays(np.float64, (s, u), elements=_cells))
    return a, b


def _close(x, y):
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(_pairs(), st.integers(0, 2**32 - 1))
def test_swapping_negates(pair, seed):
    a, b = pair
    for test in (paired_seed_test, request_level_test):
        ab = test(a, b, n_bootstrap=200, seed=seed)
        ba = test(b, a, n_bootstrap=200, seed=seed)
        assert ba.diff == -ab.diff
        assert _close(ba.ci_low, -ab.ci_high) and _close(ba.ci_high, -ab.ci_low)
        assert ba.per_seed_diff == tuple(-x for x in ab.per_seed_diff)
        assert ba.significant == ab.significant
        assert (math.isnan(ab.p_value) and math.isnan(ba.p_value)) or _close(ab.p_value, ba.p_value)
