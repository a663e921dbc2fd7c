"""divrec re-rankers on Spark, fitted from what they need, per-user state kept distributed.

`Reranker.fit(train, item_vectors, user_vectors)` reads the whole training log on one
machine. On Spark the same fitted state is built from its parts:

- item side (`(n_items, ·)`, the size of the item vectors that every task holds anyway):
  the model's item vectors, each item's first category (`item_category_`, the smallest
  category index, as `Interactions.primary_category`), and its share of training rows
  (`item_popularity_`), an aggregation collected as one `(n_items,)` array. These travel
  with the re-ranker in `u2i`'s broadcast.
- user side (grows with the users; never collected, never broadcast): a `(user, …)`
  DataFrame joined to the user vectors by a shuffle join, so each `u2i` block carries its
  users' rows. The re-ranker scoring a block is a shallow copy of the fitted one whose
  per-user attribute holds just the block's rows (and the block's users are numbered
  `0 … B − 1` in its `Query`):

  | re-ranker | per-user state | on Spark |
  |---|---|---|
  | `pdpp` | `user_category_counts_` `(n_users, C)` | (user, item) ⋈ (item, category), counted |
  | `ia-mmr` | `user_vectors_` `(n_users, d)` | the block's own user vectors (the model's) |
  | `category-cap` | none (item categories) | |
  | `dpp`, `mmr`, `ssd`, `cf-da`, `cf-dm`, `hybrid` | none (item vectors, popularity) | |
  | `random-k`, `popular-k` | none (popular-k: distinct users per item, item side) | |
  | `rt-dpp` | a live propensity tracker (serving state) | refused: use `pdpp` |

  (`ia-mmr` uses the model's user vectors, as `Pipeline` passes `retriever.user_vectors()`.)

Item categories come from an item table (`read_item_categories`, the semantics of
`divrec.data.tabular.load_item_categories`: multi-valued cells split on `multi_sep`,
category indices in sorted name order) or from a log's `Interactions.item_categories`
(`categories_from_matrix`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from divrec.data.interactions import DataError

__all__ = [
    "ItemCategories",
    "SparkReranker",
    "categories_from_matrix",
    "fit_reranker",
    "read_item_categories",
    "rerank_block",
]


@dataclass(eq=False)
class ItemCategories:
    """Multi-hot item categories on Spark.

    Attributes:
        pairs: `(item long, category long)` DataFrame, one row per (item, category) pair,
            items as internal indices.
        n_categories: number of categories C (indices `0 … C − 1`, sorted names).
        names: the C category names (category side, small), or None.
    """

    pairs: DataFrame
    n_categories: int
    names: tuple[str, ...] | None = None

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """`(n_items, C)` float64 binary CSR on the driver (item side)."""
        frame = self.pairs.toPandas()
        items = frame["item"].to_numpy(np.int64)
        cats = frame["category"].to_numpy(np.int64)
        mat = sp.csr_matrix(
            (np.ones(items.size), (items, cats)), shape=(n_items, self.n_categories)
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat


def categories_from_matrix(
    spark: SparkSession, matrix: sp.spmatrix, names: tuple[str, ...] | None = None
) -> ItemCategories:
    """`ItemCategories` of an in-memory `(n_items, C)` multi-hot matrix (and its names)."""
    coo = sp.coo_matrix(matrix)
    keep = coo.data != 0
    frame = pd.DataFrame(
        {"item": coo.row[keep].astype(np.int64), "category": coo.col[keep].astype(np.int64)}
    )
    pairs = spark.createDataFrame(frame, "item long, category long").distinct()
    return ItemCategories(pairs, int(matrix.shape[1]), None if names is None else tuple(names))


def read_item_categories(
    spark: SparkSession,
    path: str | Path,
    item_col: str,
    category_col: str,
    item_map,
    *,
    sep: str | None = None,
    multi_sep: str | None = "|",
) -> ItemCategories:
    """Item categories from a Parquet / CSV / TSV item table (`load_item_categories` rules).

    Each row holds an item id and one or more categories joined by `multi_sep`; repeated
    item rows add their categories; items absent from the table have none; table items
    unknown to `item_map` are ignored; category indices follow the sorted names.

    Args:
        spark: the session.
        path: the table.
        item_col: column of the item ids (external ids, matched to `item_map`; compared as
            strings when the types differ).
        category_col: column of the categories.
        item_map: the log's items `IdMap` (`divrec.spark.data`).
        sep: field separator of text files.
        multi_sep: separator between several categories in one cell; None for one per cell.

    Raises:
        DataError: a missing file or column, or no item id of the table in the log.
    """
    location = str(path)
    local = Path(location)
    if "://" not in location and not local.exists():
        raise DataError(f"{location}: no such file")
    suffixes = [x.lower() for x in local.suffixes]
    if ".parquet" in suffixes or ("://" not in location and local.is_dir()):
        raw = spark.read.parquet(location)
    else:
        if sep is None:
            sep = "\t" if ".tsv" in suffixes else ","
        raw = spark.read.option("header", "true").option("sep", sep).csv(location)
    missing = [c for c in (item_col, category_col) if c not in raw.columns]
    if missing:
        raise DataError(f"{location}: missing column(s) {missing}; the table has {raw.columns}")
    cell = F.col(f"`{category_col}`").cast("string")
    cats = F.split(cell, _regex_quote(multi_sep)) if multi_sep else F.array(cell)
    table = raw.select(
        F.col(f"`{item_col}`").cast("string").alias("_ext"), F.explode(cats).alias("_name")
    ).select("_ext", F.trim("_name").alias("_name"))
    table = table.filter(F.col("_name").isNotNull() & (F.col("_name") != ""))
    mapping = item_map.frame.select(
        F.col("id").cast("string").alias("_ext"), F.col("index").alias("item")
    )
    known = table.join(mapping, "_ext").select("item", "_name").distinct().cache()
    if known.limit(1).count() == 0:
        raise DataError(f"{location}: no item id in column {item_col!r} matches an item of the log")
    from divrec.spark.data import IdMap

    names = IdMap.of_column(known, "_name")
    pairs = names.index(known, "_name").select("item", F.col("_name").alias("category"))
    labels = tuple(str(x) for x in names.to_numpy())  # the C names (category side)
    return ItemCategories(pairs.distinct(), names.size, labels)


def _regex_quote(text: str) -> str:
    import re

    return re.escape(text)


@dataclass(eq=False)
class SparkReranker:
    """A re-ranker fitted on Spark (`fit_reranker`); `divrec.spark.candidates.u2i` takes it.

    Attributes:
        reranker: the divrec re-ranker with its item-side state (broadcast with `u2i`'s item
            vectors); its per-user attribute is filled block by block.
        user_state: `(user, _state_idx array<long>, _state_val array<double>)` sparse rows
            of the per-user state, or None.
        state: which per-user state the blocks carry: None, "category_counts" (pdpp) or
            "user_vectors" (ia-mmr: the block's user vectors).
        width: the dense width of the state (C for category counts).
    """

    reranker: Any
    user_state: DataFrame | None = None
    state: str | None = None
    width: int = 0


def fit_reranker(
    reranker,
    train: DataFrame,
    n_items: int,
    item_vectors: np.ndarray,
    *,
    categories: ItemCategories | None = None,
) -> SparkReranker:
    """Fits a divrec re-ranker from a training log on Spark (see the module docstring).

    Args:
        reranker: an unfitted divrec `Reranker` (e.g. `StageSpec(name).build("reranker")`).
        train: the `(user, item, …)` training DataFrame (internal indices).
        n_items: catalogue size.
        item_vectors: `(n_items, d)` item vectors of the similarity (the model's).
        categories: item categories (required by `category-cap`; `pdpp` without them, or
            with fewer than two, gives every user `default_theta`, as in memory).

    Returns:
        The `SparkReranker` for `u2i`.

    Raises:
        ValueError: a re-ranker that keeps live serving state (`rt-dpp`), category-cap
            without categories, item vectors of the wrong shape; one line.
    """
    from divrec.rerank._base import Reranker
    from divrec.rerank.baselines import CategoryCap
    from divrec.rerank.mmr import InterestAwareMMR
    from divrec.rerank.personalized import PersonalizedDPP, RealtimePersonalizedDPP

    name = type(reranker).__name__
    if isinstance(reranker, RealtimePersonalizedDPP):
        raise ValueError(
            "rt-dpp reads a live propensity tracker (serving state) and does not run on "
            "Spark; use pdpp (per-user category entropy)"
        )
    vecs = np.asarray(item_vectors, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != n_items:
        raise ValueError(f"item_vectors must have shape ({n_items}, d), got {vecs.shape}")
    if isinstance(reranker, CategoryCap) and categories is None:
        raise ValueError("category-cap needs item categories (an item table with categories)")
    rr = reranker
    rr.item_vectors_ = vecs
    rr.user_vectors_ = None
    counts = train.groupBy("item").count().toPandas()  # item side: (n_items,) at most
    pop = np.zeros(n_items, dtype=np.float64)
    pop[counts["item"].to_numpy(np.int64)] = counts["count"].to_numpy(np.float64)
    rr.item_popularity_ = np.maximum(pop, 1.0) / max(float(pop.sum()), 1.0)
    side = _ItemSide(train, n_items, categories)
    rr.item_category_ = side.primary_category() if categories is not None else None
    out = SparkReranker(rr)
    calibrated = _calibrated_class()
    if isinstance(rr, PersonalizedDPP):
        rr.user_category_counts_ = None
        if categories is not None and categories.n_categories >= 2:
            rr.item_categories_ = side.item_categories
            pairs = categories.pairs.withColumn("share", F.lit(1.0))
            out.user_state = _per_user_category_sums(train, pairs, normalize=False)
            out.state = "category_counts"
            out.width = categories.n_categories
    elif calibrated is not None and isinstance(rr, calibrated):
        from divrec.metrics.calibration import category_shares

        if categories is None:
            raise ValueError(f"{name} needs item categories (an item table with categories)")
        rr.item_shares_ = category_shares(side.item_categories)
        per_item = categories.pairs.groupBy("item").agg(F.count("*").alias("_n"))
        pairs = categories.pairs.join(per_item, "item").select(
            "item", "category", (F.lit(1.0) / F.col("_n")).alias("share")
        )
        out.user_state = _per_user_category_sums(train, pairs, normalize=True)
        out.state = "calibration_target"
        out.width = categories.n_categories
    elif isinstance(rr, InterestAwareMMR):
        out.state = "user_vectors"
    elif type(rr)._fit_stage is not Reranker._fit_stage:
        try:  # item-side state only (e.g. FA*IR's protected items): the item-side view
            rr._fit_stage(side)
        except AttributeError:
            raise ValueError(
                f"{name} fits per-user state that divrec.spark does not distribute"
            ) from None
    return out


def _calibrated_class():
    try:
        from divrec.rerank.calibration import CalibratedReranker
    except ImportError:  # pragma: no cover - older trees
        return None
    return CalibratedReranker


def _per_user_category_sums(train: DataFrame, pairs: DataFrame, normalize: bool) -> DataFrame:
    """`(user, _state_idx, _state_val)`: per user and category, the sum over the user's
    distinct training items of the item's `share` of the category, added in item order
    (the order of a CSR product: the same float64 rounding as in memory); with
    `normalize`, divided by the user's number of distinct items (`user_distribution`)."""
    seen = train.select("user", "item").distinct()
    per = (
        seen.join(pairs.hint("merge"), "item")
        .groupBy("user", "category")
        .agg(F.array_sort(F.collect_list(F.struct("item", "share"))).alias("_terms"))
        .select(
            "user",
            "category",
            F.aggregate("_terms", F.lit(0.0), lambda acc, t: acc + t["share"]).alias("n"),
        )
    )
    if normalize:
        sizes = seen.groupBy("user").agg(F.count("*").cast("double").alias("_items"))
        per = per.join(sizes.hint("merge"), "user").withColumn("n", F.col("n") / F.col("_items"))
    ordered = F.array_sort(F.collect_list(F.struct("category", "n")))
    return per.groupBy("user").agg(
        F.transform(ordered, lambda s: s["category"]).alias("_state_idx"),
        F.transform(ordered, lambda s: s["n"]).alias("_state_val"),
    )


class _ItemSide:
    """The item side of a Spark training log, duck-typing the `Interactions` attributes an
    item-side `_fit_stage` reads (`n_items`, `item_popularity()`, `item_categories`,
    `category_names`, `n_categories`, `primary_category()`, `item_features`); anything
    per user (`to_csr`, `users`) is absent, so a `_fit_stage` needing it raises
    `AttributeError`."""

    item_features = None
    name = "spark"

    def __init__(self, train: DataFrame, n_items: int, categories: ItemCategories | None):
        self._train = train
        self.n_items = int(n_items)
        self._categories = categories
        self.item_categories = None if categories is None else categories.matrix(n_items)
        self.category_names = None if categories is None else categories.names
        self.n_categories = 0 if categories is None else categories.n_categories

    def item_popularity(self) -> np.ndarray:
        """`(n_items,)` int64 distinct users per item (`Interactions.item_popularity`)."""
        counts = self._train.select("user", "item").distinct().groupBy("item").count().toPandas()
        out = np.zeros(self.n_items, dtype=np.int64)
        out[counts["item"].to_numpy(np.int64)] = counts["count"].to_numpy(np.int64)
        return out

    def primary_category(self) -> np.ndarray:
        """`(n_items,)` int64 smallest category index of each item (−1 none)."""
        if self.item_categories is None:
            raise ValueError("no item categories")
        cats = self.item_categories
        out = np.full(self.n_items, -1, dtype=np.int64)
        has = np.diff(cats.indptr) > 0
        out[has] = cats.indices[cats.indptr[:-1][has]]
        return out


def rerank_block(
    srr: SparkReranker,
    users: np.ndarray,
    candidates,
    k: int,
    *,
    user_vectors: np.ndarray | None = None,
    state_idx: Any = None,
    state_val: Any = None,
):
    """Re-ranks one block of `u2i` candidates with the block's per-user state.

    Args:
        srr: the fitted `SparkReranker`.
        users: `(B,)` internal user indices.
        candidates: `(B, N)` `Candidates`.
        k: list length.
        user_vectors: `(B, d)` the block's user vectors (ia-mmr).
        state_idx: B sparse index lists of the per-user state (or None entries).
        state_val: B value lists aligned with `state_idx`.

    Returns:
        `(B, k)` `Candidates`.
    """
    from divrec.data.query import Query

    rr = srr.reranker
    if srr.state is None:
        return rr(Query(users=np.asarray(users, dtype=np.int64)), candidates, k)
    local = copy.copy(rr)
    b = len(users)
    if srr.state in ("category_counts", "calibration_target"):
        dense = np.zeros((b, srr.width), dtype=np.float64)
        for row, (idx, val) in enumerate(zip(state_idx, state_val, strict=True)):
            if idx is not None and len(idx):
                dense[row, np.asarray(idx, dtype=np.int64)] = np.asarray(val, dtype=np.float64)
        if srr.state == "category_counts":
            local.user_category_counts_ = dense
        else:
            local.user_target_ = sp.csr_matrix(dense)
    elif srr.state == "user_vectors":
        local.user_vectors_ = np.asarray(user_vectors, dtype=np.float32)
    return local(Query(users=np.arange(b, dtype=np.int64)), candidates, k)
