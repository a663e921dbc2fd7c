"""Load test of `divrec serve` on loopback with `wrk` (Debian's package).

Starts, on 127.0.0.1 at free ports, (a) `divrec serve` with its default settings (1 worker,
1 compute thread, 1 BLAS thread) on a model directory and (b) a bare FastAPI app whose one
endpoint returns a constant, served by uvicorn with the same settings (the framework ceiling
on this machine). For each concurrency (connections of one wrk thread) it measures, for a
bounded time, throughput and p50/p99 latency of

* ``GET /recommend/{user}?n=10&diversity=0.5&method=dpp`` (iALS top-100 → DPP → 10), users
  cycling over the whole catalogue of users;
* ``POST /feedback`` with batches of 100 new events (durable: acknowledged after an fsynced
  commit), reported as events/s;
* ``GET /bare`` of the bare app;

and writes JSON (ratios within this run; absolute numbers depend on the machine's load,
recorded at start and end). Bare and /recommend run in alternating 1-second slices.

    python benchmarks/bench_serve.py --model-dir MODEL --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from divrec.serve.local import LocalServer, child_env, free_port, stop_process, wait_ready

REPO = Path(__file__).resolve().parents[1]

BARE = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/bare")
async def bare():
    return {"ok": 1}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

LUA_DONE = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    'JSON{"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "timeouts": %d, "p50_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""

LUA_RECOMMEND = """
local users = {%s}
local i = 0
request = function()
  i = i + 1
  local u = users[(i %% #users) + 1]
  return wrk.format("GET", "/recommend/" .. u .. "?n=10&diversity=0.5&method=dpp")
end
"""

LUA_FEEDBACK = """
local items = {%s}
local i = 0
local run = "%s"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%s"
request = function()
  i = i + 1
  local parts = {}
  for j = 1, 100 do
    local kind = (j %% 2 == 0) and "like" or "impression"
    parts[j] = string.format(
      '{"event_id":"%%s-%%d-%%d","user_id":"u%%d","item_id":"%%s","type":"%%s"}',
      run, i, j, (i * 7 + j) %% 5000, items[((i * 131 + j * 17) %% #items) + 1], kind)
  end
  return wrk.format(nil, "/feedback", nil, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
"""


def start_app(code: str) -> tuple[subprocess.Popen, str]:
    """`python -c CODE PORT` (a bare app serving on 127.0.0.1:PORT) at a free port; the
    process and its URL (the caller waits until it answers and stops it)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        env=child_env(path=[REPO]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, script: str, conns: int, seconds: float, tmp: Path, pid: int | None = None
) -> dict:
    path = tmp / f"script-{conns}-{time.time_ns()}.lua"
    path.write_text(script + LUA_DONE)
    secs = f"-d{max(1, round(seconds))}s"
    cmd = ["wrk", "-t1", f"-c{conns}", secs, "--timeout", "10s", "-s", str(path), url]
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu1 = cpu_seconds(pid) if pid else 0.0
    line = next(x for x in out.splitlines() if x.startswith("JSON"))
    res = json.loads(line[4:])
    res["throughput_rps"] = res["requests"] / (res["duration_us"] / 1e6)
    if pid and res["requests"]:
        # CPU time the server spent per request: robust to other load on the machine;
        # 1000 / cpu_ms is the throughput one worker could reach with a core to itself
        res["server_cpu_ms_per_request"] = 1000 * (cpu1 - cpu0) / res["requests"]
        res["cpu_bound_capacity_rps"] = 1000 / max(res["server_cpu_ms_per_request"], 1e-9)
    return res


def merge(parts: list[dict]) -> dict:
    """One result of several wrk slices: sums, throughput over their total time, the
    median slice's p50/p99 (and every slice's p99), CPU per request over all of them."""
    import statistics

    req = sum(p["requests"] for p in parts)
    dur = sum(p["duration_us"] for p in parts)
    cpu = sum(p["server_cpu_ms_per_request"] * p["requests"] for p in parts) / max(req, 1)
    return {
        "slices": len(parts),
        "requests": req,
        "duration_us": dur,
        "non_2xx": sum(p["non_2xx"] for p in parts),
        "errors": sum(p["connect_errors"] + p["read_errors"] + p["timeouts"] for p in parts),
        "throughput_rps": req / (dur / 1e6),
        "p50_ms": statistics.median(p["p50_ms"] for p in parts),
        "p99_ms": statistics.median(p["p99_ms"] for p in parts),
        "p99_ms_per_slice": [p["p99_ms"] for p in parts],
        "server_cpu_ms_per_request": cpu,
        "cpu_bound_capacity_rps": 1000 / max(cpu, 1e-9),
    }


def over_baseline(results: dict, name: str, base: str) -> tuple[dict, dict]:
    """Per concurrency: throughput of `name` / throughput of the bare `base` app, and CPU
    time per request of `base` / that of `name` (the share of the framework ceiling)."""
    ratios = {
        c: results[name][c]["throughput_rps"] / results[base][c]["throughput_rps"]
        for c in results[base]
    }
    cpu_ratios = {
        c: results[base][c]["server_cpu_ms_per_request"]
        / results[name][c]["server_cpu_ms_per_request"]
        for c in results[base]
    }
    return ratios, cpu_ratios


def machine(load_start: tuple[float, float, float]) -> dict:
    """The machine's cores and its load average at the start and now."""
    return {
        "cores": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
    }


def compute_cpu(model_dir: Path, users: list[str]) -> dict[str, float]:
    """CPU ms per request of `Service.recommend` alone (no HTTP), by batch size."""
    from threadpoolctl import threadpool_limits

    from divrec.serve.model_dir import ModelBundle
    from divrec.serve.service import RecRequest, Service

    svc = Service(ModelBundle.load(model_dir))
    out = {}
    with threadpool_limits(1):
        for b in (1, 16, 64):
            reqs = [RecRequest(users[i % len(users)], 10, 0.5, "dpp") for i in range(b)]
            svc.recommend(reqs)
            reps = max(3, 320 // b)
            t0 = time.process_time()
            for _ in range(reps):
                svc.recommend(reqs)
            out[str(b)] = 1000 * (time.process_time() - t0) / (reps * b)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_load.json")
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench_serve: needs wrk (apt-get install wrk)")
    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    users = json.loads((args.model_dir / "users.json").read_text())
    items = json.loads((args.model_dir / "items.json").read_text())
    load_start = os.getloadavg()
    compute = compute_cpu(args.model_dir, users)
    key = "bench-key-" + os.urandom(6).hex()
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    server = LocalServer(args.model_dir, tmp / "events.sqlite", env=child_env(key, path=[REPO]))
    bare, bare_url = start_app(BARE)
    serve, url = server.proc, server.url
    results: dict = {"recommend": {}, "feedback": {}, "bare": {}}
    try:
        wait_ready(bare_url, lambda: bare.poll() is None, timeout=120, path="/bare")
        ready = httpx.get(url + "/health/ready", timeout=60).json()
        user_list = ",".join(json.dumps(u) for u in users)
        item_list = ",".join(json.dumps(it["id"]) for it in items)
        rec_script = LUA_RECOMMEND % user_list
        run_wrk(url, rec_script, 4, 1.0, tmp)  # warm-up
        run_wrk(bare_url + "/bare", "", 4, 1.0, tmp)
        for c in args.concurrency:
            # bare and /recommend in alternating 1-second slices, so that both see the same
            # load of a shared machine (sums over the slices; p50/p99 of the median slice)
            slices: dict[str, list] = {"bare": [], "recommend": []}
            for _ in range(max(1, round(args.seconds))):
                slices["bare"].append(run_wrk(bare_url + "/bare", "", c, 1.0, tmp, bare.pid))
                slices["recommend"].append(run_wrk(url, rec_script, c, 1.0, tmp, serve.pid))
            for name, parts in slices.items():
                results[name][str(c)] = merge(parts)
            fb_script = LUA_FEEDBACK % (item_list, f"c{c}", key)
            fb = run_wrk(url, fb_script, c, args.seconds, tmp, serve.pid)
            fb["events_per_s"] = fb["throughput_rps"] * 100
            results["feedback"][str(c)] = fb
            print(
                f"c={c}: bare {results['bare'][str(c)]['throughput_rps']:.0f} rps, recommend "
                f"{results['recommend'][str(c)]['throughput_rps']:.0f} rps "
                f"p99 {results['recommend'][str(c)]['p99_ms']:.1f} ms, feedback "
                f"{fb['events_per_s']:.0f} events/s p99 {fb['p99_ms']:.1f} ms; server CPU ms/req "
                f"bare {results['bare'][str(c)]['server_cpu_ms_per_request']:.3f} recommend "
                f"{results['recommend'][str(c)]['server_cpu_ms_per_request']:.3f}",
                flush=True,
            )
        time.sleep(3)  # requests wrk abandoned at its deadline are still being committed
        stored = httpx.get(url + "/health/ready", timeout=60).json()["events_applied"]
    finally:
        server.stop()
        stop_process(bare)
    import sqlite3

    conn = sqlite3.connect(tmp / "events.sqlite")
    in_log = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    shutil.rmtree(tmp, ignore_errors=True)
    ratios, cpu_ratios = over_baseline(results, "recommend", "bare")
    acked = sum((r["requests"] - r["non_2xx"]) * 100 for r in results["feedback"].values())
    payload = {
        "machine": machine(load_start),
        "load_generator": "wrk 4.1 (1 thread, N connections), loopback",
        "seconds_per_measurement": args.seconds,
        "service_settings": {
            k: ready[k] for k in ("workers", "compute_threads", "blas_threads_per_compute_thread")
        },
        "model": {
            "dir": str(args.model_dir),
            "dataset": manifest["data"]["dataset"],
            "retriever": manifest["config"]["retriever"],
            "reranker": manifest["config"].get("reranker"),
            "n_candidates": manifest["config"].get("pipeline", {}).get("n_candidates", 100),
            "n_users": manifest["data"]["n_users"],
            "n_items": manifest["data"]["n_items"],
        },
        "request": {
            "recommend": "GET /recommend/{user}?n=10&diversity=0.5&method=dpp",
            "feedback": "POST /feedback, 100 new events per request (50 like, 50 impression)",
            "bare": "GET /bare -> {'ok': 1} (FastAPI + uvicorn, same settings)",
        },
        "results": results,
        "recommend_over_bare_throughput": ratios,
        "recommend_over_bare_cpu_capacity": cpu_ratios,
        "recommend_compute_cpu_ms_per_request_by_batch_size": compute,
        "feedback_events_acknowledged": acked,
        "feedback_events_in_log": in_log,
        "feedback_events_applied_in_memory": stored,
        "goals": {
            "recommend_ratio_at_least_0.5": {c: r >= 0.5 for c, r in ratios.items()},
            "recommend_ratio_at_least_0.6_at_1": ratios.get("1", 0.0) >= 0.6,
            "recommend_p99_under_50ms_at_64": results["recommend"].get("64", {}).get("p99_ms", 1e9)
            < 50,
            "feedback_at_least_2000_events_per_s": {
                c: r["events_per_s"] >= 2000 for c, r in results["feedback"].items()
            },
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
