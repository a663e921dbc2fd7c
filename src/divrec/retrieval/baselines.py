"""Accuracy baselines every paper compares against: Random, Popularity, ItemKNN, iALS, BPR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from divrec.data.interactions import Interactions
from divrec.hashing import splitmix64
from divrec.retrieval.base import Recommender
from divrec.stage import StageConfig, param
from divrec.threads import resolve_threads


@dataclass(frozen=True, kw_only=True)
class RandomConfig(StageConfig):
    """`RandomRecommender` hyperparameters.

    Attributes:
        seed: the hash key of the random scores.
    """

    seed: int = 0


class RandomRecommender(Recommender):
    """Uniformly random scores, reproducible per (seed, user, item).

    The score of (u, i) is a splitmix64 hash of (seed, u, i) mapped to [0, 1), so repeated
    calls and any batching give the same ranking without storing a score table. An
    anonymous request (user −1) is keyed by a hash of its history's items in order (the
    −1 padding skipped), so different histories get independent random orders and the same
    history the same one, whatever the batch; an empty history gets one shared order.
    """

    Config = RandomConfig
    supports_history = True

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        pass

    def _score_history(self, query) -> np.ndarray:
        users = query.users.astype(np.uint64)
        anon = query.users < 0
        if anon.any():
            users[anon] = _history_keys(np.asarray(query.history)[anon])
        return self._score_all(users)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        items = np.arange(self.n_items_, dtype=np.uint64)
        key = (users.astype(np.uint64)[:, None] << np.uint64(32)) ^ items[None, :]
        return (splitmix64(key ^ splitmix64(np.uint64(self.seed))) >> np.uint64(40)).astype(
            np.float32
        ) / np.float32(1 << 24)


def _history_keys(history: np.ndarray) -> np.ndarray:
    """`(B,)` 32-bit keys of `(B, L)` histories: a splitmix64 chain over the items in order,
    −1 padding skipped; a row without items gets 2**32 − 1."""
    h = np.full(history.shape[0], 0x5EED, dtype=np.uint64)
    for col in history.T:
        ok = col >= 0
        h[ok] = splitmix64(h[ok] ^ (col[ok].astype(np.uint64) + np.uint64(1)))
    keys = h >> np.uint64(32)
    keys[~(history >= 0).any(axis=1)] = np.uint64(2**32 - 1)
    return keys


class PopularityRecommender(Recommender):
    """Scores every item by the number of distinct training users who interacted with it.

    Attributes:
        popularity_: `(n_items,)` float32 user counts.
    """

    supports_history = True

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        self.popularity_ = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()

    def _score_history(self, query) -> np.ndarray:
        return self._score_all(query.users)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (users.shape[0], self.n_items_))


@dataclass(frozen=True, kw_only=True)
class ItemKNNConfig(StageConfig):
    """`ItemKNNRecommender` hyperparameters.

    Attributes:
        neighbors: similar items kept per item.
        shrink: added to the cosine's denominator (damps pairs seen by few users).
        block: items per block of the similarity computation (memory, not results).
    """

    neighbors: int = param(100, ge=1)
    shrink: float = param(0.0, ge=0.0)
    block: int = param(2048, ge=1)


class ItemKNNRecommender(Recommender):
    """Item-based k-nearest-neighbour CF with cosine similarity (Sarwar et al. 2001).

    sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink); only the `neighbors` most
    similar items of each item are kept; score(u, j) = Σ_{i ∈ I_u} sim(i, j).

    Attributes:
        similarity_: `(n_items, n_items)` sparse CSR; row i holds i's kept neighbours.
    """

    Config = ItemKNNConfig

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        item_users = matrix.T.tocsr()
        norms = np.sqrt(np.asarray(item_users.sum(axis=1)).ravel())
        n = item_users.shape[0]
        keep = min(self.neighbors, n - 1) if n > 1 else 0
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            co = (item_users[start:stop] @ item_users.T).toarray()
            denom = norms[start:stop, None] * norms[None, :] + self.shrink
            sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if keep == 0:
                continue
            idx = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
            rows.append(np.repeat(np.arange(start, stop), keep))
            cols.append(idx.ravel())
            vals.append(np.take_along_axis(sim, idx, axis=1).ravel())
        if rows:
            sim = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n, n),
                dtype=np.float32,
            )
            sim.eliminate_zeros()
        else:
            sim = sp.csr_matrix((n, n), dtype=np.float32)
        self.similarity_ = sim

    supports_history = True

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return (self.user_items_[users] @ self.similarity_).toarray()

    def _score_history(self, query) -> np.ndarray:
        x = query.history_matrix(self.n_items_)
        x.data[:] = 1.0
        return (x @ self.similarity_).toarray()


class FactorRecommender(Recommender):
    """A model that scores by a dot product of user and item factors.

    Attributes:
        user_factors_: `(n_users, d)` float32.
        item_factors_: `(n_items, d)` float32.
    """

    supports_history = True
    #: confidence weight α of the fold-in (iALS: c = 1 + α r) and its ridge λ
    _foldin_alpha: float = 0.0
    _foldin_reg: float = 0.1

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T

    def _score_history(self, query) -> np.ndarray:
        return self.fold_in(query) @ self.item_factors_.T

    def fold_in(self, query) -> np.ndarray:
        """`(B, d)` user factors of fresh histories by one ALS half-step (Hu et al. 2008).

        With item factors Q fixed, u = argmin Σ_i c_i (p_i − u·q_i)² + λ‖u‖² over all items,
        p_i = 1 and c_i = 1 + α r_i on the history, p_i = 0 and c_i = 1 elsewhere:
        (QᵀQ + Q_hᵀ (C_h − I) Q_h + λ I) u = Q_hᵀ C_h 1 (exact, as implicit's
        `recalculate_user`). An empty history gives the zero vector.
        """
        gram = self._foldin_gram()
        x = query.history_matrix(self.n_items_)
        out = np.zeros((len(query), gram.shape[0]), dtype=np.float64)
        # one small system per request: padding the batch to its longest history costs more
        # than the loop (histories are skewed). The history's rank-L update is summed in
        # float32 (the factors' own precision; half the time of float64), the system solved
        # in float64.
        rows = np.flatnonzero(np.diff(x.indptr))
        if rows.size == 0:
            return out.astype(np.float32)
        a = np.empty((rows.size, *gram.shape))
        rhs = np.empty((rows.size, gram.shape[0], 1))
        for j, b in enumerate(rows.tolist()):
            lo, hi = x.indptr[b], x.indptr[b + 1]
            conf = 1.0 + self._foldin_alpha * x.data[lo:hi]
            qh = self.item_factors_[x.indices[lo:hi]]
            a[j] = gram + (qh * (conf - 1.0)[:, None]).T @ qh
            rhs[j, :, 0] = qh.T.astype(np.float64) @ conf.astype(np.float64)
        out[rows] = np.linalg.solve(a, rhs)[..., 0]  # one LAPACK call for the batch
        return out.astype(np.float32)

    def _foldin_gram(self) -> np.ndarray:
        """QᵀQ + λI in float64, cached (not saved) until `item_factors_` or λ change."""
        cache = getattr(self, "_gram_cache", None)
        reg = self._foldin_reg
        if cache is None or cache[0] is not self.item_factors_ or cache[1] != reg:
            q = self.item_factors_.astype(np.float64)
            cache = (self.item_factors_, reg, q.T @ q + reg * np.eye(q.shape[1]))
            self._gram_cache = cache
        return cache[2]

    def item_vectors(self) -> np.ndarray:
        """`(n_items, d)` item embeddings (for diversity metrics and re-ranking)."""
        return self.item_factors_

    def user_vectors(self) -> np.ndarray:
        """`(n_users, d)` user embeddings (e.g. the interest vector of interest-aware MMR)."""
        return self.user_factors_


@dataclass(frozen=True, kw_only=True)
class ALSConfig(StageConfig):
    """`ALSRecommender` hyperparameters (implicit's `AlternatingLeastSquares`).

    Attributes:
        factors: latent dimension d.
        regularization: L2 weight λ of the least-squares objective (also the fold-in ridge).
        alpha: confidence weight α, c_ui = 1 + α r_ui (Hu et al. 2008).
        iterations: ALS sweeps.
        seed: implicit's `random_state` (factor initialization).
        threads: implicit's threads; None takes the `divrec.threads` policy
            (``DIVREC_THREADS`` or 1), 0 means every available core.
    """

    factors: int = param(64, ge=1)
    regularization: float = param(0.1, ge=0.0)
    alpha: float = param(5.0, ge=0.0)
    iterations: int = param(15, ge=1)
    seed: int = 0
    threads: int | None = param(None, ge=0)


class ALSRecommender(FactorRecommender):
    """Implicit-feedback matrix factorization (iALS, Hu, Koren & Volinsky 2008) via `implicit`.

    Confidence c_ui = 1 + alpha · r_ui on the binary (or value) matrix; weighted least squares
    with L2 regularization, solved by `implicit.cpu.als.AlternatingLeastSquares` (conjugate
    gradient). BLAS is held to one thread while implicit runs its own threads.
    """

    Config = ALSConfig

    @property
    def _foldin_alpha(self) -> float:  # type: ignore[override]
        return float(self.alpha)

    @property
    def _foldin_reg(self) -> float:  # type: ignore[override]
        return float(self.regularization)

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        from divrec._extras import require

        AlternatingLeastSquares = require("implicit.cpu.als", what="iALS").AlternatingLeastSquares

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=resolve_threads(self.threads),
                calculate_training_loss=False,
            )
            model.fit(matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class BPRConfig(StageConfig):
    """`BPRRecommender` hyperparameters (implicit's `BayesianPersonalizedRanking`).

    Attributes:
        factors: latent dimension d (implicit appends an item-bias column: d + 1 learned).
        learning_rate: SGD step size.
        regularization: L2 weight of the factors.
        iterations: SGD epochs over the training pairs.
        seed: implicit's `random_state` (initialization and sampling).
        threads: implicit's threads; the default of 1 keeps the seed meaningful (see the
            class), None takes the `divrec.threads` policy, 0 means every available core.
    """

    factors: int = param(64, ge=1)
    learning_rate: float = param(0.05, gt=0.0)
    regularization: float = param(0.01, ge=0.0)
    iterations: int = param(100, ge=1)
    seed: int = 0
    threads: int | None = param(1, ge=0)


class BPRRecommender(FactorRecommender):
    """Bayesian personalized ranking MF (Rendle et al. 2009) via `implicit`.

    implicit's BPR updates factors lock-free from several threads (Hogwild), which makes a
    multi-threaded fit irreproducible; the default of one thread keeps the seed meaningful.
    """

    Config = BPRConfig

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        from divrec._extras import require

        BayesianPersonalizedRanking = require(
            "implicit.cpu.bpr", what="BPR"
        ).BayesianPersonalizedRanking

        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=resolve_threads(self.threads),
            )
            model.fit(matrix, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
