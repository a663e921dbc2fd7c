"""The recommender protocol shared by every model in divrec.

Models follow the scikit-learn rule (the constructor only stores hyperparameters, `fit`
returns self, learned attributes end in `_`) and the batch-first `implicit` API:
`recommend(users, k) -> (item ids (B, k), scores (B, k))` over internal indices.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions, as_csr
from divrec.data.query import Candidates, Query, check_user_array
from divrec.persist import Persistable
from divrec.stage import Configured, NotFittedError, StageConfig, check_k

__all__ = ["NotFittedError", "Recommender", "StageConfig", "check_list_length", "top_k"]


class Recommender(Configured, Persistable):
    """Base class: subclasses implement `_fit` and `_score_all` (or `score`).

    A recommender is a pipeline stage: `model(query, candidates=None, k)` retrieves the top
    `k` of the catalogue for each request (`candidates` None) or scores and sorts the
    candidates it is given (ranking). `recommend(users, k)` is the same call on plain user
    indices. Models that can answer a fresh history (`Query.history`: HI-RT's event lists,
    the two-tower history tower, HI-NN's cold start, item-kNN and the factor models'
    fold-in) set `supports_history` and implement `_score_history`.

    Attributes set by `fit`:
        user_items_: `(n_users, n_items)` binary CSR training matrix.
        n_users_, n_items_: the universe size.
    """

    #: whether `fit` should see rating values (True) or a binary matrix (False)
    uses_values: bool = False
    #: whether `score` gives meaningful per-item scores (AUC is only reported for scorers)
    has_scorer: bool = True
    #: whether the model answers `Query.history` (fresh histories, anonymous users)
    supports_history: bool = False

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

    def _score_history(self, query: Query) -> np.ndarray:
        """`(B, n_items)` scores of fresh histories (`query.history` is set)."""
        raise ValueError(f"{type(self).__name__} cannot answer a fresh history (Query.history)")

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

    def score_query(self, query: Query) -> np.ndarray:
        """`(B, n_items)` float32 scores of every item for each request of `query`."""
        if query.history is None:
            return self.score_all(query.users)
        self._check_fitted()
        if not self.supports_history:
            raise ValueError(f"{type(self).__name__} cannot answer a fresh history (Query.history)")
        if query.history.size and query.history.max() >= self.n_items_:
            raise ValueError(f"history: item index out of range [0, {self.n_items_})")
        known = query.users[query.users >= 0]
        if known.size and known.max() >= self.n_users_:
            raise ValueError(f"user index out of range [0, {self.n_users_})")
        return np.asarray(self._score_history(query), dtype=np.float32)

    def score(self, users, items) -> np.ndarray:
        """Scores of given items for a batch of users.

        Args:
            users: `(B,)` internal user indices (or a `Query`).
            items: `(B, C)` internal item indices (or `(C,)`, shared by all users).

        Returns:
            `(B, C)` float32 scores.
        """
        query = Query.of(users) if isinstance(users, Query) else None
        users = query.users if query is not None else self._check_users(users)
        items = np.asarray(items)
        if items.size and (items.dtype == bool or not np.issubdtype(items.dtype, np.integer)):
            raise ValueError(f"items must be integer indices, got dtype {items.dtype}")
        items = items.astype(np.int64, copy=False)
        if items.ndim == 1:
            items = np.broadcast_to(items, (users.shape[0], items.shape[0]))
        if items.shape[0] != users.shape[0]:
            raise ValueError(f"items has {items.shape[0]} rows for {users.shape[0]} users")
        self._check_fitted()
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValueError(f"item index out of range [0, {self.n_items_})")
        if query is None:
            query = Query(users=users)
        return np.asarray(self._score_items(query, items), dtype=np.float32)

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        """`(B, C)` scores of `items` (valid indices); override when cheaper than all items."""
        return np.take_along_axis(self.score_query(query), items, axis=1)

    def __call__(
        self, query: Query, candidates: Candidates | None = None, k: int | None = None
    ) -> Candidates:
        """The stage call: retrieval (no `candidates`) or ranking of the given candidates.

        Args:
            query: the requests (`Query`).
            candidates: `(B, N)` candidates to score and sort, or None to retrieve from the
                whole catalogue.
            k: how many to return (retrieval: required; ranking: None keeps all N).

        Returns:
            `Candidates` sorted by decreasing score (ties: the lower item index for
            retrieval, the earlier position for ranking), excluded and padding entries
            last as −1 / −inf.
        """
        if not isinstance(query, Query):
            raise TypeError(f"query must be a Query, got {type(query).__name__}")
        if candidates is None:
            k = check_list_length(k)
            scores = self.score_query(query).copy()
            self._mask_excluded(query, scores, None)
            ids, top_scores = top_k(scores, k)
            return Candidates(ids, top_scores)
        if len(candidates) != len(query):
            raise ValueError(f"{len(candidates)} candidate rows for {len(query)} requests")
        ids = candidates.ids
        self._check_fitted()
        if ids.size and ids.max() >= self.n_items_:
            raise ValueError(f"candidate item index out of range [0, {self.n_items_})")
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        scores = np.array(self._score_items(query, safe), dtype=np.float64)
        scores[~valid] = -np.inf
        self._mask_excluded(query, scores, safe)
        n = ids.shape[1]
        kk = n if k is None else check_list_length(k)
        pos, top_scores = top_k(scores, min(kk, n)) if n else (ids[:, :0], scores[:, :0])
        out = np.where(pos >= 0, np.take_along_axis(ids, np.maximum(pos, 0), axis=1), -1)
        return Candidates(out, top_scores).head(kk)

    def recommend(
        self,
        users,
        k: int = 10,
        exclude_seen: bool | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for a batch of requests.

        Args:
            users: `(B,)` internal user indices, or a `Query`.
            k: list length.
            exclude_seen: drop items the user interacted with in training (or the items of a
                fresh history); None keeps the query's setting (default True).
            candidates: optional `(B, C)` item indices to choose from (e.g. a sampled
                protocol's candidates); −1 entries are ignored, repeated items count once.

        Returns:
            `(ids (B, k) int64, scores (B, k) float32)`, best first. When fewer than k
            items are eligible, the tail is padded with id -1 and score -inf.
        """
        query = self._as_query(users, exclude_seen)
        cand = None if candidates is None else Candidates.from_ids(candidates)
        if cand is not None and len(cand) != len(query):
            raise ValueError(f"candidates has {len(cand)} rows for {len(query)} users")
        out = self(query, cand, check_list_length(k))
        return out.ids, out.scores

    # ------------------------------------------------------------------ helpers
    def _as_query(self, users, exclude_seen: bool | None) -> Query:
        if isinstance(users, Query):
            query = users if exclude_seen is None else replace(users, exclude_seen=exclude_seen)
        else:
            users = self._check_users(users)
            query = Query(users=users, exclude_seen=True if exclude_seen is None else exclude_seen)
        if query.history is None:
            self._check_users(query.users)
        return query

    def _mask_excluded(self, query: Query, scores: np.ndarray, items: np.ndarray | None) -> None:
        """Sets the scores of excluded items (seen, history, `exclude`) to −inf in place.

        Works on the excluded (request, item) pairs directly (the training rows are read from
        the CSR arrays, no sparse matrix is built), so a one-request call stays cheap.
        """
        if not (query.exclude_seen or query.exclude is not None):
            return
        seen = self.user_items_ if query.history is None and query.exclude_seen else None
        rows, cols = query.excluded_pairs(self.n_items_, seen, query.users)
        if rows.size == 0:
            return
        if items is None:
            scores[rows, cols] = -np.inf
            return
        n = np.int64(self.n_items_)
        keys = np.unique(rows * n + cols)
        probe = np.arange(items.shape[0], dtype=np.int64)[:, None] * n + items
        pos = np.minimum(np.searchsorted(keys, probe), keys.size - 1)
        scores[keys[pos] == probe] = -np.inf

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")

    def _check_users(self, users) -> np.ndarray:
        self._check_fitted()
        users = check_user_array(users)
        if users.size and (users.min() < 0 or users.max() >= self.n_users_):
            raise ValueError(f"user index out of range [0, {self.n_users_})")
        return users


