"""Pipelines: Query → retrieval → ranking → re-ranking → lists.

`Query` and `Candidates` (defined in `divrec.data.query`, so every stage can import them) are
re-exported here.
"""

from divrec.data.query import Candidates, Query
from divrec.pipeline.pipeline import Pipeline

__all__ = ["Candidates", "Pipeline", "Query"]
