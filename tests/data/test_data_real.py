"""Loaders on the real datasets: counts against the verified figures of the data README
(independently counted there), and the acceptance numbers of the NCF protocol."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data import DataError, load_movielens_1m, load_movielens_100k, load_ncf_ml1m
from divrec.evaluation import EvalConfig, evaluate
from divrec.retrieval import ALSRecommender, PopularityRecommender


def test_ml100k_counts(data_home):
    data = load_movielens_100k(data_home)
    assert (data.n_users, data.n_items, data.nnz) == (943, 1682, 100_000)
    assert np.bincount(data.values.astype(int))[1:].tolist() == [
        6110, 11370, 27145, 34174, 21201,
    ]  # fmt: skip
    assert (data.timestamps.min(), data.timestamps.max()) == (874724710, 893286638)
    assert data.n_categories == 19
    # u.item line 1 is Toy Story: Animation, Children's, Comedy (genre columns 3, 4, 5).
    toy = data.item_index(1)[0]
    assert data.item_categories[toy].indices.tolist() == [3, 4, 5]


def test_ml1m_full_and_timestamped(data_home):
    full = load_movielens_1m(data_home)
    assert (full.n_users, full.n_items, full.nnz) == (6040, 3706, 1_000_209)
    assert np.bincount(full.values.astype(int))[1:].tolist() == [
        56174, 107557, 261197, 348971, 226310,
    ]  # fmt: skip
    # movies.dat line 1: Toy Story (1995)::Animation|Children's|Comedy
    toy = full.item_index(1)[0]
    names = [full.category_names[j] for j in full.item_categories[toy].indices]
    assert names == ["Animation", "Children's", "Comedy"]
    timed = load_movielens_1m(data_home, require_timestamps=True)
    if timed.nnz == full.nnz:  # the official ratings.dat is present: nothing to check further
        return
    assert (timed.n_users, timed.nnz) == (2999, 487_650)
    assert (timed.timestamps.min(), timed.timestamps.max()) == (970620734, 1046388675)


@pytest.fixture(scope="module")
def ncf(data_home):
    return load_ncf_ml1m(data_home)


def test_ncf_split_is_consistent(ncf):
    split, info = ncf
    assert info.conflicts == 0
    assert split.train.nnz == 1_000_209 - 6040
    assert split.test.nnz == 6040 and split.negatives.shape == (6040, 99)
    # No published negative is one of its user's training items.
    train = split.train.to_csr(binary=True)
    rows = np.repeat(split.test.users, 99)
    assert train[rows, split.negatives.ravel()].sum() == 0
    # The held-out item is not in training.
    assert train[split.test.users, split.test.items].sum() == 0


def test_popularity_reproduces_published_ncf_numbers(ncf):
    split, _ = ncf
    model = PopularityRecommender().fit(split.train)
    result = evaluate(model, split, EvalConfig(protocol="sampled", n_bootstrap=0), progress=False)
    # TotalRecall Table 1 (from Dacrema et al. 2021): HR@10 0.4533, NDCG@10 0.2542.
    assert abs(result.mean("hr", 10) - 0.4533) <= 0.005
    assert abs(result.mean("ndcg", 10) - 0.2542) <= 0.005


def test_ials_reaches_acceptance_hr(ncf):
    split, _ = ncf
    model = ALSRecommender(seed=0).fit(split.train)
    result = evaluate(model, split, EvalConfig(protocol="sampled", n_bootstrap=0), progress=False)
    assert result.mean("hr", 10) >= 0.70


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="ml-100k/u.data: dataset file not found"):
        load_movielens_100k(tmp_path)
