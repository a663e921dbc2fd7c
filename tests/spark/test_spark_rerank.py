"""Re-rankers fitted on Spark (`divrec.spark.rerank`) give the in-memory `Pipeline`'s lists.

Every registered re-ranker that runs on Spark is fitted from the training DataFrame, the
model's item vectors and the item categories (per-user state joined to the users, never
collected), then applied by `u2i`; the lists must equal `Pipeline(ALS, re-ranker, 100)`
fitted in memory on the same ML-100K split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from divrec.data.movielens import load_movielens_100k
from divrec.data.tabular import load_item_categories
from divrec.evaluation.batch import factor_view
from divrec.pipeline import Pipeline
from divrec.pipeline.spec import StageSpec
from divrec.registry import RERANKERS
from divrec.retrieval.baselines import ALSRecommender
from divrec.spark import candidates as sc
from divrec.spark import rerank as srr
from divrec.spark.data import IdMap, from_interactions
from divrec.splitting import leave_last_one

#: registered re-rankers and the parameters they are tested with
ON_SPARK = {
    "dpp": {},
    "pdpp": {},
    "ia-mmr": {"lambda_": 0.2},
    "category-cap": {"max_per_category": 2},
    "mmr": {},
    "ssd": {},
    "cf-da": {},
    "cf-dm": {},
    "hybrid": {},
    "calibrated": {},
    "fair": {},
    "random-k": {"seed": 3},
    "popular-k": {},
}


@pytest.fixture(scope="module")
def ml100k(data_home):
    data = load_movielens_100k(data_home)
    split = leave_last_one(data, validation=False)
    model = ALSRecommender(factors=24, iterations=4, seed=0, threads=1).fit(split.train)
    return split, model


def _collect(df, n_users):
    frame = df.toPandas().sort_values("user")
    assert frame["user"].tolist() == list(range(n_users))
    return np.stack(frame["items"].to_numpy())


def _spark_lists(spark, split, model, name, params, categories, block=97):
    view = factor_view(model)
    train = from_interactions(spark, split.train, partitions=3).df
    fitted = srr.fit_reranker(
        StageSpec(name, params).build("reranker"),
        train,
        model.n_items_,
        view.item_vectors,
        categories=categories,
    )
    uv = sc.user_vector_frame(spark, view.user_vectors, partitions=3)
    out = sc.u2i(spark, uv, view, 100, k=10, seen=train, reranker=fitted, block=block)
    return _collect(out, model.n_users_), fitted


def test_every_registered_reranker_is_covered():
    assert set(ON_SPARK) | {"rt-dpp"} >= set(RERANKERS)


@pytest.mark.parametrize("name", sorted(ON_SPARK))
def test_spark_reranker_equals_pipeline(spark, ml100k, name):
    split, model = ml100k
    if name not in RERANKERS:
        pytest.fail(f"{name} is no longer registered")
    params = ON_SPARK[name]
    pipe = Pipeline(model, StageSpec(name, params).build("reranker"), n_candidates=100)
    pipe = pipe.use_fitted(split.train)
    want, _ = pipe.recommend(np.arange(model.n_users_), 10)
    cats = srr.categories_from_matrix(
        spark, split.train.item_categories, split.train.category_names
    )
    got, fitted = _spark_lists(spark, split, model, name, params, cats)
    np.testing.assert_array_equal(got, want)
    # the per-user state travels with the users: nothing of user size in the broadcast
    rr = fitted.reranker
    for attr in ("user_category_counts_", "user_vectors_", "user_target_"):
        assert getattr(rr, attr, None) is None, attr
    if name in ("pdpp", "calibrated"):
        assert fitted.user_state is not None and fitted.width == split.train.n_categories


def test_pdpp_state_is_the_category_counts(spark, ml100k):
    """The joined per-user state of p-DPP equals `X_binary @ C` computed in memory."""
    split, model = ml100k
    cats = srr.categories_from_matrix(spark, split.train.item_categories)
    train = from_interactions(spark, split.train).df
    fitted = srr.fit_reranker(
        StageSpec("pdpp").build("reranker"), train, model.n_items_, factor_view(model).item_vectors,
        categories=cats,
    )  # fmt: skip
    frame = fitted.user_state.toPandas()
    got = np.zeros((split.train.n_users, split.train.n_categories))
    for user, idx, val in zip(frame["user"], frame["_state_idx"], frame["_state_val"], strict=True):
        got[user, idx] = val
    x = split.train.to_csr(binary=True)
    want = (x @ split.train.item_categories.astype(np.float64)).toarray()
    np.testing.assert_array_equal(got, want)


def test_item_table_categories_equal_load_item_categories(spark, ml100k, tmp_path):
    """An item table read on Spark gives the categories `load_item_categories` attaches, and
    category-cap / pdpp on them give the in-memory lists."""
    split, model = ml100k
    train = split.train
    names = np.asarray(train.category_names)
    cats = train.item_categories.tocsr()
    rows = [
        "|".join(names[cats.indices[cats.indptr[i] : cats.indptr[i + 1]]][::-1])
        for i in range(train.n_items)
    ]  # reversed order in the cell: the index follows the sorted names, not the cell
    path = tmp_path / "items.csv"
    pd.DataFrame({"movie": train.item_ids, "genres": rows}).to_csv(path, index=False)
    mem = load_item_categories(path, "movie", "genres", train)
    item_map = IdMap.from_array(spark, train.item_ids)
    got = srr.read_item_categories(spark, path, "movie", "genres", item_map)
    assert got.names == mem.category_names
    assert (got.matrix(train.n_items) != mem.item_categories).nnz == 0
    for name, params in (("category-cap", {"max_per_category": 1}), ("pdpp", {})):
        pipe = Pipeline(model, StageSpec(name, params).build("reranker"), n_candidates=100)
        want, _ = pipe.use_fitted(mem).recommend(np.arange(model.n_users_), 10)
        lists, _ = _spark_lists(spark, split, model, name, params, got, block=400)
        np.testing.assert_array_equal(lists, want)


def test_refusals_are_one_line(spark, ml100k):
    split, model = ml100k
    train = from_interactions(spark, split.train).df
    vecs = factor_view(model).item_vectors
    with pytest.raises(ValueError, match="rt-dpp .* does not run on Spark"):
        srr.fit_reranker(StageSpec("rt-dpp").build("reranker"), train, model.n_items_, vecs)
    with pytest.raises(ValueError, match="category-cap needs item categories"):
        srr.fit_reranker(StageSpec("category-cap").build("reranker"), train, model.n_items_, vecs)
    with pytest.raises(ValueError, match=r"item_vectors must have shape \(1682, d\)"):
        srr.fit_reranker(StageSpec("dpp").build("reranker"), train, model.n_items_, vecs[:5])
