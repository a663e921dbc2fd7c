"""Compiled pieces of `evaluate()` that give the public metrics' values at a lower cost.

`between_user_diversity` with sampled pairs: the public function
(`divrec.metrics.between_user_diversity`) builds the `(U, n_items)` indicator CSR, row-indexes
it twice with the `max_pairs` sampled users and multiplies the two `(max_pairs, n_items)`
matrices (≈ 75 ms at ML-1M's 6k users, 200k pairs). Here each list is sorted and deduplicated
once and each sampled pair's overlap is counted by stamping one row's items. The pairs are
drawn with the same generator calls, and the per-pair dissimilarities are the same float64
expression, so the result is the same value.

Steck's miscalibration (RecSys 2018, Eq. 1, 2, 5), the per-list category coverage, the
system category coverage / distinct categories and the popularity lift read the training
CSR rows of the evaluated users and the lists directly, adding the same terms in the same
order as the sparse products of the public functions, so the values are bit-identical
(tests/evaluation/test_evaluation_fast_metrics.py compares them with `==`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from divrec import metrics as M
from divrec.metrics._validation import (
    check_hits,
    check_n_relevant,
    check_positive_int,
    check_recommended,
)


@njit(cache=True, nogil=True, inline="always")
def _sort_small(buf: np.ndarray, n: int) -> None:
    """Sorts `buf[:n]` ascending in place (insertion sort: a list of K ≤ a few hundred ids,
    without the allocation of `np.sort` per row)."""
    for i in range(1, n):
        x = buf[i]
        j = i - 1
        while j >= 0 and buf[j] > x:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = x


@njit(cache=True, nogil=True)
def _sorted_counts(rec: np.ndarray):
    """Each row's distinct valid items ascending, left-aligned (−1 after), how many times
    each occurs (float64), the number of distinct items and of valid entries."""
    u, k = rec.shape
    vals = np.full((u, k), -1, dtype=np.int64)
    cnts = np.zeros((u, k), dtype=np.float64)
    sizes = np.zeros(u, dtype=np.int64)
    n_valid = np.zeros(u, dtype=np.float64)
    buf = np.empty(k, dtype=np.int64)
    for r in range(u):
        n = 0
        for j in range(k):
            if rec[r, j] >= 0:
                buf[n] = rec[r, j]
                n += 1
        n_valid[r] = n
        _sort_small(buf, n)
        m = 0
        for j in range(n):
            if m > 0 and buf[j] == vals[r, m - 1]:
                cnts[r, m - 1] += 1.0
            else:
                vals[r, m] = buf[j]
                cnts[r, m] = 1.0
                m += 1
        sizes[r] = m
    return vals, cnts, sizes, n_valid


def sorted_lists(recommended: np.ndarray) -> tuple:
    """`(vals, counts, sizes, n_valid)` of `_sorted_counts` for validated `(U, K)` lists:
    one sort of every list, shared by ILAD, miscalibration and between-user diversity."""
    return _sorted_counts(np.asarray(recommended).astype(np.int64, copy=False))


@njit(cache=True, nogil=True)
def _pair_overlaps(rows: np.ndarray, sizes: np.ndarray, u: np.ndarray, v: np.ndarray, n_items):
    """`|L_u ∩ L_v|` of each pair, as float64.

    Rows hold distinct items: pair `p` stamps the items of `L_u` with `p + 1` in an
    `(n_items,)` array (never cleared: a stale stamp is a smaller number) and counts the
    items of `L_v` that carry the stamp: 2 K steps per pair instead of the former K × K
    comparisons (200k pairs of 6k Zipf-drawn lists: 2× faster at K = 10, 5× at K = 50,
    12× at K = 100; the same counts).
    """
    stamp = np.zeros(n_items, dtype=np.int64)
    out = np.empty(u.size, dtype=np.float64)
    for p in range(u.size):
        a, b = u[p], v[p]
        mark = p + 1
        for i in range(sizes[a]):
            stamp[rows[a, i]] = mark
        c = 0
        for j in range(sizes[b]):
            c += stamp[rows[b, j]] == mark
        out[p] = c
    return out


def between_user_diversity(
    recommended: np.ndarray,
    n_items: int,
    max_pairs: int | None = None,
    seed: int = 0,
    lists: tuple | None = None,
) -> float:
    """`divrec.metrics.between_user_diversity` (Zhou et al. 2010), the same value.

    Pairs sampled (``max_pairs`` below the number of pairs) are computed here; the exact
    all-pairs mean is left to the public function.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        n_items: catalogue size.
        max_pairs: cap on the number of (sampled) pairs.
        seed: seed of the pair sampler.
        lists: `sorted_lists(recommended)` when already computed.
    """
    from divrec.metrics import between_user_diversity as public

    rec = check_recommended(recommended, n_items)
    rows, _, sizes_all, _ = sorted_lists(rec) if lists is None else lists
    nonempty = sizes_all > 0
    n_users = int(nonempty.sum())
    n_pairs = n_users * (n_users - 1) // 2
    if max_pairs is None or n_pairs == 0 or max_pairs >= n_pairs or max_pairs < 1:
        return public(rec, n_items, max_pairs=max_pairs, seed=seed)
    rows, sizes_i = rows[nonempty], sizes_all[nonempty]
    sizes = sizes_i.astype(np.float64)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, size=max_pairs)
    v = rng.integers(0, n_users - 1, size=max_pairs)
    v += v >= u
    overlap = _pair_overlaps(rows, sizes_i, u, v, n_items)
    return float(np.mean(1.0 - overlap / np.maximum(sizes[u], sizes[v])))


@njit(cache=True, nogil=True)
def _hits(rec, indptr, indices, data, rows):
    """Row r of the lists against CSR row `rows[r]`."""
    u, k = rec.shape
    out = np.zeros((u, k), dtype=np.bool_)
    for r in range(u):
        lo, hi = indptr[rows[r]], indptr[rows[r] + 1]
        for j in range(k):
            item = rec[r, j]
            if item < 0:
                continue
            for p in range(lo, hi):
                if indices[p] == item and data[p] != 0:
                    out[r, j] = True
                    break
    return out


def hits_matrix(recommended: np.ndarray, relevant_csr, rows=None) -> np.ndarray:
    """`divrec.metrics.hits_matrix(recommended, relevant_csr[rows])`, the same `(U, K)` bool
    array, by a scan of each user's relevant row (a few dozen items) instead of a sorted-key
    search over all of them, and without the row-indexed copy.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        relevant_csr: `(n, n_items)` scipy sparse matrix; nonzeros are relevant.
        rows: `(U,)` rows of `relevant_csr` for the lists (None: `n = U`, row r for list r).
    """
    import scipy.sparse as sp

    from divrec.metrics._validation import check_csr

    rel = relevant_csr
    if not (sp.isspmatrix_csr(rel) and rel.has_canonical_format):
        rel = check_csr(relevant_csr, "relevant_csr")  # duplicates merged (a canonical CSR
        # needs no copy: its explicit zeros are skipped by the kernel)
    rec = check_recommended(recommended, rel.shape[1])
    if rows is None:
        if rec.shape[0] != rel.shape[0]:
            raise ValueError(
                f"recommended has {rec.shape[0]} rows but relevant_csr has {rel.shape[0]} rows"
            )
        rows = np.arange(rec.shape[0], dtype=np.int64)
    else:
        rows = np.asarray(rows)
        if not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"rows must be integer row indices, got dtype {rows.dtype}")
        rows = rows.astype(np.int64, copy=False)
        if rows.shape != (rec.shape[0],):
            raise ValueError(f"rows has shape {rows.shape} for {rec.shape[0]} lists")
        if rows.size and (rows.min() < 0 or rows.max() >= rel.shape[0]):
            raise ValueError(f"rows must lie in [0, {rel.shape[0]})")
    return _hits(rec, rel.indptr, rel.indices, rel.data, rows)


def miscalibration(recommended, train_csr, users, item_categories, alpha: float = 0.01, lists=None):
    """`divrec.metrics.miscalibration(recommended, train_csr[users], item_categories, alpha)`,
    the same `(U,)` values (Steck 2018, Eq. 1, 2 and 5), without the row-indexed history, the
    two sparse products and their dense copies.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        train_csr: `(n_users, n_items)` canonical CSR of the training rows (sorted indices,
            no duplicates, as `Interactions.to_csr` returns); nonzeros are history items.
        users: `(U,)` rows of `train_csr` of the lists' users.
        item_categories: `(n_items, C)` multi-hot categories.
        alpha: smoothing α.
        lists: `sorted_lists(recommended)` when already computed.
    """
    import scipy.sparse as sp

    rec = np.asarray(recommended)
    if not (sp.isspmatrix_csr(train_csr) and train_csr.has_canonical_format):
        return M.miscalibration(rec, train_csr[users], item_categories, alpha)
    shares = M.category_shares(item_categories)
    # the public function's checks (integer ids, −1 the only negative, ids < n_items)
    rec = check_recommended(rec, shares.shape[0])
    if train_csr.shape[1] != shares.shape[0]:
        raise ValueError(
            f"history has {train_csr.shape[1]} item columns, shares {shares.shape[0]} rows"
        )
    if rec.ndim != 2 or rec.shape[0] != len(users):
        raise ValueError(f"history has {len(users)} rows for {rec.shape[0]} lists")
    if rec.size and rec.max() >= shares.shape[0]:
        raise ValueError(f"recommended holds item ids >= n_items={shares.shape[0]}")
    a = float(alpha)
    if not 0.0 < a <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    args = (shares.indptr, shares.indices, shares.data, shares.shape[1])
    users = np.asarray(users, dtype=np.int64)
    vals, cnts, sizes, n_l = sorted_lists(rec) if lists is None else lists
    if shares.shape[1] > _PW_BLOCKSIZE:  # numpy's longer sums are not reproduced by a kernel
        return M.miscalibration(rec, train_csr[users], item_categories, a)
    # `kl_miscalibration(p, q, alpha)`'s expression, without its checks (p and q are finite
    # and non-negative by construction) and without the (U, C) matrices: each user's history
    # and list mixes are summed in a C-buffer (shares added in the rows' stored order, as the
    # public function's sparse products add them), the ratios of the p > 0 terms gathered,
    # their log taken by numpy (numpy's own log, as in the public function), and each row's
    # terms summed in numpy's pairwise order
    ptr, cols, p, ratio = _kl_ratios(
        users, train_csr.indptr, train_csr.indices, train_csr.data, *args,
        vals, cnts, sizes, n_l.astype(np.float64), a, _dense_shares(shares),
    )  # fmt: skip
    return _kl_sums(ptr, cols, p, np.log(ratio), shares.shape[1])


#: above this many categories the history loop reads the sparse share rows
_DENSE_SHARES_MAX_CATEGORIES = 64


def _dense_shares(shares) -> np.ndarray:
    """`(n_items, C)` float64 shares for `_kl_ratios`'s dense loop, or `(0, C)` (sparse loop)
    when C is large, when items hold one category or fewer on average (the sparse loop's
    inner bound is then predictable and cheaper: 95k-user synthetic catalogue, 1 category per
    item), or when the share matrix repeats an entry (whose two additions a dense row would
    merge into one)."""
    n_cat = shares.shape[1]
    if (
        n_cat > _DENSE_SHARES_MAX_CATEGORIES
        or shares.shape[0] * n_cat > 2**22  # at most 32 MB of float64
        or shares.nnz <= shares.shape[0]
        or not shares.has_canonical_format
    ):
        return np.zeros((0, n_cat), dtype=np.float64)
    return np.ascontiguousarray(shares.toarray(), dtype=np.float64)


@njit(cache=True, nogil=True)
def _kl_ratios(users, indptr, indices, data, s_ptr, s_idx, s_val, n_cat, vals, cnts, sizes,
               n_l, a, dense):  # fmt: skip
    """The positive entries of each user's `p` (row pointers, columns, values) and their
    ratios `p / ((1 − α)·q + α·p)`: `kl_miscalibration`'s `p`, `q`, `qt` and `ratio`, element
    for element, from the history and list mixes summed in the rows' stored order, as scipy's
    sparse products in the public function sum them (`p > 0` exactly where the history mix
    is: shares are ≥ 1 / C).

    With ``dense`` (the `(n_items, C)` shares of a canonical share matrix; else `(0, C)`) each
    history item adds its whole share row: the added zeros leave every sum as it is (x + 0.0
    is x), and the loop has no data-dependent inner bound."""
    u_n = users.size
    use_dense = dense.shape[0] > 0
    ptr = np.zeros(u_n + 1, dtype=np.int64)
    cap = u_n * n_cat  # pages beyond the filled part are never touched
    cols = np.empty(cap, dtype=np.int32)
    p = np.empty(cap, dtype=np.float64)
    ratio = np.empty(cap, dtype=np.float64)
    hist = np.zeros(n_cat, dtype=np.float64)
    mix = np.zeros(n_cat, dtype=np.float64)
    b = 1.0 - a
    j = 0
    for r in range(u_n):
        u = users[r]
        nh = 0.0
        for e in range(indptr[u], indptr[u + 1]):
            if data[e] == 0:
                continue
            i = indices[e]
            nh += 1.0
            if use_dense:
                for c in range(n_cat):
                    hist[c] += dense[i, c]
            else:
                for s in range(s_ptr[i], s_ptr[i + 1]):
                    hist[s_idx[s]] += 1.0 * s_val[s]
        for t in range(sizes[r]):
            i = vals[r, t]
            c = cnts[r, t]
            for s in range(s_ptr[i], s_ptr[i + 1]):
                mix[s_idx[s]] += c * s_val[s]
        nl = n_l[r]
        for c in range(n_cat):
            h = hist[c]
            if h > 0 and nh > 0:
                pv = h / nh
                if pv > 0:
                    q = mix[c] / nl if nl > 0 else 0.0
                    cols[j] = c
                    p[j] = pv
                    ratio[j] = pv / (b * q + a * pv)
                    j += 1
            hist[c] = 0.0
            mix[c] = 0.0
        ptr[r + 1] = j
    return ptr, cols[:j], p[:j], ratio[:j]


@njit(cache=True, nogil=True)
def _kl_sums(ptr, cols, p, log_ratio, c_n):
    """Σ_c p·log(ratio) per row, the p = 0 terms 0, in numpy's pairwise order; NaN for a
    row without a positive p."""
    u_n = ptr.size - 1
    out = np.empty(u_n, dtype=np.float64)
    terms = np.zeros(c_n, dtype=np.float64)
    for r in range(u_n):
        lo, hi = ptr[r], ptr[r + 1]
        if lo == hi:
            out[r] = np.nan
            continue
        for j in range(lo, hi):
            terms[cols[j]] = p[j] * log_ratio[j]
        out[r] = _np_pairwise_sum(terms, 0, c_n)
        for j in range(lo, hi):
            terms[cols[j]] = 0.0
    return out


@njit(cache=True, nogil=True)
def _distinct_categories_per_row(rec, c_ptr, c_idx, n_cat):
    stamp = np.zeros(n_cat, dtype=np.int64)
    out = np.zeros(rec.shape[0], dtype=np.int64)
    for r in range(rec.shape[0]):
        c = 0
        for j in range(rec.shape[1]):
            i = rec[r, j]
            if i < 0:
                continue
            for s in range(c_ptr[i], c_ptr[i + 1]):
                g = c_idx[s]
                if stamp[g] != r + 1:
                    stamp[g] = r + 1
                    c += 1
        out[r] = c
    return out


def user_category_coverage(recommended, item_categories) -> np.ndarray:
    """`divrec.metrics.user_category_coverage(recommended, item_categories)`: the distinct
    categories of each list over the categories in use, counted with a stamp array
    instead of the `(U, n_items)` list matrix and its product with the categories.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        item_categories: `(n_items, C)` scipy sparse; any nonzero counts as 1.
    """
    from divrec.metrics.diversity import _category_setup

    rec, cats, n_cat = _category_setup(recommended, item_categories, None)
    counts = _distinct_categories_per_row(
        rec.astype(np.int64, copy=False), cats.indptr, cats.indices, cats.shape[1]
    )
    return counts.astype(np.float64) / n_cat


@njit(cache=True, nogil=True)
def _history_popularity(users, indptr, indices, data, pop):
    """Σ popularity of each user's training items (stored order, `0 + 1.0·p₁ + …`, the
    operations of scipy's `csr_matvec`) and their count."""
    s = np.zeros(users.size, dtype=np.float64)
    n = np.zeros(users.size, dtype=np.float64)
    for r in range(users.size):
        u = users[r]
        acc = 0.0
        c = 0.0
        for e in range(indptr[u], indptr[u + 1]):
            if data[e] != 0:
                acc += 1.0 * pop[indices[e]]
                c += 1.0
        s[r] = acc
        n[r] = c
    return s, n


