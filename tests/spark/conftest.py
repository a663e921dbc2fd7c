"""A local[2] Spark session shared by the Spark tests (started once, stopped at the end)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark():
    from divrec.spark.session import spark_session

    session = spark_session(
        master="local[2]",
        app_name="divrec-tests",
        shuffle_partitions=4,
        driver_memory="1g",
        ui=False,
        conf={"spark.default.parallelism": "4", "spark.sql.adaptive.enabled": "false"},
    )
    yield session
    session.stop()


def pytest_collection_modifyitems(items):
    # pyspark 4 warns about pandas 3 on every conversion; the conversions used here work
    for item in items:
        if "tests/spark/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore:.*pandas:FutureWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore:The copy keyword"))
