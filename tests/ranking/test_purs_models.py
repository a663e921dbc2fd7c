"""PURS and its CTR baselines: numpy reference forward passes, persistence, pipeline use."""

import numpy as np
import pytest
import torch

import divrec
from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.metrics import unexpectedness_scores
from divrec.pipeline import Pipeline
from divrec.ranking.ctr import DIN, DeepFMNet, DINNet, PNNNet, WideDeepNet, right_align
from divrec.ranking.purs import PURS, PURSNet
from divrec.ranking.spr import SPR, rank_interpolation
from divrec.ranking.unexpected import mean_shift, median_bandwidth
from divrec.retrieval.baselines import PopularityRecommender
from divrec.splitting.windows import labeled_windows

N_USERS, N_ITEMS, D = 4, 9, 3


def _inputs():
    user = torch.tensor([0, 3, -1])
    history = torch.tensor([[-1, -1, 2, 5], [1, 2, 3, 4], [-1, 8, 0, 7]])
    items = torch.tensor([[1, 6], [0, 2], [4, 4]])
    return user, history, items


def _mlp(seq, x):
    """numpy forward of a `divrec.ranking.ctr.MLP` (eval mode)."""
    layers = [m for m in seq.net if isinstance(m, torch.nn.Linear)]
    for j, lin in enumerate(layers):
        x = x @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if j < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def _emb(table, idx, pad):
    w = table.weight.detach().numpy()
    idx = np.asarray(idx)
    return w[np.where(idx < 0, pad, idx)]


def _fields(net, user, history):
    eu = _emb(net.user_emb, user, N_USERS)
    eh = _emb(net.item_emb, history, N_ITEMS)
    mask = (np.asarray(history) >= 0).astype(float)
    mean = (eh * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    return eu, eh, mask, mean


def _perturb(net):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))


def test_din_matches_numpy():
    net = DINNet(N_USERS, N_ITEMS, D, (5, 4), (6,)).eval()
    _perturb(net)
    user, history, items = _inputs()
    got = net(user, history, items).detach().numpy()
    eu, eh, mask, _ = _fields(net, user, history)
    ei = _emb(net.item_emb, items, N_ITEMS)
    want = np.zeros(got.shape)
    for b in range(3):
        for c in range(2):
            e = ei[b, c]
            pooled = np.zeros(D)
            for j in range(4):
                if mask[b, j]:
                    h = eh[b, j]
                    a = _mlp(net.att, np.concatenate([h, e, h - e, h * e]))[0]
                    pooled += a * h
            want[b, c] = _mlp(net.mlp, np.concatenate([eu[b], pooled, e]))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_deepfm_matches_numpy():
    net = DeepFMNet(N_USERS, N_ITEMS, D, (5,)).eval()
    _perturb(net)
    user, history, items = _inputs()
    got = net(user, history, items).detach().numpy()
    eu, eh, mask, mean = _fields(net, user, history)
    wu = _emb(net.w_user, user, N_USERS)[:, 0]
    wi = net.w_item.weight.detach().numpy()[:, 0]
    for b in range(3):
        wh = sum(wi[h] for h in history[b].tolist() if h >= 0) / mask[b].sum()
        for c in range(2):
            i = int(items[b, c])
            f = [eu[b], _emb(net.item_emb, i, N_ITEMS), mean[b]]
            pair = sum(f[a] @ f[z] for a in range(3) for z in range(a + 1, 3))
            first = net.bias.item() + wu[b] + wh + wi[i]
            deep = _mlp(net.mlp, np.concatenate(f))[0]
            assert got[b, c] == pytest.approx(first + pair + deep, rel=1e-5, abs=1e-6)


