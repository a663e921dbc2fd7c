"""Tests of divrec.retrieval.hi (HI paper Eq. 3–9, 14–17) against brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.retrieval.base import NotFittedError
from divrec.retrieval.hi import (
    HIRealtime,
    HIRecommender,
    N2PRecommender,
    P2PRecommender,
    load_model,
    mix_candidates,
    truncated_factors,
)


def _ratings(n_users=40, n_items=30, density=0.35, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    u, i = np.nonzero(mask)
    r = rng.integers(1, 6, u.size).astype(np.float32)
    return Interactions(u, i, r, np.arange(n_users), np.arange(n_items), name="toy")


def _dense_xy(data: Interactions, threshold=4.0) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros(data.shape)
    o = np.zeros(data.shape)
    x[data.users, data.items] = data.values >= threshold
    o[data.users, data.items] = 1.0
    return x, o - x


def _brute_rank_k(m: np.ndarray, k: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(m)
    return (u[:, :k] * s[:k]) @ vt[:k]


@pytest.fixture(scope="module")
def toy():
    return _ratings()


# ------------------------------------------------------------------ factorization


@pytest.mark.parametrize("k", [1, 3, 7])
def test_truncated_factors_match_lapack_on_sparse_arpack_path(k):
    rng = np.random.default_rng(1)
    m = rng.random((120, 90)) * (rng.random((120, 90)) < 0.3)  # > _DENSE_LIMIT: ARPACK
    left, right = truncated_factors(sp.csr_matrix(m), k, seed=0)
    assert left.shape == (120, k) and right.shape == (k, 90)
    np.testing.assert_allclose(left @ right, _brute_rank_k(m, k), atol=1e-8)


@pytest.mark.parametrize("k", [3, 6])
def test_p2p_scores_equal_x_times_rank_k_xtx(toy, k):
    x, _ = _dense_xy(toy)
    c = _brute_rank_k(x.T @ x, k)  # Eq. 3-4
    model = P2PRecommender(factors=k).fit(toy)
    users = np.arange(toy.n_users)
    np.testing.assert_allclose(model.score_all(users), x @ c, rtol=1e-4, atol=1e-3)  # Eq. 5
    np.testing.assert_allclose(model.P_ @ model.Q_, c, atol=1e-8)


def test_p2p_full_rank_recovers_xtx_exactly(toy):
    x, _ = _dense_xy(toy)
    model = P2PRecommender(factors=toy.n_items).fit(toy)
    np.testing.assert_allclose(model.P_ @ model.Q_, x.T @ x, atol=1e-9)
    np.testing.assert_allclose(model.score_all(np.arange(toy.n_users)), x @ x.T @ x, atol=1e-3)


@pytest.mark.parametrize("k", [4, None])
def test_n2p_scores_equal_y_times_rank_k_ytx(toy, k):
    x, y = _dense_xy(toy)
    k = k or toy.n_items
    d = _brute_rank_k(y.T @ x, k)  # Eq. 7-8
    model = N2PRecommender(factors=k).fit(toy)
    np.testing.assert_allclose(model.R_ @ model.S_, d, atol=1e-8)
    np.testing.assert_allclose(  # Eq. 9
        model.score_all(np.arange(toy.n_users)), y @ d, rtol=1e-4, atol=1e-3
    )
    if k == toy.n_items:
        np.testing.assert_allclose(d, y.T @ x, atol=1e-9)


def test_threshold_decides_positive_and_negative():
    data = Interactions([0, 0, 1, 1], [0, 1, 0, 1], [4, 3, 5, 1], [0, 1], [0, 1])
    model = P2PRecommender(factors=2).fit(data)
    np.testing.assert_array_equal(model.X_.toarray(), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(model.Y_.toarray(), [[0, 1], [0, 1]])
    strict = P2PRecommender(factors=2, threshold=5).fit(data)
    np.testing.assert_array_equal(strict.X_.toarray(), [[0, 0], [1, 0]])


# ------------------------------------------------------------------ HI-RT


def test_hi_rt_h_prime_and_matrix_form(toy):
    x, y = _dense_xy(toy)
    k, beta = 5, 0.7
    h = np.vstack([x.T @ x, y.T @ x])  # Eq. 14
    hp = _brute_rank_k(h, k)  # Eq. 15-16
    model = HIRealtime(factors=k, beta=beta).fit(toy)
    np.testing.assert_allclose(model.h_prime(), hp, atol=1e-8)
    expected = np.hstack([x, beta * y]) @ hp  # Eq. 17
    np.testing.assert_allclose(
        model.score_all(np.arange(toy.n_users)), expected, rtol=1e-4, atol=1e-3
    )


def test_hi_rt_event_lists_equal_matrix_row(toy):
    model = HIRealtime(factors=6, beta=2.0).fit(toy)
    x, y = _dense_xy(toy)
    full = model.score_all(np.arange(toy.n_users))
    for u in (0, 7, 21):
        pos, neg = np.flatnonzero(x[u]), np.flatnonzero(y[u])
        single = model.score_events(pos[::-1], np.r_[neg, neg])  # order / repeats ignored
        np.testing.assert_allclose(single, full[u], rtol=1e-5, atol=1e-4)
    batch = model.score_events_batch(
        [np.flatnonzero(x[u]) for u in range(5)], [np.flatnonzero(y[u]) for u in range(5)]
    )
    np.testing.assert_allclose(batch, full[:5], rtol=1e-5, atol=1e-4)
    ids, _ = model.recommend_events(np.flatnonzero(x[3]), np.flatnonzero(y[3]), k=5)
    ref, _ = model.recommend([3], k=5)
    np.testing.assert_array_equal(ids, ref[0])


def test_hi_rt_beta_and_conflicting_events():
    data = _ratings(seed=3)
    model = HIRealtime(factors=4, beta=1.0).fit(data)
    n = data.n_items
    a1, a2, b = model.A_[:n], model.A_[n:], model.B_
    got = model.score_events([1, 2], [2, 5], beta=3.0)  # item 2 in both: counts positive
    np.testing.assert_allclose(got, (a1[1] + a1[2] + 3.0 * a2[5]) @ b, rtol=1e-5, atol=1e-5)
    ids, scores = model.recommend_events([1, 2], [5], k=n)
    assert set(ids[ids >= 0]).isdisjoint({1, 2, 5}) and (ids >= 0).sum() == n - 3
    ids_b, _ = model.recommend_events_batch([[1, 2]], [[5]], k=n)
    np.testing.assert_array_equal(ids_b[0], ids)


def test_cf_rt_ignores_negatives():
    data = _ratings(seed=4)
    model = P2PRecommender(factors=3).fit(data)
    np.testing.assert_allclose(
        model.score_events([0, 4], [1, 2, 3]), (model.P_[0] + model.P_[4]) @ model.Q_, atol=1e-5
    )


@pytest.mark.parametrize(
    ("cls", "params", "field"),
    [
        (P2PRecommender, {"factors": 0}, "factors"),
        (N2PRecommender, {"encoding": "binary"}, "encoding"),
        (HIRecommender, {"ratio": 1.5}, "ratio"),
        (HIRecommender, {"depth": 0}, "depth"),
        (HIRealtime, {"solver": "nope"}, "solver"),
        (HIRealtime, {"regularization": -1.0}, "regularization"),
    ],
)
def test_bad_hyperparameters_fail_at_construction(cls, params, field):
    with pytest.raises(ValueError, match=field):
        cls(**params)


def test_event_indices_are_checked(toy):
    model = HIRealtime(factors=3).fit(toy)
    with pytest.raises(ValueError):
        model.score_events([toy.n_items], [])
    with pytest.raises(NotFittedError):
        HIRealtime().score_events([0], [])


# ------------------------------------------------------------------ HI mixing


def _mix_reference(p, q, k, ratio, exclude):
    """Per-row loop implementing the documented rule literally."""
    out, src = [], []
    for b in range(p.shape[0]):
        lists = [
            [i for i in np.argsort(-p[b], kind="stable") if not exclude[b, i]],
            [i for i in np.argsort(-q[b], kind="stable") if not exclude[b, i]],
        ]
        chosen, chans = [], []
        for t in range(1, k + 1):
            slot = 0 if np.floor(ratio * t + 0.5) > np.floor(ratio * (t - 1) + 0.5) else 1
            for ch in (slot, 1 - slot):
                rest = [i for i in lists[ch] if i not in chosen]
                if rest:
                    chosen.append(rest[0])
                    chans.append(ch)
                    break
            else:
                chosen.append(-1)
                chans.append(-1)
        out.append(chosen)
        src.append(chans)
    return np.array(out), np.array(src)


@pytest.mark.parametrize("ratio,k", [(0.67, 10), (0.5, 7), (0.0, 5), (1.0, 5), (0.33, 20)])
def test_mix_puts_round_ratio_k_p2p_candidates(ratio, k):
    rng = np.random.default_rng(5)
    p = rng.integers(0, 6, (8, 40)).astype(float)  # many ties
    q = p + rng.integers(0, 3, (8, 40))  # strongly overlapping rankings: many duplicates
    excl = rng.random((8, 40)) < 0.2  # >= 20 items stay eligible per row
    ids, src = mix_candidates(p, q, k, ratio, exclude=excl)
    ref_ids, ref_src = _mix_reference(p, q, k, ratio, excl)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(src, ref_src)
    assert (excl.sum(axis=1) <= 40 - k).all()
    assert ((src == 0).sum(axis=1) == int(np.floor(ratio * k + 0.5))).all()
    for row in ids:
        assert len(set(row.tolist())) == k  # duplicates skipped, never repeated
    assert not excl[np.arange(8)[:, None], ids].any()


def test_mix_67_33_hand_example():
    # p2p ranks items 0 > 1 > 2 > ...; n2p ranks 0 > 5 > 6 > ...; k = 3, ratio 2/3
    p = np.array([[9.0, 8, 7, 6, 5, 0, 0]])
    q = np.array([[9.0, 0, 0, 0, 0, 8, 7]])
    ids, src = mix_candidates(p, q, 3, 0.67)
    # slots: t=1 round(.67)=1 -> p2p; t=2 round(1.34)=1 -> n2p; t=3 round(2.01)=2 -> p2p
    np.testing.assert_array_equal(ids[0], [0, 5, 1])  # n2p's best (0) taken: skip to 5
    np.testing.assert_array_equal(src[0], [0, 1, 0])


def test_mix_exhausted_channel_falls_back_and_pads():
    p = np.array([[3.0, 2.0, 1.0]])
    ids, src = mix_candidates(p, p, 5, 0.5, exclude=np.array([[False, False, True]]))
    np.testing.assert_array_equal(ids[0], [0, 1, -1, -1, -1])
    np.testing.assert_array_equal(src[0], [0, 1, -1, -1, -1])


def test_hi_recommender_uses_mix_and_excludes_seen(toy):
    model = HIRecommender(factors=4, ratio=0.67).fit(toy)
    users = np.arange(10)
    p2p, n2p = model.channel_scores(users)
    seen = model.user_items_[users].toarray() > 0
    ref, _ = mix_candidates(p2p, n2p, 10, 0.67, exclude=seen)
    ids, _ = model.recommend(users, k=10)
    np.testing.assert_array_equal(ids, ref)
    x, y = _dense_xy(toy)
    ev_ids, ev_src = model.recommend_events(np.flatnonzero(x[2]), np.flatnonzero(y[2]), k=10)
    np.testing.assert_array_equal(ev_ids, ref[2])
    assert (ev_src == 0).sum() == 7


# ------------------------------------------------------------------ persistence


@pytest.mark.parametrize(
    "model",
    [
        P2PRecommender(factors=4),
        N2PRecommender(factors=3),
        HIRecommender(factors=3, ratio=0.6),
        HIRealtime(factors=5, beta=0.5, threshold=3.0),
    ],
)
def test_save_load_round_trip(toy, model, tmp_path):
    model.fit(toy)
    path = model.save(tmp_path / "m.npz")
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users = np.arange(toy.n_users)
    np.testing.assert_array_equal(loaded.score_all(users), model.score_all(users))
    np.testing.assert_array_equal(loaded.recommend(users, 5)[0], model.recommend(users, 5)[0])


# ------------------------------------------------------------------ real data (optional)


@pytest.mark.data
def test_hi_rt_on_ml100k_row_equals_events(data_home):
    from divrec.data.movielens import load_movielens_100k

    data = load_movielens_100k(data_home)
    model = HIRealtime(factors=10).fit(data)
    u = 0
    pos = model.X_[u].indices
    neg = model.Y_[u].indices
    np.testing.assert_allclose(
        model.score_events(pos, neg), model.score_all([u])[0], rtol=1e-4, atol=1e-2
    )
    ids, _ = model.recommend_events(pos, neg, 10)
    assert (ids >= 0).all() and np.intersect1d(ids, np.r_[pos, neg]).size == 0


# ------------------------------------------------------------------ Test-RT requests


def test_test_rt_requests_split_each_users_test_events_by_time():
    from divrec.metrics import relevance_metrics
    from divrec.splitting import build_requests

    # user 0: train item 0 (5 stars); test items 1 (t=3, 2 stars), 2 (t=1, 4), 3 (t=2, 1)
    # user 1: no train; one test event (item 4, 3 stars) -> no context, evaluated
    full = Interactions(
        [0, 0, 0, 0, 1], [0, 1, 2, 3, 4], [5, 2, 4, 1, 3], [0, 1], np.arange(5),
        timestamps=[0, 3, 1, 2, 5],
    )  # fmt: skip
    train, test = full.select(np.array([0])), full.select(np.array([1, 2, 3, 4]))
    req = build_requests(train, test, context_fraction=0.5, threshold=3.0)
    np.testing.assert_array_equal(req.users, [0, 1])
    # user 0: floor(1.5) = 1 context event, the earliest (item 2, positive)
    np.testing.assert_array_equal(np.sort(req.pos[0]), [0, 2])
    assert req.neg[0].size == 0 and req.pos[1].size == 0 and req.neg[1].size == 0
    np.testing.assert_array_equal(req.eval_req, [0, 0, 1])
    np.testing.assert_array_equal(req.eval_items, [3, 1, 4])  # time order within a user
    np.testing.assert_array_equal(req.eval_labels, [False, False, True])
    scores = np.zeros((2, 5))
    scores[1, 4] = 1.0  # the positive outscores both negatives
    assert relevance_metrics(scores, req)["auc"] == 1.0


# ------------------------------------------------------------------ encodings, block_norm


def _dense_rating6(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros(data.shape)
    o = np.zeros(data.shape)
    x[data.users, data.items] = data.values / 6.0
    o[data.users, data.items] = 1.0
    return x, o - x


def test_hi_rt_rating6_encoding_factorizes_rating6_h(toy):
    x, y = _dense_rating6(toy)
    h = np.vstack([x.T @ x, y.T @ x])  # Eq. 14 with x = r/6, y = 1 - x
    model = HIRealtime(factors=toy.n_items, beta=0.5, encoding="rating6").fit(toy)
    np.testing.assert_allclose(model.h_prime(), h, rtol=1e-5, atol=1e-5)
    users = np.arange(toy.n_users)
    np.testing.assert_allclose(
        model.score_all(users), np.hstack([x, 0.5 * y]) @ h, rtol=1e-4, atol=1e-3
    )  # Eq. 17
    np.testing.assert_allclose(model.score_rows(x, y, 0.5), model.score_all(users), rtol=1e-5)


def test_hi_rt_block_norm_is_off_by_default_and_scales_blocks(toy):
    x, y = _dense_xy(toy)
    xtx, ytx = x.T @ x, y.T @ x
    default = HIRealtime(factors=toy.n_items).fit(toy)
    assert default.block_norm is False
    np.testing.assert_allclose(default.h_prime(), np.vstack([xtx, ytx]), atol=1e-8)
    normed = HIRealtime(factors=toy.n_items, block_norm=True).fit(toy)
    want = np.vstack([xtx / np.linalg.norm(xtx), ytx / np.linalg.norm(ytx)])
    np.testing.assert_allclose(normed.h_prime(), want, atol=1e-10)


def test_request_rows_rating6():
    from divrec.splitting import Requests, request_rows

    req = Requests(
        users=np.array([0]), pos=[np.array([1])], neg=[np.array([2])],
        eval_req=np.zeros(0, np.int64), eval_items=np.zeros(0, np.int64),
        eval_labels=np.zeros(0, bool), ctx_items=[np.array([1, 2])],
        ctx_values=[np.array([5.0, 2.0])],
    )  # fmt: skip
    x, y = request_rows(req, 4, "rating6", 3.0)
    np.testing.assert_allclose(x.toarray(), [[0, 5 / 6, 2 / 6, 0]])
    np.testing.assert_allclose(y.toarray(), [[0, 1 / 6, 4 / 6, 0]])
    x, y = request_rows(req, 4, "threshold", 3.0)
    np.testing.assert_allclose(x.toarray(), [[0, 1, 0, 0]])
    np.testing.assert_allclose(y.toarray(), [[0, 0, 1, 0]])
