"""How much the PURS test requests can tell apart: the training popularity of each request's
positive against its 99 negatives, per data set, on the split the seed runs use.

    python -m reproductions.purs_data_check --out benchmarks/results/purs_seeds

writes OUT/candidate_popularity.json (for `--negatives uniform` runs, pass the same flag).
`purs_report` turns it into each data set's "Measured cause" line: on Yelp and Beauty a test
positive has the same median training count as the negatives drawn from training items, and a
quarter of the positives never occur in training (no learned embedding), with ~7 training
positives per user; on ML-1M the positive is far more popular than its negatives. Seconds of
CPU; no model is trained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reproductions.purs_tables import Bench

USERS = {"MovieLens": 2999, "Yelp": 4000, "Beauty": 4000}


def candidate_popularity(bench: Bench) -> dict:
    """Training counts of the requests' positives and negatives (`bench.cand`, `(R, 100)`)."""
    pop = bench.train_pop
    rows = np.arange(len(bench.users))
    pos = pop[bench.cand[rows, bench.pos_col]]
    neg = pop[bench.cand[bench.label == 0]].reshape(rows.size, -1)
    log = bench.split.train_log
    # per request, as the tables' AUC: P(positive's count > a negative's), ties half
    auc = ((neg < pos[:, None]).sum(1) + 0.5 * (neg == pos[:, None]).sum(1)) / neg.shape[1]
    return {
        "requests": int(rows.size),
        "train_positives_per_user": float(len(log.items) / np.unique(log.users).size),
        "positive_train_count_median": float(np.median(pos)),
        "negative_train_count_median": float(np.median(neg)),
        "positive_cold_share": float(np.mean(pos == 0)),
        "negative_cold_share": float(np.mean(neg == 0)),
        "positive_at_most_1_share": float(np.mean(pos <= 1)),
        "negative_at_most_1_share": float(np.mean(neg <= 1)),
        "training_count_auc": float(auc.mean()),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=list(USERS), choices=list(USERS))
    ap.add_argument("--negatives", choices=("train", "uniform"), default="train")
    ap.add_argument("--requests-per-user", type=int, default=3)
    args = ap.parse_args(argv)
    res = {"negatives": args.negatives, "datasets": {}}
    for ds in args.datasets:
        bench = Bench(ds, USERS[ds], args.requests_per_user, negatives=args.negatives)
        res["datasets"][ds] = candidate_popularity(bench)
        print(ds, json.dumps(res["datasets"][ds]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "candidate_popularity.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
