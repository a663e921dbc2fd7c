"""The temporal split's cut search brings at most `CUT_COLLECT_LIMIT` rows to the driver and
still gives the in-memory split row for row (the limit lowered so that every path runs)."""

from __future__ import annotations

import numpy as np
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
    quantile sketches and `zipWithIndex` numberings."""
    from pyspark import RDD

    seen = {"collect": [], "quantile": 0, "zip": 0}
    cls = type(spark.range(1))  # pyspark 4: the classic DataFrame subclass implements them
    to_pandas, quantile, zip_index = cls.toPandas, cls.approxQuantile, RDD.zipWithIndex

    def recording_collect(self, *args, **kwargs):
        frame = to_pandas(self, *args, **kwargs)
        seen["collect"].append(len(frame))
        return frame

    def recording_quantile(self, *args, **kwargs):
        seen["quantile"] += 1
        return quantile(self, *args, **kwargs)

    def recording_zip(self):
        seen["zip"] += 1
        return zip_index(self)

    monkeypatch.setattr(sd, "CUT_COLLECT_LIMIT", 5)
    monkeypatch.setattr(cls, "toPandas", recording_collect)
    monkeypatch.setattr(cls, "approxQuantile", recording_quantile)
    monkeypatch.setattr(RDD, "zipWithIndex", recording_zip)
    return seen


@pytest.mark.parametrize("case", ["distinct", "ties", "heavy-ends"])
def test_temporal_cut_bounded_collect_equals_in_memory(spark, calls, case):
    rng = np.random.default_rng(1)
    if case == "distinct":  # 400 distinct timestamps: the bracket narrows to <= 5 rows
        ts, frac = rng.permutation(400) * 3, 0.3
    elif case == "ties":  # 12 timestamps: the key bracket stops on one value, rows narrow
        ts, frac = rng.integers(0, 12, 400), 0.45
    else:  # 198 rows at 0, 198 at 1000, 4 between, the cut among them: the ±1 % ranks are
        # 0 and 1000, no bracket is smaller, and its 6 values > 5: numbered on the executors
        ts = np.concatenate([np.zeros(198), np.full(198, 1000), np.arange(1, 5) * 100])
        ts, frac = rng.permutation(ts).astype(np.int64), 0.5
    data = _log(ts)
    log = sd.from_interactions(spark, data, partitions=3)
    calls.update(collect=[], quantile=0, zip=0)
    split = sd.temporal_split(log, frac)
    assert split.train.count() + split.test.count() == data.nnz
    assert calls["collect"] and max(calls["collect"]) <= 5, calls
    assert calls["quantile"] >= 1 and calls["zip"] == (case == "heavy-ends"), calls
    got = np.sort(split.test.df.select("row").toPandas()["row"].to_numpy())
    np.testing.assert_array_equal(got, _test_rows(data, frac))
