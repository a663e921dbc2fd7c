"""DataFrames with the caller's own ids (`divrec.pipeline.frames`): the same lists as the
array API with ids mapped by hand, hand-computed metrics, one-line errors, polars."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data import Interactions
from divrec.pipeline import Pipeline
from divrec.pipeline.frames import (
    LIST_COLUMNS,
    catalogue,
    evaluate_frame,
    recommend_frame,
    rerank_frame,
)
from divrec.rerank import MMR, FastGreedyDPP
from divrec.retrieval import PopularityRecommender


def _log(seed: int = 0, n_users: int = 12, n_items: int = 30) -> Interactions:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, 200)
    items = rng.integers(0, n_items, 200)
    return Interactions.from_arrays(
        np.array([f"u{u:02d}" for u in users]), np.array([f"item-{i:02d}" for i in items])
    )


def _vectors(n: int, d: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _candidates(data: Interactions, users, n: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in users:
        for i in rng.choice(data.n_items, n, replace=False):
            rows.append((u, data.item_ids[i], float(rng.normal())))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "score"])


def test_recommend_frame_equals_array_api_with_ids_mapped_by_hand():
    data = _log()
    model = PopularityRecommender().fit(data)
    asked = ["u03", "u07", "u03", "u00"]  # a repeated id is answered once
    got = recommend_frame(model, data, asked, k=5)
    assert tuple(got.columns) == LIST_COLUMNS
    ids, scores = model.recommend(data.user_index(["u03", "u07", "u00"]), k=5)
    expected = []
    for user, row_ids, row_scores in zip(["u03", "u07", "u00"], ids, scores, strict=True):
        for r, (i, s) in enumerate(zip(row_ids, row_scores, strict=True)):
            if i >= 0:
                expected.append((user, data.item_ids[i], float(s), r + 1))
    assert list(got.itertuples(index=False, name=None)) == expected


def test_recommend_frame_accepts_a_user_table_and_the_knob():
    data = _log()
    pipe = Pipeline(
        PopularityRecommender(), MMR(), n_candidates=15, item_vectors=_vectors(data.n_items)
    ).fit(data)
    users = pd.DataFrame({"user_id": ["u01", "u02"]})
    at_zero = recommend_frame(pipe, data, users, k=4, diversity=0.0)
    plain = recommend_frame(PopularityRecommender().fit(data), data, users, k=4)
    # knob 0 answers in relevance order: the retriever's own lists
    pd.testing.assert_frame_equal(at_zero, plain, check_dtype=False)
    with pytest.raises(ValueError, match=r"^user_id: unknown user id 'nobody'"):
        recommend_frame(pipe, data, ["u01", "nobody"], k=4)


def _direct_rerank(reranker, data, cand: pd.DataFrame, k: int, vectors: np.ndarray):
    """The same re-ranking by hand: each user's candidates sorted by score, `select`."""
    rows = []
    for user, group in cand.groupby("user_id", sort=False):
        group = group.iloc[np.argsort(-group["score"].to_numpy(), kind="stable")]
        items = data.item_index(group["item_id"].to_numpy())
        picks = reranker.select(group["score"].to_numpy(), k, vectors=vectors[items])
        for r, p in enumerate(picks):
            rows.append((user, group["item_id"].iloc[p], group["score"].iloc[p], r + 1))
    return rows


@pytest.mark.parametrize("make", [lambda: MMR(lambda_=0.4), lambda: FastGreedyDPP(theta=0.6)])
def test_rerank_frame_equals_select_on_each_users_list(make):
    data = _log()
    vectors = _vectors(data.n_items)
    reranker = make().fit(data, item_vectors=vectors)
    cand = _candidates(data, ["u05", "u01", "u09"], n=12)
    cand = cand.sample(frac=1.0, random_state=3)  # the table's order does not matter
    got = rerank_frame(reranker, cand, 5, data)
    assert tuple(got.columns) == LIST_COLUMNS
    expected = _direct_rerank(reranker, data, cand, 5, vectors.astype(np.float32))
    key = {u: n for n, u in enumerate(pd.unique(cand["user_id"]))}
    expected.sort(key=lambda r: (key[r[0]], r[3]))
    assert list(got.itertuples(index=False, name=None)) == expected


def test_rerank_frame_knob_zero_is_the_score_order_and_scores_are_the_inputs():
    data = _log()
    reranker = MMR().fit(data, item_vectors=_vectors(data.n_items))
    cand = _candidates(data, ["u02"], n=8)
    got = rerank_frame(reranker, cand, 3, data, diversity=0.0)
    top = cand.sort_values("score", ascending=False).head(3)
    assert got["item_id"].tolist() == top["item_id"].tolist()
    assert got["score"].tolist() == top["score"].tolist()  # float64, not rounded
    assert got["rank"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: pd.concat([c, c.iloc[[0]]]), r"^candidates: item_id '.*' twice in the"),
        (lambda c: c.assign(score=c["score"].where(c.index != 2, np.nan)), r"score must be fin"),
        (lambda c: c.assign(score=c["score"].where(c.index != 1, np.inf)), r"score must be fin"),
        (lambda c: c.assign(item_id=c["item_id"].where(c.index != 0, "zz")), r"^candidates: item"),
        (lambda c: c.assign(user_id="stranger"), r"^candidates: user_id: unknown user id"),
        (lambda c: c.drop(columns="score"), r"^candidates has no column 'score'"),
        (
            lambda c: {"user_id": c["user_id"], "item_id": c["item_id"], "score": [1.0]},
            r"^candidates: columns have different lengths \(user_id=6, item_id=6, score=1\)",
        ),
    ],
)
def test_rerank_frame_bad_input_is_one_line(change, message):
    data = _log()
    reranker = MMR().fit(data, item_vectors=_vectors(data.n_items))
    cand = _candidates(data, ["u02"], n=6).reset_index(drop=True)
    with pytest.raises(ValueError, match=message) as info:
        rerank_frame(reranker, change(cand), 3, data)
    assert "\n" not in str(info.value)


