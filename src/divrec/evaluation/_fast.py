"""Compiled pieces of `evaluate()` that give the public metrics' values at a lower cost.

`between_user_diversity` with sampled pairs: the public function
(`divrec.metrics.between_user_diversity`) builds the `(U, n_items)` indicator CSR, row-indexes
it twice with the `max_pairs` sampled users and multiplies the two `(max_pairs, n_items)`
matrices (≈ 75 ms at ML-1M's 6k users, 200k pairs). Here each list is sorted and deduplicated
once and each sampled pair's overlap is counted over the two rows' at most K × K entries. The
pairs are drawn with the same generator calls, and the per-pair dissimilarities are the same
float64 expression, so the result is the same value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from divrec.metrics._validation import check_recommended


@njit(cache=True, nogil=True)
def _sorted_distinct_rows(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distinct valid items, ascending, left-aligned (−1 after), and their count."""
    u, k = rec.shape
    out = np.full((u, k), -1, dtype=np.int64)
    sizes = np.zeros(u, dtype=np.int64)
    buf = np.empty(k, dtype=np.int64)
    for r in range(u):
        n = 0
        for j in range(k):
            if rec[r, j] >= 0:
                buf[n] = rec[r, j]
                n += 1
        row = np.sort(buf[:n])
        m = 0
        for j in range(n):
            if m == 0 or row[j] != out[r, m - 1]:
                out[r, m] = row[j]
                m += 1
        sizes[r] = m
    return out, sizes


@njit(cache=True, nogil=True)
def _pair_overlaps(rows: np.ndarray, sizes: np.ndarray, u: np.ndarray, v: np.ndarray):
    """`|L_u ∩ L_v|` of each pair, as float64.

    Rows hold distinct items, so the overlap is the number of equal (i, j) entries among
    the first `sizes` of each row: a branch-free K × K count (a sorted merge mispredicts a
    branch at almost every step).
    """
    k = rows.shape[1]
    out = np.empty(u.size, dtype=np.float64)
    for p in range(u.size):
        a, b = u[p], v[p]
        na, nb = sizes[a], sizes[b]
        c = 0
        for i in range(k):
            x = rows[a, i]
            hit = 0
            for j in range(k):
                hit += (x == rows[b, j]) & (j < nb)
            c += hit & (i < na)
        out[p] = c
    return out


def between_user_diversity(
    recommended: np.ndarray, n_items: int, max_pairs: int | None = None, seed: int = 0
) -> float:
    """`divrec.metrics.between_user_diversity` (Zhou et al. 2010), the same value.

    Pairs sampled (``max_pairs`` below the number of pairs) are computed here; the exact
    all-pairs mean is left to the public function.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        n_items: catalogue size.
        max_pairs: cap on the number of (sampled) pairs.
        seed: seed of the pair sampler.
    """
    from divrec.metrics import between_user_diversity as public

    rec = check_recommended(recommended, n_items)
    rows, sizes_all = _sorted_distinct_rows(rec)
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
    overlap = _pair_overlaps(rows, sizes_i, u, v)
    return float(np.mean(1.0 - overlap / np.maximum(sizes[u], sizes[v])))


@njit(cache=True, nogil=True)
def _hits(rec: np.ndarray, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray):
    u, k = rec.shape
    out = np.zeros((u, k), dtype=np.bool_)
    for r in range(u):
        lo, hi = indptr[r], indptr[r + 1]
        for j in range(k):
            item = rec[r, j]
            if item < 0:
                continue
            for p in range(lo, hi):
                if indices[p] == item and data[p] != 0:
                    out[r, j] = True
                    break
    return out


def hits_matrix(recommended: np.ndarray, relevant_csr) -> np.ndarray:
    """`divrec.metrics.hits_matrix`, the same `(U, K)` bool array, by a scan of each user's
    relevant row (a few dozen items) instead of a sorted-key search over all of them.

    Args:
        recommended: `(U, K)` int item indices, −1 = padding.
        relevant_csr: `(U, n_items)` scipy sparse matrix; nonzeros are relevant.
    """
    import scipy.sparse as sp

    from divrec.metrics._validation import check_csr

    rel = relevant_csr
    if not (sp.isspmatrix_csr(rel) and rel.has_canonical_format):
        rel = check_csr(relevant_csr, "relevant_csr")  # duplicates merged (a canonical CSR
        # needs no copy: its explicit zeros are skipped by the kernel)
    rec = check_recommended(recommended, rel.shape[1])
    if rec.shape[0] != rel.shape[0]:
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant_csr has {rel.shape[0]} rows"
        )
    return _hits(rec, rel.indptr, rel.indices, rel.data)
