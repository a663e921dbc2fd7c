"""The README's results tables are generated from committed JSON and cannot drift from it.

`benchmarks/readme_tables.py` is run as a subprocess (it is a standalone script; nothing from
`benchmarks/` or `reproductions/` is imported here).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "readme_tables.py"
BEGIN = re.compile(r"^<!-- generated: (?P<name>[\w-]+) \(source: (?P<src>[^()]*)\) -->$", re.M)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def sources(readme: str, block: str) -> list[str]:
    """The JSON files a block's begin marker names."""
    for m in BEGIN.finditer(readme):
        if m["name"] == block:
            return m["src"].split(", ")
    raise AssertionError(f"no block {block!r} in the README")


def copy_block(tmp_path: Path, block: str) -> Path:
    """README.md and the block's JSON sources copied under `tmp_path` (the same layout)."""
    readme = (REPO / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme)
    for src in sources(readme, block):
        (tmp_path / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / src, tmp_path / src)
    return tmp_path


def test_readme_matches_its_json():
    r = run("--check")
    assert r.returncode == 0, (
        f"README is stale; run `python benchmarks/readme_tables.py`:\n{r.stdout}{r.stderr}"
    )
    assert r.stdout == ""


def test_check_names_a_stale_table(tmp_path):
    root = copy_block(tmp_path, "performance")
    args = ("--check", "--readme", str(root / "README.md"), "--root", str(root))
    ok = run(*args, "--block", "performance")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    path = root / "benchmarks/results/eval_overhead_quiet.json"
    doc = json.loads(path.read_text())
    (ml,) = [w for w in doc["workloads"] if w["workload"] == "ml-1m"]
    key = "evaluate_accuracy_no_bootstrap_over_recommend_cpu"
    assert f"without CIs {ml[key]:.2f}×" in (root / "README.md").read_text()
    ml[key] = 1.37  # was 1.29: also misses the 1.3× goal now
    path.write_text(json.dumps(doc))

    r = run(*args, "--block", "performance")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    assert "'performance'" in lines[0]
    assert "1.37×" in lines[0]


def test_rewrite_fixes_only_the_stale_block(tmp_path):
    root = copy_block(tmp_path, "serve-load")
    path = root / "benchmarks/results/serve_load.json"
    doc = json.loads(path.read_text())
    doc["results"]["recommend"]["64"]["p99_ms"] = 61.0  # was 20.479: misses the 50 ms goal
    path.write_text(json.dumps(doc))
    before = (root / "README.md").read_text()
    args = ("--readme", str(root / "README.md"), "--root", str(root), "--block", "serve-load")

    stale = run("--check", *args)
    assert stale.returncode == 1 and "'serve-load'" in stale.stdout, stale.stdout + stale.stderr
    assert run(*args).returncode == 0
    after = (root / "README.md").read_text()
    assert run("--check", *args).returncode == 0
    flat = " ".join(after.split())
    assert "p99 1.2 / 7.4 / 20.5 ms" in " ".join(before.split())
    assert "p99 1.2 / 7.4 / 61.0 ms" in flat
    # everything outside the block is untouched
    cut = before.index("<!-- generated: serve-load")
    end = before.index("<!-- /generated: serve-load -->")
    assert after.startswith(before[:cut])
    assert after.endswith(before[end:])


def test_missing_source_is_an_error(tmp_path):
    (tmp_path / "README.md").write_text((REPO / "README.md").read_text())
    r = run("--check", "--readme", str(tmp_path / "README.md"), "--root", str(tmp_path))
    assert r.returncode == 2
    assert "missing source" in r.stderr
