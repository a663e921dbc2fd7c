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

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    make_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.base import Recommender
from divrec.stage import param

__all__ = ["SPR", "SPRConfig", "rank_interpolation"]


@dataclass(frozen=True, kw_only=True)
class SPRConfig(TrainingConfig):
    """`SPR` hyperparameters (Lu et al. 2012).

    Attributes:
        factors: latent dimension.
        alpha: popularity discount exponent α of the positive weights `pop_i^(−α)`
            (0 = BPR).
        epochs: passes over the positive (user, item) events.
        batch_size: events per Adam step.
        lr: Adam learning rate.
        reg: L2 weight on the user and item rows used in a step.
        seed: seeds torch (inside `training_scope`), the negatives and the event order.
        threads: torch threads during the fit (default 1; None: the `divrec.threads` policy;
            0: every core).
        device: "cpu" only.
        patience, valid_fraction: not supported (no validation split); must stay unset.
    """

    factors: int = param(32, ge=1)
    alpha: float = param(0.5, ge=0.0)
    epochs: int = param(10, ge=0)
    batch_size: int = param(1024, ge=1)
    lr: float = param(0.01, gt=0.0)
    reg: float = param(1e-4, ge=0.0)
    threads: int | None = param(1, ge=0)

    def validate(self) -> None:
        super().validate()
        supports(self, "SPR")


class SPR(Recommender):
    """Serendipitous personalized ranking (Lu et al. 2012), popularity-weighted BPR-MF.

    Hyperparameters: `SPRConfig`.

    Attributes:
        user_factors_, item_factors_: `(n_users, factors)`, `(n_items, factors)`.
        item_bias_: `(n_items,)`.
        train_loss_: mean training loss per epoch.
    """

    Config = SPRConfig

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        with training_scope(self.seed, self.threads, self.device):
            self._fit_scoped(matrix)

    def _fit_scoped(self, matrix: sp.csr_matrix) -> None:
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
        opt = make_optimizer(params, "adam", lr=self.lr)
        n = users.shape[0]
        seen = matrix
        steps = -(-n // self.batch_size)
        with TrainLoop("SPR", self.epochs * steps, self.progress) as loop:
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
                    loop.step(opt, loss, weight=idx.shape[0])
                loop.end_epoch()
        self.train_loss_ = loop.train_loss
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
