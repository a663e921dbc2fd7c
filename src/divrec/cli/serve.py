"""`divrec train` and `divrec serve`: the service's two commands.

Registered on the main app by `register(app)`; this module imports nothing heavy at import
time (the model stack and FastAPI are imported inside the commands).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from divrec.cli._common import fail, guarded

__all__ = ["register", "serve", "train"]


def train(
    config: Annotated[Path, typer.Argument(help="Config file (.toml or .json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")] = Path(
        "model"
    ),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing directory.")] = False,
    data_home: Annotated[
        Path | None, typer.Option("--data-home", help="Data home (default: $DIVREC_DATA_HOME).")
    ] = None,
) -> None:
    """Fit the pipeline a config describes and write a model directory for `divrec serve`."""
    import json

    from divrec.serve.config import load_config
    from divrec.serve.model_dir import train_model_dir

    cfg = load_config(config)
    manifest = train_model_dir(cfg, out, data_home, progress=sys.stderr.isatty(), force=force)
    data = manifest["data"]
    typer.echo(
        f"wrote {out}: {data['n_users']:,} users, {data['n_items']:,} items, "
        f"{data['n_interactions']:,} interactions; methods "
        f"{', '.join(manifest['methods'])} (default {manifest['default_method']})"
    )
    typer.echo(json.dumps({"fingerprint": data["fingerprint"]}))


def serve(
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", "-m", help="Model directory from `divrec train`."),
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option(
            "--items",
            help="Re-rank-only mode: an item table (CSV/TSV: item_id, categories, optional "
            "v0..v<d-1> vector columns) instead of a model; only POST /rerank answers.",
        ),
    ] = None,
    max_candidates: Annotated[
        int, typer.Option(help="Most candidates in one /rerank request.")
    ] = 1000,
    db: Annotated[Path, typer.Option("--db", help="SQLite event log.")] = Path("events.sqlite"),
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="File holding the API key for /feedback and /admin (else $DIVREC_API_KEY; "
            "else a random key, printed at start).",
        ),
    ] = None,
    auth_all: Annotated[
        bool, typer.Option("--auth-all", help="Require the API key on every endpoint.")
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", help="Model compute threads (1 BLAS thread each).")
    ] = 1,
    max_body: Annotated[int, typer.Option(help="Largest request body, bytes.")] = 1 << 20,
    max_batch: Annotated[int, typer.Option(help="Most events per /feedback request.")] = 1000,
    writeback: Annotated[
        float, typer.Option("--writeback", help="Exclude served items for this many seconds.")
    ] = 0.0,
    like_threshold: Annotated[
        float, typer.Option(help="A rating at least this counts as a positive.")
    ] = 4.0,
    default_diversity: Annotated[
        str, typer.Option(help="Diversity when a request gives none: 0..1 or auto.")
    ] = "auto",
    max_users: Annotated[
        int, typer.Option(help="Users kept in memory; the least recently active are evicted.")
    ] = 200_000,
    user_ttl: Annotated[
        float, typer.Option(help="Evict a user idle this many seconds (0: never).")
    ] = 0.0,
    tracker_clock: Annotated[
        str,
        typer.Option(
            help="The propensity tracker's clock: request (time of the request) or event."
        ),
    ] = "request",
    open_user_data: Annotated[
        bool,
        typer.Option("--open-user-data", help="Serve /users/{user}/history without the API key."),
    ] = False,
    max_history: Annotated[
        int, typer.Option(help="Most item ids in an anonymous request's history.")
    ] = 1000,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds to receive a whole request body (408 after).")
    ] = 10.0,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds to receive a request's headers (the connection is closed)."),
    ] = 10.0,
    allowed_hosts: Annotated[
        str,
        typer.Option(
            help="Comma-separated Host header names answered ('*': any); default: "
            "127.0.0.1, localhost, ::1 and the --host address."
        ),
    ] = "",
) -> None:
    """Serve a model directory over HTTP (FastAPI + uvicorn; needs the `serve` extra)."""
    # 1 BLAS/OpenMP thread per compute thread: for libraries loaded from now on (those
    # already loaded are limited by threadpoolctl when the app starts)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import uvicorn  # noqa: F401 - the extra is checked before anything starts

        from divrec.serve.app import AppConfig, create_app
        from divrec.serve.service import ServeSettings
    except ImportError as err:
        fail(f"divrec serve needs the serve extra (pip install 'divrec[serve]'): {err}")
    from divrec.serve.app import check_catalogue
    from divrec.serve.events import DbLock, LockedError
    from divrec.serve.model_dir import ModelBundle

    if (model_dir is None) == (items is None):
        raise ValueError("give either --model-dir (a trained model) or --items (re-rank only)")
    if not 1 <= max_candidates <= 100_000:
        raise ValueError(f"--max-candidates must be in [1, 100000], got {max_candidates}")
    if items is not None:
        return _serve_items(
            items,
            host,
            port,
            api_key_file,
            auth_all,
            threads,
            max_body,
            body_timeout,
            header_timeout,
            allowed_hosts,
            max_candidates,
            default_diversity,
        )
    if not (model_dir / "manifest.json").is_file():
        raise ValueError(f"--model-dir {model_dir}: not a model directory (no manifest.json)")
    div = _check_common(threads, port, default_diversity, body_timeout, header_timeout, max_body)
    if max_history < 1:
        raise ValueError(f"--max-history must be at least 1, got {max_history}")
    if max_batch < 1:
        raise ValueError(f"--max-batch must be at least 1, got {max_batch}")
    if not math.isfinite(like_threshold):
        raise ValueError(f"--like-threshold must be a finite number, got {like_threshold}")
    if not (math.isfinite(writeback) and writeback >= 0):
        raise ValueError(f"--writeback must be a finite number of seconds >= 0, got {writeback}")
    if max_users < 1:
        raise ValueError(f"--max-users must be at least 1, got {max_users}")
    if not (math.isfinite(user_ttl) and user_ttl >= 0):
        raise ValueError(f"--user-ttl must be a finite number of seconds >= 0, got {user_ttl}")
    if tracker_clock not in ("request", "event"):
        raise ValueError(f"--tracker-clock must be request or event, got {tracker_clock!r}")
    hosts = _allowed_hosts(allowed_hosts, host)
    key = _api_key(api_key_file)
    # everything is opened and checked before the server starts: a bad model directory or
    # event log is one line and exit 2, and nothing is created
    try:
        bundle = ModelBundle.load(model_dir)
    except ValueError as err:
        raise ValueError(f"--model-dir: {err}") from None
    _check_db(db)
    try:
        check_catalogue(bundle, db)
    except ValueError as err:
        raise ValueError(f"--db {db}: {err}") from None
    from divrec.serve.arms import check_experiment

    try:
        check_experiment(model_dir, bundle, db)
    except ValueError as err:
        raise ValueError(f"--model-dir: {err}") from None
    lock = DbLock(db)
    try:
        lock.acquire()
    except LockedError as err:
        fail(str(err))
    settings = ServeSettings(
        like_threshold=like_threshold,
        writeback_seconds=writeback,
        default_diversity=div,
        max_users=max_users,
        user_ttl_seconds=user_ttl,
        tracker_clock=tracker_clock,
    )
    config = AppConfig(
        model_dir=model_dir,
        db=db,
        api_key=key,
        auth_all=auth_all,
        open_user_data=open_user_data,
        max_history=max_history,
        body_timeout=body_timeout,
        allowed_hosts=tuple(hosts),
        bundle=bundle,
        lock=lock,
        max_body=max_body,
        max_batch=max_batch,
        compute_threads=threads,
        settings=settings,
        max_candidates=max_candidates,
    )
    app = create_app(config)
    url = f"http://{host}:{port}/"
    if config.generated_key:
        # the key goes to a file only the owner reads, never to the terminal or a log
        key_file = Path(str(db) + ".key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(config.api_key) + "\n")
        typer.echo(f"divrec: API key for this run written to {key_file} (mode 0600)", err=True)
    typer.echo(
        f"divrec: serving {model_dir} on {url} (demo page: {url}, it asks for the API key), "
        f"1 worker x {threads} compute thread(s), 1 BLAS thread each",
        err=True,
    )
    try:
        _run(app, host, port, header_timeout)
    finally:
        config.lock.release()  # the log served last (a reload may have moved to a new one)


def _check_common(
    threads: int,
    port: int,
    default_diversity: str,
    body_timeout: float,
    header_timeout: float,
    max_body: int,
) -> float | str:
    """The options both modes take; returns `--default-diversity` as served (0..1 or auto)."""
    cores = os.cpu_count() or 1
    if not 1 <= threads <= cores:
        raise ValueError(f"--threads must be in [1, {cores}] (the cores), got {threads}")
    if not 0 < port < 65536:
        raise ValueError(f"--port must be in [1, 65535], got {port}")
    div: float | str = "auto"
    if default_diversity != "auto":
        try:
            div = float(default_diversity)
        except ValueError:
            raise ValueError("--default-diversity must be 0..1 or auto") from None
        if not 0 <= div <= 1:
            raise ValueError("--default-diversity must be 0..1 or auto")
    for name, value in (("--body-timeout", body_timeout), ("--header-timeout", header_timeout)):
        if not 0 < value <= 3600:
            raise ValueError(f"{name} must be in (0, 3600] seconds, got {value}")
    if max_body < 1:
        raise ValueError(f"--max-body must be at least 1 byte, got {max_body}")
    return div


def _allowed_hosts(allowed_hosts: str, host: str) -> list[str]:
    """`--allowed-hosts` as a list; default: the loopback names and the --host address."""
    hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    if not hosts:
        hosts = ["127.0.0.1", "localhost", "::1"]
        if host not in ("0.0.0.0", "::", ""):
            hosts.append(host)
    return hosts


def _run(app, host: str, port: int, header_timeout: float) -> None:
    """uvicorn with the service's settings: 1 worker, no access log, bounded headers."""
    import uvicorn

    from divrec.serve.app import http_protocol

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        workers=1,
        http=http_protocol(header_timeout),
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,
    )


