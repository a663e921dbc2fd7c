"""Pipelines: Query → retrieval → ranking → re-ranking → lists.

`Query` and `Candidates` (defined in `divrec.data.query`, so every stage can import them) are
re-exported here.
"""

from divrec.data.query import Candidates, Query
from divrec.pipeline.pipeline import Pipeline
from divrec.pipeline.spec import PipelineSpec, SpecError, StageSpec

__all__ = ["Candidates", "Pipeline", "PipelineSpec", "Query", "SpecError", "StageSpec"]
