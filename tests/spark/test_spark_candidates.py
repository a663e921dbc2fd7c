"""Spark batch u2i (+ re-ranking), i2u and group users vs the in-memory pipeline / methods."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.movielens import load_movielens_100k
from divrec.evaluation.batch import factor_view, stream_u2i
from divrec.pipeline import Pipeline
from divrec.rerank import FastGreedyDPP
from divrec.retrieval.baselines import ALSRecommender
from divrec.retrieval.hi import HIRealtime
from divrec.spark import candidates as sc
from divrec.spark.data import from_interactions
from divrec.splitting import leave_last_one


@pytest.fixture(scope="module")
def ml100k(data_home):
    data = load_movielens_100k(data_home)
    split = leave_last_one(data, validation=False)
    model = ALSRecommender(factors=24, iterations=4, seed=0, threads=1).fit(split.train)
    return split, model


def _collect(df, n_users):
    frame = df.toPandas().sort_values("user")
    assert frame["user"].tolist() == list(range(n_users))
    return np.stack(frame["items"].to_numpy()), np.stack(frame["scores"].to_numpy())


@pytest.mark.parametrize("reranker", [FastGreedyDPP()], ids=["dpp"])
def test_u2i_rerank_equals_pipeline(spark, ml100k, reranker):
    split, model = ml100k
    pipe = Pipeline(model, reranker, n_candidates=100).use_fitted(split.train)
    users = np.arange(model.n_users_)
    want, want_scores = pipe.recommend(users, 10)
    view = factor_view(model)
    train = from_interactions(spark, split.train).df
    uv = sc.user_vector_frame(spark, view.user_vectors, partitions=3)
    out = sc.u2i(spark, uv, view, 100, k=10, seen=train, reranker=pipe.reranker, block=128)
    ids, scores = _collect(out, model.n_users_)
    np.testing.assert_array_equal(ids, want)
    # float32 products of other block shapes round differently in the last ulp
    np.testing.assert_allclose(scores, want_scores, rtol=2e-6)
    # the in-memory streaming path gives the same lists (memory: one block)
    stream = np.concatenate(
        [
            c.ids
            for _, c in stream_u2i(
                view, 100, seen=model.user_items_, reranker=pipe.reranker, k=10, block=200
            )
        ]
    )
    np.testing.assert_array_equal(stream, want)


def test_u2i_hi_realtime_and_i2u(spark, data_home):
    data = load_movielens_100k(data_home)
    split = leave_last_one(data, validation=False)
    model = HIRealtime(factors=10).fit(split.train)
    want, want_scores = model.recommend(np.arange(model.n_users_), 10)
    view = factor_view(model)
    uv = sc.user_vector_frame(spark, view.user_vectors, partitions=2)
    seen = from_interactions(spark, split.train).df
    out = sc.u2i(spark, uv, view, 10, seen=seen).cache()
    ids, scores = _collect(out, model.n_users_)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(scores, want_scores)
    # i2u: the top-M users per item from the same pairs, as merge_top_users
    from divrec.retrieval.two_tower import merge_top_users

    ref_ids, ref_scores = merge_top_users(
        ids.ravel(), np.repeat(np.arange(ids.shape[0]), 10), scores.ravel(), model.n_items_, 5
    )
    got = sc.i2u(out, 5).toPandas().set_index("item")
    reached = np.flatnonzero(ref_ids[:, 0] >= 0)
    assert sorted(got.index) == reached.tolist()
    for item in reached:
        n = int((ref_ids[item] >= 0).sum())
        assert got.loc[item, "users"].tolist() == ref_ids[item, :n].tolist()
        np.testing.assert_array_equal(got.loc[item, "scores"], ref_scores[item, :n])


@pytest.mark.parametrize("aggregation,scope", [("mean", "group"), ("max", "item")])
def test_group_potential_users_equals_two_tower(spark, ml100k, aggregation, scope):
    from divrec.retrieval.two_tower import TwoTowerRecommender

    split, als = ml100k
    # a fitted two-tower stand-in on the ALS vectors (its method is the reference)
    tt = TwoTowerRecommender(tau=4.0)
    tt.user_factors_, tt.item_factors_ = als.user_factors_, als.item_factors_
    tt.user_items_, tt.n_users_, tt.n_items_ = als.user_items_, als.n_users_, als.n_items_
    groups = {"a": np.array([0, 5, 49]), "b": np.arange(100, 130), "c": np.array([7])}
    view = factor_view(tt)
    assert view.divisor == 4.0
    uv = sc.user_vector_frame(spark, view.user_vectors, partitions=3)
    seen = from_interactions(spark, split.train).df
    got = (
        sc.group_potential_users(
            spark,
            uv,
            view,
            groups,
            15,
            aggregation=aggregation,
            probability="exp",
            seen=seen,
            seen_scope=scope,
            block=200,
        )
        .toPandas()
        .set_index("group")
    )
    for name, items in groups.items():
        ids, vals = tt.potential_users_of_group(items, 15, aggregation, seen_scope=scope)
        assert got.loc[name, "users"].tolist() == ids.tolist()
        np.testing.assert_allclose(got.loc[name, "scores"], vals, rtol=1e-6)
