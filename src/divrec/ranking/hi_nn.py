"""HI-NN: heterogeneous-inference ranking network (HI paper, Figure 2, Eq. 10–13).

Architecture (Figure 2). With the FEEDE matrices of `divrec.data.feedback` (X positive,
Y = O − X negative, Eq. 6; `m` users, `n` items):

- p2p sub-networks: `+fU` maps the user's positive row `X_{i,:}` (n) to `+U_i` (k) and `+fV`
  maps the item's positive column `X_{:,j}` (m) to `+V_j` (k); `+r_ij = +U_i · +V_j`.
- n2p sub-networks: `−fU` maps the user's negative row `Y_{i,:}` to `−U_i` and `−fV` maps
  `X_{:,j}` to `−V_j`; `−r_ij = −U_i · −V_j`.
- interaction: `*r_ij = −U_i W_j +U_iᵀ` (the interaction loss of Eq. 10). The paper gives
  `W ∈ R^{k×k}` and says an element `w_pq` "for item j" is the likelihood that a user likes
  item j given that the user dislikes topic p and likes topic q; its cold-start form
  (Eq. 13) `W ≈ S_{:,j} Q_{:,j}ᵀ` depends on j. We therefore read W as item-specific and
  produce it with an item sub-network: `X_{:,j}` (m) → k → `W_j` (k × k), two bias-free
  dense layers (the k-wide bottleneck is ours, for speed).
- head `g` (dense layers) on the latent representation
  `[+U_i ⊙ +V_j, −U_i ⊙ −V_j, +r_ij, −r_ij, *r_ij]` (HI) or `[+U_i ⊙ +V_j, +r_ij]` (CF-NN),
  giving the logit of `p̂(x̃_ij)`. (Which latent quantities enter g is not stated; this is
  our choice.)

All four embedding sub-networks and the W module are linear maps (bias-free dense layers)
of the sparse input vectors. User inputs are mean-normalized by default (`user_norm="mean"`,
not in the paper: `X_{i,:}` and `Y_{i,:}` are each divided by their number of nonzeros;
with raw rows, users with hundreds of ratings get latents hundreds of times larger and the
quadratic `*r` made training diverge on ML-1M). With `init="mf"` they start at the
truncated-SVD solutions of Eq. 3 and 7 ("pre-trained sub-models"): `+U = X P`,
`+V_j = Q_{:,j}`, `−U = Y R`, `−V_j = S_{:,j}` (exact at initialization because `+fV` is
set to `X P Σ⁻²` and `−fV` to `Y R Σ'⁻²`; with `user_norm="mean"` the user side is `X̂ P`,
`Ŷ R` of the normalized rows).

Training (two consecutive phases, as in the paper):

1. the sub-networks are trained on the observed cells (o_ij = 1) with x_ij the common target
   of `+r`, `−r` and `*r` by Eq. 10, written per example (means instead of sums):
   `L = mean(x − +r)² + α mean(x − −r)² + γ mean(x − *r)² + λ mean(‖+U_i‖² + ‖+V_j‖²)
   + λ mean(‖−U_i‖² + ‖−V_j‖²)` (one λ for both channels); then they are fixed;
2. g is trained on the same cells with target x_ij. The paper does not name g's loss; since
   its output is the probability `p̂(x̃_ij)` we use binary cross-entropy on g's logit.

CF-NN (`p2p_only=True`, the registry preset `cf-nn`): only `+fU`, `+fV`, `+L` (and g on the
p2p features); the n2p inputs are never read.

Cold start (Eq. 11–13): for a user without an established profile, `+U_i ≈ (X P)_{i,:}`,
`−U_i ≈ (Y R)_{i,:}` and `W_j ≈ S_{:,j} Q_{:,j}ᵀ`, with P, Q, R, S the (scaled) rank-k
factors of XᵀX ≈ PQ and YᵀX ≈ RS; the item vectors come from the trained item
sub-networks, and the forward pass continues through g (`score_cold`).

Scale of the MF factors: the raw XᵀX factors score co-occurrence counts, while the targets
are in [0, 1]. We multiply each channel's factors by scalars `c1` (left) and `c2` (right)
with `c1·c2 = s²` the least-squares fit of `s² (X̂PQ)_ij` to x_ij on the observed cells and
`c1/c2` balancing user and item latent norms (likewise for n2p), i.e. `P_ Q_ = s² · PQ`;
the cold-start formulas above use these stored factors literally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from divrec.data.feedback import encode_feedback
from divrec.data.interactions import Interactions
from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    make_optimizer,
    supports,
    training_scope,
)
from divrec.retrieval.base import Recommender
from divrec.retrieval.hi import truncated_factors
from divrec.stage import param

__all__ = ["HINNConfig", "HINNRecommender", "HINet", "SparseRows"]


class HINet(torch.nn.Module):
    """The network of Figure 2.

    Args:
        n_users: m, the length of an item input column `X_{:,j}`.
        n_items: n, the length of a user input row `X_{i,:}` / `Y_{i,:}`.
        k: latent dimension.
        hidden: widths of g's hidden layers.
        p2p_only: CF-NN (no `−fU`, `−fV`, `fW`).

    Parameters (all bias-free linear maps, stored as `(in, out)` matrices):
        pU `(n, k)`, pV `(m, k)`, nU `(n, k)`, nV `(m, k)`; the W module is two layers,
        `W_j = reshape(X_{:,j}ᵀ fWe fWl, (k, k))` with fWe `(m, k)`, fWl `(k, k·k)` (a
        rank-k bottleneck: a direct `(m, k·k)` map costs k times more per step); g an MLP.
    """

    def __init__(self, n_users: int, n_items: int, k: int, hidden=(32,), p2p_only=False):
        super().__init__()
        self.k = k
        self.p2p_only = p2p_only
        z = lambda r, c: torch.nn.Parameter(torch.zeros(r, c))  # noqa: E731
        self.pU, self.pV = z(n_items, k), z(n_users, k)
        if not p2p_only:
            self.nU, self.nV = z(n_items, k), z(n_users, k)
            self.fWe, self.fWl = z(n_users, k), z(k, k * k)
        n_feat = k + 1 if p2p_only else 2 * k + 3
        layers: list[torch.nn.Module] = []
        for h in hidden:
            layers += [torch.nn.Linear(n_feat, h), torch.nn.ReLU()]
            n_feat = h
        layers.append(torch.nn.Linear(n_feat, 1))
        self.g = torch.nn.Sequential(*layers)

    def embeddings(self) -> list[torch.nn.Parameter]:
        """The sub-network parameters trained in phase 1."""
        extra = [] if self.p2p_only else [self.nU, self.nV, self.fWe, self.fWl]
        return [self.pU, self.pV] + extra

    def users(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple:
        """User latents: `x (B, n)`, `y (B, n)` (dense or `SparseRows`) → `(+U, −U)`, `(B, k)`.

        `−U` is None for CF-NN (and `y` is not read).
        """
        pu = _mm(x, self.pU)
        return pu, (None if self.p2p_only else _mm(y, self.nU))

    def items(self, xt: torch.Tensor) -> tuple:
        """Item latents from columns `xt (J, m)` (dense or `SparseRows`).

        Returns:
            `(+V (J, k), −V (J, k), W (J, k, k))`; the last two are None for CF-NN.
        """
        pv = _mm(xt, self.pV)
        if self.p2p_only:
            return pv, None, None
        w = (_mm(xt, self.fWe) @ self.fWl).reshape(-1, self.k, self.k)
        return pv, _mm(xt, self.nV), w

    def channel_scores(self, pu, nu, pv, nv, w) -> tuple:
        """Pairwise `(+r, −r, *r)`, each `(B,)`, for aligned rows (Eq. 10 terms).

        `*r_b = −U_b W_b +U_bᵀ` (interaction); `−r`, `*r` are None for CF-NN.
        """
        pr = (pu * pv).sum(-1)
        if self.p2p_only:
            return pr, None, None
        return pr, (nu * nv).sum(-1), torch.einsum("bp,bpq,bq->b", nu, w, pu)

    def features(self, pu, nu, pv, nv, w) -> torch.Tensor:
        """g's input `(B, F)`: `[+U⊙+V, −U⊙−V, +r, −r, *r]` (CF-NN: `[+U⊙+V, +r]`)."""
        pr, nr, sr = self.channel_scores(pu, nu, pv, nv, w)
        if self.p2p_only:
            return torch.cat([pu * pv, pr[:, None]], 1)
        return torch.cat([pu * pv, nu * nv, pr[:, None], nr[:, None], sr[:, None]], 1)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """g: `(B, F)` → `(B,)` logits of p̂(x̃)."""
        return self.g(feats).squeeze(-1)


