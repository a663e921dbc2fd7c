"""Request-level candidate sets (CDM paper, Sec. 4.1.1 and Table 1) built from public logs.

Industrial ranking data has, per user request, the few hundred candidates the pre-ranker
passed on. Public logs do not, so we build them the way a two-stage system does:

1. a pre-ranker (any divrec `Recommender`, iALS by default in
   :func:`divrec.evaluation.candidate_requests.request_split`) is fitted on a *history* period
   (interactions with timestamp ``< history_end``);
2. each *request* is one user with at least one interaction in the *target* period
   ``[history_end, target_end)`` and at least one history interaction; its candidates are
   the pre-ranker's top ``n_candidates`` items (the user's history items excluded);
3. the labels of a request are the user's target-period items: ``labels[r, j] = 1`` when
   candidate ``j`` is one of them; ``targets`` keeps all of them (also those the pre-ranker
   missed, which count in Recall).

Training requests come from an earlier cut than test requests (:func:`request_periods`:
``train`` uses ``[t0, t1)`` as target and ``< t0`` as history; ``test`` uses ``[t1, t2)`` and
``< t1``), so nothing at or after ``t1`` is seen while training.

This module is in the splitting layer: the pre-ranker is passed in (duck-typed: ``fit`` and
``recommend``), never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.splitting._util import check_data, check_int

__all__ = [
    "CandidateRequests",
    "candidate_requests",
    "request_periods",
    "request_stats",
    "recency_matrix",
    "self_requests",
]


def recency_matrix(data: Interactions) -> sp.csr_matrix:
    """`(n_users, n_items)` float32 CSR whose value orders each user's items by recency.

    The nonzero pattern is the binary interaction matrix; the value of `(u, i)` is
    `1 + rank` of the user's *latest* interaction with `i` among the user's rows in time order
    (:func:`~divrec.splitting._util.chronological_order`: timestamp, then row position; by
    position without timestamps), so a larger value is a more recent item. Readers of "the
    last L history items" (`divrec.ranking.dcn.history_table`) sort a row by these values;
    CSR column order is item-id order and says nothing about time.
    """
    from divrec.splitting._util import chronological_order, rank_within_user

    order = chronological_order(data)
    rank, _ = rank_within_user(data.users[order], data.n_users)
    users, items = data.users[order], data.items[order]
    # a repeated (user, item) keeps its latest rank: duplicates are merged by max
    key = users.astype(np.int64) * data.n_items + items
    last = np.zeros(0, dtype=np.int64)
    if key.size:
        _, first_rev = np.unique(key[::-1], return_index=True)
        last = key.size - 1 - first_rev
    mat = sp.csr_matrix(
        ((rank[last] + 1).astype(np.float32), (users[last], items[last])),
        shape=(data.n_users, data.n_items),
        dtype=np.float32,
    )
    mat.sort_indices()
    return mat


@dataclass
class CandidateRequests:
    """Labeled training requests: a `Query` and its `Candidates`, plus labels.

    This is not a third request type: a ranking model's *training* data is the pipeline's
    own request pair (`query()`: the users, seen items excluded; `candidates()`: the
    pre-ranker's lists and scores) with what the user did with each candidate.

    Attributes:
        users: `(R,)` internal user index of each request.
        candidates: `(R, N)` int64 candidate items in pre-ranker order, −1 padded.
        labels: `(R, N)` float32, 1 where the candidate is a target-period item.
        targets: `(R, n_items)` binary CSR of all target-period items of each request.
        history: `(n_users, n_items)` CSR of the history period (features and seen-item
            exclusion of the requests); its nonzeros are the history items and, when built
            from a timestamped log, their values are recency ranks (:func:`recency_matrix`,
            larger = more recent); a binary history means "no order known".
        history_end: timestamp cut between history and target (None for per-user cuts).
        target_end: end (exclusive) of the target period (None for per-user cuts).
        prescores: `(R, N)` float32 pre-ranker scores of the candidates (−inf padded).
    """

    users: np.ndarray
    candidates: np.ndarray
    labels: np.ndarray
    targets: sp.csr_matrix
    history: sp.csr_matrix
    history_end: int | None = None
    target_end: int | None = None
    prescores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """`(R, N)` bool mask of real candidates."""
        return self.candidates >= 0

    def query(self) -> Query:
        """The requests as the pipeline's `Query` (`(R,)` users)."""
        return Query(users=self.users)

    def as_candidates(self) -> Candidates:
        """The candidate lists as the pipeline's `Candidates` (pre-ranker scores; where none
        were kept, decreasing scores in list order)."""
        if self.prescores is not None:
            scores = np.where(self.valid, self.prescores, -np.inf)
        else:
            n = self.candidates.shape[1]
            scores = np.where(self.valid, -np.arange(n, dtype=np.float32)[None, :], -np.inf)
        return Candidates(self.candidates, scores)

    def take(self, rows: np.ndarray) -> CandidateRequests:
        """The requests `rows` (same history matrix)."""
        rows = np.asarray(rows)
        return CandidateRequests(
            users=self.users[rows],
            candidates=self.candidates[rows],
            labels=self.labels[rows],
            targets=self.targets[rows],
            history=self.history,
            history_end=self.history_end,
            target_end=self.target_end,
            prescores=None if self.prescores is None else self.prescores[rows],
        )


def request_periods(data: Interactions, quantiles: tuple[float, float] = (0.7, 0.85)) -> dict:
    """Global time cuts `t0 < t1` at the given quantiles of the timestamps.

    Returns:
        `{"train": (t0, t1), "test": (t1, t_max + 1)}`: (history_end, target_end) of the
        training and the test requests.
    """
    data = check_data(data, "request_periods")
    if data.timestamps is None or data.nnz == 0:
        raise ValueError("request_periods: the data has no timestamps")
    q0, q1 = (float(q) for q in quantiles)
    if not 0.0 < q0 < q1 < 1.0:
        raise ValueError(
            f"request_periods: quantiles must satisfy 0 < q0 < q1 < 1, got {quantiles}"
        )
    ts = data.timestamps
    t0, t1 = (int(np.quantile(ts, q)) for q in (q0, q1))
    if not t0 < t1:
        raise ValueError(f"request_periods: the quantile cuts coincide ({t0})")
    return {"train": (t0, t1), "test": (t1, int(ts.max()) + 1)}


def candidate_requests(
    data: Interactions,
    history_end: int,
    target_end: int,
    pre_ranker: Any,
    n_candidates: int = 200,
    min_history: int = 1,
    max_requests: int | None = None,
    seed: int = 0,
) -> CandidateRequests:
    """Requests of one (history, target) cut with the pre-ranker's top-N candidates.

    Args:
        data: a timestamped log.
        history_end: interactions with `timestamp < history_end` form the history.
        target_end: the target period is `[history_end, target_end)`.
        pre_ranker: an *unfitted* recommender (`fit(Interactions)`, `recommend(users, k)`);
            it is fitted on the history only.
        n_candidates: N, candidates per request.
        min_history: users with fewer history interactions get no request.
        max_requests: keep a seeded random subset of at most this many requests.
        seed: seed of that subset.

    Returns:
        The `CandidateRequests` (users sorted).
    """
    data = check_data(data, "candidate_requests")
    n_candidates = check_int(n_candidates, "n_candidates", "candidate_requests", 1)
    if data.timestamps is None:
        raise ValueError("candidate_requests: the data has no timestamps")
    if not int(history_end) < int(target_end):
        raise ValueError("candidate_requests: history_end must be < target_end")
    ts = data.timestamps
    hist = data.select(ts < history_end)
    tgt = data.select((ts >= history_end) & (ts < target_end))
    hist_csr = hist.to_csr(binary=True)
    tgt_csr = tgt.to_csr(binary=True)
    n_hist = np.diff(hist_csr.indptr)
    users = np.flatnonzero((np.diff(tgt_csr.indptr) > 0) & (n_hist >= max(1, min_history)))
    # targets that are already in the history (re-ratings) are not new interactions
    tgt_csr = (tgt_csr - tgt_csr.multiply(hist_csr)).tocsr()
    tgt_csr.eliminate_zeros()
    users = users[np.diff(tgt_csr.indptr)[users] > 0]
    if max_requests is not None and users.size > max_requests:
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(users, size=int(max_requests), replace=False))
    if users.size == 0:
        raise ValueError("candidate_requests: no user has both history and target interactions")
    pre_ranker.fit(hist)
    ids, scores = pre_ranker.recommend(users, k=n_candidates, exclude_seen=True)
    # the request history carries recency ranks: "the last L items" are the latest by time
    hist_rec = recency_matrix(hist)
    return _label(users, ids, scores, tgt_csr[users], hist_rec, history_end, target_end)


