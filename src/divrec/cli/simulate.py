"""`divrec simulate`: the closed-loop simulator (WeChat graph exploration) from the shell.

Registered in `divrec.cli.main` with `app.add_typer(simulate_app, name="simulate")`. Nothing
heavy is imported at module import time (the body imports the simulator lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from divrec.cli._common import guarded

app = typer.Typer(
    help="Closed-loop simulation: retrieve → re-rank → simulated feedback → graph updates.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
@guarded
def simulate(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="ml-1m, ml-100k, beauty, sports, toys, yelp.")
    ] = "ml-1m",
    pipeline: Annotated[
        str,
        typer.Option(
            "--pipeline",
            help="Comma-separated variants: base, fast-dpp, p-dpp, ours, graph-dpp, none, "
            "or pipeline files (.toml/.json) over the graph retriever.",
        ),
    ] = "base,fast-dpp,p-dpp,ours",
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds per run.")] = 30,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds (worlds) 0..S-1.")] = 1,
    users: Annotated[int, typer.Option("--users", help="Simulated users (0: all).")] = 0,
    k: Annotated[int, typer.Option("--k", "-k", help="Feed length.")] = 10,
    candidates: Annotated[int, typer.Option("--candidates", help="Retrieved per user.")] = 100,
    boredom: Annotated[float, typer.Option("--boredom", help="Diversity seeking β ≥ 0.")] = 1.0,
    no_click: Annotated[float, typer.Option("--no-click", help="No-click utility v_0.")] = 3.0,
    epochs: Annotated[int, typer.Option("--epochs", help="GraphSAGE epochs at start.")] = 5,
    update_steps: Annotated[
        int, typer.Option("--update-steps", help="GraphSAGE minibatches per round.")
    ] = 5,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path(
        "results/simulate"
    ),
    data_home: Annotated[
        Path | None, typer.Option("--data-home", help="Data home (default: $DIVREC_DATA_HOME).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Runs the loop for each variant and seed; writes report.md, summary.json, runs.json
    and one plot per metric into --out."""
    import numpy as np

    from divrec.pipeline.spec import PipelineSpec
    from divrec.simulate import PIPELINES, SimConfig, fit_retriever, make_world, run_simulation
    from divrec.simulate.datasets import SIM_DATASETS, load_sim_dataset
    from divrec.simulate.loop import pipeline_spec
    from divrec.simulate.report import check_out_folder, final_table, write_outputs

    names = [p.strip() for p in pipeline.split(",") if p.strip()]
    files = [p for p in names if p.endswith((".toml", ".json"))]
    bad = [p for p in names if p not in PIPELINES and p not in files]
    if bad or not names:
        raise ValueError(f"--pipeline: unknown {bad or pipeline!r}; known: {', '.join(PIPELINES)}")
    variants = [PipelineSpec.load(p) if p in files else p for p in names]
    for opt, v in (("--rounds", rounds), ("--seeds", seeds), ("--k", k),
                   ("--candidates", candidates), ("--epochs", epochs)):  # fmt: skip
        if v < 1:
            raise ValueError(f"{opt} must be >= 1, got {v}")
    for opt, x in (("--boredom", boredom), ("--no-click", no_click)):
        if not np.isfinite(x):
            raise ValueError(f"{opt} must be a finite number, got {x}")
    if users < 0 or update_steps < 0 or boredom < 0:
        raise ValueError("--users, --update-steps and --boredom must be >= 0")
    if dataset not in SIM_DATASETS:
        raise ValueError(f"unknown simulator dataset {dataset!r}; known: {', '.join(SIM_DATASETS)}")
    check_out_folder(out)  # an unwritable --out fails now, not after the simulation
    for variant in variants:
        pipeline_spec(variant, SimConfig())  # a spec the loop cannot run fails before any work
    data = load_sim_dataset(dataset, data_home)
    runs = []
    for seed in range(seeds):
        subset = None
        if users:
            rng = np.random.default_rng(seed)
            subset = np.sort(rng.choice(data.n_users, min(users, data.n_users), replace=False))
        world = make_world(data, seed=seed, users=subset)
        ret = fit_retriever(world, {"epochs": epochs, "seed": seed})
        cfg = SimConfig(
            rounds=rounds, k=k, n_candidates=candidates, update_steps=update_steps,
            seed=seed, choice={"boredom": boredom, "no_click": no_click},
        )  # fmt: skip
        for variant in variants:
            runs.append(run_simulation(world, variant, cfg, ret, progress=progress))
    notes = (
        f"dataset {dataset}, users {users or 'all'}, rounds {rounds}, seeds {seeds}, "
        f"k {k}, candidates {candidates}, β {boredom}, v_0 {no_click}, GraphSAGE epochs "
        f"{epochs}, update steps {update_steps}."
    )
    summary = write_outputs(runs, out, "divrec simulate", notes)
    typer.echo(final_table(summary, ("ilad_graph", "ilad_svd", "rd_svd", "clicks")))
    typer.echo(f"wrote {out}/report.md, summary.json, runs.json and plots")
