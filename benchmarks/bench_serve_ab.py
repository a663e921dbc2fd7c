"""What A/B logging costs `GET /recommend`: server CPU time per request with and without an
experiment, in one run.

Two copies of one model directory are served by `divrec serve` on 127.0.0.1 (free ports,
stopped by PID): one plain, one with ``experiment.json`` whose two arms both run the
model's default method (so the lists cost the same and the difference is the arm routing
plus the durable impression row written before each answer). Rounds alternate the two
servers; each round sends ``--warmup`` then ``--requests`` sequential requests for random
known users and reads the server process's CPU time (utime + stime of ``/proc/<pid>/stat``)
around the measured requests. The end-to-end ratio is experiment ÷ plain of the median CPU time per
request over the rounds; wall-clock latency percentiles are recorded too (they include
the fsync of each impression: `synchronous=FULL`, one commit per request when requests
come one at a time). The load average before and after is recorded (the machine is
shared, so the end-to-end CPU times move by ±15% from round to round).

A second, in-process measurement times the two parts the experiment adds on the same
answers (`Service.recommend` of one request at a time, with and without the arm router;
`impression_of` + `EventLog.write_impressions_now`), the logging part as a share of the
server's plain CPU time per request.

    python benchmarks/bench_serve_ab.py --out benchmarks/results/serve_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _serve import MODEL, train_synthetic

from divrec.serve.local import LocalServer, child_env

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-ab-key-0123456789"


def _cpu(pid: int) -> float:
    """utime + stime of `pid` in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _measure(server: LocalServer, users: list[str], warmup: int, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    lat = []
    with httpx.Client(timeout=10) as c:
        for _ in range(warmup):
            c.get(
                f"{server.url}/recommend/{users[rng.integers(len(users))]}?n=10"
            ).raise_for_status()
        cpu0 = _cpu(server.proc.pid)
        t0 = time.perf_counter()
        for _ in range(n):
            s = time.perf_counter()
            r = c.get(f"{server.url}/recommend/{users[rng.integers(len(users))]}?n=10")
            lat.append(time.perf_counter() - s)
            r.raise_for_status()
        wall = time.perf_counter() - t0
        cpu = _cpu(server.proc.pid) - cpu0
    lat_ms = np.array(lat) * 1e3
    return {
        "cpu_ms_per_request": 1e3 * cpu / n,
        "wall_s": wall,
        "latency_ms": {q: float(np.percentile(lat_ms, int(q[1:]))) for q in ("p50", "p90", "p99")},
    }


def _parts(model: Path, exp_file: Path, n: int) -> dict:
    """In-process CPU time (process_time, ms per request) of what the experiment adds."""
    from divrec.serve.arms import ArmRouter, Experiment, impression_of
    from divrec.serve.events import EventLog
    from divrec.serve.model_dir import ModelBundle
    from divrec.serve.service import RecRequest, Service

    bundle = ModelBundle.load(model)
    svc = Service(bundle)
    rng = np.random.default_rng(0)
    reqs = [RecRequest(bundle.user_ids[rng.integers(len(bundle.user_ids))], 10) for _ in range(n)]
    svc.recommend(reqs[:100])

    def answer_all():
        t = time.process_time()
        out = [svc.recommend([r])[0] for r in reqs]
        return 1e3 * (time.process_time() - t) / n, out

    plain, _ = answer_all()
    svc.router = ArmRouter(Experiment.load(exp_file), bundle, "auto")
    routed, out = answer_all()
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "parts.sqlite")
        t = time.process_time()
        inline = 0
        for res in out:
            imp = impression_of(res, "bench", time.time())
            if log.write_impressions_now([imp]):
                inline += 1
            else:
                log.submit_impressions([imp]).result()
        logging = 1e3 * (time.process_time() - t) / n
        log.close()
    return {
        "recommend_ms": plain,
        "recommend_with_router_ms": routed,
        "logging_ms": logging,
        "logged_inline": inline,
        "requests": n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None, help="default: train a synthetic one")
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_ab.json")
    args = ap.parse_args(argv)
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        tmp = Path(tmp)
        model = args.model_dir
        if model is None:
            model = train_synthetic(tmp, child_env(KEY))
        plain = tmp / "plain"
        shutil.copytree(model, plain, ignore=shutil.ignore_patterns("experiment.json"))
        exp_dir = tmp / "exp"
        shutil.copytree(plain, exp_dir)
        default = json.loads((plain / "manifest.json").read_text())["default_method"]
        experiment = {
            "name": "bench", "salt": "bench", "control": "a",
            "arms": [{"name": "a", "share": 0.5, "method": default},
                     {"name": "b", "share": 0.5, "method": default}],
        }  # fmt: skip
        (exp_dir / "experiment.json").write_text(json.dumps(experiment))
        users = json.loads((plain / "users.json").read_text())
        rows: dict[str, list[dict]] = {"plain": [], "experiment": []}
        for r in range(args.rounds):
            for name, d in (("plain", plain), ("experiment", exp_dir)):
                server = LocalServer(d, tmp / f"{name}-{r}.sqlite", env=child_env(KEY), timeout=300)
                try:
                    rows[name].append(_measure(server, users, args.warmup, args.requests, r))
                finally:
                    server.stop()
        parts = _parts(plain, exp_dir / "experiment.json", args.requests)
        import sqlite3

        conn = sqlite3.connect(tmp / "experiment-0.sqlite")
        imps = conn.execute("SELECT COUNT(*) FROM impressions").fetchone()[0]
        conn.close()
    med = {k: float(np.median([x["cpu_ms_per_request"] for x in v])) for k, v in rows.items()}
    p50 = {k: float(np.median([x["latency_ms"]["p50"] for x in v])) for k, v in rows.items()}
    out = {
        "benchmark": "A/B logging cost on GET /recommend (server CPU time per request)",
        "command": "python benchmarks/bench_serve_ab.py " + " ".join(argv or sys.argv[1:]),
        "model": MODEL if args.model_dir is None else str(args.model_dir),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "cpu_ms_per_request_median": med,
        "cpu_ratio_experiment_over_plain": med["experiment"] / med["plain"],
        "latency_p50_ms_median": p50,
        "impressions_logged_round0": imps,
        "in_process_ms_per_request": parts,
        "logging_share_of_plain_server_cpu": parts["logging_ms"] / med["plain"],
        "rows": rows,
        "load_before": load_before,
        "load_after": _load(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("cpu_ms_per_request_median",
                                          "cpu_ratio_experiment_over_plain",
                                          "logging_share_of_plain_server_cpu",
                                          "latency_p50_ms_median", "load_after")}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
