"""GraphSAGE samplers against brute force, inductive embeddings, graph retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _graphs import W

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.retrieval.graphsage import (
    GraphRetriever,
    TorchCSR,
    random_walks,
    sample_neighbors,
    walk_positives,
)


def test_random_walks_match_transition_powers():
    g = TorchCSR(sp.csr_matrix(W))
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    walks = random_walks(g, torch.zeros(n, dtype=torch.int64), 3, gen).numpy()
    p = W[:4, :4] / W[:4, :4].sum(1, keepdims=True)
    start = np.eye(4)[0]
    for t in range(1, 4):
        want = start @ np.linalg.matrix_power(p, t)
        got = np.bincount(walks[:, t], minlength=5)[:4] / n
        np.testing.assert_allclose(got, want, atol=0.012)
    # isolated start: dead end at once
    dead = random_walks(g, torch.tensor([4, 4]), 2, gen).numpy()
    np.testing.assert_array_equal(dead, [[4, -1, -1], [4, -1, -1]])


def test_neighbor_sampler_is_uniform_over_neighbours():
    g = TorchCSR(sp.csr_matrix(W))
    gen = torch.Generator().manual_seed(1)
    s = sample_neighbors(g, torch.tensor([3, 4, -1]), 30_000, gen).numpy()
    freq = np.bincount(s[0], minlength=5) / s.shape[1]
    np.testing.assert_allclose(freq, [0, 0.5, 0.5, 0, 0], atol=0.01)  # unweighted
    assert (s[1] == -1).all() and (s[2] == -1).all()


def test_walk_positives_are_visited_non_start_nodes():
    walks = torch.tensor([[0, 1, 0, 1], [2, -1, -1, -1], [3, 3, 3, 2]])
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        pos = walk_positives(walks, gen).numpy()
        assert pos[0] == 1 and pos[1] == -1 and pos[2] == 2


def clustered_log(seed=0, n_clusters=3, per=20, n_users=60):
    """Users interact within one cluster; items carry their cluster as a category."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * per
    users, items, ts = [], [], []
    for u in range(n_users):
        c = u % n_clusters
        chosen = rng.choice(per, 8, replace=False) + c * per
        users += [u] * 8
        items += chosen.tolist()
        ts += list(range(8))
    cats = sp.csr_matrix(np.eye(n_clusters)[np.arange(n_items) // per])
    return Interactions(
        users=users,
        items=items,
        values=np.ones(len(users)),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        timestamps=ts,
        item_categories=cats,
    )


def small_model(**kw):
    params = dict(dim=16, hidden=16, epochs=30, batch_size=64, negatives=16, min_value=None)
    params.update(kw)
    return GraphRetriever(**params)


def test_unseen_item_with_same_features_is_embedded_nearby():
    data = clustered_log()
    m = small_model(epochs=12).fit(data)
    e = m.embeddings_
    cluster = np.arange(60) // 20
    # embeddings separate the clusters
    sims = e @ e.T
    same = sims[cluster[:, None] == cluster[None, :]].mean()
    other = sims[cluster[:, None] != cluster[None, :]].mean()
    assert same > other + 0.3
    # a new item with item 5's features (cluster 0) and no edges
    stats = m.update(new_features=m.features_[[5]], steps=0)
    assert stats["steps"] == 0 and m.embeddings_.shape == (61, 16)
    new = m.embeddings_[60]
    cos = m.embeddings_[:60] @ new
    assert cos[5] > np.quantile(cos, 0.5)
    assert cos[cluster == 0].mean() > cos[cluster != 0].mean() + 0.3


def test_retrieval_equals_brute_force_and_history_queries():
    data = clustered_log(seed=2)
    m = small_model(epochs=5).fit(data)
    users = np.arange(10)
    ids, scores = m.recommend(users, k=7)
    dense = m.score_all(users)
    seen = m.user_items_[users].toarray() > 0
    dense[seen] = -np.inf
    for b in range(len(users)):
        np.testing.assert_allclose(scores[b], np.sort(dense[b])[::-1][:7], rtol=1e-5, atol=1e-5)
        assert not seen[b, ids[b]].any()
    # a fresh history: the mean cosine to those items, history excluded
    q = Query(users=np.array([-1]), history=np.array([[3, 4, 5]]), exclude=np.array([[6]]))
    out = m(q, None, 5)
    qv = m.embeddings_[[3, 4, 5]].mean(0)
    want = m.embeddings_ @ qv
    want[[3, 4, 5, 6]] = -np.inf
    np.testing.assert_array_equal(out.ids[0], np.argsort(-want, kind="stable")[:5])


def test_incremental_update_adds_edges_and_keeps_shapes():
    data = clustered_log(seed=3)
    m = small_model(epochs=3).fit(data)
    before = m.graph_.n_edges
    stats = m.update(sessions=[[0, 59], [1, 58, 2]], steps=3)
    assert m.graph_.adjacency_[0, 59] == 1 and m.graph_.adjacency_[58, 2] == 1
    assert m.graph_.n_edges > before and stats["pairs"] > 0
    assert np.isfinite(m.embeddings_).all()


def test_save_load_round_trip(tmp_path):
    import divrec

    data = clustered_log(seed=4)
    m = small_model(epochs=3).fit(data)
    path = m.save(tmp_path / "graph")
    m2 = divrec.load(path)
    np.testing.assert_allclose(m2.embeddings_, m.embeddings_)
    np.testing.assert_array_equal(m2.recommend(np.arange(5), 5)[0], m.recommend(np.arange(5), 5)[0])
    m2.update(sessions=[[0, 1]], steps=1)  # a loaded model keeps training
    assert np.isfinite(m2.embeddings_).all()


def test_registry_and_bad_params():
    from divrec.registry import create

    assert isinstance(create("model", "graph", {"dim": "8"}), GraphRetriever)
    with pytest.raises(ValueError, match="aggregate"):
        GraphRetriever(aggregate="median")


def test_pipeline_ours_uses_graph_embeddings_for_dpp_and_propensity():
    from divrec.pipeline import Pipeline
    from divrec.rerank import FastGreedyDPP
    from divrec.rerank.personalized import RealtimePersonalizedDPP

    data = clustered_log(seed=5)
    ret = small_model(epochs=2)
    pipe = Pipeline(ret, reranker=RealtimePersonalizedDPP(), n_candidates=15).fit(data)
    rr = pipe.reranker
    np.testing.assert_array_equal(rr.item_vectors_, ret.embeddings_)
    np.testing.assert_array_equal(rr.tracker_.item_vectors, ret.embeddings_)
    users = np.arange(6)
    ids, _ = pipe.recommend(users, k=5)
    # the same selection from a fixed-θ DPP fed the per-user θ and the same candidates
    q = Query(users=users)
    cand = ret(q, None, 15)
    thetas = rr.tracker_.thetas(users.tolist())
    for b in range(len(users)):
        dpp = FastGreedyDPP(theta=float(thetas[b]))
        valid = cand.ids[b] >= 0
        pos = dpp.select(
            cand.scores[b][valid].astype(np.float64), 5, vectors=ret.embeddings_[cand.ids[b][valid]]
        )
        np.testing.assert_array_equal(ids[b], cand.ids[b][valid][pos])


def test_config_checks_and_fit_update_keep_global_state():
    from divrec.testing import check_fit_keeps_global_state

    with pytest.raises(TypeError):
        GraphRetriever(16)  # keyword-only
    for bad in ({"cold_dropout": 1.0}, {"dim": 0}, {"window": 0}, {"index": "ivf"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GraphRetriever(**bad)
    assert GraphRetriever().threads == 1
    m = check_fit_keeps_global_state(lambda: small_model(epochs=2), clustered_log(seed=6))
    assert len(m.train_loss_) == 2 and np.isfinite(m.train_loss_).all()
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    m.update(sessions=[[0, 1]], steps=2)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)
