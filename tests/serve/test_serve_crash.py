"""Crash test: events sent concurrently while the server is SIGKILLed at random moments.

Each of `CYCLES` cycles starts a server process on the same SQLite log, re-sends the
batches that were not acknowledged in the previous cycle (a client's retry), sends new
batches from 4 threads, and kills the process with SIGKILL a random 0–0.3 s after the cycle's first
acknowledgement.
After every restart each acknowledged event_id must be in the log exactly once, and the
restarted service must have rebuilt its state from all of them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import httpx
import numpy as np

from serve_util import API_KEY, Zygote, shared_model

CYCLES = 20
THREADS = 4
BATCH = 10


def _stored(db) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT event_id, COUNT(*) FROM events GROUP BY event_id"))
    finally:
        conn.close()


class _Client:
    """The concurrent senders of one cycle (threads sharing the acknowledgement book)."""

    def __init__(self, book: dict, url: str, cycle: int, retry: list[list[dict]]) -> None:
        self.book, self.url, self.cycle, self.retry = book, url, cycle, retry
        self.stop = threading.Event()
        self.items = [str(i) for i in range(50)]
        self.clients = [httpx.Client() for _ in range(THREADS)]

    def send(self, batch: list[dict], client: httpx.Client) -> None:
        try:
            r = client.post(
                self.url + "/feedback",
                json={"events": batch},
                headers={"X-API-Key": API_KEY},
                timeout=10,
            )
        except httpx.HTTPError:
            r = None
        book = self.book
        with book["lock"]:
            if r is not None and r.status_code == 200:
                book["acked"].update(e["event_id"] for e in batch)
                book["stats"]["acked_batches"] += 1
                book["stats"]["duplicates_on_retry"] += r.json()["duplicates"]
            else:
                book["pending"].append(batch)
                book["stats"]["failed_batches"] += 1

    def worker(self, t: int) -> None:
        local = np.random.default_rng(self.cycle * 100 + t)
        with self.clients[t] as client:
            for batch in self.retry[t::THREADS]:
                self.send(batch, client)
            k = 0
            while not self.stop.is_set():
                batch = [
                    {
                        "event_id": f"c{self.cycle}-t{t}-{k}-{j}",
                        "user_id": str(local.integers(0, 200)),
                        "item_id": self.items[local.integers(0, len(self.items))],
                        "type": "like" if j % 2 else "impression",
                    }
                    for j in range(BATCH)
                ]
                k += 1
                self.send(batch, client)


def test_acknowledged_events_survive_sigkill(tmp_path_factory, tmp_path):
    model = shared_model(tmp_path_factory)
    db = tmp_path / "crash.sqlite"
    rng = np.random.default_rng(0)
    zygote = Zygote()
    stats = {"cycles": 0, "acked_batches": 0, "failed_batches": 0, "duplicates_on_retry": 0}
    # acked: event ids acknowledged; pending: batches without an acknowledgement (retried)
    book = {"lock": threading.Lock(), "acked": set(), "pending": [], "stats": stats}
    t0 = time.time()
    pid = None
    try:
        for cycle in range(CYCLES + 1):
            pid, url = zygote.start(model, db)
            stored = _stored(db)
            lost = [e for e in book["acked"] if stored.get(e) != 1]
            assert not lost, f"cycle {cycle}: acknowledged events lost: {lost[:5]}"
            with httpx.Client(timeout=10) as http:
                applied = http.get(url + "/health/ready").json()["events_applied"]
            assert applied == len(stored)  # the in-memory state was rebuilt from the log
            if cycle == CYCLES:
                break
            client = _Client(book, url, cycle, book["pending"])
            book["pending"] = []
            threads = [threading.Thread(target=client.worker, args=(t,)) for t in range(THREADS)]
            for th in threads:
                th.start()
            # kill during traffic: after this cycle's first acknowledgement (at most 10 s),
            # plus a random 0-0.3 s
            first = stats["acked_batches"]
            deadline = time.time() + 10
            while stats["acked_batches"] == first and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.0, 0.3)))
            os.kill(pid, signal.SIGKILL)
            client.stop.set()
            for th in threads:
                th.join(timeout=30)
            stats["cycles"] += 1
        stats["acked_events"] = len(book["acked"])
        stats["stored_events"] = len(_stored(db))
        stats["lost"] = 0
        stats["seconds"] = round(time.time() - t0, 1)
        print("crash test:", stats)
        assert stats["cycles"] == CYCLES and stats["acked_batches"] > CYCLES
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        zygote.close()
