"""Evaluation overhead: `evaluate()` with the default metrics against the bare `recommend`.

Issue #9 item 11 and issue "Speed" item 4 (goal: evaluate ≤ 1.3× the bare recommend). In
one run, for each workload (ML-1M with a random 20% holdout, 6k test users; a synthetic
catalogue with `--users` users and 2k items):

* `recommend_s`: the bare `model.recommend(users, K)` over all test users (batches of 1024);
* `evaluate_s`: `evaluate(model, split, EvalConfig(ks=(10,)))` (default metrics, 1,000
  bootstrap resamples, ILAD in a 32-d reference space);
* `evaluate_no_bootstrap_s`: the same with `n_bootstrap=0` (the CIs' share);
* `evaluate_accuracy_only_s`: `diversity=()` (the six accuracy metrics with their CIs, plus
  the system metrics, which are always computed), and the same with `n_bootstrap=0`;
* `*_cold`: `evaluate` and `no_boot` as the first evaluation of a split (the split's cached
  views, its binary training and relevance CSRs, cleared before the call); the other legs
  reuse them, as every evaluation after the first on a split does;
* both as CPU seconds (`time.process_time`, one thread: little affected by other processes
  on a shared machine) and wall seconds; runs interleaved, the fastest of each kept;
* `where_the_time_goes_cpu_s`: a cProfile (CPU clock) of one cold `evaluate()`: cumulative
  seconds of its stages (recommend, hits, each diversity metric, system metrics, bootstrap);
* `bootstrap_shared_s` vs `bootstrap_per_column_s` (synthetic workload): the shared-resample
  aggregate against fresh resamples for each metric column.

`os.getloadavg()` is recorded before and after each workload.

Usage: `python benchmarks/bench_eval.py --users 100000 --out benchmarks/results/eval_overhead.json`
(`eval.json`, read by the README table, is the former single-workload output of this script.)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from divrec.data import SyntheticConfig, make_synthetic
from divrec.evaluation import harness
from divrec.evaluation.harness import EvalConfig, _aggregate, bootstrap_ci, evaluate
from divrec.metrics.reference import reference_item_vectors
from divrec.retrieval import ALSRecommender
from divrec.splitting import random_holdout


def _per_column(table, config):  # fresh resamples for every column
    rng = np.random.default_rng(config.seed)
    alpha = (1 - config.confidence) / 2
    for col in table.columns:
        if col == "user":
            continue
        v = table[col].to_numpy(dtype=np.float64)
        bootstrap_ci(v[~np.isnan(v)], config.n_bootstrap, alpha, rng)


PROFILED = {
    "recommend (inside evaluate)": "base.py:170(recommend)",
    "hits_matrix": "hits_matrix",
    "accuracy metrics": "(_accuracy)",
    "diversity metrics (per user)": "(_diversity)",
    "  ilad": "(ilad)",
    "  category_ild": "(category_ild)",
    "  user_category_coverage": "(user_category_coverage)",
    "  miscalibration": "(miscalibration)",
    "  novelty": "(novelty)",
    "  arp": "(average_recommendation_popularity)",
    "system metrics": "(_system)",
    "  between_user_diversity": "(between_user_diversity)",
    "  category_coverage": "(category_coverage)",
    "  popularity_lift": "(popularity_lift)",
    "group exposure (tail, lift)": "(_group_exposure)",
    "training CSR (once)": "(_train_csr)",
    "aggregate (bootstrap CIs)": "(_aggregate)",
    "  bootstrap_means": "(bootstrap_means)",
}


def _profile(fn) -> dict[str, float]:
    """Cumulative CPU seconds of the PROFILED stages in one call of `fn`."""
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof).stats
    out = {"total": 0.0}
    for (file, line, name), (_, _, _, cum, _) in stats.items():
        key = f"{Path(file).name}:{line}({name})"
        out["total"] = max(out["total"], cum)
        for label, pattern in PROFILED.items():
            if pattern in key and "site-packages" not in file:
                out[label] = max(out.get(label, 0.0), cum)
    return out


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def workload(name: str, split, repeats: int, per_column: bool) -> dict:
    """Times recommend and evaluate on one split (one thread)."""
    load_before = os.getloadavg()
    model = ALSRecommender(factors=32, iterations=5, threads=1).fit(split.train)
    vectors = reference_item_vectors(split.train, dim=32)
    config = EvalConfig(ks=(10,), n_bootstrap=1000)
    no_boot = replace(config, n_bootstrap=0)
    acc = replace(config, diversity=())
    acc_no_boot = replace(acc, n_bootstrap=0)
    users = np.unique(split.test.users)
    # the first evaluate() of a process also loads numba and the cached kernels (once per
    # process): timed separately, on a 200-user evaluation
    start = time.perf_counter()
    evaluate(model, split, replace(config, max_users=200), vectors, progress=False)
    warm_s = time.perf_counter() - start
    runs: dict[str, list[tuple[float, float]]] = {
        k: []
        for k in (
            "recommend", "evaluate", "no_boot", "accuracy_only", "accuracy_no_boot",
            "evaluate_cold", "no_boot_cold",
        )
    }  # fmt: skip

    def rec():
        for s in range(0, users.size, config.batch_size):
            model.recommend(users[s : s + config.batch_size], 10)

    def cold(cfg):
        harness._VIEWS.clear()  # the split's first evaluation: its views are built here
        evaluate(model, split, cfg, vectors, progress=False)

    calls = {
        "recommend": rec,
        "evaluate": lambda: evaluate(model, split, config, vectors, progress=False),
        "no_boot": lambda: evaluate(model, split, no_boot, vectors, progress=False),
        "accuracy_only": lambda: evaluate(model, split, acc, vectors, progress=False),
        "accuracy_no_boot": lambda: evaluate(model, split, acc_no_boot, vectors, progress=False),
        "evaluate_cold": lambda: cold(config),
        "no_boot_cold": lambda: cold(no_boot),
    }
    for _ in range(repeats):  # interleaved; the fastest of each is reported
        for key, fn in calls.items():
            c0, w0 = _clock()
            fn()
            c1, w1 = _clock()
            runs[key].append((c1 - c0, w1 - w0))
    cpu = {k: min(r[0] for r in v) for k, v in runs.items()}
    wall = {k: min(r[1] for r in v) for k, v in runs.items()}
    out = {
        "workload": name,
        "users": int(users.size),
        "items": int(split.train.n_items),
        "recommend_cpu_s": cpu["recommend"],
        "evaluate_cpu_s": cpu["evaluate"],
        "evaluate_no_bootstrap_cpu_s": cpu["no_boot"],
        "evaluate_over_recommend_cpu": cpu["evaluate"] / cpu["recommend"],
        "evaluate_no_bootstrap_over_recommend_cpu": cpu["no_boot"] / cpu["recommend"],
        "evaluate_accuracy_only_cpu_s": cpu["accuracy_only"],
        "evaluate_accuracy_only_over_recommend_cpu": cpu["accuracy_only"] / cpu["recommend"],
        "evaluate_accuracy_no_bootstrap_over_recommend_cpu": cpu["accuracy_no_boot"]
        / cpu["recommend"],
        "evaluate_cold_over_recommend_cpu": cpu["evaluate_cold"] / cpu["recommend"],
        "evaluate_no_bootstrap_cold_over_recommend_cpu": cpu["no_boot_cold"] / cpu["recommend"],
        "recommend_wall_s": wall["recommend"],
        "evaluate_wall_s": wall["evaluate"],
        "evaluate_over_recommend_wall": wall["evaluate"] / wall["recommend"],
        # each round's ratio (the legs of one round ran back to back), median over rounds:
        # steadier than the ratio of two minima on a loaded machine
        "median_round_ratio_cpu": {
            k: float(np.median([a[0] / b[0] for a, b in zip(v, runs["recommend"], strict=True)]))
            for k, v in runs.items()
            if k != "recommend"
        },
        "runs_cpu_wall_s": runs,
        "first_evaluate_in_process_extra_s": warm_s,
        "where_the_time_goes_cpu_s": _profile(calls["evaluate_cold"]),
    }
    if per_column:
        result = evaluate(model, split, config, vectors, progress=False)
        start = time.process_time()
        _aggregate(result.per_user, config)
        shared_s = time.process_time() - start
        start = time.process_time()
        _per_column(result.per_user, config)
        per_col_s = time.process_time() - start
        out["bootstrap_shared_cpu_s"] = shared_s
        out["bootstrap_per_column_cpu_s"] = per_col_s
        out["bootstrap_speedup"] = per_col_s / shared_s
    out["loadavg_before_after"] = [load_before, os.getloadavg()]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_overhead.json"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-ml1m", action="store_true", help="skip ML-1M (needs DIVREC_DATA_HOME)")
    args = ap.parse_args(argv)
    results = []
    with threadpool_limits(1):
        if not args.no_ml1m:
            from divrec.data.datasets import load_dataset

            data = load_dataset("ml-1m")
            data = getattr(data, "interactions", data)
            split = random_holdout(data, test_fraction=0.2, seed=0)
            results.append(workload("ml-1m", split, args.repeats, per_column=False))
            print(json.dumps(results[-1], indent=1)[:1500], flush=True)
        cfg = SyntheticConfig(
            n_users=args.users, n_items=args.items, n_topics=20, interactions_per_user=20, seed=0
        )
        split = random_holdout(make_synthetic(cfg).interactions, test_fraction=0.2, seed=0)
        results.append(workload(f"synthetic {args.users} users", split, args.repeats, True))
    out = {
        "goal": "evaluate <= 1.3x bare recommend (issue 'Speed' item 4)",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "workloads": results,
        "note": "single-threaded BLAS; ratios within one run, by CPU time (process_time) and "
        "by wall time; the fastest of --repeats interleaved runs; evaluate is a process's "
        "second evaluate() (the first also loads numba: first_evaluate_in_process_extra_s)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2)[:4000])


if __name__ == "__main__":
    main()
