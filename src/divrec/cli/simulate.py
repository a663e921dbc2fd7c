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
    arms: Annotated[
        Path | None,
        typer.Option(
            "--arms",
            help="A/B pre-flight: an experiment file (as served); runs its arms (the "
            "pipelines of --model-dir) on simulated users and writes the A/B readout.",
        ),
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", "-m", help="The served model (with --arms).")
    ] = None,
    n_bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Readout bootstrap replicates (with --arms).")
    ] = 2000,
) -> None:
    """Runs the loop for each variant and seed; writes report.md, summary.json, runs.json
    and one plot per metric into --out. With --arms: the A/B pre-flight (readout.md,
    readout.json, over_time.png)."""
    import numpy as np

    if arms is not None or model_dir is not None:
        if arms is None or model_dir is None:
            raise ValueError("--arms and --model-dir go together (the A/B pre-flight)")
        return _preflight(
            arms, model_dir, out, users, rounds, k, boredom, no_click, seeds, n_bootstrap,
            data_home,
        )  # fmt: skip

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


def _preflight(
    arms: Path, model_dir: Path, out: Path, users: int, rounds: int, k: int, boredom: float,
    no_click: float, seeds: int, n_bootstrap: int, data_home: Path | None,
) -> None:  # fmt: skip
    """`divrec simulate --arms`: the experiment's arms on simulated users, read out like
    the live log (`divrec.simulate.ab`)."""
    import numpy as np

    from divrec.cli.report import check_out, check_readout_options, model_inputs
    from divrec.evaluation.ab import readout, write_readout
    from divrec.serve.arms import ArmRouter, Experiment
    from divrec.serve.config import parse_config
    from divrec.serve.model_dir import ModelBundle, _load_data, data_fingerprint
    from divrec.simulate.ab import preflight, preflight_knob, user_model

    for opt, v in (("--rounds", rounds), ("--k", k), ("--seeds", seeds)):
        if v < 1:
            raise ValueError(f"{opt} must be >= 1, got {v}")
    if users < 0 or not (np.isfinite(boredom) and boredom >= 0) or not np.isfinite(no_click):
        raise ValueError("--users and --boredom must be >= 0, --no-click finite")
    check_readout_options(n_bootstrap, 0.95, 12)
    check_out(out)
    try:
        exp = Experiment.load(arms)
    except ValueError as err:
        raise ValueError(f"--arms: {err}") from None
    try:
        bundle = ModelBundle.load(model_dir)
    except ValueError as err:
        raise ValueError(f"--model-dir: {err}") from None
    try:
        router = ArmRouter(exp, bundle, "auto")
    except ValueError as err:
        raise ValueError(f"--arms {arms}: {err}") from None
    config = parse_config(bundle.manifest["config"], base=model_dir)
    data = _load_data(config, data_home)
    if data_fingerprint(data) != bundle.manifest["data"]["fingerprint"]:
        raise ValueError(
            f"--model-dir {model_dir}: its training data ({config.dataset}) is not what "
            "--data-home holds now (fingerprints differ)"
        )
    ids = list(bundle.user_ids)
    rng = np.random.default_rng(0)
    n = len(ids) if users == 0 else min(users, len(ids))
    chosen = np.sort(rng.choice(len(ids), n, replace=False))
    notes = []
    knobs = []
    for a in exp.arms:
        knob, note = preflight_knob(router.methods[a.name], router.knobs[a.name])
        knobs.append(knob)
        if note:
            notes.append(f"arm {a.name}: {note}")
    choice = user_model(data, seed=0, boredom=boredom, no_click=no_click)
    log = preflight(
        exp.names, exp.control, np.array([a.share for a in exp.arms]),
        [bundle.pipelines[router.methods[a.name]] for a in exp.arms], knobs,
        chosen, exp.assign_many([ids[u] for u in chosen]), choice,
        bundle.pipeline.user_items_, rounds=rounds, k=k, seed=0,
        user_ids=[ids[u] for u in chosen], record=exp.record(),
    )  # fmt: skip
    res = readout(log, n_bootstrap=n_bootstrap, bins=rounds, **model_inputs(bundle, log.user_ids))
    res["notes"] = [
        f"Pre-flight: {n} simulated users of {model_dir.name} x {rounds} rounds of {k} items; "
        f"user model: iALS ground truth on the training data, no-click utility {no_click}, "
        f"boredom {boredom}; time = round.",
        *notes,
        *res["notes"],
    ]
    res["settings"]["time_axis"] = "round"
    write_readout(res, out, "A/B pre-flight (simulator)")
    typer.echo((out / "readout.md").read_text())
    typer.echo(f"wrote {out}/readout.md, readout.json, over_time.png")
