"""Exposure fairness metrics of item groups against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.data import Interactions
from divrec.metrics import (
    average_recommendation_popularity,
    exposure_share,
    item_groups,
    popularity_groups,
    popularity_lift,
    position_discount,
)


def test_position_discount():
    np.testing.assert_allclose(position_discount(3), [1.0, 1 / math.log2(3), 0.5])


def test_exposure_share_hand_computed():
    groups = np.array([0, 1, 1, -1])
    lists = np.array([[0, 1, 3], [1, -1, -1], [3, 2, 0]])
    # group 0: rank 1 (1) + rank 3 (½); group 1: rank 2 (1/log2 3) + rank 1 (1) + rank 2
    e0 = 1.0 + 0.5
    e1 = 1 / math.log2(3) + 1.0 + 1 / math.log2(3)
    got = exposure_share(lists, groups)
    np.testing.assert_allclose(got, [e0 / (e0 + e1), e1 / (e0 + e1)])
    assert exposure_share(np.full((2, 2), -1), groups).tolist() == [0.0, 0.0]
    assert exposure_share(lists, groups, n_groups=3)[2] == 0.0
    with pytest.raises(ValueError, match="outside"):
        exposure_share(np.array([[7]]), groups)


def test_arp_and_popularity_lift_hand_computed():
    pop = np.array([0.5, 0.1, 0.2, 0.0])
    lists = np.array([[0, 1], [2, -1], [-1, -1]])
    arp = average_recommendation_popularity(lists, pop)
    np.testing.assert_allclose(arp[:2], [0.3, 0.2])
    assert np.isnan(arp[2])
    hist = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0]]))
    # profiles: user 0 (0.1 + 0)/2 = 0.05, user 1 (0.2 + 0)/2 = 0.1; user 2 has no list
    gp = (0.05 + 0.1) / 2
    gr = (0.3 + 0.2) / 2
    assert popularity_lift(lists, hist, pop) == pytest.approx((gr - gp) / gp)


def test_popularity_groups_head_holds_the_first_share():
    counts = np.array([10, 50, 30, 10])  # total 100; order 1 (50), 2, 0, 3
    # item 1 starts at 0 < 20 → head; item 2 starts at 50 → tail
    assert popularity_groups(counts, 0.2).tolist() == [1, 0, 1, 1]
    # 0.6: 1 (0), 2 (50) in the head; 0 starts at 80
    assert popularity_groups(counts, 0.6).tolist() == [1, 0, 0, 1]
    with pytest.raises(ValueError, match="head_share"):
        popularity_groups(counts, 1.0)


def test_item_groups_from_columns():
    data = Interactions.from_arrays(
        np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])
    ).with_item_side_info(
        item_categories=sp.csr_matrix(np.array([[1, 0], [1, 1]])), category_names=("a", "b")
    )
    codes, names = item_groups(data, "category=b")
    assert codes.tolist() == [0, 1] and names == ["no", "yes"]
    codes, names = item_groups(data, "popularity")
    assert codes.tolist() == [1, 0] and names == ["head", "tail"]
    codes, names = item_groups(data, np.array(["p2", "p1"]))
    assert codes.tolist() == [1, 0] and names == ["p1", "p2"]
    with pytest.raises(ValueError, match="unknown category 'c'"):
        item_groups(data, "category=c")
    with pytest.raises(ValueError, match="no item features"):
        item_groups(data, "feature:0")
    with pytest.raises(ValueError, match="column must be"):
        item_groups(data, "provider")
