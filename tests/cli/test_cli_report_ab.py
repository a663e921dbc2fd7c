"""`divrec report ab` and `divrec simulate --arms`: outputs on a small model and log,
one-line errors with exit code 2."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from divrec.cli.main import app
from divrec.serve.arms import Experiment
from divrec.serve.events import Event, EventLog, Impression
from divrec.serve.local import synthetic_config

runner = CliRunner()
CONFIG = synthetic_config(n_users=120, n_items=150, n_topics=6, interactions_per_user=20.0,
                          factors=8, iterations=4, n_candidates=50)  # fmt: skip
EXP = {
    "name": "cli-exp",
    "salt": "s",
    "control": "control",
    "arms": [
        {"name": "control", "share": 0.5, "method": "none"},
        {"name": "dpp", "share": 0.5, "method": "dpp", "diversity": 0.9},
    ],
}


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, fragment):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ab-cli")
    (tmp / "config.toml").write_text(CONFIG)
    res = _run("train", tmp / "config.toml", "--out", tmp / "model")
    assert res.exit_code == 0, res.output
    (tmp / "model" / "experiment.json").write_text(json.dumps(EXP))
    return tmp / "model"


@pytest.fixture(scope="module")
def db(model, tmp_path_factory):
    """A log as the service writes it: 60 users, 3 lists each, clicks on some items."""
    path = tmp_path_factory.mktemp("ab-db") / "events.sqlite"
    exp = Experiment.from_dict(EXP)
    items = [it["id"] for it in json.loads((model / "items.json").read_text())]
    log = EventLog(path)
    log.record_experiment(exp.name, exp.record())
    rng = np.random.default_rng(0)
    now = time.time() - 100
    imps, events = [], []
    for u in range(60):
        arm = exp.assign(str(u)).name
        for r in range(3):
            shown = [items[i] for i in rng.choice(len(items), 5, replace=False)]
            t = now + u + r * 0.1
            imps.append(Impression(f"r{u}-{r}", exp.name, arm, str(u), tuple(shown), "x", None,
                                   False, t))  # fmt: skip
            if rng.random() < 0.5:
                events.append(Event(f"e{u}-{r}", str(u), shown[0], "click", None, t))
    log.submit_impressions(imps).result()
    log.append(events)
    log.close()
    return path


def test_report_ab_writes_the_readout(model, db, tmp_path):
    out = tmp_path / "ab"
    res = _run("report", "ab", "--db", db, "--model-dir", model, "--out", out, "--bootstrap", 100)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"readout.md", "readout.json", "over_time.png"}
    doc = json.loads((out / "readout.json").read_text())
    assert doc["experiment"]["salt"] == "s" and set(doc["arms"]) == {"control", "dpp"}
    assert sum(a["users"] for a in doc["arms"].values()) == 60
    assert sum(a["impressions"] for a in doc["arms"].values()) == 180
    assert doc["feedback"]["unattributed"] == 0
    assert "reference SVD" in doc["settings"]["ilad_space"]
    assert "## dpp − control" in res.output


def test_report_ab_bad_input(model, db, tmp_path):
    out = tmp_path / "never"
    _one_line_error(_run("report", "ab", "--db", tmp_path / "x.sqlite", "-m", model, "-o", out),
                    "--db")  # fmt: skip
    empty = tmp_path / "plain.sqlite"
    EventLog(empty).close()
    _one_line_error(_run("report", "ab", "--db", empty, "-m", model, "-o", out), "no experiment")
    _one_line_error(
        _run("report", "ab", "--db", db, "-m", model, "-o", out, "--experiment", "zz"),
        "experiment 'zz' is not in",
    )
    _one_line_error(
        _run("report", "ab", "--db", db, "-m", model, "-o", out, "--bootstrap", 3), "--bootstrap"
    )
    _one_line_error(_run("report", "ab", "--db", db, "-m", tmp_path, "-o", out), "--model-dir")
    assert not out.exists()


def test_simulate_arms_writes_the_same_readout(model, tmp_path):
    out = tmp_path / "pre"
    res = _run(
        "simulate", "--arms", model / "experiment.json", "--model-dir", model, "--users", 40,
        "--rounds", 2, "--k", 5, "--bootstrap", 100, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "readout.json").read_text())
    assert sum(a["users"] for a in doc["arms"].values()) == 40
    assert sum(a["impressions"] for a in doc["arms"].values()) == 80
    assert doc["notes"][0].startswith("Pre-flight: 40 simulated users")


def test_simulate_arms_bad_input(model, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**EXP, "arms": [{**EXP["arms"][0], "share": 0.7}, EXP["arms"][1]]}))
    out = tmp_path / "never"
    _one_line_error(_run("simulate", "--arms", bad, "--model-dir", model, "--out", out),
                    "field 'arms.*.share': the shares sum to 1.2")  # fmt: skip
    _one_line_error(_run("simulate", "--arms", bad, "--out", out), "--arms and --model-dir")
    unknown = tmp_path / "unknown.json"
    arms = [EXP["arms"][0], {**EXP["arms"][1], "method": "xx"}]
    unknown.write_text(json.dumps({**EXP, "arms": arms}))
    _one_line_error(_run("simulate", "--arms", unknown, "--model-dir", model, "--out", out),
                    "field 'arms.1.method': unknown method 'xx'")  # fmt: skip
    assert not out.exists()


def test_serve_with_a_bad_experiment_is_one_line_before_start(model, tmp_path):
    """`divrec serve` checks the model directory's experiment before anything starts."""
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model, bad)
    doc = dict(EXP, arms=[dict(EXP["arms"][0], share=0.7), EXP["arms"][1]])
    (bad / "experiment.json").write_text(json.dumps(doc))
    db = tmp_path / "events.sqlite"
    _one_line_error(_run("serve", "--model-dir", bad, "--db", db, "--port", 1), "--model-dir")
    assert not db.exists()
