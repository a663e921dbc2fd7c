"""Pipelines: candidate generation → scoring → ranking → re-ranking."""

from divrec.pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
