"""Re-ranker scaling benchmark (issue #9, items 9–10): batch vs loop, DPP vs the hardware.

Usage::

    .venv/bin/python benchmarks/bench_rerank_scaling.py --out benchmarks/results/rerank_scaling.json
    .venv/bin/python benchmarks/bench_rerank_scaling.py --quick --out /tmp/rerank-scaling.json

Grid: N ∈ {100, 500, 2000, 5000} candidates × k ∈ {10, 50, 100}, d = 64, B = 64 requests
per configuration (random Gaussian vectors, cosine similarity, uniform relevance; seeded).
For every configuration, measured in one run with the methods interleaved and the fastest
of ``--repeats`` runs kept (the machine is shared: only ratios within a run mean much):

* item 9: ``select_batch`` on the B requests vs a Python loop of ``select``, for
  :class:`~divrec.rerank.FastGreedyDPP` and :class:`~divrec.rerank.MMR`
  (``loop_over_batch`` ≥ 1 means the batch is not slower);
* item 10: the per-request fast DPP rate in GFLOP/s, counting the multiply-adds of the
  incremental Cholesky update (Chen et al. 2018, Alg. 1; WeChat Eq. 8), ``N (k−1)(k−2)``
  flops, and of the cosine rows, ``2 N d (k−1)``; and its ratio to this machine's float64
  matmul rate (``numpy.matmul`` of two 1024 × 1024 matrices, timed interleaved with every
  configuration, single-threaded and with all BLAS threads: the ratio uses the larger);
* pyversity's ``dpp`` (same fast greedy DPP algorithm on a cosine kernel weighted by
  exponentiated relevance; float32 numpy) per request, side by side, when the optional
  ``pyversity`` package is installed (it is not a divrec dependency: install it by hand
  for this benchmark, e.g. ``pip install pyversity``; the column is null when absent).

Nothing is asserted; the JSON records the numbers and whether the issue's targets hold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import time
from pathlib import Path

import numpy as np

from divrec.rerank import MMR, FastGreedyDPP

try:  # the benchmark's machine description, shared with bench_rerank.py
    from bench_rerank import machine_info
except ImportError:  # pragma: no cover - run from another directory
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "bench_rerank", Path(__file__).with_name("bench_rerank.py")
    )
    _mod = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    _spec.loader.exec_module(_mod)  # type: ignore[union-attr]
    machine_info = _mod.machine_info

try:
    import pyversity
except ImportError:  # optional, benchmark only
    pyversity = None


def dpp_flops(n: int, k: int, d: int) -> float:
    """Multiply-adds ×2 of one fast-DPP request: Cholesky update + cosine rows."""
    k = min(k, n)
    return float(n * (k - 1) * (k - 2) + 2 * n * d * (k - 1))


#: side of the square float64 matrices of the matmul reference
MATMUL_SIZE = 1024


def gflops_of_matmul(seconds: float) -> float:
    return 2.0 * MATMUL_SIZE**3 / seconds / 1e9


def _time(fn) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def measure(dpp, mmr, rel: np.ndarray, vec: np.ndarray, k: int, n_pyv: int, repeats: int):
    """Fastest of ``repeats`` interleaved runs of every method on one configuration (s)."""
    bsz = rel.shape[0]
    fns = {
        "dpp_loop": lambda: [dpp.select(rel[b], k, vectors=vec[b]) for b in range(bsz)],
        "dpp_batch": lambda: dpp.select_batch(rel, k, vectors=vec),
        "mmr_loop": lambda: [mmr.select(rel[b], k, vectors=vec[b]) for b in range(bsz)],
        "mmr_batch": lambda: mmr.select_batch(rel, k, vectors=vec),
    }
    # the matmul reference is timed interleaved with the methods (shared machine)
    from threadpoolctl import threadpool_limits

    ma, mb = np.random.default_rng(0).random((2, MATMUL_SIZE, MATMUL_SIZE))

    def matmul_1() -> None:
        with threadpool_limits(1):
            ma @ mb

    fns["matmul_1_thread"] = matmul_1
    fns["matmul_all_threads"] = lambda: ma @ mb
    if pyversity is not None:
        fns["pyversity"] = lambda: [
            pyversity.dpp(vec[b], rel[b], k, diversity=0.5) for b in range(n_pyv)
        ]
    for fn in fns.values():  # warm-up (compiled kernels are cached on disk)
        fn()
    t = dict.fromkeys(fns, np.inf)
    for _ in range(repeats):
        for key, fn in fns.items():
            t[key] = min(t[key], _time(fn))
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rerank_scaling.json"))
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=64, help="B requests per configuration")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()

    ns, ks = ([100, 500], [10, 50]) if args.quick else ([100, 500, 2000, 5000], [10, 50, 100])
    bsz = 8 if args.quick else args.requests
    repeats = 2 if args.quick else args.repeats
    d = args.dim
    machine = machine_info()
    dpp, mmr = FastGreedyDPP(theta=0.5), MMR(lambda_=0.5)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in ns:
        rel = rng.random((bsz, n))
        vec = rng.normal(size=(bsz, n, d))
        n_pyv = min(bsz, 16)  # pyversity is slow at large N: time a subset per request
        for k in ks:
            t = measure(dpp, mmr, rel, vec, k, n_pyv, repeats)
            same = all(
                np.array_equal(dpp.select(rel[b], k, vectors=vec[b]), row)
                for b, row in enumerate(dpp.select_batch(rel[:4], k, vectors=vec[:4]))
            )
            per_req = t["dpp_loop"] / bsz
            gflops = dpp_flops(n, k, d) / per_req / 1e9
            rates = {
                "1_thread": gflops_of_matmul(t["matmul_1_thread"]),
                "all_threads": gflops_of_matmul(t["matmul_all_threads"]),
            }
            peak = max(rates.values())
            pyv = t["pyversity"] / n_pyv if pyversity is not None else None
            row = {
                "N": n,
                "k": k,
                "d": d,
                "B": bsz,
                "dpp_loop_ms_per_request": per_req * 1e3,
                "dpp_batch_ms_per_request": t["dpp_batch"] / bsz * 1e3,
                "dpp_loop_over_batch": t["dpp_loop"] / t["dpp_batch"],
                "dpp_batch_equals_loop": bool(same),
                "mmr_loop_ms_per_request": t["mmr_loop"] / bsz * 1e3,
                "mmr_batch_ms_per_request": t["mmr_batch"] / bsz * 1e3,
                "mmr_loop_over_batch": t["mmr_loop"] / t["mmr_batch"],
                "dpp_flops_per_request": dpp_flops(n, k, d),
                "dpp_gflops": gflops,
                "dpp_fraction_of_matmul_rate": gflops / peak,
                "dpp_fraction_of_1thread_matmul_rate": gflops / rates["1_thread"],
                "matmul_gflops": rates,
                "pyversity_dpp_ms_per_request": None if pyv is None else pyv * 1e3,
                "pyversity_over_divrec_dpp": None if pyv is None else pyv / per_req,
            }
            rows.append(row)
            print(
                f"N={n:5d} k={k:3d}: DPP {row['dpp_loop_ms_per_request']:.3f} ms/req "
                f"({gflops:.1f} GFLOP/s, {gflops / peak:.0%} of matmul), loop/batch "
                f"{row['dpp_loop_over_batch']:.2f}; MMR loop/batch {row['mmr_loop_over_batch']:.2f}"
                + (
                    ""
                    if pyv is None
                    else f"; pyversity/divrec {row['pyversity_over_divrec_dpp']:.2f}"
                ),
                flush=True,
            )

    big = [r for r in rows if r["N"] >= 500]
    summary = {
        "min_dpp_loop_over_batch": min(r["dpp_loop_over_batch"] for r in rows),
        "min_mmr_loop_over_batch": min(r["mmr_loop_over_batch"] for r in rows),
        "min_dpp_fraction_of_matmul_rate_at_N_ge_500": min(
            (r["dpp_fraction_of_matmul_rate"] for r in big), default=None
        ),
        "min_pyversity_over_divrec_dpp": (
            min(r["pyversity_over_divrec_dpp"] for r in rows) if pyversity is not None else None
        ),
    }
    targets = {
        "batch_never_slower_than_loop": summary["min_dpp_loop_over_batch"] >= 1.0
        and summary["min_mmr_loop_over_batch"] >= 1.0,
        "dpp_at_least_25pct_of_matmul_at_N_ge_500": (
            summary["min_dpp_fraction_of_matmul_rate_at_N_ge_500"] is not None
            and summary["min_dpp_fraction_of_matmul_rate_at_N_ge_500"] >= 0.25
        ),
        "dpp_faster_than_pyversity_everywhere": (
            None if pyversity is None else summary["min_pyversity_over_divrec_dpp"] > 1.0
        ),
    }
    result = {
        "benchmark": "divrec.rerank scaling (issue #9, items 9-10)",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "N": ns,
            "k": ks,
            "d": d,
            "B": bsz,
            "repeats": repeats,
            "seed": args.seed,
            "quick": args.quick,
            "dpp": dpp.get_params(),
            "mmr": mmr.get_params(),
            "timing": (
                "wall clock (time.perf_counter), garbage collector paused, the methods of a "
                "configuration interleaved, fastest of `repeats` runs kept"
            ),
            "flops": "N (k-1)(k-2) [Cholesky update, Eq. 8] + 2 N d (k-1) [cosine rows]",
            "matmul": (
                f"numpy float64 {MATMUL_SIZE}x{MATMUL_SIZE} @ {MATMUL_SIZE}x{MATMUL_SIZE}, "
                "1 BLAS thread and all threads, timed interleaved with every configuration "
                "(fastest of `repeats`); the fraction uses the larger of the two rates"
            ),
            "pyversity": (
                None
                if pyversity is None
                else f"pyversity {getattr(pyversity, '__version__', '?')} dpp(diversity=0.5), "
                "optional benchmark-only package, timed on the first "
                f"{min(bsz, 16)} requests"
            ),
        },
        "machine": machine,
        "results": rows,
        "summary": summary,
        "targets_met": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(json.dumps({"summary": summary, "targets_met": targets}, indent=2))


if __name__ == "__main__":
    main()
