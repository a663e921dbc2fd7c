"""Private input-validation helpers shared by the metric modules."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

PAD = -1
"""Padding value of a recommendation list: "no item at this position"."""


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` as an ``int`` after checking that it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_recommended(recommended: object, n_items: int | None = None) -> np.ndarray:
    """Validate a ``(U, K)`` integer batch of recommendation lists (``-1`` = padding).

    Args:
        recommended: Array-like of shape ``(U, K)`` with integer item indices or ``-1``.
        n_items: If given, every non-padding index must be ``< n_items``.

    Returns:
        The batch as an ``int64`` array of shape ``(U, K)``.
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be a 2-D (U, K) array, got shape {rec.shape}")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must have an integer dtype, got {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    if rec.size:
        if rec.min() < PAD:
            raise ValueError(f"recommended contains {rec.min()}; only -1 may mark padding")
        if n_items is not None and rec.max() >= n_items:
            raise ValueError(
                f"recommended contains item {rec.max()} but there are only {n_items} items"
            )
    return rec


def valid_mask(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mask, safe)``: the non-padding mask and indices with padding replaced by 0."""
    mask = rec >= 0
    safe = np.where(mask, rec, 0)
    return mask, safe


def check_csr(matrix: object, name: str) -> sp.csr_matrix:
    """Return a canonical binary CSR copy (explicit zeros dropped, duplicates merged)."""
    if not sp.issparse(matrix):
        raise ValueError(f"{name} must be a scipy.sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {matrix.shape}")
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data = np.ones_like(out.data)
    out.sort_indices()
    return out


def check_hits(hits: object, k: int) -> tuple[np.ndarray, int]:
    """Validate a ``(U, K')`` binary hit matrix and a cut-off ``k <= K'``.

    Returns:
        ``(hits[:, :k] as bool, k)``.
    """
    k = check_positive_int(k, "k")
    h = np.asarray(hits)
    if h.ndim != 2:
        raise ValueError(f"hits must be a 2-D (U, K) array, got shape {h.shape}")
    if h.dtype != np.bool_:
        if h.size and not np.isin(h, (0, 1)).all():
            raise ValueError("hits must be boolean or contain only 0/1")
        h = h.astype(bool)
    if k > h.shape[1]:
        raise ValueError(f"k={k} exceeds the number of columns of hits ({h.shape[1]})")
    return h[:, :k], k


def check_n_relevant(n_relevant: object, n_users: int) -> np.ndarray:
    """Validate a ``(U,)`` vector of non-negative relevant-item counts; return it as float64."""
    n = np.asarray(n_relevant)
    if n.ndim != 1 or n.shape[0] != n_users:
        raise ValueError(f"n_relevant must have shape ({n_users},), got {n.shape}")
    n = n.astype(np.float64)
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError("n_relevant must contain finite non-negative counts")
    return n
