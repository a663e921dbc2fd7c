"""Random-walk neighbour sampling (WeChat Sec. 3.1) against brute force, and the retriever's
use of it (training tree and inference aggregation)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch
from _graphs import W

from divrec.retrieval.graphsage import (
    GraphRetriever,
    TorchCSR,
    walk_aggregate,
    walk_neighborhood_matrix,
    walk_neighbors,
)


def brute_walk_distribution(w: np.ndarray, length: int) -> np.ndarray:
    """By enumerating every walk: M[u, j] = (1/L) Σ_s Σ_{walks u→…→j of s steps} Π w/deg."""
    n = w.shape[0]
    deg = w.sum(1)
    m = np.zeros((n, n))
    for u in range(n):
        if deg[u] == 0:
            continue
        for s in range(1, length + 1):
            for path in itertools.product(range(n), repeat=s):
                prob, cur = 1.0, u
                for nxt in path:
                    if w[cur, nxt] == 0:
                        prob = 0.0
                        break
                    prob *= w[cur, nxt] / deg[cur]
                    cur = nxt
                m[u, path[-1]] += prob / length
    return m


def test_walk_neighborhood_matrix_equals_walk_enumeration():
    for length in (1, 2, 3):
        got = walk_neighborhood_matrix(sp.csr_matrix(W), length).toarray()
        np.testing.assert_allclose(got, brute_walk_distribution(W, length), atol=1e-12)
    x = np.arange(10, dtype=np.float64).reshape(5, 2)
    want = brute_walk_distribution(W, 3) @ x
    np.testing.assert_allclose(walk_aggregate(sp.csr_matrix(W), x, 3), want, rtol=1e-5)


def test_walk_neighbors_visit_frequencies_match_brute_force():
    g = TorchCSR(sp.csr_matrix(W))
    gen = torch.Generator().manual_seed(0)
    n = 30_000
    s = walk_neighbors(g, torch.tensor([0, 3, 4, -1]), n, 2, gen).numpy()
    want = brute_walk_distribution(W, 2)
    for row, u in enumerate([0, 3]):
        freq = np.bincount(s[row], minlength=5) / n
        np.testing.assert_allclose(freq, want[u], atol=0.012)
    assert (s[2] == -1).all() and (s[3] == -1).all()  # isolated node, padding


def test_walk_neighbors_on_a_path_graph():
    path = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float64))
    g = TorchCSR(path)
    gen = torch.Generator().manual_seed(3)
    one = walk_neighbors(g, torch.tensor([0, 2]), 50, 1, gen).numpy()
    assert (one == 1).all()  # the ends have one neighbour: every 1-step walk ends at 1
    two = walk_neighbors(g, torch.tensor([1]), 4000, 2, gen).numpy()[0]
    # from the middle: 1 step → 0 or 2; 2 steps → back to 1
    np.testing.assert_allclose(np.bincount(two, minlength=3) / two.size, [1/4, 1/2, 1/4],
                               atol=0.03)  # fmt: skip


def _log():
    from divrec.data.interactions import Interactions

    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(30):
        c = u % 2
        chosen = rng.choice(10, 5, replace=False) + 10 * c
        users += [u] * 5
        items += chosen.tolist()
        ts += list(range(5))
    return Interactions(
        users=users, items=items, values=np.ones(len(users)), user_ids=np.arange(30),
        item_ids=np.arange(20), timestamps=ts,
        item_categories=sp.csr_matrix(np.eye(2)[np.arange(20) // 10]),
    )  # fmt: skip


def test_walk_mode_inference_with_one_step_is_the_weighted_neighbour_mean():
    """L = 1 on a 0/1 graph: (1/L)Σ P^s h = the plain neighbour mean, so the walk path's
    manual `lin_l(agg) + lin_r(h)` equals PyG's SAGEConv with the same weights."""
    data = _log()
    kw = dict(dim=8, hidden=8, epochs=1, batch_size=32, negatives=8, min_value=None, window=None)
    uni = GraphRetriever(**kw).fit(data)
    walk = GraphRetriever(**kw, neighbor_sampling="walk", neighbor_walk_length=1).fit(data)
    emb = walk._embedder_obj()
    emb.module = uni.module_
    ones = uni.pruned_.copy()
    ones.data[:] = 1.0
    feats = uni._features_t()
    np.testing.assert_allclose(
        emb.embed_all(ones, feats), uni._embedder_obj().embed_all(ones, feats), atol=1e-5
    )
    # the walk-trained model separates the two clusters too
    e = walk.embeddings_
    same = (e[:10] @ e[:10].T).mean()
    cross = (e[:10] @ e[10:].T).mean()
    assert same > cross


def test_declines_as_hard_negatives_push_declined_items_from_anchors():
    import copy

    import pytest

    data = _log()
    kw = dict(dim=8, hidden=8, epochs=3, batch_size=32, negatives=8, min_value=None, window=None)
    base = GraphRetriever(**kw).fit(data)
    # declines inside cluster 0: anchor 0..4 declined 5..9 (otherwise similar items)
    pairs = np.array([(a, d) for a in range(5) for d in range(5, 10)])

    def cos(m):
        e = m.embeddings_
        return float(np.mean(np.sum(e[pairs[:, 0]] * e[pairs[:, 1]], axis=1)))

    plain, hard, off = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    plain.update(steps=40)
    stats = hard.update(steps=40, negative_pairs=pairs)
    assert stats["hard_pairs"] == 40 * len(pairs)  # min(P, batch_size) = P per step
    # same-cluster items are nearly parallel (cos ≈ 0.9998 after fit); the declines move
    # them apart many times more than the plain update does
    assert 1 - cos(hard) > 5 * (1 - cos(plain))
    off.config = off.config.with_params(decline_weight=0.0)
    off._embedder.config = off.config
    off.update(steps=40, negative_pairs=pairs)  # weight 0: the plain update exactly
    np.testing.assert_array_equal(off.embeddings_, plain.embeddings_)
    with pytest.raises(ValueError, match="negative_pairs"):
        hard.update(steps=1, negative_pairs=np.array([[0, 99]]))
