"""SLIM (ElasticNet optimality conditions) and NeuMF (forward pass by hand, learning, save/load)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import divrec
from divrec.data.query import Query
from divrec.registry import create
from divrec.retrieval.neumf import NeuMFRecommender
from divrec.retrieval.slim import SLIMRecommender


def _blocks(n_users=40, n_items=20, p=0.6, seed=0) -> sp.csr_matrix:
    """Two user groups, each liking one half of the items (with probability p)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n_users, n_items))
    half_u, half_i = n_users // 2, n_items // 2
    x[:half_u, :half_i] = rng.random((half_u, half_i)) < p
    x[half_u:, half_i:] = rng.random((n_users - half_u, n_items - half_i)) < p
    return sp.csr_matrix(x)


def test_slim_columns_satisfy_elastic_net_kkt_conditions():
    x = _blocks()
    alpha, rho = 0.01, 0.3
    m = SLIMRecommender(alpha=alpha, l1_ratio=rho, top_k=100, max_iter=5000, tol=1e-10).fit(x)
    w = m.weights_.toarray().astype(np.float64)
    dense = x.toarray()
    n = dense.shape[0]
    assert np.all(np.diag(w) == 0) and np.all(w >= 0)
    for j in range(dense.shape[1]):
        xj = dense.copy()
        xj[:, j] = 0.0
        grad = xj.T @ (dense[:, j] - xj @ w[:, j]) / n  # −∂(loss)/∂w of the squared term
        active = w[:, j] > 0
        # active weights: gradient balances both penalties; inactive: below the L1 bound
        np.testing.assert_allclose(
            grad[active], alpha * rho + alpha * (1 - rho) * w[active, j], atol=1e-5
        )
        others = ~active
        others[j] = False
        assert np.all(grad[others] <= alpha * rho + 1e-5)


def test_slim_scores_are_history_times_weights_and_history_path_matches():
    x = _blocks()
    m = SLIMRecommender(alpha=0.01, l1_ratio=0.3).fit(x)
    np.testing.assert_allclose(m.score_all([0, 25]), (x[[0, 25]] @ m.weights_).toarray(), rtol=1e-6)
    hist = [list(x[3].indices)]
    q = Query(users=[-1], history=hist)
    np.testing.assert_allclose(m.score_query(q), m.score_all([3]), rtol=1e-6)
    # block structure: a group-1 user's unseen top items are group-1 items
    ids, _ = m.recommend([0], k=3)
    assert np.all(ids < 10)


def test_slim_time_budget_stops_early_and_errors():
    x = _blocks()
    m = SLIMRecommender(time_budget=1e-9).fit(x)
    assert m.n_fitted_ < x.shape[1]
    with pytest.raises(ValueError, match="l1_ratio"):
        SLIMRecommender(l1_ratio=1.5)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: SLIMRecommender(alpha=0.0), "alpha"),
        (lambda: SLIMRecommender(top_k=0), "top_k"),
        (lambda: SLIMRecommender(time_budget=0.0), "time_budget"),
        (lambda: NeuMFRecommender(mlp_dims=(1, 4)), "mlp_dims"),
        (lambda: NeuMFRecommender(mlp_dims=()), "mlp_dims"),
        (lambda: NeuMFRecommender(mlp_dims=(8, 0)), "mlp_dims"),
        (lambda: NeuMFRecommender(negatives=-1), "negatives"),
        (lambda: NeuMFRecommender(lr=0.0), "lr"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_neumf_mlp_dims_from_a_list_or_the_cli_is_a_tuple():
    assert NeuMFRecommender(mlp_dims=[8, 4]).mlp_dims == (8, 4)
    assert create("model", "neumf", {"mlp_dims": "16,8"}).mlp_dims == (16, 8)


def test_slim_save_load_round_trip(tmp_path):
    x = _blocks()
    m = create("model", "slim", {"alpha": "0.01"}).fit(x)
    back = divrec.load(m.save(tmp_path / "slim.npz"))
    np.testing.assert_array_equal(back.score_all([1, 30]), m.score_all([1, 30]))


def test_neumf_forward_equals_hand_computation():
    m = NeuMFRecommender(gmf_dim=2, mlp_dims=(4, 3), epochs=1, batch_size=64).fit(_blocks())
    net = m.net_
    u, i = 5, 7
    pg = net.user_gmf.weight[u].detach().numpy()
    qg = net.item_gmf.weight[i].detach().numpy()
    pm = net.user_mlp.weight[u].detach().numpy()
    qm = net.item_mlp.weight[i].detach().numpy()
    lin = net.mlp[0]
    hidden = np.maximum(
        lin.weight.detach().numpy() @ np.r_[pm, qm] + lin.bias.detach().numpy(), 0.0
    )
    h = net.out.weight.detach().numpy().ravel()
    want = h @ np.r_[pg * qg, hidden] + net.out.bias.item()
    got = m.score([u], [[i]])[0, 0]
    assert np.isclose(got, want, rtol=1e-5, atol=1e-6)


def test_neumf_learns_block_structure_and_round_trips(tmp_path):
    torch.manual_seed(0)
    x = _blocks(n_users=60, n_items=20)
    m = NeuMFRecommender(gmf_dim=8, mlp_dims=(16, 8), epochs=30, batch_size=256, lr=0.01)
    m.fit(x)
    s = m.score_all(np.arange(60))
    own = np.r_[s[:30, :10].mean(), s[30:, 10:].mean()]
    other = np.r_[s[:30, 10:].mean(), s[30:, :10].mean()]
    assert np.all(own > other + 1.0)
    back = divrec.load(m.save(tmp_path / "neumf.npz"))
    np.testing.assert_allclose(back.score_all([0, 45]), m.score_all([0, 45]), rtol=1e-6)
    assert back.mlp_dims == m.mlp_dims or tuple(back.mlp_dims) == tuple(m.mlp_dims)
