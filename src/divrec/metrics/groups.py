"""Item-group metrics: potential users (i2u) of single items and item groups (TotalRecall
App. A.7), and exposure fairness of item groups (position-discounted exposure share,
average recommendation popularity, popularity lift)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.metrics.accuracy import hits_matrix, precision_at_k, recall_at_k, relevant_counts
from divrec.metrics.diversity import (
    distinct_users,
)

#: the popularity levels of a genre group (App. A.7.2)
LEVELS = ("top", "middle", "bottom")

__all__ = [
    "average_recommendation_popularity",
    "exposure_share",
    "genre_popularity_groups",
    "group_metrics",
    "group_truth",
    "item_groups",
    "item_user_truth",
    "popularity_groups",
    "popularity_lift",
    "position_discount",
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


# --------------------------------------------------------------------------- exposure fairness
def popularity_groups(counts: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """Head (0) / long tail (1) of the catalogue by popularity (Abdollahpouri et al. 2019).

    The head is the most popular items (ties by lower index) that together hold the first
    ``head_share`` of the interactions: an item is in the head when the interactions of the
    items ranked before it are below ``head_share`` of the total.

    Args:
        counts: ``(n_items,)`` interactions per item.
        head_share: share of the interactions held by the head, in ``(0, 1)``.

    Returns:
        ``(n_items,)`` int64 group codes (0 head, 1 tail).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be a finite non-negative (n_items,) array")
    if not (0.0 < float(head_share) < 1.0):
        raise ValueError(f"head_share must be in (0, 1), got {head_share}")
    order = np.lexsort((np.arange(c.size), -c))
    before = np.concatenate([[0.0], np.cumsum(c[order])[:-1]])
    total = c.sum()
    head = before < head_share * total if total > 0 else np.zeros(c.size, dtype=bool)
    out = np.ones(c.size, dtype=np.int64)
    out[order[head]] = 0
    return out


def item_groups(data, column: Any) -> tuple[np.ndarray, list[str]]:
    """Item groups from a column of the item side information.

    Args:
        data: the `Interactions` (training data).
        column: ``"popularity"`` (head 0 / long tail 1, :func:`popularity_groups`),
            ``"category"`` (each item's first category; ``-1`` none), ``"category=<name>"``
            (``"no"`` 0 / ``"yes"`` 1), ``"feature:<j>"`` (column ``j`` of
            ``item_features``: ``"no"`` 0 for 0, ``"yes"`` 1 otherwise), or an
            ``(n_items,)`` array of labels (a provider column: codes in sorted label order).

    Returns:
        ``(n_items,)`` int64 codes (``-1``: no group) and the group names.

    Raises:
        ValueError: an unknown column form or a column the data does not have (one line
            naming ``column``).
    """
    n = data.n_items
    if not isinstance(column, str):
        labels = np.asarray(column)
        if labels.shape != (n,):
            raise ValueError(f"column must have shape ({n},), got {labels.shape}")
        names, codes = np.unique(labels, return_inverse=True)
        return codes.astype(np.int64), [str(x) for x in names]
    if column == "popularity":
        return popularity_groups(data.item_popularity()), ["head", "tail"]
    if column == "category" or column.startswith("category="):
        if data.item_categories is None:
            raise ValueError(f"column {column!r}: the data has no item categories")
        if column == "category":
            names = list(data.category_names or [str(c) for c in range(data.n_categories)])
            return data.primary_category().astype(np.int64), names
        name = column.partition("=")[2]
        known = list(data.category_names or [])
        if name not in known:
            raise ValueError(f"column {column!r}: unknown category {name!r}")
        col = sp.csc_matrix(data.item_categories)[:, known.index(name)]
        return (col.toarray().ravel() != 0).astype(np.int64), ["no", "yes"]
    if column.startswith("feature:"):
        feats = data.item_features
        raw = column.partition(":")[2]
        if feats is None:
            raise ValueError(f"column {column!r}: the data has no item features")
        if not raw.isdigit() or int(raw) >= feats.shape[1]:
            raise ValueError(f"column {column!r}: no feature column {raw!r}")
        return (np.asarray(feats)[:, int(raw)] != 0).astype(np.int64), ["no", "yes"]
    raise ValueError(
        f"column must be 'popularity', 'category', 'category=<name>', 'feature:<j>' or an "
        f"array, got {column!r}"
    )


