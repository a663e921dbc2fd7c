"""Hardening of `divrec serve` / `divrec train` (the HTTP surface, the model directory, the
commands): each test pins one item of the "Hardening" issue and fails on the code before it.

Servers are real `divrec serve` processes on 127.0.0.1 (a free port), stopped by PID; every
socket and subprocess has a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from divrec.serve.events import read_user_history
from serve_util import API_KEY, CONFIG, PY, REPO, Server, env, free_port, shared_model

KEY = {"X-API-Key": API_KEY}
HTTP = httpx.Client(timeout=30)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return shared_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    db = tmp_path_factory.mktemp("hdb") / "events.sqlite"
    srv = Server(model, db, "--body-timeout", "1", "--header-timeout", "1")
    srv.db = db
    yield srv
    srv.stop()


def serve_once(model, db, *extra, environ=None, timeout=120):
    """`divrec serve` expected to exit by itself (a refused start)."""
    cmd = [PY, "-m", "divrec.cli.main", "serve", "--model-dir", str(model), "--db", str(db)]
    cmd += ["--port", str(free_port()), *extra]
    return subprocess.run(
        cmd, env=environ or env(), capture_output=True, text=True, timeout=timeout
    )


def train_cli(cfg: Path, out: Path, *extra, timeout=300):
    cmd = [PY, "-m", "divrec.cli.main", "train", str(cfg), "--out", str(out), *extra]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)


def one_line_error(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def rehash(model: Path) -> None:
    """Rewrites the manifest's file hashes after a test edited a file on purpose."""
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"] = {
        n: hashlib.sha256((model / n).read_bytes()).hexdigest() for n in manifest["files"]
    }
    (model / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------ 4: user history
def test_history_needs_the_key_by_default_and_limits_in_sql(server, tmp_path):
    r = HTTP.get(f"{server.url}/users/7/history")
    assert r.status_code == 401 and "API key" in r.json()["error"]
    events = [
        {"event_id": f"h4-{i}", "user_id": "h4", "item_id": str(i), "type": "click"}
        for i in range(5)
    ]
    assert HTTP.post(f"{server.url}/feedback", json={"events": events}, headers=KEY).is_success
    r = HTTP.get(f"{server.url}/users/h4/history", params={"limit": 2}, headers=KEY)
    assert r.status_code == 200
    assert [e["event_id"] for e in r.json()["events"]] == ["h4-3", "h4-4"]
    # the limit is in the SQL: 100k events of one user, the last 10 read in milliseconds
    db = tmp_path / "big.sqlite"
    from divrec.serve.events import EventLog

    EventLog(db).close()
    conn = sqlite3.connect(db)
    conn.executemany(
        "INSERT INTO events (event_id, user_id, item_id, type, value, timestamp, received) "
        "VALUES (?, 'u', '1', 'click', NULL, 1.0, 1.0)",
        ((f"e{i}",) for i in range(100_000)),
    )
    conn.commit()
    conn.close()
    read_user_history(db, "u", 10)
    t0 = time.perf_counter()
    got = read_user_history(db, "u", 10)
    assert time.perf_counter() - t0 < 0.05
    assert [e.event_id for e in got] == [f"e{i}" for i in range(99_990, 100_000)]


def test_open_user_data_flag_opens_history(model, tmp_path):
    srv = Server(model, tmp_path / "ev.sqlite", "--open-user-data")
    try:
        assert HTTP.get(f"{srv.url}/users/7/history").status_code == 200
    finally:
        srv.stop()


# ------------------------------------------------------------------ 6: one id rule
def test_train_refuses_ids_that_serve_rejects(tmp_path):
    rows = ["user,item,rating"] + [
        f"{u},{i},5" for u in ("bob smith", "ann", "joe") for i in ("a", "b", "c", "d")
    ]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[data]\ndataset = "r.csv"\ncolumns = {user = "user", item = "item", rating = "rating"}\n'
        '[retriever]\nname = "itemknn"\n[pipeline]\nn_candidates = 3\n'
    )
    res = train_cli(cfg, tmp_path / "m")
    line = one_line_error(res)
    assert "bob smith" in line and "id rule" in line
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ 8: reload vs the log
def test_reload_of_another_catalogue_is_refused(server, model, tmp_path):
    ev = {"event_id": "cat-1", "user_id": "cat", "item_id": "5", "type": "like"}
    assert HTTP.post(f"{server.url}/feedback", json={"events": [ev]}, headers=KEY).is_success
    other = tmp_path / "other"
    shutil.copytree(model, other)
    items = json.loads((other / "items.json").read_text())
    for it in items:
        it["title"] = "Other " + it["id"]
    (other / "items.json").write_text(json.dumps(items))
    rehash(other)
    r = HTTP.post(f"{server.url}/admin/reload", json={"model_dir": str(other)}, headers=KEY)
    assert r.status_code == 409, r.text
    assert "catalogue" in r.json()["error"] and "\n" not in r.json()["error"]
    # the same catalogue still reloads
    r = HTTP.post(f"{server.url}/admin/reload", json={"model_dir": str(model)}, headers=KEY)
    assert r.status_code == 200, r.text


