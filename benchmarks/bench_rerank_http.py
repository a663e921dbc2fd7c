"""Load test of `POST /rerank` on loopback with `wrk`, against a bare echo endpoint.

Starts, on 127.0.0.1 at free ports, (a) `divrec serve --model-dir MODEL` with its default
settings (1 worker, 1 compute thread, 1 BLAS thread) and (b) a bare FastAPI app whose one
endpoint ``POST /echo`` parses the JSON body and returns it (orjson both ways; the framework
and serialization ceiling for the same bodies), served by uvicorn with the same settings.
Each body is one request of N = 200 candidates (distinct item ids of the model's catalogue,
descending random scores), k = 20, ``method=dpp``, ``diversity=0.5``; wrk cycles over 64
such bodies. For each concurrency (connections of one wrk thread) it measures throughput,
p50/p99 latency and the server's CPU time per request, alternating 1-second slices of the
two servers (a shared machine's load hits both alike), and writes JSON with the ratios of
this run and the machine's load average.

    python benchmarks/bench_rerank_http.py --model-dir MODEL \
        --out benchmarks/results/rerank_http.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import machine, merge, over_baseline, run_wrk, start_app  # noqa: E402

from divrec.serve.local import LocalServer, child_env, stop_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

ECHO = """
import sys, orjson, uvicorn
from fastapi import FastAPI, Request, Response
app = FastAPI()
@app.post("/echo")
async def echo(request: Request):
    return Response(orjson.dumps(orjson.loads(await request.body())),
                    media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""

LUA_BODIES = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "%s", nil, bodies[(i %% #bodies) + 1])
end
"""


def bodies(item_ids: list[str], n: int, k: int, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        idx = rng.choice(len(item_ids), n, replace=False)
        scores = np.sort(rng.random(n))[::-1].round(5)
        req = {
            "item_ids": [item_ids[i] for i in idx],
            "scores": scores.tolist(),
            "k": k,
            "method": "dpp",
            "diversity": 0.5,
        }
        out.append(json.dumps({"requests": [req]}, separators=(",", ":")))
    return out


def lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def compute_cpu(model_dir: Path, docs: list[str]) -> dict[str, float]:
    """CPU ms per request of parsing + re-ranking alone (no HTTP), in this process."""
    from threadpoolctl import threadpool_limits

    from divrec.serve.model_dir import ModelBundle
    from divrec.serve.rerank import RerankCatalogue, parse_rerank, run_rerank

    cat = RerankCatalogue.from_bundle(ModelBundle.load(model_dir), every_method=False)
    parsed = [json.loads(d) for d in docs]
    lim = {"max_candidates": 1000, "max_batch": 256, "max_k": 100}
    with threadpool_limits(1):
        for d in parsed:
            run_rerank(cat, parse_rerank(d, cat, **lim))
        reps = 5
        t0 = time.process_time()
        for _ in range(reps):
            for d in parsed:
                parse_rerank(d, cat, **lim)
        t1 = time.process_time()
        items = [parse_rerank(d, cat, **lim) for d in parsed]
        t2 = time.process_time()
        for _ in range(reps):
            for it in items:
                run_rerank(cat, it)
        t3 = time.process_time()
    n = reps * len(parsed)
    return {"parse_ms": 1000 * (t1 - t0) / n, "rerank_ms": 1000 * (t3 - t2) / n}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/rerank_http.json")
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement (1-second slices)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--n", type=int, default=200, help="candidates per request")
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench_rerank_http: needs wrk (apt-get install wrk)")
    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    items = [it["id"] for it in json.loads((args.model_dir / "items.json").read_text())]
    docs = bodies(items, args.n, args.k, 64)
    load_start = os.getloadavg()
    compute = compute_cpu(args.model_dir, docs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    key = "bench-" + os.urandom(6).hex()
    server = LocalServer(args.model_dir, tmp / "events.sqlite", env=child_env(key, path=[REPO]))
    echo, echo_url = start_app(ECHO)
    serve, url = server.proc, server.url
    results: dict = {"rerank": {}, "echo": {}}
    try:
        deadline = time.time() + 60
        while True:  # the echo app has no GET route: ready when it answers a POST
            try:
                if httpx.post(echo_url + "/echo", content=docs[0], timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or echo.poll() is not None:
                raise RuntimeError("echo server did not start")
            time.sleep(0.1)
        first = httpx.post(url + "/rerank", content=docs[0], timeout=60)
        assert first.status_code == 200, first.text
        assert len(first.json()["results"][0]["items"]) == args.k
        body_list = ",".join(lua_string(d) for d in docs)
        rr_script = LUA_BODIES % (body_list, "/rerank")
        echo_script = LUA_BODIES % (body_list, "/echo")
        run_wrk(url, rr_script, 4, 1.0, tmp)  # warm-up
        run_wrk(echo_url, echo_script, 4, 1.0, tmp)
        for c in args.concurrency:
            # alternating 1-second slices, so both servers see the same load on a shared
            # machine; throughput and CPU per request over all slices, p99 the median slice's
            rounds = max(1, round(args.seconds))
            slices: dict[str, list] = {"echo": [], "rerank": []}
            for _ in range(rounds):
                slices["echo"].append(run_wrk(echo_url, echo_script, c, 1.0, tmp, echo.pid))
                slices["rerank"].append(run_wrk(url, rr_script, c, 1.0, tmp, serve.pid))
            for name, parts in slices.items():
                results[name][str(c)] = merge(parts)
            e, r = results["echo"][str(c)], results["rerank"][str(c)]
            print(
                f"c={c}: echo {e['throughput_rps']:.0f} rps p99 {e['p99_ms']:.1f} ms, /rerank "
                f"{r['throughput_rps']:.0f} rps p99 {r['p99_ms']:.1f} ms (non-2xx "
                f"{r['non_2xx']}); server CPU ms/req echo {e['server_cpu_ms_per_request']:.3f} "
                f"rerank {r['server_cpu_ms_per_request']:.3f}",
                flush=True,
            )
    finally:
        server.stop()
        stop_process(echo)
        shutil.rmtree(tmp, ignore_errors=True)
    ratios, cpu_ratios = over_baseline(results, "rerank", "echo")
    top = str(max(args.concurrency))
    payload = {
        "machine": machine(load_start),
        "load_generator": "wrk 4.1 (1 thread, N connections), loopback",
        "seconds_per_measurement": args.seconds,
        "model": {
            "dir": str(args.model_dir),
            "dataset": manifest["data"]["dataset"],
            "retriever": manifest["config"]["retriever"],
            "n_items": manifest["data"]["n_items"],
        },
        "request": {
            "rerank": f"POST /rerank, 1 request of N={args.n} candidates (ids + scores), "
            f"k={args.k}, method=dpp, diversity=0.5; 64 bodies cycled",
            "echo": "POST /echo of the same bodies: orjson parse + orjson dump (FastAPI + "
            "uvicorn, same settings)",
            "body_bytes_mean": float(np.mean([len(d) for d in docs])),
        },
        "results": results,
        "rerank_over_echo_throughput": ratios,
        "rerank_over_echo_cpu_capacity": cpu_ratios,
        "in_process_cpu_ms_per_request": compute,
        "goals": {
            f"throughput_ratio_at_least_0.5_at_{top}": ratios[top] >= 0.5,
            f"p99_under_50ms_at_{top}": results["rerank"][top]["p99_ms"] < 50,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
