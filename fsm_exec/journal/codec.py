"""The journal's codec: how a record becomes one JSON line, and back.

A record is one line: ``{"seq", "timestamp", "event_type", "component", "data"}``. ``seq``
grows by one per record of a component's journal, across restarts and rotated files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import orjson

#: The journal format this package writes and reads (every checkpoint says which).
JOURNAL_FORMAT = 2
CHECKPOINT = "checkpoint"
_DECIMAL_TAG = "__decimal__"
DUMPS = orjson.dumps
APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


def encode_default(obj: Any) -> Any:
    """orjson's hook for what it does not know: every case deliberate, none a repr."""
    if isinstance(obj, Decimal):
        return {_DECIMAL_TAG: str(obj)}  # exact, and read back as a Decimal
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()  # datetime subclasses (pandas.Timestamp) land here
    if attrs.has(type(obj)):
        return attrs.asdict(obj, recurse=False)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset):
        try:
            return sorted(obj)  # numbers in numeric order, strings in text order
        except TypeError:
            return sorted(obj, key=lambda x: (type(x).__name__, repr(x)))
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Path | uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):  # as orjson writes them, so both paths agree
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    # Never a repr: an unknown object's repr may carry what no log should hold.
    return f"<{type(obj).__name__}>"


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: non-finite floats become ``"NaN"``/``"Infinity"``/
    ``"-Infinity"`` (JSON has no such numbers), keys become strings, the rest as
    :func:`encode_default` says."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 64):
        return {_DECIMAL_TAG: str(value)}  # beyond orjson's 64-bit integers: exact, tagged
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates: JSON text must be valid UTF-8
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if value is None or isinstance(value, int | bool):
        return value
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k if isinstance(k, int) else to_jsonable(k)):
                to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    converted = encode_default(value)
    return converted if isinstance(converted, str) else to_jsonable(converted)


def encode(record: Mapping[str, Any]) -> bytes:
    """One JSON line (with its newline). Always valid JSON."""
    try:
        line = orjson.dumps(record, default=encode_default, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        line = b"null"  # non-string keys and the like: take the careful path
    if b"null" in line:
        # orjson writes NaN and infinities as null: re-encode carefully so that they keep
        # their meaning. Only records that hold a null (rare) pay for this.
        line = orjson.dumps(to_jsonable(record), option=orjson.OPT_APPEND_NEWLINE)
    return line


def from_jsonable(value: Any) -> Any:
    """Undo the one tag :func:`encode` adds: ``{"__decimal__": "1.5"}`` -> ``Decimal``."""
    if isinstance(value, dict):
        if len(value) == 1 and _DECIMAL_TAG in value:
            return Decimal(value[_DECIMAL_TAG])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


def iso_timestamp(ts: Any) -> str:
    """The record's timestamp: ISO 8601 for datetimes, UTC for epoch seconds and for
    ``None`` (now); strings are kept as the caller gave them."""
    if type(ts) is dt.datetime:  # the common case, first
        return ts.isoformat()
    if isinstance(ts, str):
        return ts
    if ts is None:
        return dt.datetime.now(dt.UTC).isoformat()
    if isinstance(ts, dt.datetime | dt.date):
        return ts.isoformat()
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
    iso = getattr(ts, "isoformat", None)
    return str(iso()) if callable(iso) else str(ts)
