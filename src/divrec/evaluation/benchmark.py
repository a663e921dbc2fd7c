"""The main job: base models and re-ranked pipelines on one dataset → report.md,
results.json and an accuracy–diversity plot.

Besides the base models, the benchmark runs the diversity methods divrec exists for: iALS and
TotalRecall candidates (top 100) re-ranked to the list length by MMR, fast greedy DPP, SSD and
personalized DPP at a few trade-offs. Every entry, base or pipeline, goes through the same
`evaluate` call (the sampled protocol re-ranks the sampled candidates), and the report names
the accuracy–diversity Pareto front.

Each model is fitted once on the split's training set and evaluated twice when the split has
sampled negatives: with the sampled protocol (comparable with published tables, e.g. the NCF
protocol on ML-1M) and with full ranking over all items (where list diversity is meaningful).
Diversity is measured in one model-independent item space (`reference_item_vectors`) and by
genre, so models are compared on equal terms.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from divrec.atomic import publish
from divrec.data.datasets import TableSpec
from divrec.evaluation.harness import EvalConfig, EvalResult, evaluate
from divrec.metrics.reference import reference_item_vectors
from divrec.params import ParamError, to_json_value
from divrec.pipeline.spec import PipelineSpec, StageSpec
from divrec.registry import MODELS
from divrec.splitting.named import EVAL_PROTOCOL, make_split

#: Models the benchmark runs by default: every registered model that fits ML-1M in well under
#: a minute on 2 cores, plus TotalRecall with a short schedule (2 epochs; its Table 1 settings
#: are in `reproductions/totalrecall_table1.py`). The other neural models run with `--all` or
#: `--model NAME`; CDM, a ranking stage, runs as the pipeline "ials→cdm" (see `_grid`).
FAST_MODELS = ("random", "popularity", "itemknn", "ials", "bpr", "p2p", "hi", "hi-rt", "tr")

#: The stage a model runs as in the benchmark, base model or pipeline stage, where it is not
#: the registered default. TotalRecall: a short schedule; CDM: 1 backbone epoch and 1 joint
#: epoch on requests of 100 candidates (its Table 2 settings are in
#: `reproductions/cdm_tables.py`).
BENCHMARK_STAGES: dict[str, StageSpec] = {
    "tr": StageSpec("tr", {"epochs": 2.0, "lr_schedule": "linear"}),
    "cdm": StageSpec("cdm", {"max_epochs": 1, "cdm_epochs": 1, "n_candidates": 100}),
}


def model_stage(name: str) -> StageSpec:
    """The stage the benchmark runs model `name` as (`BENCHMARK_STAGES`, else the defaults)."""
    return BENCHMARK_STAGES.get(name, StageSpec(name))


def _grid() -> tuple[PipelineSpec, ...]:
    specs = []
    for name in ("ials", "tr"):
        retriever = model_stage(name)
        for label, reranker, key, values in (
            ("mmr λ", "mmr", "lambda_", (0.7, 0.4)),
            ("dpp θ", "dpp", "theta", (0.7, 0.4)),
            ("ssd γ", "ssd", "gamma", (0.5, 2.0)),
        ):
            for value in values:
                stage = StageSpec(reranker, {key: value})
                specs.append(PipelineSpec(retriever, None, stage, label=f"{name}→{label}={value}"))
        specs.append(PipelineSpec(retriever, None, StageSpec("pdpp"), label=f"{name}→p-dpp"))
    # CDM is a ranking stage: it re-scores iALS's top 100 (full ranking) or the sampled
    # candidates. Trained on its pre-ranker's candidate lists (hard negatives), it ranks the
    # NCF protocol's random negatives far worse than the retrievers.
    specs.append(PipelineSpec(model_stage("ials"), model_stage("cdm"), None, label="ials→cdm"))
    return tuple(specs)


#: The re-ranked pipelines of the default benchmark (MMR λ: larger = more relevance; DPP θ:
#: larger = more relevance; SSD γ: larger = more diversity; p-DPP: θ_u from each user's genre
#: entropy), each a `PipelineSpec` over the benchmark's iALS or TotalRecall stage.
DEFAULT_PIPELINES = _grid()

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
        protocol: split protocol (see `divrec.splitting.named.PROTOCOLS`).
        models: the base models: registered names (run as `model_stage(name)`) or stages
            (name + config values); stored as `StageSpec`s.
        ks: list lengths.
        seed: seed for splits, models and bootstrap.
        n_bootstrap: bootstrap resamples for CIs.
        max_users: evaluate a sample of users (None: all).
        table: how to read `dataset` when it is a file.
        pipelines: the pipelines (each with a ranker and/or a re-ranker); a pipeline whose
            retriever is one of `models` (same name and config values) shares its fitted
            model, any other retriever is fitted for it.
    """

    dataset: str = "ml-1m"
    protocol: str = "ncf"
    models: tuple[str | StageSpec, ...] = FAST_MODELS
    ks: tuple[int, ...] = (10, 20)
    seed: int = 0
    n_bootstrap: int = 1000
    max_users: int | None = None
    table: TableSpec | None = None
    pipelines: tuple[PipelineSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [m.name if isinstance(m, StageSpec) else m for m in self.models]
        unknown = [m for m in names if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
        if not self.models:
            raise ValueError("no model to benchmark")
        twice = sorted({m for m in names if names.count(m) > 1})
        if twice:
            raise ValueError(f"model(s) {twice} given twice")
        stages = tuple(m if isinstance(m, StageSpec) else model_stage(m) for m in self.models)
        object.__setattr__(self, "models", stages)
        object.__setattr__(self, "pipelines", tuple(self.pipelines))
        for stage in stages:
            PipelineSpec(stage).check()
        labels = [p.name for p in self.pipelines]
        for p in self.pipelines:
            if p.reranker is None and p.ranker is None:
                raise ValueError(f"pipeline {p.name!r}: needs a ranker or a re-ranker")
            if labels.count(p.name) > 1:
                raise ValueError(f"two pipelines are named {p.name!r}; give each a label")
            try:
                p.check()
            except ParamError as err:
                raise ValueError(f"pipeline {p.name!r}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values (stages and pipelines in their `PipelineSpec` forms)."""
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "models": [m.to_dict() for m in self.models],
            "ks": list(self.ks),
            "seed": self.seed,
            "n_bootstrap": self.n_bootstrap,
            "max_users": self.max_users,
            "table": None if self.table is None else asdict(self.table),
            "pipelines": [p.to_dict() for p in self.pipelines],
        }


def _key(stage: StageSpec) -> str:
    return json.dumps([stage.name, to_json_value(dict(stage.params))], sort_keys=True)


def run_benchmark(config: BenchmarkConfig, out: Path, home=None, progress: bool = True) -> dict:
    """Runs the benchmark and writes `report.md`, `results.json` and `accuracy_diversity.png`.

    The three files are written to a temporary folder and moved into `out` only when all of
    them are complete, so a failure never leaves a half-written report. Every row of
    `results.json` says how to rebuild it: a base model's `stage` and a pipeline's `spec`
    hold the full config of each stage (`PipelineSpec.from_dict(row["spec"]).build(seed)`).

    Returns:
        The results dictionary written to `results.json`.
    """
    seed = config.seed
    models = [stage.build("retriever", seed) for stage in config.models]
    rerankers = [
        None if p.reranker is None else p.reranker.build("reranker", seed) for p in config.pipelines
    ]
    split = make_split(config.dataset, config.protocol, home, seed=seed, table=config.table)
    vectors = reference_item_vectors(split.train, seed=seed)
    eval_kind = EVAL_PROTOCOL[config.protocol]
    results: dict = {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "split": split.summary(),
        "config": config.to_dict(),
        "models": {},
        "pipelines": {},
    }
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from divrec.pipeline import Pipeline

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} runs"), TimeElapsedColumn())  # fmt: skip
    fitted: dict[str, Any] = {}  # declared stage → fitted model, shared by the pipelines
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("benchmark", total=len(models) + len(rerankers))
        for stage, model in zip(config.models, models, strict=True):
            bar.update(task, description=f"fitting and evaluating {stage.name}")
            entry = _run_model(model, split, config, vectors, eval_kind)
            entry["stage"] = {"name": stage.name, "params": entry["params"]}
            results["models"][stage.name] = entry
            fitted[_key(stage)] = model
            bar.advance(task)
        for spec, reranker in zip(config.pipelines, rerankers, strict=True):
            bar.update(task, description=f"evaluating {spec.name}")
            start = time.perf_counter()
            retriever = _shared_retriever(spec.retriever, fitted, seed)
            if retriever is None:
                retriever = spec.retriever.build("retriever", seed).fit(split.train)
                fitted[_key(spec.retriever)] = retriever
            ranker = None
            if spec.ranker is not None:
                ranker = spec.ranker.build("ranker", seed)
                if getattr(ranker, "needs_retriever", False):
                    ranker.fit(split.train, retriever=retriever)
                else:
                    ranker.fit(split.train)
            pipe = Pipeline(retriever, reranker, spec.n_candidates, ranker=ranker)
            pipe.use_fitted(split.train)
            entry = _evaluate_entry(pipe, split, config, vectors, eval_kind)
            entry.update(
                spec=spec.resolved(seed).to_dict(),
                fit_seconds=time.perf_counter() - start,
                kind="pipeline",
            )
            results["pipelines"][spec.name] = entry
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
        publish(tmp_path, out, ("results.json", "accuracy_diversity.png", "report.md"))
    return results


def _shared_retriever(stage: StageSpec, fitted: dict[str, Any], seed: int):
    """The fitted base model a pipeline's retriever stage names (same class and config), or
    None."""
    if _key(stage) in fitted:
        return fitted[_key(stage)]
    probe = stage.build("retriever", seed)
    params = to_json_value(probe.get_params())
    for model in fitted.values():
        if type(model) is type(probe) and to_json_value(model.get_params()) == params:
            return model
    return None


def _run_model(model, split, config: BenchmarkConfig, vectors, eval_kind: str) -> dict:
    """Fits one model and evaluates it with the sampled (if any) and full protocols."""
    start = time.perf_counter()
    model.fit(split.train)
    fit_seconds = time.perf_counter() - start
    entry = _evaluate_entry(model, split, config, vectors, eval_kind)
    entry.update(params=to_json_value(model.get_params()), fit_seconds=fit_seconds, kind="model")
    return entry


def _evaluate_entry(model, split, config: BenchmarkConfig, vectors, eval_kind: str) -> dict:
    """The sampled (if the split has negatives) and full evaluations of a fitted model."""
    entry: dict = {}
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


def entries(results: dict) -> dict[str, dict]:
    """Every evaluated entry, base models first, then the pipelines (label → entry)."""
    return {**results.get("models", {}), **results.get("pipelines", {})}


def pareto_front(results: dict, k: int, acc: str = "ndcg", div: str = "ilad") -> list[str]:
    """Labels of the entries no other entry beats on both `acc@k` and `div@k` (full ranking)."""
    pts = {
        n: (metric(e, "full", acc, k)[0], metric(e, "full", div, k)[0])
        for n, e in entries(results).items()
    }
    pts = {n: p for n, p in pts.items() if not any(np.isnan(p))}
    return [
        n
        for n, (a, d) in pts.items()
        if not any(a2 >= a and d2 >= d and (a2, d2) != (a, d) for a2, d2 in pts.values())
    ]


def render_report(results: dict) -> str:
    """The Markdown report."""
    k = results["config"]["ks"][0]
    all_entries = entries(results)
    lines = [
        f"# divrec benchmark: {results['dataset']} ({results['protocol']} protocol)",
        "",
        f"Split: {results['split'].get('protocol', '')}; "
        f"{results['split']['train']:,} training and {results['split']['test']:,} test "
        f"interactions, {results['split']['users']:,} users, {results['split']['items']:,} items.",
        "",
    ]
    sampled = any("sampled" in e for e in all_entries.values())
    if sampled:
        lines += [
            f"## Accuracy, sampled protocol (positive among its negatives), K = {k}",
            "",
            "Pipelines re-rank the sampled candidates themselves; AUC only for entries with a "
            "per-item scorer (a re-ranked list has none).",
            "",
            f"| entry | HR@{k} [95% CI] | NDCG@{k} [95% CI] | AUC | published HR / NDCG |",
            "|---|---|---|---|---|",
        ]
        pub = results.get("published", {})
        for name, e in all_entries.items():
            hr, ndcg, auc = (
                metric(e, "sampled", m, kk) for m, kk in (("hr", k), ("ndcg", k), ("auc", None))
            )
            p = pub.get(name)
            ptxt = (
                f"{p['hr@10']:.4f} / {p['ndcg@10']:.4f} ({p['source']})" if p and k == 10 else "–"
            )
            auc_txt = "–" if np.isnan(auc[0]) else f"{auc[0]:.4f}"
            lines.append(f"| {name} | {_ci(hr)} | {_ci(ndcg)} | {auc_txt} | {ptxt} |")
        lines.append("")
    front = pareto_front(results, k)
    lines += [
        f"## Accuracy and diversity, full ranking over all items, K = {k}",
        "",
        f"| entry | HR@{k} | NDCG@{k} | ILAD@{k} | genre ILD@{k} | category cov.@{k} "
        f"| item cov.@{k} | exposure Gini@{k} | between-user div.@{k} | novelty@{k} "
        f"| miscal.@{k} | tail exp.@{k} | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in all_entries.items():
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
                "miscalibration",
                "tail_exposure",
            )
        ]
        star = " **(Pareto)**" if name in front else ""
        lines.append(
            f"| {name}{star} | "
            + " | ".join(f"{v:.4f}" for v in vals)
            + f" | {e['fit_seconds']:.1f} |"
        )
    lines += [
        "",
        "ILAD uses one model-independent item space (a 64-dimensional truncated SVD of the "
        "training item×user matrix), not the space the re-rankers diversify in (the "
        "retriever's own embedding); genre ILD uses 1 − cosine of genre vectors. Category "
        "coverage is system-level (CDM Eq. 22). 95% CIs: percentile bootstrap over users. "
        "The last column is fit seconds for base models and re-ranker fit + evaluation "
        "seconds for pipelines. Miscalibration: Steck's C_KL between the genre mix of the "
        "user's training row and of the list (α = 0.01, lower is better); tail exp.: the "
        "long tail's share of the 1/log2(1 + rank) exposure (items outside the head that "
        "holds 20% of the training interactions).",
        "",
        "![accuracy vs diversity](accuracy_diversity.png)",
        "",
        f"Pareto front on (NDCG@{k}, ILAD@{k}), full ranking: {', '.join(front)}. Every other "
        "entry is beaten by one of these on both accuracy and diversity.",
    ]
    return "\n".join(lines) + "\n"


