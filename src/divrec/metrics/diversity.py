"""Diversity, coverage, novelty and unexpectedness metrics.

Conventions (shared by all of :mod:`divrec.metrics`):

* ``recommended`` is a ``(U, K)`` int64 batch of item indices; ``-1`` marks padding. Padding
  is never an item: it is dropped from every pair, count and exposure below.
* "Pairs" of a list are its valid positions ``r != s``; a list with fewer than two valid
  items has no pair and its pairwise metrics are NaN. An item repeated in a list is treated
  as two entries (at distance 0 from each other for ILAD-type metrics).
* Per-user metrics return a ``(U,)`` float64 vector (aggregate with ``np.nanmean``);
  system-level metrics return a Python ``float`` / ``int``.

Pairwise sums are vectorized without forming ``(U, K, K)`` tensors where an identity allows
it: for per-item vectors ``x_i``,
``sum_{r != s} <x_{i_r}, x_{i_s}> = ||sum_r x_{i_r}||^2 - sum_r ||x_{i_r}||^2``,
and ``sum_r x_{i_r}`` for all users is one sparse ``(U, n_items) @ (n_items, d)`` product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ._validation import check_csr, check_positive_int, check_recommended, valid_mask

__all__ = [
    "between_user_diversity",
    "category_coverage",
    "category_ild",
    "distinct_categories",
    "distinct_ids",
    "distinct_items",
    "distinct_users",
    "exposure_counts",
    "exposure_entropy",
    "exposure_gini",
    "hi_diversity",
    "hi_diversity_summary",
    "ilad",
    "item_coverage",
    "novelty",
    "unexpectedness",
    "unexpectedness_scores",
    "user_category_coverage",
]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _list_matrix(rec: np.ndarray, n_items: int, binary: bool = False) -> sp.csr_matrix:
    """``(U, n_items)`` CSR with ``M[u, i]`` = number of times item ``i`` is in list ``u``."""
    mask, _ = valid_mask(rec)
    rows = np.broadcast_to(np.arange(rec.shape[0])[:, None], rec.shape)[mask]
    m = sp.csr_matrix(
        (np.ones(rows.size), (rows, rec[mask])), shape=(rec.shape[0], n_items), dtype=np.float64
    )
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Row-normalize ``x`` to unit L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _check_matrix(x: object, name: str, n_rows: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    if n_rows is not None and a.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _pairwise_mean_distance(
    sum_sq: np.ndarray, self_sq: np.ndarray, n_valid: np.ndarray
) -> np.ndarray:
    """``1 - (sum_sq - self_sq) / (n(n-1))``, NaN where ``n < 2``."""
    pairs = n_valid * (n_valid - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - (sum_sq - self_sq) / pairs
    return np.where(n_valid >= 2, out, np.nan)


# ---------------------------------------------------------------------------------------------
# Intra-list diversity
# ---------------------------------------------------------------------------------------------


def ilad(recommended: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Intra-list average distance (ILAD@K), CDM Eq. 21 (also WeChat ILAD, NOTES (9)).

    ``ILAD(u) = 1 - 1/(n(n-1)) * sum_{x in L_u} sum_{y in L_u, y != x} cos(v_x, v_y)``,
    i.e. the mean of ``1 - cos`` over the pairs of the ``n`` valid (non-padding) entries of
    the list; ``n`` replaces the paper's ``K`` so padding is ignored. A zero vector has
    cosine 0 with everything (distance 1). Lists with ``n < 2`` give NaN. Values lie in
    ``[0, 2]`` (clipped there against rounding).

    Computed with the sum identity in the module docstring on unit-normalized vectors:
    ``sum_{x != y} cos = ||sum_x v_x/|v_x| ||^2 - #(nonzero entries)``.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_vectors: ``(n_items, d)`` item embeddings.

    Returns:
        ``(U,)`` float64 array.
    """
    vecs = _check_matrix(item_vectors, "item_vectors")
    rec = check_recommended(recommended, vecs.shape[0])
    unit = _unit_rows(vecs)
    m = _list_matrix(rec, vecs.shape[0])
    summed = np.asarray(m @ unit)
    sum_sq = np.einsum("ud,ud->u", summed, summed)
    self_sq = np.asarray(m @ np.einsum("id,id->i", unit, unit)).ravel()
    n_valid = (rec >= 0).sum(axis=1).astype(np.float64)
    return np.clip(_pairwise_mean_distance(sum_sq, self_sq, n_valid), 0.0, 2.0)


