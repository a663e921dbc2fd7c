"""`top_k` against a stable full sort: one partition cut, ties at the boundary by lower index."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings

from divrec.retrieval.base import Recommender, top_k

NEG_INF = float("-inf")
# few distinct values (several float64 ones equal after float32 rounding): many ties, many
# of them across the k-th position
TIE_VALUES = [NEG_INF, -1.5, 0.0, -0.0, 0.1, 0.1 + 1e-12, 0.3, 1.0, 2.0]


def stable_full_sort(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: a stable sort of each whole row by decreasing score, −inf → −1, padded."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isneginf(vals), -1, order)
    pad = k - ids.shape[1]
    ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    vals = np.pad(vals.astype(np.float32), ((0, 0), (0, pad)), constant_values=NEG_INF)
    return ids, vals


@settings(max_examples=400, deadline=None)
@given(
    scores=st.sampled_from([np.float32, np.float64]).flatmap(
        lambda dt: hnp.arrays(
            dt,
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
            elements=st.sampled_from(TIE_VALUES),
        )
    ),
    k=st.integers(1, 50),
)
def test_top_k_equals_stable_full_sort_on_ties(scores, k):
    ids, vals = top_k(scores, k)
    exp_ids, exp_vals = stable_full_sort(scores, k)
    assert ids.shape == vals.shape == (scores.shape[0], k)
    assert vals.dtype == np.float32
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_array_equal(vals, exp_vals)


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    levels=st.integers(1, 50),
    k=st.sampled_from([1, 5, 10, 100]),
    neg_inf_share=st.sampled_from([0.0, 0.5, 0.99]),
    width=st.sampled_from([300, 5000]),
)
def test_top_k_wide_rows_quantized(seed, dtype, levels, k, neg_inf_share, width):
    # realistic widths, quantized scores (item-kNN / popularity-like ties), masked entries;
    # wide rows go through the bound on the first columns, then the exact k-th score
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(17, width)).astype(dtype) / levels
    if levels == 50:
        scores = rng.standard_normal((17, width)).astype(dtype)  # continuous: few ties
    scores[rng.random(scores.shape) < neg_inf_share] = NEG_INF
    ids, vals = top_k(scores, k)
    exp_ids, exp_vals = stable_full_sort(scores, k)
    np.testing.assert_array_equal(ids, exp_ids)
    np.testing.assert_array_equal(vals, exp_vals)


def test_top_k_float64_ties_lost_in_float32():
    # 0.1 and 0.1 + 1e-12 round to the same float32: the cut must compare in float64
    scores = np.array([[0.1, 0.1 + 1e-12, 0.1, 0.5, 0.1 + 1e-12]])
    ids, _ = top_k(scores, 3)
    assert ids.tolist() == [[3, 1, 4]]


def test_top_k_k_at_least_n_and_all_neg_inf():
    scores = np.array([[NEG_INF, NEG_INF, NEG_INF], [0.5, NEG_INF, 0.5]], dtype=np.float32)
    ids, vals = top_k(scores, 3)
    assert ids.tolist() == [[-1, -1, -1], [0, 2, -1]]
    ids, vals = top_k(scores, 2)
    assert ids.tolist() == [[-1, -1], [0, 2]]
    ids, vals = top_k(scores, 6)
    assert ids.tolist() == [[-1] * 6, [0, 2, -1, -1, -1, -1]]
    assert np.isneginf(vals[0]).all()


def test_top_k_nan_ranks_last():
    # NaN is a model bug; it must not win a slot over real scores (as before the rewrite)
    scores = np.array([[0.2, np.nan, 0.9, 0.1], [np.nan, np.nan, 0.3, 0.3]], dtype=np.float32)
    ids, _ = top_k(scores, 2)
    assert ids.tolist() == [[2, 0], [2, 3]]
    ids, _ = top_k(scores, 3)
    assert ids[0].tolist() == [2, 0, 3]
    assert ids[1, :2].tolist() == [2, 3] and ids[1, 2] in (0, 1)


class _TableModel(Recommender):
    """Returns a stored float32 score table itself (no copy) for the whole user range."""

    def _fit(self, matrix, data):
        self.table_ = np.arange(matrix.shape[0] * matrix.shape[1], dtype=np.float32).reshape(
            matrix.shape
        )

    def _score_all(self, users):
        return self.table_ if users.size == self.n_users_ else self.table_[users]


def test_recommend_never_masks_a_models_stored_scores_in_place():
    # the score copy is skipped only for a fresh array nobody else holds
    train = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    model = _TableModel().fit(train)
    before = model.table_.copy()
    ids, _ = model.recommend(np.arange(3), k=2)
    np.testing.assert_array_equal(model.table_, before)  # stored table untouched
    assert ids.tolist() == [[2, 1], [3, 2], [3, 1]]
    ids, _ = model.recommend(np.array([0]), k=2)  # a fancy-indexed (fresh) copy
    assert ids.tolist() == [[2, 1]]
    np.testing.assert_array_equal(model.table_, before)
