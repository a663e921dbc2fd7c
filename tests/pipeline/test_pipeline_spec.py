"""`PipelineSpec`: the one pipeline declaration, its dict / TOML forms and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data import SyntheticConfig, make_synthetic
from divrec.pipeline import Pipeline, PipelineSpec, SpecError, StageSpec


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticConfig(n_users=40, n_items=60, n_topics=4, interactions_per_user=8, seed=3)
    return make_synthetic(cfg).interactions


def test_dict_and_toml_round_trip():
    spec = PipelineSpec.of(
        "ials",
        "dpp",
        retriever_params={"factors": 8, "iterations": 3},
        reranker_params={"theta": 0.4},
        n_candidates=30,
        label="x",
    )
    assert PipelineSpec.from_dict(spec.to_dict()) == spec
    assert PipelineSpec.from_toml(spec.to_toml()) == spec
    full = spec.resolved(seed=0)
    assert full.retriever.params["factors"] == 8 and "alpha" in full.retriever.params
    assert full.reranker.params["theta"] == 0.4 and "window" in full.reranker.params
    # the resolved form (None values included) survives TOML too and builds the same stages
    back = PipelineSpec.from_toml(full.to_toml())
    assert back.build(0).retriever.get_params() == full.build(0).retriever.get_params()
    assert back.build(0).reranker.get_params() == full.build(0).reranker.get_params()


def test_build_equals_a_hand_built_pipeline(data):
    from divrec.rerank import FastGreedyDPP
    from divrec.retrieval.baselines import ALSRecommender

    spec = PipelineSpec.of(
        "ials", "dpp", retriever_params={"factors": 8}, reranker_params={"theta": 0.6},
        n_candidates=20,
    )  # fmt: skip
    built = spec.build(seed=0).fit(data)
    hand = Pipeline(
        ALSRecommender(factors=8, seed=0), reranker=FastGreedyDPP(theta=0.6), n_candidates=20
    ).fit(data)
    users = np.arange(10)
    assert np.array_equal(built.recommend(users, k=5)[0], hand.recommend(users, k=5)[0])


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, "missing key 'retriever'"),
        ({"retriever": "nope"}, "unknown model 'nope'"),
        ({"retriever": {"name": "ials", "params": {"factorz": 3}}}, "factorz"),
        ({"retriever": "ials", "reranker": {"nam": "dpp"}}, "reranker.nam"),
        ({"retriever": "ials", "n_candidates": 0}, "n_candidates"),
        ({"retriever": "ials", "extra": 1}, "unknown key 'extra'"),
        ({"retriever": {"name": "ials", "params": 3}}, "retriever.params"),
    ],
)
def test_bad_specs_are_one_line(raw, message):
    with pytest.raises(SpecError, match=message) as err:
        PipelineSpec.from_dict(raw)
    assert "\n" not in str(err.value)


def test_bad_value_fails_at_build_naming_the_field():
    spec = PipelineSpec(StageSpec("ials", {"factors": "many"}))
    with pytest.raises(SpecError, match="factors"):
        spec.build()


def test_name_and_with_stage():
    spec = PipelineSpec.of("ials", "mmr", ranker="itemknn")
    assert spec.name == "ials→itemknn→mmr"
    assert spec.with_stage("reranker", None).name == "ials→itemknn"
    assert spec.with_stage("reranker", "dpp").reranker == StageSpec("dpp")
