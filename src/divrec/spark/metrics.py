"""Evaluation metrics as Spark aggregations, with the definitions of `divrec.metrics`.

Inputs: a lists DataFrame `user long, items array<long>` (best first, −1 padding, e.g. the
output of `divrec.spark.candidates.u2i`) and, for accuracy, the held-out `(user, item)` rows.

- Accuracy (`accuracy`): HR, precision, recall, NDCG, MRR and MAP at each cut-off k, per
  user from the hits of `posexplode(items)` joined with the truth, averaged over the test
  users (users with held-out rows; a test user without a list has no hit), as
  `divrec.metrics` on the rows of the test users.
- Beyond accuracy (`beyond_accuracy`): per list ILAD (`divrec.metrics.ilad` on each
  partition's block: the item vectors are a broadcast) and novelty (a join with the
  self-information table), averaged over the lists where defined; item coverage, distinct
  items, category coverage (system level, CDM Eq. 22), exposure Gini and entropy (from the
  per-item exposure counts of a `groupBy`), and between-user diversity by sampled pairs
  (the pairs drawn on the driver exactly as `between_user_diversity(max_pairs, seed)`
  draws them, the overlaps computed by joins and `array_intersect`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

__all__ = ["accuracy", "beyond_accuracy", "exposure_counts"]


def _pairs(lists: DataFrame, k: int | None) -> DataFrame:
    """`(user, pos, item)` of the valid entries of the first k positions (pos 0-based)."""
    pairs = lists.select("user", F.posexplode("items").alias("pos", "item"))
    pairs = pairs.filter(F.col("item") >= 0)
    if k is not None:
        pairs = pairs.filter(F.col("pos") < k)
    return pairs


def accuracy(lists: DataFrame, truth: DataFrame, ks: tuple[int, ...] = (10,)) -> dict:
    """Mean HR / precision / recall / NDCG / MRR / MAP @k over the test users.

    Args:
        lists: `user long, items array<long>`.
        truth: held-out `(user, item)` rows (duplicates count once).
        ks: cut-offs.

    Returns:
        `{"hr@10": ..., "precision@10": ..., "recall@10": ..., "ndcg@10": ...,
        "mrr@10": ..., "map@10": ..., "users": n}`.
    """
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    kmax = max(ks)
    rel = truth.select("user", "item").distinct()
    n_rel = rel.groupBy("user").agg(F.count("*").alias("n_rel"))
    # user-size joins are shuffle joins (`merge` hint): an auto-broadcast would send the
    # test rows through the driver
    hits = _pairs(lists, kmax).join(rel.hint("merge"), ["user", "item"])
    # rank of each hit among the user's hits, in list order (AP's P@r numerator)
    win = Window.partitionBy("user").orderBy("pos")
    hits = hits.withColumn("j", F.row_number().over(win)).cache()
    out: dict = {}
    n_users = n_rel.count()
    out["users"] = int(n_users)
    for k in ks:
        h = hits.filter(F.col("pos") < k)
        per = h.groupBy("user").agg(
            F.count("*").alias("n_hits"),
            F.sum(1.0 / F.log2(F.col("pos") + 2.0)).alias("dcg"),
            F.min("pos").alias("first"),
            F.sum(F.col("j") / (F.col("pos") + 1.0)).alias("ap_sum"),
        )
        disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
        ideal = np.concatenate(([0.0], np.cumsum(disc)))
        idcg = F.element_at(
            F.array(*[F.lit(float(x)) for x in ideal]),
            (F.least(F.col("n_rel"), F.lit(k)) + 1).cast("int"),
        )
        per = n_rel.join(per.hint("merge"), "user", "left")
        per = per.fillna(0, subset=["n_hits", "dcg", "ap_sum"])
        agg = per.agg(
            F.sum(F.when(F.col("n_hits") > 0, 1.0).otherwise(0.0)).alias("hr"),
            F.sum(F.col("n_hits") / k).alias("precision"),
            F.sum(F.col("n_hits") / F.col("n_rel")).alias("recall"),
            F.sum(F.col("dcg") / idcg).alias("ndcg"),
            F.sum(
                F.when(F.col("first").isNotNull(), 1.0 / (F.col("first") + 1.0)).otherwise(0.0)
            ).alias("mrr"),
            F.sum(F.col("ap_sum") / F.least(F.col("n_rel"), F.lit(k))).alias("map"),
        ).collect()[0]
        for name in ("hr", "precision", "recall", "ndcg", "mrr", "map"):
            out[f"{name}@{k}"] = float(agg[name]) / n_users if n_users else float("nan")
    hits.unpersist()
    return out


def exposure_counts(lists: DataFrame, n_items: int, k: int | None = None) -> np.ndarray:
    """`(n_items,)` int64 number of appearances of each item over all lists (first k)."""
    counts = _pairs(lists, k).groupBy("item").count().toPandas()
    out = np.zeros(int(n_items), dtype=np.int64)
    items = counts["item"].to_numpy(np.int64)
    if items.size and items.max() >= n_items:
        raise ValueError(f"recommended item index outside [0, {n_items})")
    out[items] = counts["count"].to_numpy(np.int64)
    return out


def beyond_accuracy(
    spark: SparkSession,
    lists: DataFrame,
    n_items: int,
    *,
    k: int | None = None,
    item_vectors: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    n_users: int | None = None,
    item_categories: sp.spmatrix | None = None,
    n_categories: int | None = None,
    max_pairs: int | None = 100_000,
    seed: int = 0,
) -> dict:
    """System-level and mean per-list beyond-accuracy metrics of a lists DataFrame.

    Args:
        spark: the session.
        lists: `user long, items array<long>` (one row per user).
        n_items: catalogue size.
        k: use the first k positions (None: whole lists).
        item_vectors: `(n_items, d)` for ILAD (None: skipped).
        item_popularity: `(n_items,)` user counts for novelty, with `n_users`.
        n_users: users the popularity was counted over.
        item_categories: `(n_items, C)` sparse categories for category coverage.
        n_categories: |C| (default: categories assigned to some item, as `divrec.metrics`).
        max_pairs: pairs sampled for between-user diversity (None: skipped here; the exact
            all-pairs value needs the B Bᵀ product of `divrec.metrics`).
        seed: pair sampler seed.

    Returns:
        `{"item_coverage", "distinct_items", "exposure_gini", "exposure_entropy",
        "ilad", "novelty", "category_coverage", "between_user_diversity"}` (those computable).
    """
    n_items = int(n_items)
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    if k is not None:
        lists = lists.select("user", F.slice("items", 1, int(k)).alias("items"))
    out: dict = {}
    counts = exposure_counts(lists, n_items)
    distinct = int((counts > 0).sum())
    out["distinct_items"] = distinct
    out["item_coverage"] = distinct / n_items
    x = np.sort(counts).astype(np.float64)
    total = x.sum()
    coef = 2.0 * np.arange(1, n_items + 1, dtype=np.float64) - n_items - 1.0
    out["exposure_gini"] = float(coef @ x / (n_items * total)) if total else float("nan")
    if total and n_items >= 2:
        p = x[x > 0] / total
        out["exposure_entropy"] = float(-(p * np.log(p)).sum()) / np.log(n_items)
    else:
        out["exposure_entropy"] = float("nan")
    if item_categories is not None:
        cats = sp.csr_matrix(item_categories)
        cats.eliminate_zeros()
        n_cat = int(np.unique(cats.indices).size) if n_categories is None else int(n_categories)
        covered = np.unique(cats[np.flatnonzero(counts > 0)].indices).size
        out["category_coverage"] = covered / n_cat if n_cat else float("nan")
    if item_vectors is not None:
        out["ilad"] = _mean_ilad(spark, lists, np.asarray(item_vectors, dtype=np.float64))
    if item_popularity is not None:
        if n_users is None:
            raise ValueError("novelty needs n_users (the users the popularity counts)")
        pop = np.asarray(item_popularity, dtype=np.float64)
        info = -np.log2(np.maximum(pop, 1.0) / int(n_users))
        table = spark.createDataFrame(
            pd.DataFrame({"item": np.arange(pop.size, dtype=np.int64), "info": info})
        )
        per = (
            _pairs(lists, None)
            .join(F.broadcast(table), "item")
            .groupBy("user")
            .agg(F.avg("info").alias("nov"))
        )
        out["novelty"] = float(per.agg(F.avg("nov")).collect()[0][0])
    if max_pairs is not None:
        out["between_user_diversity"] = _sampled_between_user(spark, lists, max_pairs, seed)
    return out


def _mean_ilad(spark: SparkSession, lists: DataFrame, vectors: np.ndarray) -> float:
    """Mean ILAD over lists with >= 2 items (`divrec.metrics.ilad` on each block)."""
    vecs = spark.sparkContext.broadcast(vectors)

    def run(batches):
        from divrec.metrics import ilad

        v = vecs.value
        for frame in batches:
            if len(frame) == 0:
                continue
            rows = [np.asarray(x, dtype=np.int64) for x in frame["items"]]
            width = max((r.size for r in rows), default=0)
            rec = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
            for i, r in enumerate(rows):
                rec[i, : r.size] = r
            val = ilad(rec, v)
            ok = ~np.isnan(val)
            yield pd.DataFrame({"s": [float(val[ok].sum())], "n": [int(ok.sum())]})

    agg = (
        lists.select("items")
        .mapInPandas(run, "s double, n long")
        .agg(F.sum("s"), F.sum("n"))
        .collect()[0]
    )
    return float(agg[0]) / agg[1] if agg[1] else float("nan")


def _sampled_between_user(spark: SparkSession, lists: DataFrame, max_pairs: int, seed: int):
    """`between_user_diversity(..., max_pairs, seed)` when max_pairs < the number of pairs.

    The users with non-empty lists, in user order, are indexed 0..n−1 and the pairs are drawn
    by `np.random.default_rng(seed)` as the in-memory function draws them; with fewer pairs
    than `max_pairs` every pair is evaluated.
    """
    sets = lists.select("user", F.array_distinct(F.filter("items", lambda i: i >= 0)).alias("s"))
    sets = sets.filter(F.size("s") > 0)
    from divrec.spark.data import IdMap

    # users numbered 0..n−1 in user order on the executors (no driver collect of the users)
    users = IdMap.of_column(sets, "user")
    n = users.size
    n_pairs = n * (n - 1) // 2
    if n_pairs == 0:
        return float("nan")
    if max_pairs < n_pairs:
        rng = np.random.default_rng(seed)
        u = rng.integers(0, n, size=max_pairs)
        v = rng.integers(0, n - 1, size=max_pairs)
        v += v >= u
    else:
        u, v = np.triu_indices(n, 1)
    # the drawn pairs are at most max_pairs rows, sent from the driver
    pairs = spark.createDataFrame(
        pd.DataFrame({"ia": u.astype(np.int64), "ib": v.astype(np.int64)}), "ia long, ib long"
    )
    indexed = users.index(sets, "user")  # user -> its position 0..n-1
    a = indexed.select(F.col("user").alias("ia"), F.col("s").alias("sa"))
    b = indexed.select(F.col("user").alias("ib"), F.col("s").alias("sb"))
    joined = pairs.join(a.hint("merge"), "ia").join(b.hint("merge"), "ib")
    dist = 1.0 - F.size(F.array_intersect("sa", "sb")) / F.greatest(F.size("sa"), F.size("sb"))
    val = joined.agg(F.avg(dist)).collect()[0][0]
    return float(val) if not math.isnan(val) else float("nan")
