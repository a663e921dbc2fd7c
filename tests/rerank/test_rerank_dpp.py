"""Fast greedy DPP (Chen et al. 2018) against a brute-force greedy on log-determinants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from divrec.rerank import (
    FastGreedyDPP,
    category_similarity,
    cosine_similarity,
    fast_greedy_map,
    fast_greedy_map_batch,
    tradeoff_alpha,
)

EPS = 1e-10
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_greedy(
    kernel: np.ndarray, k: int, eps: float = EPS, window: int | None = None
) -> tuple[list[int], float]:
    """Greedy by explicit ``slogdet``; returns the picks and the smallest decision gap.

    At every step the candidate maximizing ``log det L_{W ∪ {i}} − log det L_W`` is
    picked, with ``W`` all selected items (``window=None``) or the ``window − 1`` most
    recent ones; candidates whose determinant ratio is ``≤ eps`` are not eligible.
    """
    n = kernel.shape[0]
    sel: list[int] = []
    gap = np.inf
    for _ in range(min(k, n)):
        w = sel if window is None else sel[max(0, len(sel) - (window - 1)) :]
        w = w if window != 1 else []
        base = np.linalg.slogdet(kernel[np.ix_(w, w)])[1] if w else 0.0
        gains = []
        for i in range(n):
            if i in sel:
                continue
            idx = [*w, i]
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(idx, idx)])
            g = logdet - base if sign > 0 else -np.inf
            if g > np.log(eps):
                gains.append((g, i))
        if not gains:
            break
        gains.sort(reverse=True)
        if len(gains) > 1:
            gap = min(gap, gains[0][0] - gains[1][0])
        sel.append(gains[0][1])
    return sel, gap


def random_kernel(seed: int, n: int, d: int, jitter: float = 1e-3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, d))
    return b @ b.T + jitter * np.eye(n)


kernel_cases = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(2, 12),  # n
    st.integers(2, 16),  # d
    st.integers(1, 12),  # k
)


@SETTINGS
@given(case=kernel_cases, window=st.sampled_from([None, 1, 2, 3, 4, 6]))
def test_fast_greedy_map_matches_bruteforce(case, window):
    seed, n, d, k = case
    kernel = random_kernel(seed, n, d)
    expected, gap = brute_greedy(kernel, k, window=window)
    assume(gap > 1e-6)
    assert fast_greedy_map(kernel, k, EPS, window=window).tolist() == expected
    batched = fast_greedy_map_batch(kernel[None], k, EPS, window=window)[0]
    assert batched[batched >= 0].tolist() == expected
    assert np.all(batched[len(expected) :] == -1)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), window=st.sampled_from([None, 2, 3, 5]))
def test_fast_greedy_map_batch_mixed_sizes_matches_bruteforce(seed, window):
    rng = np.random.default_rng(seed)
    bsz, n, k = 5, 10, 7
    kernels = np.stack([random_kernel(int(rng.integers(2**31)), n, 8) for _ in range(bsz)])
    valid = rng.random((bsz, n)) < 0.8
    valid[:, 0] = True
    valid[1] = True
    out = fast_greedy_map_batch(kernels, k, EPS, window=window, valid=valid)
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        expected, gap = brute_greedy(kernels[b][np.ix_(idx, idx)], k, window=window)
        assume(gap > 1e-6)
        got = out[b][out[b] >= 0]
        assert got.tolist() == idx[expected].tolist()


@SETTINGS
@given(
    case=kernel_cases,
    theta=st.sampled_from([0.0, 0.2, 0.5, 0.7]),
    window=st.sampled_from([None, 2, 4]),
)
def test_dpp_reranker_matches_bruteforce_on_tradeoff_kernel(case, theta, window):
    """FastGreedyDPP (log-space, Cholesky on S) == greedy on L = Diag(e^{αr}) S Diag(e^{αr})."""
    seed, n, d, k = case
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d))
    s = cosine_similarity(vectors) + 1e-3 * np.eye(n)  # full rank also when n > d
    r = rng.random(n)
    rs = (r - r.min()) / (r.max() - r.min())
    q = np.exp(tradeoff_alpha(theta) * rs)
    kernel = q[:, None] * s * q[None, :]
    expected, gap = brute_greedy(kernel, k, window=window)
    assume(gap > 1e-6 and len(expected) == min(k, n))
    dpp = FastGreedyDPP(theta=theta, window=window)
    assert dpp.select(r, k, similarity=s).tolist() == expected
    assert dpp.select_batch(r[None], k, similarity=s[None])[0][: len(expected)].tolist() == (
        expected
    )


def test_window_larger_than_k_equals_plain():
    kernel = random_kernel(3, 30, 40)
    assert fast_greedy_map(kernel, 10, window=50).tolist() == fast_greedy_map(kernel, 10).tolist()
    assert fast_greedy_map(kernel, 10, window=10).tolist() == fast_greedy_map(kernel, 10).tolist()


def test_window_one_is_diagonal_order():
    kernel = random_kernel(4, 20, 5)
    expected = np.argsort(-np.diagonal(kernel), kind="stable")[:8]
    assert fast_greedy_map(kernel, 8, window=1).tolist() == expected.tolist()


# --------------------------------------------------------------------------- trade-off
@pytest.mark.parametrize("theta", [1.0, 1.0 - 1e-9])
def test_theta_one_is_relevance_order(theta):
    rng = np.random.default_rng(0)
    n, d = 40, 8
    r = rng.permutation(n) / n  # distinct, gaps 1/n
    v = rng.normal(size=(n, d))
    expected = np.argsort(-r, kind="stable")[:15]
    dpp = FastGreedyDPP(theta=theta)
    assert dpp.select(r, 15, vectors=v).tolist() == expected.tolist()
    out = dpp.select_batch(np.stack([r, r]), 15, vectors=np.stack([v, v]))
    assert out.tolist() == [expected.tolist()] * 2


def test_tradeoff_alpha_values():
    assert tradeoff_alpha(0.5) == pytest.approx(0.5)  # 0.5 / (2 * 0.5)
    assert tradeoff_alpha(0.0) == 0.0
    assert tradeoff_alpha(0.8) == pytest.approx(2.0)  # 0.8 / (2 * 0.2)
    assert np.isinf(tradeoff_alpha(1.0))
    with pytest.raises(ValueError):
        tradeoff_alpha(1.5)


def test_large_alpha_and_large_scores_do_not_overflow():
    rng = np.random.default_rng(1)
    r = rng.normal(size=50) * 1e4  # raw scores: exp(α r) would overflow
    v = rng.normal(size=(50, 16))
    out = FastGreedyDPP(theta=0.999, relevance_scaling="raw").select(r, 20, vectors=v)
    assert len(set(out.tolist())) == 20
    assert out.tolist() == np.argsort(-r, kind="stable")[:20].tolist()


def test_diversity_changes_selection_with_lower_theta():
    # two near-duplicate top items: a diverse DPP must not take both first
    r = np.array([1.0, 0.99, 0.5, 0.4])
    v = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.7, 0.7]])
    assert FastGreedyDPP(theta=0.5).select(r, 2, vectors=v).tolist() == [0, 2]
    assert FastGreedyDPP(theta=1.0).select(r, 2, vectors=v).tolist() == [0, 1]


# --------------------------------------------------------------------------- degenerate
def test_rank_deficient_kernel_stops_and_fills():
    rng = np.random.default_rng(2)
    n, d = 30, 4  # rank 4 similarity
    v = rng.normal(size=(n, d))
    r = rng.random(n)
    plain = fast_greedy_map(cosine_similarity(v), 10)
    assert len(plain) == d  # exhausted after d items, no NaN, no duplicates
    out = FastGreedyDPP(theta=0.3).select(r, 10, vectors=v)
    assert len(out) == 10 and len(set(out.tolist())) == 10
    rest = [i for i in np.argsort(-r, kind="stable") if i not in out[:d]]
    assert out[d:].tolist() == rest[:6]  # documented fill: relevance order
    short = FastGreedyDPP(theta=0.3, fill=False).select(r, 10, vectors=v)
    assert short.tolist() == out[:d].tolist()
    b = FastGreedyDPP(theta=0.3, fill=False).select_batch(r[None], 10, vectors=v[None])[0]
    assert b[:d].tolist() == out[:d].tolist() and np.all(b[d:] == -1)
    bf = FastGreedyDPP(theta=0.3).select_batch(r[None], 10, vectors=v[None])[0]
    assert bf.tolist() == out.tolist()


def test_non_psd_kernel_no_crash_no_nan_no_duplicates():
    rng = np.random.default_rng(3)
    n = 12
    a = rng.normal(size=(n, n))
    kernel = (a + a.T) / 2  # indefinite: negative eigenvalues
    assert np.linalg.eigvalsh(kernel).min() < 0
    with np.errstate(all="raise"):
        out = fast_greedy_map(kernel, n)
        outb = fast_greedy_map_batch(kernel[None], n)[0]
    assert len(set(out.tolist())) == len(out)
    assert outb[outb >= 0].tolist() == out.tolist()
    r = rng.random(n)
    for window in (None, 3):
        sel = FastGreedyDPP(theta=0.5, window=window).select(r, n, similarity=kernel)
        assert sorted(sel.tolist()) == list(range(n))
        selb = FastGreedyDPP(theta=0.5, window=window).select_batch(
            r[None], n, similarity=kernel[None]
        )[0]
        assert selb.tolist() == sel.tolist()


def test_zero_and_negative_diagonal():
    kernel = np.diag([0.0, -1.0, 2.0, 1e-12])
    assert fast_greedy_map(kernel, 4).tolist() == [2]
    r = np.array([0.9, 0.8, 0.1, 0.5])
    assert FastGreedyDPP().select(r, 4, similarity=kernel).tolist() == [2, 0, 1, 3]


def test_category_similarity_kernel_one_per_category_then_fill():
    cats = np.array([0, 0, 1, 1, 2, 0])
    r = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.5])
    out = FastGreedyDPP(theta=0.5).select(r, 5, similarity=category_similarity(cats))
    assert out[:3].tolist() == [0, 2, 4]  # one per category
    assert out[3:].tolist() == [1, 3]  # then relevance order


# --------------------------------------------------------------------------- batch & API
@pytest.mark.parametrize("window", [None, 3])
def test_batch_equals_loop_with_padding(window):
    rng = np.random.default_rng(4)
    bsz, n, d, k = 37, 25, 6, 12  # N > d: some requests exhaust their kernel
    r = rng.normal(size=(bsz, n))
    v = rng.normal(size=(bsz, n, d))
    valid = rng.random((bsz, n)) < 0.7
    valid[0] = False  # empty request
    valid[1, :3] = True
    valid[1, 3:] = False  # fewer valid than k
    r[~valid] = np.nan  # padding may hold garbage
    v[~valid] = np.nan
    for fill in (True, False):
        dpp = FastGreedyDPP(theta=0.6, window=window, fill=fill)
        out = dpp.select_batch(r, k, vectors=v, valid=valid)
        assert out.shape == (bsz, k) and out.dtype == np.int64
        for b in range(bsz):
            idx = np.flatnonzero(valid[b])
            ref = idx[dpp.select(r[b, idx], k, vectors=v[b, idx])]
            assert out[b, : len(ref)].tolist() == ref.tolist()
            assert np.all(out[b, len(ref) :] == -1)


def test_vectors_equal_cosine_similarity():
    rng = np.random.default_rng(5)
    v = rng.normal(size=(20, 30)) * rng.random((20, 1)) * 10
    r = rng.random(20)
    dpp = FastGreedyDPP(theta=0.4)
    a = dpp.select(r, 10, vectors=v)
    b = dpp.select(r, 10, similarity=cosine_similarity(v))
    assert a.tolist() == b.tolist()


def test_input_validation():
    dpp = FastGreedyDPP()
    with pytest.raises(ValueError, match="needs `vectors`"):
        dpp.select(np.ones(3), 2)
    with pytest.raises(ValueError, match="not both"):
        dpp.select(np.ones(3), 2, vectors=np.eye(3), similarity=np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        dpp.select(np.array([1.0, np.nan]), 1, vectors=np.eye(2))
    with pytest.raises(ValueError):
        FastGreedyDPP(theta=-0.1)
    with pytest.raises(ValueError):
        FastGreedyDPP(window=0)
    assert dpp.select(np.ones(3), 0, vectors=np.eye(3)).shape == (0,)
    assert dpp.select(np.array([0.3, 0.1]), 5, vectors=np.eye(2)).tolist() == [0, 1]
    assert dpp.get_params()["theta"] == 0.5


# --------------------------------------------------------------------------- eps (item 8)
@pytest.mark.parametrize("scale", [1e-11, 1e-3, 1.0, 1e6, 1e11])
def test_eps_is_relative_to_the_kernel_scale(scale):
    """Multiplying S by a positive constant changes neither the picks nor the stopping."""
    rng = np.random.default_rng(6)
    v = rng.normal(size=(30, 8))  # rank 8: the kernel is exhausted after 8 picks
    s = cosine_similarity(v)
    r = rng.random(30)
    ref = FastGreedyDPP(theta=0.0, fill=False).select(r, 12, similarity=s)
    assert len(ref) == 8  # stops at the rank, not earlier (relevance order would be wrong)
    assert ref.tolist() != np.argsort(-r, kind="stable")[:8].tolist()
    got = FastGreedyDPP(theta=0.0, fill=False).select(r, 12, similarity=s * scale)
    assert got.tolist() == ref.tolist()
    kernel = random_kernel(7, 12, 4, jitter=0.0)  # rank 4
    assert fast_greedy_map(kernel * scale, 10).tolist() == fast_greedy_map(kernel, 10).tolist()


def test_eps_threshold_hand_computed():
    # diagonal kernel: d_i^2 = L_ii never changes; eligible iff L_ii > eps * max L_ii
    kernel = np.diag([2e-11, 1e-21, 5e-12, 3e-21])
    # relative threshold 1e-10 * 2e-11 = 2e-21: items 0, 2, 3 are eligible, item 1 is not
    assert fast_greedy_map(kernel, 4).tolist() == [0, 2, 3]
    assert fast_greedy_map(kernel, 4, eps=0.3).tolist() == [0]  # 5e-12 <= 0.3 * 2e-11
    assert fast_greedy_map(kernel, 4, eps=0.2).tolist() == [0, 2]
    r = np.array([0.1, 0.9, 0.5, 0.3])
    # theta = 0: pure determinant, then fill by relevance (item 1)
    assert FastGreedyDPP(theta=0.0).select(r, 4, similarity=kernel).tolist() == [0, 2, 3, 1]


# --------------------------------------------------------------------------- lazy kernel
def _lazy_and_eager(v, r, valid, theta, k, eps):
    from divrec.rerank.dpp import _run

    bsz = v.shape[0]
    weight = np.full(bsz, 2.0 * float(tradeoff_alpha(theta)))
    args = (v, np.zeros((bsz, 0, 0)), False, valid, r, weight, np.ones(bsz, bool), k, eps, None)
    work = np.zeros((bsz, 2), dtype=np.int64)
    lazy = _run(*args, lazy=True, work=work)[:2]
    eager = _run(*args, lazy=False)[:2]
    return lazy, eager, work


@pytest.mark.parametrize(
    ("n", "d", "k", "eps"),
    [(300, 64, 10, 1e-10), (300, 8, 12, 1e-10), (500, 16, 15, 1e-6), (120, 32, 40, 1e-10)],
)
def test_lazy_kernel_picks_what_the_eager_update_picks(n, d, k, eps):
    """Gram–Schmidt + lazy heap + sweeps vs Chen et al.'s eager Cholesky update."""
    rng = np.random.default_rng(n * d + k)
    bsz = 12
    v = rng.normal(size=(bsz, n, d))
    v[0, ::7] = 0.0  # zero vectors are never eligible
    v[1] *= 1e-150  # tiny norms (squared norms near underflow)
    r = rng.random((bsz, n))
    r[2] = np.round(r[2] * 4) / 4  # tied relevance levels
    valid = rng.random((bsz, n)) < 0.9
    for theta in (0.0, 0.5, 0.9):
        (out_l, cnt_l), (out_e, cnt_e), _ = _lazy_and_eager(v, r, valid, theta, k, eps)
        np.testing.assert_array_equal(cnt_l, cnt_e)
        np.testing.assert_array_equal(out_l, out_e)


