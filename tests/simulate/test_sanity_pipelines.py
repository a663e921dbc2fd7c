"""The simulator's sanity variants "random" and "popular" (random-k / popular-k over the same
GraphSAGE retriever and ranker as every other variant)."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.simulate import PIPELINES, SPACES, SimConfig
from divrec.simulate.loop import make_reranker, run_simulation


def test_sanity_variants_are_registered_specs():
    assert PIPELINES["random"].reranker.name == "random-k"
    assert PIPELINES["popular"].reranker.name == "popular-k"
    assert PIPELINES["random"].retriever == PIPELINES["base"].retriever
    assert SPACES["random"] == SPACES["popular"] == "genre"


def test_popular_is_fitted_on_the_starting_log(world_and_retriever):
    w, ret = world_and_retriever
    rr, _ = make_reranker("popular", w, ret.embeddings_, None)
    want = np.zeros(w.n_items, dtype=np.int64)
    want[: w.start_log.n_items] = w.start_log.item_popularity()
    np.testing.assert_array_equal(rr.popularity_, want)  # new items: 0


@pytest.mark.parametrize("pipeline", ["random", "popular"])
def test_sanity_variants_run_deterministically_and_pair_with_base(world_and_retriever, pipeline):
    w, ret = world_and_retriever
    cfg = SimConfig(rounds=3, k=4, n_candidates=12, update_steps=1, seed=5)

    def strip(run):
        drop = ("seconds", "train_seconds")
        return [{k: v for k, v in r.items() if k not in drop} for r in run["rounds"]]

    a = run_simulation(w, pipeline, cfg, ret)
    assert strip(a) == strip(run_simulation(w, pipeline, cfg, ret))
    assert a["spec"]["reranker"]["name"] in ("random-k", "popular-k")
    base = run_simulation(w, "base", cfg, ret)
    # round 1: the same world and retriever, so the same retrieval; other feeds
    assert a["rounds"][0]["retrieval_jaccard"] == base["rounds"][0]["retrieval_jaccard"]
    assert a["rounds"][0]["ilad_svd"] != base["rounds"][0]["ilad_svd"]
    assert np.isnan(a["rounds"][0]["theta"].get("mean", np.nan))  # no θ
