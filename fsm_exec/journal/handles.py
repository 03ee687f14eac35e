"""What an :class:`~fsm_exec.EventLogger` holds of the operating system: each component's
open journal file and its buffer (:class:`Journal`), and the directory lock's descriptor
(:class:`Held`), with the two ways to let them go: :func:`flush` a buffer to its file (its
run of idle calls, :mod:`~fsm_exec.journal.idle`, first: :func:`settle`), and
:func:`release` everything (what ``close()`` and the finalizer of a logger dropped unclosed
do); and the errors a write through them raises (:class:`JournalLossError`, the refusal
of a record too long)."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsm_exec.boundary.timestamps import journal_time
from fsm_exec.core.errors import EventLogError, shorten
from fsm_exec.core.interrupts import interrupts_deferred
from fsm_exec.journal.files import (
    FileOwner,
    files_of,
    fsync_dir,
    journal_files,
    journal_stem_of,
    last_seq,
    open_append,
    repair_torn_tail,
    start_day,
)
from fsm_exec.journal.idle import IdleRun, encode_line

#: A checkpointing component's file this large starts a new one at its next checkpoint
#: (:meth:`~fsm_exec.journal.writer.EventLogger.checkpoint_due`).
ROTATE_BYTES = 64 << 20

#: A :class:`Journal`'s ``fd`` once its file is closed (the logger closed, or a rotation
#: between closing the file and opening the next).
CLOSED = -1
#: A :class:`Journal`'s ``fd`` before its file is opened: a buffered backtest journal
#: starting on no file opens (makes) it when it first writes to it (:func:`flush`).
UNOPENED = -2


class JournalLossError(EventLogError):
    """Records counted as written are not in the file: an fsync failed before they were
    durable (``EXEC-009``). The journal goes on after what the file holds, with no gap;
    a writer that acted on the lost records must recover (the manager retires)."""

    def __init__(self, path: Path, first: int, last: int) -> None:
        self.path, self.first, self.last = str(path), first, last
        super().__init__(f"records seq {first}-{last} of {path} were lost (an fsync failed "
                         f"before they were durable); the journal goes on from seq "
                         f"{first - 1}")


def too_long(j: Journal, event_type: str, n: int, limit: int) -> EventLogError:
    """A record longer than any reader reads (``limit`` bytes): refused, nothing
    written."""
    return EventLogError(f"cannot write journal {j.path}: a {event_type} record of {n} bytes "
                         f"is longer than the {limit} bytes a journal line may hold")


def prune(log_dir: Path, j: Journal, today: dt.date, retention_days: int | None) -> None:
    """Delete the oldest whole files of ``j`` that ended more than ``retention_days`` ago;
    only files before the current one (for a checkpointing component: before the newest
    checkpoint, which starts the current file)."""
    if retention_days is None or j.fresh:  # fresh: no file but the current one
        return
    try:
        cutoff = today - dt.timedelta(days=retention_days)
    except OverflowError:  # a ``today`` near year 1: nothing is that old
        return
    files = files_of(log_dir, journal_stem_of(j.path))
    starts = [start_day(p, j.day) for p in files]
    for i, p in enumerate(files[:-1]):
        if p == j.path:
            break
        ended = starts[i + 1]  # a file ends where the next one starts
        if ended >= cutoff:
            break  # only ever a prefix: history is pruned from its oldest end
        p.unlink()


def no_time(j: Journal, event_type: str, iso: str) -> EventLogError | None:
    """Why a record of the manager's component whose timestamp is no time is refused,
    nothing written (the readers refuse it, so the journal could not be recovered); else
    ``None``. (Another component's timestamp is its caller's business.)"""
    if journal_time(iso) is not None:
        return None
    return EventLogError(f"cannot write journal {j.path}: the {event_type} record's timestamp "
                         f"{shorten(repr(iso), 60)} is no time (an ISO 8601 time with a UTC "
                         "instant, which every reader checks)")


class Journal:
    """One component's open journal file (``fd``: :data:`UNOPENED` until a buffered
    backtest journal on no file first writes to it; then its file is made, ``owner``'s)."""

    __slots__ = ("path", "seq", "day", "fd", "buf", "buffered", "unsynced", "dirty",
                 "since_checkpoint", "managed", "fresh", "idle", "owner")

    def __init__(self, path: Path, seq: int, day: dt.date, fd: int,
                 fresh: bool = False, owner: FileOwner | None = None) -> None:
        self.path, self.seq, self.day, self.fd = path, seq, day, fd
        self.owner = owner  # whose a file made later is (see files.open_append)
        # No file of this journal was there when it was opened, and none rotated since:
        # nothing to read back, rotate or prune (a new run's journal costs no reads).
        self.fresh = fresh
        # backtest: records not yet written to the file, one buffer (a list of lines would
        # keep each line's own allocation: kilobytes each)
        self.buf = bytearray()
        self.buffered = 0
        self.unsynced = False  # written records not yet fsynced
        self.dirty = False  # a write was cut short: resynchronise from the file first
        self.since_checkpoint = 0
        self.managed = False  # the component checkpoints: rotation only at its checkpoints
        self.idle: IdleRun | None = None  # backtest: the run of idle calls not written yet


