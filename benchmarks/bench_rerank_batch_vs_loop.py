"""Batch vs loop of the DPP and MMR re-rankers, for one given divrec source tree (issue #9, 9).

Usage (the divrec on ``PYTHONPATH`` is the one measured; run once per tree to compare)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_rerank_batch_vs_loop.py \\
        --label new --out benchmarks/results/rerank_batch_vs_loop_new.json
    git archive b16f707 src | tar -x -C /tmp/old   # the numpy implementation of the issue
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/bench_rerank_batch_vs_loop.py \\
        --label old --out benchmarks/results/rerank_batch_vs_loop_old.json

Workloads (seeded Gaussian vectors, d = 64, uniform relevance): (N, k, B) ∈ {(100, 50, 64),
(500, 50, 64), (2000, 100, 32), (5000, 100, 16)}. Every ``select`` call of the loop is timed
alone and ``select_batch`` on the B requests as one call, by process CPU time (robust on a
shared machine; BLAS limited to one thread), fastest of ``--repeats``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np

WORKLOADS = [(100, 50, 64), (500, 50, 64), (2000, 100, 32), (5000, 100, 16)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    import divrec
    from divrec.rerank import MMR, FastGreedyDPP

    rng = np.random.default_rng(args.seed)
    rows = []
    with threadpool_limits(1):
        for n, k, bsz in WORKLOADS:
            rel = rng.random((bsz, n))
            vec = rng.normal(size=(bsz, n, 64))
            for name, model in (
                ("FastGreedyDPP", FastGreedyDPP(theta=0.5)),
                ("MMR", MMR(lambda_=0.5)),
            ):
                model.select(rel[0], k, vectors=vec[0])  # warm-up / compilation
                model.select_batch(rel[:2], k, vectors=vec[:2])
                loop = np.full(bsz, np.inf)
                batch = np.inf
                for _ in range(args.repeats):
                    for b in range(bsz):
                        t0 = time.process_time()
                        model.select(rel[b], k, vectors=vec[b])
                        loop[b] = min(loop[b], time.process_time() - t0)
                    t0 = time.process_time()
                    model.select_batch(rel, k, vectors=vec)
                    batch = min(batch, time.process_time() - t0)
                row = {
                    "method": name,
                    "N": n,
                    "k": k,
                    "B": bsz,
                    "loop_cpu_ms_per_request": float(loop.sum()) / bsz * 1e3,
                    "batch_cpu_ms_per_request": batch / bsz * 1e3,
                    "loop_over_batch": float(loop.sum()) / batch,
                }
                rows.append(row)
                print(
                    f"{name:13s} N={n:5d} k={k:3d}: loop {row['loop_cpu_ms_per_request']:.3f} "
                    f"ms/req, batch {row['batch_cpu_ms_per_request']:.3f} ms/req, "
                    f"loop/batch {row['loop_over_batch']:.2f}",
                    flush=True,
                )
    result = {
        "benchmark": "divrec.rerank batch vs loop (issue #9, item 9)",
        "label": args.label,
        "divrec_source": str(Path(divrec.__file__).parent),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "workloads_N_k_B": WORKLOADS,
            "d": 64,
            "repeats": args.repeats,
            "seed": args.seed,
            "timing": "process CPU time, one BLAS thread, fastest of `repeats`",
        },
        "machine": {"numpy": np.__version__, "load_average_1m": os.getloadavg()[0]},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
