"""Maximal Marginal Relevance (MMR) and the interest-aware MMR of CDM.

Both are instances of one greedy scheme ("penalized greedy"): the first item is the most
relevant one, then every step picks

    argmax_{i ∉ S}  base_i − coef · agg_{j ∈ S} sim(i, j),

with ``agg`` the maximum (MMR, CDM) or the mean (CF-DA, hybrid utility, see
:mod:`divrec.rerank.baselines`). The re-rankers run it in a compiled kernel
(:mod:`divrec.rerank._kernels`): ``select`` is the kernel on a batch of one request and
``select_batch`` one compiled loop over the requests, so both agree bit for bit and the
batch is never slower than a loop of ``select``. :func:`penalized_greedy` /
:func:`penalized_greedy_batch` are the same recursion in numpy for arbitrary row
callables. Ties follow the rule of :mod:`divrec.rerank._base` (first pick: exact argmax of
the relevance; later picks: tolerance-aware argmax, lowest position among the tied).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from divrec.stage import StageConfig, param

from ._base import (
    Precision,
    RelevanceScaling,
    Reranker,
    _kernel_dtype,
    all_valid,
    apply_constraints,
    as_positions,
    batch_chunks,
    check_k,
    check_relevance,
    check_relevance_batch,
    constant_row,
    constraint_args,
    fitted_user_rows,
    kernel_inputs,
    kernel_inputs_batch,
    knob_ratio,
    not_finite,
    request_param,
    require_vectors,
    row_param,
    run_rows,
    scale_relevance,
    scale_relevance_batch,
    slice_args,
    tie_argmax,
    tie_argmax_rows,
    vectors_array,
    work_dtype,
)

Aggregate = Literal["max", "mean"]

__all__ = [
    "MMR",
    "InterestAwareMMR",
    "InterestAwareMMRConfig",
    "MMRConfig",
    "penalized_greedy",
    "penalized_greedy_batch",
]


def penalized_greedy(
    base: np.ndarray,
    first_key: np.ndarray,
    k: int,
    row: Callable[[int], np.ndarray],
    coef: float,
    agg: Aggregate,
) -> np.ndarray:
    """Greedy ``argmax base_i − coef · agg_{j∈S} sim(i, j)`` for one request.

    Args:
        base: ``(N,)`` per-item static score.
        first_key: ``(N,)`` score used for the first pick (usually the relevance).
        k: list length; ``min(k, N)`` positions are returned.
        row: ``row(j)`` returns the ``(N,)`` similarities of item ``j`` to all items.
        coef: weight of the similarity penalty.
        agg: ``"max"`` (MMR) or ``"mean"`` (mean similarity to the selected items).

    Returns:
        ``(min(k, N),)`` int64 positions in selection order.
    """
    n = base.shape[0]
    kk = min(k, n)
    if kk == 0:
        return np.zeros(0, dtype=np.int64)
    avail = np.ones(n, dtype=bool)
    acc = np.full(n, -np.inf) if agg == "max" else np.zeros(n)
    out = [int(np.argmax(first_key))]
    avail[out[0]] = False
    seen = 0.0
    for t in range(1, kk):
        s = np.asarray(row(out[-1]), dtype=np.float64)
        seen = max(seen, float(np.max(np.abs(s))))
        if agg == "max":
            np.maximum(acc, s, out=acc)
            pen = acc
        else:
            acc += s
            pen = acc / t
        score = base - coef * pen if coef != 0.0 else base
        j = tie_argmax(score, avail, coef * seen)
        out.append(j)
        avail[j] = False
    return as_positions(out)


def penalized_greedy_batch(
    base: np.ndarray,
    first_key: np.ndarray,
    valid: np.ndarray,
    k: int,
    rows_for: Callable[[slice], Callable[[np.ndarray], np.ndarray]],
    coef: float,
    agg: Aggregate,
) -> np.ndarray:
    """Vectorized :func:`penalized_greedy` over a batch (numpy over the batch axis).

    The batch is processed in chunks of :data:`~divrec.rerank._base.BATCH_CHUNK`
    requests (each chunk fully vectorized) to keep the working set in cache.

    Args:
        base: ``(B, N)`` static scores.
        first_key: ``(B, N)`` first-pick scores.
        valid: ``(B, N)`` mask of real candidates.
        k: list length.
        rows_for: ``rows_for(sl)`` returns ``rows(js)`` for the requests ``sl``, which
            gives ``(b, N)``: row ``js[i]`` of request ``sl.start + i``.
        coef: penalty weight.
        agg: ``"max"`` or ``"mean"``.

    Returns:
        ``(B, k)`` int64 positions, ``-1`` padded after ``min(k, n_valid_b)`` items.
    """
    out = np.full((base.shape[0], k), -1, dtype=np.int64)
    for sl in batch_chunks(base.shape[0]):
        out[sl] = _penalized_chunk(base[sl], first_key[sl], valid[sl], k, rows_for(sl), coef, agg)
    return out


def _penalized_chunk(
    base: np.ndarray,
    first_key: np.ndarray,
    valid: np.ndarray,
    k: int,
    rows: Callable[[np.ndarray], np.ndarray],
    coef: float,
    agg: Aggregate,
) -> np.ndarray:
    bsz, n = base.shape
    out = np.full((bsz, k), -1, dtype=np.int64)
    kb = np.minimum(k, valid.sum(axis=1))
    kmax = int(kb.max(initial=0))
    if kmax == 0:
        return out
    c = float(coef)
    ar = np.arange(bsz)
    avail = valid.copy()
    acc = np.full((bsz, n), -np.inf) if agg == "max" else np.zeros((bsz, n))
    j = np.argmax(np.where(avail, first_key, -np.inf), axis=1)
    seen = np.zeros(bsz)
    for t in range(kmax):
        act = t < kb
        out[act, t] = j[act]
        avail[ar[act], j[act]] = False
        if t + 1 >= kmax:
            break
        s = np.where(valid, rows(j), 0.0)
        seen = np.maximum(seen, np.max(np.abs(s), axis=1, initial=0.0))
        if agg == "max":
            np.maximum(acc, s, out=acc)
            pen = acc
        else:
            acc += s
            pen = acc / (t + 1)
        score = base - c * pen if c != 0.0 else base
        j = tie_argmax_rows(score, avail, c * seen)
    return out


def _compiled_penalized(
    vectors: np.ndarray,
    matrix: np.ndarray,
    mode: int,
    valid: np.ndarray,
    base: np.ndarray,
    first_key: np.ndarray,
    k: int,
    coef: float | np.ndarray,
    agg: Aggregate,
    *,
    precision: str = "float64",
    constraints: Any = None,
) -> np.ndarray:
    """Penalized greedy by the compiled kernel (one loop over the requests).

    Same recursion and tie rule as :func:`penalized_greedy`; ``mode`` 0: cosine of
    ``vectors`` ``(B, N, d)``; 1: rows of ``matrix`` ``(B, N, N)``; 2: ``sigmoid`` of the
    raw dot products of ``vectors`` (CDM Eq. 3). ``coef``: one penalty weight (a Python
    float) or one per request ``(B,)``. ``precision``: ``"input"`` keeps float32 vectors
    float32 in the work matrix, ``"float64"`` converts them in the kernel (see
    :mod:`divrec.rerank._base`). ``constraints``: resolved rules (position space), or
    None. Returns ``(B, k)`` int64, -1 padded (a constrained row may be shorter).
    """
    from . import _kernels

    bsz, n = valid.shape
    out = np.full((bsz, k), -1, dtype=np.int64)
    bad = np.zeros(bsz, dtype=np.bool_)
    if bsz == 0 or n == 0 or k == 0:
        return out
    wdt = work_dtype(vectors, precision)
    cargs = constraint_args(constraints, bsz)
    valid = np.ascontiguousarray(valid, dtype=np.bool_)
    base = np.ascontiguousarray(base, dtype=np.float64)
    first_key = np.ascontiguousarray(first_key, dtype=np.float64)
    if isinstance(coef, float):
        coef = constant_row(bsz, coef)  # cached: no numpy call on the hot path
    else:
        coef = np.ascontiguousarray(coef, dtype=np.float64)
    sizes = _kernels.penalized_scratch_sizes(n, vectors.shape[2])

    def rows(a: int, b: int) -> int:  # requests a..b-1, with this thread's work buffers
        _kernels.penalized_greedy_batch(
            vectors[a:b], matrix[a:b], int(mode), valid[a:b], base[a:b], first_key[a:b],
            int(k), coef[a:b], agg == "mean", out[a:b], bad[a:b],
            *_kernels.scratch(*sizes)[::2], _kernels.work_matrix_buffer(vectors.shape[2], n, wdt),
            *slice_args(cargs, a, b),
        )  # fmt: skip
        return 0

    run_rows(bsz, rows)
    if bad.any():
        raise not_finite("vectors contain", batch=bsz > 1)
    return out


def _penalized_one(
    vectors: np.ndarray,
    matrix: np.ndarray,
    mode: int,
    base: np.ndarray,
    first_key: np.ndarray,
    k: int,
    coef: float,
    agg: Aggregate,
) -> np.ndarray:
    """:func:`_compiled_penalized` on one request (``base``, ``first_key``: ``(N,)``, the
    inputs a batch of one); returns its ``(min(k, N),)`` int64 positions."""
    n = base.shape[0]
    out = _compiled_penalized(
        vectors, matrix, mode, all_valid(n), base[None], first_key[None], k, coef, agg
    )
    return as_positions(out[0, : min(k, n)])


class _SimilarityPenalized(Reranker):
    """``select`` / ``select_batch`` of the re-rankers that run the penalized greedy on a
    similarity, with the relevance as the first pick (:class:`MMR`, CF-DA).

    Subclasses set ``_agg`` and map the scaled relevance and their per-request trade-off
    keyword onto the kernel's ``base`` and ``coef`` in :meth:`_trade_off`.
    """

    _agg: Aggregate

    def _trade_off(self, rs: np.ndarray, value: Any) -> tuple[np.ndarray, float | np.ndarray]:
        """``(base, coef)`` of the scaled relevance ``rs`` (one request or a batch) and the
        per-request keyword ``value`` (a batch's; None: the config's for every request)."""
        raise NotImplementedError

    def _select_one(self, relevance: Any, k: int, vectors: Any, similarity: Any) -> np.ndarray:
        k = check_k(k)
        r = check_relevance(relevance)
        if k == 0 or r.size == 0:
            return np.zeros(0, dtype=np.int64)
        vecs, mat, use_matrix = kernel_inputs(r.size, vectors, similarity, type(self).__name__)
        base, coef = self._trade_off(scale_relevance(r, self.config.relevance_scaling), None)
        prec = getattr(self.config, "precision", "float64")
        out = _compiled_penalized(
            vecs, mat, int(use_matrix), all_valid(r.size), base[None], r[None], k, coef,
            self._agg, precision=prec,
        )  # fmt: skip
        return as_positions(out[0, : min(k, r.size)])

    def _select_many(
        self,
        relevance: Any,
        k: int,
        vectors: Any,
        similarity: Any,
        valid: Any,
        value: Any,
        constraints: Any = None,
    ) -> np.ndarray:
        k = check_k(k)
        relevance, valid = apply_constraints(constraints, relevance, valid)
        # no copy: padding is masked by the scaling and never read by the kernel
        r, m = check_relevance_batch(relevance, valid, copy=False)
        vecs, mat, use_matrix = kernel_inputs_batch(
            r.shape, m, vectors, similarity, type(self).__name__
        )
        rs = scale_relevance_batch(r, m, self.config.relevance_scaling)
        base, coef = self._trade_off(rs, value)
        return _compiled_penalized(
            vecs, mat, int(use_matrix), m, base, r, k, coef, self._agg,
            precision=getattr(self.config, "precision", "float64"), constraints=constraints,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MMRConfig(StageConfig):
    """`MMR` hyperparameters.

    Attributes:
        lambda_: trade-off ``λ ∈ [0, 1]``; larger means more relevance (``λ = 1``: the
            relevance order).
        relevance_scaling: ``"minmax"`` (default; relevance mapped to ``[0, 1]`` per
            request so that it is commensurable with cosine similarities) or ``"raw"``.
        precision: ``"input"`` (default: float32 vectors stay float32 in the kernel) or
            ``"float64"`` (see :mod:`divrec.rerank._base`).
    """

    lambda_: float = param(0.5, ge=0.0, le=1.0)
    relevance_scaling: RelevanceScaling = "minmax"
    precision: Precision = "input"


class MMR(_SimilarityPenalized):
    """Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998).

    Greedy selection of ``argmax_{i ∉ S} λ·rel_i − (1 − λ)·max_{j ∈ S} sim(i, j)``; the
    first item is the most relevant one (the max over an empty ``S`` is undefined; this
    also makes ``λ = 0`` well defined). ``λ = 1`` reproduces the relevance order.
    Similarity: cosine of ``vectors`` ``(N, d)`` or the given ``similarity`` ``(N, N)``.
    Hyperparameters: :class:`MMRConfig`.
    """

    Config = MMRConfig
    _takes_constraints = True
    _stage_inputs = ("vectors",)
    _agg = "max"

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as MMR's λ: ``λ = 1 − diversity`` (λ = 1 is the relevance order)."""
        return {"lambda_": 1.0 - np.asarray(diversity, dtype=np.float64)}

    _explain_first_by_relevance = True

    def _explain_terms(self, query, b, kw, idx, r):
        """MMR's terms: ``λ r_i`` and ``−(1 − λ) max_{j∈S} cos(i, j)``."""
        from ._explain import row_param_of, unit_rows

        lam = row_param_of(self, query, b, "lambda_", kw, lambda d: 1.0 - d)
        rs = scale_relevance(r, self.config.relevance_scaling)
        u = unit_rows(np.asarray(kw["vectors"][b], dtype=np.float64)[idx])

        def terms(sel):
            sim = u @ u[sel].T
            div = -(1.0 - lam) * sim.max(axis=1) if len(sel) else np.zeros(len(idx))
            return lam * rs, div, sim

        return terms

    def _trade_off(self, rs: np.ndarray, value: Any) -> tuple[np.ndarray, float | np.ndarray]:
        """``base = λ · rs``, ``coef = 1 − λ`` (per request: the same arithmetic, row by row)."""
        if value is None:
            lam = float(self.config.lambda_)
            return lam * rs, 1.0 - lam
        lam = row_param(value, rs.shape[0], "lambda_", 1.0)
        return lam[:, None] * rs, 1.0 - lam

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
        """Select ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` relevance scores.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine similarity), or None.
            similarity: ``(N, N)`` similarity matrix, or None.
            categories: ignored.

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        return self._select_one(relevance, k, vectors, similarity)

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        lambda_: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection; ``(B, N)`` relevance, returns ``(B, k)`` (-1 padded).

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            lambda_: ``(B,)`` per-request λ in ``[0, 1]`` (the diversity knob), or None:
                the config's for every request.
            **kwargs: ``constraints``: the batch's resolved rules
                (:class:`~divrec.data.constraints.ResolvedConstraints`), or None.
        """
        cons = kwargs.get("constraints")
        return self._select_many(relevance, k, vectors, similarity, valid, lambda_, cons)


