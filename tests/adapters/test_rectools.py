"""`divrec.adapters.rectools` against the installed RecTools: a real RecTools model's table,
re-ranked, gives the same lists as divrec's re-ranker called directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import PopularModel, RandomModel

from divrec.adapters.rectools import DiversifiedModel, RecToolsReranker
from divrec.rerank import MMR, SSD, FastGreedyDPP

N_ITEMS = 50


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    interactions = pd.DataFrame(
        {
            Columns.User: rng.integers(100, 130, 600),
            Columns.Item: rng.integers(0, N_ITEMS, 600) * 7,  # external ids 0, 7, 14, ...
            Columns.Weight: 1.0,
            Columns.Datetime: pd.Timestamp("2026-01-01"),
        }
    ).drop_duplicates([Columns.User, Columns.Item])
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS) * 7})
    for d in range(4):
        items[f"v{d}"] = rng.normal(size=N_ITEMS)
    items["genre"] = rng.choice(["a", "b", "c"], N_ITEMS)
    return Dataset.construct(interactions), items


def _direct(reranker, items: pd.DataFrame, reco: pd.DataFrame, k: int) -> pd.DataFrame:
    """divrec called directly, one user at a time: candidates by decreasing score, `select`."""
    vec = items.set_index("item_id")[["v0", "v1", "v2", "v3"]]
    rows = []
    for user, group in reco.groupby(Columns.User, sort=False):
        group = group.iloc[np.argsort(-group[Columns.Score].to_numpy(), kind="stable")]
        picks = reranker.select(
            group[Columns.Score].to_numpy(dtype=np.float64),
            k,
            vectors=vec.loc[group[Columns.Item]].to_numpy(dtype=np.float32),
        )
        for r, p in enumerate(picks):
            row = group.iloc[p]
            rows.append((user, row[Columns.Item], row[Columns.Score], r + 1))
    return pd.DataFrame(rows, columns=Columns.Recommendations)


@pytest.mark.parametrize(
    ("name", "params", "direct"),
    [
        ("mmr", {"lambda_": 0.3}, MMR(lambda_=0.3)),
        ("dpp", {"theta": 0.5}, FastGreedyDPP(theta=0.5)),
        ("ssd", {"gamma": 0.4}, SSD(gamma=0.4)),
    ],
)
def test_reranked_rectools_lists_equal_divrec_directly(name, params, direct):
    dataset, items = _data()
    model = RandomModel(random_state=3).fit(dataset)  # scores vary per user
    users = [100, 105, 111, 129]
    reco = model.recommend(users, dataset, k=25, filter_viewed=True)
    step = RecToolsReranker(name, params, items=items, vectors=["v0", "v1", "v2", "v3"])
    got = step.rerank(reco, k=8)
    assert list(got.columns) == Columns.Recommendations
    expected = _direct(direct, items, reco, 8)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_diversified_model_is_a_drop_in_for_recommend():
    dataset, items = _data(1)
    step = RecToolsReranker(MMR(lambda_=0.5), items=items, vectors=["v0", "v1", "v2", "v3"])
    wrapped = DiversifiedModel(PopularModel(), step, n_candidates=30).fit(dataset)
    got = wrapped.recommend([101, 102], dataset, k=5, filter_viewed=False)
    reco = PopularModel().fit(dataset).recommend([101, 102], dataset, k=30, filter_viewed=False)
    expected = _direct(MMR(lambda_=0.5), items, reco, 5)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got.groupby(Columns.User).size().tolist() == [5, 5]


def test_knob_zero_keeps_the_model_order_and_categories_reach_the_reranker():
    dataset, items = _data(2)
    reco = PopularModel().fit(dataset).recommend([110], dataset, k=12, filter_viewed=True)
    step = RecToolsReranker("mmr", items=items, vectors=["v0", "v1", "v2", "v3"], diversity=0.0)
    got = step.rerank(reco, k=4)
    assert got[Columns.Item].tolist() == reco[Columns.Item].head(4).tolist()
    capped = RecToolsReranker(
        "category-cap", {"max_per_category": 1}, items=items, category="genre"
    )
    out = capped.rerank(reco, k=3)
    genre = items.set_index("item_id")["genre"]
    assert genre.loc[out[Columns.Item]].is_unique  # one item per genre


def test_bad_tables_are_one_line():
    dataset, items = _data()
    step = RecToolsReranker("mmr", items=items, vectors=["v0", "v1", "v2", "v3"])
    reco = pd.DataFrame({Columns.User: [1, 1], Columns.Item: [0, 7], Columns.Score: [1.0, 0.5]})
    with pytest.raises(ValueError, match="unknown item id 3"):
        step.rerank(reco.assign(item_id=[0, 3]), 2)
    with pytest.raises(ValueError, match="twice"):
        step.rerank(reco.assign(item_id=[0, 0]), 2)
    with pytest.raises(ValueError, match="finite"):
        step.rerank(reco.assign(score=[1.0, np.inf]), 2)
    with pytest.raises(ValueError, match="no column 'score'"):
        step.rerank(reco.drop(columns=Columns.Score), 2)
