"""PURS: personalized unexpected recommender (Li et al.; equations in NOTES.md, Eq. 1–12).

For a request (user `u`, recent history `h_1..h_L`, oldest first) and a candidate `i`:

* embeddings `e_u`, `e_i`, `e_{h_j}` (Eq. 4; the autoencoder of Eq. 5–6 is for feature
  inputs and not used on these id-only data sets);
* CTR branch (Eq. 7–11): a GRU over the history embeddings (bidirectional by default, as
  the paper's text says; the authors' code runs a *one-directional* `GRUCell` through
  `dynamic_rnn`, `bidirectional=False`), attention pooling `s = Σ_t α_t o_t` with
  `α = softmax_t(wᵀ tanh(W o_t + b))` over the real entries — *additive* attention, as the
  authors' `seq_attention` (Yang et al. 2016, HAN; single head, no multi-head) — then
  `MLP([s, e_i, e_u])` with hidden widths (80, 40) → one number;
* interest clusters: batched mean shift of the history embeddings
  (`divrec.ranking.unexpected`) with a Gaussian kernel (paper; authors' code) and a
  per-request radius set from the embedding scale, `h = bandwidth_scale · median pairwise
  distance of the request's history embeddings` (`bandwidth_rule="median"`, scale 0.35:
  about 2 clusters per 10-item ML-1M history in the reference SVD space; the code's fixed
  `h = 0.2` against items ≈ 0.9 apart leaves every item its own cluster), each trajectory
  until its move < 1e-5 or 300 steps (compiled; recomputed on the current embeddings at
  every training step, as the authors' in-graph mean shift); weights |C_k|/Σ|C| (Eq. 1–2);
  unexpectedness `unexp(u, i) = Σ_k w_k ‖e_i − c_k‖₂` (Eq. 3), computed under
  stop-gradient (the distance carries no gradient, as in the authors' code);
* unexpected factor (Eq. 12): a DIN local activation unit over the last 3 history items
  against the candidate, pooled `v = Σ_j a_j h_j`, then `MLP([v, e_i, e_u])` → one number;
* logit = `b_u + b_i + MLP + factor · f(unexp)`, `f(x) = x·e^(−x)`, trained with binary
  cross-entropy.

Ablations (Sec. 6.2) are hyperparameters (`PURSConfig`): Variation 1 `activation="gaussian"`,
Variation 2 `activation="identity"`, Variation 3 `use_factor=False` (the factor is the
constant 1), Variation 4 `use_unexpectedness=False` (no unexpectedness term at all),
Variation 5 `clusters="single"` (one closure: the mean of the history, Li & Tuzhilin 2019).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from divrec.nn.layers import MLP, expand_rows, local_activation
from divrec.nn.train import supports
from divrec.ranking.ctr import IdEmbeddingNet, SequenceCTR, SequenceCTRConfig, right_align
from divrec.ranking.unexpected import activation, interest_clusters, unexpectedness
from divrec.stage import param

__all__ = ["PURS", "PURSConfig", "PURSNet", "VARIATIONS"]

#: PURS Table 3 rows → hyperparameter overrides
VARIATIONS: dict[str, dict] = {
    "PURS": {},
    "PURS-Variation 1": {"activation": "gaussian"},
    "PURS-Variation 2": {"activation": "identity"},
    "PURS-Variation 3": {"use_factor": False},
    "PURS-Variation 4": {"use_unexpectedness": False},
    "PURS-Variation 5": {"clusters": "single"},
}


class PURSNet(IdEmbeddingNet):
    """The PURS network; `forward(user (B,), history (B, L), items (B, C)) -> (B, C)`.

    Args:
        n_users, n_items: universe sizes (index −1 = padding / anonymous).
        dim: embedding size.
        hidden: CTR MLP widths.
        factor_hidden: unexpected-factor MLP widths.
        short_window: history items read by the factor's activation unit (PURS code: 3).
        bidirectional: bidirectional GRU.
        dropout: MLP drop probability (training only).
        act: the unexpected activation ("xexp", "gaussian", "identity").
        use_factor, use_unexpectedness, clusters: the ablation switches.
        bandwidth, tol, max_iter, kernel, bandwidth_rule, bandwidth_scale: mean shift
            settings (`bandwidth` is the fixed radius of rule "fixed"; `bandwidth_scale` the
            multiple of the median pairwise history distance of rule "median").
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int = 32,
        hidden: tuple[int, ...] = (80, 40),
        factor_hidden: tuple[int, ...] = (40,),
        short_window: int = 3,
        bidirectional: bool = True,
        dropout: float = 0.1,
        act: str = "xexp",
        use_factor: bool = True,
        use_unexpectedness: bool = True,
        clusters: str = "mean-shift",
        bandwidth: float = 0.2,
        tol: float = 1e-5,
        max_iter: int = 300,
        kernel: str = "gaussian",
        bandwidth_rule: str = "median",
        bandwidth_scale: float = 0.35,
    ):
        super().__init__(n_users, n_items, dim)
        self.user_bias = nn.Embedding(n_users + 1, 1, padding_idx=n_users)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=n_items)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=bidirectional)
        out = dim * (2 if bidirectional else 1)
        self.att_w = nn.Linear(out, out)
        self.att_v = nn.Linear(out, 1, bias=False)
        self.mlp = MLP(out + 2 * dim, tuple(hidden), dropout=dropout)
        self.short_window = short_window
        self.act = act
        self.use_factor = use_factor
        self.use_unexpectedness = use_unexpectedness
        self.clusters = clusters
        self.bandwidth, self.tol, self.max_iter, self.kernel = bandwidth, tol, max_iter, kernel
        self.bandwidth_rule, self.bandwidth_scale = bandwidth_rule, bandwidth_scale
        if use_unexpectedness and use_factor:
            self.factor_att = MLP(4 * dim, (36,))
            self.factor_mlp = MLP(3 * dim, tuple(factor_hidden), dropout=dropout)

    def history_state(self, eh: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Self-attentive GRU pooling (Eq. 7–11): `(B, L, d)` → `(B, out)`."""
        o, _ = self.gru(eh)
        score = self.att_v(torch.tanh(self.att_w(o)))[..., 0]
        score = score.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(score, dim=1)
        alpha = torch.nan_to_num(alpha, nan=0.0)  # empty history → zero state
        return torch.einsum("bl,blo->bo", alpha, o)

    def unexpectedness(self, eh, mask, ei) -> torch.Tensor:
        """`(B, C)` PURS Eq. 3 of the candidates, without gradient."""
        with torch.no_grad():
            cl = self.cluster(eh.detach(), mask)
            return unexpectedness(ei.detach(), cl)

    def cluster(self, eh: torch.Tensor, mask: torch.Tensor):
        """Interest clusters `(centers (B, K, d), weights (B, K))` of history embeddings."""
        median = self.bandwidth_rule == "median"
        return interest_clusters(
            eh, mask, self.clusters, self.bandwidth_scale if median else self.bandwidth,
            self.kernel, self.tol, self.max_iter, bandwidth_rule=self.bandwidth_rule,
        )  # fmt: skip

    def forward(self, user, history, items, return_parts: bool = False):
        u, h, i, mask = self._ids(user, history, items)
        eu, eh, ei = self.user_emb(u), self.item_emb(h), self.item_emb(i)
        c = ei.shape[1]
        s = self.history_state(eh, mask)
        ctr = self.mlp(torch.cat([expand_rows(s, c), ei, expand_rows(eu, c)], -1))[..., 0]
        logit = self.user_bias(u) + self.item_bias(i)[..., 0] + ctr
        parts = {"ctr": ctr}
        if self.use_unexpectedness:
            unexp = self.unexpectedness(eh, mask, ei)
            f = activation(unexp, self.act)
            if self.use_factor:
                w = self.short_window
                pooled = local_activation(self.factor_att, eh[:, -w:], mask[:, -w:], ei)
                factor = self.factor_mlp(torch.cat([pooled, ei, expand_rows(eu, c)], -1))[..., 0]
            else:
                factor = torch.ones_like(f)
            logit = logit + factor * f
            parts.update(unexp=unexp, factor=factor)
        return (logit, parts) if return_parts else logit


@dataclass(frozen=True, kw_only=True)
class PURSConfig(SequenceCTRConfig):
    """`PURS` hyperparameters: the window CTR training fields (`SequenceCTRConfig`) and
    PURS's own.

    Attributes:
        factor_hidden: unexpected-factor MLP widths (Eq. 12).
        short_window: history items read by the factor's activation unit (PURS code: 3;
            at most `history`).
        bidirectional: bidirectional GRU (Eq. 7–11: the paper's text says bidirectional; the
            authors' code is one-directional, `GRUCell` through `dynamic_rnn`).
        activation: unexpected activation `f`: "xexp" (PURS, `x·e^(−x)`), "gaussian"
            (Variation 1), "identity" (Variation 2).
        use_factor: False = Variation 3 (factor ≡ 1).
        use_unexpectedness: False = Variation 4 (no unexpectedness term).
        clusters: "mean-shift" (PURS, Eq. 1–2) or "single" (Variation 5, one closure).
        bandwidth: fixed mean-shift radius of `bandwidth_rule="fixed"` (authors' code: 0.2
            in `exp(−d²/h²)`, i.e. 0.14 in our `exp(−d²/(2h²))`).
        tol: mean-shift stop tolerance on the largest move (PURS code: 1e-5).
        max_iter: mean-shift step cap per trajectory (300, scikit-learn's default: on ML-1M
            histories 0.1% of requests get another cluster count than at convergence,
            1.3% with 100).
        kernel: mean-shift kernel, "gaussian" (paper, authors' code) or "flat".
        bandwidth_rule: "median" (radius = `bandwidth_scale` × the median pairwise distance
            of the request's history embeddings) or "fixed" (`bandwidth`).
        bandwidth_scale: the multiple of rule "median" (0.35: about 2 clusters per 10-item
            ML-1M history in the reference SVD space, 1 at ≥ 0.4, ≥ 5 at ≤ 0.3).
    """

    factor_hidden: tuple[int, ...] = param((40,), ge=1)
    short_window: int = param(3, ge=1)
    bidirectional: bool = True
    activation: Literal["xexp", "gaussian", "identity"] = "xexp"
    use_factor: bool = True
    use_unexpectedness: bool = True
    clusters: Literal["mean-shift", "single"] = "mean-shift"
    bandwidth: float = param(0.2, gt=0.0)
    tol: float = param(1e-5, ge=0.0)
    max_iter: int = param(300, ge=1)
    kernel: Literal["flat", "gaussian"] = "gaussian"
    bandwidth_rule: Literal["fixed", "median"] = "median"
    bandwidth_scale: float = param(0.35, gt=0.0)

    def validate(self) -> None:
        super().validate()
        supports(self, "PURS", early_stopping=True)  # CPU only: its mean shift runs on numpy
        if self.short_window > self.history:
            raise ValueError(
                f"short_window={self.short_window!r} must be in [1, history={self.history}]"
            )


class PURS(SequenceCTR):
    """PURS ranking stage (see the module docstring); a `Recommender`.

    Hyperparameters: `PURSConfig`; training as `SequenceCTR`.
    """

    Config = PURSConfig

    def _build_net(self) -> nn.Module:
        return PURSNet(
            self.n_users_, self.n_items_, self.dim, tuple(self.hidden), tuple(self.factor_hidden),
            self.short_window, self.bidirectional, self.dropout, self.activation,
            self.use_factor, self.use_unexpectedness, self.clusters, self.bandwidth, self.tol,
            self.max_iter, self.kernel, self.bandwidth_rule, self.bandwidth_scale,
        )  # fmt: skip

    def request_clusters(self, users: np.ndarray, history: np.ndarray | None = None):
        """The interest clusters of requests in this model's embedding space.

        Args:
            users: `(B,)` users (their last training items are the history unless given).
            history: `(B, M)` fresh histories, −1 padded, or None.

        Returns:
            `(centers (B, K, d), weights (B, K))` numpy arrays.
        """
        self._check_fitted()
        h = self.user_history_[users] if history is None else right_align(history, self.history)
        net = self.net_
        with torch.no_grad():
            hh = torch.from_numpy(h)
            eh = net.item_emb(torch.where(hh < 0, torch.full_like(hh, net.n_items), hh))
            c, w = net.cluster(eh, hh >= 0)
        return c.numpy(), w.numpy()
