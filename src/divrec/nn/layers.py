"""Torch building blocks shared by several models.

* `MLP`: dense ReLU layers (optional dropout) and a linear output layer, the tower of the
  window CTR models (`divrec.ranking.ctr`) and of PURS (`divrec.ranking.purs`).
* `local_activation`: DIN's local activation unit pooling (Zhou et al. 2018, Sec. 4.3), read
  by DIN and by PURS's unexpected factor (PURS Eq. 12).
* `expand_rows`: `(B, F)` → `(B, C, F)`, a request-level vector repeated per candidate.

Importing this module imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "expand_rows", "local_activation"]


class MLP(nn.Module):
    """Dense layers with ReLU (and dropout with drop probability `dropout`), then a linear
    output layer of width `out`.

    Args:
        n_in: input width.
        hidden: hidden layer widths.
        out: output width.
        dropout: drop probability after each hidden ReLU (0: no dropout layers).
    """

    def __init__(self, n_in: int, hidden: tuple[int, ...], out: int = 1, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(n_in, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = h
        layers.append(nn.Linear(n_in, out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def expand_rows(x: torch.Tensor, c: int) -> torch.Tensor:
    """`(B, F)` → `(B, C, F)` (a view: row b repeated for each of the C candidates)."""
    return x[:, None, :].expand(-1, c, -1)


def local_activation(
    att: nn.Module, eh: torch.Tensor, mask: torch.Tensor, ei: torch.Tensor
) -> torch.Tensor:
    """DIN local activation: `Σ_j a(h_j, e) h_j` with `a = att([h, e, h − e, h ⊙ e])`.

    Args:
        att: the unit (`4d → 1`).
        eh: `(B, L, d)` history embeddings.
        mask: `(B, L)` bool, the real history entries.
        ei: `(B, C, d)` candidate embeddings.

    Returns:
        `(B, C, d)` pooled history per candidate (no softmax: DIN keeps the intensity).
    """
    b, n, d = eh.shape
    c = ei.shape[1]
    hh = eh[:, None, :, :].expand(b, c, n, d)
    ee = ei[:, :, None, :].expand(b, c, n, d)
    w = att(torch.cat([hh, ee, hh - ee, hh * ee], -1))[..., 0]  # (B, C, L)
    w = w * mask[:, None, :].to(w.dtype)
    return torch.einsum("bcl,bld->bcd", w, eh)
