"""Request-level candidate protocol: labels, exclusion, statistics, and no leakage."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.interactions import Interactions
from divrec.data.synthetic import SyntheticConfig, make_synthetic
from divrec.retrieval.baselines import PopularityRecommender
from divrec.splitting.candidate_requests import (
    candidate_requests,
    request_periods,
    request_stats,
    self_requests,
)


def _tiny() -> Interactions:
    # users 0..2, items 0..5; times 1..9
    rows = [
        (0, 0, 1), (0, 1, 2), (0, 2, 6),  # user 0: history {0, 1}, target {2}
        (1, 0, 1), (1, 3, 7), (1, 4, 8),  # user 1: history {0}, target {3, 4}
        (2, 5, 9),  # user 2: no history → no request
        (2, 1, 3), (1, 1, 4), (0, 3, 10),  # after the target period (t >= 9) for (0, 3)
    ]  # fmt: skip
    u, i, t = np.array(rows).T
    return Interactions.from_arrays(u, i, timestamps=t, dedupe=None)


def test_labels_exclusion_and_stats_by_hand():
    data = _tiny()
    # popularity on the history (t < 5): item 0 (2 users), item 1 (3 users)...
    req = candidate_requests(data, 5, 9, PopularityRecommender(), n_candidates=3)
    assert req.users.tolist() == [0, 1]  # user 2 has history {1} but target item 5 at t=9
    hist_items = [{0, 1}, {0, 1}]
    for r in range(2):
        assert not set(req.candidates[r].tolist()) & hist_items[r]  # seen items excluded
    tgt = [{2}, {3, 4}]
    for r in range(2):
        want = [float(c in tgt[r]) for c in req.candidates[r]]
        assert req.labels[r].tolist() == want
    stats = request_stats(req)
    assert stats["requests"] == 2 and stats["candidates_per_request"] == 3
    assert stats["targets_per_request"] == 1.5
    pos = req.labels.sum(axis=1)
    assert stats["pre_ranker_recall"] == pytest.approx(np.mean([pos[0] / 1, pos[1] / 2]))


def test_training_requests_do_not_see_the_test_period():
    syn = make_synthetic(SyntheticConfig(n_users=120, n_items=80, n_topics=4, seed=5))
    data = syn.interactions
    per = request_periods(data, (0.6, 0.8))
    (t0, t1), (t1b, t2) = per["train"], per["test"]
    assert t0 < t1 == t1b < t2
    train = candidate_requests(data, t0, t1, PopularityRecommender(), n_candidates=20)
    test = candidate_requests(data, t1, t2, PopularityRecommender(), n_candidates=20)
    # every training label is an interaction in [t0, t1), every history one before t0
    ts = data.timestamps
    key = data.users * data.n_items + data.items
    in_train_target = set(key[(ts >= t0) & (ts < t1)].tolist())
    r, c = np.nonzero(train.labels)
    assert {
        int(train.users[a] * data.n_items + train.candidates[a, b])
        for a, b in zip(r, c, strict=True)
    } <= (in_train_target)
    assert train.history.nnz == int((ts < t0).sum())
    # scrambling everything at or after t1 changes nothing in the training requests
    late = ts >= t1
    rng = np.random.default_rng(0)
    items = data.items.copy()
    items[late] = rng.integers(0, data.n_items, late.sum())
    scrambled = data.select(np.arange(data.nnz)).__class__(
        users=data.users, items=items, values=data.values, user_ids=data.user_ids,
        item_ids=data.item_ids, timestamps=ts,
    )  # fmt: skip
    again = candidate_requests(scrambled, t0, t1, PopularityRecommender(), n_candidates=20)
    np.testing.assert_array_equal(again.candidates, train.candidates)
    np.testing.assert_array_equal(again.labels, train.labels)
    # the test requests' history includes the training target period
    assert test.history.nnz > train.history.nnz


def test_self_requests_and_errors():
    data = make_synthetic(SyntheticConfig(n_users=30, n_items=40, n_topics=2, seed=0)).interactions
    req = self_requests(data, n_negatives=3, seed=0, max_targets=1000)
    n_tgt = np.diff(req.targets.indptr)
    assert (req.valid.sum(axis=1) == 4 * n_tgt).all()
    assert (req.labels.sum(axis=1) >= n_tgt).all()  # every target is a candidate
    # the targets are each user's latest interactions
    ts = {
        (int(u), int(i)): int(t)
        for u, i, t in zip(data.users, data.items, data.timestamps, strict=True)
    }
    for r, u in enumerate(req.users):
        h = req.history.indices[req.history.indptr[u] : req.history.indptr[u + 1]]
        t = req.targets.indices[req.targets.indptr[r] : req.targets.indptr[r + 1]]
        assert max(ts[(u, i)] for i in h) <= min(ts[(u, i)] for i in t)
    capped = self_requests(data, n_negatives=3, seed=0, max_targets=2)
    assert capped.valid.sum(axis=1).max() == 8 and (capped.labels.sum(axis=1) >= 2).all()
    with pytest.raises(ValueError, match="quantiles"):
        request_periods(data, (0.9, 0.5))
    with pytest.raises(ValueError, match="history_end"):
        candidate_requests(data, 10, 5, PopularityRecommender())


def test_real_loaders(data_home):
    from divrec.data.movielens import ml1m_user_features
    from divrec.data.rechorus import load_grocery_rechorus

    grocery = load_grocery_rechorus(data_home)
    assert (grocery.nnz, grocery.n_users, grocery.n_items) == (121_892, 14_681, 8_687)
    assert grocery.n_categories == 57 and grocery.timestamps is not None
    # users.dat: 1::F::1::10::48067 and 2::M::56::16::70072; unknown users get zeros
    feats = ml1m_user_features(np.array([1, 2, 10**6]), data_home)
    np.testing.assert_array_equal(feats, [[1, 1, 11], [2, 7, 17], [0, 0, 0]])


def test_requests_are_a_query_and_candidates():
    data = _tiny()
    req = candidate_requests(data, 5, 9, PopularityRecommender(), n_candidates=3)
    assert req.query().users.tolist() == req.users.tolist()
    cand = req.as_candidates()
    assert np.array_equal(cand.ids, req.candidates)
    valid = req.candidates >= 0
    if req.prescores is not None:
        np.testing.assert_array_equal(cand.scores[valid], req.prescores[valid])
    # scores decrease along each list, so ranking the candidates keeps the pre-ranker order
    s = np.where(valid, cand.scores, np.nan)
    assert all((np.diff(row[~np.isnan(row)]) <= 0).all() for row in s)
