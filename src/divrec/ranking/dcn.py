"""DCN-v2 ranking backbone f(u, i) (Wang et al., WWW 2021), the backbone of CDM (Sec. 4.1.4).

Sparse features, each embedded in `dim` dimensions and concatenated into `x0` `(D,)`:

* user side: user id, the mean of the user's history item-id embeddings (a multi-hot
  history field, so that users without training requests still have a representation;
  `use_history`), and the categorical user side features passed to `fit(user_features=...)`
  (e.g. ML-1M `users.dat` gender / age / occupation,
  :func:`divrec.data.movielens.ml1m_user_features`);
* item side: item id and the mean embedding of the item's categories.

Cross network (DCN-v2 Eq. 1, the default): `x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l`, with
full-rank `W_l (D, D)` (`cross_rank = 0`) or low-rank `W_l = U_l V_lᵀ` (`U_l, V_l (D, r)`,
`cross_rank = r`). `cross_version="v1"`: the original DCN cross layer (Wang et al., ADKDD 2017,
Eq. 3, the one the CDM paper cites): `x_{l+1} = x0 (x_lᵀ w_l) + b_l + x_l` with a vector
`w_l (D,)`, i.e. a rank-1 `x0 x_lᵀ` interaction per layer. Stacked structure: the cross
output feeds a ReLU MLP (three hidden layers by default, dropout 0.25, paper Sec. 4.1.4) and
a linear logit; `f(u, i) = σ(logit)`.

Training (hyperparameters: `DCNConfig`): binary cross-entropy (CDM Eq. 19) over request
candidates with labels (a :class:`~divrec.splitting.candidate_requests.CandidateRequests`),
Adam, early stopping with `patience` on the BCE of a held-out share of the requests
(`val_frac`), the best epoch's weights restored (`divrec.nn.TrainLoop`, inside
`divrec.nn.training_scope`). `fit(train)` without requests carves requests out of `train`
(:func:`~divrec.splitting.candidate_requests.self_requests`: each user's last 20% as targets,
4 random negatives per target).

IPW baseline (CDM Sec. 4.1.3, `weighting="ipw"`, the registry preset `ipw`): each positive example
is weighted by `1 / p(c_i | u)`, the smoothed share of item i's primary category in the
request's history (add-one smoothing), clipped at `ipw_clip` and normalized to mean 1 over the
positives; negatives keep weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.data.interactions import Interactions
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    make_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.base import Recommender
from divrec.splitting.candidate_requests import CandidateRequests, recency_matrix, self_requests
from divrec.stage import param

__all__ = [
    "DCNConfig",
    "DCNNet",
    "DCNRanker",
    "batches",
    "category_table",
    "history_table",
    "primary_category",
    "query_history",
    "recency_history",
    "request_hist_rows",
    "sigmoid",
    "slices",
]


class DCNNet(nn.Module):
    """The DCN-v2 network (stacked cross network + MLP).

    Args:
        n_users, n_items: id vocabularies.
        item_cats: `(n_items, C)` int64 category ids per item, −1 padded (C may be 0).
        n_cats: category vocabulary size.
        user_feat_sizes: vocabulary size of each categorical user side feature.
        dim: embedding dimension d.
        n_cross: number of cross layers.
        cross_rank: 0 for full-rank `W_l`, else the rank r of `U_l V_lᵀ`.
        hidden: MLP hidden widths.
        dropout: dropout after each hidden layer.
        use_history: include the history field.
        cross_version: "v2" (`x0 ⊙ (W x + b) + x`) or "v1" (`x0 (xᵀ w) + b + x`).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        item_cats: np.ndarray,
        n_cats: int,
        user_feat_sizes: tuple[int, ...] = (),
        dim: int = 16,
        n_cross: int = 2,
        cross_rank: int = 0,
        hidden: tuple[int, ...] = (128, 64, 32),
        dropout: float = 0.25,
        use_history: bool = True,
        cross_version: str = "v2",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.cross_version = cross_version
        self.use_history = use_history
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        self.register_buffer("item_cats", torch.as_tensor(np.asarray(item_cats, dtype=np.int64)))
        self.has_cats = n_cats > 0 and self.item_cats.shape[1] > 0
        self.cat_emb = nn.Embedding(max(n_cats, 1), dim)
        self.ufeat_emb = nn.ModuleList(nn.Embedding(int(s), dim) for s in user_feat_sizes)
        for emb in [self.user_emb, self.item_emb, self.cat_emb, *self.ufeat_emb]:
            nn.init.normal_(emb.weight, std=0.05)
        n_fields = 1 + int(use_history) + len(user_feat_sizes) + 1 + int(self.has_cats)
        d0 = n_fields * dim
        self.d0 = d0
        self.cross_rank = cross_rank
        if cross_version == "v1":
            self.cross_w = nn.ParameterList(
                nn.Parameter(torch.randn(d0) / d0**0.5) for _ in range(n_cross)
            )
        elif cross_rank > 0:
            self.cross_u = nn.ParameterList(
                nn.Parameter(torch.randn(d0, cross_rank) / d0**0.5) for _ in range(n_cross)
            )
            self.cross_v = nn.ParameterList(
                nn.Parameter(torch.randn(d0, cross_rank) / d0**0.5) for _ in range(n_cross)
            )
        else:
            self.cross_w = nn.ParameterList(
                nn.Parameter(torch.randn(d0, d0) / d0) for _ in range(n_cross)
            )
        self.cross_b = nn.ParameterList(nn.Parameter(torch.zeros(d0)) for _ in range(n_cross))
        layers: list[nn.Module] = []
        width = d0
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1)

    @property
    def n_cross(self) -> int:
        return len(self.cross_b)

    def user_fields(
        self, users: torch.Tensor, hist: torch.Tensor | None, ufeat: torch.Tensor | None
    ) -> torch.Tensor:
        """`(B,)` users, `(B, L)` history (−1 padded), `(B, F)` side features → `(B, Fu·d)`."""
        parts = [self.user_emb(users)]
        if self.use_history:
            assert hist is not None
            mask = (hist >= 0).unsqueeze(-1).float()
            e = self.item_emb(hist.clamp(min=0)) * mask
            parts.append(e.sum(1) / mask.sum(1).clamp(min=1.0))
        for j, emb in enumerate(self.ufeat_emb):
            assert ufeat is not None
            parts.append(emb(ufeat[:, j]))
        return torch.cat(parts, dim=-1)

    def item_fields(self, items: torch.Tensor) -> torch.Tensor:
        """`(B, N)` items → `(B, N, Fi·d)` (item id, mean category embedding)."""
        parts = [self.item_emb(items)]
        if self.has_cats:
            cats = self.item_cats[items]  # (B, N, C)
            mask = (cats >= 0).unsqueeze(-1).float()
            e = self.cat_emb(cats.clamp(min=0)) * mask
            parts.append(e.sum(-2) / mask.sum(-2).clamp(min=1.0))
        return torch.cat(parts, dim=-1)

    def cross(self, x0: torch.Tensor) -> torch.Tensor:
        """DCN-v2 cross layers `x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l` on `(..., D)`
        (v1: `x_{l+1} = x0 (x_lᵀ w_l) + b_l + x_l`)."""
        x = x0
        for layer in range(self.n_cross):
            if self.cross_version == "v1":
                x = x0 * (x @ self.cross_w[layer]).unsqueeze(-1) + self.cross_b[layer] + x
                continue
            if self.cross_rank > 0:
                wx = (x @ self.cross_v[layer]) @ self.cross_u[layer].T
            else:
                wx = x @ self.cross_w[layer].T
            x = x0 * (wx + self.cross_b[layer]) + x
        return x

    def forward(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        hist: torch.Tensor | None = None,
        ufeat: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits `(B, N)` of users `(B,)` × their candidates `(B, N)`."""
        u = self.user_fields(users, hist, ufeat)
        it = self.item_fields(items)
        x0 = torch.cat([u.unsqueeze(1).expand(-1, it.shape[1], -1), it], dim=-1)
        return self.out(self.mlp(self.cross(x0))).squeeze(-1)


def category_table(item_categories: sp.csr_matrix | None, n_items: int) -> np.ndarray:
    """`(n_items, C)` int64 category ids per item, −1 padded (C = max categories per item)."""
    if item_categories is None:
        return np.zeros((n_items, 0), dtype=np.int64)
    cats = sp.csr_matrix(item_categories)
    counts = np.diff(cats.indptr)
    width = int(counts.max(initial=0))
    out = np.full((n_items, width), -1, dtype=np.int64)
    for i in np.flatnonzero(counts):
        row = cats.indices[cats.indptr[i] : cats.indptr[i + 1]]
        out[i, : row.size] = row
    return out


def history_table(history: sp.csr_matrix, users: np.ndarray, length: int) -> np.ndarray:
    """`(B, L)` int64 history items of `users`: the `length` most recent, oldest first,
    −1 padded (`length = 0` keeps all).

    "Recent" is read from the CSR values, larger = more recent
    (:func:`divrec.splitting.candidate_requests.recency_matrix` or :func:`recency_history`);
    ties keep item-id order, so a binary row (no order known) keeps its last `length` ids.
    """
    sub = history[users].tocsr()
    counts = np.diff(sub.indptr)
    width = int(counts.max(initial=0)) if length <= 0 else int(min(length, counts.max(initial=0)))
    out = np.full((len(users), max(width, 1)), -1, dtype=np.int64)
    for r in range(len(users)):
        lo, hi = sub.indptr[r], sub.indptr[r + 1]
        row = sub.indices[lo:hi]
        if width and row.size:
            row = row[np.argsort(sub.data[lo:hi], kind="stable")][-width:]
            out[r, : row.size] = row
    return out


def recency_history(matrix: sp.csr_matrix, data: Interactions | None) -> sp.csr_matrix:
    """The serving history of a fit: `matrix`'s items valued by recency rank when `data`
    (the training log) is given, else `matrix` unchanged (see :func:`history_table`)."""
    if data is None or data.shape != matrix.shape:
        return matrix
    out = sp.csr_matrix(matrix.astype(bool).multiply(recency_matrix(data)), dtype=np.float32)
    out.sort_indices()
    return out


def query_history(query, n_items: int) -> sp.csr_matrix:
    """`(B, n_items)` CSR of a query's fresh histories valued by list position + 1 (the
    `Query.history` lists run oldest to newest; a repeated item keeps its latest position)."""
    lists = np.asarray(query.history)
    if lists.size and lists.max() >= n_items:
        raise ValueError(f"history: item index >= {n_items}")
    rows, cols = np.nonzero(lists >= 0)
    items = lists[rows, cols]
    key = rows.astype(np.int64) * n_items + items
    _, first_rev = np.unique(key[::-1], return_index=True)
    keep = key.size - 1 - first_rev
    m = sp.csr_matrix(
        ((cols[keep] + 1).astype(np.float32), (rows[keep], items[keep])),
        shape=(lists.shape[0], n_items),
    )
    m.sort_indices()
    return m


@dataclass(frozen=True, kw_only=True)
class DCNConfig(TrainingConfig):
    """`DCNRanker` hyperparameters (DCN-v2, Wang et al. 2021; CDM Sec. 4.1.3–4.1.4).

    The IPW baseline of CDM (Sec. 4.1.3) is this config with `weighting="ipw"` (registry
    preset `ipw`).

    Attributes:
        dim: embedding dimension d of every field.
        n_cross: cross layers (DCN-v2 Eq. 1).
        cross_rank: 0 full-rank cross matrices `W_l`, r > 0 low-rank `U_l V_lᵀ` of rank r.
        cross_version: "v2" (DCN-v2, Wang et al. 2021, the default) or "v1" (DCN, Wang et al.
            2017, as cited by CDM: `x0 (x_lᵀ w_l) + b_l + x_l`; needs `cross_rank = 0`).
        hidden: MLP hidden widths (three ReLU layers by default, CDM Sec. 4.1.4).
        dropout: dropout after each hidden layer (paper: 0.25).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_requests: requests per optimizer step (each with its N candidates).
        max_epochs: epoch limit.
        patience: early stopping: epochs without a validation BCE improvement (by more than
            1e-6) that are tolerated; training stops at the next one (so DCN stops after
            `patience + 1` such epochs, one more than `TrainingConfig.patience` counts) and
            the best epoch's weights are restored. None: train `max_epochs` epochs, the best
            epoch's weights still restored.
        val_frac: share of the training requests held out for early stopping (a seeded
            permutation of the requests; none with fewer than 10 requests). 0: no validation,
            every epoch trained and the last weights kept.
        use_history: include the mean history-embedding field.
        history_len: history items used per request (0 = all).
        weighting: "none", or "ipw" (CDM's IPW baseline): each positive is weighted by
            `1 / p(c_i | u)`, clipped at `ipw_clip`, normalized to mean 1 over the positives.
        ipw_clip: largest IPW weight before normalization.
        seed: seeds torch (inside `training_scope`), the request split and the batch order.
        threads: torch threads during the fit (default 1; None: the `divrec.threads` policy;
            0: every core).
        device: "cpu" only.
        valid_fraction: not used (the validation split is `val_frac` of the requests); must
            stay 0.
    """

    dim: int = param(16, ge=1)
    n_cross: int = param(2, ge=0)
    cross_rank: int = param(0, ge=0)
    cross_version: Literal["v2", "v1"] = "v2"
    hidden: tuple[int, ...] = param((128, 64, 32), ge=1)
    dropout: float = param(0.25, ge=0.0, lt=1.0)
    lr: float = param(3e-3, gt=0.0)
    weight_decay: float = param(0.0, ge=0.0)
    batch_requests: int = param(8, ge=1)
    max_epochs: int = param(20, ge=1)
    patience: int | None = param(2, ge=0)
    val_frac: float = param(0.1, ge=0.0, lt=1.0)
    use_history: bool = True
    history_len: int = param(100, ge=0)
    weighting: Literal["none", "ipw"] = "none"
    ipw_clip: float = param(10.0, gt=0.0)
    threads: int | None = param(1, ge=0)

    def validate(self) -> None:
        super().validate()
        supports(self, "DCNRanker", early_stopping=True)
        if self.cross_version == "v1" and self.cross_rank:
            raise ValueError(f"cross_rank={self.cross_rank!r}: cross_version 'v1' has no rank")
        if self.valid_fraction:
            raise ValueError(
                f"valid_fraction={self.valid_fraction!r}: DCN holds out `val_frac` of its "
                "requests; set val_frac instead"
            )


class DCNRanker(Recommender):
    """DCN-v2 backbone as a ranking stage (scores a request's candidates).

    Hyperparameters: `DCNConfig`.

    Attributes:
        net_: the fitted `DCNNet`.
        user_features_: `(n_users, F)` int64 user side features, or None.
        history_: `(n_users, n_items)` CSR used as the serving history (the fit matrix).
        best_epoch_, val_losses_: early stopping record (`best_epoch_` is the last epoch
            when there is no validation split).
        train_losses_: mean training loss per epoch.
    """

    Config = DCNConfig

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        train: Interactions | sp.spmatrix,
        requests: CandidateRequests | None = None,
        user_features: np.ndarray | None = None,
    ) -> DCNRanker:
        """Fits on request candidate lists (or requests carved out of `train`); returns self.

        Args:
            train: the log whose matrix is the serving history (and whose items/categories
                define the catalogue).
            requests: labelled training requests (their own `history` is the feature input);
                None: :func:`self_requests` of `train`.
            user_features: `(n_users, F)` non-negative int categorical user features.
        """
        self._requests = requests
        self._user_features = user_features
        try:
            return super().fit(train)  # type: ignore[return-value]
        finally:
            del self._requests, self._user_features

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        with training_scope(self.seed, self.threads, self.device):
            self._fit_scoped(matrix, data)

    def _fit_scoped(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        """The fit, inside `training_scope` (torch seeded, threads set)."""
        req = self._requests
        if req is None:
            req = self_requests(data if data is not None else matrix, seed=self.seed)
        self._check_requests(req)
        self.user_features_ = self._check_user_features(self._user_features)
        cats = data.item_categories if data is not None else None
        self.history_ = recency_history(matrix, data)
        self.net_ = self._build_net(category_table(cats, self.n_items_), self._n_cats(cats))
        self._item_primary = primary_category(cats, self.n_items_)
        self._train(req)

    def _n_cats(self, cats) -> int:
        return 0 if cats is None else int(cats.shape[1])

    def _build_net(self, item_cats: np.ndarray, n_cats: int) -> DCNNet:
        sizes = (
            ()
            if self.user_features_ is None
            else tuple(int(s) for s in self.user_features_.max(axis=0) + 1)
        )
        return DCNNet(
            self.n_users_, self.n_items_, item_cats, n_cats, sizes, int(self.dim),
            int(self.n_cross), int(self.cross_rank), tuple(self.hidden), float(self.dropout),
            bool(self.use_history), str(self.cross_version),
        )  # fmt: skip

    def _check_requests(self, req: CandidateRequests) -> None:
        if not isinstance(req, CandidateRequests):
            raise ValueError(f"requests must be CandidateRequests, got {type(req).__name__}")
        rows = getattr(req, "hist_rows", None)
        if rows is not None:  # several cuts: one history row per request
            if req.history.shape[1] != self.n_items_ or len(rows) != len(req):
                raise ValueError("requests.history/hist_rows do not match the requests")
            if len(rows) and not 0 <= int(rows.min()) <= int(rows.max()) < req.history.shape[0]:
                raise ValueError("requests.hist_rows out of range of requests.history")
        elif req.history.shape != (self.n_users_, self.n_items_):
            raise ValueError(
                f"requests.history has shape {req.history.shape}, expected "
                f"({self.n_users_}, {self.n_items_})"
            )
        if len(req) == 0:
            raise ValueError("requests is empty")

    def _check_user_features(self, feats) -> np.ndarray | None:
        if feats is None:
            return None
        f = np.asarray(feats)
        if f.ndim != 2 or f.shape[0] != self.n_users_ or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"user_features must be an ({self.n_users_}, F) int array")
        if f.size and f.min() < 0:
            raise ValueError("user_features must be non-negative category codes")
        return f.astype(np.int64)

    def _batch_inputs(
        self, users: np.ndarray, history: sp.csr_matrix, hist_rows: np.ndarray | None = None
    ) -> dict:
        out = {"users": torch.as_tensor(users, dtype=torch.long)}
        if self.use_history:
            rows = users if hist_rows is None else hist_rows
            out["hist"] = torch.as_tensor(history_table(history, rows, int(self.history_len)))
        if self.user_features_ is not None:
            out["ufeat"] = torch.as_tensor(self.user_features_[users])
        return out

    def _req_inputs(self, req: CandidateRequests, rows: np.ndarray) -> dict:
        """Model inputs of requests `rows` (their own history rows, see `request_hist_rows`)."""
        return self._batch_inputs(req.users[rows], req.history, request_hist_rows(req, rows))

    def _weights(self, req: CandidateRequests, rows: np.ndarray) -> np.ndarray:
        """`(b, N)` example weights (IPW on positives, or ones)."""
        w = np.ones(req.labels[rows].shape, dtype=np.float32)
        if self.weighting != "ipw":
            return w
        prim = self._item_primary
        n_c = int(prim.max(initial=-1)) + 2  # categories + "none"
        hist = req.history[request_hist_rows(req, rows)].tocsr()
        counts = np.zeros((len(rows), n_c))
        r = np.repeat(np.arange(len(rows)), np.diff(hist.indptr))
        np.add.at(counts, (r, prim[hist.indices] + 1), 1.0)
        p = (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + n_c)
        cand = np.maximum(req.candidates[rows], 0)
        inv = 1.0 / np.take_along_axis(p, prim[cand] + 1, axis=1)
        pos = req.labels[rows] > 0
        inv = np.minimum(inv, float(self.ipw_clip))
        if pos.any():
            w[pos] = inv[pos] / inv[pos].mean()
        return w

    def _split_rows(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        perm = rng.permutation(n)
        n_val = int(round(float(self.val_frac) * n)) if n >= 10 else 0
        return perm[n_val:], perm[:n_val]

    def _train(self, req: CandidateRequests) -> None:
        rng = np.random.default_rng(self.seed)
        tr, va = self._split_rows(len(req), rng)
        opt = make_optimizer(
            self.net_.parameters(), "adam", lr=float(self.lr), weight_decay=float(self.weight_decay)
        )
        size = int(self.batch_requests)
        epochs = int(self.max_epochs)
        # DCN tolerates `patience` epochs without improvement; TrainLoop stops at its count
        patience = None if self.patience is None else int(self.patience) + 1
        with TrainLoop(
            type(self).__name__, epochs * -(-len(tr) // size), self.progress, patience, 1e-6
        ) as loop:
            for epoch in range(epochs):
                self.net_.train()
                for rows in batches(rng.permutation(tr), size):
                    loop.step(opt, self._loss(req, rows, epoch), weight=len(rows))
                if loop.end_epoch(self.net_, self._val_loss(req, va) if va.size else None):
                    break
            loop.restore_best(self.net_)
        self.val_losses_ = loop.valid_loss
        self.train_losses_ = loop.train_loss
        self.best_epoch_ = epoch if loop.best_epoch is None else loop.best_epoch
        self.net_.eval()

    def _logits(self, req: CandidateRequests, rows: np.ndarray) -> torch.Tensor:
        items = torch.as_tensor(np.maximum(req.candidates[rows], 0))
        return self.net_(items=items, **self._req_inputs(req, rows))

    def _bce(self, req, rows, logits) -> torch.Tensor:
        valid = torch.as_tensor(req.valid[rows]).float()
        y = torch.as_tensor(req.labels[rows])
        w = torch.as_tensor(self._weights(req, rows)) * valid
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return (loss * w).sum() / valid.sum().clamp(min=1.0)

    def _loss(self, req: CandidateRequests, rows: np.ndarray, epoch: int) -> torch.Tensor:
        return self._bce(req, rows, self._logits(req, rows))

    @torch.no_grad()
    def _val_loss(self, req: CandidateRequests, rows: np.ndarray) -> float:
        self.net_.eval()
        total, n = 0.0, 0.0
        for b in batches(rows, 256):
            logits = self._logits(req, b)
            valid = torch.as_tensor(req.valid[b]).float()
            y = torch.as_tensor(req.labels[b])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            total += float((loss * valid).sum())
            n += float(valid.sum())
        return total / max(n, 1.0)

    # ------------------------------------------------------------------ scoring
    def _serving_history(self, query) -> tuple[np.ndarray, sp.csr_matrix]:
        if query.history is not None:
            return np.arange(len(query)), query_history(query, self.n_items_)
        return query.users, self.history_

    @torch.no_grad()
    def backbone_logits(self, query, items: np.ndarray) -> np.ndarray:
        """`(B, C)` float32 logits of the backbone for `items` `(B, C)` (valid indices)."""
        self.net_.eval()
        hist_rows, history = self._serving_history(query)
        users = np.maximum(query.users, 0)
        out = np.empty(items.shape, dtype=np.float32)
        for sl in slices(len(query), max(1, 200_000 // max(items.shape[1], 1))):
            inp = self._batch_inputs(users[sl], history)
            if self.use_history:
                inp["hist"] = torch.as_tensor(
                    history_table(history, hist_rows[sl], int(self.history_len))
                )
            out[sl] = self.net_(items=torch.as_tensor(items[sl]), **inp).numpy()
        return out

    def _score_items(self, query, items: np.ndarray) -> np.ndarray:
        """`f(u, i) = σ(logit)` of the candidates `(B, C)`."""
        return sigmoid(self.backbone_logits(query, items))

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        from divrec.data.query import Query

        items = np.broadcast_to(np.arange(self.n_items_), (len(users), self.n_items_))
        # the backbone itself, not `self._score_items` (a subclass's, e.g. CDM's, would treat
        # the whole catalogue as one request's context)
        return sigmoid(self.backbone_logits(Query(users=users), np.ascontiguousarray(items)))

    @torch.no_grad()
    def embeddings(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The id embeddings `u` `(B, d)` and `e_i` `(B, C, d)` (CDM Eq. 3, 16)."""
        u = self.net_.user_emb(torch.as_tensor(np.maximum(users, 0))).numpy()
        e = self.net_.item_emb(torch.as_tensor(items)).numpy()
        return u, e

    @torch.no_grad()
    def interest_vectors(self, users: np.ndarray, history=None, hist_rows=None) -> np.ndarray:
        """`(B, d)` user-interest vectors `u` of the teacher and Eq. 15 (see :meth:`_interest`)."""
        history = self.history_ if history is None else history
        hist_rows = users if hist_rows is None else hist_rows
        inp = self._batch_inputs(np.maximum(users, 0), history)
        if self.use_history:
            inp["hist"] = torch.as_tensor(history_table(history, hist_rows, int(self.history_len)))
        return self._interest(inp).numpy()

    def _interest(self, inp: dict) -> torch.Tensor:
        """User-interest vector `u`: user-id embedding + mean history item embedding."""
        u = self.net_.user_emb(inp["users"])
        if self.use_history:
            hist = inp["hist"]
            mask = (hist >= 0).unsqueeze(-1).float()
            e = self.net_.item_emb(hist.clamp(min=0)) * mask
            u = u + e.sum(1) / mask.sum(1).clamp(min=1.0)
        return u

    # ------------------------------------------------------------------ persistence
    def _rebuild_module(self, name: str, state: dict) -> nn.Module:
        if name != "net_":
            return super()._rebuild_module(name, state)
        item_cats = np.asarray(state["item_cats"])
        return self._build_net(item_cats, int(np.asarray(state["cat_emb.weight"]).shape[0]))

    def _after_load(self) -> None:
        if hasattr(self, "net_"):  # a saved unfitted stage has no modules
            self.net_.eval()


def request_hist_rows(req: CandidateRequests, rows: np.ndarray) -> np.ndarray:
    """Rows of `req.history` of requests `rows`: `req.hist_rows` when the requests carry one
    history row each (several time cuts, `divrec.evaluation.candidate_requests.CutRequests`),
    else their users."""
    hist_rows = getattr(req, "hist_rows", None)
    return req.users[rows] if hist_rows is None else np.asarray(hist_rows)[rows]


def primary_category(cats: sp.spmatrix | None, n_items: int) -> np.ndarray:
    """`(n_items,)` int64 first category of each item (−1: none, or no categories)."""
    out = np.full(n_items, -1, dtype=np.int64)
    if cats is None:
        return out
    cats = sp.csr_matrix(cats)
    has = np.diff(cats.indptr) > 0
    out[has] = cats.indices[cats.indptr[:-1][has]]
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of a numpy array, float32 (inputs clipped to ±60)."""
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """`rows` cut into consecutive chunks of `size` (the last one shorter)."""
    return [rows[s : s + size] for s in range(0, len(rows), size)]


def slices(n: int, size: int) -> list[slice]:
    """`range(n)` as consecutive slices of `size` (the last one shorter)."""
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]
