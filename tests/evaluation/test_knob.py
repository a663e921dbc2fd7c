"""`divrec.evaluation.knob`: the knob chosen under an accuracy-loss cap, on synthetic data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from divrec import metrics as M
from divrec.data import SyntheticConfig, make_synthetic
from divrec.data.interactions import DataError
from divrec.data.query import Query
from divrec.evaluation.knob import (
    DEFAULT_GRID,
    choose_knob,
    choose_segment_knobs,
    knob_params,
    parse_metric,
    segment_users,
    tune_knob,
    validation_split,
)
from divrec.pipeline.spec import PipelineSpec
from divrec.serve.config import load_config
from divrec.splitting.protocols import random_holdout

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(scope="module")
def split():
    cfg = SyntheticConfig(n_users=120, n_items=100, interactions_per_user=18, seed=3)
    return random_holdout(make_synthetic(cfg).interactions, 0.2, seed=0)


@pytest.fixture(scope="module")
def spec():
    return PipelineSpec.of(
        "ials", "dpp", retriever_params={"factors": 8, "iterations": 4}, n_candidates=25
    )


@pytest.fixture(scope="module")
def choice(split, spec):
    return tune_knob(
        split, spec, max_loss=0.1, grid=GRID, segments="activity:2", n_bootstrap=100, seed=0
    )


def _brute_force(split, spec, grid, seed=0):
    """The validation grid recomputed through `Pipeline.__call__` (no shared candidates)."""
    val = validation_split(split.train, "random", 0.2, seed)
    pipe = spec.build(seed).fit(val.train)
    relevant = val.test.to_csr(binary=True)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    vectors = M.reference_item_vectors(val.train, seed=seed)
    acc, div = [], []
    for d in grid:
        recs = pipe(Query(users=users, diversity=np.full(users.size, d)), None, 10).ids
        hits = M.hits_matrix(recs, relevant[users])
        acc.append(M.ndcg_at_k(hits, np.diff(relevant[users].indptr), 10).mean())
        div.append(np.nanmean(M.ilad(recs, vectors)))
    return np.array(acc), np.array(div)


def test_choice_is_the_most_diverse_feasible_point_of_a_brute_force_grid(split, spec, choice):
    acc, div = _brute_force(split, spec, GRID)
    got = choice.validation
    np.testing.assert_allclose([p["accuracy"] for p in got], acc, rtol=1e-9)
    np.testing.assert_allclose([p["diversity"] for p in got], div, rtol=1e-9)
    loss = 1 - acc / acc[0]
    feasible = [i for i in range(len(GRID)) if loss[i] <= 0.1]
    best = max(feasible, key=lambda i: (div[i], -i))
    assert choice.knob == GRID[best]
    assert loss[best] <= 0.1  # the cap holds on validation by construction
    assert [p["chosen"] for p in got] == [i == best for i in range(len(GRID))]
    assert [p["feasible"] for p in got] == [loss[i] <= 0.1 for i in range(len(GRID))]


def test_test_report_has_cis_and_both_verdicts(choice):
    test = choice.test
    loss = test["relative_loss"]
    assert loss["ci_low"] <= loss["mean"] <= loss["ci_high"]
    assert test["within_cap"] == (loss["mean"] <= 0.1)
    assert test["ci_upper_within_cap"] == (loss["ci_high"] <= 0.1)
    acc = test["accuracy"]
    assert loss["mean"] == pytest.approx(1 - acc["chosen"]["mean"] / acc["relevance"]["mean"])
    assert choice.params == {"theta": pytest.approx(1 - choice.knob)}


def test_segment_choice_meets_the_global_cap_and_beats_the_global_knob(choice):
    seg = choice.segments
    assert seg is not None and len(seg["knobs"]) == 2
    assert seg["validation"]["relative_loss"] <= 0.1 + 1e-12
    chosen = next(p for p in choice.validation if p["chosen"])
    assert seg["validation"]["diversity"] >= chosen["diversity"] - 1e-12
    assert "relative_loss" in seg["test"]


def test_upper_rule_holds_the_validation_ci_to_the_cap(split, spec, choice):
    c = tune_knob(
        split, spec, max_loss=0.1, grid=GRID, segments="activity:2", n_bootstrap=100,
        rule="upper",
    )  # fmt: skip
    pts = c.validation
    # the same resamples as the point rule's run: the same CIs
    assert [p["relative_loss_ci_high"] for p in pts] == [
        p["relative_loss_ci_high"] for p in choice.validation
    ]
    feasible = [p for p in pts if p["knob"] == 0 or p["relative_loss_ci_high"] <= 0.1]
    assert [p["feasible"] for p in pts] == [p in feasible for p in pts]
    best = max(feasible, key=lambda p: (p["diversity"], -p["knob"]))
    assert c.knob == best["knob"]
    assert best["diversity"] <= next(p for p in choice.validation if p["chosen"])["diversity"]
    seg = c.segments["validation"]
    assert seg["relative_loss_ci_high"] <= 0.1
    assert c.validation_info["rule"] == "upper"


def test_tiny_cap_gives_knob_zero(split, spec):
    c = tune_knob(split, spec, max_loss=1e-9, grid=GRID, n_bootstrap=0, rule="point")
    assert c.knob == 0.0
    assert c.test["relative_loss"]["mean"] == 0.0
    assert c.test["ci_upper_within_cap"] is None


def test_written_config_loads(tmp_path, choice):
    path = tmp_path / "train.toml"
    path.write_text(choice.train_config("ml-100k"))
    cfg = load_config(path)
    assert cfg.pipeline.reranker.name == "dpp"
    assert cfg.pipeline.reranker.params["theta"] == pytest.approx(1 - choice.knob)
    assert cfg.pipeline.retriever.params == {"factors": 8, "iterations": 4}
    assert cfg.pipeline.n_candidates == 25


def test_choose_knob_rules():
    grid = (0.0, 0.5, 1.0)
    # ties in diversity go to the smaller knob; infeasible points are skipped
    assert choose_knob(grid, [1.0, 0.96, 0.5], [0.2, 0.4, 0.9], 0.05)[0] == 1
    assert choose_knob(grid, [1.0, 0.99, 0.99], [0.2, 0.4, 0.4], 0.05)[0] == 1
    assert choose_knob(grid, [1.0, 0.5, 0.5], [0.2, 0.4, 0.9], 0.05)[0] == 0
    with pytest.raises(ValueError, match="relevance-only accuracy"):
        choose_knob(grid, [0.0, 0.0, 0.0], [0.1, 0.2, 0.3], 0.05)


def test_segment_search_matches_enumeration():
    rng = np.random.default_rng(0)
    u, g, s = 60, 4, 3
    acc = np.sort(rng.random((u, g)), axis=1)[:, ::-1]
    div = np.sort(rng.random((u, g)), axis=1)
    seg = rng.integers(0, s, size=u)
    got, info = choose_segment_knobs(seg, s, acc, div, 0.1)
    best = None
    for combo in itertools.product(range(g), repeat=s):
        a = sum(acc[seg == k, combo[k]].sum() for k in range(s))
        d = sum(div[seg == k, combo[k]].sum() for k in range(s)) / u
        if 1 - a / acc[:, 0].sum() <= 0.1 and (best is None or d > best[0] + 1e-15):
            best = (d, combo)
    assert got == best[1]
    assert info["relative_loss"] <= 0.1


def test_segments_are_activity_quantiles(split):
    seg, edges = segment_users(split.train, 3)
    counts = split.train.user_counts()
    assert len(edges) == 2 and seg.min() >= 0 and seg.max() <= 2
    for a, b in zip(counts, seg, strict=True):
        assert b == sum(a > e for e in edges)


def test_parse_and_knob_params(spec):
    assert parse_metric("ndcg@10", "accuracy") == ("ndcg", 10)
    with pytest.raises(ValueError, match="unknown accuracy metric"):
        parse_metric("auc@10", "accuracy")
    with pytest.raises(ValueError, match="name@k"):
        parse_metric("ilad", "diversity")
    assert knob_params(spec, 0.3) == {"theta": pytest.approx(0.7)}
    assert DEFAULT_GRID[:3] == (0.0, 0.05, 0.1) and DEFAULT_GRID[-1] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accuracy_metric": "auc@10"}, "unknown accuracy metric"),
        ({"diversity_metric": "ndcg@10"}, "unknown diversity metric"),
        ({"max_loss": 0.0}, "max_loss must be in (0, 1)"),
        ({"max_loss": 1.0}, "max_loss must be in (0, 1)"),
        ({"grid": [0.0, 1.5]}, "grid"),
        ({"segments": "genre:3"}, "activity:S"),
        ({"protocol": "ncf"}, "full-ranking protocol"),
        ({"rule": "median"}, "rule must be one of"),
        ({"rule": "upper", "n_bootstrap": 0}, "needs bootstrap"),
    ],
)
def test_bad_inputs_fail_before_fitting(split, spec, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tune_knob(split, spec, **kwargs)


@pytest.mark.parametrize("name", ["category-cap", "cf-dm", "hybrid"])
def test_reranker_without_knob_fails(split, spec, name):
    with pytest.raises(ValueError, match="no diversity knob"):
        tune_knob(split, spec.with_stage("reranker", name))


def test_pipeline_without_reranker_fails(split, spec):
    with pytest.raises(ValueError, match="no re-ranker"):
        tune_knob(split, spec.with_stage("reranker", None))


def test_empty_split_fails(split, spec):
    from divrec.splitting import Split

    empty = Split(train=split.train, test=split.test.select(np.zeros(split.test.nnz, bool)))
    with pytest.raises(DataError, match="no test rows"):
        tune_knob(empty, spec)
