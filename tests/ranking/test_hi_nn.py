"""Tests of divrec.ranking.hi_nn (HI paper Figure 2, Eq. 10–13) on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from divrec.data import make_synthetic
from divrec.data.synthetic import SyntheticConfig
from divrec.ranking.hi_nn import HINet, HINNRecommender

FAST = {"factors": 4, "epochs1": 4, "epochs2": 3, "batch_size": 128, "threads": 1}


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticConfig(n_users=60, n_items=40, n_topics=4, interactions_per_user=12, seed=3)
    return make_synthetic(cfg).interactions


@pytest.fixture(scope="module")
def hinn(data):
    return HINNRecommender(**FAST).fit(data)


@pytest.fixture(scope="module")
def cfnn(data):
    return HINNRecommender(**FAST, p2p_only=True).fit(data)  # the `cf-nn` preset


def _net(p2p_only=False, m=5, n=7, k=3, seed=0) -> HINet:
    torch.manual_seed(seed)
    net = HINet(m, n, k, hidden=(6,), p2p_only=p2p_only)
    with torch.no_grad():
        for p in net.embeddings():
            p.normal_()
    return net


def test_forward_shapes():
    net = _net()
    x, y, xt = torch.rand(4, 7), torch.rand(4, 7), torch.rand(7, 5)
    pu, nu = net.users(x, y)
    pv, nv, w = net.items(xt)
    assert pu.shape == nu.shape == (4, 3)
    assert pv.shape == nv.shape == (7, 3) and w.shape == (7, 3, 3)
    feats = net.features(pu, nu, pv[:4], nv[:4], w[:4])
    assert feats.shape == (4, 2 * 3 + 3)
    assert net.head(feats).shape == (4,)
    cf = _net(p2p_only=True)
    pu, nu = cf.users(x, None)
    assert nu is None and cf.features(pu, None, cf.items(xt)[0][:4], None, None).shape == (4, 4)


def test_interaction_term_equals_numpy_with_w():
    net = _net()
    x, y, xt = torch.rand(4, 7), torch.rand(4, 7), torch.rand(7, 5)
    with torch.no_grad():
        pu, nu = net.users(x, y)
        pv, nv, w = net.items(xt)
        _, nr, sr = net.channel_scores(pu, nu, pv[:4], nv[:4], w[:4])
    pun, nun = x.numpy() @ net.pU.detach().numpy(), y.numpy() @ net.nU.detach().numpy()
    wn = (xt.numpy() @ net.fWe.detach().numpy() @ net.fWl.detach().numpy()).reshape(7, 3, 3)
    np.testing.assert_allclose(w.numpy(), wn, rtol=1e-5, atol=1e-5)
    for b in range(4):  # *r = (−U_b) W_b (+U_b)ᵀ
        np.testing.assert_allclose(sr[b].item(), nun[b] @ wn[b] @ pun[b], rtol=1e-4, atol=1e-4)
    nvn = xt.numpy()[:4] @ net.nV.detach().numpy()
    np.testing.assert_allclose(nr.numpy(), (nun * nvn).sum(1), rtol=1e-4, atol=1e-4)


def test_cf_nn_ignores_negative_inputs(cfnn, tmp_path):
    users = np.arange(cfnn.n_users_)
    before = cfnn.score_all(users)
    x, y1 = cfnn.X_, cfnn.Y_
    rng = np.random.default_rng(0)
    y2 = sp.csr_matrix(rng.random(y1.shape) * (x.toarray() == 0), dtype=np.float32)
    np.testing.assert_array_equal(cfnn.score_cold(x, y1), cfnn.score_cold(x, y2))
    # the warm path: replace the stored negative rows Y and recompute every latent
    other = HINNRecommender.load(cfnn.save(tmp_path / "cf"))
    other.Y_ = y2
    other._prepare_inputs()
    other._cache()
    np.testing.assert_array_equal(other.score_all(users), before)
    # ... while HI-NN does read them
    net = _net()
    xx, xt = torch.rand(2, 7), torch.rand(7, 5)
    f1 = net.features(*net.users(xx, torch.rand(2, 7)), *[t[:2] for t in net.items(xt)])
    f2 = net.features(*net.users(xx, torch.rand(2, 7)), *[t[:2] for t in net.items(xt)])
    assert not torch.equal(f1, f2)
    cf = _net(p2p_only=True)
    g1 = cf.features(
        *cf.users(xx, torch.rand(2, 7)), *[None if t is None else t[:2] for t in cf.items(xt)]
    )
    g2 = cf.features(*cf.users(xx, None), *[None if t is None else t[:2] for t in cf.items(xt)])
    assert torch.equal(g1, g2)


def test_two_phase_training_decreases_losses(data):
    model = HINNRecommender(**{**FAST, "epochs1": 8, "epochs2": 6}).fit(data)
    h1, h2 = model.history_["phase1"], model.history_["phase2"]
    assert h1[-1] < h1[0] and h2[-1] < h2[0]
    # phase 1 fixed the sub-networks: no gradients flow into them any more
    assert all(not p.requires_grad for p in model.net_.embeddings())
    assert all(p.requires_grad for p in model.net_.g.parameters())


def test_cold_start_approximation_equals_hand_formula(hinn):
    x, y = hinn.X_[:3], hinn.Y_[:3]
    pu, nu, w = hinn.cold_latents(x, y)
    xd, yd = x.toarray(), y.toarray()
    cx = np.maximum((xd != 0).sum(1, keepdims=True), 1)  # user_norm="mean"
    cy = np.maximum((yd != 0).sum(1, keepdims=True), 1)
    np.testing.assert_allclose(pu, (xd / cx) @ hinn.P_, rtol=1e-5, atol=1e-6)  # Eq. 11
    np.testing.assert_allclose(nu, (yd / cy) @ hinn.R_, rtol=1e-5, atol=1e-6)  # Eq. 12
    j = 5
    np.testing.assert_allclose(w[j], np.outer(hinn.S_[:, j], hinn.Q_[:, j]))  # Eq. 13
    # the forward pass continues through g with the trained item latents
    pv, nv, _ = (t.numpy() for t in hinn.item_latents_)
    b = 1
    sr = nu[b] @ w[j] @ pu[b]
    feats = np.r_[pu[b] * pv[j], nu[b] * nv[j], pu[b] @ pv[j], nu[b] @ nv[j], sr]
    with torch.no_grad():
        want = hinn.net_.head(torch.tensor(feats[None], dtype=torch.float32)).item()
    assert hinn.score_cold(x, y)[b, j] == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_mf_init_starts_at_the_truncated_svd(data):
    model = HINNRecommender(**{**FAST, "epochs1": 0, "epochs2": 1}).fit(data)
    pu, nu = (t.numpy() for t in model.user_latents_)
    pv, nv, _ = (t.numpy() for t in model.item_latents_)
    xn, yn = model._user_rows(model.X_, model.Y_)
    np.testing.assert_allclose(pu @ pv.T, xn @ model.P_ @ model.Q_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(nu @ nv.T, yn @ model.R_ @ model.S_, rtol=1e-3, atol=1e-4)


def test_seeded_training_is_deterministic(data, hinn):
    again = HINNRecommender(**FAST).fit(data)
    users = np.arange(hinn.n_users_)
    np.testing.assert_array_equal(again.score_all(users), hinn.score_all(users))
    other = HINNRecommender(**{**FAST, "seed": 1, "init": "random"}).fit(data)
    assert not np.array_equal(other.score_all(users), hinn.score_all(users))


@pytest.mark.parametrize("which", ["hinn", "cfnn"])
def test_save_load_round_trip(which, request, tmp_path):
    model = request.getfixturevalue(which)
    path = model.save(tmp_path / "model")
    loaded = HINNRecommender.load(path)
    assert type(loaded) is type(model)
    users = np.arange(model.n_users_)
    np.testing.assert_array_equal(loaded.score_all(users), model.score_all(users))
    np.testing.assert_array_equal(
        loaded.score_cold(model.X_[:4], model.Y_[:4]), model.score_cold(model.X_[:4], model.Y_[:4])
    )
    assert loaded.get_params() == model.get_params()
    ids, _ = loaded.recommend(users[:3], k=5)
    assert ids.shape == (3, 5)


def test_cf_nn_preset_and_config(data):
    from divrec.registry import create
    from divrec.stage import ParamError

    m = create("model", "cf-nn", {"factors": "3"})
    assert type(m) is HINNRecommender and m.p2p_only and m.factors == 3
    with pytest.raises(ParamError, match="init"):
        HINNRecommender(init="svd")
    with pytest.raises(ParamError, match="patience"):
        HINNRecommender(patience=2)  # no validation split
    with pytest.raises(AttributeError):
        m.p2p_only = False  # type: ignore[misc]
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    HINNRecommender(**{**FAST, "threads": 2, "epochs1": 1, "epochs2": 1}).fit(data)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
