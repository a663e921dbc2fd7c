"""The experiment-file runner (`python -m reproductions.run FILE.toml`) and the CDM / PURS
smoke variants it runs with `--quick`: one command each, resumable, results in one folder."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from reproductions import run
from reproductions.cdm_tables import VAL_LAMBDAS

REPO = Path(__file__).resolve().parents[1]
#: the reproduction experiment files (the others under reproductions/ are `divrec experiment`
#: files, with a [dataset] table instead of [run])
RUN_FILES = sorted(
    p for p in (REPO / "reproductions").glob("*.toml") if "run" in tomllib.loads(p.read_text())
)


def test_the_reproduction_files_are_found():
    names = {p.stem for p in RUN_FILES}
    assert {"cdm_tables", "purs_tables", "graph_loop", "totalrecall_table2"} <= names


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: p.stem)
def test_every_reproduction_file_names_a_script_with_a_quick_variant(path):
    spec = run.load(path)
    module = importlib.import_module(spec["run"]["module"])
    assert callable(module.main)
    for table in ("run", "quick"):
        args = spec[table]["args"]
        assert "--out" in args[:-1], f"{path.name}: {table}.args writes nowhere"
    # the smoke run never writes into the full run's folder
    run_out = spec["run"]["args"][spec["run"]["args"].index("--out") + 1]
    quick_out = spec["quick"]["args"][spec["quick"]["args"].index("--out") + 1]
    assert run_out != quick_out


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "extra", "names"),
    [
        ("[run\nmodule = 1", [], "exp.toml"),
        ('[quick]\nargs = ["--quick"]\n', [], "[run] needs module"),
        ('[run]\nmodule = "os"\n', [], "run.module must be a reproductions"),
        ('[run]\nmodule = "reproductions.cdm_tables"\nargs = ["--seeds", 1]\n', [], "run.args"),
        ('[run]\nmodule = "reproductions.cdm_tables"\nargs = []\n', ["--quick"], "no [quick]"),
        (
            '[run]\nmodule = "reproductions.cdm_tables"\nargs = ["--seeds", "0"]\n',
            ["--out", "x"],
            "no --out to replace",
        ),
    ],
)
def test_bad_experiment_files_are_refused_in_one_line(tmp_path, capsys, text, extra, names):
    path = _write(tmp_path, text)
    assert run.main([str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert names in err and "\n" not in err, err


def test_a_missing_file_is_refused(tmp_path, capsys):
    assert run.main([str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_dry_run_prints_the_command_with_the_out_replaced(tmp_path, capsys):
    path = REPO / "reproductions" / "cdm_tables.toml"
    assert run.main([str(path), "--quick", "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("python -m reproductions.cdm_tables --quick")
    assert line.endswith(f"--out {tmp_path / 'o'}")
    assert "benchmarks/results/cdm_quick" not in line
    assert not (tmp_path / "o").exists()  # nothing run, nothing written


def _smoke(name: str, out: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIVREC_DATA_HOME": str(home), "DIVREC_NO_DOWNLOAD": "1"}
    cmd = [sys.executable, "-m", "reproductions.run", f"reproductions/{name}.toml", "--quick"]
    proc = subprocess.run(
        [*cmd, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_cdm_quick_runs_with_one_command_and_resumes(tmp_path, data_home):
    out = tmp_path / "cdm"
    _smoke("cdm_tables", out, data_home)
    seed_file = out / "seeds" / "cdm_ml-1m_seed0.json"
    summary = json.loads((out / "seeds.json").read_text())
    d = summary["datasets"]["ml-1m"]
    rows = d["rows"]
    for label in ("Popularity", "Random", "DCN", "MMR", "DPP", "SSD", "CDM", "-InfoNCE", "-CCE"):
        assert label in rows, label
    assert "CDM (validation-chosen)" in rows
    # one seed: its value is the seed's own mean, with no interval
    per_seed = json.loads(seed_file.read_text())["results"]
    r = rows["CDM"]["recall@20"]
    assert r["per_seed"] == [per_seed["CDM"]["recall@20"]["mean"]] and r["mean"] == r["per_seed"][0]
    # λ, γ and the student's setting were chosen on validation, from the grids offered
    choice = d["validation_choice"][0]
    assert choice["student_setting"] in {"frozen", "refresh", "as configured"}
    vc = json.loads(seed_file.read_text())["validation_choice"]
    for r in vc["grid"]:  # the objective fixed a priori: recall@20 + weight · ILAD_svd@20
        assert r["objective"] == pytest.approx(r["recall@20"] + vc["weight"] * r["ilad_svd@20"])
    best = max(vc["grid"], key=lambda r: r["objective"])
    assert (choice["lambda"], choice["gamma"]) == (best["lambda"], best["gamma"])
    assert {r["lambda"] for r in vc["grid"]} == set(VAL_LAMBDAS)
    assert any(line.startswith("- (b) CDM more accurate") for line in d["claims"])
    assert (out / "seeds.md").read_text().startswith("# CDM tables over seeds (QUICK")
    # resumable: the seed file is reused as is, and the merge gives the same tables
    before = (seed_file.stat().st_mtime_ns, (out / "seeds.json").read_text())
    again = _smoke("cdm_tables", out, data_home)
    assert "ml-1m seed 0: reused" in again.stdout
    assert seed_file.stat().st_mtime_ns == before[0]
    assert (out / "seeds.json").read_text() == before[1]


def test_purs_quick_runs_with_one_command_and_resumes(tmp_path, data_home):
    out = tmp_path / "purs"
    _smoke("purs_tables", out, data_home)
    npz = out / "movielens_seed0.npz"
    table = json.loads((out / "movielens.json").read_text())["table"]
    for label in ("PURS", "DIN", "DeepFM", "Wide&Deep", "PNN", "Popularity", "Random"):
        assert label in table, label
    for label in ("PURS", "Popularity", "Random"):
        auc = table[label]["AUC"][0]
        assert 0.0 <= auc <= 1.0, (label, auc)
    before = (npz.stat().st_mtime_ns, (out / "movielens.json").read_text())
    again = _smoke("purs_tables", out, data_home)
    assert "MovieLens seed 0 reused" in again.stdout
    assert npz.stat().st_mtime_ns == before[0]
    table_again = json.loads((out / "movielens.json").read_text())["table"]
    assert json.dumps(table_again, sort_keys=True) == json.dumps(table, sort_keys=True)
