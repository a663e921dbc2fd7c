"""FA*IR on ML-1M: the exposure table from a `divrec experiment` run.

Reads the `results.json` of `divrec experiment run reproductions/fair_ml1m.toml` and writes
`table.json` next to it: per entry the seed-aware mean (and 95% CI) of precision@10,
ndcg@10 and ARP@10, and the mean over seeds of the system metrics tail_exposure@10 and
popularity_lift@10.

Run: `python -m reproductions.fair_ml1m benchmarks/results/fair_ml1m`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PER_USER = ("precision@10", "ndcg@10", "arp@10", "miscalibration@10")
SYSTEM = ("tail_exposure@10", "popularity_lift@10", "item_coverage@10")


def table(results: dict) -> dict:
    """One row per entry."""
    rows = []
    for e in results["entries"]:
        row: dict = {"entry": e["name"], "sanity": bool(e.get("sanity"))}
        for key in PER_USER:
            s = e["summary"].get(key)
            if s is not None:
                row[key] = {"mean": s["mean"], "ci": [s["ci_low"], s["ci_high"]]}
        for key in SYSTEM:
            vals = e.get("system", {}).get(key)
            if vals is not None:
                row[key] = {"mean_over_seeds": float(np.mean(vals)), "per_seed": vals}
        rows.append(row)
    return {
        "source": "results.json of `divrec experiment run reproductions/fair_ml1m.toml`",
        "dataset": results["dataset"],
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the experiment's --out folder")
    args = parser.parse_args()
    out = table(json.loads((args.folder / "results.json").read_text()))
    (args.folder / "table.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.folder / 'table.json'}")


if __name__ == "__main__":
    main()
