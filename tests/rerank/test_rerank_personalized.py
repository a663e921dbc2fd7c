"""p-DPP entropy trade-off and the WeChat real-time propensity tracker (Eq. 2–3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from divrec.rerank import (
    FastGreedyDPP,
    PersonalizedDPP,
    RealtimePersonalizedDPP,
    RealtimePropensityTracker,
    entropy_theta,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def make_tracker() -> RealtimePropensityTracker:
    t = RealtimePropensityTracker(window=10.0, default_theta=0.42)
    # user A: e1, e2, (1,1)/√2 → pairs: 0, 1/√2, 1/√2 → s_A = √2/3
    t.update("A", np.array([1.0, 0.0]), 0.0)
    t.update("A", np.array([0.0, 1.0]), 1.0)
    t.update("A", np.array([3.0, 3.0]), 2.0)  # not unit: normalized by the tracker
    # user B: the same item twice → s_B = 1
    t.update("B", np.array([1.0, 0.0]), 3.0)
    t.update("B", np.array([2.0, 0.0]), 4.0)
    # user C: opposite items → s_C = −1
    t.update("C", np.array([1.0, 0.0]), 5.0)
    t.update("C", np.array([-1.0, 0.0]), 6.0)
    # user D: one positive → undefined; user E: one positive and a negative → undefined
    t.update("D", np.array([1.0, 0.0]), 7.0)
    t.update("E", np.array([0.0, 1.0]), 7.5)
    t.update("E", np.array([1.0, 0.0]), 8.0, positive=False)
    return t


def test_tracker_hand_computed():
    t = make_tracker()
    s_a, s_b, s_c = math.sqrt(2) / 3, 1.0, -1.0
    assert t.similarity("A", now=9.0) == pytest.approx(s_a)
    assert t.similarity("B") == pytest.approx(s_b)
    assert t.similarity("C") == pytest.approx(s_c)
    assert t.similarity("D") is None and t.similarity("E") is None
    assert t.similarity("nobody") is None
    # z-score over the users with a defined s (A, B, C), population std
    mean = (s_a + s_b + s_c) / 3  # = 0.157135
    std = math.sqrt(((s_a - mean) ** 2 + (s_b - mean) ** 2 + (s_c - mean) ** 2) / 3)  # 0.846197
    assert mean == pytest.approx(0.1571348, abs=1e-6)
    assert std == pytest.approx(0.8461970, abs=1e-6)
    assert t.theta("A") == pytest.approx(_sigmoid((s_a - mean) / std))  # ≈ 0.5918
    assert t.theta("B") == pytest.approx(_sigmoid((s_b - mean) / std))  # ≈ 0.7303
    assert t.theta("C") == pytest.approx(_sigmoid((s_c - mean) / std))  # ≈ 0.2030
    assert t.theta("A") == pytest.approx(0.5918, abs=1e-4)
    assert t.theta("D") == 0.42 and t.theta("E") == 0.42 and t.theta("nobody") == 0.42
    np.testing.assert_allclose(
        t.thetas(["B", "D", "C"]),
        [_sigmoid((s_b - mean) / std), 0.42, _sigmoid((s_c - mean) / std)],
    )


def test_tracker_time_window_eviction():
    t = make_tracker()
    # at 10.5 the window is (0.5, 10.5]: A keeps e2 and (1,1)/√2 → s_A = 1/√2
    assert t.similarity("A", now=10.5) == pytest.approx(1 / math.sqrt(2))
    assert t.n_positives("A") == 2
    # at 12.5: A has no event left in (2.5, 12.5]; B (3, 4) still there
    assert t.similarity("A", now=12.5) is None
    assert t.theta("A") == 0.42
    assert t.similarity("B") == pytest.approx(1.0)
    # with B and C left: mean 0, std 1 → θ_B = σ(1)
    assert t.theta("B") == pytest.approx(_sigmoid(1.0))
    # an event exactly window-old is out: at 16.0, C's event at 6.0 is dropped
    assert t.similarity("C", now=16.0) is None
    with pytest.raises(ValueError, match="before the tracker clock"):
        t.theta("B", now=1.0)


def test_tracker_single_defined_user_and_item_indices():
    items = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 5.0]])
    t = RealtimePropensityTracker(window=100.0, item_vectors=items)
    t.update_many(["u", "u", "u"], [0, 1, 2], [3.0, 1.0, 2.0])  # out of order is fine
    # pairs: e0·e1 = 0.6, e0·e2 = 0, e1·e2 = 0.8 → s = 1.4/3
    assert t.similarity("u") == pytest.approx(1.4 / 3)
    assert t.theta("u") == 0.5  # a single defined user: z = 0
    assert t.clock == 3.0
    with pytest.raises(ValueError, match="item_vectors"):
        RealtimePropensityTracker(window=1.0).update("u", 3, 0.0)
    with pytest.raises(ValueError, match="non-zero"):
        t.update("u", np.zeros(2), 4.0)


def test_entropy_theta_hand_computed():
    # H = 0 → θ_high; uniform → θ_low; [2, 2, 0, 0]: H = ln 2, h = ln2 / ln4 = 0.5
    assert entropy_theta([4, 0, 0, 0]) == pytest.approx(0.9)
    assert entropy_theta([1, 1, 1, 1]) == pytest.approx(0.3)
    assert entropy_theta([2, 2, 0, 0]) == pytest.approx(0.9 - 0.6 * 0.5)
    assert entropy_theta([0, 0, 0]) == 0.5  # no history → default
    np.testing.assert_allclose(
        entropy_theta([[4, 0, 0, 0], [2, 2, 0, 0]], theta_low=0.1, theta_high=0.7), [0.7, 0.4]
    )


def _request(seed: int, n: int = 30, d: int = 8):
    rng = np.random.default_rng(seed)
    return rng.random(n), rng.normal(size=(n, d))


def test_personalized_dpp_uses_request_theta():
    r, v = _request(0)
    p = PersonalizedDPP(theta_low=0.2, theta_high=0.8)
    counts = np.array([2, 2, 0, 0])  # θ = 0.8 − 0.6·0.5 = 0.5
    assert p.select(r, 10, vectors=v, user_category_counts=counts).tolist() == (
        FastGreedyDPP(theta=0.5).select(r, 10, vectors=v).tolist()
    )
    assert p.select(r, 10, vectors=v, theta=0.9).tolist() == (
        FastGreedyDPP(theta=0.9).select(r, 10, vectors=v).tolist()
    )
    assert (
        p.select(r, 10, vectors=v).tolist()
        == FastGreedyDPP(theta=0.5).select(r, 10, vectors=v).tolist()
    )
    # the personalization matters: a focused user keeps more of the relevance order
    focused = p.select(r, 10, vectors=v, user_category_counts=[9, 0, 0, 0])
    explorer = p.select(r, 10, vectors=v, user_category_counts=[1, 1, 1, 1])
    top = set(np.argsort(-r)[:10].tolist())
    assert len(top & set(focused.tolist())) >= len(top & set(explorer.tolist()))
    assert focused.tolist() != explorer.tolist()


def test_personalized_dpp_batch_equals_loop():
    rng = np.random.default_rng(1)
    bsz, n, d, k = 40, 25, 6, 10
    r = rng.random((bsz, n))
    v = rng.normal(size=(bsz, n, d))
    valid = rng.random((bsz, n)) < 0.8
    theta = rng.random(bsz)
    theta[:3] = [0.0, 1.0, 0.999]
    p = PersonalizedDPP(window=4)
    out = p.select_batch(r, k, vectors=v, valid=valid, theta=theta)
    counts = rng.integers(0, 4, size=(bsz, 5))
    out_c = p.select_batch(r, k, vectors=v, valid=valid, user_category_counts=counts)
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        ref = idx[FastGreedyDPP(theta=theta[b], window=4).select(r[b, idx], k, vectors=v[b, idx])]
        assert out[b, : len(ref)].tolist() == ref.tolist()
        ref_c = idx[p.select(r[b, idx], k, vectors=v[b, idx], user_category_counts=counts[b])]
        assert out_c[b, : len(ref_c)].tolist() == ref_c.tolist()


def test_realtime_dpp_uses_tracker_theta():
    t = make_tracker()
    r, v = _request(2)
    dpp = RealtimePersonalizedDPP(tracker=t)
    for user in ["A", "B", "C", "D"]:
        expected = FastGreedyDPP(theta=t.theta(user, now=9.0)).select(r, 12, vectors=v)
        assert dpp.select(r, 12, vectors=v, user=user, now=9.0).tolist() == expected.tolist()
    users = ["A", "C", "D"]
    out = dpp.select_batch(np.stack([r] * 3), 12, vectors=np.stack([v] * 3), users=users)
    for b, user in enumerate(users):
        expected = FastGreedyDPP(theta=t.theta(user)).select(r, 12, vectors=v)
        assert out[b].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="users"):
        dpp.select_batch(r[None], 3, vectors=v[None])


def _small_train():
    from divrec.data import SyntheticConfig, make_synthetic

    return make_synthetic(SyntheticConfig(n_users=20, n_items=50, n_topics=3, seed=2)).interactions


def test_pdpp_with_one_category_serves_requests():
    """One item category: p-DPP used to fit, then fail on every request (entropy needs
    K >= 2); it now serves default_theta, as without categories."""
    import scipy.sparse as sp

    from divrec.data.query import Candidates, Query
    from divrec.rerank import FastGreedyDPP, PersonalizedDPP

    train = _small_train()
    one = train.with_item_side_info(
        item_categories=sp.csr_matrix(np.ones((train.n_items, 1))), category_names=("all",)
    )
    vecs = np.random.default_rng(0).normal(size=(train.n_items, 4)).astype(np.float32)
    rr = PersonalizedDPP(default_theta=0.6).fit(one, item_vectors=vecs)
    cand = Candidates(np.arange(20)[None].repeat(3, 0), np.linspace(1, 0, 20)[None].repeat(3, 0))
    got = rr(Query(users=np.array([0, 1, 2])), cand, 5)
    want = FastGreedyDPP(theta=0.6).fit(one, item_vectors=vecs)(Query(users=[0, 1, 2]), cand, 5)
    np.testing.assert_array_equal(got.ids, want.ids)


@pytest.mark.parametrize("name", ["pdpp", "ia-mmr"])
def test_out_of_range_user_is_a_value_error_naming_it(name):
    """Calling the stage with a user outside the fitted ones raised IndexError."""
    from divrec.data.query import Candidates, Query
    from divrec.rerank import InterestAwareMMR, PersonalizedDPP

    train = _small_train()
    rr = (PersonalizedDPP() if name == "pdpp" else InterestAwareMMR()).fit(train)
    cand = Candidates(np.arange(10)[None].repeat(2, 0), np.linspace(1, 0, 10)[None].repeat(2, 0))
    with pytest.raises(ValueError, match=f"user {train.n_users + 3} is outside the fitted"):
        rr(Query(users=np.array([0, train.n_users + 3])), cand, 5)
    rr(Query(users=np.array([0, train.n_users - 1])), cand, 5)


def test_ia_mmr_refuses_nan_lambda():
    from divrec.params import ParamError
    from divrec.rerank import InterestAwareMMR

    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ParamError, match="lambda_"):
            InterestAwareMMR(lambda_=bad)
