"""One writer per journal: the log directory's lock (``flock`` on ``.lock``; the OS releases
it when the process dies) keeps other processes out, :class:`Owners` a second manager of
this process."""

from __future__ import annotations

import fcntl
import gc
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from fsm_exec.core.errors import ComponentError, EventLogError
from fsm_exec.journal.files import FileOwner

LOCK_NAME = ".lock"


class JournalLockedError(ComponentError, OSError):
    """Another writer holds the log directory (``EXEC-018``); names it and the holder."""

    def __init__(self, log_dir: Path | str, pid: int | None, *,
                 component: str | None = None) -> None:
        self.log_dir, self.pid = str(log_dir), pid
        if component is not None:  # the same EventLogger, a second manager
            super().__init__(
                "EXEC-018",
                f"the EventLogger for {log_dir} already serves a {component} in this "
                "process: two managers on one journal would run the same queue twice. "
                "Give each manager its own log directory, or replace the first with its "
                "reopen()")
            return
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            "EXEC-018",
            f"the log directory {log_dir} is in use by {holder} (an EventLogger holds its "
            f"lock {LOCK_NAME}): two writers would run the same queue twice. Stop that "
            "process, or use another directory")


def _lock_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:  # pragma: no cover - a lock file we can open but not read
        return None


def take_lock(log_dir: Path, owner: FileOwner | None = None, *, new: bool = False) -> int:
    """Take the directory's exclusive writer lock (``flock``; the OS releases it when the
    process dies): its file descriptor, or :class:`JournalLockedError`. Any other failure
    (``OSError``: a full disk cannot take the holder's pid) leaves nothing taken: the
    descriptor is closed, so the lock is released. A lock file this creates is
    ``owner``'s (when given: the journal's owner, for a process of another user).
    ``new``: the lock file must be made here (:class:`FileExistsError` if it is there,
    nothing taken): see :func:`take_directory`."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)  # a planted link is refused, never followed
    path = os.path.join(log_dir, LOCK_NAME)  # a str: no Path parsed per run
    made = new or owner is not None
    if not made:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o644)
    else:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o644)
        except FileExistsError:
            if new:
                raise
            made = False
            fd = os.open(path, os.O_RDWR | nofollow)
        else:
            try:
                if owner is not None:
                    owner.give(fd)
            except BaseException:
                os.close(fd)
                raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _lock_holder(fd)
        os.close(fd)
        raise JournalLockedError(log_dir, pid) from None
    except OSError:  # pragma: no cover - a file system without locks
        os.close(fd)
        raise
    try:
        holder = f"{os.getpid()}\n".encode()
        os.pwrite(fd, holder, 0)
        if not made:  # an earlier holder's longer pid: cut after ours. Never to 0 first:
            # ext4 writes a file truncated to nothing back to the disk when it is closed
            os.ftruncate(fd, len(holder))
    except BaseException:
        os.close(fd)  # the lock goes with it
        raise
    return fd


def _make_dir(log_dir: Path, new: bool) -> bool:
    """Make ``log_dir`` (its parents too): True if it was made here, False if it was
    there already (refused if ``new``)."""
    try:
        try:
            os.mkdir(log_dir)
            return True
        except FileNotFoundError:  # a parent is missing
            log_dir.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(log_dir)
        return True
    except FileExistsError as exc:
        there = os.path.isdir(log_dir)
        if new and there:
            raise EventLogError(f"log directory {log_dir} already exists", exc) from exc
        if not there:  # a file where the directory (or a parent) should be
            raise EventLogError(f"cannot create log directory {log_dir}: {exc.strerror}",
                                exc) from exc
        return False
    except OSError as exc:
        raise EventLogError(f"cannot create log directory {log_dir}: {exc.strerror}",
                            exc) from exc


def take_directory(log_dir: Path, owner: FileOwner | None = None, *,
                   new: bool = False) -> tuple[int, bool]:
    """Make ``log_dir`` (its parents too) unless it is there, and take its lock
    (:func:`take_lock`): the lock's descriptor, and whether the directory is *new*: made
    here, and its lock file too. No writer was ever in a new directory (every writer takes
    the lock, making its file, before it writes a journal), so no journal file is in it:
    its journals start with nothing to read back. ``new``: a directory already there is
    refused (an :class:`~fsm_exec.EventLogError` whose ``original_exception`` is a
    :class:`FileExistsError`). Raises :class:`~fsm_exec.EventLogError` when the
    directory cannot be made or locked, :class:`JournalLockedError` when another writer
    holds it; nothing is left taken."""
    made = _make_dir(log_dir, new)
    try:
        return take_lock(log_dir, owner, new=made), made
    except JournalLockedError:
        raise
    except FileExistsError:  # another writer's lock file, just made: not a new directory
        return take_directory(log_dir, owner)[0], False
    except OSError as exc:
        raise EventLogError(f"cannot lock log directory {log_dir}: {exc.strerror}",
                            exc) from exc


#: The kernel's table of file locks (Linux).
PROC_LOCKS = Path("/proc/locks")


def lock_holder(log_dir: Path | str, *, proc_locks: Path | str = PROC_LOCKS) -> int | None:
    """The pid of the process whose EventLogger holds ``log_dir`` now, else ``None``.
    Read-only: it never takes the lock (it reads the pid the holder wrote, and asks the
    kernel's lock table, ``proc_locks``, on Linux), so it is safe while a manager runs.

    A lock in the table is the lock file's when it is on the same device and inode
    (``major:minor:inode``): inode numbers repeat across file systems, so an inode alone
    could take an unrelated lock elsewhere for the manager's. Some file systems (overlay,
    btrfs subvolumes) show another device number in the table than ``stat`` does: a lock
    on the lock file's inode counts there only when it is held by the pid the lock file
    names."""
    path = Path(log_dir) / LOCK_NAME
    try:
        text = path.read_text("ascii").strip()
        info = path.stat()
    except (OSError, UnicodeDecodeError):
        return None
    pid = int(text) if text.isdigit() else None
    if pid is None:
        return None
    try:
        locks = Path(proc_locks).read_text()
    except OSError:  # not Linux: is the process alive?
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid
    device = (os.major(info.st_dev), os.minor(info.st_dev))
    for line in locks.splitlines():
        where = _flock_of(line)
        if where is None or where[2] != info.st_ino:
            continue
        if where[:2] == device or where[3] == pid:
            return pid
    return None


def _flock_of(line: str) -> tuple[int, int, int, int] | None:
    """``(major, minor, inode, pid)`` of a ``/proc/locks`` line of a ``flock``, else
    ``None`` (``1: FLOCK  ADVISORY  WRITE 4242 fe:01:1234 0 EOF``: the device in hex). A
    blocked waiter's line (``1: -> FLOCK ...``) is not a holder's."""
    parts = line.split()
    if len(parts) < 6 or parts[1] != "FLOCK":
        return None
    major, _, rest = parts[5].partition(":")
    minor, _, inode = rest.partition(":")
    try:
        return int(major, 16), int(minor, 16), int(inode), int(parts[4])
    except ValueError:
        return None



class Owners:
    """The one manager of each component's journal in this process (weakly held)."""

    def __init__(self) -> None:
        self._owners: dict[str, weakref.ref[Any]] = {}
        self._lock = threading.Lock()

    def claim(self, log_dir: Path, component: str, owner: object) -> None:
        """Make ``owner`` the one writer of ``component``'s journal in ``log_dir``, or
        refuse with :class:`JournalLockedError` (``EXEC-018``) while another owner is alive
        and not retired (its ``interrupted`` is false): the directory lock keeps other
        processes out, this keeps a second manager of this process out. A retired manager
        hands over (what ``reopen()`` does)."""
        with self._lock:  # never the write lock: a manager writing holds its own lock
            ref = self._owners.get(component)
            if ref is not None and self._serving(ref, owner):
                gc.collect()  # a dropped manager, held only by its own reference cycles?
                if self._serving(ref, owner):
                    raise JournalLockedError(log_dir, os.getpid(), component=component)
            self._owners[component] = weakref.ref(owner)

    def taken_by_another(self, component: str, owner: object) -> bool:
        """True if a manager other than ``owner`` holds ``component``'s journal and still
        serves it (what :meth:`claim` would refuse for ``owner``)."""
        with self._lock:
            ref = self._owners.get(component)
            return ref is not None and ref() is not owner and self._serving(ref, owner)

    @staticmethod
    def _serving(ref: weakref.ref[Any], owner: object) -> bool:
        """The owner in ``ref`` still serves its journal: alive, not ``owner``, and not
        retired, or retired with a call still running (it returns before anyone takes
        over: until then its collaborators may still be answering it)."""
        current = ref()
        if current is None or current is owner:
            return False
        if not getattr(current, "interrupted", False):
            return True
        running = getattr(current, "_call_running", None)  # an abandoned venue call
        if callable(running) and running():
            return True
        busy = getattr(current, "_busy", None)  # a call still running, on a live thread
        return busy is not None and any(t.ident == busy for t in threading.enumerate())