def _api_key(api_key_file: Path | None) -> str | None:
    key = os.environ.get("DIVREC_API_KEY") or None
    if api_key_file is not None:
        try:
            key = api_key_file.read_text().strip()
        except OSError as err:
            raise ValueError(f"--api-key-file: {str(err).splitlines()[0]}") from None
        if not key:
            raise ValueError(f"--api-key-file {api_key_file} is empty")
    return key


def _serve_items(
    items: Path,
    host: str,
    port: int,
    api_key_file: Path | None,
    auth_all: bool,
    threads: int,
    max_body: int,
    body_timeout: float,
    header_timeout: float,
    allowed_hosts: str,
    max_candidates: int,
    default_diversity: str,
) -> None:
    """Re-rank-only mode: `POST /rerank` over an item table, no model and no event log."""
    from divrec.serve.app import AppConfig, create_app
    from divrec.serve.rerank import RerankCatalogue
    from divrec.serve.service import ServeSettings

    div = _check_common(threads, port, default_diversity, body_timeout, header_timeout, max_body)
    if not items.is_file():
        raise ValueError(f"--items {items}: no such file")
    key = _api_key(api_key_file)
    if auth_all and key is None:
        raise ValueError("--auth-all needs a key ($DIVREC_API_KEY or --api-key-file)")
    try:  # checked (and thrown away) before the server starts: a bad table is exit 2
        RerankCatalogue.from_table(items)
    except ValueError as err:
        raise ValueError(f"--items: {str(err).splitlines()[0]}") from None
    hosts = _allowed_hosts(allowed_hosts, host)
    config = AppConfig(
        model_dir=None,
        db=Path(os.devnull),
        api_key=key,
        auth_all=auth_all,
        body_timeout=body_timeout,
        allowed_hosts=tuple(hosts),
        max_body=max_body,
        compute_threads=threads,
        settings=ServeSettings(default_diversity=div),
        items=items,
        max_candidates=max_candidates,
    )
    app = create_app(config)
    typer.echo(
        f"divrec: re-rank-only service of {items} on http://{host}:{port}/ (POST /rerank), "
        f"1 worker x {threads} compute thread(s)",
        err=True,
    )
    _run(app, host, port, header_timeout)


def _check_db(db: Path) -> None:
    """Checks `--db` without creating or changing anything.

    An existing file must be a SQLite database holding this divrec's event table (opened
    read-only); a new one needs a writable folder.

    Raises:
        ValueError: one line naming `--db` and the problem.
    """
    import sqlite3

    from divrec.serve.events import SCHEMA_VERSION

    if db.is_dir():
        raise ValueError(f"--db {db}: is a directory")
    if not db.exists():
        parent = db.parent if str(db.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"--db {db}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ValueError(f"--db {db}: folder {parent} is not writable")
        return
    try:
        conn = sqlite3.connect(f"file:{db.absolute()}?mode=ro", uri=True)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise ValueError(f"--db {db}: not a divrec event log ({err})") from None
    if tables and "events" not in tables:
        raise ValueError(f"--db {db}: a SQLite database without an events table")
    if "events" in tables and version != SCHEMA_VERSION:
        raise ValueError(
            f"--db {db}: event log schema version {version}, this divrec reads {SCHEMA_VERSION}"
        )


def register(app: typer.Typer) -> None:
    """Adds `train` and `serve` to the main `divrec` app."""
    app.command("train")(guarded(train))
    app.command("serve")(guarded(serve))
