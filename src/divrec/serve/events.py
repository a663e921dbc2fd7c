"""The durable event log: SQLite in WAL mode with group commit.

An event is acknowledged only after the transaction holding it has committed with
``synchronous=FULL`` (the WAL is fsynced at every commit), so an acknowledged event survives
a process kill or power loss. Concurrent writers are served by one writer thread that
commits every batch waiting in its queue in one transaction (group commit): the fsync cost
is shared by all of them.

Idempotency: ``event_id`` is UNIQUE and events are inserted with ``INSERT OR IGNORE``; a
re-sent event (same user, item, type and value; the timestamp may differ, as a client that
omits it gets the receive time) is reported as a duplicate and changes nothing. An
``event_id`` re-used with different content is a conflict: the batch holding it is
rejected as a whole with `EventConflict` (nothing of it is stored). Only parameterized SQL
is used.

Write-back: the ``served`` table holds the items served with ``--writeback`` and until when
they stay excluded (`record_served`, `iter_served`); it is written by the same writer thread
(no acknowledgement waits for it) and rows past their time are deleted as it goes.

Impressions (A/B arms, `divrec.serve.arms`): every list served to a user of a running
experiment is one ``impressions`` row (request id, user, arm, the item ids in served order,
so an item's position is its index, the method and knob used, whether the arm was forced,
the serve time); `submit_impressions` resolves once the row is durable (the same writer
thread and group commit as the events), so an answered list is never lost when the process
dies. A transaction holding only impressions commits with ``synchronous=NORMAL`` (no fsync:
it survives a process crash, kill -9 included, and the next commit holding events, which is
``FULL``, syncs it too); this is what keeps the logging cost of ``/recommend`` small, and the
price is that a power loss can drop the lists served after the last synced commit. Each
experiment's definition (name, salt, control, arms and shares) is recorded once in
``experiments`` (`record_experiment`): a later start with the same name and another salt or
shares is refused, so assignments stay those of the record. Feedback events keep their own
table; `read_ab_log` hands both to the readout, which attributes a click or like to the
latest earlier impression of that user holding the item (`divrec.evaluation.ab`).

Schema (``PRAGMA user_version`` = `SCHEMA_VERSION`)::

    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, user_id TEXT,
           item_id TEXT, type TEXT, value REAL, timestamp REAL, received REAL)
    impressions(seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT UNIQUE,
                experiment TEXT, arm TEXT, user_id TEXT, items TEXT (JSON list of ids),
                method TEXT, diversity REAL, forced INTEGER, timestamp REAL)
    experiments(name TEXT PRIMARY KEY, record TEXT (JSON), created REAL)
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

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Event",
    "EventConflict",
    "EventLog",
    "Impression",
    "read_ab_log",
]

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

# additive (no schema version change): logs written before it get it when opened
_SERVED = """
CREATE TABLE IF NOT EXISTS served (user_id TEXT NOT NULL, item_id TEXT NOT NULL,
                                   until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS served_by_until ON served (until);
"""


# additive as well: the A/B impression log and the experiments' records
_AB = """
CREATE TABLE IF NOT EXISTS impressions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    method TEXT NOT NULL,
    diversity REAL,
    forced INTEGER NOT NULL,
    timestamp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (name TEXT PRIMARY KEY, record TEXT NOT NULL,
                                        created REAL NOT NULL);
"""


class EventConflict(ValueError):
    """An ``event_id`` already stored with a different user, item, type or value.

    Attributes:
        event_id: the conflicting id.
    """

    def __init__(self, event_id: str, detail: str) -> None:
        super().__init__(f"event_id {event_id!r} already stored with {detail}")
        self.event_id = event_id


class _Served(list):
    """A writer job of ``(user_id, item_id, until)`` write-back rows."""


class _Impressions(list):
    """A writer job of `Impression` rows."""


@dataclass(frozen=True)
class Impression:
    """One list served to a user of an experiment (external ids).

    Attributes:
        request_id: unique id of the request (returned to the client).
        experiment: the experiment's name.
        arm: the arm that served the list.
        user_id: the user.
        items: the item ids in served order (position = index).
        method: the re-ranking method that produced it.
        diversity: the knob used (None: not numeric).
        forced: the arm was forced with ``?arm=`` (debug traffic; left out of the readout).
        timestamp: serve time (seconds since the epoch).
    """

    request_id: str
    experiment: str
    arm: str
    user_id: str
    items: tuple[str, ...]
    method: str
    diversity: float | None
    forced: bool
    timestamp: float


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


def _conflict(cur: sqlite3.Cursor, e: Event) -> EventConflict | None:
    """The conflict of `e` with the stored event of its id (None: a true duplicate)."""
    row = cur.execute(
        "SELECT user_id, item_id, type, value FROM events WHERE event_id = ?", (e.event_id,)
    ).fetchone()
    if row is None:
        return None
    new = (e.user_id, e.item_id, e.type, None if e.value is None else float(e.value))
    old = (row[0], row[1], row[2], None if row[3] is None else float(row[3]))
    if new == old:
        return None
    names = ("user_id", "item_id", "type", "value")
    diff = ", ".join(f"{n}={o!r}" for n, o, w in zip(names, old, new, strict=True) if o != w)
    return EventConflict(e.event_id, diff)


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
        self._conn.executescript(_SERVED)
        self._conn.executescript(_AB)
        self._light = False  # the connection's synchronous level is NORMAL (else FULL)
        self._busy = threading.Lock()  # held while the connection is in use
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

    def record_served(self, rows: Sequence[tuple[str, str, float]]) -> Future:
        """Queues write-back rows ``(user_id, item_id, until)`` (not waited for)."""
        fut: Future = Future()
        if self._closed or not rows:
            fut.set_result([])
            return fut
        self._queue.put((_Served(rows), fut))
        return fut

    def submit_impressions(self, rows: Sequence[Impression]) -> Future:
        """Queues impression rows; the future resolves (to None) once they are durable."""
        fut: Future = Future()
        if self._closed:
            fut.set_exception(RuntimeError("event log is closed"))
            return fut
        self._queue.put((_Impressions(rows), fut))
        return fut

    def record_experiment(self, name: str, record: dict) -> None:
        """Stores an experiment's definition the first time its name is seen.

        Raises:
            ValueError: the log already holds `name` with another definition (one line).
        """
        import json

        doc = json.dumps(record, sort_keys=True)
        conn = _connect(self.path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT record FROM experiments WHERE name = ?", (name,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO experiments (name, record, created) VALUES (?, ?, ?)",
                    (name, doc, time.time()),
                )
            conn.execute("COMMIT")
        finally:
            conn.close()
        if row is not None and json.loads(row[0]) != json.loads(doc):
            old = json.loads(row[0])
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(
                f"experiment {name!r}: {', '.join(diff)} differ from the record in {self.path} "
                "(assignments would change mid-experiment; give the experiment a new name)"
            )

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

    def write_impressions_now(self, rows: Sequence[Impression]) -> bool:
        """Commits impression rows in the calling thread when the writer is idle.

        The A/B hot path: one short ``synchronous=NORMAL`` transaction (~50 µs) without a
        hand-over to the writer thread and back (two thread wake-ups per request).

        Returns:
            True: the rows are committed; False: the writer is busy (nothing was done; use
            `submit_impressions`, whose group commit then takes them).
        """
        if self._closed or not self._busy.acquire(blocking=False):
            return False
        try:
            self._write_impressions(rows)
        except sqlite3.Error:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return False
        finally:
            self._busy.release()
        return True

    def _write_impressions(self, rows: Sequence[Impression]) -> None:
        if not self._light:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._light = True
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.executemany(_INSERT_IMPRESSION, [_impression_row(r) for r in rows])
        cur.execute("COMMIT")

    def _commit(self, jobs: list) -> None:
        with self._busy:
            self._commit_locked(jobs)

    def _commit_locked(self, jobs: list) -> None:
        now = time.time()
        # a transaction of impressions only commits with synchronous=NORMAL (WAL: durable
        # against a crash of the process, no fsync); any transaction holding events or
        # write-back rows commits with FULL, which also syncs every earlier WAL frame
        light = all(isinstance(job, _Impressions) for job, _ in jobs)
        if light != self._light:
            self._conn.execute(f"PRAGMA synchronous={'NORMAL' if light else 'FULL'}")
            self._light = light
        results: list = []  # per job: flags, an EventConflict, or None (impressions)
        fresh: list[Event] = []
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            served = False
            for events, _ in jobs:
                flags: list[bool] | Exception = []
                if isinstance(events, _Impressions):
                    cur.executemany(_INSERT_IMPRESSION, [_impression_row(r) for r in events])
                    results.append(None)
                    continue
                if isinstance(events, _Served):
                    cur.executemany(
                        "INSERT INTO served (user_id, item_id, until) VALUES (?, ?, ?)", events
                    )
                    served = True
                    results.append(flags)
                    continue
                cur.execute("SAVEPOINT job")
                mark = len(fresh)
                for e in events:
                    cur.execute(
                        "INSERT OR IGNORE INTO events "
                        "(event_id, user_id, item_id, type, value, timestamp, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (e.event_id, e.user_id, e.item_id, e.type, e.value, e.timestamp, now),
                    )
                    new = cur.rowcount == 1
                    if not new:
                        conflict = _conflict(cur, e)
                        if conflict is not None:
                            cur.execute("ROLLBACK TO SAVEPOINT job")
                            del fresh[mark:]
                            flags = conflict
                            break
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
                cur.execute("RELEASE SAVEPOINT job")
                results.append(flags)
            if served:
                cur.execute("DELETE FROM served WHERE until <= ?", (now,))
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
            if flags is None:
                fut.set_result(None)
            elif isinstance(flags, Exception):
                fut.set_exception(flags)
            else:
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

    def iter_served(self, after: float) -> Iterator[tuple[str, str, float]]:
        """Write-back rows ``(user_id, item_id, until)`` with ``until > after``, in the order
        they were recorded."""
        conn = _connect(self.path)
        try:
            rows = conn.execute(
                "SELECT user_id, item_id, until FROM served WHERE until > ? ORDER BY rowid",
                (float(after),),
            )
            for row in rows:
                yield (str(row[0]), str(row[1]), float(row[2]))
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
        with self._busy:
            self._conn.close()


_INSERT_IMPRESSION = (
    "INSERT INTO impressions (request_id, experiment, arm, user_id, items, method, diversity, "
    "forced, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _impression_row(r: Impression) -> tuple:
    import json

    items = json.dumps(list(r.items), separators=(",", ":"))
    return (r.request_id, r.experiment, r.arm, r.user_id, items, r.method, r.diversity,
            int(r.forced), r.timestamp)  # fmt: skip


# ---------------------------------------------------------------------------- A/B readout
def read_ab_log(path: str | Path, experiment: str | None = None) -> dict:
    """The experiment part of an event log, for `divrec.evaluation.ab`.

    Args:
        path: the SQLite event log.
        experiment: the experiment's name (None: the only one in the log).

    Returns:
        ``{"experiment": record, "impressions": [(request_id, arm, user_id, [item ids],
        forced, timestamp)], "events": [(user_id, item_id, type, value, received)]}``, the
        events being the feedback of the users with an impression, in log order.

    Raises:
        ValueError: not an event log, no experiment in it, or `experiment` unknown (one
            line).
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as err:
        raise ValueError(f"{path}: not a divrec event log ({err})") from None
    try:
        if "events" not in tables:
            raise ValueError(f"{path}: not a divrec event log (no events table)")
        if "experiments" not in tables:
            raise ValueError(f"{path}: holds no experiment (served without arms)")
        names = {n: r for n, r in conn.execute("SELECT name, record FROM experiments")}
        if not names:
            raise ValueError(f"{path}: holds no experiment (served without arms)")
        if experiment is None:
            if len(names) > 1:
                raise ValueError(f"{path}: holds experiments {', '.join(sorted(names))}; name one")
            experiment = next(iter(names))
        if experiment not in names:
            raise ValueError(
                f"experiment {experiment!r} is not in {path} (it holds {', '.join(sorted(names))})"
            )
        record = json.loads(names[experiment])
        imps = [
            (r[0], r[1], r[2], json.loads(r[3]), bool(r[4]), float(r[5]))
            for r in conn.execute(
                "SELECT request_id, arm, user_id, items, forced, timestamp FROM impressions "
                "WHERE experiment = ? ORDER BY seq",
                (experiment,),
            )
        ]
        users = {r[2] for r in imps}
        events = [
            (r[0], r[1], r[2], r[3], float(r[4]))
            for r in conn.execute(
                "SELECT user_id, item_id, type, value, received FROM events "
                "WHERE type != 'impression' ORDER BY seq"
            )
            if r[0] in users
        ]
    except sqlite3.Error as err:
        raise ValueError(f"{path}: not a divrec event log ({err})") from None
    finally:
        conn.close()
    return {"experiment": record, "impressions": imps, "events": events}


# ---------------------------------------------------------------------------- serve helpers
def read_user_history(path: str | Path, user_id: str, limit: int) -> list[Event]:
    """The last `limit` events of `user_id`, oldest first.

    The limit is applied in SQL (``ORDER BY seq DESC LIMIT ?`` on the ``events_by_user``
    index), so the cost does not grow with the user's whole history.

    Args:
        path: the SQLite event log.
        user_id: the external user id.
        limit: the most events returned.
    """
    conn = _connect(Path(path))
    try:
        rows = conn.execute(
            "SELECT event_id, user_id, item_id, type, value, timestamp, seq FROM events "
            "WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
            (user_id, int(limit)),
        ).fetchall()
    finally:
        conn.close()
    return [Event(*row) for row in reversed(rows)]


def logged_item_ids(path: str | Path) -> set[str]:
    """The distinct item ids of every logged event (empty for a missing log)."""
    path = Path(path)
    if not path.exists():
        return set()
    conn = _connect(path)
    try:
        has = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        ).fetchone()
        if has is None:
            return set()
        return {row[0] for row in conn.execute("SELECT DISTINCT item_id FROM events")}
    finally:
        conn.close()


class DbLock:
    """An exclusive lock file next to an event log (``<db>.lock``, `fcntl.flock`).

    One `divrec serve` per log: a second process opening the same log gets `LockedError`.
    The lock is released when the holder exits (even on SIGKILL); the file stays.

    Args:
        db: the event log the lock guards.
    """

    def __init__(self, db: str | Path) -> None:
        self.path = Path(str(db) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock.

        Raises:
            LockedError: another process holds it.
            OSError: the lock file cannot be created.
        """
        import fcntl
        import os

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"--db {self.path.with_suffix('')}: in use by process {holder} "
                f"(lock file {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Drops the lock (closing the file releases it)."""
        import os

        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LockedError(RuntimeError):
    """The event log is locked by another `divrec serve`."""
