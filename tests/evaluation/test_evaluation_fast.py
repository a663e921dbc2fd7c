"""`evaluate()`'s compiled shortcuts give the public metrics' values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec import metrics as M
from divrec.data import SyntheticConfig, make_synthetic
from divrec.evaluation import _fast, harness
from divrec.evaluation.harness import (
    EvalConfig,
    _item_popularity,
    _relevant_csr,
    _train_csr,
    evaluate,
)
from divrec.retrieval import PopularityRecommender
from divrec.splitting import random_holdout


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 8),
    st.integers(1, 30),
    st.integers(1, 500),
    st.integers(0, 2**31 - 1),
)
def test_sampled_between_user_diversity_equals_the_public_function(u, k, n_items, pairs, seed):
    rng = np.random.default_rng(seed)
    # repeated items, padding and empty lists included
    rec = rng.integers(-1, n_items, size=(u, k))
    rec[rng.random(u) < 0.2] = -1
    got = _fast.between_user_diversity(rec, n_items, max_pairs=pairs, seed=seed)
    want = M.between_user_diversity(rec, n_items, max_pairs=pairs, seed=seed)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == want  # the same pairs and the same float64 expression


def test_between_user_diversity_by_hand():
    # lists {0, 1}, {1, 2}, {} and {0, 1} (duplicate and padding); all pairs of the 3 non-empty
    # lists: d = 1 − 1/2, 1 − 2/2, 1 − 1/2 → mean 1/3; max_pairs ≥ 3 is the exact mean
    rec = np.array([[0, 1, 1], [2, 1, -1], [-1, -1, -1], [1, 0, -1]])
    assert abs(_fast.between_user_diversity(rec, 3, max_pairs=10) - 1 / 3) < 1e-12


def test_shared_train_views_equal_the_interactions_methods():
    data = make_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=3)).interactions
    split = random_holdout(data, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(_item_popularity(split.train), split.train.item_popularity())
    assert (_train_csr(split.train) != split.train.to_csr(binary=True)).nnz == 0
    model = PopularityRecommender().fit(split.train)
    config = EvalConfig(ks=(5,), n_bootstrap=50, between_user_pairs=100)
    a = evaluate(model, split, config, progress=False)
    b = evaluate(model, split, config, progress=False)
    assert a.system == b.system
    want = M.between_user_diversity(a.recommendations[:, :5], split.train.n_items, 100, seed=0)
    assert a.system["between_user_diversity@5"] == want


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.integers(1, 25), st.integers(0, 2**31 - 1))
def test_hits_matrix_equals_the_public_function(u, k, n_items, seed):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rec = rng.integers(-1, n_items, size=(u, k))
    dense = (rng.random((u, n_items)) < 0.3).astype(np.float64)
    dense[rng.random((u, n_items)) < 0.1] = 0.0
    rel = sp.csr_matrix(dense)
    rel.data[rng.random(rel.nnz) < 0.2] = 0.0  # explicit zeros are not relevant
    np.testing.assert_array_equal(_fast.hits_matrix(rec, rel), M.hits_matrix(rec, rel))
    # rows of a larger matrix, without the row-indexed copy (repeats and any order)
    big = sp.vstack([rel, sp.csr_matrix(rng.random((7, n_items)) < 0.4, dtype=np.float64)])
    rows = rng.integers(0, u + 7, u)
    np.testing.assert_array_equal(
        _fast.hits_matrix(rec, big.tocsr(), rows), M.hits_matrix(rec, big.tocsr()[rows])
    )
    with pytest.raises(ValueError, match="rows must lie"):
        _fast.hits_matrix(rec, big.tocsr(), np.full(u, u + 7))
    with pytest.raises(ValueError, match="integer row indices"):
        _fast.hits_matrix(rec, big.tocsr(), rows.astype(float))
    # a non-canonical matrix (duplicate entries, one pair summing to zero)
    coo = sp.coo_matrix(([1.0, 1.0, -1.0], ([0, 0, 0], [0, 1, 1])), shape=(u, n_items + 2))
    rec2 = np.full((u, 2), -1)
    rec2[0] = [0, 1]
    np.testing.assert_array_equal(
        _fast.hits_matrix(rec2, coo.tocsr(copy=False)), M.hits_matrix(rec2, coo.tocsr())
    )


def test_split_views_are_built_once_per_log_and_read_only():
    data = make_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=4)).interactions
    split = random_holdout(data, test_fraction=0.2, seed=0)
    csr = _train_csr(split.train)
    assert _train_csr(split.train) is csr  # the same object: built once
    assert not csr.data.flags.writeable and not csr.indices.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        csr.data[0] = 2.0
    pop = _item_popularity(split.train)
    pop[0] = -5  # a copy: the cached counts are untouched
    np.testing.assert_array_equal(_item_popularity(split.train), split.train.item_popularity())
    rel = _relevant_csr(split.test, None)
    assert _relevant_csr(split.test, None) is rel and _relevant_csr(split.test, 4.0) is not rel
    assert (rel != split.test.to_csr(binary=True)).nnz == 0
    # another log object (same rows) gets its own views; values equal
    other = split.train.select(np.arange(split.train.nnz))
    assert _train_csr(other) is not csr and (_train_csr(other) != csr).nnz == 0
    # a cached evaluate gives the uncached values
    model = PopularityRecommender().fit(split.train)
    config = EvalConfig(ks=(5,), n_bootstrap=50, between_user_pairs=100)
    harness._VIEWS.clear()
    first = evaluate(model, split, config, progress=False)
    assert split.train in harness._VIEWS and split.test in harness._VIEWS
    again = evaluate(model, split, config, progress=False)
    assert first.system == again.system
    pd.testing.assert_frame_equal(first.per_user, again.per_user)
