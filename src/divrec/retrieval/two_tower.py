"""TotalRecall two-tower retrieval (bidirectional u2i + i2u candidate generation).

Two ID-embedding towers u = f(u), i = g(i) in R^d scored by the scaled cosine (Eq. 2)

    φ(u, i) = cos(u, i) / τ,

trained with one of

* ``"bi"``: Bi-InfoNCE (Eq. 3) — in-batch softmax over the batch's items for each user
  (u2i) plus over the batch's users for each item (i2u), each logit corrected by the log of
  the empirical marginal of the *negative* (logQ correction: ``φ(u, j) − log q(j)``);
* ``"u2i"`` / ``"i2u"``: Uni-InfoNCE, either half of Eq. 3;
* ``"ssm"``: sampled softmax (Sec. 2.3 Eq. 1, App. A.2 Eq. 9; Jean et al. 2015, Yi et al.
  2019): for each positive (u, i), a softmax over i and ``ssm_negatives`` items drawn per batch
  (shared by the batch's rows) from a background distribution p_n — uniform or the empirical
  item marginal ("popularity") — with every logit corrected by −log p_n (logQ);
* ``"mfb"``: matrix factorization with the Bernoulli likelihood (App. A.2 Eq. 7, BCE on
  σ(φ)) and explicit negative sampling ``"[a:b]"`` (Sec. 3.5): for each positive (u, i),
  ``a`` random users paired with i and ``b`` random items paired with u (so ``[0:8]`` is
  Rendle et al.'s item sampling, modelling p(i|u); ``[8:0]`` models p(u|i); ``[4:4]`` and
  ``[8:8]`` p(u,i)/(p(u)p(i))); ``"[n]"`` draws n (u, i) pairs uniformly from U × I
  (models p(u, i)).

Towers (optional; the default is the paper's pair of ID-embedding tables): ``tower="mlp"``
puts an MLP after the ID embeddings on both sides; ``user_tower="history"`` is a
YouTube-DNN-style user tower (Covington et al. 2016) — an MLP over pooled embeddings of the
user's last training items — that also scores pseudo-users given as item lists
(`TwoTowerRecommender.encode_history`, `TwoTowerRecommender.recommend_history`).

Serving: u2i and i2u top-k through faiss (`divrec.retrieval.ann`), and potential users of a
group of items by aggregating per-item scores (App. A.7.2: exp(φ) for InfoNCE models,
σ(φ) for MFb; mean, max or sum). `batch_potential_users` is the large-scale i2u path of
Sec. 3.6: top-k items per user by ANN, then the top-M users of each item from the same (u, i)
scores, in user chunks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from divrec.data.interactions import Interactions
from divrec.retrieval.ann import AnnIndex
from divrec.retrieval.baselines import FactorRecommender
from divrec.threads import resolve_threads

LOSSES = ("bi", "u2i", "i2u", "mfb", "ssm")
SSM_SAMPLING = ("uniform", "popularity")
TOWERS = ("id", "mlp")
USER_TOWERS = ("id", "mlp", "history")
HISTORY_POOLS = ("mean", "mean_max")


# --------------------------------------------------------------------------- losses
def cosine_scores(user_vecs: torch.Tensor, item_vecs: torch.Tensor, tau: float) -> torch.Tensor:
    """All-pairs φ(u, i) = cos(u, i)/τ (Eq. 2).

    Args:
        user_vecs: `(B, D)` user tower outputs.
        item_vecs: `(C, D)` item tower outputs.
        tau: temperature τ > 0.

    Returns:
        `(B, C)` scores in [−1/τ, 1/τ].
    """
    return F.normalize(user_vecs, dim=-1) @ F.normalize(item_vecs, dim=-1).T / tau


def corrected_softmax_ce(
    logits: torch.Tensor,
    log_q: torch.Tensor | None,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled-softmax cross-entropy with logQ correction (Eq. 1 / Eq. 3, one direction).

    Each row's logits become ``s_bc − log q_c`` (the candidate's sampling probability is
    *subtracted*, so frequently sampled — popular — candidates are penalized), then a
    softmax cross-entropy against `target` is taken.

    Args:
        logits: `(B, C)` raw scores s_bc.
        log_q: `(C,)` or `(B, C)` log sampling probabilities of the candidates, or None
            (no correction).
        target: `(B,)` int64 column of each row's positive.
        mask: optional `(B, C)` bool, True = drop this candidate (e.g. an accidental hit);
            the target column is never dropped.

    Returns:
        Scalar mean loss over rows.
    """
    z = logits if log_q is None else logits - log_q
    if mask is not None:
        keep_target = F.one_hot(target, z.shape[1]).bool()
        z = z.masked_fill(mask & ~keep_target, float("-inf"))
    return F.cross_entropy(z, target)


