"""The Interactions data model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from divrec.data import DataError, Interactions, as_csr


def _log():
    # external users b, a, b, c ; items 30, 10, 10, 20 ; ratings 5, 3, 4, 1
    return Interactions.from_arrays(
        np.array(["b", "a", "b", "c"]),
        np.array([30, 10, 10, 20]),
        np.array([5, 3, 4, 1], dtype=float),
        timestamps=np.array([4, 1, 2, 3]),
        dedupe=None,
    )


def test_ids_are_sorted_and_dense():
    data = _log()
    assert data.user_ids.tolist() == ["a", "b", "c"]
    assert data.item_ids.tolist() == [10, 20, 30]
    # b→1, a→0, b→1, c→2 ; 30→2, 10→0, 10→0, 20→1
    assert data.users.tolist() == [1, 0, 1, 2]
    assert data.items.tolist() == [2, 0, 0, 1]
    assert data.user_index(["c", "a"]).tolist() == [2, 0]
    assert data.item_index(20).tolist() == [1]
    with pytest.raises(KeyError, match="unknown user id 'zz'"):
        data.user_index("zz")


def test_to_csr_values_binary_threshold():
    data = _log()
    dense = data.to_csr().toarray()
    expected = np.array([[3, 0, 0], [4, 0, 5], [0, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(dense, expected)
    np.testing.assert_array_equal(data.to_csr(binary=True).toarray(), expected > 0)
    # threshold 4 keeps b-10 (4) and b-30 (5)
    np.testing.assert_array_equal(
        data.to_csr(threshold=4).toarray(), np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]])
    )
    assert data.item_popularity().tolist() == [2, 1, 1]
    assert data.user_counts().tolist() == [1, 2, 1]


def test_dedupe_last_and_sum():
    # (u1, i1) twice: first value 2 at t=5, then value 4 at t=1 → "last" by time keeps 2.
    data = Interactions.from_arrays(
        np.array([1, 1, 2]), np.array([1, 1, 1]), np.array([2.0, 4.0, 3.0]),
        timestamps=np.array([5, 1, 2]), dedupe="last",
    )  # fmt: skip
    assert data.nnz == 2
    assert sorted(zip(data.users.tolist(), data.values.tolist(), strict=True)) == [
        (0, 2.0),
        (1, 3.0),
    ]
    summed = Interactions.from_arrays(
        np.array([1, 1, 2]), np.array([1, 1, 1]), np.array([2.0, 4.0, 3.0]),
        timestamps=np.array([5, 1, 2]), dedupe="sum",
    )  # fmt: skip
    assert sorted(zip(summed.users.tolist(), summed.values.tolist(), strict=True)) == [
        (0, 6.0),
        (1, 3.0),
    ]


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(1, 5)), min_size=1,
             max_size=40)
)  # fmt: skip
def test_dedupe_sum_matches_brute_force(rows):
    u, i, v = (np.array(c) for c in zip(*rows, strict=True))
    data = Interactions.from_arrays(u, i, v.astype(float), dedupe="sum")
    expected: dict = {}
    for a, b, c in rows:
        expected[(a, b)] = expected.get((a, b), 0) + c
    got = {
        (int(data.user_ids[a]), int(data.item_ids[b])): float(c)
        for a, b, c in zip(data.users, data.items, data.values, strict=True)
    }
    assert got == {k: float(val) for k, val in expected.items()}


def test_select_keeps_universe_and_side_info():
    cats = sp.csr_matrix(np.eye(3, dtype=np.float32))
    data = _log().with_item_side_info(cats, ("x", "y", "z"))
    part = data.select(np.array([0, 3]))
    assert part.shape == data.shape and part.nnz == 2
    assert part.timestamps.tolist() == [4, 3]
    assert part.category_names == ("x", "y", "z")
    assert data.primary_category().tolist() == [0, 1, 2]


def test_bad_construction_is_a_clear_error():
    with pytest.raises(DataError, match="out of range"):
        Interactions(users=[0, 3], items=[0, 0], values=[1, 1], user_ids=[1, 2], item_ids=[1])
    with pytest.raises(DataError, match="NaN"):
        Interactions(users=[0], items=[0], values=[np.nan], user_ids=[1], item_ids=[1])
    with pytest.raises(DataError, match="timestamps has shape"):
        Interactions(users=[0], items=[0], values=[1], user_ids=[1], item_ids=[1],
                     timestamps=[1, 2])  # fmt: skip
    with pytest.raises(DataError, match="item_categories has 2 rows for 1 items"):
        Interactions(users=[0], items=[0], values=[1], user_ids=[1], item_ids=[1],
                     item_categories=sp.csr_matrix(np.ones((2, 2))))  # fmt: skip


def test_as_csr_accepts_matrices():
    mat = sp.csr_matrix(np.array([[0, 2.0], [3.0, 0]]))
    np.testing.assert_array_equal(as_csr(mat).toarray(), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(as_csr(mat, binary=False).toarray(), [[0, 2], [3, 0]])
    with pytest.raises(TypeError, match="expected Interactions"):
        as_csr([[1]])


def test_select_empty_list():
    part = _log().select([])
    assert part.nnz == 0 and part.shape == (3, 3)
