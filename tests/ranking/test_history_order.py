""" "The user's last L history items" (DCN/CDM user vector, CDM Eq. 3 and 15) are the most
recent by time, not the highest item ids (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.ranking.dcn import DCNRanker, history_table, query_history
from divrec.splitting.candidate_requests import candidate_requests, recency_matrix


def _log(users, items, ts, n_items=None):
    # external ids 0..n-1 kept dense so internal index = external id
    n_items = n_items or (max(items) + 1)
    return Interactions(
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        values=np.ones(len(users), dtype=np.float32),
        user_ids=np.arange(max(users) + 1),
        item_ids=np.arange(n_items),
        timestamps=np.asarray(ts, dtype=np.int64),
    )


def test_last_items_are_the_latest_by_time_not_the_highest_ids():
    # user 0 saw 9 first, then 1, then 5, then 3: the latest two are 5 then 3
    data = _log([0, 0, 0, 0, 1], [9, 1, 5, 3, 2], [10, 20, 30, 40, 5])
    rec = recency_matrix(data)
    assert history_table(rec, np.array([0, 1]), 2).tolist() == [[5, 3], [2, -1]]
    # the item-id order (the former reading) would have given the two highest ids
    assert history_table(data.to_csr(binary=True), np.array([0]), 2).tolist() == [[5, 9]]
    assert history_table(rec, np.array([0]), 0).tolist() == [[9, 1, 5, 3]]


def test_repeated_item_counts_at_its_latest_time_and_ties_keep_row_order():
    # item 4 at t=1 and again at t=50 (latest); items 7 and 2 share t=30 (row order: 7, 2)
    data = _log([0, 0, 0, 0], [4, 7, 2, 4], [1, 30, 30, 50])
    rec = recency_matrix(data)
    assert history_table(rec, np.array([0]), 3).tolist() == [[7, 2, 4]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 5)), min_size=1),
    st.integers(0, 6),
)
def test_history_table_matches_a_brute_force_time_sort(rows, length):
    users, items, ts = (list(x) for x in zip(*rows, strict=True))
    data = _log(users, items, ts, n_items=10)
    got = history_table(recency_matrix(data), np.arange(max(users) + 1), length)
    for u in range(max(users) + 1):
        # latest (timestamp, row position) per item, then ascending
        latest = {}
        for pos, (uu, i, t) in enumerate(rows):
            if uu == u:
                latest[i] = max(latest.get(i, (-1, -1)), (t, pos))
        want = [i for i, _ in sorted(latest.items(), key=lambda kv: kv[1])]
        if length:
            want = want[-length:]
        row = [i for i in got[u] if i >= 0]
        assert row == want


def test_candidate_requests_history_is_recency_ordered():
    rng = np.random.default_rng(0)
    n = 400
    users = rng.integers(0, 20, n)
    items = rng.integers(0, 50, n)
    ts = rng.permutation(n)  # time unrelated to item id
    data = Interactions.from_arrays(users, items, timestamps=ts)
    req = candidate_requests(data, 250, 400, _TopPop(), n_candidates=10)
    hist = data.select(data.timestamps < 250)
    for u in req.users[:5]:
        mine = hist.timestamps[hist.users == u]
        its = hist.items[hist.users == u]
        want = []
        for i in its[np.argsort(mine, kind="stable")]:
            if i in want:
                want.remove(i)
            want.append(int(i))
        got = history_table(req.history, np.array([u]), 3)[0]
        assert [i for i in got if i >= 0] == want[-3:]


def test_dcn_fit_reads_the_training_log_by_time():
    data = _log([0, 0, 0, 1, 1, 1, 1], [9, 1, 5, 3, 8, 0, 6], [3, 2, 1, 9, 8, 7, 6])
    m = DCNRanker(dim=4, hidden=(4,), max_epochs=1, history_len=2, seed=0).fit(data)
    assert history_table(m.history_, np.array([0, 1]), 2).tolist() == [[1, 9], [8, 3]]


def test_fresh_query_history_keeps_list_order():
    q = Query(users=np.array([0, 1]), history=np.array([[7, 2, 7, 4], [5, 1, -1, -1]]))
    m = query_history(q, 10)
    # 7 repeated: its latest position (3rd) counts; the last two are 7 then 4
    assert history_table(m, np.array([0, 1]), 2).tolist() == [[7, 4], [5, 1]]
    with pytest.raises(ValueError, match="history"):
        query_history(Query(users=np.array([0]), history=np.array([[12]])), 10)


class _TopPop:
    """A tiny pre-ranker: most popular unseen items."""

    def fit(self, data):
        self.csr = data.to_csr(binary=True)
        self.pop = np.asarray(self.csr.sum(axis=0)).ravel()
        return self

    def recommend(self, users, k, exclude_seen=True):
        scores = np.tile(self.pop.astype(np.float64), (len(users), 1))
        if exclude_seen:
            seen = self.csr[users].toarray() > 0
            scores[seen] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(scores, ids, axis=1)
