"""TotalRecall two-tower: losses by hand, logQ sign, faiss serving, training, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from two_tower_util import hr_at_10, planted_groups

from divrec.registry import create
from divrec.retrieval.ann import AnnIndex, l2_normalize, recall_at_k
from divrec.retrieval.two_tower import (
    TwoTowerRecommender,
    corrected_softmax_ce,
    cosine_scores,
    infonce_loss,
    parse_negatives,
)


def _np_ce_rows(z: np.ndarray) -> float:
    """Mean over rows of −log softmax(z_b)[b] (positives on the diagonal)."""
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(logp)))


# --------------------------------------------------------------------------- scores and losses
def test_cosine_scores_equal_numpy():
    rng = np.random.default_rng(0)
    u, i = rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    tau = 0.2
    got = cosine_scores(torch.tensor(u), torch.tensor(i), tau).numpy()
    want = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) / tau for b in i] for a in u])
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.abs(got).max() <= 1 / tau + 1e-9


S33 = np.array([[2.0, 0.5, -1.0], [0.0, 1.5, 0.3], [1.0, -0.5, 0.7]])
LOG_QI = np.log(np.array([0.5, 0.3, 0.2]))
LOG_QU = np.log(np.array([0.1, 0.6, 0.3]))


def test_bi_infonce_3x3_equals_hand_computation():
    s = torch.tensor(S33)
    # u2i: rows; i2u: columns (rows of the transpose). No correction.
    want_u2i = _np_ce_rows(S33)
    want_i2u = _np_ce_rows(S33.T)
    # hand value of the first u2i row: −log(e^2 / (e^2 + e^0.5 + e^−1))
    row0 = -np.log(np.e**2 / (np.e**2 + np.e**0.5 + np.e**-1))
    assert np.isclose(row0, -(S33[0, 0] - np.log(np.exp(S33[0]).sum())))
    assert np.isclose(infonce_loss(s, direction="u2i").item(), want_u2i)
    assert np.isclose(infonce_loss(s, direction="i2u").item(), want_i2u)
    assert np.isclose(infonce_loss(s, direction="bi").item(), want_u2i + want_i2u)


def test_bi_infonce_3x3_with_logq_equals_hand_computation():
    s = torch.tensor(S33)
    qi, qu = torch.tensor(LOG_QI), torch.tensor(LOG_QU)
    # logits s_ij − log q_j: the column's (candidate's) marginal is subtracted.
    want_u2i = _np_ce_rows(S33 - LOG_QI[None, :])
    want_i2u = _np_ce_rows(S33.T - LOG_QU[None, :])
    got_u2i = infonce_loss(s, log_q_items=qi, log_q_users=qu, direction="u2i").item()
    got_i2u = infonce_loss(s, log_q_items=qi, log_q_users=qu, direction="i2u").item()
    got_bi = infonce_loss(s, log_q_items=qi, log_q_users=qu, direction="bi").item()
    assert np.isclose(got_u2i, want_u2i)
    assert np.isclose(got_i2u, want_i2u)
    assert np.isclose(got_bi, want_u2i + want_i2u)
    # a row by hand: user 1, positive item 1
    z = [0.0 - LOG_QI[0], 1.5 - LOG_QI[1], 0.3 - LOG_QI[2]]
    row1 = -(z[1] - np.log(np.exp(z).sum()))
    per_row = infonce_loss(s[1:2, :], log_q_items=qi, direction="u2i")  # one row, target 0
    assert not np.isclose(per_row.item(), row1)  # target column 0 there, not 1
    z1 = torch.tensor(S33[1:2]) - qi
    assert np.isclose(torch.nn.functional.cross_entropy(z1, torch.tensor([1])).item(), row1)
    assert not np.isclose(got_u2i, _np_ce_rows(S33 + LOG_QI[None, :]))  # sign matters


def test_accidental_hits_are_masked():
    s = torch.tensor(S33)
    ids = torch.tensor([7, 7, 9])  # rows 0 and 1 share the positive item
    got = infonce_loss(s, direction="u2i", item_ids=ids).item()
    z = S33.copy()
    z[0, 1] = z[1, 0] = -np.inf
    assert np.isclose(got, _np_ce_rows(z))


def test_logq_correction_recovers_full_softmax_gradient():
    """Negatives sampled from a skewed q: with logits s_j − log q_j the sampled-softmax
    gradient w.r.t. the item scores equals the full-softmax gradient (Monte Carlo, many
    samples); with the wrong sign or no correction it does not."""
    rng = np.random.default_rng(0)
    n_items, pos, n_samples = 6, 2, 400_000
    s_np = np.array([1.0, -0.5, 0.3, 0.8, -1.0, 0.1])
    q = np.array([0.5, 0.25, 0.12, 0.08, 0.03, 0.02])
    cols = np.r_[pos, rng.choice(n_items, size=n_samples, p=q)]
    full = np.exp(s_np) / np.exp(s_np).sum()
    full[pos] -= 1.0  # d(−log softmax(s)[pos]) / ds

    def grad(sign):
        s = torch.tensor(s_np, requires_grad=True)
        log_q = None if sign == 0 else sign * torch.tensor(np.log(q[cols]))
        loss = corrected_softmax_ce(s[cols][None, :], log_q, torch.tensor([0]))
        loss.backward()
        return s.grad.numpy()

    np.testing.assert_allclose(grad(+1), full, atol=0.01)
    assert np.abs(grad(-1) - full).max() > 0.1  # logits s + log q: popular items boosted
    assert np.abs(grad(0) - full).max() > 0.1  # no correction


def test_logq_penalizes_popular_items():
    # equal raw scores: after correction the popular candidate gets the lowest probability
    s = torch.zeros(1, 3)
    log_q = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    losses = [corrected_softmax_ce(s, log_q, torch.tensor([t])).item() for t in range(3)]
    assert losses[0] > losses[1] > losses[2]  # hardest to be the popular positive


def test_parse_negatives():
    assert parse_negatives("[0:8]") == ("split", 0, 8)
    assert parse_negatives("[8:0]") == ("split", 8, 0)
    assert parse_negatives("4:4") == ("split", 4, 4)
    assert parse_negatives("[8]") == ("joint", 8, 0)
    for bad in ("[0:0]", "[x]", "[1:2:3]", "[0]"):
        with pytest.raises(ValueError):
            parse_negatives(bad)


# --------------------------------------------------------------------------- faiss serving
def test_flat_index_equals_bruteforce():
    rng = np.random.default_rng(1)
    base, queries = rng.normal(size=(300, 16)), rng.normal(size=(20, 16))
    ids, scores = AnnIndex("flat").fit(base).search(queries, 7)
    sims = l2_normalize(queries) @ l2_normalize(base).T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, want, axis=1), atol=1e-5)
    ids, scores = AnnIndex("flat").fit(base[:3]).search(queries, 5)  # k > N: padded
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


def test_hnsw_recall_vs_exact():
    rng = np.random.default_rng(2)
    base, queries = rng.normal(size=(3000, 32)), rng.normal(size=(100, 32))
    exact, _ = AnnIndex("flat").fit(base).search(queries, 10)
    approx, _ = AnnIndex("hnsw", m=16, ef_search=64).fit(base).search(queries, 10)
    assert recall_at_k(approx, exact) >= 0.9
    assert recall_at_k(exact, exact) == 1.0


@pytest.fixture(scope="module")
def fitted():
    train, test = planted_groups()
    model = TwoTowerRecommender(dim=16, tau=0.2, batch_size=64, epochs=15, lr=0.02, threads=1)
    return model.fit(train), train, test


def test_training_beats_random_on_planted_structure(fitted):
    from divrec.retrieval.baselines import RandomRecommender

    model, train, test = fitted
    hr_random = hr_at_10(RandomRecommender(seed=0).fit(train), train, test)
    hr_tr = hr_at_10(model, train, test)
    assert hr_random < 0.2  # about 10 / 108
    assert hr_tr > 0.6 and hr_tr > hr_random + 0.4


def test_mfb_variants_beat_random_and_count_examples():
    train, test = planted_groups()
    kw = {"dim": 16, "batch_size": 64, "epochs": 15, "lr": 0.02, "threads": 1}
    model = create("model", "mfb", {"negatives": "[0:8]", **kw})
    model.fit(train)
    assert hr_at_10(model, train, test) > 0.5
    assert model.examples_seen_ == 9 * train.nnz * 15  # positives + 8 negatives each
    for spec in ("[8:0]", "[4:4]", "[8:8]", "[8]"):
        kw = {"negatives": spec, "dim": 8, "batch_size": 256, "epochs": 1, "threads": 1}
        m = create("model", "mfb", kw).fit(train)
        per = 1 + sum(parse_negatives(spec)[1:])
        assert m.examples_seen_ == per * train.nnz
        assert np.isfinite(m.user_factors_).all()


def test_group_aggregation_equals_bruteforce(fitted):
    model, train, _ = fitted
    group = np.array([3, 17, 40, 41])
    phi = np.array(
        [
            [model.user_factors_[u] @ model.item_factors_[i] / model.tau for i in group]
            for u in range(train.shape[0])
        ]
    )
    p = np.exp(phi)
    seen = np.array([train[u, group].sum() > 0 for u in range(train.shape[0])])
    for agg, fn in (("mean", np.mean), ("max", np.max), ("sum", np.sum)):
        vals = np.where(seen, -np.inf, fn(p, axis=1))
        want = sorted(range(len(vals)), key=lambda u: (-vals[u], u))[:10]
        ids, scores = model.potential_users_of_group(group, k=10, aggregation=agg)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_allclose(scores, vals[want], rtol=1e-4)
        assert not seen[ids].any()
    with pytest.raises(ValueError):
        model.potential_users_of_group(group, aggregation="median")


def test_u2i_and_i2u_topk_equal_bruteforce(fitted):
    model, train, _ = fitted
    users = np.arange(0, 240, 7)
    ids, _ = model.retrieve_items(users, k=10)
    want, _ = model.recommend(users, 10)  # exact numpy scoring with the seen items dropped
    np.testing.assert_array_equal(ids, want)
    items = np.array([0, 5, 60, 119])
    uids, uscores = model.potential_users(items, k=8)
    phi = model.user_factors_ @ model.item_factors_[items].T / model.tau
    for col, i in enumerate(items):
        col_scores = np.where(train[:, i].toarray().ravel() > 0, -np.inf, phi[:, col])
        order = np.argsort(-col_scores, kind="stable")[:8]
        np.testing.assert_allclose(uscores[col], col_scores[order], atol=1e-4)
        assert set(uids[col]) == set(order)
    hnsw = model.build_index("user", kind="hnsw", m=16, ef_search=200)
    approx, _ = model.potential_users(items, k=8, index=hnsw)
    assert recall_at_k(approx, uids) >= 0.9


# --------------------------------------------------------------------------- determinism, io
def test_seeded_determinism():
    train, _ = planted_groups(n_users=60, n_items=30, n_groups=3, per_user=6)
    kw = {"dim": 8, "batch_size": 32, "epochs": 3, "threads": 1, "seed": 5}
    a = TwoTowerRecommender(**kw).fit(train)
    b = TwoTowerRecommender(**kw).fit(train)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    c = TwoTowerRecommender(**{**kw, "seed": 6}).fit(train)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    mfb_kw = {"dim": 8, "batch_size": 32, "epochs": 2, "threads": 1, "seed": 1}
    m1 = create("model", "mfb", mfb_kw).fit(train)
    m2 = create("model", "mfb", mfb_kw).fit(train)
    np.testing.assert_array_equal(m1.user_factors_, m2.user_factors_)


def test_examples_counter_and_callback():
    train, _ = planted_groups(n_users=60, n_items=30, n_groups=3, per_user=6)
    seen = []
    model = TwoTowerRecommender(dim=8, batch_size=50, epochs=2, threads=1, progress=True)
    model.fit(
        train, callback=lambda m: seen.append(m.examples_seen_) or len(seen), callback_every=100
    )
    assert model.examples_seen_ == 2 * train.nnz
    assert model.steps_ == 2 * int(np.ceil(train.nnz / 50))  # a short batch ends each epoch
    assert seen[-1] == model.examples_seen_ and seen == sorted(seen)
    assert [h[0] for h in model.history_] == seen


def test_save_load_round_trip(tmp_path, fitted):
    model, train, _ = fitted
    path = model.save(tmp_path / "tr.npz")
    back = TwoTowerRecommender.load(path)
    assert type(back) is TwoTowerRecommender and back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.score_all([0, 1]), model.score_all([0, 1]))
    np.testing.assert_array_equal(back.recommend([3], 5)[0], model.recommend([3], 5)[0])
    assert back.examples_seen_ == model.examples_seen_
    mfb = create("model", "mfb", {"dim": 8, "batch_size": 256, "epochs": 1, "threads": 1}).fit(
        train
    )
    back = TwoTowerRecommender.load(mfb.save(tmp_path / "mfb.npz"))
    assert type(back) is TwoTowerRecommender and back.config == mfb.config
    assert back.loss == "mfb" and back.tau == 0.125
    np.testing.assert_array_equal(back.item_factors_, mfb.item_factors_)


def test_invalid_hyperparameters():
    train, _ = planted_groups(n_users=30, n_items=30, n_groups=3, per_user=4)
    with pytest.raises(ValueError):
        TwoTowerRecommender(loss="softmax", threads=1).fit(train)
    with pytest.raises(ValueError):
        TwoTowerRecommender(tau=0, threads=1).fit(train)
    with pytest.raises(ValueError):
        infonce_loss(torch.zeros(2, 2), direction="both")


def test_linear_lr_schedule_trains_and_validates():
    train, test = planted_groups()
    kw = {"dim": 16, "tau": 0.2, "batch_size": 64, "epochs": 10, "lr": 0.02, "threads": 1}
    model = TwoTowerRecommender(lr_schedule="linear", **kw).fit(train)
    assert hr_at_10(model, train, test) > 0.5
    with pytest.raises(ValueError):
        TwoTowerRecommender(lr_schedule="cosine", threads=1).fit(train)


def test_examples_to_reach_95pct_of_best():
    from divrec.evaluation import examples_to_reach

    curve = [(10, 0.2), (20, 0.5), (30, 0.76), (40, 0.8), (50, 0.79)]
    assert examples_to_reach(curve) == 30  # first point >= 0.95 * 0.8 = 0.76
    assert examples_to_reach(curve, fraction=1.0) == 40


# --------------------------------------------------------------------------- sampled softmax
def _np_ssm(u, pos, neg, tau, log_q_pos=None, log_q_neg=None, pos_ids=None, neg_ids=None):
    """Brute-force Eq. 1 / Eq. 9: per row, −log softmax over [positive, negatives]."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    losses = []
    for b in range(u.shape[0]):
        z = [unit(u[b]) @ unit(pos[b]) / tau] + [unit(u[b]) @ unit(n) / tau for n in neg]
        z = np.array(z)
        if log_q_pos is not None:
            z = z - np.r_[log_q_pos[b], log_q_neg]
        if pos_ids is not None:
            z[1:][neg_ids == pos_ids[b]] = -np.inf
        losses.append(-(z[0] - np.log(np.exp(z).sum())))
    return float(np.mean(losses))


