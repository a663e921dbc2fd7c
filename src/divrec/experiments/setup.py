"""Named datasets, protocols and models for the CLI and the benchmarks.

Plain dictionaries from a name to a function: every entry is visible here, nothing registers
itself by import side effect.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from divrec.data.interactions import DataError, Interactions
from divrec.data.movielens import load_movielens_1m, load_movielens_100k
from divrec.ranking.hi_nn import CFNNRecommender, HINNRecommender
from divrec.retrieval.base import Recommender
from divrec.retrieval.baselines import (
    ALSRecommender,
    BPRRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RandomRecommender,
)
from divrec.retrieval.hi import HIRealtime, HIRecommender, P2PRecommender
from divrec.retrieval.two_tower import MFbRecommender, TwoTowerRecommender
from divrec.splitting import Split, leave_last_one, ncf_split, random_holdout, temporal_split

DATASETS: dict[str, Callable[..., Interactions]] = {
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
}

MODELS: dict[str, type[Recommender]] = {
    "random": RandomRecommender,
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "ials": ALSRecommender,
    "bpr": BPRRecommender,
    "p2p": P2PRecommender,  # HI paper CF-RT / CF-MF (Eq. 3-5)
    "hi": HIRecommender,  # HI candidate mixing p2p:n2p (Eq. 3-9)
    "hi-rt": HIRealtime,  # HI-RT (Eq. 14-17)
    "hi-nn": HINNRecommender,  # HI-NN ranking network (Fig. 2, Eq. 10-13)
    "cf-nn": CFNNRecommender,  # CF-NN: HI-NN's p2p parts only
    "mfb": MFbRecommender,  # TotalRecall MFb, BCE with negatives [a:b] (Sec. 3.5)
    "tr": TwoTowerRecommender,  # TotalRecall Bi-InfoNCE two-tower (Eq. 2-3)
}

PROTOCOLS = ("ncf", "leave-last-one", "temporal", "random")
#: the evaluation protocol ("sampled" or "full") that goes with each split protocol
EVAL_PROTOCOL = {"ncf": "sampled", "leave-last-one": "full", "temporal": "full", "random": "full"}


@dataclass(frozen=True)
class TableSpec:
    """How to read a CSV/TSV/Parquet file given instead of a named dataset.

    Attributes:
        columns: role → column name, roles among user, item, rating, timestamp, session.
        min_rating: keep only rows rated at least this (None: keep all).
    """

    columns: tuple[tuple[str, str], ...] = ()
    min_rating: float | None = None

    @classmethod
    def parse(cls, columns: str | None, min_rating: float | None = None) -> TableSpec:
        """From `"user=uid,item=mid,rating=stars"` (roles not named keep their defaults)."""
        pairs = []
        for part in (columns or "").split(","):
            if not part.strip():
                continue
            role, sep, col = part.partition("=")
            role = role.strip()
            if not sep or role not in ("user", "item", "rating", "timestamp", "session"):
                raise ValueError(
                    f"--columns entry {part!r} must be role=column with role one of user, "
                    "item, rating, timestamp, session"
                )
            pairs.append((role, col.strip()))
        return cls(tuple(pairs), min_rating)


def load_dataset(
    name: str, home=None, require_timestamps: bool = False, table: TableSpec | None = None
) -> Interactions:
    """A named dataset, or a CSV/TSV/Parquet file when `name` is not a known dataset name."""
    if name in DATASETS:
        if name == "ml-1m":
            return load_movielens_1m(home, require_timestamps=require_timestamps)
        return DATASETS[name](home)
    path = Path(name)
    if not (path.suffix in (".csv", ".tsv", ".gz", ".parquet") or path.exists()):
        raise DataError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or a CSV/TSV/Parquet path"
        )
    from divrec.data.tabular import ColumnMap, load_table

    table = table or TableSpec()
    return load_table(path, ColumnMap(**dict(table.columns)), min_rating=table.min_rating)


def make_split(
    dataset: str,
    protocol: str,
    home=None,
    seed: int = 0,
    data: Interactions | None = None,
    table: TableSpec | None = None,
) -> Split:
    """The split of `dataset` under `protocol`.

    "ncf" on ML-1M uses the published NCF files (comparable with published tables); on other
    data it samples 99 negatives per held-out item with `seed`. "temporal" is the global
    80:20 split by timestamp (HI Test-RT); on ML-1M without the full `ratings.dat` it uses the
    timestamped users 1–2999.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if protocol == "ncf" and dataset == "ml-1m" and data is None:
        from divrec.data.ncf import load_ncf_ml1m

        return load_ncf_ml1m(home)[0]
    if data is None:
        data = load_dataset(dataset, home, protocol == "temporal", table)
    if protocol == "ncf":
        return ncf_split(data, n_negatives=99, seed=seed)
    if protocol == "leave-last-one":
        return leave_last_one(data, validation=False)
    if protocol == "temporal":
        return temporal_split(data, test_fraction=0.2)
    return random_holdout(data, test_fraction=0.2, seed=seed)


