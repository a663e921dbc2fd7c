"""The A/B pre-flight (`divrec.simulate.ab`): the arms' pipelines on simulated users, logged
like the service's experiment and read out by `divrec.evaluation.ab`."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.synthetic import SyntheticConfig, make_synthetic
from divrec.evaluation.ab import readout
from divrec.pipeline.spec import PipelineSpec, StageSpec
from divrec.simulate.ab import ground_truth_preferences, preflight, preflight_knob, user_model


@pytest.fixture(scope="module")
def world():
    data = make_synthetic(
        SyntheticConfig(n_users=80, n_items=120, n_topics=6, interactions_per_user=15.0, seed=3)
    ).interactions
    ret = StageSpec("ials", {"factors": 8, "iterations": 4})
    dpp = PipelineSpec(ret, None, StageSpec("dpp"), n_candidates=40).build(0).fit(data)
    rel = PipelineSpec(ret, None, None, n_candidates=40).build(0).fit(data)
    return data, [rel, dpp]


def _run(world, seed=0, rounds=3, k=6):
    data, pipes = world
    users = np.arange(0, data.n_users, 2)
    assignment = (users // 2) % 2
    choice = user_model(data, seed=0, no_click=1.0)
    return preflight(
        ["control", "dpp"], "control", np.array([0.5, 0.5]), pipes, [0.0, 0.8], users,
        assignment, choice, pipes[0].user_items_,
        rounds=rounds, k=k, seed=seed,
    ), users, assignment  # fmt: skip


def test_preflight_logs_each_users_lists_in_its_arm_and_clicks_on_them(world):
    log, users, assignment = _run(world)
    assert log.imp_user.size == users.size * 3 and log.imp_items.shape[1] == 6
    np.testing.assert_array_equal(log.imp_arm, assignment[log.imp_user])
    assert log.fb_imp.size > 0 and set(log.fb_type) == {"click"}
    train = world[1][0].user_items_
    for u in range(users.size):  # training items and earlier clicks never come back
        rows = np.flatnonzero(log.imp_user == u)
        seen = set(train[users[u]].indices.tolist())
        clicked: set[int] = set()
        for r in rows:
            items = set(log.imp_items[r][log.imp_items[r] >= 0].tolist())
            assert not items & seen and not items & clicked
            mine = log.fb_item[log.fb_imp == r]
            assert set(mine.tolist()) <= items and len(set(mine.tolist())) == mine.size
            clicked |= set(mine.tolist())


def test_preflight_is_reproducible_and_seeded(world):
    a, _, _ = _run(world, seed=5)
    b, _, _ = _run(world, seed=5)
    c, _, _ = _run(world, seed=6)
    np.testing.assert_array_equal(a.imp_items, b.imp_items)
    np.testing.assert_array_equal(a.fb_imp, b.fb_imp)
    assert not np.array_equal(a.fb_imp, c.fb_imp) or not np.array_equal(a.imp_items, c.imp_items)


def test_preflight_readout_sees_the_dpp_arm_more_diverse(world):
    log, _, _ = _run(world, rounds=2)
    vec = world[1][1].reranker.item_vectors_
    res = readout(log, vec, n_bootstrap=200)
    d = res["differences"]["dpp"]["ilad"]
    assert d["diff"] > 0 and d["excludes_zero"]


def test_ground_truth_is_z_scored_per_user(world):
    z = ground_truth_preferences(world[0], factors=6, seed=1)
    assert z.shape == (world[0].n_users, world[0].n_items)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-3)


def test_knob_of_live_only_settings():
    assert preflight_knob("dpp", 0.3) == (0.3, None)
    assert preflight_knob("none", "auto") == (0.0, None)
    knob, note = preflight_knob("dpp", "auto")
    assert knob == 0.5 and "live-only" in note


def test_bad_preflight_arguments(world):
    data, pipes = world
    choice = user_model(data, seed=0)
    with pytest.raises(ValueError, match="same length"):
        preflight(["a", "b"], "a", np.array([0.5, 0.5]), pipes, [0, 0], np.arange(3),
                  np.zeros(2, int), choice, pipes[0].user_items_)  # fmt: skip
    with pytest.raises(ValueError, match="rounds"):
        preflight(["a", "b"], "a", np.array([0.5, 0.5]), pipes, [0, 0], np.arange(3),
                  np.zeros(3, int), choice, pipes[0].user_items_, rounds=0)  # fmt: skip
