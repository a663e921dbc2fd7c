"""Feedback-differentiating encoding (FEEDE) of the HI paper.

HI ("heterogeneous inference", hi-heterogeneous-inference.txt, Sec. "Notation and problem
statement" and the FEEDE paragraph) keeps three `m × n` user × item matrices:

- `X`, positive feedback: `x_ij ∈ {0, 1}` is 1 when user i gave positive feedback to an
  impression of item j, 0 for negative *or unobserved* feedback;
- `O`, observation (impression): `o_ij = 1` when user i has an impression of item j;
- `Y = O − X` (Eq. 6), negative feedback: in binary context `y_ij = 1` iff `x_ij = 0` and
  `o_ij = 1`, so negative and unknown feedback are no longer conflated.

For ratings on a scale 1..h the paper normalizes first: with 1..5 ratings `x_ij = rating/6`
and the same `Y = O − X` gives `y_ij = 1 − x_ij` on observed cells and 0 elsewhere.

These matrices feed p2p (`XᵀX`, Eq. 3–5), n2p (`YᵀX`, Eq. 7–9) and HI-RT
(`H = [XᵀX; YᵀX]`, scores `[X, βY] H'`, Eq. 14–17). `encode_events` and
`encode_events_batch` build the `x` and `y` rows of Eq. 17 for realtime requests.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import DataError, Interactions

__all__ = ["FeedbackMatrices", "encode_events", "encode_events_batch", "encode_feedback"]

_MODES = ("threshold", "rating6")


@dataclass
class FeedbackMatrices:
    """The FEEDE matrices of HI (Eq. 6).

    Attributes:
        X: `(n_users, n_items)` float32 CSR positive-feedback matrix (values in (0, 1]).
        O: `(n_users, n_items)` float32 CSR observation matrix (1 on every observed cell).
        Y: `(n_users, n_items)` float32 CSR negative-feedback matrix, `Y = O − X` (Eq. 6),
            values in (0, 1]. `X` and `Y` store no explicit zeros; both are supported on the
            observed cells of `O`.
    """

    X: sp.csr_matrix
    O: sp.csr_matrix  # noqa: E741 - the paper's name
    Y: sp.csr_matrix

    def __post_init__(self) -> None:
        if not (self.X.shape == self.O.shape == self.Y.shape):
            raise ValueError(
                f"X, O, Y must share one shape, got {self.X.shape}, {self.O.shape}, {self.Y.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """`(n_users, n_items)`."""
        return self.O.shape


def encode_feedback(
    data: Interactions,
    mode: str = "threshold",
    threshold: float = 4.0,
    *,
    rating_divisor: float = 6.0,
) -> FeedbackMatrices:
    """Encodes an interaction log as the HI matrices X, O and Y = O − X (Eq. 6).

    `O` is 1 on every observed (rated) cell, i.e. every (user, item) pair of the log. When the
    log repeats a pair, the latest event (by timestamp, then position) decides its feedback,
    as in `Interactions.deduplicate("last")`.

    Modes:
        "threshold": binary feedback (the paper's main setting, Sec. "Preliminaries": real
            feedback "is converted into either a positive feedback or a negative feedback
            according to a preset threshold"). `x_ij = 1` iff `rating ≥ threshold`, so
            `y_ij = 1` exactly on observed negatives (the case analysis under Eq. 6).
        "rating6": normalized ratings (text under Eq. 6): `x_ij = rating/6` on observed cells,
            hence `y_ij = o_ij − x_ij = 1 − x_ij`. `rating_divisor` generalizes 6 to `h + 1`
            for ratings on 1..h; ratings must lie in [0, rating_divisor].

    Args:
        data: the log; its `values` are the ratings (or 1.0 for implicit feedback — note
            that with implicit data "threshold" mode needs `threshold <= 1`).
        mode: "threshold" or "rating6".
        threshold: positive-feedback threshold of "threshold" mode.
        rating_divisor: the divisor of "rating6" mode (6 in the paper).

    Returns:
        `FeedbackMatrices` with float32 CSR `X`, `O`, `Y` of shape `(n_users, n_items)`,
        sorted indices, no explicit zeros.

    Raises:
        ValueError: unknown mode.
        DataError: "rating6" ratings outside [0, rating_divisor].
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if data.nnz:
        data = data.deduplicate("last")
    values = data.values.astype(np.float64)
    if mode == "threshold":
        x = (values >= threshold).astype(np.float32)
        if data.nnz and not x.any():
            warnings.warn(
                f"{data.name}: no observed value reaches threshold {threshold:g} "
                f"(max {values.max():g}); X is empty and Y = O",
                stacklevel=2,
            )
    else:
        if rating_divisor <= 0:
            raise ValueError(f"rating_divisor must be positive, got {rating_divisor}")
        bad = (values < 0) | (values > rating_divisor)
        if bad.any():
            raise DataError(
                f"{data.name}: rating6 encoding needs ratings in [0, {rating_divisor:g}], "
                f"got {values[np.argmax(bad)]:g}"
            )
        x = (values / rating_divisor).astype(np.float32)
    o = np.ones(data.nnz, dtype=np.float32)
    y = o - x  # Eq. 6, cell by cell on the observed support
    return FeedbackMatrices(
        X=_csr(data.users, data.items, x, data.shape),
        O=_csr(data.users, data.items, o, data.shape),
        Y=_csr(data.users, data.items, y, data.shape),
    )


def encode_events(
    pos_items: Sequence[int] | np.ndarray,
    neg_items: Sequence[int] | np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense `x` and `y` rows of one realtime request (HI-RT, Eq. 14–17).

    HI-RT scores a user as `[x, βy] H'` (Eq. 17) from the user's recent positive and negative
    events. With `o` = 1 on every item in either list, `x` = 1 on positives and `y = o − x`
    (Eq. 6): an item in both lists counts as positive (`x = 1`, `y = 0`). Repeats count once.

    Args:
        pos_items: internal indices of items with positive feedback.
        neg_items: internal indices of items with negative feedback.
        n_items: size of the item universe.

    Returns:
        `(x, y)`, two `(n_items,)` float32 arrays with entries in {0, 1}.

    Raises:
        ValueError: an index outside [0, n_items).
    """
    pos = _indices(pos_items, n_items, "pos_items")
    neg = _indices(neg_items, n_items, "neg_items")
    x = np.zeros(n_items, dtype=np.float32)
    o = np.zeros(n_items, dtype=np.float32)
    x[pos] = 1.0
    o[pos] = 1.0
    o[neg] = 1.0
    return x, o - x


def encode_events_batch(
    pos_lists: Sequence[Sequence[int] | np.ndarray],
    neg_lists: Sequence[Sequence[int] | np.ndarray],
    n_items: int,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Batched `encode_events`: one CSR row per request.

    Args:
        pos_lists: `B` sequences of positive item indices.
        neg_lists: `B` sequences of negative item indices.
        n_items: size of the item universe.

    Returns:
        `(X, Y)`, two `(B, n_items)` float32 CSR matrices with `Y = O − X` (Eq. 6) row by
        row, values 1, no explicit zeros; row b equals `encode_events(pos_lists[b],
        neg_lists[b], n_items)`.

    Raises:
        ValueError: lists of different lengths, or an index outside [0, n_items).
    """
    if len(pos_lists) != len(neg_lists):
        raise ValueError(
            f"pos_lists and neg_lists must have one length, got {len(pos_lists)} and "
            f"{len(neg_lists)}"
        )
    n_rows = len(pos_lists)
    pos_rows, pos = _flatten(pos_lists, n_items, "pos_lists")
    neg_rows, neg = _flatten(neg_lists, n_items, "neg_lists")
    shape = (n_rows, n_items)
    x = _binary_csr(pos_rows, pos, shape)
    o = _binary_csr(np.r_[pos_rows, neg_rows], np.r_[pos, neg], shape)
    y = (o - x).tocsr()
    y.eliminate_zeros()
    y.sort_indices()
    return x, y.astype(np.float32)


# ---------------------------------------------------------------------- helpers


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape) -> sp.csr_matrix:
    mat = sp.csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.float32)
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat


def _binary_csr(rows: np.ndarray, cols: np.ndarray, shape) -> sp.csr_matrix:
    mat = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=shape, dtype=np.float32
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    mat.sort_indices()
    return mat


def _indices(items, n_items: int, what: str) -> np.ndarray:
    idx = np.asarray(items).reshape(-1)
    if idx.size == 0:
        return idx.astype(np.int64)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer item indices, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= n_items:
        bad = idx[(idx < 0) | (idx >= n_items)][0]
        raise ValueError(f"{what}: item index {bad} outside [0, {n_items})")
    return idx


def _flatten(lists, n_items: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Row index and item index of every entry of a ragged list of index lists."""
    parts = [_indices(items, n_items, f"{what}[{b}]") for b, items in enumerate(lists)]
    lengths = np.fromiter((p.size for p in parts), dtype=np.int64, count=len(parts))
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    cols = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return rows, cols
