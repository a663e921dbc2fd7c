"""In-memory streaming batch path: same lists as the pipeline, memory bounded by one block."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from divrec.data.interactions import Interactions
from divrec.evaluation.batch import FactorView, factor_view, stream_u2i
from divrec.pipeline import Pipeline
from divrec.rerank import SSD, FastGreedyDPP
from divrec.retrieval.baselines import ALSRecommender, PopularityRecommender
from divrec.retrieval.hi import HIRecommender, N2PRecommender, P2PRecommender


def _log(seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    n = 3000
    return Interactions.from_arrays(
        rng.integers(0, 120, n), rng.integers(0, 90, n), rng.integers(1, 6, n).astype(float)
    )


@pytest.mark.parametrize("reranker", [None, FastGreedyDPP(), SSD()], ids=["none", "dpp", "ssd"])
def test_stream_equals_pipeline(reranker):
    data = _log()
    model = ALSRecommender(factors=8, iterations=3).fit(data)
    pipe = Pipeline(model, reranker, n_candidates=30).use_fitted(data)
    want, _ = pipe.recommend(np.arange(data.n_users), 7)
    rr = pipe.reranker
    got = np.concatenate(
        [c.ids for _, c in stream_u2i(factor_view(model), 30, seen=model.user_items_,
                                      reranker=rr, k=7, block=17)]
    )  # fmt: skip
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cls", [P2PRecommender, N2PRecommender])
def test_factor_view_of_hi_models(cls):
    data = _log(1)
    model = cls(factors=5).fit(data)
    view = factor_view(model)
    users = np.arange(10)
    np.testing.assert_allclose(
        (view.user_vectors[users] @ view.item_vectors.T).astype(np.float32),
        model.score_all(users),
        rtol=1e-6,
    )


def test_factor_view_errors():
    data = _log()
    with pytest.raises(ValueError, match="mixes two lists"):
        factor_view(HIRecommender(factors=3).fit(data))
    with pytest.raises(ValueError, match="no user/item vectors"):
        factor_view(PopularityRecommender().fit(data))
    with pytest.raises(ValueError, match="not fitted"):
        factor_view(ALSRecommender())
    with pytest.raises(ValueError, match="block"):
        next(stream_u2i(FactorView(np.zeros((2, 2)), np.zeros((3, 2))), 2, block=0))


def test_memory_bounded_by_one_block():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((2000, 16)).astype(np.float32)
    view = FactorView(None, items)

    def vecs(users):
        return np.cos(users[:, None] * np.arange(1, 17)[None, :]).astype(np.float32)

    def peak(n_users):
        tracemalloc.start()
        for _ in stream_u2i(view, 50, k=10, block=64, users=np.arange(n_users), user_vectors=vecs):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(256), peak(4096)
    assert large < 1.3 * small, (small, large)
