"""``fsm-exec status`` at the edges of a deployment (issue 25 items 6 and 7): a dead
manager is not called running because an unrelated lock elsewhere has the same inode
number, and a rotation while status reads is not reported as missing records."""

from __future__ import annotations

import os
from pathlib import Path

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
