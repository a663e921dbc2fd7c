"""The service core without HTTP: config validation, the event log, the service state,
the exploration sampler and the list ILAD (against `divrec.metrics.ilad`)."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.metrics.diversity import ilad
from divrec.serve.config import ConfigError, parse_config
from divrec.serve.events import Event, EventLog
from divrec.serve.model_dir import ModelBundle
from divrec.serve.service import RecRequest, ServeSettings, Service, gumbel_top_k
from serve_util import shared_model

BASE = {"data": {"dataset": "synthetic"}, "retriever": {"name": "ials"}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return ModelBundle.load(shared_model(tmp_path_factory))


@pytest.mark.parametrize(
    "patch,key",
    [
        ({"extra": 1}, "'extra'"),
        ({"data": {"dataset": "synthetic", "colums": {}}}, "'data.colums'"),
        ({"data": {"dataset": "x.csv", "columns": {"usr": "u"}}}, "'data.columns.usr'"),
        ({"data": {"dataset": "synthetic", "min_rating": "4"}}, "'data.min_rating'"),
        ({"data": {}}, "'data.dataset'"),
        ({"retriever": {"params": {}}}, "'retriever.name'"),
        ({"retriever": {"name": "ials", "parms": {}}}, "'retriever.parms'"),
        ({"reranker": "dpp"}, "'reranker'"),
        ({"pipeline": {"n_candidates": 0}}, "'pipeline.n_candidates'"),
        ({"pipeline": {"n_candidates": 1.5}}, "'pipeline.n_candidates'"),
        ({"seed": True}, "'seed'"),
    ],
)
def test_bad_config_names_the_key(patch, key):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_config_accepts_the_documented_keys(tmp_path):
    cfg = parse_config(
        {
            "seed": 3,
            "data": {"dataset": "ratings.csv", "columns": {"user": "u", "item": "i"}},
            "retriever": {"name": "ials", "params": {"factors": 8}},
            "reranker": {"name": "mmr"},
            "pipeline": {"n_candidates": 50},
        },
        base=tmp_path,
    )
    assert cfg.dataset == str(tmp_path / "ratings.csv") and cfg.pipeline.n_candidates == 50
    assert cfg.pipeline.retriever.params == {"factors": 8} and cfg.seed == 3
    assert cfg.pipeline.reranker.name == "mmr" and cfg.pipeline.ranker is None


def test_event_log_is_idempotent_versioned_and_group_commits(tmp_path):
    seen: list[Event] = []
    log = EventLog(tmp_path / "ev.sqlite", on_commit=seen.extend)
    evs = [Event(f"e{i}", "u", "1", "like", None, 1.0 + i) for i in range(5)]
    futures = [log.submit([e]) for e in evs] + [log.submit(evs[:2])]
    flags = [f.result(timeout=30) for f in futures]
    assert flags[:5] == [[True]] * 5 and flags[5] == [False, False]
    assert [e.event_id for e in seen] == [f"e{i}" for i in range(5)]
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    stored = list(log.iter_events())
    assert [e.event_id for e in stored] == [f"e{i}" for i in range(5)]
    assert [e.event_id for e in log.iter_events(after=stored[2].seq)] == ["e3", "e4"]
    log.close()
    conn = sqlite3.connect(tmp_path / "ev.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        EventLog(tmp_path / "ev.sqlite")


def test_concurrent_writers_store_every_event_once(tmp_path):
    log = EventLog(tmp_path / "ev.sqlite")
    results = []

    def writer(t):
        for k in range(20):
            batch = [Event(f"t{t}-{k}-{j}", "u", "1", "click", None, 0.0) for j in range(5)]
            batch.append(Event(f"shared-{k}", "u", "1", "click", None, 0.0))
            results.append(log.append(batch))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert log.count() == 4 * 20 * 5 + 20
    assert sum(sum(r) for r in results) == log.count()  # each stored exactly once
    log.close()


def _ids(res):
    return [it["item_id"] for it in res["items"]]


def test_feedback_state_and_rebuild(bundle, tmp_path):
    svc = Service(bundle)
    base = svc.recommend([RecRequest("3", 10, 0.0, "none")])[0]
    liked, disliked = _ids(base)[0], _ids(base)[1]
    events = [
        Event("a", "3", liked, "like", None, time.time(), 1),
        Event("b", "3", disliked, "dislike", None, time.time(), 2),
        Event("c", "3", "no-such-item", "like", None, time.time(), 3),
    ]
    svc.apply(events)
    st_ = svc.users["3"]
    assert list(st_.positives) == [bundle.item_index[liked]]
    assert list(st_.negatives) == [bundle.item_index[disliked]]
    after = svc.recommend([RecRequest("3", 10, 0.0, "none")])[0]
    assert liked not in _ids(after) and disliked not in _ids(after)
    svc.apply(events)  # a replay of the same seqs changes nothing
    assert list(svc.users["3"].positives) == [bundle.item_index[liked]]
    # rebuild from a log gives the same answer
    log = EventLog(tmp_path / "ev.sqlite")
    log.append(
        [Event(e.event_id, e.user_id, e.item_id, e.type, e.value, e.timestamp) for e in events]
    )
    fresh = Service(bundle)
    assert fresh.rebuild(log) == 3
    assert _ids(fresh.recommend([RecRequest("3", 10, 0.0, "none")])[0]) == _ids(after)
    log.close()


def test_ratings_follow_the_like_threshold(bundle):
    svc = Service(bundle, ServeSettings(like_threshold=4.0))
    svc.apply(
        [
            Event("r1", "9", "1", "rating", 5.0, 1.0, 1),
            Event("r2", "9", "2", "rating", 2.0, 1.0, 2),
            Event("r3", "9", "4", "impression", None, 1.0, 3),
        ]
    )
    st_ = svc.users["9"]
    assert list(st_.positives) == [bundle.item_index["1"]] and list(st_.values) == [5.0]
    assert list(st_.negatives) == [bundle.item_index["2"]]
    assert set(st_.consumed) == {bundle.item_index["1"], bundle.item_index["2"]}  # not "4"


def test_writeback_excludes_served_items(bundle):
    svc = Service(bundle, ServeSettings(writeback_seconds=60.0))
    first = _ids(svc.recommend([RecRequest("5", 10, 0.0, "none")])[0])
    second = _ids(svc.recommend([RecRequest("5", 10, 0.0, "none")])[0])
    assert not set(first) & set(second)
    plain = Service(bundle)
    assert _ids(plain.recommend([RecRequest("5", 10, 0.0, "none")])[0]) == first


def test_auto_diversity_follows_the_propensity_tracker(bundle):
    svc = Service(bundle)
    res = svc.recommend([RecRequest("12", 10, "auto", "dpp")])[0]
    theta = svc.theta("12")
    assert res["theta"] == pytest.approx(theta) and res["diversity"] == pytest.approx(1 - theta)
    # likes enter the user's propensity window (WeChat Eq. 2–3) ...
    tracker, idx = svc._tracker, bundle.user_index["12"]
    now = time.time()  # the service clock; the tracker sees it in the training time frame
    before = tracker.n_positives(idx, svc.tracker_time(now))
    sims = svc.similar(bundle.item_index[_ids(res)[0]], 5)
    events = [
        Event(f"s{i}", "12", s["item_id"], "like", None, now, 100 + i) for i, s in enumerate(sims)
    ]
    svc.apply(events)
    assert tracker.n_positives(idx) == before + 5
    # ... and s_u is the mean pairwise cosine of the window's items (Eq. 2), by hand
    v = bundle.propensity.item_vectors_[[bundle.item_index[s["item_id"]] for s in sims]]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    if before == 0:
        gram = v @ v.T
        assert tracker.similarity(idx) == pytest.approx((gram.sum() - 5) / 20, rel=1e-5)
    res2 = svc.recommend([RecRequest("12", 10, "auto", "dpp")])[0]
    assert res2["theta"] == pytest.approx(tracker.theta(idx))
    assert res2["diversity"] == pytest.approx(1 - res2["theta"])
    # a number overrides θ_u
    assert svc.recommend([RecRequest("12", 10, 0.8, "dpp")])[0]["diversity"] == 0.8


def test_batch_answers_equal_single_answers(bundle):
    reqs = [
        RecRequest("1", 10, 0.3, "dpp"),
        RecRequest("2", 5, 0.9, "mmr"),
        RecRequest("3", 7, 0.0, "ssd"),
        RecRequest(None, 6, 0.5, "dpp", history=(1, 2, 3)),
        RecRequest("brand-new", 4, 0.5, "none"),
    ]
    together = Service(bundle).recommend(reqs)
    alone = [Service(bundle).recommend([r])[0] for r in reqs]
    assert [_ids(a) for a in together] == [_ids(a) for a in alone]
    assert [len(a["items"]) for a in together] == [10, 5, 7, 6, 4]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.floats(0.01, 50), st.integers(0, 2**32 - 1))
def test_gumbel_top_k_is_a_sample_without_replacement(m, n, temperature, seed):
    out = gumbel_top_k(m, n, temperature, np.random.default_rng(seed))
    assert out.shape == (min(m, n),) and len(set(out.tolist())) == out.size
    assert out.size == 0 or (out.min() >= 0 and out.max() < m)


def test_gumbel_top_k_temperature_limits():
    rng = np.random.default_rng(0)
    assert gumbel_top_k(20, 10, 1e-9, rng).tolist() == list(range(10))
    # T = 1: P(first = j) ∝ 1/(j+1) (Plackett–Luce), checked by frequency
    m, draws = 5, 20000
    firsts = np.bincount([gumbel_top_k(m, 1, 1.0, rng)[0] for _ in range(draws)], minlength=m)
    p = 1.0 / np.arange(1, m + 1)
    np.testing.assert_allclose(firsts / draws, p / p.sum(), atol=0.015)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 299), min_size=0, max_size=12, unique=True))
def test_list_ilad_matches_the_metric(bundle, items):
    svc = Service(bundle)
    lst = np.array(items, dtype=np.int64)
    got = svc.list_ilad(lst)
    if lst.size < 2:
        assert got is None
    else:
        assert got == pytest.approx(float(ilad(lst[None, :], bundle.reference)[0]), abs=1e-9)