def test_sampled_softmax_loss_equals_bruteforce():
    from divrec.retrieval.two_tower import sampled_softmax_loss

    rng = np.random.default_rng(3)
    u, pos, neg = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    tau = 0.3
    lq_pos, lq_neg = np.log([0.2, 0.05, 0.1]), np.log([0.3, 0.02, 0.2, 0.05, 0.1])
    pos_ids, neg_ids = np.array([7, 2, 4]), np.array([1, 2, 9, 7, 3])  # rows 0, 1 have a hit
    t = torch.tensor
    got_plain = sampled_softmax_loss(t(u), t(pos), t(neg), tau).item()
    assert np.isclose(got_plain, _np_ssm(u, pos, neg, tau))
    got = sampled_softmax_loss(
        t(u), t(pos), t(neg), tau, t(lq_pos), t(lq_neg), t(pos_ids), t(neg_ids)
    ).item()
    want = _np_ssm(u, pos, neg, tau, lq_pos, lq_neg, pos_ids, neg_ids)
    assert np.isclose(got, want)
    assert not np.isclose(got, _np_ssm(u, pos, neg, tau, lq_pos, lq_neg))  # masking matters
    assert not np.isclose(got, _np_ssm(u, pos, neg, tau, -lq_pos, -lq_neg, pos_ids, neg_ids))
    # by hand: orthonormal vectors, τ = 1: positive cos 1, negatives cos 0 → −log(e / (e + 2))
    e = np.eye(3)
    hand = sampled_softmax_loss(t(e[:1]), t(e[:1]), t(e[1:]), 1.0).item()
    assert np.isclose(hand, -np.log(np.e / (np.e + 2)))
    # uniform q is a constant shift: no effect on the loss
    flat = np.full(5, np.log(0.1))
    got_flat = sampled_softmax_loss(
        t(u), t(pos), t(neg), tau, t(np.full(3, np.log(0.1))), t(flat)
    ).item()
    assert np.isclose(got_flat, got_plain)
    with pytest.raises(ValueError):
        sampled_softmax_loss(t(u), t(pos), t(neg), tau, log_q_pos=t(lq_pos))


