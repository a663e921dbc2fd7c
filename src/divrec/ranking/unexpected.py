"""PURS unexpectedness: interest clusters by batched mean shift, Eq. 1–3, and activations.

A user's interest clusters are the modes of the embeddings of their recent history items
(PURS Eq. 1–2, mean shift after Cheng 1995 / Comaniciu & Meer 2002); the unexpectedness of
an item is its weighted mean Euclidean distance to the cluster centers, the weights being the
cluster sizes |C_k| / Σ|C| (Eq. 3, `divrec.metrics.unexpectedness_scores`). The single
closure variant (Li & Tuzhilin 2019; PURS Variation 5) uses one cluster, the mean of the
whole history.

`mean_shift` runs all `B` histories at once: every history point starts a trajectory that
moves to the kernel-weighted mean of the (fixed) history points around it, until the
largest move over the whole batch is below `tol`. Converged points closer than the
bandwidth are merged as scikit-learn's `MeanShift` does (the mode with more history points
within the bandwidth wins), and each history point joins its nearest kept mode.

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
        tol: stop when the largest move of any trajectory in the batch is below this
            (PURS code: 1e-5).
        max_iter: iteration cap.

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
        valid = m[:, None, :]
        modes = x.clone()
        active = m.clone()
        for _ in range(max_iter):
            d2 = torch.cdist(modes, x).square()
            if kernel == "flat":
                w = ((d2 <= h2) & valid).to(x.dtype)
            else:
                w = torch.exp(-d2 / (2 * h2)) * valid
            total = w.sum(-1, keepdim=True)
            new = torch.where(total > 0, (w @ x) / total.clamp_min(1e-300), modes)
            shift = (new - modes).norm(dim=-1)
            modes = new
            if not bool(((shift >= tol) & active).any()):
                break
        return _merge_modes(x, m, modes, h2)


def _merge_modes(x, mask, modes, h2) -> InterestClusters:
    """Greedy non-maximum suppression of the modes (as `sklearn.cluster.MeanShift`)."""
    b, n, d = x.shape
    valid = mask[:, None, :]
    support = ((torch.cdist(modes, x).square() <= h2) & valid).sum(-1)  # (B, L)
    support = torch.where(mask, support, torch.full_like(support, -1))
    # Visit order: support descending, ties by the mode's coordinates descending
    # (lexicographic, as scikit-learn sorts (intensity, center) tuples).
    order = torch.arange(n).expand(b, n)
    for j in range(d - 1, -1, -1):
        key = torch.gather(modes[..., j], 1, order)
        order = torch.gather(order, 1, torch.argsort(key, dim=1, descending=True, stable=True))
    key = torch.gather(support, 1, order)
    order = torch.gather(order, 1, torch.argsort(key, dim=1, descending=True, stable=True))
    mode_d2 = torch.cdist(modes, modes).square()
    removed = ~mask
    kept = torch.zeros(b, n, dtype=torch.bool)
    rows = torch.arange(b)
    for r in range(n):
        c = order[:, r]
        take = ~removed[rows, c]
        kept[rows[take], c[take]] = True
        removed |= take[:, None] & (mode_d2[rows, c] <= h2[:, 0])
    # every real point joins its nearest kept mode
    pd2 = torch.cdist(x, modes).square().masked_fill(~kept[:, None, :], float("inf"))
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
