"""Item–item co-occurrence graph (WeChat graph-exploration paper, Sec. 3.1).

Items are nodes; an edge joins two items positively interacted within one user session and
its weight counts the co-occurrences. Sessions come from timestamps (a new session starts
when the gap to the user's previous positive exceeds `session_gap`) or, without timestamps,
each user's whole ordered sequence is one session. Within a session, either every pair of
distinct items co-occurs (``window=None``: weight = number of sessions holding both), or
only items at most ``window`` positions apart (sliding window over the ordered session:
weight = number of such position pairs).

Everything is vectorized with numpy / scipy.sparse; :meth:`ItemGraph.add_edges` and
:meth:`ItemGraph.add_sessions` grow the graph incrementally (new sessions, new items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.persist import Persistable
from divrec.stage import Configured, NotFittedError, StageConfig, param

__all__ = ["ItemGraph", "ItemGraphConfig", "cooccurrence_matrix", "session_ids"]


def session_ids(
    users: np.ndarray, timestamps: np.ndarray | None, gap: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Orders events by (user, time) and numbers their sessions.

    Args:
        users: `(nnz,)` user of each event.
        timestamps: `(nnz,)` event times, or None (the given row order is the sequence).
        gap: a new session starts when the time since the user's previous event is
            greater than `gap`; None: one session per user.

    Returns:
        `(order (nnz,), session (nnz,))`: `order` sorts the events by user then time (stable
        for ties), `session[i]` is the session number of event `order[i]` (consecutive
        integers from 0, non-decreasing).
    """
    users = np.asarray(users, dtype=np.int64)
    n = users.shape[0]
    if timestamps is None:
        order = np.argsort(users, kind="stable")
        times = np.zeros(n)
    else:
        times_all = np.asarray(timestamps, dtype=np.float64)
        order = np.lexsort((np.arange(n), times_all, users))
        times = times_all[order]
    u = users[order]
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = u[1:] != u[:-1]
        if gap is not None and timestamps is not None:
            new[1:] |= (times[1:] - times[:-1]) > gap
    return order, np.cumsum(new) - 1


