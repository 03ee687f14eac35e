"""``fsm-exec status`` at the edges of a deployment (issue 25 items 6 and 7): a dead
manager is not called running because an unrelated lock elsewhere has the same inode
number, and a rotation while status reads is not reported as missing records."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsm_exec.journal.lock import LOCK_NAME, lock_holder
from fsm_exec.tools.status import read_status

from journals import queued_journal


def _locks_line(pid: int, major: int, minor: int, inode: int, n: int = 1) -> str:
    """One line of ``/proc/locks`` as Linux writes it: device numbers in hex."""
    return f"{n}: FLOCK  ADVISORY  WRITE {pid} {major:02x}:{minor:02x}:{inode} 0 EOF\n"


def _fake_locks(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path.parent / f"{tmp_path.name}-proc-locks"
    path.write_text("".join(lines))
    return path


def _dead_manager(tmp_path: Path) -> tuple[int, os.stat_result]:
    """A journal whose ``.lock`` names a pid (the crashed manager's) and is held by nobody."""
    queued_journal(tmp_path)
    pid = 4_000_000  # beyond pid_max: certainly no process
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n")
    return pid, (tmp_path / LOCK_NAME).stat()


def test_a_lock_on_another_device_with_the_same_inode_is_not_the_managers(
        tmp_path: Path) -> None:
    """An unrelated flock on another file system whose inode number equals the lock file's
    leaves a crashed manager not running (it was matched by inode alone)."""
    _pid, st = _dead_manager(tmp_path)
    other = os.major(st.st_dev) + 1
    locks = _fake_locks(tmp_path, _locks_line(77, other, os.minor(st.st_dev), st.st_ino))
    assert lock_holder(tmp_path, proc_locks=locks) is None
    report = read_status(tmp_path, proc_locks=locks)
    assert (report["running"], report["pid"]) == (False, None)


def test_the_lock_on_the_same_device_and_inode_is_the_managers(tmp_path: Path) -> None:
    """The lock file's own device and inode in the table: the manager runs (any pid in the
    table: a flock's owner may be shown as another process of the manager's)."""
    pid, st = _dead_manager(tmp_path)
    locks = _fake_locks(tmp_path, _locks_line(1, 8, 1, st.st_ino),
                        _locks_line(77, os.major(st.st_dev), os.minor(st.st_dev),
                                    st.st_ino, 2))
    assert lock_holder(tmp_path, proc_locks=locks) == pid


def test_a_device_numbered_otherwise_counts_only_for_the_pid_in_the_lock_file(
        tmp_path: Path) -> None:
    """Some file systems (overlay, btrfs subvolumes) number the device in ``/proc/locks``
    otherwise than ``stat`` does: a lock with the lock file's inode on another device counts
    only when it is held by the very pid the lock file names."""
    pid, st = _dead_manager(tmp_path)
    locks = _fake_locks(tmp_path, _locks_line(pid, 0, 0x2f, st.st_ino))
    assert lock_holder(tmp_path, proc_locks=locks) == pid


def test_the_real_table_still_finds_a_live_holder(tmp_path: Path) -> None:
    """This process holding the lock (an open EventLogger) is found in the real table."""
    if not Path("/proc/locks").exists():
        pytest.skip("no /proc/locks on this system (not Linux)")
    from fsm_exec import EventLogger

    with EventLogger(tmp_path, "live"):
        assert lock_holder(tmp_path) == os.getpid()
    assert lock_holder(tmp_path) is None


# ------------------------------------------------------------------------ item 7


def _rotating_manager(log_dir: Path) -> tuple[Any, Callable[[], None]]:
    """A live manager holding ``log_dir`` (in this process), with checkpoints inside its
    current file (every 5 records), and a function that makes it rotate: the day changes
    and its next call starts a new file."""
    from fsm_exec import EventLogger, ExecutionManager
    from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

    from journals import Reconciled
    from kit import T, blocks

    day = [dt.date(2025, 10, 1)]
    log = EventLogger(log_dir, "live", today=lambda: day[0], checkpoint_every=5)
    clock = FakeClock()
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Reconciled(), event_logger=log, clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    em.execute_instruction_blocks(T(1), blocks("q"))
    calls = [0]

    def rotate() -> None:
        calls[0] += 1
        day[0] += dt.timedelta(days=1)
        em.update_state(T(86_400 * calls[0]), "strategy_manager")

    return log, rotate


@pytest.mark.parametrize("seam", ["listed", "opened", "newest_checkpoint"])
def test_a_rotation_while_status_reads_is_not_missing_records(
        seam: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager rotates (a new day: its current file renamed, a new one started) right
    after status listed the files, after it opened them, or after it found the newest
    checkpoint: status reads one consistent set of files and reports the healthy manager
    (after the newest checkpoint it said "records ... are missing", exit 2)."""
    import fsm_exec.journal.fold as fold
    import fsm_exec.journal.reader as reader
    import fsm_exec.tools.status as status

    log, rotate = _rotating_manager(tmp_path)
    try:
        module, name = {"listed": (reader, "journal_files"),
                        "opened": (status, "open_journal"),
                        "newest_checkpoint": (fold, "newest_checkpoints")}[seam]
        real = getattr(module, name)
        rotated: list[bool] = []

        def then_rotate(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if not rotated:
                rotated.append(True)
                rotate()
            return result

        monkeypatch.setattr(module, name, then_rotate)
        report = read_status(tmp_path)
        assert rotated
        assert report["readable"] and report["exit_code"] == 0, report
        assert (report["running"], report["health"]) == (True, "healthy")
        # before the rotation: q queued, 3 executed; the rotating call ran q
        assert (report["queue"]["first"], report["counters"]["executed"]) in (
            (["q"], 3), ([], 4))
    finally:
        log.close()


def test_open_journal_refuses_a_set_of_files_that_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_journal: a listed file gone before it is opened, or the files listed again
    otherwise than the first time, is JournalChanged (and nothing is left open)."""
    import fsm_exec.journal.reader as reader
    from fsm_exec.journal.files import journal_files as real
    from fsm_exec.journal.reader import JournalChanged, open_journal

    queued_journal(tmp_path)
    files, opened = open_journal(tmp_path)
    assert [os.fstat(f.fileno()).st_ino for f in opened] == [p.stat().st_ino for p in files]
    for f in opened:
        f.close()
    monkeypatch.setattr(reader, "journal_files",
                        lambda *a: [*real(*a), tmp_path / "gone_events.jsonl"])
    with pytest.raises(JournalChanged):
        open_journal(tmp_path)
    answers = iter([real(tmp_path), []])
    monkeypatch.setattr(reader, "journal_files", lambda *a: next(answers))
    with pytest.raises(JournalChanged):
        open_journal(tmp_path)
