"""The HTTP layer of `divrec serve`: a FastAPI app over `Service` and `EventLog`.

Endpoints (external ids everywhere; every error is `{"error": "<one line>"}`):

* ``GET /recommend/{user_id}?n=10&diversity=<0..1|auto>&method=<dpp|mmr|ssd|none>&explore=T``
* ``POST /recommend``: ``{"history": [item ids], "n", "diversity", "method", "explore"}``
  for an anonymous user (cold start through the model's history path);
* ``POST /rerank``: ``{"requests": [{"item_ids", "scores", "vectors"?, "categories"?, "k",
  "diversity", "method", "user_id"?, "history"?}]}``: the caller's candidates re-ranked by the
  service's re-rankers (`divrec.serve.rerank`); also in re-rank-only mode (``--items``, no
  model: the other model endpoints answer 404);
* ``POST /feedback`` (API key): ``{"events": [{event_id, user_id, item_id, type, value,
  timestamp}]}``, idempotent on ``event_id``, acknowledged once durable;
* ``GET /similar/{item_id}?n=``, ``GET /potential-users/{item_id}?n=``,
  ``GET /users/{user_id}/history``, ``GET /health/live``, ``GET /health/ready``,
  ``GET /metrics`` (Prometheus), ``POST /admin/reload`` (API key), ``GET /`` (demo page).

Concurrency and the thread budget: model work runs in a pool of `compute_threads` threads
(default 1) with BLAS/torch held to one thread each, and concurrent recommend requests are
answered as one batch (the library is batch-first); durable writes run in the event log's
writer thread with group commit. One process (one uvicorn worker) holds the state.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import json
import math
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from divrec.serve.arms import attach_experiment, forced_arm_error, impression_of
from divrec.serve.constraints import (
    CONSTRAINT_KEYS,
    constraints_from_json,
    constraints_from_query,
)
from divrec.serve.events import Event, EventConflict, EventLog, logged_item_ids, read_user_history
from divrec.serve.model_dir import ID_PATTERN, ModelBundle
from divrec.serve.rerank import (
    RerankCatalogue,
    RerankError,
    library_message,
    parse_rerank,
    run_rerank,
)
from divrec.serve.service import RecRequest, ServeSettings, Service, SkippedCollector

__all__ = ["ApiError", "AppConfig", "check_catalogue", "create_app", "http_protocol"]

_ID = re.compile(ID_PATTERN)
#: query parameters of GET /recommend that make a request carry rules or explanations
_RULE_PARAMS = (*CONSTRAINT_KEYS, "explain")
#: largest `seed=` (numpy's generators take any non-negative integer; 64 bits is plenty)
MAX_SEED = 2**64 - 1
#: headers of the demo page (its one inline script is allowed by hash, see `_page`)
_PAGE_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_STATIC = Path(__file__).with_name("static")


class ApiError(Exception):
    """An error answered as `{"error": message, **extra}` with `status`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass
class AppConfig:
    """Settings of one service process.

    Attributes:
        model_dir: the model directory written by `divrec train`.
        db: the SQLite event log (created when missing).
        api_key: the key required for /feedback and /admin (None: a random one is made and
            reported in `generated_key`).
        auth_all: require the key on every endpoint but health, metrics and the page.
        open_user_data: serve `/users/{user}/history` without the key (by default reading a
            user's data needs the key).
        max_history: most item ids in an anonymous request's `history` (413 above).
        body_timeout: seconds to read a whole request body (408 after).
        allowed_hosts: Host header values (without port) answered; ``"*"`` allows any.
        bundle: a model already loaded from `model_dir` (`divrec serve` validates the
            directory before starting and hands the result over), or None.
        lock: the `DbLock` held on `db` (released when a reload moves to a new log).
        max_body: largest request body in bytes (413 above).
        max_batch: most events in one /feedback request (413 above).
        max_n: longest list a request may ask for.
        compute_threads: threads running model work (BLAS/torch get 1 thread each).
        max_recommend_batch: most requests answered together.
        settings: the service behaviour.
        items: re-rank-only mode: the item table (`RerankCatalogue.from_table`); no model,
            no event log (`model_dir` and `db` unused).
        max_candidates: most candidates in one `/rerank` request (422 above).
        max_rerank_batch: most requests in one `/rerank` body (413 above).
        experiment: an A/B experiment file (`divrec.serve.arms`; None: the model
            directory's ``experiment.json`` when it has one).
    """

    model_dir: Path | None
    db: Path
    api_key: str | None = None
    auth_all: bool = False
    open_user_data: bool = False
    max_history: int = 1000
    body_timeout: float = 10.0
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    bundle: Any = None
    lock: Any = None
    max_body: int = 1 << 20
    max_batch: int = 1000
    max_n: int = 100
    compute_threads: int = 1
    max_recommend_batch: int = 64
    settings: ServeSettings = field(default_factory=ServeSettings)
    generated_key: bool = False
    items: Path | None = None
    max_candidates: int = 1000
    max_rerank_batch: int = 256
    experiment: Path | None = None

    def __post_init__(self) -> None:
        if not self.api_key:
            self.api_key = secrets.token_urlsafe(24)
            self.generated_key = True


