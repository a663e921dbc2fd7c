"""SLIM: sparse linear item-item model, one ElasticNet regression per item.

Ning & Karypis (2011), in the ElasticNet form of Dacrema et al. (2021, "A troubling
analysis of reproducibility and progress in recommender systems research", SLIM ElasticNet
baseline): for each item j, with X the binary user×item training matrix,

    w_j = argmin_{w ≥ 0, w_j = 0}  1/(2|U|) ||x_j − X w||² + α ρ ||w||₁ + α (1 − ρ)/2 ||w||²,

(scikit-learn's `ElasticNet` objective, `alpha` = α, `l1_ratio` = ρ, `positive=True`), the
constraint w_j = 0 imposed by zeroing column j of X during item j's fit. Each column keeps
its `top_k` largest weights; the score of user u is `x_u W`. A history (`Query.history`)
scores the same way with its item row, so the model answers anonymous users too.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.retrieval.base import Recommender
from divrec.stage import StageConfig, param

__all__ = ["SLIMConfig", "SLIMRecommender"]


@dataclass(frozen=True, kw_only=True)
class SLIMConfig(StageConfig):
    """`SLIMRecommender` hyperparameters (scikit-learn's `ElasticNet` objective above).

    Attributes:
        alpha: ElasticNet α (overall regularization strength), > 0.
        l1_ratio: ElasticNet ρ (share of the L1 penalty), in [0, 1].
        top_k: weights kept per item column (the largest).
        max_iter: coordinate-descent epochs per item.
        tol: coordinate-descent tolerance.
        time_budget: seconds after which the remaining items are not fitted (their columns
            stay zero and `n_fitted_` says how many were); None: no limit.
        seed: seed of the random coordinate selection.
        progress: show a progress bar.
    """

    alpha: float = param(1e-3, gt=0.0)
    l1_ratio: float = param(0.1, ge=0.0, le=1.0)
    top_k: int = param(100, ge=1)
    max_iter: int = param(100, ge=1)
    tol: float = param(1e-4, ge=0.0)
    time_budget: float | None = param(None, gt=0.0)
    seed: int = 0
    progress: bool = False


class SLIMRecommender(Recommender):
    """SLIM ElasticNet (Ning & Karypis 2011; Dacrema et al. 2021's configuration).

    Attributes:
        weights_: `(n_items, n_items)` CSR item-item weights W (column j: item j's model).
        fit_seconds_: wall time of the regressions.
        n_fitted_: items whose regression ran (all of them unless the budget ran out).
    """

    Config = SLIMConfig
    supports_history = True

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        from rich.progress import Progress
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import ElasticNet

        x = sp.csc_matrix(matrix, dtype=np.float64, copy=True)
        x.sort_indices()
        n_items = x.shape[1]
        model = ElasticNet(
            alpha=self.alpha,
            l1_ratio=self.l1_ratio,
            positive=True,
            fit_intercept=False,
            copy_X=False,
            precompute=False,
            selection="random",
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.seed,
        )
        rows, cols, vals = [], [], []
        t0 = time.perf_counter()
        fitted = 0
        with Progress(disable=not self.progress, transient=True) as bar:
            task = bar.add_task("SLIM", total=n_items)
            for j in range(n_items):
                if self.time_budget is not None and time.perf_counter() - t0 > self.time_budget:
                    break
                start, stop = x.indptr[j], x.indptr[j + 1]
                fitted += 1
                bar.advance(task)
                if start == stop:
                    continue
                y = np.zeros(x.shape[0])
                y[x.indices[start:stop]] = x.data[start:stop]
                saved = x.data[start:stop].copy()
                x.data[start:stop] = 0.0  # w_j = 0: item j cannot explain itself
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(x, y)
                x.data[start:stop] = saved
                coef = np.asarray(model.coef_)
                nz = np.flatnonzero(coef > 0)
                if nz.size > self.top_k:
                    nz = nz[np.argpartition(-coef[nz], self.top_k - 1)[: self.top_k]]
                rows.append(nz)
                cols.append(np.full(nz.size, j))
                vals.append(coef[nz])
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_fitted_ = fitted
        if rows:
            w = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n_items, n_items),
                dtype=np.float32,
            )
        else:
            w = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        self.weights_ = w

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return (self.user_items_[users] @ self.weights_).toarray()

    def _score_history(self, query) -> np.ndarray:
        return (query.history_matrix(self.n_items_) @ self.weights_).toarray()
