"""Evaluation harness, the benchmark and the reproductions of the papers' experiments."""

from divrec.experiments.evaluation import EvalConfig, EvalResult, bootstrap_ci, evaluate

__all__ = ["EvalConfig", "EvalResult", "bootstrap_ci", "evaluate"]
