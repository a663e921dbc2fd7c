"""Heterogeneous inference (HI): p2p, n2p, HI candidate mixing and HI-RT.

Paper: "heterogeneous inference" (hi-heterogeneous-inference.txt). With the FEEDE matrices
of `divrec.data.feedback` (X positive, O observed, Y = O − X, Eq. 6):

- p2p (conventional CF, "CF-MF" in batch form, "CF-RT" on realtime requests):
  XᵀX ≈ PQ (rank k, Eq. 3), C = PQ (Eq. 4), scores XC (Eq. 5).
- n2p: YᵀX ≈ RS (Eq. 7), D = RS (Eq. 8), scores YD (Eq. 9).
- HI candidate generation: the p2p and n2p candidate lists mixed at a preset ratio
  (the paper's experiments: p2p:n2p = 67:33); see `mix_candidates` for the exact rule.
- HI-RT: H = [XᵀX; YᵀX] (2n × n, Eq. 14) ≈ AB (Eq. 15), H' = AB (Eq. 16), and a realtime
  request with event rows x, y is scored [x, βy] H' (Eq. 17).

Feedback encoding: the paper explains HI with binary feedback, real-valued feedback being
"converted into either a positive feedback or a negative feedback according to a preset
threshold" (Preliminaries); the threshold value is not stated. We use `rating ≥ threshold`
positive (default 4, so 4–5 stars positive, 1–3 negative) and O = every rated cell, via
`encode_feedback(mode="threshold")`.

Solver (Eq. 3, 7, 15): the paper uses Apache Spark ALS. On a fully observed matrix (XᵀX,
YᵀX and H are used as complete matrices, zeros included) without regularization the
least-squares rank-k optimum is the truncated SVD (Eckart–Young), so we compute that
directly: `scipy.sparse.linalg.svds` (ARPACK, implicitly restarted Lanczos) on the sparse
matrix, which returns the leading k singular triplets to machine tolerance (unlike a
randomized sketch) and is deterministic given its seeded start vector. When k is close to
full rank (k ≥ min(shape) − 1, where ARPACK cannot run) or the matrix is tiny, LAPACK's
dense `numpy.linalg.svd` is used instead. The factors are `left = U_k Σ_k` (rows × k) and
`right = V_kᵀ` (k × cols); n × n products like C are never materialized.
Every HI model also takes `solver="als"`: explicit ALS on the *non-zero* entries only with
Spark's weighted-λ objective (`als_factors`, `regularization` = Spark's `regParam`), the
paper's own solver, for comparison with `divrec.spark.train.SparkHI`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from divrec.data.feedback import encode_events_batch, encode_feedback
from divrec.data.interactions import Interactions
from divrec.retrieval.base import Recommender, top_k
from divrec.stage import StageConfig, param

__all__ = [
    "HIConfig",
    "HIFactorConfig",
    "HIRealtime",
    "HIRealtimeConfig",
    "HIRecommender",
    "N2PConfig",
    "N2PRecommender",
    "P2PConfig",
    "P2PRecommender",
    "load_model",
    "als_factors",
    "mix_candidates",
    "truncated_factors",
]

_DENSE_LIMIT = 64  # matrices with min(shape) <= this go to LAPACK


def truncated_factors(matrix, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rank-k truncated SVD factors `M ≈ left @ right` (Eq. 3, 7, 15).

    Args:
        matrix: `(r, c)` dense array or scipy sparse matrix.
        k: target rank, `1 ≤ k`; clipped to `min(r, c)`.
        seed: seeds ARPACK's start vector (deterministic results).

    Returns:
        `(left (r, k') float64 = U Σ, right (k', c) float64 = Vᵀ)`, singular values in
        descending order, `k' = min(k, r, c)`. With `k' = min(r, c)` the product is `M`
        (up to rounding).
    """
    if k < 1:
        raise ValueError(f"factors must be >= 1, got {k}")
    r, c = matrix.shape
    kk = min(int(k), r, c)
    if kk >= min(r, c) - 1 or min(r, c) <= _DENSE_LIMIT:
        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        u, s, vt = np.linalg.svd(dense.astype(np.float64), full_matrices=False)
        u, s, vt = u[:, :kk], s[:kk], vt[:kk]
    else:
        mat = sp.csr_matrix(matrix, dtype=np.float64) if sp.issparse(matrix) else matrix
        mat = mat.astype(np.float64)
        v0 = np.random.default_rng(seed).standard_normal(min(r, c))
        u, s, vt = svds(mat, k=kk, solver="arpack", v0=v0)
        order = np.argsort(-s, kind="stable")
        u, s, vt = u[:, order], s[order], vt[order]
    return np.ascontiguousarray(u * s[None, :]), np.ascontiguousarray(vt)


