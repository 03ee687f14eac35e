"""The journal's codec: how a record becomes one JSON line, and back; the one encoder and
the one (validating) decoder of the journal.

The tag scheme is the canonical form's wire form (:mod:`fsm_exec.boundary.canonical`
defines the four tags, because blocks and venue replies take their wire form at the
boundary, below this layer): ``{"__int__": "..."}``, ``{"__float__": "NaN"}``,
``{"__decimal__": "1.5"}``, ``{"__dict__": [[key, value], ...]}``. Journals of earlier
releases wrote integers beyond 64 bits ``{"__decimal__": ...}``: they read as decimals, as
they always did.

A record is one line: ``{"seq", "timestamp", "event_type", "component", "data"}``. ``seq``
grows by one per record of a component's journal, across restarts and rotated files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import orjson

from fsm_exec.boundary.canonical import DECIMAL_TAG, DICT_TAG, FLOAT_TAG, INT_TAG, TAGS
from fsm_exec.boundary.plain import MAX_INT_DIGITS
from fsm_exec.core.limits import MAX_DECIMAL_TEXT

#: The journal format this package writes and reads (every checkpoint says which).
JOURNAL_FORMAT = 2
CHECKPOINT = "checkpoint"
#: How deep a line may nest (containers in containers, the record itself included): orjson
#: refuses to write deeper, so the reader refuses to read deeper.
MAX_NESTING = 255
#: The longest line the writer writes, and the reader reads: room for a checkpoint of a huge
#: queue (tens of MB), and a bound on what one line may cost a reader.
MAX_LINE_BYTES = 256 << 20
DUMPS = orjson.dumps
APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


def encode_default(obj: Any) -> Any:
    """orjson's hook for what it does not know: every case deliberate, none a repr."""
    if isinstance(obj, Decimal):
        return {DECIMAL_TAG: str(obj)}  # exact, and read back as a Decimal
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
    """``value`` as JSON data in the journal's one tag scheme (that of
    :func:`~fsm_exec.boundary.canonical.to_wire`): integers beyond 64 bits
    ``{"__int__": ...}``, non-finite floats ``{"__float__": "NaN"}``, decimals
    ``{"__decimal__": ...}``; keys become strings; a dict that would read as a tag it does
    not hold is wrapped ``{"__dict__": [[key, value]]}``; the rest as
    :func:`encode_default` says."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {FLOAT_TAG: "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 64):
        return {INT_TAG: str(value)}  # beyond orjson's 64-bit integers: exact, tagged
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates: JSON text must be valid UTF-8
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if value is None or isinstance(value, int | bool):
        return value
    if isinstance(value, Mapping):
        out = {k if isinstance(k, str) else _key_text(k): to_jsonable(v)
               for k, v in value.items()}
        if len(out) == 1 and next(iter(out)) in TAGS:
            try:  # a tagged value as the wire form holds it: kept
                _walk(out, "$", 0, False)
            except CodecError:  # plain data that would read as a tag: wrapped
                return {DICT_TAG: [[k, v] for k, v in out.items()]}
        return out
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    converted = encode_default(value)
    return converted if isinstance(converted, str) else to_jsonable(converted)


_PLAIN_LEAVES = frozenset({str, int, bool, type(None)})
_INT_RANGE = (-(1 << 63), 1 << 64)


def needs_care(value: Any) -> bool:
    """False when :func:`to_jsonable` would give ``value``, which orjson could write (its
    strings valid UTF-8), back unchanged (but tuples as lists), so that orjson's own line
    of it is already the careful one: plain JSON data of
    the built-in types, with string keys, finite floats, 64-bit integers, and no dict that
    would read as a tag. A writer that saw ``null`` in orjson's line (a ``None``, or a NaN
    written so) asks this before re-encoding: a record with a legitimate ``None`` (every
    checkpoint) then costs one walk, not a rebuilt copy."""
    stack = [value]
    pop, push = stack.pop, stack.append
    leaves = _PLAIN_LEAVES
    lo, hi = _INT_RANGE
    while stack:
        v = pop()
        kind = type(v)
        if kind in leaves:
            if kind is int and not lo <= v < hi:
                return True
            continue
        if kind is float:
            if v - v != 0.0:  # NaN and the infinities (x - x is NaN for them)
                return True
        elif kind is dict:
            if len(v) == 1 and next(iter(v)) in TAGS:
                return True
            for k, item in v.items():
                if type(k) is not str:
                    return True
                push(item)
        elif kind is list or kind is tuple:
            stack.extend(v)
        else:
            return True
    return False


def _key_text(k: Any) -> str:
    """A key that is not a string, as the text the journal keys it by."""
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float) and not math.isfinite(k):
        return "NaN" if math.isnan(k) else ("Infinity" if k > 0 else "-Infinity")
    converted = to_jsonable(k)
    return converted if isinstance(converted, str) else str(converted)


def encode(record: Mapping[str, Any]) -> bytes:
    """One JSON line (with its newline). Always valid JSON that :func:`decode` reads."""
    try:
        line = orjson.dumps(record, default=encode_default, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        line = b"null"  # non-string keys and the like: take the careful path
    if b"null" in line or b'{"__' in line:
        # orjson writes NaN and infinities as null, and plain data may look like a tag:
        # re-encode carefully so that they keep their meaning. The writer's hot path looks
        # for null only (a second search costs 0.3 us a record): the manager's data is
        # canonical, whose wire form already wraps what would read as a tag.
        line = orjson.dumps(to_jsonable(record), option=orjson.OPT_APPEND_NEWLINE)
    return line


# ------------------------------------------------------------------------ decoding


class CodecError(ValueError):
    """A value the journal's codec did not write: ``where`` (a JSON path) and ``reason``.
    The reader turns it into :class:`~fsm_exec.journal.files.JournalCorruptError`."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