def test_ssm_sampling_probabilities():
    from divrec.retrieval.two_tower import ssm_sampling_probabilities

    counts = np.array([6, 0, 3, 1])
    np.testing.assert_allclose(ssm_sampling_probabilities(counts, "uniform"), [0.25] * 4)
    np.testing.assert_allclose(ssm_sampling_probabilities(counts, "popularity"), [0.6, 0, 0.3, 0.1])
    with pytest.raises(ValueError):
        ssm_sampling_probabilities(counts, "zipf")


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_ssm_training_beats_random(sampling):
    train, test = planted_groups()
    kw = {"dim": 16, "tau": 0.2, "batch_size": 64, "epochs": 10, "lr": 0.02, "threads": 1}
    model = TwoTowerRecommender(loss="ssm", ssm_negatives=32, ssm_sampling=sampling, **kw)
    model.fit(train)
    assert model.examples_seen_ == 10 * train.nnz
    assert hr_at_10(model, train, test) > 0.5  # random: about 0.09
    again = TwoTowerRecommender(loss="ssm", ssm_negatives=32, ssm_sampling=sampling, **kw)
    np.testing.assert_array_equal(again.fit(train).item_factors_, model.item_factors_)
    with pytest.raises(ValueError):
        TwoTowerRecommender(loss="ssm", ssm_sampling="zipf", threads=1).fit(train)
    with pytest.raises(ValueError):
        TwoTowerRecommender(loss="ssm", ssm_negatives=0, threads=1).fit(train)


