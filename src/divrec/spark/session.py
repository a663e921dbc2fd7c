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
    quiet: bool = False,
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
        quiet: a new JVM logs nothing on stderr (no start-up warnings, no "default log4j
            profile" lines, no task-failure traces: errors reach Python as exceptions), unless
            `conf` sets `spark.driver.extraJavaOptions` itself.
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
    if quiet and "spark.driver.extraJavaOptions" not in (conf or {}):
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{_quiet_log4j()}"
        )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


_QUIET_LOG4J = """\
rootLogger.level = off
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = off
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = off
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n
appender.console.layout.alwaysWriteExceptions = false
"""


def _quiet_log4j() -> str:
    """A log4j2 configuration that logs nothing, in the temporary folder; its path."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.gettempdir()) / f"divrec-log4j2-quiet-{os.getuid()}.properties"
    if not path.exists() or path.read_text() != _QUIET_LOG4J:
        from divrec.atomic import write_text

        write_text(path, _QUIET_LOG4J)
    return str(path)
