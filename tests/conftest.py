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


def pytest_collection_modifyitems(config, items):
    """`DIVREC_MAX_EXAMPLES=N` caps every hypothesis test at N examples.

    Only the core-only check (.ci/core_only.sh) sets it: it re-runs the re-rank and metrics
    tests against a torch-free install to show they import and run there, while the main
    suite runs the same property tests at their full example counts beside it on the same
    two cores. Unset (the main suite, a developer's run), nothing changes.
    """
    cap = os.environ.get("DIVREC_MAX_EXAMPLES")
    if not cap:
        return
    from hypothesis import settings

    for item in items:
        fn = getattr(item, "obj", None)
        fn = getattr(fn, "__func__", fn)  # a test method: the function under the bound method
        if not getattr(fn, "is_hypothesis_test", False):
            continue
        current = getattr(fn, "_hypothesis_internal_use_settings", None) or settings()
        fn._hypothesis_internal_use_settings = settings(
            current, max_examples=min(current.max_examples, int(cap))
        )
