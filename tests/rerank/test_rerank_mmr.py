"""MMR and the interest-aware MMR of CDM: hand-computed examples and batch consistency."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.rerank import CFDA, MMR, InterestAwareMMR, cosine_similarity
from divrec.rerank.mmr import penalized_greedy

# relevance already spans [0, 1], so min-max scaling leaves it unchanged
REL = np.array([1.0, 0.9, 0.5, 0.0])
SIM = np.array(
    [
        [1.0, 0.9, 0.1, 0.2],
        [0.9, 1.0, 0.2, 0.1],
        [0.1, 0.2, 1.0, 0.3],
        [0.2, 0.1, 0.3, 1.0],
    ]
)


def test_mmr_hand_computed():
    # λ = 0.5, score_i = 0.5·rel_i − 0.5·max_{j∈S} sim(i, j)
    # step 1: most relevant → 0
    # step 2: i=1: 0.45 − 0.5·0.9 = 0.00; i=2: 0.25 − 0.5·0.1 = 0.20; i=3: 0 − 0.5·0.2 = −0.10 → 2
    # step 3: i=1: 0.45 − 0.5·max(0.9, 0.2) = 0.00; i=3: 0 − 0.5·max(0.2, 0.3) = −0.15 → 1
    # step 4: 3
    assert MMR(lambda_=0.5).select(REL, 4, similarity=SIM).tolist() == [0, 2, 1, 3]
    # λ = 0.9: step 2: i=1: 0.81 − 0.09 = 0.72; i=2: 0.45 − 0.01 = 0.44 → 1 (relevance wins)
    assert MMR(lambda_=0.9).select(REL, 2, similarity=SIM).tolist() == [0, 1]
    # λ = 0: step 2: argmin max-sim: i=1: −0.9, i=2: −0.1, i=3: −0.2 → 2;
    # step 3: i=1: −max(0.9, 0.2) = −0.9, i=3: −max(0.2, 0.3) = −0.3 → 3
    assert MMR(lambda_=0.0).select(REL, 3, similarity=SIM).tolist() == [0, 2, 3]


def test_mmr_raw_scaling_differs_from_minmax():
    r = REL * 10 + 5  # raw scores 15, 14, 10, 5
    # min-max: identical to the hand example
    assert MMR(lambda_=0.5).select(r, 4, similarity=SIM).tolist() == [0, 2, 1, 3]
    # raw: relevance dominates a similarity penalty in [0, 1]
    assert MMR(lambda_=0.5, relevance_scaling="raw").select(r, 4, similarity=SIM).tolist() == [
        0,
        1,
        2,
        3,
    ]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), k=st.integers(0, 35))
def test_mmr_lambda_one_is_relevance_order(seed, n, k):
    rng = np.random.default_rng(seed)
    r = rng.random(n)
    v = rng.normal(size=(n, 5))
    expected = np.argsort(-r, kind="stable")[:k].tolist()
    assert MMR(lambda_=1.0).select(r, k, vectors=v).tolist() == expected
    out = MMR(lambda_=1.0).select_batch(r[None], k, vectors=v[None])[0]
    assert out[: len(expected)].tolist() == expected


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7])
def test_mmr_batch_equals_loop(lam):
    rng = np.random.default_rng(0)
    bsz, n, d, k = 45, 30, 8, 10
    r = rng.normal(size=(bsz, n))
    v = rng.normal(size=(bsz, n, d))
    valid = rng.random((bsz, n)) < 0.75
    valid[2] = False
    valid[3, 5:] = False
    r[~valid] = np.nan
    mmr = MMR(lambda_=lam)
    for kwargs_b, kwargs_1 in (
        ({"vectors": v}, lambda b, idx: {"vectors": v[b, idx]}),
        (
            {"similarity": np.stack([cosine_similarity(x) for x in v])},
            lambda b, idx: {"similarity": cosine_similarity(v[b, idx])},
        ),
    ):
        out = mmr.select_batch(r, k, valid=valid, **kwargs_b)
        for b in range(bsz):
            idx = np.flatnonzero(valid[b])
            ref = idx[mmr.select(r[b, idx], k, **kwargs_1(b, idx))]
            assert out[b, : len(ref)].tolist() == ref.tolist()
            assert np.all(out[b, len(ref) :] == -1)


def test_mmr_needs_similarity():
    with pytest.raises(ValueError, match="needs `vectors`"):
        MMR().select(REL, 2)
    with pytest.raises(ValueError, match="needs `vectors`"):
        MMR().select_batch(REL[None], 2)
    with pytest.raises(ValueError):
        MMR(lambda_=1.5)


# --------------------------------------------------------------------------- CDM teacher
def test_interest_aware_mmr_hand_computed():
    # e_i ⊙ u with u = (1, 0): only the first coordinate counts.
    e = np.array([[2.0, 0.0], [2.0, 5.0], [-2.0, 0.0], [0.0, 3.0]])
    u = np.array([1.0, 0.0])
    r = np.array([0.9, 0.8, 0.6, 0.55])
    # e_u = [2, 2, -2, 0] (first coordinate); pairwise dots with item 0: 4, -4, 0
    # step 1 (Eq. 4): argmax f → 0
    # step 2 (λ = 0.5): f + 0.5·(1 − σ(dot with 0)):
    #   i=1: 0.8 + 0.5·(1 − σ(4)) = 0.8 + 0.5·0.017986 = 0.808993
    #   i=2: 0.6 + 0.5·(1 − σ(−4)) = 0.6 + 0.5·0.982014 = 1.091007
    #   i=3: 0.55 + 0.5·(1 − σ(0)) = 0.55 + 0.25 = 0.80 → pick 2
    # step 3: max over {0, 2}: i=1: max(σ(4), σ(−4)) = σ(4) → 0.808993; i=3: σ(0) → 0.80 → 1
    iamr = InterestAwareMMR(lambda_=0.5)
    assert iamr.select(r, 4, vectors=e, user=u).tolist() == [0, 2, 1, 3]
    # with λ = 0 it is the relevance order; the user vector matters: u = (0, 1) makes
    # items 1 and 3 similar (dot 15) and 0, 2 orthogonal to everything (σ(0) = 0.5)
    assert InterestAwareMMR(lambda_=0.0).select(r, 4, vectors=e, user=u).tolist() == [0, 1, 2, 3]
    # u = (0, 1): e_u = [0, 5, 0, 3]; step 2: i=1: 0.8 + 0.5·0.5 = 1.05; i=2: 0.6 + 0.25;
    # → 1; step 3: i=2: 0.6 + 0.5·(1 − max(σ(0), σ(0))) = 0.85; i=3: 0.55 + 0.5·(1 − σ(15)) ≈ 0.55
    assert iamr.select(r, 3, vectors=e, user=np.array([0.0, 1.0])).tolist() == [0, 1, 2]


def test_interest_aware_mmr_batch_equals_loop():
    rng = np.random.default_rng(1)
    bsz, n, d, k = 40, 20, 6, 8
    r = rng.random((bsz, n))
    e = rng.normal(size=(bsz, n, d))
    u = rng.normal(size=(bsz, d))
    valid = rng.random((bsz, n)) < 0.8
    model = InterestAwareMMR(lambda_=0.2)
    out = model.select_batch(r, k, vectors=e, user=u, valid=valid)
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        ref = idx[model.select(r[b, idx], k, vectors=e[b, idx], user=u[b])]
        assert out[b, : len(ref)].tolist() == ref.tolist()


def test_interest_aware_mmr_validation():
    e = np.eye(3)
    with pytest.raises(ValueError, match="user"):
        InterestAwareMMR().select(np.ones(3), 2, vectors=e)
    with pytest.raises(ValueError, match="vectors"):
        InterestAwareMMR().select(np.ones(3), 2, similarity=e, user=np.ones(3))


@pytest.mark.parametrize("agg", ["max", "mean"])
@pytest.mark.parametrize("source", ["vectors", "similarity"])
def test_compiled_kernel_equals_numpy_penalized_greedy(agg, source):
    """The compiled kernel (select and select_batch) == the numpy recursion on S's rows."""
    rng = np.random.default_rng(11)
    bsz, n, d, k = 12, 40, 6, 15
    r = rng.random((bsz, n))
    v = rng.normal(size=(bsz, n, d))
    valid = rng.random((bsz, n)) < 0.8
    model = MMR(lambda_=0.4) if agg == "max" else CFDA(phi=0.6)
    sims = np.stack([cosine_similarity(v[b]) for b in range(bsz)])
    kw = {"vectors": v} if source == "vectors" else {"similarity": sims}
    out = model.select_batch(r, k, valid=valid, **kw)
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        s = sims[b][np.ix_(idx, idx)]
        rb = r[b, idx]
        rs = (rb - rb.min()) / (rb.max() - rb.min())
        base, coef = (0.4 * rs, 0.6) if agg == "max" else (rs, 0.6)
        ref = penalized_greedy(base, rb, k, s.__getitem__, coef, agg)
        one = {"vectors": v[b, idx]} if source == "vectors" else {"similarity": s}
        assert model.select(rb, k, **one).tolist() == ref.tolist()
        assert out[b, : len(ref)].tolist() == idx[ref].tolist()


@pytest.mark.parametrize(
    "dtype, scales",
    [
        ("float64", [1e-150, 1e-145, 1e-3, 1e3, 1e145, 1e150, 1e160, 1e200]),
        ("float32", [1e-21, 1e-17, 1e-12, 1e12, 1e17, 1e19, 3e19]),
    ],
)
def test_cosine_lists_do_not_depend_on_the_vectors_scale(dtype, scales):
    """Cosine MMR is scale-invariant: the kernel's raw dot products scaled by inverse norms,
    and its normalizing fallback where those products would under- or overflow (squared
    norms outside the work dtype's safe range), give the lists of the unscaled vectors."""
    rng = np.random.default_rng(5)
    bsz, n, d, k = 4, 120, 16, 10
    r = rng.random((bsz, n))
    v = rng.normal(size=(bsz, n, d)).astype(dtype)
    model = MMR(lambda_=0.3)
    want = model.select_batch(r, k, vectors=v)
    for scale in scales:
        got = model.select_batch(r, k, vectors=(v * np.asarray(scale, dtype)).astype(dtype))
        assert got.tolist() == want.tolist(), scale
        assert model.select(r[0], k, vectors=v[0] * np.asarray(scale, dtype)).tolist() == (
            want[0].tolist()
        )
