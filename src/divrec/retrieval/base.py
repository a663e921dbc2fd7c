"""The recommender protocol shared by every model in divrec.

Models follow the scikit-learn rule (the constructor only stores hyperparameters, `fit`
returns self, learned attributes end in `_`) and the batch-first `implicit` API:
`recommend(users, k) -> (item ids (B, k), scores (B, k))` over internal indices.
"""

from __future__ import annotations

import sys
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
            scores = self.score_query(query)
            # masking writes in place: copy unless the array is a fresh one only we hold (a
            # model may return a stored table or a view of one)
            if not (scores.base is None and scores.flags.writeable and _sole_owner(scores)):
                scores = scores.copy()
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
            if query.history is None:
                self._check_users(query.users)
            return query
        users = self._check_users(users)  # checked once (plain users have no history)
        return Query(users=users, exclude_seen=True if exclude_seen is None else exclude_seen)

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


def _ref_count(array: np.ndarray) -> int:
    return sys.getrefcount(array)


def _fresh_ref_count() -> int:
    fresh = np.empty(0)
    return _ref_count(fresh)


_FRESH_REFS = _fresh_ref_count()
"""`_ref_count` of an array held by one local name only (measured: it varies by CPython)."""


def _sole_owner(array: np.ndarray) -> bool:
    """Whether nothing but the caller's local name references `array` (safe to overwrite)."""
    return _ref_count(array) <= _FRESH_REFS + 1  # + this function's own argument


def check_list_length(k) -> int:
    """Validates a list length: a positive int (`divrec.stage.check_k`)."""
    return check_k(k, "k", 1)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a score matrix, best first; -inf entries become id -1.

    Ties are broken by the lower column index (a stable, deterministic order).

    The k-th largest score of each row comes from one `np.partition` cut (values only;
    asking `argpartition` for two cut points to see a boundary tie drops numpy off its fast
    path, 3.5–6× slower on a `(1024, 3706)` block). The row's top k are then the scores
    above it plus, of those equal to it, the lowest column indices: one comparison pass
    gives them in column order, ties at the boundary included, with no per-row loop.

    Args:
        scores: `(B, N)` scores.
        k: how many to keep (clipped to N).

    Returns:
        `(ids (B, k), scores (B, k))`, padded with -1 / -inf when k > N.
    """
    b, n = scores.shape
    kk = min(k, n)
    part = _top_set(scores, kk) if kk < n else np.broadcast_to(np.arange(n), (b, n))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # `part` is in column order: a stable sort by score keeps ties by the lower index
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(part_scores, order, axis=1)
    ids = np.where(np.isneginf(vals), -1, ids)
    vals = vals.astype(np.float32)
    if k > n:
        ids = np.pad(ids, ((0, 0), (0, k - n)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, k - n)), constant_values=-np.inf)
    return ids, vals


def _top_set(scores: np.ndarray, k: int) -> np.ndarray:
    """`(B, k)` column indices of each row's k best scores (ties: lower index), ascending.

    Two stages: the k-th largest score of the first `m` columns (a cheap partition) is a
    lower bound of the row's k-th largest, so one comparison pass keeps a small superset of
    the top k (≈ k·N/m per row); the exact k-th largest is then taken among those. Compares
    in the input dtype (a float32-rounded k-th score would miss float64 ties).
    """
    b, n = scores.shape
    # a few rows (one request): the exact k-th score at once is the fewest numpy calls
    m = n if b * n <= 1 << 16 else min(n, max(_SAMPLE_PER_K * k, n // _SAMPLE_FRACTION))
    bound = _kth_largest(scores[:, :m], k) if m > k else scores[:, :m].min(axis=1)
    flat = np.flatnonzero(scores >= bound[:, None])  # row-major: columns ascending per row
    rows = flat // n
    counts = np.bincount(rows, minlength=b)
    if (counts < k).any():  # NaN scores (partition orders them last): argpartition's rule
        return _top_set_nan(scores, k)
    cols = flat - rows * n
    vals = scores[rows, cols]
    if (counts == k).all():
        return cols.reshape(b, k)
    width = int(counts.max())
    if b * width > 4 * b * m + (1 << 16):  # a row with a flat bound (many −inf, ties)
        kth = _kth_largest(scores, k)
    else:  # the exact k-th largest among the candidates (−inf padding never outranks)
        starts = np.cumsum(counts) - counts
        padded = np.full((b, width), -np.inf, dtype=scores.dtype)
        padded[rows, np.arange(flat.size) - np.repeat(starts, counts)] = vals
        kth = _kth_largest(padded, k)
    keep = vals >= kth[rows]  # every score ≥ kth is a candidate (kth ≥ bound)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    counts = np.bincount(rows, minlength=b)
    if (counts == k).all():  # no tie crosses the k-th position (the usual case)
        return cols.reshape(b, k)
    # rows with more than k candidates tie at the k-th score: keep every score above it
    # and the first (lowest-index) tied ones up to k
    tied = vals == kth[rows]
    starts = np.cumsum(counts) - counts
    running = np.cumsum(tied)  # inclusive count of tied hits so far
    tied_rank = running - 1 - np.repeat(running[starts] - tied[starts], counts)  # within row
    n_above = counts - np.bincount(rows, weights=tied, minlength=b).astype(np.int64)
    keep = ~tied | (tied_rank < (k - n_above)[rows])
    return cols[keep].reshape(b, k)


_SAMPLE_PER_K = 32
_SAMPLE_FRACTION = 16
"""`_top_set` bounds the k-th score on the first max(32·k, N/16) columns of each row."""


_PARTITION_BYTES = 1 << 18
"""Rows are partitioned in blocks of about this many bytes, copied into one reused buffer
(cache-resident; `np.partition` of the whole matrix would copy it to fresh memory first)."""


def _kth_largest(scores: np.ndarray, k: int) -> np.ndarray:
    """`(B,)` the k-th largest score of each row (k < N), in the input dtype."""
    b, n = scores.shape
    step = max(1, min(b, _PARTITION_BYTES // max(1, n * scores.itemsize)))
    buf = np.empty((step, n), dtype=scores.dtype)
    out = np.empty(b, dtype=scores.dtype)
    for lo in range(0, b, step):
        hi = min(lo + step, b)
        block = buf[: hi - lo]
        np.copyto(block, scores[lo:hi])
        block.partition(n - k, axis=1)
        out[lo:hi] = block[:, n - k]
    return out


def _top_set_nan(scores: np.ndarray, k: int) -> np.ndarray:
    """`_top_set` for scores with NaN: NaN ranks last (as `argpartition(-scores)` does)."""
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for r in range(scores.shape[0]):  # rare: NaN scores are a model's bug
        order = np.lexsort((np.arange(scores.shape[1]), np.isnan(scores[r]), -keyed[r]))
        out[r] = np.sort(order[:k])
    return out


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
