"""Baseline re-rankers: category cap, CF-DA, CF-DM, a HOM-LIN-style hybrid utility and the
random / popularity sanity re-rankers.

* :class:`CategoryCap` — the rule-based "Base" of the WeChat paper's experiments: a cap
  on the number of items per category (or tag).
* :class:`CFDA` — CF-DA of the HI paper (Experiments, "Algorithms and tests"):
  diversity-aware re-ranking by ``Relevance + φ·Diversity`` with
  ``Diversity(i, j) = 1 − Similarity(i, j)`` (the HI paper's definition, after Bradley &
  Smyth 2001); the diversity of a candidate w.r.t. the list built so far is its mean
  dissimilarity to the selected items (Bradley & Smyth's relative diversity), chosen
  greedily.
* :class:`CFDM` — CF-DM of the HI paper: the final ``n`` items maximize the overall
  diversity among the top ``n′ = 5n`` by relevance.
* :class:`HybridUtility` — a linear hybrid of relevance, list diversity and item novelty
  in the spirit of HOM-LIN (Adamopoulos & Tuzhilin 2015, a PURS baseline).
* :class:`RandomK` — sanity row: ``k`` of the request's candidates uniformly at random,
  reproducible per (seed, request).
* :class:`PopularK` — sanity row: the candidates ordered by training popularity (distinct
  users), ignoring the relevance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from divrec.hashing import splitmix64_int
from divrec.stage import StageConfig, param

from ._base import (
    RelevanceScaling,
    Reranker,
    Similarity,
    as_positions,
    check_categories,
    check_k,
    check_relevance,
    check_relevance_batch,
    fill_by_relevance_batch,
    kernel_inputs,
    kernel_inputs_batch,
    knob_ratio,
    not_finite,
    relevance_order,
    request_param,
    scale_relevance,
    scale_relevance_batch,
    tie_argmax,
)
from .mmr import _compiled_penalized, _penalized_one, _SimilarityPenalized

__all__ = [
    "CFDA",
    "CFDAConfig",
    "CFDM",
    "CFDMConfig",
    "CategoryCap",
    "CategoryCapConfig",
    "HybridUtility",
    "HybridUtilityConfig",
    "PopularK",
    "PopularKConfig",
    "RandomK",
    "RandomKConfig",
]


@dataclass(frozen=True, kw_only=True)
class CategoryCapConfig(StageConfig):
    """`CategoryCap` hyperparameters.

    Attributes:
        max_per_category: cap ``≥ 1`` on the selected items per category.
    """

    max_per_category: int = param(1, ge=1)


class CategoryCap(Reranker):
    """Rule-based category cap ("Base" in the WeChat paper's offline simulation).

    Walk the candidates in relevance order and skip an item whose category already has
    ``max_per_category`` selected items; if fewer than ``k`` items pass, complete the list
    with the skipped items in relevance order. Hyperparameters: :class:`CategoryCapConfig`.
    """

    Config = CategoryCapConfig
    _stage_inputs = ("categories",)

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
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ``(N,)`` int categories (required).

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        cats = check_categories(categories, r.size, "CategoryCap")
        kk = min(k, r.size)
        cap = self.max_per_category
        counts: dict[int, int] = {}
        out: list[int] = []
        skipped: list[int] = []
        for i in relevance_order(r):
            if len(out) == kk:
                break
            c = int(cats[i])
            if counts.get(c, 0) < cap:
                counts[c] = counts.get(c, 0) + 1
                out.append(int(i))
            else:
                skipped.append(int(i))
        out.extend(skipped[: kk - len(out)])
        return as_positions(out)


@dataclass(frozen=True, kw_only=True)
class CFDAConfig(StageConfig):
    """`CFDA` hyperparameters.

    Attributes:
        phi: diversity weight ``φ ≥ 0`` (``φ = 0`` is the relevance order).
        relevance_scaling: ``"minmax"`` (default) or ``"raw"``.
    """

    phi: float = param(0.5, ge=0.0)
    relevance_scaling: RelevanceScaling = "minmax"


class CFDA(_SimilarityPenalized):
    """CF-DA diversity-aware re-ranking (HI paper, Experiments): ``Relevance + φ·Diversity``.

    Greedy: the first item is the most relevant; then
    ``argmax_{i ∉ S} rel_i + φ · mean_{j ∈ S} (1 − sim(i, j))``. Similarity: cosine of
    ``vectors`` or the given ``similarity`` (the HI paper uses the inferred p2p item–item
    similarity). Hyperparameters: :class:`CFDAConfig`.
    """

    Config = CFDAConfig
    _stage_inputs = ("vectors",)
    _agg = "mean"

    def diversity_params(self, diversity: np.ndarray) -> dict[str, np.ndarray]:
        """The knob as φ: ``φ = d / (1 − d)`` (φ = 0: relevance order)."""
        return {"phi": knob_ratio(diversity)}

    def _trade_off(self, rs: np.ndarray, value: Any) -> tuple[np.ndarray, float | np.ndarray]:
        """``base = rs``, ``coef = φ``."""
        return rs, request_param(value, self.config.phi, rs.shape[0], "phi")

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
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine), or None.
            similarity: ``(N, N)`` similarity, or None.
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
        phi: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection; ``(B, N)`` in, ``(B, k)`` int64 out (-1 padded).

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            phi: ``(B,)`` per-request φ ``≥ 0`` (the diversity knob), or None: the
                config's for every request.
        """
        return self._select_many(relevance, k, vectors, similarity, valid, phi)


@dataclass(frozen=True, kw_only=True)
class CFDMConfig(StageConfig):
    """`CFDM` hyperparameters.

    Attributes:
        n_factor: pool size factor ``≥ 1`` (``n′ = ⌈n_factor · k⌉``; the paper: 5).
    """

    n_factor: float = param(5.0, ge=1.0)


class CFDM(Reranker):
    """CF-DM diversity-maximizing re-ranking (HI paper, Experiments).

    Select ``k`` items maximizing the total pairwise diversity ``Σ_{i<j} (1 − sim(i, j))``
    among the ``n′ = ⌈n_factor · k⌉`` most relevant candidates (the paper: ``n′ = 5n``).
    Max-sum dispersion is NP-hard; we use the standard greedy heuristic (a
    2-approximation for metric distances, Birnbaum & Goldman 2009): start from the most
    relevant item, then repeatedly add the pool item with the largest summed
    dissimilarity to the items already selected; ties go to the more relevant item.
    Relevance only defines the pool, the seed and tie-breaks, as in the paper's baseline.
    Hyperparameters: :class:`CFDMConfig`.
    """

    Config = CFDMConfig
    _stage_inputs = ("vectors",)

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
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine), or None.
            similarity: ``(N, N)`` similarity, or None.
            categories: ignored.

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        if k == 0 or r.size == 0:
            return np.zeros(0, dtype=np.int64)
        sim = Similarity.resolve(r.size, vectors, similarity, "CFDM")
        pool = relevance_order(r)[: min(r.size, math.ceil(self.n_factor * k))]
        kk = min(k, pool.size)
        div_sum = np.zeros(pool.size)
        avail = np.ones(pool.size, dtype=bool)
        chosen = [0]
        avail[0] = False
        scale = 0.0
        while len(chosen) < kk:
            dis = 1.0 - sim.row(int(pool[chosen[-1]]))[pool]
            div_sum += dis
            scale += float(np.max(np.abs(dis)))
            p = tie_argmax(div_sum, avail, scale)
            chosen.append(p)
            avail[p] = False
        return as_positions(pool[chosen])


