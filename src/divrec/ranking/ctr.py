"""Sequence CTR models on (user, recent history, candidate) windows, and PURS's baselines.

Every network here maps a batch of requests and candidates to logits,
`net(user (B,), history (B, L), items (B, C)) -> (B, C)`, with `history` oldest → newest and
−1 left padding, user −1 for an anonymous request. `SequenceCTR` is the shared `Recommender`
(ranking stage): it trains a network with binary cross-entropy on labeled windows
(`divrec.splitting.windows`) and scores a request's candidates from its recent sequence —
`Query.history` when given (fresh history), else the user's last `L` training items.

Baselines of PURS Sec. 5.2 (each a standard form of its paper, on the same three "fields"
user, candidate item and history):

* DIN (Zhou et al. 2018): local activation unit `a(h_j, e) = MLP([h_j, e, h_j − e, h_j ⊙ e])`
  over the history, weighted-sum pooling (no softmax), `MLP([e_u, Σ_j a_j h_j, e])`.
* DeepFM (Guo et al. 2017): FM over the field vectors `[v_u, v_i, mean_j v_{h_j}]` (first
  order + pairwise interactions) plus a deep MLP of their concatenation; one shared
  embedding.
* Wide & Deep (Cheng et al. 2016): a wide linear model over the one-hot user, item and
  (mean-normalized) multi-hot history, plus a deep MLP of `[e_u, e_i, mean_j e_{h_j}]`. No
  hand-made cross-product features (the paper's are dataset-specific).
* PNN (Qu et al. 2016), inner-product variant: the MLP reads the field embeddings and their
  pairwise inner products.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.nn.layers import MLP, expand_rows, local_activation
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    holdout_split,
    make_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.base import Recommender
from divrec.splitting.sequences import user_sequences
from divrec.splitting.windows import LabeledWindows, labeled_windows
from divrec.stage import param

__all__ = [
    "DIN",
    "DINNet",
    "DeepFM",
    "DeepFMNet",
    "IdEmbeddingNet",
    "MLP",
    "PNN",
    "PNNNet",
    "SequenceCTR",
    "SequenceCTRConfig",
    "WideDeep",
    "WideDeepNet",
    "right_align",
]


def right_align(history: np.ndarray, length: int) -> np.ndarray:
    """`(B, M)` −1-padded lists (padding anywhere) → `(B, length)` of their last items.

    The real entries keep their order and end in the last column; missing ones are −1.
    """
    h = np.asarray(history, dtype=np.int64)
    b, m = h.shape
    valid = h >= 0
    # position of each valid entry counted from the end
    from_end = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] - 1
    out = np.full((b, length), -1, dtype=np.int64)
    keep = valid & (from_end < length)
    rows = np.broadcast_to(np.arange(b)[:, None], (b, m))
    out[rows[keep], length - 1 - from_end[keep]] = h[keep]
    return out


class IdEmbeddingNet(nn.Module):
    """Base of the window networks: user/item embeddings with a zero padding row (index n:
    user −1 / item −1), id mapping and masked history mean."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_emb = nn.Embedding(n_users + 1, dim, padding_idx=n_users)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        nn.init.normal_(self.user_emb.weight, 0.0, init_std)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)
        with torch.no_grad():
            self.user_emb.weight[n_users].zero_()
            self.item_emb.weight[n_items].zero_()

    def _ids(self, user, history, items):
        u = torch.where(user < 0, torch.full_like(user, self.n_users), user)
        h = torch.where(history < 0, torch.full_like(history, self.n_items), history)
        return u, h, items, history >= 0

    def _hist_mean(self, h_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(h_emb.dtype)
        return (h_emb * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)


class DINNet(IdEmbeddingNet):
    """DIN: local activation unit over the history, sum pooling, MLP (Zhou et al. 2018)."""

    def __init__(self, n_users, n_items, dim=32, hidden=(80, 40), att_hidden=(36,), dropout=0.0):
        super().__init__(n_users, n_items, dim)
        self.att = MLP(4 * dim, tuple(att_hidden))
        self.mlp = MLP(3 * dim, tuple(hidden), dropout=dropout)

    def forward(self, user, history, items):
        u, h, i, mask = self._ids(user, history, items)
        eu, eh, ei = self.user_emb(u), self.item_emb(h), self.item_emb(i)  # (B,d) (B,L,d) (B,C,d)
        pooled = local_activation(self.att, eh, mask, ei)  # (B, C, d)
        c = ei.shape[1]
        return self.mlp(torch.cat([expand_rows(eu, c), pooled, ei], -1))[..., 0]


class DeepFMNet(IdEmbeddingNet):
    """DeepFM on the fields (user, item, mean history), shared embeddings (Guo et al. 2017)."""

    def __init__(self, n_users, n_items, dim=32, hidden=(80, 40), dropout=0.0):
        super().__init__(n_users, n_items, dim)
        self.w_user = nn.Embedding(n_users + 1, 1, padding_idx=n_users)
        self.w_item = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        nn.init.zeros_(self.w_user.weight)
        nn.init.zeros_(self.w_item.weight)
        self.bias = nn.Parameter(torch.zeros(()))
        self.mlp = MLP(3 * dim, tuple(hidden), dropout=dropout)

    def forward(self, user, history, items):
        u, h, i, mask = self._ids(user, history, items)
        c = i.shape[1]
        vu, vi = expand_rows(self.user_emb(u), c), self.item_emb(i)
        vh = expand_rows(self._hist_mean(self.item_emb(h), mask), c)
        wh = self._hist_mean(self.w_item(h), mask)  # (B, 1)
        first = self.bias + self.w_user(u) + wh + self.w_item(i)[..., 0]  # (B, C)
        fields = torch.stack([vu, vi, vh], 2)  # (B, C, 3, d)
        second = 0.5 * (fields.sum(2).square() - fields.square().sum(2)).sum(-1)
        deep = self.mlp(fields.flatten(2))[..., 0]
        return first + second + deep


class WideDeepNet(IdEmbeddingNet):
    """Wide & Deep: linear over one-hot user/item + multi-hot history, and a deep MLP."""

    def __init__(self, n_users, n_items, dim=32, hidden=(80, 40), dropout=0.0):
        super().__init__(n_users, n_items, dim)
        self.w_user = nn.Embedding(n_users + 1, 1, padding_idx=n_users)
        self.w_item = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        self.w_hist = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        for e in (self.w_user, self.w_item, self.w_hist):
            nn.init.zeros_(e.weight)
        self.bias = nn.Parameter(torch.zeros(()))
        self.mlp = MLP(3 * dim, tuple(hidden), dropout=dropout)

    def forward(self, user, history, items):
        u, h, i, mask = self._ids(user, history, items)
        c = i.shape[1]
        wide = (
            self.bias
            + self.w_user(u)
            + self._hist_mean(self.w_hist(h), mask)
            + self.w_item(i)[..., 0]
        )
        eh = expand_rows(self._hist_mean(self.item_emb(h), mask), c)
        deep = self.mlp(torch.cat([expand_rows(self.user_emb(u), c), self.item_emb(i), eh], -1))
        return wide + deep[..., 0]


class PNNNet(IdEmbeddingNet):
    """Inner-product PNN: MLP over `[fields, <f_a, f_b> for a < b]` (Qu et al. 2016)."""

    def __init__(self, n_users, n_items, dim=32, hidden=(80, 40), dropout=0.0):
        super().__init__(n_users, n_items, dim)
        self.mlp = MLP(3 * dim + 3, tuple(hidden), dropout=dropout)

    def forward(self, user, history, items):
        u, h, i, mask = self._ids(user, history, items)
        c = i.shape[1]
        f = [
            expand_rows(self.user_emb(u), c),
            self.item_emb(i),
            expand_rows(self._hist_mean(self.item_emb(h), mask), c),
        ]
        prods = [(f[a] * f[b]).sum(-1, keepdim=True) for a, b in ((0, 1), (0, 2), (1, 2))]
        return self.mlp(torch.cat(f + prods, -1))[..., 0]


@dataclass(frozen=True, kw_only=True)
class SequenceCTRConfig(TrainingConfig):
    """Hyperparameters of the window CTR models (`DIN`, `DeepFM`, `WideDeep`, `PNN`; PURS
    Sec. 5.2) and the base of `PURSConfig`.

    Attributes:
        history: `L`, the number of recent items read per request (PURS: 10).
        dim: embedding size (PURS: 32).
        hidden: MLP widths (PURS: (80, 40)).
        epochs: training epochs (passes over the windows).
        batch_size: windows per optimizer step.
        lr: learning rate.
        optimizer: "adam" or "sgd" (the PURS code: SGD, lr 1, decay).
        lr_decay: multiply the learning rate by this after every epoch.
        weight_decay: L2 on all parameters.
        dropout: drop probability of the MLP hidden units in training (not at test time).
        n_negatives: sampled unobserved items per training event when fitting on a log.
        threshold: `label = value >= threshold` when fitting on a log (None: implicit).
        seed: seeds torch (inside `training_scope`), the negative sampling and the batch
            order.
        threads: torch threads during the fit (default 1; None: the `divrec.threads` policy;
            0: every core).
        device: "cpu", "cuda" or "auto": where the network trains (DIN, DeepFM, Wide &
            Deep, PNN; PURS is CPU only). A net trained on a GPU scores there; a saved one
            loads on the CPU.
        patience: early stopping on the validation loss (log loss of the validation
            windows: `fit_windows(valid=...)`, or `valid_fraction` of the windows cut by
            `fit`): stop after `patience` epochs without improvement and keep the best
            epoch's weights. None: every epoch, the last weights kept.
        valid_fraction: share of the windows cut by `fit` held out as validation windows
            (`divrec.nn.holdout_split`; 0: none; not used by `fit_windows`).
    """

    history: int = param(10, ge=1)
    dim: int = param(32, ge=1)
    hidden: tuple[int, ...] = param((80, 40), ge=1)
    epochs: int = param(3, ge=1)
    batch_size: int = param(256, ge=1)
    lr: float = param(1e-3, gt=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_decay: float = param(1.0, gt=0.0)
    weight_decay: float = param(0.0, ge=0.0)
    dropout: float = param(0.1, ge=0.0, lt=1.0)
    n_negatives: int = param(1, ge=0)
    threshold: float | None = None
    threads: int | None = param(1, ge=0)

    def validate(self) -> None:
        super().validate()
        supports(self, "SequenceCTR", early_stopping=True, cuda=True)


class SequenceCTR(Recommender):
    """Shared trainer / ranking stage for the window CTR networks.

    Subclasses implement `_build_net()`. `fit(train)` cuts labeled windows from the log
    (`labeled_windows(train, history, n_negatives, threshold)`); `fit_windows` trains on
    given windows (the reproduction shares one split among models). Hyperparameters:
    `SequenceCTRConfig`.

    Attributes:
        net_: the trained network.
        user_history_: `(n_users, history)` each user's last training items (−1 padded).
        train_loss_: mean training loss per epoch.
        valid_loss_: validation log loss per epoch (when there are validation windows).
        train_seconds_: CPU seconds of each epoch's optimizer steps.
        best_epoch_: the epoch whose weights are kept with `patience` (else None).
    """

    Config = SequenceCTRConfig
    supports_history = True

    # ------------------------------------------------------------------ building
    def _build_net(self) -> nn.Module:
        raise NotImplementedError

    def _rebuild_module(self, name: str, state: dict) -> nn.Module:
        if name != "net_":
            return super()._rebuild_module(name, state)
        return self._build_net()

    # ------------------------------------------------------------------ fitting
    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        if data is None:
            raise ValueError(f"{type(self).__name__} needs an Interactions log (event order)")
        windows = labeled_windows(
            data, self.history, self.n_negatives, self.threshold, seed=self.seed
        )
        valid = None
        if self.valid_fraction > 0:
            tr, va = holdout_split(len(windows), self.valid_fraction, self.seed)
            windows, valid = windows.take(tr), windows.take(va)
        self._train(windows, data, valid)

    def fit_windows(
        self,
        windows: LabeledWindows,
        train_log: Interactions,
        valid: LabeledWindows | None = None,
        epoch_callback: Callable[[int, SequenceCTR], None] | None = None,
    ) -> SequenceCTR:
        """Trains on given labeled windows; returns self.

        Args:
            windows: training examples (history width must be `history`).
            train_log: the training events (the seen items and the per-user recent
                sequences used when a request carries no history).
            valid: optional examples whose loss is recorded per epoch (and drives early
                stopping with `patience`).
            epoch_callback: called as `callback(epoch, self)` after every epoch (in eval
                mode), e.g. to trace metrics over epochs (PURS Fig. 5).
        """
        if windows.history.shape[1] != self.history:
            raise ValueError(
                f"windows have history width {windows.history.shape[1]}, model reads {self.history}"
            )
        self.user_items_ = train_log.to_csr(binary=True)
        self.n_users_, self.n_items_ = self.user_items_.shape
        self._train(windows, train_log, valid, epoch_callback)
        return self

    def _train(self, windows, data, valid=None, epoch_callback=None) -> None:
        has_valid = valid is not None and len(valid) > 0
        if self.patience is not None and not has_valid:
            raise ValueError(
                f"{type(self).__name__}: patience needs validation windows (valid_fraction > 0, "
                "or fit_windows(valid=...))"
            )
        with training_scope(self.seed, self.threads, self.device) as dev:
            self._train_scoped(windows, data, valid if has_valid else None, epoch_callback, dev)

    def _train_scoped(self, windows, data, valid, epoch_callback, dev) -> None:
        rng = np.random.default_rng(self.seed)
        seqs = user_sequences(data, self.history, min_len=1)
        hist = np.full((data.n_users, self.history), -1, dtype=np.int64)
        hist[seqs.users] = seqs.items
        self.user_history_ = hist
        self.net_ = self._build_net().to(dev)
        params = [p for p in self.net_.parameters() if p.requires_grad]
        opt = make_optimizer(params, self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.lr_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        t_user = torch.from_numpy(windows.user).to(dev)
        t_hist = torch.from_numpy(windows.history).to(dev)
        t_item = torch.from_numpy(windows.item).to(dev)
        t_label = torch.from_numpy(windows.label.astype(np.float32)).to(dev)
        n = len(windows)
        n_batches = (n + self.batch_size - 1) // self.batch_size
        self.train_seconds_: list[float] = []
        with TrainLoop(
            type(self).__name__, self.epochs * n_batches, self.progress, self.patience
        ) as loop:
            for epoch in range(self.epochs):
                self.net_.train()
                perm = torch.from_numpy(rng.permutation(n)).to(dev)
                t0 = time.process_time()
                for s in range(0, n, self.batch_size):
                    idx = perm[s : s + self.batch_size]
                    logits = self.net_(t_user[idx], t_hist[idx], t_item[idx][:, None])[:, 0]
                    loss = loss_fn(logits, t_label[idx]) + self._extra_loss()
                    loop.step(opt, loss, weight=idx.shape[0])
                sched.step()
                # the optimizer steps only (validation and callbacks excluded), CPU s
                self.train_seconds_.append(time.process_time() - t0)
                self.net_.eval()
                keep = self.net_ if self.patience is not None else None  # best weights
                stop = loop.end_epoch(keep, None if valid is None else self._log_loss(valid))
                if epoch_callback is not None:
                    epoch_callback(epoch, self)
                if stop:
                    break
            if self.patience is not None:
                loop.restore_best(self.net_)
        self.train_loss_ = loop.train_loss
        self.valid_loss_ = loop.valid_loss
        self.best_epoch_ = loop.best_epoch if self.patience is not None else None
        self.net_.eval()

    def _log_loss(self, windows: LabeledWindows) -> float:
        """Mean log loss of the predicted click probabilities of `windows`."""
        p = self.predict_windows(windows)
        y = windows.label
        eps = 1e-7
        return float(-(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)).mean())

    def _extra_loss(self) -> torch.Tensor | float:
        return 0.0

    # ------------------------------------------------------------------ scoring
    def _logits(self, users, history, items, chunk: int = 4096) -> np.ndarray:
        """`(B,)`, `(B, L)`, `(B, C)` → `(B, C)` float32 logits, in request chunks."""
        self._check_fitted()
        out = np.empty(items.shape, dtype=np.float32)
        rows = max(1, chunk // max(items.shape[1], 1))
        dev = next(self.net_.parameters()).device  # where it was trained (a loaded net: CPU)
        with torch.no_grad():
            for s in range(0, items.shape[0], rows):
                sl = slice(s, s + rows)
                out[sl] = (
                    self.net_(
                        torch.from_numpy(np.ascontiguousarray(users[sl])).to(dev),
                        torch.from_numpy(np.ascontiguousarray(history[sl])).to(dev),
                        torch.from_numpy(np.ascontiguousarray(items[sl])).to(dev),
                    )
                    .float()
                    .cpu()
                    .numpy()
                )
        return out

    def predict_windows(self, windows: LabeledWindows) -> np.ndarray:
        """`(W,)` predicted click probabilities of labeled windows."""
        logits = self._logits(windows.user, windows.history, windows.item[:, None])[:, 0]
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    def _request_history(self, query: Query) -> np.ndarray:
        if query.history is not None:
            return right_align(query.history, self.history)
        return self.user_history_[query.users]

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        return self._logits(query.users, self._request_history(query), items)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self._score_items(
            Query(users=users),
            np.broadcast_to(np.arange(self.n_items_), (users.size, self.n_items_)),
        )

    def _score_history(self, query: Query) -> np.ndarray:
        items = np.broadcast_to(np.arange(self.n_items_), (len(query), self.n_items_))
        return self._score_items(query, items)

    def item_embeddings(self) -> np.ndarray:
        """`(n_items, dim)` learned item embeddings."""
        self._check_fitted()
        return self.net_.item_emb.weight.detach()[: self.n_items_].cpu().numpy().copy()


class DIN(SequenceCTR):
    """DIN ranking stage (Zhou et al. 2018); see `DINNet`."""

    def _build_net(self) -> nn.Module:
        return DINNet(
            self.n_users_, self.n_items_, self.dim, tuple(self.hidden), (36,), self.dropout
        )


class DeepFM(SequenceCTR):
    """DeepFM ranking stage (Guo et al. 2017); see `DeepFMNet`."""

    def _build_net(self) -> nn.Module:
        return DeepFMNet(self.n_users_, self.n_items_, self.dim, tuple(self.hidden), self.dropout)


class WideDeep(SequenceCTR):
    """Wide & Deep ranking stage (Cheng et al. 2016); see `WideDeepNet`."""

    def _build_net(self) -> nn.Module:
        return WideDeepNet(self.n_users_, self.n_items_, self.dim, tuple(self.hidden), self.dropout)


class PNN(SequenceCTR):
    """Inner-product PNN ranking stage (Qu et al. 2016); see `PNNNet`."""

    def _build_net(self) -> nn.Module:
        return PNNNet(self.n_users_, self.n_items_, self.dim, tuple(self.hidden), self.dropout)
