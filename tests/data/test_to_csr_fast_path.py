"""`Interactions.to_csr` on a log grouped by user (row pointers by search) gives scipy's
COO-built matrix bit for bit, and leaves the log's arrays as they were."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data import Interactions


def _coo_build(users, items, values, shape, binary):
    data = np.ones(users.size, np.float32) if binary else values
    mat = sp.csr_matrix((data, (users, items)), shape=shape, dtype=np.float32)
    mat.sum_duplicates()
    if binary:
        mat.data[:] = 1.0
    mat.sort_indices()
    return mat


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.integers(1, 15), st.integers(1, 12), st.integers(1, 80),
    st.booleans(),
)  # fmt: skip
def test_grouped_log_csr_equals_the_coo_build(seed, n_users, n_items, nnz, grouped):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz)
    if grouped:
        users = np.sort(users)
    items = rng.integers(0, n_items, nnz)  # repeats: summed
    values = rng.choice(np.array([0.5, 1.0, 3.0, 1e8, -1e8, 0.1], np.float32), nnz)
    log = Interactions(
        users=users, items=items, values=values,
        user_ids=np.arange(n_users), item_ids=np.arange(n_items),
    )  # fmt: skip
    before = (users.copy(), items.copy(), values.copy())
    for binary, threshold in ((False, None), (True, None), (True, 1.0)):
        got = log.to_csr(binary=binary, threshold=threshold)
        keep = np.ones(nnz, bool) if threshold is None else values >= threshold
        want = _coo_build(users[keep], items[keep], values[keep], (n_users, n_items), binary)
        assert got.indptr.dtype == want.indptr.dtype and got.indices.dtype == want.indices.dtype
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        assert got.data.dtype == np.float32 and got.data.tobytes() == want.data.tobytes()
        assert got.has_canonical_format
    for arr, old in zip((log.users, log.items, log.values), before, strict=True):
        np.testing.assert_array_equal(arr, old)  # the log is not permuted in place