def infonce_loss(
    scores: torch.Tensor,
    log_q_items: torch.Tensor | None = None,
    log_q_users: torch.Tensor | None = None,
    direction: str = "bi",
    user_ids: torch.Tensor | None = None,
    item_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch Bi-/Uni-InfoNCE (Eq. 3) on a batch of B positive pairs.

    Row b of `scores` is user b against the batch's items, column b item b against the
    batch's users; the diagonal holds the positives.

    u2i term: −log softmax_j(φ(u_b, i_j) − log q(i_j))[b] averaged over b.
    i2u term: −log softmax_j(φ(u_j, i_b) − log q(u_j))[b] averaged over b.
    "bi" is their sum.

    Args:
        scores: `(B, B)` φ(u_b, i_c).
        log_q_items: `(B,)` log q(i_c) of the batch's items, or None.
        log_q_users: `(B,)` log q(u_c) of the batch's users, or None.
        direction: "bi", "u2i" or "i2u".
        user_ids: optional `(B,)` ids; when given, in-batch copies of the positive user are
            removed from the i2u negatives (accidental hits).
        item_ids: optional `(B,)` ids; same for the positive item among the u2i negatives.

    Returns:
        Scalar loss.
    """
    if direction not in ("bi", "u2i", "i2u"):
        raise ValueError(f"direction must be 'bi', 'u2i' or 'i2u', got {direction!r}")
    b = scores.shape[0]
    target = torch.arange(b, device=scores.device)
    loss = scores.new_zeros(())
    if direction in ("bi", "u2i"):
        mask = None if item_ids is None else item_ids[:, None] == item_ids[None, :]
        loss = loss + corrected_softmax_ce(scores, log_q_items, target, mask)
    if direction in ("bi", "i2u"):
        mask = None if user_ids is None else user_ids[:, None] == user_ids[None, :]
        loss = loss + corrected_softmax_ce(scores.T, log_q_users, target, mask)
    return loss


def sampled_softmax_loss(
    user_vecs: torch.Tensor,
    pos_item_vecs: torch.Tensor,
    neg_item_vecs: torch.Tensor,
    tau: float,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled-softmax loss with logQ correction (Sec. 2.3 Eq. 1, App. A.2 Eq. 9).

    For row b with user u_b, positive item i_b and the N shared sampled negatives j_1..j_N:

        l_b = −log [ exp(φ(u_b, i_b) − log q(i_b))
                     / (exp(φ(u_b, i_b) − log q(i_b)) + Σ_n exp(φ(u_b, j_n) − log q(j_n))) ],

    φ the scaled cosine of Eq. 2 and q the background (sampling) distribution p_n. A negative
    equal to the row's positive (an accidental hit) is dropped when the ids are given.

    Args:
        user_vecs: `(B, D)` user tower outputs.
        pos_item_vecs: `(B, D)` tower outputs of each row's positive item.
        neg_item_vecs: `(N, D)` tower outputs of the sampled negatives (shared by all rows).
        tau: temperature τ of Eq. 2.
        log_q_pos: `(B,)` log p_n of the positives, or None (no correction).
        log_q_neg: `(N,)` log p_n of the negatives, or None (no correction).
        pos_ids: optional `(B,)` positive item ids (for accidental-hit removal).
        neg_ids: optional `(N,)` negative item ids.

    Returns:
        Scalar mean of l_b over the B rows.
    """
    u = F.normalize(user_vecs, dim=-1)
    pos = (u * F.normalize(pos_item_vecs, dim=-1)).sum(-1, keepdim=True) / tau  # (B, 1)
    neg = u @ F.normalize(neg_item_vecs, dim=-1).T / tau  # (B, N)
    logits = torch.cat([pos, neg], dim=1)
    log_q = None
    if (log_q_pos is None) != (log_q_neg is None):
        raise ValueError("give both log_q_pos and log_q_neg, or neither")
    if log_q_pos is not None:
        b, n = neg.shape
        log_q = torch.cat([log_q_pos[:, None], log_q_neg[None, :].expand(b, n)], dim=1)
    mask = None
    if pos_ids is not None and neg_ids is not None:
        hit = pos_ids[:, None] == neg_ids[None, :]
        mask = torch.cat([torch.zeros_like(hit[:, :1]), hit], dim=1)
    target = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    return corrected_softmax_ce(logits, log_q, target, mask)


def ssm_sampling_probabilities(item_counts: np.ndarray, sampling: str) -> np.ndarray:
    """Background distribution p_n of the sampled-softmax negatives.

    Args:
        item_counts: `(n_items,)` training interactions per item.
        sampling: "uniform" (1/n_items) or "popularity" (the empirical item marginal
            count_i / Σ count, the q(i) of Eq. 3; items never seen in training are not drawn).

    Returns:
        `(n_items,)` float64 probabilities summing to 1.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if sampling == "uniform":
        return np.full(counts.shape, 1.0 / counts.size)
    if sampling == "popularity":
        if counts.sum() <= 0:
            raise ValueError("popularity sampling needs at least one training interaction")
        return counts / counts.sum()
    raise ValueError(f"ssm_sampling must be one of {SSM_SAMPLING}, got {sampling!r}")


def parse_negatives(spec: str) -> tuple[str, int, int]:
    """Parses an MFb negative-sampling spec (Sec. 3.5).

    Args:
        spec: "[a:b]" / "a:b" (a users paired with the positive item, b items paired with the
            positive user) or "[n]" / "n" (n uniform (u, i) pairs).

    Returns:
        `("split", a, b)` or `("joint", n, 0)`.
    """
    s = spec.strip().strip("[]").replace(" ", "")
    m = re.fullmatch(r"(\d+):(\d+)", s)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a + b == 0:
            raise ValueError(f"negative spec {spec!r} samples no negatives")
        return "split", a, b
    if re.fullmatch(r"\d+", s) and int(s) > 0:
        return "joint", int(s), 0
    raise ValueError(f"negative spec must look like '[0:8]' or '[8]', got {spec!r}")


# --------------------------------------------------------------------------- model
def _mlp(d_in: int, hidden: tuple[int, ...], d_out: int) -> torch.nn.Sequential:
    """Linear → ReLU → … → Linear (no activation after the last layer)."""
    layers: list[torch.nn.Module] = []
    for h in hidden:
        layers += [torch.nn.Linear(d_in, h), torch.nn.ReLU()]
        d_in = h
    layers.append(torch.nn.Linear(d_in, d_out))
    return torch.nn.Sequential(*layers)


class _Towers(torch.nn.Module):
    """The user and item towers.

    Item side: ID embedding (``tower="id"``) or ID embedding → MLP (``"mlp"``). User side: the
    same two options, or ``"history"``: an MLP over the mean (optionally concatenated with the
    max) of the history-item embeddings of the user's `histories` row, optionally concatenated
    with a user-ID embedding (YouTube-DNN style).

    `histories` is a `(n_users, L)` int64 buffer padded with ``n_items`` (the padding row of
    `history_item`, always zero).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        init_std: float,
        gen,
        tower: str = "id",
        user_tower: str = "id",
        hidden: tuple[int, ...] = (),
        history_pool: str = "mean",
        history_user_id: bool = False,
        histories: np.ndarray | None = None,
    ):
        super().__init__()
        self.user_tower = user_tower
        self.history_pool = history_pool
        self.pad = n_items
        use_id = user_tower != "history" or history_user_id
        self.user = torch.nn.Embedding(n_users, dim) if use_id else None
        self.item = torch.nn.Embedding(n_items, dim)
        with torch.no_grad():  # same draws, in the same order, as the plain ID model
            if self.user is not None:
                self.user.weight.normal_(0.0, init_std, generator=gen)
            self.item.weight.normal_(0.0, init_std, generator=gen)
        self.item_mlp = _mlp(dim, hidden, dim) if tower == "mlp" else None
        self.user_mlp = _mlp(dim, hidden, dim) if user_tower == "mlp" else None
        self.history_item = None
        if user_tower == "history":
            self.history_item = torch.nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            with torch.no_grad():
                self.history_item.weight.normal_(0.0, init_std, generator=gen)
                self.history_item.weight[n_items].zero_()
            d_in = dim * (2 if history_pool == "mean_max" else 1) + (dim if use_id else 0)
            self.user_mlp = _mlp(d_in, hidden, dim)
            self.register_buffer("histories", torch.from_numpy(np.asarray(histories, np.int64)))

    def item_vecs(self, items: torch.Tensor) -> torch.Tensor:
        """`(B,)` item ids → `(B, dim)` raw (unnormalized) item tower outputs."""
        e = self.item(items)
        return e if self.item_mlp is None else self.item_mlp(e)

    def pool(self, hist: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """History tower on padded item lists.

        Args:
            hist: `(B, L)` int64 history items, padded with ``n_items``.
            users: `(B,)` user ids for the user-ID input, or None (zero vector: a pseudo-user).

        Returns:
            `(B, dim)` raw user tower outputs.
        """
        e = self.history_item(hist)  # (B, L, D); padding rows are zero
        mask = (hist != self.pad).unsqueeze(-1)
        count = mask.sum(1).clamp(min=1)
        feats = [e.sum(1) / count]
        if self.history_pool == "mean_max":
            top = e.masked_fill(~mask, float("-inf")).amax(1)
            feats.append(torch.where(torch.isfinite(top), top, torch.zeros_like(top)))
        if self.user is not None:
            if users is None:
                feats.append(e.new_zeros(hist.shape[0], self.user.embedding_dim))
            else:
                feats.append(self.user(users))
        return self.user_mlp(torch.cat(feats, dim=-1))

    def user_vecs(self, users: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """`(B,)` user ids → `(B, dim)` raw user tower outputs.

        Args:
            users: `(B,)` user ids.
            exclude: optional `(B,)` item per row removed from that row's history (the
                training target, so the history tower cannot copy it); history tower only.
        """
        if self.user_tower != "history":
            e = self.user(users)
            return e if self.user_mlp is None else self.user_mlp(e)
        hist = self.histories[users]
        if exclude is not None:
            hist = hist.masked_fill(hist == exclude[:, None], self.pad)
        return self.pool(hist, users)


def build_histories(matrix: sp.csr_matrix, data: Interactions | None, length: int) -> np.ndarray:
    """Each user's last `length` training items (the history tower's input).

    Order: by the latest timestamp of the (u, i) pair when `data` has timestamps, else
    (and for equal timestamps) by item index; the newest `length` items are kept.

    Args:
        matrix: `(n_users, n_items)` binary training matrix (its nonzeros are the pairs).
        data: the training log, or None.
        length: history length L > 0.

    Returns:
        `(n_users, L)` int64, each row oldest → newest, padded at the end with -1.
    """
    n_users, n_items = matrix.shape
    coo = matrix.tocoo()
    u = coo.row.astype(np.int64)
    i = coo.col.astype(np.int64)
    t = np.zeros(u.size, dtype=np.int64)
    if data is not None and data.timestamps is not None and data.users.size:
        key = data.users * n_items + data.items
        uniq, inv = np.unique(key, return_inverse=True)
        latest = np.full(uniq.size, np.iinfo(np.int64).min)
        np.maximum.at(latest, inv, data.timestamps)
        pos = np.minimum(np.searchsorted(uniq, u * n_items + i), uniq.size - 1)
        t = np.where(uniq[pos] == u * n_items + i, latest[pos], np.iinfo(np.int64).min)
    order = np.lexsort((i, t, u))
    u, i = u[order], i[order]
    counts = np.bincount(u, minlength=n_users)
    ends = np.cumsum(counts)
    from_end = ends[u] - 1 - np.arange(u.size)  # 0 for each user's newest item
    keep = from_end < length
    kept = np.minimum(counts, length)
    out = np.full((n_users, length), -1, dtype=np.int64)
    out[u[keep], (kept[u] - 1 - from_end)[keep]] = i[keep]
    return out


class TwoTowerRecommender(FactorRecommender):
    """TotalRecall (``loss="bi"``), Uni-InfoNCE, or MFb two-tower model.

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

    Args:
        loss: "bi" (Bi-InfoNCE, TR), "u2i" / "i2u" (Uni-InfoNCE), "mfb" (BCE) or "ssm"
            (sampled softmax).
        negatives: MFb negative sampling, "[0:8]", "[8:0]", "[4:4]", "[8:8]" or "[8]"
            (ignored by the InfoNCE losses, which use in-batch negatives).
        ssm_negatives: sampled negatives per batch for ``loss="ssm"`` (shared by its rows).
        ssm_sampling: ``loss="ssm"`` background distribution, "uniform" or "popularity";
            the logQ correction uses it when `logq` is True.
        dim: embedding dimension d.
        tau: temperature τ of Eq. 2.
        batch_size: positive pairs per step.
        epochs: passes over the positive pairs (may be fractional).
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
        lr_schedule: "constant" or "linear" (decays to 0 over the training examples).
        logq: apply the logQ correction with empirical marginals (InfoNCE losses).
        remove_accidental_hits: drop in-batch duplicates of the positive from the negatives.
        init_std: standard deviation of the normal embedding initialization.
        seed: seeds the initialization (torch) and the shuffling / negatives (numpy).
        threads: torch intra-op threads during training (None: `divrec.threads` policy,
            i.e. ``DIVREC_THREADS`` or 1; 0: every available core).
        progress: show a rich progress bar.
        tower: "id" (ID embeddings, default) or "mlp" (ID embedding → MLP) on both sides.
        user_tower: None (same as `tower`), "id", "mlp" or "history".
        hidden: MLP hidden layer sizes (for "mlp" and "history" towers).
        history_len: items L of each user's history ("history" user tower).
        history_pool: "mean" or "mean_max" (concatenate mean- and max-pooled embeddings).
        history_user_id: also feed a user-ID embedding to the history tower (zero for a
            pseudo-user without an ID).

    Attributes:
        user_factors_: `(n_users, d)` float32 L2-normalized user vectors.
        item_factors_: `(n_items, d)` float32 L2-normalized item vectors.
        examples_seen_: training examples consumed (positives plus sampled negatives for
            MFb; positives for InfoNCE, whose negatives are the batch's other positives).
        steps_: optimizer steps taken.
        train_seconds_: wall time of `fit`.
        history_: list of `(examples_seen, callback return value)`.
        user_histories_: `(n_users, history_len)` int64 history items of each user, oldest →
            newest, padded with -1 ("history" user tower only).
    """

    def __init__(
        self,
        loss: str = "bi",
        negatives: str = "[0:8]",
        dim: int = 64,
        tau: float = 0.111,
        batch_size: int = 512,
        epochs: float = 5.0,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        logq: bool = True,
        remove_accidental_hits: bool = True,
        init_std: float = 0.1,
        seed: int = 0,
        threads: int | None = None,
        progress: bool = False,
        ssm_negatives: int = 256,
        ssm_sampling: str = "uniform",
        tower: str = "id",
        user_tower: str | None = None,
        hidden: tuple[int, ...] = (256,),
        history_len: int = 20,
        history_pool: str = "mean",
        history_user_id: bool = False,
    ):
        self.loss = loss
        self.negatives = negatives
        self.ssm_negatives = ssm_negatives
        self.ssm_sampling = ssm_sampling
        self.dim = dim
        self.tau = tau
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.logq = logq
        self.remove_accidental_hits = remove_accidental_hits
        self.init_std = init_std
        self.seed = seed
        self.threads = threads
        self.progress = progress
        self.tower = tower
        self.user_tower = user_tower
        self.hidden = tuple(int(h) for h in hidden)
        self.history_len = history_len
        self.history_pool = history_pool
        self.history_user_id = history_user_id

    @property
    def user_tower_(self) -> str:
        """The effective user tower ("id", "mlp" or "history")."""
        return self.tower if self.user_tower is None else self.user_tower

    def _check_towers(self) -> None:
        if self.tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, got {self.tower!r}")
        if self.user_tower_ not in USER_TOWERS:
            raise ValueError(f"user_tower must be one of {USER_TOWERS}, got {self.user_tower!r}")
        if self.history_pool not in HISTORY_POOLS:
            raise ValueError(f"history_pool must be one of {HISTORY_POOLS}")
        if self.history_len <= 0 or any(h <= 0 for h in self.hidden):
            raise ValueError("history_len and the hidden sizes must be positive")

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
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be constant or linear, got {self.lr_schedule!r}")
        if self.tau <= 0 or self.dim <= 0 or self.batch_size <= 0 or self.epochs <= 0:
            raise ValueError("tau, dim, batch_size and epochs must be positive")
        self._check_towers()
        neg_kind, n_a, n_b = parse_negatives(self.negatives) if self.loss == "mfb" else ("", 0, 0)
        if self.loss == "ssm":
            if self.ssm_sampling not in SSM_SAMPLING:
                raise ValueError(
                    f"ssm_sampling must be one of {SSM_SAMPLING}, got {self.ssm_sampling!r}"
                )
            if self.ssm_negatives <= 0:
                raise ValueError("ssm_negatives must be positive")
        start = time.perf_counter()
        old_threads = torch.get_num_threads()
        torch.set_num_threads(resolve_threads(self.threads))
        try:
            torch.manual_seed(self.seed)
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
            opt = torch.optim.Adam(
                self.towers_.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            per_pos = 1 + (n_a + n_b if self.loss == "mfb" else 0)
            target = max(1, int(round(self.epochs * n_pos)))  # positives to consume
            self.examples_seen_ = 0
            self.steps_ = 0
            self.history_ = []
            next_cb = self._callback_every or 0
            order = np.empty(0, dtype=np.int64)
            pos = consumed = 0
            from rich.progress import Progress

            with Progress(disable=not self.progress, transient=True) as bar:
                task = bar.add_task(f"training {self.loss}", total=target)
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
                        loss = self._mfb_loss(bu, bi, neg_kind, n_a, n_b, rng, n_users, n_items)
                    elif self.loss == "ssm":
                        neg = np.searchsorted(ssm_cdf, rng.random(self.ssm_negatives), "right")
                        neg = torch.from_numpy(np.minimum(neg, n_items - 1).astype(np.int64))
                        loss = self._ssm_loss(bu, bi, neg, ssm_log_q)
                    else:
                        loss = self._infonce_step_loss(bu, bi, log_q_user, log_q_item)
                    if self.lr_schedule == "linear":
                        for group in opt.param_groups:
                            group["lr"] = self.lr * (1.0 - (consumed - idx.size) / target)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    self.steps_ += 1
                    self.examples_seen_ += idx.size * per_pos
                    bar.advance(task, idx.size)
                    if self._callback is not None and next_cb and self.examples_seen_ >= next_cb:
                        next_cb += self._callback_every
                        self._export()
                        self.history_.append((self.examples_seen_, self._callback(self)))
            self._export()
            if self._callback is not None:
                if not self.history_ or self.history_[-1][0] != self.examples_seen_:
                    self.history_.append((self.examples_seen_, self._callback(self)))
        finally:
            torch.set_num_threads(old_threads)
        self.train_seconds_ = time.perf_counter() - start

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

    def _mfb_loss(self, bu, bi, kind, n_a, n_b, rng, n_users, n_items) -> torch.Tensor:
        b = bu.shape[0]
        if kind == "split":
            neg_u = np.concatenate(
                [rng.integers(0, n_users, size=(b, n_a)), np.repeat(bu.numpy()[:, None], n_b, 1)],
                axis=1,
            )
            neg_i = np.concatenate(
                [np.repeat(bi.numpy()[:, None], n_a, 1), rng.integers(0, n_items, size=(b, n_b))],
                axis=1,
            )
        else:
            neg_u = rng.integers(0, n_users, size=(b, n_a))
            neg_i = rng.integers(0, n_items, size=(b, n_a))
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

    # ------------------------------------------------------------------ serving
    def build_index(self, side: str = "item", kind: str = "flat", **params) -> AnnIndex:
        """A faiss index over the item (for u2i) or user (for i2u) embeddings.

        Args:
            side: "item" or "user".
            kind: "flat" (exact), "hnsw", "ivf", "ivf-sq8" or "auto".
            **params: `AnnIndex` parameters (m, ef_construction, ef_search, threads, nlist,
                nprobe, target_recall, ...); a recall target is tuned on the other side's
                vectors (the queries this index will serve).
        """
        self._check_users(np.zeros(0, dtype=np.int64))
        if side not in ("item", "user"):
            raise ValueError(f"side must be 'item' or 'user', got {side!r}")
        vecs = self.item_factors_ if side == "item" else self.user_factors_
        queries = self.user_factors_ if side == "item" else self.item_factors_
        return AnnIndex(kind=kind, **params).fit(vecs, queries=queries)

    def retrieve_items(
        self, users, k: int = 10, index: AnnIndex | None = None, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """u2i top-k via faiss.

        Args:
            users: `(B,)` user indices.
            k: list length.
            index: an item-side `AnnIndex` (default: a new exact flat index).
            exclude_seen: drop training items (fetched in rounds, `AnnIndex.search_excluding`).

        Returns:
            `(ids (B, k), φ scores (B, k))`, best first, padded with -1 / -inf.
        """
        users = self._check_users(users)
        index = index or self.build_index("item")
        seen = self.user_items_ if exclude_seen else None  # rows picked by `users`
        return self._search(index, self.user_factors_[users], k, seen, users)

    def potential_users(
        self, items, k: int = 10, index: AnnIndex | None = None, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """i2u top-k: the potential users of each item via faiss.

        Args:
            items: `(B,)` item indices.
            k: users per item.
            index: a user-side `AnnIndex` (default: a new exact flat index).
            exclude_seen: drop users who interacted with the item in training.

        Returns:
            `(user ids (B, k), φ scores (B, k))`, best first, padded with -1 / -inf.
        """
        items = self._check_items(items)
        index = index or self.build_index("user")
        seen = self.user_items_.T.tocsr()[items] if exclude_seen else None
        return self._search(index, self.item_factors_[items], k, seen)

    def potential_users_of_group(
        self,
        items,
        k: int = 10,
        aggregation: str = "mean",
        exclude_seen: bool = True,
        candidates_per_item: int | None = None,
        seen_scope: str = "group",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Potential users of a group of items (App. A.7.2).

        Each user's per-item scores p(u, i) (`pair_probability`: exp(φ) or σ(φ)) over the
        group are aggregated by mean, max or sum. With `exclude_seen`, training interactions
        are removed according to `seen_scope`: "group" drops every user who interacted with
        any group item; "item" drops only the (u, i) pairs seen in training, so a user is
        aggregated over the group items new to them (and dropped if none is).

        With ``candidates_per_item=None`` every user is scored against every group item, so
        "sum" is G × "mean" and both rank users identically. With an integer N, each item
        first keeps its top-N users by φ, and a user is
        aggregated only over the items whose candidate list holds them ("each candidate user
        will have several scores", App. A.7.2) — then mean, max and sum differ. Candidate
        lists are exact and drawn from the eligible users (group-seen users removed first).

        Args:
            items: `(G,)` item indices of the group.
            k: users to return.
            aggregation: "mean", "max" or "sum".
            exclude_seen: skip users with a training interaction with the group.
            candidates_per_item: None (all users) or N, the per-item candidate list length.
            seen_scope: "group" or "item" (see above).

        Returns:
            `(user ids (k,), aggregated scores (k,))`, best first; ties by lower user id.
        """
        if aggregation not in ("mean", "max", "sum"):
            raise ValueError(f"aggregation must be mean, max or sum, got {aggregation!r}")
        items = self._check_items(items)
        if items.size == 0:
            raise ValueError("the group has no items")
        from divrec.retrieval.base import top_k

        if seen_scope not in ("group", "item"):
            raise ValueError(f"seen_scope must be 'group' or 'item', got {seen_scope!r}")
        phi = self.user_factors_ @ self.item_factors_[items].T / np.float32(self.tau)
        p = self.pair_probability(phi)  # (n_users, G)
        usable = np.ones(phi.shape, dtype=bool)  # pairs that may enter the aggregation
        if exclude_seen:
            seen_pairs = self.user_items_[:, items].toarray() > 0
            if seen_scope == "group":
                usable &= ~seen_pairs.any(axis=1, keepdims=True)
            else:
                usable &= ~seen_pairs
        if candidates_per_item is not None:
            if candidates_per_item <= 0:
                raise ValueError("candidates_per_item must be positive")
            # each item's top-N usable users (by φ; ties by lower user id)
            cand, _ = top_k(np.where(usable.T, phi.T, -np.inf), candidates_per_item)
            usable = np.zeros(phi.shape, dtype=bool)
            ok = cand >= 0
            usable[cand[ok], np.nonzero(ok)[0]] = True
        count = usable.sum(axis=1)
        has = count > 0
        agg = np.full(self.n_users_, -np.inf)
        if aggregation == "max":
            agg[has] = np.where(usable, p, -np.inf).max(axis=1)[has]
        else:
            total = np.where(usable, p, 0.0).sum(axis=1)
            agg[has] = total[has] if aggregation == "sum" else total[has] / count[has]
        ids, vals = top_k(agg[None, :], k)
        return ids[0], vals[0]

    def _check_items(self, items) -> np.ndarray:
        self._check_users(np.zeros(0, dtype=np.int64))
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValueError(f"item index out of range [0, {self.n_items_})")
        return items

    def _search(self, index, queries, k, seen, rows=None) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        ids, cos = index.search_excluding(queries, k, seen, rows=rows)  # fetches in rounds
        return ids, (cos / np.float32(self.tau)).astype(np.float32)

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


class MFbRecommender(TwoTowerRecommender):
    """MFb: the two-tower model with BCE and explicit negatives (Sec. 3.5, App. A.2 Eq. 7).

    Same arguments as `TwoTowerRecommender` without `loss` and the sampled-softmax options
    (the tower options included); defaults are the paper's ML-1M
    settings (τ = 0.125, batch size 4096, negatives "[0:8]").
    """

    def __init__(
        self,
        negatives: str = "[0:8]",
        dim: int = 64,
        tau: float = 0.125,
        batch_size: int = 4096,
        epochs: float = 20.0,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        init_std: float = 0.1,
        seed: int = 0,
        threads: int | None = None,
        progress: bool = False,
        tower: str = "id",
        user_tower: str | None = None,
        hidden: tuple[int, ...] = (256,),
        history_len: int = 20,
        history_pool: str = "mean",
        history_user_id: bool = False,
    ):
        super().__init__(
            loss="mfb",
            negatives=negatives,
            dim=dim,
            tau=tau,
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            init_std=init_std,
            seed=seed,
            threads=threads,
            progress=progress,
            tower=tower,
            user_tower=user_tower,
            hidden=hidden,
            history_len=history_len,
            history_pool=history_pool,
            history_user_id=history_user_id,
        )


# --------------------------------------------------------------------------- Sec. 3.6 batch path
def merge_top_users(
    items: np.ndarray, users: np.ndarray, scores: np.ndarray, n_items: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item top-m users of a list of scored (u, i) pairs.

    Order: score descending, then user index ascending (a deterministic tie rule).

    Args:
        items: `(P,)` item index of each pair.
        users: `(P,)` user index of each pair (each (u, i) at most once).
        scores: `(P,)` pair scores.
        n_items: number of items (rows of the output).
        m: users kept per item.

    Returns:
        `(user ids (n_items, m) int64, scores (n_items, m) float32)`, best first, padded with
        -1 / -inf for items with fewer than m pairs.
    """
    items = np.asarray(items, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    out_ids = np.full((n_items, m), -1, dtype=np.int64)
    out_scores = np.full((n_items, m), -np.inf, dtype=np.float32)
    keep = np.isfinite(scores) & (users >= 0) & (items >= 0)
    items, users, scores = items[keep], users[keep], scores[keep]
    if items.size == 0:
        return out_ids, out_scores
    order = np.lexsort((users, -scores, items))
    items, users, scores = items[order], users[order], scores[order]
    starts = np.searchsorted(items, np.arange(n_items))
    rank = np.arange(items.size) - starts[items]
    sel = rank < m
    out_ids[items[sel], rank[sel]] = users[sel]
    out_scores[items[sel], rank[sel]] = scores[sel]
    return out_ids, out_scores


def batch_potential_users(
    model: TwoTowerRecommender,
    items_per_user: int = 10,
    users_per_item: int = 1000,
    user_chunk: int = 4096,
    index: AnnIndex | None = None,
    exclude_seen: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Potential users of every item by the large-scale batch path of Sec. 3.6 (App. A.5).

    1. u2i: the top-`items_per_user` items of every user by ANN over the item embeddings
       (`retrieve_items`), which yields n_users × items_per_user scored (u, i) pairs;
    2. i2u: for each item, the top-`users_per_item` users among the pairs that contain it,
       ranked by the *same* score φ(u, i) (Eq. 2) — meaningful for TR because φ models the
       joint log p(u, i) (App. A.3), so one score ranks both directions.

    Users are processed in chunks of `user_chunk`; after each chunk the running per-item
    top lists are merged with the chunk's pairs, so memory is
    O(n_items · users_per_item + user_chunk · items_per_user) whatever the number of users
    (a user's list also implies each user reaches at most `items_per_user` items, the
    "at most 10 messages per person" property of Sec. 3.6).

    Args:
        model: a fitted `TwoTowerRecommender` (any loss).
        items_per_user: u2i list length k (10 in Sec. 3.6).
        users_per_item: users M kept per item.
        user_chunk: users per ANN query batch.
        index: an item-side `AnnIndex` (default: exact flat index).
        exclude_seen: drop items a user interacted with in training from its u2i list.

    Returns:
        `(user ids (n_items, M) int64, φ scores (n_items, M) float32)`, best first (ties by
        lower user index), padded with -1 / -inf for items reached by fewer than M users.
    """
    if items_per_user <= 0 or users_per_item <= 0 or user_chunk <= 0:
        raise ValueError("items_per_user, users_per_item and user_chunk must be positive")
    model._check_users(np.zeros(0, dtype=np.int64))
    index = index or model.build_index("item")
    n_items = model.n_items_
    best_ids = np.full((n_items, users_per_item), -1, dtype=np.int64)
    best_scores = np.full((n_items, users_per_item), -np.inf, dtype=np.float32)
    for start in range(0, model.n_users_, user_chunk):
        users = np.arange(start, min(start + user_chunk, model.n_users_), dtype=np.int64)
        ids, scores = model.retrieve_items(users, items_per_user, index, exclude_seen)
        pair_users = np.repeat(users, ids.shape[1])
        cur_items = np.repeat(np.arange(n_items), users_per_item)
        best_ids, best_scores = merge_top_users(
            np.concatenate([cur_items, ids.ravel()]),
            np.concatenate([best_ids.ravel(), pair_users]),
            np.concatenate([best_scores.ravel(), scores.ravel()]),
            n_items,
            users_per_item,
        )
    return best_ids, best_scores