def _ci(triple) -> str:
    mean, low, high = triple
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


_MARKERS = {"mmr": "s", "dpp": "D", "ssd": "^", "pdpp": "P", "cdm": "*"}


def plot_accuracy_diversity(results: dict, path: Path) -> None:
    """NDCG@K (full ranking) against ILAD@K and item coverage@K, one numbered point an entry.

    Points carry a number and the legend maps numbers to labels, so crowded regions stay
    readable; the Pareto front on (NDCG, ILAD) is drawn as a line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = results["config"]["ks"][0]
    all_entries = entries(results)
    front = set(pareto_front(results, k))
    cmap = plt.get_cmap("tab10")
    pipelines = results.get("pipelines", {}).values()
    retrievers = sorted({e["spec"]["retriever"]["name"] for e in pipelines})
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    handles = []
    for ax_i, (ax, (div, label)) in enumerate(zip(
        axes,
        (("ilad", f"ILAD@{k} (SVD item space)"), ("item_coverage", f"item coverage@{k}")),
        strict=True,
    )):  # fmt: skip
        front_pts = []
        for num, (name, e) in enumerate(all_entries.items(), start=1):
            acc, lo, hi = metric(e, "full", "ndcg", k)
            d = metric(e, "full", div, k)[0]
            if np.isnan(acc) or np.isnan(d):
                continue
            if e.get("kind") == "pipeline":
                spec = e["spec"]
                rr = (spec.get("reranker") or spec.get("ranker") or {}).get("name")
                color = cmap(1 + retrievers.index(spec["retriever"]["name"]))
                marker = _MARKERS.get(rr, "o")
            else:
                color, marker = "0.35", "o"
            yerr = None if np.isnan(lo) else [[acc - lo], [hi - acc]]
            h = ax.errorbar(d, acc, yerr=yerr, fmt=marker, color=color, capsize=2, ms=7,
                            mec="black" if name in front else color,
                            label=f"{num} {name}")  # fmt: skip
            ax.annotate(str(num), (d, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if ax_i == 0:
                handles.append(h)
                if name in front:
                    front_pts.append((d, acc))
        if front_pts:
            xs, ys = zip(*sorted(front_pts), strict=True)
            ax.plot(xs, ys, "k--", lw=0.8, alpha=0.6, label="_front")
        ax.set_xlabel(label)
        ax.set_ylabel(f"NDCG@{k} (full ranking)")
        ax.grid(alpha=0.3)
    axes[0].set_title("dashed: Pareto front (black edge)")
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(f"Accuracy vs diversity on {results['dataset']} ({results['protocol']})")
    fig.tight_layout(rect=(0, 0, 0.80, 1))
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
