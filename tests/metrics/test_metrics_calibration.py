"""Miscalibration (Steck 2018 Eq. 1, 2, 5) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.metrics import (
    category_shares,
    kl_miscalibration,
    list_distribution,
    miscalibration,
    user_distribution,
)

# items: 0 = {A, B}, 1 = {A}, 2 = {C}, 3 = no category
CATS = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]))


def test_category_shares_split_each_item_over_its_genres():
    got = category_shares(CATS).toarray()
    assert got.tolist() == [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_kl_hand_computed():
    # p = (½, ½, 0), q = (1, 0, 0), α = 0.01 → q̃ = (0.995, 0.005, 0)
    want = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    got = kl_miscalibration([0.5, 0.5, 0.0], [1.0, 0.0, 0.0], alpha=0.01)
    assert got == pytest.approx(want, rel=1e-12)
    assert kl_miscalibration([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(kl_miscalibration([0.0, 0.0], [0.5, 0.5]))  # no history
    # the bound log(1/α) when the list misses the history entirely
    assert kl_miscalibration([1.0, 0.0], [0.0, 1.0], alpha=0.01) == pytest.approx(math.log(100))


def test_miscalibration_end_to_end_hand_computed():
    history = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]))
    lists = np.array([[2, 1], [0, -1], [2, -1]])
    shares = category_shares(CATS)
    p = user_distribution(history, shares)
    # user 0: (½ + 1, ½, 0) / 2; user 2: item 3 has no genre and dilutes p
    np.testing.assert_allclose(p, [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    q = list_distribution(lists, shares)
    np.testing.assert_allclose(q, [[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    got = miscalibration(lists, history, CATS, alpha=0.01)
    # user 0: q̃ = 0.99 q + 0.01 p = (0.5025, 0.0025, 0.495)
    want0 = 0.75 * math.log(0.75 / 0.5025) + 0.25 * math.log(0.25 / 0.0025)
    # user 2: q̃_C = 0.99 + 0.005 = 0.995
    want2 = 0.5 * math.log(0.5 / 0.995)
    assert got[0] == pytest.approx(want0, rel=1e-12)
    assert np.isnan(got[1])
    assert got[2] == pytest.approx(want2, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan")])
def test_bad_alpha_is_one_line(alpha):
    with pytest.raises(ValueError, match="alpha"):
        kl_miscalibration([1.0], [1.0], alpha=alpha)


def test_bad_distributions():
    with pytest.raises(ValueError, match="shape"):
        kl_miscalibration([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        kl_miscalibration([np.nan], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        kl_miscalibration([-1.0], [1.0])
