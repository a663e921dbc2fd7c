"""`divrec report ab`: the readout of an A/B experiment from the service's event log.

Registered in `divrec.cli.main` with `app.add_typer(report_app, name="report")`. Heavy
modules are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from divrec.cli._common import guarded

app = typer.Typer(
    help="Readouts of logged experiments.", add_completion=False, pretty_exceptions_enable=False
)

#: how the readout's fixed ILAD space is described in its outputs
SPACE = (
    "the model directory's reference SVD space (arrays.npz 'reference': SVD of the training data)"
)


def check_readout_options(n_bootstrap: int, confidence: float, bins: int) -> None:
    """One-line errors for the readout options shared by `report ab` and the pre-flight."""
    if n_bootstrap < 10:
        raise ValueError(f"--bootstrap must be at least 10, got {n_bootstrap}")
    if not 0 < confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {confidence}")
    if bins < 1:
        raise ValueError(f"--bins must be >= 1, got {bins}")


def check_out(out: Path) -> None:
    """An --out that cannot be written fails before any work (one line)."""
    import os

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    p = out
    while not p.exists():
        p = p.parent if str(p.parent) else Path(".")
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot write there ({p} is not a writable folder)")


def model_inputs(bundle, user_ids: list[str]) -> dict[str, Any]:
    """The readout's fixed inputs from a loaded model directory: reference vectors, item
    categories and each log user's training row (empty for users the model does not know)."""
    import numpy as np
    import scipy.sparse as sp

    ui = sp.csr_matrix(bundle.pipeline.user_items_)
    rows = np.array([bundle.user_index.get(u, -1) for u in user_ids], dtype=np.int64)
    hist = ui[np.maximum(rows, 0)]
    hist = sp.diags((rows >= 0).astype(np.float64)) @ hist
    cats = bundle.item_categories if bundle.item_categories.shape[1] else None
    return {
        "item_vectors": bundle.reference,
        "item_categories": cats,
        "history": sp.csr_matrix(hist) if cats is not None else None,
        "space": SPACE,
    }


@app.callback()
def _group() -> None:
    """Readouts of logged experiments."""


@app.command("ab")
@guarded
def ab(
    db: Annotated[Path, typer.Option("--db", help="The service's SQLite event log.")],
    model_dir: Annotated[
        Path,
        typer.Option("--model-dir", "-m", help="The served model directory (catalogue, space)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "results/ab"
    ),
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="Experiment name (default: the only one).")
    ] = None,
    n_bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.")] = 2000,
    confidence: Annotated[float, typer.Option("--confidence", help="Interval coverage.")] = 0.95,
    bins: Annotated[int, typer.Option("--bins", help="Time bins of the curves.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
) -> None:
    """Per arm: users, lists, CTR, clicks and likes per user, ILAD (reference SVD space),
    coverage, Gini, between-user diversity, miscalibration; each arm minus control with a
    user-level bootstrap CI; the sample-ratio check. Writes readout.md, readout.json and
    over_time.png into --out."""
    from divrec.evaluation.ab import ab_log_from_rows, readout, write_readout
    from divrec.serve.events import read_ab_log
    from divrec.serve.model_dir import ModelBundle

    check_readout_options(n_bootstrap, confidence, bins)
    check_out(out)
    try:
        rows = read_ab_log(db, experiment)
    except ValueError as err:
        raise ValueError(f"--db: {err}") from None
    try:
        bundle = ModelBundle.load(model_dir)
    except ValueError as err:
        raise ValueError(f"--model-dir: {err}") from None
    try:
        log = ab_log_from_rows(
            rows["experiment"], rows["impressions"], rows["events"], bundle.item_index
        )
    except ValueError as err:
        raise ValueError(f"--model-dir: {err} (another model's log?)") from None
    res = readout(
        log,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
        bins=bins,
        **model_inputs(bundle, log.user_ids),
    )
    write_readout(res, out, "A/B readout")
    typer.echo((out / "readout.md").read_text())
    typer.echo(f"wrote {out}/readout.md, readout.json, over_time.png")
