"""Item co-occurrence graph against a brute-force pure-Python construction."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import divrec
from divrec.data.interactions import Interactions
from divrec.retrieval.graph import ItemGraph, ItemGraphConfig, prune_top_neighbors, session_ids
from divrec.stage import NotFittedError


def brute_force(users, items, times, values, n_items, gap, window, min_value):
    """Per user: sort by time, cut sessions at gaps > gap, count co-occurrences."""
    w = np.zeros((n_items, n_items))
    events = {}
    for r, (u, i, t, v) in enumerate(zip(users, items, times, values, strict=True)):
        if min_value is not None and v < min_value:
            continue
        events.setdefault(u, []).append((t, r, i))
    for evs in events.values():
        evs.sort()
        sessions, cur, last = [], [], None
        for t, _, i in evs:
            if cur and gap is not None and t - last > gap:
                sessions.append(cur)
                cur = []
            cur.append(i)
            last = t
        sessions.append(cur)
        for s in sessions:
            if window is None:
                for a, b in combinations(sorted(set(s)), 2):
                    w[a, b] += 1
                    w[b, a] += 1
            else:
                for p in range(len(s)):
                    for q in range(p + 1, min(len(s), p + window + 1)):
                        if s[p] != s[q]:
                            w[s[p], s[q]] += 1
                            w[s[q], s[p]] += 1
    return w


def make_log(rng, n_users, n_items, n):
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    times = rng.integers(0, 50, n)
    values = rng.integers(1, 6, n).astype(np.float32)
    return Interactions(
        users=users,
        items=items,
        values=values,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        timestamps=times,
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    gap=st.sampled_from([None, 0, 3, 10]),
    window=st.sampled_from([None, 1, 2, 4]),
    min_value=st.sampled_from([None, 3.0]),
)
def test_graph_matches_brute_force(seed, gap, window, min_value):
    rng = np.random.default_rng(seed)
    data = make_log(rng, 4, 7, 30)
    g = ItemGraph(session_gap=gap, window=window, min_value=min_value).fit(data)
    want = brute_force(
        data.users, data.items, data.timestamps, data.values, 7, gap, window, min_value
    )
    np.testing.assert_array_equal(g.adjacency_.toarray(), want)


def test_hand_computed_session_graph():
    # user 0: items 0,1 (t=0,1) | gap | 2,0 (t=100,101); user 1: 1,2,3 (t=5,6,7)
    data = Interactions(
        users=[0, 0, 0, 0, 1, 1, 1],
        items=[0, 1, 2, 0, 1, 2, 3],
        values=np.ones(7),
        user_ids=np.arange(2),
        item_ids=np.arange(4),
        timestamps=[0, 1, 100, 101, 5, 6, 7],
    )
    a = ItemGraph(session_gap=10, window=None).fit(data).adjacency_.toarray()
    want = np.zeros((4, 4))
    for i, j in [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]:
        want[i, j] = want[j, i] = 1
    np.testing.assert_array_equal(a, want)
    a1 = ItemGraph(session_gap=10, window=1).fit(data).adjacency_.toarray()
    want[1, 3] = want[3, 1] = 0  # 1 and 3 are two positions apart
    np.testing.assert_array_equal(a1, want)


def test_incremental_equals_batch():
    rng = np.random.default_rng(3)
    data = make_log(rng, 5, 9, 60)
    first, second = data.select(np.arange(30)), data.select(np.arange(30, 60))
    g = ItemGraph(session_gap=None, window=2).fit(first)
    g.add_interactions(second)
    want = ItemGraph(session_gap=None, window=2).fit(first).adjacency_
    want = want + ItemGraph(session_gap=None, window=2).fit(second).adjacency_
    np.testing.assert_array_equal(g.adjacency_.toarray(), want.toarray())


def test_add_sessions_and_edges_grow_the_graph():
    g = ItemGraph(session_gap=None, window=None).fit(
        Interactions(users=[0, 0], items=[0, 1], values=[1, 1], user_ids=[0], item_ids=[0, 1])
    )
    g.add_sessions([[1, 3, 1], [0]])
    g.add_edges([0, 2], [2, 2], [2.5, 9.0])  # the self-loop 2-2 is dropped
    a = g.adjacency_.toarray()
    assert a.shape == (4, 4)
    want = np.zeros((4, 4))
    want[0, 1] = want[1, 0] = 1
    want[1, 3] = want[3, 1] = 1
    want[0, 2] = want[2, 0] = 2.5
    np.testing.assert_array_equal(a, want)
    assert g.n_edges == 3


def test_session_ids_without_timestamps_keep_row_order():
    order, sess = session_ids(np.array([1, 0, 1, 0]), None, 5.0)
    np.testing.assert_array_equal(order, [1, 3, 0, 2])
    np.testing.assert_array_equal(sess, [0, 0, 1, 1])


def test_prune_keeps_heaviest_neighbours():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 5, (8, 8)).astype(np.float32)
    w = np.triu(w, 1)
    w = w + w.T
    import scipy.sparse as sp

    p = prune_top_neighbors(sp.csr_matrix(w), 2).toarray()
    keep = np.zeros_like(w, dtype=bool)
    for i in range(8):
        nz = [j for j in range(8) if w[i, j] > 0]
        nz.sort(key=lambda j: (-w[i, j], j))
        keep[i, nz[:2]] = True
    keep = keep | keep.T
    np.testing.assert_array_equal(p, np.where(keep, w, 0))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"session_gap": -1.0}, "session_gap"),
        ({"session_gap": float("inf")}, "session_gap"),
        ({"window": 0}, "window"),
        ({"window": True}, "window"),
        ({"window": 2.5}, "window"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(params, field):
    with pytest.raises(ValueError, match=field):
        ItemGraph(**params)


def test_config_params_and_save_load(tmp_path):
    g = ItemGraph(session_gap=None, window=2)
    assert g.get_params() == {"session_gap": None, "window": 2, "min_value": None}
    assert ItemGraph(ItemGraphConfig(window=2), session_gap=None).get_params() == g.get_params()
    with pytest.raises(AttributeError, match="window"):
        g.window = 3
    with pytest.raises(NotFittedError):
        g.add_edges([0], [1])
    g.fit(
        Interactions(
            users=[0, 0, 0], items=[0, 1, 2], values=[1, 1, 1], user_ids=[0], item_ids=[0, 1, 2]
        )
    )
    back = divrec.load(g.save(tmp_path / "graph.npz"))
    assert back.get_params() == g.get_params()
    np.testing.assert_array_equal(back.adjacency_.toarray(), g.adjacency_.toarray())
