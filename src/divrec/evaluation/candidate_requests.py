"""Evaluation on request-level candidate sets (CDM Table 2 protocol).

:func:`request_split` builds the training and test requests of one dataset
(:mod:`divrec.splitting.candidate_requests`, iALS pre-ranker by default);
:func:`list_metrics` scores the top-K lists of the test requests with CDM's metrics:
Recall@K and MRR@K against all target-period items of the request (items the pre-ranker
missed count as misses), ILAD@K (Eq. 21) in the given item spaces and the system-level
CC@K (Eq. 22); :func:`summarize` adds percentile-bootstrap 95% CIs over requests.
"""

from __future__ import annotations

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

__all__ = ["genre_vectors", "list_metrics", "request_split", "summarize"]


def request_split(
    data: Interactions,
    quantiles: tuple[float, float] = (0.7, 0.85),
    pre_ranker: str = "ials",
    pre_ranker_params: dict[str, Any] | None = None,
    n_candidates: int = 200,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Training and test requests of `data` with a registered pre-ranker.

    Returns:
        `{"train": CandidateRequests, "test": CandidateRequests, "periods": {...},
        "stats": {"train": {...}, "test": {...}}}` (Table-1 statistics per side).
    """
    from divrec.registry import create

    periods = request_periods(data, quantiles)
    out: dict[str, Any] = {"periods": periods, "stats": {}}
    for side, cap in (("train", max_train), ("test", max_test)):
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
