"""Batched mean shift, unexpectedness (PURS Eq. 1–3) and the activations."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import MeanShift

from divrec.metrics import unexpectedness_scores
from divrec.ranking.unexpected import (
    activation,
    gaussian_modes,
    interest_clusters,
    mean_shift,
    median_bandwidth,
    single_closure,
    unexpectedness,
)


def _partition(labels):
    return sorted(tuple(np.flatnonzero(labels == v)) for v in np.unique(labels))


@pytest.mark.parametrize("blobs, d, h", [(True, 3, 0.6), (False, 2, 0.3), (False, 8, 1.0)])
def test_flat_mean_shift_matches_sklearn_on_random_data(blobs, d, h):
    rng = np.random.default_rng(0)
    b, n = 4, 10
    if blobs:
        means = rng.normal(0, 1.5, (b, 3, d))
        pick = rng.integers(0, 3, (b, n))
        x = means[np.arange(b)[:, None], pick] + rng.normal(0, 0.25, (b, n, d))
    else:
        x = rng.uniform(0, 1, (b, n, d))
    centers, weights = mean_shift(x, bandwidth=h, kernel="flat")
    centers, weights = centers.numpy(), weights.numpy()
    for r in range(b):
        ref = MeanShift(bandwidth=h).fit(x[r])
        k = int((weights[r] > 0).sum())
        assert k == ref.cluster_centers_.shape[0]
        ours = centers[r, :k]
        # same modes (order-free)
        dist = np.linalg.norm(ours[:, None] - ref.cluster_centers_[None], axis=-1)
        assert np.allclose(dist.min(axis=1), 0, atol=1e-9)
        # same cluster sizes
        match = dist.argmin(axis=1)
        sizes = np.bincount(ref.labels_, minlength=k)[match]
        assert np.array_equal(weights[r, :k], sizes)


def test_gaussian_mean_shift_matches_brute_force_trajectories():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (5, 8, 2))
    h = 0.7
    centers, weights = mean_shift(x, bandwidth=h, kernel="gaussian", tol=1e-10, max_iter=5000)
    for r in range(5):
        modes = []
        for p in x[r]:  # textbook per-point iteration
            y = p.copy()
            for _ in range(5000):
                w = np.exp(-((x[r] - y) ** 2).sum(1) / (2 * h * h))
                y_new = w @ x[r] / w.sum()
                if np.linalg.norm(y_new - y) < 1e-10:
                    y = y_new
                    break
                y = y_new
            modes.append(y)
        modes = np.array(modes)
        k = int((weights[r] > 0).sum())
        got = centers[r, :k].numpy()
        # each kept mode is one of the brute-force modes; every brute-force mode is near one
        assert np.linalg.norm(got[:, None] - modes[None], axis=-1).min(1).max() < 1e-6
        assert np.linalg.norm(modes[:, None] - got[None], axis=-1).min(1).max() <= h
        assert weights[r].sum() == 8


def test_mask_excludes_padding_and_unexpectedness_by_hand():
    # history: two points at the origin, one at (3, 4), one padded far away
    x = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, True, False]])
    clusters = mean_shift(x, mask, bandwidth=0.2)
    c, w = clusters
    assert w[0].tolist() == [2.0, 1.0, 0.0, 0.0]
    assert c[0, :2].tolist() == [[0.0, 0.0], [3.0, 4.0]]
    # item at (3, 0): distances 3 and 4, weights 2/3 and 1/3 -> 10/3
    e = torch.tensor([[[3.0, 0.0]]])
    assert unexpectedness(e, clusters).item() == pytest.approx(10 / 3)
    ref = unexpectedness_scores(e.numpy(), c.numpy(), w.numpy())
    assert ref[0, 0] == pytest.approx(10 / 3)
    # single closure: mean of (0,0),(0,0),(3,4) = (1, 4/3); distance to (3,0) = sqrt(4+16/9)
    single = single_closure(x, mask)
    assert unexpectedness(e, single).item() == pytest.approx(math.sqrt(4 + 16 / 9))


def test_activations():
    x = torch.tensor([0.0, 0.5, 1.0, 3.0])
    assert torch.allclose(
        activation(x, "xexp"),
        torch.tensor([0, 0.5 * math.exp(-0.5), math.exp(-1), 3 * math.exp(-3)]),
    )
    # unimodal with its maximum 1/e at x = 1
    grid = torch.linspace(0, 10, 10001)
    f = activation(grid, "xexp")
    assert abs(grid[f.argmax()].item() - 1.0) < 1e-3 and f.max().item() == pytest.approx(1 / math.e)
    assert activation(torch.tensor([0.0]), "gaussian").item() == pytest.approx(
        1 / math.sqrt(2 * math.pi)
    )
    assert torch.equal(activation(x, "identity"), x)
    with pytest.raises(ValueError, match="activation"):
        activation(x, "relu")


def test_mean_shift_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bandwidth"):
        mean_shift(np.zeros((1, 2, 2)), bandwidth=0.0)
    with pytest.raises(ValueError, match="shape"):
        mean_shift(np.zeros((2, 2)))


def test_per_request_bandwidth_equals_each_request_alone():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (4, 7, 3))
    mask = rng.random((4, 7)) < 0.8
    mask[:, 0] = True
    h = np.array([0.3, 0.8, 1.5, 3.0])
    for kernel in ("flat", "gaussian"):
        c, w = mean_shift(x, mask, bandwidth=h, kernel=kernel, tol=1e-9, max_iter=2000)
        for r in range(4):
            c1, w1 = mean_shift(
                x[r : r + 1], mask[r : r + 1], bandwidth=float(h[r]), kernel=kernel, tol=1e-9,
                max_iter=2000,
            )  # fmt: skip
            assert torch.equal(w[r], w1[0])
            assert torch.allclose(c[r], c1[0], atol=1e-6)


def test_median_bandwidth_by_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (3, 5, 2))
    mask = np.array([[1, 1, 1, 0, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    got = median_bandwidth(x, mask, scale=0.5).numpy()
    meds = []
    for r in (0, 2):
        pts = x[r][mask[r]]
        d = [np.linalg.norm(a - b) for i, a in enumerate(pts) for b in pts[i + 1 :]]
        # torch.nanmedian takes the lower of the two middle values
        meds.append(np.sort(d)[(len(d) - 1) // 2])
    assert got[0] == pytest.approx(0.5 * meds[0])
    assert got[2] == pytest.approx(0.5 * meds[1])
    # a single point: the (lower) median of the other requests' radii
    assert got[1] == pytest.approx(0.5 * min(meds))
    with pytest.raises(ValueError, match="bandwidth_scale"):
        median_bandwidth(x, mask, scale=0.0)


def test_median_rule_finds_two_interest_blobs_where_a_fixed_small_radius_does_not():
    rng = np.random.default_rng(5)
    # two tight blobs of 5 unit-scale points each, 2.0 apart (scale of trained embeddings)
    a = rng.normal(0, 0.15, (5, 8))
    b = rng.normal(0, 0.15, (5, 8)) + 2.0 / np.sqrt(8)
    x = np.concatenate([a, b])[None]
    c, w = interest_clusters(x, None, "mean-shift", 0.5, "gaussian", bandwidth_rule="median")
    assert sorted(w[0][w[0] > 0].tolist()) == [5.0, 5.0]
    _, w_fixed = interest_clusters(x, None, "mean-shift", 0.05, "gaussian")
    assert int((w_fixed[0] > 0).sum()) == 10
    with pytest.raises(ValueError, match="bandwidth_rule"):
        interest_clusters(x, None, bandwidth_rule="auto")


def _numpy_gaussian_modes(x, mask, h, tol, max_iter):
    """Plain NumPy reference: each real point's own trajectory in R^d (no Gram trick),
    `c <- sum_j w_j x_j / sum_j w_j`, `w_j = exp(-|c - x_j|^2 / (2h^2))` over the real points,
    stopping after the step whose move is below `tol` or after `max_iter` steps."""
    modes, steps = x.copy(), np.zeros(mask.shape, dtype=int)
    for r in range(x.shape[0]):
        pts = x[r][mask[r]]
        for i in np.flatnonzero(mask[r]):
            c, t = x[r, i].copy(), 0
            while t < max_iter:
                w = np.exp(-((pts - c) ** 2).sum(1) / (2 * h[r] ** 2))
                new = w @ pts / w.sum()
                move = np.linalg.norm(new - c)
                c, t = new, t + 1
                if move < tol:
                    break
            modes[r, i], steps[r, i] = c, t
    return modes, steps


# derandomized: the kernel stops on squared moves (fastmath), the reference on norms, so a
# trajectory whose last move lands within ~1e-6 relative of `tol` could take one step more on
# one side (1,200 random cases matched; review); fixed examples keep CI from drawing one
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 7),
    d=st.integers(1, 5),
    max_iter=st.sampled_from([1, 3, 300]),
)
def test_compiled_gaussian_modes_equal_a_numpy_reference(seed, n, d, max_iter):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3, n, d))
    mask = rng.random((3, n)) < 0.8
    mask[1] = False  # an empty history: every point is its own mode, 0 steps
    h = rng.uniform(0.3, 1.5, 3)
    want, want_steps = _numpy_gaussian_modes(x, mask, h, 1e-5, max_iter)
    got, steps = gaussian_modes(
        torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(h**2), 1e-5, max_iter
    )
    np.testing.assert_allclose(got.numpy(), want, atol=1e-9)
    np.testing.assert_array_equal(steps.numpy(), np.where(mask, want_steps, 0))
    # float32 points (as in training): same modes within float32 rounding
    got32, _ = gaussian_modes(
        torch.from_numpy(x).float(), torch.from_numpy(mask), torch.from_numpy(h**2), 1e-5,
        max_iter,
    )  # fmt: skip
    np.testing.assert_allclose(got32.numpy(), want, atol=1e-5)
    # the clusters: no NaN, every real point counted once, none for the empty history
    c, w = mean_shift(x, mask, bandwidth=h, kernel="gaussian", max_iter=max_iter)
    assert torch.isfinite(c).all()
    np.testing.assert_array_equal(w.sum(1).numpy(), mask.sum(1))


def test_gaussian_clusters_by_hand_two_pairs():
    # two pairs far apart: each pair's trajectories meet at its midpoint (symmetry)
    x = np.array([[[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.0, 5.2], [9.0, 9.0]]])
    mask = np.array([[True, True, True, True, False]])
    c, w = mean_shift(x, mask, bandwidth=0.5, kernel="gaussian", tol=1e-12)
    assert w[0].tolist() == [2.0, 2.0, 0.0, 0.0, 0.0]
    got = sorted(map(tuple, np.round(c[0, :2].numpy(), 9)))
    assert got == [(0.1, 0.0), (5.0, 5.1)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), d=st.integers(1, 4))
def test_compiled_merge_equals_the_torch_merge(seed, n, d):
    from divrec.ranking.unexpected import _merge_compiled, _merge_modes

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (4, n, d)).astype(np.float64)  # duplicates and coordinate ties
    modes = x + rng.integers(0, 2, (4, n, d)) * 0.5
    mask = rng.random((4, n)) < 0.8
    h2 = rng.choice([0.3, 1.1, 2.6], 4)
    x, modes, mask, h2 = map(torch.from_numpy, (x, modes, mask, h2))
    c1, w1 = _merge_modes(x, mask, modes, h2[:, None, None])
    c2, w2 = _merge_compiled(x, mask, modes, h2)
    assert torch.equal(w1, w2)
    assert torch.equal(c1, c2)