# ---------------------------------------------------------------------------- bodies
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EventIn(_Strict):
    event_id: Annotated[StrictStr, Field(pattern=ID_PATTERN)]
    user_id: Annotated[StrictStr, Field(pattern=ID_PATTERN)] | StrictInt
    item_id: Annotated[StrictStr, Field(pattern=ID_PATTERN)] | StrictInt
    type: Literal["impression", "click", "like", "dislike", "rating"]
    value: StrictFloat | StrictInt | None = None
    timestamp: StrictFloat | StrictInt | None = None


class FeedbackIn(_Strict):
    events: list[EventIn]


class RecommendIn(_Strict):
    history: list[Annotated[StrictStr, Field(pattern=ID_PATTERN)] | StrictInt]
    n: StrictInt = 10
    diversity: StrictFloat | StrictInt | Literal["auto"] | None = None
    method: StrictStr | None = None
    explore: StrictFloat | StrictInt = 0.0
    seed: StrictInt | None = None
    constraints: dict[str, Any] | None = None
    explain: StrictBool = False


class ReloadIn(_Strict):
    model_dir: StrictStr | None = None
    new_db: StrictStr | None = None


# ---------------------------------------------------------------------------- helpers
_UNION_TAG = re.compile(r"^(constrained-str|str|int|float|bool|none|function-.*|.*\[.*\])$")


def _loc(loc) -> str:
    parts = [
        str(p) for p in loc if p not in ("body", "query", "path") and not _UNION_TAG.match(str(p))
    ]
    return ".".join(parts) or "body"


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if not errors:
        return 422, "invalid request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        return 400, "malformed JSON body"
    field_name = _loc(err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).splitlines()[0]
    if err.get("type") == "missing":
        return 422, f"field '{field_name}': required"
    return 422, f"field '{field_name}': {msg}"


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ApiError(422, f"{what}: must match {ID_PATTERN}")
    return value


def _q_number(params, name: str, default, kind):
    """Query parameter `name` as `kind` (int or float), `default` when absent."""
    value = params.get(name)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ApiError(422, f"field '{name}': must be {what}, got {value[:40]!r}") from None