def popularity_lift(recommended, train_csr, users, popularity) -> float:
    """`divrec.metrics.popularity_lift(recommended, train_csr[users], popularity)`, the same
    value (Abdollahpouri et al. 2020), the history profile summed straight from the rows.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        train_csr: `(n_users, n_items)` canonical training CSR.
        users: `(U,)` rows of `train_csr`.
        popularity: `(n_items,)` popularity.
    """
    import scipy.sparse as sp

    if not (sp.isspmatrix_csr(train_csr) and train_csr.has_canonical_format):
        return M.popularity_lift(recommended, train_csr[users], popularity)
    pop = np.asarray(popularity, dtype=np.float64)
    if pop.shape != (train_csr.shape[1],):
        return M.popularity_lift(recommended, train_csr[users], popularity)
    s, n_h = _history_popularity(
        np.asarray(users, dtype=np.int64), train_csr.indptr, train_csr.indices,
        train_csr.data, pop,
    )  # fmt: skip
    prof = np.divide(s, n_h, out=np.full(n_h.size, np.nan), where=n_h > 0)
    from divrec.metrics.groups import lift_from_profiles

    return lift_from_profiles(prof, average_recommendation_popularity(recommended, pop))


@njit(cache=True, nogil=True)
def _covered_categories(rec, n_items, c_ptr, c_idx, n_cat) -> int:
    seen = np.zeros(n_items, dtype=np.bool_)
    covered = np.zeros(n_cat, dtype=np.bool_)
    count = 0
    for r in range(rec.shape[0]):
        for j in range(rec.shape[1]):
            i = rec[r, j]
            if i < 0 or seen[i]:
                continue
            seen[i] = True
            for s in range(c_ptr[i], c_ptr[i + 1]):
                if not covered[c_idx[s]]:
                    covered[c_idx[s]] = True
                    count += 1
    return count


