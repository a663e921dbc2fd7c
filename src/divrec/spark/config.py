"""Hyperparameters of the Spark models (`divrec.spark.train`), importable without pyspark.

`divrec spark train` validates `--param` values against these configs before it starts
Spark (`divrec.spark.models.check_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from divrec.stage import StageConfig, param

__all__ = ["FaissSearchConfig", "SparkALSConfig", "SparkHIConfig"]


@dataclass(frozen=True, kw_only=True)
class SparkALSConfig(StageConfig):
    """Hyperparameters of `SparkALS`.

    Attributes:
        factors: rank.
        regularization: Spark's `regParam` λ (weighted by the number of ratings).
        alpha: confidence weight α (c = 1 + α r).
        iterations: `maxIter`.
        seed: Spark's seed.
        binary: fit on 1.0 for every interaction instead of its value.
        blocks: `numUserBlocks` = `numItemBlocks` (None: Spark's default 10).
    """

    factors: int = param(64, ge=1)
    regularization: float = param(0.01, ge=0.0)
    alpha: float = param(5.0, ge=0.0)
    iterations: int = param(15, ge=1)
    seed: int = 0
    binary: bool = True
    blocks: int | None = param(None, ge=1)


@dataclass(frozen=True, kw_only=True)
class SparkHIConfig(StageConfig):
    """Hyperparameters of `SparkHI`.

    Attributes:
        kind: "p2p" (XᵀX ≈ PQ, Eq. 3), "n2p" (YᵀX ≈ RS, Eq. 7) or "hi-rt"
            (H = [XᵀX; YᵀX] ≈ AB, Eq. 14–15; row i + n of H is row i of YᵀX).
        factors: rank k (the paper: 10).
        regularization: Spark's `regParam` (weighted-λ).
        iterations: `maxIter`.
        beta: HI-RT weight of the negative part (Eq. 17).
        threshold: positive-feedback threshold.
        seed: Spark's seed (and the heavy-user sampling's).
        blocks: `numUserBlocks` = `numItemBlocks` (None: Spark's default 10).
        max_items_per_user: cap on each user's items in the co-occurrence self-join (a
            uniform sample of a heavy user's positives / negatives, `cap_per_user`); None:
            the exact product (Σ_u n_u² join rows).
    """

    kind: Literal["p2p", "n2p", "hi-rt"] = "p2p"
    factors: int = param(10, ge=1)
    regularization: float = param(0.01, ge=0.0)
    iterations: int = param(10, ge=1)
    beta: float = 1.0
    threshold: float = 4.0
    seed: int = 0
    blocks: int | None = param(None, ge=1)
    max_items_per_user: int | None = param(None, ge=1)


@dataclass(frozen=True, kw_only=True)
class FaissSearchConfig(StageConfig):
    """Settings of `divrec.spark.candidates.u2i(search="faiss")`: the item index each task
    searches (`divrec.retrieval.ann.AnnIndex`; `divrec spark recommend --index-param`).

    Attributes:
        kind: "flat" (exact inner product), "hnsw", "ivf", "ivf-sq8" or "auto" (exact below
            `AUTO_EXACT_BELOW` items, else the fastest kind meeting `target_recall`).
        m: HNSW links per node.
        ef_construction: HNSW construction beam width.
        ef_search: HNSW search beam width (replaced by the tuned one with `target_recall`).
        nlist: IVF lists (None: ≈ 4·sqrt(n_items)).
        nprobe: IVF lists scanned per query (replaced by the tuned one with `target_recall`).
        target_recall: recall@`recall_k` the index is tuned to on a sample of the user
            vectors (None: no tuning; "auto" then uses 0.95).
        recall_k: k of the tuned recall (None: the retrieval depth).
        tune_queries: user vectors sampled for the tuning (half tuning, half held out).
        refine_factor: "ivf-sq8": candidates re-scored on the float vectors, × k.
        seed: IVF k-means and the tuning sample.
        threads: faiss threads per task (Spark runs one task per core: 1).
    """

    kind: Literal["flat", "hnsw", "ivf", "ivf-sq8", "auto"] = "auto"
    m: int = param(32, ge=2)
    ef_construction: int = param(200, ge=1)
    ef_search: int = param(128, ge=1)
    nlist: int | None = param(None, ge=1)
    nprobe: int = param(8, ge=1)
    target_recall: float | None = param(None, gt=0.0, le=1.0)
    recall_k: int | None = param(None, ge=1)
    tune_queries: int = param(1000, ge=2)
    refine_factor: float = param(2.0, ge=1.0)
    seed: int = 0
    threads: int = param(1, ge=0)
