"""The recommendation service core: a loaded model + the in-memory state of the event log.

No HTTP here (that is `divrec.serve.app`): `Service.recommend` answers a batch of requests
(the library is batch-first, so concurrent HTTP requests are answered together),
`Service.apply` folds committed feedback events into the per-user state, `Service.rebuild`
replays the whole log on start.

Every list is the chain of a fitted `divrec.pipeline.Pipeline`, `pipeline(query, None, k)`:
the service turns each request and the user's state into a `Query` (user, fresh history and
its values, negatives, exclusions, the per-request diversity knob) and runs the pipeline of
the request's `method=` (`ModelBundle.pipelines`: one per fitted re-ranker plus ``"none"``,
sharing the fitted retriever and ranker), so an answer is the list `Pipeline.recommend` gives
for that query. What stays outside the chain: choosing θ_u for ``diversity=auto``, the
Gumbel-top-k sample of ``explore=`` (drawn from the pipeline's top `pool` list) and the
answer's metadata, ILAD and coverage.

How feedback changes the next answer:

* likes, clicks and ratings ≥ `like_threshold` are fresh positives: the user's history for
  the retriever (`Query.history`: iALS fold-in, item-kNN, HI-RT, the two-tower history
  tower) is the training row plus these, newest last; dislikes and low ratings are
  `Query.negatives` (HI-RT's Y row);
* every clicked, liked, disliked or rated item is excluded from later lists (consumed);
* positives feed the real-time propensity tracker (WeChat Eq. 2–3), so ``diversity=auto``
  follows θ_u;
* with `writeback_seconds` > 0, served items and impressions are excluded for that long
  (an impression from its own timestamp on); the served items are recorded in the log's
  `served` table, so a restart (even after SIGKILL) keeps excluding them.

Bounded state (`ServeSettings`): at most `max_users` users with event state (least
recently active first out, and users idle for `user_ttl_seconds`), `max_history`
positives / negatives and `max_consumed` consumed items per user, the propensity window
capped at `max_history` positives per user, at most `max_writeback_users` users with
written-back items and `max_served_per_user` items each. An evicted user keeps what the
model knows (the training row) and loses the live state.

Values: `Service.check_event` is the door (finite, within `value_ranges` of the event
type; a `ValueError` naming the field); `apply` skips a stored event whose value fails the
same check (counted in `SKIPPED`, exported as ``divrec_skipped_events_total``), so one bad
logged value can never break a user's answers.

Clock: with ``tracker_clock="request"`` (default) the propensity tracker's clock is the
service clock (`ServeSettings.clock`, wall time), mapped into the training time frame
(the model's creation time is the end of its training data), so a live event's timestamp
never expires everybody's window; ``"event"`` is the old behaviour (newest event time).

Users unknown to the model are created by their first event; until they have a positive
(or always, when the retriever cannot answer a fresh history) they get the training
popularity order, re-ranked like everyone else's list: the pipeline of
`ModelBundle.cold_start` (`ColdStartPopularity` → the same re-ranker).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from divrec.atomic import open_atomic
from divrec.data.query import Query
from divrec.serve.events import Event
from divrec.serve.model_dir import ModelBundle

__all__ = ["SKIPPED", "RecRequest", "ServeSettings", "Service", "UserState", "gumbel_top_k"]

POSITIVE = ("click", "like")
SNAPSHOT_FORMAT = 1

#: Logged events `Service.apply` skipped, by reason (process-wide; see `SkippedCollector`).
SKIPPED: dict[str, int] = {"bad_value": 0}


@dataclass(frozen=True)
class ServeSettings:
    """Service behaviour (CLI flags of `divrec serve`) and the bounds of its state.

    Attributes:
        like_threshold: a rating at least this is a positive.
        writeback_seconds: served items and impressions are excluded for this long (0: off).
        max_history: positives (and negatives) kept per user; also the propensity window cap.
        default_diversity: the knob of a request without one.
        max_users: users with event state kept in memory (least recently active evicted).
        user_ttl_seconds: users without an event for this long are evicted (0: never).
        max_consumed: consumed (excluded) items kept per user, newest kept.
        max_writeback_users: users with written-back items kept (oldest evicted).
        max_served_per_user: written-back items kept per user (oldest dropped).
        value_ranges: ``(type, low, high)``: the accepted value range of an event type;
            values of every type must be finite.
        tracker_clock: ``"request"`` (the service clock drives the propensity tracker) or
            ``"event"`` (the newest event timestamp does).
        snapshot: keep a snapshot of the derived state next to the log, so a start
            replays only the log's tail (see `Service.rebuild`).
        clock: the service clock (seconds since the epoch).
    """

    like_threshold: float = 4.0
    writeback_seconds: float = 0.0
    max_history: int = 500
    default_diversity: float | str = "auto"
    max_users: int = 200_000
    user_ttl_seconds: float = 0.0
    max_consumed: int = 5_000
    max_writeback_users: int = 100_000
    max_served_per_user: int = 1_000
    value_ranges: tuple[tuple[str, float, float], ...] = (
        ("rating", 0.0, 10.0),
        ("impression", -1e6, 1e6),
        ("click", -1e6, 1e6),
        ("like", -1e6, 1e6),
        ("dislike", -1e6, 1e6),
    )
    tracker_clock: str = "request"
    snapshot: bool = True
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_history", "max_users", "max_consumed"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer")
        for name in ("max_writeback_users", "max_served_per_user"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.tracker_clock not in ("request", "event"):
            raise ValueError(
                f"tracker_clock must be 'request' or 'event', got {self.tracker_clock!r}"
            )


class SkippedCollector:
    """A Prometheus collector of `SKIPPED` (``divrec_skipped_events_total{reason}``);
    register it once on the app's registry."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily(
            "divrec_skipped_events",
            "logged events skipped when applied (bad stored value)",
            labels=["reason"],
        )
        for reason, n in sorted(SKIPPED.items()):
            fam.add_metric([reason], float(n))
        yield fam


