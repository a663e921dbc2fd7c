"""Evaluation on request-level candidate sets (CDM Table 2 protocol).

:func:`request_split` builds the training and test requests of one dataset
(:mod:`divrec.splitting.candidate_requests`, iALS pre-ranker by default);
:func:`list_metrics` scores the top-K lists of the test requests with CDM's metrics:
Recall@K and MRR@K against all target-period items of the request (items the pre-ranker
missed count as misses), ILAD@K (Eq. 21) in the given item spaces and the system-level
CC@K (Eq. 22); :func:`summarize` adds percentile-bootstrap 95% CIs over requests.

More training requests (issue 25): :func:`sliding_requests` stacks the requests of several
time cuts (each cut's history, the pre-ranker refitted on it, the next period as labels), so a
user has one candidate list per cut; :func:`request_split` does so with ``train_cuts > 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.evaluation.harness import bootstrap_ci
from divrec.metrics.accuracy import hits_matrix, mrr_at_k, recall_at_k
from divrec.metrics.diversity import category_coverage, ilad, user_category_coverage
from divrec.splitting.candidate_requests import (
    CandidateRequests,
    candidate_requests,
    request_periods,
    request_stats,
)

__all__ = [
    "CutRequests",
    "genre_vectors",
    "list_metrics",
    "request_split",
    "sliding_cuts",
    "sliding_requests",
    "summarize",
]


@dataclass
class CutRequests(CandidateRequests):
    """Requests of several time cuts: each request has its own history row.

    Attributes (besides `CandidateRequests`'):
        hist_rows: `(R,)` row of `history` holding the request's history (the user's
            interactions before the request's cut, recency-valued); `history` is then
            `(H, n_items)` with one row per (cut, user), not per user.
        cuts: `(R,)` history_end of each request's cut.
    """

    hist_rows: np.ndarray | None = None
    cuts: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> CutRequests:
        rows = np.asarray(rows)
        base = CandidateRequests.take(self, rows)
        return CutRequests(
            **{f: getattr(base, f) for f in base.__dataclass_fields__},
            hist_rows=None if self.hist_rows is None else self.hist_rows[rows],
            cuts=None if self.cuts is None else self.cuts[rows],
        )


def sliding_cuts(
    data: Interactions, n_cuts: int, first: float, last: float, window: float
) -> list[tuple[int, int]]:
    """`n_cuts` (history_end, target_end) pairs at timestamp quantiles `q_j` evenly spaced in
    `[first, last]`, each target window `[t(q_j), t(q_j + window))`, the last capped at
    `t(last + window)` (so a cut at `last = q0` with `window = q1 − q0` ends at `t1`)."""
    if n_cuts < 1:
        raise ValueError(f"sliding_cuts: n_cuts must be >= 1, got {n_cuts}")
    if not 0.0 < first <= last < 1.0 or not 0.0 < window <= 1.0 - last:
        raise ValueError(
            f"sliding_cuts: need 0 < first <= last < 1 and 0 < window <= 1 - last, got "
            f"first={first}, last={last}, window={window}"
        )
    ts = data.timestamps
    qs = np.linspace(first, last, n_cuts) if n_cuts > 1 else np.array([last])
    out = []
    for q in qs:
        h, t = int(np.quantile(ts, q)), int(np.quantile(ts, min(q + window, last + window)))
        if h < t and (h, t) not in out:
            out.append((h, t))
    return out


def sliding_requests(
    data: Interactions,
    cuts: Sequence[tuple[int, int]],
    make_pre_ranker: Callable[[], Any],
    n_candidates: int = 200,
    max_requests: int | None = None,
    seed: int = 0,
) -> CutRequests:
    """The requests of every cut, stacked (:func:`candidate_requests` per cut).

    Args:
        data: a timestamped log.
        cuts: (history_end, target_end) pairs; a user active in several target windows gets
            one request (candidate list) per cut.
        make_pre_ranker: returns a new unfitted pre-ranker (fitted on each cut's history).
        n_candidates: N.
        max_requests: a seeded random subset of at most this many requests over all cuts.
        seed: seed of that subset.

    Returns:
        `CutRequests` (`history_end`/`target_end` None; `cuts` per request) ordered by cut,
        then user.
    """
    if not cuts:
        raise ValueError("sliding_requests: cuts is empty")
    parts, hists, offset = [], [], 0
    for h_end, t_end in cuts:
        try:
            req = candidate_requests(data, h_end, t_end, make_pre_ranker(), n_candidates)
        except ValueError as err:
            if "no user has both" in str(err):
                continue
            raise
        hists.append(req.history[req.users])
        parts.append((req, offset + np.arange(len(req)), h_end))
        offset += len(req)
    if not parts:
        raise ValueError("sliding_requests: no cut has a request")
    width = max(p[0].candidates.shape[1] for p in parts)

    def pad(x: np.ndarray, fill) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)

    out = CutRequests(
        users=np.concatenate([p[0].users for p in parts]),
        candidates=np.concatenate([pad(p[0].candidates, -1) for p in parts]),
        labels=np.concatenate([pad(p[0].labels, 0.0) for p in parts]),
        targets=sp.vstack([p[0].targets for p in parts]).tocsr(),
        history=sp.vstack(hists).tocsr(),
        prescores=np.concatenate([pad(p[0].prescores, -np.inf) for p in parts]),
        hist_rows=np.concatenate([p[1] for p in parts]),
        cuts=np.concatenate([np.full(len(p[0]), p[2], dtype=np.int64) for p in parts]),
    )
    if max_requests is not None and len(out) > max_requests:
        rng = np.random.default_rng(seed)
        out = out.take(np.sort(rng.choice(len(out), size=int(max_requests), replace=False)))
    return out


def request_split(
    data: Interactions,
    quantiles: tuple[float, float] = (0.7, 0.85),
    pre_ranker: str = "ials",
    pre_ranker_params: dict[str, Any] | None = None,
    n_candidates: int = 200,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    train_cuts: int = 1,
    first_cut: float = 0.3,
) -> dict[str, Any]:
    """Training and test requests of `data` with a registered pre-ranker.

    Args:
        train_cuts: 1 (default) = one training cut `(t0, t1)`; n > 1 = `n` sliding cuts at
            quantiles evenly spaced in `[first_cut, q0]`, each with a target window of
            `q1 − q0` (:func:`sliding_cuts`, the last one is `(t0, t1)`), stacked
            (:func:`sliding_requests`); nothing at or after `t1` is seen either way.
        first_cut: quantile of the earliest training cut (`train_cuts > 1`).

    Returns:
        `{"train": CandidateRequests, "test": CandidateRequests, "periods": {...},
        "stats": {"train": {...}, "test": {...}}}` (Table-1 statistics per side).
    """
    from divrec.registry import create

    periods = request_periods(data, quantiles)
    out: dict[str, Any] = {"periods": periods, "stats": {}}
    for side, cap in (("train", max_train), ("test", max_test)):
        if side == "train" and train_cuts > 1:
            q0, q1 = (float(q) for q in quantiles)
            cuts = sliding_cuts(data, int(train_cuts), float(first_cut), q0, q1 - q0)
            # the last cut is exactly (t0, t1) and none ends after t1: q0 + (q1 − q0) need
            # not equal q1 in floating point (0.2 + 0.65 = 0.8499999999999999)
            t0, t1 = periods["train"]
            cuts = [
                c for c in dict.fromkeys((h, min(t, t1)) for h, t in cuts[:-1])
                if c[0] < c[1] and c != (t0, t1)
            ] + [(t0, t1)]  # fmt: skip
            out["periods"]["train_cuts"] = cuts
            out[side] = sliding_requests(
                data, cuts, lambda: create("model", pre_ranker, pre_ranker_params or {}, seed=seed),
                n_candidates=n_candidates, max_requests=cap, seed=seed,
            )  # fmt: skip
            out["stats"][side] = request_stats(out[side])
            continue
        pre = create("model", pre_ranker, pre_ranker_params or {}, seed=seed)
        req = candidate_requests(
            data, *periods[side], pre, n_candidates=n_candidates, max_requests=cap, seed=seed
        )
        out[side] = req
        out["stats"][side] = request_stats(req)
    return out


def genre_vectors(item_categories: sp.csr_matrix) -> np.ndarray:
    """`(n_items, C)` dense multi-hot category vectors (cosine = genre overlap)."""
    return np.asarray(sp.csr_matrix(item_categories).todense(), dtype=np.float32)


def list_metrics(
    lists: np.ndarray,
    req: CandidateRequests,
    ks: tuple[int, ...],
    spaces: dict[str, np.ndarray],
    item_categories: sp.csr_matrix | None,
) -> dict[str, np.ndarray | float]:
    """Per-request metrics of ranked lists.

    Args:
        lists: `(R, K_max)` item ids best first, −1 padded.
        req: the test requests (targets).
        ks: list lengths.
        spaces: name → `(n_items, d)` item vectors for ILAD.
        item_categories: `(n_items, C)` categories for CC (None: no CC).

    Returns:
        `{"recall@K": (R,), "mrr@K": (R,), "ilad_<space>@K": (R,), "ucc@K": (R,),
        "cc@K": float}`.
    """
    hits = hits_matrix(lists, req.targets)
    n_rel = np.diff(req.targets.indptr).astype(np.float64)
    out: dict[str, np.ndarray | float] = {}
    for k in ks:
        top = lists[:, :k]
        out[f"recall@{k}"] = recall_at_k(hits, n_rel, k)
        out[f"mrr@{k}"] = mrr_at_k(hits, k)
        for name, vecs in spaces.items():
            out[f"ilad_{name}@{k}"] = ilad(top, vecs)
        if item_categories is not None:
            out[f"cc@{k}"] = category_coverage(top, item_categories)
            out[f"ucc@{k}"] = user_category_coverage(top, item_categories)
    return out


def summarize(
    metrics: dict[str, np.ndarray | float],
    lists: np.ndarray | None = None,
    item_categories: sp.csr_matrix | None = None,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Means with percentile-bootstrap 95% CIs over requests (CC: resampled lists)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name, val in metrics.items():
        if isinstance(val, np.ndarray):
            v = val[np.isfinite(val)]
            lo, hi = bootstrap_ci(v, n_bootstrap, 0.025, rng)
            out[name] = {"mean": float(v.mean()), "low": lo, "high": hi}
        else:
            entry = {"mean": float(val), "low": float("nan"), "high": float("nan")}
            if lists is not None and item_categories is not None and n_bootstrap > 0:
                k = int(name.split("@")[1])
                idx = rng.integers(0, len(lists), size=(min(n_bootstrap, 200), len(lists)))
                boot = [category_coverage(lists[i, :k], item_categories) for i in idx]
                entry["low"], entry["high"] = (float(x) for x in np.quantile(boot, [0.025, 0.975]))
            out[name] = entry
    return out
