"""The `divrec` command line.

Every bad input (unknown dataset/model/protocol, a malformed file, a bad parameter) ends with
one line on stderr naming the problem and exit code 2; nothing is written half-way.
"""

from __future__ import annotations

import sys


def _quiet_early_interrupts() -> None:
    """As a console command, an interrupt before `run` takes over (during the imports below,
    about 0.3 s) says `divrec: interrupted` and exits with 130 like any later one, instead of
    a traceback and −2; SIGTERM acts like Ctrl-C from here on too. Nothing changes when the
    module is merely imported (tests, notebooks). The hook is set before anything is
    imported (`signal` pulls in `enum`: an interrupt during that import was a traceback)."""

    def _hook(kind, value, tb, _previous=sys.excepthook):
        if not issubclass(kind, KeyboardInterrupt):
            return _previous(kind, value, tb)
        print("divrec: interrupted", file=sys.__stderr__ or sys.stderr, flush=True)
        import os  # already loaded by the interpreter's start-up

        os._exit(130)

    sys.excepthook = _hook
    import signal

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)


if __name__ == "__main__" or sys.argv[0].rsplit("/", 1)[-1] == "divrec":
    _quiet_early_interrupts()

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from divrec.cli._common import fail, guarded, run  # noqa: E402
from divrec.cli.compare import register as register_compare  # noqa: E402
from divrec.cli.experiment import register as register_experiment  # noqa: E402
from divrec.cli.report import app as report_app  # noqa: E402
from divrec.cli.serve import register as register_serve  # noqa: E402
from divrec.cli.simulate import app as simulate_app  # noqa: E402
from divrec.cli.spark import app as spark_app  # noqa: E402
from divrec.cli.tune import register as register_tune  # noqa: E402
from divrec.registry import RERANKERS  # noqa: E402

__all__ = ["app", "main"]

