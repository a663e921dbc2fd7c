"""CDM: Contextual Distillation Model (Li et al., KDD 2024), Eq. 5–20.

A ranking model that distils the interest-aware MMR re-ranker (the teacher, Eq. 2–4,
:class:`divrec.rerank.InterestAwareMMR`) into a point-wise student that sees the request's
candidate set as context.

* Backbone `f(u, i)`: :class:`~divrec.ranking.dcn.DCNNet`, by default a **DCN-v2** (Wang et
  al. 2021, cross layers `x0 ⊙ (W x + b) + x`) where the paper cites DCN (v1, Wang et al.
  2017, rank-1 cross `x0 (xᵀ w) + b + x`): a stated deviation (v2 ⊇ v1 in expressiveness);
  `cross_version="v1"` gives the cited DCN. Embeddings shared with the student.
* History: "the user's last `history_len` items" are the most recent by time
  (:func:`~divrec.ranking.dcn.history_table` on a recency-valued history,
  :func:`~divrec.splitting.candidate_requests.recency_matrix`); before this fix the CSR row
  was read in item-id order, i.e. the highest ids (issue 25).
* Teacher (Eq. 16): on every training request, interest-aware MMR with the backbone's
  probabilities `f(u, i)` and the embeddings `e_i ⊙ u` selects its top `teacher_k`;
  `y_tea = 1[i ∈ R]` (by default on unit-normalized `e_i ⊙ u`, :func:`teacher_inputs`).
  `e_i` is the item-id embedding and `u` the user-interest vector, here
  the user-id embedding plus the mean history item embedding (the two user fields of the
  backbone that live in the item-id space; the paper does not say which user vector).
* Student (Eq. 11–17): per target `i^t` with `q = W1 i^t`, `K = W2 I`, `V = W3 I` (`I` the
  item-side backbone fields of the context candidates), attention `w = qᵀK/√d` (Eq. 11);
  Gumbel perturbation of `log p` with `p = softmax(w)` for the positive and
  `p = softmax(−w)` for the negative context (Eq. 5–6), successive-softmax relaxed top-k
  with temperature τ (Eq. 7–10, annealed from `tau_start` to `tau_end` during training, a hard
  top-k of the unperturbed keys at inference); target attention `C⁺ = softmax(w̃⁺)·V⁺`
  (Eq. 12) over the k sampled positives and target anti-attention `C⁻ = softmax(−w̃⁻)·V⁻`
  (Eq. 13) over the k sampled negatives, where `w̃⁻` is taken as minus the perturbed negative
  key (so that `−w̃⁻ = log softmax(−w) + g`, our reading of Eq. 13); InfoNCE between the two
  contexts with temperature `t` (Eq. 14); fusion `C = FFN([u ⊙ C⁺, u ⊙ C⁻])` (Eq. 15); win
  probability `y_stu = σ(qᵀC)` (Eq. 17). The target itself is never its own context.
  The relaxed k-hot vector `a` enters the attention as a soft mask: `softmax` over the
  selected items is `a_m exp(κ_m) / Σ a exp(κ)`, which equals Eq. 12/13 when `a` is hard.
* Loss (Eq. 18–20): `BCE(f, y) + β1 · BCE(y_stu, y_tea) + β2 · InfoNCE`.
* Serving: `f(u, i) + γ · y_stu` for every candidate (a hard top-k then sorts them).

Ablations: `beta2 = 0` (−InfoNCE); `context="plain"` (−CCE: one target attention over all
context candidates, `C = FFN(u ⊙ softmax(w)·V)`, no positive/negative split, no InfoNCE).
Restricted context (`context_size = m > 0`): the keys are only the top-m candidates of the
request by backbone score, making the context attention O(N·m·d) instead of O(N²·d).

Training schedule (our choice; the paper trains end to end): the backbone is first trained
alone with early stopping (:class:`~divrec.ranking.dcn.DCNRanker`), the teacher labels are
computed once with it, then backbone and student are trained jointly with the full loss
for `cdm_epochs` epochs (the best epoch on the validation requests' noise-free loss kept).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from divrec.data.interactions import Interactions
from divrec.nn.train import TrainLoop, make_optimizer
from divrec.ranking.dcn import (
    DCNConfig,
    DCNRanker,
    batches,
    primary_category,
    query_history,
    recency_history,
    sigmoid,
    slices,
)
from divrec.splitting.candidate_requests import CandidateRequests, self_requests
from divrec.stage import param

__all__ = [
    "CDMConfig",
    "CDMRanker",
    "CDMStudent",
    "cdm_loss",
    "gumbel_keys",
    "hard_topk",
    "relaxed_topk",
    "teacher_inputs",
    "teacher_labels",
]

_NEG = -1e9
#: (targets × context) attention entries per request processed at once at inference
_CHUNK = 1 << 20


def gumbel_keys(log_p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Perturbed weights `w̃_m = log p_m + g_m`, `g_m = −log(−log u_m)` (Eq. 5–6).

    The top-k of the keys is a sample of k items without replacement from the
    Plackett–Luce model with weights `p` (the Gumbel-top-k trick, Kool et al. 2019).
    """
    u = torch.rand(log_p.shape, generator=generator, dtype=log_p.dtype)
    u = u.clamp(min=1e-20, max=1.0 - 1e-7)
    return log_p - torch.log(-torch.log(u))


