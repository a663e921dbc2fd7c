"""Crash test of an A/B experiment: lists and clicks while the server is SIGKILLed.

The sibling of `test_serve_crash.py` for the experiment log. Each cycle starts a server (a
model directory with ``experiment.json``) on the same SQLite log; threads ask for lists of
random users and click one served item of each list; the process is killed with SIGKILL a
random 0–0.3 s after the cycle's first answered list. After every restart each answered
list must be in the ``impressions`` table exactly once with its arm and items, each
acknowledged click must be stored once, and the readout must attribute every acknowledged
click to the arm of the list that served the item.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections import Counter

import httpx
import numpy as np

from divrec.evaluation.ab import ab_log_from_rows
from divrec.serve.arms import Experiment
from divrec.serve.events import read_ab_log
from serve_util import API_KEY, Zygote, _exists, free_port, shared_model, wait_ready

CYCLES = 8
THREADS = 3
EXP = {
    "name": "crash",
    "salt": "k9",
    "control": "control",
    "arms": [
        {"name": "control", "share": 0.5, "method": "none"},
        {"name": "dpp", "share": 0.5, "method": "dpp", "diversity": 0.8},
    ],
}


class _Zygote(Zygote):
    """`Zygote` with a longer start-up wait (a loaded CI machine)."""

    def start(self, model, db) -> tuple[int, str]:
        port = free_port()
        msg = {"model": str(model), "db": str(db), "key": API_KEY, "port": port}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, lambda: _exists(pid), timeout=240)
        return pid, url


def _impressions(db) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT request_id, arm, user_id, items FROM impressions").fetchall()
    finally:
        conn.close()
    out: dict[str, tuple] = {}
    for rid, arm, user, items in rows:
        assert rid not in out, f"impression {rid} stored twice"
        out[rid] = (arm, user, json.loads(items))
    return out


def _clicks(db) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id"))
    finally:
        conn.close()


def _worker(book, url, cycle, t, stop) -> None:
    rng = np.random.default_rng(cycle * 100 + t)
    with httpx.Client(timeout=10) as client:
        k = 0
        while not stop.is_set():
            user = str(rng.integers(0, 200))
            try:
                r = client.get(f"{url}/recommend/{user}?n=5")
            except httpx.HTTPError:
                return
            if r.status_code != 200:
                return
            body = r.json()
            items = [it["item_id"] for it in body["items"]]
            with book["lock"]:
                book["lists"][body["request_id"]] = (body["arm"], user, items)
            item = items[int(rng.integers(0, len(items)))]
            eid = f"c{cycle}-t{t}-{k}"
            k += 1
            ev = {"event_id": eid, "user_id": user, "item_id": item, "type": "click"}
            try:
                r = client.post(
                    f"{url}/feedback", json={"events": [ev]}, headers={"X-API-Key": API_KEY}
                )
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                with book["lock"]:
                    book["clicks"][eid] = (body["arm"], user, item)


def test_lists_and_clicks_with_arms_survive_sigkill(tmp_path_factory, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(shared_model(tmp_path_factory), model)
    (model / "experiment.json").write_text(json.dumps(EXP))
    db = tmp_path / "ab-crash.sqlite"
    exp = Experiment.from_dict(EXP)
    rng = np.random.default_rng(0)
    book = {"lock": threading.Lock(), "lists": {}, "clicks": {}}
    zygote = _Zygote()
    pid = None
    try:
        for cycle in range(CYCLES + 1):
            pid, url = zygote.start(model, db)
            stored = _impressions(db)
            lost = [r for r in book["lists"] if r not in stored]
            assert not lost, f"cycle {cycle}: answered lists lost: {lost[:5]}"
            assert all(stored[r] == v for r, v in book["lists"].items())
            assert all(exp.assign(u).name == a for a, u, _ in stored.values())
            clicks = _clicks(db)
            assert all(clicks.get(e) == 1 for e in book["clicks"]), "acknowledged click lost"
            if cycle == CYCLES:
                break
            stop = threading.Event()
            threads = [
                threading.Thread(target=_worker, args=(book, url, cycle, t, stop))
                for t in range(THREADS)
            ]
            n0 = len(book["lists"])
            for th in threads:
                th.start()
            deadline = time.time() + 10
            while len(book["lists"]) == n0 and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.0, 0.3)))
            os.kill(pid, signal.SIGKILL)
            stop.set()
            for th in threads:
                th.join(timeout=30)
        assert len(book["lists"]) > CYCLES and len(book["clicks"]) > CYCLES
        # every acknowledged click is attributed to the arm that served its item
        log = read_ab_log(db)
        items = json.loads((model / "items.json").read_text())
        index = {it["id"]: i for i, it in enumerate(items)}
        ab = ab_log_from_rows(log["experiment"], log["impressions"], log["events"], index)
        # (a click stored but killed before its acknowledgement counts too: it was sent
        # after its list was answered, so its list is in the log)
        stored = _clicks(db)
        assert ab.n_unattributed == 0 and ab.fb_imp.size == len(stored) >= len(book["clicks"])
        got = Counter(ab.arms[a] for a in ab.imp_arm[ab.fb_imp])
        assert got >= Counter(a for a, _, _ in book["clicks"].values())
        print("ab crash test:", len(book["lists"]), "lists,", len(book["clicks"]), "clicks")
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        zygote.close()
