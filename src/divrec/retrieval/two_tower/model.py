"""The TotalRecall two-tower recommender: its config, training and scoring.

Two towers u = f(u), i = g(i) in R^d scored by the scaled cosine φ(u, i) = cos(u, i)/τ
(Eq. 2), trained with Bi-/Uni-InfoNCE (Eq. 3), sampled softmax (Eq. 1, App. A.2 Eq. 9) or
MFb's BCE with explicit negatives (App. A.2 Eq. 7, Sec. 3.5); see the package docstring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from divrec.data.interactions import Interactions
from divrec.nn.losses import cosine_scores, infonce_loss, sampled_softmax_loss
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    make_table_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.baselines import FactorRecommender
from divrec.retrieval.two_tower.sampling import (
    mfb_negatives,
    parse_negatives,
    ssm_sampling_probabilities,
)
from divrec.retrieval.two_tower.search import TwoTowerSearch
from divrec.retrieval.two_tower.towers import _Towers, build_histories
from divrec.stage import param

__all__ = ["TwoTowerConfig", "TwoTowerRecommender"]


@dataclass(frozen=True, kw_only=True)
class TwoTowerConfig(TrainingConfig):
    """`TwoTowerRecommender` hyperparameters (TotalRecall; the `mfb` preset is MFb).

    Attributes:
        loss: "bi" (Bi-InfoNCE, TR, Eq. 3), "u2i" / "i2u" (Uni-InfoNCE, either half of
            Eq. 3), "mfb" (BCE with explicit negatives, App. A.2 Eq. 7) or "ssm" (sampled
            softmax, Eq. 1 / Eq. 9).
        negatives: MFb negative sampling (Sec. 3.5): "[a:b]" pairs each positive item with
            `a` random users and each positive user with `b` random items ("[0:8]",
            "[8:0]", "[4:4]", "[8:8]"); "[n]" draws n uniform (u, i) pairs. Ignored by the
            InfoNCE losses, which use in-batch negatives.
        dim: embedding dimension d.
        tau: temperature τ of Eq. 2.
        batch_size: positive pairs per step.
        epochs: passes over the positive pairs (may be fractional).
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay (0 with ``optimizer="sparse_adam"``).
        optimizer: "adam" (default): one dense Adam over every parameter (every row of both
            tables moves at every step); "sparse_adam": the ID / history embedding tables
            get sparse gradients and `torch.optim.SparseAdam` (lazy, row-wise Adam: only the
            batch's rows and their moments are updated), other parameters dense Adam. On
            ML-1M (NCF protocol, the Table 1 TR settings, 1 thread) "sparse_adam" ran at
            1.5× dense Adam's examples/s (1.8× the code before it), but its HR@10 is 0.005
            lower (0.7181 vs 0.7234, 3 seeds, seed std 0.002;
            benchmarks/results/train_tower.json). See
            `divrec.nn.train.make_table_optimizer`.
        lr_schedule: "constant" or "linear" (decays to 0 over the training examples).
        logq: apply the logQ correction with empirical marginals (InfoNCE losses) or the
            sampling distribution ("ssm").
        remove_accidental_hits: drop in-batch duplicates of the positive from the negatives.
        init_std: standard deviation of the normal embedding initialization.
        ssm_negatives: sampled negatives per batch for ``loss="ssm"`` (shared by its rows).
        ssm_sampling: ``loss="ssm"`` background distribution p_n, "uniform" or "popularity"
            (the empirical item marginal; `ssm_sampling_probabilities`).
        tower: "id" (ID embeddings, the paper's setting) or "mlp" (ID embedding → MLP) on
            both sides.
        user_tower: None (same as `tower`), "id", "mlp" or "history" (a YouTube-DNN-style
            tower over the user's last training items; Covington et al. 2016).
        hidden: MLP hidden layer sizes (for "mlp" and "history" towers).
        history_len: items L of each user's history ("history" user tower).
        history_pool: "mean" or "mean_max" (concatenate mean- and max-pooled embeddings).
        history_user_id: also feed a user-ID embedding to the history tower (zero for a
            pseudo-user without an ID).
    """

    loss: Literal["bi", "u2i", "i2u", "mfb", "ssm"] = "bi"
    negatives: str = "[0:8]"
    dim: int = param(64, ge=1)
    tau: float = param(0.111, gt=0.0)
    batch_size: int = param(512, ge=1)
    epochs: float = param(5.0, gt=0.0)
    lr: float = param(0.005, gt=0.0)
    weight_decay: float = param(0.0, ge=0.0)
    optimizer: Literal["adam", "sparse_adam"] = "adam"
    lr_schedule: Literal["constant", "linear"] = "constant"
    logq: bool = True
    remove_accidental_hits: bool = True
    init_std: float = param(0.1, ge=0.0)
    ssm_negatives: int = param(256, ge=1)
    ssm_sampling: Literal["uniform", "popularity"] = "uniform"
    tower: Literal["id", "mlp"] = "id"
    user_tower: Literal["id", "mlp", "history"] | None = None
    hidden: tuple[int, ...] = param((256,), ge=1)
    history_len: int = param(20, ge=1)
    history_pool: Literal["mean", "mean_max"] = "mean"
    history_user_id: bool = False

    def validate(self) -> None:
        super().validate()
        parse_negatives(self.negatives)
        if self.optimizer == "sparse_adam" and self.weight_decay:
            raise ValueError(
                "weight_decay must be 0 with optimizer='sparse_adam' (use optimizer='adam')"
            )
        supports(self, "TwoTowerRecommender")  # no early stopping, CPU only


def _steps(n_pos: int, batch_size: int, target: int) -> int:
    """Optimizer steps of `target` positives in epochs of `n_pos`, each ending in a short batch."""
    full, rest = divmod(target, n_pos)
    return full * -(-n_pos // batch_size) + -(-rest // batch_size)


class TwoTowerRecommender(TwoTowerSearch, FactorRecommender):
    """TotalRecall (``loss="bi"``), Uni-InfoNCE, sampled-softmax or MFb two-tower model.

    Towers (all scored by φ(u, i) = cos/τ, Eq. 2): by default both sides are ID embeddings
    (``tower="id"``, the paper's setting). ``tower="mlp"`` puts an MLP (hidden sizes
    `hidden`, ReLU, output `dim`) after the ID embedding on both sides. ``user_tower`` overrides
    the user side; ``"history"`` is a YouTube-DNN-style tower: an MLP over the mean (and, with
    ``history_pool="mean_max"``, the max) of learned embeddings of the user's last
    `history_len` training items, optionally concatenated with a user-ID embedding
    (`history_user_id`). It can score users without an ID row (`encode_history`,
    `recommend_history`). The history of each user is taken from the matrix given to `fit`:
    the newest `history_len` items by timestamp when `fit` gets an `Interactions` with
    timestamps, otherwise (and for equal timestamps) the highest item indices (see
    `build_histories`). During training the positive item of each (u, i) pair is removed from
    u's history (so the tower cannot copy its target); serving uses the full history.

    Hyperparameters: `TwoTowerConfig`. Serving by ANN search (u2i, i2u, item groups):
    `TwoTowerSearch`.

    Attributes:
        user_factors_: `(n_users, d)` float32 L2-normalized user vectors.
        item_factors_: `(n_items, d)` float32 L2-normalized item vectors.
        towers_: the trained torch towers.
        examples_seen_: training examples consumed (positives plus sampled negatives for
            MFb; positives for InfoNCE, whose negatives are the batch's other positives).
        steps_: optimizer steps taken.
        train_loss_: mean training loss of each epoch (the last one may be partial).
        train_seconds_: wall time of `fit`.
        history_: list of `(examples_seen, callback return value)`.
        user_histories_: `(n_users, history_len)` int64 history items of each user, oldest →
            newest, padded with -1 ("history" user tower only).
    """

    Config = TwoTowerConfig

    @property
    def user_tower_(self) -> str:
        """The effective user tower ("id", "mlp" or "history")."""
        return self.tower if self.user_tower is None else self.user_tower

    def _make_towers(self, n_users, n_items, init_std, gen, histories=None) -> _Towers:
        return _Towers(
            n_users,
            n_items,
            self.dim,
            init_std,
            gen,
            tower=self.tower,
            user_tower=self.user_tower_,
            hidden=self.hidden,
            history_pool=self.history_pool,
            history_user_id=self.history_user_id,
            histories=histories,
        )

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Interactions | sp.spmatrix,
        callback: Callable[[TwoTowerRecommender], object] | None = None,
        callback_every: int | None = None,
    ) -> TwoTowerRecommender:
        """Fits on the binary training matrix; returns self.

        Args:
            train: training log or user×item matrix (every nonzero is a positive pair).
            callback: called as `callback(self)` every `callback_every` training examples
                (and once at the end) with the current embeddings exported; its return values
                are stored in `history_` with the examples count.
            callback_every: examples between callbacks (None: only at the end).
        """
        self._callback = callback
        self._callback_every = callback_every
        try:
            return super().fit(train)
        finally:
            del self._callback, self._callback_every

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        start = time.perf_counter()
        with training_scope(self.seed, self.threads, self.device):
            self._train(matrix, data)
        self.train_seconds_ = time.perf_counter() - start

    def _train(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        neg_kind, n_a, n_b = parse_negatives(self.negatives) if self.loss == "mfb" else ("", 0, 0)
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        coo = matrix.tocoo()
        users = coo.row.astype(np.int64)
        items = coo.col.astype(np.int64)
        n_pos = users.size
        n_users, n_items = matrix.shape
        log_q_user = torch.from_numpy(
            np.log(np.maximum(np.bincount(users, minlength=n_users), 1) / n_pos)
        ).float()
        log_q_item = torch.from_numpy(
            np.log(np.maximum(np.bincount(items, minlength=n_items), 1) / n_pos)
        ).float()
        hist = None
        if self.user_tower_ == "history":
            self.user_histories_ = build_histories(matrix, data, self.history_len)
            hist = np.where(self.user_histories_ < 0, n_items, self.user_histories_)
        self.towers_ = self._make_towers(n_users, n_items, self.init_std, gen, hist)
        if self.loss == "ssm":
            ssm_p = ssm_sampling_probabilities(
                np.bincount(items, minlength=n_items), self.ssm_sampling
            )
            ssm_cdf = np.cumsum(ssm_p)
            ssm_cdf /= ssm_cdf[-1]
            ssm_log_q = torch.from_numpy(np.log(np.maximum(ssm_p, 1e-300))).float()
        t = self.towers_
        opt = make_table_optimizer(
            t, (t.user, t.item, t.history_item), self.optimizer, self.lr, self.weight_decay
        )
        per_pos = 1 + (n_a + n_b if self.loss == "mfb" else 0)
        target = max(1, int(round(self.epochs * n_pos)))  # positives to consume
        self.examples_seen_ = 0
        self.steps_ = 0
        self.history_ = []
        next_cb = self._callback_every or 0
        order = np.empty(0, dtype=np.int64)
        pos = consumed = 0
        total = _steps(n_pos, self.batch_size, target)
        with TrainLoop(f"training {self.loss}", total, progress=self.progress) as loop:
            while consumed < target:
                if pos >= order.size:  # a new epoch: reshuffle the positives
                    order = rng.permutation(n_pos)
                    pos = 0
                idx = order[pos : pos + min(self.batch_size, target - consumed)]
                pos += idx.size
                consumed += idx.size
                bu = torch.from_numpy(users[idx])
                bi = torch.from_numpy(items[idx])
                if self.loss == "mfb":
                    neg_u, neg_i = mfb_negatives(
                        users[idx], items[idx], neg_kind, n_a, n_b, rng, n_users, n_items
                    )
                    loss = self._mfb_loss(bu, bi, neg_u, neg_i)
                elif self.loss == "ssm":
                    neg = np.searchsorted(ssm_cdf, rng.random(self.ssm_negatives), "right")
                    neg = torch.from_numpy(np.minimum(neg, n_items - 1).astype(np.int64))
                    loss = self._ssm_loss(bu, bi, neg, ssm_log_q)
                else:
                    loss = self._infonce_step_loss(bu, bi, log_q_user, log_q_item)
                if self.lr_schedule == "linear":
                    for group in opt.param_groups:
                        group["lr"] = self.lr * (1.0 - (consumed - idx.size) / target)
                loop.step(opt, loss, weight=idx.size)
                self.steps_ += 1
                self.examples_seen_ += idx.size * per_pos
                if self._callback is not None and next_cb and self.examples_seen_ >= next_cb:
                    next_cb += self._callback_every
                    self._export()
                    self.history_.append((self.examples_seen_, self._callback(self)))
                if pos >= order.size or consumed >= target:
                    loop.end_epoch()
        self.train_loss_ = list(loop.train_loss)
        self._export()
        if self._callback is not None:
            if not self.history_ or self.history_[-1][0] != self.examples_seen_:
                self.history_.append((self.examples_seen_, self._callback(self)))

    def _infonce_step_loss(self, bu, bi, log_q_user, log_q_item) -> torch.Tensor:
        scores = cosine_scores(
            self.towers_.user_vecs(bu, exclude=bi), self.towers_.item_vecs(bi), self.tau
        )
        hits = self.remove_accidental_hits
        return infonce_loss(
            scores,
            log_q_items=log_q_item[bi] if self.logq else None,
            log_q_users=log_q_user[bu] if self.logq else None,
            direction=self.loss,
            user_ids=bu if hits else None,
            item_ids=bi if hits else None,
        )

    def _ssm_loss(self, bu, bi, neg, log_q) -> torch.Tensor:
        hits = self.remove_accidental_hits
        return sampled_softmax_loss(
            self.towers_.user_vecs(bu, exclude=bi),
            self.towers_.item_vecs(bi),
            self.towers_.item_vecs(neg),
            self.tau,
            log_q_pos=log_q[bi] if self.logq else None,
            log_q_neg=log_q[neg] if self.logq else None,
            pos_ids=bi if hits else None,
            neg_ids=neg if hits else None,
        )

    def _mfb_loss(self, bu, bi, neg_u: np.ndarray, neg_i: np.ndarray) -> torch.Tensor:
        """BCE on σ(φ) (App. A.2 Eq. 7): label 1 for the B positives, 0 for the negatives."""
        b = bu.shape[0]
        all_u = torch.cat([bu, torch.from_numpy(neg_u.ravel())])
        all_i = torch.cat([bi, torch.from_numpy(neg_i.ravel())])
        u = F.normalize(self.towers_.user_vecs(all_u, exclude=all_i), dim=-1)
        i = F.normalize(self.towers_.item_vecs(all_i), dim=-1)
        logits = (u * i).sum(-1) / self.tau
        labels = torch.zeros_like(logits)
        labels[:b] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def _export(self, chunk: int = 8192) -> None:
        t = self.towers_
        with torch.no_grad():
            if self.tower == "id" and self.user_tower_ == "id":
                self.user_factors_ = F.normalize(t.user.weight, dim=-1).numpy().copy()
                self.item_factors_ = F.normalize(t.item.weight, dim=-1).numpy().copy()
                return
            n_users, n_items = self.user_items_.shape
            parts = [
                F.normalize(t.user_vecs(torch.arange(s, min(s + chunk, n_users))), dim=-1)
                for s in range(0, n_users, chunk)
            ]
            self.user_factors_ = torch.cat(parts).numpy().astype(np.float32)
            parts = [
                F.normalize(t.item_vecs(torch.arange(s, min(s + chunk, n_items))), dim=-1)
                for s in range(0, n_items, chunk)
            ]
            self.item_factors_ = torch.cat(parts).numpy().astype(np.float32)

    # ------------------------------------------------------------------ pseudo-users
    def encode_history(self, item_lists, users=None) -> np.ndarray:
        """History-tower user vectors of item lists (pseudo-users; "history" tower only).

        Each list is read oldest → newest and its last `history_len` items are used (order
        does not matter otherwise: the pooling is a mean / max); negative entries are
        padding and ignored, so rows of `user_histories_` can be passed as they are. A list
        with no items gives the tower's output on an all-zero pooled input.

        Args:
            item_lists: `B` sequences of item indices (or a `(B, L')` array padded with -1).
            users: optional `(B,)` user ids for the user-ID input (`history_user_id`); None
                feeds a zero vector (a user with no ID row).

        Returns:
            `(B, dim)` float32 L2-normalized user vectors (score with `item_factors_ / τ`);
            for a training user u, ``encode_history([user_histories_[u]], [u])`` equals
            ``user_factors_[u]``.
        """
        self._check_users(np.zeros(0, dtype=np.int64))
        if self.user_tower_ != "history":
            raise ValueError("encode_history needs user_tower='history'")
        hist = self._history_matrix(item_lists)
        u = None
        if users is not None and self.towers_.user is not None:
            u = torch.from_numpy(self._check_users(users))
            if u.shape[0] != hist.shape[0]:
                raise ValueError(f"{u.shape[0]} users for {hist.shape[0]} item lists")
        with torch.no_grad():
            vecs = F.normalize(self.towers_.pool(torch.from_numpy(hist), u), dim=-1)
        return vecs.numpy().astype(np.float32)

    def recommend_history(
        self, item_lists, k: int = 10, users=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for pseudo-users given by item lists, excluding the given items.

        Args:
            item_lists: `B` sequences of item indices (see `encode_history`); every item of a
                list (not only the last `history_len`) is excluded from its recommendations.
            k: list length.
            users: optional `(B,)` user ids for the user-ID input (see `encode_history`).

        Returns:
            `(ids (B, k) int64, φ scores (B, k) float32)`, best first, padded with -1 / -inf.
        """
        from divrec.retrieval.base import top_k

        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        vecs = self.encode_history(item_lists, users)
        scores = vecs @ self.item_factors_.T / np.float32(self.tau)
        for row, items in enumerate(item_lists):
            items = np.asarray(items, dtype=np.int64)
            scores[row, items[items >= 0]] = -np.inf
        ids, vals = top_k(scores, k)
        return ids, vals.astype(np.float32)

    def _history_matrix(self, item_lists) -> np.ndarray:
        """`B` item lists → `(B, history_len)` int64 of their last items, padded with n_items."""
        n_items, length = self.n_items_, self.history_len
        out = np.full((len(item_lists), length), n_items, dtype=np.int64)
        for row, items in enumerate(item_lists):
            items = np.asarray(items, dtype=np.int64).ravel()
            items = items[items >= 0]
            if items.size and items.max() >= n_items:
                raise ValueError(f"item index out of range [0, {n_items})")
            items = items[-length:]
            out[row, : items.size] = items
        return out

    # ------------------------------------------------------------------ scoring
    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T / np.float32(self.tau)

    def user_vectors(self) -> np.ndarray:
        """`(n_users, d)` L2-normalized user embeddings."""
        return self.user_factors_

    def pair_probability(self, scores: np.ndarray) -> np.ndarray:
        """The per-pair score used for group aggregation (App. A.7.2).

        exp(φ) for the InfoNCE models (φ → log p(u, i) + C) and σ(φ) for MFb.

        Args:
            scores: any-shape φ values.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if self.loss == "mfb":
            return 1.0 / (1.0 + np.exp(-scores))
        return np.exp(scores)

    # ------------------------------------------------------------------ persistence
    _transient = ("history_",)

    def _rebuild_module(self, name: str, state: dict) -> torch.nn.Module:
        """The towers' architecture for `divrec.load` (weights are loaded after)."""
        if name != "towers_":
            return super()._rebuild_module(name, state)
        hist = state.get("histories")
        if self.tower != "id" or self.user_tower_ != "id":
            return self._make_towers(self.n_users_, self.n_items_, 0.0, None, hist)
        return _Towers(self.n_users_, self.n_items_, state["item.weight"].shape[1], 0.0, None)

    # ------------------------------------------------------------------ Query entry point
    def _score_history(self, query) -> np.ndarray:
        """History tower: `encode_history` of the fresh histories; ID tower: ALS fold-in."""
        if self.user_tower_ != "history":
            return super()._score_history(query)
        users = None
        if self.history_user_id and (query.users >= 0).all():
            users = query.users
        vecs = self.encode_history(query.history, users)
        return vecs @ self.item_factors_.T / np.float32(self.tau)