def relaxed_topk(
    keys: torch.Tensor, k: int, tau: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Successive-softmax relaxed k-hot vector (Eq. 7–10).

    `α¹ = w̃`; for `j = 1..k`: `a^j = softmax(α^j / τ)` (Eq. 8),
    `α^{j+1} = α^j + log(1 − a^j)` (Eq. 9); output `a = Σ_j a^j` (Eq. 10).

    Args:
        keys: `(..., N)` perturbed weights.
        k: subset size (capped per row at the number of unmasked entries).
        tau: temperature τ > 0; as τ → 0, `a` tends to the k-hot vector of the top-k keys.
        mask: `(..., N)` bool, False entries are never selected.

    Returns:
        `(..., N)` relaxed k-hot vector (sums to `min(k, n_valid)` per row; at large τ an
        entry can exceed 1, since Eq. 9 updates α rather than α/τ).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    alpha = keys if mask is None else keys.masked_fill(~mask, _NEG)
    if mask is None:
        kb = torch.full(keys.shape[:-1] + (1,), float(k), dtype=keys.dtype)
    else:
        kb = mask.sum(-1, keepdim=True).clamp(max=k).to(keys.dtype)
    out = torch.zeros_like(keys)
    for j in range(int(k)):
        p = torch.softmax(alpha / tau, dim=-1)
        active = (kb > j).to(keys.dtype)
        out = out + p * active
        alpha = alpha + torch.log1p(-p.clamp(max=1.0 - 1e-6))
    return out


def hard_topk(keys: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`(..., N)` 0/1 indicator of the top-k keys (masked entries never selected)."""
    alpha = keys if mask is None else keys.masked_fill(~mask, _NEG)
    kk = min(int(k), keys.shape[-1])
    idx = alpha.topk(kk, dim=-1).indices
    out = torch.zeros_like(keys).scatter(-1, idx, 1.0)
    if mask is not None:
        out = out * mask.to(keys.dtype)
    return out


def _soft_attention(keys, sel, values) -> torch.Tensor:
    """`Σ_m sel_m exp(κ_m) V_m / Σ_m sel_m exp(κ_m)`: softmax of κ over the (soft) selection."""
    kmax = (keys + torch.log(sel.clamp(min=1e-30))).amax(-1, keepdim=True).detach()
    wts = sel * torch.exp((keys - kmax).clamp(max=60.0))
    wts = wts / wts.sum(-1, keepdim=True).clamp(min=1e-30)
    return wts @ values


def _topk_attention(scores: torch.Tensor, values: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax of `scores` `(B, N, M)` over each row's top-k, applied to `values` `(B, M, d)`."""
    kk = min(int(k), scores.shape[-1])
    top, idx = scores.topk(kk, dim=-1)  # (B, N, kk)
    wts = torch.softmax(top, dim=-1)
    # scatter the k weights into a (B, N, M) row and multiply (a BLAS matmul; gathering
    # (B, N, k, d) value rows by advanced indexing was 3× slower)
    return torch.zeros_like(scores).scatter_(-1, idx, wts) @ values


class CDMStudent(nn.Module):
    """The student `g(u, i^t, I)` (Eq. 11–17) on top of a backbone's embeddings.

    Args:
        item_dim: width of the backbone's item fields (`Fi · d`).
        dim: attention / context dimension (the user-interest vector's dimension).
        context: "cce" (Contrastive Context Encoder) or "plain" (−CCE ablation).
        hidden: width of the fusion FFN's hidden layer (Eq. 15; None = `dim`).
    """

    def __init__(
        self, item_dim: int, dim: int, context: str = "cce", hidden: int | None = None
    ) -> None:
        super().__init__()
        self.dim = dim
        self.context = context
        self.w1 = nn.Linear(item_dim, dim, bias=False)
        self.w2 = nn.Linear(item_dim, dim, bias=False)
        self.w3 = nn.Linear(item_dim, dim, bias=False)
        width = 2 * dim if context == "cce" else dim
        h = dim if not hidden else int(hidden)
        self.ffn = nn.Sequential(nn.Linear(width, h), nn.ReLU(), nn.Linear(h, dim))

    def forward(
        self,
        items: torch.Tensor,
        ctx: torch.Tensor,
        ctx_mask: torch.Tensor,
        user: torch.Tensor,
        k: int,
        tau: float | None,
        nce_t: float,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student logits and InfoNCE terms.

        Args:
            items: `(B, N, Di)` item fields of the targets.
            ctx: `(B, M, Di)` item fields of the context candidates.
            ctx_mask: `(B, N, M)` bool, allowed (target, context) pairs.
            user: `(B, d)` user-interest vectors `u`.
            k: context items sampled on each side.
            tau: relaxed top-k temperature; None = inference (hard top-k, no noise).
            nce_t: InfoNCE temperature t.
            generator: RNG of the Gumbel noise.

        Returns:
            `(logit qᵀC (B, N), InfoNCE loss per target (B, N))`.
        """
        q = self.w1(items)
        keys = self.w2(ctx)
        vals = self.w3(ctx)
        w = q @ keys.transpose(1, 2) / math.sqrt(self.dim)  # Eq. 11, (B, N, M)
        w = w.masked_fill_(~ctx_mask, _NEG) if tau is None else w.masked_fill(~ctx_mask, _NEG)
        u = user.unsqueeze(1)
        if self.context == "plain":
            c = torch.softmax(w, dim=-1) @ vals
            cc = self.ffn(u * c)
            return (q * cc).sum(-1), torch.zeros(q.shape[:2])
        if tau is None:
            # inference: hard top-k of log p = top-k of w (and of −w); the softmax of
            # log p over the selected equals the softmax of ±w over them (Eq. 12–13).
            # Only the k selected values are gathered: O(N·M) selection + O(N·k·d).
            c_pos = _topk_attention(w, vals, k)
            c_neg = _topk_attention(torch.neg(w).masked_fill_(~ctx_mask, _NEG), vals, k)
        else:
            logp_pos = torch.log_softmax(w, dim=-1)
            logp_neg = torch.log_softmax((-w).masked_fill(~ctx_mask, _NEG), dim=-1)
            kp = gumbel_keys(logp_pos, generator)  # Eq. 5–6
            kn = gumbel_keys(logp_neg, generator)
            a_pos = relaxed_topk(kp, k, tau, ctx_mask)  # Eq. 7–10
            a_neg = relaxed_topk(kn, k, tau, ctx_mask)
            c_pos = _soft_attention(kp, a_pos, vals)  # Eq. 12 target attention
            c_neg = _soft_attention(kn, a_neg, vals)  # Eq. 13 anti-attention (−w̃⁻ = κ⁻)
        nce = torch.stack([(q * c_pos).sum(-1), (q * c_neg).sum(-1)], dim=-1) / nce_t
        info = -torch.log_softmax(nce, dim=-1)[..., 0]  # Eq. 14
        cc = self.ffn(torch.cat([u * c_pos, u * c_neg], dim=-1))  # Eq. 15
        return (q * cc).sum(-1), info  # Eq. 17 (logit of y_stu)


def cdm_loss(
    f_logit: torch.Tensor,
    labels: torch.Tensor,
    stu_logit: torch.Tensor,
    y_tea: torch.Tensor,
    info: torch.Tensor,
    valid: torch.Tensor,
    beta1: float,
    beta2: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """`L = L_BCE + β1 · L_KD + β2 · L_InfoNCE` (Eq. 18–20), means over valid candidates."""
    v = valid.to(f_logit.dtype)
    n = v.sum().clamp(min=1.0)
    bce = nn.functional.binary_cross_entropy_with_logits(f_logit, labels, reduction="none")
    if weights is not None:
        bce = bce * weights
    kd = nn.functional.binary_cross_entropy_with_logits(stu_logit, y_tea, reduction="none")
    return ((bce + beta1 * kd + beta2 * info) * v).sum() / n


def teacher_inputs(
    item_vecs: np.ndarray, user_vecs: np.ndarray, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`(vectors, user)` for :class:`~divrec.rerank.InterestAwareMMR` from `e_i` `(B, N, d)`
    and `u` `(B, d)`.

    `normalize=False`: `(e_i, u)` as given (Eq. 3 on raw embeddings). `normalize=True`:
    `(e_i ⊙ u / ‖e_i ⊙ u‖, 1)`, so that Eq. 3 takes `σ` of cosines. With small embeddings
    (16-d, entries ~0.05) the raw dot products are ~1e-4, `σ ≈ ½` for every pair and the
    teacher degenerates to the relevance order; normalizing keeps Eq. 3's form and its
    `λ` range meaningful.
    """
    if not normalize:
        return item_vecs, user_vecs
    eu = item_vecs * user_vecs[:, None, :]
    norms = np.linalg.norm(eu, axis=-1, keepdims=True)
    eu = np.divide(eu, norms, out=np.zeros_like(eu), where=norms > 0)
    return eu, np.ones_like(user_vecs)


def teacher_labels(
    relevance: np.ndarray,
    item_vecs: np.ndarray,
    user_vecs: np.ndarray,
    valid: np.ndarray,
    k: int,
    lambda_: float,
) -> np.ndarray:
    """`y_tea = 1[i ∈ R]` of interest-aware MMR's top-k (Eq. 2–4, 16), `(B, N)` float32.

    Args:
        relevance: `(B, N)` backbone probabilities `f(u, i)`.
        item_vecs: `(B, N, d)` item embeddings `e_i`.
        user_vecs: `(B, d)` user-interest vectors `u`.
        valid: `(B, N)` bool.
        k: the teacher's list length K.
        lambda_: MMR's diversity weight λ.
    """
    from divrec.rerank.mmr import InterestAwareMMR

    mmr = InterestAwareMMR(lambda_=lambda_)
    pos = mmr.select_batch(relevance, k, vectors=item_vecs, user=user_vecs, valid=valid)
    out = np.zeros(relevance.shape, dtype=np.float32)
    rows, cols = np.nonzero(pos >= 0)
    out[rows, pos[rows, cols]] = 1.0
    return out


@dataclass(frozen=True, kw_only=True)
class CDMConfig(DCNConfig):
    """`CDMRanker` hyperparameters: the backbone's (`DCNConfig`, Sec. 4.1.4) and CDM's own.

    The `DCNConfig` fields configure the backbone and its pre-training (`max_epochs`,
    `patience` on the `val_frac` validation requests); the joint phase reuses `lr`,
    `weight_decay`, `batch_requests`, the validation requests and `weighting` (IPW on the
    BCE term).

    Attributes:
        teacher_k: K of the teacher's MMR list (Eq. 16).
        teacher_lambda: λ of the interest-aware MMR teacher (Eq. 2).
        teacher_normalize: unit-normalize `e_i ⊙ u` for the teacher (see
            :func:`teacher_inputs`).
        n_context: k, context items sampled on each side (Eq. 7–10).
        context: "cce" (Contrastive Context Encoder) or "plain" (−CCE ablation).
        context_size: 0 = every candidate is context; m > 0 = only the top-m candidates by
            backbone score (restricted context).
        beta1: weight β1 of the distillation loss (Eq. 20).
        beta2: weight β2 of the InfoNCE loss (Eq. 20; 0: −InfoNCE ablation).
        nce_temperature: t of Eq. 14.
        tau_start: relaxed top-k temperature τ (Eq. 8) at the first joint step, annealed
            exponentially per step to `tau_end` at the last.
        tau_end: τ at the last joint step (`0 < tau_end <= tau_start`).
        gamma: serving weight γ of `f(u, i) + γ · y_stu`.
        cdm_epochs: joint training epochs after the backbone pre-training (the best epoch
            on the validation requests' noise-free loss Eq. 18–20 is kept).
        student_hidden: hidden width of the student's fusion FFN (Eq. 15; 0 = `dim`, the
            default): the student's capacity.
        topk: "relaxed" (Eq. 5–10, Gumbel noise + successive softmax at temperature τ while
            training) or "hard" (a diagnosis variant, not the paper: the noise-free hard top-k
            of inference also while training; gradients flow through the attention weights
            of the selected items only).
        freeze_backbone: keep the pre-trained backbone fixed in the joint phase (a diagnosis
            variant; the paper trains both): serving is then the teacher's own `f` + γ·y_stu.
        teacher_refresh: recompute the teacher labels (Eq. 16) from the current backbone at
            the start of every joint epoch after the first (default: once, from the
            pre-trained backbone), so that `y_tea` follows the `f` it is served with.
        n_candidates: N of the requests carved out of `train` when none are given, and the
            context size of `score_all`.
    """

    teacher_k: int = param(10, ge=1)
    teacher_lambda: float = param(0.25, ge=0.0)
    teacher_normalize: bool = True
    n_context: int = param(10, ge=1)
    context: Literal["cce", "plain"] = "cce"
    context_size: int = param(0, ge=0)
    beta1: float = param(1.0, ge=0.0)
    beta2: float = param(0.1, ge=0.0)
    nce_temperature: float = param(0.5, gt=0.0)
    tau_start: float = param(1.0, gt=0.0)
    tau_end: float = param(0.1, gt=0.0)
    gamma: float = 0.1
    cdm_epochs: int = param(3, ge=0)
    n_candidates: int = param(200, ge=1)
    student_hidden: int = param(0, ge=0)
    topk: Literal["relaxed", "hard"] = "relaxed"
    freeze_backbone: bool = False
    teacher_refresh: bool = False

    def validate(self) -> None:
        super().validate()
        if self.tau_end > self.tau_start:
            raise ValueError(f"tau_end={self.tau_end!r} must be <= tau_start={self.tau_start!r}")


class CDMRanker(DCNRanker):
    """CDM as a ranking stage trained on the retriever's candidate lists.

    Hyperparameters: `CDMConfig` (the backbone's `DCNConfig` fields and CDM's own).

    Attributes:
        net_: the backbone `DCNNet`; student_: the `CDMStudent`.
        teacher_rate_: share of candidates the teacher selected.
        joint_val_losses_: validation loss (Eq. 18–20, no noise) per joint epoch.
    """

    Config = CDMConfig
    needs_retriever = True

    # ------------------------------------------------------------------ fitting
    def fit(  # type: ignore[override]
        self,
        train: Interactions | sp.spmatrix,
        retriever: Any | None = None,
        requests: CandidateRequests | None = None,
        user_features: np.ndarray | None = None,
        backbone: DCNRanker | None = None,
    ) -> CDMRanker:
        """Fits backbone, teacher labels and student; returns self.

        Args:
            train: the log (serving history, catalogue, categories).
            retriever: the pipeline's retriever; without `requests`, an unfitted copy of it
                is fitted on the first 80% of each user's `train` and its top
                `n_candidates` form the training requests (:func:`self_requests`).
            requests: labelled training requests (take precedence over `retriever`).
            user_features: `(n_users, F)` int categorical user features.
            backbone: an already fitted `DCNRanker` with the same architecture parameters;
                its weights (and user features) are copied instead of pre-training the
                backbone again (used by ablations that share one backbone).
        """
        if backbone is not None:
            for name in (
                "dim", "n_cross", "cross_rank", "cross_version", "hidden", "use_history",
                "history_len",
            ):  # fmt: skip
                if getattr(backbone, name) != getattr(self, name):
                    raise ValueError(f"backbone.{name} differs from this model's {name}")
            if not hasattr(backbone, "net_"):
                raise ValueError("backbone is not fitted")
            user_features = backbone.user_features_
        self._backbone = backbone
        if requests is None:
            pre = None if retriever is None else _unfitted_copy(retriever)
            requests = self_requests(
                train, pre_ranker=pre, n_candidates=int(self.n_candidates), seed=self.seed
            )
        try:
            return super().fit(train, requests=requests, user_features=user_features)  # type: ignore[return-value]
        finally:
            del self._backbone

    def _fit_scoped(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        bb = self._backbone
        if bb is None:
            super()._fit_scoped(matrix, data)  # backbone with early stopping
        else:
            if (bb.n_users_, bb.n_items_) != (self.n_users_, self.n_items_):
                raise ValueError("backbone was fitted on another user/item universe")
            self._check_requests(self._requests)
            self.user_features_ = self._check_user_features(self._user_features)
            self.history_ = recency_history(matrix, data)  # "last L" = most recent by time
            self.net_ = copy.deepcopy(bb.net_)
            self._item_primary = primary_category(
                data.item_categories if data else None, self.n_items_
            )
            self.val_losses_, self.best_epoch_ = list(bb.val_losses_), bb.best_epoch_
            self.train_losses_ = list(getattr(bb, "train_losses_", []))
        req = self._requests
        self.student_ = CDMStudent(
            self._item_dim(), int(self.dim), self.context, int(self.student_hidden) or None
        )
        y_tea = self._teacher(req)
        self.teacher_rate_ = float(y_tea[req.valid].mean())
        self._train_joint(req, y_tea)

    def _item_dim(self) -> int:
        return int(self.dim) * (1 + int(self.net_.has_cats))

    @torch.no_grad()
    def _teacher(self, req: CandidateRequests) -> np.ndarray:
        self.net_.eval()
        out = np.zeros(req.labels.shape, dtype=np.float32)
        for rows in batches(np.arange(len(req)), 256):
            logits = self._logits(req, rows).numpy()
            inp = self._req_inputs(req, rows)
            u = self._interest(inp).numpy()
            e = self.net_.item_emb(torch.as_tensor(np.maximum(req.candidates[rows], 0))).numpy()
            e, u = teacher_inputs(e, u, bool(self.teacher_normalize))
            out[rows] = teacher_labels(
                sigmoid(logits).astype(np.float64), e, u, req.valid[rows],
                int(self.teacher_k), float(self.teacher_lambda),
            )  # fmt: skip
        return out

    def _forward(self, inp: dict, items: torch.Tensor, valid: torch.Tensor, tau, generator):
        """Backbone logits, student logits, InfoNCE terms for `(B, N)` candidates."""
        net = self.net_
        it = net.item_fields(items)
        u = net.user_fields(inp["users"], inp.get("hist"), inp.get("ufeat"))
        x0 = torch.cat([u.unsqueeze(1).expand(-1, it.shape[1], -1), it], dim=-1)
        f_logit = net.out(net.mlp(net.cross(x0))).squeeze(-1)
        n = items.shape[1]
        m = int(self.context_size)
        if 0 < m < n:
            pos = f_logit.detach().masked_fill(~valid, -np.inf).topk(m, dim=-1).indices
            ctx = torch.gather(it, 1, pos.unsqueeze(-1).expand(-1, -1, it.shape[-1]))
            ctx_valid = torch.gather(valid, 1, pos)
        else:
            pos = torch.arange(n).unsqueeze(0).expand(items.shape[0], -1)
            ctx, ctx_valid = it, valid
        user = self._interest(inp)
        # inference: targets in chunks, so the (B, chunk, M) attention stays small
        step = n if tau is not None else max(1, _CHUNK // max(1, ctx.shape[1]))
        stu, info = [], []
        for s0 in range(0, n, step):
            sl = slice(s0, min(n, s0 + step))
            is_self = pos.unsqueeze(1) == torch.arange(sl.start, sl.stop).view(1, -1, 1)
            mask = ctx_valid.unsqueeze(1) & ~is_self & valid[:, sl].unsqueeze(-1)
            a, b = self.student_(
                it[:, sl], ctx, mask, user, int(self.n_context),
                None if self.topk == "hard" else tau,
                float(self.nce_temperature), generator,
            )  # fmt: skip
            stu.append(a)
            info.append(b)
        return f_logit, torch.cat(stu, 1), torch.cat(info, 1)

    def _req_tensors(self, req: CandidateRequests, rows: np.ndarray) -> tuple:
        inp = self._req_inputs(req, rows)
        items = torch.as_tensor(np.maximum(req.candidates[rows], 0))
        return inp, items, torch.as_tensor(req.valid[rows])

    def _train_joint(self, req: CandidateRequests, y_tea: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed + 1)
        gen = torch.Generator().manual_seed(int(self.seed) + 1)
        tr, va = self._split_rows(len(req), np.random.default_rng(self.seed))
        params = list(self.student_.parameters())
        if not self.freeze_backbone:
            params += list(self.net_.parameters())
        opt = make_optimizer(
            params, "adam", lr=float(self.lr), weight_decay=float(self.weight_decay)
        )
        size = int(self.batch_requests)
        n_steps = max(1, int(self.cdm_epochs) * math.ceil(len(tr) / size))
        ratio = float(self.tau_end) / float(self.tau_start)
        step = 0
        # the best joint epoch (no early stopping) keeps both modules' weights
        both = nn.ModuleDict({"net": self.net_, "student": self.student_})
        with TrainLoop("CDM", n_steps, self.progress) as loop:
            for epoch in range(int(self.cdm_epochs)):
                if epoch and self.teacher_refresh and not self.freeze_backbone:
                    y_tea = self._teacher(req)  # MMR on the current backbone
                self.net_.train(not self.freeze_backbone)
                self.student_.train()
                for rows in batches(rng.permutation(tr), size):
                    tau = float(self.tau_start) * ratio ** (step / max(1, n_steps - 1))
                    inp, items, valid = self._req_tensors(req, rows)
                    f_logit, stu, info = self._forward(inp, items, valid, tau, gen)
                    w = torch.as_tensor(self._weights(req, rows))
                    loss = cdm_loss(
                        f_logit, torch.as_tensor(req.labels[rows]), stu,
                        torch.as_tensor(y_tea[rows]), info, valid, float(self.beta1),
                        float(self.beta2), w,
                    )  # fmt: skip
                    loop.step(opt, loss, weight=len(rows))
                    step += 1
                loop.end_epoch(both, self._joint_val(req, y_tea, va) if va.size else None)
            loop.restore_best(both)
        self.joint_val_losses_ = loop.valid_loss
        self.joint_train_losses_ = loop.train_loss
        self.net_.eval()
        self.student_.eval()

    @torch.no_grad()
    def _joint_val(self, req, y_tea, rows) -> float:
        self.net_.eval()
        self.student_.eval()
        total, n = 0.0, 0.0
        for b in batches(rows, 64):
            inp, items, valid = self._req_tensors(req, b)
            f_logit, stu, info = self._forward(inp, items, valid, None, None)
            v = float(valid.sum())
            loss = cdm_loss(
                f_logit, torch.as_tensor(req.labels[b]), stu, torch.as_tensor(y_tea[b]),
                info, valid, float(self.beta1), float(self.beta2),
            )  # fmt: skip
            total += float(loss) * v
            n += v
        return total / max(n, 1.0)

    # ------------------------------------------------------------------ serving
    @torch.no_grad()
    def request_scores(
        self,
        users: np.ndarray,
        candidates: np.ndarray,
        history: sp.csr_matrix | None = None,
        hist_rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backbone probabilities `f` and student win probabilities `y_stu` of requests.

        Args:
            users: `(B,)` users.
            candidates: `(B, N)` candidates (the request's context), −1 padded.
            history: the history matrix (default: the fitted one).
            hist_rows: rows of `history` per request (default: `users`).

        Returns:
            `(f (B, N), y_stu (B, N))` float32 (0 at padding).
        """
        self.net_.eval()
        self.student_.eval()
        history = self.history_ if history is None else history
        hist_rows = users if hist_rows is None else hist_rows
        f = np.zeros(candidates.shape, dtype=np.float32)
        y = np.zeros(candidates.shape, dtype=np.float32)
        for sl in slices(len(users), 16):
            inp = self._batch_inputs(np.maximum(users[sl], 0), history, hist_rows[sl])
            valid = torch.as_tensor(candidates[sl] >= 0)
            items = torch.as_tensor(np.maximum(candidates[sl], 0))
            f_logit, stu, _ = self._forward(inp, items, valid, None, None)
            f[sl] = torch.sigmoid(f_logit).numpy() * valid.numpy()
            y[sl] = torch.sigmoid(stu).numpy() * valid.numpy()
        return f, y

    def _score_items(self, query, items: np.ndarray) -> np.ndarray:
        """`f(u, i) + γ · y_stu` with the request's `items` `(B, C)` as the context."""
        if query.history is not None:
            users = np.maximum(query.users, 0)
            f, y = self.request_scores(
                users, items, query_history(query, self.n_items_), np.arange(len(query))
            )
        else:
            f, y = self.request_scores(query.users, items)
        return f + float(self.gamma) * y

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        """Backbone scores of all items; the top `n_candidates` of each user by backbone
        score (the context) get `+ γ · y_stu` (the others get no student term)."""
        base = DCNRanker._score_all(self, users).astype(np.float32)
        n = min(int(self.n_candidates), self.n_items_)
        top = np.argsort(-base, axis=1, kind="stable")[:, :n]
        _, y = self.request_scores(users, top)
        np.put_along_axis(base, top, np.take_along_axis(base, top, 1) + self.gamma * y, 1)
        return base

    # ------------------------------------------------------------------ persistence
    def _rebuild_module(self, name: str, state: dict) -> nn.Module:
        if name == "student_":
            item_dim = int(np.asarray(state["w1.weight"]).shape[1])
            hidden = int(np.asarray(state["ffn.0.weight"]).shape[0])
            return CDMStudent(item_dim, int(self.dim), self.context, hidden)
        return super()._rebuild_module(name, state)

    def _after_load(self) -> None:
        if hasattr(self, "student_"):  # a saved unfitted stage has no modules
            self.net_.eval()
            self.student_.eval()


def _unfitted_copy(stage: Any) -> Any:
    """A new, unfitted stage with `stage`'s hyperparameters."""
    if getattr(stage, "config", None) is not None:
        return stage.with_params()
    return type(stage)(**stage.get_params())
