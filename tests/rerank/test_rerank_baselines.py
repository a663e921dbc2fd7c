"""Baselines (category cap, CF-DA, CF-DM, hybrid utility) and contract checks for all methods."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.rerank import (
    CFDA,
    CFDM,
    MMR,
    SSD,
    CategoryCap,
    FastGreedyDPP,
    HybridUtility,
    InterestAwareMMR,
    PersonalizedDPP,
    cosine_similarity,
)

REL = np.array([1.0, 0.9, 0.5, 0.0])
SIM = np.array(
    [
        [1.0, 0.9, 0.1, 0.2],
        [0.9, 1.0, 0.2, 0.1],
        [0.1, 0.2, 1.0, 0.3],
        [0.2, 0.1, 0.3, 1.0],
    ]
)


# --------------------------------------------------------------------------- CategoryCap
def test_category_cap_hand_computed():
    r = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    cats = np.array([0, 0, 0, 1, 1, 2])
    # cap 1: walk 0 (cat 0), skip 1, skip 2, take 3 (cat 1), skip 4, take 5 (cat 2);
    # 3 < k = 4 → fill with the first skipped item, 1
    assert CategoryCap(max_per_category=1).select(r, 4, categories=cats).tolist() == [0, 3, 5, 1]
    # cap 2: 0, 1, skip 2, 3, 4 → k = 4 reached
    assert CategoryCap(max_per_category=2).select(r, 4, categories=cats).tolist() == [0, 1, 3, 4]
    # k = N: everything, capped items last in relevance order
    assert CategoryCap(max_per_category=1).select(r, 6, categories=cats).tolist() == [
        0,
        3,
        5,
        1,
        2,
        4,
    ]
    with pytest.raises(ValueError, match="categories"):
        CategoryCap().select(r, 2)


def test_category_cap_batch():
    r = np.array([[6.0, 5.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    cats = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    valid = np.array([[True, True, True, True], [True, True, True, False]])
    out = CategoryCap(max_per_category=1).select_batch(r, 3, categories=cats, valid=valid)
    assert out.tolist() == [[0, 2, 1], [2, 1, 0]]


# --------------------------------------------------------------------------- CF-DA
def test_cfda_hand_computed():
    # φ = 0.6, score = rel + 0.6·mean_{j∈S}(1 − sim)
    # step 2: i=1: 0.9 + 0.6·0.1 = 0.96; i=2: 0.5 + 0.6·0.9 = 1.04; i=3: 0 + 0.6·0.8 = 0.48
    # step 3: i=1: 0.9 + 0.6·(1 − (0.9 + 0.2)/2) = 1.17; i=3: 0.6·(1 − (0.2 + 0.3)/2) = 0.45
    assert CFDA(phi=0.6).select(REL, 4, similarity=SIM).tolist() == [0, 2, 1, 3]
    assert CFDA(phi=0.0).select(REL, 4, similarity=SIM).tolist() == [0, 1, 2, 3]


def test_cfda_uses_mean_not_max():
    # item 3 is a near-duplicate of item 1 but far from 0 and 2; item 4 is mid-way to all.
    s = np.array(
        [
            [1.0, 0.0, 0.0, 0.0, 0.5],
            [0.0, 1.0, 0.0, 0.95, 0.5],
            [0.0, 0.0, 1.0, 0.0, 0.5],
            [0.0, 0.95, 0.0, 1.0, 0.5],
            [0.5, 0.5, 0.5, 0.5, 1.0],
        ]
    )
    r = np.array([1.0, 0.95, 0.9, 0.5, 0.5])
    # after {0, 1, 2}: mean dissimilarity of 3 = (1 + 0.05 + 1)/3 = 0.6833, of 4 = 0.5 → 3
    # (a max-similarity rule would prefer 4: max sim 0.5 < 0.95)
    assert CFDA(phi=1.0).select(r, 4, similarity=s).tolist()[3] == 3
    assert MMR(lambda_=0.5, relevance_scaling="raw").select(r, 4, similarity=s).tolist()[3] == 4


# --------------------------------------------------------------------------- CF-DM
CFDM_SIM = np.array(
    [
        [1.0, 0.9, 0.5, 0.1, -1.0],
        [0.9, 1.0, 0.3, 0.2, 0.0],
        [0.5, 0.3, 1.0, 0.8, 0.0],
        [0.1, 0.2, 0.8, 1.0, 0.0],
        [-1.0, 0.0, 0.0, 0.0, 1.0],
    ]
)


def test_cfdm_hand_computed():
    r = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    # k=2, n_factor=2: pool = top 4 = {0,1,2,3}; seed 0; 1 − sim to 0: 0.1, 0.5, 0.9 → 3
    # (item 4, the most dissimilar (2.0), is outside the pool)
    assert CFDM(n_factor=2).select(r, 2, similarity=CFDM_SIM).tolist() == [0, 3]
    # k=3, n_factor=1.5: pool = ⌈4.5⌉ = 5 items; seed 0; → 4 (1 − (−1) = 2);
    # then Σ over {0, 4}: 1: 0.1 + 1 = 1.1; 2: 0.5 + 1 = 1.5; 3: 0.9 + 1 = 1.9 → 3
    assert CFDM(n_factor=1.5).select(r, 3, similarity=CFDM_SIM).tolist() == [0, 4, 3]
    # k=3, n_factor=1: pool {0, 1, 2}: 0; 1 − sim: 1: 0.1, 2: 0.5 → 2; then 1
    assert CFDM(n_factor=1).select(r, 3, similarity=CFDM_SIM).tolist() == [0, 2, 1]


def _total_diversity(sim: np.ndarray, sel: np.ndarray) -> float:
    sub = sim[np.ix_(sel, sel)]
    return float((1.0 - sub)[np.triu_indices(len(sel), 1)].sum())


def test_cfdm_beats_top_k_on_total_diversity():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.normal(size=(60, 6))
        r = rng.random(60)
        s = cosine_similarity(v)
        sel = CFDM(n_factor=5).select(r, 10, vectors=v)
        top = np.argsort(-r, kind="stable")[:10]
        assert _total_diversity(s, sel) >= _total_diversity(s, top) - 1e-12
        assert set(sel.tolist()) <= set(np.argsort(-r, kind="stable")[:50].tolist())


# --------------------------------------------------------------------------- hybrid
def test_hybrid_utility_hand_computed():
    r = np.array([1.0, 0.5, 0.0])
    nov = np.array([0.0, 1.0, 0.2])
    # base = rel + nov = [1.0, 1.5, 0.2] → [1, 0, 2]
    assert HybridUtility(weights=(1.0, 0.0, 1.0)).select(r, 3, novelty=nov).tolist() == [1, 0, 2]
    # popularity [0.5, 0.25, 0.125] → −log2 = [1, 2, 3] → min-max [0, 0.5, 1];
    # rel [1, 0.6, 0] → base [1.0, 1.1, 1.0] → [1, 0, 2]
    pop = np.array([0.5, 0.25, 0.125])
    w = {"relevance": 1.0, "novelty": 1.0}
    assert HybridUtility(weights=w).select(
        np.array([1.0, 0.6, 0.0]), 3, popularity=pop
    ).tolist() == [
        1,
        0,
        2,
    ]
    with pytest.raises(ValueError, match="novelty"):
        HybridUtility(weights=(1.0, 0.0, 1.0)).select(r, 2)
    with pytest.raises(ValueError):
        HybridUtility(weights=(1.0, 2.0))


def test_hybrid_with_diversity_equals_cfda():
    rng = np.random.default_rng(1)
    r = rng.random((10, 30))
    v = rng.normal(size=(10, 30, 5))
    a = HybridUtility(weights=(1.0, 0.7, 0.0)).select_batch(r, 8, vectors=v)
    b = CFDA(phi=0.7).select_batch(r, 8, vectors=v)
    assert a.tolist() == b.tolist()


def reference_greedy(r, s, k, score):
    """Naive re-computation of a greedy list objective, for cross-checks."""
    sel = [int(np.argmax(r))]
    while len(sel) < min(k, len(r)):
        cand = [i for i in range(len(r)) if i not in sel]
        vals = [score(i, sel) for i in cand]
        sel.append(cand[int(np.argmax(vals))])
    return sel


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), phi=st.floats(0.0, 3.0))
def test_cfda_and_hybrid_match_naive_reference(seed, phi):
    rng = np.random.default_rng(seed)
    n, k = 15, 6
    r = rng.random(n)
    nov = rng.random(n)
    s = cosine_similarity(rng.normal(size=(n, 4)))
    rs = (r - r.min()) / (r.max() - r.min())
    ns = (nov - nov.min()) / (nov.max() - nov.min())

    def cfda(i, sel):
        return rs[i] + phi * np.mean([1 - s[i, j] for j in sel])

    assert CFDA(phi=phi).select(r, k, similarity=s).tolist() == reference_greedy(r, s, k, cfda)

    def hyb(i, sel):
        return 0.5 * rs[i] + phi * np.mean([1 - s[i, j] for j in sel]) + 0.3 * ns[i]

    first = 0.5 * rs + 0.3 * ns
    expected = reference_greedy(first, s, k, hyb)
    got = HybridUtility(weights=(0.5, phi, 0.3)).select(r, k, similarity=s, novelty=nov)
    assert got.tolist() == expected


# --------------------------------------------------------------------------- contract
def _methods():
    return [
        ("mmr", MMR(lambda_=0.5), {}),
        ("ia-mmr", InterestAwareMMR(lambda_=0.3), {"user": True}),
        ("dpp", FastGreedyDPP(theta=0.5), {}),
        ("dpp-window", FastGreedyDPP(theta=0.3, window=3), {}),
        ("p-dpp", PersonalizedDPP(), {"user_category_counts": True}),
        ("ssd", SSD(gamma=0.5), {}),
        ("ssd-window", SSD(gamma=1.0, window=3), {}),
        ("cap", CategoryCap(max_per_category=2), {}),
        ("cfda", CFDA(phi=0.5), {}),
        ("cfdm", CFDM(n_factor=3), {}),
        ("hybrid", HybridUtility(weights=(1.0, 0.5, 0.2)), {"novelty": True}),
    ]


def _extra(spec, rng, bsz=None, n=None, d=None):
    out = {}
    for name in spec:
        if name == "user":
            out[name] = rng.normal(size=(d,) if bsz is None else (bsz, d))
        elif name == "user_category_counts":
            out[name] = rng.integers(0, 5, size=(4,) if bsz is None else (bsz, 4))
        elif name == "novelty":
            out[name] = rng.random(n if bsz is None else (bsz, n))
    return out


@pytest.mark.parametrize(("name", "model", "spec"), _methods(), ids=[m[0] for m in _methods()])
def test_every_method_returns_subset_without_duplicates(name, model, spec):
    rng = np.random.default_rng(7)
    for n, d, k in [(1, 3, 1), (5, 3, 5), (20, 4, 7), (12, 30, 20), (8, 2, 0)]:
        r = rng.normal(size=n)
        v = rng.normal(size=(n, d))
        cats = rng.integers(0, 3, size=n)
        out = model.select(r, k, vectors=v, categories=cats, **_extra(spec, rng, n=n, d=d))
        assert out.dtype == np.int64
        assert len(out) == min(k, n)
        assert len(set(out.tolist())) == len(out)
        assert np.all((out >= 0) & (out < n))


@pytest.mark.parametrize(("name", "model", "spec"), _methods(), ids=[m[0] for m in _methods()])
def test_every_method_batch_equals_loop(name, model, spec):
    rng = np.random.default_rng(8)
    bsz, n, d, k = 9, 14, 4, 6
    r = rng.normal(size=(bsz, n))
    v = rng.normal(size=(bsz, n, d))
    cats = rng.integers(0, 3, size=(bsz, n))
    valid = rng.random((bsz, n)) < 0.7
    valid[0] = False
    extra = _extra(spec, rng, bsz=bsz, n=n, d=d)
    out = model.select_batch(r, k, vectors=v, categories=cats, valid=valid, **extra)
    assert out.shape == (bsz, k) and out.dtype == np.int64
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        kw = {}
        for key, val in extra.items():
            kw[key] = val[b, idx] if key == "novelty" else val[b]
        ref = idx[model.select(r[b, idx], k, vectors=v[b, idx], categories=cats[b, idx], **kw)]
        assert out[b, : len(ref)].tolist() == ref.tolist()
        assert np.all(out[b, len(ref) :] == -1)


def test_constructors_only_store_hyperparameters():
    for _, model, _ in _methods():
        params = model.get_params()
        clone = type(model)(**params)
        assert clone.get_params() == params
        assert repr(clone) == repr(model)
