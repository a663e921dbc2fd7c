"""Evaluation on the ComiRec protocol (TotalRecall App. A.6.2; Cen et al. 2020 Sec. 4.1).

Each held-out user is one request with a fresh history (`Query.history`) answered by the
model's retrieval stage over the whole catalogue; the metrics are Recall@N (Eq. 16) and
HitRate@N (Eq. 14) averaged over users, and the system-level distinct items@N and distinct
categories@N of all users' lists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.data.query import Query
from divrec.metrics.accuracy import hit_rate_at_k, hits_matrix, recall_at_k, relevant_counts
from divrec.metrics.diversity import distinct_categories, distinct_items
from divrec.splitting.comirec import SequenceSplit


def target_matrix(targets: np.ndarray, n_items: int) -> sp.csr_matrix:
    """`(U, T)` −1-padded targets → `(U, n_items)` binary CSR (repeats count once)."""
    rows, cols = np.nonzero(targets >= 0)
    m = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, targets[rows, cols])),
        shape=(targets.shape[0], n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def sequence_metrics(
    recommended: np.ndarray, targets: np.ndarray, item_categories, ns=(20, 50)
) -> dict[str, float]:
    """Recall@N, HitRate@N, distinct items@N, distinct categories@N for each N.

    Args:
        recommended: `(U, N_max)` lists, −1 padded.
        targets: `(U, T)` held-out items, −1 padded.
        item_categories: `(n_items, C)` sparse categories, or None (no category metric).
        ns: cut-offs (each ≤ N_max).

    Returns:
        `{"recall@N", "hitrate@N", "distinct_items@N", "distinct_categories@N"}`.
    """
    n_items = item_categories.shape[0] if item_categories is not None else None
    if n_items is None:
        n_items = int(max(recommended.max(initial=0), targets.max(initial=0))) + 1
    rel = target_matrix(targets, n_items)
    hits = hits_matrix(recommended, rel)
    n_rel = relevant_counts(rel)
    out: dict[str, float] = {}
    for n in ns:
        out[f"recall@{n}"] = float(np.nanmean(recall_at_k(hits, n_rel, n)))
        out[f"hitrate@{n}"] = float(np.mean(hit_rate_at_k(hits, n)))
        out[f"distinct_items@{n}"] = float(distinct_items(recommended[:, :n]))
        if item_categories is not None:
            out[f"distinct_categories@{n}"] = float(
                distinct_categories(recommended[:, :n], item_categories)
            )
    return out


def recommend_sequences(
    model, history: np.ndarray, k: int, exclude_history: bool = False, batch: int = 1024
) -> np.ndarray:
    """`(U, k)` top-k lists of the model's retrieval stage for fresh histories."""
    out = []
    for s in range(0, history.shape[0], batch):
        h = history[s : s + batch]
        q = Query(users=np.full(h.shape[0], -1), history=h, exclude_seen=exclude_history)
        out.append(model(q, None, k).ids)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def evaluate_sequences(
    model,
    split: SequenceSplit,
    part: str = "test",
    ns=(20, 50),
    exclude_history: bool = False,
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """ComiRec-protocol metrics of a fitted model on the validation or test users.

    Args:
        model: a fitted model with `supports_history` (a retrieval stage).
        split: a `SequenceSplit`.
        part: "valid" or "test".
        ns: cut-offs.
        exclude_history: drop history items from the lists (ComiRec does not).
        max_users: evaluate a seeded sample of this many users (None: all).
        seed: seed of the sample.
    """
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    history = getattr(split, f"{part}_history")
    targets = getattr(split, f"{part}_targets")
    if max_users is not None and max_users < history.shape[0]:
        rows = np.sort(np.random.default_rng(seed).choice(history.shape[0], max_users, False))
        history, targets = history[rows], targets[rows]
    rec = recommend_sequences(model, history, max(ns), exclude_history)
    return sequence_metrics(rec, targets, split.item_categories, ns)
