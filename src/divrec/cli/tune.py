"""`divrec tune` (registered on the main app by `register(app)`).

Chooses the diversity knob of a pipeline's re-ranker that maximizes a diversity metric under a
cap on the relative loss of an accuracy metric against relevance-only, on a validation split
carved from the training split (`divrec.evaluation.knob.tune_knob`), reports the choice on
test with bootstrap CIs, and writes a `divrec train` config of the tuned pipeline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from divrec.cli._common import guarded

__all__ = ["register", "tune"]


def tune(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="ml-100k, ml-1m, or a CSV/TSV/Parquet path.")
    ] = "ml-1m",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            "-p",
            help="Test split: random (80:20), temporal (80:20 by time) or leave-last-one; "
            "validation is carved from the training split the same way.",
        ),
    ] = "random",
    model: Annotated[str, typer.Option("--model", "-m", help="Retriever (model name).")] = "ials",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Retriever hyperparameter name=value.")
    ] = None,
    ranker: Annotated[
        str | None, typer.Option("--ranker", help="A ranking stage (any model name).")
    ] = None,
    ranker_param: Annotated[
        list[str] | None,
        typer.Option("--ranker-param", help="Ranking-stage hyperparameter name=value."),
    ] = None,
    reranker: Annotated[
        str,
        typer.Option(
            "--reranker",
            "--rerank",
            help="A re-ranker with a diversity knob: dpp, mmr, ssd, pdpp, rt-dpp, ia-mmr, cf-da.",
        ),
    ] = "dpp",
    rerank_param: Annotated[
        list[str] | None,
        typer.Option("--rerank-param", help="Re-ranker hyperparameter name=value."),
    ] = None,
    candidates: Annotated[
        int, typer.Option("--candidates", help="Candidates passed to the later stages.")
    ] = 100,
    pipeline: Annotated[
        Path | None,
        typer.Option("--pipeline", help="A pipeline file (.toml/.json) instead of stage flags."),
    ] = None,
    diversity_metric: Annotated[
        str,
        typer.Option(
            "--diversity-metric",
            help="Maximized: ilad@k, category_ild@k, user_category_coverage@k or novelty@k.",
        ),
    ] = "ilad@10",
    accuracy_metric: Annotated[
        str,
        typer.Option(
            "--accuracy-metric",
            help="Budgeted: ndcg@k, recall@k, hr@k, precision@k, mrr@k or map@k.",
        ),
    ] = "ndcg@10",
    max_loss: Annotated[
        float,
        typer.Option(
            "--max-loss", help="Largest relative accuracy loss vs relevance-only, in (0, 1)."
        ),
    ] = 0.05,
    rule: Annotated[
        str,
        typer.Option(
            "--rule",
            help="What is held to the cap on validation: point (each knob's loss) or upper "
            "(the upper bound of its paired bootstrap CI: more conservative).",
        ),
    ] = "upper",
    grid: Annotated[
        str | None,
        typer.Option("--grid", help="Knob values, comma-separated (default 0, 0.05, …, 1)."),
    ] = None,
    segments: Annotated[
        str | None,
        typer.Option(
            "--segments",
            help="One knob per user segment: activity:S (S quantile groups of history length).",
        ),
    ] = None,
    validation_fraction: Annotated[
        float,
        typer.Option("--validation-fraction", help="Validation share of the training rows."),
    ] = 0.2,
    max_users: Annotated[
        int | None,
        typer.Option("--max-users", help="Evaluate the grid on a sample of validation users."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for splits, models, ILAD space and bootstrap.")
    ] = 0,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for the test CIs (0: none).")
    ] = 1000,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (tune.json, train.toml, …).")
    ] = Path("tune"),
    data_home: Annotated[
        Path | None,
        typer.Option("--data-home", help="Data home (default: $DIVREC_DATA_HOME or a cache dir)."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", help="For a file dataset: role=column pairs (user=uid,...)."),
    ] = None,
    min_rating: Annotated[
        float | None,
        typer.Option("--min-rating", help="For a file dataset: keep rows rated at least this."),
    ] = None,
) -> None:
    """Pick the diversity knob that maximizes a diversity metric within an accuracy-loss cap.

    The knob grid is evaluated on a validation split carved from the training split (pipeline
    fitted on the rest); the chosen knob is the most diverse one whose relative accuracy loss
    against knob 0 (with --rule upper: the upper bound of its CI) is at most --max-loss. The
    pipeline is then refitted on the training split and the test report gives accuracy and
    diversity at the knob and at 0, the relative loss with a paired bootstrap CI, and whether
    it is within the cap. Writes --out/tune.json,
    tune.md, tradeoff.png and train.toml (a `divrec train` config of the tuned pipeline).
    """
    from divrec.data.datasets import TableSpec, load_dataset
    from divrec.evaluation.knob import check_tune_inputs
    from divrec.params import parse_pairs
    from divrec.pipeline.spec import PipelineSpec
    from divrec.serve.config import load_config
    from divrec.splitting.named import make_split

    # ---- every check before any data is read or model fitted
    if not 0 <= seed < 2**32:
        raise ValueError(f"--seed must be in [0, 2**32 - 1], got {seed}")
    if bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {bootstrap}")
    if max_users is not None and max_users <= 0:
        raise ValueError(f"--max-users must be a positive number of users, got {max_users}")
    if not 0 < max_loss < 1:
        raise ValueError(f"--max-loss must be in (0, 1), got {max_loss}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"--validation-fraction must be in (0, 1), got {validation_fraction}")
    if candidates <= 0:
        raise ValueError(f"--candidates must be positive, got {candidates}")
    if ranker is None and ranker_param:
        raise ValueError("--ranker-param needs --ranker")
    values = _parse_grid(grid)
    if pipeline is not None:
        spec = PipelineSpec.load(pipeline)
    else:
        spec = PipelineSpec.of(
            model,
            reranker,
            ranker,
            retriever_params=parse_pairs(param, "--param"),
            ranker_params=parse_pairs(ranker_param, "--ranker-param"),
            reranker_params=parse_pairs(rerank_param, "--rerank-param"),
            n_candidates=candidates,
        )
    options = dict(
        diversity_metric=diversity_metric,
        accuracy_metric=accuracy_metric,
        max_loss=max_loss,
        grid=values,
        segments=segments,
        validation_fraction=validation_fraction,
        protocol=protocol,
        max_users=max_users,
        n_bootstrap=bootstrap,
        rule=rule,
    )
    check_tune_inputs(spec, **options)
    for role, stage in spec.stages().items():  # builds every stage: bad parameters fail here
        stage.build(role, seed)
    _check_out(out)
    table = TableSpec.parse(columns, min_rating)

    # ---- the work
    data = load_dataset(dataset, data_home, protocol == "temporal", table)
    split = make_split(dataset, protocol, data_home, seed=seed, data=data)
    check_tune_inputs(spec, **options, split=split)
    choice = _run(split, spec, seed, options)
    from divrec.serve.model_dir import data_fingerprint

    choice.info.update(
        dataset=dataset,
        protocol=protocol,
        split=split.summary(),
        data_fingerprint=data_fingerprint(data),
        serve=f"divrec train train.toml --out MODEL && divrec serve --model-dir MODEL "
        f"--default-diversity {choice.knob:g}",
    )
    result = choice.to_dict()
    cfg_text = choice.train_config(
        dataset if dataset in _named() else str(Path(dataset).resolve()),
        columns=dict(table.columns) if columns else None,
        min_rating=min_rating,
    )
    _write_outputs(out, result, cfg_text)
    load_config(out / "train.toml")  # the written config must load
    _print(result, out)


def _named() -> set[str]:
    from divrec.registry import DATASETS

    return set(DATASETS)


def _parse_grid(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--grid must be comma-separated numbers in [0, 1], got {text!r}"
        ) from None
    if not values:
        raise ValueError("--grid is empty")
    return values


def _check_out(out: Path) -> None:
    """Fails early when `out` cannot be a writable folder."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ValueError(f"--out {out}: cannot write there (permission denied)")