class SparseRows:
    """A fixed sparse input matrix `A (r, c)` for the linear sub-networks (`A @ weight`).

    The product runs in scipy (float32 CSR); the backward pass is `Aᵀ G` with a cached
    transpose, which is much faster on CPU than torch's sparse or embedding-bag kernels.

    Args:
        matrix: `(r, c)` scipy sparse matrix.
    """

    def __init__(self, matrix: sp.spmatrix):
        self.a = sp.csr_matrix(matrix, dtype=np.float32)
        self.at = self.a.T.tocsr()


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        ctx.rows = rows
        return torch.from_numpy(np.ascontiguousarray(rows.a @ weight.detach().numpy()))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = np.ascontiguousarray(ctx.rows.at @ grad.detach().numpy())
        return torch.from_numpy(g), None


def _mm(a, b: torch.Tensor) -> torch.Tensor:
    """`a @ b` for a dense tensor or a `SparseRows` input `a`."""
    if isinstance(a, SparseRows):
        return _SpMM.apply(b, a)
    return a @ b


@dataclass(frozen=True, kw_only=True)
class HINNConfig(TrainingConfig):
    """`HINNRecommender` hyperparameters (HI paper, Figure 2, Eq. 10–13).

    CF-NN is this config with `p2p_only=True` (registry preset `cf-nn`).

    Attributes:
        factors: latent dimension k (the paper: 10).
        p2p_only: CF-NN: only the p2p sub-networks `+fU`, `+fV`, the loss `+L` and g (on
            the p2p features); the n2p inputs are never read.
        threshold: rating ≥ threshold is positive (FEEDE "threshold" encoding).
        encoding: "threshold" or "rating6" (x = r/6, y = 1 − x; targets are then r/6).
        alpha: weight α of the n2p loss `−L` (Eq. 10).
        gamma: weight γ of the interaction loss `*L` (Eq. 10).
        lam: L2 weight λ of the user/item latents (Eq. 10).
        hidden: g's hidden widths.
        epochs1: phase-1 epochs (sub-networks).
        epochs2: phase-2 epochs (g).
        batch_size: observed cells per step.
        lr1: Adam learning rate of phase 1 (scaled per tensor, see `_init_net`).
        lr2: Adam learning rate of phase 2.
        init: "mf" (start the sub-networks at the Eq. 3/7 truncated SVD) or "random".
        user_norm: "mean" (default; not in the paper) divides each user input row (X_i and
            Y_i separately) by its number of nonzeros; "none" feeds the raw rows.
        seed: seeds torch (inside `training_scope`), the MF factors and the shuffling.
        threads: torch intra-op threads during training (None: `divrec.threads` policy,
            i.e. ``DIVREC_THREADS`` or 1; 0: every available core).
        device: "cpu" only (the sparse inputs are scipy matrices).
        patience, valid_fraction: not supported (no validation split); must stay unset.
    """

    factors: int = param(10, ge=1)
    p2p_only: bool = False
    threshold: float = 3.0
    encoding: Literal["threshold", "rating6"] = "threshold"
    alpha: float = param(1.0, ge=0.0)
    gamma: float = param(1.0, ge=0.0)
    lam: float = param(1e-4, ge=0.0)
    hidden: tuple[int, ...] = param((32,), ge=1)
    epochs1: int = param(20, ge=0)
    epochs2: int = param(10, ge=0)
    batch_size: int = param(32768, ge=1)
    lr1: float = param(0.05, gt=0.0)
    lr2: float = param(0.02, gt=0.0)
    init: Literal["mf", "random"] = "mf"
    user_norm: Literal["mean", "none"] = "mean"

    def validate(self) -> None:
        super().validate()
        supports(self, "HINNRecommender")


