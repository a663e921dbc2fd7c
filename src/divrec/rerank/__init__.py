"""Re-ranking stage: diversity-aware selection of k items from a ranked candidate list.

Every re-ranker is a class that declares its hyperparameters once, as a frozen typed config
(``MMR.Config`` is :class:`~divrec.rerank.mmr.MMRConfig`; keyword-only, validated on
construction, read-only attributes of the re-ranker), and which offers
``select(relevance (N,), k, *, vectors=None, similarity=None, categories=None)`` → the
selected positions ``(k',)`` int64 in selection order, and ``select_batch(relevance (B, N),
k, *, ..., valid=None)`` → ``(B, k)`` int64 padded with ``-1``. With ``vectors`` the
similarity is the cosine of the vectors. See :mod:`divrec.rerank._base` for the contract.

Methods:
    MMR, InterestAwareMMR — :mod:`divrec.rerank.mmr` (Carbonell & Goldstein 1998; CDM Eq. 2–4)
    FastGreedyDPP, fast_greedy_map(_batch) — :mod:`divrec.rerank.dpp` (Chen et al. 2018;
        WeChat Eq. 4–8)
    PersonalizedDPP, RealtimePropensityTracker, RealtimePersonalizedDPP —
        :mod:`divrec.rerank.personalized` (p-DPP, Wang et al. 2020; WeChat Eq. 2–3, 7)
    SSD — :mod:`divrec.rerank.ssd` (Huang et al., KDD 2021)
    CalibratedReranker — :mod:`divrec.rerank.calibration` (Steck, RecSys 2018, Eq. 6)
    FAIR, ranked_group_fairness — :mod:`divrec.rerank.fairness` (Zehlike et al., CIKM 2017)
    CategoryCap, CFDA, CFDM, HybridUtility, RandomK, PopularK — :mod:`divrec.rerank.baselines`
"""

from ._base import Reranker, category_similarity, cosine_similarity
from .baselines import CFDA, CFDM, CategoryCap, HybridUtility, PopularK, RandomK
from .calibration import CalibratedReranker
from .dpp import FastGreedyDPP, fast_greedy_map, fast_greedy_map_batch, tradeoff_alpha
from .fairness import FAIR, ranked_group_fairness
from .mmr import MMR, InterestAwareMMR
from .personalized import (
    PersonalizedDPP,
    RealtimePersonalizedDPP,
    RealtimePropensityTracker,
    entropy_theta,
)
from .ssd import SSD

__all__ = [
    "CFDA",
    "CFDM",
    "FAIR",
    "MMR",
    "SSD",
    "CalibratedReranker",
    "CategoryCap",
    "FastGreedyDPP",
    "HybridUtility",
    "InterestAwareMMR",
    "PersonalizedDPP",
    "PopularK",
    "RandomK",
    "RealtimePersonalizedDPP",
    "RealtimePropensityTracker",
    "Reranker",
    "category_similarity",
    "cosine_similarity",
    "entropy_theta",
    "fast_greedy_map",
    "fast_greedy_map_batch",
    "ranked_group_fairness",
    "tradeoff_alpha",
]