def cooccurrence_matrix(
    sessions: np.ndarray, items: np.ndarray, n_items: int, window: int | None = None
) -> sp.csr_matrix:
    """Symmetric co-occurrence counts of items within sessions (zero diagonal).

    Args:
        sessions: `(nnz,)` session of each event, events of one session contiguous and in
            order (as returned by :func:`session_ids`).
        items: `(nnz,)` item of each event, in the same order.
        n_items: number of nodes.
        window: None: `W_ij` = number of sessions containing both `i` and `j`;
            an int `w >= 1`: `W_ij` = number of position pairs `p < q ≤ p + w` of one session
            holding `{i, j}` (`i ≠ j`).

    Returns:
        `(n_items, n_items)` float32 symmetric CSR with zero diagonal.
    """
    sessions = np.asarray(sessions, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if sessions.shape != items.shape or sessions.ndim != 1:
        raise ValueError("sessions and items must be 1-D arrays of one length")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item index out of range [0, {n_items})")
    if window is None:
        if items.size == 0:
            return sp.csr_matrix((n_items, n_items), dtype=np.float32)
        n_sess = int(sessions.max()) + 1
        inc = sp.csr_matrix(
            (np.ones(items.size, dtype=np.float32), (sessions, items)), shape=(n_sess, n_items)
        )
        inc.data[:] = 1.0  # repeated (session, item) events were summed: count once
        co = (inc.T @ inc).tocsr()
        co.setdiag(0.0)
        co.eliminate_zeros()
        return co.astype(np.float32)
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be None or an int >= 1, got {window!r}")
    rows, cols = [], []
    for d in range(1, int(window) + 1):
        if d >= items.size:
            break
        same = sessions[d:] == sessions[:-d]
        a, b = items[:-d][same], items[d:][same]
        keep = a != b
        rows.append(a[keep])
        cols.append(b[keep])
    empty = [np.zeros(0, np.int64)]
    return _symmetric(np.concatenate(rows or empty), np.concatenate(cols or empty), None, n_items)


def _symmetric(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray | None, n: int
) -> sp.csr_matrix:
    w = np.ones(rows.size, dtype=np.float32) if weights is None else weights.astype(np.float32)
    m = sp.coo_matrix((np.r_[w, w], (np.r_[rows, cols], np.r_[cols, rows])), shape=(n, n)).tocsr()
    m.sum_duplicates()
    return m


@dataclass(frozen=True, kw_only=True)
class ItemGraphConfig(StageConfig):
    """`ItemGraph` hyperparameters (how sessions and co-occurrences are cut).

    Attributes:
        session_gap: seconds of inactivity that end a session, finite and >= 0 (None: a
            user's whole sequence is one session; also used when the log has no timestamps).
        window: co-occurrence window within a session, >= 1 (None: all pairs of the
            session).
        min_value: only events with value ≥ `min_value` are positives (None: all events).
    """

    session_gap: float | None = param(3600.0, ge=0.0)
    window: int | None = param(5, ge=1)
    min_value: float | None = None


class ItemGraph(Configured, Persistable):
    """The item co-occurrence graph of the WeChat paper (Sec. 3.1).

    A component of `divrec.retrieval.graphsage.GraphRetriever`, not a recommender: built
    with `ItemGraph(session_gap=..., window=..., min_value=...)` (or an `ItemGraphConfig`).

    Attributes:
        adjacency_: `(n_items, n_items)` float32 symmetric CSR co-occurrence counts, zero
            diagonal.
        n_items_: number of nodes.
    """

    Config = ItemGraphConfig

    def fit(self, data: Interactions) -> ItemGraph:
        """Builds the graph from the positives of `data`; returns self."""
        self.n_items_ = data.n_items
        self.adjacency_ = sp.csr_matrix((data.n_items, data.n_items), dtype=np.float32)
        self.add_interactions(data)
        return self

    def _check(self) -> None:
        if not hasattr(self, "adjacency_"):
            raise NotFittedError("ItemGraph is not fitted; call fit first")

    def add_interactions(self, data: Interactions) -> ItemGraph:
        """Adds the sessions of another log over the same (or a prefix of the) item universe."""
        self._check()
        keep = np.ones(data.nnz, dtype=bool)
        if self.min_value is not None:
            keep = data.values >= self.min_value
        users, items = data.users[keep], data.items[keep]
        ts = None if data.timestamps is None else data.timestamps[keep]
        order, sess = session_ids(users, ts, self.session_gap)
        self._grow(data.n_items)
        self.adjacency_ = (
            self.adjacency_ + cooccurrence_matrix(sess, items[order], self.n_items_, self.window)
        ).tocsr()
        return self

    def add_sessions(self, sessions: Sequence[Sequence[int]]) -> ItemGraph:
        """Adds sessions given as ordered item lists (e.g. one simulated feed's clicks)."""
        self._check()
        lens = np.array([len(s) for s in sessions], dtype=np.int64)
        items = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in sessions])
            if lens.sum()
            else np.zeros(0, np.int64)
        )
        sess = np.repeat(np.arange(lens.size), lens)
        if items.size:
            self._grow(int(items.max()) + 1)
        self.adjacency_ = (
            self.adjacency_ + cooccurrence_matrix(sess, items, self.n_items_, self.window)
        ).tocsr()
        return self

    def add_edges(
        self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray | None = None
    ) -> ItemGraph:
        """Adds undirected edges `rows[e] — cols[e]` with `weights[e]` (default 1); self-loops
        are dropped; new node indices grow the graph."""
        self._check()
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        if rows.shape != cols.shape:
            raise ValueError("rows and cols must have one length")
        w = None if weights is None else np.asarray(weights, dtype=np.float32).reshape(-1)
        if w is not None and (w.shape != rows.shape or not np.all(np.isfinite(w))):
            raise ValueError("weights must be finite and match rows")
        if rows.size and min(rows.min(), cols.min()) < 0:
            raise ValueError("node indices must be >= 0")
        keep = rows != cols
        if rows.size:
            self._grow(int(max(rows.max(), cols.max())) + 1)
        rows, cols = rows[keep], cols[keep]
        w = None if w is None else w[keep]
        self.adjacency_ = (self.adjacency_ + _symmetric(rows, cols, w, self.n_items_)).tocsr()
        return self

    def _grow(self, n: int) -> None:
        if n > self.n_items_:
            a = self.adjacency_.tocoo()
            self.adjacency_ = sp.csr_matrix((a.data, (a.row, a.col)), shape=(n, n))
            self.n_items_ = n

    @property
    def n_edges(self) -> int:
        """Undirected edges (non-zero pairs)."""
        self._check()
        return int(self.adjacency_.nnz // 2)

    def degrees(self) -> np.ndarray:
        """`(n_items,)` number of neighbours per node."""
        self._check()
        return np.diff(self.adjacency_.indptr)


def prune_top_neighbors(adjacency: sp.csr_matrix, max_neighbors: int | None) -> sp.csr_matrix:
    """Keeps each node's `max_neighbors` heaviest edges (ties: lower index), then symmetrizes
    by the union (an edge kept by either end stays, with its weight)."""
    a = adjacency.tocsr()
    if max_neighbors is None:
        return a
    a.sort_indices()
    deg = np.diff(a.indptr)
    if deg.size == 0 or deg.max() <= max_neighbors:
        return a
    row = np.repeat(np.arange(a.shape[0]), deg)
    order = np.lexsort((a.indices, -a.data, row))  # per row: heaviest first
    rank = np.arange(a.nnz) - a.indptr[row[order]]
    keep = order[rank < max_neighbors]
    m = sp.csr_matrix((a.data[keep], (row[keep], a.indices[keep])), shape=a.shape)
    union = m.maximum(m.T)
    return union.tocsr()
