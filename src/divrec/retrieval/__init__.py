"""Candidate generation: the recommender protocol and retrieval models."""

from divrec.retrieval.base import NotFittedError, Recommender, top_k
from divrec.retrieval.baselines import (
    ALSRecommender,
    BPRRecommender,
    FactorRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RandomRecommender,
)

__all__ = [
    "ALSRecommender",
    "BPRRecommender",
    "FactorRecommender",
    "ItemKNNRecommender",
    "NotFittedError",
    "PopularityRecommender",
    "RandomRecommender",
    "Recommender",
    "top_k",
]
