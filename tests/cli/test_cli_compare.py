"""`divrec compare A.json B.json`: two small hand-written experiment results files, end to end
through the main app, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from divrec.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["compare", *[str(a) for a in args]])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _entry(name, seeds, users, per_user):
    return {"name": name, "spec": {"retriever": {"name": name}}, "seeds": seeds,
            "users": users, "per_user": per_user}  # fmt: skip


@pytest.fixture
def runs(tmp_path):
    # A: seeds 0, 1, 2 over users 1..4; B: seeds 1, 2, 3 over users 2..5 (shared: seeds 1, 2
    # and users 2, 3, 4). B's ndcg is A's + 0.1 on the shared cells, recall is equal.
    a_ndcg = [[0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.4, 0.5], [0.3, 0.4, 0.5, 0.6]]
    a_recall = [[0.5, 0.5, 0.5, 0.5], [0.4, 0.6, 0.4, None], [0.5, 0.7, 0.3, 0.5]]
    b_ndcg = [[0.9, 0.9, 0.9, 0.9], [0.4, 0.5, 0.6, 0.0], [0.5, 0.6, 0.7, 0.0]]
    b_recall = [[0.0, 0.0, 0.0, 0.0], [0.6, 0.4, 0.5, 0.0], [0.7, 0.3, 0.5, 0.0]]
    a = {"entries": [
        _entry("base", [0, 1, 2], [1, 2, 3, 4], {"ndcg@10": a_ndcg, "recall@10": a_recall}),
        _entry("other", [0], [1], {"ndcg@10": [[0.0]]}),
    ]}  # fmt: skip
    b = {"entries": [
        _entry("mmr", [3, 1, 2], [2, 3, 4, 5], {"ndcg@10": b_ndcg, "recall@10": b_recall,
                                                "coverage@10": b_recall}),
    ]}  # fmt: skip
    # B's seed rows are in the order 3, 1, 2: row 0 (seed 3) is not shared
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    return pa, pb


def test_compare_end_to_end(runs, tmp_path):
    pa, pb = runs
    out = tmp_path / "cmp" / "out.json"
    result = _run(pa, pb, "--entry", "base", "--bootstrap", 300, "--json", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "shared: 2 seeds of 3 (A) / 3 (B) [1, 2]; 3 users of 4 (A) / 4 (B)" in text
    assert "ndcg@10" in text and "recall@10" in text and "coverage@10" not in text
    assert "t-test" in text
    report = json.loads(out.read_text())
    assert report["shared_seeds"] == [1, 2] and report["n_shared_users"] == 3
    ndcg = report["metrics"]["ndcg@10"]
    # A on seeds 1, 2 and users 2, 3, 4: seed means 0.4 and 0.5
    assert ndcg["a"]["per_seed"] == pytest.approx([0.4, 0.5])
    assert ndcg["a"]["mean"] == pytest.approx(0.45)
    assert ndcg["a"]["sd"] == pytest.approx(math.sqrt(0.005))
    assert ndcg["b"]["per_seed"] == pytest.approx([0.5, 0.6])
    paired = ndcg["paired"]
    assert paired["diff"] == pytest.approx(0.1)
    assert paired["per_seed_diff"] == pytest.approx([0.1, 0.1])
    assert paired["p_value"] == 0.0 and paired["significant"]  # +0.1 on every cell
    assert (paired["n_seeds"], paired["n_users"]) == (2, 3)
    recall = report["metrics"]["recall@10"]
    # A's user 4 is missing under seed 1: seed 1 mean over users 2, 3 only
    assert recall["a"]["per_seed"] == pytest.approx([0.5, 0.5])
    assert recall["paired"]["per_seed_diff"] == pytest.approx([0.0, 0.0])
    assert not recall["paired"]["significant"]
    assert "request_level" in recall


def test_compare_one_metric_and_b_entry_by_name(runs):
    pa, pb = runs
    result = _run(pa, pb, "-e", "base", "--entry-b", "mmr", "--metric", "recall@10",
                  "--bootstrap", 100)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "recall@10" in result.output and "ndcg@10" not in result.output


def test_compare_entries_of_one_file(runs):
    pa, _ = runs
    result = _run(pa, pa, "-e", "base", "--entry-b", "other", "--bootstrap", 50)
    assert result.exit_code == 0, result.output
    assert "1 users of 4 (A) / 1 (B)" in result.output  # user 1, seed 0
    assert "n/a" in result.output  # one seed: no p-value


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["missing.json", "B"], ["missing.json", "no such file"]),
        (["BAD", "B", "-e", "base"], ["not valid JSON"]),
        (["A", "B"], ["2 entries", "--entry"]),
        (["A", "B", "-e", "nope"], ["unknown entry 'nope'", "base, other"]),
        (["A", "B", "-e", "base", "--entry-b", "nope"], ["unknown entry 'nope'"]),
        (["A", "B", "-e", "base", "-m", "ndcg@5"], ["'ndcg@5' is not in both"]),
        (["A", "B", "-e", "other"], ["no shared seeds"]),
        (["A", "NOUSERS", "-e", "base"], ["no shared users"]),
        (["A", "NOMETRICS", "-e", "base"], ["no shared metrics"]),
        (["A", "SHAPE", "-e", "base"], ["must have one value per user (2), got 1"]),
        (["A", "NOENTRIES", "-e", "base"], ["no 'entries' list"]),
        (["A", "B", "-e", "base", "--bootstrap", "0"], ["--bootstrap"]),
    ],
)
def test_compare_errors_are_one_line(runs, tmp_path, args, fragments):
    pa, pb = runs
    files = {"A": pa, "B": pb}
    (tmp_path / "bad.json").write_text('{"entries": [')
    files["BAD"] = tmp_path / "bad.json"
    for key, entry in {
        "NOUSERS": _entry("x", [1], [99], {"ndcg@10": [[0.5]]}),
        "NOMETRICS": _entry("x", [1], [2], {"mrr@10": [[0.5]]}),
        "SHAPE": _entry("x", [1], [2, 3], {"ndcg@10": [[0.5]]}),
    }.items():
        files[key] = tmp_path / f"{key}.json"
        files[key].write_text(json.dumps({"entries": [entry]}))
    files["NOENTRIES"] = tmp_path / "noentries.json"
    files["NOENTRIES"].write_text("[1, 2]")
    resolved = [str(files.get(a, a)) for a in args]
    if resolved[0] == "missing.json":
        resolved[0] = str(tmp_path / "missing.json")
    _one_line_error(_run(*resolved), *fragments)
