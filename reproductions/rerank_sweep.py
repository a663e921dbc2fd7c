"""Accuracy–diversity sweep of the re-rankers on iALS candidates (issue: re-ranking stage).

Protocol: ML-1M (or any dataset), random 80:20 holdout of ratings, iALS fitted once; for
every test user the top N = 100 iALS candidates (training items excluded) are re-ranked to
k = 10 by each method at each trade-off value. Similarity for the re-rankers: cosine of the
iALS item factors (what a production re-ranker would have). Diversity is measured outside
that space — ILAD in the model-independent SVD item space of `reference_item_vectors` and
per-list genre coverage — so no method is graded in the space it optimizes.

    python -m reproductions.rerank_sweep --out results/rerank_sweep
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from divrec.evaluation.harness import EvalConfig, evaluate
from divrec.metrics.reference import reference_item_vectors
from divrec.pipeline import Pipeline
from divrec.rerank import CFDA, CFDM, MMR, SSD, CategoryCap, FastGreedyDPP
from divrec.retrieval import ALSRecommender
from divrec.splitting.named import make_split

#: method → (parameter name, values, constructor); the first value is closest to relevance.
GRID = {
    "MMR": ("lambda", (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3), lambda v: MMR(lambda_=v)),
    "DPP": ("theta", (0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3), lambda v: FastGreedyDPP(theta=v)),
    "DPP window 5": (
        "theta",
        (0.9, 0.7, 0.5, 0.3),
        lambda v: FastGreedyDPP(theta=v, window=5),
    ),
    "SSD": ("gamma", (0.1, 0.25, 0.5, 1.0, 2.0), lambda v: SSD(gamma=v, window=5)),
    "CF-DA": ("phi", (0.1, 0.25, 0.5, 1.0, 2.0), lambda v: CFDA(phi=v)),
    "CF-DM": ("n_factor", (1.5, 2, 3, 5), lambda v: CFDM(n_factor=v)),
    "Category cap": ("cap", (4, 3, 2, 1), lambda v: CategoryCap(max_per_category=int(v))),
}


@dataclass(frozen=True)
class SweepConfig:
    """Sweep settings: dataset, split protocol, candidate count N, list length k, seed."""

    dataset: str = "ml-1m"
    protocol: str = "random"
    n_candidates: int = 100
    k: int = 10
    seed: int = 0
    max_users: int | None = None


def run_rerank_sweep(config: SweepConfig, out: Path, home=None) -> dict:
    """Runs the sweep; writes `rerank_sweep.json`, `rerank_sweep.png` and `rerank_sweep.md`."""
    split = make_split(config.dataset, config.protocol, home, seed=config.seed)
    als = ALSRecommender(seed=config.seed).fit(split.train)
    ref = reference_item_vectors(split.train, seed=config.seed)
    eval_cfg = EvalConfig(
        ks=(config.k,),
        n_bootstrap=200,
        seed=config.seed,
        max_users=config.max_users,
        diversity=("ilad", "user_category_coverage"),
    )
    rows = []

    def run(method: str, param: str, value, reranker) -> None:
        pipe = Pipeline(als, reranker, n_candidates=config.n_candidates).use_fitted(split.train)
        start = time.perf_counter()
        res = evaluate(pipe, split, eval_cfg, ref, progress=False)
        k = config.k
        rows.append(
            {
                "method": method,
                "param": param,
                "value": value,
                "ndcg": res.mean("ndcg", k),
                "recall": res.mean("recall", k),
                "hr": res.mean("hr", k),
                "ilad": res.mean("ilad", k),
                "genre_coverage": res.mean("user_category_coverage", k),
                "item_coverage": res.system[f"item_coverage@{k}"],
                "seconds": time.perf_counter() - start,
            }
        )

    run("iALS (no re-rank)", "-", None, None)
    for method, (param, values, make) in GRID.items():
        for value in values:
            run(method, param, value, make(value))
    results = {
        "config": config.__dict__,
        "split": split.summary(),
        "rows": rows,
        "pareto": pareto_methods(rows, "ndcg", "ilad"),
        "pareto_genre": pareto_methods(rows, "ndcg", "genre_coverage"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "rerank_sweep.json").write_text(json.dumps(results, indent=2, default=float))
    plot_sweep(rows, out / "rerank_sweep.png", config)
    (out / "rerank_sweep.md").write_text(render(results))
    return results


def pareto_methods(rows: list[dict], acc: str, div: str) -> dict[str, int]:
    """How many points of each method lie on the joint Pareto front of (acc, div)."""
    pts = [(r[acc], r[div]) for r in rows]
    counts: dict[str, int] = {}
    for r, (a, d) in zip(rows, pts, strict=True):
        dominated = any(a2 >= a and d2 >= d and (a2, d2) != (a, d) for a2, d2 in pts)
        if not dominated:
            counts[r["method"]] = counts.get(r["method"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def render(results: dict) -> str:
    """Markdown table of every point plus the Pareto summary."""
    k = results["config"]["k"]
    lines = [
        f"# Re-ranking sweep: {results['config']['dataset']}, iALS top-"
        f"{results['config']['n_candidates']} → {k}",
        "",
        f"| method | parameter | NDCG@{k} | Recall@{k} | ILAD@{k} | genre coverage@{k} "
        f"| item coverage@{k} | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['method']} | {r['param']}={r['value']} | {r['ndcg']:.4f} | {r['recall']:.4f} "
            f"| {r['ilad']:.4f} | {r['genre_coverage']:.4f} | {r['item_coverage']:.4f} "
            f"| {r['seconds']:.1f} |"
        )
    front = ", ".join(f"{m} ({n})" for m, n in results["pareto"].items())
    front_g = ", ".join(f"{m} ({n})" for m, n in results["pareto_genre"].items())
    lines += [
        "",
        f"Points on the Pareto front of (NDCG@{k}, ILAD@{k}), by method: {front}.",
        f"Points on the Pareto front of (NDCG@{k}, genre coverage@{k}), by method: {front_g}.",
        f"Dominant method (most points on the front): {next(iter(results['pareto']))} for "
        f"ILAD, {next(iter(results['pareto_genre']))} for genre coverage.",
        "",
        "![sweep](rerank_sweep.png)",
    ]
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict], path: Path, config: SweepConfig) -> None:
    """NDCG@k against ILAD@k and genre coverage@k, one curve per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for ax, div, label in (
        (axes[0], "ilad", f"ILAD@{config.k} (SVD item space)"),
        (axes[1], "genre_coverage", f"genre coverage@{config.k} (per list)"),
    ):
        for m in methods:
            pts = [r for r in rows if r["method"] == m]
            marker = "*" if len(pts) == 1 else "o-"
            ax.plot([p[div] for p in pts], [p["ndcg"] for p in pts], marker, label=m, ms=6)
        ax.set_xlabel(label)
        ax.set_ylabel(f"NDCG@{config.k}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Re-rankers on iALS top-{config.n_candidates} → {config.k}, {config.dataset} "
        f"({config.protocol} split)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/rerank_sweep"))
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--max-users", type=int, default=None)
    args = parser.parse_args(argv)
    res = run_rerank_sweep(SweepConfig(dataset=args.dataset, max_users=args.max_users), args.out)
    print(render(res))


if __name__ == "__main__":
    main()
