"""Optional TotalRecall towers: MLP towers, the YouTube-DNN-style history user tower,
pseudo-users, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from two_tower_util import hr_at_10, planted_groups

from divrec.data.interactions import Interactions
from divrec.registry import create
from divrec.retrieval.baselines import RandomRecommender
from divrec.retrieval.two_tower import TwoTowerRecommender, build_histories

KW = {"dim": 16, "tau": 0.2, "batch_size": 64, "epochs": 10, "lr": 0.01, "threads": 1}
KW["hidden"] = (32,)


def _np_mlp(x: np.ndarray, seq: torch.nn.Sequential) -> np.ndarray:
    """Forward pass of Linear/ReLU layers in numpy (float64)."""
    for layer in seq:
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.detach().numpy().astype(np.float64)
            x = x @ w.T + layer.bias.detach().numpy().astype(np.float64)
        else:
            assert isinstance(layer, torch.nn.ReLU)
            x = np.maximum(x, 0.0)
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def planted():
    return planted_groups()


@pytest.fixture(scope="module")
def mlp_model(planted):
    train, _ = planted
    return TwoTowerRecommender(tower="mlp", **{**KW, "hidden": (24, 20)}).fit(train)


@pytest.fixture(scope="module")
def hist_model(planted):
    train, _ = planted
    return TwoTowerRecommender(user_tower="history", **KW).fit(train)


@pytest.fixture(scope="module")
def hist_id_model(planted):
    train, _ = planted
    return TwoTowerRecommender(
        user_tower="history", history_pool="mean_max", history_user_id=True, history_len=8, **KW
    ).fit(train)


# --------------------------------------------------------------------------- defaults, shapes
def test_defaults_are_the_plain_id_model(planted):
    train, _ = planted
    params = TwoTowerRecommender().get_params()
    assert params["tower"] == "id" and params["user_tower"] is None
    assert create("model", "mfb").get_params()["tower"] == "id"
    m = TwoTowerRecommender(dim=8, batch_size=256, epochs=1, threads=1).fit(train)
    t = m.towers_
    assert t.item_mlp is None and t.user_mlp is None and t.history_item is None
    assert sum(p.numel() for p in t.parameters()) == 8 * (train.shape[0] + train.shape[1])
    assert not hasattr(m, "user_histories_")
    with pytest.raises(ValueError):
        m.encode_history([[0, 1]])


def test_shapes(mlp_model, hist_id_model, planted):
    train, _ = planted
    n_users, n_items = train.shape
    for m in (mlp_model, hist_id_model):
        assert m.user_factors_.shape == (n_users, 16) and m.user_factors_.dtype == np.float32
        assert m.item_factors_.shape == (n_items, 16)
        np.testing.assert_allclose(np.linalg.norm(m.user_factors_, axis=1), 1.0, atol=1e-5)
        assert m.score_all([0, 5]).shape == (2, n_items)
    assert hist_id_model.user_histories_.shape == (n_users, 8)
    vecs = hist_id_model.encode_history([[1, 2, 3], [], [7]])
    assert vecs.shape == (3, 16) and vecs.dtype == np.float32
    ids, scores = hist_id_model.recommend_history([[1, 2, 3], [7]], k=5)
    assert ids.shape == scores.shape == (2, 5)


# --------------------------------------------------------------------------- hand forward passes
def test_mlp_tower_equals_numpy_forward(mlp_model):
    t = mlp_model.towers_
    assert [type(x).__name__ for x in t.item_mlp] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    item_emb = t.item.weight.detach().numpy().astype(np.float64)
    user_emb = t.user.weight.detach().numpy().astype(np.float64)
    want_items = _unit(_np_mlp(item_emb, t.item_mlp))
    want_users = _unit(_np_mlp(user_emb, t.user_mlp))
    np.testing.assert_allclose(mlp_model.item_factors_, want_items, atol=1e-5)
    np.testing.assert_allclose(mlp_model.user_factors_, want_users, atol=1e-5)
    # the MLP is not the identity: the normalized raw embeddings are different vectors
    assert np.abs(mlp_model.item_factors_ - _unit(item_emb)).max() > 0.1
    want_scores = want_users[:3] @ want_items.T / mlp_model.tau
    np.testing.assert_allclose(mlp_model.score_all([0, 1, 2]), want_scores, atol=1e-4)


def test_history_tower_equals_numpy_forward(hist_id_model, planted):
    train, _ = planted
    m, t = hist_id_model, hist_id_model.towers_
    table = t.history_item.weight.detach().numpy().astype(np.float64)
    user_emb = t.user.weight.detach().numpy().astype(np.float64)
    for u in (0, 7, 100):
        hist = m.user_histories_[u]
        hist = hist[hist >= 0]
        assert hist.size == 8 and set(hist) <= set(train[u].indices)  # 8 of the 12 items
        e = table[hist]
        x = np.concatenate([e.mean(0), e.max(0), user_emb[u]])[None, :]
        np.testing.assert_allclose(m.user_factors_[u], _unit(_np_mlp(x, t.user_mlp))[0], atol=1e-5)
        # a pseudo-user (no ID row) gets a zero user-ID input
        x0 = np.concatenate([e.mean(0), e.max(0), np.zeros(16)])[None, :]
        got = m.encode_history([hist])[0]
        np.testing.assert_allclose(got, _unit(_np_mlp(x0, t.user_mlp))[0], atol=1e-5)


def test_encode_history_of_training_list_equals_user_vector(hist_model, hist_id_model, planted):
    train, _ = planted
    users = np.arange(0, 240, 11)
    # L = 20 >= 12 items: the whole training list, in any order
    lists = [train[u].indices[::-1].tolist() for u in users]
    np.testing.assert_allclose(
        hist_model.encode_history(lists), hist_model.user_factors_[users], atol=1e-6
    )
    np.testing.assert_allclose(
        hist_model.score_all(users),
        hist_model.encode_history(lists) @ hist_model.item_factors_.T / hist_model.tau,
        atol=1e-4,
    )
    # with the user-ID input, passing the ids reproduces the user vector; without, it differs
    rows = list(hist_id_model.user_histories_[users])
    np.testing.assert_allclose(
        hist_id_model.encode_history(rows, users), hist_id_model.user_factors_[users], atol=1e-6
    )
    assert np.abs(hist_id_model.encode_history(rows) - hist_id_model.user_factors_[users]).max()
    # dropping an item changes the vector (the test can fail)
    short = hist_model.encode_history([lists[0][1:]])[0]
    assert np.abs(short - hist_model.user_factors_[users[0]]).max() > 1e-3


def test_training_removes_the_positive_from_the_history(hist_model, planted):
    train, _ = planted
    t = hist_model.towers_
    u, items = 3, train[3].indices
    with torch.no_grad():
        got = t.user_vecs(torch.tensor([u]), exclude=torch.tensor([items[0]]))
    want = hist_model.encode_history([items[1:]])
    np.testing.assert_allclose(torch.nn.functional.normalize(got).numpy(), want, atol=1e-6)


# --------------------------------------------------------------------------- histories
def test_build_histories_by_hand():
    # user 0: items 4 (t=10), 1 (t=30 and t=5: latest 30), 2 (t=20), 3 (t=20); user 1: none;
    # user 2: item 0
    log = Interactions(
        users=[0, 0, 0, 0, 0, 2],
        items=[4, 1, 2, 1, 3, 0],
        values=np.ones(6),
        user_ids=np.arange(3),
        item_ids=np.arange(5),
        timestamps=[10, 30, 20, 5, 20, 7],
    )  # the constructor keeps the repeated (0, 1) pair
    mat = log.to_csr(binary=True)
    # oldest → newest: 4 (10), 2 (20), 3 (20; ties by item index), 1 (30); keep the newest 3
    np.testing.assert_array_equal(
        build_histories(mat, log, 3), [[2, 3, 1], [-1, -1, -1], [0, -1, -1]]
    )
    np.testing.assert_array_equal(build_histories(mat, log, 5)[0], [4, 2, 3, 1, -1])
    # without timestamps: item-index order, the highest indices kept
    np.testing.assert_array_equal(build_histories(mat, None, 3)[0], [2, 3, 4])


def test_history_from_timestamped_log_is_the_newest_items():
    from divrec.data.synthetic import SyntheticConfig, make_synthetic

    log = make_synthetic(
        SyntheticConfig(n_users=60, n_items=80, n_topics=4, interactions_per_user=15, seed=1)
    ).interactions
    length = 5
    model = TwoTowerRecommender(
        user_tower="history", history_len=length, **{**KW, "epochs": 1}
    ).fit(log)
    for u in range(60):
        rows = np.flatnonzero(log.users == u)
        latest = {}
        for r in rows:
            latest[log.items[r]] = max(latest.get(log.items[r], -(2**62)), log.timestamps[r])
        order = sorted(latest, key=lambda i: (latest[i], i))[-length:]
        got = model.user_histories_[u]
        assert got[got >= 0].tolist() == order
        # encode_history of the full chronological list uses its last L items
        if len(latest) > length:
            full = sorted(latest, key=lambda i: (latest[i], i))
            np.testing.assert_allclose(
                model.encode_history([full])[0], model.user_factors_[u], atol=1e-6
            )
            assert np.abs(model.encode_history([full[:length]])[0] - model.user_factors_[u]).max()


# --------------------------------------------------------------------------- quality
def _pseudo_overlap(model, train, lists, users):
    """Mean |top10(pseudo) ∩ top10(user)| / 10 over users; the pseudo list skips the user's
    training items."""
    real, _ = model.recommend(users, 10)
    pseudo, _ = model.recommend_history(lists, k=10 + 12)
    out = []
    for row, u in enumerate(users):
        fresh = [i for i in pseudo[row] if i not in set(train[u].indices)][:10]
        out.append(len(set(fresh) & set(real[row])) / 10)
    return float(np.mean(out))


def test_pseudo_user_recommendations_overlap_the_real_user(hist_model, hist_id_model, planted):
    train, _ = planted
    rng = np.random.default_rng(0)
    users = np.arange(0, 240, 3)
    halves = [rng.permutation(train[u].indices)[:6] for u in users]
    full = [train[u].indices for u in users]
    other = [train[(u + 1) % 240].indices for u in users]  # a user from another block
    ids, _ = hist_model.recommend_history(halves, k=10)
    assert not any(set(ids[r]) & set(halves[r]) for r in range(len(users)))  # given excluded
    # no user-ID input: half of the history already recovers much of the user's list
    rand = _pseudo_overlap(hist_model, train, other, users)
    assert rand < 0.15
    assert _pseudo_overlap(hist_model, train, halves, users) > max(0.35, 4 * rand)
    assert _pseudo_overlap(hist_model, train, full, users) > 0.99  # the same input
    # with a user-ID input the pseudo-user (zero ID vector) is weaker but far above random
    rand = _pseudo_overlap(hist_id_model, train, other, users)
    assert rand < 0.15
    assert _pseudo_overlap(hist_id_model, train, full, users) > max(0.3, 3 * rand)


@pytest.mark.parametrize(
    "kw",
    [
        {"tower": "mlp"},
        {"user_tower": "history"},
        {"user_tower": "history", "history_pool": "mean_max", "history_user_id": True},
        {"tower": "mlp", "user_tower": "history", "loss": "ssm", "ssm_negatives": 32},
    ],
)
def test_towers_beat_random_on_planted_data(kw, planted):
    train, test = planted
    model = TwoTowerRecommender(**{**KW, **kw}).fit(train)
    hr_random = hr_at_10(RandomRecommender(seed=0).fit(train), train, test)
    hr = hr_at_10(model, train, test)
    assert hr_random < 0.2
    assert hr > 0.7 and hr > hr_random + 0.5, hr


def test_mfb_history_tower_beats_random(planted):
    train, test = planted
    model = create("model", "mfb", {"user_tower": "history", **KW}).fit(train)
    assert model.get_params()["user_tower"] == "history"
    assert hr_at_10(model, train, test) > 0.7


# --------------------------------------------------------------------------- persistence, errors
def test_save_load_round_trip(tmp_path, mlp_model, hist_id_model, planted):
    train, _ = planted
    mfb = create(
        "model",
        "mfb",
        {"tower": "mlp", "user_tower": "history", **KW, "epochs": 1, "history_len": 4},
    ).fit(train)
    lists = [[1, 2, 3], [40, 41], []]
    for name, model in (("mlp", mlp_model), ("hist", hist_id_model), ("mfb", mfb)):
        back = TwoTowerRecommender.load(model.save(tmp_path / name))
        assert type(back) is type(model) and back.get_params() == model.get_params()
        np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
        np.testing.assert_array_equal(back.item_factors_, model.item_factors_)
        np.testing.assert_array_equal(back.recommend([3, 9], 5)[0], model.recommend([3, 9], 5)[0])
        state, back_state = model.towers_.state_dict(), back.towers_.state_dict()
        assert list(back_state) == list(state)
        assert all(torch.equal(back_state[k], state[k]) for k in state)
        if model.user_tower_ == "history":
            np.testing.assert_array_equal(back.user_histories_, model.user_histories_)
            np.testing.assert_array_equal(back.encode_history(lists), model.encode_history(lists))
            back._export()  # recomputing the vectors from the loaded towers changes nothing
            np.testing.assert_allclose(back.user_factors_, model.user_factors_, atol=1e-6)
    assert back.loss == "mfb" and back.tower == "mlp"


def test_invalid_tower_options(planted, hist_model):
    train, _ = planted
    for kw in (
        {"tower": "cnn"},
        {"user_tower": "graph"},
        {"user_tower": "history", "history_len": 0},
        {"user_tower": "history", "history_pool": "sum"},
        {"tower": "mlp", "hidden": (0,)},
    ):
        with pytest.raises(ValueError):
            TwoTowerRecommender(threads=1, **kw).fit(train)
    with pytest.raises(ValueError):
        hist_model.encode_history([[0, 500]])
    with pytest.raises(ValueError):
        hist_model.recommend_history([[0]], k=0)