def _ints() -> array:
    return array("q")


def _floats() -> array:
    return array("d")


@dataclass
class UserState:
    """What the event log says about one user.

    The state is kept out of the cyclic garbage collector's walk, which otherwise pauses the
    service on every full collection (~13 ms over 200k applied events with lists and sets):
    the event lists are `array.array`s and the consumed items a dict of int → None (CPython
    stops tracking a dict that holds only ints; it cannot do so for a set).
    """

    index: int
    positives: array = field(default_factory=_ints)
    values: array = field(default_factory=_floats)
    negatives: array = field(default_factory=_ints)
    consumed: dict[int, None] = field(default_factory=dict)
    n_events: int = 0
    last: float = 0.0


@dataclass(frozen=True)
class RecRequest:
    """One recommendation request.

    Attributes:
        user_id: external user id, or None for an anonymous request with `history`.
        n: list length.
        diversity: knob in [0, 1], "auto" (θ_u of the propensity tracker) or None (the
            service default).
        method: a fitted re-ranker name, or "none".
        explore: Gumbel-top-k temperature (0: the re-ranked list as it is).
        history: internal item indices of an anonymous user's history.
        seed: RNG seed of the exploration sample (None: fresh entropy).
        arm: an A/B arm forced for this request (`divrec.serve.arms`; None: assigned).
        constraints: business rules (`divrec.data.constraints.Constraints`, internal
            indices) for the re-ranker, or None.
        explain: return per-item explanations of the re-ranked list.
    """

    user_id: str | None
    n: int = 10
    diversity: float | str | None = None
    method: str | None = None
    explore: float = 0.0
    history: tuple[int, ...] = ()
    seed: int | None = None
    arm: str | None = None
    constraints: Any = None
    explain: bool = False


