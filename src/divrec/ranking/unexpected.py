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


def mean_shift(
    points: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray | None = None,
    bandwidth: float = 0.2,
    kernel: Kernel = "flat",
    tol: float = 1e-5,
    max_iter: int = 300,
) -> InterestClusters:
    """Batched mean shift of each history's points to their modes (PURS Eq. 1–2).

    Args:
        points: `(B, L, d)` history item embeddings.
        mask: `(B, L)` bool, True for real history entries (None: all).
        bandwidth: the kernel radius `h` (PURS: 0.2). Flat kernel: the points within
            distance `h`; Gaussian: weights `exp(-‖x_i − x‖² / (2h²))`.
        kernel: "flat" (scikit-learn's `MeanShift`) or "gaussian".
        tol: stop when the largest move of any trajectory in the batch is below this
            (PURS code: 1e-5).
        max_iter: iteration cap.

    Returns:
        `InterestClusters(centers (B, L, d), weights (B, L))`: the kept modes (in the
        order of decreasing support) and the number of history points assigned to each;
        unused slots have weight 0 and center 0. Computed without gradient.
    """
    if not (isinstance(bandwidth, int | float) and bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}")
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
    h2 = float(bandwidth) ** 2
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
        removed |= take[:, None] & (mode_d2[rows, c] <= h2)
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
) -> InterestClusters:
    """`mean_shift` (method "mean-shift") or `single_closure` (method "single")."""
    if method == "mean-shift":
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
