"""Shared validation, similarity sources and the re-ranker base class.

Every re-ranker in :mod:`divrec.rerank` follows one contract:

* the hyperparameters are declared once, as a frozen typed config (``XConfig``, a
  :class:`~divrec.stage.StageConfig` whose ``Attributes:`` section documents them) that
  validates itself on construction; the class sets ``Config = XConfig`` and reads them
  as read-only attributes (``MMR(lambda_=0.3).lambda_``), keyword-only;
* ``select(relevance, k, *, vectors=None, similarity=None, categories=None, **extra)``
  returns the selected *positions* (indices into the candidate list) in selection order,
  as a ``(k',)`` int64 array without duplicates, ``k' = min(k, N)`` unless a method
  documents otherwise;
* ``select_batch(relevance, k, *, vectors=None, similarity=None, categories=None,
  valid=None, **extra)`` returns a ``(B, k)`` int64 array padded with ``-1``.

Similarity convention: when ``vectors`` ``(N, d)`` is given, the similarity of items
``i`` and ``j`` is the cosine ``v_i·v_j / (‖v_i‖‖v_j‖)``; a zero vector has similarity 0
with everything, itself included. When ``similarity`` ``(N, N)`` is given it is used as
is (row ``j`` is read as the similarities of item ``j`` to all candidates). Passing both
is an error, so that nobody silently gets the one they did not mean. Methods that need a
similarity and get neither raise ``ValueError``. Two methods work on the vectors
themselves and require ``vectors``: :class:`~divrec.rerank.InterestAwareMMR` (raw dot
products of user-weighted embeddings, CDM Eq. 3) and :class:`~divrec.rerank.SSD`
(Gram–Schmidt residuals).

Relevance scaling: ``relevance_scaling="minmax"`` maps the relevance of each request to
``[0, 1]`` (over the valid candidates; a constant request maps to all zeros) so that the
trade-off hyperparameters mean the same thing for every request whatever the scale of the
upstream scores; ``"raw"`` uses the scores as given. It is the default everywhere except
:class:`~divrec.rerank.InterestAwareMMR` (CDM combines predicted probabilities as they
are). Min-max scaling is overflow-safe (relevance spanning ``±1e308`` is scaled, not
turned into NaN or into a constant).

Precision: the compiled greedy kernels (MMR, interest-aware MMR, the DPPs, SSD) take the
candidate vectors in the dtype they come in; ``select_batch`` never converts a whole batch.
With ``precision="input"`` (default) float32 vectors stay float32 in the kernel's work
matrix (half the bytes each greedy step streams; SSD's products and sums stay float64),
float64 vectors take the float64 path; ``precision="float64"`` converts float32 vectors to float64
inside the kernel, one request at a time (exact: the lists are those of float64 inputs of
the same values). On the float32 path MMR's similarity sweeps are float32 multiply-adds
(16 lanes; a cosine is within ~``1e-6`` of its float64 value) and the tie tolerance is
``128 · TIE_RTOL`` (so that float32 rounding, ``2^-24``, never decides a tie the float64
path gives to the lower position); the DPPs read float32 entries exactly as float64.
Rule for the float32 path (measured on the benchmark grid,
``benchmarks/results/rerank_precision.json``): its lists equal those of the float64 path
on the same vectors, except where, at the first differing step, the two candidates' gains
in the float64 path are within a relative ``1e-5`` (normalized vectors rounded to float32
differ by ``2^-24`` relative, which moves a cosine by up to ~``1e-7``; the tolerance
leaves a margin for the sums over ``d`` and the log-determinants).

Constraints: a `Query`'s :class:`~divrec.data.constraints.Constraints` reach the greedy
kernels as :class:`~divrec.data.constraints.ResolvedConstraints` (the ``constraints``
keyword of ``select_batch``, in position space): filters shrink ``valid``, boosts are added
to the relevance before scaling, and the kernels place pins first, skip candidates that
would break a maximum and reserve the minimums (:func:`divrec.rerank._kernels.con_eligible`).

Ties: ties are always broken towards the lower position, i.e. towards the upstream ranking
when candidates come in ranked order. Orders taken on the given numbers (first picks by
relevance, relevance fills, :class:`~divrec.rerank.CategoryCap`) use exact equality
(stable sort semantics). Greedy steps whose score is computed (a similarity, a residual
norm, a log-determinant) use a tolerance-aware argmax (:func:`tie_argmax` and its
compiled twin): candidates whose score is within ``TIE_RTOL · (|best| + scale)`` of the
best score are tied, with ``TIE_RTOL = 1e-9`` and ``scale`` a bound on the magnitude of
the computed terms (e.g. ``(1 − λ) · max |sim|`` for MMR, ``1`` for the DPP's
log-determinant gains). Floating-point rounding, which depends on the order of the
candidates, thus never decides a tie, and permuting candidates that are not tied permutes
the output accordingly. No input can produce a duplicate: NaN or ``−inf`` scores never
win over a finite one, and when none is finite the lowest available position is taken.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from divrec.persist import Persistable
from divrec.stage import Configured, NotFittedError
from divrec.stage import check_k as _check_count
from divrec.threads import SMALL_BATCH, resolve_threads

#: the type of every ``relevance_scaling`` hyperparameter (see the module docstring)
RelevanceScaling = Literal["minmax", "raw"]
#: the type of every ``precision`` hyperparameter (see the module docstring)
Precision = Literal["input", "float64"]

__all__ = [
    "Reranker",
    "Similarity",
    "category_similarity",
    "batch_chunks",
    "check_k",
    "cosine_similarity",
    "fill_by_relevance_batch",
    "kernel_inputs",
    "kernel_inputs_batch",
    "relevance_order",
    "scale_relevance",
    "scale_relevance_batch",
    "tie_argmax",
    "tie_argmax_rows",
    "TIE_RTOL",
]


# --------------------------------------------------------------------------- validation
def check_k(k: int) -> int:
    """Validate the list length ``k`` (a non-negative integer; `divrec.stage.check_k`)."""
    return _check_count(k, "k", 0)


def not_finite(what: str, batch: bool = False) -> ValueError:
    """The error for non-finite inputs: ``"{what} NaN or infinite values"``.

    Args:
        what: the subject and its verb, e.g. ``"relevance contains"``.
        batch: the inputs are a batch with padding: the message says ``at valid positions``.
    """
    return ValueError(f"{what} NaN or infinite values{' at valid positions' if batch else ''}")


def fitted_user_rows(users: np.ndarray, n_users: int, who: str) -> np.ndarray:
    """``users`` (internal indices of a `Query`), or ``ValueError`` naming the first one that
    has no fitted row (``who``: the re-ranker's name)."""
    if users.size and (users.max() >= n_users or users.min() < 0):
        bad = users[(users >= n_users) | (users < 0)][0]
        raise ValueError(
            f"{who}: user {int(bad)} is outside the fitted users (0 … {n_users - 1}); give "
            "a history for a new user"
        )
    return users


def relevance_array(relevance: Any, batch: bool = False, copy: bool = False) -> np.ndarray:
    """``relevance`` as float64 ``(N,)`` (``(B, N)`` with ``batch``), or ``ValueError``.

    Only the shape is checked (the values are the callers' or the kernels' to check);
    ``copy``: always a new array, else the input itself when it is float64 already.
    """
    r = np.array(relevance, dtype=np.float64) if copy else np.asarray(relevance, dtype=np.float64)
    if r.ndim != (2 if batch else 1):
        want = "(B, N)" if batch else "(N,)"
        raise ValueError(f"relevance must have shape {want}, got {r.shape}")
    return r


def check_relevance(relevance: Any) -> np.ndarray:
    """Return ``relevance`` as a finite float64 ``(N,)`` array or raise ``ValueError``."""
    r = relevance_array(relevance)
    if not np.all(np.isfinite(r)):
        raise not_finite("relevance contains")
    return r


def check_relevance_batch(
    relevance: Any, valid: Any | None, copy: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate batched relevance ``(B, N)`` and the ``valid`` mask ``(B, N)``.

    Invalid (padding) positions may hold anything, NaN included; they are replaced by 0
    in the returned copy (``copy=False``: the relevance is returned as given, padding
    untouched, for callers that never read it). Valid positions must be finite.
    """
    r = relevance_array(relevance, batch=True, copy=copy)
    if valid is None:
        if not np.isfinite(r).all():
            raise not_finite("relevance contains", batch=True)
        return r, np.ones(r.shape, dtype=bool)
    m = np.asarray(valid)
    if m.shape != r.shape:
        raise ValueError(f"valid must have shape {r.shape}, got {m.shape}")
    if m.dtype != bool:
        raise ValueError(f"valid must be a boolean mask, got dtype {m.dtype}")
    fin = np.isfinite(r)
    if not (fin | ~m).all():
        raise not_finite("relevance contains", batch=True)
    if copy:
        np.copyto(r, 0.0, where=~m)
    return r, m


def check_categories(categories: Any, n: int, who: str) -> np.ndarray:
    """Return ``categories`` as an int64 ``(N,)`` array or raise a one-line ``ValueError``."""
    if categories is None:
        raise ValueError(f"{who} needs `categories` (an (N,) int array)")
    c = np.asarray(categories)
    if c.shape != (n,):
        raise ValueError(f"categories must have shape ({n},), got {c.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"categories must be integers, got dtype {c.dtype}")
    return c.astype(np.int64, copy=False)


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(str(x) for x in shape)


def vectors_array(
    vectors: Any,
    shape: tuple[int, ...],
    dtype: Any = np.float64,
    as_array: Callable[..., np.ndarray] = np.asarray,
) -> np.ndarray:
    """``vectors`` ``shape + (d,)`` (one request: ``(N, d)``; a batch: ``(B, N, d)``).

    Args:
        vectors: the item vectors.
        shape: ``(N,)`` or ``(B, N)``.
        dtype: the dtype of the array (None: as given).
        as_array: how to make the array (``np.asarray``, ``np.ascontiguousarray`` or
            ``np.array`` for a copy).

    Raises:
        ValueError: a wrong shape (the values are not checked).
    """
    v = as_array(vectors, dtype=dtype)
    if v.shape[:-1] != shape:  # also when v.ndim != len(shape) + 1
        raise ValueError(f"vectors must have shape ({_dims(shape)}, d), got {v.shape}")
    return v


def similarity_source(
    shape: tuple[int, ...],
    vectors: Any | None,
    similarity: Any | None,
    who: str,
    *,
    valid: np.ndarray | None = None,
    required: bool = True,
    dtype: Any = np.float64,
    as_array: Callable[..., np.ndarray] = np.asarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The similarity source of one request (``shape = (N,)``) or a batch (``(B, N)``).

    At most one of ``vectors`` (``shape + (d,)``) and ``similarity`` (``shape + (N,)``)
    may be given, and one must be when ``required``. A similarity matrix must be finite:
    everywhere for one request, at the pairs of ``valid`` positions for a batch (not
    checked for a batch without ``valid``); the finiteness of vectors is left to the
    caller (the compiled kernels check it while they normalize them).

    Args:
        shape: ``(N,)`` or ``(B, N)``.
        vectors: item vectors, or None.
        similarity: similarity matrices, or None.
        who: the re-ranker's name, for errors.
        valid: ``(B, N)`` mask of a batch's real candidates, or None.
        required: raise when neither is given.
        dtype: the dtype of the arrays (None: as given).
        as_array: how to make the arrays (see :func:`vectors_array`).

    Returns:
        ``(vectors, None)``, ``(None, similarity)`` or, when not required, ``(None, None)``.

    Raises:
        ValueError: both or (``required``) neither given, a wrong shape, a non-finite
            similarity.
    """
    if vectors is not None and similarity is not None:
        raise ValueError(f"{who}: pass either `vectors` or `similarity`, not both")
    if vectors is not None:
        return vectors_array(vectors, shape, dtype, as_array), None
    if similarity is not None:
        s = as_array(similarity, dtype=dtype)
        want = (*shape, shape[-1])
        if s.shape != want:
            raise ValueError(f"similarity must have shape ({_dims(want)}), got {s.shape}")
        if len(shape) == 1:
            if not np.all(np.isfinite(s)):
                raise not_finite("similarity contains")
        elif valid is not None:
            pair = valid[:, :, None] & valid[:, None, :]
            if not np.all(np.isfinite(s[pair])):
                raise not_finite("similarity contains", batch=True)
        return None, s
    if required:
        d = "N" if len(shape) == 1 else "B, N"
        raise ValueError(f"{who} needs `vectors` ({d}, d) or `similarity` ({d}, N); got neither")
    return None, None


def require_vectors(vectors: Any | None, similarity: Any | None, who: str, missing: str) -> None:
    """Raise ``ValueError`` unless item ``vectors`` are given and no ``similarity`` (methods
    that work on the vectors themselves); ``missing`` ends the message of absent vectors."""
    if similarity is not None:
        raise ValueError(f"{who} needs item `vectors`, not a `similarity` matrix")
    if vectors is None:
        raise ValueError(f"{who} needs item `vectors` {missing}")


def all_valid(n: int, b: int = 1) -> np.ndarray:
    """A shared ``(b, n)`` all-True mask (the ``valid`` of ``b`` full requests).

    Cached up to a megabyte, because building it is a measurable part of a small request
    and, right after a large batch has streamed through the caches, every numpy call a
    request makes costs several microseconds more; the kernels only read it (never hand
    it to a caller).
    """
    return _all_valid(n, b) if n * b <= 1 << 20 else np.ones((b, n), dtype=bool)


@functools.lru_cache(maxsize=64)
def _all_valid(n: int, b: int) -> np.ndarray:
    return np.ones((b, n), dtype=bool)


# --------------------------------------------------------------------------- threads
_pools: dict[int, Any] = {}  # ThreadPoolExecutor by size, made on first use, kept
_pools_lock = threading.Lock()


def run_rows(bsz: int, work: Callable[[int, int], int]) -> int:
    """Run ``work(start, stop)`` over ``[0, bsz)`` in contiguous row ranges; OR of results.

    The compiled kernels release the GIL and carve their work arrays from per-thread
    buffers, so the ranges of a batch can run on several threads. How many is the
    :mod:`divrec.threads` policy for batch work: ``resolve_threads(batch=bsz)``, i.e. 1
    below :data:`~divrec.threads.SMALL_BATCH` requests (one call per request range costs
    more than it saves there) and else the process budget (``DIVREC_THREADS``, default
    1: nothing is threaded unless asked for). Results do not depend on the thread count:
    every request is computed by the same code, independently of the others.

    Args:
        bsz: number of rows (requests).
        work: ``work(start, stop) -> int`` runs rows ``start..stop-1``; returns flags.

    Returns:
        The bitwise OR of the ``work`` results.
    """
    if bsz < SMALL_BATCH:  # before anything else: small batches are the hot path
        return work(0, bsz)
    n = min(resolve_threads(None, batch=bsz), bsz)
    if n <= 1:
        return work(0, bsz)
    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = _pools[n] = ThreadPoolExecutor(n, thread_name_prefix="divrec-rerank")
    cuts = [bsz * i // n for i in range(n + 1)]
    jobs = [pool.submit(work, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    flags = 0
    for job in jobs:
        flags |= job.result()
    return flags


# --------------------------------------------------------------------------- scaling
def scale_relevance(r: np.ndarray, mode: str) -> np.ndarray:
    """Scale one request's relevance ``(N,)`` (``"minmax"`` to ``[0, 1]`` or ``"raw"``).

    Min-max is ``(r − lo) / (hi − lo)``; when ``hi − lo`` overflows (scores near
    ``±1.8e308``) both sides are halved first, which is exact for normal numbers.
    """
    if mode == "raw" or r.size == 0:
        return r
    lo, hi = float(r.min()), float(r.max())
    span = hi - lo  # Python floats: overflows to inf silently
    if not span > 0.0:
        return np.zeros_like(r)
    if np.isfinite(span):
        return (r - lo) / span
    return (r / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0)


def scale_relevance_batch(r: np.ndarray, valid: np.ndarray, mode: str) -> np.ndarray:
    """Row-wise :func:`scale_relevance` over the valid positions of ``r`` ``(B, N)``.

    Same arithmetic as :func:`scale_relevance` (bitwise equal per row). Invalid positions
    are set to 0 (they are never selected anyway).
    """
    if mode == "raw":
        return np.where(valid, r, 0.0)
    allv = bool(valid.all())
    lo = (r if allv else np.where(valid, r, np.inf)).min(axis=1, keepdims=True)
    hi = (r if allv else np.where(valid, r, -np.inf)).max(axis=1, keepdims=True)
    if not allv:
        has = np.isfinite(lo)
        lo, hi = np.where(has, lo, 0.0), np.where(has, hi, 0.0)
    if np.all(np.abs(lo) < 8e307) and np.all(np.abs(hi) < 8e307):
        span = hi - lo  # cannot overflow, nor can r - lo at valid positions
        ok = span > 0.0
        out = (r - lo) / np.where(ok, span, 1.0)
        out = np.where(ok, out, 0.0)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            span = hi - lo
            half = ~np.isfinite(span)
            num = np.where(half, r / 2.0 - lo / 2.0, r - lo)
            den = np.where(half, hi / 2.0 - lo / 2.0, span)
            ok = den > 0.0
            out = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    return out if allv else np.where(valid, out, 0.0)


#: relative tolerance of the tie rule (see the module docstring)
TIE_RTOL = 1e-9


def tie_argmax(score: np.ndarray, mask: np.ndarray, scale: float = 0.0) -> int:
    """Tolerance-aware argmax: the lowest ``mask`` position among the near-maxima.

    Positions whose score is within ``TIE_RTOL · (|best| + scale)`` of the best score over
    ``mask`` are tied; the lowest one is returned. NaN never wins; if no score is finite
    the lowest ``mask`` position is returned.

    Args:
        score: ``(N,)`` scores.
        mask: ``(N,)`` bool, candidates (at least one True).
        scale: bound on the magnitude of the terms summed into ``score`` (absorbs their
            rounding), ``≥ 0``.

    Returns:
        The selected position (-1 if ``mask`` is all False).
    """
    cand = np.flatnonzero(mask)
    if cand.size == 0:
        return -1
    s = score[cand]
    s = np.where(np.isnan(s), -np.inf, s)
    best = float(s.max())
    if best == -np.inf:
        return int(cand[0])
    if best == np.inf:
        return int(cand[np.argmax(s == np.inf)])
    thr = best - TIE_RTOL * (abs(best) + scale)
    return int(cand[np.argmax(s >= thr)])


def tie_argmax_rows(score: np.ndarray, mask: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Row-wise :func:`tie_argmax` of ``score`` ``(B, N)`` over ``mask`` ``(B, N)``.

    Returns ``(B,)`` int64 positions (0 for rows without any candidate).
    """
    s = np.where(mask & ~np.isnan(score), score, -np.inf)
    best = s.max(axis=1, initial=-np.inf)
    fin = np.isfinite(best)
    tol = TIE_RTOL * (np.abs(np.where(fin, best, 0.0)) + np.asarray(scale, dtype=np.float64))
    thr = np.where(fin, best - tol, best)
    hit = mask & (s >= thr[:, None])
    hit |= (best == -np.inf)[:, None] & mask  # nothing finite: lowest available position
    return np.argmax(hit, axis=1).astype(np.int64)


#: requests processed together by the vectorized batch paths: large enough to amortize the
#: Python overhead of a greedy step, small enough for the working set to stay in cache.
BATCH_CHUNK = 32


def batch_chunks(bsz: int, size: int = BATCH_CHUNK) -> list[slice]:
    """Consecutive slices of at most ``size`` requests covering ``range(bsz)``."""
    return [slice(s, min(s + size, bsz)) for s in range(0, bsz, size)]


def relevance_order(r: np.ndarray) -> np.ndarray:
    """Positions sorted by decreasing relevance, ties towards the lower position."""
    return np.argsort(-r, kind="stable").astype(np.int64)


def fill_by_relevance_batch(
    out: np.ndarray, counts: np.ndarray, r: np.ndarray, valid: np.ndarray, kb: np.ndarray
) -> None:
    """Complete each row of ``out`` in place with unselected valid items by relevance.

    Args:
        out: ``(B, k)`` int64 selections, ``-1`` padded; the first ``counts[b]`` are set.
        counts: ``(B,)`` number of items already selected per row.
        r: ``(B, N)`` relevance (any monotone scaling).
        valid: ``(B, N)`` bool mask of selectable positions.
        kb: ``(B,)`` target length per row (``min(k, n_valid)``).
    """
    bsz, k = out.shape
    if bsz == 0 or k == 0 or np.all(counts >= kb):
        return
    taken = np.zeros(valid.shape, dtype=bool)
    has = out >= 0
    taken[np.nonzero(has)[0], out[has]] = True
    key = np.where(valid & ~taken, -r, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    cols = np.arange(k)[None, :]
    need = (cols >= counts[:, None]) & (cols < kb[:, None])
    src = np.clip(cols - counts[:, None], 0, order.shape[1] - 1)
    cand = np.take_along_axis(order, src, axis=1)
    out[need] = cand[need]


# --------------------------------------------------------------------------- similarity
def cosine_similarity(vectors: Any) -> np.ndarray:
    """Cosine similarity matrix ``(N, N)`` of ``vectors`` ``(N, d)`` (zero rows give 0)."""
    v = _normalize_rows(np.asarray(vectors, dtype=np.float64))
    return v @ v.T


def category_similarity(categories: Any) -> np.ndarray:
    """Category-indicator similarity ``S_ij = 1[c_i = c_j]`` ``(N, N)``.

    This is the "fast-DPP on category similarity" kernel of the WeChat paper's baselines.
    It has rank equal to the number of distinct categories, so a DPP on it picks at most
    one item per category before the kernel is exhausted.
    """
    c = np.asarray(categories)
    if c.ndim != 1:
        raise ValueError(f"categories must have shape (N,), got {c.shape}")
    return (c[:, None] == c[None, :]).astype(np.float64)


def _normalize_rows(v: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("...d,...d->...", v, v))[..., None]
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0.0)


class Similarity:
    """Similarity of one request's candidates, from vectors (cosine) or a matrix.

    Only rows are materialized when built from vectors: ``row(j)`` costs ``O(N d)``, so
    greedy methods never pay for the full ``(N, N)`` matrix.
    """

    def __init__(self, matrix: np.ndarray | None, unit_vectors: np.ndarray | None) -> None:
        self.matrix = matrix
        self.unit_vectors = unit_vectors

    @classmethod
    def resolve(cls, n: int, vectors: Any | None, similarity: Any | None, who: str) -> Similarity:
        """Build from exactly one of ``vectors`` / ``similarity``; raise ``ValueError`` else."""
        v, s = similarity_source((n,), vectors, similarity, who)
        if v is None:
            return cls(s, None)
        if not np.all(np.isfinite(v)):
            raise not_finite("vectors contain")
        return cls(None, _normalize_rows(v))

    def row(self, j: int) -> np.ndarray:
        """Similarities of item ``j`` to all candidates, ``(N,)``."""
        if self.matrix is not None:
            return self.matrix[j]
        assert self.unit_vectors is not None
        return self.unit_vectors @ self.unit_vectors[j]

    def diag(self) -> np.ndarray:
        """Self-similarities ``(N,)``."""
        if self.matrix is not None:
            return np.diagonal(self.matrix).copy()
        assert self.unit_vectors is not None
        return np.einsum("nd,nd->n", self.unit_vectors, self.unit_vectors)

    def full(self) -> np.ndarray:
        """The full ``(N, N)`` matrix (only for methods that need all pairs)."""
        if self.matrix is not None:
            return self.matrix
        assert self.unit_vectors is not None
        return self.unit_vectors @ self.unit_vectors.T


# --------------------------------------------------------------------------- kernels
def _kernel_dtype(vectors: Any) -> Any:
    """The dtype the kernels take ``vectors`` in: float32 / float64 as given, else float64."""
    dt = getattr(vectors, "dtype", None)
    return dt if dt in (np.float32, np.float64) else np.float64


def work_dtype(vectors: np.ndarray, precision: str) -> Any:
    """The dtype of a kernel's feature-major work matrix: float32 for float32 ``vectors``
    unless ``precision == "float64"``, else float64."""
    if precision not in ("input", "float64"):
        raise ValueError(f"precision must be 'input' or 'float64', got {precision!r}")
    return np.float32 if vectors.dtype == np.float32 and precision == "input" else np.float64


_NO_CONSTRAINTS: tuple | None = None


def constraint_args(rc: Any, bsz: int) -> tuple:
    """The kernels' constraint arguments ``(con, cact, ccat, cmin, cmax, cpin, cprot,
    cfloor, clen)`` of a :class:`~divrec.data.constraints.ResolvedConstraints` (None: the
    shared placeholders of a batch without rules, never read by the kernels)."""
    global _NO_CONSTRAINTS
    if rc is None or not rc.active.any():
        if _NO_CONSTRAINTS is None:
            z1 = np.zeros((1, 1), dtype=np.int64)
            _NO_CONSTRAINTS = (
                False, np.zeros(1, dtype=np.bool_), z1, z1, z1, z1,
                np.zeros((1, 1), dtype=np.bool_), z1, np.zeros(1, dtype=np.int64),
            )  # fmt: skip
        return _NO_CONSTRAINTS
    c = np.ascontiguousarray
    return (
        True, c(rc.active), c(rc.cat), c(rc.min_c), c(rc.max_c), c(rc.pin_slot),
        c(rc.prot), c(rc.floor), np.zeros(bsz, dtype=np.int64),
    )  # fmt: skip


def slice_args(args: tuple, a: int, b: int) -> tuple:
    """:func:`constraint_args` of the requests ``a … b − 1`` (placeholders as they are)."""
    if not args[0]:
        return args
    return (True, *(x[a:b] for x in args[1:]))


def apply_constraints(rc: Any, relevance: np.ndarray, valid: np.ndarray | None):
    """``(relevance + boosts, valid & filters)`` of a batch with resolved rules."""
    if rc is None:
        return relevance, valid
    r = np.asarray(relevance, dtype=np.float64)
    if rc.boost is not None:
        r = r + rc.boost
    m = rc.keep if valid is None else np.asarray(valid) & rc.keep
    return r, m


def kernel_inputs(
    n: int, vectors: Any | None, similarity: Any | None, who: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validated inputs of the compiled kernels for one request (a batch of one).

    The finiteness of ``vectors`` is checked by the kernels while they normalize them
    (no extra pass); callers raise on their ``bad`` flag.

    Returns:
        ``vectors`` ``(1, N, d)`` float32 or float64 as given, other dtypes as float64
        (``(1, N, 0)`` when a matrix is given),
        ``matrix`` ``(1, N, N)`` float64 (``(1, 0, 0)`` when vectors are given) and
        whether the matrix is used. Raises ``ValueError`` as :meth:`Similarity.resolve`.
    """
    v, m = similarity_source(
        (n,), vectors, similarity, who, dtype=_kernel_dtype(vectors), as_array=np.ascontiguousarray
    )
    if v is not None:
        return v[None], np.zeros((1, 0, 0)), False
    return np.zeros((1, n, 0)), m[None], True


def kernel_inputs_batch(
    shape: tuple[int, int],
    valid: np.ndarray,
    vectors: Any | None,
    similarity: Any | None,
    who: str,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Batched :func:`kernel_inputs`: ``(B, N, d)`` vectors (float32 kept: never a
    float64 copy of the batch) / ``(B, N, N)`` float64 similarities.

    Values at invalid positions are never read by the kernels and may hold anything;
    valid ones must be finite.
    """
    v, m = similarity_source(
        shape, vectors, similarity, who, valid=valid, dtype=_kernel_dtype(vectors),
        as_array=np.ascontiguousarray,
    )  # fmt: skip
    if v is not None:
        return v, np.zeros((shape[0], 0, 0)), False
    return np.zeros((*shape, 0)), m, True


# --------------------------------------------------------------------------- the knob
def knob_ratio(diversity: Any) -> np.ndarray:
    """``d / (1 − d)`` for an unbounded trade-off weight (0 → 0, ½ → 1, 1 → 1e6).

    Elementwise over an array of knob values (the arithmetic of one Python float each,
    ``d`` capped at ``1 − 1e-6``).
    """
    d = np.minimum(np.asarray(diversity, dtype=np.float64), 1.0 - 1e-6)
    return d / (1.0 - d)


@functools.lru_cache(maxsize=64)
def constant_row(n: int, value: float) -> np.ndarray:
    """A shared ``(n,)`` array of ``value`` (read only by the kernels)."""
    return np.full(n, value)


def row_param(value: Any, bsz: int, name: str, upper: float = math.inf) -> np.ndarray:
    """A per-request hyperparameter (the diversity knob's) as a ``(B,)`` float64 array.

    Args:
        value: a number or a ``(B,)`` array.
        bsz: number of requests ``B``.
        name: the parameter's name, for errors.
        upper: largest allowed value (the lower bound is 0); ``inf``: any finite value.

    Raises:
        ValueError: a wrong shape, or a value outside ``[0, upper]`` (NaN, infinite).
    """
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (bsz,):
        if v.ndim != 0:
            raise ValueError(f"{name} must be a number or have shape ({bsz},), got {v.shape}")
        v = np.full(bsz, float(v))
    if not np.all((v >= 0.0) & (v <= upper) & np.isfinite(v)):  # NaN fails
        bound = "a finite number >= 0" if upper == math.inf else f"in [0, {upper:g}]"
        raise ValueError(f"{name} must be {bound} for every request")
    return v


def request_param(
    value: Any, default: float, bsz: int, name: str, upper: float = math.inf
) -> float | np.ndarray:
    """A trade-off parameter of ``select_batch``: the config's ``default`` (one float) when
    the per-request keyword ``value`` is None, else :func:`row_param` of ``value``."""
    return float(default) if value is None else row_param(value, bsz, name, upper)


# --------------------------------------------------------------------------- base class
class Reranker(Configured, Persistable):
    """Base class: hyperparameter access, the pipeline-stage call and a per-request-loop
    ``select_batch``.

    As a pipeline stage a re-ranker is fitted once (:meth:`fit`: the item vectors of its
    similarity, the item categories, per-user state) and then called per batch of requests
    (``reranker(query, candidates, k)``), taking per-request values from the
    :class:`~divrec.data.query.Query`: the diversity knob ``Query.diversity`` (0 =
    relevance only; each class maps it onto its paper's parameter, see
    :meth:`diversity_params`) and the method-specific ``Query.extras`` it declares in
    ``_query_extras``. An extra it does not know is a ``ValueError``.

    The knob reaches ``select_batch`` as one per-request array of the class's trade-off
    parameter (``lambda_``, ``theta``, ``gamma``, ``phi``: the keyword of that name
    overrides the config row by row), so a batch mixing knob values is one call that costs
    what a batch with one value costs (no clone re-ranker per value), and every row equals
    the re-ranker constructed with that row's parameter. Rows with knob 0 are set aside
    and get the relevance order.

    Subclasses declare ``Config`` and implement :meth:`select`; methods with a vectorized
    batch path override :meth:`select_batch`. Keyword arguments listed in
    ``_per_request_kwargs`` are sliced along the batch axis (and, when their second axis
    has length ``N``, along the candidate axis too) by the default loop.
    """

    #: extra keyword arguments that carry one entry per request in ``select_batch``
    _per_request_kwargs: tuple[str, ...] = ()
    #: extra per-request keyword arguments whose second axis is the candidate axis
    _per_item_kwargs: tuple[str, ...] = ()

    #: what the stage call gathers per candidate from the fitted state
    _stage_inputs: tuple[str, ...] = ("vectors", "categories")
    #: ``Query.extras`` keys this re-ranker accepts (per request, leading batch axis)
    _query_extras: tuple[str, ...] = ()
    #: whether the kernels honour ``Query.constraints`` (the ``constraints`` keyword)
    _takes_constraints: bool = False
    #: whether the first greedy pick is by relevance alone (explanations: no diversity part)
    _explain_first_by_relevance: bool = False

    def _explain_terms(self, query, b: int, kw: dict, idx: np.ndarray, r: np.ndarray):
        """``S -> (relevance part, diversity part, similarity to S)`` of request ``b``'s
        candidates ``idx`` (``r``: their relevance with boosts; see
        :mod:`divrec.rerank._explain`). Re-rankers that explain their lists override it."""
        raise ValueError(f"{type(self).__name__} does not explain its lists (explain=True)")

    # ------------------------------------------------------------------ stage
    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The per-request ``select_batch`` keyword that realizes the knob.

        Args:
            diversity: ``(B,)`` knob values in ``(0, 1]`` (``diversity = 0`` is always
                the relevance order, without re-ranking: :meth:`__call__` never passes
                it here).

        Returns:
            ``{name: (B,) array}``: the trade-off parameter of every request, computed
            elementwise with the arithmetic of one float (so that a row equals the
            re-ranker constructed with that row's value).

        Raises:
            ValueError: the class has no single trade-off parameter.
        """
        raise ValueError(
            f"{type(self).__name__} has no diversity knob (Query.diversity); use one of MMR, "
            "FastGreedyDPP, PersonalizedDPP, RealtimePersonalizedDPP, SSD, InterestAwareMMR, CFDA"
        )

    @classmethod
    def has_knob(cls) -> bool:
        """Whether the class maps the diversity knob (``Query.diversity``) onto a parameter;
        one without it refuses any knob, 0 included."""
        return cls.diversity_params is not Reranker.diversity_params

    def fit(self, train, item_vectors=None, user_vectors=None) -> Reranker:
        """Learns what the re-ranker needs from the training data; returns self.

        Args:
            train: the training `Interactions`.
            item_vectors: `(n_items, d)` item vectors for the similarity (e.g. the
                retriever's embedding); None: the reference SVD space of `train`
                (`divrec.metrics.reference_vectors`).
            user_vectors: `(n_users, d)` user vectors in the same space (interest-aware MMR);
                None: the reference SVD users when item vectors also come from it.

        Attributes:
            item_vectors_: `(n_items, d)` float32.
            item_category_: `(n_items,)` int64 first category (−1 none), or None.
            user_vectors_: `(n_users, d)` float32 or None.
            item_popularity_: `(n_items,)` float64 share of training interactions.
        """
        from divrec.metrics.reference import reference_vectors

        users = None
        if item_vectors is None:
            item_vectors, users = reference_vectors(train)
        vecs = np.asarray(item_vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != train.n_items:
            raise ValueError(f"item_vectors must have shape ({train.n_items}, d), got {vecs.shape}")
        self.item_vectors_ = vecs
        if user_vectors is not None:
            users = np.asarray(user_vectors, dtype=np.float32)
            if users.shape != (train.n_users, vecs.shape[1]):
                raise ValueError(
                    f"user_vectors must have shape ({train.n_users}, {vecs.shape[1]}), "
                    f"got {users.shape}"
                )
        self.user_vectors_ = users
        self.item_category_ = (
            train.primary_category() if train.item_categories is not None else None
        )
        self.n_categories_ = (
            int(train.item_categories.shape[1]) if train.item_categories is not None else None
        )
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        self.item_popularity_ = np.maximum(counts, 1.0) / max(float(counts.sum()), 1.0)
        self._fit_stage(train)
        return self

    def _fit_stage(self, train) -> None:
        """Subclass hook: per-user state from the training data."""

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        """Subclass hook: per-request keyword arguments of ``select_batch`` from the query."""
        return {}

    def __call__(self, query, candidates, k: int):
        """Selects ``k`` of each request's candidates (the pipeline-stage call).

        Args:
            query: the `Query` (users, diversity knob, extras).
            candidates: `(B, N)` `Candidates` with the upstream scores as relevance.
            k: list length.

        Returns:
            `(B, k)` `Candidates` in selection order, carrying their upstream scores.
        """
        from divrec.data.query import Candidates

        if not hasattr(self, "item_vectors_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        k = check_k(k)
        ids = candidates.ids
        if len(candidates) != len(query):
            raise ValueError(f"{len(candidates)} candidate rows for {len(query)} requests")
        if ids.size and ids.max() >= self.item_vectors_.shape[0]:
            raise ValueError("candidate item index outside the fitted catalogue")
        valid = ids >= 0
        safe = np.maximum(ids, 0)
        kw: dict[str, Any] = {}
        if "vectors" in self._stage_inputs:
            kw["vectors"] = self.item_vectors_[safe]
        if "categories" in self._stage_inputs and self.item_category_ is not None:
            kw["categories"] = self.item_category_[safe]
        if "popularity" in self._stage_inputs:
            kw["popularity"] = self.item_popularity_[safe]
        kw.update(self._request_inputs(query, safe))
        for key, value in query.extras.items():
            if key not in self._query_extras:
                allowed = ", ".join(self._query_extras) or "none"
                raise ValueError(
                    f"{type(self).__name__} does not take Query.extras[{key!r}] (it takes: "
                    f"{allowed})"
                )
            kw[key] = value
        if query.diversity is not None and not self.has_knob():
            self.diversity_params(np.zeros(0))  # raises: no knob, not even knob 0
        rules = query.constraints
        rc = None
        if rules is not None:
            if not self._takes_constraints:
                raise ValueError(
                    f"{type(self).__name__} does not take Query.constraints (use MMR, "
                    "InterestAwareMMR, FastGreedyDPP, PersonalizedDPP, RealtimePersonalizedDPP "
                    "or SSD)"
                )
            from divrec.data.constraints import resolve_batch

            rc = resolve_batch(
                rules, ids, k, self.item_category_, getattr(self, "n_categories_", None)
            )
            kw["constraints"] = rc
        relevance = np.where(valid, candidates.scores, 0.0).astype(np.float64)
        if query.diversity is None:
            pos = self.select_batch(relevance, k, valid=valid, **kw)
        else:
            pos = self._select_with_knob(query.diversity, relevance, k, valid, kw, rules)
        picked = pos >= 0
        safe_pos = np.maximum(pos, 0)
        out_ids = np.where(picked, np.take_along_axis(ids, safe_pos, axis=1), -1)
        scores = np.take_along_axis(candidates.scores, safe_pos, axis=1)
        violations = None
        if rules is not None:
            violations = self._check_rules(rules, out_ids, k)
        explanations = None
        if query.explain:
            from divrec.rerank._explain import explain_lists

            explanations = explain_lists(
                self, query, candidates, pos, relevance, valid, kw, rc, rules
            )
        out = Candidates(out_ids, np.where(picked, scores, -np.inf))
        if violations is not None or explanations is not None:
            object.__setattr__(out, "violations", violations)
            object.__setattr__(out, "explanations", explanations)
        return out

    def _check_rules(self, rules, out_ids: np.ndarray, k: int) -> tuple:
        """The violations of every constrained list (``(B,)`` tuple of tuples); raises the
        first one of a request that is not ``best_effort`` (one line naming the field)."""
        from divrec.data.constraints import check_list

        found = []
        for b, rule in enumerate(rules):
            got = check_list(out_ids[b], rule, self.item_category_, k, request=b)
            if got and not rule.best_effort:
                v = got[0]
                raise ValueError(
                    f"{v.field}: infeasible for request {b} ({v.detail}); pass "
                    "Constraints(best_effort=True) for the best list and a report"
                )
            found.append(tuple(got))
        return tuple(found)

    def _select_with_knob(self, diversity, relevance, k, valid, kw, rules=None) -> np.ndarray:
        """One ``select_batch`` with the knob as per-request parameters.

        Rows with ``diversity = 0`` get the candidates' order by score (stable, invalid
        positions last), the others the trade-off parameters of :meth:`diversity_params`;
        a ``Query.extras`` value of the same name (``theta``) takes precedence. Rows with
        constraints always go to the kernel (knob 0: its relevance-only parameter).
        """
        d = np.asarray(diversity, dtype=np.float64)
        zero = d <= 0.0
        if rules is not None:
            zero &= np.array([r is None for r in rules], dtype=bool)
        if not zero.any():  # no row to set aside: no copy of the inputs
            params = self.diversity_params(d)
            return self.select_batch(relevance, k, valid=valid, **{**params, **kw})
        out = np.full((relevance.shape[0], k), -1, dtype=np.int64)
        rows = np.flatnonzero(zero)
        if not np.isfinite(relevance[rows][valid[rows]]).all():  # as `select_batch` would
            raise not_finite("relevance contains", batch=True)
        key = np.where(valid[rows], -relevance[rows], np.inf)
        order = np.argsort(key, axis=1, kind="stable")[:, :k]
        got = np.take_along_axis(valid[rows], order, axis=1)
        out[rows, : order.shape[1]] = np.where(got, order, -1)
        if zero.all():
            return out
        rows = np.flatnonzero(~zero)
        sub = {
            key: (val if key == "now" or val is None else _take_rows(val, rows))
            for key, val in kw.items()
            if key != "constraints"
        }
        if kw.get("constraints") is not None:
            sub["constraints"] = take_constraints(kw["constraints"], rows)
        params = self.diversity_params(d[rows])
        out[rows] = self.select_batch(relevance[rows], k, valid=valid[rows], **{**params, **sub})
        return out

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select up to ``k`` positions; see the module docstring for the contract."""
        raise NotImplementedError

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Loop :meth:`select` over the requests; returns ``(B, k)`` int64, ``-1`` padded.

        Args:
            relevance: ``(B, N)`` scores; padding positions (``valid`` False) are ignored.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ``(B, N)`` int categories, or None.
            valid: ``(B, N)`` bool mask of real candidates (default: all valid).
            **kwargs: method-specific per-request arguments with a leading batch axis.
        """
        k = check_k(k)
        r, m = check_relevance_batch(relevance, valid)
        bsz, n = r.shape
        vecs, sim = similarity_source(  # checked per request by `select`
            r.shape, vectors, similarity, type(self).__name__, required=False, dtype=None
        )
        cats = None if categories is None else np.asarray(categories)
        if cats is not None and cats.shape != (bsz, n):
            raise ValueError(f"categories must have shape ({bsz}, {n}), got {cats.shape}")
        out = np.full((bsz, k), -1, dtype=np.int64)
        for b in range(bsz):
            idx = np.flatnonzero(m[b])
            kw: dict[str, Any] = {}
            if vecs is not None:
                kw["vectors"] = vecs[b, idx]
            if sim is not None:
                kw["similarity"] = sim[b][np.ix_(idx, idx)]
            if cats is not None:
                kw["categories"] = cats[b, idx]
            for name, value in kwargs.items():
                if value is None:
                    kw[name] = None
                elif name in self._per_item_kwargs:
                    kw[name] = np.asarray(value)[b, idx]
                elif name in self._per_request_kwargs:
                    kw[name] = value[b]
                else:
                    kw[name] = value
            sel = self.select(r[b, idx], k, **kw)
            out[b, : sel.shape[0]] = idx[sel]
        return out


def take_constraints(rc: Any, rows: np.ndarray) -> Any:
    """The resolved rules of the requests ``rows``."""
    return type(rc)(
        *(
            None if x is None else ([x[i] for i in rows] if isinstance(x, list) else x[rows])
            for x in rc
        )
    )


def _take_rows(value: Any, rows: np.ndarray) -> Any:
    if isinstance(value, list | tuple):
        return [value[i] for i in rows]
    return np.asarray(value)[rows]


def as_positions(selected: list[int] | np.ndarray) -> np.ndarray:
    """Convert a selection to the canonical ``(k',)`` int64 array."""
    return np.asarray(selected, dtype=np.int64).reshape(-1)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out
