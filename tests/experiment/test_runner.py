"""The runner on a tiny synthetic log: the results.json schema, the report regenerated from
the JSON, sanity rows, convergence flags, and resuming (an interrupted run, continued, writes
the same results as an uninterrupted one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from divrec.experiment import (
    ExperimentError,
    load_experiment,
    render_report,
    run_experiment,
    strip_volatile,
)
from divrec.experiment.runner import _convergence, _schedule, relative_gain
from tests.experiment.conftest import BASE


class Stop(Exception):
    """Raised by the test hook to cut a run short."""


@pytest.fixture(scope="module")
def exp_file(tmp_path_factory, synthetic_csv) -> Path:
    path = tmp_path_factory.mktemp("exp") / "tiny.toml"
    path.write_text(BASE.format(csv=synthetic_csv))
    return path


@pytest.fixture(scope="module")
def full_run(exp_file, tmp_path_factory):
    """One uninterrupted run: (output folder, results as written)."""
    out = tmp_path_factory.mktemp("full") / "out"
    run_experiment(load_experiment(exp_file), out, progress=False)
    return out, json.loads((out / "results.json").read_text())


def test_results_schema(full_run):
    out, res = full_run
    assert {p.name for p in out.iterdir()} >= {
        "results.json", "report.md", "pareto.png", "validation_curves.png", ".state",
    }  # fmt: skip
    names = [e["name"] for e in res["entries"]]
    assert names == ["ials", "ials+dpp", "itemknn", "random", "popularity"]
    assert res["baseline"] == "ials"
    assert res["metrics"] == ["ndcg@10", "recall@10", "ilad@10"]
    assert len(res["dataset"]["fingerprint"]) == 64
    assert {"numpy", "divrec"} <= set(res["environment"]["packages"])
    for e in res["entries"]:
        # the minimal schema `divrec compare` reads
        assert e["seeds"] == [0, 1, 2]
        users = e["users"]
        assert users == res["entries"][0]["users"] and len(users) > 50
        for m in res["metrics"]:
            rows = e["per_user"][m]
            assert len(rows) == 3 and all(len(r) == len(users) for r in rows)
            s = e["summary"][m]
            assert s["per_seed"] == pytest.approx([np.mean(r) for r in rows])
            assert s["ci_low"] <= s["mean"] <= s["ci_high"]
        if e["name"] != "popularity":  # resolved: every field spelled out
            assert "seed" in e["spec"]["retriever"]["params"] or e["name"] == "itemknn"
        assert (e["name"] == "ials") == (e["vs_baseline"] == {})
        assert e["sanity"] == (e["name"] in ("random", "popularity"))
        assert e["tuning"]["trials_run"] == (3 if e["name"] in ("ials", "ials+dpp") else 1)
        assert e["timing"]["final_wall_seconds"] and e["timing"]["tuning_cpu_seconds"] >= 0
    dpp = res["entries"][1]
    # the chosen params are applied to the resolved spec, and are the best validation trial
    best = max(dpp["tuning"]["trials"], key=lambda t: t["value"])
    assert dpp["chosen_params"] == best["params"]
    assert dpp["spec"]["reranker"]["params"]["theta"] == best["params"]["reranker.theta"]
    assert "paired t-test" in res["statistics"]["paired"]
    comp = dpp["vs_baseline"]["ndcg@10"]
    assert comp["diff"] == pytest.approx(
        dpp["summary"]["ndcg@10"]["mean"] - res["entries"][0]["summary"]["ndcg@10"]["mean"]
    )


def test_report_is_generated_from_the_json(full_run):
    out, res = full_run
    report = (out / "report.md").read_text()
    assert render_report(res) == report
    assert "paired t-test" in report and "(sanity)" in report and "(baseline)" in report
    assert "## Convergence" in report and "![Pareto front](pareto.png)" in report


def test_convergence_is_flagged(full_run):
    _, res = full_run
    conv = {e["name"]: e["convergence"] for e in res["entries"]}
    # iALS with 2 sweeps is still far from converged on validation
    assert conv["ials"]["status"] == "still improving"
    check = conv["ials"]["checks"][0]
    assert check["epochs"] == [1, 2] and check["relative_gain"] > 0.01
    assert conv["itemknn"]["status"] == "not iterative"
    assert conv["popularity"]["status"] == "not iterative"


def test_convergence_rules():
    assert _schedule(15, 0.1) == [1, 4, 8, 12, 13, 15]
    assert _schedule(2, 0.1) == [1, 2]
    assert relative_gain([0.1, 0.2, 0.3], [1, 5, 10], 0.1, higher=True) == pytest.approx(0.5)
    assert relative_gain([2.0, 1.0, 0.99], [1, 9, 10], 0.1, higher=False) == pytest.approx(0.01)
    config = load_experiment_stub()
    units = [
        {"seed": 0, "losses": {"retriever": {"train": [4.0, 2.0, 1.0, 0.5], "valid": []}}},
        {"seed": 1, "losses": {"retriever": {"train": [4.0, 2.0, 1.0, 1.0], "valid": []}}},
    ]
    out = _convergence(config, {"curves": []}, units)
    assert out["status"] == "still improving"
    assert [s["still_improving"] for s in out["checks"][0]["per_seed"]] == [True, False]


def load_experiment_stub():
    from divrec.experiment.config import parse_experiment

    return parse_experiment(
        {
            "experiment": {"dataset": "ml-100k"},
            "entries": [{"name": "a", "pipeline": {"retriever": "popularity"}}],
        }
    )


def test_interrupted_run_resumes_to_identical_results(exp_file, full_run, tmp_path):
    _, expected = full_run
    out = tmp_path / "out"
    seen = []

    def stop_after_7(key):
        seen.append(key)
        if len(seen) == 7:
            raise Stop(key)

    config = load_experiment(exp_file)
    with pytest.raises(Stop):
        run_experiment(config, out, progress=False, on_unit=stop_after_7)
    assert not (out / "results.json").exists()
    assert len(list((out / ".state" / "units").glob("*.json"))) == 7
    computed = []
    (res,) = run_experiment(config, out, progress=False, on_unit=computed.append)
    assert res["run"]["units_resumed"] == 7
    assert not set(computed) & set(seen)  # finished units are not recomputed
    again = json.loads((out / "results.json").read_text())
    assert strip_volatile(again) == strip_volatile(expected)
    # a rerun of a finished experiment computes nothing
    computed.clear()
    run_experiment(config, out, progress=False, on_unit=computed.append)
    assert computed == []


def test_other_config_refuses_to_resume(exp_file, full_run, tmp_path):
    out = tmp_path / "out"
    config = load_experiment(exp_file)
    changed = exp_file.parent / "changed.toml"
    changed.write_text(exp_file.read_text().replace("seeds = 3", "seeds = 2"))
    with pytest.raises(Stop):
        run_experiment(load_experiment(changed), out, progress=False, on_unit=_stop_at_once)
    with pytest.raises(ExperimentError, match="another experiment config"):
        run_experiment(config, out, progress=False)
    with pytest.raises(Stop):  # --fresh discards the old units and starts over
        run_experiment(config, out, progress=False, fresh=True, on_unit=_stop_at_once)


def _stop_at_once(key):
    if key.startswith("tune/"):
        raise Stop(key)


def test_sigterm_then_rerun_with_the_cli(exp_file, full_run, tmp_path):
    """`divrec experiment run` killed by SIGTERM partway exits 130; the same command then
    finishes with the uninterrupted run's results."""
    _, expected = full_run
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "divrec.cli.main", "experiment", "run", str(exp_file),
           "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    units = out / ".state" / "units"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if units.exists() and len(list(units.glob("*.json"))) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "divrec: interrupted" in err.decode()
    n_done = len(list(units.glob("*.json")))
    assert 5 <= n_done < 5 * (1 + 1 + 3) and not (out / "results.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    res = json.loads((out / "results.json").read_text())
    assert res["run"]["units_resumed"] == n_done
    assert strip_volatile(res) == strip_volatile(expected)


class _FakeMlflow:
    """Records the calls the tracking code makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return self

        return record

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_mlflow_is_used_when_installed(exp_file, full_run, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)
    fake = _FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    computed = []
    run_experiment(load_experiment(exp_file), out, progress=False, on_unit=computed.append)
    assert computed == []  # resumed entirely; tracking runs at the end
    names = [c[0] for c in fake.calls]
    assert names.count("start_run") == 1 + 5  # the experiment, and one nested run per entry
    assert "log_artifact" in names and "log_metrics" in names
    metrics = [c[1][0] for c in fake.calls if c[0] == "log_metrics"]
    assert any("ndcg_at_10.mean" in m for m in metrics)


def test_tracking_off_and_absent(exp_file, full_run, tmp_path, monkeypatch):
    import shutil

    from divrec.experiment.tracking import log_to_mlflow

    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    assert log_to_mlflow(full_run[1], full_run[0]) is False
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)
    fake = _FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    off = exp_file.parent / "off.toml"
    off.write_text(exp_file.read_text().replace("seeds = 3", 'seeds = 3\ntracking = "off"'))
    computed = []  # tracking is not part of the results: the saved units are reused
    run_experiment(load_experiment(off), out, progress=False, on_unit=computed.append)
    assert computed == [] and fake.calls == []
