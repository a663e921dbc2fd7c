"""The `divrec` command line.

Every bad input (unknown dataset/model/protocol, a malformed file, a bad parameter) ends with
one line on stderr naming the problem and exit code 2; nothing is written half-way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from divrec.data.interactions import DataError

app = typer.Typer(
    help="divrec: diversity-aware recommendation (retrieval, ranking, re-ranking).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DatasetOpt = Annotated[
    str, typer.Option("--dataset", "-d", help="ml-100k, ml-1m, or a CSV/TSV/Parquet path.")
]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--data-home", help="Data home (default: $DIVREC_DATA_HOME or a cache dir)."),
]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        "--protocol",
        "-p",
        help="ncf (leave-one-out + 99 negatives; ML-1M uses the published files), "
        "leave-last-one, temporal (80:20 by time) or random (80:20).",
    ),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="For a file dataset: role=column pairs, e.g. user=uid,item=mid,rating=stars,"
        "timestamp=ts (defaults: user_id, item_id, no rating, no timestamp).",
    ),
]
MinRatingOpt = Annotated[
    float | None,
    typer.Option("--min-rating", help="For a file dataset: keep rows rated at least this."),
]
KOpt = Annotated[list[int] | None, typer.Option("--k", "-k", help="List length(s); repeatable.")]


def _fail(message: str) -> None:
    typer.echo(f"divrec: error: {message}", err=True)
    raise typer.Exit(2)


def _guard(fn):
    """Runs a command body, turning expected errors into one line and exit code 2."""
    try:
        return fn()
    except typer.Exit:
        raise
    except (DataError, ValueError, KeyError, FileNotFoundError, PermissionError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        _fail(str(msg).splitlines()[0] if str(msg) else type(err).__name__)


@data_app.command("info")
def data_info(
    dataset: Annotated[str, typer.Argument(help="ml-100k, ml-1m, or a CSV/TSV/Parquet path.")],
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, ranges and side information of a dataset."""

    def body():
        from divrec.evaluation.setup import TableSpec, load_dataset

        table = TableSpec.parse(columns, min_rating)
        summary = load_dataset(dataset, data_home, table=table).summary()
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        table = Table(title=summary["name"], show_header=False)
        for key, value in summary.items():
            table.add_row(key, f"{value:.6f}" if isinstance(value, float) else str(value))
        console.print(table)

    _guard(body)


@app.command()
def evaluate(
    dataset: DatasetOpt = "ml-1m",
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")] = "ials",
    protocol: ProtocolOpt = "ncf",
    k: KOpt = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Model hyperparameter name=value.")
    ] = None,
    rerank: Annotated[
        str | None,
        typer.Option(
            "--rerank",
            help="Re-rank the model's top candidates: mmr, dpp, ssd, category-cap, cf-da, "
            "cf-dm, hybrid.",
        ),
    ] = None,
    rerank_param: Annotated[
        list[str] | None,
        typer.Option("--rerank-param", help="Re-ranker hyperparameter name=value."),
    ] = None,
    candidates: Annotated[
        int, typer.Option("--candidates", help="Candidates passed to the re-ranker.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed for splits, models and bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs.")] = 1000,
    max_users: Annotated[int | None, typer.Option(help="Evaluate a sample of users.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON here.")] = None,
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
) -> None:
    """Fit one model on a split and report accuracy and diversity with 95% CIs."""

    def body():
        from divrec.evaluation.harness import EvalConfig
        from divrec.evaluation.harness import evaluate as run_eval
        from divrec.evaluation.setup import (
            EVAL_PROTOCOL,
            TableSpec,
            make_model,
            make_reranker,
            make_split,
            parse_params,
            reference_item_vectors,
        )

        params = parse_params(param)
        rec = make_model(model, params, seed=seed)
        if rerank is not None:
            from divrec.pipeline import Pipeline

            if candidates <= 0:
                raise ValueError(f"--candidates must be positive, got {candidates}")
            rec = Pipeline(rec, make_reranker(rerank, parse_params(rerank_param)), candidates)
        elif rerank_param:
            raise ValueError("--rerank-param needs --rerank")
        if protocol not in EVAL_PROTOCOL:
            raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(EVAL_PROTOCOL)}")
        config = EvalConfig(
            ks=tuple(k or (10,)),
            protocol=EVAL_PROTOCOL[protocol],
            n_bootstrap=bootstrap,
            seed=seed,
            max_users=max_users,
        )
        if output is not None:
            _check_writable(output)
        table = TableSpec.parse(columns, min_rating)
        split = make_split(dataset, protocol, data_home, seed=seed, table=table)
        with console.status(f"fitting {model} on {split.train.nnz:,} interactions"):
            rec.fit(split.train)
        vectors = reference_item_vectors(split.train, seed=seed)
        result = run_eval(rec, split, config, vectors, progress=sys.stderr.isatty())
        name = model if rerank is None else f"{model} → {rerank}"
        table = Table(title=f"{name} on {dataset} ({split.protocol or protocol})")
        for col in ("metric", "k", "mean", "95% CI"):
            table.add_column(col)
        for row in result.aggregate.to_dict(orient="records"):
            kk = "" if row["k"] != row["k"] else str(int(row["k"]))
            table.add_row(
                row["metric"],
                kk,
                f"{row['mean']:.4f}",
                f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]",
            )
        for key, value in result.system.items():
            name, _, kk = key.partition("@")
            table.add_row(name, kk, f"{value:.4f}", "system-level")
        console.print(table)
        if output is not None:
            payload = {
                "dataset": dataset,
                "model": model,
                "rerank": rerank,
                "params": {key: repr(v) for key, v in rec.get_params().items()},
                "split": split.summary(),
                **result.to_dict(),
            }
            _atomic_write(output, json.dumps(payload, indent=2, default=_json_default))

    _guard(body)


@app.command()
def benchmark(
    dataset: DatasetOpt = "ml-1m",
    protocol: ProtocolOpt = "ncf",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Models to run (default: every fast model)."),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Run every registered model, the neural ones too.")
    ] = False,
    k: KOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, models and bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs.")] = 1000,
    max_users: Annotated[int | None, typer.Option(help="Evaluate a sample of users.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "results/benchmark"
    ),
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
) -> None:
    """The main job: models on a dataset → report.md, results.json, accuracy-diversity plot."""

    def body():
        from divrec.evaluation.benchmark import FAST_MODELS, BenchmarkConfig, run_benchmark
        from divrec.evaluation.setup import MODELS, TableSpec

        if model and all_models:
            raise ValueError("give either --model or --all, not both")

        config = BenchmarkConfig(
            dataset=dataset,
            protocol=protocol,
            models=tuple(model or (MODELS if all_models else FAST_MODELS)),
            ks=tuple(k or (10, 20)),
            seed=seed,
            n_bootstrap=bootstrap,
            max_users=max_users,
            table=TableSpec.parse(columns, min_rating),
        )
        _check_writable(out / "report.md")
        run_benchmark(config, out, data_home, progress=sys.stderr.isatty())
        typer.echo((out / "report.md").read_text())
        typer.echo(
            f"wrote {out / 'report.md'}, {out / 'results.json'}, {out / 'accuracy_diversity.png'}"
        )

    _guard(body)


def _check_writable(path: Path) -> None:
    parent = path.parent if path.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not _writable(probe):
        raise ValueError(f"{path}: cannot write there")


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


from divrec.cli.spark import app as spark_app  # noqa: E402 - the sub-app imports _fail lazily

app.add_typer(spark_app, name="spark")

if __name__ == "__main__":  # pragma: no cover
    app()
