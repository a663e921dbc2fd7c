"""NeuMF: generalized matrix factorization fused with an MLP (He et al. 2017, NCF Sec. 3.4).

    ŷ_ui = σ( hᵀ [ p_u^G ⊙ q_i^G ;  MLP([p_u^M ; q_i^M]) ] )          (NCF Eq. 11-12)

with separate embeddings for the GMF and MLP branches, ReLU tower layers, and the pointwise
log loss (NCF Eq. 7) on each training positive and `negatives` items drawn uniformly per
positive (re-drawn every epoch), Adam. Trained from scratch (no GMF/MLP pre-training).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from divrec.data.interactions import Interactions
from divrec.nn.train import TrainingConfig, TrainLoop, supports, training_scope
from divrec.retrieval.base import Recommender
from divrec.stage import param

__all__ = ["NeuMFConfig", "NeuMFRecommender"]


class _NeuMF(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, gmf_dim: int, mlp_dims: tuple[int, ...]):
        super().__init__()
        half = mlp_dims[0] // 2
        self.user_gmf = torch.nn.Embedding(n_users, gmf_dim)
        self.item_gmf = torch.nn.Embedding(n_items, gmf_dim)
        self.user_mlp = torch.nn.Embedding(n_users, half)
        self.item_mlp = torch.nn.Embedding(n_items, half)
        layers: list[torch.nn.Module] = []
        d = 2 * half
        for h in mlp_dims[1:]:
            layers += [torch.nn.Linear(d, h), torch.nn.ReLU()]
            d = h
        self.mlp = torch.nn.Sequential(*layers)
        self.out = torch.nn.Linear(gmf_dim + d, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """`(N,)` users and items → `(N,)` logits."""
        g = self.user_gmf(users) * self.item_gmf(items)
        m = self.mlp(torch.cat([self.user_mlp(users), self.item_mlp(items)], dim=-1))
        return self.out(torch.cat([g, m], dim=-1)).squeeze(-1)


@dataclass(frozen=True, kw_only=True)
class NeuMFConfig(TrainingConfig):
    """`NeuMFRecommender` hyperparameters.

    Attributes:
        gmf_dim: GMF embedding size (predictive factors of the GMF branch).
        mlp_dims: MLP widths: the first is the concatenated [user; item] embedding size
            (>= 2; each side gets half of it, rounded down), the rest are the ReLU layers
            (NCF's tower, e.g. (64, 32, 16, 8)).
        negatives: uniformly sampled negative items per positive, per epoch.
        epochs: passes over the positives.
        batch_size: (positive + negative) pairs per step.
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
        init_std: standard deviation of the normal embedding initialization.
        threads: torch threads during the fit (default 1; see `TrainingConfig`).

    The shared training options (seed, device, progress, early stopping) are
    `divrec.nn.TrainingConfig`'s; NeuMF trains on the CPU for every epoch (no early
    stopping).
    """

    gmf_dim: int = param(32, ge=1)
    mlp_dims: tuple[int, ...] = param((64, 32, 16), ge=1)
    negatives: int = param(4, ge=0)
    epochs: int = param(10, ge=1)
    batch_size: int = param(2048, ge=1)
    lr: float = param(0.001, gt=0.0)
    weight_decay: float = param(0.0, ge=0.0)
    init_std: float = param(0.01, ge=0.0)
    threads: int | None = param(1, ge=0)

    def validate(self) -> None:
        super().validate()
        supports(self, "NeuMFRecommender")
        if not self.mlp_dims:
            raise ValueError("mlp_dims must list at least one width")
        if self.mlp_dims[0] < 2:
            raise ValueError(
                f"mlp_dims[0] (the [user; item] embedding size) must be >= 2, got "
                f"{self.mlp_dims[0]}"
            )


class NeuMFRecommender(Recommender):
    """NeuMF (GMF + MLP), He et al. 2017 Eq. 11-12, log loss with sampled negatives (Eq. 7).

    Attributes:
        net_: the trained `_NeuMF` module.
        train_seconds_: training wall time.
        examples_seen_: (positive + negative) pairs consumed.
    """

    Config = NeuMFConfig

    def _build(self, n_users: int, n_items: int) -> _NeuMF:
        return _NeuMF(n_users, n_items, self.gmf_dim, self.mlp_dims)

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        with training_scope(self.seed, self.threads, self.device):
            self._train(matrix)

    def _train(self, matrix: sp.csr_matrix) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n_users, n_items = matrix.shape
        net = self._build(n_users, n_items)  # the Linear layers' default init, seeded
        with torch.no_grad():
            for emb in (net.user_gmf, net.item_gmf, net.user_mlp, net.item_mlp):
                emb.weight.normal_(0.0, self.init_std, generator=gen)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        coo = matrix.tocoo()
        pu, pi = coo.row.astype(np.int64), coo.col.astype(np.int64)
        n_pos = pu.size
        per_epoch = n_pos * (1 + self.negatives)
        t0 = time.perf_counter()
        seen = 0
        with TrainLoop("NeuMF", self.epochs * per_epoch, self.progress) as loop:
            for _ in range(self.epochs):
                neg_u = np.repeat(pu, self.negatives)
                neg_i = rng.integers(0, n_items, neg_u.size)  # NCF: uniform negatives
                users = np.concatenate([pu, neg_u])
                items = np.concatenate([pi, neg_i])
                labels = np.concatenate([np.ones(n_pos), np.zeros(neg_u.size)]).astype(np.float32)
                order = rng.permutation(users.size)
                users_t = torch.from_numpy(users[order])
                items_t = torch.from_numpy(items[order])
                labels_t = torch.from_numpy(labels[order])
                for s in range(0, users.size, self.batch_size):
                    sl = slice(s, s + self.batch_size)
                    logits = net(users_t[sl], items_t[sl])
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        logits, labels_t[sl]
                    )
                    loop.step(opt, loss, weight=logits.shape[0], advance=logits.shape[0])
                    seen += logits.shape[0]
                loop.end_epoch()
        self.train_loss_ = list(loop.train_loss)
        self.train_seconds_ = time.perf_counter() - t0
        self.examples_seen_ = int(seen)
        net.eval()
        self.net_ = net

    @torch.no_grad()
    def _pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`(B,)` users, `(B, C)` items → `(B, C)` logits."""
        b, c = items.shape
        u = torch.from_numpy(np.repeat(users, c).astype(np.int64))
        i = torch.from_numpy(items.reshape(-1).astype(np.int64))
        out = np.empty(b * c, dtype=np.float32)
        step = 1 << 18
        for s in range(0, b * c, step):
            out[s : s + step] = self.net_(u[s : s + step], i[s : s + step]).numpy()
        return out.reshape(b, c)

    def _score_items(self, query, items: np.ndarray) -> np.ndarray:
        return self._pairs(query.users, items)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        items = np.broadcast_to(np.arange(self.n_items_), (users.size, self.n_items_))
        return self._pairs(users, np.ascontiguousarray(items))

    def _rebuild_module(self, name: str, state: dict) -> torch.nn.Module:
        if name != "net_":
            return super()._rebuild_module(name, state)
        return self._build(self.n_users_, self.n_items_)
