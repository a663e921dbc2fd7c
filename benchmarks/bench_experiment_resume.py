"""`divrec experiment run` on ML-100K: one uninterrupted run (its outputs are committed under
benchmarks/results/experiment_ml100k/), then the same command killed with SIGTERM about
halfway and run again, and the two results.json compared (timing fields aside).

    DIVREC_DATA_HOME=... python benchmarks/bench_experiment_resume.py [--keep DIR]

Writes benchmarks/results/experiment_ml100k/{results.json, report.md, pareto.png,
validation_curves.png, resume_check.json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from divrec.experiment import strip_volatile

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "ml100k_example.toml"
DEST = ROOT / "benchmarks" / "results" / "experiment_ml100k"
OUTPUTS = ("results.json", "report.md", "pareto.png", "validation_curves.png")


def _cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "divrec.cli.main", "experiment", "run", str(EXP),
            "--out", str(out), "--no-progress"]  # fmt: skip


def _units(out: Path) -> int:
    folder = out / ".state" / "units"
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="keep the two run folders here")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="divrec-exp-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    full = work / "uninterrupted"
    shutil.rmtree(full, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(_cmd(full), env=env, check=True, capture_output=True)
    full_wall = time.perf_counter() - t0
    expected = json.loads((full / "results.json").read_text())
    total = expected["run"]["units_computed"]

    resumed = work / "killed_and_resumed"
    shutil.rmtree(resumed, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(_cmd(resumed), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    while proc.poll() is None and _units(resumed) < total // 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    first_wall = time.perf_counter() - t0
    killed_at = _units(resumed)
    t0 = time.perf_counter()
    subprocess.run(_cmd(resumed), env=env, check=True, capture_output=True)
    second_wall = time.perf_counter() - t0
    again = json.loads((resumed / "results.json").read_text())
    identical = strip_volatile(again) == strip_volatile(expected)
    check = {
        "command": "divrec experiment run experiments/ml100k_example.toml --out OUT",
        "uninterrupted_wall_seconds": round(full_wall, 1),
        "units_total": total,
        "killed_after_wall_seconds": round(first_wall, 1),
        "killed_exit_code": proc.returncode,
        "killed_stderr_last_line": err.decode().strip().splitlines()[-1] if err else "",
        "units_saved_when_killed": killed_at,
        "rerun_wall_seconds": round(second_wall, 1),
        "rerun_units_resumed": again["run"]["units_resumed"],
        "rerun_units_computed": again["run"]["units_computed"],
        "results_identical_except_timing": identical,
    }
    DEST.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        shutil.copy(full / name, DEST / name)
    (DEST / "resume_check.json").write_text(json.dumps(check, indent=2) + "\n")
    print(json.dumps(check, indent=2))
    if not identical:
        raise SystemExit("the resumed run's results differ from the uninterrupted run's")


if __name__ == "__main__":
    main()
