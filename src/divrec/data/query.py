"""The request and candidate types that flow through every stage of a `Pipeline`.

A recommendation is one batch of requests flowing down the stages

    Query ─▶ retrieval ─▶ ranking ─▶ re-ranking ─▶ Candidates (the lists)

(LensKit's `RecQuery` / `ItemList`, batch-first as in `implicit`). Every stage is fitted once
(`fit(train) -> self`) and maps `(Query, Candidates | None, k) -> Candidates`: a retriever
builds candidates from the whole catalogue (or scores the ones it is given), a ranker
re-scores and re-sorts them, a re-ranker selects `k` of them in order.

The types live in the data layer so that every stage can import them without importing
upwards; `divrec.pipeline` re-exports them.

Conventions:

* indices are internal (`Interactions` indices); a user index of −1 is an anonymous user
  (only meaningful with a fresh `history`);
* item arrays are padded with −1 (ids) and −inf (scores); `Candidates.valid` is `ids >= 0`;
* histories are ordered oldest → newest, so sequence models read the last `L` items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["Candidates", "Query", "pad_lists"]


def pad_lists(lists: Sequence[Sequence[int]] | np.ndarray | None, what: str) -> np.ndarray | None:
    """`B` item lists (or a `(B, L)` array) → `(B, L)` int64 padded with −1, or None.

    Raises:
        ValueError: the input is not integral, or holds an index below −1.
    """
    if lists is None:
        return None
    if isinstance(lists, np.ndarray) and lists.ndim == 2:
        arr = lists
    else:
        rows = [np.asarray(r).reshape(-1) for r in lists]
        width = max((r.size for r in rows), default=0)
        arr = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            if r.size and not (np.issubdtype(r.dtype, np.integer) or _integral(r)):
                raise ValueError(f"{what}: item indices must be integers")
            arr[i, : r.size] = r
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or _integral(arr)):
        raise ValueError(f"{what}: item indices must be integers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.int64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must have shape (B, L), got {arr.shape}")
    if arr.size and arr.min() < -1:
        raise ValueError(f"{what}: item indices must be >= 0 (−1 is padding)")
    return arr


def _integral(a: np.ndarray) -> bool:
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        return False
    a = a.astype(np.float64)
    return bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))


def check_user_array(users: Any) -> np.ndarray:
    """`(B,)` int64 user indices from a sequence of ints (−1: anonymous).

    Floats, strings and booleans are rejected rather than truncated or parsed.
    """
    arr = np.atleast_1d(np.asarray(users))
    if arr.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {arr.shape}")
    if arr.size and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"users must be integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < -1:
        raise ValueError("users must be >= 0 (−1 marks an anonymous user)")
    return arr


@dataclass(frozen=True, eq=False)
class Query:
    """A batch of `B` recommendation requests.

    Attributes:
        users: `(B,)` int64 internal user indices; −1 for an anonymous user.
        history: `(B, L)` int64 fresh positive history per request, oldest → newest, −1
            padded; None: each model uses the user's training row. When given, it replaces
            the training row for every request of the batch (the online entry point of
            HI-RT, the two-tower history tower and HI-NN's cold start).
        history_values: `(B, L)` float32 values (ratings) aligned with `history`, or None
            (every history item counts 1).
        negatives: `(B, M)` int64 fresh negative feedback (disliked / skipped items), −1
            padded, or None. HI-RT's Y row (Eq. 14–17).
        exclude: `(B, E)` int64 extra items never to return (already served, consumed), −1
            padded, or None.
        exclude_seen: drop the history (or training) items from the lists.
        diversity: `(B,)` float64 per-request diversity knob in [0, 1], 0 = relevance only
            and 1 = the most diverse setting of the re-ranker; None: the re-ranker's own
            hyperparameter. Each re-ranker documents how it maps the knob onto its paper's
            parameter.
        now: request time (seconds) for real-time state (the propensity tracker), or None.
        extras: method-specific per-request arrays with a leading batch axis (e.g.
            `user_category_counts` for p-DPP); a stage rejects keys it does not know.
        constraints: business rules (`divrec.data.constraints.Constraints`): one for every
            request, a sequence of `B` (None: a request without rules), or None. Stored as
            None or a `(B,)` tuple. The greedy re-rankers honour them in their kernels.
        explain: ask the re-ranker for a per-item explanation of every returned list
            (`Pipeline.recommend(..., explain=True)`); free when False.
    """

    users: np.ndarray
    history: np.ndarray | None = None
    history_values: np.ndarray | None = None
    negatives: np.ndarray | None = None
    exclude: np.ndarray | None = None
    exclude_seen: bool = True
    diversity: np.ndarray | None = None
    now: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    constraints: Any = None
    explain: bool = False

    def __post_init__(self) -> None:
        users = check_user_array(self.users)
        object.__setattr__(self, "users", users)
        b = users.shape[0]
        for name in ("history", "negatives", "exclude"):
            arr = pad_lists(getattr(self, name), name)
            if arr is not None and arr.shape[0] != b:
                raise ValueError(f"{name} has {arr.shape[0]} rows for {b} users")
            object.__setattr__(self, name, arr)
        if self.history_values is not None:
            if self.history is None:
                raise ValueError("history_values needs history")
            vals = np.asarray(self.history_values, dtype=np.float32)
            if vals.shape != self.history.shape:
                raise ValueError(
                    f"history_values has shape {vals.shape}, history {self.history.shape}"
                )
            if not np.all(np.isfinite(vals[self.history >= 0])):
                raise ValueError("history_values contains NaN or infinite values")
            object.__setattr__(self, "history_values", vals)
        if self.diversity is not None:
            d = np.asarray(self.diversity, dtype=np.float64)
            d = np.broadcast_to(d, (b,)).copy() if d.ndim == 0 else d
            if d.shape != (b,):
                raise ValueError(f"diversity must have shape ({b},), got {d.shape}")
            if not np.all(np.isfinite(d)) or d.min(initial=0.0) < 0 or d.max(initial=0.0) > 1:
                raise ValueError("diversity must be in [0, 1]")
            object.__setattr__(self, "diversity", d)
        if self.now is not None and not np.isfinite(float(self.now)):
            raise ValueError("now must be a finite time")
        if (self.users < 0).any() and self.history is None:
            raise ValueError("an anonymous user (−1) needs a history")
        for key, value in self.extras.items():
            if value is not None and len(value) != b:
                raise ValueError(f"extras[{key!r}] has {len(value)} rows for {b} users")
        if self.constraints is not None:
            object.__setattr__(self, "constraints", _constraint_rows(self.constraints, b))
        if not isinstance(self.explain, bool | np.bool_):
            raise ValueError(f"explain must be a bool, got {self.explain!r}")
        object.__setattr__(self, "explain", bool(self.explain))

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, users_or_query: Any, **fields: Any) -> Query:
        """A `Query` as it is, or one built from user indices and keyword fields."""
        if isinstance(users_or_query, Query):
            return replace(users_or_query, **fields) if fields else users_or_query
        return cls(users=users_or_query, **fields)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, rows: np.ndarray | slice) -> Query:
        """The sub-batch `rows` (every per-request field sliced alike)."""

        def cut(a):
            return None if a is None else a[rows]

        return Query(
            users=self.users[rows],
            history=cut(self.history),
            history_values=cut(self.history_values),
            negatives=cut(self.negatives),
            exclude=cut(self.exclude),
            exclude_seen=self.exclude_seen,
            diversity=cut(self.diversity),
            now=self.now,
            extras={
                k: (None if v is None else np.asarray(v)[rows]) for k, v in self.extras.items()
            },
            constraints=None
            if self.constraints is None
            else tuple(np.asarray(self.constraints, dtype=object)[rows].tolist()),
            explain=self.explain,
        )

    # ------------------------------------------------------------------ views
    def history_matrix(self, n_items: int, negatives: bool = False) -> sp.csr_matrix:
        """`(B, n_items)` float32 CSR of the history (values or 1; repeats count once).

        Args:
            n_items: catalogue size (indices must be below it).
            negatives: the negative lists instead of the history.
        """
        lists = self.negatives if negatives else self.history
        b = len(self)
        if lists is None:
            return sp.csr_matrix((b, n_items), dtype=np.float32)
        if lists.size and lists.max() >= n_items:
            raise ValueError(f"{'negatives' if negatives else 'history'}: item index >= {n_items}")
        rows, cols = np.nonzero(lists >= 0)
        items = lists[rows, cols]
        if negatives or self.history_values is None:
            vals = np.ones(items.size, dtype=np.float32)
        else:
            vals = self.history_values[rows, cols]
        # keep the last value of a repeated item (latest event wins)
        key = rows.astype(np.int64) * n_items + items
        _, last = np.unique(key[::-1], return_index=True)
        keep = key.size - 1 - last
        m = sp.csr_matrix((vals[keep], (rows[keep], items[keep])), shape=(b, n_items))
        m.sort_indices()
        return m

    def excluded_items(self, n_items: int, seen: sp.csr_matrix | None = None) -> sp.csr_matrix:
        """`(B, n_items)` bool CSR of items never to return for each request.

        The union of `exclude`, and — when `exclude_seen` — the history and negatives (fresh
        requests) or `seen` (the training rows of `users`, when no history is given).
        """
        rows, cols = self.excluded_pairs(n_items, seen)
        data = np.ones(rows.size, dtype=bool)
        out = sp.csr_matrix((data, (rows, cols)), shape=(len(self), n_items))
        out.sum_duplicates()
        return out.astype(bool)

    def excluded_pairs(
        self, n_items: int, seen: sp.csr_matrix | None = None, users: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The excluded (request, item) pairs of `excluded_items` as two `(P,)` int64 arrays
        (duplicates possible), without building a sparse matrix (the per-request path).

        Args:
            n_items: the catalogue size (out-of-range list entries are ignored).
            seen: the training matrix: either its rows of `users` already, or (with `users`)
                the whole `(n_users, n_items)` matrix whose rows `users` are read directly.
            users: `(B,)` rows of `seen` to read, or None.
        """
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        if self.exclude is not None:
            _list_pairs(self.exclude, n_items, rows, cols)
        if self.exclude_seen:
            if self.history is not None:
                _list_pairs(self.history, n_items, rows, cols)
                if self.negatives is not None:
                    _list_pairs(self.negatives, n_items, rows, cols)
            elif seen is not None:
                sel = np.arange(seen.shape[0]) if users is None else np.asarray(users)
                starts = seen.indptr[sel].astype(np.int64)
                lens = seen.indptr[sel + 1].astype(np.int64) - starts
                total = int(lens.sum())
                ends = np.cumsum(lens)
                idx = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lens), lens)
                rows.append(np.repeat(np.arange(sel.size, dtype=np.int64), lens))
                cols.append(seen.indices[idx].astype(np.int64))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(cols)


