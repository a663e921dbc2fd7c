"""Ranking-stage models."""

from divrec.ranking.hi_nn import CFNNRecommender, HINet, HINNRecommender

__all__ = ["CFNNRecommender", "HINNRecommender", "HINet"]