def test_ssm_popularity_draws_follow_q(monkeypatch):
    """The negatives handed to the loss are distributed as the item marginal, and the logQ
    passed with them is log of that marginal."""
    from divrec.retrieval.two_tower import model as two_tower

    train = sp.csr_matrix(
        (np.ones(6, np.float32), ([0, 1, 2, 3, 0, 1], [0, 0, 0, 1, 1, 2])), shape=(4, 4)
    )
    drawn, log_qs = [], []
    real = two_tower.sampled_softmax_loss

    def spy(*args, **kwargs):
        drawn.append(kwargs["neg_ids"].numpy().copy())
        log_qs.append(kwargs["log_q_neg"].numpy().copy())
        return real(*args, **kwargs)

    monkeypatch.setattr(two_tower, "sampled_softmax_loss", spy)
    TwoTowerRecommender(
        loss="ssm",
        ssm_negatives=500,
        ssm_sampling="popularity",
        dim=4,
        batch_size=6,
        epochs=40,
        threads=1,
    ).fit(train)
    neg = np.concatenate(drawn)
    freq = np.bincount(neg, minlength=4) / neg.size
    np.testing.assert_allclose(freq, [0.5, 1 / 3, 1 / 6, 0.0], atol=0.01)  # item 3 unseen
    np.testing.assert_allclose(
        np.concatenate(log_qs), np.log(np.array([3, 2, 1, 1e-300]) / 6)[neg], rtol=1e-5
    )