def test_reload_onto_a_new_log_serves_another_catalogue(model, tmp_path):
    db = tmp_path / "ev.sqlite"
    srv = Server(model, db)
    try:
        ev = {"event_id": "nl-1", "user_id": "nl", "item_id": "5", "type": "like"}
        assert HTTP.post(f"{srv.url}/feedback", json={"events": [ev]}, headers=KEY).is_success
        other = tmp_path / "other"
        shutil.copytree(model, other)
        items = json.loads((other / "items.json").read_text())
        for it in items:
            it["title"] = "Other " + it["id"]
        (other / "items.json").write_text(json.dumps(items))
        rehash(other)
        url = f"{srv.url}/admin/reload"
        r = HTTP.post(url, json={"model_dir": str(other), "new_db": str(db)}, headers=KEY)
        assert r.status_code == 422 and "'new_db'" in r.json()["error"]
        new_db = tmp_path / "new.sqlite"
        r = HTTP.post(url, json={"model_dir": str(other), "new_db": str(new_db)}, headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["db"] == str(new_db) and r.json()["events_applied"] == 0
        assert HTTP.get(f"{srv.url}/users/nl/history", headers=KEY).status_code == 404
        ev["event_id"] = "nl-2"
        assert HTTP.post(f"{srv.url}/feedback", json={"events": [ev]}, headers=KEY).is_success
        conn = sqlite3.connect(new_db)
        assert conn.execute("SELECT event_id FROM events").fetchall() == [("nl-2",)]
        conn.close()
        # the old log is free again, the new one is locked
        assert "in use" in one_line_error(serve_once(model, new_db))
    finally:
        srv.stop()


def test_start_over_a_log_with_unknown_items_is_refused(model, tmp_path):
    db = tmp_path / "ev.sqlite"
    from divrec.serve.events import Event, EventLog

    log = EventLog(db)
    log.append([Event("x1", "u", "not-an-item", "like", None, 1.0)])
    log.close()
    line = one_line_error(serve_once(model, db))
    assert "not-an-item" in line and "--db" in line


# ------------------------------------------------------------------ 9: one server per log
def test_second_server_on_the_same_db_exits_2(server, model):
    line = one_line_error(serve_once(model, server.db))
    assert "in use" in line
    assert HTTP.get(f"{server.url}/health/live").status_code == 200


# ------------------------------------------------------------------ 10: nesting, manifests
def test_deeply_nested_json_is_400(server):
    body = b"[" * 100_000 + b"]" * 100_000
    for path in ("/recommend", "/feedback"):
        r = HTTP.post(
            server.url + path,
            content=body,
            headers={**KEY, "content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
        assert "malformed JSON" in r.json()["error"]


def test_reload_of_a_manifest_that_is_a_list_is_422(server, model, tmp_path):
    bad = tmp_path / "listmodel"
    shutil.copytree(model, bad)
    (bad / "manifest.json").write_text("[1, 2]")
    r = HTTP.post(f"{server.url}/admin/reload", json={"model_dir": str(bad)}, headers=KEY)
    assert r.status_code == 422 and "JSON object" in r.json()["error"]


# ------------------------------------------------------------------ 12: limits, timeouts
def test_anonymous_history_length_is_capped(server):
    r = HTTP.post(f"{server.url}/recommend", json={"history": ["1"] * 100_000})
    assert r.status_code == 413 and "'history'" in r.json()["error"]


def test_half_sent_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"history":'
        )
        t0 = time.time()
        data = s.recv(4096)
        assert time.time() - t0 < 8
    assert data.startswith(b"HTTP/1.1 408"), data[:200]


def test_half_header_connection_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /health/live HTTP/1.1\r\nHo")
        t0 = time.time()
        assert s.recv(4096) == b""  # closed by the server, not by our timeout
        assert time.time() - t0 < 8


# ------------------------------------------------------------------ 13: exposure
def test_ready_hides_paths_and_ids_without_the_key(server, model):
    anon = HTTP.get(f"{server.url}/health/ready").json()
    assert "model_dir" not in anon and "sample_users" not in anon
    assert str(model) not in json.dumps(anon)
    keyed = HTTP.get(f"{server.url}/health/ready", headers=KEY).json()
    assert keyed["model_dir"] and keyed["sample_users"]


def test_host_header_is_checked_and_page_has_security_headers(server):
    r = HTTP.get(f"{server.url}/health/live", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "Host" in r.json()["error"]
    page = HTTP.get(server.url + "/")
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'sha256-" in csp


def test_generated_key_is_not_printed(model, tmp_path):
    e = env()
    del e["DIVREC_API_KEY"]
    db = tmp_path / "ev.sqlite"
    port = free_port()
    cmd = [PY, "-m", "divrec.cli.main", "serve", "--model-dir", str(model), "--db", str(db)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=e, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "ev.sqlite.key").exists() and time.time() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)
        key_file = tmp_path / "ev.sqlite.key"
        key = key_file.read_text().strip()
        assert key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert key not in err and "written to" in err


def test_docs_put_no_key_in_urls():
    for doc in ("README.md", "docs/serve.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        assert not re.search(r"https?://\S*key=", text), doc


# ------------------------------------------------------------------ 14: named fields
def test_negative_seed_is_a_422_naming_seed(server):
    r = HTTP.get(f"{server.url}/recommend/7", params={"seed": -1, "explore": 1})
    assert r.status_code == 422 and "'seed'" in r.json()["error"]
    r = HTTP.post(f"{server.url}/recommend", json={"history": ["1"], "seed": -1})
    assert r.status_code == 422 and "'seed'" in r.json()["error"]


def test_n_candidates_above_the_items_is_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.replace("n_candidates = 100", "n_candidates = 100000"))
    line = one_line_error(train_cli(cfg, tmp_path / "m"))
    assert "pipeline.n_candidates" in line and not (tmp_path / "m").exists()


# ------------------------------------------------------------------ 15: damaged model dirs
def _damage(model: Path, tmp: Path, how: str) -> Path:
    bad = tmp / f"bad-{how}"
    shutil.copytree(model, bad)
    if how == "manifest-json":
        (bad / "manifest.json").write_text("{not json")
    elif how == "manifest-version":
        m = json.loads((bad / "manifest.json").read_text())
        m["format"] = "divrec-model-dir/99"
        (bad / "manifest.json").write_text(json.dumps(m))
    elif how == "pipeline-truncated":
        data = (bad / "pipeline.npz").read_bytes()
        (bad / "pipeline.npz").write_bytes(data[: len(data) // 2])
        rehash(bad)
    elif how == "reranker-missing":
        (bad / "rerank-mmr.npz").unlink()
    elif how == "items-truncated":
        data = (bad / "items.json").read_bytes()
        (bad / "items.json").write_bytes(data[: len(data) // 2])
        rehash(bad)
    return bad


@pytest.mark.parametrize(
    "how",
    [
        "manifest-json",
        "manifest-version",
        "pipeline-truncated",
        "reranker-missing",
        "items-truncated",
        "bad-db",
    ],
)
def test_damaged_model_or_db_is_one_line_exit_2_and_leaves_nothing(model, tmp_path, how):
    db = tmp_path / "ev.sqlite"
    target = model
    if how == "bad-db":
        db.write_bytes(b"this is not a sqlite database" * 100)
    else:
        target = _damage(model, tmp_path, how)
    before = sorted(p.name for p in tmp_path.iterdir())
    line = one_line_error(serve_once(target, db))
    assert ("--db" if how == "bad-db" else "--model-dir") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------------ 21: train writes safely
def test_train_validates_before_writing_and_replaces_atomically(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('name = "ials"', 'name = "no-such-model"'))
    one_line_error(train_cli(bad, tmp_path / "a" / "b" / "m"))
    assert not (tmp_path / "a").exists()
    missing = tmp_path / "missing.toml"
    missing.write_text(CONFIG.replace("[data]\n", '[data]\nitems = "nope.csv"\n'))
    t0 = time.time()
    line = one_line_error(train_cli(missing, tmp_path / "m"))
    assert "data.items" in line and time.time() - t0 < 60
    assert not (tmp_path / "m").exists()
    cfg = tmp_path / "ok.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out" / "m"
    assert train_cli(cfg, out).returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    res = train_cli(cfg, out, "--force")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max-body", "-1", "--max-body"),
        ("--max-batch", "0", "--max-batch"),
        ("--like-threshold", "nan", "--like-threshold"),
        ("--writeback", "-5", "--writeback"),
        ("--max-users", "0", "--max-users"),
        ("--user-ttl", "inf", "--user-ttl"),
        ("--tracker-clock", "wall", "--tracker-clock"),
    ],
)
def test_serve_refuses_nonsense_numbers_before_anything(tmp_path, option, value, message):
    """Numeric serve options are checked first: one line, exit 2, no database created."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}")
    db = tmp_path / "events.sqlite"
    proc = subprocess.run(
        [sys.executable, "-m", "divrec.cli.main", "serve", "--model-dir", str(model),
         "--db", str(db), option, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not db.exists()
