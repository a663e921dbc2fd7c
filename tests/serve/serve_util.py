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
import subprocess
import sys
from pathlib import Path

from divrec.serve.local import (  # noqa: F401 - free_port, wait_ready: for the tests
    LocalServer,
    child_env,
    free_port,
    synthetic_config,
    train_model,
    wait_ready,
)

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
API_KEY = "test-key-0123456789"
CONFIG = synthetic_config(n_users=200, n_items=300, n_topics=8, interactions_per_user=30.0,
                          factors=16, iterations=5, n_candidates=100)  # fmt: skip


def env() -> dict[str, str]:
    return child_env(api_key=API_KEY, path=[REPO])


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
    return train_model(cfg, tmp / "model", env=env(), timeout=300)


class Server(LocalServer):
    """`divrec serve` as a subprocess (the real CLI), with the tests' API key."""

    def __init__(self, model: Path, db: Path, *extra: str) -> None:
        super().__init__(model, db, *extra, env=env(), timeout=120)


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
            self.proc.stdin.close()  # the zygote's loop ends at the end of its input
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
