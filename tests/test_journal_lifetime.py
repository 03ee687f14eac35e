"""Issue 26 item 1: a backtest journal never loses what it accepted, and never leaks its
files or its lock, on any path: close(), a with block, a logger dropped unclosed, the
interpreter's exit, and a constructor that fails."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    EventLogError,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    check_journal,
    read_journal,
)
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks


def open_fds() -> int:
    """How many file descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


def build(log: Any, mode: str = "backtest") -> ExecutionManager:
    rc = SimReconciliation(None)
    return ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(rc), SimVenue(),
                            rc, event_logger=log)


def kinds(log_dir: Path) -> list[str]:
    return [r.event_type for r in read_journal(log_dir)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_a_thousand_managers_dropped_unclosed_lose_nothing_and_leak_nothing(
        tmp_path: Path) -> None:
    """1,000 backtest managers, each with its own journal, dropped without close() in one
    process: every record is on disk and every descriptor (files, lock) is released."""
    gc.collect()
    before = open_fds()

    def run(i: int) -> None:
        em = build(EventLogger(tmp_path / f"run-{i}", "backtest"))
        em.update_state(T(i), "strategy_manager", blocks(f"b{i}", f"c{i}"))

    for i in range(1000):
        run(i)
    gc.collect()
    assert open_fds() == before
    for i in range(1000):
        report = check_journal(tmp_path / f"run-{i}")
        assert report.ok and (report.blocks_accepted, report.blocks_executed) == (2, 2), i
        # and the directory is free again: a new writer takes it
        EventLogger(tmp_path / f"run-{i}", "backtest").close()


def test_a_logger_dropped_unclosed_writes_its_buffer_and_frees_its_lock(
        tmp_path: Path) -> None:
    """An EventLogger garbage-collected without close() writes every buffered record and
    releases its files and the directory's lock."""
    gc.collect()
    before = open_fds()
    log = EventLogger(tmp_path, "backtest")
    for i in range(471):
        log.log_event(T(i), "tick", "Strategy", {"i": i})
    del log
    gc.collect()
    assert open_fds() == before
    assert [r.data["i"] for r in read_journal(tmp_path, "Strategy")] == list(range(471))
    EventLogger(tmp_path, "backtest").close()  # the lock is free


def test_a_logger_alive_at_interpreter_exit_is_written(tmp_path: Path) -> None:
    """A backtest journal never closed, still referenced when the interpreter exits
    (a framework with no end-of-run hook), holds every record afterwards."""
    script = (
        "import sys\n"
        "from fsm_exec import EventLogger\n"
        f"log = EventLogger({str(tmp_path)!r}, 'backtest')\n"
        "for i in range(100):\n"
        "    log.log_event(1759276800 + i, 'tick', 'Strategy', {'i': i})\n"
        "sys.exit(0)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(list(read_journal(tmp_path, "Strategy"))) == 100


def test_a_manager_used_as_a_context_manager_closes_its_journal(tmp_path: Path) -> None:
    """``with ExecutionManager(...) as em``: the journal is written and closed when the
    block ends, also when it raises; calls after it are refused."""
    gc.collect()
    before = open_fds()
    em = build(EventLogger(tmp_path, "backtest"))

    def run() -> None:
        with em:
            em.update_state(T(0), "strategy_manager", blocks("a", "b"))
            raise RuntimeError("the strategy broke")

    with pytest.raises(RuntimeError, match="the strategy broke"):
        run()
    assert open_fds() == before  # the files and the lock released, with em still alive
    assert check_journal(tmp_path).blocks_executed == 2
    with pytest.raises(InvalidArgumentError, match="this manager was closed"):
        em.update_state(T(1), "strategy_manager")
    em.close()  # twice: a no-op


def test_closing_a_manager_whose_journal_fails_notes_it_on_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal that cannot be written at the end of a with block raises EventLogError;
    when the block itself raised, that error wins and carries the journal's as a note."""
    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def run(log_dir: Path, fail: bool) -> None:
        with build(EventLogger(log_dir, "backtest")) as em:
            em.update_state(T(0), "strategy_manager", blocks("a"))
            monkeypatch.setattr("fsm_exec.journal.writer.os.write", no_space)
            if fail:
                raise RuntimeError("the strategy broke")

    with pytest.raises(EventLogError, match="No space left"):
        run(tmp_path / "one", fail=False)
    monkeypatch.undo()
    with pytest.raises(RuntimeError) as info:
        run(tmp_path / "two", fail=True)
    assert any("journal also failed" in n for n in info.value.__notes__)


def test_a_logger_used_as_a_context_manager_closes(tmp_path: Path) -> None:
    """``with EventLogger(...)``: every record written and the lock released at its end."""
    with EventLogger(tmp_path, "backtest") as log:
        build(log).update_state(T(0), "strategy_manager", blocks("a"))
    assert check_journal(tmp_path).blocks_executed == 1
    EventLogger(tmp_path, "backtest").close()


@pytest.mark.parametrize("failing", ["ftruncate", "pwrite"])
def test_a_full_disk_at_start_raises_event_log_error_and_takes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A disk too full to take the holder's pid: EventLogError (EXEC-009), not a bare
    OSError; the lock and its descriptor released, so a retry once there is room works."""
    def full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    gc.collect()
    before = open_fds()
    monkeypatch.setattr(f"fsm_exec.journal.lock.os.{failing}", full)
    with pytest.raises(EventLogError, match="No space left on device") as info:
        EventLogger(tmp_path, "backtest")
    assert info.value.error_code == "EXEC-009"
    assert open_fds() == before
    monkeypatch.undo()
    EventLogger(tmp_path, "backtest").close()  # not "in use by process <this one>"


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", fsync)
    monkeypatch.setattr("fsm_exec.journal.files.os.fsync", fsync)
    return calls


@pytest.mark.parametrize("buffer_bytes", [0, 1 << 20])
def test_a_backtest_journal_is_never_fsynced_unless_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buffer_bytes: int) -> None:
    """A backtest run (buffered or not, with its checkpoint, blocks and close) makes no
    fsync; ``fsync=True`` asks for them."""
    calls = count_fsyncs(monkeypatch)
    with build(EventLogger(tmp_path / "a", "backtest", buffer_bytes=buffer_bytes)) as em:
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))
        em.execute_instruction_blocks(T(1), blocks("c"))
        em.cancel(T(2), reason="done")
    assert calls == []
    assert check_journal(tmp_path / "a").blocks_cancelled == 1
    with build(EventLogger(tmp_path / "b", "backtest", buffer_bytes=buffer_bytes,
                           fsync=True)) as em:
        em.update_state(T(0), "strategy_manager", blocks("a"))
    assert calls


def test_fsync_option_is_checked(tmp_path: Path) -> None:
    """``fsync`` must be None or a bool, and cannot be turned off in live mode."""
    with pytest.raises(ValueError, match="fsync must be None"):
        EventLogger(tmp_path, "backtest", fsync=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refused in live mode"):
        EventLogger(tmp_path, "live", fsync=False)
    EventLogger(tmp_path, "live", fsync=True).close()


def test_live_manager_refusing_a_backtest_journal_says_nothing_untrue(tmp_path: Path) -> None:
    """The refusal of a backtest journal under a live manager does not claim it is
    "buffered" (buffer_bytes=0 is not) or "never fsynced" (fsync=True is)."""
    options: dict[str, Any]
    for options in ({"buffer_bytes": 0}, {"fsync": True}):
        log = EventLogger(tmp_path, "backtest", **options)
        with pytest.raises(InvalidArgumentError) as info:
            build(log, "live")
        log.close()
        text = str(info.value)
        assert "buffered" not in text and "never fsynced" not in text
        assert "does not make a record durable before the manager acts on it" in text


def test_a_manager_without_a_journal_closes_too() -> None:
    """``with`` works for a manager with no journal (or one without close()): it is
    closed, and refuses later calls."""
    with build(None) as em:
        em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(InvalidArgumentError, match="closed"):
        em.execute_instruction_blocks(T(1), blocks("b"))


def test_a_live_logger_dropped_unclosed_fsyncs_what_it_left_unsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live EventLogger collected without close() fsyncs the records written with
    sync=False (as close() would) and releases its lock."""
    calls = count_fsyncs(monkeypatch)
    log = EventLogger(tmp_path, "live")
    log.log_event(T(0), "tick", "Strategy", {"i": 0}, sync=False)
    before = len(calls)
    del log
    gc.collect()
    assert len(calls) == before + 1
    assert len(list(read_journal(tmp_path, "Strategy"))) == 1
    EventLogger(tmp_path, "live").close()