# --------------------------------------------------------------------------- Sec. 3.6 batch path
def test_merge_top_users_by_hand():
    from divrec.retrieval.two_tower import merge_top_users

    items = np.array([0, 0, 0, 2, 0, 2])
    users = np.array([5, 3, 9, 1, 4, 0])
    scores = np.array([0.5, 0.9, 0.5, 0.1, -np.inf, 0.3])
    ids, vals = merge_top_users(items, users, scores, n_items=3, m=2)
    np.testing.assert_array_equal(ids, [[3, 5], [-1, -1], [0, 1]])  # tie 0.5: user 5 < 9
    np.testing.assert_allclose(vals, [[0.9, 0.5], [-np.inf, -np.inf], [0.3, 0.1]])


def _bruteforce_batch(model, train, k, m):
    phi = model.user_factors_ @ model.item_factors_.T / np.float32(model.tau)
    phi = np.where(train.toarray() > 0, -np.inf, phi)
    per_item = {i: [] for i in range(train.shape[1])}
    for u in range(train.shape[0]):
        for i in sorted(range(train.shape[1]), key=lambda j: (-phi[u, j], j))[:k]:
            per_item[i].append((-phi[u, i], u))
    return {i: [u for _, u in sorted(v)[:m]] for i, v in per_item.items()}