def category_coverage(recommended, item_categories) -> tuple[float, int]:
    """`divrec.metrics.category_coverage` and `distinct_categories` of the same lists (CDM
    Eq. 22; TotalRecall "Distinct cates@N"): the categories of the distinct recommended
    items, marked in one pass instead of `np.unique` twice and a row-indexed CSR.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        item_categories: `(n_items, C)` scipy sparse; any nonzero counts as 1.

    Returns:
        `(coverage, distinct)`: the covered share of the categories in use, and their count.
    """
    from divrec.metrics.diversity import _category_setup

    rec, cats, n_cat = _category_setup(recommended, item_categories, None)
    n = _covered_categories(
        rec.astype(np.int64, copy=False), cats.shape[0], cats.indptr, cats.indices,
        cats.shape[1],
    )  # fmt: skip
    return n / n_cat, int(n)


@njit(cache=True, nogil=True)
def _list_sums(vals, cnts, sizes, unit, sq):
    """Per list: Σ count·unit[i] `(U, d)` and Σ count·sq[i] `(U,)` over its distinct items,
    ascending, each element accumulated from 0 in that order: scipy's `csr_matvecs` and
    `csr_matvec` over `metrics.ilad`'s summed-duplicates list matrix, operation for
    operation."""
    u = vals.shape[0]
    d = unit.shape[1]
    summed = np.zeros((u, d), dtype=np.float64)
    self_sq = np.zeros(u, dtype=np.float64)
    for r in range(u):
        acc = 0.0
        for j in range(sizes[r]):
            i = vals[r, j]
            c = cnts[r, j]
            for t in range(d):
                summed[r, t] += c * unit[i, t]
            acc += c * sq[i]
        self_sq[r] = acc
    return summed, self_sq


