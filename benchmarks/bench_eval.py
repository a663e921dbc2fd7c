"""Evaluation overhead: `evaluate()` with the default metrics against the bare `recommend`.

Issue #9 item 11: the full evaluation used to cost 2.0–3.8× the bare `recommend` (bootstrap
resample indices drawn per metric column; two extra passes over the scores in top-k). This
measures, in one run, on synthetic data with `--users` users:

* `recommend_s`: the bare `model.recommend(users, K)` over all test users (batches of 1024);
* `evaluate_s`: `evaluate(model, split, EvalConfig(ks=(10,)))` (default metrics, 1,000
  bootstrap resamples, ILAD in a 32-d reference space);
* `bootstrap_shared_s` vs `bootstrap_per_column_s`: the shared-resample aggregate against
  fresh resamples for each metric column (`bootstrap_ci` per column, the same compiled
  resampling), on the same per-user table;
* ratios of each.

Usage: `python benchmarks/bench_eval.py --users 100000 --out benchmarks/results/eval.json`
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from divrec.data import SyntheticConfig, make_synthetic
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eval.json"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cfg = SyntheticConfig(
        n_users=args.users, n_items=args.items, n_topics=20, interactions_per_user=20, seed=0
    )
    data = make_synthetic(cfg).interactions
    split = random_holdout(data, test_fraction=0.2, seed=0)
    with threadpool_limits(1):
        model = ALSRecommender(factors=32, iterations=5, threads=1).fit(split.train)
        vectors = reference_item_vectors(split.train, dim=32)
        config = EvalConfig(ks=(10,), n_bootstrap=1000)
        users = np.unique(split.test.users)
        # the first evaluate() of a process also loads numba and the cached bootstrap kernel
        # (~0.7 s, once per process): timed separately, on a 200-user evaluation
        start = time.perf_counter()
        evaluate(model, split, replace(config, max_users=200), vectors, progress=False)
        warm_s = time.perf_counter() - start
        rec_runs, eval_runs = [], []
        for _ in range(args.repeats):  # interleaved; the fastest of each is reported
            start = time.perf_counter()
            for s in range(0, users.size, config.batch_size):
                model.recommend(users[s : s + config.batch_size], 10)
            rec_runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = evaluate(model, split, config, vectors, progress=False)
            eval_runs.append(time.perf_counter() - start)
        rec_s, eval_s = min(rec_runs), min(eval_runs)
        start = time.perf_counter()
        _aggregate(result.per_user, config)
        shared_s = time.perf_counter() - start
        start = time.perf_counter()
        _per_column(result.per_user, config)
        per_col_s = time.perf_counter() - start
    out = {
        "users": int(users.size),
        "items": args.items,
        "recommend_s": rec_s,
        "evaluate_s": eval_s,
        "evaluate_over_recommend": eval_s / rec_s,
        "recommend_runs_s": rec_runs,
        "evaluate_runs_s": eval_runs,
        "first_evaluate_in_process_extra_s": warm_s,
        "bootstrap_shared_s": shared_s,
        "bootstrap_per_column_s": per_col_s,
        "bootstrap_speedup": per_col_s / shared_s,
        "goal": "evaluate <= 1.3x bare recommend at 100k users",
        "note": "single-threaded BLAS; ratios within one run; evaluate_s is a process's "
        "second evaluate() (the first also loads numba: first_evaluate_in_process_extra_s "
        "is a whole 200-user evaluation including that start-up)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
