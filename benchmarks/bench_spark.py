"""Scaling benchmark: batch u2i top-100 + fast greedy DPP to 10, Spark vs in-memory streaming.

Synthetic vectors (d = 32): item vectors `N(0, 1)`; user u's vector is a deterministic
function of u (a mix of two fixed random tables indexed by u), so both engines generate any
block of users on the fly and neither holds all users. No seen-item exclusion (no log).
Both engines write the lists to Parquet.

- memory: `divrec.evaluation.batch.stream_u2i` in blocks of users + a pyarrow ParquetWriter,
  run in a fresh subprocess per size; peak memory = tracemalloc peak (numpy buffers
  included) and the process's max RSS.
- spark: `divrec.spark.candidates.u2i` on `spark.range(n)` → `mapInPandas` (user vectors
  generated inside the tasks), `local[2]`, written with `df.write.parquet`; peak memory = the
  max RSS sum of the driver's process tree (JVM + Python workers) sampled every 0.2 s from
  /proc, plus the JVM's used heap at the end.

Throughput is users per wall-clock second on this shared 2-core machine (other jobs ran at
the same time: compare the two engines within one run only).

Usage:
    python benchmarks/bench_spark.py --users 10000 100000 \
        --out benchmarks/results/spark_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

D = 32
N_CAND = 100
K = 10


def item_vectors(n_items: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_items, D)).astype(np.float32)


_TABLES = {}


def user_block(users: np.ndarray, seed: int = 1) -> np.ndarray:
    """Deterministic `(B, d)` float32 vectors of users (independent of the blocking)."""
    if seed not in _TABLES:
        rng = np.random.default_rng(seed)
        _TABLES[seed] = (
            rng.standard_normal((4096, D)).astype(np.float32),
            rng.standard_normal((4093, D)).astype(np.float32),
        )
    a, b = _TABLES[seed]
    return a[users % 4096] + 0.5 * b[(users * 7919) % 4093]


def make_reranker(items: np.ndarray):
    from divrec.data.interactions import Interactions
    from divrec.rerank import FastGreedyDPP

    n = items.shape[0]
    dummy = Interactions(
        users=np.zeros(n, np.int64),
        items=np.arange(n),
        values=np.ones(n),
        user_ids=np.arange(1),
        item_ids=np.arange(n),
    )
    return FastGreedyDPP().fit(dummy, item_vectors=items)


def run_memory(n_users: int, n_items: int, out: Path, block: int) -> dict:
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from divrec.evaluation.batch import FactorView, stream_u2i

    items = item_vectors(n_items)
    reranker = make_reranker(items)
    view = FactorView(None, items)
    tracemalloc.start()
    t0 = time.perf_counter()
    schema = pa.schema([("user", pa.int64()), ("items", pa.list_(pa.int64()))])
    with pq.ParquetWriter(out, schema) as writer:
        for users, cand in stream_u2i(
            view,
            N_CAND,
            reranker=reranker,
            k=K,
            block=block,
            users=np.arange(n_users, dtype=np.int64),
            user_vectors=user_block,
        ):
            writer.write_table(pa.table({"user": users, "items": list(cand.ids)}, schema=schema))
    secs = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    import resource

    return {
        "engine": "memory",
        "users": n_users,
        "items": n_items,
        "seconds": secs,
        "users_per_s": n_users / secs,
        "tracemalloc_peak_mb": peak / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "block": block,
    }


def _tree_rss_mb(root: int) -> float:
    """RSS sum (MB) of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total / 1024


def run_spark(n_users: int, n_items: int, out: Path, block: int, partitions: int) -> dict:
    from divrec.evaluation.batch import FactorView
    from divrec.spark.candidates import u2i
    from divrec.spark.session import spark_session

    spark = spark_session(
        "local[2]", "divrec-bench", shuffle_partitions=4, driver_memory="2g", ui=False
    )
    items = item_vectors(n_items)
    reranker = make_reranker(items)
    peak = {"mb": 0.0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["mb"] = max(peak["mb"], _tree_rss_mb(os.getpid()))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    ids = spark.range(0, n_users, numPartitions=partitions).withColumnRenamed("id", "user")

    def gen(batches):
        for frame in batches:
            users = frame["user"].to_numpy(np.int64)
            import pandas as pd

            yield pd.DataFrame({"user": users, "vector": list(user_block(users))})

    uv = ids.mapInPandas(gen, "user long, vector array<float>")
    lists = u2i(spark, uv, FactorView(None, items), N_CAND, k=K, reranker=reranker, block=block)
    lists.select("user", "items").write.mode("overwrite").parquet(str(out))
    secs = time.perf_counter() - t0
    stop.set()
    thread.join()
    rt = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
    heap = (rt.totalMemory() - rt.freeMemory()) / 2**20
    n_written = spark.read.parquet(str(out)).count()
    spark.stop()
    assert n_written == n_users, (n_written, n_users)
    return {
        "engine": "spark",
        "master": "local[2]",
        "users": n_users,
        "items": n_items,
        "seconds": secs,
        "users_per_s": n_users / secs,
        "process_tree_peak_rss_mb": peak["mb"],
        "jvm_used_heap_mb_end": heap,
        "block": block,
        "partitions": partitions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--engines", nargs="+", default=["memory", "spark"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/spark_scale.json"))
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "USERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # child process: one engine, one size; print JSON
        engine, n = args.one[0], int(args.one[1])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "lists.parquet"
            if engine == "memory":
                res = run_memory(n, args.items, path, args.block)
            else:
                parts = max(4, n // 25_000)
                res = run_spark(n, args.items, path, args.block, parts)
        print("RESULT " + json.dumps(res), flush=True)
        return
    results = []
    for n in args.users:
        for engine in args.engines:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                engine,
                str(n),
                "--items",
                str(args.items),
                "--block",
                str(args.block),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{engine} {n} failed")
            res = json.loads(line[0][7:])
            print(json.dumps(res), flush=True)
            results.append(res)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            meta = {
                "task": f"u2i top-{N_CAND} + FastGreedyDPP to {K}, d={D}, synthetic vectors",
                "machine": f"{os.cpu_count()} cores, shared with other jobs",
                "results": results,
            }
            args.out.write_text(json.dumps(meta, indent=2))
    plot(results, args.out.with_suffix(".png"))


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for engine, mem_key in (("memory", "max_rss_mb"), ("spark", "process_tree_peak_rss_mb")):
        rows = sorted((r for r in results if r["engine"] == engine), key=lambda r: r["users"])
        if not rows:
            continue
        x = [r["users"] for r in rows]
        axes[0].plot(x, [r["users_per_s"] for r in rows], "o-", label=engine)
        axes[1].plot(x, [r[mem_key] for r in rows], "o-", label=f"{engine} ({mem_key})")
    for ax, title in zip(axes, ("throughput (users/s)", "peak memory (MB)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("users")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"u2i top-{N_CAND} + DPP to {K}, 10^4 items, local[2] vs in-memory streaming")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