def _constraint_rows(value: Any, b: int) -> tuple | None:
    """``Query.constraints`` as None or a ``(B,)`` tuple of `Constraints` / None."""
    from divrec.data.constraints import Constraints

    if isinstance(value, Constraints):
        return (value,) * b
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(
            f"constraints must be a Constraints, a sequence of {b} Constraints/None, or None"
        )
    rows = tuple(value)
    if len(rows) != b:
        raise ValueError(f"constraints has {len(rows)} entries for {b} users")
    for i, r in enumerate(rows):
        if r is not None and not isinstance(r, Constraints):
            raise ValueError(f"constraints[{i}] must be a Constraints or None, got {type(r)}")
    return None if all(r is None for r in rows) else rows


def _list_pairs(lists: np.ndarray, n_items: int, rows: list, cols: list) -> None:
    r, c = np.nonzero((lists >= 0) & (lists < n_items))
    rows.append(r.astype(np.int64))
    cols.append(lists[r, c].astype(np.int64))


@dataclass(frozen=True, eq=False)
class Candidates:
    """A batch of candidate lists: what one stage hands the next.

    Attributes:
        ids: `(B, N)` int64 internal item indices, −1 padded.
        scores: `(B, N)` float32 scores of the stage that produced the list (−inf at
            padding); a re-ranker keeps the scores its input had.
        violations: set by a re-ranker given `Query.constraints`: per request, the tuple
            of `ConstraintViolation` its list has (empty: every rule holds; only
            `best_effort` requests can have some), or None.
        explanations: set by a re-ranker when `Query.explain`: per request, a tuple with
            one dict per returned item (see `divrec.rerank._explain`), or None.
    """

    ids: np.ndarray
    scores: np.ndarray
    violations: tuple | None = None
    explanations: tuple | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 2:
            raise ValueError(f"candidate ids must have shape (B, N), got {ids.shape}")
        if ids.size and (ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"candidate ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        scores = np.asarray(self.scores, dtype=np.float32)
        if scores.shape != ids.shape:
            raise ValueError(f"scores has shape {scores.shape}, ids {ids.shape}")
        if ids.size:
            _check_rows(ids, scores)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def _checked(cls, ids: np.ndarray, scores: np.ndarray) -> Candidates:
        """A `Candidates` of arrays derived from a valid one (no re-check: head, take, sort)."""
        new = object.__new__(cls)
        object.__setattr__(new, "ids", ids)
        object.__setattr__(new, "scores", scores)
        return new

    @property
    def valid(self) -> np.ndarray:
        """`(B, N)` bool mask of real candidates."""
        return self.ids >= 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.ids.shape  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_ids(cls, ids: Any) -> Candidates:
        """Unscored candidates (e.g. a sampled protocol's positive + negatives).

        Duplicates within a row are dropped (the first occurrence is kept), so no item can
        be returned twice; scores are 0 at real entries.
        """
        arr = pad_lists(ids, "candidates")
        assert arr is not None
        arr = dedupe_rows(arr)
        return cls(arr, np.where(arr >= 0, 0.0, -np.inf).astype(np.float32))

    def head(self, k: int) -> Candidates:
        """The first `k` columns, padded with −1 / −inf when the lists are shorter."""
        b, n = self.ids.shape
        if k <= n:
            out = Candidates._checked(self.ids[:, :k], self.scores[:, :k])
        else:
            pad = k - n
            out = Candidates._checked(
                np.pad(self.ids, ((0, 0), (0, pad)), constant_values=-1),
                np.pad(self.scores, ((0, 0), (0, pad)), constant_values=-np.inf),
            )
        if self.violations is not None or self.explanations is not None:
            object.__setattr__(out, "violations", self.violations)
            ex = self.explanations
            object.__setattr__(out, "explanations", ex if ex is None else tuple(e[:k] for e in ex))
        return out

    def take(self, rows: np.ndarray | slice) -> Candidates:
        """The sub-batch `rows`."""
        return Candidates._checked(self.ids[rows], self.scores[rows])

    def sorted(self) -> Candidates:
        """Each row sorted by decreasing score, ties by position, padding last."""
        key = np.where(self.valid, -self.scores.astype(np.float64), np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        ids = np.take_along_axis(self.ids, order, axis=1)
        sc = np.take_along_axis(self.scores, order, axis=1)
        return Candidates._checked(ids, np.where(ids >= 0, sc, -np.inf).astype(np.float32))


def _check_rows(ids: np.ndarray, scores: np.ndarray) -> None:
    """Refuses ids below −1, a NaN score at a real entry and an item twice in one row."""
    if ids.min() < -1:
        raise ValueError(f"candidate ids must be item indices or -1 (padding), got {ids.min()}")
    nan = np.isnan(scores)
    if nan.any():
        bad = nan & (ids >= 0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"candidate scores must not be NaN (row {row}, item {ids[row, col]})")
    if ids.shape[1] > 1:
        s = np.sort(ids, axis=1)
        same = s[:, 1:] == s[:, :-1]
        if same.any() and (dup := same & (s[:, 1:] >= 0)).any():
            row, col = np.argwhere(dup)[0]
            raise ValueError(
                f"candidate ids must be distinct in a row: item {s[row, col + 1]} "
                f"twice in row {row} (Candidates.from_ids drops duplicates)"
            )


def dedupe_rows(ids: np.ndarray) -> np.ndarray:
    """`(B, N)` ids with repeated items in a row replaced by −1 (first occurrence kept)."""
    ids = np.array(ids, dtype=np.int64)
    if ids.size == 0:
        return ids
    order = np.argsort(ids, axis=1, kind="stable")
    s = np.take_along_axis(ids, order, axis=1)
    dup_sorted = np.zeros(s.shape, dtype=bool)
    dup_sorted[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    dup = np.zeros(ids.shape, dtype=bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    ids[dup] = -1
    return ids