app = typer.Typer(
    help="divrec: diversity-aware recommendation (retrieval, ranking, re-ranking).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)


@app.callback()
def _options(
    threads: Annotated[
        str | None,
        typer.Option(
            "--threads",
            help="Threads for batch work (training, batch search, batch re-ranking): a number, "
            "or auto for every core. Default: $DIVREC_THREADS, else 1 (never oversubscribes "
            "a busy machine).",
        ),
    ] = None,
) -> None:
    """divrec: diversity-aware recommendation (retrieval, ranking, re-ranking)."""
    if threads is not None:
        from divrec.threads import set_threads

        try:
            set_threads(threads)
        except (ValueError, TypeError) as err:
            fail(f"--threads: {err}")


app.add_typer(data_app, name="data")
register_serve(app)
register_experiment(app)
register_compare(app)
register_tune(app)
app.add_typer(simulate_app, name="simulate")
app.add_typer(report_app, name="report")
app.add_typer(spark_app, name="spark")
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


@data_app.command("info")
@guarded
def data_info(
    dataset: Annotated[str, typer.Argument(help="ml-100k, ml-1m, or a CSV/TSV/Parquet path.")],
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, ranges and side information of a dataset."""
    from divrec.data.datasets import TableSpec, load_dataset

    spec = TableSpec.parse(columns, min_rating)
    summary = load_dataset(dataset, data_home, table=spec).summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=summary["name"], show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.6f}" if isinstance(value, float) else str(value))
    console.print(table)


SeedOpt = Annotated[int, typer.Option(help="Seed for splits, models and bootstrap (0 … 2³²−1).")]
BootstrapOpt = Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs (0: none).")]
MaxUsersOpt = Annotated[int | None, typer.Option(help="Evaluate a sample of users.")]


def _check_common(seed: int, bootstrap: int, max_users: int | None, ks) -> None:
    """Validates the options shared by evaluate and benchmark before any work."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"--seed must be in [0, 2**32 - 1], got {seed}")
    if bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {bootstrap}")
    if max_users is not None and max_users <= 0:
        raise ValueError(f"--max-users must be a positive number of users, got {max_users}")
    for kk in ks or ():
        if kk <= 0:
            raise ValueError(f"-k must be a positive list length, got {kk}")


PipelineOpt = Annotated[
    Path | None,
    typer.Option(
        "--pipeline",
        help="A pipeline file (.toml or .json: [retriever], optional [ranker] and [reranker] "
        "tables with name and params, n_candidates) instead of the stage flags.",
    ),
]


@app.command()
@guarded
def evaluate(
    dataset: DatasetOpt = "ml-1m",
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model name (default: ials).")
    ] = None,
    protocol: ProtocolOpt = "ncf",
    k: KOpt = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Model hyperparameter name=value.")
    ] = None,
    ranker: Annotated[
        str | None,
        typer.Option("--ranker", help="A ranking stage (any model name) re-scoring candidates."),
    ] = None,
    ranker_param: Annotated[
        list[str] | None,
        typer.Option("--ranker-param", help="Ranking-stage hyperparameter name=value."),
    ] = None,
    rerank: Annotated[
        str | None,
        typer.Option(
            "--rerank",
            help="Re-rank the model's top candidates: " + ", ".join(RERANKERS) + ".",
        ),
    ] = None,
    rerank_param: Annotated[
        list[str] | None,
        typer.Option("--rerank-param", help="Re-ranker hyperparameter name=value."),
    ] = None,
    candidates: Annotated[
        int | None,
        typer.Option("--candidates", help="Candidates passed to the later stages (default 100)."),
    ] = None,
    pipeline: PipelineOpt = None,
    seed: SeedOpt = 0,
    bootstrap: BootstrapOpt = 1000,
    max_users: MaxUsersOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON here.")] = None,
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
) -> None:
    """Fit one model (or pipeline) on a split and report accuracy and diversity with 95% CIs.

    The stage flags (or --pipeline) make one `PipelineSpec`; the JSON output stores it with
    every stage's full config (`pipeline`), so the run can be rebuilt.
    """
    from divrec.data.datasets import TableSpec
    from divrec.params import to_json_value
    from divrec.pipeline.spec import PipelineSpec
    from divrec.splitting.named import EVAL_PROTOCOL, make_split

    _check_common(seed, bootstrap, max_users, k)
    if protocol not in EVAL_PROTOCOL:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(EVAL_PROTOCOL)}")
    if output is not None:
        _check_writable(output)
    flags = {"--model": model, "--param": param, "--ranker": ranker,
             "--ranker-param": ranker_param, "--rerank": rerank, "--rerank-param": rerank_param,
             "--candidates": candidates}  # fmt: skip
    if pipeline is not None:
        given = [flag for flag, value in flags.items() if value]
        if given:
            raise ValueError(f"--pipeline replaces the stage flags; drop {', '.join(given)}")
        spec = PipelineSpec.load(pipeline)
        options = {role: f"{role}.params" for role in ("retriever", "ranker", "reranker")}
    else:
        spec = _flags_spec(model, param, ranker, ranker_param, rerank, rerank_param, candidates)
        options = {"retriever": "--param", "ranker": "--ranker-param",
                   "reranker": "--rerank-param"}  # fmt: skip
    rec = _build(spec, seed, options)
    config = _eval_config(k, EVAL_PROTOCOL[protocol], bootstrap, seed, max_users)
    table = TableSpec.parse(columns, min_rating)
    split = make_split(dataset, protocol, data_home, seed=seed, table=table)
    name = spec.label or " → ".join(stage.name for stage in spec.stages().values())
    with console.status(f"fitting {name} on {split.train.nnz:,} interactions"):
        rec.fit(split.train)
    result = _run_eval(rec, split, config, seed)
    _print_result(result, f"{name} on {dataset} ({split.protocol or protocol})")
    if output is not None:
        payload = {
            "dataset": dataset,
            "model": spec.retriever.name,
            "ranker": spec.ranker.name if spec.ranker else None,
            "rerank": spec.reranker.name if spec.reranker else None,
            "pipeline": spec.resolved(seed).to_dict(),
            "params": to_json_value(rec.get_params()),
            "split": split.summary(),
            **result.to_dict(),
        }
        from divrec.atomic import write_text

        write_text(output, json.dumps(payload, indent=2, default=_json_default))


