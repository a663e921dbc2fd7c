"""Optional MLflow tracking: when `mlflow` is importable, a finished experiment logs one run
per entry (its chosen hyperparameters, its summary metrics, the experiment's files as
artifacts) under an MLflow experiment named after it. MLflow is never required: without it
nothing is logged and nothing fails.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["log_to_mlflow", "mlflow_module"]


def mlflow_module() -> Any | None:
    """The `mlflow` module, or None when it is not installed."""
    try:
        return importlib.import_module("mlflow")
    except ImportError:
        return None


def _metric_name(name: str) -> str:
    return name.replace("@", "_at_")


def log_to_mlflow(results: dict, folder: str | Path) -> bool:
    """Logs `results` to MLflow (tracking URI from MLflow's own settings, e.g.
    `MLFLOW_TRACKING_URI`); returns whether anything was logged.

    One run per entry, named after it: params are the chosen hyperparameters, the seeds and
    the objective; metrics are each metric's mean, sd and CI bounds over seeds and the
    difference from the baseline; the parent run carries results.json, report.md and the
    plots as artifacts.
    """
    mlflow = mlflow_module()
    if mlflow is None:
        return False
    folder = Path(folder)
    exp = results["experiment"]
    mlflow.set_experiment(exp["name"])
    with mlflow.start_run(run_name=f"{exp['name']} on {results['dataset']['name']}"):
        mlflow.log_params(
            {
                "dataset": results["dataset"]["name"],
                "dataset_fingerprint": results["dataset"]["fingerprint"],
                "protocol": exp["protocol"],
                "seeds": ",".join(map(str, exp["seeds"])),
                "baseline": results["baseline"],
                "tuning": f"{exp['tuning']['method']}/{exp['tuning']['trials']}",
            }
        )
        for name in ("results.json", "report.md", "pareto.png", "validation_curves.png"):
            if (folder / name).exists():
                mlflow.log_artifact(str(folder / name))
        for e in results["entries"]:
            with mlflow.start_run(run_name=e["name"], nested=True):
                params = {f"chosen.{k}": str(v) for k, v in e["chosen_params"].items()}
                params.update(objective=e["objective"], sanity=str(e["sanity"]))
                mlflow.log_params(params)
                metrics: dict[str, float] = {}
                for m, s in e["summary"].items():
                    for field in ("mean", "sd", "ci_low", "ci_high"):
                        if s[field] is not None:
                            metrics[f"{_metric_name(m)}.{field}"] = float(s[field])
                for m, c in e["vs_baseline"].items():
                    if c["diff"] is not None:
                        metrics[f"{_metric_name(m)}.diff_vs_baseline"] = float(c["diff"])
                if e["tuning"]["validation_objective"] is not None:
                    metrics["validation_objective"] = float(e["tuning"]["validation_objective"])
                mlflow.log_metrics(metrics)
    return True