def ilad(recommended, item_vectors, lists=None) -> np.ndarray:
    """`divrec.metrics.ilad` (CDM Eq. 21), the same `(U,)` values, without building the
    `(U, n_items)` list matrix: each list's unit vectors are summed by a compiled loop in
    the order of the sparse product they replace.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        item_vectors: `(n_items, d)` item embeddings.
        lists: `sorted_lists(recommended)` when already computed.
    """
    from divrec.metrics.diversity import _check_matrix, _pairwise_mean_distance, _unit_rows

    vecs = _check_matrix(item_vectors, "item_vectors")
    rec = check_recommended(recommended, vecs.shape[0])
    unit = np.ascontiguousarray(_unit_rows(vecs))
    vals, cnts, sizes, n_valid = sorted_lists(rec) if lists is None else lists
    summed, self_sq = _list_sums(vals, cnts, sizes, unit, np.einsum("id,id->i", unit, unit))
    sum_sq = np.einsum("ud,ud->u", summed, summed)
    return np.clip(_pairwise_mean_distance(sum_sq, self_sq, n_valid), 0.0, 2.0)


#: numpy's block size of pairwise summation: longer sums split in halves (not reproduced here)
_PW_BLOCKSIZE = 128


@njit(cache=True, nogil=True)
def _np_pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise summation of `a[lo:lo + n]`, `n ≤ 128` (the inner loop of
    `np.add.reduce`: sequential below 8 terms, else 8 interleaved partial sums)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return 0.0 + res  # numpy adds the sum to its identity: −0.0 terms give +0.0