def test_wide_deep_matches_numpy():
    net = WideDeepNet(N_USERS, N_ITEMS, D, (5, 2)).eval()
    _perturb(net)
    user, history, items = _inputs()
    got = net(user, history, items).detach().numpy()
    eu, eh, mask, mean = _fields(net, user, history)
    wu = _emb(net.w_user, user, N_USERS)[:, 0]
    wi = net.w_item.weight.detach().numpy()[:, 0]
    whist = net.w_hist.weight.detach().numpy()[:, 0]
    for b in range(3):
        wh = sum(whist[h] for h in history[b].tolist() if h >= 0) / mask[b].sum()
        for c in range(2):
            i = int(items[b, c])
            deep = _mlp(net.mlp, np.concatenate([eu[b], _emb(net.item_emb, i, N_ITEMS), mean[b]]))
            want = net.bias.item() + wu[b] + wh + wi[i] + deep[0]
            assert got[b, c] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_pnn_matches_numpy():
    net = PNNNet(N_USERS, N_ITEMS, D, (4,)).eval()
    _perturb(net)
    user, history, items = _inputs()
    got = net(user, history, items).detach().numpy()
    eu, eh, mask, mean = _fields(net, user, history)
    for b in range(3):
        for c in range(2):
            f = [eu[b], _emb(net.item_emb, int(items[b, c]), N_ITEMS), mean[b]]
            prods = [f[0] @ f[1], f[0] @ f[2], f[1] @ f[2]]
            want = _mlp(net.mlp, np.concatenate(f + [np.array(prods)]))[0]
            assert got[b, c] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_purs_default_clusters_are_gaussian_mean_shift_with_the_median_radius():
    net = PURSNet(N_USERS, N_ITEMS, D, (5,), (4,), short_window=2).eval()
    _perturb(net)
    user, history, items = _inputs()
    _, parts = net(user, history, items, return_parts=True)
    eh = _emb(net.item_emb, history, N_ITEMS)
    ei = _emb(net.item_emb, items, N_ITEMS)
    h = median_bandwidth(eh, history >= 0, 0.35)
    c, w = mean_shift(eh, history >= 0, bandwidth=h, kernel="gaussian")
    want = unexpectedness_scores(ei, c.numpy(), w.numpy())
    np.testing.assert_allclose(parts["unexp"].numpy(), want, rtol=1e-5)


def test_purs_logit_decomposes_and_unexpectedness_is_eq3_without_gradient():
    net = PURSNet(
        N_USERS, N_ITEMS, D, (5,), (4,), short_window=2, bandwidth=0.3, kernel="flat",
        bandwidth_rule="fixed",
    ).eval()  # fmt: skip
    _perturb(net)
    user, history, items = _inputs()
    logit, parts = net(user, history, items, return_parts=True)
    eh = _emb(net.item_emb, history, N_ITEMS)
    ei = _emb(net.item_emb, items, N_ITEMS)
    c, w = mean_shift(eh, history >= 0, bandwidth=0.3)
    want = unexpectedness_scores(ei, c.numpy(), w.numpy())
    np.testing.assert_allclose(parts["unexp"].numpy(), want, rtol=1e-5)
    assert not parts["unexp"].requires_grad  # stop-gradient on the distance
    f = parts["unexp"] * torch.exp(-parts["unexp"])
    bu = _emb(net.user_bias, user, N_USERS)
    bi = _emb(net.item_bias, items, N_ITEMS)[..., 0]
    rebuilt = bu + bi + parts["ctr"].detach().numpy() + (parts["factor"] * f).detach().numpy()
    np.testing.assert_allclose(logit.detach().numpy(), rebuilt, rtol=1e-5, atol=1e-6)
    # Variation 4 has no unexpectedness term: logit = biases + CTR branch
    v4 = PURSNet(N_USERS, N_ITEMS, D, (5,), use_unexpectedness=False).eval()
    lg, pt = v4(user, history, items, return_parts=True)
    assert "unexp" not in pt


def _log(seed=0, n_users=12, n_items=30, n=240):
    rng = np.random.default_rng(seed)
    return Interactions(
        users=rng.integers(0, n_users, n),
        items=rng.integers(0, n_items, n),
        values=rng.integers(1, 6, n).astype(float),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        timestamps=rng.permutation(n),
    ).deduplicate("last")


def test_purs_fit_save_load_round_trip_and_pipeline(tmp_path):
    data = _log()
    model = PURS(
        dim=8, hidden=(8,), factor_hidden=(4,), epochs=2, batch_size=64, seed=1, threshold=3.5
    )
    model.fit(data)
    assert len(model.train_loss_) == 2 and np.isfinite(model.train_loss_).all()
    users = np.arange(5)
    cands = np.tile(np.arange(10), (5, 1))
    s = model.score(users, cands)
    loaded = divrec.load(model.save(tmp_path / "purs"))
    np.testing.assert_array_equal(loaded.score(users, cands), s)
    # same seed, same model
    again = PURS(
        dim=8, hidden=(8,), factor_hidden=(4,), epochs=2, batch_size=64, seed=1, threshold=3.5
    ).fit(data)
    np.testing.assert_array_equal(again.score(users, cands), s)
    # ranking stage: a fresh history changes the scores; Pipeline(retriever, ranker=PURS)
    fresh = Query(users=users, history=np.array([[1, 2, 3, -1]] * 5))
    assert not np.array_equal(model.score(fresh, cands), s)
    out = model(fresh, Candidates.from_ids(cands), k=3)
    assert out.ids.shape == (5, 3)
    pipe = Pipeline(
        PopularityRecommender(), ranker=PURS(dim=8, hidden=(8,), epochs=1), n_candidates=15
    )
    ids, _ = pipe.fit(data).recommend(users, k=5)
    assert ids.shape == (5, 5) and (ids >= 0).all()


