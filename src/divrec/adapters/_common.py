"""What the adapters share: one re-ranker call on padded candidate lists, knob included."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_reranker", "select_lists"]


def as_reranker(reranker: Any, params: dict[str, Any] | None = None) -> Any:
    """A divrec re-ranker from an instance, or from a registered name and its parameters.

    Args:
        reranker: a `divrec.rerank` re-ranker, or a registry name (``"mmr"``, ``"dpp"``, ...).
        params: hyperparameters for a name (values or strings); not allowed with an instance.
    """
    if isinstance(reranker, str):
        from divrec.registry import create

        return create("re-ranker", reranker, params or {})
    if params:
        raise ValueError("params are for a re-ranker given by name, not an instance")
    if not hasattr(reranker, "select_batch"):
        raise ValueError(f"reranker must be a divrec re-ranker, got {type(reranker).__name__}")
    return reranker


def select_lists(
    reranker: Any,
    relevance: np.ndarray,
    valid: np.ndarray,
    k: int,
    *,
    vectors: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    diversity: Any = None,
) -> np.ndarray:
    """Positions ``(B, k)`` (−1 padded) a re-ranker selects from padded candidate lists.

    The inputs the re-ranker declares (``_stage_inputs``: vectors, categories) are passed to
    its ``select_batch``; the diversity knob (``Query.diversity`` semantics) is mapped with its
    ``diversity_params``, and a knob of 0 answers in relevance order, as in a `Pipeline`.

    Args:
        reranker: a `divrec.rerank` re-ranker.
        relevance: ``(B, N)`` scores (anything at padding).
        valid: ``(B, N)`` bool mask of real candidates.
        k: list length.
        vectors: ``(B, N, d)`` item vectors, or None.
        categories: ``(B, N)`` int categories (−1 none), or None.
        diversity: None (the re-ranker's own setting), one knob in [0, 1], or ``(B,)``.

    Returns:
        ``(B, k)`` int64 positions into each row, −1 padded.
    """
    relevance = np.where(valid, np.asarray(relevance, dtype=np.float64), 0.0)
    inputs = getattr(reranker, "_stage_inputs", ("vectors", "categories"))
    kw: dict[str, Any] = {}
    if vectors is not None and "vectors" in inputs:
        kw["vectors"] = vectors
    if categories is not None and "categories" in inputs:
        kw["categories"] = categories
    if diversity is None:
        return reranker.select_batch(relevance, k, valid=valid, **kw)
    b = relevance.shape[0]
    d = np.broadcast_to(np.asarray(diversity, dtype=np.float64), (b,))
    if not np.all(np.isfinite(d)) or d.min(initial=0.0) < 0 or d.max(initial=0.0) > 1:
        raise ValueError("diversity must be in [0, 1]")
    out = np.full((b, k), -1, dtype=np.int64)
    zero = d <= 0.0
    if zero.any():  # relevance order, ties by position, padding last
        key = np.where(valid[zero], -relevance[zero], np.inf)
        order = np.argsort(key, axis=1, kind="stable")[:, :k]
        got = np.take_along_axis(valid[zero], order, axis=1)
        out[zero, : order.shape[1]] = np.where(got, order, -1)
    rows = np.flatnonzero(~zero)
    if rows.size:
        sub = {key: value[rows] for key, value in kw.items()}
        params = reranker.diversity_params(d[rows])
        out[rows] = reranker.select_batch(
            relevance[rows], k, valid=valid[rows], **{**params, **sub}
        )
    return out


def group_candidates(
    users: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A long candidate table as padded per-user lists, each sorted by decreasing score.

    Args:
        users: ``(R,)`` user id of each row (any hashable ids).
        items: ``(R,)`` internal item index of each row.
        scores: ``(R,)`` float64 finite scores.

    Returns:
        ``(user_ids (B,), ids (B, N), rel (B, N), valid (B, N), rows (B, N))``: the distinct
        users in first-seen order, their candidates (−1 padded) in decreasing score order
        (ties: table order), the scores (0 at padding), the mask of real entries, and each
        entry's row in the table (−1 at padding).
    """
    import pandas as pd

    codes, uniq = pd.factorize(pd.Series(users), sort=False)
    r = codes.shape[0]
    order = np.lexsort((np.arange(r), -scores, codes))
    c = codes[order]
    counts = np.bincount(c, minlength=len(uniq))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    cols = np.arange(r) - starts[c]
    n = int(counts.max(initial=0))
    shape = (len(uniq), n)
    ids = np.full(shape, -1, dtype=np.int64)
    rel = np.zeros(shape, dtype=np.float64)
    rows = np.full(shape, -1, dtype=np.int64)
    ids[c, cols] = items[order]
    rel[c, cols] = scores[order]
    rows[c, cols] = order
    return np.asarray(uniq), ids, rel, ids >= 0, rows