_WEIGHT_KEYS = ("relevance", "diversity", "novelty")


def _scaled(x: np.ndarray, valid: np.ndarray | None, mode: str) -> np.ndarray:
    """:func:`scale_relevance` of one request (``valid`` None), else of a batch."""
    return scale_relevance(x, mode) if valid is None else scale_relevance_batch(x, valid, mode)


@dataclass(frozen=True, kw_only=True)
class HybridUtilityConfig(StageConfig):
    """`HybridUtility` hyperparameters.

    Attributes:
        weights: ``(w_rel, w_div, w_nov)`` or a mapping with keys ``"relevance"``,
            ``"diversity"``, ``"novelty"`` (missing keys are 0); finite.
        relevance_scaling: ``"minmax"`` (default) or ``"raw"``.
    """

    weights: tuple[float, ...] | Mapping[str, float] = (1.0, 0.5, 0.0)
    relevance_scaling: RelevanceScaling = "minmax"

    def validate(self) -> None:
        """The weights: three entries (or known keys), all finite."""
        self.triple()

    def triple(self) -> tuple[float, float, float]:
        """``(w_rel, w_div, w_nov)``."""
        w = self.weights
        if isinstance(w, Mapping):
            unknown = set(w) - set(_WEIGHT_KEYS)
            if unknown:
                raise ValueError(f"unknown weight keys {sorted(unknown)}; use {_WEIGHT_KEYS}")
            vals = tuple(float(w.get(key, 0.0)) for key in _WEIGHT_KEYS)
        else:
            vals = tuple(float(x) for x in w)
            if len(vals) != 3:
                raise ValueError(f"weights must have 3 entries (rel, div, nov), got {len(vals)}")
        if not all(np.isfinite(vals)):
            raise ValueError(f"weights must be finite, got {vals}")
        return vals  # type: ignore[return-value]