class HINNRecommender(Recommender):
    """HI-NN ranking model (Figure 2, Eq. 10–13); CF-NN with `p2p_only=True`.

    Hyperparameters: `HINNConfig`.

    Attributes:
        net_: the trained `HINet`.
        X_, Y_: `(m, n)` float32 CSR FEEDE matrices of the training log.
        P_, Q_, R_, S_: scaled MF factors `(n, k)`, `(k, n)`, `(n, k)`, `(k, n)` (Eq. 3, 7)
            used by the cold-start approximations (Eq. 11–13).
        history_: `{"phase1": [mean loss per epoch], "phase2": [...]}`.
        train_seconds_: wall time of `fit`.
    """

    Config = HINNConfig
    uses_values = True
    supports_history = True
    _transient = ("item_latents_", "user_latents_")

    # ------------------------------------------------------------------ training
    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        if data is None:
            coo = matrix.tocoo()
            data = Interactions(coo.row, coo.col, coo.data, np.arange(matrix.shape[0]),
                                np.arange(matrix.shape[1]))  # fmt: skip
        fb = encode_feedback(data, mode=self.encoding, threshold=self.threshold)
        self.X_, self.Y_ = fb.X, fb.Y
        obs = fb.O.tocoo()
        users, items = obs.row.astype(np.int64), obs.col.astype(np.int64)
        target = np.asarray(fb.X[users, items]).ravel().astype(np.float32)
        start = time.perf_counter()
        with training_scope(self.seed, self.threads, self.device):
            self._train(fb.shape, users, items, target)
        self.train_seconds_ = time.perf_counter() - start

    def _train(self, shape, users, items, target) -> None:
        """Phase 1 (sub-networks, Eq. 10) then phase 2 (g), inside `training_scope`."""
        rng = np.random.default_rng(self.seed)
        self._prepare_inputs()
        self._mf_factors(users, items, target)
        m, n = shape
        self.net_ = HINet(m, n, self.factors, tuple(self.hidden), self.p2p_only)
        self._init_net(torch.Generator().manual_seed(self.seed))
        u_t, i_t, t_t = (torch.from_numpy(a) for a in (users, items, target))
        steps = -(-users.size // self.batch_size)
        total = (self.epochs1 + self.epochs2) * steps
        with TrainLoop("HI-NN phase 1", total, self.progress) as loop:
            opt = make_optimizer(self._param_groups())
            for _ in range(self.epochs1):
                for idx in np.array_split(rng.permutation(users.size), steps):
                    loss = self._phase1_loss(users[idx], items[idx], t_t[idx])
                    loop.step(opt, loss, weight=idx.size)
                loop.end_epoch()
            for p in self.net_.embeddings():  # phase 1 done: fixed
                p.requires_grad_(False)
            self._cache()
            pu, nu = self.user_latents_
            pv, nv, w = self.item_latents_
            loop.add_task("HI-NN phase 2 (g)", self.epochs2 * steps)
            opt2 = make_optimizer(self.net_.g.parameters(), lr=self.lr2)
            bce = torch.nn.BCEWithLogitsLoss()
            for _ in range(self.epochs2):
                for idx in np.array_split(rng.permutation(users.size), steps):
                    bu, bi = u_t[idx], i_t[idx]
                    feats = self.net_.features(
                        pu[bu], None if nu is None else nu[bu], pv[bi],
                        None if nv is None else nv[bi], None if w is None else w[bi],
                    )  # fmt: skip
                    loop.step(opt2, bce(self.net_.head(feats), t_t[idx]), weight=idx.size)
                loop.end_epoch()
        self.history_ = {
            "phase1": loop.train_loss[: self.epochs1],
            "phase2": loop.train_loss[self.epochs1 :],
        }
        self._cache()

    def _mf_factors(self, users, items, target) -> None:
        """Scaled rank-k factors of XᵀX (Eq. 3) and YᵀX (Eq. 7), and the item-map inits."""
        x, y = self.X_, self.Y_
        p, q = truncated_factors((x.T @ x).tocsr(), self.factors, self.seed)
        self.P_, self.Q_, c2 = self._scaled(p, q, self._xn, users, items, target)
        self._item_init = {"pV": _column_map(x, p, q) * c2}
        if self.p2p_only:
            self.R_ = np.zeros_like(self.P_)
            self.S_ = np.zeros_like(self.Q_)
            self._item_init["nV"] = np.zeros_like(self._item_init["pV"])
        else:
            r, s = truncated_factors((y.T @ x).tocsr(), self.factors, self.seed)
            self.R_, self.S_, c2 = self._scaled(r, s, self._yn, users, items, target)
            self._item_init["nV"] = _column_map(y, r, s) * c2

    @staticmethod
    def _scaled(left, right, rows, users, items, target):
        """`(c1·left, c2·right, c2)`: least-squares overall scale, balanced between sides.

        `c1·c2 = s²`, the least-squares scale of `(rows·left·right)_ij` to the targets, and
        `c1 / c2` makes the mean squared norms of the user latents `rows·left` and the item
        latents `right[:, j]` equal (so Eq. 10's L2 term treats both sides alike).
        """
        ul = np.asarray(rows.a @ left)
        raw = np.einsum("bk,kb->b", ul[users], right[:, items])
        s2 = abs(float(raw @ target) / max(float(raw @ raw), 1e-30)) or 1.0
        u2 = float((ul**2).sum(1).mean()) or 1.0
        v2 = float((right**2).sum(0).mean()) or 1.0
        a = (v2 / u2) ** 0.25
        c1, c2 = np.sqrt(s2) * a, np.sqrt(s2) / a
        return left * c1, right * c2, c2

    def _init_net(self, gen: torch.Generator) -> None:
        """Sub-networks from the MF solution (`init="mf"`) or random values of that scale.

        The weights' natural scales differ by orders of magnitude (user maps act on rows with
        hundreds of entries, item maps on columns with thousands), so each tensor gets a
        scale `σ`: its RMS at the MF solution (fWe: that of `−fV`; fWl: `1 / mean ‖+U_i‖`, the
        scale at which `*r` is comparable to `−r`). Random init draws N(0, σ²) (fWl:
        N(0, (0.01σ)²)); with "mf" the p2p/n2p maps are the MF solution, fWe = `−fV` and
        fWl = 0 (so `*r = 0` at the start). `σ` also scales each tensor's Adam learning rate
        (`lr1 · σ`, so steps are relative to the weights).
        """
        net = self.net_
        mf = {"pU": self.P_, "pV": self._item_init["pV"], "nU": self.R_,
              "nV": self._item_init["nV"]}  # fmt: skip
        rms = {k: float(np.sqrt(np.mean(v**2))) or 1e-3 for k, v in mf.items()}
        u_norm = float(np.linalg.norm(np.asarray(self._xn.a @ self.P_), axis=1).mean()) or 1.0
        rms["fWe"] = rms["nV"]
        rms["fWl"] = 1.0 / u_norm
        self._scales = rms
        names = ("pU", "pV") + (() if self.p2p_only else ("nU", "nV", "fWe", "fWl"))
        with torch.no_grad():
            for name in names:
                prm = getattr(net, name)
                if self.init == "mf" and name in mf:
                    prm.copy_(torch.from_numpy(mf[name]).float())
                elif self.init == "mf" and name == "fWe":
                    prm.copy_(torch.from_numpy(mf["nV"]).float())  # W_j starts from −V_j
                elif name == "fWl" and self.init == "mf":
                    prm.zero_()
                elif name == "fWl":
                    prm.normal_(0.0, 0.01 * rms[name], generator=gen)
                else:
                    prm.normal_(0.0, rms[name], generator=gen)

    def _param_groups(self) -> list[dict]:
        names = ("pU", "pV") + (() if self.p2p_only else ("nU", "nV", "fWe", "fWl"))
        return [
            {"params": [getattr(self.net_, n)], "lr": self.lr1 * self._scales[n]} for n in names
        ]

    def _user_rows(self, x, y) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """User-side inputs after `user_norm`.

        `"mean"` divides each row of x by its number of nonzeros and each row of y by its
        own (so `+U_i` / `−U_i` are means over the user's positive / negative items, and
        the p2p input never depends on Y); `"none"` keeps the raw rows (the paper's literal
        input, numerically unstable for users with hundreds of ratings).
        """
        x, y = sp.csr_matrix(x, dtype=np.float32), sp.csr_matrix(y, dtype=np.float32)
        if self.user_norm == "none":
            return x, y

        def norm(m: sp.csr_matrix) -> sp.csr_matrix:
            m = m.copy()
            m.eliminate_zeros()
            return (sp.diags(1.0 / np.maximum(np.diff(m.indptr), 1)) @ m).tocsr()

        return norm(x), norm(y)

    def _prepare_inputs(self) -> None:
        xn, yn = self._user_rows(self.X_, self.Y_)
        self._xn, self._yn = SparseRows(xn), SparseRows(yn)
        self._xt = SparseRows(self.X_.T)

    def _latents(self):
        """`(+U, −U)` of all training users and `(+V, −V, W)` of all items."""
        net = self.net_
        pu, nu = net.users(self._xn, None if self.p2p_only else self._yn)
        return (pu, nu), net.items(self._xt)

    def _phase1_loss(self, bu: np.ndarray, bi: np.ndarray, t: torch.Tensor) -> torch.Tensor:
        """Eq. 10 on one batch of observed cells (per-example means)."""
        (pu, nu), (pv, nv, w) = self._latents()
        iu, iv = torch.from_numpy(bu), torch.from_numpy(bi)
        pu, pv = pu[iu], pv[iv]
        loss = ((t - (pu * pv).sum(-1)) ** 2).mean()  # +L
        loss = loss + self.lam * ((pu**2).sum(-1) + (pv**2).sum(-1)).mean()
        if not self.p2p_only:
            nu, nv, w = nu[iu], nv[iv], w[iv]
            _, nr, sr = self.net_.channel_scores(pu, nu, pv, nv, w)
            loss = loss + self.alpha * ((t - nr) ** 2).mean()  # α (−L)
            loss = loss + self.gamma * ((t - sr) ** 2).mean()  # γ (*L)
            loss = loss + self.lam * ((nu**2).sum(-1) + (nv**2).sum(-1)).mean()
        return loss

    def phase1_loss(self) -> float:
        """Eq. 10 (per-example form) of the current sub-networks on all training cells."""
        self._check_fitted()
        obs = (abs(self.X_) + abs(self.Y_)).tocoo()
        t = torch.from_numpy(np.asarray(self.X_[obs.row, obs.col]).ravel().astype(np.float32))
        with torch.no_grad():
            return float(self._phase1_loss(obs.row.astype(np.int64), obs.col.astype(np.int64), t))

    def _cache(self) -> None:
        """Latents of all training users and items, `(m, k)` / `(n, k)` / `(n, k, k)`."""
        with torch.no_grad():
            self.user_latents_, self.item_latents_ = self._latents()

    # ------------------------------------------------------------------ scoring
    def _score_all(self, users: np.ndarray) -> np.ndarray:
        pu, nu = self.user_latents_
        u = torch.from_numpy(users)
        return self._score_latents(pu[u], None if nu is None else nu[u], None)

    def _score_latents(self, pu, nu, w_override) -> np.ndarray:
        """g's logits `(B, n)` for user latents against every item (chunked)."""
        pv, nv, w = self.item_latents_
        if w_override is not None:
            w = w_override
        n = pv.shape[0]
        out = np.empty((pu.shape[0], n), dtype=np.float32)
        chunk = max(1, 400_000 // max(n, 1))
        with torch.no_grad():
            for s in range(0, pu.shape[0], chunk):
                b = min(chunk, pu.shape[0] - s)
                sl = slice(s, s + b)
                feats = self.net_.features(
                    _rep(pu, sl, n),
                    None if nu is None else _rep(nu, sl, n),
                    _tile(pv, b),
                    None if nv is None else _tile(nv, b),
                    None if w is None else _tile(w, b),
                )
                out[s : s + b] = self.net_.head(feats).reshape(b, n).numpy()
        return out

    def cold_latents(self, x, y) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Cold-start approximations of Eq. 11–13 for request rows.

        Args:
            x: `(B, n)` positive rows (dense or sparse, FEEDE encoding of the model).
            y: `(B, n)` negative rows.

        Returns:
            `(+U ≈ x̂ P (B, k), −U ≈ ŷ R (B, k), W (n, k, k) with W_j = S_{:,j} Q_{:,j}ᵀ)`,
            x̂, ŷ the rows after `user_norm` (the training inputs' normalization);
            the last two are None for CF-NN.
        """
        self._check_fitted()
        x, y = self._user_rows(x, y)
        pu = np.asarray(x @ self.P_, dtype=np.float64)  # Eq. 11
        if self.p2p_only:
            return pu, None, None
        nu = np.asarray(y @ self.R_, dtype=np.float64)  # Eq. 12
        w = np.einsum("pj,qj->jpq", self.S_, self.Q_)  # Eq. 13
        return pu, nu, w

    def score_cold(self, x, y) -> np.ndarray:
        """Cold-start scores `(B, n)`: the Eq. 11–13 latents forwarded through g.

        Item latents `+V_j`, `−V_j` are the trained item sub-networks' outputs.
        """
        pu, nu, w = self.cold_latents(x, y)
        f = lambda a: None if a is None else torch.from_numpy(a).float()  # noqa: E731
        return self._score_latents(f(pu), f(nu), f(w))

    # ------------------------------------------------------------------ Query entry point
    def _score_history(self, query) -> np.ndarray:
        """Cold start (Eq. 11–13): x on `query.history`, y on its negatives."""
        from divrec.retrieval.hi import _query_rows

        x, y = _query_rows(query, self.n_items_)
        return self.score_cold(x, y)

    # ------------------------------------------------------------------ persistence
    def _rebuild_module(self, name: str, state: dict) -> torch.nn.Module:
        if name != "net_":
            return super()._rebuild_module(name, state)
        return HINet(self.n_users_, self.n_items_, self.factors, tuple(self.hidden), self.p2p_only)

    def _after_load(self) -> None:
        if not hasattr(self, "net_"):  # a saved unfitted stage
            return
        for p in self.net_.embeddings():
            p.requires_grad_(False)
        self._prepare_inputs()
        self._cache()


def _rep(a: torch.Tensor, sl: slice, n: int) -> torch.Tensor:
    """Rows `sl` of `a`, each repeated n times (user side of the `(B·n)` pair batch)."""
    return a[sl].repeat_interleave(n, 0)


def _tile(a: torch.Tensor, b: int) -> torch.Tensor:
    """`a` stacked b times (item side of the `(B·n)` pair batch)."""
    return a.repeat(b, *([1] * (a.dim() - 1)))


def _column_map(rows: sp.csr_matrix, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The item sub-network weight `M (m, k)` with `X_{:,j}ᵀ M = right[:, j]`.

    For the truncated SVD `rowsᵀX ≈ left · right` with `left = U Σ`, `right = Vᵀ`:
    `X_{:,j}ᵀ rows U = (Xᵀ rows U)_j = V_j Σ`, so `M = rows · left · Σ⁻²` (Σ² = the squared
    column norms of `left`). Exact on the training columns.

    Args:
        rows: `(m, n)` X (p2p) or Y (n2p).
        left: `(n, k)` unscaled P or R.
        right: `(k, n)` unscaled Q or S (rows orthonormal).

    Returns:
        `(m, k)` float64.
    """
    norms2 = (left**2).sum(axis=0)
    inv = np.where(norms2 > 1e-30, 1.0 / np.maximum(norms2, 1e-30), 0.0)
    return np.asarray(rows @ left) * inv[None, :]
