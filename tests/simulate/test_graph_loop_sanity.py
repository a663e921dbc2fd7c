"""reproductions/graph_loop.py: the sanity rows join table1 without changing the other rows,
and re-writing the main outputs keeps the other steps' per-seed files."""

from __future__ import annotations

import json

import numpy as np

from divrec.simulate.report import METRICS
from reproductions import graph_loop as gl


def _run(pipeline: str, seed: int) -> dict:
    rng = np.random.default_rng([seed, len(pipeline)])
    keys = {gl.COLUMN_KEYS.get(m, m) for m in gl.TABLE_METRICS} | set(METRICS)
    rounds = [{k: float(rng.uniform(0.5, 1.5)) for k in keys} for _ in range(3)]
    for r in rounds:
        r["theta"], r["seconds"] = {}, {"total": 1.0}
    return {"pipeline": pipeline, "rounds": rounds}


def _write(path, runs) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "runs.json").write_text(json.dumps(runs))


def test_table_adds_the_sanity_rows_and_keeps_the_others(tmp_path):
    main = [_run(p, s) for p in ("base", "ours") for s in range(3)]
    _write(tmp_path, main)
    _write(tmp_path / "ablation", [_run("graph-dpp", s) for s in range(3)])
    gl.table(tmp_path)
    before = (tmp_path / "table1.md").read_text().splitlines()
    sanity = [_run(label, s) for label in gl.SANITY for s in range(3)]
    _write(tmp_path / "sanity", sanity)
    gl.table(tmp_path)
    after = (tmp_path / "table1.md").read_text().splitlines()
    new = [line for line in after if line not in before]
    assert [line for line in before if line not in after] == []  # nothing changed or went
    # the new table rows, plus the generated reading of the sanity feeds under the claims
    reading = [line for line in new if line.startswith(("Sanity feeds:", "The random feed:"))]
    assert len(reading) == 2
    assert new and all("(sanity)" in line for line in new if line not in reading and line)
    assert sum("random (sanity)" in line for line in new) == 3  # final, first, all-round clicks
    res = json.loads((tmp_path / "table1.json").read_text())
    assert set(gl.SANITY) <= set(res["final"]) and set(gl.SANITY) <= set(res["all_rounds_clicks"])
    # paired % vs base, by hand for one cell
    base = [r for r in main if r["pipeline"] == "base"]
    rel = [
        100 * (s["rounds"][-1]["clicks"] / b["rounds"][-1]["clicks"] - 1)
        for s, b in zip(sanity[:3], base, strict=True)
    ]
    assert np.isclose(res["final"]["random (sanity)"]["clicks"]["mean"], np.mean(rel))


def test_write_keeping_keeps_what_write_outputs_does_not_write(tmp_path, monkeypatch):
    # the plots are write_outputs' own business (and most of its time): not drawn here
    monkeypatch.setattr("divrec.simulate.report.plot_rounds", lambda summary, out: None)
    out = tmp_path / "out"
    for sub in ("seeds", "ablation/seeds", "sanity/seeds"):
        (out / sub).mkdir(parents=True)
        (out / sub / "seed_0.json").write_text("{}")
    (out / "table1.md").write_text("old table")
    (out / "report.md").write_text("old report")
    gl.write_keeping([_run("base", 0)], out, "title", "notes")
    for sub in ("seeds", "ablation/seeds", "sanity/seeds"):
        assert (out / sub / "seed_0.json").read_text() == "{}"
    assert (out / "table1.md").read_text() == "old table"
    assert (out / "report.md").read_text() != "old report"  # written anew
    assert json.loads((out / "runs.json").read_text())[0]["pipeline"] == "base"
    assert not list(tmp_path.glob(".out.keep-*"))  # nothing left aside


def test_resumable_seeds_runs_missing_seeds_and_reuses_finished_ones(tmp_path, capsys):
    from types import SimpleNamespace

    args = SimpleNamespace(seed_start=1, seeds=3)
    seed_dir = tmp_path / "x" / "seeds"
    seed_dir.mkdir(parents=True)
    (seed_dir / "seed_2.json").write_text(json.dumps({"meta": {}, "runs": [_run("old", 2)]}))
    ran = []

    def run_seed(seed):
        ran.append(seed)
        return [_run("base", seed), _run("ours", seed)]

    runs = gl.resumable_seeds(args, seed_dir, run_seed, label="x ", meta={"users": 7})
    assert ran == [1, 3]  # seed 2 reused, not run
    assert [r["pipeline"] for r in runs] == ["base", "ours", "old", "base", "ours"]
    saved = json.loads((seed_dir / "seed_3.json").read_text())
    assert list(saved["meta"]) == ["seconds", "loadavg", "users"] and saved["meta"]["users"] == 7
    assert saved["runs"] == runs[3:]
    assert f"x seed 2: reused {seed_dir / 'seed_2.json'}" in capsys.readouterr().out
    assert gl.resumable_seeds(args, seed_dir, run_seed) == runs and ran == [1, 3]  # all reused


def test_report_labels_secondary_columns_last_and_states_the_claims(tmp_path, monkeypatch):
    from divrec.simulate.report import REPORT_COLUMNS, SECONDARY

    monkeypatch.setattr("divrec.simulate.report.plot_rounds", lambda summary, out: None)
    runs = [_run(p, s) for p in ("base", "ours") for s in range(3)]
    for r in runs[3:]:  # ours: more clicks than base in every round of every seed
        for x in r["rounds"]:
            x["clicks"] *= 2.0
    gl.write_keeping(runs, tmp_path, "title", "notes")
    head = next(
        line for line in (tmp_path / "report.md").read_text().splitlines() if "| pipeline" in line
    )
    cols = [c.strip() for c in head.strip("|").split("|")][1:]
    # fixed-space / system-level columns first, the own-space and per-user ones labelled last
    n = len(REPORT_COLUMNS) - len(SECONDARY)
    assert cols[:n] == [m for m in REPORT_COLUMNS if m not in SECONDARY]
    assert cols[n:] == [f"{m} ({SECONDARY[m]})" for m in REPORT_COLUMNS[n:]]
    assert "ilad_graph (own space)" in cols and "retrieval_ilad_svd (per-user)" in cols

    gl.table(tmp_path)
    gl.table(tmp_path)  # a rebuild replaces the section, never adds a second one
    report = (tmp_path / "report.md").read_text()
    assert report.count(gl.REPORT_CLAIMS) == 1
    section = report.split(gl.REPORT_CLAIMS)[1]
    assert "[table1.md](table1.md)" in section
    rows = gl._claims_rows(json.loads((tmp_path / "table1.json").read_text()))
    assert {r["variant"] for r in rows} == {"ours"}
    assert {r["what"] for r in rows if r["holds"] == "yes"} >= {"clicks, all rounds"}
    for r in rows:  # every claim is in the plain list of its verdict and in the table
        word = {"yes": "- holds:", "no": "- does not hold:"}.get(r["holds"], "- not judged")
        line = next(x for x in section.splitlines() if x.startswith(word))
        assert f"ours {r['claim']} ({r['what']})" in line
        assert f"| ours: {r['claim']} ({r['paper']}) | {r['what']}: {r['verdict']} |" in section
    # table1.md holds the same claims table, and report.md does not change it
    table = section.split("| claim (paper")[1].strip()
    assert table in (tmp_path / "table1.md").read_text()
