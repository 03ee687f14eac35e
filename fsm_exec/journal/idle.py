"""Runs of idle calls, held back by a buffered :class:`~fsm_exec.journal.writer.EventLogger`
journal (:class:`~fsm_exec.journal.handles.Journal`), and the writer's encoding of one
record (:func:`encode_line`).

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

from typing import Any

import orjson

from fsm_exec.journal.codec import (
    APPEND_NEWLINE,
    DUMPS,
    encode_default,
    needs_care,
    to_jsonable,
)

#: The record a run of idle calls is written as.
STATE_UPDATE = "state_update"
_MS = "processing_time_ms"


def encode_line(record: dict[str, Any]) -> bytes:
    """One record as its journal line (the writer's encoding: orjson, and the careful path
    for what orjson cannot write or writes as ``null``: NaN and infinities)."""
    try:
        line = DUMPS(record, default=encode_default, option=APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return DUMPS(to_jsonable(record), option=APPEND_NEWLINE)
    if b"null" in line and needs_care(record):  # NaN, infinities: the careful path
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
        # What another call must say to join the run: worked out at the first join (a
        # run that something else ends at once, a call that queued work, needs none).
        self.same: dict[str, Any] | None = None
        self.key: bytes | None = None
        self.ms: Any = None
        self.calls = 1

    def _know(self) -> None:
        same = dict(self.data)
        self.ms = same.pop(_MS, None)
        self.same = same
        self.key = _key(same)

    def join(self, component: str, iso: str, data: dict[str, Any]) -> bool:
        """Add one call's record to the run, if it says the same (True); else False. The
        same: the same fields, equal as JSON (so of the same types: ``true`` is not ``1``,
        ``0`` is not ``0.0``), the time taken aside."""
        if self.same is None:
            self._know()
        if component != self.component or self.key is None:
            return False
        same = dict(data)
        ms = same.pop(_MS, None)
        return _key(same) == self.key and self.extend(iso, ms)

    def extend(self, iso: str, ms: Any) -> bool:
        """One more call that says what the run says (compared by :meth:`join`, or known
        to its caller: the manager wrote the run's first record) and took ``ms``: joined
        (True), unless the run cannot be joined or ``ms`` is not a time of the run's kind."""
        if self.same is None:
            self._know()
        if (self.key is None or type(ms) is not type(self.ms)
                or (ms is not None and type(ms) not in (int, float))):
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
            assert self.same is not None  # a run of more than one call was joined
            data = {**self.same}
            if self.ms is not None:
                data[_MS] = self.ms
            data["calls"] = self.calls
            data["first_timestamp"] = self.first
        return {"seq": seq, "timestamp": self.last, "event_type": STATE_UPDATE,
                "component": self.component, "data": data}
