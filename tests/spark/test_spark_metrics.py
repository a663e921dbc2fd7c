"""Spark metrics == divrec.metrics on the same lists (ML-100K), to 1e-9."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from divrec import metrics as M
from divrec.data.movielens import load_movielens_100k
from divrec.metrics.reference import reference_vectors
from divrec.retrieval.baselines import ALSRecommender
from divrec.spark import metrics as smx
from divrec.spark.data import from_interactions
from divrec.splitting import random_holdout


@pytest.fixture(scope="module")
def lists(data_home):
    data = load_movielens_100k(data_home)
    split = random_holdout(data, 0.2, seed=0, per_user=True)
    model = ALSRecommender(factors=16, iterations=3, threads=1).fit(split.train)
    rec, _ = model.recommend(np.arange(data.n_users), 20)
    rec[::7, 15:] = -1  # padded lists
    rec[5] = -1  # an empty list
    return split, rec


def test_metrics_parity(spark, lists):
    split, rec = lists
    n_users, n_items = split.train.shape
    frame = pd.DataFrame({"user": np.arange(n_users, dtype=np.int64), "items": list(rec)})
    df = spark.createDataFrame(frame, "user long, items array<long>").repartition(3)
    truth = from_interactions(spark, split.test).df

    got = smx.accuracy(df, truth, ks=(5, 20))
    users = split.test_users()
    rel = split.test.to_csr(binary=True)[users]
    hits = M.hits_matrix(rec[users], rel)
    n_rel = M.relevant_counts(rel)
    assert got["users"] == users.size
    for k in (5, 20):
        want = {
            "hr": M.hit_rate_at_k(hits, k),
            "precision": M.precision_at_k(hits, k),
            "recall": M.recall_at_k(hits, n_rel, k),
            "ndcg": M.ndcg_at_k(hits, n_rel, k),
            "mrr": M.mrr_at_k(hits, k),
            "map": M.map_at_k(hits, n_rel, k),
        }
        for name, per_user in want.items():
            assert got[f"{name}@{k}"] == pytest.approx(np.nanmean(per_user), abs=1e-9), name
        assert got[f"hr@{k}"] > 0.1  # a real model, not an empty comparison

    vecs, _ = reference_vectors(split.train)
    pop = split.train.item_popularity()
    cats = sp.random(n_items, 12, density=0.15, random_state=1, format="csr")
    cats.data[:] = 1.0
    ba = smx.beyond_accuracy(
        spark,
        df,
        n_items,
        item_vectors=vecs,
        item_popularity=pop,
        n_users=n_users,
        item_categories=cats,
        max_pairs=4000,
        seed=3,
    )
    assert ba["item_coverage"] == pytest.approx(M.item_coverage(rec, n_items), abs=1e-12)
    assert ba["distinct_items"] == M.distinct_items(rec)
    assert ba["exposure_gini"] == pytest.approx(M.exposure_gini(rec, n_items), abs=1e-9)
    assert ba["exposure_entropy"] == pytest.approx(M.exposure_entropy(rec, n_items), abs=1e-9)
    assert ba["ilad"] == pytest.approx(np.nanmean(M.ilad(rec, vecs)), abs=1e-9)
    assert ba["novelty"] == pytest.approx(np.nanmean(M.novelty(rec, pop, n_users)), abs=1e-9)
    assert ba["category_coverage"] == pytest.approx(M.category_coverage(rec, cats), abs=1e-12)
    want_bud = M.between_user_diversity(rec, n_items, max_pairs=4000, seed=3)
    assert ba["between_user_diversity"] == pytest.approx(want_bud, abs=1e-9)
    # first-k slicing equals the library on rec[:, :k]
    ba5 = smx.beyond_accuracy(spark, df, n_items, k=5, max_pairs=None)
    assert ba5["exposure_gini"] == pytest.approx(M.exposure_gini(rec[:, :5], n_items), abs=1e-9)
