"""The `Interactions` data model shared by every stage of divrec.

An `Interactions` object is an interaction log over a fixed universe of users and items:
one row per (user, item) event with a feedback value, an optional timestamp and an optional
session id, plus the external↔internal id maps and optional item side information
(categories, dense features). Splits keep the universe (so train and test share indices) and
only select rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp


class DataError(ValueError):
    """Bad input data. The message is one line naming the source and the problem."""


@dataclass(frozen=True, eq=False)
class Interactions:
    """An interaction log over a fixed user and item universe.

    Attributes:
        users: `(nnz,)` int64 internal user index of each interaction.
        items: `(nnz,)` int64 internal item index of each interaction.
        values: `(nnz,)` float32 feedback (a rating, a count, or 1.0 for implicit data).
        user_ids: `(n_users,)` external user ids; `user_ids[u]` is user `u`'s external id.
        item_ids: `(n_items,)` external item ids.
        timestamps: `(nnz,)` int64 unix seconds, or None.
        sessions: `(nnz,)` int64 session id of each interaction, or None.
        item_categories: `(n_items, C)` binary CSR multi-hot category matrix, or None.
        category_names: the `C` category names, or None.
        item_features: `(n_items, F)` float32 dense item features, or None.
        name: a short dataset name for reports.

    A log is immutable: its fields cannot be reassigned, and its arrays (which are not
    copied from the caller's) must not be written in place once the log is built. Views
    derived from a log are cached for its lifetime (its id index here, its binary CSR and
    item popularity in `divrec.evaluation.evaluate`), so a log whose arrays change in place
    would be evaluated on stale views; build a new log instead (`select`, `with_values`).
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    sessions: np.ndarray | None = None
    item_categories: sp.csr_matrix | None = None
    category_names: tuple[str, ...] | None = None
    item_features: np.ndarray | None = None
    name: str = "interactions"
    _user_index: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _item_index: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.float32)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "user_ids", np.asarray(self.user_ids))
        object.__setattr__(self, "item_ids", np.asarray(self.item_ids))
        n = users.shape[0]
        if users.ndim != 1 or items.shape != (n,) or values.shape != (n,):
            raise DataError(
                f"{self.name}: users, items and values must be 1-D of one length, got "
                f"{users.shape}, {items.shape}, {values.shape}"
            )
        for attr in ("timestamps", "sessions"):
            arr = getattr(self, attr)
            if arr is not None:
                arr = np.asarray(arr, dtype=np.int64)
                if arr.shape != (n,):
                    raise DataError(f"{self.name}: {attr} has shape {arr.shape}, expected ({n},)")
                object.__setattr__(self, attr, arr)
        if n:
            if users.min() < 0 or users.max() >= self.n_users:
                raise DataError(f"{self.name}: user index out of range [0, {self.n_users})")
            if items.min() < 0 or items.max() >= self.n_items:
                raise DataError(f"{self.name}: item index out of range [0, {self.n_items})")
            if not np.isfinite(values).all():
                raise DataError(f"{self.name}: feedback values contain NaN or infinity")
        if self.item_categories is not None:
            cats = sp.csr_matrix(self.item_categories, dtype=np.float32, copy=True)
            cats.eliminate_zeros()
            cats.sum_duplicates()  # also sorts the indices: "first category" = smallest id
            if cats.shape[0] != self.n_items:
                raise DataError(
                    f"{self.name}: item_categories has {cats.shape[0]} rows "
                    f"for {self.n_items} items"
                )
            object.__setattr__(self, "item_categories", cats)
        if self.item_features is not None:
            feats = np.asarray(self.item_features, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != self.n_items:
                raise DataError(
                    f"{self.name}: item_features has shape {feats.shape}, "
                    f"expected ({self.n_items}, F)"
                )
            object.__setattr__(self, "item_features", feats)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        values: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        sessions: np.ndarray | None = None,
        *,
        name: str = "interactions",
        dedupe: str | None = "last",
    ) -> Interactions:
        """Builds an `Interactions` from external ids, assigning dense internal indices.

        Internal indices follow the sorted order of the distinct external ids, so the mapping
        is deterministic.

        Args:
            user_ids: `(nnz,)` external user id per interaction.
            item_ids: `(nnz,)` external item id per interaction.
            values: `(nnz,)` feedback; defaults to 1.0 (implicit).
            timestamps: `(nnz,)` unix seconds or None.
            sessions: `(nnz,)` session ids or None.
            name: dataset name used in messages.
            dedupe: "last" keeps the latest (by timestamp, else by position) of repeated
                (user, item) pairs, "sum" adds their values, None keeps all rows.
        """
        user_ids = np.asarray(user_ids)
        item_ids = np.asarray(item_ids)
        n = user_ids.shape[0]
        if values is None:
            values = np.ones(n, dtype=np.float32)
        uniq_u, users = np.unique(user_ids, return_inverse=True)
        uniq_i, items = np.unique(item_ids, return_inverse=True)
        obj = cls(
            users=users.reshape(-1),
            items=items.reshape(-1),
            values=values,
            user_ids=uniq_u,
            item_ids=uniq_i,
            timestamps=timestamps,
            sessions=sessions,
            name=name,
        )
        return obj.deduplicate(dedupe) if dedupe else obj

    def deduplicate(self, how: str = "last") -> Interactions:
        """Collapses repeated (user, item) pairs.

        Args:
            how: "last" keeps the latest event (by timestamp, ties by position); "sum" sums
                the values and keeps the latest timestamp.
        """
        if how not in ("last", "sum"):
            raise ValueError(f"dedupe must be 'last' or 'sum', got {how!r}")
        if self.nnz == 0:
            return self
        key = self.users * np.int64(self.n_items) + self.items
        order_key = self.timestamps if self.timestamps is not None else np.arange(self.nnz)
        order = np.lexsort((np.arange(self.nnz), order_key, key))
        k_sorted = key[order]
        last = np.ones(self.nnz, dtype=bool)
        last[:-1] = k_sorted[1:] != k_sorted[:-1]
        if last.all():
            return self
        keep = order[last]
        if how == "sum":
            starts = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]])
            summed = np.add.reduceat(self.values[order], starts).astype(np.float32)
            # `summed` and `keep` are in key order; rows come back in ascending index order.
            return self.select(np.sort(keep)).with_values(summed[np.argsort(keep)])
        return self.select(np.sort(keep))

    # ------------------------------------------------------------------ shape and ids
    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.users.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    @property
    def n_categories(self) -> int:
        return 0 if self.item_categories is None else int(self.item_categories.shape[1])

    def user_index(self, external_ids) -> np.ndarray:
        """Maps external user ids to internal indices; raises KeyError naming a missing id."""
        return _lookup(self, "_user_index", self.user_ids, external_ids, "user")

    def item_index(self, external_ids) -> np.ndarray:
        """Maps external item ids to internal indices; raises KeyError naming a missing id."""
        return _lookup(self, "_item_index", self.item_ids, external_ids, "item")

    # ------------------------------------------------------------------ views
    def to_csr(self, binary: bool = False, threshold: float | None = None) -> sp.csr_matrix:
        """The `(n_users, n_items)` float32 CSR feedback matrix.

        Repeated (user, item) rows (a log built with `dedupe=None`) are summed.

        Args:
            binary: put 1.0 for every interaction instead of its value.
            threshold: keep only interactions with value >= threshold (implies binary).
        """
        mask = None
        if threshold is not None:
            mask = self.values >= threshold
            binary = True
        users = self.users if mask is None else self.users[mask]
        items = self.items if mask is None else self.items[mask]
        vals = self.values if mask is None else self.values[mask]
        data = np.ones(users.shape[0], dtype=np.float32) if binary else vals
        n = users.shape[0]
        if (
            0 < n < 2**31 - 1
            and max(self.shape) < 2**31 - 1
            and users[0] >= 0
            and users[-1] < self.n_users
            and bool(np.all(users[1:] >= users[:-1]))
            and items.min() >= 0
            and items.max() < self.n_items
        ):
            # a log grouped by user (as loaded and split): the row pointers come from one
            # search instead of scipy's COO conversion (its bound checks, index copies and
            # counting sort); each row keeps the log's order, as that conversion keeps it, so
            # the sort and the duplicate sums below see the same rows (ML-1M: 16 -> 10 ms)
            indptr = np.searchsorted(users, np.arange(self.n_users + 1)).astype(np.int32)
            mat = sp.csr_matrix(
                # copies: the sort below permutes them in place
                (np.array(data, dtype=np.float32), items.astype(np.int32), indptr),
                shape=self.shape,
            )
        else:
            mat = sp.csr_matrix((data, (users, items)), shape=self.shape, dtype=np.float32)
        mat.sum_duplicates()
        if binary:
            mat.data[:] = 1.0
        mat.sort_indices()
        return mat

    def select(self, mask_or_index: np.ndarray) -> Interactions:
        """A new log with the chosen rows; the user/item universe and side info are kept."""
        idx = np.asarray(mask_or_index)
        if idx.size == 0 and idx.dtype != bool:
            idx = idx.astype(np.int64)
        return replace(
            self,
            users=self.users[idx],
            items=self.items[idx],
            values=self.values[idx],
            timestamps=None if self.timestamps is None else self.timestamps[idx],
            sessions=None if self.sessions is None else self.sessions[idx],
        )

    def with_values(self, values: np.ndarray) -> Interactions:
        """The same log with other feedback values."""
        return replace(self, values=np.asarray(values, dtype=np.float32))

    def with_item_side_info(
        self,
        item_categories: sp.csr_matrix | None = None,
        category_names: tuple[str, ...] | None = None,
        item_features: np.ndarray | None = None,
    ) -> Interactions:
        """The same log with item categories and/or features attached (aligned to item_ids)."""
        return replace(
            self,
            item_categories=_first(item_categories, self.item_categories),
            category_names=_first(
                None if category_names is None else tuple(category_names), self.category_names
            ),
            item_features=_first(item_features, self.item_features),
        )

    def item_popularity(self) -> np.ndarray:
        """`(n_items,)` int64 number of distinct users who interacted with each item."""
        return np.asarray(self.to_csr(binary=True).sum(axis=0)).ravel().astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """`(n_users,)` int64 number of interactions per user."""
        return np.bincount(self.users, minlength=self.n_users).astype(np.int64)

    def primary_category(self) -> np.ndarray:
        """`(n_items,)` int64 first category of each item (-1 when it has none)."""
        if self.item_categories is None:
            raise ValueError(f"{self.name}: no item categories")
        cats = self.item_categories.tocsr()
        out = np.full(self.n_items, -1, dtype=np.int64)
        has = np.diff(cats.indptr) > 0
        out[has] = cats.indices[cats.indptr[:-1][has]]
        return out

    def summary(self) -> dict:
        """Counts and ranges for `divrec data info`."""
        counts = self.user_counts()
        active = counts > 0
        out = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.nnz,
            "active_users": int(active.sum()),
            "active_items": int((self.item_popularity() > 0).sum()),
            "density": self.nnz / max(1, self.n_users * self.n_items),
            "interactions_per_user_median": float(np.median(counts[active]))
            if active.any()
            else 0.0,
            "value_min": float(self.values.min()) if self.nnz else None,
            "value_max": float(self.values.max()) if self.nnz else None,
            "categories": self.n_categories,
        }
        if self.timestamps is not None and self.nnz:
            out["time_min"] = int(self.timestamps.min())
            out["time_max"] = int(self.timestamps.max())
        if self.sessions is not None:
            out["sessions"] = int(np.unique(self.sessions).size)
        return out

    def __repr__(self) -> str:
        return (
            f"Interactions(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"nnz={self.nnz}, timestamps={self.timestamps is not None}, "
            f"categories={self.n_categories})"
        )


def _first(a, b):
    return b if a is None else a


def _lookup(obj: Interactions, cache: str, ids: np.ndarray, external, kind: str) -> np.ndarray:
    index = getattr(obj, cache)
    if index is None:
        index = {v: i for i, v in enumerate(ids.tolist())}
        object.__setattr__(obj, cache, index)
    ext = np.atleast_1d(np.asarray(external)).tolist()
    try:
        return np.fromiter((index[e] for e in ext), dtype=np.int64, count=len(ext))
    except KeyError as err:
        raise KeyError(f"unknown {kind} id {err.args[0]!r} in {obj.name}") from None


def as_csr(data: Interactions | sp.spmatrix, binary: bool = True) -> sp.csr_matrix:
    """A float32 CSR user×item matrix from `Interactions` or any scipy sparse matrix."""
    if isinstance(data, Interactions):
        return data.to_csr(binary=binary)
    if sp.issparse(data):
        mat = sp.csr_matrix(data, dtype=np.float32)
        if binary:
            mat = mat.copy()
            mat.data[:] = 1.0
        return mat
    raise TypeError(f"expected Interactions or a scipy sparse matrix, got {type(data).__name__}")
