"""Batch candidate generation on Spark: u2i top-k (+ re-ranking), i2u and group users.

- `u2i`: every user's top-`n_candidates` items by blocked matrix products inside
  `mapInPandas` (each partition holds a slice of the user vectors; the item vectors are a
  broadcast; no cross join), then any divrec re-ranker (`Reranker.__call__`, i.e.
  `select_batch` on the block) down to `k`. The function applied to each block is
  `divrec.evaluation.batch.u2i_block`, the in-memory streaming path, so the lists equal the
  in-memory pipeline's for the same vectors. With `search="faiss"` each block's candidates
  come from a faiss index of the items instead (`divrec.retrieval.ann.AnnIndex`, the
  in-memory ANN path), for catalogues where a block of `n_items` scores per user is too large.
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

from divrec.data.query import Candidates
from divrec.evaluation.batch import FactorView, factor_view, u2i_block
from divrec.retrieval.base import top_k
from divrec.spark.config import FaissSearchConfig

__all__ = [
    "FaissSearchConfig",
    "SCORE_BYTES",
    "TASK_MEMORY",
    "U2I_SCHEMA",
    "block_bytes",
    "block_for_budget",
    "faiss_block_bytes",
    "faiss_index_bytes",
    "faiss_u2i_block",
    "mips_vectors",
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


#: faiss path: bytes per id a search fetches (int64 id + float32 score, in faiss's result and
#: in `search_excluding`'s filtered copy, each round of which may double the fetch)
FETCH_BYTES = 48
#: faiss path: candidates fetched beyond the depth and re-scored exactly, so that the float
#: rounding of the cosine search cannot move an item across the cut
RESCORE_MARGIN = 8
#: faiss path: the seen items per user a block is sized for (a heavier user's exclusion
#: rounds fetch more, `AnnIndex.search_excluding`)
SEEN_PER_USER = 1000
#: `search="auto"` uses faiss once an exact block within the budget holds fewer users
AUTO_FAISS_BELOW_BLOCK = 64


def faiss_index_bytes(
    kind: str, n_items: int, dim: int, *, m: int = 32, nlist: int | None = None
) -> int:
    """Bytes of the faiss index `u2i(search="faiss")` builds over `(n_items, dim)` vectors.

    The vectors gain one dimension (D = dim + 1, the inner-product → cosine transform) and
    are stored as float32: flat `4·D·n`; HNSW `(4·D + 8·m + 16)·n` (level-0 links, levels
    and offsets); IVF-Flat `(4·D + 8)·n + 4·D·nlist` (codes, ids, centroids); IVF-SQ8
    `(5·D + 8)·n + 4·D·nlist` (8-bit codes, ids, the float copy it re-scores on, centroids).
    Measured against `faiss.serialize_index` at 2·10⁴ items, D = 33: within 0.3 %.

    Raises:
        ValueError: an unknown kind ("auto" is sized as the exact index it may keep).
    """
    from divrec.retrieval.ann import default_nlist

    d = int(dim) + 1
    n = int(n_items)
    lists = nlist or default_nlist(n)
    per = {
        "flat": 4 * d,
        "auto": 4 * d,
        "hnsw": 4 * d + 8 * m + 16,
        "ivf": 4 * d + 8,
        "ivf-sq8": 5 * d + 8,
    }
    if kind not in per:
        raise ValueError(f"kind must be one of {sorted(per)}, got {kind!r}")
    return per[kind] * n + (4 * d * lists if kind.startswith("ivf") else 0)


def faiss_block_bytes(
    block: int, depth: int, n_candidates: int, dim: int, *, itemsize: int = 4,
    seen: int = SEEN_PER_USER,
) -> int:  # fmt: skip
    """Bytes one `u2i(search="faiss")` block of `block` users needs besides the index.

    Per user: `FETCH_BYTES·(depth + 8 + seen)` for the search results (the fetch grows with
    the user's excluded items), `itemsize·dim·(depth + 8)` for the fetched vectors re-scored
    exactly, and the re-ranker's `24·N·dim` (`block_bytes`). No term grows with n_items.
    """
    fetch = depth + RESCORE_MARGIN
    per_user = (
        FETCH_BYTES * (fetch + seen)
        + itemsize * max(dim, 1) * fetch
        + CANDIDATE_BYTES_PER_DIM * n_candidates * max(dim, 1)
    )
    return int(block) * per_user


def mips_vectors(item_vectors: np.ndarray) -> np.ndarray:
    """Items of equal norm whose cosine with `[u, 0]` ranks as the inner product with `u`.

    Bachrach et al., "Speeding up the Xbox recommender system using a Euclidean
    transformation for inner-product spaces" (RecSys 2014), whose item transform reduces
    MIPS to nearest-neighbour search: x̃ = [x, sqrt(M² − ‖x‖²)] with M the largest norm
    and queries [u, 0], so every ‖x̃‖ = M and
    cos([u, 0], x̃) = u·x / (‖u‖ M), a positive multiple of the score for each user.

    Args:
        item_vectors: `(n_items, d)`.

    Returns:
        `(n_items, d + 1)` float32.
    """
    x = np.asarray(item_vectors, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    extra = np.sqrt(np.maximum(sq.max(initial=0.0) - sq, 0.0))
    return np.ascontiguousarray(np.column_stack([x, extra]), dtype=np.float32)


def _ann(config: FaissSearchConfig, depth: int):
    from divrec.retrieval.ann import AnnIndex

    return AnnIndex(
        kind=config.kind,
        m=config.m,
        ef_construction=config.ef_construction,
        ef_search=config.ef_search,
        threads=config.threads,
        nlist=config.nlist,
        nprobe=config.nprobe,
        target_recall=config.target_recall,
        recall_k=config.recall_k or depth,
        tune_queries=config.tune_queries,
        seed=config.seed,
        refine_factor=config.refine_factor,
    )


def _driver_index(user_vectors: DataFrame, item_vectors, config: FaissSearchConfig, depth: int):
    """The trained index, packed for a broadcast: `(attributes, serialized bytes)`.

    Tuning (a `target_recall`, or "auto") samples `tune_queries` user vectors: a random
    top-n (`orderBy(rand).limit`, a bounded collect, no full sort).
    """
    import faiss

    from divrec.retrieval.ann import AUTO_EXACT_BELOW

    queries = None
    auto_tunes = config.kind == "auto" and len(item_vectors) >= AUTO_EXACT_BELOW
    if (config.target_recall is not None and config.kind != "flat") or auto_tunes:
        rows = (
            user_vectors.select("vector")
            .orderBy(F.rand(config.seed))
            .limit(config.tune_queries)
            .toPandas()
        )
        if len(rows):
            vecs = np.stack(rows["vector"].to_numpy()).astype(np.float32)
            queries = np.pad(vecs, ((0, 0), (0, 1)))
    ann = _ann(config, depth).fit(mips_vectors(item_vectors), queries=queries)
    attrs = {k: v for k, v in vars(ann).items() if k not in ("index_", "_ivf")}
    return attrs, faiss.serialize_index(ann.index_)


_WORKER_INDEX: dict = {}  # the index of the latest faiss u2i, once per Python worker


def _worker_index(state: dict):
    """The task's `AnnIndex`: a flat one built from the broadcast items, else deserialized
    from the broadcast bytes; cached per Python worker (kept for its next tasks)."""
    key = state["token"]
    if key in _WORKER_INDEX:
        return _WORKER_INDEX[key]
    _WORKER_INDEX.clear()
    if state["packed"] is None:
        ann = _ann(state["config"], state["depth"]).fit(mips_vectors(state["items"]))
    else:
        import faiss

        from divrec.retrieval.ann import AnnIndex

        attrs, blob = state["packed"]
        ann = AnnIndex.__new__(AnnIndex)
        ann.__dict__.update(attrs)
        ann.index_ = faiss.deserialize_index(blob)
        if ann.kind_ == "ivf":  # AnnIndex sets nprobe on its IVF part
            ann._ivf = ann.index_
        elif ann.kind_ == "ivf-sq8":
            ann._ivf = faiss.downcast_index(ann.index_.base_index)
    _WORKER_INDEX[key] = ann
    return ann


def faiss_u2i_block(
    ann,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    depth: int,
    *,
    seen: sp.csr_matrix | None = None,
    divisor: float | None = None,
) -> Candidates:
    """`u2i_block`'s candidates from a faiss index of `mips_vectors(item_vectors)`.

    Fetches `depth + RESCORE_MARGIN` ids per user with the training items excluded as the
    in-memory ANN path does (`AnnIndex.search_excluding`: rounds, heavy users re-searched
    with `depth + |seen|`), re-scores them exactly (`U·I / divisor`, float32, as
    `u2i_block`) and keeps the best `depth` (ties: lower item index). With a flat index the
    lists equal `u2i_block`'s up to float32 rounding: the re-score is a per-row `einsum`,
    `u2i_block` a BLAS product, so scores can differ in the last bit (the test allows
    `rtol=2e-6`) and two items that close can swap.

    Args:
        ann: a fitted `AnnIndex` over `mips_vectors(item_vectors)`.
        user_vectors: `(B, d)` the block's user vectors.
        item_vectors: `(n_items, d)`.
        depth: candidates per user.
        seen: `(B, n_items)` CSR of excluded items, or None.
        divisor: scores are `(U Iᵀ) / divisor` when given.

    Returns:
        `(B, depth)` `Candidates`, −1 / −inf padded.
    """
    queries = np.pad(np.asarray(user_vectors, dtype=np.float32), ((0, 0), (0, 1)))
    ids, _ = ann.search_excluding(queries, depth + RESCORE_MARGIN, seen)
    ids = np.sort(ids, axis=1)  # column order = item order: top_k's ties go to the lower id
    vecs = np.asarray(user_vectors, dtype=item_vectors.dtype)
    scores = np.einsum("bd,bfd->bf", vecs, item_vectors[np.maximum(ids, 0)])
    if divisor is not None:
        scores = scores / np.float32(divisor)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    pos, vals = top_k(scores, depth)
    out = np.where(pos >= 0, np.take_along_axis(ids, np.maximum(pos, 0), axis=1), -1)
    return Candidates(out, vals)


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
    search: str = "exact",
    index: FaissSearchConfig | None = None,
) -> DataFrame:
    """Top-k items for every user of `user_vectors` (blocked products in `mapInPandas`).

    Memory per task (`search="exact"`): one block of `block` users needs
    `block × (8·n_items + 24·N·d)` bytes (`block_bytes`: the float32 scores and their
    masked copy, then the re-ranker's gathered candidate vectors), on top of the broadcast
    item vectors and the Arrow batch of user rows
    (`spark.sql.execution.arrow.maxRecordsPerBatch`). By default the block is the largest
    that fits `memory` bytes (`block_for_budget`): 256 MiB gives 1,711 users at 10⁴ items
    and 100 candidates of d = 32, 33 users at 10⁶ items.

    `search="faiss"`: each task searches a faiss index of the items
    (`divrec.retrieval.ann.AnnIndex` with `index`'s settings) over `mips_vectors` (the
    inner product as a cosine, Bachrach et al. 2014), fetching N + 8 items per user with its
    training items excluded as the in-memory ANN path does (`search_excluding`), re-scored
    exactly and cut to N (`faiss_u2i_block`), then the re-ranker as in the exact path. A
    flat index gives the exact lists; HNSW / IVF trade recall for time (`target_recall`
    tunes them on a sample of the user vectors). A flat index is built by each Python
    worker from the broadcast item vectors; the trained kinds are built and tuned once on
    the driver and broadcast serialized, each worker deserializing it once. Memory per
    task: the index (`faiss_index_bytes`: 4·(d+1)·n_items for flat, about as much again
    as the serialized copy for the trained kinds) plus the item vectors, plus a block of
    `faiss_block_bytes` (48·(N + 8 + 1000) + 4·d·(N + 8) + 24·N·d bytes per user, no term
    in n_items), the block again the largest within `memory`. At 10⁶ items of d = 64 a
    flat index is 260 MB and a block of 256 MiB holds 1,145 users (exact: 32), N = 100.
    When to choose it: the exact block's `8·n_items` bytes per user is what limits the
    exact path; once `memory` holds fewer than `AUTO_FAISS_BELOW_BLOCK` (64) users per
    block (n_items above ≈ 5.1·10⁵ at 256 MiB, N = 100, d = 32), each block product reads
    the whole item matrix for a few dozen users, while an IVF / HNSW search scores a
    fraction of the items per user (not timed on a cluster here); `search="auto"` switches
    (with `index.kind="auto"`: exact flat below 2·10⁴ items, else the fastest kind meeting a
    0.95 recall).

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
        block: users per matrix product or search (None: from `memory`).
        memory: the budget of one block in bytes (used when `block` is None).
        search: "exact" (blocked products), "faiss" (a faiss index per task) or "auto"
            (faiss when the exact block within `memory` holds fewer than
            `AUTO_FAISS_BELOW_BLOCK` users).
        index: the faiss settings (`FaissSearchConfig`; None: its defaults).

    Returns:
        `user long, items array<long>, scores array<float>`, one row per user.
    """
    from divrec.spark.rerank import SparkReranker, rerank_block

    if n_candidates < 1 or (block is not None and block < 1) or (k is not None and k < 1):
        raise ValueError("n_candidates, k and block must be positive")
    if search not in ("exact", "faiss", "auto"):
        raise ValueError(f"search must be 'exact', 'faiss' or 'auto', got {search!r}")
    if index is not None and not isinstance(index, FaissSearchConfig):
        raise ValueError(f"index must be a FaissSearchConfig, got {type(index).__name__}")
    if index is not None and search == "exact":
        raise ValueError("index (faiss settings) needs search='faiss' or 'auto'")
    if block is None and memory < 1:
        raise ValueError(f"memory budget must be >= 1 byte, got {memory}")
    item_vectors = np.ascontiguousarray(view.item_vectors)
    n_items, dim = item_vectors.shape
    depth = max(n_candidates, k or 0)
    if search == "auto":
        fits = block_for_budget(n_items, n_candidates, dim, memory)
        search = "faiss" if fits < AUTO_FAISS_BELOW_BLOCK else "exact"
    faiss_state = None
    if search == "faiss":
        import uuid

        index = index or FaissSearchConfig()
        packed = None
        if index.kind != "flat":
            packed = _driver_index(user_vectors, item_vectors, index, depth)
        faiss_state = {"token": uuid.uuid4().hex, "config": index, "depth": depth,
                       "packed": packed}  # fmt: skip
        if block is None:
            per_user = faiss_block_bytes(1, depth, n_candidates, dim,
                                         itemsize=item_vectors.itemsize)  # fmt: skip
            block = max(1, int(memory) // per_user)
    elif block is None:
        block = block_for_budget(n_items, n_candidates, dim, memory)
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
        {
            "items": item_vectors,
            "divisor": view.divisor,
            "reranker": reranker,
            "faiss": faiss_state,
        }  # fmt: skip
    )

    def run(batches):
        state = payload.value
        srr = state["reranker"]
        ann = None
        if state["faiss"] is not None:
            ann = _worker_index({**state["faiss"], "items": state["items"]})
        for frame in batches:
            for start in range(0, len(frame), block):
                part = frame.iloc[start : start + block]
                users = part["user"].to_numpy(np.int64)
                vecs = np.stack(part["vector"].to_numpy()).astype(state["items"].dtype, copy=False)
                seen_m = _seen_csr(part, n_items)
                if ann is None:
                    cand = u2i_block(users, vecs, state["items"], depth, seen=seen_m,
                                     divisor=state["divisor"])  # fmt: skip
                else:
                    cand = faiss_u2i_block(ann, vecs, state["items"], depth, seen=seen_m,
                                           divisor=state["divisor"])  # fmt: skip
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
