"""The service over real HTTP: `divrec train` + `divrec serve` on 127.0.0.1 (a free port).

One server process (started by the fixture, stopped by PID) answers every test of the
module; the model is a small synthetic iALS → DPP pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest

from divrec.metrics.diversity import ilad
from divrec.serve.model_dir import ModelBundle
from serve_util import API_KEY, PY, Server, Zygote, env, shared_model

KEY = {"X-API-Key": API_KEY}
#: one client: a new httpx client per call costs ~0.1 s (TLS context set-up)
HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return shared_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "events.sqlite"
    srv = Server(model, db)
    srv.db = db
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bundle(model):
    return ModelBundle.load(model)


def n_events(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def rec(server, user, **params):
    r = HTTP.get(f"{server.url}/recommend/{user}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def ids(answer):
    return [it["item_id"] for it in answer["items"]]


def post_events(server, events, headers=KEY):
    return HTTP.post(f"{server.url}/feedback", json={"events": events}, headers=headers, timeout=30)


def test_train_writes_a_manifest_with_fingerprint_and_versions(model, bundle):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["format"] == "divrec-model-dir/1"
    assert len(manifest["data"]["fingerprint"]) == 64
    assert {"divrec", "numpy", "torch", "python"} <= set(manifest["versions"])
    assert manifest["methods"] == ["dpp", "mmr", "ssd"]
    assert bundle.n_items == manifest["data"]["n_items"] == 300
    # a tampered file is refused on load
    (model / "users.json").write_text((model / "users.json").read_text())  # unchanged: fine
    ModelBundle.load(model)


def test_train_bad_config_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"data": {"dataset": "synthetic"}, "retriever": {"nam": "ials"}}))
    res = subprocess.run(
        [PY, "-m", "divrec.cli.main", "train", str(cfg), "--out", str(tmp_path / "m")],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "retriever.nam" in res.stderr
    assert not (tmp_path / "m").exists()


def test_round_trip(server, bundle):
    a = rec(server, "7", n=10, diversity=0.3, method="dpp")
    assert a["known_user"] and len(a["items"]) == 10
    got = ids(a)
    assert len(set(got)) == 10 and all(i in bundle.item_index for i in got)
    # training items are never recommended again
    seen = set(bundle.pipeline.user_items_[bundle.user_index["7"]].indices.tolist())
    assert not seen & {bundle.item_index[i] for i in got}
    # the reported ILAD is the list's own ILAD in the reference space
    idx = np.array([[bundle.item_index[i] for i in got]])
    assert a["ilad"] == pytest.approx(float(ilad(idx, bundle.reference)[0]), abs=1e-9)
    cats = {c for it in a["items"] for c in it["categories"]}
    assert a["category_coverage"] == pytest.approx(len(cats) / len(bundle.category_names))
    r = post_events(
        server, [{"event_id": "rt-1", "user_id": "7", "item_id": got[0], "type": "click"}]
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    hist = HTTP.get(f"{server.url}/users/7/history", headers=KEY, timeout=10).json()
    assert [e["event_id"] for e in hist["events"]] == ["rt-1"]


def test_a_like_changes_the_next_list(server):
    before = ids(rec(server, "11", n=10, diversity=0.0, method="none"))
    r = post_events(
        server, [{"event_id": "like-11", "user_id": "11", "item_id": before[3], "type": "like"}]
    )
    assert r.status_code == 200
    after = ids(rec(server, "11", n=10, diversity=0.0, method="none"))
    assert before[3] not in after  # consumed
    # and not only removed: the fold-in of the new history re-orders the rest
    assert after[:9] != [i for i in before if i != before[3]]


def test_new_user_is_created_by_feedback_and_gets_personal_lists(server):
    cold = ids(rec(server, "newbie", n=10, diversity=0.0, method="none"))
    r = post_events(
        server, [{"event_id": "nb-1", "user_id": "newbie", "item_id": cold[0], "type": "like"}]
    )
    assert r.status_code == 200
    warm = rec(server, "newbie", n=10, diversity=0.0, method="none")
    assert not warm["known_user"] and cold[0] not in ids(warm) and ids(warm) != cold[1:]


def test_diversity_raises_ilad_monotonically_on_average(server):
    users = [str(u) for u in range(20, 40)]
    for method in ("dpp", "mmr", "ssd"):
        means = []
        for d in (0.0, 0.25, 0.5, 0.75, 1.0):
            means.append(
                np.mean([rec(server, u, diversity=d, method=method)["ilad"] for u in users])
            )
        assert all(b >= a for a, b in zip(means, means[1:], strict=False)), (method, means)
        assert means[-1] > means[0] + 0.05
    # diversity 0 is the relevance order of the candidates
    assert ids(rec(server, "21", diversity=0.0, method="dpp")) == ids(
        rec(server, "21", method="none")
    )


def test_explore_samples_and_seed_reproduces(server):
    a = ids(rec(server, "30", explore=1.0, seed=1))
    b = ids(rec(server, "30", explore=1.0, seed=1))
    c = [ids(rec(server, "30", explore=1.0)) for _ in range(5)]
    assert a == b
    assert len({tuple(x) for x in c}) > 1
    assert ids(rec(server, "30", explore=0.0)) == ids(rec(server, "30"))


def test_anonymous_history_post(server, bundle):
    hist = [bundle.items[i]["id"] for i in (1, 2, 3)]
    r = HTTP.post(f"{server.url}/recommend", json={"history": hist, "n": 5, "diversity": 0.2})
    assert r.status_code == 200, r.text
    got = ids(r.json())
    assert len(got) == 5 and not set(got) & set(hist)


def test_similar_and_potential_users_match_brute_force(server, bundle):
    item = bundle.items[5]["id"]
    got = HTTP.get(f"{server.url}/similar/{item}", params={"n": 5}).json()["items"]
    v = bundle.rerankers["dpp"].item_vectors_.astype(np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v[5]
    sims[5] = -np.inf
    want = [bundle.items[j]["id"] for j in np.argsort(-sims, kind="stable")[:5]]
    assert [g["item_id"] for g in got] == want
    users = HTTP.get(f"{server.url}/potential-users/{item}", params={"n": 4}).json()["users"]
    ret = bundle.pipeline.retriever
    s = ret.user_factors_.astype(np.float64) @ ret.item_factors_[5].astype(np.float64)
    s[bundle.pipeline.user_items_[:, 5].nonzero()[0]] = -np.inf
    want_u = [bundle.user_ids[u] for u in np.argsort(-s, kind="stable")[:4]]
    assert [u["user_id"] for u in users] == want_u


def test_idempotent_event_id(server):
    ev = {"event_id": "dup-1", "user_id": "40", "item_id": "3", "type": "like"}
    first = post_events(server, [ev]).json()
    second = post_events(server, [ev, ev]).json()
    assert first["accepted"] == 1 and second == {
        "accepted": 0,
        "duplicates": 2,
        "results": [{"event_id": "dup-1", "status": "duplicate"}] * 2,
    }
    conn = sqlite3.connect(server.db)
    assert conn.execute("SELECT COUNT(*) FROM events WHERE event_id = 'dup-1'").fetchone()[0] == 1
    conn.close()


BAD = [
    # (method, path, body bytes or json, headers, status, text in error)
    ("post", "/feedback", b'{"events": [', KEY, 400, "malformed JSON"),
    (
        "post",
        "/feedback",
        {
            "events": [
                {
                    "event_id": "b1",
                    "user_id": "1",
                    "item_id": "3",
                    "type": "rating",
                    "value": "five",
                }
            ]
        },
        KEY,
        422,
        "events.0.value",
    ),
    (
        "post",
        "/feedback",
        {"events": [{"event_id": "b2", "user_id": "1", "item_id": "3", "type": "rating"}]},
        KEY,
        422,
        "events.0.value",
    ),
    (
        "post",
        "/feedback",
        {
            "events": [
                {"event_id": "b3", "user_id": "1", "item_id": "3", "type": "like"},
                {"event_id": "b4", "user_id": "1", "item_id": "no-such-item", "type": "like"},
            ]
        },
        KEY,
        422,
        "no-such-item",
    ),
    (
        "post",
        "/feedback",
        {
            "events": [
                {"event_id": f"big{i}", "user_id": "1", "item_id": "3", "type": "like"}
                for i in range(1001)
            ]
        },
        KEY,
        413,
        "at most 1000",
    ),
    ("post", "/feedback", b"[" + b" " * (1 << 20) + b"]", KEY, 413, "larger than"),
    (
        "post",
        "/feedback",
        {"events": [{"event_id": "b5", "user_id": "1", "item_id": "3", "type": "like"}]},
        {},
        401,
        "missing API key",
    ),
    (
        "post",
        "/feedback",
        {"events": [{"event_id": "b6", "user_id": "1", "item_id": "3", "type": "like"}]},
        {"X-API-Key": "wrong"},
        403,
        "invalid API key",
    ),
    (
        "post",
        "/feedback",
        {
            "events": [
                {
                    "event_id": "b7",
                    "user_id": "1'; DROP TABLE events; --",
                    "item_id": "3",
                    "type": "like",
                }
            ]
        },
        KEY,
        422,
        "events.0.user_id",
    ),
    (
        "post",
        "/feedback",
        {"events": [{"event_id": "b8", "user_id": "1", "item_id": "3 OR 1=1", "type": "like"}]},
        KEY,
        422,
        "events.0.item_id",
    ),
    (
        "post",
        "/feedback",
        {
            "events": [
                {"event_id": "b9", "user_id": "1", "item_id": "3", "type": "like", "extra": 1}
            ]
        },
        KEY,
        422,
        "events.0.extra",
    ),
    (
        "post",
        "/feedback",
        {
            "events": [
                {
                    "event_id": "b10",
                    "user_id": "1",
                    "item_id": "3",
                    "type": "like",
                    "timestamp": 4e9,
                }
            ]
        },
        KEY,
        422,
        "events.0.timestamp",
    ),
    ("post", "/admin/reload", {}, {}, 401, "missing API key"),
    ("get", "/recommend/1'%20OR%20'1'='1", None, {}, 422, "user_id"),
    ("get", "/recommend/1?n=0", None, {}, 422, "'n'"),
    ("get", "/recommend/1?n=ten", None, {}, 422, "'n'"),
    ("get", "/recommend/1?diversity=1.5", None, {}, 422, "diversity"),
    ("get", "/recommend/1?method=drop", None, {}, 422, "method"),
    ("get", "/recommend/1?explore=-1", None, {}, 422, "explore"),
    ("get", "/similar/no-such-item", None, {}, 404, "unknown item"),
    ("get", "/similar/x;DELETE", None, {}, 422, "item_id"),
    ("post", "/recommend", {"history": ["nope"]}, {}, 422, "history"),
]


@pytest.mark.parametrize("method,path,body,headers,status,text", BAD)
def test_bad_input_is_a_one_line_4xx_and_writes_nothing(
    server, method, path, body, headers, status, text
):
    before = n_events(server.db)
    kw = {"headers": dict(headers), "timeout": 30}
    if isinstance(body, bytes):
        kw["content"] = body
        kw["headers"]["content-type"] = "application/json"
    elif body is not None:
        kw["json"] = body
    r = getattr(HTTP, method)(server.url + path, **kw)
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert text in msg and "\n" not in msg and "Traceback" not in r.text
    assert n_events(server.db) == before
    conn = sqlite3.connect(server.db)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='events'").fetchone()
    conn.close()


def test_health_metrics_and_reload(server):
    assert HTTP.get(server.url + "/health/live").json() == {"status": "ok"}
    ready = HTTP.get(server.url + "/health/ready").json()
    assert ready["workers"] * ready["compute_threads"] <= ready["cores"]
    assert ready["thread_pools"] and all(p["threads"] == 1 for p in ready["thread_pools"])
    applied = ready["events_applied"]
    # requests keep being answered while the new model loads and is swapped in
    statuses, stop = [], threading.Event()

    def traffic():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.get(f"{server.url}/recommend/8").status_code)

    th = threading.Thread(target=traffic)
    th.start()
    try:
        deadline = time.time() + 30
        while not statuses and time.time() < deadline:
            time.sleep(0.01)
        r = HTTP.post(server.url + "/admin/reload", headers=KEY, timeout=60)
        n = len(statuses)
        while len(statuses) < n + 3 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        th.join()
    assert r.status_code == 200, r.text
    assert r.json()["events_applied"] == applied
    assert statuses and set(statuses) == {200}
    bad = HTTP.post(server.url + "/admin/reload", headers=KEY, json={"model_dir": "/nonexistent"})
    assert bad.status_code == 422 and "model_dir" in bad.json()["error"]
    for path in ("/no-such-route-1", "/no-such-route-2/x"):
        assert HTTP.get(server.url + path).status_code == 404
    text = HTTP.get(server.url + "/metrics").text
    assert 'divrec_requests_total{endpoint="/recommend",status="200"}' in text
    # unknown paths share one label value: a client cannot grow the metrics at will
    assert 'divrec_requests_total{endpoint="other",status="404"}' in text
    assert "no-such-route" not in text
    assert "divrec_events_total" in text
    page = HTTP.get(server.url + "/")
    assert page.status_code == 200 and "diversity" in page.text


def test_state_is_rebuilt_from_the_log_on_restart(model, tmp_path):
    db = tmp_path / "ev.sqlite"
    zygote = Zygote()
    try:
        pid, url = zygote.start(model, db)
        srv = type("S", (), {"url": url})()
        before = ids(rec(srv, "60", method="none"))
        events = [
            {"event_id": f"rs-{i}", "user_id": "60", "item_id": it, "type": "like"}
            for i, it in enumerate(before[:3])
        ]
        assert post_events(srv, events).status_code == 200
        mid = ids(rec(srv, "60", method="none"))
        os.kill(pid, signal.SIGTERM)
        pid, srv.url = zygote.start(model, db)
        after = ids(rec(srv, "60", method="none"))
        assert after == mid and not set(before[:3]) & set(after)
        os.kill(pid, signal.SIGTERM)
    finally:
        zygote.close()


def test_out_of_range_value_is_a_422_and_a_reused_event_id_a_409(server):
    """The door check and the event-id conflict reach HTTP: a finite but absurd rating is a
    422 naming the field (it used to be acknowledged and take over the user's list); an
    event id re-sent with other content is a 409 naming the id, and nothing of its batch is
    stored."""
    r = post_events(
        server,
        [{"event_id": "poison1", "user_id": "2", "item_id": "3", "type": "rating", "value": 1e30}],
    )
    assert r.status_code == 422 and "events.0.value" in r.json()["error"]
    first = {"event_id": "conf1", "user_id": "2", "item_id": "3", "type": "like"}
    assert post_events(server, [first]).status_code == 200
    other = {**first, "item_id": "4"}
    fresh = {"event_id": "conf2", "user_id": "2", "item_id": "5", "type": "like"}
    r = post_events(server, [fresh, other])
    assert r.status_code == 409 and "conf1" in r.json()["error"]
    again = post_events(server, [fresh]).json()
    assert again["results"][0]["status"] == "stored"  # conf2 was not stored by the 409 batch
    metrics = HTTP.get(f"{server.url}/metrics", headers=KEY, timeout=10).text
    assert "divrec_skipped_events" in metrics
