"""Named datasets, protocols and models for the CLI and the benchmarks.

Plain dictionaries from a name to a function: every entry is visible here, nothing registers
itself by import side effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from divrec.data.interactions import DataError, Interactions
from divrec.data.movielens import load_movielens_1m, load_movielens_100k
from divrec.data.split import Split
from divrec.metrics.reference import reference_item_vectors
from divrec.params import parse_pairs
from divrec.registry import DATASETS as REGISTERED_DATASETS
from divrec.registry import MODELS, RERANKERS, create, resolve
from divrec.splitting.protocols import leave_last_one, ncf_split, random_holdout, temporal_split

__all__ = [
    "DATASETS",
    "EVAL_PROTOCOL",
    "MODELS",
    "PROTOCOLS",
    "RERANKERS",
    "TableSpec",
    "load_dataset",
    "make_model",
    "make_reranker",
    "make_split",
    "parse_params",
    "reference_item_vectors",
]

#: named datasets (the registry's; loaders are imported when a name is used)
DATASETS = REGISTERED_DATASETS


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
        if name == "ml-100k":
            return load_movielens_100k(home)
        return resolve("dataset", name)(home)
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
        split = ncf_split(data, n_negatives=99, seed=seed)
    elif protocol == "leave-last-one":
        split = leave_last_one(data, validation=False)
    elif protocol == "temporal":
        split = temporal_split(data, test_fraction=0.2)
    else:
        split = random_holdout(data, test_fraction=0.2, seed=seed)
    if split.test.nnz == 0:
        raise DataError(
            f"{data.name}: the {protocol} split has no test rows (too few interactions per user "
            "to hold any out)"
        )
    if split.train.nnz == 0:
        raise DataError(f"{data.name}: the {protocol} split has no training rows")
    return split


def parse_params(pairs: list[str] | None, option: str = "--param") -> dict[str, str]:
    """`["factors=128"]` → `{"factors": "128"}`; values are coerced by `make_model`."""
    return parse_pairs(pairs, option)


def make_model(name: str, params: dict | None = None, seed: int | None = None):
    """A registered model with typed hyperparameters (`divrec.registry.create`).

    `seed`, when given, seeds a model that takes one unless `params` sets it explicitly.
    Unknown names, unknown parameters and values of the wrong type are one-line errors.
    """
    return create("model", name, params, seed=seed, option="--param")


def make_reranker(name: str, params: dict | None = None):
    """A registered re-ranker with typed hyperparameters."""
    return create("re-ranker", name, params, option="--rerank-param")
