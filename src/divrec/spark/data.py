"""Interaction logs as Spark DataFrames: conversion, Parquet/CSV reading and splits.

A `SparkLog` is a DataFrame with one row per interaction, columns

    user long, item long, value float, timestamp long (nullable), session long (nullable),
    row long

(`user`/`item` are divrec's internal indices, `row` the position of the interaction in the
log: the tie-break of every ordering, as in the in-memory splits) plus the external id maps
`user_map` / `item_map`: `IdMap`s, i.e. DataFrames `(index long, id)` that stay on the
executors (a 10⁷-user map is never collected to the driver nor broadcast; `user_ids` /
`item_ids` collect it on demand, for tests and small data). Internal indices follow the sorted
external ids, exactly as `Interactions.from_arrays`, so a log read by Spark and by
`divrec.data.tabular.load_table` from the same file has the same indices and the same rows:
the distinct ids are range-sorted and numbered by `zipWithIndex` (one job counts each
partition's rows, then every partition numbers its own), and the log is joined with the map
by a shuffle join (never a broadcast).

Splits (same rules as `divrec.splitting.protocols`):

- `temporal_split`: identical to the in-memory split (global order by (timestamp, row); the
  last ⌊f·n + ½⌋ rows are test). The cut is found exactly without a global sort: an
  approximate quantile brackets it, the rows inside the bracket are counted per timestamp,
  and only the ties at the cut timestamp are ordered by row.
- `leave_last_one`: identical (per-user window ordered by (timestamp, row)).
- `random_holdout`: the same sizes (⌊f·n + ½⌋ globally; min(⌊f·c + ½⌋, c − 1) per user) but
  *not* the same rows: the in-memory split draws numpy's PCG64 permutation, which has no
  distributed equivalent; here a row's random key is `xxhash64(seed, row)`, so the split is
  deterministic given the seed and independent of the partitioning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from divrec.data.interactions import DataError, Interactions
from divrec.data.tabular import ColumnMap
from divrec.splitting._util import check_fraction, check_int, percent_label, round_half_up

__all__ = [
    "IdMap",
    "LOG_SCHEMA",
    "SparkLog",
    "SparkSplit",
    "from_interactions",
    "leave_last_one",
    "random_holdout",
    "read_table",
    "temporal_split",
    "to_interactions",
]

LOG_SCHEMA = T.StructType(
    [
        T.StructField("user", T.LongType(), False),
        T.StructField("item", T.LongType(), False),
        T.StructField("value", T.FloatType(), False),
        T.StructField("timestamp", T.LongType(), True),
        T.StructField("session", T.LongType(), True),
        T.StructField("row", T.LongType(), False),
    ]
)


class IdMap:
    """External ids ↔ internal indices as a DataFrame `(index long, id)`, kept distributed.

    Args:
        frame: the `(index, id)` DataFrame, indices `0 … size − 1` in sorted id order.
        size: number of ids.
        ids: the `(size,)` ids when they are on the driver already (`from_interactions`).
    """

    def __init__(self, frame: DataFrame, size: int, ids: np.ndarray | None = None) -> None:
        self.frame = frame
        self.size = int(size)
        self._ids = ids

    def to_numpy(self) -> np.ndarray:
        """`(size,)` ids in index order (a driver collect of the whole map; small data only)."""
        if self._ids is None:
            frame = self.frame.toPandas().sort_values("index")
            self._ids = frame["id"].to_numpy()
        return self._ids

    @classmethod
    def from_array(cls, spark: SparkSession, ids: np.ndarray) -> IdMap:
        """The map of the driver-side `(n,)` sorted ids (index = position)."""
        ids = np.asarray(ids)
        frame = spark.createDataFrame(
            pd.DataFrame({"index": np.arange(ids.shape[0], dtype=np.int64), "id": ids})
        )
        return cls(frame, ids.shape[0], ids)

    @classmethod
    def of_column(cls, df: DataFrame, col: str) -> IdMap:
        """The map of the distinct values of `df[col]`, numbered in sorted order, cached.

        The distinct ids are sorted by a range partitioning (sampled, distributed) and
        numbered with `RDD.zipWithIndex`; nothing but one count per partition reaches the
        driver.
        """
        spark = df.sparkSession
        distinct = df.select(F.col(col).alias("id")).distinct().orderBy("id")
        kind = distinct.schema["id"].dataType
        indexed = distinct.rdd.zipWithIndex().map(lambda pair: (pair[1], pair[0][0]))
        schema = T.StructType(
            [T.StructField("index", T.LongType(), False), T.StructField("id", kind, False)]
        )
        frame = spark.createDataFrame(indexed, schema).persist(StorageLevel.MEMORY_AND_DISK)
        return cls(frame, frame.count())

    def index(self, df: DataFrame, col: str) -> DataFrame:
        """`df` with the external ids in `col` replaced by their indices (a shuffle join)."""
        mapping = self.frame.select(F.col("id").alias("_ext"), F.col("index").alias("_idx"))
        joined = df.withColumnRenamed(col, "_ext").join(mapping.hint("merge"), "_ext")
        return joined.drop("_ext").withColumnRenamed("_idx", col)

    def external(self, df: DataFrame, col: str, out: str) -> DataFrame:
        """`df` with a column `out` holding the external id of the index in `col`."""
        mapping = self.frame.select(F.col("index").alias(col), F.col("id").alias(out))
        return df.join(mapping.hint("merge"), col, "left")


@dataclass(eq=False)
class SparkLog:
    """An interaction log on Spark with divrec's id maps (see the module docstring).

    Attributes:
        df: the DataFrame (`LOG_SCHEMA` columns).
        user_map: the users' `IdMap` (index = internal user index, ids sorted).
        item_map: the items' `IdMap`.
        name: dataset name.
        has_timestamps: whether the timestamp column is filled.
        has_sessions: whether the session column is filled.
    """

    df: DataFrame
    user_map: IdMap
    item_map: IdMap
    name: str = "interactions"
    has_timestamps: bool = False
    has_sessions: bool = False
    extras: dict = field(default_factory=dict, repr=False)

    @property
    def n_users(self) -> int:
        return self.user_map.size

    @property
    def n_items(self) -> int:
        return self.item_map.size

    @property
    def user_ids(self) -> np.ndarray:
        """`(n_users,)` external user ids (collects the map to the driver)."""
        return self.user_map.to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        """`(n_items,)` external item ids (collects the map to the driver)."""
        return self.item_map.to_numpy()

    def count(self) -> int:
        """Number of interactions (a Spark job)."""
        return int(self.df.count())

    def with_df(self, df: DataFrame) -> SparkLog:
        """The same universe with other rows."""
        return replace(self, df=df)


@dataclass(eq=False)
class SparkSplit:
    """Train / test (/ valid) `SparkLog`s of one universe, like `divrec.data.split.Split`."""

    train: SparkLog
    test: SparkLog
    valid: SparkLog | None = None
    protocol: str = ""


# ---------------------------------------------------------------------- conversion
def from_interactions(spark: SparkSession, data: Interactions, partitions: int | None = None):
    """An `Interactions` log as a `SparkLog` (same indices, `row` = position in the log).

    Args:
        spark: the session.
        data: the in-memory log.
        partitions: repartition to this many partitions (None: Spark's choice).
    """
    if not isinstance(data, Interactions):
        raise TypeError(f"expected Interactions, got {type(data).__name__}")
    frame = pd.DataFrame(
        {
            "user": data.users.astype(np.int64),
            "item": data.items.astype(np.int64),
            "value": data.values.astype(np.float32),
            "timestamp": pd.array(data.timestamps, dtype="Int64")
            if data.timestamps is not None
            else pd.array([None] * data.nnz, dtype="Int64"),
            "session": pd.array(data.sessions, dtype="Int64")
            if data.sessions is not None
            else pd.array([None] * data.nnz, dtype="Int64"),
            "row": np.arange(data.nnz, dtype=np.int64),
        }
    )
    df = spark.createDataFrame(frame, schema=LOG_SCHEMA)
    if partitions is not None:
        df = df.repartition(int(partitions))
    return SparkLog(
        df=df,
        user_map=IdMap.from_array(spark, np.asarray(data.user_ids)),
        item_map=IdMap.from_array(spark, np.asarray(data.item_ids)),
        name=data.name,
        has_timestamps=data.timestamps is not None,
        has_sessions=data.sessions is not None,
    )


def to_interactions(log: SparkLog) -> Interactions:
    """Collects a `SparkLog` to the driver as `Interactions` (rows in `row` order).

    The whole log and both id maps reach the driver: for tests and small data only (no
    part of the Spark path calls it).
    """
    frame = log.df.orderBy("row").toPandas()
    return Interactions(
        users=frame["user"].to_numpy(np.int64),
        items=frame["item"].to_numpy(np.int64),
        values=frame["value"].to_numpy(np.float32),
        user_ids=log.user_ids,
        item_ids=log.item_ids,
        timestamps=frame["timestamp"].to_numpy(np.int64) if log.has_timestamps else None,
        sessions=frame["session"].to_numpy(np.int64) if log.has_sessions else None,
        name=log.name,
    )


# ---------------------------------------------------------------------- reading
def read_table(
    spark: SparkSession,
    path: str | Path,
    columns: ColumnMap = ColumnMap(),  # noqa: B008 - frozen dataclass, immutable default
    *,
    sep: str | None = None,
    name: str | None = None,
    min_rating: float | None = None,
    dedupe: str | None = "last",
) -> SparkLog:
    """Reads a Parquet / CSV / TSV interaction table with Spark (`load_table`'s semantics).

    The column mapping, `min_rating` filter (applied before the universe is built) and
    `dedupe` rule ("last": keep the latest (timestamp, row) of a repeated (user, item);
    "sum": add the values and keep the latest row; None: keep all rows) are those of
    `divrec.data.tabular.load_table`. Internal indices follow the sorted external ids; id
    columns keep their Spark type (text files are read with every column as a string and
    an id column becomes a long when all its ids are canonical integers, as in
    `load_table`). The id maps stay distributed (`IdMap.of_column`); values are parsed with
    `try_cast` (Spark 4's ANSI `cast` would fail deep inside a job).

    Args:
        spark: the session.
        path: a `.parquet` file or directory, or a delimited text file (`.csv`, `.tsv`,
            `.gz` variants; `sep` overrides the separator); local or a Hadoop URL
            (`hdfs://`, `s3a://`, ...).
        columns: which columns hold user, item, rating, timestamp and session.
        sep: field separator of text files.
        name: dataset name (default: the file name without extensions).
        min_rating: keep rows with rating >= min_rating.
        dedupe: "last", "sum" or None.

    Raises:
        DataError: missing file, missing column, no rows, non-numeric values.
        ValueError: `min_rating` without a rating column, or an unknown `dedupe`.
    """
    location = str(path)
    remote = "://" in location  # s3a://, hdfs://, gs://: Spark reads it, no local check
    path = Path(location)
    if min_rating is not None and columns.rating is None:
        raise ValueError("min_rating needs a rating column (ColumnMap.rating is None)")
    if dedupe not in ("last", "sum", None):
        raise ValueError(f"dedupe must be 'last', 'sum' or None, got {dedupe!r}")
    if not remote and not path.exists():
        raise DataError(f"{path}: no such file")
    suffixes = [x.lower() for x in path.suffixes]
    if ".parquet" in suffixes or (not remote and path.is_dir()):
        raw = spark.read.parquet(location)
        text = False
    else:
        if sep is None:
            sep = "\t" if ".tsv" in suffixes else ","
        raw = spark.read.option("header", "true").option("sep", sep).csv(location)
        text = True
    roles = {
        "user": columns.user,
        "item": columns.item,
        "rating": columns.rating,
        "timestamp": columns.timestamp,
        "session": columns.session,
    }
    roles = {role: col for role, col in roles.items() if col is not None}
    missing = [col for col in roles.values() if col not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {raw.columns}")
    df = raw.select(*[F.col(f"`{col}`").alias(role) for role, col in roles.items()]).withColumn(
        "row", F.monotonically_increasing_id()
    )
    for role in ("user", "item"):
        n_null = df.filter(F.col(role).isNull() | (F.col(role).cast("string") == "")).count()
        if n_null:
            raise DataError(f"{path}: {n_null} empty {role} id(s) in column {roles[role]!r}")
        if text:
            df = _canonical_ints(df, role)
    for role in ("rating", "timestamp"):
        if role in roles:
            num = F.col(role).try_cast("double")
            bad = df.filter(num.isNull() & F.col(role).isNotNull()).limit(1).collect()
            if bad:
                raise DataError(
                    f"{path}: non-numeric {role} {bad[0][role]!r} in column {roles[role]!r} "
                    f"(the row of user {bad[0]['user']!r}, item {bad[0]['item']!r})"
                )
            df = df.withColumn(role, num)
    if "session" in roles:
        if text:
            df = _canonical_ints(df, "session")
        if dict(df.dtypes)["session"] not in ("bigint", "int", "smallint", "tinyint"):
            df = IdMap.of_column(df, "session").index(df, "session")  # codes in sorted order
    value = F.col("rating").try_cast("float") if "rating" in roles else F.lit(1.0).cast("float")
    df = df.withColumn("value", value)
    if min_rating is not None:
        df = df.filter(F.col("value") >= F.lit(float(min_rating)))
    ts = F.floor(F.col("timestamp")).cast("long") if "timestamp" in roles else F.lit(None)
    df = df.withColumn("timestamp", ts.cast("long"))
    if "session" not in roles:
        df = df.withColumn("session", F.lit(None).cast("long"))
    df = df.withColumn("session", F.col("session").cast("long")).cache()
    if df.limit(1).count() == 0:
        raise DataError(f"{path}: no interaction rows")
    user_map = IdMap.of_column(df, "user")
    item_map = IdMap.of_column(df, "item")
    df = user_map.index(df, "user")
    df = item_map.index(df, "item")
    if dedupe is not None:
        order = [F.col("timestamp").desc_nulls_last(), F.col("row").desc()]
        win = Window.partitionBy("user", "item").orderBy(*order)
        df = df.withColumn("_rank", F.row_number().over(win))
        if dedupe == "sum":
            total = F.sum("value").over(Window.partitionBy("user", "item")).cast("float")
            df = df.withColumn("value", total)
        df = df.filter(F.col("_rank") == 1).drop("_rank")
    df = df.select(*LOG_SCHEMA.fieldNames())
    return SparkLog(
        df=df,
        user_map=user_map,
        item_map=item_map,
        name=name or path.name.split(".")[0],
        has_timestamps="timestamp" in roles,
        has_sessions="session" in roles,
    )


def _canonical_ints(df: DataFrame, col: str) -> DataFrame:
    """Casts a string id column to long when every id is a canonical integer."""
    text = F.col(col).cast("string")
    non_canonical = df.filter(~text.rlike(r"^-?(0|[1-9][0-9]*)$")).limit(1).count()
    if non_canonical:
        return df.withColumn(col, text)
    return df.withColumn(col, text.cast("long"))


# ---------------------------------------------------------------------- splits
def _check_log(log: object, func: str) -> SparkLog:
    if not isinstance(log, SparkLog):
        raise TypeError(f"{func}: expected a SparkLog, got {type(log).__name__}")
    return log


#: the most (value, count) rows the temporal split's cut search brings to the driver
#: (16 bytes each: ≤ 0.8 MB, under the 1 MB `spark.driver.maxResultSize` of the scale test)
CUT_COLLECT_LIMIT = 50_000


def _kth_smallest(df: DataFrame, col: str, k: int, n: int):
    """`(v, before)`: the k-th smallest value of `col` among the `n` rows of `df` (1-based,
    repeats counted) and the number of rows below `v`.

    A bracket around it is narrowed with quantile sketches (`approxQuantile`, rank error
    0.1 %: the values lo, hi at ranks k/n ∓ 1 % hold the k-th) and one scan of four scalar
    counts per step: the k-th is lo, or hi, or lies strictly between them, and the open
    bracket keeps at most ≈ 2.2 % of the rows, tied values at its ends included (a miss of
    the sketch widens the ranks). Once it holds at most `CUT_COLLECT_LIMIT` rows its
    (value, count) pairs are collected: only scalars and at most `CUT_COLLECT_LIMIT` rows
    reach the driver, whatever the size of the log.
    """
    below, sub, size, width = 0, df, n, 0.01
    c = F.col(col)
    while size > CUT_COLLECT_LIMIT:
        r = k - below  # the rank sought within `sub`
        q = r / size
        lo, hi = sub.approxQuantile(col, [max(0.0, q - width), min(1.0, q + width)], 0.001)
        row = sub.agg(*(F.sum(cond.cast("long")).alias(name) for name, cond in (
            ("lt_lo", c < lo), ("le_lo", c <= lo), ("lt_hi", c < hi), ("le_hi", c <= hi),
        ))).first()  # fmt: skip
        lt_lo, le_lo, lt_hi, le_hi = (int(row[i] or 0) for i in range(4))
        if lt_lo < r <= le_lo:
            return _same_type(sub, col, lo), below + lt_lo
        if lt_hi < r <= le_hi:
            return _same_type(sub, col, hi), below + lt_hi
        if not le_lo < r <= lt_hi:  # the sketch missed: wider ranks (at 1: min and max)
            width = min(1.0, 2 * width)
            continue
        below += le_lo
        sub = sub.filter((c > lo) & (c < hi))
        size, width = lt_hi - le_lo, 0.01
    frame = sub.groupBy(col).count().orderBy(col).toPandas()
    cum = below + np.cumsum(frame["count"].to_numpy(np.int64))
    pos = int(np.searchsorted(cum, k))  # first value with cumulative count >= k
    return frame[col].iloc[pos], int(cum[pos - 1]) if pos else below


def _same_type(df: DataFrame, col: str, value):
    """`approxQuantile` answers floats: an integral column's value as an int."""
    kind = dict(df.dtypes)[col]
    return int(value) if kind in ("bigint", "int", "smallint", "tinyint") else value


def _first_rows_cut(df: DataFrame, key: str, n_first: int, n: int):
    """The cut `(T, row_cut)` such that exactly the `n_first` first rows in (key, row)
    order satisfy `key < T or (key == T and row <= row_cut)`; None when `n_first == 0`.

    Both parts by `_kth_smallest` (no collect that grows with the log): T is the
    `n_first`-th key, `row_cut` the `need`-th row among the rows of key T (rows are unique).
    """
    if n_first <= 0:
        return None
    cut, before = _kth_smallest(df, key, n_first, n)
    ties = df.filter(F.col(key) == cut)
    row_cut, _ = _kth_smallest(ties, "row", n_first - before, ties.count())
    return cut, int(row_cut)


def temporal_split(log: SparkLog, test_fraction: float = 0.2) -> SparkSplit:
    """Global temporal split, identical to `divrec.splitting.temporal_split`.

    Rows are ordered by timestamp, ties by row position; the last
    `n_test = ⌊test_fraction · n + ½⌋` rows are the test set.

    Raises:
        DataError: the log has no timestamps.
    """
    log = _check_log(log, "temporal_split")
    frac = check_fraction(test_fraction, "test_fraction", "temporal_split")
    if not log.has_timestamps:
        raise DataError(f"{log.name}: temporal_split needs timestamps, and the log has none")
    df = log.df.cache()
    n = df.count()
    n_test = int(round_half_up(frac * n))
    is_test = _after_cut(df, "timestamp", n - n_test, n)
    return SparkSplit(
        train=log.with_df(df.filter(~is_test)),
        test=log.with_df(df.filter(is_test)),
        protocol=f"temporal {percent_label(frac)}",
    )


def _after_cut(df: DataFrame, key: str, n_first: int, n: int):
    cut = _first_rows_cut(df, key, n_first, n)
    if cut is None:
        return F.lit(True)
    t, row_cut = cut
    return (F.col(key) > F.lit(t)) | ((F.col(key) == F.lit(t)) & (F.col("row") > row_cut))


def leave_last_one(log: SparkLog, validation: bool = True, min_interactions: int = 3) -> SparkSplit:
    """Per-user leave-last-one, identical to `divrec.splitting.leave_last_one`.

    Each user's rows are ordered by (timestamp, row) (by row without timestamps); a user
    with at least `min_interactions` rows has the latest in test and, with `validation`,
    the one before in valid.
    """
    log = _check_log(log, "leave_last_one")
    min_rows = check_int(min_interactions, "min_interactions", "leave_last_one", 1)
    order = ["timestamp", "row"] if log.has_timestamps else ["row"]
    win = Window.partitionBy("user").orderBy(*order)
    df = (
        log.df.withColumn("_rank", F.row_number().over(win) - 1)
        .withColumn("_count", F.count("*").over(Window.partitionBy("user")))
        .cache()
    )
    eligible = F.col("_count") >= min_rows
    test = eligible & (F.col("_rank") == F.col("_count") - 1)
    valid = eligible & (F.col("_rank") == F.col("_count") - 2) & F.lit(bool(validation))
    cols = LOG_SCHEMA.fieldNames()
    label = "leave-last-one" + (" + valid" if validation else "")
    return SparkSplit(
        train=log.with_df(df.filter(~test & ~valid).select(*cols)),
        test=log.with_df(df.filter(test).select(*cols)),
        valid=log.with_df(df.filter(valid).select(*cols)) if validation else None,
        protocol=f"{label} (min {min_rows})",
    )


def random_holdout(
    log: SparkLog, test_fraction: float = 0.2, seed: int = 0, per_user: bool = False
) -> SparkSplit:
    """Random hold-out with the sizes of `divrec.splitting.random_holdout`.

    Globally the first `⌊f·n + ½⌋` rows by the key `xxhash64(seed, row)` (ties by row) are
    test; per user, the first `min(⌊f·c + ½⌋, c − 1)` of each user's rows by that key. The
    rows differ from the in-memory split's (numpy's permutation is not reproducible on
    Spark); the split is deterministic given `seed`, whatever the partitioning.
    """
    log = _check_log(log, "random_holdout")
    frac = check_fraction(test_fraction, "test_fraction", "random_holdout")
    seed = check_int(seed, "seed", "random_holdout", 0)
    df = log.df.withColumn("_key", F.xxhash64(F.lit(seed).cast("long"), F.col("row"))).cache()
    if per_user:
        win = Window.partitionBy("user").orderBy("_key", "row")
        ranked = df.withColumn("_rank", F.row_number().over(win) - 1).withColumn(
            "_count", F.count("*").over(Window.partitionBy("user"))
        )
        quota = F.least(F.floor(F.col("_count") * frac + 0.5), F.col("_count") - 1)
        ranked = ranked.withColumn("_test", F.col("_rank") < quota)
    else:
        n = df.count()
        n_test = int(round_half_up(frac * n))
        ranked = df.withColumn("_test", ~_after_cut(df, "_key", n_test, n))
    cols = LOG_SCHEMA.fieldNames()
    label = "random per-user" if per_user else "random"
    return SparkSplit(
        train=log.with_df(ranked.filter(~F.col("_test")).select(*cols)),
        test=log.with_df(ranked.filter(F.col("_test")).select(*cols)),
        protocol=f"{label} {percent_label(frac)}",
    )
