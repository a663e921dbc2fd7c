"""The PURS report's seed-level intervals and the request check of `purs_data_check`, on
small hand-made cases."""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reproductions.purs_data_check import candidate_popularity
from reproductions.purs_report import _fmt


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=8))
def test_interval_from_the_stored_population_std_is_the_t_interval(values):
    x = np.array(values)
    from scipy import stats

    # the t-interval of the per-seed values, computed directly with the sample std
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    cell = _fmt((x.mean(), x.std()), n_seeds=x.size)  # what the JSON stores: mean, pop. std
    mean, ci = (float(v) for v in cell.split(" ± "))
    assert mean == pytest.approx(x.mean(), abs=5e-5)
    assert ci == pytest.approx(half, abs=5e-5)


def test_one_seed_has_no_interval_and_the_former_layout_keeps_the_std():
    assert _fmt((0.5, 0.1), n_seeds=1) == "0.5000"
    assert _fmt((0.5, 0.1)) == "0.5000 ± 0.1000"
    assert _fmt((float("nan"), 0.0), n_seeds=5) == "—"


def _bench(cand, pos_col, train_items, train_users, n_items):
    cand = np.asarray(cand)
    label = np.zeros(cand.shape)
    label[np.arange(len(cand)), pos_col] = 1
    log = types.SimpleNamespace(items=np.asarray(train_items), users=np.asarray(train_users))
    return types.SimpleNamespace(
        users=np.arange(len(cand)),
        cand=cand,
        pos_col=np.asarray(pos_col),
        label=label,
        train_pop=np.bincount(log.items, minlength=n_items).astype(float),
        split=types.SimpleNamespace(train_log=log),
    )


def test_candidate_popularity_by_hand():
    # training counts: item 0 ×3, item 1 ×1, item 2 ×1, item 3 ×0 (cold), item 4 ×2
    items = [0, 0, 0, 1, 2, 4, 4]
    users = [0, 0, 1, 1, 2, 2, 2]  # 7 training events over 3 users
    # request 0: positive 0 (count 3) vs negatives 1, 2, 4 (1, 1, 2): above all three
    # request 1: positive 3 (cold) vs negatives 1, 4, 2 (1, 2, 1): below all three
    b = _bench([[1, 0, 2, 4], [1, 4, 3, 2]], [1, 2], items, users, n_items=5)
    d = candidate_popularity(b)
    assert d["requests"] == 2
    assert d["train_positives_per_user"] == pytest.approx(7 / 3)
    assert d["positive_train_count_median"] == 1.5  # counts 3 and 0
    assert d["negative_train_count_median"] == 1.0  # 1, 1, 2, 1, 2, 1
    assert d["positive_cold_share"] == 0.5 and d["negative_cold_share"] == 0.0
    assert d["positive_at_most_1_share"] == 0.5
    assert d["negative_at_most_1_share"] == pytest.approx(4 / 6)
    assert d["training_count_auc"] == pytest.approx((1.0 + 0.0) / 2)


def test_candidate_popularity_ties_count_half():
    # every candidate seen once: the training count cannot order them
    b = _bench([[0, 1, 2]], [0], [0, 1, 2], [0, 0, 0], n_items=3)
    assert candidate_popularity(b)["training_count_auc"] == 0.5
