"""Calibration of recommendation lists (Steck, "Calibrated Recommendations", RecSys 2018).

A list is calibrated when the category mix of the list matches the category mix of the
user's history. With ``p(g|i)`` the category distribution of item ``i`` (each of its
``|genres(i)|`` categories gets ``1 / |genres(i)|``, Steck Sec. 2),

    p(g|u) = Σ_{i ∈ H_u} w_{u,i} p(g|i) / Σ_{i ∈ H_u} w_{u,i}        (Steck Eq. 1)
    q(g|u) = Σ_{i ∈ I_u} w_{r(i)} p(g|i) / Σ_{i ∈ I_u} w_{r(i)}      (Steck Eq. 2)
    C_KL(p, q) = Σ_g p(g|u) log (p(g|u) / q̃(g|u)),  q̃ = (1 − α) q + α p   (Steck Eq. 5)

with ``α = 0.01`` in the paper (``q̃`` keeps the divergence finite when the list misses a
category of the history). Here ``w_{u,i} = 1`` (every history item counts once) and the
rank weights ``w_{r(i)} = 1`` (the plain share of the list); an item without any category
counts in the denominator of ``q`` and adds to no category (so ``q`` sums to less than
one; ML-1M has no such movie).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "category_shares",
    "kl_miscalibration",
    "list_distribution",
    "miscalibration",
    "user_distribution",
]


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 < a <= 1.0):  # NaN fails
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return a


def category_shares(item_categories: Any) -> sp.csr_matrix:
    """``p(g|i)``: each item's categories share ``1 / |genres(i)|`` (Steck Sec. 2).

    Args:
        item_categories: ``(n_items, C)`` multi-hot category matrix (dense or sparse;
            nonzero means "has the category").

    Returns:
        ``(n_items, C)`` float64 CSR whose rows sum to 1 (0 for items without category).
    """
    m = sp.csr_matrix(item_categories, dtype=np.float64, copy=True)
    if m.ndim != 2:
        raise ValueError(f"item_categories must have shape (n_items, C), got {m.shape}")
    m.eliminate_zeros()
    m.data[:] = 1.0
    counts = np.diff(m.indptr)
    m.data /= np.repeat(counts, counts).astype(np.float64)
    return m


def user_distribution(history: Any, shares: sp.csr_matrix) -> np.ndarray:
    """``p(g|u)`` of Steck Eq. 1 with ``w_{u,i} = 1``, ``(U, C)`` float64.

    Args:
        history: ``(U, n_items)`` sparse (or dense) matrix whose nonzeros are each user's
            history items (values are ignored).
        shares: ``(n_items, C)`` :func:`category_shares`.

    Returns:
        ``(U, C)``; a row of zeros for a user without history.
    """
    h = sp.csr_matrix(history, dtype=np.float64, copy=True)
    if h.shape[1] != shares.shape[0]:
        raise ValueError(f"history has {h.shape[1]} item columns, shares {shares.shape[0]} rows")
    h.eliminate_zeros()
    h.data[:] = 1.0
    n = np.asarray(h.sum(axis=1)).ravel()
    p = np.asarray((h @ shares).todense(), dtype=np.float64)
    return np.divide(p, n[:, None], out=np.zeros_like(p), where=n[:, None] > 0)


def list_distribution(recommended: Any, shares: sp.csr_matrix) -> np.ndarray:
    """``q(g|u)`` of Steck Eq. 2 with uniform rank weights, ``(U, C)`` float64.

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` padded.
        shares: ``(n_items, C)`` :func:`category_shares`.

    Returns:
        ``(U, C)``; a row of zeros for an empty list.
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must have shape (U, K), got {rec.shape}")
    valid = rec >= 0
    rows, cols = np.nonzero(valid)
    x = sp.csr_matrix(
        (np.ones(rows.size), (rows, rec[rows, cols])), shape=(rec.shape[0], shares.shape[0])
    )
    n = valid.sum(axis=1).astype(np.float64)
    q = np.asarray((x @ shares).todense(), dtype=np.float64)
    return np.divide(q, n[:, None], out=np.zeros_like(q), where=n[:, None] > 0)


def kl_miscalibration(p: Any, q: Any, alpha: float = 0.01) -> np.ndarray:
    """``C_KL(p, q) = Σ_g p_g log(p_g / q̃_g)``, ``q̃ = (1 − α) q + α p`` (Steck Eq. 5).

    Terms with ``p_g = 0`` are 0; with ``α > 0`` the value is finite and at most
    ``log(1 / α)`` (for ``p`` summing to one).

    Args:
        p: ``(..., C)`` target (history) distributions.
        q: ``(..., C)`` list distributions, same shape.
        alpha: smoothing ``α ∈ (0, 1]`` (the paper: 0.01).

    Returns:
        ``(...)`` float64 divergences in nats; NaN where ``p`` is all zero (no history).
    """
    a = _check_alpha(alpha)
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have one shape, got {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("p and q must be finite")
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("p and q must be non-negative")
    pos = p > 0
    qt = (1.0 - a) * q + a * p
    ratio = np.where(pos, p / np.where(pos, qt, 1.0), 1.0)
    out = np.sum(np.where(pos, p * np.log(ratio), 0.0), axis=-1)
    return np.where(pos.any(axis=-1), out, np.nan)


def miscalibration(
    recommended: Any, history: Any, item_categories: Any, alpha: float = 0.01
) -> np.ndarray:
    """Per-user miscalibration ``C_KL(p(·|u), q(·|u))`` of a batch of lists (Steck Eq. 5).

    Args:
        recommended: ``(U, K)`` int item indices, ``-1`` padded.
        history: ``(U, n_items)`` sparse matrix of each user's history (the training row).
        item_categories: ``(n_items, C)`` multi-hot categories.
        alpha: smoothing ``α`` (the paper: 0.01).

    Returns:
        ``(U,)`` float64; NaN for a user without a categorised history item.
    """
    shares = category_shares(item_categories)
    p = user_distribution(history, shares)
    q = list_distribution(recommended, shares)
    if p.shape[0] != q.shape[0]:
        raise ValueError(f"history has {p.shape[0]} rows for {q.shape[0]} lists")
    return kl_miscalibration(p, q, alpha)
