"""Data layer: the `Interactions` model, dataset loaders, the HI feedback encoding and a
synthetic generator with known latent topics."""

from divrec.data.feedback import FeedbackMatrices, encode_events, encode_feedback
from divrec.data.home import data_home, fetch, find_file
from divrec.data.interactions import DataError, Interactions, as_csr
from divrec.data.movielens import load_movielens_1m, load_movielens_100k
from divrec.data.ncf import NcfReconstruction, load_ncf_ml1m, read_ncf_test
from divrec.data.synthetic import SyntheticConfig, SyntheticData, make_synthetic
from divrec.data.tabular import ColumnMap, load_item_categories, load_table

__all__ = [
    "ColumnMap",
    "DataError",
    "FeedbackMatrices",
    "Interactions",
    "NcfReconstruction",
    "SyntheticConfig",
    "SyntheticData",
    "as_csr",
    "data_home",
    "encode_events",
    "encode_feedback",
    "fetch",
    "find_file",
    "load_item_categories",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_ncf_ml1m",
    "load_table",
    "make_synthetic",
    "read_ncf_test",
]
