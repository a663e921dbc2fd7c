"""divrec.atomic: a reader sees the old file or the whole new one, and an output folder gets
none or all of a run's files even when an interrupt arrives while they move."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec import atomic
from divrec.atomic import deferred_interrupts, open_atomic, publish, write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@settings(max_examples=30, deadline=None)
@given(first=st.text(), second=st.text())
def test_write_text_replaces_the_whole_file(tmp_path_factory, first, second):
    folder = tmp_path_factory.mktemp("w")
    path = folder / "sub" / "a.txt"
    write_text(path, first)
    assert path.read_bytes().decode("utf-8") == first
    write_text(path, second)
    assert path.read_bytes().decode("utf-8") == second
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize("error", [RuntimeError("disk"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(type(error)), open_atomic(path, "wb") as fh:
        fh.write(b"new, half")
        raise error
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"), open_atomic(tmp_path / "x", "a"):
        pass


def _staged(tmp_path, names):
    staging = tmp_path / ".staging"
    staging.mkdir()
    for name in names:
        (staging / name).write_text(f"new {name}")
    return staging


def test_publish_moves_every_file_and_keeps_others(tmp_path):
    names = ("results.json", "report.md", "plot.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old report")
    (out / "notes.txt").write_text("mine")
    publish(_staged(tmp_path, names), out, names)
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "notes.txt"])
    assert all((out / n).read_text() == f"new {n}" for n in names)
    assert (out / "notes.txt").read_text() == "mine"


def test_publish_checks_every_file_before_moving_any(tmp_path):
    staging = _staged(tmp_path, ("a", "b"))
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="missing c"):
        publish(staging, out, ("a", "b", "c"))
    assert not out.exists()
    assert sorted(p.name for p in staging.iterdir()) == ["a", "b"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_after_the_first_file_lands_after_the_last(tmp_path, monkeypatch, signum):
    """The signal is sent right after the first file moved; without holding it back the
    KeyboardInterrupt would leave 1 of the 3 files (this test fails with the deferral removed)."""
    names = ("a", "b", "c")
    out = tmp_path / "out"
    real_move, moved = shutil.move, []

    def move_then_signal(src, dst):
        real_move(src, dst)
        moved.append(dst)
        if len(moved) == 1:
            os.kill(os.getpid(), signum)

    def to_keyboard_interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, to_keyboard_interrupt)  # the CLI's SIGTERM
    monkeypatch.setattr(atomic.shutil, "move", move_then_signal)
    try:
        with pytest.raises(KeyboardInterrupt):
            publish(_staged(tmp_path, names), out, names)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in out.iterdir()) == list(names)


def test_deferred_interrupts_restores_the_handlers_and_raises_once():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
            reached = True
    assert reached
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_interrupt_reaches_the_main_thread_while_another_thread_runs(tmp_path, monkeypatch):
    """A busy second thread (BLAS, torch, a progress bar) does not let the signal through:
    the kernel may hand a process signal to any thread, Python's handler runs in the main one."""
    import threading

    stop = threading.Event()
    worker = threading.Thread(target=lambda: stop.wait(10), daemon=True)
    worker.start()
    try:
        test_an_interrupt_after_the_first_file_lands_after_the_last(
            tmp_path, monkeypatch, signal.SIGINT
        )
    finally:
        stop.set()
        worker.join()


def test_written_files_get_the_umask_mode_like_open(tmp_path):
    """Not mkstemp's private 0o600: a result file is as readable as one `open` creates."""
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
