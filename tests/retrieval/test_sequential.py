"""Sequential retrieval: extractors vs numpy, interests on topics, faiss serving, ComiRec split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import divrec
from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.evaluation.sequential import evaluate_sequences, sequence_metrics
from divrec.registry import create
from divrec.retrieval.sequential import (
    SequentialRecommender,
    controllable_aggregation,
    dynamic_routing,
    last_items,
    self_attentive,
)
from divrec.splitting.comirec import (
    comirec_split,
    kl_divergence,
    next_n_examples,
    next_n_target_marginal,
)


# --------------------------------------------------------------------------- numpy references
def _np_squash(z):
    n2 = (z * z).sum(-1, keepdims=True)
    return n2 / (1 + n2) * z / np.sqrt(n2 + 1e-9)


def _np_routing(e_hat, mask, iters):
    """Loop-by-loop dynamic routing of one batch row: e_hat (K, L, D), mask (L,)."""
    k, n, d = e_hat.shape
    b = np.zeros((k, n))
    for it in range(iters):
        c = np.exp(b) / np.exp(b).sum(0, keepdims=True)
        v = np.zeros((k, d))
        for i in range(k):
            z = sum(c[i, j] * e_hat[i, j] for j in range(n) if mask[j])
            v[i] = _np_squash(np.asarray(z))
        if it < iters - 1:
            for i in range(k):
                for j in range(n):
                    b[i, j] += v[i] @ e_hat[i, j]
    return v


def test_dynamic_routing_equals_numpy_reference():
    rng = np.random.default_rng(0)
    e_hat = rng.normal(size=(2, 3, 4, 5))
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    got = dynamic_routing(torch.tensor(e_hat), torch.tensor(mask), iters=3).numpy()
    for r in range(2):
        np.testing.assert_allclose(got[r], _np_routing(e_hat[r], mask[r], 3), rtol=1e-8)
    # squash keeps norms below 1
    assert np.all(np.linalg.norm(got, axis=-1) < 1)


def test_self_attentive_equals_numpy_reference():
    rng = np.random.default_rng(1)
    b, n, d, da, k = 2, 4, 3, 6, 2
    h = rng.normal(size=(b, n, d))
    pos = rng.normal(size=(n, d))
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    w1 = torch.nn.Linear(d, da).double()
    w2 = torch.nn.Linear(da, k).double()
    v, att = self_attentive(torch.tensor(h), torch.tensor(h + pos), torch.tensor(mask), w1, w2)
    W1, b1 = w1.weight.detach().numpy(), w1.bias.detach().numpy()
    W2, b2 = w2.weight.detach().numpy(), w2.bias.detach().numpy()
    for r in range(b):
        logits = W2 @ np.tanh(W1 @ (h[r] + pos).T + b1[:, None]) + b2[:, None]  # (K, L)
        logits[:, ~mask[r]] = -np.inf
        a = np.exp(logits - logits.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        np.testing.assert_allclose(att[r].detach().numpy(), a, rtol=1e-10)
        np.testing.assert_allclose(v[r].detach().numpy(), a @ h[r], rtol=1e-10)


def test_last_items_keeps_latest_left_aligned():
    h = np.array([[5, 6, 7, 8], [1, -1, -1, -1], [-1, 2, -1, 3]])
    np.testing.assert_array_equal(last_items(h, 2), [[7, 8], [1, -1], [2, 3]])
    np.testing.assert_array_equal(last_items(h, 5)[0], [5, 6, 7, 8, -1])


# --------------------------------------------------------------------------- synthetic data
def _topic_log(n_users=300, n_items=40, length=12, seed=0) -> Interactions:
    """Items 0..19 are topic A, 20..39 topic B; a third of the users mix both topics."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    users, items, ts = [], [], []
    for u in range(n_users):
        kind = u % 3
        for t in range(length):
            topic = kind if kind < 2 else rng.integers(2)
            items.append(rng.integers(0, half) + topic * half)
            users.append(u)
            ts.append(t)
    data = Interactions.from_arrays(
        np.asarray(users), np.asarray(items), timestamps=np.asarray(ts), dedupe=None
    )
    cats = sp.csr_matrix(
        (np.ones(n_items), (np.arange(n_items), np.arange(n_items) // half)), shape=(n_items, 2)
    )
    return data.with_item_side_info(cats, ("A", "B"))


@pytest.fixture(scope="module")
def topic_sa():
    torch.manual_seed(0)
    params = {"n_interests": 2, "dim": 16, "max_len": 10, "epochs": 5, "batch_size": 64}
    model = create("model", "comirec-sa", {**params, "lr": 0.01, "ssm_negatives": 20, "seed": 0})
    return model.fit(_topic_log())


def test_comirec_sa_interests_point_at_the_two_topics(topic_sa):
    hist = np.array([[0, 21, 3, 25, 7, 30, 11, 35]])  # alternating topics A and B
    v = topic_sa.encode(hist)[0]  # (2, D)
    scores = v @ topic_sa.item_vectors_.T  # (2, 40)
    top = np.argsort(-scores, axis=1)[:, :10]
    topic_of_top = top // 20
    # each interest's top-10 is (almost) one topic, and the two interests differ
    purity = np.maximum((topic_of_top == 0).mean(1), (topic_of_top == 1).mean(1))
    assert np.all(purity >= 0.9), topic_of_top
    majority = (topic_of_top.mean(1) > 0.5).astype(int)
    assert set(majority.tolist()) == {0, 1}
    # a single-topic history gets every list item from its topic
    ids = topic_sa(Query(users=[-1], history=[[0, 4, 8, 12]], exclude_seen=False), k=10).ids
    assert np.all(ids < 20)


def test_faiss_retrieval_equals_dense_top_k_with_exclusions(topic_sa):
    hist = np.array([[0, 21, 3, 25], [5, 6, 7, -1]])
    q = Query(users=[-1, -1], history=hist, exclude_seen=True, exclude=[[1], [22]])
    got = topic_sa(q, k=8)
    dense = topic_sa.score_query(q).astype(np.float64)
    for r, excl in enumerate([[0, 21, 3, 25, 1], [5, 6, 7, 22]]):
        dense[r, excl] = -np.inf
    want = np.argsort(-dense, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(np.sort(got.ids, 1), np.sort(want, 1))
    np.testing.assert_allclose(got.scores, np.take_along_axis(dense, got.ids, 1), rtol=1e-5)


def test_controllable_aggregation_matches_brute_force_greedy():
    ids = np.array([[10, 11, 12, 13, 14]])
    scores = np.array([[5.0, 4.9, 4.0, 3.0, -np.inf]])
    cats = np.zeros(20, dtype=np.int64)
    cats[[12, 13]] = 1
    # λ = 0: plain ranking
    np.testing.assert_array_equal(
        controllable_aggregation(ids, scores, cats, 3, 0.0).ids, [[10, 11, 12]]
    )
    # λ = 2: after 10 (cat 0), 12 gains 4.0 + 2 = 6 > 4.9; then 11: 4.9 + 2 vs 13: 3.0 + 2·1
    np.testing.assert_array_equal(
        controllable_aggregation(ids, scores, cats, 3, 2.0).ids, [[10, 12, 11]]
    )
    # never picks −inf candidates
    out = controllable_aggregation(ids, scores, cats, 5, 1.0)
    assert out.ids[0, -1] == -1


def test_all_variants_train_and_round_trip(tmp_path):
    data = _topic_log(n_users=60)
    for name, params in [
        ("youtube", {}),
        ("youtube", {"l2_norm": True}),
        ("tr-youtube", {"loss": "u2i"}),
        ("tr-youtube", {"next_n": 3}),
        ("comirec-dr", {"n_interests": 2}),
        ("comirec-sa", {"n_interests": 2, "diversity_lambda": 0.5}),
    ]:
        m = create("model", name, {"dim": 8, "epochs": 1, "ssm_negatives": 10, **params}).fit(data)
        assert m.examples_seen_ > 0 and np.isfinite(m.item_vectors_).all()
        back = divrec.load(m.save(tmp_path / f"{name}.npz"))
        q = Query(users=[-1, 3], history=[[1, 2, 25], [30, 31, -1]], exclude_seen=False)
        np.testing.assert_array_equal(back(q, k=5).ids, m(q, k=5).ids)
        np.testing.assert_allclose(back.score_query(q), m.score_query(q), rtol=1e-6)
    with pytest.raises(ValueError, match="encoder"):
        SequentialRecommender(encoder="rnn").fit(data)


def test_bi_infonce_next_n_learns_better_than_popularity():
    data = _topic_log(n_users=300, seed=1)
    split = comirec_split(data, seed=0)
    pop = create("model", "popularity").fit(split.train)
    tr = create("model", "tr-youtube", {"dim": 16, "epochs": 10, "lr": 0.01}).fit(split.train)
    r_pop = evaluate_sequences(pop, split, ns=(10,))
    r_tr = evaluate_sequences(tr, split, ns=(10,))
    assert r_tr["recall@10"] > r_pop["recall@10"] + 0.1


# --------------------------------------------------------------------------- protocol
def test_comirec_split_partitions_users_and_cuts_at_80_percent():
    data = _topic_log(n_users=50, length=10)
    s = comirec_split(data, seed=3)
    parts = [s.valid_users, s.test_users, np.unique(s.train.users)]
    assert sum(p.size for p in parts) == 50
    assert np.unique(np.concatenate(parts)).size == 50
    assert s.valid_users.size == 5 and s.test_users.size == 5
    order = np.lexsort((data.timestamps, data.users))
    for u, h, t in zip(s.test_users, s.test_history, s.test_targets, strict=True):
        seq = data.items[order][data.users[order] == u]
        np.testing.assert_array_equal(h[h >= 0], seq[:8])
        np.testing.assert_array_equal(t[t >= 0], seq[8:])
    assert comirec_split(data, seed=3).test_users.tolist() == s.test_users.tolist()


def test_next_n_examples_and_marginal_equal_enumeration():
    lengths = np.array([3, 5])
    seq, k, prob = next_n_examples(lengths, 2, min_history=1)
    assert list(zip(seq.tolist(), k.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
    ]
    np.testing.assert_allclose(prob, [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8])
    # two users: items [0, 1, 2] and [3, 4, 5, 6, 7]; next-2 targets
    data = Interactions.from_arrays(
        np.r_[[0] * 3, [1] * 5], np.r_[0:3, 3:8], timestamps=np.r_[0:3, 0:5], dedupe=None
    )
    want = np.zeros(8)
    for s_, k_, p_ in zip(seq, k, prob, strict=True):
        items = [[0, 1, 2], [3, 4, 5, 6, 7]][s_]
        for j in range(2):
            if k_ + j < len(items):
                want[items[k_ + j]] += p_
    np.testing.assert_allclose(next_n_target_marginal(data, 2, 1), want / want.sum())
    assert kl_divergence(want, want) == pytest.approx(0.0, abs=1e-8)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75)
    )


def test_sequence_metrics_by_hand():
    rec = np.array([[1, 2, 3], [4, 5, 6]])
    targets = np.array([[3, 9], [7, -1]])
    cats = sp.csr_matrix((np.ones(10), (np.arange(10), np.arange(10) // 2)), shape=(10, 5))
    m = sequence_metrics(rec, targets, cats, ns=(2, 3))
    assert m["recall@2"] == 0.0 and m["hitrate@2"] == 0.0
    assert m["recall@3"] == pytest.approx(0.25)  # user 0: 1 of 2, user 1: 0 of 1
    assert m["hitrate@3"] == pytest.approx(0.5)
    assert m["distinct_items@3"] == 6 and m["distinct_items@2"] == 4
    assert m["distinct_categories@3"] == 4  # items 1..6 → categories 0, 1, 2, 3


def test_s3rec_beauty_loads_with_order_and_attributes(data_home):
    from divrec.data.s3rec import load_s3rec

    d = load_s3rec("beauty", data_home)
    assert (d.n_users, d.n_items, d.nnz) == (22363, 12101, 198502)
    assert d.item_categories.shape[0] == 12101 and d.item_categories.nnz > 12101
    u0 = int(np.flatnonzero(d.user_ids == 1)[0])
    rows = np.flatnonzero(d.users == u0)
    seq = d.item_ids[d.items[rows[np.argsort(d.timestamps[rows])]]]
    np.testing.assert_array_equal(seq, [1, 2, 3, 4, 5])  # Beauty.txt line 1: "1 1 2 3 4 5"


def test_pipeline_with_reranker_serves_fresh_histories(topic_sa):
    from divrec.pipeline import Pipeline
    from divrec.rerank import MMR

    data = _topic_log()
    pipe = Pipeline(topic_sa, MMR(lambda_=0.5), n_candidates=15, item_vectors=None)
    pipe.use_fitted(data)
    q = Query(users=[-1, -1], history=[[0, 21, 3], [5, 6, 7]], exclude_seen=True)
    out = pipe(q, None, 5)
    cand = topic_sa(q, k=15)
    for r in range(2):
        got = out.ids[r][out.ids[r] >= 0]
        assert got.size == 5 and set(got) <= set(cand.ids[r])
        assert not set(got) & set(q.history[r][q.history[r] >= 0])
    # ranking mode: given candidates come back sorted by the model's scores
    ranked = topic_sa(q, Candidates.from_ids([[30, 1, 2], [3, 4, 39]]))
    s = topic_sa.score(q, ranked.ids)
    assert np.all(np.diff(s, axis=1) <= 1e-6)


# --------------------------------------------------------------------------- config, presets
@pytest.mark.parametrize(
    "name, fixed",
    [
        ("seq", {}),
        ("youtube", {"encoder": "mean"}),
        ("tr-youtube", {"encoder": "mean", "loss": "bi", "l2_norm": True}),
        ("comirec-sa", {"encoder": "sa"}),
        ("comirec-dr", {"encoder": "dr"}),
    ],
)
def test_presets_have_the_old_subclass_defaults(name, fixed):
    from divrec.retrieval.sequential import SequentialConfig

    model = create("model", name)
    assert type(model) is SequentialRecommender
    assert model.config == SequentialConfig(**fixed)
    assert model.threads == 1 and model.seed == 0 and model.ssm_negatives == 1280


def test_config_is_checked_at_construction():
    with pytest.raises(TypeError):
        SequentialRecommender("sa")  # keyword-only
    for bad in ({"encoder": "rnn"}, {"next_n": 0}, {"tau": 0.0}, {"diversity_lambda": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SequentialRecommender(**bad)


def test_fit_keeps_global_state_and_records_epoch_losses():
    from divrec.testing import check_fit_keeps_global_state

    data = _topic_log(n_users=30, length=6)
    params = {"dim": 8, "epochs": 2.5, "batch_size": 32, "ssm_negatives": 10}
    for name in ("youtube", "comirec-dr"):
        m = check_fit_keeps_global_state(lambda n=name: create("model", n, params), data)
        assert len(m.train_loss_) == 3 and np.isfinite(m.train_loss_).all()


def test_both_optimizers_train_and_sparse_adam_refuses_weight_decay():
    data = _topic_log(n_users=60)
    for opt in ("adam", "sparse_adam"):
        for loss in ("ssm", "bi"):
            m = SequentialRecommender(
                dim=8, epochs=1, ssm_negatives=10, loss=loss, optimizer=opt
            ).fit(data)
            assert np.isfinite(m.item_vectors_).all() and m.train_loss_[-1] > 0
    with pytest.raises(ValueError, match="weight_decay"):
        SequentialRecommender(weight_decay=0.01, optimizer="sparse_adam")
    assert SequentialRecommender(weight_decay=0.01).optimizer == "adam"  # the default