def _parse_diversity(value: str | None) -> float | str | None:
    if value is None:
        return None
    if value == "auto":
        return "auto"
    try:
        d = float(value)
    except ValueError:
        raise ApiError(422, "field 'diversity': must be a number in [0, 1] or 'auto'") from None
    if not (math.isfinite(d) and 0.0 <= d <= 1.0):
        raise ApiError(422, "field 'diversity': must be a number in [0, 1] or 'auto'")
    return d


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "divrec_requests_total", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "divrec_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.events = Counter(
            "divrec_events_total", "feedback events", ["result"], registry=self.registry
        )
        # logged events skipped when applied (a bad stored value never breaks a user)
        self.registry.register(SkippedCollector())
        self.batch = Histogram(
            "divrec_recommend_batch_size",
            "requests answered together",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.compute = Histogram(
            "divrec_recommend_compute_seconds",
            "model time per batch of recommend requests",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.users = Gauge("divrec_users_with_events", "users in memory", registry=self.registry)
        self.ready = Gauge("divrec_ready", "1 when the model is loaded", registry=self.registry)


class _LimitsMiddleware:
    """Host check (400), body-size limit (413), body read timeout (408) and request
    metrics, as a plain ASGI middleware."""

    def __init__(
        self,
        app,
        max_body: int,
        metrics: _Metrics,
        endpoints: frozenset[str],
        body_timeout: float = 10.0,
        allowed_hosts: tuple[str, ...] = ("*",),
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.metrics = metrics
        # the metrics' endpoint label: the route's first path segment, "other" for paths no
        # route has (a client must not be able to create label values at will)
        self.endpoints = endpoints
        # labelled children resolved once per (endpoint, status): `labels()` takes a lock and
        # builds a key on every call
        self._counters: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    def _observe(self, endpoint: str, code: int, seconds: float) -> None:
        counter = self._counters.get((endpoint, code))
        if counter is None:
            counter = self.metrics.requests.labels(endpoint, str(code))
            self._counters[(endpoint, code)] = counter
        latency = self._latency.get(endpoint)
        if latency is None:
            latency = self._latency[endpoint] = self.metrics.latency.labels(endpoint)
        counter.inc()
        latency.observe(seconds)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "/")
        endpoint = "/" + path.strip("/").split("/")[0] if path != "/" else "/"
        if endpoint not in self.endpoints:
            endpoint = "other"
        start = time.perf_counter()
        status = [500]

        async def send_wrap(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        length = None
        chunked = False
        host = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1
            elif k == b"transfer-encoding":
                chunked = True
            elif k == b"host":
                host = v
        if not self.any_host and not self._host_ok(host):
            await _send_json(send_wrap, 400, "Host header not allowed (see --allowed-hosts)")
        elif length is not None and (length < 0 or length > self.max_body):
            await _send_json(send_wrap, 413, f"request body larger than {self.max_body} bytes")
        elif not chunked and (
            length == 0 or (length is None and scope.get("method") in ("GET", "HEAD"))
        ):
            # no body to read: nothing to count or time
            await self.app(scope, receive, send_wrap)
        else:
            seen = [0]
            deadline = time.monotonic() + self.body_timeout
            done = [False]

            async def receive_wrap():
                if done[0]:  # the body is read: later receives wait for the disconnect
                    return await receive()
                left = deadline - time.monotonic()
                try:  # (asyncio.timeout: no task per body chunk, as wait_for made)
                    async with asyncio.timeout(max(left, 0.001)):
                        message = await receive()
                except TimeoutError:
                    raise _BodyTimeout() from None
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        raise _TooLarge()
                    if not message.get("more_body", False):
                        done[0] = True
                return message

            started = [False]

            async def send_once(message):
                if message["type"] == "http.response.start":
                    started[0] = True
                await send_wrap(message)

            try:
                await self.app(scope, receive_wrap, send_once)
            except _TooLarge:
                if not started[0]:
                    await _send_json(
                        send_wrap, 413, f"request body larger than {self.max_body} bytes"
                    )
            except _BodyTimeout:
                if not started[0]:
                    await _send_json(
                        send_wrap, 408, f"request body not received within {self.body_timeout:g} s"
                    )
        self._observe(endpoint, status[0], time.perf_counter() - start)

    def _host_ok(self, host: bytes | None) -> bool:
        if host is None:
            return False
        name = host.decode("latin-1").strip().lower()
        if name.startswith("["):  # [::1]:8000
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":")[0]
        return name in self.allowed_hosts


class _TooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


def http_protocol(header_timeout: float):
    """A uvicorn h11 protocol class that closes a connection whose request headers are not
    complete `header_timeout` seconds after it opened (or after its last response).

    uvicorn's own ``timeout_keep_alive`` stops counting at the first byte of a request, so a
    client sending half a header line held its socket for ever.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer = None

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._header_expired)

        def _header_expired(self) -> None:
            self._header_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return HeaderTimeoutH11Protocol


def check_catalogue(bundle: ModelBundle, db: Path, current: ModelBundle | None = None) -> None:
    """Refuses a model whose catalogue does not match the items of the event log.

    Every logged item id must be an item of `bundle`; when `current` (the model served now)
    is given, each logged item must also have the same title in both (the same id naming
    another item would silently re-read the log as the new catalogue's items).

    Raises:
        ValueError: one line naming the problem.
    """
    logged = logged_item_ids(db)
    unknown = sorted(i for i in logged if i not in bundle.item_index)
    if unknown:
        raise ValueError(
            f"the event log {db} holds {len(unknown)} item id(s) this model does not know "
            f"(e.g. {', '.join(unknown[:5])}): it was written for another catalogue; "
            "serve this model with a new --db"
        )
    if current is not None:
        changed = sorted(
            i
            for i in logged
            if i in current.item_index
            and current.items[current.item_index[i]].get("title")
            != bundle.items[bundle.item_index[i]].get("title")
        )
        if changed:
            raise ValueError(
                f"{len(changed)} logged item id(s) name other items in this model "
                f"(e.g. {', '.join(changed[:5])}): it has another catalogue; "
                "serve it with a new --db"
            )


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Batching:
    """A queue of jobs and the task that answers them in batches of at most `limit` inputs,
    computed on the event loop thread (`inline`) or in the state's compute pool."""

    def __init__(self, state: _State, limit: int, inline: bool) -> None:
        self.state = state
        self.limit = limit
        self.inline = inline
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    @staticmethod
    async def _answer(call, jobs: list[tuple[list, asyncio.Future]]) -> None:
        """Answers each job (inputs, future) with its slice of one `call` over all inputs;
        if that call fails, each job is re-run alone, so one bad job never fails the
        others (the job that fails again gets its exception)."""
        try:
            res = await call([x for inputs, _ in jobs for x in inputs])
            start = 0
            for inputs, fut in jobs:
                if not fut.done():
                    fut.set_result(res[start : start + len(inputs)])
                start += len(inputs)
        except Exception:  # noqa: BLE001 - isolate the bad job(s) one by one
            for inputs, fut in jobs:
                try:
                    res = await call(inputs)
                    if not fut.done():
                        fut.set_result(res)
                except Exception as err:  # noqa: BLE001
                    if not fut.done():
                        fut.set_exception(err)


class _Batcher(_Batching):
    """Collects concurrent recommend requests and answers them as one batch."""

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        # the tasks of an idle server (its own, the lifespan's, this batcher's): one more is
        # a lone request
        self.idle_tasks = len(asyncio.all_tasks())

    async def submit(self, req: RecRequest) -> dict[str, Any]:
        if self.inline and self.queue.empty() and len(asyncio.all_tasks()) <= self.idle_tasks + 1:
            # a lone request (no other request task exists, none queued): answered here,
            # a batch of one without the two event-loop hand-overs of the queue (handler →
            # batcher task → handler); concurrent requests still go through the queue and
            # are answered together
            self.state.metrics.batch.observe(1)
            with self.state.metrics.compute.time():
                return self.state.service.recommend([req])[0]
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(([req], fut))
        return (await fut)[0]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.limit and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            service = self.state.service
            self.state.metrics.batch.observe(len(jobs))
            await self._answer(functools.partial(self._call, loop, service), jobs)
            await asyncio.sleep(0)  # let the loop read the requests that arrived meanwhile

    async def _call(self, loop, service: Service, reqs: list[RecRequest]):
        with self.state.metrics.compute.time():
            return await self._compute(loop, service, reqs)

    async def _compute(self, loop, service: Service, reqs: list[RecRequest]):
        if self.inline:
            # on the event loop thread: no GIL hand-over between the loop and a compute
            # thread (a contended GIL costs up to the 5 ms switch interval per hand-over)
            return service.recommend(reqs)
        return await loop.run_in_executor(self.state.pool, service.recommend, reqs)


class _RerankBatcher(_Batching):
    """Collects concurrent `/rerank` bodies and re-ranks their requests together (one
    stage call per method group, `run_rerank`); a batch that fails is re-run body by body,
    so one bad body never fails the others."""

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, cat: RerankCatalogue, items: list) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        self.start()
        fut = loop.create_future()
        await self.queue.put((cat, items, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][1])
            while size < self.limit and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                size += len(jobs[-1][1])
            for cat in {id(j[0]): j[0] for j in jobs}.values():
                mine = [(items, fut) for c, items, fut in jobs if c is cat]
                await self._answer(functools.partial(self._call, loop, cat), mine)
            await asyncio.sleep(0)  # let the loop read the requests that arrived meanwhile

    async def _call(self, loop, cat: RerankCatalogue, items: list):
        if self.inline:
            return run_rerank(cat, items)
        return await loop.run_in_executor(self.state.pool, run_rerank, cat, items)


class _State:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.metrics = _Metrics()
        self.pool = ThreadPoolExecutor(config.compute_threads, thread_name_prefix="divrec-compute")
        self.service: Service | None = None
        self.log: EventLog | None = None
        self.batcher: _Batcher | None = None
        self.reload_lock = asyncio.Lock()
        self.swap_lock = threading.Lock()
        self.limits = None
        self.catalogue: RerankCatalogue | None = None  # /rerank's (follows reloads)
        self.rerank_batcher = _RerankBatcher(
            self, config.max_rerank_batch, config.compute_threads == 1
        )

    def on_commit(self, events: list[Event]) -> None:
        with self.swap_lock:
            if self.service is not None:
                self.service.apply(events)

    def committer(self, log: EventLog):
        """`on_commit` for `log`: its events reach the service only while it is the log
        served (after a reload onto a new log, the old one's last commits do not)."""

        def on_commit(events: list[Event]) -> None:
            with self.swap_lock:
                if self.service is not None and self.log is log:
                    self.service.apply(events)

        return on_commit


def _thread_pools() -> list[dict[str, Any]]:
    """The native thread pools of the process and their sizes (threadpoolctl)."""
    import sys

    from threadpoolctl import threadpool_info

    pools = [
        {"library": Path(i["filepath"]).name, "api": i["internal_api"], "threads": i["num_threads"]}
        for i in threadpool_info()
    ]
    if "torch" in sys.modules:
        pools.append(
            {"library": "torch", "api": "torch", "threads": sys.modules["torch"].get_num_threads()}
        )
    return pools


def _limit_threads(n: int):
    """BLAS/OpenMP and torch held to 1 thread, so the process uses at most `n` compute
    threads (plus the event loop and the log writer, which mostly wait)."""
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(1)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    return limits


def _freeze_heap() -> None:
    """Moves every object alive now (the model, the replayed event state) out of the cyclic
    garbage collector's reach (`gc.freeze`).

    Without it every full collection walks the whole model: on ML-100K with iALS + DPP that
    was 11 pauses of up to 130 ms in 7,700 requests, the p99 of the service. Called after
    start-up and after each reload (after unfreezing, so the old model can be collected).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # a request allocates a few hundred short-lived containers: with the default young
    # generation of 700 objects a collection ran every few requests (~30 µs per request in
    # all); 10,000 cuts that by ~10x while a young collection stays well under a millisecond
    gc.set_threshold(10_000, 10, 10)


def _page() -> tuple[str, str]:
    """The demo page and its Content-Security-Policy (the inline script by its SHA-256)."""
    import base64
    import hashlib

    page = (_STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return page, csp


def _load_service(config: AppConfig, model_dir: Path, log: EventLog) -> Service:
    bundle = config.bundle if config.bundle is not None else ModelBundle.load(model_dir)
    config.bundle = None  # handed over once
    service = Service(bundle, config.settings)
    service.rebuild(log)
    # A/B arms: experiment.json of the model dir or config.experiment (divrec.serve.arms)
    attach_experiment(service, model_dir, log, config.experiment)
    service.warm_up()
    return service


def _load_catalogue(items: Path) -> RerankCatalogue:
    cat = RerankCatalogue.from_table(items)
    # every re-ranker's compiled kernels once, before the heap is frozen
    first = cat.item_ids[: min(20, cat.n_items)]
    doc = {
        "requests": [
            {"item_ids": first, "scores": [1.0] * len(first), "method": m, "k": 5}
            for m in cat.methods
        ]
    }
    reqs = parse_rerank(doc, cat, max_candidates=1000, max_batch=1000, max_k=100)
    run_rerank(cat, reqs)
    return cat


def _registered_rerankers() -> list[str]:
    from divrec import registry

    return registry.names("re-ranker")


def _json(raw: bytes):
    """The parsed body (400 malformed or nested too deeply)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed JSON body") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON body: nested too deeply") from None


async def _parse(request: Request, model, empty_ok: bool = False, precheck=None):
    """The JSON body validated against `model` (400 malformed, 422 invalid)."""
    from pydantic import ValidationError

    raw = await request.body()
    doc = _json(raw) if (raw.strip() or not empty_ok) else {}
    if precheck is not None:
        precheck(doc)
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None


# ---------------------------------------------------------------------------- the app
def create_app(config: AppConfig) -> FastAPI:
    """The FastAPI app; the model and the log are opened at startup (lifespan)."""
    from contextlib import asynccontextmanager

    state = _State(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.limits = _limit_threads(config.compute_threads)
        loop = asyncio.get_running_loop()
        if config.items is not None:  # re-rank-only mode: no model, no event log
            state.catalogue = await loop.run_in_executor(state.pool, _load_catalogue, config.items)
        else:
            state.log = EventLog(config.db)
            state.log.on_commit = state.committer(state.log)
            state.service = await loop.run_in_executor(
                state.pool, _load_service, config, config.model_dir, state.log
            )
        # again now that the model has loaded every BLAS library it uses (threadpoolctl only
        # limits libraries already loaded)
        state.limits = _limit_threads(config.compute_threads)
        if config.items is None:
            state.batcher = _Batcher(state, config.max_recommend_batch, config.compute_threads == 1)
            state.rerank_batcher.start()  # before the recommend batcher counts the idle tasks
            state.batcher.start()
        _freeze_heap()
        state.metrics.ready.set(1)
        try:
            yield
        finally:
            state.metrics.ready.set(0)
            for batcher in (state.batcher, state.rerank_batcher):
                if batcher is not None and batcher.task is not None:
                    batcher.task.cancel()
            if state.log is not None:
                state.log.close()
            state.pool.shutdown(wait=False)

    app = FastAPI(
        title="divrec", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.divrec = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        status, msg = _validation_message(exc)
        return JSONResponse({"error": msg}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else "request error"
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no such endpoint: {request.url.path}"
        return JSONResponse({"error": msg}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        return JSONResponse({"error": "internal error"}, status_code=500)

    async def require_key(request: Request) -> None:
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            raise ApiError(401, "missing API key (send it in the X-API-Key header)")
        if not hmac.compare_digest(given.encode(), str(config.api_key).encode()):
            raise ApiError(403, "invalid API key")

    async def maybe_key(request: Request) -> None:
        if config.auth_all:
            await require_key(request)

    async def user_data_key(request: Request) -> None:
        if config.auth_all or not config.open_user_data:
            await require_key(request)

    def has_key(request: Request) -> bool:
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(given.encode(), str(config.api_key).encode())

    def check_seed(seed: int | None) -> int | None:
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ApiError(422, f"field 'seed': must be an integer in [0, {MAX_SEED}]")
        return seed

    def service() -> Service:
        if state.service is None:
            if config.items is not None:
                raise ApiError(
                    404,
                    "no model: this service runs in re-rank-only mode (--items); use POST /rerank",
                )
            raise ApiError(503, "model not loaded yet")
        return state.service

    def catalogue() -> RerankCatalogue:
        cat = state.catalogue
        if config.items is not None:
            if cat is None:
                raise ApiError(503, "item table not loaded yet")
            return cat
        svc = service()
        if cat is None or cat.bundle is not svc.bundle:  # first call or after a reload
            cat = state.catalogue = RerankCatalogue.from_bundle(svc.bundle)
        return cat

    def check_n(n: int) -> int:
        if not 1 <= n <= config.max_n:
            raise ApiError(422, f"field 'n': must be in [1, {config.max_n}]")
        return n

    def check_explore(explore: float) -> float:
        if not (math.isfinite(explore) and 0.0 <= explore <= 100.0):
            raise ApiError(422, "field 'explore': must be a temperature in [0, 100]")
        return float(explore)

    def check_method(svc: Service, method: str | None) -> str | None:
        if method is not None and method != "none" and method not in svc.bundle.rerankers:
            if method in _registered_rerankers() and serve_method(svc, method):
                return method
            raise ApiError(
                422, f"field 'method': unknown method {method!r}; known: {', '.join(svc.methods)}"
            )
        return method

    def serve_method(svc: Service, method: str) -> bool:
        """Adds a registered re-ranker the model directory has not (``calibrated``,
        ``fair``, ``pdpp``, …) to the served methods: the `/rerank` catalogue's one, fitted
        with its defaults on the model's training matrix, behind the model's fitted
        retriever and ranker (and the cold start), as the bundle's own methods are.

        Returns:
            False when it cannot be fitted on this model (the 422 names the method).
        """
        from divrec.serve.model_dir import share_fitted

        cat = catalogue()
        if not cat.ensure(method):
            return False
        rr = cat.rerankers[method]
        b = svc.bundle
        p = b.pipeline
        n, ui = p.n_candidates, p.user_items_
        b.pipelines[method] = share_fitted(
            p.retriever, rr, n, ui, p.ranker, getattr(p, "item_vectors", None)
        )
        b.cold_start[method] = share_fitted(b.cold_start["none"].retriever, rr, n, ui)
        b.rerankers[method] = rr
        return True

    async def prefit(methods) -> None:
        """Fits registered re-rankers a request names and the catalogue has not fitted yet,
        in a worker thread (the event loop keeps answering); a no-op for fitted ones."""
        svc = state.service
        cat = state.catalogue
        for m in methods:
            if type(m) is not str or (svc is not None and m in svc.bundle.rerankers):
                continue
            if cat is None or cat.bundle is not (svc.bundle if svc else None):
                cat = catalogue()
            if cat.pending(m):
                await asyncio.get_running_loop().run_in_executor(None, cat.ensure, m)

    def with_rules(req: RecRequest, src, from_query: bool = False) -> RecRequest:
        """`req` with its constraints (external ids and category names, mapped to the
        served re-rankers' indices) and `explain` flag; 422 naming the field."""
        if from_query:
            value = src.get("explain", "false").lower()
            if value not in ("true", "false", "1", "0"):
                raise ApiError(422, "field 'explain': must be true or false")
            explain = value in ("true", "1")
        else:
            explain = bool(src["explain"])
        try:
            if from_query:
                rules = constraints_from_query(src, catalogue(), req.n)
            else:
                rules = constraints_from_json(src["constraints"], "constraints", catalogue(), req.n)
        except RerankError as err:
            raise ApiError(err.status, str(err)) from None
        if req.explore > 0 and (rules is not None or explain):
            raise ApiError(
                422, "field 'explore': a sampled list cannot keep constraints or explanations"
            )
        return replace(req, constraints=rules, explain=explain)

    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(state.pool, fn, *args)

    async def answer(req: RecRequest) -> Response:
        try:
            res = await state.batcher.submit(req)
        except ValueError as err:
            if req.constraints is not None:  # infeasible: the rule, in names
                msg = library_message(err, catalogue())
                raise ApiError(422, f"field 'constraints': {msg}") from None
            raise ApiError(422, str(err).splitlines()[0]) from None
        if "arm" in res and state.service.router is not None:  # A/B: logged before answering
            imp = impression_of(res, state.service.router.experiment.name, time.time())
            if not state.log.write_impressions_now([imp]):  # writer busy: its group commit
                await asyncio.wrap_future(state.log.submit_impressions([imp]))
        # orjson: the answer (~1.5 KB at n=10) serializes ~10x faster than with json.dumps
        return Response(orjson.dumps(res), media_type="application/json")

    # ------------------------------------------------------------------ routes
    page, page_csp = _page()

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={**_PAGE_HEADERS, "content-security-policy": page_csp})

    @app.get("/health/live")
    async def live():
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready(request: Request):
        if config.items is not None:  # re-rank-only mode
            cat = state.catalogue
            if cat is None:
                return JSONResponse({"status": "loading"}, status_code=503)
            return {
                "status": "ready",
                "mode": "rerank-only",
                **({"items_file": cat.source} if has_key(request) else {}),
                "n_items": cat.n_items,
                "vector_dim": cat.dim,
                "methods": cat.methods,
                "default_method": cat.default_method,
                "workers": 1,
                "compute_threads": config.compute_threads,
            }
        if state.service is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        svc = state.service
        private = {}
        if has_key(request):  # paths and user ids only for a caller holding the key
            private = {"model_dir": str(svc.bundle.path), "sample_users": svc.bundle.user_ids[:50]}
        return {
            "status": "ready",
            **private,
            "fingerprint": svc.bundle.manifest["data"]["fingerprint"],
            "n_users": len(svc.bundle.user_ids),
            "n_items": svc.bundle.n_items,
            "methods": svc.methods,
            "default_method": svc.bundle.default_method,
            "events_applied": svc.n_applied,
            "workers": 1,
            "compute_threads": config.compute_threads,
            "blas_threads_per_compute_thread": 1,
            "thread_pools": _thread_pools(),
            "cores": os.cpu_count(),
        }

    @app.get("/metrics")
    async def metrics():
        if state.service is not None:
            state.metrics.users.set(len(state.service.users))
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def recommend(request: Request):
        # the hot path is a plain Starlette route (added first, below): no FastAPI
        # dependency solving per request; the API key is checked inline and the query
        # parameters are parsed by hand (same rules and messages as the other endpoints)
        await maybe_key(request)
        svc = service()
        q = request.query_params
        if "method" in q and q["method"] not in svc.bundle.rerankers:
            await prefit([q["method"]])
        req = RecRequest(
            user_id=_check_id(request.path_params["user_id"], "user_id"),
            n=check_n(_q_number(q, "n", 10, int)),
            diversity=_parse_diversity(q.get("diversity")),
            method=check_method(svc, q.get("method")),
            explore=check_explore(_q_number(q, "explore", 0.0, float)),
            seed=check_seed(_q_number(q, "seed", None, int)),
            arm=q.get("arm"),
        )
        if any(key in q for key in _RULE_PARAMS):  # constraints and explain=true
            req = with_rules(req, q, from_query=True)
        if req.arm is not None:  # A/B: forcing an arm needs the key
            bad = forced_arm_error(svc.router, req.arm, has_key(request))
            if bad is not None:
                raise ApiError(*bad)
        return await answer(req)

    @app.post("/recommend", dependencies=[Depends(maybe_key)])
    async def recommend_history(request: Request):
        svc = service()

        def cap(doc) -> None:  # before validation: a long history costs to validate
            if isinstance(doc, dict) and isinstance(doc.get("history"), list):
                if len(doc["history"]) > config.max_history:
                    raise ApiError(
                        413, f"field 'history': at most {config.max_history} items per request"
                    )

        body = await _parse(request, RecommendIn, precheck=cap)
        await prefit([body.method])
        ids = [str(i) for i in body.history]
        bad = [i for i in ids if i not in svc.bundle.item_index]
        if bad:
            raise ApiError(
                422, f"field 'history': unknown item ids: {', '.join(bad[:20])}", unknown_items=bad
            )
        if isinstance(body.diversity, int | float) and not (
            math.isfinite(body.diversity) and 0 <= body.diversity <= 1
        ):
            raise ApiError(422, "field 'diversity': must be a number in [0, 1] or 'auto'")
        req = RecRequest(
            user_id=None,
            n=check_n(body.n),
            diversity=None
            if body.diversity is None
            else ("auto" if body.diversity == "auto" else float(body.diversity)),
            method=check_method(svc, body.method),
            explore=check_explore(float(body.explore)),
            history=tuple(svc.bundle.item_index[i] for i in ids),
            seed=check_seed(body.seed),
        )
        if body.constraints is not None or body.explain:
            req = with_rules(req, {"constraints": body.constraints, "explain": body.explain})
        return await answer(req)

    async def rerank(request: Request):
        # a plain Starlette route (added first, below), as GET /recommend: no FastAPI
        # dependency solving per request; the key is checked inline
        await maybe_key(request)
        cat = catalogue()
        svc = state.service
        raw = await request.body()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = _json(raw)  # NaN / Infinity literals, too-large numbers: checked below
        if isinstance(doc, dict) and isinstance(doc.get("requests"), list):
            wanted = [r.get("method") for r in doc["requests"][:1000] if isinstance(r, dict)]
            await prefit({m for m in wanted if type(m) is str})
        try:
            items = parse_rerank(
                doc,
                cat,
                max_candidates=config.max_candidates,
                max_batch=config.max_rerank_batch,
                max_k=config.max_n,
                max_history=config.max_history,
                default_diversity=config.settings.default_diversity,
                theta=None if svc is None else svc.theta,
            )
        except RerankError as err:
            raise ApiError(err.status, str(err)) from None
        try:  # concurrent bodies are re-ranked together, as recommend requests are
            res = await state.rerank_batcher.submit(cat, items)
        except RerankError as err:  # an infeasible constraint, naming its request
            raise ApiError(err.status, str(err)) from None
        except ValueError as err:
            raise ApiError(422, f"field 'requests': {str(err).splitlines()[0]}") from None
        return Response(orjson.dumps({"results": res}), media_type="application/json")

    @app.post("/feedback", dependencies=[Depends(require_key)])
    async def feedback(request: Request):
        svc = service()
        doc = _json(await request.body())
        if isinstance(doc, dict) and isinstance(doc.get("events"), list):
            if len(doc["events"]) > config.max_batch:
                raise ApiError(
                    413, f"field 'events': at most {config.max_batch} events per request"
                )
        try:
            body = FeedbackIn.model_validate(doc)
        except Exception as err:  # pydantic.ValidationError
            raise RequestValidationError(err.errors()) from None
        if not body.events:
            raise ApiError(422, "field 'events': empty batch")
        now = time.time()
        events = []
        bad = []
        for k, e in enumerate(body.events):
            item = str(e.item_id)
            if item not in svc.bundle.item_index:
                bad.append(item)
            if e.value is not None and not math.isfinite(float(e.value)):
                raise ApiError(422, f"field 'events.{k}.value': must be finite")
            if e.type == "rating" and e.value is None:
                raise ApiError(422, f"field 'events.{k}.value': a rating needs a value")
            ts = now if e.timestamp is None else float(e.timestamp)
            if not (math.isfinite(ts) and 0 <= ts <= now + 86400.0):
                # (a far-future time would freeze the propensity tracker's clock)
                raise ApiError(
                    422, f"field 'events.{k}.timestamp': must be a Unix time, at most 1 day ahead"
                )
            event = Event(
                e.event_id,
                str(e.user_id),
                item,
                e.type,
                None if e.value is None else float(e.value),
                ts,
            )
            try:  # the door: finite and within the configured range of its type
                svc.check_event(event, k)
            except ValueError as err:
                raise ApiError(422, str(err).splitlines()[0]) from None
            events.append(event)
        if bad:
            uniq = sorted(set(bad))
            raise ApiError(
                422,
                f"field 'events': unknown item ids: {', '.join(uniq[:20])}",
                unknown_items=uniq,
            )
        try:
            flags = await asyncio.wrap_future(state.log.submit(events))
        except EventConflict as err:  # nothing of the batch was stored
            raise ApiError(409, f"field 'events': {err}", event_id=err.event_id) from None
        n_new = sum(flags)
        state.metrics.events.labels("stored").inc(n_new)
        state.metrics.events.labels("duplicate").inc(len(flags) - n_new)
        return {
            "accepted": n_new,
            "duplicates": len(flags) - n_new,
            "results": [
                {"event_id": e.event_id, "status": "stored" if f else "duplicate"}
                for e, f in zip(events, flags, strict=True)
            ],
        }

    def known_item(item_id: str) -> tuple[Service, int]:
        """The service and the index of a catalogue item (404 for an unknown one)."""
        svc = service()
        _check_id(item_id, "item_id")
        idx = svc.bundle.item_index.get(item_id)
        if idx is None:
            raise ApiError(404, f"unknown item {item_id!r}")
        return svc, idx

    @app.get("/similar/{item_id}", dependencies=[Depends(maybe_key)])
    async def similar(item_id: str, n: int = 10):
        svc, idx = known_item(item_id)
        items = await run(svc.similar, idx, check_n(n))
        return {"item_id": item_id, "items": items}

    @app.get("/potential-users/{item_id}", dependencies=[Depends(maybe_key)])
    async def potential_users(item_id: str, n: int = 10):
        svc, idx = known_item(item_id)
        try:
            users = await run(svc.potential_users, idx, check_n(n))
        except LookupError as err:
            raise ApiError(501, str(err)) from None
        return {"item_id": item_id, "users": users}

    @app.get("/users/{user_id}/history", dependencies=[Depends(user_data_key)])
    async def history(user_id: str, limit: int = 200):
        svc = service()
        _check_id(user_id, "user_id")
        if not 1 <= limit <= 10_000:
            raise ApiError(422, "field 'limit': must be in [1, 10000]")

        def read():
            evs = read_user_history(config.db, user_id, limit)
            return [
                {
                    "event_id": e.event_id,
                    "item_id": e.item_id,
                    "type": e.type,
                    "value": e.value,
                    "timestamp": e.timestamp,
                }
                for e in evs
            ]

        events = await run(read)
        known = user_id in svc.bundle.user_index
        if not known and not events:
            raise ApiError(404, f"unknown user {user_id!r}")
        return {
            "user_id": user_id,
            "known_user": known,
            "training_items": svc.training_items(user_id),
            "events": events,
        }

    @app.post("/admin/reload", dependencies=[Depends(require_key)])
    async def reload(request: Request):
        service()  # re-rank-only mode: nothing to reload (404)
        body = await _parse(request, ReloadIn, empty_ok=True)
        target = Path(body.model_dir) if body.model_dir else config.model_dir
        if body.new_db is not None:
            return await reload_new_log(target, Path(body.new_db))
        async with state.reload_lock:
            loop = asyncio.get_running_loop()
            # a separate pool: requests keep being answered by the old model meanwhile
            try:
                bundle = await loop.run_in_executor(None, ModelBundle.load, target)
            except (ValueError, OSError) as err:
                raise ApiError(422, f"model_dir: {str(err).splitlines()[0]}") from None
            try:
                await loop.run_in_executor(
                    None, check_catalogue, bundle, Path(config.db), state.service.bundle
                )
            except ValueError as err:
                raise ApiError(
                    409,
                    f'model_dir: {str(err).splitlines()[0]} (or reload with "new_db")',
                ) from None
            config.bundle = bundle
            try:
                new = await loop.run_in_executor(None, _load_service, config, target, state.log)
            except (ValueError, OSError, KeyError) as err:
                config.bundle = None
                raise ApiError(422, f"model_dir: {str(err).splitlines()[0]}") from None
            # events committed during the load are replayed, then the new model takes over
            # (apply skips what it has seen, so an event is never applied twice)
            with state.swap_lock:
                new.rebuild(state.log)
                state.service = new
            config.model_dir = target
            _freeze_heap()
        return {
            "status": "reloaded",
            "model_dir": str(target),
            "fingerprint": new.bundle.manifest["data"]["fingerprint"],
            "events_applied": new.n_applied,
        }

    async def reload_new_log(target: Path, new_db: Path):
        """Reload onto a new, empty event log `new_db` (another catalogue's model)."""
        from divrec.serve.events import DbLock, LockedError

        if new_db.exists() or str(new_db.absolute()) == str(Path(config.db).absolute()):
            raise ApiError(422, f"field 'new_db': {new_db} exists (a new log must be a new file)")
        parent = new_db.parent if str(new_db.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ApiError(422, f"field 'new_db': folder {parent} is not writable")
        async with state.reload_lock:
            loop = asyncio.get_running_loop()
            try:
                bundle = await loop.run_in_executor(None, ModelBundle.load, target)
            except (ValueError, OSError) as err:
                raise ApiError(422, f"model_dir: {str(err).splitlines()[0]}") from None
            lock = DbLock(new_db)
            try:
                lock.acquire()
            except (LockedError, OSError) as err:
                raise ApiError(409, f"field 'new_db': {str(err).splitlines()[0]}") from None
            try:
                log = await loop.run_in_executor(None, EventLog, new_db)
                log.on_commit = state.committer(log)
                config.bundle = bundle
                new = await loop.run_in_executor(None, _load_service, config, target, log)
            except (ValueError, OSError, KeyError) as err:
                config.bundle = None
                lock.release()
                raise ApiError(422, f"model_dir: {str(err).splitlines()[0]}") from None
            old_log, old_lock = state.log, config.lock
            with state.swap_lock:
                state.service = new
                state.log = log
            config.db, config.model_dir, config.lock = new_db, target, lock
            await loop.run_in_executor(None, old_log.close)  # what was queued is committed
            if old_lock is not None:
                old_lock.release()
            _freeze_heap()
        return {
            "status": "reloaded",
            "model_dir": str(target),
            "db": str(new_db),
            "fingerprint": new.bundle.manifest["data"]["fingerprint"],
            "events_applied": new.n_applied,
        }

    app.router.routes.insert(0, Route("/recommend/{user_id}", recommend, methods=["GET"]))
    app.router.routes.insert(0, Route("/rerank", rerank, methods=["POST"]))
    endpoints = frozenset("/" + r.path.strip("/").split("/")[0] for r in app.router.routes)
    app.add_middleware(
        _LimitsMiddleware,
        max_body=config.max_body,
        metrics=state.metrics,
        endpoints=endpoints,
        body_timeout=config.body_timeout,
        allowed_hosts=tuple(config.allowed_hosts),
    )
    return app