def test_din_trains_and_windows_width_checked():
    data = _log(1)
    w = labeled_windows(data, history=4, n_negatives=1)
    m = DIN(history=4, dim=4, hidden=(4,), epochs=1)
    m.fit_windows(w, data)
    assert m.predict_windows(w).shape == (len(w),)
    with pytest.raises(ValueError, match="history width"):
        DIN(history=5).fit_windows(w, data)


def test_right_align_and_rank_interpolation_by_hand():
    h = np.array([[3, 4, -1, -1], [1, 2, 3, 4], [-1, -1, -1, -1]])
    assert right_align(h, 3).tolist() == [[-1, 3, 4], [2, 3, 4], [-1, -1, -1]]
    rel = np.array([[3.0, 1.0, 2.0]])
    nov = np.array([[0.0, 5.0, 1.0]])
    # ranks scaled to [0, 1]: rel (1, 0, .5), nov (0, 1, .5)
    got = rank_interpolation([rel, nov], [0.75, 0.25])
    np.testing.assert_allclose(got, [[0.75, 0.25, 0.5]])


def test_spr_popularity_weighting_lowers_popular_scores():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 20
    users = np.repeat(np.arange(n_users), 4)
    items = np.where(rng.random(users.size) < 0.5, 0, rng.integers(1, n_items, users.size))
    data = Interactions.from_arrays(users, items, name="pop")
    plain = SPR(alpha=0.0, factors=8, epochs=30, seed=0).fit(data)
    spr = SPR(alpha=1.0, factors=8, epochs=30, seed=0).fit(data)

    # the blockbuster (item 0) is ranked lower relative to the rest by SPR than by BPR
    def rank0(m):
        s = m.score_all(np.arange(data.n_users))
        return (s > s[:, [0]]).sum(1).mean()

    assert rank0(spr) > rank0(plain)


def test_configs_validate_on_construction():
    from divrec.stage import ParamError

    with pytest.raises(ParamError, match="short_window"):
        PURS(history=2, short_window=3)
    with pytest.raises(ParamError, match="activation"):
        PURS(activation="relu")
    with pytest.raises(ParamError, match="optimizer"):
        DIN(optimizer="rmsprop")
    with pytest.raises(ParamError, match="dropout"):
        DIN(dropout=1.0)
    with pytest.raises(ParamError, match="alpha"):
        SPR(alpha=-1.0)
    with pytest.raises(ParamError, match="patience"):
        SPR(patience=1)
    m = PURS(dim=8)
    assert m.dim == 8 and m.config.threads == 1
    with pytest.raises(AttributeError):
        m.epochs = 5  # type: ignore[misc]


def test_fit_restores_torch_state_and_early_stops_on_valid_windows():
    import torch

    data = _log(2)
    w = labeled_windows(data, history=4, n_negatives=1, seed=0)
    tr, va = w.take(np.arange(len(w) - 80)), w.take(np.arange(len(w) - 80, len(w)))
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    kw = dict(history=4, dim=4, hidden=(4,), epochs=8, lr=0.3, seed=0)
    plain = DIN(**kw).fit_windows(tr, data, valid=va)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
    assert len(plain.valid_loss_) == 8 and plain.best_epoch_ is None
    stopped = DIN(**kw, patience=1).fit_windows(tr, data, valid=va)
    # same run up to the stop (one epoch without improvement); the best weights are kept
    assert len(stopped.valid_loss_) == 2 and stopped.best_epoch_ == 0
    np.testing.assert_array_equal(stopped.valid_loss_, plain.valid_loss_[:2])
    p = stopped.predict_windows(va)
    y = va.label
    ll = -(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7)).mean()
    assert ll == pytest.approx(min(stopped.valid_loss_), rel=1e-6)
    with pytest.raises(ValueError, match="patience"):
        DIN(**kw, patience=1).fit_windows(tr, data)
    # valid_fraction carves validation windows out of the log's windows in `fit`
    carved = DIN(**kw, valid_fraction=0.2).fit(data)
    assert len(carved.valid_loss_) == 8
