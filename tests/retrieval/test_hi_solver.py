"""HI models' `solver="als"`: explicit ALS on the non-zeros with Spark's weighted-λ objective."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import divrec
from divrec.data.interactions import Interactions
from divrec.retrieval.hi import (
    HIRealtime,
    HIRecommender,
    N2PRecommender,
    P2PRecommender,
    als_factors,
    truncated_factors,
)


def _log(seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    n = 400
    return Interactions.from_arrays(
        rng.integers(0, 30, n), rng.integers(0, 25, n), rng.integers(1, 6, n).astype(float)
    )


def test_exact_low_rank_full_support():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 15))
    left, right = als_factors(sp.csr_matrix(m), 3, regularization=0.0, iterations=40)
    np.testing.assert_allclose(left @ right, m, atol=1e-8)


def test_missing_entries_are_not_targets():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((25, 2)) @ rng.standard_normal((2, 18))
    mask = rng.random(m.shape) < 0.6
    obs = sp.csr_matrix(np.where(mask, m, 0.0))
    left, right = als_factors(obs, 2, regularization=0.0, iterations=200)
    # rank-2 completion: the observed entries are fitted and the missing ones recovered
    np.testing.assert_allclose(left @ right, m, atol=1e-8)
    # the SVD treats the zeros as targets and does not fit the observed entries
    l2, r2 = truncated_factors(obs, 2)
    assert np.abs((l2 @ r2)[mask] - m[mask]).max() > 0.1


@pytest.mark.parametrize("lam", [0.05, 0.5])
def test_weighted_lambda_stationarity(lam):
    """After the last (row) half-step, the gradient of Spark's objective in each row is 0."""
    rng = np.random.default_rng(2)
    dense = np.where(rng.random((15, 12)) < 0.5, rng.integers(1, 9, (15, 12)), 0).astype(float)
    left, right = als_factors(sp.csr_matrix(dense), 3, seed=4, regularization=lam, iterations=5)
    for i in range(dense.shape[0]):
        cols = np.flatnonzero(dense[i])
        resid = left[i] @ right[:, cols] - dense[i, cols]
        grad = right[:, cols] @ resid + lam * cols.size * left[i]
        np.testing.assert_allclose(grad, 0.0, atol=1e-9)


def test_default_solver_unchanged_and_als_option():
    data = _log()
    svd = P2PRecommender(factors=4).fit(data)
    x = svd.X_
    p, q = truncated_factors((x.T @ x).tocsr(), 4, 0)
    np.testing.assert_array_equal(svd.P_, p)
    als = P2PRecommender(factors=4, solver="als", regularization=0.1).fit(data)
    p2, q2 = als_factors((x.T @ x).tocsr(), 4, 0, 0.1)
    np.testing.assert_array_equal(als.P_, p2)
    np.testing.assert_array_equal(als.Q_, q2)
    for cls in (N2PRecommender, HIRecommender, HIRealtime):
        model = cls(factors=3, solver="als").fit(data)
        ids, _ = model.recommend(np.arange(5), 4)
        assert ids.shape == (5, 4)
    with pytest.raises(ValueError, match="solver"):
        HIRealtime(solver="nope").fit(data)


def test_als_model_round_trip(tmp_path):
    data = _log(3)
    model = HIRealtime(factors=3, solver="als", regularization=0.2).fit(data)
    model.save(tmp_path / "m.npz")
    back = divrec.load(tmp_path / "m.npz")
    assert back.solver == "als" and back.regularization == 0.2
    np.testing.assert_array_equal(back.A_, model.A_)
    np.testing.assert_array_equal(back.score_all(np.arange(4)), model.score_all(np.arange(4)))