def als_factors(
    matrix,
    k: int,
    seed: int = 0,
    regularization: float = 0.01,
    iterations: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Explicit ALS on the non-zero entries of `matrix`, Spark's weighted-λ objective.

    The factorization the HI paper ran (Apache Spark ALS, `implicitPrefs=False`): with Ω the
    stored non-zeros, minimize `Σ_(i,j)∈Ω (M_ij − a_i·b_j)² + λ (Σ_i n_i ‖a_i‖² +
    Σ_j m_j ‖b_j‖²)`, `n_i` / `m_j` the non-zeros of row i / column j (ALS-WR, as
    `org.apache.spark.ml.recommendation.ALS`). Zeros are *missing*, not targets (unlike the
    SVD solver). Factors start as seeded Gaussian rows scaled to unit norm (as Spark); each
    iteration solves the column factors, then the row factors, exactly (batched normal
    equations: the Gram matrices are one sparse × dense product of the indicator of Ω with
    the outer products `b_j b_jᵀ`). Rows / columns without non-zeros get zero factors.

    Args:
        matrix: `(r, c)` scipy sparse (or dense; its non-zeros are Ω).
        k: rank.
        seed: initialization seed.
        regularization: λ (Spark's `regParam`).
        iterations: ALS sweeps (Spark's `maxIter`).

    Returns:
        `(left (r, k) float64, right (k, c) float64)`, `M ≈ left @ right` on Ω.
    """
    if k < 1:
        raise ValueError(f"factors must be >= 1, got {k}")
    if regularization < 0 or iterations < 1:
        raise ValueError("regularization must be >= 0 and iterations >= 1")
    m = sp.csr_matrix(matrix, dtype=np.float64)
    m.eliminate_zeros()
    rng = np.random.default_rng(seed)

    def init(n: int) -> np.ndarray:
        f = rng.standard_normal((n, k))
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    left, right = init(m.shape[0]), init(m.shape[1])
    mt = m.T.tocsr()
    for _ in range(int(iterations)):
        right = _als_half(mt, left, regularization)
        left = _als_half(m, right, regularization)
    return left, np.ascontiguousarray(right.T)


def _als_half(m: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    """Row factors `x_i = (Σ_j∈Ω_i o_j o_jᵀ + λ n_i I)⁻¹ Σ_j∈Ω_i M_ij o_j` of every row."""
    n, k = m.shape[0], other.shape[1]
    ind = m.copy()
    ind.data[:] = 1.0
    counts = np.diff(m.indptr).astype(np.float64)
    outer = np.einsum("jk,jl->jkl", other, other).reshape(other.shape[0], k * k)
    gram = np.asarray(ind @ outer).reshape(n, k, k)
    gram += (reg * counts)[:, None, None] * np.eye(k)[None]
    rhs = np.asarray(m @ other)
    out = np.zeros((n, k))
    has = counts > 0
    out[has] = np.linalg.solve(gram[has], rhs[has][:, :, None])[:, :, 0]
    return out


def mix_candidates(
    p2p_scores: np.ndarray,
    n2p_scores: np.ndarray,
    k: int,
    ratio: float = 0.67,
    exclude: np.ndarray | sp.spmatrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """HI candidate mixing of a p2p and an n2p ranking at a preset ratio.

    Rule (prefix-consistent, so the first k' entries of a list of length k are the list of
    length k'): position t = 1, 2, … is a *p2p slot* iff `⌊ratio·t + ½⌋ > ⌊ratio·(t−1) + ½⌋`,
    else an *n2p slot*; so the first k positions hold exactly `⌊ratio·k + ½⌋` (round half
    up) p2p slots. A slot takes its channel's best-scored item that is not excluded and not
    already in the list (duplicates: an item chosen by one channel is skipped by the other,
    so lists never repeat an item and each slot yields a new item). If the slot's channel
    has no such item left, the slot takes the other channel's next item; if neither has,
    the entry is -1. Ties within a channel go to the lower item index.

    Args:
        p2p_scores: `(B, n)` p2p scores (Eq. 5).
        n2p_scores: `(B, n)` n2p scores (Eq. 9).
        k: list length.
        ratio: p2p share in [0, 1] (0.67 = the paper's 67:33).
        exclude: `(B, n)` bool array or sparse matrix of items never to recommend.

    Returns:
        `(ids (B, k) int64, source (B, k) int8)`: item ids (-1 padded) and which channel
        filled each position (0 p2p, 1 n2p, -1 none).
    """
    p = np.asarray(p2p_scores, dtype=np.float64)
    q = np.asarray(n2p_scores, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"score arrays must share one (B, n) shape, got {p.shape}, {q.shape}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    b, n = p.shape
    taken = np.zeros((b, n), dtype=bool)
    if exclude is not None:
        taken |= exclude.toarray().astype(bool) if sp.issparse(exclude) else np.asarray(exclude)
    orders = (_desc_order(p), _desc_order(q))
    ptrs = [np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)]
    rows = np.arange(b)
    ids = np.full((b, k), -1, dtype=np.int64)
    source = np.full((b, k), -1, dtype=np.int8)
    for t in range(1, k + 1):
        slot = 0 if _round_half_up(ratio * t) > _round_half_up(ratio * (t - 1)) else 1
        for ch in (slot, 1 - slot):
            _advance(orders[ch], ptrs[ch], taken)
        first = ptrs[slot] < n
        chan = np.where(first, slot, 1 - slot)
        ptr = np.where(first, ptrs[slot], ptrs[1 - slot])
        ok = ptr < n
        item = np.where(
            chan == 0,
            orders[0][rows, np.minimum(ptrs[0], n - 1)],
            orders[1][rows, np.minimum(ptrs[1], n - 1)],
        )
        ids[ok, t - 1] = item[ok]
        source[ok, t - 1] = chan[ok]
        taken[rows[ok], item[ok]] = True
    return ids, source


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5 + 1e-12))


def _desc_order(scores: np.ndarray) -> np.ndarray:
    """Row-wise order by descending score, ties by lower index."""
    return np.argsort(-scores, axis=1, kind="stable")


def _advance(order: np.ndarray, ptr: np.ndarray, taken: np.ndarray) -> None:
    """Moves each row's pointer past taken items (in place)."""
    n = order.shape[1]
    rows = np.arange(order.shape[0])
    while True:
        live = ptr < n
        blocked = np.zeros_like(live)
        blocked[live] = taken[rows[live], order[rows[live], ptr[live]]]
        if not blocked.any():
            return
        ptr[blocked] += 1


# ---------------------------------------------------------------------- models


@dataclass(frozen=True, kw_only=True)
class HIFactorConfig(StageConfig):
    """Hyperparameters shared by every HI model (the factorization and the FEEDE threshold).

    Attributes:
        factors: rank k of the factorization (XᵀX ≈ PQ, Eq. 3; YᵀX ≈ RS, Eq. 7;
            H ≈ AB, Eq. 15); the paper: k = 10.
        threshold: rating ≥ threshold is positive feedback (X), else negative (Y).
        seed: solver seed (ARPACK's start vector for "svd", the initial factors for "als").
        solver: "svd" (`truncated_factors`, zeros are targets) or "als" (explicit ALS on the
            non-zeros, Spark's weighted-λ objective: `als_factors`).
        regularization: λ of `solver="als"` (Spark's `regParam`); unused by "svd".
    """

    factors: int = param(10, ge=1)
    threshold: float = 4.0
    seed: int = 0
    solver: Literal["svd", "als"] = "svd"
    regularization: float = param(0.01, ge=0.0)


class _HIBase(Recommender):
    """Shared FEEDE fitting, realtime request API and npz save/load.

    Subclasses set `_factor_names` (the learned dense arrays) and implement `_fit_factors`,
    `_event_vectors(x, y, beta)` → `(B, k)` and `_right()` → `(k, n)`.

    Attributes set by `fit`:
        X_: `(n_users, n_items)` float32 CSR positive matrix of the training users.
        Y_: `(n_users, n_items)` float32 CSR negative matrix, `Y = O − X` (Eq. 6).
    """

    uses_values = True
    supports_history = True
    _factor_names: tuple[str, ...] = ()
    _default_beta = 0.0

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        if data is None:
            coo = matrix.tocoo()
            data = Interactions(
                users=coo.row,
                items=coo.col,
                values=coo.data,
                user_ids=np.arange(matrix.shape[0]),
                item_ids=np.arange(matrix.shape[1]),
            )
        fb = encode_feedback(
            data, mode=getattr(self, "encoding", "threshold"), threshold=self.threshold
        )
        self.X_ = fb.X
        self.Y_ = fb.Y
        self._fit_factors(fb.X, fb.Y)

    def _fit_factors(self, x: sp.csr_matrix, y: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _factorize(self, matrix) -> tuple[np.ndarray, np.ndarray]:
        """`solver="svd"`: `truncated_factors`; `"als"`: `als_factors` (Spark's objective)."""
        if self.solver == "als":
            return als_factors(matrix, self.factors, self.seed, self.regularization)
        return truncated_factors(matrix, self.factors, self.seed)

    def score_rows(self, x, y, beta: float | None = None) -> np.ndarray:
        """Scores of every item for arbitrary (possibly real-valued) request rows.

        The matrix form of Eq. 5 / 9 / 17 for rows built outside `encode_events` (e.g. the
        "rating6" rows `x = r/6`, `y = 1 − x` of a request).

        Args:
            x: `(B, n_items)` positive rows (dense or sparse).
            y: `(B, n_items)` negative rows.
            beta: HI-RT negative weight (None = the model's).

        Returns:
            `(B, n_items)` float32 scores.
        """
        self._check_fitted()
        return (self._event_vectors(x, y, self._beta(beta)) @ self._right()).astype(np.float32)

    def _event_vectors(self, x, y, beta: float) -> np.ndarray:
        raise NotImplementedError

    def _right(self) -> np.ndarray:
        raise NotImplementedError

    def _beta(self, beta: float | None) -> float:
        return float(getattr(self, "beta", self._default_beta) if beta is None else beta)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        vec = self._event_vectors(self.X_[users], self.Y_[users], self._beta(None))
        return (vec @ self._right()).astype(np.float32)

    # -------------------------------------------------------------- realtime requests
    def score_events(self, pos_items, neg_items, beta: float | None = None) -> np.ndarray:
        """Scores of every item for one realtime request (Eq. 5 / Eq. 17).

        The request rows are x = 1 on `pos_items` and y = 1 on `neg_items` (an item in both
        lists counts as positive, repeats count once; `encode_events` semantics).

        Args:
            pos_items: `(P,)` internal indices of the user's recent positive items.
            neg_items: `(N,)` internal indices of the user's recent negative items.
            beta: weight of the negative part (HI-RT); None = the model's `beta`.

        Returns:
            `(n_items,)` float32 scores.
        """
        self._check_fitted()
        pos = _unique_items(pos_items, self.n_items_, "pos_items")
        neg = np.setdiff1d(_unique_items(neg_items, self.n_items_, "neg_items"), pos)
        vec = self._event_sum(pos, neg, self._beta(beta))
        return (vec @ self._right()).astype(np.float32)

    def _event_sum(self, pos: np.ndarray, neg: np.ndarray, beta: float) -> np.ndarray:
        """`(k,)` = x·L1 + β y·L2 from item lists (overridden for speed)."""
        x = np.zeros((1, self.n_items_))
        y = np.zeros((1, self.n_items_))
        x[0, pos] = 1.0
        y[0, neg] = 1.0
        return self._event_vectors(x, y, beta)[0]

    def recommend_events(
        self,
        pos_items,
        neg_items,
        k: int = 10,
        beta: float | None = None,
        exclude_events: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for one realtime request (HI-RT / CF-RT, Eq. 17 / Eq. 5).

        Args:
            pos_items: `(P,)` recent positive items.
            neg_items: `(N,)` recent negative items.
            k: list length.
            beta: negative weight (None = the model's).
            exclude_events: never recommend an item of either list.

        Returns:
            `(ids (k,) int64, scores (k,) float32)`, best first, -1 / -inf padded.
        """
        scores = self.score_events(pos_items, neg_items, beta).astype(np.float64)
        if exclude_events:
            scores[_unique_items(pos_items, self.n_items_, "pos_items")] = -np.inf
            scores[_unique_items(neg_items, self.n_items_, "neg_items")] = -np.inf
        ids, vals = top_k(scores[None, :], k)
        return ids[0], vals[0]

    def score_events_batch(self, pos_lists, neg_lists, beta: float | None = None) -> np.ndarray:
        """Batched `score_events`: `B` requests → `(B, n_items)` float32 scores."""
        self._check_fitted()
        x, y = encode_events_batch(pos_lists, neg_lists, self.n_items_)
        return (self._event_vectors(x, y, self._beta(beta)) @ self._right()).astype(np.float32)

    def recommend_events_batch(
        self,
        pos_lists,
        neg_lists,
        k: int = 10,
        beta: float | None = None,
        exclude_events: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batched `recommend_events`: `(ids (B, k), scores (B, k))`."""
        x, y = encode_events_batch(pos_lists, neg_lists, self.n_items_)
        scores = (self._event_vectors(x, y, self._beta(beta)) @ self._right()).astype(np.float64)
        if exclude_events:
            r, c = (x + y).nonzero()
            scores[r, c] = -np.inf
        return top_k(scores, k)

    # -------------------------------------------------------------- Query entry point
    def _score_history(self, query) -> np.ndarray:
        """Fresh requests (Eq. 5 / 17): x = 1 on `query.history`, y = 1 on its negatives."""
        x, y = _query_rows(query, self.n_items_)
        return (self._event_vectors(x, y, self._beta(None)) @ self._right()).astype(np.float32)


def _query_rows(query, n_items: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """HI request rows of a `Query`: x on the history, y on the negatives not in x."""
    x = query.history_matrix(n_items)
    x.data[:] = 1.0
    y = query.history_matrix(n_items, negatives=True)
    y = (y - y.multiply(x > 0)).tocsr()
    y.eliminate_zeros()
    return x.astype(np.float64), y.astype(np.float64)


def load_model(path: str | Path) -> _HIBase:
    """Reads an HI model written by `save` (`divrec.load`, checked to be an HI model)."""
    return _HIBase.load(path)


def _unique_items(items, n_items: int, what: str) -> np.ndarray:
    idx = np.unique(np.asarray(items, dtype=np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= n_items):
        raise ValueError(f"{what}: item index outside [0, {n_items})")
    return idx


@dataclass(frozen=True, kw_only=True)
class P2PConfig(HIFactorConfig):
    """`P2PRecommender` hyperparameters: `HIFactorConfig` and the FEEDE encoding.

    Attributes:
        encoding: FEEDE mode of `encode_feedback`: "threshold" (binary, default) or
            "rating6" (`x = r/6`, `y = 1 − x` on every rated cell; text under Eq. 6).
    """

    encoding: Literal["threshold", "rating6"] = "threshold"


class P2PRecommender(_HIBase):
    """p2p CF by MF of XᵀX (Eq. 3–5): CF-MF as a batch model, CF-RT on realtime requests.

    Attributes:
        P_: `(n_items, k)` float64, `P = U Σ` of XᵀX (Eq. 3).
        Q_: `(k, n_items)` float64, `Q = Vᵀ`; C = PQ (Eq. 4) is never materialized.
    """

    Config = P2PConfig
    _factor_names = ("P_", "Q_")

    def _fit_factors(self, x, y) -> None:
        self.P_, self.Q_ = self._factorize((x.T @ x).tocsr())

    def _event_vectors(self, x, y, beta: float) -> np.ndarray:
        return np.asarray(x @ self.P_)

    def _event_sum(self, pos, neg, beta):
        return self.P_[pos].sum(axis=0)

    def _right(self) -> np.ndarray:
        return self.Q_

    def item_similarity(self) -> tuple[np.ndarray, np.ndarray]:
        """`(P (n, k), Q (k, n))` with C = PQ, the p2p item–item similarity (Eq. 4)."""
        return self.P_, self.Q_

    def normalized_similarity(self) -> tuple[np.ndarray, np.ndarray]:
        """Factors of the cosine-normalized C: `S_ij = C_ij / sqrt(C_ii C_jj)`.

        Used as `Similarity(i, j)` of the paper's diversity metric so that
        `1 − S ∈ [0, 2]` is scale-free; items with `C_ii ≤ 0` (no positive feedback) get
        similarity 0 to every item.

        Returns:
            `(P' (n, k), Q' (k, n))` with `S = P' Q'`.
        """
        diag = np.einsum("ik,ki->i", self.P_, self.Q_)
        inv = np.where(diag > 1e-12, 1.0 / np.sqrt(np.maximum(diag, 1e-12)), 0.0)
        return self.P_ * inv[:, None], self.Q_ * inv[None, :]


@dataclass(frozen=True, kw_only=True)
class N2PConfig(P2PConfig):
    """`N2PRecommender` hyperparameters: those of `P2PConfig` (rank k of YᵀX ≈ RS, Eq. 7)."""


class N2PRecommender(_HIBase):
    """n2p inference by MF of YᵀX (Eq. 7–9): scores YD with D = RS.

    Attributes:
        R_: `(n_items, k)` float64, `R = U Σ` of YᵀX (Eq. 7).
        S_: `(k, n_items)` float64, `S = Vᵀ`; D = RS (Eq. 8).
    """

    Config = N2PConfig
    _factor_names = ("R_", "S_")

    def _fit_factors(self, x, y) -> None:
        self.R_, self.S_ = self._factorize((y.T @ x).tocsr())

    def _event_vectors(self, x, y, beta: float) -> np.ndarray:
        return np.asarray(y @ self.R_)

    def _event_sum(self, pos, neg, beta):
        return self.R_[neg].sum(axis=0)

    def _right(self) -> np.ndarray:
        return self.S_

    def score_events(self, pos_items, neg_items, beta: float | None = None) -> np.ndarray:
        """n2p scores y·D of one request (Eq. 9); `beta` is ignored."""
        return super().score_events(pos_items, neg_items, 1.0)


@dataclass(frozen=True, kw_only=True)
class HIConfig(HIFactorConfig):
    """`HIRecommender` hyperparameters: `HIFactorConfig` (rank k of both factorizations) and
    the candidate mixing.

    Attributes:
        ratio: p2p share of the candidates, in [0, 1] (0.67 = the paper's p2p:n2p = 67:33).
        depth: how many positions `score_all` mixes.
    """

    ratio: float = param(0.67, ge=0.0, le=1.0)
    depth: int = param(100, ge=1)


class HIRecommender(_HIBase):
    """HI candidate generation: p2p (Eq. 3–5) and n2p (Eq. 7–9) lists mixed at `ratio`.

    `recommend(users, k)` returns the `mix_candidates` list: exactly `⌊ratio·k + ½⌋` p2p
    items (p2p:n2p = 67:33 by default, the paper's HI-NN setting), items seen in training
    excluded. `score_all` encodes that mixed order as a score (0, −1, −2, … for the first
    `depth` mixed positions, then the p2p order below), so any k ≤ `depth` gives the mix;
    with `exclude_seen=False` or explicit `candidates` the ratio is not guaranteed.
    `solver` applies to the p2p factorization; the n2p factors are always the truncated SVD.

    Attributes:
        P_, Q_: p2p factors (Eq. 3). R_, S_: n2p factors (Eq. 7).
    """

    Config = HIConfig
    _factor_names = ("P_", "Q_", "R_", "S_")

    def _fit_factors(self, x, y) -> None:
        self.P_, self.Q_ = self._factorize((x.T @ x).tocsr())
        self.R_, self.S_ = truncated_factors((y.T @ x).tocsr(), self.factors, self.seed)

    def channel_scores(self, users) -> tuple[np.ndarray, np.ndarray]:
        """`(p2p (B, n) = X C, n2p (B, n) = Y D)` for training users (Eq. 5, 9)."""
        users = self._check_users(users)
        p2p = np.asarray(self.X_[users] @ self.P_) @ self.Q_
        n2p = np.asarray(self.Y_[users] @ self.R_) @ self.S_
        return p2p, n2p

    #: scores are positions of the mixed list, not a per-item scorer (no AUC)
    has_scorer = False

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        p2p, n2p = self.channel_scores(users)
        seen = self.user_items_[users].toarray().astype(bool)
        return self._mixed_scores(p2p, n2p, seen)

    def _score_history(self, query) -> np.ndarray:
        x, y = _query_rows(query, self.n_items_)
        p2p = np.asarray(x @ self.P_) @ self.Q_
        n2p = np.asarray(y @ self.R_) @ self.S_
        seen = (x + y).toarray() > 0 if query.exclude_seen else np.zeros(p2p.shape, bool)
        return self._mixed_scores(p2p, n2p, seen)

    def _mixed_scores(self, p2p, n2p, seen) -> np.ndarray:
        b, n = p2p.shape
        depth = min(self.depth, n)
        ids, _ = mix_candidates(p2p, n2p, depth, self.ratio, exclude=seen)
        p2p_rank = np.empty((b, n), dtype=np.float64)
        np.put_along_axis(p2p_rank, _desc_order(p2p), np.arange(n, dtype=np.float64)[None], 1)
        out = -(depth + p2p_rank) - np.where(seen, n, 0)
        rows, pos = np.nonzero(ids >= 0)
        out[rows, ids[rows, pos]] = -pos.astype(np.float64)
        return out.astype(np.float32)

    def recommend_events(self, pos_items, neg_items, k=10, beta=None, exclude_events=True):
        """Mixed top-k for one realtime request (x·C and y·D lists, `mix_candidates`)."""
        ids, src = self.recommend_events_batch([pos_items], [neg_items], k, beta, exclude_events)
        return ids[0], src[0]

    def recommend_events_batch(self, pos_lists, neg_lists, k=10, beta=None, exclude_events=True):
        """Mixed top-k per request: `(ids (B, k), source (B, k))` as in `mix_candidates`."""
        self._check_fitted()
        x, y = encode_events_batch(pos_lists, neg_lists, self.n_items_)
        p2p = np.asarray(x @ self.P_) @ self.Q_
        n2p = np.asarray(y @ self.R_) @ self.S_
        excl = (x + y).toarray() > 0 if exclude_events else None
        return mix_candidates(p2p, n2p, k, self.ratio, exclude=excl)

    def score_events(self, pos_items, neg_items, beta=None):
        raise NotImplementedError("HIRecommender mixes two lists; use recommend_events")

    def score_events_batch(self, pos_lists, neg_lists, beta=None):
        raise NotImplementedError("HIRecommender mixes two lists; use recommend_events_batch")


@dataclass(frozen=True, kw_only=True)
class HIRealtimeConfig(P2PConfig):
    """`HIRealtime` hyperparameters: `P2PConfig` (k is the rank of H ≈ AB, Eq. 15) and:

    Attributes:
        beta: weight β of the negative part in Eq. 17.
        block_norm: an option *not stated in the paper* (off by default): divide each block
            of H by its Frobenius norm, `H = [XᵀX/‖XᵀX‖_F ; YᵀX/‖YᵀX‖_F]`, so that the
            n2p block is not drowned by the larger p2p block in the rank-k SVD. Scores are
            then on the normalized scale.
    """

    beta: float = 1.0
    block_norm: bool = False


class HIRealtime(_HIBase):
    """HI-RT (Eq. 14–17): H = [XᵀX; YᵀX] ≈ AB, request scores [x, βy] AB.

    With `A = [A1; A2]` (the p2p and n2p halves, each `(n, k)`), a request with rows x, y
    scores `(x A1 + β y A2) B`, O(|events|·k + k·n) per request. `score_all(users)` is the
    same formula on the training rows X_[u], Y_[u] (the matrix form of Eq. 17).

    Attributes:
        A_: `(2 n_items, k)` float64, `A = U Σ` of H (Eq. 15).
        B_: `(k, n_items)` float64, `B = Vᵀ`.
    """

    Config = HIRealtimeConfig
    _factor_names = ("A_", "B_")

    def _fit_factors(self, x, y) -> None:
        xtx, ytx = (x.T @ x).tocsr(), (y.T @ x).tocsr()
        if self.block_norm:  # not in the paper: equal Frobenius norm for both blocks
            xtx = xtx / max(sp.linalg.norm(xtx), 1e-300)
            ytx = ytx / max(sp.linalg.norm(ytx), 1e-300)
        h = sp.vstack([xtx, ytx]).tocsr()  # Eq. 14
        self.A_, self.B_ = self._factorize(h)

    def _event_vectors(self, x, y, beta: float) -> np.ndarray:
        n = self.n_items_
        return np.asarray(x @ self.A_[:n]) + beta * np.asarray(y @ self.A_[n:])

    def _event_sum(self, pos, neg, beta):
        n = self.n_items_
        return self.A_[pos].sum(axis=0) + beta * self.A_[n + neg].sum(axis=0)

    def _right(self) -> np.ndarray:
        return self.B_

    def h_prime(self) -> np.ndarray:
        """The dense `(2n, n)` smoothed H' = AB (Eq. 16); for small problems and tests."""
        return self.A_ @ self.B_
