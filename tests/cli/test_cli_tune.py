"""`divrec tune`: the outputs of a small run, and one-line errors (exit 2) before any work."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from divrec.cli.main import app
from divrec.data import SyntheticConfig, make_synthetic
from divrec.serve.config import load_config

runner = CliRunner()
COLS = "user=user_id,item=item_id,timestamp=timestamp"
SMALL = ["--param", "factors=8", "--param", "iterations=3", "--candidates", "20"]


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    cfg = SyntheticConfig(n_users=100, n_items=80, interactions_per_user=15, seed=5)
    d = make_synthetic(cfg).interactions
    path = tmp_path_factory.mktemp("tune") / "log.csv"
    frame = {
        "user_id": d.user_ids[d.users],
        "item_id": d.item_ids[d.items],
        "timestamp": d.timestamps,
    }
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


def _run(*args):
    return runner.invoke(app, ["tune", *[str(a) for a in args]])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_tune_writes_report_and_a_loadable_config(tmp_path, log_csv):
    out = tmp_path / "out"
    result = _run(
        "-d", log_csv, "--columns", COLS, *SMALL, "--grid", "0,0.5,1", "--max-loss", "0.2",
        "--segments", "activity:2", "--bootstrap", "50", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "chosen knob d =" in result.output and "CI upper bound" in result.output
    assert {p.name for p in out.iterdir()} >= {"tune.json", "tune.md", "train.toml", "tradeoff.png"}
    report = json.loads((out / "tune.json").read_text())
    assert [p["knob"] for p in report["validation"]] == [0.0, 0.5, 1.0]
    chosen = [p for p in report["validation"] if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["knob"] == report["knob"]
    assert chosen[0]["relative_loss"] <= 0.2
    assert report["test"]["relative_loss"]["ci_high"] is not None
    assert len(report["segments"]["knobs"]) == 2
    assert len(report["data_fingerprint"]) == 64
    cfg = load_config(out / "train.toml")
    assert cfg.pipeline.reranker.params["theta"] == pytest.approx(1 - report["knob"])
    assert cfg.pipeline.retriever.params == {"factors": 8, "iterations": 3}
    assert cfg.dataset == str(log_csv.resolve())
    assert dict(cfg.columns) == dict(p.split("=") for p in COLS.split(","))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--accuracy-metric", "auc@10"], "unknown accuracy metric"),
        (["--diversity-metric", "ilad"], "name@k"),
        (["--max-loss", "0"], "--max-loss must be in (0, 1)"),
        (["--max-loss", "1.5"], "--max-loss must be in (0, 1)"),
        (["--reranker", "category-cap"], "no diversity knob"),
        (["--reranker", "cf-dm"], "no diversity knob"),
        (["--reranker", "hybrid"], "no diversity knob"),
        (["--protocol", "ncf"], "full-ranking protocol"),
        (["--segments", "activity:1"], "[2, 10]"),
        (["--grid", "0,x"], "--grid"),
        (["--rule", "median"], "rule must be one of"),
        (["--rule", "upper", "--bootstrap", "0"], "needs bootstrap"),
        (["--rerank-param", "theta=2"], "theta"),
    ],
)
def test_bad_input_is_one_line_before_any_work(tmp_path, args, fragment):
    out = tmp_path / "out"
    # a dataset that does not exist: a check that ran after loading would say so instead
    result = _run("-d", tmp_path / "absent.csv", *args, "--out", out)
    _one_line_error(result, fragment)
    assert not out.exists()


def test_empty_split_is_one_line(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("user_id,item_id\nu1,i1\n")
    result = _run("-d", path, "--out", tmp_path / "out")
    _one_line_error(result, "no test rows")
    assert not (tmp_path / "out").exists()