def test_batch_potential_users_equals_bruteforce(fitted):
    from divrec.retrieval.two_tower import batch_potential_users

    model, train, _ = fitted
    want = _bruteforce_batch(model, train, k=10, m=6)
    ids, scores = batch_potential_users(model, items_per_user=10, users_per_item=6, user_chunk=37)
    assert ids.shape == (train.shape[1], 6)
    for i in range(train.shape[1]):
        got = ids[i][ids[i] >= 0].tolist()
        assert got == want[i], i
        phi = model.user_factors_[got] @ model.item_factors_[i] / model.tau
        np.testing.assert_allclose(scores[i, : len(got)], phi, atol=1e-4)
        assert np.isneginf(scores[i, len(got) :]).all()
        assert not any(train[u, i] for u in got)  # a user's seen items never reach it
    # chunking does not change the result; each user reaches at most 10 items
    one, _ = batch_potential_users(model, 10, 6, user_chunk=10_000)
    np.testing.assert_array_equal(one, ids)
    big, _ = batch_potential_users(model, 10, 500, user_chunk=50)
    assert np.bincount(big[big >= 0], minlength=train.shape[0]).max() <= 10
    assert (big >= 0).sum() == 10 * train.shape[0]
    with pytest.raises(ValueError):
        batch_potential_users(model, 0, 5)


def test_group_candidates_equal_bruteforce(fitted):
    model, train, _ = fitted
    group = np.array([3, 17, 40, 41, 90])
    n_cand = 15
    phi = model.user_factors_ @ model.item_factors_[group].T / np.float32(model.tau)
    p = np.exp(phi.astype(np.float64))
    seen = np.asarray(train[:, group].sum(axis=1)).ravel() > 0
    eligible = np.flatnonzero(~seen)
    scores_of = {}
    for col in range(group.size):
        cands = sorted(eligible, key=lambda u: (-phi[u, col], u))[:n_cand]
        for u in cands:
            scores_of.setdefault(u, []).append(p[u, col])
    lists = {}
    for agg, fn in (("mean", np.mean), ("max", np.max), ("sum", np.sum)):
        vals = {u: fn(v) for u, v in scores_of.items()}
        want = sorted(vals, key=lambda u: (-vals[u], u))[:10]
        ids, got = model.potential_users_of_group(
            group, k=10, aggregation=agg, candidates_per_item=n_cand
        )
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_allclose(got, [vals[u] for u in want], rtol=1e-4)
        lists[agg] = ids.tolist()
    assert lists["sum"] != lists["mean"]  # unlike the all-users mode, sum ≠ G · mean
    all_mean, _ = model.potential_users_of_group(group, k=10, aggregation="mean")
    all_sum, _ = model.potential_users_of_group(group, k=10, aggregation="sum")
    np.testing.assert_array_equal(all_mean, all_sum)
    with pytest.raises(ValueError):
        model.potential_users_of_group(group, candidates_per_item=0)


