"""The sanity re-rankers: `random-k` (k candidates uniformly at random, reproducible) and
`popular-k` (candidates by training popularity, ties by position)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.params import ParamError
from divrec.registry import create, resolve
from divrec.rerank import MMR, CategoryCap, PopularK, RandomK
from divrec.rerank.baselines import request_key


def _requests(n_requests: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n_requests, n))


# --------------------------------------------------------------------------- registry
def test_registered_under_their_names():
    assert resolve("re-ranker", "random-k") is RandomK
    assert resolve("re-ranker", "popular-k") is PopularK
    assert create("re-ranker", "random-k", {"seed": "7"}).seed == 7
    with pytest.raises(ParamError, match="seed must be >= 0"):
        create("re-ranker", "random-k", {"seed": -1})
    with pytest.raises(ParamError, match="no parameter"):
        create("re-ranker", "popular-k", {"seed": 1})


# --------------------------------------------------------------------------- random-k
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 30),
    k=st.integers(0, 35),
    seed=st.integers(0, 2**32),
    data_seed=st.integers(0, 1000),
)
def test_random_k_returns_min_k_n_distinct_valid_positions_reproducibly(n, k, seed, data_seed):
    r = np.random.default_rng(data_seed).normal(size=n)
    got = RandomK(seed=seed).select(r, k)
    assert got.dtype == np.int64 and got.shape == (min(k, n),)
    assert len(set(got.tolist())) == got.size
    assert ((got >= 0) & (got < n)).all()
    np.testing.assert_array_equal(RandomK(seed=seed).select(r.copy(), k), got)  # reproducible


def test_random_k_key_is_the_relevance_vector():
    r = np.array([0.3, -0.0, 2.0])
    assert request_key(r) == request_key(np.array([0.3, 0.0, 2.0]))  # -0.0 is 0.0
    assert request_key(r) != request_key(np.array([0.3, 0.0, 2.0000000000000004]))
    assert request_key(r[:2]) != request_key(r)
    assert request_key(np.zeros(0)) != request_key(np.zeros(1))
    # the draw is default_rng([seed, key]).choice(N, k, replace=False), as documented
    want = np.random.default_rng([5, request_key(r)]).choice(3, 2, replace=False)
    np.testing.assert_array_equal(RandomK(seed=5).select(r, 2), want)


@settings(max_examples=40, deadline=None)
@given(
    bsz=st.integers(1, 6),
    n=st.integers(1, 12),
    k=st.integers(0, 14),
    seed=st.integers(0, 1000),
    data_seed=st.integers(0, 1000),
)
def test_random_k_batch_equals_the_loop_of_select(bsz, n, k, seed, data_seed):
    rng = np.random.default_rng(data_seed)
    r = rng.normal(size=(bsz, n))
    valid = rng.random((bsz, n)) < 0.8
    r[~valid] = np.nan  # padding may hold anything
    rr = RandomK(seed=seed)
    out = rr.select_batch(r, k, valid=valid)
    assert out.shape == (bsz, k) and out.dtype == np.int64
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        want = idx[rr.select(r[b, idx], k)]
        assert out[b, : want.size].tolist() == want.tolist()
        assert (out[b, want.size :] == -1).all()


def test_random_k_different_seeds_and_requests_differ():
    reqs = _requests(200, 20)
    a = np.stack([RandomK(seed=0).select(r, 5) for r in reqs])
    b = np.stack([RandomK(seed=1).select(r, 5) for r in reqs])
    # P(two independent uniform ordered 5-draws of 20 agree) = 1 / (20·19·18·17·16) ≈ 6e-7
    assert (a == b).all(axis=1).sum() <= 2
    # different requests, one seed: the same tiny agreement rate
    assert (a[:-1] == a[1:]).all(axis=1).sum() <= 2


def test_random_k_is_uniform_over_ordered_draws():
    """Chi-square over the 20 ordered 2-draws of 5 candidates, 5,000 requests (250 expected
    per cell). The requests and keys are fixed, so the test is deterministic; under exact
    uniformity the statistic exceeds the bound with probability 1e-9, and a position count
    leaves its 6-sd band with probability ≈ 2e-9 (normal approximation, 2,000 expected)."""
    n, k, n_req = 5, 2, 5_000
    cells = {p: i for i, p in enumerate(itertools.permutations(range(n), k))}
    counts = np.zeros(len(cells))
    rr = RandomK(seed=0)  # select_batch: the loop of select (tested above), in one call
    for row in rr.select_batch(_requests(n_req, n, seed=1), k).tolist():
        counts[cells[tuple(row)]] += 1
    expected = n_req / len(cells)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.isf(1e-9, len(cells) - 1), (chi2, counts)
    # and per position (each selected with probability k/n): within 6 binomial sds
    hits = np.bincount(rr.select_batch(_requests(n_req, n, seed=2), k).ravel(), minlength=n)
    p = k / n
    assert np.all(np.abs(hits - n_req * p) < 6 * np.sqrt(n_req * p * (1 - p))), hits


def test_random_k_ignores_the_relevance_order():
    """Sorted relevance gives no advantage to the top positions (same uniformity bound)."""
    n, k, n_req = 10, 3, 4_000
    reqs = -np.sort(-_requests(n_req, n, seed=3), axis=1)  # every request in ranked order
    hits = np.bincount(RandomK(seed=2).select_batch(reqs, k).ravel(), minlength=n)
    p = k / n
    assert np.all(np.abs(hits - n_req * p) < 6 * np.sqrt(n_req * p * (1 - p))), hits


# --------------------------------------------------------------------------- popular-k
def _brute_popular(pop, k):
    return sorted(range(len(pop)), key=lambda i: (-pop[i], i))[:k]


@settings(max_examples=80, deadline=None)
@given(
    pop=st.lists(st.integers(0, 4), min_size=0, max_size=25),  # many ties
    k=st.integers(0, 30),
)
def test_popular_k_is_the_brute_force_sort_with_position_ties(pop, k):
    r = np.random.default_rng(len(pop)).normal(size=len(pop))  # ignored
    got = PopularK().select(r, k, popularity=np.array(pop, dtype=np.int64))
    assert got.dtype == np.int64
    assert got.tolist() == _brute_popular(pop, k)


@settings(max_examples=40, deadline=None)
@given(
    bsz=st.integers(1, 5),
    n=st.integers(1, 12),
    k=st.integers(0, 14),
    data_seed=st.integers(0, 1000),
)
def test_popular_k_batch_equals_the_loop_of_select(bsz, n, k, data_seed):
    rng = np.random.default_rng(data_seed)
    r = rng.normal(size=(bsz, n))
    pop = rng.integers(0, 4, size=(bsz, n))
    valid = rng.random((bsz, n)) < 0.8
    out = PopularK().select_batch(r, k, valid=valid, popularity=pop)
    for b in range(bsz):
        idx = np.flatnonzero(valid[b])
        want = idx[_brute_popular(pop[b, idx].tolist(), k)]
        assert out[b, : want.size].tolist() == want.tolist()
        assert (out[b, want.size :] == -1).all()


def _log() -> Interactions:
    # item 2: 3 distinct users (user 0 three times); item 0: 2 users; item 1: 1; items 3, 4: 0
    users = np.array([0, 0, 0, 1, 2, 0, 1, 3])
    items = np.array([2, 2, 2, 2, 2, 0, 0, 1])
    return _interactions(users, items, n_users=4, n_items=5)


def _interactions(users, items, n_users, n_items) -> Interactions:
    return Interactions(
        users=users,
        items=items,
        values=np.ones(len(users), dtype=np.float32),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
    )


def test_popular_k_fits_distinct_training_users_and_ranks_the_candidates():
    train = _log()
    pk = PopularK().fit(train, item_vectors=np.eye(5, dtype=np.float32))
    assert pk.popularity_.tolist() == [2, 1, 3, 0, 0]
    np.testing.assert_array_equal(pk.popularity_, train.item_popularity())
    # the stage call: candidates in upstream order [3, 0, 4, 1, 2], padding -1 on row 1
    ids = np.array([[3, 0, 4, 1, 2], [4, 3, 1, -1, -1]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [3.0, 2.0, 1.0, -np.inf, -np.inf]])
    out = pk(Query(users=np.array([0, 1])), Candidates(ids, scores), 3)
    assert out.ids.tolist() == [[2, 0, 1], [1, 4, 3]]  # ties (4, 3: 0 users) by position


def test_random_k_stage_call_picks_among_the_candidates():
    rk = RandomK(seed=0).fit(_log(), item_vectors=np.eye(5, dtype=np.float32))
    ids = np.array([[3, 0, 4, 1, 2], [4, 3, 1, -1, -1]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [3.0, 2.0, 1.0, -np.inf, -np.inf]])
    out = rk(Query(users=np.array([0, 1])), Candidates(ids, scores), 4)
    assert sorted(out.ids[0].tolist()) != [] and set(out.ids[0].tolist()) <= set(ids[0].tolist())
    assert len(set(out.ids[0].tolist())) == 4
    assert set(out.ids[1, :3].tolist()) == {4, 3, 1} and out.ids[1, 3] == -1
    again = rk(Query(users=np.array([0, 1])), Candidates(ids, scores), 4)
    np.testing.assert_array_equal(again.ids, out.ids)


# --------------------------------------------------------------------------- errors
def _message(fn) -> str:
    with pytest.raises(ValueError) as err:
        fn()
    return str(err.value)


BAD_CALLS = {
    "k < 0": lambda sel: sel(np.ones(4), -1),
    "k bool": lambda sel: sel(np.ones(4), True),
    "k float": lambda sel: sel(np.ones(4), 2.0),
    "relevance 2-D": lambda sel: sel(np.ones((2, 4)), 2),
    "relevance NaN": lambda sel: sel(np.array([1.0, np.nan, 0.0, 0.0]), 2),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_inputs_give_the_errors_of_the_other_rerankers(case):
    cats = np.zeros(4, dtype=np.int64)

    def ref(r, k):
        return CategoryCap().select(r, k, categories=cats[: np.asarray(r).shape[-1]])

    def mmr(r, k):
        return MMR().select(r, k, similarity=np.eye(np.asarray(r).shape[-1]))

    def rnd(r, k):
        return RandomK().select(r, k)

    def pop(r, k):
        return PopularK().select(r, k, popularity=np.zeros(np.asarray(r).shape))

    want = _message(lambda: BAD_CALLS[case](ref))
    assert _message(lambda: BAD_CALLS[case](mmr)) == want
    assert _message(lambda: BAD_CALLS[case](rnd)) == want
    assert _message(lambda: BAD_CALLS[case](pop)) == want


def test_bad_batch_inputs_give_the_errors_of_the_other_rerankers():
    r = np.ones((2, 4))
    for bad in (
        {"relevance": np.ones(4), "k": 2},
        {"relevance": r, "k": -1},
        {"relevance": r, "k": 2, "valid": np.ones((2, 3), dtype=bool)},
        {"relevance": r, "k": 2, "valid": np.ones((2, 4))},
        {"relevance": np.where(np.eye(2, 4) > 0, np.nan, 1.0), "k": 2},
    ):
        want = _message(
            lambda b=bad: CategoryCap().select_batch(**b, categories=np.zeros((2, 4), int))
        )
        assert _message(lambda b=bad: RandomK().select_batch(**b)) == want
        pop = np.zeros(np.shape(bad["relevance"]))
        assert _message(lambda b=bad, p=pop: PopularK().select_batch(**b, popularity=p)) == want


def test_popular_k_needs_a_popularity_of_the_candidates_shape():
    r = np.ones(3)
    with pytest.raises(ValueError, match="PopularK needs `popularity`"):
        PopularK().select(r, 2)
    with pytest.raises(ValueError, match=r"popularity must have shape \(3,\), got \(2,\)"):
        PopularK().select(r, 2, popularity=np.ones(2))
    with pytest.raises(ValueError, match="popularity contains NaN or infinite values"):
        PopularK().select(r, 2, popularity=np.array([1.0, np.inf, 0.0]))


def test_unfitted_stage_call_is_the_usual_error():
    from divrec.stage import NotFittedError

    for rr in (RandomK(), PopularK()):
        with pytest.raises(NotFittedError, match="not fitted"):
            rr(Query(users=np.array([0])), Candidates(np.array([[0, 1]]), np.ones((1, 2))), 1)


def test_fit_on_an_empty_log():
    """A catalogue with no interactions (the serving catalogue of an item table): every
    popularity is 0, so popular-k keeps the upstream order."""
    empty = _interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), n_users=0, n_items=3)
    pk = PopularK().fit(empty, item_vectors=np.eye(3, dtype=np.float32))
    assert pk.popularity_.tolist() == [0, 0, 0]
    out = pk(Query(users=np.array([0])), Candidates(np.array([[2, 0, 1]]), np.ones((1, 3))), 2)
    assert out.ids.tolist() == [[2, 0]]
