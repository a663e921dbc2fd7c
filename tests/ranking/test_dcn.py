"""DCN-v2 backbone: numerics against a numpy forward pass, training, IPW weights, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import divrec
from divrec.data.synthetic import SyntheticConfig, make_synthetic
from divrec.ranking.dcn import DCNNet, DCNRanker, category_table, history_table
from divrec.splitting.candidate_requests import CandidateRequests


def _np_forward(net: DCNNet, users, items, hist, ufeat) -> np.ndarray:
    """A straightforward numpy DCN-v2 forward pass (eval mode) from the module's weights."""
    w = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()}
    cats = net.item_cats.numpy()
    out = np.zeros(items.shape)
    for b in range(items.shape[0]):
        uf = [w["user_emb.weight"][users[b]]]
        h = [j for j in hist[b] if j >= 0]
        uf.append(np.mean([w["item_emb.weight"][j] for j in h], axis=0))
        for f in range(ufeat.shape[1]):
            uf.append(w[f"ufeat_emb.{f}.weight"][ufeat[b, f]])
        for n in range(items.shape[1]):
            i = items[b, n]
            c = [w["cat_emb.weight"][j] for j in cats[i] if j >= 0]
            parts = [*uf, w["item_emb.weight"][i], np.mean(c, axis=0) if c else np.zeros(net.dim)]
            x0 = np.concatenate(parts)
            x = x0
            for layer in range(net.n_cross):
                if net.cross_version == "v1":  # DCN (2017) Eq. 3: x0 xᵀ w + b + x
                    x = x0 * (x @ w[f"cross_w.{layer}"]) + w[f"cross_b.{layer}"] + x
                    continue
                if net.cross_rank > 0:
                    mat = w[f"cross_u.{layer}"] @ w[f"cross_v.{layer}"].T
                else:
                    mat = w[f"cross_w.{layer}"]
                x = x0 * (mat @ x + w[f"cross_b.{layer}"]) + x
            for j in range(0, len(net.mlp), 3):
                x = np.maximum(w[f"mlp.{j}.weight"] @ x + w[f"mlp.{j}.bias"], 0.0)
            out[b, n] = (w["out.weight"] @ x + w["out.bias"])[0]
    return out


@pytest.mark.parametrize(("rank", "version"), [(0, "v2"), (3, "v2"), (0, "v1")])
def test_forward_matches_numpy_reference(rank, version):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    item_cats = np.array([[0, 2], [1, -1], [-1, -1], [2, 1], [0, -1], [1, 2]])
    net = DCNNet(
        5, 6, item_cats, 3, (2, 4), dim=4, n_cross=2, cross_rank=rank, hidden=(8, 6, 5),
        cross_version=version,
    )  # fmt: skip
    with torch.no_grad():  # non-trivial biases everywhere
        for b in net.cross_b:
            b.normal_()
    net.eval()
    users = np.array([0, 3, 4])
    items = rng.integers(0, 6, size=(3, 4))
    hist = np.array([[1, 2, -1], [5, -1, -1], [0, 3, 4]])
    ufeat = np.array([[0, 3], [1, 0], [1, 2]])
    got = net(
        torch.as_tensor(users),
        torch.as_tensor(items),
        torch.as_tensor(hist),
        torch.as_tensor(ufeat),
    ).detach()
    ref = _np_forward(net, users, items, hist, ufeat)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_tables():
    cats = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], dtype=np.float32))
    np.testing.assert_array_equal(category_table(cats, 3), [[0, 2], [-1, -1], [1, -1]])
    hist = sp.csr_matrix(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    np.testing.assert_array_equal(
        history_table(hist, np.array([0, 1, 2]), 2), [[1, 3], [-1, -1], [2, -1]]
    )


def topic_requests(n_users=150, n_items=60, n_topics=4, seed=0):
    """Users whose 5 history items share one topic; a candidate is positive iff it has it."""
    from divrec.data.interactions import Interactions

    rng = np.random.default_rng(seed)
    topic = np.arange(n_items) % n_topics
    utop = rng.integers(0, n_topics, n_users)
    rows = [(u, i) for u in range(n_users) for i in rng.choice(np.flatnonzero(topic == utop[u]), 5)]
    hu, hi = np.array(rows).T
    cats = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), topic)), (n_items, n_topics))
    data = Interactions(
        users=hu, items=hi, values=np.ones(len(hu)), user_ids=np.arange(n_users),
        item_ids=np.arange(n_items), timestamps=np.arange(len(hu)), item_categories=cats,
    )  # fmt: skip
    cand = np.stack([rng.choice(n_items, 20, replace=False) for _ in range(n_users)])
    lab = (topic[cand] == utop[:, None]).astype(np.float32)
    req = CandidateRequests(
        np.arange(n_users), cand, lab, sp.csr_matrix(lab), data.to_csr(binary=True)
    )
    return data, req, topic


