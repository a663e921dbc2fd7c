"""What every `divrec` command shares: one-line errors with exit code 2, and interrupts.

A command body wrapped by `guarded` turns an expected error (bad input, a malformed file, an
unknown name, a path it cannot write) into one line on stderr, `divrec: error: <message>`,
and exit code 2. `run` is the entry point's loop around the typer app: usage errors are one
line too, and SIGTERM acts like Ctrl-C (temporary folders are removed on the way out; the
process says `divrec: interrupted` and exits with 130).

Nothing here imports the commands, so every `divrec.cli` module can import it at module level.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

from divrec.data.interactions import DataError

__all__ = ["EXPECTED_ERRORS", "fail", "guarded", "interrupted", "run"]

#: errors a command reports as one line with exit code 2 (bad input, not a bug)
EXPECTED_ERRORS = (DataError, ValueError, KeyError, FileNotFoundError, PermissionError, OSError)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """Ends the command: `divrec: error: <message>` on stderr, exit code 2."""
    typer.echo(f"divrec: error: {message}", err=True)
    raise typer.Exit(2)


def _one_line(err: BaseException) -> str:
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return str(msg).splitlines()[0] if str(msg) else type(err).__name__


def guarded(fn: F) -> F:
    """Decorates a command: expected errors become one line and exit code 2.

    The wrapper keeps `fn`'s signature (typer reads its options from it).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except EXPECTED_ERRORS as err:
            fail(_one_line(err))

    return wrapper  # type: ignore[return-value]


def interrupted() -> None:
    """Says so on the process's own stderr (not a progress bar's redirected one)."""
    stream = sys.__stderr__ or sys.stderr
    print("divrec: interrupted", file=stream, flush=True)


def _is(err: BaseException, name: str) -> bool:  # typer vendors click: match by class name
    return any(c.__name__ == name for c in type(err).__mro__)


def run(app: typer.Typer, argv: list[str] | None = None, prog_name: str = "divrec") -> int:
    """Runs `app` as a console entry point; returns the exit code.

    Usage errors are one line (exit 2), a bare command group prints its help (exit 2), and
    SIGTERM raises `KeyboardInterrupt` like Ctrl-C, so `with` blocks clean up; an interrupt
    prints `divrec: interrupted` and returns 130.

    Returns:
        The exit code (0 ok, 2 bad input or usage, 130 interrupted).
    """

    received: list[int] = []

    def _term(signum, frame):  # clean up like SIGINT: temporary folders are removed
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _term)
    try:
        code = int(app(args=argv, standalone_mode=False, prog_name=prog_name) or 0)
        # typer turns a KeyboardInterrupt inside a command into Exit(130); a SIGTERM whose
        # KeyboardInterrupt landed in a finalizer (`__del__` swallows it: seen in numba's
        # LLVM clean-up) let the command finish, but the process was still told to stop
        if code == 130 or received:
            interrupted()
            return 130
        return code
    except KeyboardInterrupt:
        interrupted()
        return 130
    except Exception as err:
        if _is(err, "NoArgsIsHelpError"):
            typer.echo(err.format_message())
            return 2
        if _is(err, "UsageError"):
            text = err.format_message() or "usage error"
            typer.echo(f"divrec: error: {' '.join(text.split())}", err=True)
            return 2
        if _is(err, "Abort"):
            interrupted()
            return 130
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
