"""The recommender protocol shared by every model in divrec.

Models follow the scikit-learn rule (the constructor only stores hyperparameters, `fit`
returns self, learned attributes end in `_`) and the batch-first `implicit` API:
`recommend(users, k) -> (item ids (B, k), scores (B, k))` over internal indices.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions, as_csr


class NotFittedError(RuntimeError):
    """A model was used before `fit`."""


class Recommender:
    """Base class: subclasses implement `_fit` and `_score_all` (or `score`).

    Attributes set by `fit`:
        user_items_: `(n_users, n_items)` binary CSR training matrix.
        n_users_, n_items_: the universe size.
    """

    #: whether `fit` should see rating values (True) or a binary matrix (False)
    uses_values: bool = False

    def fit(self, train: Interactions | sp.spmatrix) -> Recommender:
        """Fits the model on a training log or a user×item sparse matrix; returns self."""
        matrix = as_csr(train, binary=not self.uses_values)
        if matrix.nnz == 0:
            raise ValueError("cannot fit on a training set with no interactions")
        self.user_items_ = as_csr(train, binary=True) if self.uses_values else matrix
        self.n_users_, self.n_items_ = matrix.shape
        self._fit(matrix, train if isinstance(train, Interactions) else None)
        return self

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        raise NotImplementedError

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        """`(B,)` users → `(B, n_items)` float32 scores."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def score_all(self, users) -> np.ndarray:
        """Scores of every item for a batch of users.

        Args:
            users: `(B,)` internal user indices.

        Returns:
            `(B, n_items)` float32 scores (higher is better).
        """
        users = self._check_users(users)
        return np.asarray(self._score_all(users), dtype=np.float32)

    def score(self, users, items) -> np.ndarray:
        """Scores of given items for a batch of users.

        Args:
            users: `(B,)` internal user indices.
            items: `(B, C)` internal item indices (or `(C,)`, shared by all users).

        Returns:
            `(B, C)` float32 scores.
        """
        users = self._check_users(users)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim == 1:
            items = np.broadcast_to(items, (users.shape[0], items.shape[0]))
        if items.shape[0] != users.shape[0]:
            raise ValueError(f"items has {items.shape[0]} rows for {users.shape[0]} users")
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValueError(f"item index out of range [0, {self.n_items_})")
        return np.take_along_axis(self.score_all(users), items, axis=1)

    def recommend(
        self,
        users,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for a batch of users.

        Args:
            users: `(B,)` internal user indices.
            k: list length.
            exclude_seen: drop items the user interacted with in training.
            candidates: optional `(B, C)` item indices to choose from (e.g. a retrieval
                stage's output); -1 entries are ignored.

        Returns:
            `(ids (B, k) int64, scores (B, k) float32)`, best first. When fewer than k
            items are eligible, the tail is padded with id -1 and score -inf.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        users = self._check_users(users)
        if candidates is None:
            scores = self.score_all(users).copy()
            if exclude_seen:
                rows = self.user_items_[users]
                r, c = rows.nonzero()
                scores[r, c] = -np.inf
            ids = None
        else:
            ids = np.asarray(candidates, dtype=np.int64)
            valid = ids >= 0
            scores = self.score(users, np.where(valid, ids, 0)).copy()
            scores[~valid] = -np.inf
            if exclude_seen:
                seen = _is_seen(self.user_items_, users, np.where(valid, ids, 0))
                scores[seen] = -np.inf
        top, top_scores = top_k(scores, k)
        if ids is not None:
            top = np.where(top >= 0, np.take_along_axis(ids, np.maximum(top, 0), axis=1), -1)
        return top, top_scores

    # ------------------------------------------------------------------ helpers
    def _check_users(self, users) -> np.ndarray:
        if not hasattr(self, "user_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if users.ndim != 1:
            raise ValueError(f"users must be 1-D, got shape {users.shape}")
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise ValueError(f"user index out of range [0, {self.n_users_})")
        return users

    def get_params(self) -> dict:
        """Constructor hyperparameters (scikit-learn style)."""
        import inspect

        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self" and hasattr(self, n)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a score matrix, best first; -inf entries become id -1.

    Ties are broken by the lower column index (a stable, deterministic order).

    Args:
        scores: `(B, N)` scores.
        k: how many to keep (clipped to N).

    Returns:
        `(ids (B, k), scores (B, k))`, padded with -1 / -inf when k > N.
    """
    b, n = scores.shape
    kk = min(k, n)
    if kk < n:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), (b, n)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(part_scores, order, axis=1)
    if kk < n:
        # argpartition may cut through a tie at the k-th score: re-resolve by lowest index.
        # (Compare in the input dtype: a float32-rounded k-th score misses float64 ties.)
        ids, vals = _fix_boundary_ties(scores, ids, vals)
    ids = np.where(np.isneginf(vals), -1, ids)
    vals = vals.astype(np.float32)
    if k > n:
        ids = np.pad(ids, ((0, 0), (0, k - n)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - n)), constant_values=-np.inf)
    return ids, vals


def _fix_boundary_ties(scores, ids, vals):
    kth = vals[:, -1:]
    n_above = (scores > kth).sum(axis=1)
    n_tied_needed = ids.shape[1] - n_above
    tied_total = (scores == kth).sum(axis=1)
    rows = np.flatnonzero(tied_total > n_tied_needed)
    for r in rows:  # rare: only rows where the boundary tie is split
        above = np.flatnonzero(scores[r] > kth[r, 0])
        tied = np.flatnonzero(scores[r] == kth[r, 0])[: n_tied_needed[r]]
        cols = np.r_[above, tied]
        order = np.lexsort((cols, -scores[r, cols]))
        ids[r] = cols[order]
        vals[r] = scores[r, cols[order]]
    return ids, vals


def _is_seen(user_items: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """`(B, C)` bool: whether user b interacted with items[b, c] in training."""
    rows = user_items[users].tocsr()
    rows.sort_indices()
    n = np.int64(user_items.shape[1])
    r = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
    seen_keys = r * n + rows.indices  # sorted: row-major with sorted column indices
    if seen_keys.size == 0:
        return np.zeros(items.shape, dtype=bool)
    query = np.arange(items.shape[0], dtype=np.int64)[:, None] * n + items
    pos = np.minimum(np.searchsorted(seen_keys, query), seen_keys.size - 1)
    return seen_keys[pos] == query
