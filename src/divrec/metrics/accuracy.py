"""Accuracy metrics: top-K hit-based metrics, ROC AUC and precision/recall operating points.

Conventions (shared by all of :mod:`divrec.metrics`):

* ``recommended`` is a ``(U, K)`` int64 batch of item indices; ``-1`` marks padding and
  never counts as a hit.
* Ground truth is a ``scipy.sparse`` ``(U, n_items)`` matrix whose nonzeros are the relevant
  items of each row (row ``u`` of the matrix <-> row ``u`` of ``recommended``).
* Per-user metrics take the ``(U, K)`` boolean hit matrix returned by :func:`hits_matrix`
  and return a ``(U,)`` float64 vector; aggregate with ``np.nanmean``.
* A list is assumed not to repeat an item; a repeated relevant item counts as two hits,
  which can push recall/NDCG/MAP above 1.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    check_csr,
    check_hits,
    check_n_relevant,
    check_recommended,
    valid_mask,
)

__all__ = [
    "auc",
    "mean_average_precision",
    "relevance_metrics",
    "hit_rate_at_k",
    "hits_matrix",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_user_auc",
    "precision_at_k",
    "precision_at_recall",
    "recall_at_k",
    "recall_at_precision",
    "relevant_counts",
]


# ---------------------------------------------------------------------------------------------
# Hit matrix
# ---------------------------------------------------------------------------------------------


def hits_matrix(recommended: np.ndarray, relevant_csr) -> np.ndarray:
    """Mark which recommended items are relevant.

    ``hits[u, r] = recommended[u, r] != -1 and relevant_csr[u, recommended[u, r]] != 0``.

    Vectorized lookup: every relevant pair ``(u, i)`` is encoded as the key
    ``u * n_items + i``; the CSR keys are sorted (rows ascending, sorted column indices), so
    all ``U * K`` queries are answered by one ``np.searchsorted``.

    Args:
        recommended: ``(U, K)`` int array of item indices, ``-1`` for padding.
        relevant_csr: ``scipy.sparse`` matrix ``(U, n_items)``; nonzeros are relevant items
            (explicitly stored zeros are not relevant).

    Returns:
        ``(U, K)`` bool array.

    Raises:
        ValueError: If the shapes disagree or an index is out of range.
    """
    rel = check_csr(relevant_csr, "relevant_csr")
    n_users, n_items = rel.shape
    rec = check_recommended(recommended, n_items)
    if rec.shape[0] != n_users:
        raise ValueError(f"recommended has {rec.shape[0]} rows but relevant_csr has {n_users} rows")
    mask, safe = valid_mask(rec)
    if rel.nnz == 0 or rec.size == 0:
        return np.zeros(rec.shape, dtype=bool)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices.astype(np.int64)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + safe
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, keys.size - 1)
    return mask & (keys[pos] == query)


def relevant_counts(relevant_csr) -> np.ndarray:
    """Number of relevant items per user (nonzeros per row).

    Args:
        relevant_csr: ``scipy.sparse`` matrix ``(U, n_items)``.

    Returns:
        ``(U,)`` int64 array, the ``n_relevant`` argument of the per-user metrics.
    """
    rel = check_csr(relevant_csr, "relevant_csr")
    return np.diff(rel.indptr).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Per-user top-K metrics
# ---------------------------------------------------------------------------------------------


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k``, shape ``(k,)``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Hit rate (HR@k): whether at least one of the first ``k`` items is relevant.

    ``HR@k(u) = 1[ sum_{r<=k} hit_{u,r} > 0 ]`` (TotalRecall, App. A.6, Eq. 14; PURS, HR@10).

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``; only the first ``k`` columns count.
        k: Cut-off, ``1 <= k <= K'``.

    Returns:
        ``(U,)`` float64 array of 0/1.
    """
    h, _ = check_hits(hits, k)
    return h.any(axis=1).astype(np.float64)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@k: fraction of the ``k`` slots holding a relevant item.

    ``P@k(u) = (1/k) * sum_{r<=k} hit_{u,r}`` (TotalRecall, App. A.7). The denominator is
    always ``k``, also when the list is padded.

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``.
        k: Cut-off.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]``.
    """
    h, k = check_hits(hits, k)
    return h.sum(axis=1, dtype=np.float64) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k: fraction of the user's relevant items found in the first ``k``.

    ``R@k(u) = sum_{r<=k} hit_{u,r} / n_relevant(u)`` (CDM Sec. 4.1.2; TotalRecall Eq. 16).
    Users with ``n_relevant = 0`` get NaN.

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``.
        n_relevant: ``(U,)`` number of relevant items per user (see :func:`relevant_counts`).
        k: Cut-off.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]`` or NaN.
    """
    h, k = check_hits(hits, k)
    n = check_n_relevant(n_relevant, h.shape[0])
    n_hits = h.sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, n_hits / n, np.nan)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains.

    ``DCG@k(u) = sum_{r<=k} hit_{u,r} / log2(r + 1)``,
    ``IDCG@k(u) = sum_{r<=min(n_relevant(u), k)} 1 / log2(r + 1)``,
    ``NDCG@k = DCG@k / IDCG@k`` (TotalRecall, App. A.6, Eq. 15 is the one-relevant-item case).
    Users with ``n_relevant = 0`` get NaN.

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``.
        n_relevant: ``(U,)`` number of relevant items per user.
        k: Cut-off.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]`` or NaN.
    """
    h, k = check_hits(hits, k)
    n = check_n_relevant(n_relevant, h.shape[0])
    disc = _discounts(k)
    dcg = h.astype(np.float64) @ disc
    ideal = np.concatenate(([0.0], np.cumsum(disc)))
    idcg = ideal[np.minimum(n, k).astype(np.int64)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, dcg / idcg, np.nan)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first hit within the first ``k`` (MRR@k, CDM Sec. 4.1.2).

    ``RR@k(u) = 1 / min{r <= k : hit_{u,r}}``, and 0 when there is no hit in the first ``k``.

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``.
        k: Cut-off.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]``; average it to get MRR@k.
    """
    h, _ = check_hits(hits, k)
    first = np.argmax(h, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision at k (AP@k); its mean over users is MAP@k.

    ``AP@k(u) = (1 / min(n_relevant(u), k)) * sum_{r<=k} P@r(u) * hit_{u,r}`` with
    ``P@r(u) = (1/r) sum_{s<=r} hit_{u,s}``. Users with ``n_relevant = 0`` get NaN.

    Args:
        hits: ``(U, K')`` bool hit matrix with ``K' >= k``.
        n_relevant: ``(U,)`` number of relevant items per user.
        k: Cut-off.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]`` or NaN.
    """
    h, k = check_hits(hits, k)
    n = check_n_relevant(n_relevant, h.shape[0])
    hf = h.astype(np.float64)
    prec_at_r = np.cumsum(hf, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    total = (prec_at_r * hf).sum(axis=1)
    denom = np.minimum(n, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, total / denom, np.nan)


# ---------------------------------------------------------------------------------------------
# ROC AUC
# ---------------------------------------------------------------------------------------------


def _check_scores_labels(scores, labels, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != ndim:
        raise ValueError(f"scores must be {ndim}-D, got shape {s.shape}")
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} does not match labels shape {y.shape}")
    if y.dtype != np.bool_:
        if y.size and not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be boolean or contain only 0/1")
        y = y.astype(bool)
    return s, y


def per_user_auc(
    scores: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """ROC AUC of each row (e.g. each user's candidate set).

    Mann–Whitney form with average ranks for ties, over the valid entries of row ``u``:
    ``AUC(u) = (sum_{pos} rank_u(i) - P(P + 1)/2) / (P * N)``, which equals
    ``P(s_pos > s_neg) + 0.5 * P(s_pos = s_neg)`` over all (positive, negative) pairs, so a
    tied pair counts 0.5. P/N are the numbers of valid positives/negatives; rows with
    ``P = 0`` or ``N = 0`` get NaN. Ranks are computed for all rows at once by one
    ``np.lexsort`` per row (vectorized across rows) and tie-group averaging.

    Args:
        scores: ``(U, C)`` float scores (higher = more relevant); must be finite where valid.
        labels: ``(U, C)`` bool (or 0/1) relevance labels.
        valid: Optional ``(U, C)`` bool mask; invalid entries (e.g. padding) are ignored.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]`` or NaN.

    Raises:
        ValueError: On shape mismatch or non-finite valid scores.
    """
    s, y = _check_scores_labels(scores, labels, 2)
    if valid is None:
        v = np.ones(s.shape, dtype=bool)
    else:
        v = np.asarray(valid)
        if v.shape != s.shape:
            raise ValueError(f"valid shape {v.shape} does not match scores shape {s.shape}")
        v = v.astype(bool)
    if not np.all(np.isfinite(s[v])):
        raise ValueError("scores must be finite where valid")
    n_rows, n_cols = s.shape
    if s.size == 0:
        return np.full(n_rows, np.nan)
    s = np.where(v, s, 0.0)
    # Per row: valid entries first, sorted by score ascending; invalid entries last.
    order = np.lexsort((s, ~v), axis=-1)
    ss = np.take_along_axis(s, order, axis=1)
    vs = np.take_along_axis(v, order, axis=1)
    ys = np.take_along_axis(y, order, axis=1)
    # A tie group starts at each row start and wherever the score or validity changes.
    start = np.ones(s.shape, dtype=bool)
    start[:, 1:] = (ss[:, 1:] != ss[:, :-1]) | (vs[:, 1:] != vs[:, :-1])
    start = start.ravel()
    starts = np.flatnonzero(start)
    sizes = np.diff(np.append(starts, start.size))
    ordinal = np.tile(np.arange(1, n_cols + 1, dtype=np.float64), n_rows)
    avg_rank = ordinal[starts] + (sizes - 1) / 2.0
    ranks = np.repeat(avg_rank, sizes).reshape(n_rows, n_cols)
    pos = ys & vs
    n_pos = pos.sum(axis=1).astype(np.float64)
    n_neg = (vs & ~ys).sum(axis=1).astype(np.float64)
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Global ROC AUC over flat arrays (Mann–Whitney U with average ranks for ties).

    ``AUC = (sum_{pos} rank(i) - P(P + 1)/2) / (P * N)`` = probability that a random positive
    outscores a random negative, ties counting 0.5. Used as the relevance metric of HI
    (Table 2, "AUC-ROC") and PURS (Table 2).

    Args:
        scores: ``(n,)`` finite float scores.
        labels: ``(n,)`` bool (or 0/1) labels.

    Returns:
        AUC in ``[0, 1]``; NaN if there is no positive or no negative.
    """
    s, y = _check_scores_labels(scores, labels, 1)
    return float(per_user_auc(s[None, :], y[None, :])[0])


# ---------------------------------------------------------------------------------------------
# Precision-recall operating points (HI, Table 2)
# ---------------------------------------------------------------------------------------------


def _pr_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold (descending thresholds).

    The operating point for threshold ``t`` predicts positive for every item with
    ``score >= t``; tied scores therefore enter together and are never split.
    """
    s, y = _check_scores_labels(scores, labels, 1)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    order = np.argsort(-s, kind="stable")
    ss, ys = s[order], y[order]
    n_pos = ys.sum()
    if n_pos == 0:
        return np.empty(0), np.empty(0)
    last_of_tie = np.flatnonzero(np.append(ss[1:] != ss[:-1], True))
    tp = np.cumsum(ys, dtype=np.float64)[last_of_tie]
    predicted = last_of_tie + 1.0
    return tp / predicted, tp / n_pos


def _check_fraction(value: float, name: str) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
    return float(value)


def precision_at_recall(scores: np.ndarray, labels: np.ndarray, recall: float = 0.8) -> float:
    """Best precision among the operating points whose recall reaches ``recall``.

    HI (Table 2) reports "Precision (recall=0.8)" from a global ranking of all test pairs;
    the paper does not specify the threshold rule, so we use the standard "precision at
    recall" operating point: over the thresholds ``t`` equal to the distinct scores
    (predict positive iff ``score >= t``, so tied scores are never split and no
    interpolation is done),
    ``max { precision(t) : recall(t) >= recall }``.
    The lowest threshold has recall 1, so the set is never empty when a positive exists.

    Args:
        scores: ``(n,)`` finite scores.
        labels: ``(n,)`` bool (or 0/1) labels.
        recall: Target recall in ``(0, 1]``.

    Returns:
        Precision in ``[0, 1]``; NaN if there is no positive.
    """
    target = _check_fraction(recall, "recall")
    prec, rec = _pr_curve(scores, labels)
    if prec.size == 0:
        return float("nan")
    # Tolerance so that e.g. 4/5 counts as reaching 0.8 despite rounding.
    return float(prec[rec >= target - 1e-12].max())


def recall_at_precision(scores: np.ndarray, labels: np.ndarray, precision: float = 0.85) -> float:
    """Best recall among the operating points whose precision reaches ``precision``.

    HI (Table 2) reports "Recall (precision=0.85)". Over the thresholds ``t`` equal to the
    distinct scores (predict positive iff ``score >= t``; ties never split, no interpolation):
    ``max { recall(t) : precision(t) >= precision }``, and 0 if no threshold reaches it.

    Args:
        scores: ``(n,)`` finite scores.
        labels: ``(n,)`` bool (or 0/1) labels.
        precision: Target precision in ``(0, 1]``.

    Returns:
        Recall in ``[0, 1]``; NaN if there is no positive.
    """
    target = _check_fraction(precision, "precision")
    prec, rec = _pr_curve(scores, labels)
    if prec.size == 0:
        return float("nan")
    ok = prec >= target - 1e-12
    return float(rec[ok].max()) if ok.any() else 0.0


def relevance_metrics(scores: np.ndarray, req) -> dict[str, float]:
    """Pooled AUC-ROC, precision at recall 0.8, recall at precision 0.85.

    Args:
        scores: `(B, n_items)` request scores.
        req: the `divrec.splitting.events.Requests`.
    """
    s = scores[req.eval_req, req.eval_items].astype(np.float64)
    y = req.eval_labels
    return {
        "auc": auc(s, y),
        "precision@recall0.8": precision_at_recall(s, y, 0.8),
        "recall@precision0.85": recall_at_precision(s, y, 0.85),
    }


def mean_average_precision(scores: np.ndarray, users: np.ndarray, labels: np.ndarray) -> float:
    """Mean over users of the average precision of their events ranked by score.

    Args:
        scores: `(E,)` event scores.
        users: `(E,)` user of each event.
        labels: `(E,)` bool labels.

    Returns:
        mAP over users with at least one positive event (ties: lower event index first).
    """
    order = np.lexsort((np.arange(scores.size), -scores, users))
    u, lab = users[order], labels[order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    aps = []
    for s, e in zip(starts, np.r_[starts[1:], u.size], strict=True):
        y = lab[s:e]
        if y.sum() == 0:
            continue
        prec = np.cumsum(y) / np.arange(1, y.size + 1)
        aps.append(float((prec * y).sum() / y.sum()))
    return float(np.mean(aps))
