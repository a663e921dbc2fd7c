"""A configured `SparkSession` for divrec (local or cluster)."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

__all__ = ["spark_session"]


def spark_session(
    master: str = "local[*]",
    app_name: str = "divrec",
    shuffle_partitions: int | None = None,
    driver_memory: str | None = None,
    ui: bool = True,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Gets or creates a `SparkSession`.

    The Python workers run the driver's interpreter (`PYSPARK_PYTHON` defaults to
    `sys.executable`, so they see the same numpy / pyarrow / divrec); on a cluster the
    executors need divrec installed in their Python (or shipped with `--py-files`).

    Args:
        master: the Spark master URL (`local[*]`, `local[2]`, `spark://host:7077`, `yarn`).
        app_name: the application name shown in the Spark UI.
        shuffle_partitions: `spark.sql.shuffle.partitions` (None = Spark's default 200).
        driver_memory: `spark.driver.memory`, e.g. "2g" (only effective for a new JVM).
        ui: start the Spark web UI (progress of every stage).
        conf: further Spark settings.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.enabled", "true" if ui else "false")
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(int(shuffle_partitions)))
    if driver_memory is not None:
        builder = builder.config("spark.driver.memory", driver_memory)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
