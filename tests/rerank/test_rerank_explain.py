"""explain=True (issue 27, item 4): per returned item, checked against a hand computation
on a 4-item MMR case (λ = ½, minmax relevance, cosine similarity)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from divrec.data.constraints import Constraints, check_list
from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.rerank import MMR, SSD, FastGreedyDPP

# items 0 and 1 point the same way, 2 is orthogonal to them, 3 halfway between
VECS = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
S = 1.0 / math.sqrt(2.0)


def _fitted(model):
    data = Interactions.from_arrays(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]))
    return model.fit(data, item_vectors=VECS)


def _cand():
    return Candidates(np.array([[0, 1, 2, 3]]), np.array([[4.0, 3.0, 2.0, 1.0]]))


def test_mmr_hand_computation():
    # relevance 4, 3, 2, 1 -> minmax r = 1, 2/3, 1/3, 0; gain = r/2 - max sim/2
    out = _fitted(MMR(lambda_=0.5))(Query(np.array([0]), exclude_seen=False, explain=True),
                                     _cand(), 3)  # fmt: skip
    assert out.ids[0].tolist() == [0, 2, 1]
    ex = out.explanations[0]
    assert [e["item"] for e in ex] == [0, 2, 1] and [e["position"] for e in ex] == [0, 1, 2]
    assert [e["relevance"] for e in ex] == [4.0, 2.0, 3.0]
    assert [e["rank_before"] for e in ex] == [1, 3, 2]
    # step 1: the most relevant item, no diversity term
    assert ex[0]["relevance_part"] == pytest.approx(0.5)
    assert ex[0]["diversity_part"] == 0.0 and ex[0]["penalized_by"] is None
    # step 2: item 2 (r = 1/3) is orthogonal to item 0: gain 1/6, penalizer item 0 (sim 0)
    assert ex[1]["gain"] == pytest.approx(1 / 6)
    assert ex[1]["relevance_part"] == pytest.approx(1 / 6)
    assert ex[1]["diversity_part"] == pytest.approx(0.0, abs=1e-7)
    assert ex[1]["penalized_by"] == 0
    # step 3: item 1 (r = 2/3) duplicates item 0: 1/3 - 1/2 = -1/6 beats item 3's
    # 0 - S/2; penalized most by item 0 (sim 1 against 0 for item 2)
    assert ex[2]["gain"] == pytest.approx(-1 / 6, rel=1e-6)
    assert ex[2]["relevance_part"] == pytest.approx(1 / 3)
    assert ex[2]["diversity_part"] == pytest.approx(-0.5, rel=1e-6)
    assert ex[2]["penalized_by"] == 0
    assert all(e["rule"] is None for e in ex)


def test_rules_pin_boost_minimum():
    model = _fitted(MMR(lambda_=0.5))
    q = Query(np.array([0]), exclude_seen=False, explain=True,
              constraints=Constraints(pins={3: 0}))  # fmt: skip
    ex = model(q, _cand(), 2).explanations[0]
    # item 3 pinned first (gain r/2 = 0), then item 0: 1/2 - S/2, penalized by item 3
    assert [e["item"] for e in ex] == [3, 0]
    assert ex[0]["rule"] == "pin" and ex[0]["gain"] == pytest.approx(0.0)
    assert ex[1]["gain"] == pytest.approx(0.5 - S / 2, rel=1e-6)
    assert ex[1]["penalized_by"] == 3 and ex[1]["rule"] is None
    # a boost of 10 on item 2: relevance 4, 3, 12, 1 -> r = 3/11, 2/11, 1, 0
    q = Query(np.array([0]), exclude_seen=False, explain=True,
              constraints=Constraints(boosts={2: 10.0}))  # fmt: skip
    ex = model(q, _cand(), 2).explanations[0]
    assert ex[0]["item"] == 2 and ex[0]["rule"] == "boost"
    assert ex[0]["relevance_part"] == pytest.approx(0.5)
    assert ex[1]["rule"] is None  # item 0 wins its step with or without the boost


def test_minimum_rule_and_other_methods():
    data = Interactions.from_arrays(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3]))
    import scipy.sparse as sp

    data = data.with_item_side_info(
        item_categories=sp.csr_matrix(np.eye(2)[[0, 0, 0, 1]]), category_names=("a", "b")
    )
    model = MMR(lambda_=1.0).fit(data, item_vectors=VECS)
    q = Query(np.array([0]), exclude_seen=False, explain=True,
              constraints=Constraints(min_count={1: 1}))  # fmt: skip
    ex = model(q, _cand(), 2).explanations[0]
    assert [e["item"] for e in ex] == [0, 3]
    assert [e["rule"] for e in ex] == [None, "minimum"]
    for rr in (FastGreedyDPP(theta=0.5), SSD(gamma=1.0)):
        rr.fit(data, item_vectors=VECS)
        out = rr(Query(np.array([0]), exclude_seen=False, explain=True), _cand(), 3)
        ex = out.explanations[0]
        assert [e["item"] for e in ex] == out.ids[0].tolist()
        for e in ex:
            assert e["gain"] == pytest.approx(e["relevance_part"] + e["diversity_part"])
    # SSD: the second pick's diversity part is gamma * its residual norm given item 0
    ex = (
        SSD(gamma=1.0)
        .fit(data, item_vectors=VECS)(
            Query(np.array([0]), exclude_seen=False, explain=True), _cand(), 2
        )
        .explanations[0]
    )
    assert ex[1]["item"] == 2 and ex[1]["diversity_part"] == pytest.approx(1.0)


def test_off_by_default():
    out = _fitted(MMR())(Query(np.array([0]), exclude_seen=False), _cand(), 3)
    assert out.explanations is None and out.violations is None


def _with_categories(cats):
    import scipy.sparse as sp

    n = len(cats)
    data = Interactions.from_arrays(np.repeat(np.arange(2), n), np.tile(np.arange(n), 2))
    names = tuple("abcde"[: max(cats) + 1])
    return data.with_item_side_info(
        item_categories=sp.csr_matrix(np.eye(len(names))[cats]), category_names=names
    )


def test_boost_then_minimum():
    # regression (reported through POST /rerank): a boosted item explained before a
    # reserved one crashed the replay ("operands could not be broadcast together").
    # Relevance 4, 3, 2 + 2.5, 1 (λ = 1: by relevance): item 2 wins step 1 only with its
    # boost; step 2 has one slot for the unmet minimum of category 1 (item 3 only).
    model = MMR(lambda_=1.0).fit(_with_categories([0, 0, 0, 1]), item_vectors=VECS)
    rule = Constraints(min_count={1: 1}, boosts={2: 2.5})
    q = Query(np.array([0]), exclude_seen=False, explain=True, constraints=rule)
    ex = model(q, _cand(), 2).explanations[0]
    assert [e["item"] for e in ex] == [2, 3]
    assert [e["rule"] for e in ex] == ["boost", "minimum"]


def test_boost_pins_and_minimums_on_a_long_list():
    # the reported shape: MMR, 100 candidates, k = 10, a minimum and a boost (and pins)
    rng = np.random.default_rng(0)
    n = 100
    cats = rng.integers(0, 5, n)
    vecs = rng.normal(size=(n, 8))
    model = MMR(lambda_=0.5).fit(_with_categories(cats.tolist()), item_vectors=vecs)
    cand = Candidates(np.arange(n)[None], np.sort(rng.random(n))[::-1][None].copy())
    top = int(np.flatnonzero(cats == 0)[-1])  # the least relevant item of category 0
    rule = Constraints(
        min_count={1: 3, 2: 2}, boosts={top: 5.0}, pins={int(np.flatnonzero(cats == 3)[0]): 4}
    )  # fmt: skip
    q = Query(np.array([0]), exclude_seen=False, explain=True, constraints=rule)
    out = model(q, cand, 10)
    ex = out.explanations[0]
    assert [e["item"] for e in ex] == out.ids[0].tolist()
    assert check_list(out.ids[0], rule, cats, 10) == []
    assert ex[0]["item"] == top and ex[0]["rule"] == "boost"
    assert ex[4]["rule"] == "pin"
    for e in ex:
        assert e["gain"] == pytest.approx(e["relevance_part"] + e["diversity_part"])