class HybridUtility(Reranker):
    """HOM-LIN-style linear hybrid utility of relevance, diversity and novelty.

    HOM-LIN (Adamopoulos & Tuzhilin 2015; a baseline of PURS) ranks items by a linear
    combination of the estimated rating and an unexpectedness term. We implement the
    general greedy form

        argmax_{i ∉ S}  w_rel · rel_i + w_div · mean_{j ∈ S} (1 − sim(i, j)) + w_nov · nov_i,

    where ``nov_i`` is a per-item novelty given by the caller (``novelty=``, e.g. the PURS
    unexpectedness of the item for the user, which gives HOM-LIN proper with
    ``w_div = 0``) or derived from ``popularity=`` (share of interactions in ``(0, 1]``)
    as the self-information ``−log₂ popularity`` (Zhou et al. 2010). With
    ``relevance_scaling="minmax"`` both relevance and novelty are min-max scaled per
    request so that the weights are comparable. The diversity term is 0 for the first
    pick; similarity is the cosine of ``vectors`` or the given ``similarity`` (only
    needed when ``w_div ≠ 0``). Hyperparameters: :class:`HybridUtilityConfig`.
    """

    Config = HybridUtilityConfig
    _stage_inputs = ("vectors", "popularity")
    _query_extras = ("novelty",)

    @staticmethod
    def _novelty(novelty: Any, popularity: Any, shape: tuple[int, ...]) -> np.ndarray:
        if novelty is not None:
            nov = np.asarray(novelty, dtype=np.float64)
        elif popularity is not None:
            pop = np.asarray(popularity, dtype=np.float64)
            if pop.shape == shape and np.any(pop < 0):
                raise ValueError("popularity must be non-negative")
            nov = -np.log2(np.clip(pop, 1e-12, None))
        else:
            raise ValueError("HybridUtility with a novelty weight needs `novelty` or `popularity`")
        if nov.shape != shape:
            raise ValueError(f"novelty/popularity must have shape {shape}, got {nov.shape}")
        return nov

    def _utility(
        self, r: np.ndarray, valid: np.ndarray | None, novelty: Any, popularity: Any
    ) -> tuple[np.ndarray, float]:
        """``w_rel · rel + w_nov · nov`` (scaled) of one request (``valid`` None) or a
        batch (0 at padding), and ``w_div``."""
        cfg = self.config
        w_rel, w_div, w_nov = cfg.triple()
        base = w_rel * _scaled(r, valid, cfg.relevance_scaling)
        if w_nov != 0.0:
            nov = self._novelty(novelty, popularity, r.shape)
            if valid is not None:
                nov = np.where(valid, nov, 0.0)
            if not np.all(np.isfinite(nov)):
                raise not_finite("novelty contains", batch=valid is not None)
            base = base + w_nov * _scaled(nov, valid, cfg.relevance_scaling)
        return base, w_div

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        novelty: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine), or None.
            similarity: ``(N, N)`` similarity, or None.
            categories: ignored.
            novelty: ``(N,)`` per-item novelty / unexpectedness, or None.
            popularity: ``(N,)`` interaction shares in ``(0, 1]``, or None.

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        base, w_div = self._utility(r, None, novelty, popularity)
        if k == 0 or r.size == 0:
            return np.zeros(0, dtype=np.int64)
        if w_div == 0.0:
            return relevance_order(base)[:k]
        vecs, mat, use_matrix = kernel_inputs(r.size, vectors, similarity, "HybridUtility")
        return _penalized_one(vecs, mat, int(use_matrix), base, base, k, w_div, "mean")

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        novelty: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection.

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            novelty: ``(B, N)`` novelty, or None.
            popularity: ``(B, N)`` popularity shares, or None.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        k = check_k(k)
        # no copy: padding is masked by the scaling and never read by the kernel
        r, m = check_relevance_batch(relevance, valid, copy=False)
        base, w_div = self._utility(r, m, novelty, popularity)
        if w_div == 0.0:
            # the static order, exactly as `select` (stable sort on the same numbers)
            out = np.full((r.shape[0], k), -1, dtype=np.int64)
            counts = np.zeros(r.shape[0], dtype=np.int64)
            fill_by_relevance_batch(out, counts, base, m, np.minimum(k, m.sum(axis=1)))
            return out
        vecs, mat, use_matrix = kernel_inputs_batch(
            r.shape, m, vectors, similarity, "HybridUtility"
        )
        return _compiled_penalized(vecs, mat, int(use_matrix), m, base, base, k, w_div, "mean")


