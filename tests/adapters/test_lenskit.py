"""`divrec.adapters.lenskit.DivrecReranker` against the installed LensKit: a real component in
a real LensKit pipeline, giving the same lists as divrec's re-ranker called directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lenskit.data import DatasetBuilder, ItemList
from lenskit.pipeline import PipelineBuilder
from scipy.sparse import csr_array

from divrec.adapters.lenskit import DivrecReranker, DivrecRerankerConfig
from divrec.rerank import MMR, CategoryCap, FastGreedyDPP

N_ITEMS = 40


def _dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"i{j:03d}" for j in range(N_ITEMS)])
    b = DatasetBuilder()
    b.add_entities("item", ids)
    # a sparse array: LensKit 2025.8.1 registers a dense vector attribute without missing
    # values in its schema only on the sparse path (the dense one returns first)
    b.add_vector_attribute("item", "embedding", ids, csr_array(rng.normal(size=(N_ITEMS, 5))))
    b.add_scalar_attribute("item", "genre", ids, rng.choice(["drama", "comedy", "noir"], N_ITEMS))
    users = rng.integers(0, 10, 120)
    b.add_interactions(
        "rating",
        pd.DataFrame({"user_id": users, "item_id": rng.choice(ids, 120)}).drop_duplicates(),
        entities=["user", "item"],
        missing="insert",
    )
    return b.build(), ids


def _candidates(ids, n: int, seed: int = 1) -> ItemList:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, n, replace=False)
    return ItemList(chosen, scores=rng.normal(size=n))


def _direct(reranker, data, cand: ItemList, k: int, **select_kw) -> list[str]:
    """divrec called directly: candidates by decreasing score, `select` on their vectors."""
    items = data.entities("item")
    nums = cand.numbers(vocabulary=items.vocabulary)
    order = np.argsort(-cand.scores(), kind="stable")
    kw = {}
    if "vectors" in select_kw:
        vectors = items.attribute("embedding").scipy().toarray()
        kw["vectors"] = vectors[nums[order]].astype(np.float64)
    if "categories" in select_kw:
        genre = items.attribute("genre").numpy()
        codes, _ = pd.factorize(pd.Series(genre), sort=True)
        kw["categories"] = codes[nums[order]]
    picks = reranker.select(cand.scores()[order], k, **kw)
    return [str(x) for x in cand.ids()[order[picks]]]


@pytest.mark.parametrize(
    ("method", "params", "direct"),
    [
        ("mmr", {"lambda_": 0.4}, MMR(lambda_=0.4)),
        ("dpp", {"theta": 0.6}, FastGreedyDPP(theta=0.6)),
    ],
)
def test_component_equals_divrec_called_directly(method, params, direct):
    data, ids = _dataset()
    comp = DivrecReranker(method=method, params=params, vectors="embedding", n=6)
    comp.train(data)
    for seed in range(3):
        cand = _candidates(ids, 20, seed)
        got = comp(cand)
        assert isinstance(got, ItemList) and got.ordered
        assert [str(x) for x in got.ids()] == _direct(direct, data, cand, 6, vectors=True)
        # the picked items keep their scores
        lookup = dict(zip(cand.ids(), cand.scores(), strict=True))
        assert got.scores().tolist() == [lookup[i] for i in got.ids()]


def test_component_in_a_lenskit_pipeline_with_categories():
    data, ids = _dataset()
    builder = PipelineBuilder()
    items = builder.create_input("items", ItemList)
    n = builder.create_input("n", int, None)
    config = DivrecRerankerConfig(
        method="category-cap", params={"max_per_category": 2}, category="genre"
    )
    builder.add_component("rerank", DivrecReranker, config, items=items, n=n)
    builder.default_component("rerank")
    pipe = builder.build()
    pipe.train(data)
    cand = _candidates(ids, 15, seed=4)
    got = pipe.run("rerank", items=cand, n=5)
    assert [str(x) for x in got.ids()] == _direct(
        CategoryCap(max_per_category=2), data, cand, 5, categories=True
    )


def test_reranker_object_and_knob_zero_is_score_order():
    data, ids = _dataset()
    comp = DivrecReranker(
        DivrecRerankerConfig(vectors="embedding", diversity=0.0), reranker=MMR(lambda_=0.1)
    )
    comp.train(data)
    cand = _candidates(ids, 12, seed=2)
    got = comp(cand, n=4)
    order = np.argsort(-cand.scores(), kind="stable")[:4]
    assert got.ids().tolist() == cand.ids()[order].tolist()


def test_bad_candidates_are_one_line():
    data, ids = _dataset()
    comp = DivrecReranker(method="mmr", vectors="embedding")
    with pytest.raises(ValueError, match="not trained"):
        comp(_candidates(ids, 5))
    comp.train(data)
    with pytest.raises(ValueError, match=r"^items: item id 'nope' is not in the training data$"):
        comp(ItemList(["i001", "nope"], scores=[1.0, 0.5]))
    with pytest.raises(ValueError, match="carry no scores"):
        comp(ItemList(["i001", "i002"]))
    with pytest.raises(ValueError, match="finite"):
        comp(ItemList(["i001", "i002"], scores=[1.0, np.nan]))
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        DivrecReranker(method="mmr", vectors="missing").train(data)