@njit(cache=True, nogil=True)
def _category_sums(vals, cnts, sizes, c_ptr, c_idx, inv, has_cat, n_cat):
    """`metrics.category_ild`'s `sum_sq` and `self_sq`, operation for operation.

    There, `unit = diags(inv) @ cats` stores each item's categories in descending order
    (scipy's `csr_matmat` writes a row's columns in the reverse of their first touch);
    `summed = m @ unit` accumulates each category's `count · inv[i]` over the list's items
    ascending and stores the row in the reverse of first touch; `summed.multiply(summed)`
    writes the squares in first-touch order (the reverse again) unless every row of
    `summed` is already sorted (then in that order); `.sum(axis=1)` is `np.add.reduceat`
    over each row: the first square plus numpy's pairwise sum of the others.
    """
    u = vals.shape[0]
    sums = np.zeros((u, n_cat), dtype=np.float64)
    first = np.empty((u, n_cat), dtype=np.int64)
    n_first = np.zeros(u, dtype=np.int64)
    stamp = np.zeros(n_cat, dtype=np.int64)
    self_sq = np.zeros(u, dtype=np.float64)
    canonical = True
    for r in range(u):
        t = 0
        acc = 0.0
        for j in range(sizes[r]):
            i = vals[r, j]
            c = cnts[r, j]
            acc += c * has_cat[i]
            for s in range(c_ptr[i + 1] - 1, c_ptr[i] - 1, -1):
                g = c_idx[s]
                sums[r, g] += c * inv[i]
                if stamp[g] != r + 1:
                    stamp[g] = r + 1
                    first[r, t] = g
                    t += 1
        self_sq[r] = acc
        # stored order of `summed`: the first-touch order reversed, zero sums dropped
        m = 0
        for q in range(t):
            g = first[r, q]
            if sums[r, g] != 0:
                first[r, m] = g
                m += 1
        n_first[r] = m
        for q in range(m - 1):  # stored order ascending <=> first-touch order descending
            if first[r, q] <= first[r, q + 1]:
                canonical = False
    sum_sq = np.zeros(u, dtype=np.float64)
    sq = np.empty(n_cat, dtype=np.float64)
    for r in range(u):
        if n_first[r] > _PW_BLOCKSIZE + 1:  # numpy would split the sum: not reproduced
            return sum_sq, self_sq, False
        m = n_first[r]
        n = 0
        for q in range(m):
            g = first[r, m - 1 - q] if canonical else first[r, q]
            x = sums[r, g] * sums[r, g]
            if x != 0:
                sq[n] = x
                n += 1
        if n > 0:
            sum_sq[r] = sq[0] + _np_pairwise_sum(sq, 1, n - 1)
    return sum_sq, self_sq, True


