"""PURS unexpectedness: interest clusters by batched mean shift, Eq. 1–3, and activations.

A user's interest clusters are the modes of the embeddings of their recent history items
(PURS Eq. 1–2, mean shift after Cheng 1995 / Comaniciu & Meer 2002); the unexpectedness of
an item is its weighted mean Euclidean distance to the cluster centers, the weights being the
cluster sizes |C_k| / Σ|C| (Eq. 3, `divrec.metrics.unexpectedness_scores`). The single
closure variant (Li & Tuzhilin 2019; PURS Variation 5) uses one cluster, the mean of the
whole history.

`mean_shift` clusters all `B` histories of a batch in one call: every real history point
starts a trajectory that moves to the kernel-weighted mean of the (fixed) real history
points around it. Gaussian kernel (the default of PURS): each trajectory stops when its own
move is below `tol` or after `max_iter` steps (the textbook per-point rule, as scikit-learn's
`MeanShift`), computed by a compiled kernel on the request's Gram matrix
(`divrec.ranking._mean_shift_kernel`: `O(L²)` per step instead of `O(L² d)`, the same
iterates). Flat kernel: all requests step together until the largest move in the batch is
below `tol`. Converged points closer than the bandwidth are merged as scikit-learn's
`MeanShift` does (the mode with more history points within the bandwidth wins), and each
history point joins its nearest kept mode.

Kernel and radius. The paper ("typically modeled as a Gaussian") and the authors' code
(lpworld/PURS `mean_shift`: weights `exp(−‖c − x‖² / h²)`, `h = 0.2`) use a Gaussian kernel;
ours is `exp(−‖c − x‖² / (2h²))`, so the code's `h` is ours times √2. A fixed `h = 0.2`
against history items about 0.8 apart (unit-normalized SVD vectors, or trained embeddings
of norm ≈ 1) leaves every item its own cluster. :func:`median_bandwidth` sets the radius
from the embedding scale instead: `h_b = scale · median_{r<s} ‖x_r − x_s‖` over the real
history points of request `b` (the rule used by PURS here, `bandwidth_rule="median"`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

__all__ = [
    "ACTIVATIONS",
    "InterestClusters",
    "activation",
    "gaussian_modes",
    "interest_clusters",
    "mean_shift",
    "median_bandwidth",
    "single_closure",
    "unexpectedness",
]

Kernel = Literal["flat", "gaussian"]
ACTIVATIONS = ("xexp", "gaussian", "identity")


class InterestClusters(tuple):
    """`(centers (B, K, d), weights (B, K))`; weight 0 marks a padded (absent) cluster."""

    __slots__ = ()

    def __new__(cls, centers: torch.Tensor, weights: torch.Tensor):
        return super().__new__(cls, (centers, weights))

    @property
    def centers(self) -> torch.Tensor:
        return self[0]

    @property
    def weights(self) -> torch.Tensor:
        return self[1]


def _as_tensor(x, dtype=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def median_bandwidth(
    points: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    scale: float = 0.5,
) -> torch.Tensor:
    """Per-request mean-shift radius from the embedding scale.

    `h_b = scale · median{‖x_r − x_s‖ : r < s real points of request b}` (the lower median
    for an even count, as `torch.median`). A request with fewer than two real points, or
    whose median is 0, takes the median of the other requests' medians times `scale`
    (`scale` when no request has one).

    Args:
        points: `(B, L, d)` history item embeddings.
        mask: `(B, L)` bool, True for real entries (None: all).
        scale: the multiple of the median pairwise distance.

    Returns:
        `(B,)` float64 radii, all positive.
    """
    if not (isinstance(scale, int | float) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"bandwidth_scale must be a positive number, got {scale!r}")
    x = _as_tensor(points).detach().double()
    if x.dim() != 3:
        raise ValueError(f"points must have shape (B, L, d), got {tuple(x.shape)}")
    b, n, _ = x.shape
    m = torch.ones(b, n, dtype=torch.bool) if mask is None else _as_tensor(mask).bool()
    with torch.no_grad():
        d = torch.cdist(x, x)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        pair = upper & m[:, :, None] & m[:, None, :]
        d = torch.where(pair, d, torch.full_like(d, float("nan"))).reshape(b, -1)
        med = torch.nanmedian(d, dim=1).values if n > 1 else torch.full((b,), float("nan"))
        ok = torch.isfinite(med) & (med > 0)
        fill = float(torch.median(med[ok])) if bool(ok.any()) else 1.0
        return float(scale) * torch.where(ok, med, torch.full_like(med, fill))


def mean_shift(
    points: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    bandwidth: float | torch.Tensor | np.ndarray = 0.2,
    kernel: Kernel = "flat",
    tol: float = 1e-5,
    max_iter: int = 300,
) -> InterestClusters:
    """Batched mean shift of each history's points to their modes (PURS Eq. 1–2).

    Args:
        points: `(B, L, d)` history item embeddings.
        mask: `(B, L)` bool, True for real history entries (None: all).
        bandwidth: the kernel radius `h`, one number or `(B,)` per request
            (:func:`median_bandwidth`). Flat kernel: the points within distance `h`;
            Gaussian: weights `exp(-‖x_i − x‖² / (2h²))`.
        kernel: "flat" (scikit-learn's `MeanShift`) or "gaussian".
        tol: stop tolerance on a move (PURS code: 1e-5): per trajectory (Gaussian), or on the
            largest move in the batch (flat).
        max_iter: step cap (per trajectory for the Gaussian kernel).

    Returns:
        `InterestClusters(centers (B, L, d), weights (B, L))`: the kept modes (in the
        order of decreasing support) and the number of history points assigned to each;
        unused slots have weight 0 and center 0. Computed without gradient.
    """
    if isinstance(bandwidth, int | float):
        if not (bandwidth > 0 and math.isfinite(bandwidth)):
            raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
    else:
        bw = _as_tensor(bandwidth).double()
        if bw.dim() != 1 or not bool(torch.all(torch.isfinite(bw) & (bw > 0))):
            raise ValueError("bandwidth must be a positive number or a (B,) positive array")
    if kernel not in ("flat", "gaussian"):
        raise ValueError(f"kernel must be 'flat' or 'gaussian', got {kernel!r}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol!r}")
    x = _as_tensor(points)
    if not torch.is_floating_point(x):
        x = x.double()
    if x.dim() != 3:
        raise ValueError(f"points must have shape (B, L, d), got {tuple(x.shape)}")
    b, n, _ = x.shape
    m = torch.ones(b, n, dtype=torch.bool) if mask is None else _as_tensor(mask).bool()
    if m.shape != (b, n):
        raise ValueError(f"mask must have shape ({b}, {n}), got {tuple(m.shape)}")
    if isinstance(bandwidth, int | float):
        h2 = torch.full((b, 1, 1), float(bandwidth) ** 2, dtype=x.dtype)
    else:
        if bw.shape != (b,):
            raise ValueError(f"bandwidth must have shape ({b},), got {tuple(bw.shape)}")
        h2 = bw.square().to(x.dtype)[:, None, None]
    with torch.no_grad():
        x = x.detach()
        if kernel == "gaussian":
            modes, _ = gaussian_modes(x, m, h2[:, 0, 0], tol, max_iter)
            return _merge_compiled(x, m, modes, h2[:, 0, 0])
        # flat kernel (scikit-learn's): all requests step together until the largest move in
        # the batch is below `tol`
        valid = m[:, None, :]
        modes = x.clone()
        for _ in range(max_iter):
            w = ((_sq_dists(modes, x) <= h2) & valid).to(x.dtype)
            total = w.sum(-1, keepdim=True)
            new = torch.where(total > 0, torch.bmm(w, x) / total.clamp_min(1e-30), modes)
            shift2 = (new - modes).square().sum(-1)
            modes = new
            if not bool(((shift2 >= float(tol) ** 2) & m).any()):
                break
        return _merge_compiled(x, m, modes, h2[:, 0, 0])


def _merge_compiled(x, m, modes, h2) -> InterestClusters:
    """`_merge_modes` by the compiled kernel (float64), returned in the points' dtype."""
    from divrec.ranking._mean_shift_kernel import merge_modes

    xn = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float64)
    mn = np.ascontiguousarray(modes.cpu().numpy(), dtype=np.float64)
    centers = np.empty_like(xn)
    weights = np.empty(xn.shape[:2])
    h2n = np.ascontiguousarray(h2.cpu().double().numpy())
    merge_modes(xn, np.ascontiguousarray(m.cpu().numpy()), mn, h2n, centers, weights)
    dev = x.device
    return InterestClusters(
        torch.from_numpy(centers).to(dev, x.dtype), torch.from_numpy(weights).to(dev, x.dtype)
    )