_INT_TEXT = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}")  # str(int): Python's own limit
_DECIMAL_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity|s?NaN[0-9]*)")
_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_MAX_DECIMAL_TEXT = MAX_DECIMAL_TEXT  # the boundary's bound too (core.limits)


def _tagged(tag: str, inner: Any, where: str, depth: int, build: bool) -> Any:
    if tag == DECIMAL_TAG:
        if type(inner) is not str or len(inner) > _MAX_DECIMAL_TEXT or \
                not _DECIMAL_TEXT.fullmatch(inner):
            raise CodecError(where, f"{DECIMAL_TAG} must hold a decimal number's text, got "
                                    f"{_shown(inner)}")
        return Decimal(inner) if build else None
    if tag == INT_TAG:
        if type(inner) is not str or not _INT_TEXT.fullmatch(inner):
            raise CodecError(where, f"{INT_TAG} must hold an integer's digits (at most "
                                    f"{MAX_INT_DIGITS}), "
                                    f"got {_shown(inner)}")
        return int(inner) if build else None
    if tag == FLOAT_TAG:
        if type(inner) is not str or inner not in _FLOATS:
            raise CodecError(where, f"{FLOAT_TAG} must hold NaN, Infinity or -Infinity, got "
                                    f"{_shown(inner)}")
        return _FLOATS[inner]
    # DICT_TAG: [[key, value], ...], keys strings or integers, each once
    if type(inner) is not list:
        raise CodecError(where, f"{DICT_TAG} must hold a list of [key, value] pairs, got "
                                f"{_shown(inner)}")
    out: dict[Any, Any] = {}
    for i, pair in enumerate(inner):
        at = f"{where}[{i}]"
        if type(pair) is not list or len(pair) != 2:
            raise CodecError(at, f"a {DICT_TAG} entry must be a [key, value] pair, got "
                                 f"{_shown(pair)}")
        key = _walk(pair[0], f"{at}[0]", depth + 2, True)
        if type(key) is not str and type(key) is not int:
            raise CodecError(f"{at}[0]", f"a key must be a string or an integer, got "
                                         f"{_shown(pair[0])}")
        if key in out:
            raise CodecError(f"{at}[0]", f"the key {_shown(key)} comes twice")
        out[key] = _walk(pair[1], f"{at}[1]", depth + 2, build)
    return out if build else None


def _shown(v: Any) -> str:
    """A short, safe description of a value read from a file (never the whole of it)."""
    if v is None or type(v) in (bool, int, float):
        text = repr(v)
    elif type(v) is str:
        text = repr(v[:40]) + ("..." if len(v) > 40 else "")
    else:
        return f"a {type(v).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _walk(v: Any, where: str, depth: int, build: bool) -> Any:
    t = type(v)
    if t is dict:
        if depth >= MAX_NESTING:
            raise CodecError(where, f"nested deeper than {MAX_NESTING} levels (the writer "
                                    "never writes deeper)")
        if len(v) == 1:
            (tag, inner), = v.items()
            if tag in TAGS:
                return _tagged(tag, inner, f"{where}.{tag}", depth + 1, build)
        if build:
            return {k: _walk(x, _key_path(where, k), depth + 1, True) for k, x in v.items()}
        for k, x in v.items():
            if type(x) is dict or type(x) is list:
                _walk(x, _key_path(where, k), depth + 1, False)
        return None
    if t is list:
        if depth >= MAX_NESTING:
            raise CodecError(where, f"nested deeper than {MAX_NESTING} levels (the writer "
                                    "never writes deeper)")
        if build:
            return [_walk(x, f"{where}[{i}]", depth + 1, True) for i, x in enumerate(v)]
        for i, x in enumerate(v):
            if type(x) is dict or type(x) is list:
                _walk(x, f"{where}[{i}]", depth + 1, False)
        return None
    return v


def _key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{key!r}]"


def decode(value: Any, where: str = "$") -> Any:
    """JSON data as the journal holds it, back to what was written: every tag undone
    (``{"__decimal__": "1.5"}`` is ``Decimal("1.5")``, ``{"__int__": ...}`` an int,
    ``{"__float__": "NaN"}`` a float, ``{"__dict__": [[k, v]]}`` a dict). Validates as it
    goes: a tag holding what the writer never writes, or nesting deeper than it writes,
    raises :class:`CodecError` naming where."""
    return _walk(value, where, 0, True)


def validate(value: Any, where: str = "$") -> None:
    """What :func:`decode` checks, without building the decoded value."""
    _walk(value, where, 0, False)


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
