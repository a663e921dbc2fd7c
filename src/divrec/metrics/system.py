"""System-level diversity: how different the lists (or retrieval sets) of *different users* are.

Per-user metrics (ILAD, category ILD) look inside one list; a system can score high on them
while every user gets the same candidates. The WeChat graph-exploration paper's "retrieval
diversity" (RD, NOTES (9), `wechat-graph-exploration.txt` Sec. 4) is about the system converging
on the same candidates across users, so it is measured here between users:

* :func:`pairwise_jaccard` — mean Jaccard similarity of two users' sets (lower = more diverse);
* :func:`union_concentration` — coverage and Gini of the union of all users' sets;
* :func:`between_user_distance` — mean cross-list cosine distance of two users' lists in a
  fixed item space (a reference SVD or genre vectors, never the model's own embedding).

Conventions as in :mod:`divrec.metrics.diversity`: ``lists`` is a ``(U, K)`` int64 batch with
``-1`` padding; a user's *set* ``A_u`` is the distinct valid items of row ``u``; users with an
empty set take part in no pair. "Pairs" are unordered pairs of distinct users ``u < v``. With
``max_pairs`` below the number of pairs, ``max_pairs`` pairs are drawn uniformly with
replacement (``u`` uniform, ``v`` uniform among the others) from
``np.random.default_rng(seed)``: an unbiased estimate of the all-pairs mean.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._validation import check_positive_int, check_recommended
from .diversity import _check_matrix, _list_matrix, _unit_rows, gini_of_counts

__all__ = [
    "between_user_distance",
    "pairwise_jaccard",
    "system_diversity",
    "union_concentration",
]


def _sample_pairs(n_users: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, size=max_pairs)
    v = rng.integers(0, n_users - 1, size=max_pairs)
    v += v >= u
    return u, v


def _check_max_pairs(max_pairs: int | None) -> int | None:
    return None if max_pairs is None else check_positive_int(max_pairs, "max_pairs")


def _nonempty_sets(rec: np.ndarray, n_items: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary ``(U', n_items)`` set matrix of the users with a non-empty set, and ``|A_u|``."""
    b = _list_matrix(rec, n_items, binary=True)
    sizes = np.diff(b.indptr)
    keep = sizes > 0
    return b[keep], sizes[keep].astype(np.float64)


