"""divrec: diversity-aware recommendation across retrieval, ranking and re-ranking."""

__version__ = "0.1.0"
