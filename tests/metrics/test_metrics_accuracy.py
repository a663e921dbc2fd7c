"""Tests for divrec.metrics.accuracy: hand-computed examples, brute force, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import precision_recall_curve, roc_auc_score

from divrec.metrics import (
    auc,
    hit_rate_at_k,
    hits_matrix,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_user_auc,
    precision_at_k,
    precision_at_recall,
    recall_at_k,
    recall_at_precision,
    relevant_counts,
)

LOG2_3 = math.log2(3)

# ---------------------------------------------------------------------------------------------
# Hand-computed examples
# ---------------------------------------------------------------------------------------------


def test_hits_matrix_hand_example():
    # user 0 relevant {0, 2} (+ an explicitly stored zero at item 3: not relevant)
    # user 1 relevant {4}
    rel = sp.csr_matrix(
        (np.array([1.0, 1.0, 0.0, 1.0]), (np.array([0, 0, 0, 1]), np.array([2, 0, 3, 4]))),
        shape=(2, 5),
    )
    rec = np.array([[3, 0, -1], [1, 2, 4]])
    expected = np.array([[False, True, False], [False, False, True]])
    np.testing.assert_array_equal(hits_matrix(rec, rel), expected)
    np.testing.assert_array_equal(relevant_counts(rel), [2, 1])


def test_hits_matrix_padding_never_hits_item_zero():
    # item 0 is relevant for the only user; the -1 padding must not be read as item 0
    rel = sp.csr_matrix(np.array([[1, 0, 0]]))
    np.testing.assert_array_equal(hits_matrix(np.array([[-1, 0, -1]]), rel), [[False, True, False]])


def test_hits_matrix_validation():
    rel = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        hits_matrix(np.zeros((2, 2), dtype=np.int64), rel)
    with pytest.raises(ValueError, match="only 3 items"):
        hits_matrix(np.array([[0], [1], [3]]), rel)
    with pytest.raises(ValueError, match="padding"):
        hits_matrix(np.array([[0], [1], [-2]]), rel)
    with pytest.raises(ValueError, match="integer"):
        hits_matrix(np.array([[0.0], [1.0], [2.0]]), rel)
    with pytest.raises(ValueError, match="scipy.sparse"):
        hits_matrix(np.array([[0], [1], [2]]), np.eye(3))


# Shared hand example for the per-user top-k metrics, k = 3 (the 4th column must be ignored):
#   u0 hits [1,0,1,0], n_rel 3;  u1 hits [0,0,0,1], n_rel 2;
#   u2 hits [0,1,0,0], n_rel 1;  u3 hits [0,0,0,0], n_rel 0.
HITS = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
NREL = np.array([3, 2, 1, 0])


def test_hit_rate_hand():
    np.testing.assert_array_equal(hit_rate_at_k(HITS, 3), [1.0, 0.0, 1.0, 0.0])
    # with k = 4 user 1's hit at rank 4 counts
    np.testing.assert_array_equal(hit_rate_at_k(HITS, 4), [1.0, 1.0, 1.0, 0.0])


def test_precision_hand():
    # u0: 2/3, u1: 0/3, u2: 1/3, u3: 0/3
    np.testing.assert_allclose(precision_at_k(HITS, 3), [2 / 3, 0.0, 1 / 3, 0.0])


def test_recall_hand():
    # u0: 2/3, u1: 0/2, u2: 1/1, u3: n_rel = 0 -> NaN
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 3), [2 / 3, 0.0, 1.0, np.nan])
    # k = 4: u1: 1/2
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 4), [2 / 3, 0.5, 1.0, np.nan])


def test_ndcg_hand():
    # u0: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG(min(3,3)=3) = 1 + 1/log2(3) + 1/2
    # u1: 0 (hit at rank 4 > k)
    # u2: DCG = 1/log2(3); IDCG(min(1,3)=1) = 1
    # u3: NaN
    u0 = 1.5 / (1 + 1 / LOG2_3 + 0.5)  # = 1.5 / 2.13093 = 0.70392
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 3), [u0, 0.0, 1 / LOG2_3, np.nan])
    assert u0 == pytest.approx(0.70392, abs=1e-5)
    # k = 4, u1: DCG = 1/log2(5); IDCG(min(2,4)=2) = 1 + 1/log2(3)
    assert ndcg_at_k(HITS, NREL, 4)[1] == pytest.approx((1 / math.log2(5)) / (1 + 1 / LOG2_3))


def test_mrr_hand():
    # first hits at ranks 1, none within 3, 2, none -> 1, 0, 1/2, 0
    np.testing.assert_allclose(mrr_at_k(HITS, 3), [1.0, 0.0, 0.5, 0.0])
    # k = 4: u1 first hit at rank 4 -> 1/4
    assert mrr_at_k(HITS, 4)[1] == pytest.approx(0.25)


def test_map_hand():
    # u0: (P@1 + P@3) / min(3, 3) = (1 + 2/3) / 3 = 5/9
    # u1: 0;  u2: P@2 / min(1, 3) = (1/2) / 1;  u3: NaN
    np.testing.assert_allclose(map_at_k(HITS, NREL, 3), [5 / 9, 0.0, 0.5, np.nan])
    # k = 4, u1: P@4 / min(2, 4) = (1/4) / 2 = 1/8
    assert map_at_k(HITS, NREL, 4)[1] == pytest.approx(0.125)


def test_map_denominator_capped_at_k():
    # 5 relevant items, perfect top-2: AP@2 = (1 + 1) / min(5, 2) = 1
    assert map_at_k(np.array([[True, True]]), np.array([5]), 2)[0] == pytest.approx(1.0)


def test_topk_validation():
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k(HITS, 0)
    with pytest.raises(ValueError, match="positive integer"):
        hit_rate_at_k(HITS, 2.0)
    with pytest.raises(ValueError, match="exceeds"):
        mrr_at_k(HITS, 5)
    with pytest.raises(ValueError, match="n_relevant must have shape"):
        recall_at_k(HITS, NREL[:3], 3)
    with pytest.raises(ValueError, match="non-negative"):
        ndcg_at_k(HITS, -NREL, 3)
    with pytest.raises(ValueError, match="0/1"):
        map_at_k(HITS * 2, NREL, 3)


def test_auc_hand():
    # positives 0.35, 0.8; negatives 0.1, 0.4
    # pairs won: (0.35>0.1) (0.8>0.1) (0.8>0.4) = 3 of 4 -> 0.75
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # ties: positives 1, 2; negatives 1, 0: (1=1)->0.5, (1>0), (2>1), (2>0) -> 3.5/4
    assert auc(np.array([1.0, 1.0, 2.0, 0.0]), np.array([1, 0, 1, 0])) == pytest.approx(0.875)
    # all tied -> 0.5
    assert auc(np.zeros(4), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert math.isnan(auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_auc_validation():
    with pytest.raises(ValueError, match="does not match"):
        auc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        auc(np.array([np.nan, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        auc(np.array([0.0, 1.0]), np.array([0, 2]))


def test_per_user_auc_hand():
    scores = np.array(
        [
            [0.1, 0.4, 0.35, 0.8],  # 0.75 (see test_auc_hand)
            [0.9, 0.2, 0.5, np.nan],  # last entry invalid; pos 0.2 vs negs 0.9, 0.5 -> 0
            [0.3, 0.1, 0.2, 0.0],  # no negative -> NaN
            [0.5, 0.5, 0.1, 0.7],  # pos 0.5 vs negs 0.5 (tie 0.5), 0.1 (1); 0.7 invalid -> 0.75
        ]
    )
    labels = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 1]], dtype=bool)
    valid = np.array(
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]],
        dtype=bool,
    )
    np.testing.assert_allclose(per_user_auc(scores, labels, valid), [0.75, 0.0, np.nan, 0.75])


def test_per_user_auc_validation():
    with pytest.raises(ValueError, match="valid shape"):
        per_user_auc(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="finite"):
        per_user_auc(np.array([[np.inf, 0.0]]), np.array([[1, 0]]))


# PR example: sorted scores 0.9 .. 0.4 with labels 1,0,1,1,0,1 (P = 4). Thresholds:
#   t=.9: 1/1 R .25 | t=.8: 1/2 R .25 | t=.7: 2/3 R .5 | t=.6: 3/4 R .75
#   t=.5: 3/5 R .75 | t=.4: 4/6 R 1
PR_S = np.array([0.5, 0.9, 0.7, 0.8, 0.4, 0.6])  # shuffled on purpose
PR_Y = np.array([0, 1, 1, 0, 1, 1])


def test_precision_at_recall_hand():
    # recall >= 0.8 only at t=.4 -> 4/6
    assert precision_at_recall(PR_S, PR_Y, 0.8) == pytest.approx(2 / 3)
    # recall >= 0.75 at t=.6 (3/4), .5 (3/5), .4 (4/6) -> best 0.75
    assert precision_at_recall(PR_S, PR_Y, 0.75) == pytest.approx(0.75)
    # ties are not split: scores (.9,.9,.1), labels (1,0,1):
    # t=.9 -> P 1/2 R 1/2; t=.1 -> P 2/3 R 1 -> best precision with R >= .5 is 2/3
    assert precision_at_recall(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1]), 0.5) == (
        pytest.approx(2 / 3)
    )
    assert math.isnan(precision_at_recall(PR_S, np.zeros(6), 0.8))


def test_recall_at_precision_hand():
    # precision >= .85 only at t=.9 -> R .25
    assert recall_at_precision(PR_S, PR_Y, 0.85) == pytest.approx(0.25)
    # precision >= .7 at t=.9 (R .25) and t=.6 (R .75) -> .75
    assert recall_at_precision(PR_S, PR_Y, 0.7) == pytest.approx(0.75)
    # precision >= .6 everywhere except t=.8 (.5) -> max recall 1
    assert recall_at_precision(PR_S, PR_Y, 0.6) == pytest.approx(1.0)
    # top item negative: precision 1 never reached -> 0
    assert recall_at_precision(np.array([0.9, 0.5]), np.array([0, 1]), 1.0) == 0.0
    # tie (.9,.9) with labels (1,0): P .5 at R .5, then P 2/3 at R 1 -> target .6 gives 1
    assert recall_at_precision(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1]), 0.6) == 1.0


def test_pr_validation():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        precision_at_recall(PR_S, PR_Y, 0.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        recall_at_precision(PR_S, PR_Y, 1.5)


# ---------------------------------------------------------------------------------------------
# Brute force on random data
# ---------------------------------------------------------------------------------------------


def _random_case(rng, n_users=40, n_items=30, k=8):
    dense = rng.random((n_users, n_items)) < 0.15
    dense[rng.integers(0, n_users, 3)] = False  # some users without relevant items
    rel = sp.csr_matrix(dense.astype(np.float64))
    rec = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    pad = rng.random((n_users, k)) < 0.15
    rec[pad] = -1
    return dense, rel, rec


def _brute_metrics(rec_row, relevant_set, k):
    """Reference per-user metrics written as plain Python loops."""
    hits = [int(i >= 0 and i in relevant_set) for i in rec_row[:k]]
    n_rel = len(relevant_set)
    hr = float(any(hits))
    prec = sum(hits) / k
    rr = 0.0
    for r, h in enumerate(hits, start=1):
        if h:
            rr = 1.0 / r
            break
    if n_rel == 0:
        return hr, prec, float("nan"), float("nan"), rr, float("nan")
    rec_ = sum(hits) / n_rel
    dcg = sum(h / math.log2(r + 1) for r, h in enumerate(hits, start=1))
    idcg = sum(1 / math.log2(r + 1) for r in range(1, min(n_rel, k) + 1))
    ap, n_found = 0.0, 0
    for r, h in enumerate(hits, start=1):
        if h:
            n_found += 1
            ap += n_found / r
    ap /= min(n_rel, k)
    return hr, prec, rec_, dcg / idcg, rr, ap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_metrics_vs_brute_force(seed):
    rng = np.random.default_rng(seed)
    dense, rel, rec = _random_case(rng)
    hits = hits_matrix(rec, rel)
    for u in range(rec.shape[0]):
        relevant_set = set(np.flatnonzero(dense[u]).tolist())
        for r in range(rec.shape[1]):
            assert hits[u, r] == (rec[u, r] >= 0 and rec[u, r] in relevant_set)
    n_rel = relevant_counts(rel)
    np.testing.assert_array_equal(n_rel, dense.sum(axis=1))
    for k in (1, 3, 8):
        got = np.stack(
            [
                hit_rate_at_k(hits, k),
                precision_at_k(hits, k),
                recall_at_k(hits, n_rel, k),
                ndcg_at_k(hits, n_rel, k),
                mrr_at_k(hits, k),
                map_at_k(hits, n_rel, k),
            ],
            axis=1,
        )
        want = np.array(
            [
                _brute_metrics(rec[u], set(np.flatnonzero(dense[u]).tolist()), k)
                for u in range(rec.shape[0])
            ]
        )
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _brute_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    total = 0.0
    for p in pos:
        for n in neg:
            total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_auc_vs_sklearn_and_pair_count(seed):
    rng = np.random.default_rng(seed)
    n = 300
    scores = np.round(rng.normal(size=n), 1)  # many ties
    labels = rng.random(n) < 0.3
    got = auc(scores, labels)
    assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert got == pytest.approx(_brute_auc(scores, labels), abs=1e-12)


def test_per_user_auc_vs_sklearn():
    rng = np.random.default_rng(5)
    n_users, n_cand = 30, 25
    scores = np.round(rng.normal(size=(n_users, n_cand)), 1)
    labels = rng.random((n_users, n_cand)) < 0.3
    valid = rng.random((n_users, n_cand)) < 0.8
    scores[~valid] = np.nan  # invalid entries may hold anything
    got = per_user_auc(scores, labels, valid)
    for u in range(n_users):
        y, s = labels[u][valid[u]], scores[u][valid[u]]
        if y.all() or not y.any():
            assert math.isnan(got[u])
        else:
            assert got[u] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def _brute_pr_points(scores, labels):
    pts = []
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & labels)
        pts.append((tp / pred.sum(), tp / labels.sum()))
    return pts


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_pr_operating_points_vs_brute_force_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 200
    labels = rng.random(n) < 0.5
    scores = np.round(labels * 0.7 + rng.normal(size=n), 1)
    pts = _brute_pr_points(scores, labels)
    sk_p, sk_r, _ = precision_recall_curve(labels, scores)
    for target in (0.3, 0.5, 0.8, 1.0):
        want = max(p for p, r in pts if r >= target)
        assert precision_at_recall(scores, labels, target) == pytest.approx(want)
        assert precision_at_recall(scores, labels, target) == pytest.approx(
            sk_p[sk_r >= target].max()
        )
    for target in (0.5, 0.7, 0.85, 1.0):
        ok = [r for p, r in pts if p >= target]
        want = max(ok) if ok else 0.0
        assert recall_at_precision(scores, labels, target) == pytest.approx(want)
        # sklearn appends the point (precision 1, recall 0), which is the "0 if none" case
        assert recall_at_precision(scores, labels, target) == pytest.approx(
            sk_r[sk_p >= target].max()
        )


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@st.composite
def hits_and_counts(draw):
    hits = draw(hnp.arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 8))))
    extra = draw(hnp.arrays(np.int64, hits.shape[0], elements=st.integers(0, 5)))
    return hits, hits.sum(axis=1) + extra  # consistent: n_relevant >= number of hits


@settings(max_examples=60, deadline=None)
@given(hits_and_counts(), st.integers(1, 8))
def test_topk_metrics_in_unit_interval(case, k):
    hits, n_rel = case
    k = min(k, hits.shape[1])
    for values in (
        hit_rate_at_k(hits, k),
        precision_at_k(hits, k),
        recall_at_k(hits, n_rel, k),
        ndcg_at_k(hits, n_rel, k),
        mrr_at_k(hits, k),
        map_at_k(hits, n_rel, k),
    ):
        v = values[~np.isnan(values)]
        assert np.all((v >= 0) & (v <= 1 + 1e-12))
    # NaN exactly where there is no relevant item
    assert np.array_equal(np.isnan(ndcg_at_k(hits, n_rel, k)), n_rel == 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(1, 10))
def test_perfect_ranking_scores_one(n_rel_list, k):
    n_rel = np.array(n_rel_list)
    # perfect ranking: relevant items fill the first min(n_rel, k) slots
    hits = np.arange(k)[None, :] < n_rel[:, None]
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel, k), 1.0)
    np.testing.assert_allclose(map_at_k(hits, n_rel, k), 1.0)
    np.testing.assert_allclose(mrr_at_k(hits, k), 1.0)
    np.testing.assert_allclose(recall_at_k(hits, n_rel, k), np.minimum(n_rel, k) / n_rel)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 40))
def test_auc_symmetries(seed, n):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=n), 1)
    labels = rng.random(n) < 0.5
    a = auc(scores, labels)
    if labels.all() or not labels.any():
        assert math.isnan(a)
        return
    assert 0.0 <= a <= 1.0
    # reversing the scores mirrors the AUC; a strictly increasing transform keeps it
    assert auc(-scores, labels) == pytest.approx(1.0 - a, abs=1e-12)
    assert auc(np.exp(scores) * 3 + 1, labels) == pytest.approx(a, abs=1e-12)
    # per-row AUC of a row permutation equals the global AUC
    perm = rng.permutation(n)
    assert per_user_auc(scores[perm][None], labels[perm][None])[0] == pytest.approx(a)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_hits_padding_ignored(seed):
    rng = np.random.default_rng(seed)
    _, rel, rec = _random_case(rng, n_users=5, n_items=10, k=4)
    hits = hits_matrix(rec, rel)
    assert not hits[rec < 0].any()
    # appending padding columns adds no hit and keeps the metrics
    padded = np.hstack([rec, np.full((5, 3), -1)])
    hits_p = hits_matrix(padded, rel)
    np.testing.assert_array_equal(hits_p[:, :4], hits)
    assert not hits_p[:, 4:].any()
    n_rel = relevant_counts(rel)
    # recall does not depend on k beyond the hits, so padding columns must leave it unchanged
    np.testing.assert_allclose(recall_at_k(hits_p, n_rel, 7), recall_at_k(hits, n_rel, 4))