def category_ild(recommended, item_categories, lists=None) -> np.ndarray:
    """`divrec.metrics.category_ild`, the same `(U,)` values, without the `(U, n_items)` list
    matrix and the two sparse products (see `_category_sums` for the order of the terms).

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        item_categories: `(n_items, C)` scipy sparse; any nonzero counts as 1.
        lists: `sorted_lists(recommended)` when already computed.
    """
    from divrec.metrics._validation import check_csr
    from divrec.metrics.diversity import _pairwise_mean_distance

    cats = check_csr(item_categories, "item_categories")
    rec = check_recommended(recommended, cats.shape[0])
    norms = np.sqrt(np.diff(cats.indptr).astype(np.float64))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    vals, cnts, sizes, n_valid = sorted_lists(rec) if lists is None else lists
    sum_sq, self_sq, ok = _category_sums(
        vals, cnts, sizes, cats.indptr, cats.indices, inv, (norms > 0).astype(np.float64),
        cats.shape[1],
    )  # fmt: skip
    if not ok:  # a list with over 129 categories
        return M.category_ild(rec, cats)
    return np.clip(_pairwise_mean_distance(sum_sq, self_sq, n_valid), 0.0, 1.0)


# --------------------------------------------------------------------------- per-list means
@njit(cache=True, nogil=True)
def _list_means(rec, item_values):
    """Mean of `item_values` over each row's non-padding entries (NaN for an empty row): the
    public `np.where(valid, v[rec], 0.0).sum(axis=1) / n_valid`, in numpy's summation order."""
    u_n, k = rec.shape
    out = np.empty(u_n, dtype=np.float64)
    terms = np.empty(k, dtype=np.float64)
    for r in range(u_n):
        n = 0
        for j in range(k):
            i = rec[r, j]
            if i >= 0:
                terms[j] = item_values[i]
                n += 1
            else:
                terms[j] = 0.0
        out[r] = _np_pairwise_sum(terms, 0, k) / n if n > 0 else np.nan
    return out