def test_fit_learns_and_round_trips(tmp_path):
    from divrec.metrics.accuracy import auc

    data, req, _ = topic_requests()
    model = DCNRanker(dim=8, hidden=(32, 16, 8), lr=1e-2, batch_requests=4, max_epochs=5, seed=0)
    assert model.fit(data, requests=req) is model
    assert min(model.val_losses_) < 0.5 * model.val_losses_[0]
    scores = model.score(req.users, req.candidates)
    assert auc(scores.ravel(), req.labels.ravel()) > 0.95
    path = model.save(tmp_path / "dcn")
    loaded = divrec.load(path)
    np.testing.assert_allclose(loaded.score(req.users, req.candidates), scores, rtol=1e-6)
    ids, _ = loaded.recommend(np.array([0, 1]), k=5)
    assert ids.shape == (2, 5) and len(set(ids[0])) == 5


def test_fit_without_requests_and_low_rank():
    data = make_synthetic(SyntheticConfig(n_users=60, n_items=40, n_topics=3, seed=0)).interactions
    model = DCNRanker(dim=4, hidden=(8, 8, 8), cross_rank=2, max_epochs=2, seed=0).fit(data)
    assert len(model.val_losses_) == 2 and model.net_.cross_rank == 2
    assert np.isfinite(model.score_all(np.arange(3))).all()


def test_ipw_weights_by_hand():
    # items 0, 1 of category 0, item 2 of category 1, item 3 without; history {0, 1}
    hist = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=np.float32))
    req = CandidateRequests(
        users=np.array([0]),
        candidates=np.array([[2, 3, 0]]),
        labels=np.array([[1.0, 1.0, 0.0]], dtype=np.float32),
        targets=sp.csr_matrix(np.array([[0, 0, 1, 1]], dtype=np.float32)),
        history=hist,
    )
    m = DCNRanker(weighting="ipw")  # the `ipw` preset
    m._item_primary = np.array([0, 0, 1, -1])
    w = m._weights(req, np.array([0]))
    # classes ("none", c0, c1), counts (0, 2, 0), add-one: p = (1/5, 3/5, 1/5)
    inv = np.array([5.0, 5.0])  # item 2 (c1), item 3 (none)
    np.testing.assert_allclose(w[0, :2], inv / inv.mean())
    assert w[0, 2] == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="dropout"):
        DCNRanker(dropout=1.0)
    with pytest.raises(ValueError, match="weighting"):
        DCNRanker(weighting="x")  # type: ignore[arg-type]
    data = make_synthetic(SyntheticConfig(n_users=30, n_items=20, n_topics=2, seed=0)).interactions
    with pytest.raises(ValueError, match="user_features"):
        DCNRanker(max_epochs=1).fit(data, user_features=np.zeros((3, 2), dtype=np.int64))


