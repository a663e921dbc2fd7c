"""Sliding time cuts (issue 25: many more CDM training requests): every cut's requests equal a
brute-force reading of the tiny log, each request keeps its own history (before its cut)."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.interactions import Interactions
from divrec.evaluation.candidate_requests import (
    CutRequests,
    request_split,
    sliding_cuts,
    sliding_requests,
)
from divrec.ranking.dcn import DCNRanker, history_table, request_hist_rows
from divrec.retrieval.baselines import PopularityRecommender


def _log(seed: int = 0, n_users: int = 7, n_items: int = 9, n: int = 60) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    ts = rng.permutation(n) + 1  # distinct times 1..n
    users[:n_users], items[:n_items] = np.arange(n_users), np.arange(n_items)
    return Interactions(
        users=users.astype(np.int64), items=items.astype(np.int64),
        values=np.ones(n, dtype=np.float32), user_ids=np.arange(n_users),
        item_ids=np.arange(n_items), timestamps=ts.astype(np.int64),
    )  # fmt: skip


def _brute(data: Interactions, h: int, t: int, n_cand: int):
    """Per cut: {user: (history most recent first, candidates, labels)} by plain loops."""
    u, i, ts = data.users.tolist(), data.items.tolist(), data.timestamps.tolist()
    # popularity = number of distinct users before the cut
    pop = np.zeros(data.n_items)
    for b, _ in {(b, a) for a, b, c in zip(u, i, ts, strict=True) if c < h}:
        pop[b] += 1
    out = {}
    for user in range(data.n_users):
        ev = sorted((c, b) for a, b, c in zip(u, i, ts, strict=True) if a == user and c < h)
        hist_items = {b for _, b in ev}
        tgt = {b for a, b, c in zip(u, i, ts, strict=True) if a == user and h <= c < t}
        tgt -= hist_items
        if not ev or not tgt:
            continue
        latest = {}
        for c, b in ev:
            latest[b] = c
        recent = [b for b, _ in sorted(latest.items(), key=lambda x: -x[1])]
        eligible = [b for b in range(data.n_items) if b not in hist_items]
        out[user] = (recent, eligible, {b: pop[b] for b in eligible}, tgt)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_cut_matches_brute_force(seed):
    data = _log(seed)
    cuts = [(15, 30), (30, 45), (45, 61)]
    req = sliding_requests(data, cuts, PopularityRecommender, n_candidates=4)
    assert isinstance(req, CutRequests) and len(req.hist_rows) == len(req)
    got = {}
    for r in range(len(req)):
        hist = history_table(req.history, req.hist_rows[r : r + 1], 0)[0]
        recent = [int(x) for x in hist[hist >= 0]][::-1]  # history_table: oldest first
        got[(int(req.cuts[r]), int(req.users[r]))] = (
            recent, req.candidates[r].tolist(), req.labels[r].tolist(),
            set(req.targets[r].indices.tolist()),
        )  # fmt: skip
    want = {}
    for h, t in cuts:
        for user, v in _brute(data, h, t, 4).items():
            want[(h, user)] = v
    assert got.keys() == want.keys()
    for key, (recent, eligible, pop, tgt) in want.items():
        g = got[key]
        assert g[0] == recent, key  # history before the cut, most recent first
        cand = [c for c in g[1] if c >= 0]
        assert len(cand) == len(set(cand)) == min(4, len(eligible)), key
        assert set(cand) <= set(eligible), key  # the user's history is excluded
        rest = [pop[b] for b in eligible if b not in cand]
        assert min(pop[c] for c in cand) >= max(rest, default=0), key  # the top by popularity
        assert g[2][: len(cand)] == [float(c in tgt) for c in cand], key
        assert g[3] == tgt, key
    # a user active in several windows has one candidate list per cut
    assert len(req) > len(np.unique(req.users))
    # take keeps each request's own history row and cut
    sub = req.take(np.array([len(req) - 1, 0]))
    assert sub.hist_rows.tolist() == [req.hist_rows[-1], req.hist_rows[0]]
    assert sub.cuts.tolist() == [req.cuts[-1], req.cuts[0]]
    np.testing.assert_array_equal(request_hist_rows(sub, np.arange(2)), sub.hist_rows)


def test_cap_is_a_seeded_subset_and_cuts_are_quantiles():
    data = _log(3, n=80)
    cuts = sliding_cuts(data, 3, 0.3, 0.7, 0.15)
    ts = data.timestamps
    q = [(0.3, 0.45), (0.5, 0.65), (0.7, 0.85)]
    assert cuts == [(int(np.quantile(ts, a)), int(np.quantile(ts, b))) for a, b in q]
    full = sliding_requests(data, cuts, PopularityRecommender, n_candidates=3)
    cap = sliding_requests(data, cuts, PopularityRecommender, n_candidates=3, max_requests=5)
    assert len(cap) == 5
    keys = {(int(c), int(u)) for c, u in zip(full.cuts, full.users, strict=True)}
    assert {(int(c), int(u)) for c, u in zip(cap.cuts, cap.users, strict=True)} <= keys
    with pytest.raises(ValueError, match="n_cuts"):
        sliding_cuts(data, 0, 0.3, 0.7, 0.15)


@pytest.mark.parametrize("quantiles", [(0.7, 0.85), (0.2, 0.85), (0.1, 0.45)])
def test_request_split_default_is_one_cut_and_sliding_ends_at_t1(quantiles):
    """(0.2, 0.85) and (0.1, 0.45): q0 + (q1 − q0) is 0.8499999999999999 and
    0.44999999999999996 in floating point; the last cut must still be exactly (t0, t1).
    201 distinct times 1..201 make the quantiles land on integers (1 + 200·q), where that
    rounding shows (0.8499999999999999 → 170.99999999999997 → 170, not t1 = 171)."""
    data = _log(4, n=201, n_users=12, n_items=15)
    one = request_split(data, quantiles, "popularity", n_candidates=5)
    many = request_split(
        data, quantiles, "popularity", n_candidates=5, train_cuts=3, first_cut=quantiles[0] / 2
    )
    t0, t1 = one["periods"]["train"]
    assert not isinstance(one["train"], CutRequests)
    assert many["periods"]["train_cuts"][-1] == (t0, t1)
    assert all(t <= t1 for _, t in many["periods"]["train_cuts"])
    assert len(many["train"]) >= len(one["train"])
    # the last cut's requests are the single-cut requests
    last = many["train"].cuts == t0
    assert many["train"].users[last].tolist() == one["train"].users.tolist()
    np.testing.assert_array_equal(many["train"].labels[last], one["train"].labels)


def test_dcn_trains_on_per_request_histories():
    data = _log(5, n=120, n_users=12, n_items=15)
    req = sliding_requests(data, [(40, 80), (80, 121)], PopularityRecommender, n_candidates=5)
    model = DCNRanker(dim=4, hidden=(8,), max_epochs=1, batch_requests=4, seed=0)
    model.fit(data.select(data.timestamps < 121), requests=req)
    assert np.isfinite(model.val_losses_ or [0.0]).all()
    bad = req.take(np.arange(len(req)))
    bad.hist_rows = bad.hist_rows + bad.history.shape[0]
    with pytest.raises(ValueError, match="hist_rows"):
        DCNRanker(dim=4, max_epochs=1).fit(data, requests=bad)
