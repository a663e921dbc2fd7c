"""Whether CDM's validation choice of γ at the grid's edge hides a better setting: the same
(data set, seed) units with a wider γ grid on validation, against the full run's.

    python -m reproductions.cdm_tables --datasets ml-1m --skip-baselines --validate \\
        --val-gammas 0 0.05 0.1 0.15 0.2 0.25 0.5 1 2 4 8 16 32 --seeds 0 2 --jobs 2 \\
        --out benchmarks/results/cdm_seeds_gamma_probe  (+ the full run's other arguments)
    python -m reproductions.cdm_gamma_probe

writes PROBE/probe.json and probe.md: per seed the choice on each grid, the best validation
objective at each γ (the chosen student setting, any λ), and the test recall@20 / ILAD_svd@20
of the validation-chosen row on each grid; the DCN row of both runs must agree (same seed, same
code path), which is checked. `reproductions.claims` quotes probe.json beside the edge note.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path("benchmarks/results")
ROW = "CDM (validation-chosen)"
METRICS = ("recall@20", "ilad_svd@20")


def compare_unit(probe: dict, base: dict) -> dict:
    """One (data set, seed): the wide grid's run `probe` against the full run's `base`."""
    for m in METRICS:  # the same backbone, or the comparison means nothing
        a, b = probe["results"]["DCN"][m]["mean"], base["results"]["DCN"][m]["mean"]
        if a != b:
            raise ValueError(f"the DCN rows differ ({m}: {a} vs {b}): not the same unit")
    vp, vb = probe["validation_choice"], base["validation_choice"]
    best: dict[float, float] = {}
    for r in vp["grid"]:
        best[r["gamma"]] = max(best.get(r["gamma"], float("-inf")), r["objective"])
    gammas = sorted(best)
    return {
        "seed": probe["seed"],
        "grid_wide": gammas,
        "grid_base": sorted({r["gamma"] for r in vb["grid"]}),
        "choice_wide": {k: vp[k] for k in ("lambda", "gamma", "student_setting")},
        "choice_base": {k: vb[k] for k in ("lambda", "gamma", "student_setting")},
        "best_objective_by_gamma": {str(g): best[g] for g in gammas},
        "test_wide": {m: probe["results"][ROW][m]["mean"] for m in METRICS},
        "test_base": {m: base["results"][ROW][m]["mean"] for m in METRICS},
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", type=Path, default=RESULTS / "cdm_seeds_gamma_probe")
    ap.add_argument("--base", type=Path, default=RESULTS / "cdm_seeds")
    args = ap.parse_args(argv)
    files = sorted((args.probe / "seeds").glob("cdm_*_seed*.json"))
    if not files:
        ap.error(f"--probe {args.probe}: no seeds/cdm_*_seed*.json (run cdm_tables into it first)")
    units: dict[str, list] = {}
    for f in files:
        base_file = args.base / "seeds" / f.name
        if not base_file.exists():
            ap.error(f"--base {args.base}: no seeds/{f.name} to compare {f} with")
        probe = json.loads(f.read_text())
        try:
            unit = compare_unit(probe, json.loads(base_file.read_text()))
        except ValueError as err:
            ap.error(f"{f.name}: {err}")
        units.setdefault(probe["dataset"], []).append(unit)
    out = {"probe": str(args.probe), "base": str(args.base), "datasets": units}
    (args.probe / "probe.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# CDM: a wider γ grid on validation", "",
          f"The validation choice of `{args.base}` against the same units with a wider γ grid "
          f"(`{args.probe}`); test metrics of the row `{ROW}`.", ""]  # fmt: skip
    for ds, rows in units.items():
        md += [f"## {ds}", "", "| seed | choice (λ, γ, student): full grid → wide grid | "
               "best validation objective at the full grid's largest γ → the wide grid's | "
               "test recall@20 | "
               "test ILAD_svd@20 |", "|---|---|---|---|---|"]  # fmt: skip
        for u in rows:
            cb, cw, o = u["choice_base"], u["choice_wide"], u["best_objective_by_gamma"]
            top, edge = str(float(u["grid_wide"][-1])), str(float(u["grid_base"][-1]))
            md.append(
                f"| {u['seed']} | {cb['lambda']}, {cb['gamma']}, {cb['student_setting']} → "
                f"{cw['lambda']}, {cw['gamma']}, {cw['student_setting']} | "
                f"{o.get(edge, float('nan')):.4f} (γ = {edge}) → {o[top]:.4f} (γ = {top}) | "
                + " | ".join(f"{u['test_base'][m]:.4f} → {u['test_wide'][m]:.4f}" for m in METRICS)
                + " |"
            )
        md.append("")
    (args.probe / "probe.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
