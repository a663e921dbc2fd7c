"""The one registry of names: models, re-rankers and datasets → `"module:Class"` strings.

Nothing is imported until a name is resolved, so `import divrec.cli.main` and
`divrec data info` never import torch. Every entry is visible here; nothing registers itself
by import side effect (RecTools' `model_from_config` resolves class paths the same way).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from divrec._extras import extra_error
from divrec.params import ParamError, coerce_params, signature_types

__all__ = [
    "DATASETS",
    "MODELS",
    "Preset",
    "RERANKERS",
    "RANKERS",
    "create",
    "names",
    "preset_params",
    "resolve",
]


@dataclass(frozen=True)
class Preset:
    """A registered variant: a class (as `"module:Class"`) with config overrides.

    Variants that differ only in default hyperparameters are presets, not subclasses; a
    fitted preset saves as its class with its full config, so it loads without the registry.
    """

    target: str
    params: dict[str, Any] = field(default_factory=dict)


#: retrieval models (all are also rankers: they score any candidate list)
MODELS: dict[str, str | Preset] = {
    "random": "divrec.retrieval.baselines:RandomRecommender",
    "popularity": "divrec.retrieval.baselines:PopularityRecommender",
    "itemknn": "divrec.retrieval.baselines:ItemKNNRecommender",
    "ials": "divrec.retrieval.baselines:ALSRecommender",
    "bpr": "divrec.retrieval.baselines:BPRRecommender",
    "p2p": "divrec.retrieval.hi:P2PRecommender",  # HI CF-RT / CF-MF (Eq. 3-5)
    "n2p": "divrec.retrieval.hi:N2PRecommender",  # HI negative-to-positive CF (Eq. 6-8)
    "hi": "divrec.retrieval.hi:HIRecommender",  # HI candidate mixing p2p:n2p (Eq. 3-9)
    "hi-rt": "divrec.retrieval.hi:HIRealtime",  # HI-RT (Eq. 14-17)
    "hi-nn": "divrec.ranking.hi_nn:HINNRecommender",  # HI-NN (Fig. 2, Eq. 10-13)
    "cf-nn": Preset("divrec.ranking.hi_nn:HINNRecommender", {"p2p_only": True}),  # CF-NN
    "mfb": Preset(  # TotalRecall MFb (Sec. 3.5, App. A.2 Eq. 7), the paper's ML-1M settings
        "divrec.retrieval.two_tower:TwoTowerRecommender",
        {"loss": "mfb", "tau": 0.125, "batch_size": 4096, "epochs": 20.0},
    ),
    "tr": "divrec.retrieval.two_tower:TwoTowerRecommender",  # TotalRecall (Eq. 2-3)
    "purs": "divrec.ranking.purs:PURS",  # PURS (Eq. 1-12), a sequence ranking model
    "din": "divrec.ranking.ctr:DIN",  # PURS baselines (Sec. 5.2)
    "deepfm": "divrec.ranking.ctr:DeepFM",
    "wide-deep": "divrec.ranking.ctr:WideDeep",
    "pnn": "divrec.ranking.ctr:PNN",
    "spr": "divrec.ranking.spr:SPR",
    "dcn": "divrec.ranking.dcn:DCNRanker",  # DCN-v2 (CDM backbone)
    "ipw": Preset("divrec.ranking.dcn:DCNRanker", {"weighting": "ipw"}),  # CDM baseline IPW
    "cdm": "divrec.ranking.cdm:CDMRanker",  # CDM (Eq. 5-20)
    "graph": "divrec.retrieval.graphsage:GraphRetriever",  # WeChat GraphSAGE i2i (Eq. 1)
    "slim": "divrec.retrieval.slim:SLIMRecommender",  # SLIM ElasticNet (Dacrema et al. 2021)
    "neumf": "divrec.retrieval.neumf:NeuMFRecommender",  # NCF MLP+GMF (He et al. 2017)
    "seq": "divrec.retrieval.sequential:SequentialRecommender",  # any encoder/loss below
    "youtube": Preset(  # YouTube DNN (Covington et al. 2016), SSM
        "divrec.retrieval.sequential:SequentialRecommender", {"encoder": "mean"}
    ),
    "tr-youtube": Preset(  # TotalRecall Sec. 4.2: YouTube DNN tower, l2-norm, Bi-InfoNCE
        "divrec.retrieval.sequential:SequentialRecommender",
        {"encoder": "mean", "loss": "bi", "l2_norm": True},
    ),
    "comirec-sa": Preset(  # ComiRec-SA, Cen et al. 2020 self-attention
        "divrec.retrieval.sequential:SequentialRecommender", {"encoder": "sa"}
    ),
    "comirec-dr": Preset(  # ComiRec-DR, Cen et al. 2020 dynamic routing
        "divrec.retrieval.sequential:SequentialRecommender", {"encoder": "dr"}
    ),
}

#: ranking-stage models (re-score a request's candidates); every model is one too
RANKERS: dict[str, str | Preset] = dict(MODELS)

#: re-rankers (select k of a request's candidates)
RERANKERS: dict[str, str | Preset] = {
    "mmr": "divrec.rerank.mmr:MMR",
    "ia-mmr": "divrec.rerank.mmr:InterestAwareMMR",
    "dpp": "divrec.rerank.dpp:FastGreedyDPP",
    "pdpp": "divrec.rerank.personalized:PersonalizedDPP",
    "rt-dpp": "divrec.rerank.personalized:RealtimePersonalizedDPP",
    "ssd": "divrec.rerank.ssd:SSD",
    "category-cap": "divrec.rerank.baselines:CategoryCap",
    "cf-da": "divrec.rerank.baselines:CFDA",
    "cf-dm": "divrec.rerank.baselines:CFDM",
    "hybrid": "divrec.rerank.baselines:HybridUtility",
    "calibrated": "divrec.rerank.calibration:CalibratedReranker",  # Steck 2018 (Eq. 6)
    "fair": "divrec.rerank.fairness:FAIR",  # FA*IR, Zehlike et al. 2017 (Alg. 2)
    "random-k": "divrec.rerank.baselines:RandomK",  # sanity row: k uniformly at random
    "popular-k": "divrec.rerank.baselines:PopularK",  # sanity row: by training popularity
}

DATASETS: dict[str, str] = {
    "ml-100k": "divrec.data.movielens:load_movielens_100k",
    "ml-1m": "divrec.data.movielens:load_movielens_1m",
    "amazon-grocery": "divrec.data.rechorus:load_grocery_rechorus",
    "yelp": "divrec.data.s3rec:load_s3rec_yelp",  # S3-Rec Yelp (implicit, chronological)
    "beauty": "divrec.data.s3rec:load_s3rec_beauty",  # S3-Rec Amazon Beauty
    "sports": "divrec.data.s3rec:load_s3rec_sports",  # S3-Rec Amazon Sports
    "toys": "divrec.data.s3rec:load_s3rec_toys",  # S3-Rec Amazon Toys
}

_TABLES = {"model": MODELS, "ranker": RANKERS, "re-ranker": RERANKERS, "dataset": DATASETS}


def names(kind: str) -> list[str]:
    """Registered names of `kind` ("model", "ranker", "re-ranker", "dataset")."""
    return list(_TABLES[kind])


def _entry(kind: str, name: str) -> Preset:
    table = _TABLES[kind]
    if name not in table:
        raise ParamError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    entry = table[name]
    return entry if isinstance(entry, Preset) else Preset(entry)


def resolve(kind: str, name: str) -> Any:
    """The class (or loader function) registered as `name`; unknown names are one line.

    A class whose optional library is not installed (torch, faiss, implicit, ...) raises
    `divrec._extras.MissingExtraError`, one line naming the extra that installs it.
    """
    module, _, attr = _entry(kind, name).target.partition(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as err:  # an optional library: one line naming its extra
        missing = extra_error(err, f"{kind} {name!r}")
        if missing is None:
            raise
        raise missing from None
    return getattr(imported, attr)


def preset_params(kind: str, name: str) -> dict[str, Any]:
    """The config overrides of a preset (`{}` for a plain class entry)."""
    return dict(_entry(kind, name).params)


def create(
    kind: str,
    name: str,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    option: str = "--param",
) -> Any:
    """`resolve(kind, name)(**params)` with typed coercion of `params`.

    Args:
        kind: "model", "ranker" or "re-ranker".
        name: registered name.
        params: raw values (strings from a command line, or JSON values from a config).
        seed: seeds the object when it takes a `seed` and `params` does not set one.
        option: the option name used in error messages.

    Raises:
        ParamError: unknown name or parameter, a value of the wrong type, or a value the
            constructor rejects (its message, on one line).
    """
    cls = resolve(kind, name)
    raw = {**preset_params(kind, name), **dict(params or {})}
    values = coerce_params(cls, raw, f"{kind} {name!r}", option)
    if seed is not None and "seed" not in values and "seed" in signature_types(cls):
        values["seed"] = seed
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ParamError(f"{kind} {name!r}: {msg}") from None
