"""`divrec experiment run | check | report` (registered on the main app by `register(app)`).

`run` validates the whole file and makes every split before any training (a bad key, model,
parameter, search space, dataset or baseline is one line naming the file and the key, exit
2), then tunes, fits, tests and reports with a progress bar and an ETA. A run stopped at any
point (Ctrl-C, SIGTERM: exit 130) continues where it stopped when the same command is run
again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from divrec.cli._common import guarded

__all__ = ["register"]

experiment_app = typer.Typer(
    help="Tuned, seeded, resumable experiments from an experiment file (TOML or JSON).",
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(help="The experiment file (.toml or .json).")]
HomeOpt = Annotated[
    Path | None,
    typer.Option("--data-home", help="Data home (default: $DIVREC_DATA_HOME or the cache dir)."),
]


@experiment_app.command("run")
@guarded
def run_cmd(
    file: FileArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (default: runs/<experiment name>). Finished units are kept in "
            "its .state/ folder; rerunning the same command resumes.",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the saved units of an earlier run first.")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    data_home: HomeOpt = None,
) -> None:
    """Run (or resume) an experiment: tune on validation, fit N seeds, test once, report."""
    from divrec.experiment import load_experiment, run_experiment

    config = load_experiment(file)
    folder = out if out is not None else Path("runs") / config.name
    progress = not no_progress and sys.stderr.isatty()
    results = run_experiment(config, folder, data_home, progress=progress, fresh=fresh)
    for res in results:
        _print_summary(res)
    typer.echo(f"wrote {folder}/")


@experiment_app.command("check")
@guarded
def check_cmd(file: FileArg, data_home: HomeOpt = None) -> None:
    """Validate an experiment file and make its splits (no training)."""
    from divrec.experiment import load_experiment, prepare

    config = load_experiment(file)
    for name in config.datasets:
        prep = prepare(config, name, data_home)
        s = prep.split.summary()
        typer.echo(
            f"{name}: {s['train']:,} train / {s['test']:,} test rows; validation "
            f"{prep.valid.train.nnz:,} / {prep.valid.test.nnz:,}"
        )
    names = ", ".join(e.name + (" (sanity)" if e.sanity else "") for e in config.entries)
    typer.echo(f"{file}: ok; entries: {names}; baseline: {config.baseline}")


@experiment_app.command("report")
@guarded
def report_cmd(
    results: Annotated[Path, typer.Argument(help="A results.json written by `experiment run`.")],
) -> None:
    """Print the Markdown report generated from a results.json."""
    from divrec.experiment import render_report

    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{results}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or "entries" not in data or "experiment" not in data:
        raise ValueError(f"{results}: not a results.json of `divrec experiment run`")
    typer.echo(render_report(data), nl=False)


def _print_summary(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = results["metrics"]
    table = Table(title=f"{results['experiment']['name']} on {results['dataset']['name']}")
    table.add_column("entry")
    for m in metrics:
        table.add_column(m)
    for e in results["entries"]:
        cells = []
        for m in metrics:
            s = e["summary"][m]
            sd = "–" if s["sd"] is None else f"{s['sd']:.4f}"
            cells.append(f"{s['mean']:.4f} ± {sd}")
        tag = " (baseline)" if e["baseline"] else (" (sanity)" if e["sanity"] else "")
        table.add_row(e["name"] + tag, *cells)
    Console(stderr=False).print(table)


def register(app: typer.Typer) -> None:
    """Adds `experiment` (run, check, report) to the main `divrec` app."""
    app.add_typer(experiment_app, name="experiment")
