"""Sequential candidate generation: YouTube DNN, TR-Youtube and ComiRec-SA / ComiRec-DR.

TotalRecall Sec. 4.2 / App. A.6.2 compares, on the ComiRec protocol
(`divrec.splitting.comirec`), models that map a user's recent item sequence (a pseudo-user)
to one or K interest vectors and retrieve items by inner product:

* ``encoder="mean"`` — YouTube DNN as implemented by Cen et al. (2020): the masked mean of
  the history's item embeddings followed by a dense layer (Covington et al. 2016).
* ``encoder="sa"`` — ComiRec-SA (Cen et al. 2020, Eq. 4-5): a self-attentive extractor
  ``A = softmax(W2 tanh(W1 (H + P)ᵀ))`` over the L positions (`(B, K, L)`, padding masked),
  interests ``V = A H`` (`(B, K, D)`).
* ``encoder="dr"`` — ComiRec-DR (Cen et al. 2020 Sec. 3.2.1; Sabour et al. 2017): capsule
  dynamic routing, ê_kj = W_k e_j, c_kj = softmax_k(b_kj), z_k = Σ_j c_kj ê_kj,
  v_k = squash(z_k) = |z_k|²/(1 + |z_k|²) · z_k/|z_k|, b_kj += v_k · ê_kj, for
  `routing_iters` iterations (3).

Training (`fit`): a batch draws `batch_size` training sequences uniformly and a cut k
uniformly in each (ComiRec's sampler, `divrec.splitting.comirec.next_n_examples`); the
history is the L items before k and the targets the next `next_n` items (TotalRecall's
next-n-item prediction; 1 = next-item). Multi-interest models train each (pseudo-user,
target) pair on the interest closest to the target (Cen et al. Eq. 8, hard attention). The
score is the inner product (`l2_norm=False`) or the scaled cosine cos/τ (`l2_norm=True`,
TotalRecall Eq. 2). Losses:

* ``"ssm"`` — sampled softmax (TotalRecall Eq. 1; Jean et al. 2015) against `ssm_negatives`
  items drawn per batch from a uniform or popularity background distribution, logQ
  corrected, accidental hits removed;
* ``"u2i"`` — in-batch Uni-InfoNCE u2i (TotalRecall Eq. 3, one half): each pair's softmax over
  the batch's target items, logits − log q(i) with q the training-target marginal;
* ``"bi"`` — Bi-InfoNCE (Eq. 3): u2i plus i2u, each target's softmax over the batch's
  pseudo-users (drawn uniformly, so their logQ is a constant and drops out).
  Other targets of the same pseudo-user are masked as accidental hits in both directions.

Serving: faiss inner-product search over the item vectors (normalized for `l2_norm`),
one search per interest, merged by the max over interests (Cen et al. Sec. 3.4:
f(u, i) = max_k e_iᵀ v_k), and optionally the controllable aggregation of Cen et al. Eq. 11
(`diversity_lambda` λ > 0): from the union of the per-interest lists, greedily pick
argmax_i f(u, i) + λ Σ_{j ∈ S} δ(cate(i) ≠ cate(j)).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.retrieval.base import Recommender, check_list_length, top_k
from divrec.retrieval.two_tower import corrected_softmax_ce

ENCODERS = ("mean", "sa", "dr")
SEQ_LOSSES = ("ssm", "u2i", "bi")


# --------------------------------------------------------------------------- extractors
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
    ):
        super().__init__()
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
        else:
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


# --------------------------------------------------------------------------- recommender
class SequentialRecommender(Recommender):
    """History-tower retrieval trained on next(-n)-item examples (TotalRecall Sec. 4.2).

    Args:
        encoder: "mean" (YouTube DNN), "sa" (ComiRec-SA) or "dr" (ComiRec-DR).
        loss: "ssm" (sampled softmax), "u2i" (Uni-InfoNCE) or "bi" (Bi-InfoNCE).
        l2_norm: score by cos/τ (True) or by the raw inner product (False).
        tau: temperature τ of the scaled cosine.
        next_n: targets per training example (next-n-item prediction).
        dim: embedding size D.
        max_len: history length L the encoder reads (the latest L items).
        n_interests: K (multi-interest encoders; the mean encoder has 1).
        routing_iters: dynamic-routing iterations (ComiRec-DR).
        min_history: shortest training history (cut k >= this).
        ssm_negatives: sampled negatives per batch for "ssm".
        ssm_sampling: "uniform" or "popularity" background distribution for "ssm".
        logq: apply the logQ correction.
        batch_size: sequences per step (pairs = sequences × up to next_n).
        epochs: training length in units of the number of next-item examples of the
            training set (fractions allowed).
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
        diversity_lambda: λ of the controllable aggregation at serving (0: plain max merge).
        init_std: standard deviation of the normal initialization of the item table.
        seed: seed of the initialization and the sampling.
        threads: torch threads.
        progress: show a progress bar.

    Attributes:
        net_: the trained encoder and item table.
        item_vectors_: `(n_items, D)` float32 serving item vectors (normalized for l2_norm).
        user_history_: `(n_users, L)` each user's latest training items (−1 padded).
        item_category_: `(n_items,)` int64 primary category (−1: none), for λ > 0.
        target_marginal_: `(n_items,)` training-target marginal (the u2i logQ).
        examples_seen_: (pseudo-user, target) pairs consumed.
        train_seconds_: training wall time (callbacks excluded).
        history_: `[(examples, callback value), ...]` from `fit(callback=...)`.
    """

    supports_history = True
    _transient = ("_faiss",)

    def __init__(
        self,
        encoder: str = "mean",
        loss: str = "ssm",
        l2_norm: bool = False,
        tau: float = 0.1,
        next_n: int = 1,
        dim: int = 64,
        max_len: int = 20,
        n_interests: int = 4,
        routing_iters: int = 3,
        min_history: int = 1,
        ssm_negatives: int = 1280,
        ssm_sampling: str = "uniform",
        logq: bool = True,
        batch_size: int = 128,
        epochs: float = 5.0,
        lr: float = 0.001,
        weight_decay: float = 0.0,
        diversity_lambda: float = 0.0,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ):
        self.encoder = encoder
        self.loss = loss
        self.l2_norm = l2_norm
        self.tau = tau
        self.next_n = next_n
        self.dim = dim
        self.max_len = max_len
        self.n_interests = n_interests
        self.routing_iters = routing_iters
        self.min_history = min_history
        self.ssm_negatives = ssm_negatives
        self.ssm_sampling = ssm_sampling
        self.logq = logq
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.diversity_lambda = diversity_lambda
        self.init_std = init_std
        self.seed = seed
        self.threads = threads
        self.progress = progress

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Interactions | sp.spmatrix,
        callback: Callable[[SequentialRecommender], object] | None = None,
        callback_every: int | None = None,
    ) -> SequentialRecommender:
        """Fits on the training users' sequences; returns self.

        Args:
            train: a log (its timestamps, else its row order, give the sequence order) or a
                user×item matrix (items in index order).
            callback: called as `callback(self)` every `callback_every` (pseudo-user,
                target) pairs and once at the end, with the serving vectors exported; its
                return values go to `history_`.
            callback_every: pairs between callbacks (None: only at the end).
        """
        self._callback = callback
        self._callback_every = callback_every
        try:
            return super().fit(train)
        finally:
            del self._callback, self._callback_every

    def _check_params(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.loss not in SEQ_LOSSES:
            raise ValueError(f"loss must be one of {SEQ_LOSSES}, got {self.loss!r}")
        if self.ssm_sampling not in ("uniform", "popularity"):
            raise ValueError(
                f"ssm_sampling must be uniform or popularity, got {self.ssm_sampling!r}"
            )
        for name in (
            "next_n",
            "dim",
            "max_len",
            "n_interests",
            "routing_iters",
            "batch_size",
            "ssm_negatives",
            "min_history",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.tau <= 0 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError("tau, epochs and lr must be positive")
        if self.diversity_lambda < 0:
            raise ValueError(f"diversity_lambda must be >= 0, got {self.diversity_lambda}")

    def _n_interests(self) -> int:
        return 1 if self.encoder == "mean" else int(self.n_interests)

    def _build(self, n_items: int) -> _SeqNet:
        return _SeqNet(
            n_items, self.dim, self.encoder, self.max_len, self._n_interests(), self.routing_iters
        )

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        from rich.progress import Progress

        from divrec.splitting.comirec import next_n_target_marginal, user_item_lists

        self._check_params()
        torch.set_num_threads(self.threads)
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n_users, n_items = matrix.shape
        if data is None:
            data = Interactions(
                users=np.repeat(np.arange(n_users), np.diff(matrix.indptr)),
                items=matrix.indices.astype(np.int64),
                values=np.ones(matrix.nnz, dtype=np.float32),
                user_ids=np.arange(n_users),
                item_ids=np.arange(n_items),
            )
        lists = user_item_lists(data)
        self.user_history_ = np.full((n_users, self.max_len), -1, dtype=np.int64)
        for u, s in enumerate(lists):
            tail = s[-self.max_len :]
            self.user_history_[u, : tail.size] = tail
        cats = data.item_categories
        self.item_category_ = (
            data.primary_category().astype(np.int64)
            if cats is not None and cats.shape[0] == n_items
            else np.full(n_items, -1, dtype=np.int64)
        )
        seqs = [s for s in lists if s.size > self.min_history]
        if not seqs:
            raise ValueError(f"no training sequence is longer than min_history={self.min_history}")
        lengths = np.asarray([s.size for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = torch.from_numpy(np.concatenate(seqs).astype(np.int64))
        marginal = next_n_target_marginal(data, self.next_n, self.min_history)
        self.target_marginal_ = marginal.astype(np.float32)
        log_q_items = torch.from_numpy(np.log(np.maximum(marginal, 1e-12)).astype(np.float32))
        if self.ssm_sampling == "popularity":
            pop = np.bincount(data.items, minlength=n_items).astype(np.float64) + 1.0
            p_neg = pop / pop.sum()
        else:
            p_neg = np.full(n_items, 1.0 / n_items)
        p_neg_t = torch.from_numpy(p_neg)
        log_p_neg = torch.from_numpy(np.log(p_neg).astype(np.float32))

        with torch.random.fork_rng(devices=[]):  # default layer inits, seeded
            torch.manual_seed(self.seed)
            net = self._build(n_items)
        with torch.no_grad():
            net.item.weight.normal_(0.0, self.init_std, generator=gen)
            net.item.weight[n_items].zero_()
            if self.encoder == "sa":
                net.pos.weight.normal_(0.0, self.init_std, generator=gen)
            if self.encoder == "dr":
                net.caps.normal_(0.0, 1.0 / np.sqrt(self.dim), generator=gen)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n_examples = int((lengths - self.min_history).sum())
        total_steps = max(1, int(np.ceil(self.epochs * n_examples / self.batch_size)))
        lengths_t = torch.from_numpy(lengths)
        offsets_t = torch.from_numpy(offsets)
        ar_l = torch.arange(self.max_len)
        ar_n = torch.arange(self.next_n)
        self.history_ = []
        seen, next_cb, cb_seconds = 0, self._callback_every, 0.0
        t0 = time.perf_counter()
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task(f"{self.encoder}/{self.loss}", total=total_steps)
            for _ in range(total_steps):
                s = torch.from_numpy(rng.integers(0, len(seqs), self.batch_size))
                ln = lengths_t[s]
                k = (
                    self.min_history
                    + torch.floor(
                        torch.from_numpy(rng.random(self.batch_size)) * (ln - self.min_history)
                    ).long()
                )
                # left-aligned: position j holds item start + j (the L items before k)
                start = torch.clamp(k - self.max_len, min=0)
                idx = start[:, None] + ar_l
                safe = torch.minimum(idx, k[:, None] - 1)
                hist = torch.where(idx < k[:, None], flat[offsets_t[s, None] + safe], -1)
                tpos = k[:, None] + ar_n
                tok = tpos < ln[:, None]
                ex, col = torch.nonzero(tok, as_tuple=True)
                targets = flat[offsets_t[s[ex]] + tpos[ex, col]]
                loss = self._loss(net, hist, ex, targets, log_q_items, p_neg_t, log_p_neg, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += int(targets.shape[0])
                bar.advance(task)
                if next_cb is not None and self._callback is not None and seen >= next_cb:
                    t_cb = time.perf_counter()
                    self._run_callback(net, seen)
                    cb_seconds += time.perf_counter() - t_cb
                    next_cb += self._callback_every
        self.train_seconds_ = time.perf_counter() - t0 - cb_seconds
        self.examples_seen_ = int(seen)
        net.eval()
        self.net_ = net
        self._export()
        if self._callback is not None:
            self.history_.append((seen, self._callback(self)))

    def _run_callback(self, net, seen) -> None:
        self.net_ = net
        net.eval()
        self._export()
        self.history_.append((seen, self._callback(self)))
        net.train()

    def _score_pairs(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """`(P, D)` × `(C, D)` → `(P, C)` scores (inner product or cos/τ)."""
        if self.l2_norm:
            return F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T / self.tau
        return u @ v.T

    def _loss(self, net, hist, ex, targets, log_q_items, p_neg, log_p_neg, gen) -> torch.Tensor:
        interests = net(hist)  # (B, K, D)
        tvec = net.item(targets)  # (P, D)
        cand = interests[ex]  # (P, K, D)
        if cand.shape[1] > 1:  # hard attention: the interest closest to the target
            if self.l2_norm:
                fit = (F.normalize(cand, dim=-1) * F.normalize(tvec, dim=-1)[:, None]).sum(-1)
            else:
                fit = (cand * tvec[:, None]).sum(-1)
            pick = fit.argmax(1)
            u = cand[torch.arange(cand.shape[0]), pick]
        else:
            u = cand[:, 0]
        if self.loss == "ssm":
            neg = torch.multinomial(p_neg, self.ssm_negatives, replacement=True, generator=gen)
            if self.l2_norm:
                pos = (F.normalize(u, dim=-1) * F.normalize(tvec, dim=-1)).sum(-1) / self.tau
            else:
                pos = (u * tvec).sum(-1)
            pos = pos[:, None]
            logits = torch.cat([pos, self._score_pairs(u, net.item(neg))], dim=1)
            log_q = None
            if self.logq:
                b = logits.shape[0]
                log_q = torch.cat(
                    [log_p_neg[targets][:, None], log_p_neg[neg][None, :].expand(b, -1)], dim=1
                )
            hit = torch.cat(
                [
                    torch.zeros_like(targets[:, None], dtype=torch.bool),
                    targets[:, None] == neg[None, :],
                ],
                dim=1,
            )
            target = torch.zeros(logits.shape[0], dtype=torch.int64)
            return corrected_softmax_ce(logits, log_q, target, hit)
        scores = self._score_pairs(u, tvec)  # (P, P)
        same = (ex[:, None] == ex[None, :]) | (targets[:, None] == targets[None, :])
        diag = torch.arange(scores.shape[0])
        lq = log_q_items[targets] if self.logq else None
        loss = corrected_softmax_ce(scores, lq, diag, same)
        if self.loss == "bi":
            loss = loss + corrected_softmax_ce(scores.T, None, diag, same)
        return loss

    # ------------------------------------------------------------------ serving
    def _export(self) -> None:
        with torch.no_grad():
            w = self.net_.item.weight[: self.n_items_].detach().numpy().astype(np.float32)
        if self.l2_norm:
            w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        self.item_vectors_ = np.ascontiguousarray(w)
        self._faiss = None

    @torch.no_grad()
    def encode(self, history: np.ndarray, batch: int = 4096) -> np.ndarray:
        """`(B, L')` histories (−1 padded) → `(B, K, D)` float32 interests (normalized for
        l2_norm, scaled by 1/τ so that inner products with `item_vectors_` are scores)."""
        self._check_fitted()
        hist = last_items(history, self.max_len)
        out = []
        for s in range(0, hist.shape[0], batch):
            v = self.net_(torch.from_numpy(hist[s : s + batch])).numpy()
            out.append(v)
        v = np.concatenate(out) if out else np.zeros((0, self._n_interests(), self.dim))
        if self.l2_norm:
            v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12) / self.tau
        return v.astype(np.float32)

    def _query_history(self, query: Query) -> np.ndarray:
        if query.history is not None:
            return query.history
        return self.user_history_[query.users]

    def _dense(self, interests: np.ndarray) -> np.ndarray:
        """`(B, K, D)` interests → `(B, n_items)` max-over-interests scores."""
        return np.einsum("bkd,nd->bkn", interests, self.item_vectors_).max(axis=1)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self._dense(self.encode(self.user_history_[users]))

    def _score_history(self, query: Query) -> np.ndarray:
        return self._dense(self.encode(query.history))

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        v = self.encode(self._query_history(query))  # (B, K, D)
        e = self.item_vectors_[items]  # (B, C, D)
        return np.einsum("bkd,bcd->bkc", v, e).max(axis=1)

    def _index(self):
        import faiss

        if getattr(self, "_faiss", None) is None:
            index = faiss.IndexFlatIP(self.item_vectors_.shape[1])
            index.add(self.item_vectors_)
            self._faiss = index
        return self._faiss

    def retrieve(self, query: Query, k: int) -> Candidates:
        """Top-k through faiss: one search per interest, merged by the max over interests
        (or by the controllable aggregation when `diversity_lambda` > 0).

        Excluded items (`query.exclude`, and the history / training items when
        `exclude_seen`) are never returned: each search fetches enough extra items.
        """
        self._check_fitted()
        k = check_list_length(k)
        v = self.encode(self._query_history(query))
        b, n_int, d = v.shape
        seen = None
        if query.history is None and query.exclude_seen:
            seen = self.user_items_[query.users]
        excl = query.excluded_items(self.n_items_, seen)
        extra = int(np.diff(excl.indptr).max(initial=0))
        kk = min(k + extra, self.n_items_)
        scores, ids = self._index().search(np.ascontiguousarray(v.reshape(b * n_int, d)), kk)
        ids = ids.reshape(b, n_int * kk).astype(np.int64)
        scores = scores.reshape(b, n_int * kk).astype(np.float64)
        scores[ids < 0] = -np.inf
        # merge: keep each item's best score over interests
        order = np.lexsort((-scores, ids), axis=1)
        ids_s = np.take_along_axis(ids, order, axis=1)
        sc_s = np.take_along_axis(scores, order, axis=1)
        dup = np.zeros(ids_s.shape, dtype=bool)
        dup[:, 1:] = ids_s[:, 1:] == ids_s[:, :-1]
        sc_s[dup | (ids_s < 0)] = -np.inf
        if excl.nnz:
            from divrec.retrieval.base import _is_seen

            sc_s[_is_seen(excl, np.arange(b), np.maximum(ids_s, 0))] = -np.inf
        if self.diversity_lambda > 0 and n_int > 1:
            return controllable_aggregation(
                ids_s, sc_s, self.item_category_, k, self.diversity_lambda
            )
        pos, top = top_k(sc_s, min(k, sc_s.shape[1]))
        out = np.where(pos >= 0, np.take_along_axis(ids_s, np.maximum(pos, 0), axis=1), -1)
        return Candidates(out, top).head(k)

    def __call__(
        self, query: Query, candidates: Candidates | None = None, k: int | None = None
    ) -> Candidates:
        """Retrieval (no candidates) goes through faiss (`retrieve`); ranking as usual."""
        if candidates is None and isinstance(query, Query):
            if (
                query.history is not None
                and query.history.size
                and (query.history.max() >= self.n_items_)
            ):
                raise ValueError(f"history: item index out of range [0, {self.n_items_})")
            return self.retrieve(query, check_list_length(k))
        return super().__call__(query, candidates, k)

    def _rebuild_module(self, name: str, state: dict) -> torch.nn.Module:
        if name != "net_":
            return super()._rebuild_module(name, state)
        return self._build(state["item.weight"].shape[0] - 1)


class YouTubeDNN(SequentialRecommender):
    """YouTube DNN (Covington et al. 2016) as in ComiRec: mean-pooled history → dense layer,
    sampled softmax; `l2_norm=True` gives TotalRecall's "SSM with l2-norm" (cos/τ).

    Same parameters as `SequentialRecommender` (its `encoder` is fixed).
    """

    def __init__(
        self,
        loss: str = "ssm",
        l2_norm: bool = False,
        tau: float = 0.1,
        next_n: int = 1,
        dim: int = 64,
        max_len: int = 20,
        n_interests: int = 4,
        routing_iters: int = 3,
        min_history: int = 1,
        ssm_negatives: int = 1280,
        ssm_sampling: str = "uniform",
        logq: bool = True,
        batch_size: int = 128,
        epochs: float = 5.0,
        lr: float = 0.001,
        weight_decay: float = 0.0,
        diversity_lambda: float = 0.0,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ):
        super().__init__(
            encoder="mean",
            loss=loss,
            l2_norm=l2_norm,
            tau=tau,
            next_n=next_n,
            dim=dim,
            max_len=max_len,
            n_interests=n_interests,
            routing_iters=routing_iters,
            min_history=min_history,
            ssm_negatives=ssm_negatives,
            ssm_sampling=ssm_sampling,
            logq=logq,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            diversity_lambda=diversity_lambda,
            init_std=init_std,
            seed=seed,
            threads=threads,
            progress=progress,
        )


class TRYouTube(SequentialRecommender):
    """TR-Youtube (TotalRecall Sec. 4.2): the YouTube DNN tower with l2-norm + τ trained by
    in-batch Bi-InfoNCE (`loss="bi"`) or Uni-InfoNCE u2i (`loss="u2i"`), logQ corrected;
    `next_n` > 1 is next-n-item prediction.

    Same parameters as `SequentialRecommender` (its `encoder` is fixed).
    """

    def __init__(
        self,
        loss: str = "bi",
        l2_norm: bool = True,
        tau: float = 0.1,
        next_n: int = 1,
        dim: int = 64,
        max_len: int = 20,
        n_interests: int = 4,
        routing_iters: int = 3,
        min_history: int = 1,
        ssm_negatives: int = 1280,
        ssm_sampling: str = "uniform",
        logq: bool = True,
        batch_size: int = 128,
        epochs: float = 5.0,
        lr: float = 0.001,
        weight_decay: float = 0.0,
        diversity_lambda: float = 0.0,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ):
        super().__init__(
            encoder="mean",
            loss=loss,
            l2_norm=l2_norm,
            tau=tau,
            next_n=next_n,
            dim=dim,
            max_len=max_len,
            n_interests=n_interests,
            routing_iters=routing_iters,
            min_history=min_history,
            ssm_negatives=ssm_negatives,
            ssm_sampling=ssm_sampling,
            logq=logq,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            diversity_lambda=diversity_lambda,
            init_std=init_std,
            seed=seed,
            threads=threads,
            progress=progress,
        )


class ComiRecSA(SequentialRecommender):
    """ComiRec-SA (Cen et al. 2020): K interests from the self-attentive extractor, sampled
    softmax on the interest closest to the target, max over interests at serving.

    Same parameters as `SequentialRecommender` (its `encoder` is fixed).
    """

    def __init__(
        self,
        loss: str = "ssm",
        l2_norm: bool = False,
        tau: float = 0.1,
        next_n: int = 1,
        dim: int = 64,
        max_len: int = 20,
        n_interests: int = 4,
        routing_iters: int = 3,
        min_history: int = 1,
        ssm_negatives: int = 1280,
        ssm_sampling: str = "uniform",
        logq: bool = True,
        batch_size: int = 128,
        epochs: float = 5.0,
        lr: float = 0.001,
        weight_decay: float = 0.0,
        diversity_lambda: float = 0.0,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ):
        super().__init__(
            encoder="sa",
            loss=loss,
            l2_norm=l2_norm,
            tau=tau,
            next_n=next_n,
            dim=dim,
            max_len=max_len,
            n_interests=n_interests,
            routing_iters=routing_iters,
            min_history=min_history,
            ssm_negatives=ssm_negatives,
            ssm_sampling=ssm_sampling,
            logq=logq,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            diversity_lambda=diversity_lambda,
            init_std=init_std,
            seed=seed,
            threads=threads,
            progress=progress,
        )


class ComiRecDR(SequentialRecommender):
    """ComiRec-DR (Cen et al. 2020): K interest capsules by dynamic routing (3 iterations),
    sampled softmax on the interest closest to the target, max over interests at serving.

    Same parameters as `SequentialRecommender` (its `encoder` is fixed).
    """

    def __init__(
        self,
        loss: str = "ssm",
        l2_norm: bool = False,
        tau: float = 0.1,
        next_n: int = 1,
        dim: int = 64,
        max_len: int = 20,
        n_interests: int = 4,
        routing_iters: int = 3,
        min_history: int = 1,
        ssm_negatives: int = 1280,
        ssm_sampling: str = "uniform",
        logq: bool = True,
        batch_size: int = 128,
        epochs: float = 5.0,
        lr: float = 0.001,
        weight_decay: float = 0.0,
        diversity_lambda: float = 0.0,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ):
        super().__init__(
            encoder="dr",
            loss=loss,
            l2_norm=l2_norm,
            tau=tau,
            next_n=next_n,
            dim=dim,
            max_len=max_len,
            n_interests=n_interests,
            routing_iters=routing_iters,
            min_history=min_history,
            ssm_negatives=ssm_negatives,
            ssm_sampling=ssm_sampling,
            logq=logq,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            diversity_lambda=diversity_lambda,
            init_std=init_std,
            seed=seed,
            threads=threads,
            progress=progress,
        )


def controllable_aggregation(
    ids: np.ndarray, scores: np.ndarray, categories: np.ndarray, k: int, lam: float
) -> Candidates:
    """Greedy diversity-controlled selection (Cen et al. 2020 Eq. 11-12).

    S starts empty; k times, add the candidate maximizing
    ``f(u, i) + λ Σ_{j ∈ S} δ(cate(i) ≠ cate(j))``; candidates with score −inf are never
    chosen. Category −1 (unknown) differs from every category, itself included.

    Args:
        ids: `(B, M)` candidate items (the union of the per-interest lists).
        scores: `(B, M)` f(u, i) (−inf: not a candidate).
        categories: `(n_items,)` category of every item.
        k: list length.
        lam: λ ≥ 0.

    Returns:
        `Candidates` `(B, k)` in selection order, scores = f(u, i).
    """
    b, m = ids.shape
    cat = np.where(ids >= 0, categories[np.maximum(ids, 0)], -1)
    avail = np.isfinite(scores)
    same = np.zeros((b, m))
    out_ids = np.full((b, k), -1, dtype=np.int64)
    out_sc = np.full((b, k), -np.inf, dtype=np.float32)
    rows = np.arange(b)
    for step in range(min(k, m)):
        gain = np.where(avail, scores + lam * (step - same), -np.inf)
        pick = gain.argmax(1)
        ok = avail[rows, pick]
        out_ids[ok, step] = ids[rows[ok], pick[ok]]
        out_sc[ok, step] = scores[rows[ok], pick[ok]]
        avail[rows, pick] = False
        pc = cat[rows, pick]
        same += ((cat == pc[:, None]) & (pc[:, None] >= 0) & ok[:, None]).astype(np.float64)
    return Candidates(out_ids, out_sc)