def category_ild(recommended: np.ndarray, item_categories) -> np.ndarray:
    """Intra-list category distance: ILAD on multi-hot category vectors.

    With ``c_i`` the binary category vector of item ``i`` (``|c_i|`` categories),
    ``d(i, j) = 1 - |c_i ∩ c_j| / sqrt(|c_i| |c_j|)`` (one minus cosine; an item with no
    category is at distance 1 from every other entry), and
    ``catILD(u) = mean over pairs r != s of d(L_u[r], L_u[s])``. For single-category items
    this is the fraction of pairs in different categories. Values lie in ``[0, 1]``;
    lists with fewer than 2 valid entries give NaN.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_categories: ``scipy.sparse`` ``(n_items, C)``; any nonzero counts as 1.

    Returns:
        ``(U,)`` float64 array.
    """
    cats = check_csr(item_categories, "item_categories")
    rec = check_recommended(recommended, cats.shape[0])
    norms = np.sqrt(np.diff(cats.indptr).astype(np.float64))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit = sp.diags(inv) @ cats
    m = _list_matrix(rec, cats.shape[0])
    summed = (m @ unit).tocsr()
    sum_sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    self_sq = np.asarray(m @ (norms > 0).astype(np.float64)).ravel()
    n_valid = (rec >= 0).sum(axis=1).astype(np.float64)
    return np.clip(_pairwise_mean_distance(sum_sq, self_sq, n_valid), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Coverage and distinct counts
# ---------------------------------------------------------------------------------------------


def distinct_ids(ids: np.ndarray) -> int:
    """Number of distinct non-negative ids in an array of any shape (``-1`` = padding).

    TotalRecall's "Distinct items@N" / "distinct users" (App. A.6.2, A.7.1).

    Args:
        ids: Integer array, e.g. ``(U, K)`` item lists or ``(I, K)`` user lists.

    Returns:
        ``|{x in ids : x >= 0}|``.
    """
    a = np.asarray(ids)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids must have an integer dtype, got {a.dtype}")
    if a.size and a.min() < -1:
        raise ValueError(f"ids contains {a.min()}; only -1 may mark padding")
    return int(np.unique(a[a >= 0]).size)


def distinct_items(recommended: np.ndarray) -> int:
    """Distinct recommended items over all lists (TotalRecall "Distinct items@N").

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.

    Returns:
        Number of distinct item indices ``>= 0``.
    """
    return distinct_ids(check_recommended(recommended))


def distinct_users(recommended_users: np.ndarray) -> int:
    """Distinct recommended users over all i2u lists (TotalRecall Table 3 "distinct users").

    Args:
        recommended_users: ``(I, K)`` int user indices (top users per item), ``-1`` = padding.

    Returns:
        Number of distinct user indices ``>= 0``.
    """
    return distinct_ids(check_recommended(recommended_users))


def item_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Item coverage (PURS "Coverage"): ``|∪_u L_u| / n_items``.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.

    Returns:
        Fraction in ``[0, 1]``.
    """
    n_items = check_positive_int(n_items, "n_items")
    rec = check_recommended(recommended, n_items)
    return distinct_ids(rec) / n_items


def _category_setup(
    recommended, item_categories, n_categories
) -> tuple[np.ndarray, sp.csr_matrix, int]:
    cats = check_csr(item_categories, "item_categories")
    rec = check_recommended(recommended, cats.shape[0])
    if n_categories is None:
        n_cat = int(np.unique(cats.indices).size)
        if n_cat == 0:
            raise ValueError("item_categories has no nonzero entry; pass n_categories")
    else:
        n_cat = check_positive_int(n_categories, "n_categories")
        if cats.shape[1] > n_cat and cats[:, n_cat:].nnz:
            raise ValueError(f"item_categories uses category ids >= n_categories={n_cat}")
    return rec, cats, n_cat


def distinct_categories(recommended: np.ndarray, item_categories) -> int:
    """Distinct categories of all recommended items (TotalRecall "Distinct cates@N").

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_categories: ``scipy.sparse`` ``(n_items, C)``; any nonzero counts as 1.

    Returns:
        ``|∪_u ∪_{i in L_u} cats(i)|``.
    """
    cats = check_csr(item_categories, "item_categories")
    rec = check_recommended(recommended, cats.shape[0])
    items = np.unique(rec[rec >= 0])
    return int(np.unique(cats[items].indices).size)


def category_coverage(
    recommended: np.ndarray, item_categories, n_categories: int | None = None
) -> float:
    """Category coverage CC@K, CDM Eq. 22: ``CC@K = |C_K| / |C|`` (system level).

    CDM (Sec. 4.1.2) defines CC as "the ratio of the number of categories covered by the
    Top-K recommendations to the total number of categories in the dataset" and stresses
    that it "focuses on system-level diversity"; so ``C_K`` is the union of the categories
    of all users' top-K lists and ``C`` the categories present in the dataset. (A per-list
    reading cannot reach the reported CC@3 ≈ 0.7 with more than 4 categories; the per-user
    variant is :func:`user_category_coverage`.)

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_categories: ``scipy.sparse`` ``(n_items, C)``; any nonzero counts as 1.
        n_categories: ``|C|``. Default: the number of categories assigned to at least one
            item of ``item_categories`` (the categories "within the dataset").

    Returns:
        Fraction in ``[0, 1]``.
    """
    rec, cats, n_cat = _category_setup(recommended, item_categories, n_categories)
    items = np.unique(rec[rec >= 0])
    return int(np.unique(cats[items].indices).size) / n_cat


def user_category_coverage(
    recommended: np.ndarray, item_categories, n_categories: int | None = None
) -> np.ndarray:
    """Per-list category coverage: ``|∪_{i in L_u} cats(i)| / |C|``.

    The per-user reading of CDM Eq. 22 (see :func:`category_coverage` for the system-level
    one used in the paper's tables). Empty lists give 0.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_categories: ``scipy.sparse`` ``(n_items, C)``; any nonzero counts as 1.
        n_categories: ``|C|``; default as in :func:`category_coverage`.

    Returns:
        ``(U,)`` float64 array in ``[0, 1]``.
    """
    rec, cats, n_cat = _category_setup(recommended, item_categories, n_categories)
    m = _list_matrix(rec, cats.shape[0], binary=True)
    covered = (m @ cats).tocsr()
    covered.eliminate_zeros()
    return np.diff(covered.indptr).astype(np.float64) / n_cat


# ---------------------------------------------------------------------------------------------
# Exposure concentration
# ---------------------------------------------------------------------------------------------


def exposure_counts(recommended: np.ndarray, n_items: int) -> np.ndarray:
    """How many times each item appears over all lists (padding ignored).

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.

    Returns:
        ``(n_items,)`` int64 counts.
    """
    n_items = check_positive_int(n_items, "n_items")
    rec = check_recommended(recommended, n_items)
    return np.bincount(rec[rec >= 0], minlength=n_items).astype(np.int64)


def exposure_gini(recommended: np.ndarray, n_items: int) -> float:
    """Gini coefficient of the item exposure counts over the whole catalogue.

    With counts sorted ascending ``x_(1) <= ... <= x_(n)`` over all ``n = n_items`` items
    (unrecommended items count 0):
    ``G = sum_{i=1..n} (2i - n - 1) x_(i) / (n * sum_i x_i)``.
    ``G = 0`` for equal exposure; ``G = (n - 1)/n < 1`` when one item gets everything.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.

    Returns:
        Gini in ``[0, 1)``; NaN if nothing is recommended.
    """
    return gini_of_counts(exposure_counts(recommended, n_items))


def gini_of_counts(counts: np.ndarray) -> float:
    """`exposure_gini` from the `(n_items,)` exposure counts (NaN when all are 0)."""
    x = np.sort(np.asarray(counts)).astype(np.float64)
    total = x.sum()
    if total == 0:
        return float("nan")
    n = x.size
    coef = 2.0 * np.arange(1, n + 1, dtype=np.float64) - n - 1.0
    return float(coef @ x / (n * total))


def exposure_entropy(recommended: np.ndarray, n_items: int, normalize: bool = True) -> float:
    """Shannon entropy of the item exposure distribution.

    ``p_i = x_i / sum_j x_j`` (exposure share), ``H = -sum_{p_i > 0} p_i ln p_i``; with
    ``normalize`` the result is ``H / ln(n_items)`` in ``[0, 1]`` (1 = uniform exposure).

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue (``>= 2`` when normalizing).
        normalize: Divide by ``ln(n_items)``.

    Returns:
        Entropy in nats (or normalized); NaN if nothing is recommended.
    """
    return entropy_of_counts(exposure_counts(recommended, n_items), normalize)


def entropy_of_counts(counts: np.ndarray, normalize: bool = True) -> float:
    """`exposure_entropy` from the `(n_items,)` exposure counts (NaN when all are 0)."""
    x = np.asarray(counts).astype(np.float64)
    n_items = x.size
    if normalize and n_items < 2:
        raise ValueError("normalized exposure entropy needs n_items >= 2")
    total = x.sum()
    if total == 0:
        return float("nan")
    p = x[x > 0] / total
    h = float(-(p * np.log(p)).sum())
    return h / np.log(n_items) if normalize else h


# ---------------------------------------------------------------------------------------------
# Novelty and unexpectedness
# ---------------------------------------------------------------------------------------------


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information of the recommended items.

    ``nov(u) = (1/n) * sum_{i in L_u} -log2(max(pop_i, 1) / n_users)`` over the ``n`` valid
    entries; ``pop_i`` is the number of (training) users who interacted with item ``i``. An
    item with ``pop_i = 0`` is clipped to ``1/n_users`` (the rarest observable popularity),
    so the values lie in ``[0, log2(n_users)]``. Empty lists give NaN.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_popularity: ``(n_items,)`` popularity counts in ``[0, n_users]``.
        n_users: Number of users the popularity was counted over.

    Returns:
        ``(U,)`` float64 array (bits).
    """
    n_users = check_positive_int(n_users, "n_users")
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D (n_items,), got shape {pop.shape}")
    if not np.all(np.isfinite(pop)) or np.any(pop < 0) or np.any(pop > n_users):
        raise ValueError(f"item_popularity must lie in [0, n_users={n_users}]")
    rec = check_recommended(recommended, pop.size)
    mask, safe = valid_mask(rec)
    info = -np.log2(np.maximum(pop, 1.0) / n_users)
    n_valid = mask.sum(axis=1)
    total = np.where(mask, info[safe], 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


def unexpectedness_scores(
    item_vecs: np.ndarray, centers: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """PURS unexpectedness of items w.r.t. each user's interest clusters, PURS Eq. 3.

    ``unexp(u, i) = sum_k (w_uk / sum_k' w_uk') * ||e_i - c_uk||_2``, the weighted mean
    Euclidean distance from item embedding ``e_i`` to the cluster centers ``c_uk`` of user
    ``u`` (PURS uses ``w_uk = |C_k|``, the cluster sizes). Clusters with ``w_uk = 0`` are
    padding and ignored (their centers may hold anything finite or not). Distances use
    ``||e||^2 + ||c||^2 - 2 e.c`` via a batched matmul (absolute error ~1e-8 near 0).

    Args:
        item_vecs: ``(U, N, d)`` embeddings of ``N`` items per user.
        centers: ``(U, C, d)`` cluster centers per user.
        weights: ``(U, C)`` non-negative cluster weights.

    Returns:
        ``(U, N)`` float64; rows whose weights sum to 0 are NaN.
    """
    e = np.asarray(item_vecs, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if e.ndim != 3 or c.ndim != 3 or w.ndim != 2:
        raise ValueError(
            f"expected item_vecs (U, N, d), centers (U, C, d), weights (U, C); got "
            f"{e.shape}, {c.shape}, {w.shape}"
        )
    if c.shape[0] != e.shape[0] or c.shape[2] != e.shape[2] or w.shape != c.shape[:2]:
        raise ValueError(
            f"shape mismatch: item_vecs {e.shape}, centers {c.shape}, weights {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    if not np.all(np.isfinite(e)):
        raise ValueError("item_vecs must be finite")
    active = w > 0
    c = np.where(active[..., None], c, 0.0)
    if not np.all(np.isfinite(c)):
        raise ValueError("centers of clusters with positive weight must be finite")
    sq = (
        np.einsum("und,und->un", e, e)[:, :, None]
        + np.einsum("ucd,ucd->uc", c, c)[:, None, :]
        - 2.0 * np.matmul(e, c.transpose(0, 2, 1))
    )
    dist = np.sqrt(np.maximum(sq, 0.0))
    w_sum = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_norm = w / w_sum[:, None]
    out = np.matmul(dist, w_norm[:, :, None])[:, :, 0]
    return np.where((w_sum > 0)[:, None], out, np.nan)


def unexpectedness(
    recommended: np.ndarray,
    item_embeddings: np.ndarray,
    centers: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """List-level PURS unexpectedness: PURS Eq. 3 averaged over the recommended items.

    ``Unexp(u) = (1/n) * sum_{i in L_u} unexp(u, i)`` over the ``n`` valid entries, with
    ``unexp`` from :func:`unexpectedness_scores` (PURS Sec. 5.2: "calculated as Equation (3)").

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_embeddings: ``(n_items, d)`` item embeddings.
        centers: ``(U, C, d)`` interest-cluster centers per user.
        weights: ``(U, C)`` cluster weights (0 = padded cluster).

    Returns:
        ``(U,)`` float64; NaN for empty lists or users without clusters.
    """
    emb = _check_matrix(item_embeddings, "item_embeddings")
    rec = check_recommended(recommended, emb.shape[0])
    c = np.asarray(centers)
    if c.ndim != 3 or c.shape[0] != rec.shape[0]:
        raise ValueError(f"centers must have shape ({rec.shape[0]}, C, d), got {c.shape}")
    mask, safe = valid_mask(rec)
    scores = unexpectedness_scores(emb[safe], centers, weights)
    n_valid = mask.sum(axis=1)
    total = np.where(mask, scores, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


# ---------------------------------------------------------------------------------------------
# HI diversity
# ---------------------------------------------------------------------------------------------


def hi_diversity(
    recommended: np.ndarray,
    item_similarity: np.ndarray | Sequence[np.ndarray],
) -> np.ndarray:
    """User-level diversity of the HI paper (Evaluation metrics section).

    ``Diversity(i, j) = 1 - S[i, j]`` with ``S`` the p2p inferred item–item similarity
    ``C = P Q`` (HI Eq. 4), and
    ``Diversity_user(u) = 1/(n(n-1)) * sum_{r != s} (1 - S[L_u[r], L_u[s]])``, the mean over
    the ordered pairs of the ``n`` valid entries (for asymmetric ``S`` this is the mean of
    the symmetrized similarity). The extracted text prints the denominator as ``2n(n-1)``;
    we use the mean (as NOTES.md states) because the paper reports values near 1.0 for
    random lists (Fig. 3), impossible if the mean were halved. ``S`` is not clipped, so
    values can leave ``[0, 2]`` when ``S`` is unnormalized. Lists with ``n < 2`` give NaN.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        item_similarity: Either a dense ``(n_items, n_items)`` array ``S``, or a pair
            ``(P, Q)`` with ``P (n_items, r)`` and ``Q (r, n_items)`` so that ``S = P @ Q``
            is never materialized: ``sum_{r != s} S = (sum_r P_r) . (sum_s Q_s)
            - sum_r P_r . Q_r``.

    Returns:
        ``(U,)`` float64 array.
    """
    if isinstance(item_similarity, tuple | list):
        if len(item_similarity) != 2:
            raise ValueError("item_similarity as factors must be a pair (P, Q)")
        p = _check_matrix(item_similarity[0], "P")
        q = _check_matrix(item_similarity[1], "Q")
        if q.shape != (p.shape[1], p.shape[0]):
            raise ValueError(
                f"factors must have shapes (n, r) and (r, n); got {p.shape} and {q.shape}"
            )
        n_items = p.shape[0]
        rec = check_recommended(recommended, n_items)
        m = _list_matrix(rec, n_items)
        sum_p = np.asarray(m @ p)
        sum_q = np.asarray(m @ q.T)
        diag = np.einsum("ir,ri->i", p, q)
        sim_sum = np.einsum("ur,ur->u", sum_p, sum_q) - np.asarray(m @ diag).ravel()
    else:
        s = _check_matrix(item_similarity, "item_similarity")
        if s.shape[0] != s.shape[1]:
            raise ValueError(f"item_similarity must be square, got shape {s.shape}")
        rec = check_recommended(recommended, s.shape[0])
        mask, safe = valid_mask(rec)
        sub = s[safe[:, :, None], safe[:, None, :]]
        pair = mask[:, :, None] & mask[:, None, :]
        pair &= ~np.eye(rec.shape[1], dtype=bool)[None]
        sim_sum = np.where(pair, sub, 0.0).sum(axis=(1, 2))
    n_valid = (rec >= 0).sum(axis=1).astype(np.float64)
    pairs = n_valid * (n_valid - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - sim_sum / pairs
    return np.where(n_valid >= 2, out, np.nan)


def hi_diversity_summary(values: np.ndarray) -> dict[str, float]:
    """Summary of user-level diversity as reported by HI (Tables 2, 3), NaN ignored.

    Args:
        values: ``(U,)`` per-user diversity (e.g. from :func:`hi_diversity`).

    Returns:
        ``{"median", "p25", "mean", "n_users"}``: median and 25th percentile (numpy's
        linear interpolation), mean, and the number of non-NaN users. All NaN when no
        user has a value.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D (U,), got shape {v.shape}")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"median": np.nan, "p25": np.nan, "mean": np.nan, "n_users": 0}
    return {
        "median": float(np.median(v)),
        "p25": float(np.percentile(v, 25)),
        "mean": float(v.mean()),
        "n_users": int(v.size),
    }


# ---------------------------------------------------------------------------------------------
# Between-user (system-level) diversity
# ---------------------------------------------------------------------------------------------


def between_user_diversity(
    recommended: np.ndarray,
    n_items: int,
    max_pairs: int | None = None,
    seed: int = 0,
) -> float:
    """System-level diversity: mean dissimilarity between users' lists.

    For users ``u != v`` with item sets ``L_u, L_v`` (distinct valid items),
    ``d(u, v) = 1 - |L_u ∩ L_v| / max(|L_u|, |L_v|)``, which is the classic
    ``1 - |L_u ∩ L_v| / K`` (Zhou et al. 2010, "personalization") for full lists and stays
    0 for identical padded lists. The result is the mean of ``d`` over all unordered pairs of
    users with non-empty lists: 0 = everyone gets the same list, 1 = no overlap.

    Overlaps come from the sparse product ``B B^T`` of the ``(U, n_items)`` binary indicator
    matrix, in row blocks to bound memory. If ``max_pairs`` is given and smaller than the
    number of pairs, ``max_pairs`` pairs are drawn uniformly with replacement from
    ``np.random.default_rng(seed)`` (an unbiased estimate).

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` = padding.
        n_items: Size of the catalogue.
        max_pairs: Optional cap on the number of pairs evaluated.
        seed: Seed of the pair sampler.

    Returns:
        Mean pairwise dissimilarity in ``[0, 1]``; NaN with fewer than 2 non-empty lists.
    """
    n_items = check_positive_int(n_items, "n_items")
    rec = check_recommended(recommended, n_items)
    if max_pairs is not None:
        max_pairs = check_positive_int(max_pairs, "max_pairs")
    b = _list_matrix(rec, n_items, binary=True)
    sizes_all = np.diff(b.indptr)
    b = b[sizes_all > 0]
    sizes = sizes_all[sizes_all > 0].astype(np.float64)
    n_users = b.shape[0]
    n_pairs = n_users * (n_users - 1) // 2
    if n_pairs == 0:
        return float("nan")
    if max_pairs is not None and max_pairs < n_pairs:
        rng = np.random.default_rng(seed)
        u = rng.integers(0, n_users, size=max_pairs)
        v = rng.integers(0, n_users - 1, size=max_pairs)
        v += v >= u
        overlap = np.asarray(b[u].multiply(b[v]).sum(axis=1)).ravel()
        return float(np.mean(1.0 - overlap / np.maximum(sizes[u], sizes[v])))
    bt = b.T.tocsc()
    block = max(1, 4_000_000 // max(n_users, 1))
    similarity_sum = 0.0
    for start in range(0, n_users, block):
        prod = (b[start : start + block] @ bt).tocoo()
        rows = prod.row + start
        upper = prod.col > rows
        r, c = rows[upper], prod.col[upper]
        similarity_sum += float((prod.data[upper] / np.maximum(sizes[r], sizes[c])).sum())
    return 1.0 - similarity_sum / n_pairs
