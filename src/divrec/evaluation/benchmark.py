"""The main job: every registered model on one dataset → report.md, results.json, a plot.

Each model is fitted once on the split's training set and evaluated twice when the split has
sampled negatives: with the sampled protocol (comparable with published tables, e.g. the NCF
protocol on ML-1M) and with full ranking over all items (where list diversity is meaningful).
Diversity is measured in one model-independent item space (`reference_item_vectors`) and by
genre, so models are compared on equal terms.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from divrec.evaluation.harness import EvalConfig, EvalResult, evaluate
from divrec.evaluation.setup import (
    EVAL_PROTOCOL,
    MODELS,
    TableSpec,
    make_model,
    make_split,
    reference_item_vectors,
)

#: Models the benchmark runs by default: every registered model that fits ML-1M in well under
#: a minute on 2 cores. The neural models (TotalRecall "tr"/"mfb", HI-NN) train for minutes
#: each; they run with `--all` or `--model NAME`, and their paper tables have their own
#: reproduction scripts in `divrec.experiments`.
FAST_MODELS = ("random", "popularity", "itemknn", "ials", "bpr", "p2p", "hi", "hi-rt")

#: Published HR@10 / NDCG@10 on ML-1M with the NCF protocol (TotalRecall, Table 1, citing
#: Dacrema et al. 2021 and Rendle et al. 2020).
PUBLISHED_NCF_ML1M = {
    "popularity": {"hr@10": 0.4533, "ndcg@10": 0.2542, "source": "Dacrema et al. (2021)"},
    "ials": {"hr@10": 0.7109, "ndcg@10": 0.4382, "source": "Dacrema et al. (2021)"},
}


@dataclass(frozen=True)
class BenchmarkConfig:
    """What the benchmark runs.

    Attributes:
        dataset: dataset name or CSV/Parquet path.
        protocol: split protocol (see `divrec.evaluation.setup.PROTOCOLS`).
        models: model names (keys of `MODELS`).
        ks: list lengths.
        seed: seed for splits, models and bootstrap.
        n_bootstrap: bootstrap resamples for CIs.
        max_users: evaluate a sample of users (None: all).
    """

    dataset: str = "ml-1m"
    protocol: str = "ncf"
    models: tuple[str, ...] = FAST_MODELS
    ks: tuple[int, ...] = (10, 20)
    seed: int = 0
    n_bootstrap: int = 1000
    max_users: int | None = None
    params: dict = field(default_factory=dict)  # model name → hyperparameters
    table: TableSpec | None = None  # how to read `dataset` when it is a file

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
        if not self.models:
            raise ValueError("no model to benchmark")


def run_benchmark(config: BenchmarkConfig, out: Path, home=None, progress: bool = True) -> dict:
    """Runs the benchmark and writes `report.md`, `results.json` and `accuracy_diversity.png`.

    The three files are written to a temporary folder and moved into `out` only when all of
    them are complete, so a failure never leaves a half-written report.

    Returns:
        The results dictionary written to `results.json`.
    """
    models = [make_model(name, config.params.get(name), seed=config.seed) for name in config.models]
    split = make_split(config.dataset, config.protocol, home, seed=config.seed, table=config.table)
    vectors = reference_item_vectors(split.train, seed=config.seed)
    eval_kind = EVAL_PROTOCOL[config.protocol]
    results: dict = {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "split": split.summary(),
        "config": {**asdict(config), "models": list(config.models)},
        "models": {},
    }
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} models"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("benchmark", total=len(models))
        for name, model in zip(config.models, models, strict=True):
            bar.update(task, description=f"fitting and evaluating {name}")
            results["models"][name] = _run_model(model, split, config, vectors, eval_kind)
            bar.advance(task)
    if config.dataset == "ml-1m" and config.protocol == "ncf":
        results["published"] = PUBLISHED_NCF_ML1M
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
        plot_accuracy_diversity(results, tmp_path / "accuracy_diversity.png")
        (tmp_path / "report.md").write_text(render_report(results))
        out.mkdir(parents=True, exist_ok=True)
        for f in ("results.json", "accuracy_diversity.png", "report.md"):
            shutil.move(str(tmp_path / f), out / f)
    return results


def _run_model(model, split, config: BenchmarkConfig, vectors, eval_kind: str) -> dict:
    """Fits one model and evaluates it with the sampled (if any) and full protocols."""
    start = time.perf_counter()
    model.fit(split.train)
    entry = {"params": model.get_params(), "fit_seconds": time.perf_counter() - start}
    evals: dict[str, EvalResult] = {}
    if eval_kind == "sampled":
        evals["sampled"] = evaluate(model, split, _eval_config(config, "sampled"), vectors, False)
    evals["full"] = evaluate(model, split, _eval_config(config, "full"), vectors, False)
    for kind, res in evals.items():
        entry[kind] = res.to_dict()
    return entry


def _eval_config(config: BenchmarkConfig, protocol: str) -> EvalConfig:
    return EvalConfig(
        ks=config.ks,
        protocol=protocol,
        n_bootstrap=config.n_bootstrap,
        seed=config.seed,
        max_users=config.max_users,
    )


def metric(entry: dict, kind: str, name: str, k: int | None) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of `name@k` in one model's `kind` evaluation, or NaNs."""
    for row in entry.get(kind, {}).get("aggregate", []):
        if row["metric"] == name and (k is None or row["k"] == k):
            return row["mean"], row["ci_low"], row["ci_high"]
    value = entry.get(kind, {}).get("system", {}).get(f"{name}@{k}")
    if value is not None:
        return value, float("nan"), float("nan")
    return float("nan"), float("nan"), float("nan")