def check_list_length(k) -> int:
    """Validates a list length: a positive int (`divrec.stage.check_k`)."""
    return check_k(k, "k", 1)


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
        # partition at k−1 and k: position k−1 holds the k-th largest, position k the next
        # one; a tie between them is the only case where argpartition's cut is arbitrary.
        kth = [kk - 1, kk]
        full = np.argpartition(-scores, kth, axis=1)
        part = full[:, :kk]
        boundary = np.take_along_axis(scores, full[:, kk - 1 : kk + 1], axis=1)
        split_tie = boundary[:, 0] == boundary[:, 1]
    else:
        part = np.broadcast_to(np.arange(n), (b, n)).copy()
        split_tie = np.zeros(b, dtype=bool)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(part_scores, order, axis=1)
    if split_tie.any():
        # re-resolve a tie cut by argpartition by the lowest index, only on those rows
        # (compare in the input dtype: a float32-rounded k-th score misses float64 ties)
        _fix_boundary_ties(scores, ids, vals, np.flatnonzero(split_tie))
    ids = np.where(np.isneginf(vals), -1, ids)
    vals = vals.astype(np.float32)
    if k > n:
        ids = np.pad(ids, ((0, 0), (0, k - n)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - n)), constant_values=-np.inf)
    return ids, vals


def _fix_boundary_ties(scores, ids, vals, rows):
    for r in rows:  # rare: only rows where a tie crosses the k-th position
        kth = vals[r, -1]
        above = np.flatnonzero(scores[r] > kth)
        tied = np.flatnonzero(scores[r] == kth)[: ids.shape[1] - above.size]
        cols = np.r_[above, tied]
        order = np.lexsort((cols, -scores[r, cols]))
        ids[r] = cols[order]
        vals[r] = scores[r, cols[order]]


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
