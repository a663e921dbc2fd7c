"""Unexpectedness-oriented baselines of PURS (Sec. 5.2): SPR and Auralist (reconstructed).

* SPR, serendipitous personalized ranking (Lu et al. 2012): matrix factorization trained
  with a pairwise (AUC / BPR) objective in which each positive pair is weighted by a
  decreasing function of the positive item's popularity, `w_i = pop_i^(−α)` (normalized to
  mean 1 over the positives), so that ranking a popular item above a negative counts less.
  `α = 0` is plain BPR-MF (we use it as the relevance model of HOM-LIN, Auralist and DPP).
* Auralist (Zhang et al. 2012) blends an accuracy ranking with novelty / diversity /
  serendipity rankings by rank interpolation. Reconstruction (the paper's components are
  LDA-based; ours are the same roles on our data): `rank_interpolation` of the relevance
  scores, item novelty `−log₂ popularity` and the PURS unexpectedness of the candidate for
  the user (the "declustering" role), with weights `(1 − λ_nov − λ_unexp, λ_nov, λ_unexp)`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.retrieval.base import Recommender

__all__ = ["SPR", "rank_interpolation"]


class SPR(Recommender):
    """Serendipitous personalized ranking (Lu et al. 2012), popularity-weighted BPR-MF.

    Args:
        factors: latent dimension.
        alpha: popularity discount exponent (0 = BPR).
        epochs: passes over the positive (user, item) events.
        batch_size, lr, reg: Adam training and L2 on the used rows.
        seed: seed.
        progress: progress bar.
    """

    def __init__(
        self,
        factors: int = 32,
        alpha: float = 0.5,
        epochs: int = 10,
        batch_size: int = 1024,
        lr: float = 0.01,
        reg: float = 1e-4,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.factors = factors
        self.alpha = alpha
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.reg = reg
        self.seed = seed
        self.progress = progress

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        from rich.progress import Progress

        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        torch.set_num_threads(1)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        coo = matrix.tocoo()
        users = torch.from_numpy(coo.row.astype(np.int64))
        items = torch.from_numpy(coo.col.astype(np.int64))
        pop = np.asarray(matrix.sum(axis=0)).ravel()
        w = np.maximum(pop[coo.col], 1.0) ** (-float(self.alpha))
        weight = torch.from_numpy((w / w.mean()).astype(np.float32))
        n_users, n_items = matrix.shape
        user = nn.Embedding(n_users, self.factors)
        item = nn.Embedding(n_items, self.factors)
        bias = nn.Embedding(n_items, 1)
        for e in (user, item):
            nn.init.normal_(e.weight, 0, 0.1)
        nn.init.zeros_(bias.weight)
        params = list(user.parameters()) + list(item.parameters()) + list(bias.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        n = users.shape[0]
        seen = matrix
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task("SPR", total=self.epochs)
            for _ in range(self.epochs):
                perm = torch.from_numpy(rng.permutation(n))
                neg_all = rng.integers(0, n_items, n)
                # re-draw negatives that the user has seen (a few rounds suffice)
                for _ in range(5):
                    hit = np.asarray(seen[coo.row, neg_all]).ravel() > 0
                    if not hit.any():
                        break
                    neg_all[hit] = rng.integers(0, n_items, int(hit.sum()))
                negs = torch.from_numpy(neg_all)
                for s in range(0, n, self.batch_size):
                    idx = perm[s : s + self.batch_size]
                    u, i, j = users[idx], items[idx], negs[idx]
                    eu, ei, ej = user(u), item(i), item(j)
                    x = (eu * (ei - ej)).sum(-1) + (bias(i) - bias(j))[:, 0]
                    loss = -(weight[idx] * nn.functional.logsigmoid(x)).mean()
                    loss = (
                        loss + self.reg * (eu.square() + ei.square() + ej.square()).sum(-1).mean()
                    )
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                bar.advance(task)
        self.user_factors_ = user.weight.detach().numpy().copy()
        self.item_factors_ = item.weight.detach().numpy().copy()
        self.item_bias_ = bias.weight.detach().numpy()[:, 0].copy()

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T + self.item_bias_[None, :]

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        u = self.user_factors_[query.users]
        return np.einsum("bd,bcd->bc", u, self.item_factors_[items]) + self.item_bias_[items]


def _ranks01(x: np.ndarray) -> np.ndarray:
    """Per-row rank of each entry scaled to [0, 1] (1 = largest; ties share the mean rank)."""
    from scipy.stats import rankdata

    n = x.shape[1]
    r = rankdata(x, axis=1, method="average") - 1.0
    return r / max(n - 1, 1)


def rank_interpolation(components: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Auralist's hybrid rank interpolation: `Σ_c w_c · rank_c / (N − 1)` per row.

    Args:
        components: `(B, N)` score matrices (higher = better for each component).
        weights: one non-negative weight per component.

    Returns:
        `(B, N)` blended scores in [0, Σ w].
    """
    if len(components) != len(weights) or not components:
        raise ValueError("rank_interpolation needs one weight per component")
    if any(w < 0 for w in weights):
        raise ValueError("rank_interpolation weights must be non-negative")
    shape = np.shape(components[0])
    out = np.zeros(shape, dtype=np.float64)
    for c, w in zip(components, weights, strict=True):
        c = np.asarray(c, dtype=np.float64)
        if c.shape != shape:
            raise ValueError(f"component shape {c.shape} differs from {shape}")
        out += w * _ranks01(c)
    return out
