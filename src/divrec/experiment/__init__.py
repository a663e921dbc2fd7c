"""Experiments (`divrec experiment run EXP.toml`): entries tuned on a validation split carved
from the training data, final fits with several seeds tested once, seed-aware statistics
against a named baseline, sanity rows, convergence checks, and a resumable run that writes
results.json, a Markdown report generated from it, and plots.
"""

from divrec.experiment.config import (
    Entry,
    ExperimentConfig,
    ExperimentError,
    Objective,
    SearchDim,
    load_experiment,
    parse_experiment,
)
from divrec.experiment.report import render_report, write_outputs
from divrec.experiment.runner import carve_validation, prepare, run_experiment, strip_volatile

__all__ = [
    "Entry",
    "ExperimentConfig",
    "ExperimentError",
    "Objective",
    "SearchDim",
    "carve_validation",
    "load_experiment",
    "parse_experiment",
    "prepare",
    "render_report",
    "run_experiment",
    "strip_volatile",
    "write_outputs",
]
