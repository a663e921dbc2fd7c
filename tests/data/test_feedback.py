"""Tests of divrec.data.feedback: the HI FEEDE encoding (Eq. 6) and realtime event rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data.feedback import (
    FeedbackMatrices,
    encode_events,
    encode_events_batch,
    encode_feedback,
)
from divrec.data.interactions import DataError, Interactions


def two_by_three() -> Interactions:
    """u0: i0=5, i1=2; u1: i1=4, i2=3 (ids equal indices)."""
    return Interactions.from_arrays(
        np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2]), np.array([5.0, 2.0, 4.0, 3.0])
    )


def test_threshold_mode_hand_example():
    fm = encode_feedback(two_by_three(), mode="threshold", threshold=4.0)
    np.testing.assert_array_equal(fm.O.toarray(), [[1, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(fm.X.toarray(), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(fm.Y.toarray(), [[0, 1, 0], [0, 0, 1]])
    for mat in (fm.X, fm.O, fm.Y):
        assert sp.isspmatrix_csr(mat) and mat.dtype == np.float32 and mat.shape == (2, 3)
    assert fm.X.nnz == 2 and fm.Y.nnz == 2  # no explicit zeros


def test_threshold_mode_other_threshold():
    fm = encode_feedback(two_by_three(), mode="threshold", threshold=3.0)
    np.testing.assert_array_equal(fm.X.toarray(), [[1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(fm.Y.toarray(), [[0, 1, 0], [0, 0, 0]])


def test_rating6_mode_hand_example():
    fm = encode_feedback(two_by_three(), mode="rating6")
    np.testing.assert_array_equal(fm.O.toarray(), [[1, 1, 0], [0, 1, 1]])
    np.testing.assert_allclose(fm.X.toarray(), [[5 / 6, 2 / 6, 0], [0, 4 / 6, 3 / 6]], rtol=1e-6)
    np.testing.assert_allclose(fm.Y.toarray(), [[1 / 6, 4 / 6, 0], [0, 2 / 6, 3 / 6]], rtol=1e-6)
    assert fm.shape == (2, 3)


def test_rating6_rejects_ratings_above_divisor():
    data = Interactions.from_arrays(np.array([0]), np.array([0]), np.array([7.0]))
    with pytest.raises(DataError, match="rating6"):
        encode_feedback(data, mode="rating6")
    fm = encode_feedback(data, mode="rating6", rating_divisor=8.0)  # ratings on 1..7
    np.testing.assert_allclose(fm.X.toarray(), [[7 / 8]])


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        encode_feedback(two_by_three(), mode="binary")


def test_repeated_pair_uses_latest_event():
    data = Interactions.from_arrays(
        np.array([0, 0]),
        np.array([0, 0]),
        np.array([5.0, 1.0]),
        timestamps=np.array([20, 10]),
        dedupe=None,
    )
    fm = encode_feedback(data)
    # the rating 5 at t=20 is the latest: positive, not negative, and O stays binary
    np.testing.assert_array_equal(fm.O.toarray(), [[1]])
    np.testing.assert_array_equal(fm.X.toarray(), [[1]])
    assert fm.Y.nnz == 0


def test_implicit_data_with_default_threshold_warns():
    data = Interactions.from_arrays(np.array([0, 1]), np.array([0, 0]))
    with pytest.warns(UserWarning, match="threshold"):
        fm = encode_feedback(data)
    assert fm.X.nnz == 0
    np.testing.assert_array_equal(fm.Y.toarray(), fm.O.toarray())
    fm = encode_feedback(data, threshold=1.0)
    np.testing.assert_array_equal(fm.X.toarray(), [[1], [1]])


def test_empty_log():
    data = Interactions(
        users=np.zeros(0), items=np.zeros(0), values=np.zeros(0), user_ids=[0], item_ids=[0, 1]
    )
    fm = encode_feedback(data)
    assert fm.shape == (1, 2) and fm.O.nnz == fm.X.nnz == fm.Y.nnz == 0


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="shape"):
        FeedbackMatrices(sp.csr_matrix((2, 3)), sp.csr_matrix((2, 3)), sp.csr_matrix((3, 3)))


@st.composite
def rated_logs(draw):
    n_users = draw(st.integers(1, 5))
    n_items = draw(st.integers(1, 6))
    nnz = draw(st.integers(0, 20))
    users = draw(st.lists(st.integers(0, n_users - 1), min_size=nnz, max_size=nnz))
    items = draw(st.lists(st.integers(0, n_items - 1), min_size=nnz, max_size=nnz))
    ratings = draw(st.lists(st.integers(1, 5), min_size=nnz, max_size=nnz))
    return Interactions(
        users=np.array(users, dtype=np.int64),
        items=np.array(items, dtype=np.int64),
        values=np.array(ratings, dtype=np.float32),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
    )


@pytest.mark.filterwarnings("ignore:.*no observed value reaches threshold")
@settings(max_examples=150, deadline=None)
@given(rated_logs(), st.sampled_from([1.0, 2.5, 4.0, 5.0]))
def test_threshold_properties(data, threshold):
    fm = encode_feedback(data, mode="threshold", threshold=threshold)
    x, o, y = fm.X.toarray(), fm.O.toarray(), fm.Y.toarray()
    np.testing.assert_array_equal(x + y, o)  # Eq. 6
    assert set(np.unique(o)) <= {0.0, 1.0}
    assert set(np.unique(x)) <= {0.0, 1.0} and set(np.unique(y)) <= {0.0, 1.0}
    assert (y >= 0).all() and (x * y == 0).all()
    observed = data.to_csr(binary=True).toarray()
    np.testing.assert_array_equal(o, observed)
    # X is 1 exactly where the (latest) rating reaches the threshold
    latest = data.deduplicate("last")
    expected = np.zeros(data.shape)
    expected[latest.users, latest.items] = latest.values >= threshold
    np.testing.assert_array_equal(x, expected)


@settings(max_examples=150, deadline=None)
@given(rated_logs())
def test_rating6_properties(data):
    fm = encode_feedback(data, mode="rating6")
    x, o, y = fm.X.toarray(), fm.O.toarray(), fm.Y.toarray()
    np.testing.assert_allclose(x + y, o, atol=1e-6)  # Eq. 6
    assert ((x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)).all()
    np.testing.assert_array_equal(x > 0, o > 0)  # ratings 1..5 are all observed
    latest = data.deduplicate("last")
    np.testing.assert_allclose(x[latest.users, latest.items], latest.values / 6, rtol=1e-6)


def test_encode_events_hand_example():
    x, y = encode_events([1, 3, 3], [0, 3], n_items=5)
    # item 3 in both lists: observed and positive, so y = o - x = 0
    np.testing.assert_array_equal(x, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(y, [1, 0, 0, 0, 0])
    assert x.dtype == y.dtype == np.float32


def test_encode_events_empty_and_bad_index():
    x, y = encode_events([], np.array([], dtype=np.int64), 3)
    assert not x.any() and not y.any()
    with pytest.raises(ValueError, match="outside"):
        encode_events([3], [], 3)
    with pytest.raises(ValueError, match="outside"):
        encode_events([], [-1], 3)


def test_encode_events_batch_matches_single_rows():
    pos = [[1, 3], [], [0, 0, 2]]
    neg = [[0, 3], [4], []]
    xb, yb = encode_events_batch(pos, neg, 5)
    assert sp.isspmatrix_csr(xb) and sp.isspmatrix_csr(yb)
    assert xb.shape == yb.shape == (3, 5) and xb.dtype == yb.dtype == np.float32
    np.testing.assert_array_equal(xb.toarray(), [[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 0]])
    np.testing.assert_array_equal(yb.toarray(), [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    for b in range(3):
        x, y = encode_events(pos[b], neg[b], 5)
        np.testing.assert_array_equal(xb[b].toarray().ravel(), x)
        np.testing.assert_array_equal(yb[b].toarray().ravel(), y)
    assert (xb.data == 1).all() and (yb.data == 1).all()


def test_encode_events_batch_validation():
    with pytest.raises(ValueError, match="one length"):
        encode_events_batch([[0]], [], 2)
    with pytest.raises(ValueError, match=r"neg_lists\[1\]"):
        encode_events_batch([[0], [1]], [[], [2]], 2)
    xb, yb = encode_events_batch([], [], 4)
    assert xb.shape == yb.shape == (0, 4)
