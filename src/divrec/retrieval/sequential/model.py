"""The sequential recommender: its config, next(-n)-item training and serving.

See the package docstring for the encoders, losses and serving (TotalRecall Sec. 4.2,
App. A.6.2; Cen et al. 2020).
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
from divrec.data.query import Candidates, Query
from divrec.nn.losses import corrected_softmax_ce, same_id_pairs
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    holdout_split,
    make_table_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.base import Recommender, check_list_length
from divrec.retrieval.sequential.encoders import _SeqNet, last_items
from divrec.retrieval.sequential.search import search_interests
from divrec.stage import param

__all__ = ["SequentialConfig", "SequentialRecommender", "cut_examples"]


@dataclass(frozen=True, kw_only=True)
class SequentialConfig(TrainingConfig):
    """`SequentialRecommender` hyperparameters (registry presets: ``youtube``,
    ``tr-youtube``, ``comirec-sa``, ``comirec-dr``).

    Attributes:
        encoder: "mean" (YouTube DNN), "sa" (ComiRec-SA, Cen et al. 2020 Eq. 4-5) or "dr"
            (ComiRec-DR, Cen et al. 2020 Sec. 3.2.1).
        loss: "ssm" (sampled softmax, TotalRecall Eq. 1), "u2i" (Uni-InfoNCE, one half of
            Eq. 3) or "bi" (Bi-InfoNCE, Eq. 3).
        l2_norm: score by cos/τ (True, TotalRecall Eq. 2) or by the raw inner product (False).
        tau: temperature τ of the scaled cosine.
        next_n: targets per training example (next-n-item prediction; 1 = next item).
        dim: embedding size D.
        max_len: history length L the encoder reads (the latest L items).
        n_interests: K (multi-interest encoders; the mean encoder has 1).
        routing_iters: dynamic-routing iterations (ComiRec-DR).
        min_history: shortest training history: a sequence s gives the cuts
            ``min_history <= k < len(s)`` (history ``s[:k]``, targets from ``s[k]``), so
            sequences no longer than it give none (`cut_examples`). 1: every prefix;
            ComiRec's data iterator uses 4 (``random.choice(range(4, len(item_list)))``).
        ssm_negatives: sampled negatives per batch for "ssm".
        ssm_sampling: "uniform" or "popularity" background distribution for "ssm".
        logq: apply the logQ correction.
        batch_size: sequences per step (pairs = sequences × up to next_n).
        epochs: training length in units of the number of next-item examples of the
            training set (fractions allowed); with `patience`, the most epochs.
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay (0 with ``optimizer="sparse_adam"``).
        optimizer: "adam" (default): one dense Adam over every parameter; "sparse_adam":
            the item table gets sparse gradients and `torch.optim.SparseAdam` (lazy,
            row-wise Adam: only the rows of the batch's history, target and negative items
            and their moments are updated), the encoder dense Adam. Sparse updates pay when
            a step touches a small share of the table; on ML-1M (3.7k items, 1,280 shared
            negatives and 128 × 20 history items per step) a step touches most rows and
            "sparse_adam" measured 0.86× the former examples/s
            (benchmarks/bench_train_tower.py --seq-speed). See
            `divrec.nn.train.make_table_optimizer`.
        diversity_lambda: λ of the controllable aggregation at serving (Cen et al. Eq. 11;
            0: plain max merge).
        init_std: standard deviation of the normal initialization of the item table.
        threads: torch intra-op threads during the fit (None: the `divrec.threads` policy;
            0: every available core).
        dr_weights: ComiRec-DR's behaviour-to-interest maps ê_kj = W e_j: "shared" (one
            `(D, D)` W_k per interest, shared by the L positions; MIND-like) or "position"
            (one W_jk per position j and interest k, `(L, K, D, D)`: ComiRec's code,
            ``CapsuleNetwork(bilinear_type=2)``; positions count from the oldest item of the
            left-aligned window, as ComiRec's padding does).
        patience: early stopping as ComiRec's ``train.py`` does it: every `eval_every`
            epochs the validation Recall@`valid_k` is measured; training stops after
            `patience` evaluations in a row without a strictly better one and the best
            evaluation's weights are restored (ComiRec: every 1,000 steps, stops when
            ``trials > 50``). Needs a validation set: ``fit(valid=(history, targets))``
            (the ComiRec split's validation users) or `valid_fraction` > 0. None: train all
            `epochs` (the validation recall is still recorded when there is a set).
        valid_fraction: share of the training users (with ≥ 2 items) held out of training
            as validation users, their sequence cut at int(0.8 · length) into history and
            targets (the ComiRec protocol's cut); 0: none (or pass `fit(valid=...)`).
        eval_every: epochs between validation evaluations (fractions allowed).
        valid_k: the N of the validation Recall@N (ComiRec: topN = 50).
    """

    encoder: Literal["mean", "sa", "dr"] = "mean"
    loss: Literal["ssm", "u2i", "bi"] = "ssm"
    l2_norm: bool = False
    tau: float = param(0.1, gt=0.0)
    next_n: int = param(1, ge=1)
    dim: int = param(64, ge=1)
    max_len: int = param(20, ge=1)
    n_interests: int = param(4, ge=1)
    routing_iters: int = param(3, ge=1)
    min_history: int = param(1, ge=1)
    ssm_negatives: int = param(1280, ge=1)
    ssm_sampling: Literal["uniform", "popularity"] = "uniform"
    logq: bool = True
    batch_size: int = param(128, ge=1)
    epochs: float = param(5.0, gt=0.0)
    lr: float = param(0.001, gt=0.0)
    weight_decay: float = param(0.0, ge=0.0)
    optimizer: Literal["adam", "sparse_adam"] = "adam"
    diversity_lambda: float = param(0.0, ge=0.0)
    init_std: float = param(0.1, ge=0.0)
    threads: int | None = param(1, ge=0)
    dr_weights: Literal["shared", "position"] = "shared"
    eval_every: float = param(1.0, gt=0.0)
    valid_k: int = param(50, ge=1)

    def validate(self) -> None:
        super().validate()
        if self.optimizer == "sparse_adam" and self.weight_decay:
            raise ValueError(
                "weight_decay must be 0 with optimizer='sparse_adam' (use optimizer='adam')"
            )
        supports(self, "SequentialRecommender", early_stopping=True)  # CPU only


def cut_examples(
    flat: torch.Tensor,
    offsets: torch.Tensor,
    lengths: torch.Tensor,
    seq: torch.Tensor,
    u: torch.Tensor,
    min_history: int,
    max_len: int,
    next_n: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of training examples: a cut k in each drawn sequence (ComiRec's sampler).

    Sequence s (items ``flat[offsets[s] : offsets[s] + lengths[s]]``) is cut at
    ``k = min_history + floor(u · (len_s − min_history))``, uniform over
    ``min_history <= k < len_s``; the history is the latest `max_len` items before k
    (left-aligned, −1 padded), the targets ``s[k : k + next_n]`` (those inside s).

    Args:
        flat: `(sum len,)` int64 concatenated sequences.
        offsets, lengths: `(S,)` int64 start and length of each sequence (len > min_history).
        seq: `(B,)` int64 drawn sequences.
        u: `(B,)` float64 uniforms in [0, 1).
        min_history: shortest history.
        max_len: history width L.
        next_n: targets per example.

    Returns:
        `(hist (B, L), ex (P,), targets (P,))`: each (pseudo-user, target) pair's example row
        and item.
    """
    ln = lengths[seq]
    k = min_history + torch.floor(u * (ln - min_history)).long()
    start = torch.clamp(k - max_len, min=0)
    idx = start[:, None] + torch.arange(max_len)
    safe = torch.minimum(idx, k[:, None] - 1)
    hist = torch.where(idx < k[:, None], flat[offsets[seq, None] + safe], -1)
    tpos = k[:, None] + torch.arange(next_n)
    ex, col = torch.nonzero(tpos < ln[:, None], as_tuple=True)
    targets = flat[offsets[seq[ex]] + tpos[ex, col]]
    return hist, ex, targets


def _carve_valid(
    lists: list[np.ndarray], fraction: float, seed: int
) -> tuple[set[int], np.ndarray, np.ndarray]:
    """Held-out validation users (ComiRec cut at int(0.8 · len)): `(users, history, targets)`."""
    eligible = np.flatnonzero([s.size >= 2 for s in lists])
    _, pick = holdout_split(eligible.size, fraction, seed)
    users = eligible[pick]
    hist, tgt = [], []
    for u in users:
        s = lists[u]
        cut = min(max(1, int(s.size * 0.8)), s.size - 1)
        hist.append(s[:cut])
        tgt.append(s[cut:])

    def pad(rows):
        out = np.full((len(rows), max((r.size for r in rows), default=1)), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : r.size] = r
        return out

    return {int(u) for u in users}, pad(hist), pad(tgt)


class SequentialRecommender(Recommender):
    """History-tower retrieval trained on next(-n)-item examples (TotalRecall Sec. 4.2).

    Hyperparameters: `SequentialConfig`. YouTube DNN, TR-Youtube, ComiRec-SA and
    ComiRec-DR are its registry presets.

    Attributes:
        net_: the trained encoder and item table.
        item_vectors_: `(n_items, D)` float32 serving item vectors (normalized for l2_norm).
        user_history_: `(n_users, L)` each user's latest training items (−1 padded).
        item_category_: `(n_items,)` int64 primary category (−1: none), for λ > 0.
        target_marginal_: `(n_items,)` training-target marginal (the u2i logQ).
        examples_seen_: (pseudo-user, target) pairs consumed.
        train_loss_: mean training loss of each epoch (an epoch is as many steps as the
            training set has next-item examples over `batch_size`; the last may be partial).
        train_seconds_: training wall time (callbacks excluded).
        history_: `[(examples, callback value), ...]` from `fit(callback=...)`.
        valid_recall_: `[(epochs trained, validation Recall@valid_k), ...]` at every
            evaluation (empty without a validation set).
        best_epoch_: epochs trained at the best validation evaluation (the weights kept
            with `patience`; None without a validation set).
        epochs_run_: epochs actually trained (< `epochs` when stopped early).
        stopped_early_: whether `patience` stopped the training.
    """

    Config = SequentialConfig
    supports_history = True
    _transient = ("_faiss",)

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Interactions | sp.spmatrix,
        callback: Callable[[SequentialRecommender], object] | None = None,
        callback_every: int | None = None,
        valid: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> SequentialRecommender:
        """Fits on the training users' sequences; returns self.

        Args:
            train: a log (its timestamps, else its row order, give the sequence order) or a
                user×item matrix (items in index order).
            callback: called as `callback(self)` every `callback_every` (pseudo-user,
                target) pairs and once at the end, with the serving vectors exported; its
                return values go to `history_`.
            callback_every: pairs between callbacks (None: only at the end).
            valid: `(history (V, L'), targets (V, T))` −1-padded validation requests (e.g.
                the ComiRec split's validation users) for the validation Recall@`valid_k`
                and `patience`; None: carved with `valid_fraction`, or none.
        """
        if valid is not None:
            if self.valid_fraction > 0:
                raise ValueError("valid: give either fit(valid=...) or valid_fraction, not both")
            if (
                not isinstance(valid, tuple)
                or len(valid) != 2
                or np.ndim(valid[0]) != 2
                or np.ndim(valid[1]) != 2
                or len(valid[0]) != len(valid[1])
            ):
                raise ValueError("valid must be (history (V, L), targets (V, T)) arrays")
            valid = (np.asarray(valid[0], dtype=np.int64), np.asarray(valid[1], dtype=np.int64))
        elif self.patience is not None and self.valid_fraction <= 0:
            raise ValueError(
                "patience needs a validation set: fit(valid=(history, targets)) or "
                "valid_fraction > 0"
            )
        self._callback = callback
        self._callback_every = callback_every
        self._valid = valid
        try:
            return super().fit(train)
        finally:
            del self._callback, self._callback_every, self._valid

    def _n_interests(self) -> int:
        return 1 if self.encoder == "mean" else int(self.n_interests)

    def _build(self, n_items: int) -> _SeqNet:
        return _SeqNet(
            n_items,
            self.dim,
            self.encoder,
            self.max_len,
            self._n_interests(),
            self.routing_iters,
            self.dr_weights,
        )

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        with training_scope(self.seed, self.threads, self.device):
            self._train(matrix, data)

    def _train(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        """The fit, inside `training_scope` (torch's global RNG is seeded with `seed`)."""
        from divrec.splitting.comirec import next_n_target_marginal, user_item_lists

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
        valid, held = self._valid, set()
        if self.valid_fraction > 0:
            held, vh, vt = _carve_valid(lists, self.valid_fraction, self.seed)
            valid = (vh, vt)
            keep = np.isin(data.users, np.fromiter(held, dtype=np.int64), invert=True)
            data = data.select(keep)
        if valid is not None and valid[0].size and valid[0].max() >= n_items:
            raise ValueError(f"valid: item index out of range [0, {n_items})")
        seqs = [s for u, s in enumerate(lists) if s.size > self.min_history and u not in held]
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

        net = self._build(n_items)  # default layer inits from the scope's seeded global RNG
        with torch.no_grad():
            net.item.weight.normal_(0.0, self.init_std, generator=gen)
            net.item.weight[n_items].zero_()
            if self.encoder == "sa":
                net.pos.weight.normal_(0.0, self.init_std, generator=gen)
            if self.encoder == "dr":  # ComiRec: N(0, 1); here scaled to the input size
                net.caps.normal_(0.0, 1.0 / np.sqrt(self.dim), generator=gen)
        opt = make_table_optimizer(net, (net.item,), self.optimizer, self.lr, self.weight_decay)
        n_examples = int((lengths - self.min_history).sum())
        total_steps = max(1, int(np.ceil(self.epochs * n_examples / self.batch_size)))
        epoch_steps = max(1, -(-n_examples // self.batch_size))
        eval_steps = max(1, int(round(self.eval_every * epoch_steps)))
        lengths_t = torch.from_numpy(lengths)
        offsets_t = torch.from_numpy(offsets)
        self.history_ = []
        self.valid_recall_: list[tuple[float, float]] = []
        self.best_epoch_: float | None = None
        self.stopped_early_ = False
        best, best_state, bad = -np.inf, None, 0
        seen, next_cb, cb_seconds = 0, self._callback_every, 0.0
        t0 = time.perf_counter()
        name = f"{self.encoder}/{self.loss}"
        steps_done = 0
        with TrainLoop(name, total_steps, progress=self.progress) as loop:
            for step in range(total_steps):
                s = torch.from_numpy(rng.integers(0, len(seqs), self.batch_size))
                u01 = torch.from_numpy(rng.random(self.batch_size))
                hist, ex, targets = cut_examples(
                    flat, offsets_t, lengths_t, s, u01, self.min_history, self.max_len, self.next_n
                )
                loss = self._loss(net, hist, ex, targets, log_q_items, p_neg_t, log_p_neg, gen)
                loop.step(opt, loss, weight=int(targets.shape[0]))
                seen += int(targets.shape[0])
                steps_done = step + 1
                if next_cb is not None and self._callback is not None and seen >= next_cb:
                    t_cb = time.perf_counter()
                    self._run_callback(net, seen)
                    cb_seconds += time.perf_counter() - t_cb
                    next_cb += self._callback_every
                if steps_done % epoch_steps == 0 or steps_done == total_steps:
                    loop.end_epoch()
                last = steps_done == total_steps
                if valid is not None and (steps_done % eval_steps == 0 or last):
                    t_cb = time.perf_counter()
                    recall = self._valid_recall(net, *valid)
                    cb_seconds += time.perf_counter() - t_cb
                    epochs_now = steps_done / epoch_steps
                    self.valid_recall_.append((epochs_now, recall))
                    if recall > best:
                        best, bad, self.best_epoch_ = recall, 0, epochs_now
                        if self.patience is not None:
                            best_state = {k: v.clone() for k, v in net.state_dict().items()}
                    else:
                        bad += 1
                        if self.patience is not None and bad >= self.patience:
                            self.stopped_early_ = steps_done < total_steps
                            if steps_done % epoch_steps:
                                loop.end_epoch()  # close the partial epoch
                            break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.epochs_run_ = steps_done / epoch_steps
        self.train_seconds_ = time.perf_counter() - t0 - cb_seconds
        self.train_loss_ = list(loop.train_loss)
        self.examples_seen_ = int(seen)
        net.eval()
        self.net_ = net
        self._export()
        if self._callback is not None:
            self.history_.append((seen, self._callback(self)))

    def _valid_recall(self, net, history: np.ndarray, targets: np.ndarray) -> float:
        """Validation Recall@`valid_k` (Eq. 16; users without targets skipped) of the
        current weights, through the serving path (faiss, history items not excluded)."""
        from divrec.metrics.accuracy import hits_matrix, recall_at_k, relevant_counts

        self.net_ = net
        net.eval()
        self._export()
        n = self.n_items_
        empty = sp.csr_matrix((history.shape[0], n), dtype=np.float32)
        rec = search_interests(
            self._index(),
            self.encode(history),
            self.valid_k,
            n,
            empty,
            self.item_category_,
            self.diversity_lambda,
        ).ids
        rows, cols = np.nonzero(targets >= 0)
        rel = sp.csr_matrix(
            (np.ones(rows.size, dtype=np.float32), (rows, targets[rows, cols])),
            shape=(targets.shape[0], n),
        )
        rel.sum_duplicates()
        rel.data[:] = 1.0
        rel.sort_indices()
        net.train()
        r = recall_at_k(hits_matrix(rec, rel), relevant_counts(rel), self.valid_k)
        return float(np.nanmean(r)) if np.isfinite(r).any() else 0.0

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
            # accidental hits (a negative equal to the row's target) as (row, col) pairs
            rows, cols = torch.nonzero(targets[:, None] == neg[None, :], as_tuple=True)
            target = torch.zeros(logits.shape[0], dtype=torch.int64)
            return corrected_softmax_ce(logits, log_q, target, drop=(rows, cols + 1))
        scores = self._score_pairs(u, tvec)  # (P, P)
        same = same_id_pairs(ex, targets)  # same example or same target: sparse pairs
        diag = torch.arange(scores.shape[0])
        lq = log_q_items[targets] if self.logq else None
        loss = corrected_softmax_ce(scores, lq, diag, drop=same)
        if self.loss == "bi":
            loss = loss + corrected_softmax_ce(scores.T, None, diag, drop=same)
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
        (or by the controllable aggregation when `diversity_lambda` > 0; `search_interests`).

        Excluded items (`query.exclude`, and the history / training items when
        `exclude_seen`) are never returned: each search fetches enough extra items.
        """
        self._check_fitted()
        k = check_list_length(k)
        v = self.encode(self._query_history(query))
        seen = None
        if query.history is None and query.exclude_seen:
            seen = self.user_items_[query.users]
        excl = query.excluded_items(self.n_items_, seen)
        return search_interests(
            self._index(), v, k, self.n_items_, excl, self.item_category_, self.diversity_lambda
        )

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
