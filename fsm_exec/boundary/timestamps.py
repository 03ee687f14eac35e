"""Timestamps at the boundary: the package's one ISO 8601 parser (:func:`parse_timestamp`;
:func:`journal_time` as the journal reads its records' times),
the journal's one form of a caller's timestamp (:func:`canonical_timestamp`: UTC ISO 8601),
what a manager given ``assume_timezone`` does with a naive one (:func:`assume_zone`), and
why a value is not a timestamp (:func:`timestamp_problem`, for the error message)."""

from __future__ import annotations

import datetime as dt
import math
import numbers
from typing import Any

import orjson

from fsm_exec.core.errors import type_name

_DUMPS = orjson.dumps

#: Epoch seconds accepted as a timestamp: 2000-01-01 to 2100-01-01 (UTC). Milliseconds or
#: nanoseconds since the epoch fall far outside and are refused, never misread.
EPOCH_RANGE: tuple[int, int] = (946_684_800, 4_102_444_800)


def parse_timestamp(text: object, *, naive_is_utc: bool = False) -> dt.datetime | None:
    """The package's one ISO 8601 parser: ``text`` as an aware datetime (its own offset
    kept), or ``None`` when it is not a string of at most 64 characters holding an ISO
    8601 time with an offset (``Z`` included; without one, taken as UTC when
    ``naive_is_utc``) that has a UTC instant (``0001-01-01T00:00:00+01:00`` has none)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.utcoffset() is None:
        if not naive_is_utc:
            return None
        parsed = parsed.replace(tzinfo=dt.UTC)
    if parsed.year in (1, 9999) and _in_utc(parsed) is None:  # only the edges can overflow
        return None
    return parsed


def journal_time(text: object) -> dt.datetime | None:
    """A journal record's timestamp as :func:`parse_timestamp` reads it, a time without an
    offset taken as UTC; ``None`` when it is no time. The one rule of what a record's time
    is: the writer refuses any other for the manager's records, every reader refuses it
    (recovery counts a lifecycle's waits from it), and the tools read it so."""
    return parse_timestamp(text, naive_is_utc=True)


def utc_iso(t: dt.datetime) -> str:
    """``t.isoformat()`` for a ``datetime`` (the class itself, not a subclass such as
    ``pandas.Timestamp``, whose nanoseconds orjson would drop) whose ``tzinfo`` is
    ``datetime.UTC``: orjson writes the same text (RFC 3339: the date, ``T``, the time,
    microseconds when not zero, ``+00:00``) at a third of the cost, measured; a property
    test holds the two equal."""
    return _DUMPS(t)[1:-1].decode()


def _in_utc(t: dt.datetime) -> str | None:
    """``t`` (aware) in UTC, ISO 8601; ``None`` beyond the range a datetime holds."""
    try:
        u = t.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # 0001-01-01 +01:00, 9999-12-31 -01:00
        return None
    return utc_iso(u) if type(u) is dt.datetime else u.isoformat()


def canonical_timestamp(ts: Any) -> str | None:
    """The journal's one form of a caller's timestamp: UTC ISO 8601, or ``None`` (with the
    reason in :func:`timestamp_problem`) when ``ts`` is not one.

    Accepted: a timezone-aware ``datetime`` (``pandas.Timestamp`` included), an ISO 8601
    string with an offset (``Z`` included), epoch seconds in :data:`EPOCH_RANGE`.
    """
    if type(ts) is dt.datetime and ts.tzinfo is dt.UTC:  # the common case, first
        return utc_iso(ts)
    if type(ts) is dt.datetime or isinstance(ts, dt.datetime):
        if ts != ts or ts.utcoffset() is None:  # NaT; naive
            return None
        return _in_utc(ts)
    if isinstance(ts, str):
        parsed = parse_timestamp(ts)
        if parsed is None:
            return None
        return _in_utc(parsed)
    if isinstance(ts, numbers.Real) and not isinstance(ts, bool):  # (numpy's bool is none)
        try:
            seconds = float(ts)
        except (TypeError, ValueError, OverflowError):  # pragma: no cover - exotic Reals
            return None
        if not (math.isfinite(seconds) and EPOCH_RANGE[0] <= seconds < EPOCH_RANGE[1]):
            return None
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()
    return None


def assume_zone(ts: Any, zone: dt.tzinfo) -> Any:
    """A naive ``datetime`` (``pandas.Timestamp`` included) or a naive ISO 8601 string read
    as a time in ``zone`` (an aware datetime); anything else as it is. What a manager given
    ``assume_timezone`` does with a timestamp :func:`canonical_timestamp` refused."""
    if isinstance(ts, dt.datetime):
        return ts.replace(tzinfo=zone) if ts == ts and ts.utcoffset() is None else ts
    if isinstance(ts, str) and len(ts) <= 64:
        try:
            parsed = dt.datetime.fromisoformat(ts)
        except ValueError:
            return ts
        return parsed.replace(tzinfo=zone) if parsed.utcoffset() is None else ts
    return ts


_OUT_OF_RANGE = ("a time whose UTC instant is outside the years 1-9999 (a datetime holds no "
                 "other)")


def _parses(text: str) -> bool:
    """``text`` is an ISO 8601 time with an offset (whatever its range)."""
    try:
        return len(text) <= 64 and dt.datetime.fromisoformat(text).utcoffset() is not None
    except ValueError:
        return False


def timestamp_problem(ts: Any) -> str:
    """Why ``ts`` is not a timestamp the manager accepts (for the error message)."""
    if isinstance(ts, dt.datetime):
        if ts != ts:
            return "NaT is not a time"
        if ts.utcoffset() is not None:
            return _OUT_OF_RANGE
        return ("a naive datetime (no timezone): make it aware, e.g. "
                "dt.replace(tzinfo=datetime.UTC) or pandas.Timestamp(x, tz='UTC'), or say "
                "which zone naive times are in: ExecutionManager(..., "
                "assume_timezone='UTC')")
    if isinstance(ts, str):
        if parse_timestamp(ts) is None and _parses(ts):
            return _OUT_OF_RANGE
        if assume_zone(ts, dt.UTC) is not ts:
            return ("an ISO 8601 time without an offset: add one (e.g. "
                    "'2025-10-01T00:00:00Z'), or say which zone naive times are in: "
                    "ExecutionManager(..., assume_timezone='UTC')")
        return ("a string that is not an ISO 8601 time with an offset (e.g. "
                "'2025-10-01T00:00:00+00:00' or '2025-10-01T00:00Z')")
    if isinstance(ts, numbers.Real) and not isinstance(ts, bool):
        return ("epoch seconds outside 2000-2100 (milliseconds or nanoseconds since the "
                "epoch are refused: divide by 1e3 or 1e9)")
    return (f"a {type_name(ts)}: give a timezone-aware datetime, an ISO 8601 string "
            "with an offset, or epoch seconds")
