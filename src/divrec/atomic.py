"""All-or-nothing writes: the one way divrec writes a result file or a set of result files.

A reader (another process, a re-run, a person) sees either the old content or the whole new
content, never a half-written file, and an interrupted write leaves no temporary file.

- `open_atomic` / `write_text`: one file, written to a temporary file beside it (a unique name
  starting with a dot) and renamed over the target (`os.replace`, atomic on one file system).
- `publish`: a set of finished files moved from a temporary folder into the output folder
  with SIGINT and SIGTERM held back while they move, so an interrupt (Ctrl-C, or the CLI's
  SIGTERM-as-Ctrl-C) lands before the first file or after the last one; an output folder
  holds a complete set from one run. (A SIGKILL or a power cut can still stop it between
  two renames: nothing in user space can prevent that.)

Nothing here imports the rest of divrec (level 0 in the layering test).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["deferred_interrupts", "open_atomic", "publish", "write_text"]

_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w", *, fsync: bool = False) -> Iterator[IO]:
    """Opens a temporary file beside `path`; renamed over `path` when the block ends normally.

    Args:
        path: The file to (re)write; its folder is created when missing.
        mode: "w" (text, UTF-8, written exactly as given: no newline translation) or "wb".
        fsync: Flush the file to disk before the rename (for crash safety, e.g. snapshots).

    Yields:
        The open temporary file. On any exception (KeyboardInterrupt included) it is removed
        and `path` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}  # as given
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_beside(path: Path) -> tuple[int, str]:
    """A new empty file `.<name>.<random>.tmp` beside `path`, opened for writing.

    Created with mode 0o666 less the umask, as `open` would create `path` itself
    (`tempfile.mkstemp` makes 0o600 files: a result file would become private).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary name beside it")


def write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Writes `text` (UTF-8) to `path` all at once (see `open_atomic`).

    Returns:
        `path` as a Path.
    """
    with open_atomic(path, "w", fsync=fsync) as fh:
        fh.write(text)
    return Path(path)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back inside the block; they are raised again when it ends.

    Python handlers that only note the signal replace the current ones for the block; on the
    way out the previous handlers come back and each noted signal is raised once more, so it
    acts then as it would have (a KeyboardInterrupt, the CLI's SIGTERM-as-Ctrl-C, or the
    default action). Python runs signal handlers in the main thread only, whichever thread the
    kernel picked, so this works for the whole process; called from another thread (where
    handlers cannot be set) it holds nothing back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum, frame):
        noted.append(signum)

    previous = {s: signal.signal(s, note) for s in _INTERRUPTS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(noted):
            signal.raise_signal(s)


def publish(staging: str | Path, out: str | Path, names: Sequence[str]) -> None:
    """Moves the finished files `names` from the folder `staging` into the folder `out`.

    SIGINT and SIGTERM are held back while they move (see `deferred_interrupts`), so `out`
    ends with either none or all of them from this run. Existing files of the same names are
    replaced; other files in `out` are left alone.

    Args:
        staging: A folder on the same file system as `out` (e.g. a temporary folder inside
            `out` or beside it) holding every file of `names`.
        out: The output folder, created when missing.
        names: File names (no folders) to move.

    Raises:
        FileNotFoundError: One of `names` is not in `staging` (checked before anything moves).
    """
    staging, out = Path(staging), Path(out)
    missing = [n for n in names if not (staging / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{staging}: missing {', '.join(missing)}")
    with deferred_interrupts():
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.move(str(staging / name), out / name)
