"""Training on Spark: implicit ALS (`pyspark.ml.recommendation.ALS`) and the HI factorizations.

- `SparkALS`: iALS (Hu, Koren & Volinsky 2008) by Spark's ALS with `implicitPrefs=True`,
  confidence `1 + alpha · r`. `regParam` is always set explicitly (its default differs
  between the docs and the code). Spark scales λ by the user's (item's) number of ratings
  (ALS-WR, "weighted-λ"), while `implicit` uses a plain λ, so the same number is not the
  same regularization.
- `SparkHI`: the HI paper's factorizations as it ran them (Apache Spark ALS, rank 10):
  explicit ALS on the non-zero entries of the co-occurrence matrices, p2p on XᵀX (Eq. 3),
  n2p on YᵀX (Eq. 7) and HI-RT on H = [XᵀX; YᵀX] (Eq. 14–15). The co-occurrence products
  are distributed sparse products: a self-join of the positive log on the user
  (`(i, j) ↦ Σ_u X_ui X_uj`), and the negative log joined with the positive one for YᵀX.
  The row factors of item i of H are the "row" side, the columns the "col" side, so the
  model is A (2n × k) and B (k × n) as in `divrec.retrieval.hi.HIRealtime`, and the batch
  user vectors are `X A₁ + β Y A₂` (another distributed sparse product).

Both declare their hyperparameters once, as typed frozen configs (`SparkALSConfig`,
`SparkHIConfig`, `divrec.stage`), validated on construction; `divrec.spark.models` names them
for `divrec spark train --model NAME --param k=v`.

Both expose `user_vectors()` (a `(user, vector)` DataFrame) and `factor_view()`, the item
side for `divrec.spark.candidates.u2i`, and `to_recommender(train)`, the collected factors as
a fitted in-memory divrec model (evaluation harness, re-rankers, persistence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from divrec.evaluation.batch import FactorView
from divrec.retrieval.baselines import FactorRecommender
from divrec.spark.config import SparkALSConfig, SparkHIConfig
from divrec.stage import Configured, NotFittedError

__all__ = [
    "SparkALS",
    "SparkALSConfig",
    "SparkFactors",
    "SparkHI",
    "SparkHIConfig",
    "cap_per_user",
    "cooccurrence",
]


def _log_df(log) -> DataFrame:
    return getattr(log, "df", log)


def _factors(frame: DataFrame, n: int, rank: int) -> np.ndarray:
    """`(n, rank)` float32 array from an ALS `(id, features)` factor DataFrame (0 rows absent)."""
    pdf = frame.toPandas()
    out = np.zeros((n, rank), dtype=np.float32)
    if len(pdf):
        out[pdf["id"].to_numpy(np.int64)] = np.stack(pdf["features"].to_numpy())
    return out


class SparkALS(Configured):
    """Implicit ALS on Spark (`pyspark.ml.recommendation.ALS`, `implicitPrefs=True`).

    Args:
        config: a `SparkALSConfig`, or its fields as keywords (`SparkALS(factors=32)`).

    Attributes:
        model_: the fitted `ALSModel`.
        n_users_, n_items_: universe size (from the `SparkLog` id maps, else max index + 1).
    """

    Config = SparkALSConfig

    def fit(self, log) -> SparkALS:
        """Fits on a `SparkLog` (or a `(user, item, value)` DataFrame); returns self."""
        df = _log_df(log).select("user", "item", "value")
        if self.binary:
            df = df.withColumn("value", F.lit(1.0).cast("float"))
        kw = {}
        if self.blocks is not None:
            kw = {"numUserBlocks": int(self.blocks), "numItemBlocks": int(self.blocks)}
        als = ALS(
            rank=int(self.factors),
            maxIter=int(self.iterations),
            regParam=float(self.regularization),
            alpha=float(self.alpha),
            implicitPrefs=True,
            userCol="user",
            itemCol="item",
            ratingCol="value",
            seed=int(self.seed),
            coldStartStrategy="nan",
            **kw,
        )
        self.model_ = als.fit(df)
        if hasattr(log, "n_users"):
            self.n_users_, self.n_items_ = log.n_users, log.n_items
        else:
            mx = df.agg(F.max("user"), F.max("item")).collect()[0]
            self.n_users_, self.n_items_ = int(mx[0]) + 1, int(mx[1]) + 1
        return self

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("SparkALS is not fitted; call fit first")

    def user_vectors(self) -> DataFrame:
        """`(user long, vector array<float>)` of the fitted users."""
        self._check()
        return self.model_.userFactors.select(
            F.col("id").cast("long").alias("user"), F.col("features").alias("vector")
        )

    def item_factors(self) -> np.ndarray:
        """`(n_items, k)` float32 item factors (zeros for items without training rows)."""
        self._check()
        return _factors(self.model_.itemFactors, self.n_items_, self.factors)

    def user_factors(self) -> np.ndarray:
        """`(n_users, k)` float32 user factors collected to the driver."""
        self._check()
        return _factors(self.model_.userFactors, self.n_users_, self.factors)

    def factor_view(self) -> FactorView:
        """The item side for `divrec.spark.candidates.u2i` (scores = u · q)."""
        return FactorView(None, self.item_factors())

    def to_recommender(self, train) -> SparkFactors:
        """The collected factors as a fitted in-memory `FactorRecommender` on `train`."""
        return SparkFactors(self.user_factors(), self.item_factors()).fit(train)


class SparkFactors(FactorRecommender):
    """Factors learned on Spark, collected to the driver (`SparkALS.to_recommender`).

    `fit(train)` only records the training matrix (seen items) and checks the shapes.

    Args:
        user_factors: `(n_users, k)` user factors.
        item_factors: `(n_items, k)` item factors.
    """

    def __init__(
        self, user_factors: np.ndarray | None = None, item_factors: np.ndarray | None = None
    ):
        self.user_factors = user_factors
        self.item_factors = item_factors

    def _fit(self, matrix, data) -> None:
        users = np.asarray(self.user_factors, dtype=np.float32)
        items = np.asarray(self.item_factors, dtype=np.float32)
        if users.shape[0] != matrix.shape[0] or items.shape[0] != matrix.shape[1]:
            raise ValueError(
                f"factors {users.shape} / {items.shape} do not match the matrix {matrix.shape}"
            )
        self.user_factors_ = np.ascontiguousarray(users)
        self.item_factors_ = np.ascontiguousarray(items)


# ---------------------------------------------------------------------- HI
def cap_per_user(log: DataFrame, max_items: int | None, seed: int = 0) -> DataFrame:
    """At most `max_items` rows per user: a heavy user keeps a uniform sample of its rows.

    The sample is the user's `max_items` rows of smallest `xxhash64(seed, user, item)`
    (deterministic, independent of the partitioning); users within the cap keep every row.
    """
    if max_items is None:
        return log
    key = F.xxhash64(F.lit(int(seed)).cast("long"), F.col("user"), F.col("item"))
    win = Window.partitionBy("user").orderBy(key, F.col("item"))
    ranked = log.withColumn("_r", F.row_number().over(win))
    return ranked.filter(F.col("_r") <= int(max_items)).drop("_r")


def cooccurrence(
    left: DataFrame, right: DataFrame, max_items_per_user: int | None = None, seed: int = 0
) -> DataFrame:
    """The distributed sparse product `Lᵀ R` of two user×item logs.

    The self-join on the user makes `Σ_u n_u(L) · n_u(R)` rows: one user with 10⁵ items
    alone makes 10¹⁰. With `max_items_per_user`, each user enters with at most that many
    rows of L and of R (`cap_per_user`: a uniform sample of a heavy user's items, as
    industrial co-occurrence jobs cap heavy users), so the join has at most
    `n_users · cap²` rows and the product is that of the sampled log (users within the cap
    count exactly).

    Args:
        left: `(user, item, value)` rows of L.
        right: `(user, item, value)` rows of R.
        max_items_per_user: the per-user cap, or None (exact product).
        seed: the sampling seed.

    Returns:
        `(row long, col long, value double)`: the non-zero entries
        `(i, j) ↦ Σ_u L_ui R_uj` (row = L's item, col = R's item).
    """
    left = cap_per_user(left, max_items_per_user, seed)
    right = cap_per_user(right, max_items_per_user, seed)
    a = left.select("user", F.col("item").alias("row"), F.col("value").alias("a"))
    b = right.select("user", F.col("item").alias("col"), F.col("value").alias("b"))
    prod = (
        a.join(b, "user").groupBy("row", "col").agg(F.sum(F.col("a") * F.col("b")).alias("value"))
    )
    return prod.filter(F.col("value") != 0).select(
        F.col("row").cast("long"), F.col("col").cast("long"), F.col("value").cast("double")
    )


class SparkHI(Configured):
    """The HI factorizations on Spark: explicit ALS on the non-zeros of XᵀX, YᵀX or H.

    FEEDE encoding (`divrec.data.feedback`, mode "threshold"): X = 1 where the rating is
    ≥ `threshold`, Y = 1 on the other rated cells.

    Args:
        config: a `SparkHIConfig`, or its fields as keywords (`SparkHI(kind="hi-rt")`).

    Attributes:
        left_: `(rows, k)` float64 row factors (P, R or A).
        right_: `(k, n_items)` float64 column factors (Q, S or B).
    """

    Config = SparkHIConfig

    def _xy(self, log) -> tuple[DataFrame, DataFrame]:
        df = _log_df(log).select("user", "item", "value")
        pos = df.filter(F.col("value") >= self.threshold).withColumn("value", F.lit(1.0))
        neg = df.filter(F.col("value") < self.threshold).withColumn("value", F.lit(1.0))
        return pos.select("user", "item", "value"), neg.select("user", "item", "value")

    def target(self, log) -> DataFrame:
        """The `(row, col, value)` non-zeros of the matrix this model factorizes."""
        if self.kind not in ("p2p", "n2p", "hi-rt"):
            raise ValueError(f"kind must be 'p2p', 'n2p' or 'hi-rt', got {self.kind!r}")
        x, y = self._xy(log)
        cap, seed = self.max_items_per_user, self.seed
        if self.kind == "p2p":
            return cooccurrence(x, x, cap, seed)
        if self.kind == "n2p":
            return cooccurrence(y, x, cap, seed)
        n = self._n_items(log)
        ytx = cooccurrence(y, x, cap, seed).withColumn("row", F.col("row") + F.lit(n))
        return cooccurrence(x, x, cap, seed).unionByName(ytx)

    @staticmethod
    def _n_items(log) -> int:
        if hasattr(log, "n_items"):
            return int(log.n_items)
        return int(_log_df(log).agg(F.max("item")).collect()[0][0]) + 1

    def fit(self, log) -> SparkHI:
        """Builds the co-occurrence target on Spark and factorizes its non-zeros; returns self."""
        target = self.target(log).cache()
        kw = {}
        if self.blocks is not None:
            kw = {"numUserBlocks": int(self.blocks), "numItemBlocks": int(self.blocks)}
        als = ALS(
            rank=int(self.factors),
            maxIter=int(self.iterations),
            regParam=float(self.regularization),
            implicitPrefs=False,
            userCol="row",
            itemCol="col",
            ratingCol="value",
            seed=int(self.seed),
            coldStartStrategy="nan",
            **kw,
        )
        model = als.fit(target)
        self.n_items_ = self._n_items(log)
        rows = 2 * self.n_items_ if self.kind == "hi-rt" else self.n_items_
        self.left_ = _factors(model.userFactors, rows, self.factors).astype(np.float64)
        self.right_ = _factors(model.itemFactors, self.n_items_, self.factors).T.astype(np.float64)
        self._log = log
        target.unpersist()
        return self

    def user_vectors(self, log=None) -> DataFrame:
        """`(user, vector array<double>)` batch user vectors by a distributed sparse product.

        p2p: x P (Eq. 5); n2p: y R (Eq. 9); HI-RT: x A₁ + β y A₂ (Eq. 17), with x, y the
        user's FEEDE rows in `log` (default: the training log).
        """
        if not hasattr(self, "left_"):
            raise NotFittedError("SparkHI is not fitted; call fit first")
        log = self._log if log is None else log
        spark = _log_df(log).sparkSession
        x, y = self._xy(log)
        n = self.n_items_
        if self.kind == "p2p":
            parts = [(x, self.left_[:n], 1.0)]
        elif self.kind == "n2p":
            parts = [(y, self.left_[:n], 1.0)]
        else:
            parts = [(x, self.left_[:n], 1.0), (y, self.left_[n:], float(self.beta))]
        terms = []
        for rows, table, weight in parts:
            frame = pd.DataFrame({"item": np.arange(n, dtype=np.int64), "f": list(table * weight)})
            fac = spark.createDataFrame(frame, "item long, f array<double>")
            terms.append(rows.join(F.broadcast(fac), "item").select("user", "f"))
        joined = terms[0] if len(terms) == 1 else terms[0].unionByName(terms[1])
        exploded = joined.select("user", F.posexplode("f").alias("d", "v"))
        summed = exploded.groupBy("user", "d").agg(F.sum("v").alias("v"))
        vec = summed.groupBy("user").agg(
            F.transform(F.array_sort(F.collect_list(F.struct("d", "v"))), lambda s: s["v"]).alias(
                "vector"
            )
        )
        return vec

    def factor_view(self) -> FactorView:
        """The item side (`right_ᵀ`) for `divrec.spark.candidates.u2i`."""
        return FactorView(None, np.ascontiguousarray(self.right_.T))

    def to_recommender(self, train):
        """The factors as a fitted in-memory HI model (`P2PRecommender`, `N2PRecommender` or
        `HIRealtime`) on `train` (its X_, Y_ from the in-memory FEEDE encoding)."""
        from divrec.retrieval import hi

        cls = {"p2p": hi.P2PRecommender, "n2p": hi.N2PRecommender, "hi-rt": hi.HIRealtime}
        kw = {"beta": self.beta} if self.kind == "hi-rt" else {}
        model = cls[self.kind](factors=self.factors, threshold=self.threshold, **kw)
        names = model._factor_names
        left, right = self.left_, self.right_
        model._fit_factors = lambda x, y: None  # the factors come from Spark
        model.fit(train)
        del model._fit_factors
        setattr(model, names[0], left)
        setattr(model, names[1], right)
        return model