@pytest.mark.parametrize("n_cand", [None, 12])
def test_group_item_scope_equals_bruteforce(fitted, n_cand):
    """seen_scope="item": a user is aggregated over the group items new to them (only their
    own training pairs are dropped), optionally within each item's top-N candidates."""
    model, train, _ = fitted
    group = np.array([3, 17, 40, 41, 90])
    phi = model.user_factors_ @ model.item_factors_[group].T / np.float32(model.tau)
    p = np.exp(phi.astype(np.float64))
    seen = train[:, group].toarray() > 0
    assert seen.any(axis=1).sum() > 0 and (~seen).any(axis=1).all()
    usable = ~seen
    if n_cand is not None:
        usable = np.zeros_like(seen)
        for col in range(group.size):
            ok = np.flatnonzero(~seen[:, col])
            top = sorted(ok, key=lambda u: (-phi[u, col], u))[:n_cand]
            usable[top, col] = True
    for agg, fn in (("mean", np.mean), ("max", np.max), ("sum", np.sum)):
        vals = {u: fn(p[u, usable[u]]) for u in range(train.shape[0]) if usable[u].any()}
        want = sorted(vals, key=lambda u: (-vals[u], u))[:10]
        ids, got = model.potential_users_of_group(
            group, k=10, aggregation=agg, candidates_per_item=n_cand, seen_scope="item"
        )
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_allclose(got, [vals[u] for u in want], rtol=1e-4)
    group_ids, _ = model.potential_users_of_group(group, k=10, seen_scope="group")
    assert not seen[group_ids].any()
    with pytest.raises(ValueError):
        model.potential_users_of_group(group, seen_scope="user")


# --------------------------------------------------------------------------- config, presets
def test_mfb_preset_has_the_old_subclass_defaults():
    from divrec.retrieval.two_tower import TwoTowerConfig

    mfb = create("model", "mfb")
    assert type(mfb) is TwoTowerRecommender
    want = TwoTowerConfig(loss="mfb", tau=0.125, batch_size=4096, epochs=20.0)
    assert mfb.config == want
    assert (want.negatives, want.dim, want.lr, want.threads) == ("[0:8]", 64, 0.005, None)
    assert create("model", "mfb", {"negatives": "[8:0]"}).negatives == "[8:0]"


def test_config_is_checked_at_construction_and_read_only():
    with pytest.raises(TypeError):
        TwoTowerRecommender("bi")  # keyword-only
    for bad in (
        {"loss": "softmax"},
        {"tau": 0.0},
        {"negatives": "[0:0]"},
        {"hidden": (0,)},
        {"ssm_negatives": 0},
        {"device": "cuda"},
        {"patience": 2},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TwoTowerRecommender(**bad)
    model = TwoTowerRecommender(dim=8)
    with pytest.raises(AttributeError):
        model.dim = 4
    assert model.with_params(dim=4).dim == 4 and model.dim == 8


def test_fit_keeps_global_state_and_records_epoch_losses():
    from divrec.testing import check_fit_keeps_global_state

    train, _ = planted_groups(n_users=60, n_items=30, n_groups=3, per_user=6)
    kw = {"dim": 8, "batch_size": 50, "epochs": 2.5, "seed": 3}
    for loss in ("bi", "ssm", "mfb"):
        m = check_fit_keeps_global_state(lambda x=loss: TwoTowerRecommender(loss=x, **kw), train)
        assert len(m.train_loss_) == 3 and np.isfinite(m.train_loss_).all()  # 2 full + half


def test_both_optimizers_learn_and_sparse_adam_leaves_unseen_rows_at_init():
    train, test = planted_groups()
    kw = {"dim": 16, "tau": 0.2, "batch_size": 64, "epochs": 15, "lr": 0.02, "threads": 1}
    dense = TwoTowerRecommender(optimizer="adam", **kw).fit(train)
    assert hr_at_10(dense, train, test) > 0.6
    # an item no user has (an all-zero column) is never looked up: lazy Adam never moves it
    n_users, n_items = train.shape
    wide = sp.hstack([train, sp.csr_matrix((n_users, 1), dtype=np.float32)]).tocsr()
    sparse = TwoTowerRecommender(optimizer="sparse_adam", **kw).fit(wide)
    assert hr_at_10(sparse, wide, test) > 0.6
    init = TwoTowerRecommender(**kw)._make_towers(
        n_users, n_items + 1, 0.1, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(
        sparse.towers_.item.weight[n_items], init.item.weight[n_items], rtol=0, atol=0
    )
    assert not torch.equal(sparse.towers_.item.weight[0], init.item.weight[0])


def test_sparse_adam_refuses_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        TwoTowerRecommender(weight_decay=0.01, optimizer="sparse_adam", threads=1)
    assert TwoTowerRecommender(weight_decay=0.01, threads=1).optimizer == "adam"  # default
