"""Spark data layer: conversion round trip, table reading and splits vs the in-memory ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.interactions import DataError, Interactions
from divrec.data.tabular import ColumnMap, load_table
from divrec.spark import data as sd
from divrec.splitting import leave_last_one, random_holdout, temporal_split


def _log(n_users=40, n_items=30, nnz=600, seed=0, ties=True) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz)
    items = rng.integers(0, n_items, nnz)
    # few distinct timestamps: many ties, so the row tie-break matters
    ts = rng.integers(0, 25 if ties else 10**9, nnz)
    vals = rng.integers(1, 6, nnz).astype(np.float32)
    return Interactions.from_arrays(
        users * 7 + 3, items * 11, vals, ts, sessions=rng.integers(0, 5, nnz), dedupe=None
    )


def _same(a: Interactions, b: Interactions) -> None:
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)


def _rows(log: sd.SparkLog) -> np.ndarray:
    return np.sort(log.df.select("row").toPandas()["row"].to_numpy())


def _mem_rows(part: Interactions, full: Interactions) -> np.ndarray:
    # rows of `part` as positions in `full`: every part is full.select(mask) in row order
    key = lambda d: list(zip(d.users, d.items, d.timestamps, d.values, strict=True))  # noqa: E731
    pos = {}
    for i, k in enumerate(key(full)):
        pos.setdefault(k, []).append(i)
    return np.sort([pos[k].pop(0) for k in key(part)])


def test_round_trip(spark):
    data = _log()
    log = sd.from_interactions(spark, data, partitions=3)
    assert log.count() == data.nnz
    back = sd.to_interactions(log)
    _same(back, data)
    np.testing.assert_array_equal(back.sessions, data.sessions)


@pytest.mark.parametrize("frac", [0.2])
def test_temporal_split_identical(spark, frac):
    data = _log()
    log = sd.from_interactions(spark, data, partitions=3)
    mem = temporal_split(data, frac)
    sp_split = sd.temporal_split(log, frac)
    np.testing.assert_array_equal(_rows(sp_split.test), _mem_rows(mem.test, data))
    np.testing.assert_array_equal(_rows(sp_split.train), _mem_rows(mem.train, data))


@pytest.mark.parametrize("validation", [True])
def test_leave_last_one_identical(spark, validation):
    data = _log()
    log = sd.from_interactions(spark, data, partitions=3)
    mem = leave_last_one(data, validation=validation, min_interactions=12)
    got = sd.leave_last_one(log, validation=validation, min_interactions=12)
    np.testing.assert_array_equal(_rows(got.test), _mem_rows(mem.test, data))
    np.testing.assert_array_equal(_rows(got.train), _mem_rows(mem.train, data))
    if validation:
        np.testing.assert_array_equal(_rows(got.valid), _mem_rows(mem.valid, data))
    else:
        assert got.valid is None


def test_random_holdout_sizes_and_determinism(spark):
    data = _log()
    log = sd.from_interactions(spark, data, partitions=3)
    mem = random_holdout(data, 0.3, seed=1)
    got = sd.random_holdout(log, 0.3, seed=1)
    assert got.test.count() == mem.test.nnz
    rows = _rows(got.test)
    # same seed, other partitioning: same rows; other seed: other rows
    again = sd.random_holdout(sd.from_interactions(spark, data, partitions=1), 0.3, seed=1)
    np.testing.assert_array_equal(_rows(again.test), rows)
    assert not np.array_equal(_rows(sd.random_holdout(log, 0.3, seed=2).test), rows)
    assert np.intersect1d(rows, _rows(got.train)).size == 0
    assert rows.size + _rows(got.train).size == data.nnz
    # per user: each user's quota as in memory, and everyone keeps a training row
    mem_u = random_holdout(data, 0.3, seed=1, per_user=True)
    got_u = sd.random_holdout(log, 0.3, seed=1, per_user=True)
    counts = got_u.test.df.groupBy("user").count().toPandas().set_index("user")["count"]
    mem_counts = np.bincount(mem_u.test.users, minlength=data.n_users)
    for u in range(data.n_users):
        assert counts.get(u, 0) == mem_counts[u]


def test_read_table_matches_load_table(spark, tmp_path):
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame(
        {
            "uid": rng.choice(["a", "b", "c", "d", "x7"], n),
            "iid": rng.integers(100, 140, n),
            "stars": rng.integers(1, 6, n),
            "ts": rng.integers(0, 50, n),
        }
    )
    cmap = ColumnMap(user="uid", item="iid", rating="stars", timestamp="ts")
    for suffix, dedupe in ((".csv", "last"), (".parquet", "sum")):
        path = tmp_path / f"log{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        mem = load_table(path, cmap, min_rating=2, dedupe=dedupe)
        got = sd.to_interactions(sd.read_table(spark, path, cmap, min_rating=2, dedupe=dedupe))
        _same(got, mem)


def test_read_table_errors(spark, tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"user_id": [1, 2], "item": [3, 4]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column"):
        sd.read_table(spark, path)
    with pytest.raises(DataError, match="no such file"):
        sd.read_table(spark, tmp_path / "nope.csv")
    with pytest.raises(DataError, match="timestamps"):
        sd.temporal_split(sd.read_table(spark, path, ColumnMap(item="item")))


def test_non_numeric_rating_is_one_line_naming_column_and_row(spark, tmp_path):
    """Spark 4's ANSI `cast` failed deep in a job (CAST_INVALID_INPUT); `try_cast` finds the
    bad value and the error names the column, the value and the row's user and item."""
    path = tmp_path / "log.csv"
    pd.DataFrame(
        {"uid": ["a", "b", "c"], "mid": [1, 2, 3], "stars": ["4", "five", "2"], "ts": [1, 2, 3]}
    ).to_csv(path, index=False)
    cmap = ColumnMap(user="uid", item="mid", rating="stars", timestamp="ts")
    with pytest.raises(DataError) as err:
        sd.read_table(spark, path, cmap)
    msg = str(err.value)
    assert "\n" not in msg
    assert "non-numeric rating 'five' in column 'stars'" in msg and "user 'b'" in msg, msg
    # the id maps are DataFrames: sorted ids, indices 0..n-1, no driver array until asked
    log = sd.read_table(spark, path, ColumnMap(user="uid", item="mid", timestamp="ts"))
    assert log.user_map.size == 3 and log.user_map._ids is None
    assert log.user_ids.tolist() == ["a", "b", "c"]
    assert sorted(log.df.toPandas()["user"]) == [0, 1, 2]
