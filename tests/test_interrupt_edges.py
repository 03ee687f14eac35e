"""Signals at the journal's edges (review): an interrupt while an unclosed logger is let
go, a Ctrl-C while close() waits for another writer, and the parallel export's workers
importing this process's modules, not the current directory's."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import EventLogger, export_csv
from fsm_exec.journal import handles


def test_an_interrupt_while_an_unclosed_logger_is_let_go_loses_nothing_and_frees_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C arriving while a logger nobody closed is let go (collected, or at exit)
    is raised once its records are written and its files and lock released: the same
    directory opens again at once in this process."""
    log = EventLogger(tmp_path, "backtest")
    for i in range(3):
        log.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy", {"n": i})
    real = handles.flush

    def interrupted_flush(j: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # the Ctrl-C, as the buffer is written
        real(j)

    monkeypatch.setattr(handles, "flush", interrupted_flush)
    with pytest.raises(KeyboardInterrupt):
        handles.release(log._held)
    monkeypatch.setattr(handles, "flush", real)
    assert len((tmp_path / "strategy_events.jsonl").read_bytes().splitlines()) == 3
    EventLogger(tmp_path, "backtest").close()  # not JournalLockedError: the lock is free


def test_close_waiting_for_another_writer_can_be_interrupted(tmp_path: Path) -> None:
    """close() takes the journal's lock before it holds the signals: a Ctrl-C while it
    waits for a writer on another thread (a hung disk, say) is raised at once."""
    log = EventLogger(tmp_path, "live")
    taken, done = threading.Event(), threading.Event()

    def writer() -> None:
        with log._write_lock:
            taken.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    taken.wait(5)
    timer = threading.Timer(0.2, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            log.close()
        assert time.monotonic() - t0 < 5  # not after the writer let go
    finally:
        done.set()
        thread.join()
        timer.cancel()
    log.close()


def test_export_workers_do_not_import_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder holding a module of a standard name (pickle.py) is where the export is
    run from: the workers import this process's modules, as one process does."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for day in (1, 2):
        with EventLogger(logs, "backtest") as log:
            log.log_event(f"2025-10-0{day}T00:00:00+00:00", "note", "Strategy", {"n": day})
        (logs / "strategy_events.jsonl").rename(logs / f"strategy_events.2025-10-0{day}.1.jsonl")
    here = tmp_path / "project"
    here.mkdir()
    (here / "pickle.py").write_text("raise ImportError('project/pickle.py imported')\n")
    monkeypatch.chdir(here)
    one = export_csv(logs, tmp_path / "out", "one").read_bytes()
    assert export_csv(logs, tmp_path / "out", "two", workers=2).read_bytes() == one


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_held_signal_with_the_default_action_still_ends_the_process(
        tmp_path: Path, signum: int) -> None:
    """A supervisor's SIGTERM with no handler installed (the default: end the process),
    or a SIGINT set to the default, arriving while a journal writes its buffer: the
    section holds it, the records are written, and then the process ends by that signal,
    as it would have without the section (review: a version of the fix let it run on)."""
    script = tmp_path / "run.py"
    script.write_text(
        "import os, signal, sys\n"
        "from fsm_exec import EventLogger\n"
        "from fsm_exec.core.interrupts import interrupts_deferred\n"
        "signum = int(sys.argv[1])\n"
        "signal.signal(signum, signal.SIG_DFL)\n"
        "log = EventLogger(sys.argv[2], 'backtest')\n"
        "log.log_event('2025-10-01T00:00:00+00:00', 'note', 'Strategy', {'n': 1})\n"
        "with interrupts_deferred():\n"
        "    os.kill(os.getpid(), signum)\n"
        "    log.close()\n"
        "print('still running')\n")
    done = subprocess.run([sys.executable, str(script), str(int(signum)), str(tmp_path / "j")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signum and "still running" not in done.stdout, done
    assert len((tmp_path / "j" / "strategy_events.jsonl").read_bytes().splitlines()) == 1