def test_catalogue_from_an_item_table_and_evaluate_by_hand():
    items = pd.DataFrame(
        {
            "item_id": [10, 20, 30, 40],
            "genre": ["a", "b", "a", None],
            "x": [1.0, 0.0, 1.0, 0.0],
            "y": [0.0, 1.0, 0.0, 1.0],
        }
    )
    cat = catalogue(items, users=["ann", "bob"], category="genre", vectors=["x", "y"])
    assert cat.item_ids.tolist() == [10, 20, 30, 40] and cat.category_names == ("a", "b")
    assert cat.item_categories.toarray().tolist() == [[1, 0], [0, 1], [1, 0], [0, 0]]
    lists = pd.DataFrame(
        {"user_id": ["ann", "ann", "bob", "bob"], "item_id": [10, 20, 30, 10], "rank": [1, 2, 2, 1]}
    )
    truth = pd.DataFrame({"user_id": ["ann", "bob", "bob"], "item_id": [20, 40, 10]})
    history = pd.DataFrame({"user_id": ["ann", "bob"], "item_id": [10, 20]})
    got = evaluate_frame(lists, cat, truth, k=2, history=history)
    assert got["user_id"].tolist() == ["ann", "bob"]
    # ann: hit at rank 2 of 1 relevant -> NDCG = (1/log2 3) / 1; bob: [10, 30], hit at rank 1
    # of 2 relevant -> NDCG = 1 / (1 + 1/log2 3)
    assert got["ndcg"].tolist() == pytest.approx([1 / np.log2(3), 1 / (1 + 1 / np.log2(3))])
    assert got["recall"].tolist() == pytest.approx([1.0, 0.5])
    assert got["hit_rate"].tolist() == [1.0, 1.0]
    # ann's vectors are orthogonal (distance 1), bob's identical (distance 0)
    assert got["ilad"].tolist() == pytest.approx([1.0, 0.0])
    assert got["category_coverage"].tolist() == pytest.approx([1.0, 0.5])
    # ann: history all 'a', list half 'a' -> KL(p || 0.99 q + 0.01 p) = log(1 / 0.505)
    # bob: history all 'b', list all 'a' -> log(1 / 0.01)
    assert got["miscalibration"].tolist() == pytest.approx([np.log(1 / 0.505), np.log(100)])
    assert got.attrs["system"] == pytest.approx({"item_coverage": 0.75, "category_coverage": 1})


def test_catalogue_bad_input():
    with pytest.raises(ValueError, match=r"^items: item_id 1 twice$"):
        catalogue(pd.DataFrame({"item_id": [1, 2, 1]}))
    with pytest.raises(ValueError, match=r"^items: vector columns must be finite"):
        catalogue(pd.DataFrame({"item_id": [1, 2], "v": [0.0, np.nan]}), vectors=["v"])


def test_polars_goes_through_the_same_path():
    pl = pytest.importorskip("polars")  # the dev extra installs it
    data = _log()
    reranker = MMR().fit(data, item_vectors=_vectors(data.n_items))
    cand = _candidates(data, ["u04", "u08"], n=10)
    got = rerank_frame(reranker, pl.from_pandas(cand), 4, data)
    assert isinstance(got, pl.DataFrame)
    pd.testing.assert_frame_equal(got.to_pandas(), rerank_frame(reranker, cand, 4, data))
    metrics = evaluate_frame(got, data, item_vectors=_vectors(data.n_items))
    assert isinstance(metrics, pl.DataFrame) and metrics.columns[0] == "user_id"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 8),
    seed=st.integers(0, 10_000),
    knob=st.none() | st.floats(0.0, 1.0),
)
def test_rerank_frame_lists_are_k_distinct_candidates_ranked_from_one(n, k, seed, knob):
    data = _log()
    reranker = MMR().fit(data, item_vectors=_vectors(data.n_items))
    cand = _candidates(data, ["u01", "u06"], n=n, seed=seed)
    got = rerank_frame(reranker, cand, k, data, diversity=knob)
    for user, group in got.groupby("user_id"):
        mine = cand[cand["user_id"] == user]
        assert group["rank"].tolist() == list(range(1, min(k, n) + 1))
        assert group["item_id"].is_unique and set(group["item_id"]) <= set(mine["item_id"])
        lookup = dict(zip(mine["item_id"], mine["score"], strict=True))
        assert group["score"].tolist() == [lookup[i] for i in group["item_id"]]


def test_lists_keep_external_id_dtypes():
    data = dataclasses.replace(_log(), name="x")
    model = PopularityRecommender().fit(data)
    got = recommend_frame(model, data, np.array(["u01"]), k=3)
    assert got["user_id"].tolist() == ["u01"] * 3
    assert all(isinstance(i, str) and i.startswith("item-") for i in got["item_id"])