def render_report(results: dict) -> str:
    """The Markdown report."""
    k = results["config"]["ks"][0]
    lines = [
        f"# divrec benchmark: {results['dataset']} ({results['protocol']} protocol)",
        "",
        f"Split: {results['split'].get('protocol', '')}; "
        f"{results['split']['train']:,} training and {results['split']['test']:,} test "
        f"interactions, {results['split']['users']:,} users, {results['split']['items']:,} items.",
        "",
    ]
    sampled = any("sampled" in e for e in results["models"].values())
    if sampled:
        lines += [
            f"## Accuracy, sampled protocol (positive among its negatives), K = {k}",
            "",
            f"| model | HR@{k} [95% CI] | NDCG@{k} [95% CI] | AUC | published HR / NDCG |",
            "|---|---|---|---|---|",
        ]
        pub = results.get("published", {})
        for name, e in results["models"].items():
            hr, ndcg, auc = (
                metric(e, "sampled", m, kk) for m, kk in (("hr", k), ("ndcg", k), ("auc", None))
            )
            p = pub.get(name)
            ptxt = (
                f"{p['hr@10']:.4f} / {p['ndcg@10']:.4f} ({p['source']})" if p and k == 10 else "–"
            )
            lines.append(f"| {name} | {_ci(hr)} | {_ci(ndcg)} | {auc[0]:.4f} | {ptxt} |")
        lines.append("")
    lines += [
        f"## Accuracy and diversity, full ranking over all items, K = {k}",
        "",
        f"| model | HR@{k} | NDCG@{k} | ILAD@{k} | genre ILD@{k} | category cov.@{k} "
        f"| item cov.@{k} | exposure Gini@{k} | between-user div.@{k} | novelty@{k} | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in results["models"].items():
        vals = [
            metric(e, "full", m, k)[0]
            for m in (
                "hr",
                "ndcg",
                "ilad",
                "category_ild",
                "category_coverage",
                "item_coverage",
                "exposure_gini",
                "between_user_diversity",
                "novelty",
            )
        ]
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {e['fit_seconds']:.1f} |"
        )
    lines += [
        "",
        "ILAD uses one model-independent item space (a 64-dimensional truncated SVD of the "
        "training item×user matrix); genre ILD uses 1 − cosine of genre vectors. Category "
        "coverage is system-level (CDM Eq. 22). 95% CIs: percentile bootstrap over users.",
        "",
        "![accuracy vs diversity](accuracy_diversity.png)",
        "",
        _frontier_sentence(results, k),
    ]
    return "\n".join(lines) + "\n"


def _frontier_sentence(results: dict, k: int) -> str:
    pts = {
        n: (metric(e, "full", "ndcg", k)[0], metric(e, "full", "ilad", k)[0])
        for n, e in results["models"].items()
    }
    front = [
        n
        for n, (a, d) in pts.items()
        if not any(a2 >= a and d2 >= d and (a2, d2) != (a, d) for a2, d2 in pts.values())
    ]
    return (
        f"Pareto-optimal on (NDCG@{k}, ILAD@{k}): {', '.join(front)}; every other model is "
        "dominated by one of these on both accuracy and diversity."
    )


def _ci(triple) -> str:
    mean, low, high = triple
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def plot_accuracy_diversity(results: dict, path: Path) -> None:
    """Accuracy (NDCG@K, full ranking) against ILAD@K and item coverage@K, one point a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["config"]["ks"][0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (div, label) in zip(
        axes,
        (("ilad", f"ILAD@{k} (SVD item space)"), ("item_coverage", f"item coverage@{k}")),
        strict=True,
    ):
        for name, e in results["models"].items():
            acc, lo, hi = metric(e, "full", "ndcg", k)
            d = metric(e, "full", div, k)
            yerr = None if np.isnan(lo) else [[acc - lo], [hi - acc]]
            ax.errorbar(d[0], acc, yerr=yerr, fmt="o", capsize=3)
            ax.annotate(name, (d[0], acc), textcoords="offset points", xytext=(5, 5))
        ax.set_xlabel(label)
        ax.set_ylabel(f"NDCG@{k} (full ranking)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Accuracy vs diversity on {results['dataset']} ({results['protocol']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and np.isnan(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
