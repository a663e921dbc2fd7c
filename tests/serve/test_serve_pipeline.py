"""The service runs the `Pipeline` its config declares: answers equal `Pipeline` lists.

A model directory is trained in-process from a `divrec train` config; the reference
pipelines are built independently from the `PipelineSpec` the manifest stores (each
`method=` is the spec with that re-ranker, fitted here by `Pipeline.use_fitted` on the
regenerated training data) around the retriever and ranker read back from
``pipeline.npz``. For known users, fresh anonymous histories, users with feedback
(history, negatives, exclusions), written-back items, the cold start, several knob values,
every method with and without a re-ranker, and batches, the service core's lists (and
scores) must equal `Pipeline(query, None, k)` / `Pipeline.recommend` on the same `Query`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import divrec
from divrec.data.query import Query
from divrec.data.synthetic import SyntheticConfig, make_synthetic
from divrec.pipeline import Pipeline, PipelineSpec
from divrec.serve.config import parse_config
from divrec.serve.events import Event
from divrec.serve.model_dir import (
    ColdStartPopularity,
    ModelBundle,
    data_fingerprint,
    train_model_dir,
)
from divrec.serve.service import RecRequest, ServeSettings, Service, gumbel_top_k

SYNTHETIC = {"n_users": 120, "n_items": 200, "n_topics": 6, "interactions_per_user": 20.0}
CONFIGS = {
    # iALS → DPP (θ set in the config): methods dpp (configured), mmr, ssd and none
    "rerank": {
        "seed": 3,
        "data": {"dataset": "synthetic", "synthetic": SYNTHETIC},
        "retriever": {"name": "ials", "params": {"factors": 8, "iterations": 3}},
        "reranker": {"name": "dpp", "params": {"theta": 0.6}},
        "pipeline": {"n_candidates": 40},
    },
    # item-kNN candidates → iALS ranker, no re-ranker in the config ("none" is the pipeline)
    "ranker": {
        "seed": 1,
        "data": {"dataset": "synthetic", "synthetic": SYNTHETIC},
        "retriever": {"name": "itemknn", "params": {"neighbors": 30}},
        "ranker": {"name": "ials", "params": {"factors": 8, "iterations": 3}},
        "pipeline": {"n_candidates": 30},
    },
}
KNOBS = (0.0, 0.35, 1.0)


class Model:
    """A trained model directory, its service and the independent reference pipelines."""

    def __init__(self, raw: dict, tmp) -> None:
        config = parse_config(raw)
        self.manifest = train_model_dir(config, tmp / "model")
        self.bundle = ModelBundle.load(tmp / "model")
        self.spec = PipelineSpec.from_dict(self.manifest["pipeline"])
        assert self.spec == config.pipeline.resolved(config.seed)
        syn = SyntheticConfig(**{**SYNTHETIC, "seed": config.seed})
        self.data = make_synthetic(syn).interactions
        assert data_fingerprint(self.data) == self.manifest["data"]["fingerprint"]
        fitted = divrec.load(tmp / "model" / "pipeline.npz")  # not the service's objects
        self.user_items = fitted.user_items_
        self.refs: dict[str, Pipeline] = {}
        self.cold: dict[str, Pipeline] = {}
        counts = np.bincount(self.data.items, minlength=self.data.n_items)
        vectors = fitted.retriever.item_vectors() if self.spec.ranker is None else None
        for method in self.manifest["methods"] + ["none"]:
            if method == "none":
                spec = self.spec.with_stage("reranker", None)
            elif self.spec.reranker is not None and self.spec.reranker.name == method:
                spec = self.spec
            else:
                spec = self.spec.with_stage("reranker", method)
            built = spec.build(config.seed)
            for role in ("retriever", "ranker"):
                stage = getattr(built, role)
                assert (stage is None) == (getattr(fitted, role) is None)
                if stage is not None:
                    assert type(stage) is type(getattr(fitted, role))
                    assert stage.get_params() == getattr(fitted, role).get_params()
            self.refs[method] = Pipeline(
                fitted.retriever, built.reranker, spec.n_candidates, ranker=fitted.ranker
            ).use_fitted(self.data)
            # the cold start: popularity order, re-ranked in the retriever's space
            cold_rr = spec.build(config.seed).reranker
            self.cold[method] = Pipeline(
                ColdStartPopularity.from_counts(counts, self.user_items),
                cold_rr,
                spec.n_candidates,
                item_vectors=vectors,
            ).use_fitted(self.data)
        self.methods = self.manifest["methods"] + ["none"]

    def service(self, **settings) -> Service:
        return Service(self.bundle, ServeSettings(**settings))

    def uid(self, u: int) -> str:
        return self.bundle.user_ids[u]

    def train_row(self, u: int) -> list[int]:
        ui = self.user_items
        return ui.indices[ui.indptr[u] : ui.indptr[u + 1]].tolist()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request, tmp_path_factory):
    return Model(CONFIGS[request.param], tmp_path_factory.mktemp(request.param))


def answer_lists(svc: Service, model: Model, requests: list[RecRequest]):
    out = []
    for res in svc.recommend(requests):
        ids = [model.bundle.item_index[it["item_id"]] for it in res["items"]]
        out.append((ids, [it["score"] for it in res["items"]]))
    return out


def ref_lists(pipe: Pipeline, query: Query, k: int):
    lists = pipe(query, None, k)
    out = []
    for ids, scores in zip(lists.ids, lists.scores, strict=True):
        keep = ids >= 0
        out.append((ids[keep].tolist(), scores[keep].tolist()))
    return out


def test_known_users_every_method_and_knob(model):
    users = [0, 5, 17, 42]
    for method in model.methods:
        for d in KNOBS:
            svc = model.service()
            reqs = [RecRequest(model.uid(u), 10, d, method) for u in users]
            got = answer_lists(svc, model, reqs)
            q = Query(users=np.array(users), diversity=np.full(len(users), d))
            assert got == ref_lists(model.refs[method], q, 10), (method, d)
            ids, _ = model.refs[method].recommend(q, 10)  # the Recommender entry point
            assert [g[0] for g in got] == [row[row >= 0].tolist() for row in ids]


def test_list_length_and_auto_diversity(model):
    svc = model.service()
    for n in (1, 7, model.spec.n_candidates):
        (got,) = answer_lists(svc, model, [RecRequest(model.uid(3), n, 0.5, None)])
        q = Query(users=np.array([3]), diversity=np.array([0.5]))
        assert [got] == ref_lists(model.refs[svc.bundle.default_method], q, n)
    res = svc.recommend([RecRequest(model.uid(9), 10, "auto", "dpp")])[0]
    q = Query(users=np.array([9]), diversity=np.array([res["diversity"]]))
    assert res["diversity"] == pytest.approx(1.0 - svc.theta(model.uid(9)))
    assert answer_lists(svc, model, [RecRequest(model.uid(9), 10, "auto", "dpp")]) == (
        ref_lists(model.refs["dpp"], q, 10)
    )


def test_fresh_anonymous_history(model):
    histories = [(1, 2, 3), (50, 7), (199,)]
    for method in model.methods:
        for d in KNOBS:
            svc = model.service()
            reqs = [RecRequest(None, 8, d, method, history=h) for h in histories]
            got = answer_lists(svc, model, reqs)
            q = Query(
                users=np.full(len(histories), -1),
                history=[list(h) for h in histories],
                diversity=np.full(len(histories), d),
            )
            want = ref_lists(model.refs[method], q, 8)
            if not model.refs[method].supports_history:  # the cold start, history excluded
                want = ref_lists(model.cold[method], q, 8)
            assert got == want, (method, d)
            for (ids, _), h in zip(got, histories, strict=True):
                assert not set(ids) & set(h)


def test_feedback_history_negatives_and_exclusions(model):
    svc = model.service()
    u = 11
    first = answer_lists(svc, model, [RecRequest(model.uid(u), 10, 0.0, "none")])[0][0]
    liked, rated, disliked, clicked = first[0], first[1], first[2], first[3]
    item = [it["id"] for it in model.bundle.items]
    svc.apply(
        [
            Event("e1", model.uid(u), item[liked], "like", None, 1.0, 1),
            Event("e2", model.uid(u), item[rated], "rating", 5.0, 2.0, 2),
            Event("e3", model.uid(u), item[disliked], "dislike", None, 3.0, 3),
            Event("e4", model.uid(u), item[clicked], "click", None, 4.0, 4),
        ]
    )
    positives = [liked, rated, clicked]
    history = model.train_row(u) + positives
    consumed = sorted({liked, rated, disliked, clicked})
    for method in model.methods:
        for d in KNOBS:
            got = answer_lists(svc, model, [RecRequest(model.uid(u), 10, d, method)])
            if model.refs[method].supports_history:
                q = Query(
                    users=np.array([u]),
                    history=[history],
                    history_values=[[1.0] * len(model.train_row(u)) + [1.0, 5.0, 1.0]],
                    negatives=[[disliked]],
                    exclude=[consumed],
                    diversity=np.array([d]),
                )
            else:  # the training row, consumed items excluded
                q = Query(users=np.array([u]), exclude=[consumed], diversity=np.array([d]))
            assert got == ref_lists(model.refs[method], q, 10), (method, d)
            assert not set(got[0][0]) & set(consumed)


def test_written_back_items_are_query_exclusions(model):
    svc = model.service(writeback_seconds=600.0)
    u, method = 20, model.methods[0]
    first = answer_lists(svc, model, [RecRequest(model.uid(u), 6, 0.35, method)])[0][0]
    second = answer_lists(svc, model, [RecRequest(model.uid(u), 6, 0.35, method)])
    q = Query(users=np.array([u]), exclude=[sorted(first)], diversity=np.array([0.35]))
    assert second == ref_lists(model.refs[method], q, 6)


def test_cold_start_and_exploration(model):
    svc = model.service()
    # an unknown user: the training popularity order, re-ranked
    counts = np.bincount(model.data.items, minlength=model.data.n_items)
    popular = np.argsort(-counts, kind="stable")[:10].tolist()
    assert answer_lists(svc, model, [RecRequest("nobody", 10, 0.0, "none")])[0][0] == popular
    for method in model.methods:
        got = answer_lists(svc, model, [RecRequest("nobody", 10, 0.35, method)])
        q = Query(users=np.array([-1]), history=[[]], diversity=np.array([0.35]))
        assert got == ref_lists(model.cold[method], q, 10), method
    # explore: a Gumbel-top-k sample of the pipeline's top-`pool` list
    n, temp, seed = 5, 2.0, 7
    (res,) = svc.recommend([RecRequest(model.uid(2), n, 0.35, "none", explore=temp, seed=seed)])
    pool = min(model.spec.n_candidates, max(3 * n, n + 10))
    ((ids, _),) = ref_lists(
        model.refs["none"], Query(users=np.array([2]), diversity=np.array([0.35])), pool
    )
    pick = gumbel_top_k(len(ids), n, temp, np.random.default_rng(seed))
    assert [model.bundle.item_index[it["item_id"]] for it in res["items"]] == [ids[p] for p in pick]


def test_a_mixed_batch_equals_the_pipelines(model):
    svc = model.service()
    reqs = [
        RecRequest(model.uid(1), 10, 0.3, "dpp"),
        RecRequest(model.uid(2), 10, 0.9, "mmr"),
        RecRequest(None, 10, 0.5, "ssd", history=(4, 5, 6)),
        RecRequest("brand-new", 10, 0.2, "none"),
        RecRequest(model.uid(3), 10, 0.0, "none"),
    ]
    got = answer_lists(svc, model, reqs)
    for (ids, scores), r in zip(got, reqs, strict=True):
        d = np.array([r.diversity])
        if r.user_id is None:
            q = Query(users=np.array([-1]), history=[list(r.history)], diversity=d)
            pipe = model.refs[r.method]
            if not pipe.supports_history:
                pipe = model.cold[r.method]
        elif r.user_id in model.bundle.user_index:
            q = Query(users=np.array([model.bundle.user_index[r.user_id]]), diversity=d)
            pipe = model.refs[r.method]
        else:
            q = Query(users=np.array([-1]), history=[[]], diversity=d)
            pipe = model.cold[r.method]
        assert [(ids, scores)] == ref_lists(pipe, q, 10), r


def test_manifest_stores_the_resolved_spec(model):
    raw = json.loads((model.bundle.path / "manifest.json").read_text())
    spec = PipelineSpec.from_dict(raw["pipeline"])
    assert spec == model.spec and spec.to_dict() == raw["pipeline"]
    assert set(model.bundle.pipelines) == set(model.methods)
    default = model.bundle.default_method
    configured = default if model.spec.reranker is not None else "none"
    assert model.bundle.pipelines[configured] is model.bundle.pipeline
    shared = {id(p.retriever) for p in model.bundle.pipelines.values()}
    assert shared == {id(model.bundle.pipeline.retriever)}
