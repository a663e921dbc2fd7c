"""Ranking-stage models."""

from divrec.ranking.cdm import CDMConfig, CDMRanker
from divrec.ranking.dcn import DCNConfig, DCNRanker
from divrec.ranking.hi_nn import HINet, HINNConfig, HINNRecommender

__all__ = [
    "CDMConfig",
    "CDMRanker",
    "DCNConfig",
    "DCNRanker",
    "HINNConfig",
    "HINNRecommender",
    "HINet",
]
