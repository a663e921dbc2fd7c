"""Apache Spark path: the same data, models, re-rankers and metrics on a Spark cluster.

Needs the optional extra `pip install "divrec[spark]"` (pyspark) and a Java 17+ runtime.
Importing `divrec.spark` does not import pyspark; the submodules do:

- `divrec.spark.session`: `spark_session(master, ...)`, a configured `SparkSession`.
- `divrec.spark.data`: `Interactions` ↔ DataFrame, Parquet/CSV reading with a `ColumnMap`,
  temporal / leave-last-one / random splits as DataFrame operations.
- `divrec.spark.train`: implicit ALS via `pyspark.ml.recommendation.ALS`, the HI
  factorizations (explicit ALS on the non-zeros of XᵀX and H = [XᵀX; YᵀX]).
- `divrec.spark.candidates`: batch u2i top-k + any divrec re-ranker per partition
  (`mapInPandas`), i2u top-M users per item and potential users of item groups.
- `divrec.spark.metrics`: accuracy and decomposable beyond-accuracy metrics as aggregations.
"""