def _label(users, ids, scores, targets, hist_csr, history_end, target_end) -> CandidateRequests:
    ids = np.asarray(ids, dtype=np.int64)
    targets = sp.csr_matrix(targets, dtype=np.float32)
    rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
    safe = np.maximum(ids, 0).ravel()
    labels = np.asarray(targets[rows, safe]).reshape(ids.shape).astype(np.float32)
    labels[ids < 0] = 0.0
    return CandidateRequests(
        users=np.asarray(users, dtype=np.int64),
        candidates=ids,
        labels=labels,
        targets=targets,
        history=hist_csr,
        history_end=None if history_end is None else int(history_end),
        target_end=None if target_end is None else int(target_end),
        prescores=np.asarray(scores, dtype=np.float32),
    )


def self_requests(
    train: Interactions | sp.spmatrix,
    pre_ranker: Any | None = None,
    n_candidates: int = 200,
    target_frac: float = 0.2,
    n_negatives: int = 4,
    seed: int = 0,
    max_targets: int = 20,
) -> CandidateRequests:
    """Training requests carved out of one training log (for `fit(train)` without requests).

    Each user's last `target_frac` of interactions (by timestamp; by position without
    timestamps) are the target, the rest the history. With a `pre_ranker` (unfitted; fitted
    on the histories) the candidates are its top `n_candidates`; without one they are the
    user's targets (at most `max_targets`, a seeded sample; the others stay unlabelled
    targets) plus `n_negatives` random items per target.

    Returns:
        `CandidateRequests` with `history_end = target_end = None` (a per-user cut).
    """
    from divrec.data.interactions import as_csr

    rng = np.random.default_rng(seed)
    if isinstance(train, Interactions):
        from divrec.splitting._util import chronological_order, rank_within_user

        order = chronological_order(train)
        rank, counts = rank_within_user(train.users[order], train.n_users)
        n_tgt = np.floor(counts * float(target_frac) + 0.5).astype(np.int64)
        n_tgt = np.where(counts >= 2, np.maximum(n_tgt, 1), 0)
        is_tgt = np.zeros(train.nnz, dtype=bool)
        is_tgt[order] = rank >= (counts - n_tgt)[train.users[order]]
        hist_data, tgt_data = train.select(~is_tgt), train.select(is_tgt)
        hist_csr, tgt_csr = recency_matrix(hist_data), tgt_data.to_csr(binary=True)
    else:
        mat = as_csr(train, binary=True)
        coo = mat.tocoo()
        is_tgt = rng.random(coo.nnz) < float(target_frac)
        shape = mat.shape
        hist_csr = sp.csr_matrix((coo.data[~is_tgt], (coo.row[~is_tgt], coo.col[~is_tgt])), shape)
        tgt_csr = sp.csr_matrix((coo.data[is_tgt], (coo.row[is_tgt], coo.col[is_tgt])), shape)
        hist_data = hist_csr
    users = np.flatnonzero((np.diff(tgt_csr.indptr) > 0) & (np.diff(hist_csr.indptr) > 0))
    if users.size == 0:
        raise ValueError("self_requests: no user has both history and target interactions")
    n_items = hist_csr.shape[1]
    if pre_ranker is not None:
        pre_ranker.fit(hist_data)
        ids, scores = pre_ranker.recommend(users, k=n_candidates, exclude_seen=True)
        return _label(users, ids, scores, tgt_csr[users], hist_csr, None, None)
    lists = []
    for u in users:
        pos = tgt_csr.indices[tgt_csr.indptr[u] : tgt_csr.indptr[u + 1]]
        if pos.size > max_targets:
            pos = rng.choice(pos, size=max_targets, replace=False)
        neg = rng.integers(0, n_items, size=n_negatives * pos.size)
        lists.append(np.r_[pos, neg])
    width = max(len(x) for x in lists)
    ids = np.full((users.size, width), -1, dtype=np.int64)
    for r, x in enumerate(lists):
        ids[r, : x.size] = rng.permutation(x)
    scores = np.where(ids >= 0, 0.0, -np.inf).astype(np.float32)
    return _label(users, ids, scores, tgt_csr[users], hist_csr, None, None)


def request_stats(req: CandidateRequests) -> dict[str, float]:
    """Table-1-style statistics of a request set.

    Returns:
        requests, users, candidates_per_request, positives_per_request (labelled candidates),
        targets_per_request (all target items) and pre_ranker_recall (mean over requests of
        the share of target items among the candidates).
    """
    valid = req.valid
    n_tgt = np.diff(req.targets.indptr).astype(np.float64)
    pos = req.labels.sum(axis=1)
    return {
        "requests": len(req),
        "users": int(np.unique(req.users).size),
        "candidates_per_request": float(valid.sum(axis=1).mean()),
        "positives_per_request": float(pos.mean()),
        "targets_per_request": float(n_tgt.mean()),
        "pre_ranker_recall": float(np.mean(pos / np.maximum(n_tgt, 1.0))),
    }