def test_config_declared_once_and_ipw_preset():
    from divrec.registry import create
    from divrec.stage import ParamError

    m = DCNRanker(dim=8, hidden=[16])
    assert m.config.hidden == (16,) and m.get_params()["weighting"] == "none"
    with pytest.raises(AttributeError):
        m.dim = 4  # type: ignore[misc]
    with pytest.raises(ParamError, match="batch_requests"):
        DCNRanker(batch_requests=0)
    with pytest.raises(ParamError, match="val_frac"):
        DCNRanker(valid_fraction=0.2)  # DCN's own split is `val_frac`
    with pytest.raises(ParamError, match="device"):
        DCNRanker(device="cuda")
    with pytest.raises(TypeError):
        DCNRanker(16)  # type: ignore[misc]  # keyword-only
    ipw = create("model", "ipw", {"dim": "4"})
    assert type(ipw) is DCNRanker and ipw.weighting == "ipw" and ipw.dim == 4
    assert ipw.get_params() == DCNRanker(dim=4, weighting="ipw").get_params()


def test_fit_restores_torch_threads_and_rng():
    import torch

    data = make_synthetic(SyntheticConfig(n_users=30, n_items=20, n_topics=2, seed=0)).interactions
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    model = DCNRanker(dim=4, hidden=(8,), max_epochs=2, threads=2, seed=3).fit(data)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)
    assert len(model.train_losses_) == 2 and model.best_epoch_ in (0, 1)


def test_early_stopping_counts_dcn_patience():
    """`patience=p` tolerates p epochs without improvement and stops at the next one."""
    data, req, _ = topic_requests()
    kw = dict(dim=4, hidden=(8,), lr=0.2, batch_requests=2, max_epochs=12, seed=0)
    model = DCNRanker(**kw, patience=0).fit(data, requests=req)
    losses = model.val_losses_
    best = int(np.argmin(losses))
    assert model.best_epoch_ == best
    assert len(losses) == best + 2 < 12  # stopped one epoch after the best
    unlimited = DCNRanker(**kw, patience=None).fit(data, requests=req)
    assert len(unlimited.val_losses_) == 12
    np.testing.assert_array_equal(unlimited.val_losses_[: len(losses)], losses)


RANKING_FAST = {
    "dcn": {"max_epochs": 2, "hidden": (8,), "dim": 4},
    "ipw": {"max_epochs": 2, "hidden": (8,), "dim": 4},
    "cdm": {"max_epochs": 1, "hidden": (8,), "dim": 4, "cdm_epochs": 1},
    "purs": {"epochs": 1, "dim": 4},
    "din": {"epochs": 1, "dim": 4},
    "deepfm": {"epochs": 1, "dim": 4},
    "wide-deep": {"epochs": 1, "dim": 4},
    "pnn": {"epochs": 1, "dim": 4},
    "spr": {"epochs": 1, "factors": 4},
    "hi-nn": {"epochs1": 1, "epochs2": 1, "factors": 3, "hidden": (4,)},
    "cf-nn": {"epochs1": 1, "epochs2": 1, "factors": 3, "hidden": (4,)},
}


@pytest.mark.parametrize("name", list(RANKING_FAST))
def test_every_ranking_model_fit_keeps_global_state(name):
    """Every fit of `divrec.ranking` runs inside `training_scope` (threads and RNG kept)."""
    from divrec.registry import create
    from divrec.testing import check_fit_keeps_global_state

    data = make_synthetic(SyntheticConfig(n_users=30, n_items=20, n_topics=2, seed=0)).interactions
    check_fit_keeps_global_state(lambda: create("model", name, RANKING_FAST[name]), data)


def test_dcn_v1_fits_round_trips_and_rejects_a_rank(tmp_path):
    data = make_synthetic(SyntheticConfig(n_users=40, n_items=30, n_topics=3, seed=2)).interactions
    model = DCNRanker(dim=4, hidden=(8,), max_epochs=1, cross_version="v1", seed=0).fit(data)
    assert model.net_.cross_w[0].shape == (model.net_.d0,)
    users, items = np.arange(3), np.tile(np.arange(5), (3, 1))
    loaded = divrec.load(model.save(tmp_path / "v1"))
    np.testing.assert_array_equal(loaded.score(users, items), model.score(users, items))
    with pytest.raises(ValueError, match="cross_rank"):
        DCNRanker(cross_version="v1", cross_rank=2)
