"""Batch candidate generation on Spark: u2i top-k (+ re-ranking), i2u and group users.

- `u2i`: every user's top-`n_candidates` items by blocked matrix products inside
  `mapInPandas` (each partition holds a slice of the user vectors; the item vectors are a
  broadcast; no cross join), then any divrec re-ranker (`Reranker.__call__`, i.e.
  `select_batch` on the block) down to `k`. The function applied to each block is
  `divrec.evaluation.batch.u2i_block`, the in-memory streaming path, so the lists equal the
  in-memory pipeline's for the same vectors.
- `als_recommend_for_all_users`: Spark ALS's own `recommendForAllUsers` with training items
  removed.
- `i2u`: TotalRecall Sec. 3.6: from the u2i pairs (top-10 items per user), the top-M users
  of each item by the same score (ties by lower user index, as `merge_top_users`).
- `group_potential_users`: potential users of item groups (TotalRecall App. A.7.2): each
  user's pair scores over a group's items aggregated by mean / max / sum, top-k per group.

DataFrames of user vectors have columns `user long, vector array<float|double>`; the output
of `u2i` has `user long, items array<long>, scores array<float>` (best first, −1 / −inf
padded like `Candidates`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from divrec.evaluation.batch import FactorView, factor_view, u2i_block

__all__ = [
    "SCORE_BYTES",
    "TASK_MEMORY",
    "U2I_SCHEMA",
    "block_bytes",
    "block_for_budget",
    "als_recommend_for_all_users",
    "group_potential_users",
    "i2u",
    "u2i",
    "user_vector_frame",
    "view_of",
]

U2I_SCHEMA = "user long, items array<long>, scores array<float>"


def view_of(model) -> FactorView:
    """`FactorView` of a fitted divrec retriever or a `divrec.spark.train` model."""
    if hasattr(model, "factor_view"):
        return model.factor_view()
    return factor_view(model)


def user_vector_frame(
    spark: SparkSession, vectors: np.ndarray, users: np.ndarray | None = None, partitions=None
) -> DataFrame:
    """A `(user, vector)` DataFrame from a `(n_users, d)` array (rows = users by default)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"user vectors must be (n_users, d), got shape {vectors.shape}")
    users = np.arange(vectors.shape[0]) if users is None else np.asarray(users)
    frame = pd.DataFrame({"user": users.astype(np.int64), "vector": list(vectors)})
    kind = "double" if vectors.dtype == np.float64 else "float"
    df = spark.createDataFrame(frame, schema=f"user long, vector array<{kind}>")
    return df.repartition(int(partitions)) if partitions else df


def _seen_lists(seen: DataFrame | None) -> DataFrame | None:
    if seen is None:
        return None
    return seen.groupBy("user").agg(F.collect_set("item").alias("_seen"))