def gumbel_top_k(m: int, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Samples `n` of `m` ranked positions without replacement (Gumbel-top-k).

    The logit of position j (0 = best) is `−log(j + 1) / temperature`, so the sample is a
    Plackett–Luce draw with weights `(j + 1)^(−1/T)`: T → 0 returns the ranked order,
    T = 1 picks the first item with probability ∝ 1/(j + 1), T → ∞ is uniform.

    Returns:
        `(min(n, m),)` positions in sampled order.
    """
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    logits = -np.log1p(np.arange(m, dtype=np.float64)) / max(float(temperature), 1e-12)
    keys = logits + rng.gumbel(size=m)
    return np.argsort(-keys, kind="stable")[: min(n, m)].astype(np.int64)


class Service:
    """A model bundle plus per-user state; thread-safe (`lock` guards the state)."""

    def __init__(self, bundle: ModelBundle, settings: ServeSettings | None = None) -> None:
        self.bundle = bundle
        self.settings = settings or ServeSettings()
        self.lock = threading.RLock()
        self.users: OrderedDict[str, UserState] = OrderedDict()
        self.served: OrderedDict[str, dict[int, float]] = OrderedDict()
        self.last_seq = 0
        self.n_applied = 0
        self.n_evicted = 0
        self._log = None
        self._last_event_id: str | None = None
        self.router = None  # an `divrec.serve.arms.ArmRouter` while an experiment runs
        ret = bundle.pipeline.retriever
        self.supports_history = bool(bundle.pipeline.supports_history)
        self.n_candidates = int(bundle.pipeline.n_candidates)
        self._tracker = getattr(bundle.propensity, "tracker_", None)
        self._offset = 0.0
        if self._tracker is not None:
            self._tracker.max_per_user = int(self.settings.max_history)
            if self.settings.tracker_clock == "request":
                self._tracker.clock_from_events = False
                self._offset = self._time_offset(bundle, self._tracker)
        self._ranges = {t: (lo, hi) for t, lo, hi in self.settings.value_ranges}
        self._retriever = ret
        self._n_categories = len(bundle.category_names)
        ref = np.asarray(bundle.reference, dtype=np.float64)
        norms = np.linalg.norm(ref, axis=1, keepdims=True)
        self._ref_unit = np.divide(ref, norms, out=np.zeros_like(ref), where=norms > 0)
        cats = bundle.item_categories.tocsr()
        self._item_cats = [
            frozenset(cats.indices[cats.indptr[i] : cats.indptr[i + 1]].tolist())
            for i in range(bundle.n_items)
        ]
        self._item_meta = [
            {"item_id": it["id"], "title": it["title"], "categories": it["categories"]}
            for it in bundle.items
        ]

    @staticmethod
    def _time_offset(bundle: ModelBundle, tracker) -> float:
        """Service time − tracker time: the model's creation is the end of its training
        data (the tracker clock it was saved with); 0 when either is unknown."""
        created = bundle.manifest.get("created")
        if not created or not np.isfinite(tracker.clock):
            return 0.0
        try:
            t = calendar.timegm(time.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return 0.0
        return float(t) - float(tracker.clock)

    def tracker_time(self, t: float) -> float:
        """A service time (seconds since the epoch) on the propensity tracker's clock."""
        return float(t) - self._offset

    def _tracker_now(self) -> None:
        """Advances the tracker to the service clock (``tracker_clock="request"``)."""
        if self._tracker is not None and self.settings.tracker_clock == "request":
            self._tracker.advance(self.tracker_time(self.settings.clock()))

    @property
    def methods(self) -> list[str]:
        return sorted(self.bundle.rerankers) + ["none"]

    # ------------------------------------------------------------------ events
    def check_event(self, e: Event, k: int | str = 0) -> None:
        """The door check of one event's value (the HTTP layer answers 422).

        Args:
            e: the event.
            k: its position in the request (for the field name).

        Raises:
            ValueError: ``field 'events.<k>.value': ...`` (one line).
        """
        reason = self._bad_value(e)
        if reason:
            raise ValueError(f"field 'events.{k}.value': {reason}")

    def _bad_value(self, e: Event) -> str | None:
        v = e.value
        if v is None:
            return "a rating needs a value" if e.type == "rating" else None
        try:
            v = float(v)
        except (TypeError, ValueError):
            return "must be a number"
        if not np.isfinite(v):
            return "must be finite"
        lo, hi = self._ranges.get(e.type, (-np.inf, np.inf))
        if not lo <= v <= hi:
            return f"must be in [{lo:g}, {hi:g}] for a {e.type} event, got {v:g}"
        return None

    def _tracker_key(self, user_id: str, state: UserState):
        return state.index if state.index >= 0 else f"new:{user_id}"

    def _state(self, user_id: str) -> UserState:
        st = self.users.get(user_id)
        if st is None:
            st = UserState(self.bundle.user_index.get(user_id, -1))
            self.users[user_id] = st
        else:
            self.users.move_to_end(user_id)
        return st

    def _evict(self, now: float) -> None:
        """Drops the least recently active users over `max_users` and, with
        `user_ttl_seconds`, those idle for longer (from the front of the LRU order)."""
        ttl = self.settings.user_ttl_seconds
        cap = self.settings.max_users
        while self.users:
            uid, st = next(iter(self.users.items()))
            if len(self.users) <= cap and not (ttl > 0 and st.last < now - ttl):
                break
            del self.users[uid]
            self.n_evicted += 1
            if self._tracker is not None and st.index < 0:
                self._tracker.forget(self._tracker_key(uid, st))

    def _write_back(self, user_id: str, items, until: float, now: float) -> None:
        """Excludes `items` of `user_id` until `until` (bounded per user and in users)."""
        d = self.served.get(user_id)
        if d is None:
            d = self.served[user_id] = {}
        else:
            self.served.move_to_end(user_id)
        for it in items:
            it = int(it)
            if d.get(it, -np.inf) < until:
                d.pop(it, None)
                d[it] = until
        cap = self.settings.max_served_per_user
        if len(d) > cap:
            for it in [it for it, u in d.items() if u <= now]:
                del d[it]
            while len(d) > cap:
                del d[next(iter(d))]
        while self.served:
            uid, dd = next(iter(self.served.items()))
            if len(self.served) <= self.settings.max_writeback_users and (
                uid == user_id or any(u > now for u in dd.values())
            ):
                break
            del self.served[uid]

    def apply(self, events: list[Event]) -> None:
        """Folds committed events (log order) into the state; unknown items and events
        whose stored value fails `check_event` are skipped (the latter counted)."""
        wb = self.settings.writeback_seconds
        now = self.settings.clock()
        tracked = self._tracker is not None
        with self.lock:
            if tracked:
                self._tracker_now()
            for e in events:
                if e.seq and e.seq <= self.last_seq:
                    continue  # already applied (a replay overlapping the live feed)
                if e.seq > self.last_seq:
                    self.last_seq, self._last_event_id = e.seq, e.event_id
                item = self.bundle.item_index.get(e.item_id)
                if item is None:
                    continue
                if self._bad_value(e) is not None:
                    SKIPPED["bad_value"] = SKIPPED.get("bad_value", 0) + 1
                    continue
                self.n_applied += 1
                if e.type == "impression":
                    until = float(e.timestamp) + wb
                    if wb > 0 and until > now:
                        self._write_back(e.user_id, (item,), until, now)
                    continue
                st = self._state(e.user_id)
                st.n_events += 1
                st.last = max(st.last, float(e.timestamp))
                st.consumed.pop(item, None)
                st.consumed[item] = None
                if len(st.consumed) > self.settings.max_consumed:
                    del st.consumed[next(iter(st.consumed))]
                positive = e.type in POSITIVE or (
                    e.type == "rating"
                    and e.value is not None
                    and e.value >= self.settings.like_threshold
                )
                if positive:
                    st.positives.append(item)
                    st.values.append(float(e.value) if e.type == "rating" else 1.0)
                    if len(st.positives) > self.settings.max_history:
                        del st.positives[0], st.values[0]
                    if tracked:
                        try:
                            self._tracker.update(
                                self._tracker_key(e.user_id, st),
                                item,
                                self.tracker_time(e.timestamp),
                            )
                        except ValueError:
                            pass  # e.g. a zero item vector: no direction to count
                else:
                    st.negatives.append(item)
                    if len(st.negatives) > self.settings.max_history:
                        del st.negatives[0]
                if len(self.users) > self.settings.max_users or self.settings.user_ttl_seconds:
                    self._evict(now)

    def rebuild(self, log) -> int:
        """Replays the log (after `last_seq`) into the state and reloads the written-back
        items still in force; returns the events read. The log is kept: later write-backs
        are recorded in it.

        With `ServeSettings.snapshot`, a fresh service first loads the snapshot next to the
        log (``<db>.snapshot.npz``) when it matches the model, the state settings and the
        log (the event at its `last_seq` is still there), so only the log's tail is
        replayed; after the replay it writes a new snapshot (atomically). A missing or
        mismatched snapshot means a full replay.
        """
        self._log = log
        snap = None
        if self.settings.snapshot and getattr(log, "path", None) is not None:
            snap = Path(str(log.path) + ".snapshot.npz")
            if self.last_seq == 0 and snap.is_file():
                self.load_snapshot(snap, log)
        batch: list[Event] = []
        n = 0
        for e in log.iter_events(after=self.last_seq):
            batch.append(e)
            if len(batch) >= 10_000:
                self.apply(batch)
                n += len(batch)
                batch = []
        self.apply(batch)
        n += len(batch)
        if self.settings.writeback_seconds > 0 and hasattr(log, "iter_served"):
            now = self.settings.clock()
            with self.lock:
                for user_id, item_id, until in log.iter_served(after=now):
                    item = self.bundle.item_index.get(item_id)
                    if item is not None:
                        self._write_back(user_id, (item,), until, now)
        if snap is not None and n > 0:
            try:
                self.save_snapshot(snap)
            except OSError:
                pass  # an optimisation only: the next start replays more
        return n

    # ------------------------------------------------------------------ snapshot
    def _state_key(self) -> str:
        """What a snapshot must match: the model's files and the settings that shape the
        derived state."""
        s = self.settings
        doc = {
            "format": SNAPSHOT_FORMAT,
            "files": self.bundle.manifest.get("files", {}),
            "like_threshold": s.like_threshold,
            "max_history": s.max_history,
            "max_consumed": s.max_consumed,
            "max_users": s.max_users,
            "user_ttl_seconds": s.user_ttl_seconds,
            "writeback_seconds": s.writeback_seconds,
            "value_ranges": [list(r) for r in s.value_ranges],
            "tracker_clock": s.tracker_clock,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def save_snapshot(self, path: str | Path) -> None:
        """Writes the derived state (users, propensity windows, write-back) atomically.

        Args:
            path: the snapshot file (written as ``<path>.tmp``, fsynced, then renamed).
        """
        path = Path(path)
        with self.lock:
            sts = list(self.users.values())
            meta: dict[str, Any] = {
                "key": self._state_key(),
                "last_seq": self.last_seq,
                "last_event_id": self._last_event_id,
                "n_applied": self.n_applied,
                "users": list(self.users),
                "index": [st.index for st in sts],
                "n_events": [st.n_events for st in sts],
                "last": [st.last for st in sts],
                "served": [[u, list(d), list(d.values())] for u, d in self.served.items()],
            }
            arrays: dict[str, np.ndarray] = {
                "n_pos": np.array([len(st.positives) for st in sts], dtype=np.int64),
                "n_neg": np.array([len(st.negatives) for st in sts], dtype=np.int64),
                "n_con": np.array([len(st.consumed) for st in sts], dtype=np.int64),
                "positives": np.array([i for st in sts for i in st.positives], dtype=np.int64),
                "values": np.array([v for st in sts for v in st.values], dtype=np.float64),
                "negatives": np.array([i for st in sts for i in st.negatives], dtype=np.int64),
                "consumed": np.array([i for st in sts for i in st.consumed], dtype=np.int64),
            }
            if self._tracker is not None:
                tw = self._tracker.export_windows()
                meta["tracker_keys"] = tw.pop("keys")
                meta["tracker_clock"] = tw.pop("clock")
                arrays.update({f"tracker_{k}": v for k, v in tw.items()})
        meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open_atomic(path, "wb", fsync=True) as f:
            np.savez(f, meta=meta_bytes, **arrays)

    def load_snapshot(self, path: str | Path, log) -> bool:
        """Loads a snapshot into a fresh service when it matches (see `rebuild`).

        Returns:
            Whether it was loaded (False: unreadable, another model or settings, or a log
            that no longer holds its last event; the state is left empty).
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arr = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError):
            return False
        if meta.get("key") != self._state_key() or self.last_seq != 0:
            return False
        seq = int(meta["last_seq"])
        head = next(iter(log.iter_events(after=seq - 1)), None)
        if seq <= 0 or head is None or head.seq != seq or head.event_id != meta["last_event_id"]:
            return False
        if (self._tracker is None) != ("tracker_keys" not in meta):
            return False
        with self.lock:
            users: OrderedDict[str, UserState] = OrderedDict()
            pos = neg = con = 0
            vals = arr["values"].tolist()
            for k, uid in enumerate(meta["users"]):
                st = UserState(int(meta["index"][k]))
                a, b, c = (int(arr["n_pos"][k]), int(arr["n_neg"][k]), int(arr["n_con"][k]))
                st.positives.extend(arr["positives"][pos : pos + a].tolist())
                st.values.extend(vals[pos : pos + a])
                st.negatives.extend(arr["negatives"][neg : neg + b].tolist())
                st.consumed = dict.fromkeys(arr["consumed"][con : con + c].tolist())
                st.n_events, st.last = int(meta["n_events"][k]), float(meta["last"][k])
                pos, neg, con = pos + a, neg + b, con + c
                users[uid] = st
            self.users = users
            self.served = OrderedDict(
                (u, dict(zip(items, untils, strict=True))) for u, items, untils in meta["served"]
            )
            if self._tracker is not None:
                tw = {k[len("tracker_") :]: v for k, v in arr.items() if k.startswith("tracker_")}
                tw["keys"] = meta["tracker_keys"]
                tw["clock"] = meta["tracker_clock"]
                self._tracker.import_windows(tw)
            self.last_seq = seq
            self._last_event_id = meta["last_event_id"]
            self.n_applied = int(meta["n_applied"])
        return True

    # ------------------------------------------------------------------ recommend
    def resolve_method(self, method: str | None) -> str:
        m = self.bundle.default_method if method is None else method
        if m != "none" and m not in self.bundle.rerankers and not m.startswith("arm:"):
            raise ValueError(f"method: unknown method {m!r}; known: {', '.join(self.methods)}")
        return m

    def theta(self, user_id: str | None) -> float | None:
        """θ_u of the propensity tracker (None without a tracker)."""
        if self._tracker is None:
            return None
        with self.lock:
            self._tracker_now()
            st = self.users.get(user_id) if user_id is not None else None
            if st is None:
                idx = self.bundle.user_index.get(user_id, -1) if user_id is not None else -1
                key = idx if idx >= 0 else f"new:{user_id}"
            else:
                key = self._tracker_key(user_id, st)
            return float(self._tracker.theta(key))

    def warm_up(self) -> None:
        """Runs every method once on a known and an anonymous request, so that lazily
        compiled kernels and caches exist before the first real request (and before the
        server freezes its heap); records nothing (no write-back, no user state)."""
        reqs = []
        for m in self.methods:
            if self.bundle.user_ids:
                reqs.append(RecRequest(self.bundle.user_ids[0], 10, 0.5, m))
            reqs.append(RecRequest(None, 10, 0.5, m, explore=1.0, history=(0,), seed=0))
            reqs.append(RecRequest("", 10, 0.5, m))  # no such user id: the cold start
        self.recommend(reqs, write_back=False)

    def recommend(
        self, requests: list[RecRequest], write_back: bool = True
    ) -> list[dict[str, Any]]:
        """Answers a batch of requests; raises ValueError (one line) on a bad request.

        Args:
            requests: the batch.
            write_back: record the served items (when `writeback_seconds` > 0).
        """
        if not requests:
            return []
        arms = forced = None
        if self.router is not None:  # A/B: the arm decides the method and knob
            requests, arms, forced = self.router.route(requests)
        b = len(requests)
        now = self.settings.clock()
        n_cand = self.n_candidates
        methods = [self.resolve_method(r.method) for r in requests]
        users = np.full(b, -1, dtype=np.int64)
        hist: list[list[int] | None] = [None] * b
        vals: list[list[float] | None] = [None] * b
        negs: list[list[int]] = [[] for _ in range(b)]
        excl: list[list[int]] = [[] for _ in range(b)]
        div = np.zeros(b)
        thetas: list[float | None] = [None] * b
        with self.lock:
            for i, r in enumerate(requests):
                d = self.settings.default_diversity if r.diversity is None else r.diversity
                if d == "auto":
                    th = self.theta(r.user_id)
                    thetas[i] = th
                    d = 0.5 if th is None else 1.0 - th
                div[i] = float(d)
                if r.user_id is None:
                    hist[i] = list(r.history)
                    continue
                idx = self.bundle.user_index.get(r.user_id, -1)
                users[i] = idx
                served = self.served.get(r.user_id)
                if served:
                    for item, until in list(served.items()):
                        if until <= now:
                            del served[item]
                    excl[i] = list(served)
                st = self.users.get(r.user_id)
                if st is None:
                    continue
                excl[i] = sorted(st.consumed) + excl[i]
                if st.positives or st.negatives:
                    base = []
                    if idx >= 0:  # the training row (CSR slice: no scipy row object)
                        ui = self.bundle.pipeline.user_items_
                        base = ui.indices[ui.indptr[idx] : ui.indptr[idx + 1]].tolist()
                    hist[i] = base + st.positives.tolist()
                    vals[i] = [1.0] * len(base) + st.values.tolist()
                    negs[i] = st.negatives.tolist()

        # who answers: (0) known users, training row; (1) fresh histories; (2) cold start
        group = np.zeros(b, dtype=np.int64)
        for i in range(b):
            has_pos = hist[i] is not None and len(hist[i]) > 0
            if hist[i] is not None and self.supports_history and (has_pos or users[i] >= 0):
                group[i] = 1
            elif users[i] >= 0:
                group[i] = 0
            else:
                group[i] = 2
        out_ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * b
        out_sc: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * b
        pool = [min(n_cand, max(3 * r.n, r.n + 10)) if r.explore > 0 else r.n for r in requests]
        # rules and explanations: one stage call per (n, explain), so that minimums and pins
        # hold for each request's own list length
        rule_key = [
            (r.explain, r.n if r.constraints is not None or r.explain else 0) for r in requests
        ]
        notes: list[tuple | None] = [None] * b
        for g, m, rk in sorted(set(zip(group.tolist(), methods, rule_key, strict=True))):
            rows = [i for i in range(b) if group[i] == g and methods[i] == m and rule_key[i] == rk]
            k = min(max(pool[i] for i in rows), n_cand)
            q = self._query(rows, users, hist if g else None, vals, negs, excl, div)
            rules = [requests[i].constraints for i in rows]
            if rk[0] or any(x is not None for x in rules):
                q = replace(q, constraints=rules, explain=rk[0])
            pipe = self.bundle.cold_start[m] if g == 2 else self.bundle.pipelines[m]
            sel = pipe(q, None, k)
            expl, viol = getattr(sel, "explanations", None), getattr(sel, "violations", None)
            for j, i in enumerate(rows):
                out_ids[i], out_sc[i] = sel.ids[j], sel.scores[j]
                if expl is not None or viol is not None:
                    notes[i] = (
                        None if expl is None else expl[j],
                        None if viol is None else viol[j],
                    )
        results = []
        for i, r in enumerate(requests):
            keep = out_ids[i] >= 0
            lst, sc = out_ids[i][keep], out_sc[i][keep]
            if r.explore > 0:
                rng = np.random.default_rng(r.seed)
                pick = gumbel_top_k(lst.size, r.n, r.explore, rng)
                lst, sc = lst[pick], sc[pick]
            else:
                lst, sc = lst[: r.n], sc[: r.n]
            results.append(self._answer(r, lst, sc, methods[i], float(div[i]), thetas[i]))
            if notes[i] is not None:
                self._notes(r, results[-1], *notes[i])
        wb = self.settings.writeback_seconds
        if wb > 0 and write_back:
            rows = []
            with self.lock:
                for r, res in zip(requests, results, strict=True):
                    if r.user_id is not None and res["_items"]:
                        self._write_back(r.user_id, res["_items"], now + wb, now)
                        rows += [(r.user_id, int(it), now + wb) for it in res["_items"]]
            if rows and self._log is not None and hasattr(self._log, "record_served"):
                items = self.bundle.items
                self._log.record_served([(u, items[it]["id"], t) for u, it, t in rows])
        for res in results:
            res.pop("_items")
        if arms is not None:
            for res, arm, f in zip(results, arms, forced, strict=True):
                if arm is not None:
                    res["arm"], res["arm_forced"] = arm, f
        return results

    def _query(self, rows, users, hist, vals, negs, excl, div) -> Query:
        """The `Query` of requests `rows` (all of one answer group).

        Args:
            rows: request positions.
            users: `(B,)` internal user indices (−1: unknown).
            hist: per request the fresh history (training row + positives, or an anonymous
                request's items; None: none), or None for the group answered from the
                training rows.
            vals: per request the history values (None: every item counts 1).
            negs: per request the negatives.
            excl: per request the consumed and written-back items.
            div: `(B,)` diversity knob.
        """
        h = hv = neg = None
        if hist is not None:
            h = [hist[i] or [] for i in rows]
            hv = np.ones((len(rows), max((len(x) for x in h), default=0)), dtype=np.float32)
            for j, i in enumerate(rows):
                if vals[i] is not None:
                    hv[j, : len(vals[i])] = vals[i]
            if any(negs[i] for i in rows):
                neg = [negs[i] for i in rows]
        ex = [excl[i] for i in rows] if any(excl[i] for i in rows) else None
        return Query(
            users=users[rows],
            history=h,
            history_values=hv,
            negatives=neg,
            exclude=ex,
            exclude_seen=True,
            diversity=div[rows],
        )

    def list_ilad(self, lst: np.ndarray) -> float | None:
        """ILAD of one list in the reference space (CDM Eq. 21; `metrics.ilad` for one list):
        the mean `1 − cos` over its pairs, zero vectors at cosine 0; None below 2 items."""
        n = lst.size
        if n < 2:
            return None
        v = self._ref_unit[lst]
        s = v.sum(axis=0)
        pair_sum = float(s @ s - np.einsum("nd,nd->", v, v))
        return float(min(max(1.0 - pair_sum / (n * (n - 1)), 0.0), 2.0))

    def _notes(self, r: RecRequest, res: dict[str, Any], expl, viol) -> None:
        """Adds the explanations (external ids) and the best-effort violations to `res`."""
        items = self.bundle.items
        if expl is not None and r.explain:
            for entry, e in zip(res["items"], expl, strict=False):
                e = {k: v for k, v in e.items() if k not in ("position", "item")}
                if e.get("penalized_by") is not None:
                    e["penalized_by"] = items[int(e["penalized_by"])]["id"]
                entry["explanation"] = {
                    k: (v.item() if isinstance(v, np.generic) else v) for k, v in e.items()
                }
        if viol is not None and r.constraints is not None:
            res["violations"] = [{"field": v.field, "detail": v.detail} for v in viol]

    def _answer(self, r, lst, sc, method, diversity, theta) -> dict[str, Any]:
        meta = self._item_meta
        items = [
            {"rank": rank, **meta[it], "score": s}
            for rank, (it, s) in enumerate(zip(lst.tolist(), sc.tolist(), strict=True), 1)
        ]
        lil = self.list_ilad(lst)
        cov = None
        if self._n_categories and lst.size:
            cov = len(frozenset().union(*(self._item_cats[i] for i in lst.tolist())))
            cov /= self._n_categories
        return {
            "user_id": r.user_id,
            "known_user": r.user_id is not None and r.user_id in self.bundle.user_index,
            "method": method,
            "diversity": diversity,
            "theta": theta,
            "explore": r.explore,
            "items": items,
            "ilad": lil,
            "category_coverage": cov,
            "_items": lst.tolist(),
        }

    # ------------------------------------------------------------------ i2i, i2u
    def similar(self, item: int, n: int) -> list[dict[str, Any]]:
        """The `n` items closest to `item` by cosine in the re-ranker's embedding."""
        unit = self.bundle.unit_vectors
        sims = unit @ unit[item]
        sims[item] = -np.inf
        n = min(n, sims.size - 1)
        top = np.argpartition(-sims, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
        top = top[np.lexsort((top, -sims[top]))]
        return [
            {
                "item_id": self.bundle.items[j]["id"],
                "title": self.bundle.items[j]["title"],
                "categories": self.bundle.items[j]["categories"],
                "score": float(sims[j]),
            }
            for j in top.tolist()
        ]

    def potential_users(self, item: int, n: int) -> list[dict[str, Any]]:
        """i2u: the users most likely to want `item` (TotalRecall; factor models: u·v_i),
        excluding users who interacted with it in training."""
        ret = self._retriever
        if hasattr(ret, "potential_users"):
            uids, usc = ret.potential_users(np.array([item]), k=n)
            pairs = [(int(u), float(s)) for u, s in zip(uids[0], usc[0], strict=True) if u >= 0]
        elif hasattr(ret, "user_vectors") and hasattr(ret, "item_vectors"):
            s = ret.user_vectors() @ ret.item_vectors()[item]
            s = np.asarray(s, dtype=np.float64)
            seen = self.bundle.pipeline.user_items_[:, item].nonzero()[0]
            s[seen] = -np.inf
            kk = min(n, int(np.isfinite(s).sum()))
            top = np.argpartition(-s, kk - 1)[:kk] if kk > 0 else np.zeros(0, dtype=np.int64)
            top = top[np.lexsort((top, -s[top]))]
            pairs = [(int(u), float(s[u])) for u in top]
        else:
            raise LookupError(f"{type(ret).__name__} has no user embedding for potential users")
        return [{"user_id": self.bundle.user_ids[u], "score": sc} for u, sc in pairs]

    def training_items(self, user_id: str) -> list[str]:
        idx = self.bundle.user_index.get(user_id)
        if idx is None:
            return []
        row = self.bundle.pipeline.user_items_[idx]
        return [self.bundle.items[i]["id"] for i in row.indices.tolist()]
