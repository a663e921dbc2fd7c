"""1 vs 2 threads, with and without a competing busy core: training and single-query search.

Why (issue #9 item 12): on a 2-core machine shared with other jobs, OpenMP / BLAS parallel
regions wait at barriers for a thread whose core is busy, so extra threads can make work
much slower instead of faster. This benchmark measures, at 1 and 2 threads, each in two
conditions -- "quiet" (nothing added by us) and "loaded" (one busy-loop subprocess, started
and stopped here, competing for a core):

* ``train``: `TwoTowerRecommender` (Bi-InfoNCE, d = 64, batch 512) for a few epochs on
  MovieLens-100K (or a synthetic matrix of the same shape with ``--synthetic``);
* ``exact_1q`` / ``hnsw_1q``: single-query top-100 searches (faiss IndexFlatIP /
  IndexHNSWFlat) over Gaussian 64-d vectors, p50 / p99 / mean per query;
* ``exact_batch``: one batch of 1,000 queries (batch work, where threads can pay off);
* ``dpp_batch`` / ``mmr_batch``: `FastGreedyDPP` / `MMR` ``select_batch`` on 256 requests
  of N = 2,000 candidates, k = 50, d = 64 (batch work; the budget set by `set_threads`).

Conditions and thread counts are interleaved over `--rounds` rounds and the median is kept.
Only ratios within this run are meaningful (the machine is shared with other jobs; the
1-minute load average is recorded per condition).

Run: ``python benchmarks/bench_threads.py --out benchmarks/results/threads.json``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from divrec.rerank import MMR, FastGreedyDPP
from divrec.retrieval.ann import AnnIndex
from divrec.retrieval.two_tower import TwoTowerRecommender
from divrec.threads import available_cores, limit_threads, set_threads

THREADS = (1, 2)


@contextlib.contextmanager
def busy_core(enabled: bool):
    """A busy-loop subprocess competing for one core while the block runs (if enabled)."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let it get scheduled
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _train_matrix(synthetic: bool, seed: int) -> tuple[sp.csr_matrix, str]:
    if not synthetic:
        try:
            from divrec.data.interactions import as_csr
            from divrec.data.movielens import load_movielens_100k

            return as_csr(load_movielens_100k()), "MovieLens-100K"
        except Exception as err:  # noqa: BLE001 - fall back to synthetic data
            print(f"ML-100K unavailable ({err}); using a synthetic matrix")
    rng = np.random.default_rng(seed)
    rows = rng.integers(943, size=100_000)
    cols = np.minimum(rng.zipf(1.3, size=100_000) - 1, 1681)
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(943, 1682))
    m.data[:] = 1
    return m, "synthetic 943 x 1682 (100k draws)"


