"""The contract every registered model and re-ranker keeps (LensKit's `lenskit.testing` idea).

Parametrized over the registry, so a new model or re-ranker is covered the moment it is
registered: fit/recommend shapes and padding, no duplicates, seen items excluded, determinism
with a seed, save/load round trip, unknown users, fresh histories, and — for every re-ranker
inside a `Pipeline` under every protocol — that a re-ranker which changes the order changes the
sampled metrics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (imported first, so the global-state check sees torch's state)

import divrec
from divrec.data import SyntheticConfig, make_synthetic
from divrec.data.query import Query
from divrec.evaluation import EvalConfig, evaluate
from divrec.pipeline import Pipeline
from divrec.registry import MODELS, RERANKERS, create
from divrec.splitting import leave_last_one, ncf_split, random_holdout, temporal_split
from divrec.testing import (
    check_config_round_trip,
    check_declared_once,
    check_fit_keeps_global_state,
)

#: small settings for the models that train for minutes at their defaults
FAST = {
    "tr": {"epochs": 1.0, "dim": 16, "batch_size": 128},
    "mfb": {"epochs": 1.0, "dim": 16, "batch_size": 128},
    "hi-nn": {"epochs1": 1, "epochs2": 1, "batch_size": 4096, "factors": 4, "hidden": (8,)},
    "cf-nn": {"epochs1": 1, "epochs2": 1, "batch_size": 4096, "factors": 4, "hidden": (8,)},
    "ials": {"factors": 16, "iterations": 5},
    "bpr": {"factors": 16, "iterations": 10},
    "p2p": {"factors": 4},
    "n2p": {"factors": 4},
    "hi": {"factors": 4},
    "hi-rt": {"factors": 4},
    "dcn": {"max_epochs": 2, "hidden": (16,), "dim": 8},
    "ipw": {"max_epochs": 2, "hidden": (16,), "dim": 8},
    "cdm": {"max_epochs": 2, "hidden": (16,), "dim": 8, "cdm_epochs": 1},
    "purs": {"epochs": 1, "dim": 8},
    "din": {"epochs": 1, "dim": 8},
    "deepfm": {"epochs": 1, "dim": 8},
    "wide-deep": {"epochs": 1, "dim": 8},
    "pnn": {"epochs": 1, "dim": 8},
    "spr": {"epochs": 2, "factors": 8},
    "graph": {"epochs": 1, "dim": 16, "hidden": 16},
    "slim": {"max_iter": 20},
    "neumf": {"epochs": 1, "gmf_dim": 8, "mlp_dims": (16, 8)},
    "seq": {"epochs": 1.0, "dim": 8, "ssm_negatives": 32, "batch_size": 64},
    "youtube": {"epochs": 1.0, "dim": 8, "ssm_negatives": 32, "batch_size": 64},
    "tr-youtube": {"epochs": 1.0, "dim": 8, "ssm_negatives": 32, "batch_size": 64},
    "comirec-sa": {"epochs": 1.0, "dim": 8, "ssm_negatives": 32, "batch_size": 64},
    "comirec-dr": {"epochs": 1.0, "dim": 8, "ssm_negatives": 32, "batch_size": 64},
}


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticConfig(n_users=50, n_items=80, n_topics=4, interactions_per_user=10, seed=7)
    return make_synthetic(cfg).interactions


@pytest.fixture(scope="module")
def fitted(data):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = create("model", name, FAST.get(name), seed=0).fit(data)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(MODELS))
def test_model_contract(name, data, fitted, tmp_path):
    model = fitted(name)
    users = np.array([0, 3, 7])
    ids, scores = model.recommend(users, k=5)
    assert ids.shape == (3, 5) and ids.dtype == np.int64
    assert scores.shape == (3, 5) and scores.dtype == np.float32
    seen = data.to_csr(binary=True)
    for row, u in zip(ids, users, strict=True):
        real = row[row >= 0]
        assert len(set(real.tolist())) == real.size  # no duplicates
        assert not seen[u, real].toarray().any()  # seen items excluded
    # padding: asking for more than the catalogue pads with -1 / -inf
    big_ids, big_scores = model.recommend(users[:1], k=data.n_items + 5)
    assert (big_ids[0, -5:] == -1).all() and np.isneginf(big_scores[0, -5:]).all()
    # determinism with a seed; a fit leaves torch's threads and the global RNGs untouched
    again = check_fit_keeps_global_state(
        lambda: create("model", name, FAST.get(name), seed=0), data
    )
    assert np.array_equal(again.recommend(users, k=5)[0], ids)
    # save / load round trip
    path = model.save(tmp_path / name)
    loaded = divrec.load(path)
    assert type(loaded) is type(model)
    l_ids, l_scores = loaded.recommend(users, k=5)
    assert np.array_equal(l_ids, ids)
    np.testing.assert_allclose(l_scores, scores, rtol=1e-5, atol=1e-6)
    # unknown users and non-integer users are errors, not silent truncation
    with pytest.raises(ValueError, match="user"):
        model.recommend([data.n_users], k=5)
    with pytest.raises(ValueError, match="integer"):
        model.recommend([1.7], k=5)
    with pytest.raises(ValueError, match="k must"):
        model.recommend([1], k=True)


@pytest.mark.parametrize("name", [n for n in MODELS])
def test_fresh_history_contract(name, data, fitted):
    model = fitted(name)
    hist = [[1, 2, 3], [5]]
    query = Query(users=[-1, -1], history=hist)
    if not model.supports_history:
        with pytest.raises(ValueError, match="history"):
            model.recommend(query, k=5)
        return
    ids, _ = model.recommend(query, k=5)
    assert ids.shape == (2, 5)
    for row, h in zip(ids, hist, strict=True):
        assert not set(row.tolist()) & set(h)  # a fresh history is excluded like seen items


def test_fresh_history_of_a_training_user_matches_its_training_row(data, fitted):
    """For models whose score is a function of the history row, passing the training row as
    a fresh history gives the training answer (kNN and HI exactly)."""
    x = data.to_csr(binary=True)
    for name in ("itemknn", "p2p", "hi-rt"):
        model = fitted(name)
        u = 4
        row = x[u].indices.tolist()
        if name != "itemknn":  # HI models see ratings: positives are rating >= threshold
            vals = data.to_csr()[u]
            row = vals.indices[vals.data >= model.threshold].tolist()
            neg = vals.indices[vals.data < model.threshold].tolist()
            q = Query(users=[u], history=[row], negatives=[neg])
        else:
            q = Query(users=[u], history=[row])
        np.testing.assert_allclose(model.score_query(q), model.score_all([u]), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- re-rankers
#: a setting of each re-ranker far from the relevance order
STRONG = {
    "mmr": {"lambda_": 0.0},
    "ia-mmr": {"lambda_": 50.0},
    "dpp": {"theta": 0.0},
    "pdpp": {"theta_low": 0.0, "theta_high": 0.0, "default_theta": 0.0},
    "rt-dpp": {"default_theta": 0.0},
    "ssd": {"gamma": 50.0},
    "category-cap": {"max_per_category": 1},
    "cf-da": {"phi": 50.0},
    "cf-dm": {"n_factor": 10.0},
    "hybrid": {"weights": (0.0, 1.0, 0.0)},
    "calibrated": {"lambda_": 0.99},
    "fair": {"p": 0.9, "adjust": False, "group": "category=topic0"},
    "random-k": {"seed": 1},
    "popular-k": {},
}

PROTOCOLS = {
    "ncf": lambda d: ncf_split(d, n_negatives=20, seed=0),
    "leave-last-one": lambda d: leave_last_one(d, validation=False),
    "temporal": lambda d: temporal_split(d, test_fraction=0.2),
    "random": lambda d: random_holdout(d, test_fraction=0.2, seed=0),
}


@pytest.mark.parametrize(
    "kind, name", [("model", n) for n in MODELS] + [("re-ranker", n) for n in RERANKERS]
)
def test_config_declared_once_and_round_trips(kind, name):
    params = FAST.get(name) if kind == "model" else STRONG.get(name)
    stage = create(kind, name, params, seed=0)
    check_declared_once(type(stage))
    check_config_round_trip(stage)
    check_config_round_trip(create(kind, name))  # the defaults too


@pytest.mark.parametrize("name", list(RERANKERS))
def test_reranker_fit_keeps_global_state(name, data):
    check_fit_keeps_global_state(lambda: create("re-ranker", name), data)


def test_every_reranker_has_a_strong_setting():
    assert set(STRONG) == set(RERANKERS)


@pytest.fixture(scope="module")
def splits(data):
    return {name: fn(data) for name, fn in PROTOCOLS.items()}


@pytest.fixture(scope="module")
def retrievers(splits):
    return {
        name: create("model", "ials", FAST["ials"], seed=0).fit(split.train)
        for name, split in splits.items()
    }


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("rerank", list(RERANKERS))
def test_reranker_in_pipeline_changes_metrics(rerank, protocol, splits, retrievers, tmp_path):
    split = splits[protocol]
    base = retrievers[protocol]
    kind = "sampled" if split.negatives is not None else "full"
    config = EvalConfig(ks=(5,), protocol=kind, n_bootstrap=0, diversity=())
    pipe = Pipeline(base, create("re-ranker", rerank, STRONG[rerank]), n_candidates=30)
    pipe.use_fitted(split.train)
    plain = evaluate(base, split, config, progress=False)
    ranked = evaluate(pipe, split, config, progress=False)
    assert ranked.recommendations.shape == plain.recommendations.shape
    assert not np.array_equal(ranked.recommendations, plain.recommendations)
    # the lists changed, so the per-user metric values change somewhere
    assert not np.allclose(ranked.per_user["ndcg@5"], plain.per_user["ndcg@5"])
    assert "auc" not in ranked.per_user  # a re-ranked list has no per-item scorer
    if kind == "sampled":
        assert "auc" in plain.per_user
    # save / load of the whole pipeline gives the same lists
    users = np.unique(split.test.users)[:6]
    loaded = divrec.load(pipe.save(tmp_path / "pipe"))
    assert np.array_equal(loaded.recommend(users, k=5)[0], pipe.recommend(users, k=5)[0])


@pytest.mark.parametrize("rerank", ["mmr", "ia-mmr", "dpp", "pdpp", "rt-dpp", "ssd", "cf-da"])
def test_diversity_knob_zero_is_the_relevance_order(rerank, splits, retrievers):
    split, base = splits["random"], retrievers["random"]
    pipe = Pipeline(base, create("re-ranker", rerank), n_candidates=30).use_fitted(split.train)
    users = np.unique(split.test.users)[:8]
    zero = pipe.recommend(Query(users=users, diversity=0.0), k=5)[0]
    assert np.array_equal(zero, base.recommend(users, k=5)[0])
    strong = pipe.recommend(Query(users=users, diversity=1.0), k=5)[0]
    assert not np.array_equal(strong, zero)


def test_knobless_reranker_rejects_the_knob(splits, retrievers):
    split, base = splits["random"], retrievers["random"]
    pipe = Pipeline(base, create("re-ranker", "category-cap"), 30).use_fitted(split.train)
    with pytest.raises(ValueError, match="no diversity knob"):
        pipe.recommend(Query(users=[0], diversity=0.5), k=5)


def test_unknown_query_extra_is_an_error(splits, retrievers):
    split, base = splits["random"], retrievers["random"]
    pipe = Pipeline(base, create("re-ranker", "dpp"), 30).use_fitted(split.train)
    with pytest.raises(ValueError, match="does not take Query.extras"):
        pipe.recommend(Query(users=[0], extras={"theta": np.array([0.3])}), k=5)
    pdpp = Pipeline(base, create("re-ranker", "pdpp"), 30).use_fitted(split.train)
    a = pdpp.recommend(Query(users=[0], extras={"theta": np.array([0.0])}), k=5)[0]
    b = pdpp.recommend(Query(users=[0], extras={"theta": np.array([1.0])}), k=5)[0]
    assert not np.array_equal(a, b)  # per-request θ reaches the re-ranker


def test_pipeline_with_a_ranking_stage(splits):
    """retriever → ranker: the ranker re-scores the retriever's candidates; the result is the
    ranker's order restricted to the retriever's top N (brute force)."""
    split = splits["random"]
    retriever = create("model", "popularity").fit(split.train)
    ranker = create("model", "itemknn").fit(split.train)
    pipe = Pipeline(retriever, None, n_candidates=15, ranker=ranker).use_fitted(split.train)
    users = np.arange(10)
    got = pipe.recommend(users, k=5)[0]
    cand = retriever.recommend(users, k=15)[0]
    for row, u, c in zip(got, users, cand, strict=True):
        c = c[c >= 0]
        s = ranker.score([u], c[None, :])[0]
        order = sorted(range(c.size), key=lambda j: (-float(s[j]), j))[:5]
        assert row.tolist() == [int(c[j]) for j in order]
