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


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--no-click", "nan"], "--no-click must be a finite number"),
        (["--no-click", "inf"], "--no-click must be a finite number"),
        (["--boredom", "inf"], "--boredom must be a finite number"),
    ],
)
def test_simulate_refuses_non_finite_numbers(args, fragment, tmp_path):
    """`--no-click nan` used to run (click rate 1.000) and exit 0."""
    out = tmp_path / "never"
    result = _run("simulate", *args, "--out", out)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert not out.exists()


def test_simulate_unwritable_or_foreign_out_fails_before_work(tmp_path):
    """An --out that cannot be written (or holds other files) fails at once, not after the
    simulation."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # nothing can be created below a file (even as root)
    result = _run("simulate", "--out", blocker / "sim")
    assert result.exit_code == 2, result.output
    assert "cannot write there" in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x\n")
    result = _run("simulate", "--out", other)
    assert result.exit_code == 2 and "other files" in result.output, result.output


def test_simulate_report_folder_is_replaced_whole(tmp_path, monkeypatch):
    """The report is written to a temporary sibling and swapped in: an error (or a signal)
    while writing keeps the old folder as it was, with no new file beside the old ones."""
    from divrec.simulate import report

    out = tmp_path / "sim"
    out.mkdir()
    (out / "report.md").write_text("old report")
    run = {
        "pipeline": "base",
        "seed": 0,
        "rounds": [{**dict.fromkeys(report.METRICS, 1.0), "theta": {}, "seconds": {"rerank": 0.1}}],
    }

    def boom(summary, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "plot_rounds", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_outputs([run], out, "t")
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["sim"]
    monkeypatch.undo()
    monkeypatch.setattr(report, "plot_rounds", lambda summary, folder: None)
    report.write_outputs([run], out, "t")
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "runs.json", "summary.json"]
    assert (out / "report.md").read_text() != "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["sim"]
