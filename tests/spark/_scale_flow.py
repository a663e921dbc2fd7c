"""The low-driver-memory flow of `test_spark_scale.py`, run in its own process (own JVM).

One Spark session with `spark.driver.maxResultSize=1m` (Spark's minimum) and a small
driver: a synthetic log whose id map (40,000 random 32-hex-digit user ids) and log
(120,000 rows) are each well over 1 MiB, so any collect of either to the driver, and any
broadcast of a user-size table (broadcasts go through the driver), fails the job. The
positive controls check that it does. Then `divrec spark train → recommend (dpp, pdpp,
ia-mmr, category-cap) → evaluate` run in this session (the CLI's `getOrCreate` returns it)
and a JSON summary is printed on the last line.

Usage: python tests/spark/_scale_flow.py <work folder>
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

N_USERS = 40_000
PER_USER = 3
N_ITEMS = 2_000


def main(work: Path) -> dict:
    from pyspark.sql import functions as F
    from typer.testing import CliRunner

    from divrec.cli.main import app
    from divrec.spark.session import spark_session

    t0 = time.perf_counter()
    spark = spark_session(
        "local[2]", "divrec-scale-test", shuffle_partitions=8, driver_memory="768m", ui=False,
        quiet=True, conf={"spark.driver.maxResultSize": "1m", "spark.default.parallelism": "8"},
    )  # fmt: skip
    n = N_USERS * PER_USER
    uid = F.substring(F.sha2((F.col("id") % N_USERS).cast("string"), 256), 1, 32)
    log = spark.range(0, n, numPartitions=8).select(
        uid.alias("uid"),
        F.floor(F.lit(N_ITEMS) * F.pow(F.rand(3), 2)).cast("long").alias("mid"),
        (F.abs(F.xxhash64("id")) % 5 + 1).cast("int").alias("stars"),
        F.col("id").alias("ts"),
    )
    log.write.parquet(str(work / "log.parquet"))
    items = spark.range(0, N_ITEMS).select(
        F.col("id").alias("mid"),
        F.concat_ws(
            "|",
            F.concat(F.lit("g"), (F.col("id") % 7).cast("string")),
            F.concat(F.lit("g"), (F.col("id") % 5).cast("string")),
        ).alias("genres"),
    )
    items.write.parquet(str(work / "items.parquet"))
    out: dict = {"rows": n, "users": N_USERS}

    def fails(action) -> str | None:
        try:
            action()
        except Exception as err:  # noqa: BLE001 - any failure counts; its text is checked
            text = str(err)
            lines = [ln for ln in text.splitlines() if "maxResultSize" in ln]
            return (lines[0] if lines else text.splitlines()[0] if text else repr(err))[:300]
        return None

    table = spark.read.parquet(str(work / "log.parquet"))
    out["collect_log"] = fails(lambda: table.toPandas())
    out["collect_users"] = fails(lambda: table.select("uid").distinct().collect())
    out["broadcast_users"] = fails(
        lambda: table.join(F.broadcast(table.select("uid").distinct()), "uid").count()
    )
    runner = CliRunner()
    common = ["--master", "local[2]", "--no-ui", "--shuffle-partitions", "8"]
    model, res = work / "model", {}
    res["train"] = runner.invoke(
        app,
        ["spark", "train", "--data", str(work / "log.parquet"), "--columns",
         "user=uid,item=mid,rating=stars,timestamp=ts", "--protocol", "temporal", "--model",
         "ials", "--param", "factors=8", "--param", "iterations=1", "--param", "blocks=4",
         "--out", str(model), *common],
    )  # fmt: skip
    for name in ("dpp", "pdpp", "ia-mmr", "category-cap"):
        res[name] = runner.invoke(
            app,
            ["spark", "recommend", "--model-dir", str(model), "--out", str(work / name),
             "-k", "5", "--n-candidates", "20", "--reranker", name, "--items",
             str(work / "items.parquet"), "--item-columns", "item=mid,categories=genres",
             *common],
        )  # fmt: skip
    res["evaluate"] = runner.invoke(
        app,
        ["spark", "evaluate", "--lists", str(work / "pdpp"), "--model-dir", str(model),
         "-k", "5", "--max-pairs", "2000", "--out", str(work / "metrics.json"), *common],
    )  # fmt: skip
    out["exit"] = {key: r.exit_code for key, r in res.items()}
    out["output"] = {key: r.output[-600:] for key, r in res.items() if r.exit_code}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    spark.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
