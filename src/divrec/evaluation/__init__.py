"""Evaluation harness (full and sampled protocols through the whole pipeline) and the
benchmark (`divrec benchmark`)."""

from divrec.evaluation.harness import (
    EvalConfig,
    EvalResult,
    bootstrap_ci,
    evaluate,
    examples_to_reach,
)

__all__ = ["EvalConfig", "EvalResult", "bootstrap_ci", "evaluate", "examples_to_reach"]
