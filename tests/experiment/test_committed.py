"""The committed ML-100K experiment: its report is the one generated from its results.json,
and the kill-and-resume check recorded next to it found identical results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from divrec.cli.main import app
from divrec.experiment import load_experiment, render_report

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "results" / "experiment_ml100k"


@pytest.fixture(scope="module")
def committed() -> dict:
    if not (RUN / "results.json").exists():
        pytest.skip("no committed ML-100K experiment")
    return json.loads((RUN / "results.json").read_text())


def test_report_regenerates_from_the_json(committed):
    assert render_report(committed) == (RUN / "report.md").read_text()
    result = CliRunner().invoke(app, ["experiment", "report", str(RUN / "results.json")])
    assert result.exit_code == 0 and result.output == (RUN / "report.md").read_text()


def test_committed_run_matches_its_file(committed):
    config = load_experiment(ROOT / "experiments" / "ml100k_example.toml")
    assert committed["experiment"] == config.to_json()
    assert [e["name"] for e in committed["entries"]] == [
        "ials", "ials+dpp", "itemknn", "random", "popularity",
    ]  # fmt: skip
    assert all(e["seeds"] == [0, 1, 2, 3, 4] for e in committed["entries"])
    check = json.loads((RUN / "resume_check.json").read_text())
    assert check["results_identical_except_timing"] is True
    assert check["killed_exit_code"] == 130
    assert 0 < check["units_saved_when_killed"] < check["units_total"]
    assert check["rerun_units_resumed"] == check["units_saved_when_killed"]
