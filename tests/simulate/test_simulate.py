"""Simulator: choice model vs its closed form, determinism, metrics by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from divrec.simulate import ChoiceModel, SimConfig, choice_probabilities
from divrec.simulate.loop import between_user_jaccard, run_simulation


def test_choice_probabilities_closed_form():
    v = np.array([[1.0, 0.0, 2.0]])
    att = np.array([1.0, 0.5, 0.25])
    p = choice_probabilities(v, att, 0.5, np.array([[True, True, False]]))
    e = np.array([np.e, 0.5, 0.0, np.exp(0.5)])
    np.testing.assert_allclose(p[0], e / e.sum())


def test_sampled_first_choice_matches_closed_form():
    prefs = np.array([[1.0, 0.2, -0.5, 1.5]], dtype=np.float32)
    env = ChoiceModel(prefs, np.eye(4), no_click=1.0, position_decay=1.0, boredom=0.0)
    n = 20_000
    lists = np.tile([3, 0, 1, 2], (n, 1))
    users = np.zeros(n, dtype=np.int64)
    # one user repeated n times: the boredom state is shared but β = 0
    order = env.respond(users, lists, np.random.default_rng(0))
    first = np.where((order == 0).any(1), np.argmax(order == 0, axis=1), 4)
    got = np.bincount(first, minlength=5) / n
    v = prefs[0, [3, 0, 1, 2]].astype(np.float64)
    want = choice_probabilities(v[None], env.attention(4), 1.0, np.ones((1, 4), bool))[0]
    np.testing.assert_allclose(got, want, atol=0.012)


def test_boredom_lowers_similar_items_after_a_click():
    prefs = np.zeros((1, 3), dtype=np.float32)
    attrs = np.array([[1.0, 0], [1.0, 0], [0, 1.0]])
    env = ChoiceModel(prefs, attrs, boredom=2.0, boredom_rate=0.5, boredom_decay=1.0)
    env.state[0] = [1.0, 0.0]
    v = env.utilities(np.array([0]), np.array([[0, 1, 2, -1]]))
    np.testing.assert_allclose(v[0, :3], [-2.0, -2.0, 0.0])
    assert v[0, 3] == -np.inf


def test_jaccard_by_hand():
    lists = np.array([[0, 1, 2], [1, 2, 3], [4, 5, -1]])
    # pairs: (0,1) 2/4, (0,2) 0, (1,2) 0
    assert between_user_jaccard(lists, 6, 100, 0) == pytest.approx(0.5 / 3)


def test_between_user_jaccard_is_pairwise_jaccard_with_sampled_pairs():
    # the loop's copy (kept for its all-pairs and empty-set behaviour) gives the library's
    # value bit for bit when pairs are sampled, as in the 1,000-user runs
    from divrec.metrics import pairwise_jaccard

    rng = np.random.default_rng(3)
    lists = np.stack([rng.choice(500, 20, replace=False) for _ in range(300)])
    for seed in range(3):
        assert between_user_jaccard(lists, 500, 2_000, seed) == pairwise_jaccard(
            lists, 500, 2_000, seed
        )


def test_world_orders_new_items_last(world_and_retriever):
    w, _ = world_and_retriever
    assert w.start_log.n_items == w.n_start < w.n_items
    assert (w.start_log.items < w.n_start).all()
    assert w.pool_size(0) == w.n_start and w.pool_size(2) == w.n_items
    np.testing.assert_allclose(w.preferences.mean(1), 0, atol=1e-4)


@pytest.mark.parametrize("pipeline", ["ours", "base", "p-dpp"])
def test_simulation_is_deterministic_for_a_seed(world_and_retriever, pipeline):
    w, ret = world_and_retriever
    cfg = SimConfig(rounds=3, k=4, n_candidates=12, update_steps=1, seed=5)
    a = run_simulation(w, pipeline, cfg, ret)
    b = run_simulation(w, pipeline, cfg, ret)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")}
             for r in a["rounds"]]  # fmt: skip
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")}
                     for r in b["rounds"]]  # fmt: skip
    last = a["rounds"][-1]
    assert last["pool"] == w.n_items and last["edges"] >= ret.graph_.n_edges
    assert 0 <= last["coverage"] <= 1 and last["clicks"] >= 0
    c = run_simulation(w, pipeline, SimConfig(rounds=3, k=4, n_candidates=12, seed=6), ret)
    assert [r["clicks"] for r in c["rounds"]] != [r["clicks"] for r in a["rounds"]]


def test_loop_ranks_and_learns_from_declines(world_and_retriever):
    w, ret = world_and_retriever
    assert ret.neighbor_sampling == "walk"  # the paper's sampler is the loop's default
    cfg = SimConfig(rounds=2, k=4, n_candidates=12, update_steps=1, seed=0)
    on = run_simulation(w, "graph-dpp", cfg, ret)["rounds"]
    assert all(0 <= r["rank_auc"] <= 1 for r in on) and on[0]["declines_trained"] > 0
    assert on[0]["rank_auc"] == pytest.approx(on[0]["retrieval_auc"])  # round 1: pass-through
    off = dataclasses.replace(cfg, ranker=False, learn_declines=False)
    old = run_simulation(w, "graph-dpp", off, ret)["rounds"]
    assert "rank_auc" not in old[0] and old[0]["declines_trained"] == 0


def test_bad_pipeline_name(world_and_retriever):
    w, ret = world_and_retriever
    with pytest.raises(ValueError, match="unknown pipeline"):
        run_simulation(w, "nope", SimConfig(rounds=1), ret)


def test_variants_are_pipeline_specs(world_and_retriever):
    """A named variant is a `PipelineSpec`: the same spec given as one runs the same loop
    (graph-space variants), and each run stores its spec with every stage's full config."""
    from divrec.pipeline.spec import PipelineSpec, StageSpec
    from divrec.simulate import PIPELINES

    w, ret = world_and_retriever
    cfg = SimConfig(rounds=2, k=4, n_candidates=12, update_steps=1, seed=3)

    def strip(run):
        drop = ("seconds", "train_seconds")
        return [{k: v for k, v in r.items() if k not in drop} for r in run["rounds"]]

    named = run_simulation(w, "graph-dpp", cfg, ret)
    assert strip(run_simulation(w, PIPELINES["graph-dpp"], cfg, ret)) == strip(named)
    stored = PipelineSpec.from_dict(named["spec"])
    assert stored.reranker == StageSpec("dpp", stored.reranker.params)
    assert stored.reranker.params["theta"] == 0.5 and stored.n_candidates == 12
    assert stored.retriever.params["dim"] == 8 and stored.retriever.params["min_value"] is None
    assert strip(run_simulation(w, stored, cfg, ret)) == strip(named)
    ours = run_simulation(w, "ours", cfg, ret)
    assert ours["spec"]["reranker"]["name"] == "rt-dpp" and ours["pipeline"] == "ours"
    custom = PipelineSpec(StageSpec("graph"), None, StageSpec("mmr", {"lambda_": 0.3}))
    run = run_simulation(w, custom, cfg, ret)
    assert run["pipeline"] == "graph→mmr" and len(run["rounds"]) == 2
    with pytest.raises(ValueError, match="retrieves with 'graph'"):
        run_simulation(w, PipelineSpec(StageSpec("ials"), None, StageSpec("dpp")), cfg, ret)
    with pytest.raises(ValueError, match="ranking stage is SimConfig.ranker"):
        run_simulation(w, PipelineSpec(StageSpec("graph"), "cdm", None), cfg, ret)


@pytest.mark.parametrize("name", ["no_click", "boredom", "preference_scale", "boredom_rate"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_choice_model_refuses_non_finite_numbers(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        ChoiceModel(np.ones((2, 3)), np.eye(3), **{name: value})
