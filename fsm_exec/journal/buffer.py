"""What an :class:`~fsm_exec.journal.writer.EventLogger` holds of each journal: the open
file, the records buffered for it (backtest), and the run of idle calls not written yet.

**Idle runs.** Most calls of a backtest loop change nothing: their ``state_update`` records
differ only in their timestamp and ``processing_time_ms``. A buffered journal keeps the
latest ``state_update`` back as an :class:`IdleRun`; each following ``state_update`` of the
same component that says the same (every field but the time taken) joins it, and the run
is written as one record before anything else is written to the journal, and whenever the
buffer is flushed (``flush``, ``sync``, ``close``, a rotation). A run of one call is
written exactly as the call's own record; a run of ``n > 1`` calls is that record with the
last call's timestamp, the time taken summed, ``calls: n`` and ``first_timestamp`` (the
first call's). The counters it carries are the same for every call of the run, so the fold
(:class:`~fsm_exec.journal.state.ManagerState`) reads it as it reads one call's. Live
journals write every record as it comes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Any

import orjson

from fsm_exec.core.errors import EventLogError
from fsm_exec.journal.codec import (
    APPEND_NEWLINE,
    DUMPS,
    MAX_LINE_BYTES,
    encode_default,
    to_jsonable,
)

#: A checkpointing component's file this large starts a new one at its next checkpoint
#: (:meth:`~fsm_exec.journal.writer.EventLogger.checkpoint_due`).
ROTATE_BYTES = 64 << 20
#: The record a run of idle calls is written as.
STATE_UPDATE = "state_update"
_MS = "processing_time_ms"


class JournalLossError(EventLogError):
    """Records counted as written are not in the file: an fsync failed before they were
    durable (``EXEC-009``). The journal goes on after what the file holds, with no gap;
    a writer that acted on the lost records must recover (the manager retires)."""

    def __init__(self, path: Path, first: int, last: int) -> None:
        self.path, self.first, self.last = str(path), first, last
        super().__init__(f"records seq {first}-{last} of {path} were lost (an fsync failed "
                         f"before they were durable); the journal goes on from seq "
                         f"{first - 1}")


def too_long(j: Journal, event_type: str, n: int, limit: int = MAX_LINE_BYTES
             ) -> EventLogError:
    """A record longer than any reader reads: refused, nothing written."""
    return EventLogError(f"cannot write journal {j.path}: a {event_type} record of {n} bytes "
                         f"is longer than the {limit} bytes a journal line may hold")


def encode_line(record: dict[str, Any]) -> bytes:
    """One record as its journal line (the writer's encoding: orjson, and the careful path
    for what orjson writes as ``null``: NaN and infinities)."""
    try:
        line = DUMPS(record, default=encode_default, option=APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        line = b"null"
    if b"null" in line:  # NaN, infinities: the careful path (rare)
        line = DUMPS(to_jsonable(record), option=APPEND_NEWLINE)
    return line


def _key(data: dict[str, Any]) -> bytes | None:
    """``data`` as exact JSON (orjson keeps each value's type), or ``None`` when it is not
    plain JSON data or holds a ``null`` (orjson writes NaN so too): such a record never
    joins a run."""
    try:
        key = DUMPS(data)
    except orjson.JSONEncodeError:
        return None
    return None if b"null" in key else key


class IdleRun:
    """``state_update`` records saying the same thing, not written yet (see the module)."""

    __slots__ = ("component", "first", "last", "data", "same", "key", "calls", "ms")

    def __init__(self, component: str, iso: str, data: dict[str, Any]) -> None:
        self.component, self.first, self.last = component, iso, iso
        self.data = data
        same = dict(data)
        self.ms = same.pop(_MS, None)
        self.same = same
        self.key = _key(same)  # what another call must say to join the run
        self.calls = 1

    def join(self, component: str, iso: str, data: dict[str, Any]) -> bool:
        """Add one call's record to the run, if it says the same (True); else False. The
        same: the same fields, equal as JSON (so of the same types: ``true`` is not ``1``,
        ``0`` is not ``0.0``), the time taken aside."""
        if component != self.component or self.key is None:
            return False
        same = dict(data)
        ms = same.pop(_MS, None)
        if (type(ms) is not type(self.ms) or (ms is not None and type(ms) not in (int, float))
                or _key(same) != self.key):
            return False
        if ms is not None:
            self.ms += ms
        self.calls += 1
        self.last = iso
        return True

    def record(self, seq: int) -> dict[str, Any]:
        """The run as the one record it is written as."""
        data = self.data
        if self.calls > 1:
            data = {**self.same}
            if self.ms is not None:
                data[_MS] = self.ms
            data["calls"] = self.calls
            data["first_timestamp"] = self.first
        return {"seq": seq, "timestamp": self.last, "event_type": STATE_UPDATE,
                "component": self.component, "data": data}


class Journal:
    """One component's open journal file."""

    __slots__ = ("path", "seq", "day", "fd", "buf", "buffered", "unsynced", "dirty",
                 "since_checkpoint", "managed", "idle")

    def __init__(self, path: Path, seq: int, day: dt.date, fd: int) -> None:
        self.path, self.seq, self.day, self.fd = path, seq, day, fd
        # backtest: records not yet written to the file, one buffer (a list of lines would
        # keep each line's own allocation: kilobytes each)
        self.buf = bytearray()
        self.buffered = 0
        self.unsynced = False  # written records not yet fsynced
        self.dirty = False  # a write was cut short: resynchronise from the file first
        self.since_checkpoint = 0
        self.managed = False  # the component checkpoints: rotation only at its checkpoints
        self.idle: IdleRun | None = None  # backtest: the run of idle calls not written yet


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
    j.idle = None
    seq = j.seq + 1
    line = encode_line(run.record(seq))
    j.buf += line
    j.buffered += len(line)
    j.seq = seq
    j.since_checkpoint += 1


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


class Held:
    """What an EventLogger holds of the operating system: its journals (each a file and a
    buffer) and the directory lock's descriptor. Kept apart from the logger so that its
    finalizer can release them without keeping the logger alive."""

    __slots__ = ("journals", "lock_fd", "durable")

    def __init__(self, lock_fd: int, durable: bool) -> None:
        self.journals: dict[str, Journal] = {}
        self.lock_fd = lock_fd
        self.durable = durable


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
