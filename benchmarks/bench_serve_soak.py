"""Bounded soak of `divrec serve`: resident memory and start-up time as the event log grows.

Starts `divrec serve --writeback 60` on 127.0.0.1 at a free port (a model directory given
with ``--model-dir``, or a small synthetic one trained here with the real CLI), then in
phases of ``--events`` feedback events each (``POST /feedback``, batches of 1,000, over
``--users`` user ids plus one heavy user who gets ``--heavy-share`` of the likes) and
``--probes`` ``GET /recommend/{new id}`` requests (never-seen ids: with write-back each used
to create user state), records after each phase

* the server's resident memory (``VmRSS`` of its PID) after feeding,
* the start-up time (process start → ``/health/ready``) and resident memory of a restart on
  the log as it is now (the whole log is replayed at start),

and writes JSON. Bounded: every request has a timeout, the whole run has ``--max-seconds``,
and the servers it starts are stopped by PID (SIGTERM, then SIGKILL).

    python benchmarks/bench_serve_soak.py --phases 2 --events 100000 --users 20000 \
        --out benchmarks/results/serve_soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _serve import MODEL, train_synthetic

from divrec.serve.local import LocalServer, child_env

REPO = Path(__file__).resolve().parents[1]
KEY = "soak-key-0123456789abcdef"
# the server's src folder: another checkout's (DIVREC_SOAK_SRC) or this divrec's
ENV = child_env(KEY, src=os.environ.get("DIVREC_SOAK_SRC"))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _server(model: Path, db: Path) -> LocalServer:
    """`divrec serve --writeback 60` on 127.0.0.1 (`startup_s`: process start → ready)."""
    return LocalServer(model, db, "--writeback", "60", env=ENV, timeout=300)


def _feed(srv: LocalServer, items: list[str], args, phase: int, rng, deadline: float) -> dict:
    kinds = np.array(["like", "click", "rating", "impression", "dislike"])
    p = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    sent = stored = 0
    t0 = time.perf_counter()
    with httpx.Client(timeout=60, headers={"X-API-Key": KEY}) as c:
        while sent < args.events and time.time() < deadline:
            n = min(1000, args.events - sent)
            users = rng.integers(0, args.users, n)
            typ = kinds[rng.choice(5, n, p=p)]
            heavy = (typ == "like") & (rng.random(n) < args.heavy_share)
            its = rng.integers(0, len(items), n)
            now = time.time()
            events = []
            for j in range(n):
                ev = {
                    "event_id": f"p{phase}-{sent + j}",
                    "user_id": "heavy" if heavy[j] else f"soak-{users[j]}",
                    "item_id": items[its[j]],
                    "type": str(typ[j]),
                    "timestamp": now,
                }
                if typ[j] == "rating":
                    ev["value"] = float(rng.integers(1, 6))
                events.append(ev)
            r = c.post(srv.url + "/feedback", json={"events": events})
            r.raise_for_status()
            stored += r.json()["accepted"]
            sent += n
        probes = 0
        for k in range(args.probes):
            if time.time() >= deadline:
                break
            r = c.get(f"{srv.url}/recommend/probe-{phase}-{k}", params={"n": 10})
            r.raise_for_status()
            probes += 1
    return {
        "events_sent": sent,
        "events_stored": stored,
        "probes": probes,
        "feed_seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--phases", type=int, default=2)
    ap.add_argument("--events", type=int, default=100_000, help="events per phase")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--heavy-share", type=float, default=0.1)
    ap.add_argument("--probes", type=int, default=2_000, help="new-id recommends per phase")
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_soak.json")
    args = ap.parse_args()
    deadline = time.time() + args.max_seconds
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="divrec-soak-") as tmpd:
        tmp = Path(tmpd)
        model = args.model_dir or train_synthetic(tmp, ENV)
        items = [it["id"] for it in json.loads((model / "items.json").read_text())]
        db = tmp / "events.sqlite"
        srv = _server(model, db)
        rows = [
            {
                "log_events": 0,
                "startup_s": round(srv.startup_s, 2),
                "rss_after_start_mb": round(_rss_mb(srv.proc.pid), 1),
            }
        ]
        try:
            for phase in range(args.phases):
                fed = _feed(srv, items, args, phase, rng, deadline)
                rss_fed = _rss_mb(srv.proc.pid)
                with httpx.Client(timeout=10) as c:
                    metrics = c.get(srv.url + "/metrics").text
                users_gauge = next(
                    (
                        float(line.split()[-1])
                        for line in metrics.splitlines()
                        if line.startswith("divrec_users_with_events ")
                    ),
                    None,
                )
                srv.stop(timeout=30)
                srv = _server(model, db)
                n_log = sum(r.get("events_stored", 0) for r in rows) + fed["events_stored"]
                rows.append(
                    {
                        "phase": phase + 1,
                        **fed,
                        "rss_after_feeding_mb": round(rss_fed, 1),
                        "users_with_events": users_gauge,
                        "log_events": n_log,
                        "startup_s": round(srv.startup_s, 2),
                        "rss_after_start_mb": round(_rss_mb(srv.proc.pid), 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                if time.time() >= deadline:
                    break
        finally:
            srv.stop(timeout=30)
    result = {
        "benchmark": "bench_serve_soak",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "src": os.environ.get("DIVREC_SOAK_SRC", "this checkout"),
        "model": str(args.model_dir) if args.model_dir else MODEL,
        "settings": {
            "events_per_phase": args.events,
            "users": args.users,
            "heavy_share_of_likes": args.heavy_share,
            "probes_per_phase": args.probes,
            "writeback_seconds": 60,
        },
        "rows": rows,
        "note": (
            "rss_after_feeding_mb: the live server after the phase; startup_s and "
            "rss_after_start_mb: a restart replaying the whole log. The machine is shared "
            "(2 cores with other work): timings are indicative."
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
