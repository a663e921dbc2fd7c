"""Calibrated re-ranking (Steck 2018 Eq. 6): hand cases, brute force, properties, stage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data import Interactions
from divrec.data.query import Candidates, Query
from divrec.metrics import kl_miscalibration
from divrec.rerank.calibration import CalibratedReranker


def brute_force_greedy(r, shares, p, k, lam, alpha):
    """Each step tries every remaining candidate and evaluates the full objective
    (1 − λ) Σ rel − λ C_KL(p, q̃(S ∪ {i})) with the metric's own divergence."""
    chosen: list[int] = []
    for _ in range(min(k, r.size)):
        best, best_val = -1, -math.inf
        for i in range(r.size):
            if i in chosen:
                continue
            s = [*chosen, i]
            q = shares[s].sum(axis=0) / len(s)
            val = (1 - lam) * float(r[s].sum()) - lam * float(kl_miscalibration(p, q, alpha))
            if val > best_val + 1e-12:
                best, best_val = i, val
        chosen.append(best)
    return chosen


def test_hand_computed_two_steps():
    # categories: items 0, 1 → A; item 2 → B; p = (½, ½); λ = 1 (calibration only)
    r = np.array([1.0, 0.9, 0.0])
    cats = np.array([0, 0, 1])
    p = np.array([0.5, 0.5])
    # step 1: any single item gives q = one-hot, KL equal for A and B items → tie, lowest
    # position (0); step 2: item 2 gives q = p (KL 0), item 1 gives q = (1, 0)
    got = CalibratedReranker(lambda_=1.0).select(r, 2, categories=cats, target=p)
    assert got.tolist() == [0, 2]
    # λ = 0.5 with raw relevance: step 2 gains ½·0.9 − ½·KL((½,½) ‖ (0.995, 0.005)) for 1
    # vs ½·0 − 0 for 2; KL = ½ ln(0.5/0.995) + ½ ln(100) ≈ 1.96 → item 2 still wins
    kl1 = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005)
    assert 0.5 * 0.9 - 0.5 * kl1 < 0.0
    rr = CalibratedReranker(lambda_=0.5, relevance_scaling="raw")
    assert rr.select(r, 2, categories=cats, target=p).tolist() == [0, 2]
    # but a large relevance gap wins over calibration
    big = np.array([10.0, 9.0, 0.0])
    assert rr.select(big, 2, categories=cats, target=p).tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 8),
    c=st.integers(1, 4),
    k=st.integers(0, 6),
    lam=st.sampled_from([0.1, 0.4, 0.7, 0.95, 1.0]),
    alpha=st.sampled_from([0.01, 0.2]),
)
def test_greedy_equals_brute_force(seed, n, c, k, lam, alpha):
    rng = np.random.default_rng(seed)
    r = rng.permutation(n).astype(np.float64) / n + rng.random(n) * 1e-3
    multi = rng.random((n, c)) < 0.5
    shares = multi / np.maximum(multi.sum(axis=1, keepdims=True), 1)
    p = rng.dirichlet(np.ones(c))
    got = CalibratedReranker(lambda_=lam, alpha=alpha, relevance_scaling="raw").select(
        r, k, shares=shares, target=p
    )
    assert got.tolist() == brute_force_greedy(r, shares, p, k, lam, alpha)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 12), k=st.integers(0, 12))
def test_lambda_zero_is_the_relevance_order(seed, n, k):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 4, n).astype(np.float64)  # many exact ties
    cats = rng.integers(0, 3, n)
    p = np.array([0.2, 0.3, 0.5])
    got = CalibratedReranker(lambda_=0.0).select(r, k, categories=cats, target=p)
    assert got.tolist() == np.argsort(-r, kind="stable")[:k].tolist()


def test_no_history_is_the_relevance_order_and_batch_equals_rows():
    rng = np.random.default_rng(3)
    r = rng.random((5, 9))
    cats = rng.integers(0, 3, (5, 9))
    target = rng.dirichlet(np.ones(3), 5)
    target[2] = 0.0
    valid = rng.random((5, 9)) < 0.8
    rr = CalibratedReranker(lambda_=0.8)
    got = rr.select_batch(r, 4, categories=cats, target=target, valid=valid)
    for b in range(5):
        idx = np.flatnonzero(valid[b])
        one = rr.select(r[b, idx], 4, categories=cats[b, idx], target=target[b])
        assert got[b, : one.size].tolist() == idx[one].tolist()
        assert (got[b, one.size :] == -1).all()
    idx = np.flatnonzero(valid[2])
    assert (
        got[2, : min(4, idx.size)].tolist()
        == idx[np.argsort(-r[2, idx], kind="stable")][:4].tolist()
    )


