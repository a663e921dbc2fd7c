"""`divrec experiment` (registered on the main app by `register(app)`)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Adds `experiment` to the main `divrec` app (not built yet)."""