def _flags_spec(model, param, ranker, ranker_param, rerank, rerank_param, candidates):
    """The `PipelineSpec` of `divrec evaluate`'s stage flags."""
    from divrec.params import parse_pairs
    from divrec.pipeline.spec import PipelineSpec

    if ranker is None and ranker_param:
        raise ValueError("--ranker-param needs --ranker")
    if rerank is None and rerank_param:
        raise ValueError("--rerank-param needs --rerank")
    if candidates is not None and candidates <= 0:
        raise ValueError(f"--candidates must be positive, got {candidates}")
    return PipelineSpec.of(
        model or "ials",
        rerank,
        ranker,
        retriever_params=parse_pairs(param, "--param"),
        ranker_params=parse_pairs(ranker_param, "--ranker-param"),
        reranker_params=parse_pairs(rerank_param, "--rerank-param"),
        n_candidates=100 if candidates is None else candidates,
    )


def _build(spec, seed: int, options: dict[str, str]):
    """The unfitted recommender of `spec`: the bare model when it has no later stage, else a
    `Pipeline` (errors name each stage's option, e.g. `--rerank-param`)."""
    from divrec.pipeline import Pipeline

    stages = {role: st.build(role, seed, options[role]) for role, st in spec.stages().items()}
    if len(stages) == 1:
        return stages["retriever"]
    return Pipeline(
        stages["retriever"],
        stages.get("reranker"),
        spec.n_candidates,
        ranker=stages.get("ranker"),
    )


def _eval_config(k, protocol: str, bootstrap: int, seed: int, max_users: int | None):
    from divrec.evaluation.harness import EvalConfig

    return EvalConfig(
        ks=tuple(k or (10,)),
        protocol=protocol,
        n_bootstrap=bootstrap,
        seed=seed,
        max_users=max_users,
    )


def _run_eval(rec, split, config, seed: int):
    from divrec.evaluation.harness import evaluate as run_eval
    from divrec.metrics.reference import reference_item_vectors

    vectors = reference_item_vectors(split.train, seed=seed)
    return run_eval(rec, split, config, vectors, progress=sys.stderr.isatty())


def _print_result(result, title: str) -> None:
    table = Table(title=title)
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


@app.command()
@guarded
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
    no_pipelines: Annotated[
        bool,
        typer.Option("--no-pipelines", help="Skip the re-ranked pipelines (base models only)."),
    ] = False,
    pipeline: Annotated[
        list[Path] | None,
        typer.Option(
            "--pipeline",
            help="Pipeline file(s) (.toml or .json) to run instead of the default pipelines; "
            "repeatable.",
        ),
    ] = None,
    k: KOpt = None,
    seed: SeedOpt = 0,
    bootstrap: BootstrapOpt = 1000,
    max_users: MaxUsersOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "results/benchmark"
    ),
    data_home: HomeOpt = None,
    columns: ColumnsOpt = None,
    min_rating: MinRatingOpt = None,
) -> None:
    """The main job: base models and re-ranked pipelines → report.md, results.json, a plot."""
    from divrec.data.datasets import TableSpec
    from divrec.evaluation.benchmark import (
        DEFAULT_PIPELINES,
        FAST_MODELS,
        BenchmarkConfig,
        run_benchmark,
    )
    from divrec.pipeline.spec import PipelineSpec
    from divrec.registry import MODELS

    if model and all_models:
        raise ValueError("give either --model or --all, not both")
    if pipeline and no_pipelines:
        raise ValueError("give either --pipeline or --no-pipelines, not both")
    _check_common(seed, bootstrap, max_users, k)
    if pipeline:
        pipelines = tuple(PipelineSpec.load(path) for path in pipeline)
    else:
        pipelines = () if (no_pipelines or model) else DEFAULT_PIPELINES
    config = BenchmarkConfig(
        dataset=dataset,
        protocol=protocol,
        models=tuple(model or (MODELS if all_models else FAST_MODELS)),
        pipelines=pipelines,
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


def _check_writable(path: Path) -> None:
    """Fails early (before any work) when `path` cannot be written as a file."""
    import os

    if path.exists() and path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{path}: cannot write there (permission denied)")
    probe = path.parent if path.parent != Path("") else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ValueError(f"{path}: cannot write there")
    try:  # e.g. /proc accepts os.access but no new files
        import tempfile

        with tempfile.NamedTemporaryFile(dir=probe, prefix=".divrec-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"{path}: cannot write there ({err.strerror})") from None


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def main(argv: list[str] | None = None) -> int:
    """The `divrec` entry point: usage errors are one line too, SIGTERM acts like Ctrl-C.

    Returns:
        The exit code (0 ok, 2 bad input or usage, 130 interrupted).
    """
    return run(app, argv)


def _entry() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