def test_calibration_lowers_the_divergence():
    rng = np.random.default_rng(0)
    n, c = 60, 5
    r = rng.random(n)
    cats = rng.integers(0, c, n)
    shares = np.eye(c)[cats]
    p = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    kls = []
    for lam in (0.0, 0.5, 0.9, 0.99):
        sel = CalibratedReranker(lambda_=lam).select(r, 10, categories=cats, target=p)
        kls.append(float(kl_miscalibration(p, shares[sel].mean(axis=0))))
    assert kls[-1] < kls[0] and all(b <= a + 1e-12 for a, b in zip(kls, kls[1:], strict=False))


def test_bad_input_is_one_line():
    rr = CalibratedReranker()
    with pytest.raises(ValueError, match="target"):
        rr.select(np.ones(3), 2, categories=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="shares"):
        rr.select(np.ones(3), 2, target=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="target has 1 categories"):
        rr.select(np.ones(2), 2, shares=np.eye(2), target=np.array([1.0]))
    with pytest.raises(ValueError, match="target must be finite"):
        rr.select(np.ones(2), 2, shares=np.eye(2), target=np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="lambda_"):
        CalibratedReranker(lambda_=1.5)
    with pytest.raises(ValueError, match="alpha"):
        CalibratedReranker(alpha=0.0)


def _data():
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 3, 4, 0, 5])
    cats = sp.csr_matrix(
        np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    )
    return Interactions.from_arrays(users, items).with_item_side_info(
        item_categories=cats, category_names=("a", "b", "c")
    )


def test_stage_reads_multi_genre_shares_and_histories():
    data = _data()
    rr = CalibratedReranker(lambda_=0.9).fit(data, item_vectors=np.eye(6))
    # user 0: items 0 (a), 1 (a, b → ½ each), 2 (b) → p = (1.5, 1.5, 0) / 3
    np.testing.assert_allclose(rr.user_target_.toarray()[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(rr.item_shares_.toarray()[5], [0.5, 0.0, 0.5])
    ids = np.array([[3, 4, 5, 1, 2], [3, 4, 5, 1, 2]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]] * 2)
    cand = Candidates(ids, scores)
    got = rr(Query(users=np.array([0, 1])), cand, 3).ids
    want = rr.select_batch(
        scores,
        3,
        shares=rr.item_shares_.toarray()[ids],
        target=rr.user_target_.toarray()[[0, 1]],
    )
    assert got.tolist() == np.take_along_axis(ids, want, axis=1).tolist()
    # a fresh history replaces the training row: history of c items → calibrated to c
    fresh = rr(Query(users=np.array([0, 0]), history=[[3], [0]]), cand, 2).ids
    assert fresh[0].tolist() == [3, 4]
    # the knob 0 is the relevance order
    zero = rr(Query(users=np.array([0, 1]), diversity=np.zeros(2)), cand, 3).ids
    assert zero.tolist() == ids[:, :3].tolist()


def test_fit_without_categories_is_an_error():
    data = Interactions.from_arrays(np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="item categories"):
        CalibratedReranker().fit(data, item_vectors=np.eye(2))


def test_knob_rows_equal_the_reranker_built_with_that_lambda():
    """`diversity=auto` in the service sets the knob to 1 − θ_u of the propensity tracker;
    the knob is λ itself, row by row, in one batch."""
    data = _data()
    rr = CalibratedReranker().fit(data, item_vectors=np.eye(6))
    ids = np.array([[3, 4, 5, 1, 2, 0]] * 3)
    cand = Candidates(ids, np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * 3))
    knob = np.array([0.2, 0.7, 1.0])
    users = np.array([0, 1, 2])
    got = rr(Query(users=users, diversity=knob), cand, 4).ids
    for b, lam in enumerate(knob):
        one = CalibratedReranker(lambda_=float(lam)).fit(data, item_vectors=np.eye(6))
        assert (
            got[b].tolist()
            == one(
                Query(users=users[b : b + 1]), Candidates(ids[b : b + 1], cand.scores[b : b + 1]), 4
            )
            .ids[0]
            .tolist()
        )