# --------------------------------------------------------------------------- sanity rows
def request_key(relevance: np.ndarray) -> int:
    """A 64-bit key of one request: a splitmix64 chain over its ``N`` and the float64 bit
    patterns of its relevance in position order (``-0.0`` read as ``0.0``).

    Two requests get the same key exactly when they have the same relevance vector, so the
    key is a function of what :meth:`RandomK.select` sees, whatever the batch.
    """
    r = np.ascontiguousarray(relevance, dtype=np.float64) + 0.0  # -0.0 → 0.0
    bits = r.view(np.uint64)
    h = splitmix64_int(int(r.size))
    for w in bits.tolist():  # Python ints: exact 64-bit arithmetic, no overflow warnings
        h = splitmix64_int(h ^ w)
    return h


@dataclass(frozen=True, kw_only=True)
class RandomKConfig(StageConfig):
    """`RandomK` hyperparameters.

    Attributes:
        seed: ``≥ 0``, combined with each request's key (see :class:`RandomK`).
    """

    seed: int = param(0, ge=0)


class RandomK(Reranker):
    """Sanity re-ranker: ``min(k, N)`` of the request's candidates uniformly at random.

    Without replacement, every ``k``-subset (and every order of it) equally likely. The draw
    of one request is ``numpy.random.default_rng([seed, request_key(relevance)])``'s
    ``choice(N, min(k, N), replace=False)``: the config ``seed`` and the request's 64-bit
    :func:`request_key` (a hash of its ``N`` relevance values in position order) seed one
    ``SeedSequence``. The relevance only keys the draw, it never weights it. So the same
    request gets the same list on every call and in any batch (``select_batch`` is the loop
    of :meth:`select` over the requests' valid candidates, padding dropped), different
    requests and different seeds get independent draws. Hyperparameters:
    :class:`RandomKConfig`.
    """

    Config = RandomKConfig
    _stage_inputs = ()

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
        """Select ``min(k, N)`` positions uniformly at random.

        Args:
            relevance: ``(N,)`` relevance (finite; keys the draw, does not weight it).
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ignored.

        Returns:
            ``(min(k, N),)`` int64 positions in draw order.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        kk = min(k, r.size)
        if kk == 0:
            return np.zeros(0, dtype=np.int64)
        rng = np.random.default_rng([self.seed, request_key(r)])
        return as_positions(rng.choice(r.size, kk, replace=False))


@dataclass(frozen=True, kw_only=True)
class PopularKConfig(StageConfig):
    """`PopularK` hyperparameters: none (the popularity is learned in ``fit``)."""


class PopularK(Reranker):
    """Sanity re-ranker: the candidates in decreasing training popularity.

    The popularity of an item is its number of distinct training users, learned in
    :meth:`~divrec.rerank.Reranker.fit` as ``popularity_`` (``(n_items,)`` int64,
    :meth:`~divrec.data.Interactions.item_popularity`); items the training log never saw
    have 0. The relevance is ignored (only checked); ties go to the lower candidate
    position, i.e. to the upstream order. As a pipeline stage the candidates' popularity
    reaches :meth:`select_batch` as the ``popularity`` keyword; :meth:`select` takes it
    directly. Hyperparameters: :class:`PopularKConfig` (none).
    """

    Config = PopularKConfig
    _stage_inputs = ()
    _per_item_kwargs = ("popularity",)

    def _fit_stage(self, train) -> None:
        """``popularity_``: distinct training users per item."""
        self.popularity_ = np.asarray(train.item_popularity(), dtype=np.int64)

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        """The candidates' ``popularity`` (``(B, N)``; padding reads item 0, never used)."""
        return {"popularity": self.popularity_[safe_ids]}

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select the ``min(k, N)`` most popular positions.

        Args:
            relevance: ``(N,)`` relevance (checked, otherwise ignored).
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ignored.
            popularity: ``(N,)`` finite popularity of the candidates (required).

        Returns:
            ``(min(k, N),)`` int64 positions, most popular first, ties by position.
        """
        k = check_k(k)
        r = check_relevance(relevance)
        if popularity is None:
            raise ValueError("PopularK needs `popularity` (an (N,) array)")
        pop = np.asarray(popularity, dtype=np.float64)
        if pop.shape != r.shape:
            raise ValueError(f"popularity must have shape {r.shape}, got {pop.shape}")
        if not np.all(np.isfinite(pop)):
            raise not_finite("popularity contains")
        return relevance_order(pop)[:k]