def parse_params(pairs: list[str] | None) -> dict:
    """`["factors=128", "alpha=2.0"]` → `{"factors": 128, "alpha": 2.0}`."""
    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r} is not of the form name=value")
        try:
            out[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = raw.strip()
    return out


def _construct(kind: str, table: dict[str, type], name: str, params: dict | None):
    """`table[name](**params)`; unknown names and parameters are one-line ValueErrors."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    cls = table[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    bad = set(params or {}) - allowed
    if bad:
        raise ValueError(
            f"{kind} {name!r} has no parameter(s) {sorted(bad)}; it takes {sorted(allowed)}"
        )
    return cls(**(params or {}))


def make_model(name: str, params: dict | None = None, seed: int | None = None) -> Recommender:
    """A model by name with hyperparameters; unknown names and parameters are ValueErrors.

    `seed`, when given, seeds a model that takes one unless `params` sets it explicitly.
    """
    params = dict(params or {})
    if seed is not None and "seed" not in params and "seed" in _init_params(MODELS.get(name)):
        params["seed"] = seed
    return _construct("model", MODELS, name, params)


def _init_params(cls: type | None) -> set[str]:
    return set() if cls is None else set(inspect.signature(cls.__init__).parameters)


def reference_item_vectors(train: Interactions, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Model-independent item vectors for ILAD: a truncated SVD of the item×user matrix.

    Every model in a comparison is measured in this one space, so ILAD differences come
    from the lists, not from each model's own embedding. Rows are the left singular vectors
    scaled by the singular values (`(n_items, dim)`; items with no training data are zero and
    count as maximally distant, cosine 0).
    """
    from sklearn.decomposition import TruncatedSVD

    mat = train.to_csr(binary=True).T.tocsr()
    dim = max(1, min(dim, min(mat.shape) - 1))
    svd = TruncatedSVD(n_components=dim, random_state=seed, algorithm="randomized")
    return svd.fit_transform(mat).astype(np.float32)


#: Re-rankers for `divrec evaluate --rerank NAME` (constructor classes of `divrec.rerank`).
def _rerankers() -> dict[str, type]:
    from divrec.rerank import CFDA, CFDM, MMR, SSD, CategoryCap, FastGreedyDPP, HybridUtility

    return {
        "mmr": MMR,
        "dpp": FastGreedyDPP,
        "ssd": SSD,
        "category-cap": CategoryCap,
        "cf-da": CFDA,
        "cf-dm": CFDM,
        "hybrid": HybridUtility,
    }


RERANKERS: dict[str, type] = _rerankers()


def make_reranker(name: str, params: dict | None = None):
    """A re-ranker by name with hyperparameters; unknown names and parameters are ValueErrors."""
    return _construct("re-ranker", RERANKERS, name, params)
