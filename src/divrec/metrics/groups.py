"""Potential-user (i2u) metrics of single items and item groups (TotalRecall App. A.7)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.metrics.accuracy import hits_matrix, precision_at_k, recall_at_k, relevant_counts
from divrec.metrics.diversity import (
    distinct_users,
)

#: the popularity levels of a genre group (App. A.7.2)
LEVELS = ("top", "middle", "bottom")

__all__ = [
    "genre_popularity_groups",
    "group_metrics",
    "group_truth",
    "item_user_truth",
    "single_item_metrics",
]


def single_item_metrics(top_users: np.ndarray, truth: sp.spmatrix, k: int = 10) -> dict:
    """Precision@k, Recall@k (App. A.7.1) and distinct users of per-item user lists.

    P@k = mean over items of |U_{i,k} ∩ U_i| / k; R@k = mean of |U_{i,k} ∩ U_i| / |U_i|.

    Args:
        top_users: `(I, K ≥ k)` user indices per item, best first, -1 = padding.
        truth: `(I, n_users)` held-out users of each item (rows without any are skipped).
        k: cut-off.

    Returns:
        {"precision", "recall" (fractions), "distinct_users", "n_items"}.
    """
    truth = sp.csr_matrix(truth)
    n_rel = relevant_counts(truth)
    keep = n_rel > 0
    top = np.asarray(top_users)[keep, :k]
    hits = hits_matrix(top, truth[keep])
    return {
        "precision": float(precision_at_k(hits, k).mean()),
        "recall": float(recall_at_k(hits, n_rel[keep], k).mean()),
        "distinct_users": distinct_users(top),
        "n_items": int(keep.sum()),
    }


def item_user_truth(heldout: sp.spmatrix, items: np.ndarray) -> sp.csr_matrix:
    """`(len(items), n_users)` held-out users of each item."""
    return sp.csr_matrix(sp.csc_matrix(heldout)[:, items].T)


def genre_popularity_groups(
    items: np.ndarray,
    item_categories: sp.spmatrix,
    popularity: np.ndarray,
    category_names: tuple[str, ...],
    fraction: float = 0.1,
) -> list[dict]:
    """The genre × popularity groups of App. A.7.2.

    For each genre, its movies among `items` are sorted by popularity (descending; ties by
    lower index); the first, the central and the last ``floor(fraction · n)`` (at least 1)
    form the "top", "middle" and "bottom" groups.

    Args:
        items: `(C,)` candidate movies (the chosen movies of Sec. 5.2).
        item_categories: `(n_items, G)` multi-hot genres.
        popularity: `(n_items,)` users per movie.
        category_names: the G genre names.
        fraction: group share (10%).

    Returns:
        A list of {"genre", "level", "items" (int64 array)}, genre-major (3 per genre with at
        least one movie).
    """
    cats = sp.csc_matrix(item_categories)
    items = np.asarray(items, dtype=np.int64)
    in_items = np.zeros(cats.shape[0], dtype=bool)
    in_items[items] = True
    groups = []
    for g, name in enumerate(category_names):
        members = cats.indices[cats.indptr[g] : cats.indptr[g + 1]].astype(np.int64)
        members = np.unique(members[in_items[members]])
        if members.size == 0:
            continue
        order = members[np.lexsort((members, -popularity[members]))]
        n = max(1, int(np.floor(fraction * members.size)))
        mid = (members.size - n) // 2
        for level, sl in zip(
            LEVELS, (slice(0, n), slice(mid, mid + n), slice(-n, None)), strict=True
        ):
            groups.append({"genre": name, "level": level, "items": order[sl]})
    return groups


def group_truth(
    train: sp.spmatrix, heldout: sp.spmatrix, items: np.ndarray, scope: str = "group"
) -> np.ndarray:
    """Potential users of a group (App. A.7.2).

    Two readings of "if a user interacts with one or more items in the group (excluding the
    items he has interacted previously)":

    * ``scope="group"``: a held-out interaction with one of its items and no training
      interaction with any of them;
    * ``scope="item"``: a held-out interaction with one of its items (held-out pairs are new
      to the user by construction; other group items seen in training do not disqualify).

    Args:
        train: `(n_users, n_items)` training pairs.
        heldout: `(n_users, n_items)` future pairs.
        items: `(G,)` the group.
        scope: "group" or "item".

    Returns:
        Sorted user indices.
    """
    if scope not in ("group", "item"):
        raise ValueError(f"scope must be 'group' or 'item', got {scope!r}")
    future = np.asarray(sp.csc_matrix(heldout)[:, items].sum(axis=1)).ravel() > 0
    if scope == "item":
        return np.flatnonzero(future)
    past = np.asarray(sp.csc_matrix(train)[:, items].sum(axis=1)).ravel() > 0
    return np.flatnonzero(future & ~past)


def group_metrics(
    model,
    groups: list[dict],
    truths: list[np.ndarray],
    aggregation: str,
    k: int = 10,
    candidates_per_item: int | None = None,
    seen_scope: str = "group",
) -> dict:
    """Precision@k / Recall@k averaged over groups with potential users; distinct users.

    Args:
        model: fitted two-tower model (its `potential_users_of_group` ranks the users).
        groups: from `genre_popularity_groups`.
        truths: the `group_truth` of each group.
        aggregation: "mean", "max" or "sum".
        k: users per group.
        candidates_per_item: None (every user scored against every group item) or N (each
            user aggregated over the items whose top-N candidate list holds them).
        seen_scope: "group" or "item": which training interactions exclude users / pairs
            (`TwoTowerRecommender.potential_users_of_group`); use the `group_truth` scope.

    Returns:
        {"precision", "recall", "distinct_users", "n_groups", "per_group"}.
    """
    prec, rec, lists, per_group = [], [], [], []
    for group, truth in zip(groups, truths, strict=True):
        ids, _ = model.potential_users_of_group(
            group["items"],
            k=k,
            aggregation=aggregation,
            candidates_per_item=candidates_per_item,
            seen_scope=seen_scope,
        )
        lists.append(ids)
        if truth.size == 0:
            continue
        n_hit = int(np.isin(ids[ids >= 0], truth).sum())
        prec.append(n_hit / k)
        rec.append(n_hit / truth.size)
        per_group.append(
            {"group": f"{group['genre']}-{group['level']}", "hits": n_hit, "truth": truth.size}
        )
    return {
        "precision": float(np.mean(prec)),
        "recall": float(np.mean(rec)),
        "distinct_users": distinct_users(np.vstack(lists)),
        "n_groups": len(prec),
        "per_group": per_group,
    }
