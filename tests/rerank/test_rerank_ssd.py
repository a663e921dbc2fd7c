"""Sliding Spectrum Decomposition: hand-computed examples and a least-squares reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from divrec.rerank import SSD
from divrec.rerank.ssd import gram_schmidt

S2 = np.sqrt(0.5)


def test_ssd_hand_computed_no_window():
    v = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 1.0]])
    r = np.array([1.0, 0.8, 0.0, 0.3])  # min-max leaves it unchanged
    # step 1: all residual norms are 1 → argmax r → 0
    # step 2: residuals w.r.t. e1: v1: 0.1/√1.01 = 0.0995, v2: 1, v3: √0.5 = 0.7071
    #   scores: 0.8995, 1.0, 1.0071 → 3
    # step 3: span{e1, (1,1)} = R² → residuals 0 → relevance: 1 (0.8) then 2
    assert SSD(gamma=1.0).select(r, 4, vectors=v).tolist() == [0, 3, 1, 2]
    # γ = 0.5: step 2 scores 0.8 + 0.0497 = 0.8497, 0.5, 0.3 + 0.3536 = 0.6536 → 1
    assert SSD(gamma=0.5).select(r, 2, vectors=v).tolist() == [0, 1]
    assert SSD(gamma=0.0).select(r, 4, vectors=v).tolist() == [0, 1, 3, 2]


def test_ssd_hand_computed_window():
    e1, e2, e3 = np.eye(3)
    v = np.stack([e1, e2, e1, e3])  # item 2 duplicates item 0
    r = np.array([1.0, 0.9, 0.95, 0.0])
    # no window: 0; then w.r.t. e1: 1: 0.9 + 1, 2: 0.95 + 0, 3: 0 + 1 → 1;
    # w.r.t. span{e1, e2}: 2: 0.95 + 0, 3: 0 + 1 → 3; then 2
    assert SSD(gamma=1.0).select(r, 4, vectors=v).tolist() == [0, 1, 3, 2]
    # window 2 (every 2 consecutive items): step 3 only sees item 1 (e2):
    # 2: 0.95 + 1 = 1.95, 3: 0 + 1 = 1 → 2 (its duplicate 0 has left the window); then 3
    assert SSD(gamma=1.0, window=2).select(r, 4, vectors=v).tolist() == [0, 1, 2, 3]
    # window 1: nothing is compared, pure r + γ‖v‖ = relevance order
    assert SSD(gamma=1.0, window=1).select(r, 4, vectors=v).tolist() == [0, 2, 1, 3]


def reference_ssd(r, v, k, gamma, window):
    """SSD by explicit least-squares projections onto the window's span."""
    rs = (r - r.min()) / (r.max() - r.min())
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    sel: list[int] = []
    gaps = []
    for _ in range(min(k, len(r))):
        w = sel if window is None else sel[max(0, len(sel) - (window - 1)) :]
        w = [] if window == 1 else w
        scores = np.full(len(r), -np.inf)
        for i in range(len(r)):
            if i in sel:
                continue
            if w:
                a = u[w].T
                coef = np.linalg.lstsq(a, u[i], rcond=None)[0]
                res = u[i] - a @ coef
            else:
                res = u[i]
            scores[i] = rs[i] + gamma * np.linalg.norm(res)
        top = np.sort(scores[np.isfinite(scores)])[::-1]
        if len(top) > 1:
            gaps.append(top[0] - top[1])
        sel.append(int(np.argmax(scores)))
    return sel, min(gaps, default=np.inf)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 15),
    d=st.integers(2, 8),
    k=st.integers(1, 15),
    gamma=st.sampled_from([0.3, 1.0, 3.0]),
    window=st.sampled_from([None, 1, 2, 3, 5]),
)
def test_ssd_matches_least_squares_reference(seed, n, d, k, gamma, window):
    rng = np.random.default_rng(seed)
    r = rng.random(n)
    v = rng.normal(size=(n, d))
    expected, gap = reference_ssd(r, v, k, gamma, window)
    assume(gap > 1e-7)
    assert SSD(gamma=gamma, window=window).select(r, k, vectors=v).tolist() == expected


def test_gram_schmidt_drops_dependent_vectors():
    basis = gram_schmidt(np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    assert basis.shape == (2, 3)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)


def test_ssd_rank_deficient_and_validation():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 3))
    v[5] = 0.0  # zero vector: residual 0, no NaN
    r = rng.random(30)
    out = SSD(gamma=2.0, window=4).select(r, 30, vectors=v)
    assert sorted(out.tolist()) == list(range(30))
    with pytest.raises(ValueError, match="vectors"):
        SSD().select(r, 3, similarity=np.eye(30))
    with pytest.raises(ValueError, match="vectors"):
        SSD().select(r, 3)


# --------------------------------------------------------------------------- compiled kernel
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 15),
    d=st.integers(1, 6),
    window=st.sampled_from([None, 1, 2, 4]),
    dup=st.booleans(),
    ties=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_kernel_equals_the_numpy_reference(n, k, d, window, dup, ties, seed):
    """The compiled SSD kernel (residual norms by running sums, recomputed near the span)
    picks exactly what the numpy greedy on residual vectors picks, duplicates and tied
    relevance included; float32 vectors with precision='float64' are the float64 lists."""
    from divrec.rerank.ssd import ssd_reference

    rng = np.random.default_rng(seed)
    rel = rng.random(n)
    if ties:
        rel = np.round(rel * 2) / 2
    vec = rng.normal(size=(n, d))
    if dup and n >= 4:
        vec[n // 2 :] = vec[: n - n // 2]
    model = SSD(gamma=0.8, window=window)
    want = ssd_reference(rel, vec, k, model.config)
    np.testing.assert_array_equal(model.select(rel, k, vectors=vec), want)
    got = model.select_batch(rel[None], k, vectors=vec[None])[0]
    np.testing.assert_array_equal(got[: want.size], want)
    assert (got[want.size :] == -1).all()
    v32 = vec.astype(np.float32)
    exact = SSD(gamma=0.8, window=window, precision="float64")
    np.testing.assert_array_equal(
        exact.select(rel, k, vectors=v32),
        ssd_reference(rel, v32.astype(np.float64), k, model.config),
    )