def pairwise_jaccard(
    lists: np.ndarray, n_items: int, max_pairs: int | None = None, seed: int = 0
) -> float:
    """Mean between-user Jaccard similarity of the users' item sets.

    ``J = 2 / (U (U - 1)) * sum_{u < v} |A_u ∩ A_v| / |A_u ∪ A_v|`` over the ``U`` users with a
    non-empty set; ``|A_u ∪ A_v| = |A_u| + |A_v| - |A_u ∩ A_v|``. 0 = no two users share an
    item, 1 = everybody has the same set. Applied to retrieval results this is the
    system-level retrieval similarity (``RD = 1 - J`` is its diversity form, WeChat NOTES (9)).

    Overlaps come from the sparse product ``B B^T`` of the binary ``(U, n_items)`` set matrix
    in row blocks (pairs without overlap contribute 0), or from ``max_pairs`` sampled pairs.

    Args:
        lists: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.
        max_pairs: Optional cap on the number of (sampled) pairs.
        seed: Seed of the pair sampler.

    Returns:
        Mean Jaccard in ``[0, 1]``; NaN with fewer than two non-empty sets.
    """
    n_items = check_positive_int(n_items, "n_items")
    rec = check_recommended(lists, n_items)
    max_pairs = _check_max_pairs(max_pairs)
    b, sizes = _nonempty_sets(rec, n_items)
    n_users = b.shape[0]
    n_pairs = n_users * (n_users - 1) // 2
    if n_pairs == 0:
        return float("nan")
    if max_pairs is not None and max_pairs < n_pairs:
        u, v = _sample_pairs(n_users, max_pairs, seed)
        inter = np.asarray(b[u].multiply(b[v]).sum(axis=1)).ravel()
        return float(np.mean(inter / (sizes[u] + sizes[v] - inter)))
    bt = b.T.tocsc()
    block = max(1, 4_000_000 // max(n_users, 1))
    total = 0.0
    for start in range(0, n_users, block):
        prod = (b[start : start + block] @ bt).tocoo()
        rows = prod.row + start
        upper = prod.col > rows
        r, c, inter = rows[upper], prod.col[upper], prod.data[upper]
        total += float((inter / (sizes[r] + sizes[c] - inter)).sum())
    return total / n_pairs


def union_concentration(lists: np.ndarray, n_items: int) -> dict[str, float]:
    """Coverage and concentration of the union of the users' sets.

    With ``c_i = #{u : i ∈ A_u}`` (how many users' sets hold item ``i``; an item repeated in
    one list counts once):

    * ``distinct = |∪_u A_u| = #{i : c_i > 0}``;
    * ``coverage = distinct / n_items``;
    * ``gini = sum_{k=1..n} (2k - n - 1) c_(k) / (n * sum_i c_i)`` over all ``n = n_items``
      items sorted ascending (:func:`divrec.metrics.exposure_gini` on ``c``; 0 = every item
      in equally many sets, ``(n - 1)/n`` = one item holds all the mass).

    Args:
        lists: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.

    Returns:
        ``{"distinct": float, "coverage": float, "gini": float}`` (``gini`` NaN when every set
        is empty).
    """
    n_items = check_positive_int(n_items, "n_items")
    rec = check_recommended(lists, n_items)
    b = _list_matrix(rec, n_items, binary=True)
    counts = np.asarray(b.sum(axis=0)).ravel()
    distinct = float(np.count_nonzero(counts))
    return {
        "distinct": distinct,
        "coverage": distinct / n_items,
        "gini": gini_of_counts(counts),
    }


def between_user_distance(
    lists: np.ndarray,
    item_vectors: np.ndarray,
    max_pairs: int | None = None,
    seed: int = 0,
) -> float:
    """Mean cross-list cosine distance between two users' lists, in a fixed item space.

    For users ``u != v`` with ``n_u, n_v`` valid entries (repeats kept, as in ILAD) and unit
    vectors ``x̂ = x / |x|`` (a zero vector stays zero: cosine 0, distance 1),
    ``d(u, v) = 1 - 1/(n_u n_v) * sum_{x ∈ L_u} sum_{y ∈ L_v} cos(x, y) = 1 - m_u · m_v`` with
    ``m_u = (1/n_u) sum_{x ∈ L_u} x̂``; the result is the mean of ``d`` over the pairs
    ``u < v`` of users with a non-empty list. Over all pairs,
    ``sum_{u<v} m_u · m_v = (|sum_u m_u|^2 - sum_u |m_u|^2) / 2``, so the exact value is
    ``O(U d)``. 0 = all lists point the same way; 1 = orthogonal on average; values lie in
    ``[0, 2]``.

    It is the between-user counterpart of ILAD (CDM Eq. 21, WeChat NOTES (9)): ILAD averages
    ``1 - cos`` over pairs inside one list, this over pairs drawn from two users' lists.

    Args:
        lists: ``(U, K)`` int item indices, ``-1`` = padding.
        item_vectors: ``(n_items, d)`` item vectors of a fixed, model-independent space.
        max_pairs: Optional cap on the number of (sampled) pairs.
        seed: Seed of the pair sampler.

    Returns:
        Mean distance; NaN with fewer than two non-empty lists.
    """
    vecs = _check_matrix(item_vectors, "item_vectors")
    rec = check_recommended(lists, vecs.shape[0])
    max_pairs = _check_max_pairs(max_pairs)
    m = _list_matrix(rec, vecs.shape[0])
    n = np.asarray(m.sum(axis=1)).ravel()
    keep = n > 0
    means = np.asarray(m[keep] @ _unit_rows(vecs)) / n[keep, None]
    n_users = means.shape[0]
    n_pairs = n_users * (n_users - 1) // 2
    if n_pairs == 0:
        return float("nan")
    if max_pairs is not None and max_pairs < n_pairs:
        u, v = _sample_pairs(n_users, max_pairs, seed)
        return float(np.clip(np.mean(1.0 - np.einsum("pd,pd->p", means[u], means[v])), 0, 2))
    total = means.sum(axis=0)
    cross = (total @ total - np.einsum("ud,ud->", means, means)) / 2.0
    return float(np.clip(1.0 - cross / n_pairs, 0.0, 2.0))


def system_diversity(
    lists: np.ndarray,
    n_items: int,
    item_vectors: np.ndarray | None = None,
    max_pairs: int | None = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """All system-level measures of one batch of lists (retrieval sets or exposed lists).

    Returns ``{"jaccard", "rd", "distinct", "coverage", "gini"}`` and, with ``item_vectors``,
    ``"between_distance"``: ``rd = 1 - jaccard`` is the system-level retrieval diversity
    (WeChat NOTES (9)); see :func:`pairwise_jaccard`, :func:`union_concentration` and
    :func:`between_user_distance` for the formulas. ``max_pairs`` caps the Jaccard pairs only
    (the between-user distance is exact in ``O(U d)``).

    Args:
        lists: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.
        item_vectors: Optional ``(n_items, d)`` fixed-space item vectors.
        max_pairs: Cap on the number of sampled Jaccard pairs (``None`` = all pairs).
        seed: Seed of the pair sampler.

    Returns:
        A dict of floats.
    """
    jac = pairwise_jaccard(lists, n_items, max_pairs=max_pairs, seed=seed)
    out = {"jaccard": jac, "rd": 1.0 - jac, **union_concentration(lists, n_items)}
    if item_vectors is not None:
        if np.asarray(item_vectors).shape[0] != n_items:
            raise ValueError(f"item_vectors must have n_items={n_items} rows")
        out["between_distance"] = between_user_distance(lists, item_vectors)
    return out
