"""Cost of constraints and explanations in the greedy kernels (issue 27, items 1 and 4).

Usage::

    git archive <commit before the constraint kernels> src | tar -x -C /tmp/base
    .venv/bin/python benchmarks/bench_constraints.py --baseline-src /tmp/base/src \\
        --out benchmarks/results/constraints_cost.json

At N = 500 candidates, k = 50, d = 64, B requests (seeded Gaussian vectors, uniform
relevance, 8 categories), process CPU time of ``select_batch`` (one BLAS thread; the
variants interleaved, fastest of ``--repeats``):

* **off**: the kernels without rules against the baseline source tree (the code before
  the constraint kernels, imported side by side from ``--baseline-src``): target ≤ 1.05;
* **on**: with rules (a maximum per category, two minimums, a pin, ten boosts, a 30%
  protected share) against the same kernel without rules: target ≤ 1.5;
* **explain**: the stage call with ``explain=True`` against the stage call without (the
  explanations are computed after the kernel, in numpy; reported, no target here).

The load average is recorded (a shared machine: only ratios within the run mean much).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np


def _cpu(fn) -> float:
    gc.disable()
    try:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0
    finally:
        gc.enable()


def _load(src: str | None):
    """``divrec.rerank`` of the source tree ``src`` (None: the installed one) and its
    ``divrec`` modules (to put back into ``sys.modules`` before each of its calls: the
    re-rankers import their kernels lazily, by name)."""
    for name in [m for m in sys.modules if m == "divrec" or m.startswith("divrec.")]:
        del sys.modules[name]
    if src:
        sys.path.insert(0, src)
    try:
        import divrec.rerank as rerank
        import divrec.rerank._kernels  # noqa: F401
    finally:
        if src:
            sys.path.remove(src)
    mods = {m: v for m, v in sys.modules.items() if m == "divrec" or m.startswith("divrec.")}
    return rerank, mods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/constraints_cost.json")
    )
    parser.add_argument("--baseline-src", type=str, default=None)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    load0 = os.getloadavg()
    n, k, d, bsz = args.n, args.k, 64, args.requests
    rng = np.random.default_rng(0)
    rel = rng.random((bsz, n))
    vec = rng.normal(size=(bsz, n, d))
    cats = rng.integers(0, 8, n)
    user = rng.normal(size=(bsz, d))

    def models(R):
        return {
            "MMR": R.MMR(lambda_=0.5),
            "InterestAwareMMR": R.InterestAwareMMR(lambda_=0.2),
            "FastGreedyDPP": R.FastGreedyDPP(theta=0.5),
            "SSD": R.SSD(gamma=1.0),
        }

    def kw(name):
        return {"user": user} if name == "InterestAwareMMR" else {}

    base = base_mods = None
    if args.baseline_src:
        rb, base_mods = _load(args.baseline_src)
        base = models(rb)
        for name, m in base.items():  # compile the baseline's kernels with its modules
            m.select_batch(rel[:2], k, vectors=vec[:2], **({"user": user[:2]} if name ==
                           "InterestAwareMMR" else {}))  # fmt: skip
    R, new_mods = _load(None)
    from divrec.data.constraints import Constraints, resolve_batch

    new = models(R)
    rule = Constraints(
        max_count={c: 8 for c in range(8)},
        min_count={0: 3, 1: 3},
        pins={int(rng.integers(0, n)): 2},
        boosts={int(i): 0.05 for i in rng.choice(n, 10, replace=False)},
        protected=7,
        min_share=0.3,
        best_effort=True,
    )
    ids = np.tile(np.arange(n), (bsz, 1))
    rc = resolve_batch([rule] * bsz, ids, k, cats, 8)
    rows = {}
    with threadpool_limits(1):
        for name, m in new.items():
            units = {
                "new_off": (new_mods, partial(m.select_batch, rel, k, vectors=vec, **kw(name))),
                "new_on": (
                    new_mods,
                    partial(m.select_batch, rel, k, vectors=vec, constraints=rc, **kw(name)),
                ),
            }
            if base is not None:
                units["baseline_off"] = (
                    base_mods,
                    partial(base[name].select_batch, rel, k, vectors=vec, **kw(name)),
                )
            for mods, f in units.values():
                sys.modules.update(mods)
                f()  # compile / warm
            best = dict.fromkeys(units, np.inf)
            order = np.random.default_rng(1)
            keys = list(units)
            for _ in range(args.repeats):
                for i in order.permutation(len(keys)):
                    mods, f = units[keys[i]]
                    sys.modules.update(mods)  # untimed
                    best[keys[i]] = min(best[keys[i]], _cpu(f))
            sys.modules.update(new_mods)
            row = {f"{key}_ms_per_request": v / bsz * 1e3 for key, v in best.items()}
            row["on_over_off"] = best["new_on"] / best["new_off"]
            if base is not None:
                row["off_over_baseline"] = best["new_off"] / best["baseline_off"]
            rows[name] = row
            print(name, {kk: round(v, 4) for kk, v in row.items()}, flush=True)
        # explanations: the stage call on fitted MMR, with and without explain
        import scipy.sparse as sp

        from divrec.data.interactions import Interactions
        from divrec.data.query import Candidates, Query

        data = Interactions.from_arrays(np.zeros(n, dtype=np.int64), np.arange(n))
        data = data.with_item_side_info(
            item_categories=sp.csr_matrix(np.eye(8)[cats]),
            category_names=tuple("abcdefgh"),
        )
        mmr = R.MMR(lambda_=0.5).fit(data, item_vectors=vec[0].astype(np.float32))
        cand = Candidates(np.tile(np.arange(n), (bsz, 1)), rel.astype(np.float32))
        users = np.zeros(bsz, dtype=np.int64)
        q_off = Query(users, exclude_seen=False)
        q_ex = Query(users, exclude_seen=False, explain=True)
        q_con = Query(users, exclude_seen=False, constraints=rule)
        units = {
            "stage": partial(mmr, q_off, cand, k),
            "stage_explain": partial(mmr, q_ex, cand, k),
            "stage_constraints": partial(mmr, q_con, cand, k),
        }
        for f in units.values():
            f()
        best = dict.fromkeys(units, np.inf)
        for _ in range(max(2, args.repeats // 2)):
            for key, f in units.items():
                best[key] = min(best[key], _cpu(f))
        rows["MMR_stage_call"] = {
            **{f"{key}_ms_per_request": v / bsz * 1e3 for key, v in best.items()},
            "explain_over_off": best["stage_explain"] / best["stage"],
            "constraints_over_off": best["stage_constraints"] / best["stage"],
        }
        print("stage", rows["MMR_stage_call"], flush=True)
    kernels = [r for key, r in rows.items() if key != "MMR_stage_call"]
    checks = {
        "max_on_over_off": max(r["on_over_off"] for r in kernels),
        "constraints_on_within_1_5": all(r["on_over_off"] <= 1.5 for r in kernels),
    }
    if base is not None:
        checks["max_off_over_baseline"] = max(r["off_over_baseline"] for r in kernels)
        checks["off_within_1_05"] = all(r["off_over_baseline"] <= 1.05 for r in kernels)
    result = {
        "benchmark": "constraints and explanations in the greedy kernels (issue 27)",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "N": n,
            "k": k,
            "d": d,
            "B": bsz,
            "repeats": args.repeats,
            "baseline_src": args.baseline_src,
            "rules": repr(rule),
            "timing": "process CPU time of select_batch, one BLAS thread, fastest of repeats",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_start": load0,
            "load_average_end": os.getloadavg(),
        },
        "checks": checks,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
