"""float32 candidate vectors in the greedy kernels (issue 24, item 2).

* ``precision="float64"`` with float32 vectors gives exactly the lists of the same values
  in float64 (the kernels convert per request, exactly), and the DPP always does;
* ``precision="input"`` (float32 work matrix) differs from the float64 path only where,
  at the first differing step, the two candidates' float64 gains are within the stated
  relative tolerance (``_base`` docstring: 1e-5), checked from scratch;
* ``select_batch`` hands float32 vectors to the kernel as they are (no float64 batch).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.rerank import MMR, SSD, FastGreedyDPP, InterestAwareMMR, PersonalizedDPP
from divrec.rerank._base import kernel_inputs_batch, scale_relevance

RULE = 1e-5


def _unit(v):
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_float64_precision_is_exact(n, k, seed):
    rng = np.random.default_rng(seed)
    rel = rng.random((3, n))
    v32 = rng.normal(size=(3, n, 8)).astype(np.float32)
    v64 = v32.astype(np.float64)
    user = rng.normal(size=(3, 8))
    for a, b in (
        (MMR(precision="float64"), MMR()),
        (SSD(precision="float64", window=3), SSD(window=3)),
        (InterestAwareMMR(lambda_=0.3, precision="float64"), InterestAwareMMR(lambda_=0.3)),
        (FastGreedyDPP(), FastGreedyDPP()),
        (FastGreedyDPP(window=4), FastGreedyDPP(window=4)),
    ):
        kw = {"user": user} if isinstance(a, InterestAwareMMR) else {}
        np.testing.assert_array_equal(
            a.select_batch(rel, k, vectors=v32, **kw), b.select_batch(rel, k, vectors=v64, **kw)
        )


def _mmr_gains(rs, u, sel, lam=0.5):
    if not sel:
        return rs
    return lam * rs - (1 - lam) * (u @ u[sel].T).max(axis=1)


def _ssd_gains(rs, u, sel, gamma=1.0):
    if not sel:
        return rs + gamma * np.linalg.norm(u, axis=1)
    q, _ = np.linalg.qr(u[sel].T)
    return rs + gamma * np.linalg.norm(u - (u @ q) @ q.T, axis=1)


@pytest.mark.parametrize(("model", "gains"), [(MMR(), _mmr_gains), (SSD(), _ssd_gains)])
def test_float32_path_differs_only_at_near_ties(model, gains):
    rng = np.random.default_rng(11)
    rel = rng.random((40, 300))
    v64 = rng.normal(size=(40, 300, 16))
    a = model.select_batch(rel, 30, vectors=v64.astype(np.float32))
    b = model.select_batch(rel, 30, vectors=v64)
    for row in range(rel.shape[0]):
        if np.array_equal(a[row], b[row]):
            continue
        t = int(np.argmax(a[row] != b[row]))
        g = gains(scale_relevance(rel[row], "minmax"), _unit(v64[row]), list(b[row, :t]))
        ga, gb = g[a[row, t]], g[b[row, t]]
        assert abs(ga - gb) <= RULE * (abs(gb) + 1.0)
    # most lists are identical on random data
    assert np.mean([np.array_equal(x, y) for x, y in zip(a, b, strict=True)]) >= 0.9


def test_batch_is_not_converted():
    v32 = np.zeros((2, 5, 3), dtype=np.float32)
    m = np.ones((2, 5), dtype=bool)
    vecs, _, _ = kernel_inputs_batch((2, 5), m, v32, None, "MMR")
    assert vecs.dtype == np.float32 and np.shares_memory(vecs, v32)
    vecs, _, _ = kernel_inputs_batch((2, 5), m, v32.astype(np.int64), None, "MMR")
    assert vecs.dtype == np.float64


def test_precision_is_validated():
    from divrec.stage import ParamError

    with pytest.raises((ParamError, ValueError), match="precision"):
        MMR(precision="float16")
    assert PersonalizedDPP is not None  # the DPPs share the exact float32 read
