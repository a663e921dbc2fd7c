"""Experiment files: what a valid file parses to, and every kind of bad input as one line
naming the file and the key, exit code 2, before any training (nothing written)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from divrec.cli.main import app
from divrec.experiment import ExperimentError, load_experiment
from divrec.experiment.config import entry_grid
from tests.experiment.conftest import BASE

runner = CliRunner()


def test_valid_file_parses(write_exp):
    config = load_experiment(write_exp())
    names = [e.name for e in config.entries]
    assert names == ["ials", "ials+dpp", "itemknn", "random", "popularity"]
    assert [e.sanity for e in config.entries] == [False, False, False, True, True]
    assert config.seeds == (0, 1, 2)
    assert config.baseline == "ials"
    dim = config.entry("ials").search[0]
    assert (dim.key, dim.kind, dim.low, dim.high, dim.log) == (
        "retriever.regularization",
        "float",
        0.01,
        1.0,
        True,
    )
    assert config.entry("ials+dpp").search[0].values == (0.3, 0.9)
    assert config.objective(config.entry("ials+dpp")).label == "1·ndcg@10 + 0.2·ilad@10"
    assert config.objective(config.entry("itemknn")).label == "ndcg@10"
    # the fingerprint is a function of the normalized content
    assert config.fingerprint() == load_experiment(write_exp(name="copy.toml")).fingerprint()


def test_json_form_and_grid_points(tmp_path, synthetic_csv):
    import json

    raw = {
        "experiment": {
            "dataset": str(synthetic_csv),
            "tuning": {"method": "grid", "trials": 4},
            "sanity": False,
        },
        "entries": [
            {
                "name": "knn",
                "pipeline": {"retriever": "itemknn"},
                "search": {"retriever.neighbors": {"low": 10, "high": 30, "step": 10},
                           "retriever.shrink": [0.0, 5.0]},
            }
        ],
    }  # fmt: skip
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(raw))
    config = load_experiment(path)
    assert [e.name for e in config.entries] == ["knn"]
    grid = entry_grid(config.entries[0])
    assert grid[:2] == [
        {"retriever.neighbors": 10, "retriever.shrink": 0.0},
        {"retriever.neighbors": 10, "retriever.shrink": 5.0},
    ]
    assert len(grid) == 6


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BAD = {
    "unknown entry key": (
        _sub('name = "itemknn"', 'name = "itemknn"\nfoo = 1'),
        "unknown key 'entries[2].foo'",
    ),
    "unknown experiment key": (_sub("seeds = 3", "seedz = 3"), "unknown key 'experiment.seedz'"),
    "unknown top-level key": (BASE + "\n[extra]\na = 1\n", "unknown key 'extra'"),
    "unknown model": (
        _sub('retriever = "itemknn"', 'retriever = "nope"'),
        "'entries[2].pipeline'",
        "unknown model 'nope'",
    ),
    "unknown parameter": (
        _sub("factors = 8, iterations = 2}}}}}}", "factorz = 8}}}}}}"),
        "'entries[0].pipeline'",
        "factorz",
    ),
    "fixed value of the wrong type": (
        _sub("factors = 8, iterations = 2}}}}}}", 'factors = "many"}}}}}}'),
        "'entries[0].pipeline.retriever.params' factors='many'",
    ),
    "unknown searched parameter": (
        _sub('"reranker.theta" = [0.3, 0.9]', '"reranker.thet" = [0.3, 0.9]'),
        "unknown parameter 'entries[1].search.reranker.thet'",
    ),
    "searched stage missing": (
        _sub(
            'pipeline = {{retriever = "itemknn"}}',
            'pipeline = {{retriever = "itemknn"}}\nsearch = {{"reranker.theta" = [0.5]}}',
        ),
        "'entries[2].search.reranker.theta' names the reranker",
    ),  # fmt: skip
    "search values of the wrong type": (
        _sub('"reranker.theta" = [0.3, 0.9]', '"reranker.theta" = ["low", "high"]'),
        "'entries[1].search.reranker.theta[0]'",
        "expected float",
    ),
    "search value out of range": (
        _sub('"reranker.theta" = [0.3, 0.9]', '"reranker.theta" = [0.3, 1.5]'),
        "'entries[1].search.reranker.theta' value 1.5",
    ),
    "search space not a list or a range": (
        _sub('"reranker.theta" = [0.3, 0.9]', '"reranker.theta" = "0.5"'),
        "'entries[1].search.reranker.theta' must be a list of values or a table",
    ),
    "range over a non-numeric parameter": (
        _sub(
            '"reranker.theta" = [0.3, 0.9]', '"reranker.relevance_scaling" = {{low = 0, high = 1}}'
        ),
        "'entries[1].search.reranker.relevance_scaling' is a range",
    ),  # fmt: skip
    "float range over an integer parameter": (
        _sub(
            "{{low = 0.01, high = 1.0, log = true}}", '{{low = 1.0, high = 9.0, type = "float"}}'
        ).replace("retriever.regularization", "retriever.factors"),
        "'entries[0].search.retriever.factors.type' is 'float'",
    ),
    "unknown range key": (
        _sub("log = true}}", "log = true, steps = 2}}"),
        "unknown key 'entries[0].search.retriever.regularization.steps'",
    ),
    "grid over a float range without a step": (
        _sub('method = "tpe"', 'method = "grid"'),
        "'entries[0].search.retriever.regularization': a grid search needs",
    ),
    "bad objective": (
        _sub('objective = "ndcg@10"', 'objective = "ndcg@20"'),
        "'experiment.tuning.objective' names 'ndcg@20'",
    ),
    "unknown metric": (_sub('"ilad"]', '"ilad", "serendipity"]'), "'experiment.metrics[3]'"),
    "baseline not an entry": (
        _sub('baseline = "ials"', 'baseline = "als"'),
        "'experiment.baseline' 'als' is not an entry",
    ),
    "duplicate entry name": (
        _sub('name = "itemknn"', 'name = "ials"'),
        "'entries[2].name' 'ials' is used twice",
    ),
    "unknown protocol": (_sub('protocol = "random"', 'protocol = "rand"'), "experiment.protocol"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_line_before_training(case, write_exp, tmp_path):
    text, *fragments = BAD[case]
    path = write_exp(text)
    out = tmp_path / "out"
    result = runner.invoke(app, ["experiment", "run", str(path), "--out", str(out)])
    _one_line_error(result, str(path), *fragments)
    assert not out.exists()
    with pytest.raises(ExperimentError):
        load_experiment(path)


def test_empty_dataset_is_one_line_before_training(write_exp, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id\n")
    path = write_exp(BASE.format(csv=empty))
    out = tmp_path / "out"
    result = runner.invoke(app, ["experiment", "run", str(path), "--out", str(out)])
    _one_line_error(result, str(path), "'experiment.dataset'", "empty.csv")
    assert not out.exists()


def test_unreadable_and_malformed_files(tmp_path):
    missing = tmp_path / "missing.toml"
    _one_line_error(runner.invoke(app, ["experiment", "run", str(missing)]), "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[experiment\n")
    _one_line_error(runner.invoke(app, ["experiment", "run", str(broken)]), "broken.toml")


def test_check_command(write_exp):
    result = runner.invoke(app, ["experiment", "check", str(write_exp())])
    assert result.exit_code == 0, result.output
    assert "baseline: ials" in result.output
    assert "popularity (sanity)" in result.output
