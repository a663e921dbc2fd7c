"""TotalRecall tower variants on ML-1M (NCF protocol): ID vs MLP vs history (pseudo-user) towers.

Trains `TwoTowerRecommender` with the Table 1 TR settings (Bi-InfoNCE, d=128, τ=0.111,
batch 512, 6 epochs, lr 0.01 decayed linearly, 1 thread) and each optional tower, and writes
HR@10 / NDCG@10 and training time to JSON and Markdown. About 4 minutes per variant.

    python benchmarks/bench_tr_towers.py --out benchmarks/results/totalrecall_towers
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from divrec.data.ncf import load_ncf_ml1m
from divrec.evaluation.harness import evaluate
from divrec.retrieval.two_tower import TwoTowerRecommender
from reproductions.totalrecall_table1 import COMMON, CURVE_CONFIG, DEFAULTS

VARIANTS = {
    "id (Table 1 model)": {},
    "mlp (256)": {"tower": "mlp", "hidden": (256,)},
    "history L=20 mean": {"user_tower": "history", "hidden": (256,), "history_len": 20},
    "history L=20 mean+max + user id": {
        "user_tower": "history",
        "hidden": (256,),
        "history_len": 20,
        "history_pool": "mean_max",
        "history_user_id": True,
    },
    "history L=100 mean": {"user_tower": "history", "hidden": (256,), "history_len": 100},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/totalrecall_towers"))
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    args = parser.parse_args(argv)
    split, _ = load_ncf_ml1m()
    out = {}
    for name in args.variant or list(VARIANTS):
        model = TwoTowerRecommender(
            dim=128, seed=0, threads=1, **COMMON, **DEFAULTS["tr"], **VARIANTS[name]
        )
        model.fit(split.train)
        agg = evaluate(model, split, CURVE_CONFIG, progress=False).aggregate
        mean = agg.set_index("metric")["mean"]
        out[name] = {
            "hr@10": float(mean["hr"]),
            "ndcg@10": float(mean["ndcg"]),
            "train_seconds": model.train_seconds_,
            "params": model.get_params(),
        }
        print(name, out[name]["hr@10"], out[name]["ndcg@10"], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "towers.json").write_text(json.dumps(out, indent=1, default=list))
    lines = ["| tower | HR@10 | NDCG@10 | train s |", "|---|---|---|---|"]
    lines += [
        f"| {n} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['train_seconds']:.0f} |"
        for n, r in out.items()
    ]
    (args.out / "towers.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