def _seen_csr(frame: pd.DataFrame, n_items: int) -> sp.csr_matrix | None:
    if "_seen" not in frame.columns:
        return None
    lists = [np.asarray(s if s is not None else [], dtype=np.int64) for s in frame["_seen"]]
    lengths = np.array([x.size for x in lists], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    data = np.ones(indices.size, dtype=np.float32)
    mat = sp.csr_matrix((data, indices, indptr), shape=(len(lists), n_items))
    mat.sort_indices()
    return mat


#: bytes per score of a block in `u2i_block`: the float32 product and its float32 masked copy
#: (tracemalloc peak = 8.0 × block × n_items, measured at 2·10³–10⁵ items)
SCORE_BYTES = 8
#: bytes per candidate and vector dimension of the re-rankers' gathered inputs (float64
#: vectors, kernels; measured 3–21 × d for dpp / mmr / ssd / pdpp / ia-mmr / cf-* / hybrid)
CANDIDATE_BYTES_PER_DIM = 24
#: default memory budget of one task's scoring block (bytes)
TASK_MEMORY = 256 * 2**20


def block_bytes(block: int, n_items: int, n_candidates: int, dim: int) -> int:
    """Bytes one `u2i` block of `block` users needs: `block × (8·n_items + 24·N·d)`."""
    per_user = SCORE_BYTES * n_items + CANDIDATE_BYTES_PER_DIM * n_candidates * max(dim, 1)
    return int(block) * per_user


def block_for_budget(n_items: int, n_candidates: int, dim: int, budget: int) -> int:
    """The most users per block whose `block_bytes` fit `budget` bytes (at least 1).

    Raises:
        ValueError: a budget below 1 byte.
    """
    if budget < 1:
        raise ValueError(f"memory budget must be >= 1 byte, got {budget}")
    return max(1, int(budget) // block_bytes(1, n_items, n_candidates, dim))


def u2i(
    spark: SparkSession,
    user_vectors: DataFrame,
    view: FactorView,
    n_candidates: int = 100,
    *,
    k: int | None = None,
    seen: DataFrame | None = None,
    reranker=None,
    block: int | None = None,
    memory: int = TASK_MEMORY,
) -> DataFrame:
    """Top-k items for every user of `user_vectors` (blocked products in `mapInPandas`).

    Memory per task: one block of `block` users needs `block × (8·n_items + 24·N·d)` bytes
    (`block_bytes`: the float32 scores and their masked copy, then the re-ranker's gathered
    candidate vectors), on top of the broadcast item vectors and the Arrow batch of user
    rows (`spark.sql.execution.arrow.maxRecordsPerBatch`). By default the block is the
    largest that fits `memory` bytes (`block_for_budget`): 256 MiB gives 1,711 users
    at 10⁴ items and 100 candidates of d = 32, 33 users at 10⁶ items.

    Args:
        spark: the session.
        user_vectors: `(user, vector)` DataFrame (e.g. `user_vector_frame`, or
            `SparkALS.user_vectors()`).
        view: the item side (`view.item_vectors (n_items, d)`, `view.divisor`); its
            `user_vectors` are not used.
        n_candidates: candidates per user N (retrieval depth).
        k: final list length (default N); with `reranker`, the re-ranked length.
        seen: `(user, item)` DataFrame of items never to return (the training log), or None.
        reranker: a `divrec.spark.rerank.SparkReranker` (per-user state joined to the
            users), a fitted divrec `Reranker` without per-user state, or None.
        block: users per matrix product (None: from `memory`).
        memory: the budget of one block in bytes (used when `block` is None).

    Returns:
        `user long, items array<long>, scores array<float>`, one row per user.
    """
    from divrec.spark.rerank import SparkReranker, rerank_block

    if n_candidates < 1 or (block is not None and block < 1) or (k is not None and k < 1):
        raise ValueError("n_candidates, k and block must be positive")
    item_vectors = np.ascontiguousarray(view.item_vectors)
    n_items = item_vectors.shape[0]
    if block is None:
        block = block_for_budget(n_items, n_candidates, item_vectors.shape[1], memory)
    if reranker is not None and not isinstance(reranker, SparkReranker):
        reranker = SparkReranker(reranker)
    df = user_vectors.select("user", "vector")
    lists = _seen_lists(seen)
    if lists is not None:
        df = df.join(lists.hint("merge"), "user", "left")
    if reranker is not None and reranker.user_state is not None:
        df = df.join(reranker.user_state.hint("merge"), "user", "left")
    if reranker is not None:  # the broadcast holds the item side only
        reranker = dataclasses.replace(reranker, user_state=None)
    payload = spark.sparkContext.broadcast(
        {"items": item_vectors, "divisor": view.divisor, "reranker": reranker}
    )
    depth = max(n_candidates, k or 0)

    def run(batches):
        state = payload.value
        srr = state["reranker"]
        for frame in batches:
            for start in range(0, len(frame), block):
                part = frame.iloc[start : start + block]
                users = part["user"].to_numpy(np.int64)
                vecs = np.stack(part["vector"].to_numpy()).astype(state["items"].dtype, copy=False)
                cand = u2i_block(
                    users,
                    vecs,
                    state["items"],
                    depth,
                    seen=_seen_csr(part, n_items),
                    divisor=state["divisor"],
                )
                if srr is None:
                    out = cand.head(n_candidates if k is None else k)
                else:
                    out = rerank_block(
                        srr,
                        users,
                        cand,
                        n_candidates if k is None else k,
                        user_vectors=vecs,
                        state_idx=part["_state_idx"] if "_state_idx" in part else None,
                        state_val=part["_state_val"] if "_state_val" in part else None,
                    ).head(n_candidates if k is None else k)
                yield pd.DataFrame(
                    {"user": users, "items": list(out.ids), "scores": list(out.scores)}
                )

    return df.mapInPandas(run, U2I_SCHEMA)


def als_recommend_for_all_users(model, k: int, seen: DataFrame | None = None) -> DataFrame:
    """Spark ALS's `recommendForAllUsers`, training items removed, as `U2I_SCHEMA`.

    Fetches `k + max |seen(u)|` items per user so that `k` remain after the removal: with
    heavy users that is large (ML-1M: 2,300 per user); `u2i` on `SparkALS.user_vectors()`
    and `factor_view()` excludes seen items block by block instead.

    Args:
        model: a fitted `pyspark.ml.recommendation.ALSModel` (user/item columns `user`,
            `item`) or a `divrec.spark.train.SparkALS`.
        k: list length.
        seen: `(user, item)` training DataFrame or None.
    """
    als = getattr(model, "model_", model)
    extra = 0
    if seen is not None:
        extra = seen.groupBy("user").count().agg(F.max("count")).collect()[0][0] or 0
    recs = als.recommendForAllUsers(int(k + extra))
    pairs = recs.select("user", F.posexplode("recommendations").alias("pos", "rec")).select(
        "user", "pos", F.col("rec.item").alias("item"), F.col("rec.rating").alias("score")
    )
    if seen is not None:
        pairs = pairs.join(seen.select("user", "item"), ["user", "item"], "left_anti")
    win = Window.partitionBy("user").orderBy(F.col("score").desc(), F.col("item"))
    pairs = pairs.withColumn("_r", F.row_number().over(win)).filter(F.col("_r") <= k)
    return pairs.groupBy("user").agg(
        F.transform(
            F.array_sort(F.collect_list(F.struct("_r", "item", "score"))), lambda s: s["item"]
        ).alias("items"),
        F.transform(
            F.array_sort(F.collect_list(F.struct("_r", "item", "score"))),
            lambda s: s["score"].cast("float"),
        ).alias("scores"),
    )


def i2u(u2i_lists: DataFrame, users_per_item: int) -> DataFrame:
    """Top-M users per item from u2i lists (TotalRecall Sec. 3.6 batch path).

    Every (user, item, score) of the lists is a candidate pair; each item keeps its
    `users_per_item` best users by score (ties: lower user index), as `merge_top_users`.

    Returns:
        `item long, users array<long>, scores array<float>`, best first.
    """
    if users_per_item < 1:
        raise ValueError(f"users_per_item must be >= 1, got {users_per_item}")
    pairs = u2i_lists.select("user", F.explode(F.arrays_zip("items", "scores")).alias("p")).select(
        "user", F.col("p.items").alias("item"), F.col("p.scores").alias("score")
    )
    pairs = pairs.filter((F.col("item") >= 0) & ~F.isnan("score") & (F.col("score") > -np.inf))
    win = Window.partitionBy("item").orderBy(F.col("score").desc(), F.col("user"))
    top = pairs.withColumn("_r", F.row_number().over(win)).filter(F.col("_r") <= users_per_item)
    ordered = F.array_sort(F.collect_list(F.struct("_r", "user", "score")))
    return top.groupBy("item").agg(
        F.transform(ordered, lambda s: s["user"]).alias("users"),
        F.transform(ordered, lambda s: s["score"]).alias("scores"),
    )


_PROBABILITY = {
    "identity": lambda phi: phi,
    "exp": np.exp,
    "sigmoid": lambda phi: 1.0 / (1.0 + np.exp(-phi)),
}


def group_potential_users(
    spark: SparkSession,
    user_vectors: DataFrame,
    view: FactorView,
    groups: dict[str, np.ndarray],
    k: int = 10,
    *,
    aggregation: str = "mean",
    probability: str = "identity",
    seen: DataFrame | None = None,
    seen_scope: str = "group",
    block: int = 1024,
) -> DataFrame:
    """Potential users of item groups (TotalRecall App. A.7.2), every user scored.

    For group G and user u, p(u, i) = f(φ(u, i)) with φ = U[u]·I[i] / divisor and f the
    `probability` map ("exp" for InfoNCE / TotalRecall, "sigmoid" for MFb, "identity");
    the scores over the usable items of G are aggregated by mean, max or sum. With `seen`,
    `seen_scope="group"` drops users who interacted with any item of G and `"item"` drops
    only the seen (u, i) pairs (as `TwoTowerRecommender.potential_users_of_group` with
    `candidates_per_item=None`). Each partition keeps its top-k per group; a window then
    takes the global top-k (ties: lower user index).

    Returns:
        `group string, users array<long>, scores array<double>`, best first.
    """
    if aggregation not in ("mean", "max", "sum"):
        raise ValueError(f"aggregation must be mean, max or sum, got {aggregation!r}")
    if probability not in _PROBABILITY:
        raise ValueError(f"probability must be one of {sorted(_PROBABILITY)}, got {probability!r}")
    if seen_scope not in ("group", "item"):
        raise ValueError(f"seen_scope must be 'group' or 'item', got {seen_scope!r}")
    if not groups:
        raise ValueError("no item groups given")
    n_items = view.item_vectors.shape[0]
    spec = {}
    for name, items in groups.items():
        items = np.unique(np.asarray(items, dtype=np.int64))
        if items.size == 0 or items.min() < 0 or items.max() >= n_items:
            raise ValueError(f"group {name!r}: empty or item index outside [0, {n_items})")
        spec[str(name)] = items
    payload = spark.sparkContext.broadcast(
        {
            "items": np.asarray(view.item_vectors),
            "divisor": view.divisor,
            "groups": list(spec.values()),
        }
    )
    df = user_vectors.select("user", "vector")
    lists = _seen_lists(seen)
    if lists is not None:
        df = df.join(lists, "user", "left")
    prob = _PROBABILITY[probability]

    def run(batches):
        state = payload.value
        for frame in batches:
            for start in range(0, len(frame), block):
                part = frame.iloc[start : start + block]
                users = part["user"].to_numpy(np.int64)
                vecs = np.stack(part["vector"].to_numpy()).astype(np.float64)
                seen_m = _seen_csr(part, n_items)
                rows = []
                for g, items in enumerate(state["groups"]):
                    phi = vecs @ state["items"][items].astype(np.float64).T
                    if state["divisor"] is not None:
                        phi = phi / state["divisor"]
                    p = prob(phi)
                    usable = np.ones(phi.shape, dtype=bool)
                    if seen_m is not None:
                        pairs = seen_m[:, items].toarray() > 0
                        usable &= (
                            ~pairs.any(axis=1, keepdims=True) if seen_scope == "group" else ~pairs
                        )
                    count = usable.sum(axis=1)
                    if aggregation == "max":
                        agg = np.where(usable, p, -np.inf).max(axis=1)
                    else:
                        total = np.where(usable, p, 0.0).sum(axis=1)
                        agg = total if aggregation == "sum" else total / np.maximum(count, 1)
                    keep = np.flatnonzero(count > 0)
                    order = keep[np.lexsort((users[keep], -agg[keep]))][:k]
                    rows.append(
                        pd.DataFrame(
                            {
                                "_g": np.full(order.size, g),
                                "user": users[order],
                                "score": agg[order],
                            }
                        )
                    )
                if rows:
                    yield pd.concat(rows, ignore_index=True)

    # group indices inside the workers (pandas 3 string columns do not cross Arrow here)
    partial = df.mapInPandas(run, "_g long, user long, score double")
    names = spark.createDataFrame(
        [(i, name) for i, name in enumerate(spec)], "_g long, group string"
    )
    partial = partial.join(F.broadcast(names), "_g").drop("_g")
    win = Window.partitionBy("group").orderBy(F.col("score").desc(), F.col("user"))
    top = partial.withColumn("_r", F.row_number().over(win)).filter(F.col("_r") <= k)
    ordered = F.array_sort(F.collect_list(F.struct("_r", "user", "score")))
    return top.groupBy("group").agg(
        F.transform(ordered, lambda s: s["user"]).alias("users"),
        F.transform(ordered, lambda s: s["score"]).alias("scores"),
    )
