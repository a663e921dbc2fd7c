"""The temporal split's cut search brings at most `CUT_COLLECT_LIMIT` rows to the driver and
still gives the in-memory split row for row (the limit lowered so that every path runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.interactions import Interactions
from divrec.spark import data as sd
from divrec.splitting import temporal_split


def _log(timestamps: np.ndarray, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    n = timestamps.size
    return Interactions.from_arrays(
        rng.integers(0, 30, n), rng.integers(0, 40, n), np.ones(n, np.float32),
        timestamps, dedupe=None,
    )  # fmt: skip


def _test_rows(data: Interactions, frac: float) -> np.ndarray:
    """Positions of the in-memory split's test rows: the last ⌊frac·n + ½⌋ in (time, row)."""
    n_test = temporal_split(data, frac).test.nnz
    order = np.lexsort((np.arange(data.nnz), data.timestamps))
    return np.sort(order[data.nnz - n_test :])


@pytest.fixture
def calls(spark, monkeypatch):
    """Lowers the limit to 5 rows; records the size of every `toPandas` collect and the
    number of quantile sketches."""
    seen = {"collect": [], "quantile": 0}
    cls = type(spark.range(1))  # pyspark 4: the classic DataFrame subclass implements them
    to_pandas, quantile = cls.toPandas, cls.approxQuantile

    def recording_collect(self, *args, **kwargs):
        frame = to_pandas(self, *args, **kwargs)
        seen["collect"].append(len(frame))
        return frame

    def recording_quantile(self, *args, **kwargs):
        seen["quantile"] += 1
        return quantile(self, *args, **kwargs)

    monkeypatch.setattr(sd, "CUT_COLLECT_LIMIT", 5)
    monkeypatch.setattr(cls, "toPandas", recording_collect)
    monkeypatch.setattr(cls, "approxQuantile", recording_quantile)
    return seen


def test_temporal_cut_bounded_collect_equals_in_memory(spark, calls):
    # 12 timestamps over 400 rows: the key bracket ends on one value, then the rows narrow
    ts, frac = np.random.default_rng(1).integers(0, 12, 400), 0.45
    data = _log(ts)
    log = sd.from_interactions(spark, data, partitions=3)
    calls.update(collect=[], quantile=0)
    split = sd.temporal_split(log, frac)
    assert max(calls["collect"], default=0) <= 5, calls
    assert calls["quantile"] >= 2, calls
    got = np.sort(split.test.df.select("row").toPandas()["row"].to_numpy())
    np.testing.assert_array_equal(got, _test_rows(data, frac))
    assert split.train.count() + got.size == data.nnz


def test_kth_smallest_with_heavy_tied_ends(spark, calls):
    # 198 values 0, 198 values 1000 and 100, 200, 300, 400 between: the ±1 % ranks around
    # the middle are 0 and 1000, so only the open bracket (0, 1000) (4 rows) is collected;
    # a rank within a tied end is answered by the sketch's value and the counts alone
    values = np.concatenate([np.zeros(198), np.full(198, 1000), [100, 200, 300, 400]])
    values = np.random.default_rng(2).permutation(values).astype(np.int64)
    df = spark.createDataFrame(pd.DataFrame({"t": values})).repartition(3).cache()
    assert sd._kth_smallest(df, "t", 201, values.size) == (300, 200)  # 198 + 100, 200 below
    assert calls["collect"] == [4], calls
    assert sd._kth_smallest(df, "t", 150, values.size) == (0, 0)
    assert sd._kth_smallest(df, "t", 390, values.size) == (1000, 202)
    assert calls["collect"] == [4], calls
