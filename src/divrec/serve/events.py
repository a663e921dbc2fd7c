"""The durable event log: SQLite in WAL mode with group commit.

An event is acknowledged only after the transaction holding it has committed with
``synchronous=FULL`` (the WAL is fsynced at every commit), so an acknowledged event survives
a process kill or power loss. Concurrent writers are served by one writer thread that
commits every batch waiting in its queue in one transaction (group commit): the fsync cost
is shared by all of them.

Idempotency: ``event_id`` is UNIQUE and events are inserted with ``INSERT OR IGNORE``; a
re-sent event is reported as a duplicate and changes nothing. Only parameterized SQL is used.

Schema (``PRAGMA user_version`` = `SCHEMA_VERSION`)::

    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, user_id TEXT,
           item_id TEXT, type TEXT, value REAL, timestamp REAL, received REAL)
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EVENT_TYPES", "SCHEMA_VERSION", "Event", "EventLog"]

SCHEMA_VERSION = 1
EVENT_TYPES = ("impression", "click", "like", "dislike", "rating")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('impression', 'click', 'like', 'dislike', 'rating')),
    value REAL,
    timestamp REAL NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
"""


@dataclass(frozen=True)
class Event:
    """One feedback event (external ids)."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    timestamp: float
    seq: int = 0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class EventLog:
    """An append-only, idempotent event log with a group-commit writer thread.

    Args:
        path: the SQLite file (created with the schema when missing).
        on_commit: called in the writer thread with the newly stored events of each
            committed transaction, before any of them is acknowledged (the service applies
            them to its in-memory state there, so the next answer sees them).
        max_group: most batches committed in one transaction.
    """

    def __init__(
        self,
        path: str | Path,
        on_commit: Callable[[list[Event]], None] | None = None,
        max_group: int = 256,
    ) -> None:
        self.path = Path(path)
        self.on_commit = on_commit
        self.max_group = max_group
        self._conn = _connect(self.path)
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        tables = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if tables is None:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise ValueError(
                f"{self.path}: event log schema version {version}, this divrec reads "
                f"{SCHEMA_VERSION}"
            )
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="divrec-event-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writing
    def submit(self, events: Sequence[Event]) -> Future:
        """Queues a batch; the future resolves to one bool per event (True: new, False:
        duplicate ``event_id``) once the batch is durable."""
        fut: Future = Future()
        if self._closed:
            fut.set_exception(RuntimeError("event log is closed"))
            return fut
        self._queue.put((list(events), fut))
        return fut

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Blocking `submit`."""
        return self.submit(events).result()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            self._commit(jobs)
            if stop:
                return

    def _commit(self, jobs: list) -> None:
        now = time.time()
        results: list[list[bool]] = []
        fresh: list[Event] = []
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for events, _ in jobs:
                flags = []
                for e in events:
                    cur.execute(
                        "INSERT OR IGNORE INTO events "
                        "(event_id, user_id, item_id, type, value, timestamp, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (e.event_id, e.user_id, e.item_id, e.type, e.value, e.timestamp, now),
                    )
                    new = cur.rowcount == 1
                    flags.append(new)
                    if new:
                        fresh.append(
                            Event(
                                e.event_id,
                                e.user_id,
                                e.item_id,
                                e.type,
                                e.value,
                                e.timestamp,
                                int(cur.lastrowid or 0),
                            )
                        )
                results.append(flags)
            cur.execute("COMMIT")
        except Exception as err:  # noqa: BLE001 - every waiting request learns of it
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for _, fut in jobs:
                fut.set_exception(err)
            return
        if fresh and self.on_commit is not None:
            try:
                self.on_commit(fresh)
            except Exception:  # noqa: BLE001 - durable already; state catches up on restart
                pass
        for (_, fut), flags in zip(jobs, results, strict=True):
            fut.set_result(flags)

    # ------------------------------------------------------------------ reading
    def iter_events(self, after: int = 0, user_id: str | None = None) -> Iterator[Event]:
        """Stored events in log order (`seq`), optionally after a `seq` / for one user."""
        conn = _connect(self.path)
        try:
            if user_id is None:
                rows = conn.execute(
                    "SELECT event_id, user_id, item_id, type, value, timestamp, seq "
                    "FROM events WHERE seq > ? ORDER BY seq",
                    (after,),
                )
            else:
                rows = conn.execute(
                    "SELECT event_id, user_id, item_id, type, value, timestamp, seq "
                    "FROM events WHERE seq > ? AND user_id = ? ORDER BY seq",
                    (after, user_id),
                )
            for row in rows:
                yield Event(*row)
        finally:
            conn.close()

    def count(self) -> int:
        conn = _connect(self.path)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    def close(self) -> None:
        """Commits what is queued, then stops the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._conn.close()
