"""Helpers for the service tests: a small model directory and real server processes.

Servers listen on 127.0.0.1 at a free port and are stopped by PID by the test that started
them. `Zygote` is a process that has imported the service once and forks a fresh server
process per start (the crash test restarts the server 20+ times; each fork is a separate
process that is killed with SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
API_KEY = "test-key-0123456789"

CONFIG = """
seed = 0
[data]
dataset = "synthetic"
synthetic = {n_users = 200, n_items = 300, n_topics = 8, interactions_per_user = 30.0}
[retriever]
name = "ials"
params = {factors = 16, iterations = 5}
[reranker]
name = "dpp"
[pipeline]
n_candidates = 100
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    src = str(REPO / "src")
    e["PYTHONPATH"] = os.pathsep.join([src, str(REPO), e.get("PYTHONPATH", "")])
    e["DIVREC_API_KEY"] = API_KEY
    e["OMP_NUM_THREADS"] = "1"
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_MODEL: list[Path] = []


def shared_model(tmp_path_factory) -> Path:
    """One trained model directory per test session (training takes a few seconds)."""
    if not _MODEL:
        _MODEL.append(train(tmp_path_factory.mktemp("serve-model")))
    return _MODEL[0]


def train(tmp: Path) -> Path:
    """`divrec train` on the synthetic config (the real CLI)."""
    cfg = tmp / "config.toml"
    cfg.write_text(CONFIG)
    out = tmp / "model"
    res = subprocess.run(
        [PY, "-m", "divrec.cli.main", "train", str(cfg), "--out", str(out)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return out


def wait_ready(url: str, proc_alive, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    client = httpx.Client(timeout=2)
    while time.time() < deadline:
        if not proc_alive():
            raise RuntimeError("server process exited during start")
        try:
            r = client.get(url + "/health/ready")
            if r.status_code == 200:
                client.close()
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError("server did not become ready")


class Server:
    """`divrec serve` as a subprocess (the real CLI)."""

    def __init__(self, model: Path, db: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [PY, "-m", "divrec.cli.main", "serve", "--model-dir", str(model), "--db", str(db)]
            + ["--port", str(self.port), *extra],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_ready(self.url, lambda: self.proc.poll() is None, timeout=120)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


_ZYGOTE = r"""
import os, sys, json, signal
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
import uvicorn
from divrec.serve.app import AppConfig, create_app
from divrec.serve.model_dir import ModelBundle
import divrec.serve.service, divrec.retrieval.baselines, divrec.rerank.dpp, divrec.rerank.mmr
import divrec.rerank.ssd, divrec.rerank.personalized, divrec.metrics.diversity
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sys.stdin.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1); os.dup2(devnull, 2)
        cfg = AppConfig(model_dir=cmd["model"], db=cmd["db"], api_key=cmd["key"])
        uvicorn.run(create_app(cfg), host="127.0.0.1", port=cmd["port"], log_level="error",
                    access_log=False)
        os._exit(0)
    print(pid, flush=True)
"""


class Zygote:
    """Forks server processes from one process that already imported the service."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, "-c", _ZYGOTE],
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, model: Path, db: Path) -> tuple[int, str]:
        port = free_port()
        msg = {"model": str(model), "db": str(db), "key": API_KEY, "port": port}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, lambda: _exists(pid), timeout=60)
        return pid, url

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of the zygote still "exists": read its state
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False
