"""Ranking-stage models."""

from divrec.ranking.cdm import CDMRanker
from divrec.ranking.dcn import DCNRanker, IPWRanker
from divrec.ranking.hi_nn import CFNNRecommender, HINet, HINNRecommender

__all__ = ["CDMRanker", "CFNNRecommender", "DCNRanker", "HINNRecommender", "HINet", "IPWRanker"]