def novelty(recommended, item_popularity, n_users: int) -> np.ndarray:
    """`divrec.metrics.novelty`, the same `(U,)` values, without the `(U, K)` temporaries."""
    rec = np.asarray(recommended)
    if rec.ndim != 2 or rec.shape[1] > _PW_BLOCKSIZE or _column_major(rec):
        return M.novelty(rec, item_popularity, n_users)
    pop = np.asarray(item_popularity, dtype=np.float64)
    n_users = check_positive_int(n_users, "n_users")
    if pop.ndim != 1 or not np.all(np.isfinite(pop)) or np.any(pop < 0) or np.any(pop > n_users):
        return M.novelty(rec, item_popularity, n_users)  # its one-line errors
    rec = check_recommended(rec, pop.size)
    info = -np.log2(np.maximum(pop, 1.0) / n_users)
    return _list_means(rec, info)


def average_recommendation_popularity(recommended, popularity) -> np.ndarray:
    """`divrec.metrics.average_recommendation_popularity`, the same `(U,)` values."""
    rec = np.asarray(recommended)
    pop = np.asarray(popularity, dtype=np.float64)
    if (
        rec.ndim != 2
        or rec.shape[1] > _PW_BLOCKSIZE
        or pop.ndim != 1
        or _column_major(rec)
        or not np.issubdtype(rec.dtype, np.integer)
        or (rec.size and (rec.min() < -1 or rec.max() >= pop.size))
    ):
        return M.average_recommendation_popularity(rec, pop)  # its padding rule and errors
    return _list_means(rec, pop)


def _column_major(a: np.ndarray) -> bool:
    """A Fortran-ordered 2-D array: numpy then sums each row in column steps, sequentially,
    not in the pairwise order the kernels reproduce (the public function is used)."""
    return a.ndim == 2 and a.shape[1] > 1 and a.flags.f_contiguous and not a.flags.c_contiguous


