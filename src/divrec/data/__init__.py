"""Data layer: the `Interactions` model, dataset loaders, the HI feedback encoding and a
synthetic generator with known latent topics.

Names are imported on first use (PEP 562), so `import divrec.data.interactions` (the CLI's
error type) does not pull in pandas and every loader.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "ColumnMap": "divrec.data.tabular",
    "DataError": "divrec.data.interactions",
    "FeedbackMatrices": "divrec.data.feedback",
    "Interactions": "divrec.data.interactions",
    "NcfReconstruction": "divrec.data.ncf",
    "SyntheticConfig": "divrec.data.synthetic",
    "SyntheticData": "divrec.data.synthetic",
    "as_csr": "divrec.data.interactions",
    "data_home": "divrec.data.home",
    "encode_events": "divrec.data.feedback",
    "encode_feedback": "divrec.data.feedback",
    "fetch": "divrec.data.home",
    "find_file": "divrec.data.home",
    "load_item_categories": "divrec.data.tabular",
    "load_movielens_100k": "divrec.data.movielens",
    "load_movielens_1m": "divrec.data.movielens",
    "load_ncf_ml1m": "divrec.data.ncf",
    "load_table": "divrec.data.tabular",
    "make_synthetic": "divrec.data.synthetic",
    "read_ncf_test": "divrec.data.ncf",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'divrec.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