def _run(split, spec, seed: int, options: dict):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from divrec.evaluation.knob import tune_knob

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        tasks: dict[str, int] = {}

        def tell(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        return tune_knob(split, spec, seed=seed, progress=tell, **options)


def _write_outputs(out: Path, result: dict, cfg_text: str) -> None:
    from divrec.evaluation.knob import choice_markdown, plot_choice

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "tune.json": json.dumps(result, indent=2, default=_json_default) + "\n",
        "tune.md": choice_markdown(result),
        "train.toml": cfg_text,
    }
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    plot_choice(result, out / "tradeoff.png")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _print(result: dict, out: Path) -> None:
    from rich.console import Console

    from divrec.evaluation.knob import cap_verdict, format_ci

    test = result["test"]
    acc, div, cap = result["accuracy_metric"], result["diversity_metric"], result["max_loss"]
    params = ", ".join(f"{k} = {v:.6g}" for k, v in result["reranker_params"].items())
    console = Console()
    console.print(f"chosen knob d = {result['knob']:g} ({params})", highlight=False)
    console.print(
        f"test {acc}: {format_ci(test['accuracy']['chosen'])} vs "
        f"{format_ci(test['accuracy']['relevance'])} at knob 0",
        highlight=False,
    )
    console.print(
        f"test {div}: {format_ci(test['diversity']['chosen'])} vs "
        f"{format_ci(test['diversity']['relevance'])} at knob 0",
        highlight=False,
    )
    console.print(
        f"test relative {acc} loss: {format_ci(test['relative_loss'])}: {cap_verdict(test, cap)}",
        highlight=False,
    )
    seg = result.get("segments")
    if seg is not None:
        st = seg["test"]
        console.print(
            f"per-segment knobs ({seg['by']}): {', '.join(f'{k:g}' for k in seg['knobs'])}; "
            f"test loss {format_ci(st['relative_loss'])}: {cap_verdict(st, cap)}",
            highlight=False,
        )
    console.print(f"wrote {out / 'tune.json'}, tune.md, tradeoff.png, train.toml", highlight=False)


def register(app: typer.Typer) -> None:
    """Adds `tune` to the main `divrec` app."""
    app.command("tune")(guarded(tune))
