"""`divrec serve` as a child process on 127.0.0.1, for integration and load tests of a client
against the real service: start it at a free port, wait until it answers, stop it by PID.

divrec's own service tests and serve benchmarks run their servers with it::

    from divrec.serve.local import LocalServer, child_env, synthetic_config, train_model

    (tmp / "config.toml").write_text(synthetic_config(n_users=200, n_items=300, n_topics=8))
    model = train_model(tmp / "config.toml", tmp / "model")
    with LocalServer(model, tmp / "events.sqlite", env=child_env(api_key="k" * 16)) as srv:
        httpx.get(srv.url + "/recommend/0").raise_for_status()

Everything runs the real command line (`python -m divrec.cli.main ...`) in a child process
of this Python; nothing here imports the service itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import divrec

__all__ = [
    "LocalServer",
    "child_env",
    "free_port",
    "stop_process",
    "synthetic_config",
    "train_model",
    "wait_ready",
]

HOST = "127.0.0.1"
# the folder that holds the `divrec` package (a checkout's src/), first on a child's path
SRC = Path(divrec.__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def child_env(
    api_key: str | None = None, src: str | Path | None = None, path: Iterable[str | Path] = ()
) -> dict[str, str]:
    """This process's environment for a child: `src` (default: this divrec's) and `path`
    first on PYTHONPATH, `DIVREC_API_KEY` set when `api_key` is given, 1 OpenMP thread."""
    e = dict(os.environ)
    first = [str(src or SRC), *(str(p) for p in path)]
    e["PYTHONPATH"] = os.pathsep.join([*first, e.get("PYTHONPATH", "")])
    if api_key is not None:
        e["DIVREC_API_KEY"] = api_key
    e["OMP_NUM_THREADS"] = "1"
    return e


def wait_ready(
    url: str, alive: Callable[[], bool], timeout: float = 60.0, path: str = "/health/ready"
) -> None:
    """Polls `GET url + path` until it answers 200; `RuntimeError` as soon as `alive()` is
    false (the process exited), `TimeoutError` after `timeout` seconds."""
    import httpx

    deadline = time.time() + timeout
    with httpx.Client(timeout=2) as client:
        while time.time() < deadline:
            if not alive():
                raise RuntimeError(f"server process exited during start ({url})")
            try:
                if client.get(url + path).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"server did not become ready in {timeout:g} s ({url})")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the process by PID, SIGKILL if it has not exited after `timeout` s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


class LocalServer:
    """`divrec serve --model-dir MODEL --db DB --port PORT *args` on 127.0.0.1 at a free port,
    ready when the constructor returns (`startup_s`: process start → ready).

    The child's stderr goes to a temporary file (its tail is in the error of a failed
    start), so a long run never blocks on a full pipe. `stop()` (or leaving a `with`
    block) stops it by PID."""

    def __init__(
        self,
        model_dir: str | Path,
        db: str | Path,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._stderr = tempfile.TemporaryFile("w+")
        cmd = [sys.executable, "-m", "divrec.cli.main", "serve", "--model-dir", str(model_dir)]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [*cmd, "--db", str(db), "--host", HOST, "--port", str(self.port), *args],
            env=child_env() if env is None else env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        try:
            wait_ready(self.url, lambda: self.proc.poll() is None, timeout=timeout)
        except (RuntimeError, TimeoutError) as err:
            tail = self.stderr()[-2000:]
            self.stop()
            raise type(err)(f"{err}; its stderr: {tail}") from None
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0

    def stderr(self) -> str:
        """What the server has written to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.proc, timeout)
        self._stderr.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def synthetic_config(
    factors: int = 16, iterations: int = 5, n_candidates: int = 100, seed: int = 0, **synthetic
) -> str:
    """The `divrec train` TOML of a small model on the built-in synthetic data (`synthetic`:
    numbers of `divrec.data.synthetic.SyntheticConfig`, e.g. n_users=200): iALS with
    `factors` retrieving `n_candidates`, DPP re-ranking (trains in seconds, reads no files)."""
    table = ", ".join(f"{name} = {value!r}" for name, value in synthetic.items())
    return (
        f"seed = {seed}\n"
        "[data]\n"
        'dataset = "synthetic"\n'
        f"synthetic = {{{table}}}\n"
        "[retriever]\n"
        'name = "ials"\n'
        f"params = {{factors = {factors}, iterations = {iterations}}}\n"
        "[reranker]\n"
        'name = "dpp"\n'
        "[pipeline]\n"
        f"n_candidates = {n_candidates}\n"
    )


def train_model(
    config: str | Path, out: str | Path, env: dict[str, str] | None = None, timeout: float = 600.0
) -> Path:
    """`divrec train CONFIG --out OUT` in a child process; the model directory `out`.
    `RuntimeError` with the command's stderr if it fails."""
    res = subprocess.run(
        [sys.executable, "-m", "divrec.cli.main", "train", str(config), "--out", str(out)],
        env=child_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise RuntimeError(f"divrec train {config} failed: {res.stderr.strip()[-2000:]}")
    return Path(out)