def _latencies(index: AnnIndex, queries: np.ndarray, k: int) -> dict[str, float]:
    index.search(queries[:5], k)  # warm-up
    out = np.empty(queries.shape[0])
    for i in range(queries.shape[0]):
        t = time.perf_counter()
        index.search(queries[i : i + 1], k)
        out[i] = time.perf_counter() - t
    ms = out * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/threads.json"))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--n-exact", type=int, default=200_000, help="exact-search base size")
    parser.add_argument("--n-hnsw", type=int, default=50_000, help="HNSW base size")
    parser.add_argument("--queries", type=int, default=300, help="single queries per setting")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    matrix, train_source = _train_matrix(args.synthetic, args.seed)
    rng = np.random.default_rng(args.seed)
    d, k = 64, 100
    base = rng.normal(size=(args.n_exact, d)).astype(np.float32)
    queries = rng.normal(size=(args.queries + 1000, d)).astype(np.float32)
    with limit_threads(2):
        t = time.perf_counter()
        hnsw = AnnIndex("hnsw", m=32, ef_construction=100, ef_search=128, threads=2)
        hnsw.fit(base[: args.n_hnsw])
        hnsw_build = time.perf_counter() - t
    exact = {n: AnnIndex("flat", threads=n).fit(base) for n in THREADS}
    approx = {}
    for n in THREADS:  # the same built graph, searched with n threads
        approx[n] = AnnIndex("hnsw", ef_search=128, threads=n)
        approx[n].__dict__.update({a: getattr(hnsw, a) for a in hnsw.__dict__ if a.endswith("_")})
    single, batch = queries[: args.queries], queries[args.queries :]
    rr_rel = rng.random((256, 2000))
    rr_vec = rng.normal(size=(256, 2000, d))
    rerankers = {"dpp_batch": FastGreedyDPP(theta=0.5), "mmr_batch": MMR(lambda_=0.5)}
    for m in rerankers.values():  # compiled kernels loaded before timing
        m.select_batch(rr_rel[:8], 50, vectors=rr_vec[:8])
    with limit_threads(1):  # warm-up: first-call costs (allocator, torch init) not timed
        TwoTowerRecommender(dim=64, batch_size=512, epochs=0.1, threads=1).fit(matrix)

    raw: dict = {c: {n: {} for n in THREADS} for c in ("quiet", "loaded")}
    load: dict[str, list[float]] = {"quiet": [], "loaded": []}
    for r in range(args.rounds):
        for cond in ("quiet", "loaded") if r % 2 == 0 else ("loaded", "quiet"):
            with busy_core(cond == "loaded"):
                load[cond].append(os.getloadavg()[0])
                for n in THREADS if r % 2 == 0 else THREADS[::-1]:
                    res = raw[cond][n]
                    with limit_threads(n):
                        model = TwoTowerRecommender(
                            dim=64, batch_size=512, epochs=args.epochs, threads=n, seed=0
                        ).fit(matrix)
                    res.setdefault("train_seconds", []).append(model.train_seconds_)
                    for name, index in (("exact_1q", exact[n]), ("hnsw_1q", approx[n])):
                        for key, v in _latencies(index, single, k).items():
                            res.setdefault(f"{name}_{key}", []).append(v)
                    t = time.perf_counter()
                    exact[n].search(batch, k)
                    res.setdefault("exact_batch_seconds", []).append(time.perf_counter() - t)
                    set_threads(n)
                    try:
                        for name, m in rerankers.items():
                            t = time.perf_counter()
                            m.select_batch(rr_rel, 50, vectors=rr_vec)
                            res.setdefault(f"{name}_seconds", []).append(time.perf_counter() - t)
                    finally:
                        set_threads(None)
                    print(f"round {r} {cond} threads={n}: " + ", ".join(
                        f"{key}={vals[-1]:.4g}" for key, vals in res.items()))  # fmt: skip

    med = {c: {n: {key: float(np.median(v)) for key, v in raw[c][n].items()} for n in THREADS}
           for c in raw}  # fmt: skip
    metrics = list(med["quiet"][1])
    ratios = {
        "two_vs_one_threads_quiet": {m: med["quiet"][2][m] / med["quiet"][1][m] for m in metrics},
        "two_vs_one_threads_loaded": {
            m: med["loaded"][2][m] / med["loaded"][1][m] for m in metrics
        },
        "loaded_vs_quiet_1_thread": {m: med["loaded"][1][m] / med["quiet"][1][m] for m in metrics},
        "loaded_vs_quiet_2_threads": {m: med["loaded"][2][m] / med["quiet"][2][m] for m in metrics},
    }
    result = {
        "note": "ratios > 1 mean slower; medians over rounds; 'loaded' = one busy-loop "
        "subprocess started by the benchmark; the machine is shared with other jobs, so only "
        "ratios within this run are meaningful",
        "machine": {"cores": available_cores(), "platform": platform.platform()},
        "train": {
            "source": train_source,
            "shape": list(matrix.shape),
            "nnz": int(matrix.nnz),
            "model": "TwoTowerRecommender(loss='bi', dim=64, batch_size=512)",
            "epochs": args.epochs,
        },
        "search": {
            "k": k,
            "d": d,
            "exact_base": args.n_exact,
            "hnsw_base": args.n_hnsw,
            "hnsw": "m=32, efConstruction=100, efSearch=128",
            "hnsw_build_seconds_2_threads": hnsw_build,
            "single_queries": args.queries,
            "batch_queries": int(batch.shape[0]),
        },
        "rerank": {"B": 256, "N": 2000, "k": 50, "d": 64, "dpp": "theta=0.5", "mmr": "lambda=0.5"},
        "rounds": args.rounds,
        "load_average_1min": load,
        "median": {c: {f"threads={n}": v for n, v in med[c].items()} for c in med},
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for name, r in ratios.items():
        print(name, {m: round(v, 2) for m, v in r.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