# --------------------------------------------------------------------------- accuracy
@njit(cache=True, nogil=True)
def _accuracy_rows(hits, n_rel, k):
    """HR, precision, recall, reciprocal rank and AP at `k` of every row of a bool hit
    matrix, each the public function's expression element for element (AP's `Σ P@r·hit_r`
    in numpy's summation order)."""
    u_n = hits.shape[0]
    hr = np.empty(u_n, dtype=np.float64)
    prec = np.empty(u_n, dtype=np.float64)
    recall = np.empty(u_n, dtype=np.float64)
    rr = np.empty(u_n, dtype=np.float64)
    ap = np.empty(u_n, dtype=np.float64)
    terms = np.empty(k, dtype=np.float64)
    kf = float(k)
    for r in range(u_n):
        cnt = 0.0
        first = -1
        for j in range(k):
            if hits[r, j]:
                cnt += 1.0
                if first < 0:
                    first = j
                terms[j] = (cnt / (j + 1.0)) * 1.0
            else:
                terms[j] = 0.0
        n = n_rel[r]
        hr[r] = 1.0 if cnt > 0 else 0.0
        prec[r] = cnt / kf
        recall[r] = cnt / n if n > 0 else np.nan
        rr[r] = 1.0 / (first + 1.0) if first >= 0 else 0.0
        ap[r] = _np_pairwise_sum(terms, 0, k) / min(n, kf) if n > 0 else np.nan
    return hr, prec, recall, rr, ap


def accuracy(names, hits, n_relevant, k: int) -> dict[str, np.ndarray]:
    """`{name@k: values}` for `names` ⊆ {hr, recall, precision, ndcg, mrr, map}: the public
    `divrec.metrics` functions' `(U,)` values; all but NDCG (a BLAS product) from one pass."""
    h, k = check_hits(hits, k)
    fused = {"hr", "recall", "precision", "mrr", "map"}.intersection(names)
    values: dict[str, np.ndarray] = {}
    if fused and k <= _PW_BLOCKSIZE and not _column_major(np.asarray(hits)):
        n = check_n_relevant(n_relevant, h.shape[0])
        hr, prec, recall, rr, ap = _accuracy_rows(np.ascontiguousarray(h), n, k)
        values = {"hr": hr, "precision": prec, "recall": recall, "mrr": rr, "map": ap}
    public = {
        "hr": lambda: M.hit_rate_at_k(hits, k),
        "recall": lambda: M.recall_at_k(hits, n_relevant, k),
        "precision": lambda: M.precision_at_k(hits, k),
        "ndcg": lambda: M.ndcg_at_k(hits, n_relevant, k),
        "mrr": lambda: M.mrr_at_k(hits, k),
        "map": lambda: M.map_at_k(hits, n_relevant, k),
    }
    return {f"{name}@{k}": values[name] if name in values else public[name]() for name in names}


# --------------------------------------------------------------------------- exposure
@njit(cache=True, nogil=True)
def _group_exposure(rec, groups, weights, n_g):
    """`bincount(code[keep], weights=w[keep])`: each kept entry's position weight added to
    its group in row-major order, as `np.bincount` adds them; −2 in `bad` on a group code
    ≥ n_g (the caller raises)."""
    e = np.zeros(n_g, dtype=np.float64)
    bad = -1
    for r in range(rec.shape[0]):
        for j in range(rec.shape[1]):
            i = rec[r, j]
            if i < 0:
                continue
            g = groups[i]
            if g < 0:
                continue
            if g >= n_g:
                bad = max(bad, g)
                continue
            e[g] += weights[j]
    return e, bad


def exposure_share(recommended, groups, n_groups: int | None = None) -> np.ndarray:
    """`divrec.metrics.exposure_share`, the same `(G,)` shares, without the `(U, K)` weight,
    code and mask arrays."""
    rec = np.asarray(recommended)
    g = np.asarray(groups, dtype=np.int64)
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer) or rec.size == 0:
        return M.exposure_share(rec, g, n_groups)
    n_g = int(g.max(initial=-1)) + 1 if n_groups is None else int(n_groups)
    if rec.max() >= g.size or n_g < 0:
        return M.exposure_share(rec, g, n_groups)  # its one-line error
    from divrec.metrics.groups import position_discount

    w = np.ascontiguousarray(position_discount(rec.shape[1]), dtype=np.float64)
    e, bad = _group_exposure(np.ascontiguousarray(rec, dtype=np.int64), g, w, n_g)
    if bad >= 0:
        return M.exposure_share(rec, g, n_groups)  # its one-line error
    total = e.sum()
    return e / total if total > 0 else e