def test_lazy_kernel_skips_most_updates_for_short_lists_and_sweeps_near_exhaustion():
    rng = np.random.default_rng(0)
    n, d = 2000, 64
    v = rng.normal(size=(4, n, d))
    r = rng.random((4, n))
    valid = np.ones((4, n), dtype=bool)
    (out, _), (ref, _), work = _lazy_and_eager(v, r, valid, 0.5, 10, EPS)
    np.testing.assert_array_equal(out, ref)
    # the eager update computes N (k - 1) Cholesky entries; lazily far fewer are needed
    assert np.all(work[:, 0] < 0.2 * n * 9) and np.all(work[:, 1] == 0)
    # k near d: every candidate falls behind, the kernel switches to sweeps
    (out, cnt), (ref, cnt_ref), work = _lazy_and_eager(v, r, valid, 0.5, 60, EPS)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(cnt, cnt_ref)
    assert np.all(work[:, 1] > 0)


def test_lazy_kernel_falls_back_for_overflowing_norms_and_rejects_non_finite():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, 40, 5))
    v[0, 3] *= 1e160  # squared norm overflows: rescaled by the eager path
    r = rng.random((1, 40))
    valid = np.ones((1, 40), dtype=bool)
    (out, _), (ref, _), work = _lazy_and_eager(v, r, valid, 0.5, 6, EPS)
    np.testing.assert_array_equal(out, ref)
    assert np.all(work == 0)  # not run lazily
    v[0, 5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        FastGreedyDPP(theta=0.5).select(r[0], 6, vectors=v[0])


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    d=st.integers(1, 12),
    k=st.integers(1, 30),
    theta=st.sampled_from([0.0, 0.3, 0.7, 0.95]),
    eps=st.sampled_from([1e-10, 1e-4]),
    levels=st.sampled_from([0, 3]),  # 0: continuous relevance, 3: tied levels
    duplicates=st.booleans(),
)
def test_lazy_kernel_equals_eager_property(seed, n, d, k, theta, eps, levels, duplicates):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(2, n, d))
    if duplicates and n > 2:
        v[:, 1] = v[:, 0]  # identical candidates: the lower position first
    r = rng.random((2, n))
    if levels:
        r = np.floor(r * levels) / levels
    valid = np.ones((2, n), dtype=bool)
    valid[1] = rng.random(n) < 0.7
    (out_l, cnt_l), (out_e, cnt_e), _ = _lazy_and_eager(v, r, valid, theta, k, eps)
    np.testing.assert_array_equal(cnt_l, cnt_e)
    np.testing.assert_array_equal(out_l, out_e)


