"""Steck 2018 on ML-1M: the λ-sweep table and plot from a `divrec experiment` run.

Reads the `results.json` of `divrec experiment run reproductions/calibration_ml1m.toml` and
writes, next to it, `sweep.json` (per entry: λ, the seed-aware mean, sd and CI of every
per-user metric, the change against iALS in percent; the mean over seeds of the system
metrics tail_exposure@10, popularity_lift@10 and item_coverage@10) and `sweep.png` (precision@10 and
miscalibration@10 against λ, and the trade-off curve).

Run: `python -m reproductions.calibration_ml1m benchmarks/results/calibration_ml1m`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

METRICS = (
    "precision@10",
    "recall@10",
    "ndcg@10",
    "miscalibration@10",
    "arp@10",
    "category_ild@10",
)
#: system-level metrics (one value per seed): exposure fairness of the lists
SYSTEM = ("tail_exposure@10", "popularity_lift@10", "item_coverage@10")


def sweep_table(results: dict) -> dict:
    """The compact table: one row per entry (λ = 0 for iALS, None for the sanity rows)."""
    rows = []
    base = next(e for e in results["entries"] if e["name"] == results["baseline"])
    for e in results["entries"]:
        m = re.search(r"λ=([0-9.]+)", e["name"])
        lam = float(m.group(1)) if m else (0.0 if e["name"] == base["name"] else None)
        row = {"entry": e["name"], "lambda": lam, "sanity": bool(e.get("sanity"))}
        for key in METRICS:
            s = e["summary"].get(key)
            if s is None:
                continue
            b = base["summary"][key]["mean"]
            row[key] = {
                "mean": s["mean"],
                "sd_over_seeds": s["sd"],
                "ci": [s["ci_low"], s["ci_high"]],
                "change_vs_ials_percent": None if not b else 100.0 * (s["mean"] - b) / b,
            }
        for key in SYSTEM:
            vals = e.get("system", {}).get(key)
            if vals is not None:
                row[key] = {"mean_over_seeds": sum(vals) / len(vals), "per_seed": vals}
        rows.append(row)
    return {
        "source": "results.json of `divrec experiment run reproductions/calibration_ml1m.toml`",
        "dataset": results["dataset"],
        "chosen_ials_params": base.get("chosen_params"),
        "seeds": base.get("seeds"),
        "confidence": results["statistics"]["confidence"],
        "rows": rows,
    }


def plot(table: dict, path: Path) -> None:
    """precision@10 and miscalibration@10 against λ; precision against miscalibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in table["rows"] if r["lambda"] is not None), key=lambda r: r["lambda"])
    lam = [r["lambda"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, key, label in (
        (axes[0], "precision@10", "precision@10 (rating ≥ 4 relevant)"),
        (axes[1], "miscalibration@10", "miscalibration C_KL@10 (α = 0.01)"),
    ):
        mean = [r[key]["mean"] for r in rows]
        lo = [r[key]["mean"] - r[key]["ci"][0] for r in rows]
        hi = [r[key]["ci"][1] - r[key]["mean"] for r in rows]
        ax.errorbar(lam, mean, yerr=[lo, hi], fmt="o-", capsize=3)
        for r in table["rows"]:
            if r["sanity"] and key in r:
                ax.axhline(r[key]["mean"], ls=":", color="0.5", lw=0.8)
                ax.annotate(r["entry"], (lam[-1], r[key]["mean"]), fontsize=7, color="0.4")
        ax.set_xlabel("λ (0: iALS order)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax = axes[2]
    x = [r["miscalibration@10"]["mean"] for r in rows]
    y = [r["precision@10"]["mean"] for r in rows]
    ax.plot(x, y, "o-")
    for xi, yi, li in zip(x, y, lam, strict=True):
        ax.annotate(f"λ={li:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("miscalibration C_KL@10 (lower: better calibrated)")
    ax.set_ylabel("precision@10")
    ax.grid(alpha=0.3)
    seeds = len(table["seeds"] or [])
    fig.suptitle(
        f"Calibrated re-ranking (Steck 2018, Eq. 6) on top of iALS, ML-1M: mean over {seeds} "
        f"seeds, {table['confidence']:.0%} seed-and-user bootstrap CIs",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the experiment's --out folder")
    args = parser.parse_args()
    results = json.loads((args.folder / "results.json").read_text())
    table = sweep_table(results)
    (args.folder / "sweep.json").write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    plot(table, args.folder / "sweep.png")
    print(f"wrote {args.folder / 'sweep.json'} and {args.folder / 'sweep.png'}")


if __name__ == "__main__":
    main()
