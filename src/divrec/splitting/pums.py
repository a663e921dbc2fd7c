"""TotalRecall's potential-users split (App. A.7): hold out a share of each item's users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PumsSplit", "holdout_count", "pums_split"]


@dataclass
class PumsSplit:
    """The PUMS split of Sec. 5.2 / App. A.7.

    Attributes:
        train: `(n_users, n_items)` binary CSR training pairs.
        valid: `(n_users, n_items)` binary CSR held-out pairs of the validation movies.
        test: `(n_users, n_items)` binary CSR held-out pairs of the test movies.
        chosen_items: `(C,)` movies with at least `min_users` users (sorted).
        valid_items: `(C_v,)` sorted validation movies.
        test_items: `(C_t,)` sorted test movies.
        popularity: `(n_items,)` users per movie in the full data (the group ranking key).
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    chosen_items: np.ndarray
    valid_items: np.ndarray
    test_items: np.ndarray
    popularity: np.ndarray

    def stats(self) -> dict:
        """Records and movies per part (Table 4)."""
        out = {}
        for name in ("train", "valid", "test"):
            m = getattr(self, name)
            out[name] = {
                "records": int(m.nnz),
                "movies": int((m.getnnz(axis=0) > 0).sum()),
                "users": int((m.getnnz(axis=1) > 0).sum()),
            }
        return out


def holdout_count(n_users_of_item: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Users held out per chosen movie: ``max(1, floor(fraction · n + 1/2))``.

    Rounds half up (1.5 → 2). With ML-1M this gives 9,913 pairs, the valid + test total of
    Table 4 (5,125 + 4,788); banker's rounding would give 9,902.

    Args:
        n_users_of_item: `(C,)` users per movie.
        fraction: held-out share (1% in Sec. 5.2).

    Returns:
        `(C,)` int64 counts.
    """
    n = np.asarray(n_users_of_item, dtype=np.float64)
    return np.maximum(1, np.floor(fraction * n + 0.5)).astype(np.int64)


def pums_split(
    matrix: sp.spmatrix, min_users: int = 50, fraction: float = 0.01, seed: int = 0
) -> PumsSplit:
    """Builds the PUMS split of Sec. 5.2 (see the module docstring).

    Args:
        matrix: `(n_users, n_items)` interactions (any nonzero is a positive).
        min_users: a movie is chosen when at least this many users watched it (50).
        fraction: share of each chosen movie's users held out (1%).
        seed: seeds the held-out users and the valid / test halving of the chosen movies.

    Returns:
        The split; train + valid + test partition the positive pairs.
    """
    x = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    x.data[:] = 1.0
    x.eliminate_zeros()
    x.sum_duplicates()
    x.data[:] = 1.0
    rng = np.random.default_rng(seed)
    xc = x.tocsc()
    popularity = np.diff(xc.indptr).astype(np.int64)
    chosen = np.flatnonzero(popularity >= min_users)
    take = holdout_count(popularity[chosen], fraction)
    perm = rng.permutation(chosen.size)
    half = chosen.size // 2
    valid_items = np.sort(chosen[perm[:half]])
    test_items = np.sort(chosen[perm[half:]])
    is_valid = np.zeros(x.shape[1], dtype=bool)
    is_valid[valid_items] = True
    rows, cols = [], []
    for item, n_take in zip(chosen, take, strict=True):
        users = xc.indices[xc.indptr[item] : xc.indptr[item + 1]]
        rows.append(rng.choice(users, size=int(n_take), replace=False))
        cols.append(np.full(int(n_take), item, dtype=np.int64))
    h_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    h_cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    held = sp.csr_matrix((np.ones(h_rows.size, np.float32), (h_rows, h_cols)), shape=x.shape)
    train = (x - held).tocsr()
    train.eliminate_zeros()
    v = is_valid[h_cols]
    valid = sp.csr_matrix((np.ones(v.sum(), np.float32), (h_rows[v], h_cols[v])), shape=x.shape)
    test = sp.csr_matrix((np.ones((~v).sum(), np.float32), (h_rows[~v], h_cols[~v])), shape=x.shape)
    return PumsSplit(train, valid, test, chosen, valid_items, test_items, popularity)
