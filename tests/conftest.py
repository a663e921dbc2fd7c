"""Shared fixtures: where the real datasets are, and a skip marker when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_DEFAULT_HOME = _REPO.parent / "shared" / "data"


def real_data_home() -> Path | None:
    """The data home holding the real datasets, or None."""
    home = Path(os.environ.get("DIVREC_DATA_HOME", _DEFAULT_HOME))
    return home if (home / "ml-100k" / "u.data").exists() else None


@pytest.fixture(scope="session")
def data_home() -> Path:
    home = real_data_home()
    if home is None:
        pytest.skip("real datasets not found (set DIVREC_DATA_HOME)")
    return home


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    monkeypatch.setenv("DIVREC_NO_DOWNLOAD", "1")
