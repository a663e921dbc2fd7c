"""`divrec simulate`: outputs on a small real run, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from divrec.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_simulate_writes_report_json_and_plots(data_home, tmp_path):
    out = tmp_path / "sim"
    result = _run(
        "simulate", "--dataset", "ml-100k", "--users", 15, "--rounds", 2, "--epochs", 1,
        "--update-steps", 1, "--candidates", 20, "--pipeline", "base,ours", "--out", out,
        "--data-home", data_home, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "summary.json", "runs.json", "ilad_graph.png", "theta.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"base", "ours"}
    assert len(summary["ours"]["clicks"]["mean"]) == 2
    assert summary["ours"]["theta_q50"][0] is not None and summary["base"]["theta_q50"][0] is None
    assert "| ours |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--pipeline", "nope"], "--pipeline: unknown"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--dataset", "pinterest"], "unknown simulator dataset"),
        (["--boredom", "-1"], "must be >= 0"),
    ],
)
def test_simulate_bad_arguments(args, fragment, tmp_path):
    out = tmp_path / "never"
    result = _run("simulate", *args, "--out", out)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[retriever]\nname = "ials"\n[reranker]\nname = "dpp"\n', "retrieves with 'graph'"),
        ('[retriever]\nname = "graph"\n[reranker]\nname = "nope"\n', "unknown re-ranker 'nope'"),
    ],
)
def test_simulate_bad_pipeline_file(tmp_path, text, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text)
    out = tmp_path / "never"
    result = _run("simulate", "--pipeline", f"base,{path}", "--out", out)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()
