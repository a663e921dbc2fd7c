"""Sequence encoders: a user's recent item sequence → one or K interest vectors.

YouTube DNN as in ComiRec (masked mean → dense layer; Covington et al. 2016), ComiRec-SA's
self-attentive extractor (Cen et al. 2020 Eq. 4-5) and ComiRec-DR's capsule dynamic routing
(Cen et al. 2020 Sec. 3.2.1; Sabour et al. 2017), as torch modules.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dynamic_routing", "last_items", "self_attentive", "squash"]


def squash(z: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Capsule squash (Sabour et al. 2017 Eq. 1): |z|²/(1+|z|²) · z/|z| along the last axis."""
    n2 = (z * z).sum(-1, keepdim=True)
    return n2 / (1.0 + n2) * z / torch.sqrt(n2 + eps)


def dynamic_routing(
    e_hat: torch.Tensor, mask: torch.Tensor, iters: int = 3, detach: bool = True
) -> torch.Tensor:
    """Behaviour-to-interest dynamic routing (Cen et al. 2020 Sec. 3.2.1).

    Args:
        e_hat: `(B, K, L, D)` per-interest transformed history items ê_kj = W_k e_j.
        mask: `(B, L)` bool, True at real (non-padding) positions.
        iters: routing iterations r.
        detach: stop the gradient through the logit updates of all but the last iteration
            (as ComiRec does).

    Returns:
        `(B, K, D)` interest capsules v_k.
    """
    b, k, n_pos, _ = e_hat.shape
    logits = e_hat.new_zeros(b, k, n_pos)
    m = mask[:, None, :].to(e_hat.dtype)
    v = e_hat.new_zeros(b, k, e_hat.shape[-1])
    for it in range(iters):
        c = torch.softmax(logits, dim=1) * m  # coupling over interests; padding gets 0
        src = e_hat if it == iters - 1 or not detach else e_hat.detach()
        z = torch.einsum("bkl,bkld->bkd", c, src)
        v = squash(z)
        if it < iters - 1:
            logits = logits + torch.einsum("bkd,bkld->bkl", v, src)
    return v


def self_attentive(
    h: torch.Tensor,
    h_att: torch.Tensor,
    mask: torch.Tensor,
    w1: torch.nn.Linear,
    w2: torch.nn.Linear,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ComiRec-SA's extractor (Cen et al. 2020 Eq. 4-5).

    Args:
        h: `(B, L, D)` history item embeddings (the values).
        h_att: `(B, L, D)` the attention input (embeddings + positional embeddings).
        mask: `(B, L)` bool, True at real positions.
        w1: `D → D_a` layer (tanh after it).
        w2: `D_a → K` layer.

    Returns:
        `(interests (B, K, D), attention (B, K, L))`.
    """
    a = w2(torch.tanh(w1(h_att))).transpose(1, 2)  # (B, K, L)
    a = a.masked_fill(~mask[:, None, :], float("-inf"))
    a = torch.softmax(a, dim=-1)
    a = torch.nan_to_num(a, nan=0.0)  # an empty history attends to nothing
    return a @ h, a


class _SeqNet(torch.nn.Module):
    """Item table + history encoder → `(B, K, D)` interests."""

    def __init__(
        self,
        n_items: int,
        dim: int,
        encoder: str,
        max_len: int,
        n_interests: int,
        routing_iters: int,
        dr_weights: str = "shared",
    ):
        super().__init__()
        self.dr_weights = dr_weights
        self.encoder = encoder
        self.routing_iters = routing_iters
        self.pad = n_items
        self.item = torch.nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        if encoder == "mean":
            self.dense = torch.nn.Linear(dim, dim)
        elif encoder == "sa":
            self.pos = torch.nn.Embedding(max_len, dim)
            self.w1 = torch.nn.Linear(dim, 4 * dim)
            self.w2 = torch.nn.Linear(4 * dim, n_interests)
        elif dr_weights == "position":  # ComiRec's bilinear_type=2: W_{j,k} per position j
            self.caps = torch.nn.Parameter(torch.empty(max_len, n_interests, dim, dim))
        else:  # one W_k per interest, shared by the positions
            self.caps = torch.nn.Parameter(torch.empty(n_interests, dim, dim))

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        """`(B, L)` item indices, −1 padded, oldest first → `(B, K, D)` interests."""
        mask = hist >= 0
        h = self.item(torch.where(mask, hist, self.pad))
        if self.encoder == "mean":
            m = mask.to(h.dtype)[..., None]
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.dense(pooled)[:, None, :]
        if self.encoder == "sa":
            pos = self.pos.weight[None, : hist.shape[1]]
            return self_attentive(h, h + pos, mask, self.w1, self.w2)[0]
        if self.dr_weights == "position":
            e_hat = torch.einsum("lkde,ble->bkld", self.caps[: hist.shape[1]], h)
        else:
            e_hat = torch.einsum("kde,ble->bkld", self.caps, h)
        return dynamic_routing(e_hat, mask, self.routing_iters)


def last_items(history: np.ndarray, length: int) -> np.ndarray:
    """The last `length` real items of each row, left-aligned and −1 right-padded.

    Args:
        history: `(B, L')` item indices, −1 marks padding anywhere in a row.
        length: output width.

    Returns:
        `(B, length)` int64, oldest first.
    """
    history = np.asarray(history, dtype=np.int64)
    if history.ndim != 2:
        raise ValueError(f"history must be (B, L), got shape {history.shape}")
    valid = history >= 0
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(history, order, axis=1)
    count = valid.sum(1)
    start = np.maximum(count - length, 0)
    idx = start[:, None] + np.arange(length)
    ok = idx < count[:, None]
    width = max(packed.shape[1], 1)
    packed = (
        np.pad(packed, ((0, 0), (0, 1)), constant_values=-1) if packed.shape[1] == 0 else packed
    )
    out = np.take_along_axis(packed, np.minimum(idx, width - 1), axis=1)
    return np.where(ok, out, -1)
