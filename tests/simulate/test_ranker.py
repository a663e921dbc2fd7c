"""The loop's click-model ranker: the logistic fit and AUC against brute force, its features
by hand, and its use in the loop (with declines fed to the retriever)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from divrec.data.query import Candidates
from divrec.simulate.ranker import ExposureRanker, fit_logistic, roc_auc


def test_fit_logistic_matches_generic_optimizer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (rng.random(300) < 1 / (1 + np.exp(-(x @ [1.0, -2.0, 0.5] + 0.3)))).astype(float)
    l2 = 2.0

    def objective(w):
        m = w[0] + x @ w[1:]
        return np.sum(np.logaddexp(0.0, -(2 * y - 1) * m)) + l2 * np.sum(w[1:] ** 2) / 2

    want = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose(fit_logistic(x, y, l2), want, atol=1e-4)
    warm = fit_logistic(x, y, l2, init=np.array([3.0, -1.0, 2.0, 0.0]))
    np.testing.assert_allclose(warm, want, atol=1e-4)  # strictly convex: one optimum


def test_roc_auc_is_the_pairwise_win_rate():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.random(60) < 0.3
    pos, neg = s[y], s[~y]
    want = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(s, y) == pytest.approx(want)
    assert np.isnan(roc_auc(s, np.zeros(60, bool)))


def test_features_by_hand_and_learning_from_exposures():
    attrs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    r = ExposureRanker(attrs, profiles=np.array([[2.0, 0.0], [0.0, 1.0]]), prior=10.0)
    cand = Candidates(
        np.array([[0, 1, 2], [2, 1, -1]]), np.array([[0.9, 0.5, 0.1], [0.3, 0.2, -np.inf]])
    )
    x = r.features(np.array([0, 1]), cand)
    np.testing.assert_allclose(x[0, :, 0], [0.9, 0.5, 0.1])
    np.testing.assert_allclose(x[0, :, 1], [1.0, 0.0, 1 / np.sqrt(2)])  # cos to profile (2, 0)
    np.testing.assert_allclose(x[1, :2, 1], [1 / np.sqrt(2), 1.0])
    assert (x[1, 2] == 0).all()  # padding
    np.testing.assert_allclose(x[..., 2], 0.0)  # no previous-round clicks yet
    # no exposure yet: the global rate is 0, ctr = log(1e-6 / (10 + 1e-6))
    np.testing.assert_allclose(x[0, :, 3], np.log(1e-6 / (10 + 1e-6)))
    ranked, _ = r.rank(np.array([0, 1]), cand)
    np.testing.assert_array_equal(ranked.ids, cand.ids)  # unfitted: retrieval order
    # users click the item matching their profile, never the retrieval favourite
    users = np.array([0, 1] * 20)
    lists = np.tile(np.array([[0, 1, 2], [2, 1, -1]]), (20, 1))
    c2 = Candidates(lists, np.tile(cand.scores, (20, 1)))
    clicked = np.tile(np.array([[False, False, True], [False, True, False]]), (20, 1))
    clicked[:2] = [[True, False, False], [False, False, False]]  # some label noise
    r.observe(users, lists, clicked, r.features(users, c2))
    assert r.exposures.tolist() == [20, 40, 40] and r.clicks.tolist() == [1, 19, 19]
    np.testing.assert_allclose(r.recent[1], [0.0, 1.0])  # user 1's last clicks: item 1
    ranked, _ = r.rank(np.array([0, 1]), cand)
    assert ranked.ids[1, 0] == 1 and ranked.ids[0, -1] == 1  # learnt from the exposures
