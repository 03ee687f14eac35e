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

from fsm_exec.core.errors import EventLogError
from fsm_exec.journal.idle import IdleRun, encode_line

#: A checkpointing component's file this large starts a new one at its next checkpoint
#: (:meth:`~fsm_exec.journal.writer.EventLogger.checkpoint_due`).
ROTATE_BYTES = 64 << 20


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


class Journal:
    """One component's open journal file."""

    __slots__ = ("path", "seq", "day", "fd", "buf", "buffered", "unsynced", "dirty",
                 "since_checkpoint", "managed", "fresh", "idle")

    def __init__(self, path: Path, seq: int, day: dt.date, fd: int,
                 fresh: bool = False) -> None:
        self.path, self.seq, self.day, self.fd = path, seq, day, fd
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
    return (os.fstat(j.fd).st_size if j.fd >= 0 else 0) + j.buffered


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
    """Write ``j``'s buffered records (its idle run first) to its file (what fails waits
    for the next try)."""
    if j.idle is not None:
        settle(j)
    if not j.buf:
        return
    data, j.buf = j.buf, bytearray()
    j.buffered = 0
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(j.fd, view):]
    except OSError as exc:
        j.buf = bytearray(view)  # what did not reach the file waits for the next try
        j.buffered = len(view)
        raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}", exc) from exc
    j.unsynced = True


def release(held: Held) -> None:
    """An EventLogger collected, or alive at interpreter exit, without :meth:`close`:
    write what its buffers hold (and fsync it, if its records are fsynced), then close its
    files and release its lock, as close() would. Never raises: nothing is left to tell."""
    for j in set(held.journals.values()):
        if j.fd < 0:
            continue
        with contextlib.suppress(OSError):
            flush(j)
            if j.unsynced and held.durable:
                os.fsync(j.fd)
        with contextlib.suppress(OSError):
            os.close(j.fd)
        j.fd = -1
        j.buf.clear()
        j.idle = None
    held.journals.clear()
    if held.lock_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(held.lock_fd)
        held.lock_fd = -1


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
