"""Pipeline: candidate generation → re-ranking, checked against the parts run by hand."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data import SyntheticConfig, make_synthetic
from divrec.pipeline import Pipeline
from divrec.rerank import MMR, CategoryCap, FastGreedyDPP
from divrec.retrieval import ALSRecommender, PopularityRecommender


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=60, n_items=80, n_topics=4, seed=3)).interactions


@pytest.fixture(scope="module")
def als(data):
    return ALSRecommender(factors=8, iterations=5, threads=1).fit(data)


def test_no_reranker_is_the_retriever(data, als):
    pipe = Pipeline(als, None, n_candidates=30).use_fitted(data)
    users = np.arange(10)
    ids, scores = pipe.recommend(users, 5)
    ref_ids, ref_scores = als.recommend(users, 5)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores)


def test_relevance_only_reranker_keeps_the_order(data, als):
    users = np.arange(20)
    ref_ids, _ = als.recommend(users, 10)
    for rr in (MMR(lambda_=1.0), FastGreedyDPP(theta=1.0)):
        ids, _ = Pipeline(als, rr, n_candidates=40).use_fitted(data).recommend(users, 10)
        np.testing.assert_array_equal(ids, ref_ids)


def test_reranked_lists_come_from_the_candidates(data, als):
    users = np.arange(20)
    pipe = Pipeline(als, FastGreedyDPP(theta=0.3), n_candidates=25).use_fitted(data)
    ids, scores = pipe.recommend(users, 10)
    cand, cand_scores = als.recommend(users, 25)
    for row, c, cs, s in zip(ids, cand, cand_scores, scores, strict=True):
        assert len(set(row.tolist())) == 10
        assert set(row.tolist()) <= set(c.tolist())
        # each returned score is the retriever's score of that item
        lookup = dict(zip(c.tolist(), cs.tolist(), strict=True))
        np.testing.assert_allclose(s, [lookup[i] for i in row.tolist()])
    # a strong diversity weight changes at least one list
    assert not np.array_equal(ids, cand[:, :10])


def test_category_cap_through_pipeline(data):
    pop = PopularityRecommender()
    pipe = Pipeline(pop, CategoryCap(max_per_category=1), n_candidates=80).fit(data)
    ids, _ = pipe.recommend(np.arange(5), 4)
    cats = data.primary_category()
    for row in ids:  # 4 topics, at most one item of each
        assert sorted(cats[row].tolist()) == [0, 1, 2, 3]


def test_fit_fits_the_retriever_and_checks_arguments(data):
    pipe = Pipeline(ALSRecommender(factors=4, iterations=2, threads=1), n_candidates=0)
    with pytest.raises(ValueError, match="n_candidates must be positive"):
        pipe.fit(data)
    pipe = Pipeline(ALSRecommender(factors=4, iterations=2, threads=1)).fit(data)
    assert pipe.retriever.item_factors_.shape == (data.n_items, 4)
    with pytest.raises(ValueError, match="k must be positive"):
        pipe.recommend([0], 0)


def test_knob_without_a_reranker_is_the_relevance_order_and_knobless_rerankers_refuse_it(data, als):
    """Documented choice: a pipeline without a re-ranker answers in relevance order whatever
    the knob; a knob-less re-ranker (category cap) refuses any knob, 0 included (it used to
    take knob 0 and skip its cap)."""
    from divrec.data.query import Query

    users = np.arange(6)
    plain = Pipeline(als, None, n_candidates=30).use_fitted(data)
    ref = plain(Query(users=users), None, 5).ids
    for knob in (0.0, 0.7):
        got = plain(Query(users=users, diversity=np.full(6, knob)), None, 5).ids
        np.testing.assert_array_equal(got, ref)
    capped = Pipeline(als, CategoryCap(max_per_category=1), n_candidates=80).use_fitted(data)
    for knob in (0.0, 0.7):
        with pytest.raises(ValueError, match="no diversity knob"):
            capped(Query(users=users, diversity=np.full(6, knob)), None, 4)


def test_constraints_and_explain_through_the_pipeline(data, als):
    from divrec.data.constraints import Constraints, check_list
    from divrec.data.query import Query

    pipe = Pipeline(als, MMR(lambda_=0.6), n_candidates=40).use_fitted(data)
    cats = data.primary_category()
    users = np.arange(6)
    ids0, _ = pipe.recommend(users, 8)
    pin = int(ids0[0, 5])
    top_cat = int(np.bincount(cats[ids0[ids0 >= 0]]).argmax())
    rule = Constraints(max_count={top_cat: 1}, pins={pin: 0})
    q = Query(users, constraints=[rule] + [None] * 5)
    ids, scores, ex = pipe.recommend(q, 8, explain=True)
    assert check_list(ids[0], rule, cats, 8) == []
    assert ids[0, 0] == pin and ex[0][0]["rule"] == "pin"
    np.testing.assert_array_equal(ids[1:], ids0[1:])  # requests without rules unchanged
    for row, exp in zip(ids, ex, strict=True):
        assert [e["item"] for e in exp] == [int(i) for i in row if i >= 0]
        for e in exp:
            assert e["gain"] == pytest.approx(e["relevance_part"] + e["diversity_part"])
    # explain off: the plain (ids, scores); no re-ranker: refuses rules, explains the order
    assert len(pipe.recommend(users, 8)) == 2
    plain = Pipeline(als, None, n_candidates=40).use_fitted(data)
    with pytest.raises(ValueError, match="constraints need a re-ranker"):
        plain.recommend(q, 8)
    ids_p, _, ex_p = plain.recommend(users, 3, explain=True)
    assert [e["rank_before"] for e in ex_p[0]] == [1, 2, 3]
