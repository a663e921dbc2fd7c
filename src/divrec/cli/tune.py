"""`divrec tune` (registered on the main app by `register(app)`)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Adds `tune` to the main `divrec` app (not built yet)."""