@dataclass(frozen=True, kw_only=True)
class InterestAwareMMRConfig(StageConfig):
    """`InterestAwareMMR` hyperparameters.

    Attributes:
        lambda_: diversity weight ``λ ≥ 0`` (``λ = 0``: the relevance order).
        relevance_scaling: ``"raw"`` (default, as in CDM where ``f(u, i)`` is a predicted
            probability) or ``"minmax"``.
        precision: ``"input"`` (default: float32 embeddings give a float32 ``e ⊙ u``) or
            ``"float64"`` (see :mod:`divrec.rerank._base`).
    """

    lambda_: float = param(0.1, ge=0.0)
    relevance_scaling: RelevanceScaling = "raw"
    precision: Precision = "input"


class InterestAwareMMR(Reranker):
    """Interest-aware MMR, the teacher of CDM (Contextual Distillation Model, Eq. 2–4).

    The first item is ``argmax_i f(u, i)`` (Eq. 4); then (Eq. 2)

        i_h = argmax_{i ∉ R} f(u, i) + λ · Div(R ∪ i | u),
        Div(R ∪ i | u) = 1 − max_{i' ∈ R} σ(e_{i,u} · e_{i',u}),   e_{i,u} = e_i ⊙ u  (Eq. 3),

    with ``e_i`` the raw (not normalized) item embeddings, ``u`` the user-interest vector
    and ``σ`` the logistic function. Note that, unlike classic :class:`MMR`, ``λ`` only
    weighs the diversity term (the paper searches ``λ ∈ {0, …, 0.25}``); ``λ = 0`` is the
    relevance order. Only item embeddings make sense here: a plain ``similarity`` matrix
    cannot be re-weighted by the user vector and is rejected. Hyperparameters:
    :class:`InterestAwareMMRConfig`.
    """

    Config = InterestAwareMMRConfig
    _takes_constraints = True
    _per_request_kwargs = ("user",)

    _stage_inputs = ("vectors",)

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as the penalty weight: ``λ = d / (1 − d)`` (λ = 0: relevance order)."""
        return {"lambda_": knob_ratio(diversity)}

    _explain_first_by_relevance = True

    def _explain_terms(self, query, b, kw, idx, r):
        """CDM's terms: ``r_i`` and ``−λ max_{j∈S} σ(e_{i,u} · e_{j,u})`` (Eq. 2–3)."""
        from ._explain import row_param_of

        lam = row_param_of(self, query, b, "lambda_", kw, lambda d: knob_ratio(np.array([d]))[0])
        rs = scale_relevance(r, self.config.relevance_scaling)
        eu = np.asarray(kw["vectors"][b], dtype=np.float64)[idx] * np.asarray(
            kw["user"][b], dtype=np.float64
        )

        def terms(sel):
            sim = 1.0 / (1.0 + np.exp(-(eu @ eu[sel].T)))
            div = -lam * sim.max(axis=1) if len(sel) else np.zeros(len(idx))
            return rs, div, sim

        return terms

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        """``user``: the fitted user vector, or for a fresh history the mean of its items'
        vectors (a documented choice for users the retriever has no vector of)."""
        if query.history is not None:
            hist = query.history
            vecs = self.item_vectors_[np.maximum(hist, 0)] * (hist >= 0)[..., None]
            n = np.maximum((hist >= 0).sum(axis=1, keepdims=True), 1)
            return {"user": vecs.sum(axis=1) / n}
        if self.user_vectors_ is None:
            raise ValueError(
                "InterestAwareMMR needs user vectors: a retriever with user_vectors() or the "
                "reference SVD space"
            )
        users = fitted_user_rows(query.users, self.user_vectors_.shape[0], "InterestAwareMMR")
        return {"user": self.user_vectors_[users]}

    @staticmethod
    def _inputs(
        vectors: Any,
        similarity: Any,
        user: Any,
        shape: tuple[int, ...],
        valid: Any = None,
        precision: str = "float64",
    ) -> tuple[np.ndarray, np.ndarray]:
        """The checked embeddings ``e`` and user vectors ``u`` of one request (``shape``
        ``(N,)``) or a batch (``(B, N)`` and its ``valid`` mask: ``e`` is a copy, zero at
        padding); ``u`` broadcasts against ``e``."""
        require_vectors(vectors, similarity, "InterestAwareMMR", "(item embeddings e_i)")
        if user is None:
            raise ValueError("InterestAwareMMR needs the user-interest vector `user`")
        dt = _kernel_dtype(vectors) if precision == "input" else np.float64
        e = vectors_array(vectors, shape, dt, as_array=np.asarray if valid is None else np.array)
        u = np.asarray(user, dtype=np.float64)
        if dt == np.float32:
            u = u.astype(np.float32)
        want = (*shape[:-1], e.shape[-1])
        if u.shape != want:
            raise ValueError(f"user must have shape {want}, got {u.shape}")
        if valid is not None:
            e[~valid] = 0.0
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(u))):
            raise not_finite("vectors or user contain")
        return e, u if valid is None else u[:, None, :]

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        user: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` scores ``f(u, i)``.
            k: list length.
            vectors: ``(N, d)`` item embeddings ``e_i`` (required).
            similarity: must be None.
            categories: ignored.
            user: ``(d,)`` user-interest vector ``u`` (required).

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        cfg = self.config
        e, u = self._inputs(vectors, similarity, user, r.shape, precision=cfg.precision)
        if k == 0 or r.size == 0:
            return np.zeros(0, dtype=np.int64)
        eu = np.ascontiguousarray(e * u)
        rs = scale_relevance(r, cfg.relevance_scaling)
        lam = float(cfg.lambda_)
        out = _compiled_penalized(
            eu[None], np.zeros((1, 0, 0)), 2, all_valid(r.size), rs[None], r[None], k, lam,
            "max", precision=cfg.precision,
        )  # fmt: skip
        return as_positions(out[0, : min(k, r.size)])

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        user: np.ndarray | None = None,
        lambda_: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection.

        Args:
            relevance: ``(B, N)`` scores.
            k: list length.
            vectors: ``(B, N, d)`` item embeddings (required).
            similarity: must be None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            user: ``(B, d)`` user-interest vectors (required).
            lambda_: ``(B,)`` per-request λ ``≥ 0`` (the diversity knob), or None: the
                config's for every request.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        cons = kwargs.get("constraints")
        relevance, valid = apply_constraints(cons, relevance, valid)
        # no copy: padding is masked by the scaling and never read by the kernel
        r, m = check_relevance_batch(relevance, valid, copy=False)
        cfg = self.config
        e, u = self._inputs(vectors, similarity, user, r.shape, m, precision=cfg.precision)
        eu = np.ascontiguousarray(e * u)
        rs = scale_relevance_batch(r, m, cfg.relevance_scaling)
        bsz = r.shape[0]
        coef = request_param(lambda_, cfg.lambda_, bsz, "lambda_")
        return _compiled_penalized(
            eu, np.zeros((bsz, 0, 0)), 2, m, rs, r, k, coef, "max", precision=cfg.precision,
            constraints=cons,
        )  # fmt: skip