def open_journal(log_dir: Path, component: str, path: Path, today: dt.date, *,
                 owner: FileOwner | None, durable: bool, new_dir: bool,
                 defer: bool) -> Journal:
    """``component``'s journal at ``path`` in ``log_dir``, opened for appending. In a new
    directory (:func:`~fsm_exec.journal.lock.take_directory`: no file in it but what this
    logger made) it starts on no file, nothing read back, its file made now or, ``defer``
    (a buffered backtest journal), at its first write (:func:`flush`). Else a torn last
    line is set aside, the last ``seq`` read back from the newest file that holds one, and
    the day the file started read from it. A file made now is fsynced into the directory
    when ``durable``. Raises ``OSError``."""
    if new_dir:
        fd = UNOPENED if defer else open_append(path, owner)
        if fd >= 0 and durable:
            fsync_dir(log_dir)
        return Journal(path, 0, today, fd, fresh=True, owner=owner)
    existed = path.exists()
    # the day the file started (or was last written), read before a repair
    day = start_day(path, today) if existed and path.stat().st_size else today
    if existed:
        repair_torn_tail(path, owner)
    seq = 0
    files = journal_files(log_dir, component)
    for p in reversed(files):
        seq = last_seq(p)
        if seq:
            break
    fd = open_append(path, owner)
    if not existed and durable:
        fsync_dir(log_dir)
    return Journal(path, seq, day, fd, fresh=not files, owner=owner)


def write_line(j: Journal, line: bytes, fsync: Callable[[Journal], None] | None) -> None:
    """Write one whole line to ``j``'s file now, and ``fsync`` it (if given; else it is
    left unsynced). What fails takes back a partial line: the file keeps whole lines."""
    try:
        offset = os.lseek(j.fd, 0, os.SEEK_END)
    except OSError as exc:
        raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}", exc) from exc
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(j.fd, view):]
        if fsync is not None:
            fsync(j)
        else:
            j.unsynced = True
    except OSError as exc:
        with contextlib.suppress(OSError):  # take back a partial line: keep it whole
            os.ftruncate(j.fd, offset)
        raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}", exc) from exc


class Held:
    """What an EventLogger holds of the operating system: its journals (each a file and a
    buffer) and the directory lock's descriptor. Kept apart from the logger so that its
    finalizer can release them without keeping the logger alive."""

    __slots__ = ("journals", "lock_fd", "durable")

    def __init__(self, lock_fd: int, durable: bool) -> None:
        self.journals: dict[str, Journal] = {}
        self.lock_fd = lock_fd
        self.durable = durable


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def file_bytes(j: Journal) -> int:
    """How many bytes ``j``'s current file holds, its buffer counted."""
    return (os.fstat(j.fd).st_size if j.fd >= 0 else 0) + j.buffered  # none made yet: 0


def settle(j: Journal) -> None:
    """Put ``j``'s run of idle calls into its buffer, as one record with the next seq."""
    run = j.idle
    if run is None:
        return
    j.idle = None  # written once at most: cut short before the buffer takes it, it is lost
    seq = j.seq + 1
    line = encode_line(run.record(seq))
    # Cut short from here on (an interrupt), the next write reads the file back first
    # (``dirty``): never a seq twice.
    j.dirty = True
    j.buf += line
    j.buffered += len(line)
    j.seq = seq
    j.since_checkpoint += 1
    j.dirty = False


def flush(j: Journal) -> None:
    """Write ``j``'s buffered records (its idle run first) to its file, made now if it is
    :data:`UNOPENED` (what fails waits for the next try)."""
    if j.idle is not None:
        settle(j)
    if not j.buf:
        return
    if j.fd == UNOPENED:  # its first write: make the file now
        try:
            j.fd = open_append(j.path, j.owner)
        except OSError as exc:  # the buffer waits for the next try
            raise EventLogError(f"cannot open journal {j.path}: {exc.strerror}",
                                exc) from exc
    # Held from the hand-over to the last byte written: an interrupt cutting it short would
    # lose the records taken out of the buffer (or, after a write whose count was not seen
    # yet, write some twice); it is raised once they are in the file.
    with interrupts_deferred():
        data, j.buf = j.buf, bytearray()
        j.buffered = 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(j.fd, view):]
        except OSError as exc:
            j.buf = bytearray(view)  # what did not reach the file waits for the next try
            j.buffered = len(view)
            raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}",
                                exc) from exc
        j.unsynced = True


def release(held: Held) -> None:
    """An EventLogger collected, or alive at interpreter exit, without :meth:`close`:
    write what its buffers hold (and fsync it, if its records are fsynced), then close its
    files and release its lock, as close() would, holding SIGINT and SIGTERM meanwhile (a
    Ctrl-C in the middle of it would leave the lock held and the files open). Raises
    nothing but such an interrupt, once all is let go (from a garbage-collection
    finalizer, CPython prints it as ignored: it cannot be raised from there)."""
    with interrupts_deferred():
        _release(held)


def _release(held: Held) -> None:
    for j in set(held.journals.values()):
        if j.fd == CLOSED:
            continue
        with contextlib.suppress(OSError):
            flush(j)  # an UNOPENED journal's file is made if it has records
            if j.unsynced and held.durable:
                os.fsync(j.fd)
        if j.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(j.fd)
        j.fd = CLOSED
        j.buf.clear()
        j.idle = None
    held.journals.clear()
    if held.lock_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(held.lock_fd)
        held.lock_fd = CLOSED


#: Every EventLogger not closed yet (``close()`` takes it out).
open_loggers: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def close_all() -> None:  # pragma: no cover - runs at interpreter exit
    """At interpreter exit: close every logger still open (its records written)."""
    for logger in list(open_loggers):
        with contextlib.suppress(Exception):
            logger.close()


def _forget_inherited() -> None:
    """In a forked child: drop every logger inherited from the parent, unflushed, so the
    child never writes the parent's records again (duplicate seq, duplicate CSV rows)."""
    for logger in list(open_loggers):
        logger._abandon()
    open_loggers.clear()


os.register_at_fork(after_in_child=_forget_inherited)