def position_discount(k: int) -> np.ndarray:
    """``1 / log2(1 + rank)`` for ranks ``1 … k`` ``(k,)`` (the DCG discount)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def exposure_share(
    recommended: np.ndarray, groups: np.ndarray, n_groups: int | None = None
) -> np.ndarray:
    """Share of the position-discounted exposure each item group receives.

    ``E_g = Σ_u Σ_{rank r: item in g} 1 / log2(1 + r)``, normalized over the groups
    (Singh & Joachims 2018's exposure with the DCG position bias).

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` padded (padding gets nothing).
        groups: ``(n_items,)`` int group codes (``-1``: in no group; its exposure is left
            out of the total).
        n_groups: number of groups (default: ``max(groups) + 1``).

    Returns:
        ``(G,)`` float64 shares summing to 1 (all zero when nothing is exposed).
    """
    rec = np.asarray(recommended)
    g = np.asarray(groups, dtype=np.int64)
    if rec.ndim != 2:
        raise ValueError(f"recommended must have shape (U, K), got {rec.shape}")
    n_g = int(g.max(initial=-1)) + 1 if n_groups is None else int(n_groups)
    if rec.size and rec.max() >= g.size:
        raise ValueError(f"recommended holds item {int(rec.max())} outside groups ({g.size},)")
    w = np.broadcast_to(position_discount(rec.shape[1]), rec.shape)
    valid = rec >= 0
    code = np.where(valid, g[np.maximum(rec, 0)], -1)
    keep = code >= 0
    if keep.any() and code[keep].max() >= n_g:
        raise ValueError(f"group code {int(code[keep].max())} >= n_groups {n_g}")
    e = np.bincount(code[keep], weights=w[keep], minlength=n_g).astype(np.float64)
    total = e.sum()
    return e / total if total > 0 else e


def average_recommendation_popularity(
    recommended: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    """ARP (Abdollahpouri et al. 2019): mean popularity of each list's items, ``(U,)``.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` padded.
        popularity: ``(n_items,)`` popularity (e.g. the share of training users).

    Returns:
        ``(U,)`` float64 (NaN for an empty list).
    """
    rec = np.asarray(recommended)
    pop = np.asarray(popularity, dtype=np.float64)
    valid = rec >= 0
    vals = np.where(valid, pop[np.maximum(rec, 0)], 0.0)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, vals.sum(axis=1) / n, np.nan)


def popularity_lift(recommended: np.ndarray, history: sp.spmatrix, popularity: np.ndarray) -> float:
    """Popularity lift ``(GAP_r − GAP_p) / GAP_p`` (Abdollahpouri et al. 2020).

    ``GAP_p`` is the mean over users of the average popularity of their history items,
    ``GAP_r`` the same of their lists (ARP); users with an empty list or history are left
    out of both. Positive: the lists are more popular than what the users consume.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` padded.
        history: ``(U, n_items)`` sparse matrix of each user's history.
        popularity: ``(n_items,)`` popularity.
    """
    h = sp.csr_matrix(history, dtype=np.float64, copy=True)
    h.eliminate_zeros()
    h.data[:] = 1.0
    pop = np.asarray(popularity, dtype=np.float64)
    n_h = np.asarray(h.sum(axis=1)).ravel()
    prof = np.divide(h @ pop, n_h, out=np.full(n_h.size, np.nan), where=n_h > 0)
    return lift_from_profiles(prof, average_recommendation_popularity(recommended, pop))


def lift_from_profiles(prof: np.ndarray, arp: np.ndarray) -> float:
    """Popularity lift from each user's mean history popularity `prof` and list ARP `arp`
    (both `(U,)`, NaN where undefined): `(mean ARP − mean profile) / mean profile` over the
    users where both are finite; NaN when none is or the mean profile is ≤ 0."""
    if arp.size != prof.size:
        raise ValueError(f"history has {prof.size} rows for {arp.size} lists")
    ok = np.isfinite(prof) & np.isfinite(arp)
    if not ok.any() or prof[ok].mean() <= 0:
        return float("nan")
    gp = float(prof[ok].mean())
    return (float(arp[ok].mean()) - gp) / gp