def test_kernel_summary_flags_and_fill():
    """The kernel's return value summarizes ``stats`` (callers read no array when all is
    well): bit 0 a non-finite vector, bit 1 a non-finite relevance, bit 2 a short row.
    With ``fill``, short rows and rows not run are completed in relevance order (a stable
    sort of −r over the positions not taken, as ``relevance_order``)."""
    from divrec.rerank import _kernels
    from divrec.rerank._base import constraint_args

    rng = np.random.default_rng(7)
    bsz, n, d, k = 6, 30, 10, 8  # d > k: a full-rank request is never short
    for case in range(16):
        v = rng.normal(size=(bsz, n, d))
        r = rng.integers(0, 4, size=(bsz, n)).astype(float)  # many ties
        valid = np.ones((bsz, n), dtype=bool)
        active = np.ones(bsz, dtype=bool)
        fill = bool(case & 8)
        if case & 1:
            v[1, 2, 0] = np.inf
        if case & 2:
            r[3, 5] = np.nan
        if case & 4:
            valid[4, 3:] = False  # 3 valid: full list of 3 (not short)
            v[5, :, 1:] = 0.0  # rank 1: the kernel is exhausted after one pick
            active[2] = False  # θ = 1: not run, the relevance order
        out = np.empty((bsz, k), dtype=np.int64)
        stats = np.empty((bsz, 5), dtype=np.int64)
        summary = _kernels.dpp_greedy_batch(
            v, np.zeros((bsz, 0, 0)), False, valid, r, True, np.ones(bsz), active,
            k, EPS, 0, out, stats, True, fill,
            *_kernels.scratch(*_kernels.dpp_scratch_sizes(n, d, k, k)),
            *constraint_args(None, bsz),
        )  # fmt: skip
        bad, picks, kb = stats[:, 1], stats[:, 0], stats[:, 4]
        length = (out >= 0).sum(axis=1)
        assert bool(summary & 1) == bool(case & 1) == (bad == 1).any()
        assert bool(summary & 2) == bool(case & 2) == (bad == 2).any()
        assert bool(summary & 4) == (length < kb)[bad == 0].any()  # bad rows: an error
        for b in range(bsz):
            if bad[b]:
                assert length[b] == 0
                continue
            head = out[b, : picks[b]]
            ok = valid[b].copy()
            ok[head] = False
            rest = np.flatnonzero(ok)[np.argsort(-r[b, ok], kind="stable")]
            want = head.tolist() + (
                rest[: kb[b] - picks[b]].tolist() if fill or not active[b] else []
            )
            assert out[b, : length[b]].tolist() == want and np.all(out[b, length[b] :] == -1)
        assert picks[5] == (1 if case & 4 else kb[5]) and picks[4] == kb[4]
        assert picks[2] == (0 if case & 4 else kb[2])