def gaussian_modes(
    points: torch.Tensor, mask: torch.Tensor, h2: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian mean-shift modes of every real point (compiled, float64; per-trajectory stop).

    Args:
        points: `(B, L, d)`; mask: `(B, L)` bool; h2: `(B,)` squared radii.
        tol: a trajectory stops when its move is below this; max_iter: step cap.

    Returns:
        `(modes (B, L, d) float64, steps (B, L) int64)` on the points' device; a padded
        point is its own mode (0 steps).
    """
    from divrec.ranking._mean_shift_kernel import gaussian_modes as kernel

    x = np.ascontiguousarray(points.detach().cpu().numpy(), dtype=np.float64)
    m = np.ascontiguousarray(mask.cpu().numpy(), dtype=np.bool_)
    inv = np.ascontiguousarray(0.5 / h2.detach().cpu().double().numpy())
    out = np.empty_like(x)
    steps = np.empty(m.shape, dtype=np.int64)
    kernel(x, m, inv, float(tol) ** 2, int(max_iter), out, steps)
    dev = points.device
    return torch.from_numpy(out).to(dev), torch.from_numpy(steps).to(dev)


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`(B, N, M)` squared Euclidean distances of `(B, N, d)` and `(B, M, d)`, by differences."""
    return (a[:, :, None, :] - b[:, None, :, :]).square().sum(-1)


def _sq_dists_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`_sq_dists` by `‖a‖² + ‖b‖² − 2ab` (one batched matmul; rounding ~1e-7 relative in
    float32, so a point within that of a hard radius may fall on either side)."""
    aa = a.square().sum(-1, keepdim=True)
    bb = b.square().sum(-1)[:, None, :]
    return torch.baddbmm(aa + bb, a, b.transpose(1, 2), alpha=-2).clamp_min_(0)


def _merge_modes(x, mask, modes, h2) -> InterestClusters:
    """Greedy non-maximum suppression of the modes (as `sklearn.cluster.MeanShift`)."""
    b, n, d = x.shape
    valid = mask[:, None, :]
    support = ((_sq_dists_mm(modes, x) <= h2) & valid).sum(-1)  # (B, L)
    support = torch.where(mask, support, torch.full_like(support, -1))
    # Visit order: support descending, ties by the mode's coordinates descending
    # (lexicographic, as scikit-learn sorts (intensity, center) tuples): one stable lexsort,
    # the request row the primary key.
    neg = -modes.reshape(b * n, d).cpu().numpy()
    sup = -support.reshape(-1).cpu().numpy()
    row = np.repeat(np.arange(b), n)
    flat = np.lexsort((neg[:, 0], sup, row))  # the first coordinate breaks support ties
    a, z = flat[:-1], flat[1:]
    tie = (row[a] == row[z]) & (sup[a] == sup[z]) & (neg[a, 0] == neg[z, 0])
    # a tie there too: all coordinates (unless the tied modes are identical, whose order
    # changes nothing; a stable sort keeps their index order either way)
    if np.any(tie) and np.any(neg[a[tie]] != neg[z[tie]]):
        flat = np.lexsort((*neg.T[::-1], sup, row))
    order = flat.reshape(b, n) % n
    # greedy suppression, in numpy (tiny arrays: torch's per-call overhead dominates)
    close = (_sq_dists_mm(modes, modes) <= h2).cpu().numpy()  # (B, L, L)
    removed = ~mask.cpu().numpy()
    kept_np = np.zeros((b, n), dtype=bool)
    rows = np.arange(b)
    for r in range(n):
        c = order[:, r]
        take = ~removed[rows, c]
        kept_np[rows, c] = take
        removed |= take[:, None] & close[rows, c]
    kept = torch.from_numpy(kept_np).to(x.device)
    # every real point joins its nearest kept mode
    pd2 = _sq_dists_mm(x, modes).masked_fill(~kept[:, None, :], float("inf"))
    label = pd2.argmin(-1)  # (B, L) index of a kept mode
    counts = torch.zeros(b, n, dtype=x.dtype)
    counts.scatter_add_(1, label, mask.to(x.dtype))
    # compact: kept modes first, by decreasing support
    rank = torch.where(kept, support, torch.full_like(support, -2))
    order2 = torch.argsort(rank, dim=1, descending=True, stable=True)
    centers = torch.gather(modes, 1, order2[..., None].expand(b, n, d))
    weights = torch.gather(counts, 1, order2)
    centers = centers * (weights > 0)[..., None]
    return InterestClusters(centers, weights)


def single_closure(
    points: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> InterestClusters:
    """One cluster per history: the mean of its real points (PURS Variation 5).

    Returns:
        `InterestClusters(centers (B, 1, d), weights (B, 1))`, weight 1 (0 for an empty
        history).
    """
    x = _as_tensor(points)
    if not torch.is_floating_point(x):
        x = x.double()
    b, n, _ = x.shape
    m = torch.ones(b, n, dtype=torch.bool) if mask is None else _as_tensor(mask).bool()
    with torch.no_grad():
        w = m.to(x.dtype)
        cnt = w.sum(1, keepdim=True)
        center = (w[..., None] * x.detach()).sum(1) / cnt.clamp_min(1.0)
        return InterestClusters(center[:, None, :], (cnt > 0).to(x.dtype))


def interest_clusters(
    points,
    mask=None,
    method: Literal["mean-shift", "single"] = "mean-shift",
    bandwidth: float = 0.2,
    kernel: Kernel = "flat",
    tol: float = 1e-5,
    max_iter: int = 300,
    bandwidth_rule: Literal["fixed", "median"] = "fixed",
) -> InterestClusters:
    """`mean_shift` (method "mean-shift") or `single_closure` (method "single").

    With `bandwidth_rule="median"` the radius of each request is
    `median_bandwidth(points, mask, scale=bandwidth)` (`bandwidth` is then the scale);
    "fixed" uses `bandwidth` itself.
    """
    if bandwidth_rule not in ("fixed", "median"):
        raise ValueError(f"bandwidth_rule must be 'fixed' or 'median', got {bandwidth_rule!r}")
    if method == "mean-shift":
        if bandwidth_rule == "median":
            h = median_bandwidth(points, mask, bandwidth)
            return mean_shift(points, mask, h, kernel, tol, max_iter)
        return mean_shift(points, mask, bandwidth, kernel, tol, max_iter)
    if method == "single":
        return single_closure(points, mask)
    raise ValueError(f"method must be 'mean-shift' or 'single', got {method!r}")


def unexpectedness(items: torch.Tensor, clusters: InterestClusters) -> torch.Tensor:
    """PURS Eq. 3: `Σ_k (|C_k| / Σ|C|) ‖e_i − c_k‖₂` per (request, item).

    Args:
        items: `(B, N, d)` (or `(B, d)`) item embeddings.
        clusters: `(centers (B, K, d), weights (B, K))`.

    Returns:
        `(B, N)` (or `(B,)`); 0 for a request without clusters. Differentiable in `items`
        (callers stop the gradient when the paper does).
    """
    squeeze = items.dim() == 2
    e = items[:, None, :] if squeeze else items
    c, w = clusters
    c = c.to(e.dtype)
    w = w.to(e.dtype)
    diff = e[:, :, None, :] - c[:, None, :, :]
    dist = diff.square().sum(-1).clamp_min(1e-24).sqrt()  # (B, N, K), safe gradient at 0
    wn = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    out = (dist * wn[:, None, :]).sum(-1)
    return out[:, 0] if squeeze else out


def activation(x: torch.Tensor, kind: str = "xexp") -> torch.Tensor:
    """The unexpected activation f (PURS Sec. 4.3) and its ablations (Sec. 6.2).

    * "xexp": `f(x) = x·e^(−x)` (PURS; continuous, bounded by 1/e, unimodal at x = 1);
    * "gaussian": `f(x) = exp(−x²/2) / √(2π)`, the standard normal density (Variation 1;
      the paper's formula was lost in extraction, this is our reading of "Gaussian
      distribution as the activation");
    * "identity": `f(x) = x` (Variation 2, no activation).
    """
    if kind == "xexp":
        return x * torch.exp(-x)
    if kind == "gaussian":
        return torch.exp(-0.5 * x.square()) / math.sqrt(2 * math.pi)
    if kind == "identity":
        return x
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {kind!r}")
