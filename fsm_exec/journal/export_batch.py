"""The CSV export's fast path: a journal file read in batches of lines, each batch turned
into rows with one C-level call per column (orjson to parse and to prove the lines are
as the writer writes them, ``map`` over the records, ``str.replace`` over the batch's
data), with Python run only for the cells not seen before: a batch's timestamps and
block ids are proved plain (their own cells) by one regular expression, and the rows of
``deltas.csv`` are made column by column when the deltas share one shape.

A batch it cannot prove ordinary (a line that is not JSON or not as the writer writes it,
an envelope mistyped or out of order, a tag the codec refuses, a structure where a name
belongs) is raised back as :class:`NotOrdinary`: :mod:`~fsm_exec.journal.export` then
exports it line by line, the careful way, which also names the line at fault. Both ways
write the same bytes or raise the same error (a differential property test in
``tests/test_csv.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import chain, compress, repeat
from operator import itemgetter
from typing import Any

import orjson

from fsm_exec.journal.codec import MAX_NESTING, CodecError, validate

#: The envelope, in the order the writer writes it.
ORDER = ("seq", "timestamp", "event_type", "component", "data")
_SEQ, _TS, _ET, _COMP, _DATA = (itemgetter(k) for k in ORDER)
_MARK = b',"data":'  # the envelope's data key
_PIECE = itemgetter(2)
_HEAD, _TAIL = itemgetter(0), itemgetter(1)  # of a Shape
_GET = dict.get
_LOADS, _DUMPS = orjson.loads, orjson.dumps


def _refused(levels: int) -> bool:
    """orjson refuses to write lists nested ``levels`` deep."""
    nested: list[Any] = []
    for _ in range(levels - 1):
        nested = [nested]
    try:
        _DUMPS(nested)
    except orjson.JSONEncodeError:
        return True
    return False  # pragma: no cover - orjson 3 refuses from 255 levels on


#: A batch's records written in one list by orjson are no deeper than the codec reads
#: (:data:`~fsm_exec.journal.codec.MAX_NESTING` levels, the record itself included): orjson
#: refuses a record one level deeper inside the list (so the codec's walk for depth is
#: needed only when it would not).
_DEPTH_PROVEN = _refused(MAX_NESTING + 2)


class NotOrdinary(Exception):
    """The batch needs the careful path."""


class Plans:
    """The cells that come back record after record, each made once: a record's shape
    (component, event type, source, dest, trigger, attempt, error code: the row around its
    block id), timestamps and block ids. ``cell`` makes one cell the careful way
    (:func:`~fsm_exec.journal.export.csv_cell` then the CSV field); ``plain`` matches text
    whose cell is itself, lines of it (one value a line, none empty)."""

    def __init__(self, cell: Callable[[Any], str], plain: re.Pattern[str]) -> None:
        self.cell, self.plain = cell, plain
        self.shapes = _Shapes(cell)
        self.texts = _Texts(cell)


class _Texts(dict[Any, str]):
    """Text (or ``None``) -> its cell. Only these are kept (``1 == True == 1.0`` are
    different cells); any other key is made the careful way every time."""

    def __init__(self, cell: Callable[[Any], str]) -> None:
        super().__init__()
        self.cell = cell

    def __missing__(self, value: Any) -> str:
        text = self.cell(value)
        if type(value) is str or value is None:
            if len(self) > 50_000:  # texts that do not come back (ids): start again
                self.clear()
            self[value] = text
        return text


#: A record's shape: the row's text before its block id and after it, then the cells of its
#: component and attempt (for deltas.csv).
Shape = tuple[str, str, str, str]


class _Shapes(dict[tuple[Any, ...], Shape]):
    """``(component, event_type, source, dest, trigger, attempt, type(attempt),
    error_code)`` -> its :data:`Shape`. Kept only when the
    names are text or absent and the attempt an int or absent: those keys equal no other
    (a float attempt, ``-0.0 == 0.0``, or ``True == 1`` in a name, is made every time)."""

    def __init__(self, cell: Callable[[Any], str]) -> None:
        super().__init__()
        self.cell = cell

    def make(self, key: tuple[Any, ...]) -> Shape:
        """The shape of ``key`` (kept when it may be); also for a key holding a
        structure (which no dict can hold)."""
        component, event_type, source, dest, trigger, attempt, _, error_code = key
        if type(component) is not str or type(event_type) is not str:
            raise NotOrdinary  # a mistyped envelope: the careful path says which line
        cell = self.cell
        who, tries = cell(component), cell(attempt)
        shape = (f"{who},{cell(event_type)},",
                 f",{cell(source)},{cell(dest)},{cell(trigger)},{tries},{cell(error_code)}",
                 who, tries)
        if (len(self) < 10_000 and (attempt is None or type(attempt) is int)
                and all(x is None or type(x) is str for x in (source, dest, trigger,
                                                              error_code))):
            self[key] = shape
        return shape

    __missing__ = make


#: What a record with deltas needs for its rows of deltas.csv: seq, the cells of its
#: timestamp and block id, its shape, its deltas, whether its line may hold a tag.
WithDeltas = tuple[int, str, str, Shape, Any, bool]


def rows(joined: bytes, lines: list[bytes], plans: Plans) -> tuple[str, list[WithDeltas]]:
    """The events.csv rows of ``lines`` (whole lines of one file, without their newlines;
    ``joined``: their text, a newline between two) and the records whose deltas make rows
    of deltas.csv; or :class:`NotOrdinary` when any line needs the careful path."""
    try:
        objs = list(map(_LOADS, lines))
        # (a slice's copy is compared with memcmp, a memoryview item by item: 5x slower)
        if _DUMPS(objs)[1:-1] != joined.replace(b"\n", b","):
            raise NotOrdinary  # not as the writer writes it: a duplicate key, a space...
        if set(map(tuple, objs)) != {ORDER}:  # the envelope, in order, nothing else
            raise NotOrdinary
        seqs = list(map(_SEQ, objs))
        datas = list(map(_DATA, objs))
        if set(map(type, seqs)) != {int} or set(map(type, datas)) != {dict}:
            raise NotOrdinary
        # Each line's data: its text after the envelope's data key (the first: the fields
        # before it are a number and text), up to the envelope's closing brace.
        data = b"\n".join(map(_PIECE, map(bytes.partition, lines, repeat(_MARK))))
        # What envelope_of walks with the codec: a line with a tag (only data holds one)
        # or an escape, or one that may nest too deep (a backslash is found ten times
        # faster than a pair; the one dumps above proved the depth, when orjson refuses
        # what the codec refuses).
        tagged = b'"__' in data
        if tagged or (b"\\" in joined and b"\\u" in joined):
            for obj, line in zip(objs, lines, strict=True):
                if b'"__' in line or b"\\u" in line:
                    validate(obj)
        if not _DEPTH_PROVEN and max(map(len, lines)) >= 2 * MAX_NESTING:
            for obj, line in zip(objs, lines, strict=True):
                if (len(line) >= 2 * MAX_NESTING
                        and line.count(b"{") + line.count(b"[") >= MAX_NESTING):
                    validate(obj)
        attempts = list(map(_GET, datas, repeat("attempt")))
        shapes = list(map(plans.shapes.__getitem__, zip(
            map(_COMP, objs), map(_ET, objs), map(_GET, datas, repeat("source")),
            map(_GET, datas, repeat("dest")), map(_GET, datas, repeat("trigger")),
            attempts, map(type, attempts), map(_GET, datas, repeat("error_code")),
            strict=True)))
        timestamps = list(map(_TS, objs))
        if set(map(type, timestamps)) != {str}:
            raise NotOrdinary
        timestamps = _cells(timestamps, plans)
        ids = _cells(list(map(_GET, datas, repeat("block_id"), repeat(""))), plans)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, CodecError, TypeError,
            KeyError, ValueError):
        raise NotOrdinary from None
    # Each line's data, quotes doubled as in a CSV field, cut before the closing brace.
    pieces = (data + b"\n").decode().replace('"', '""').split("}\n")
    pieces.pop()
    if b',"data":{}}' in joined:  # empty data is the one JSON object written unquoted
        fields = ["{}" if p == "{}" else f'"{p}"' for p in pieces]
        out = "".join([f"{seq},{ts},{head}{block_id}{tail},{field}\r\n"
                       for seq, ts, (head, tail, _, _), block_id, field
                       in zip(seqs, timestamps, shapes, ids, fields, strict=True)])
    else:
        out = "".join([f'{seq},{ts},{head}{block_id}{tail},"{p}"\r\n'
                       for seq, ts, head, block_id, tail, p
                       in zip(seqs, timestamps, map(_HEAD, shapes), ids, map(_TAIL, shapes),
                              pieces, strict=True)])
    with_deltas = [(seq, ts, block_id, shape, data["deltas"], tagged and b'"__' in line)
                   for seq, ts, block_id, shape, data, line, obj in compress(
                       zip(seqs, timestamps, ids, shapes, datas, lines, objs, strict=True),
                       map(dict.__contains__, datas, repeat("deltas")))
                   if obj["event_type"] == "block_transition"]
    return out, with_deltas


def _cells(values: list[Any], plans: Plans) -> list[Any]:
    """The cells of ``values`` (``""``: an empty cell): ``values`` themselves when they are
    all plain text (one match of :attr:`Plans.plain` over the batch's distinct values, one
    a line), else each made once (:attr:`Plans.texts`)."""
    distinct = set(values)
    distinct.discard("")
    try:
        text = "\n".join(distinct)
    except TypeError:  # not all text
        pass
    else:
        if text.count("\n") < len(distinct) and plans.plain.fullmatch(text) is not None:
            return values
    return list(map(plans.texts.__getitem__, values))


_TAGGED, _DELTAS = itemgetter(5), itemgetter(4)
#: The types of values that are no amount (:func:`~fsm_exec.journal.export.delta_amounts`).
_NO_AMOUNT = frozenset((str, bool, type(None)))


def delta_table(records: list[WithDeltas], plans: Plans) -> str | None:
    """The rows of deltas.csv of ``records`` with one C-level call per column of their
    amounts, when their deltas hold no tag and share one plain shape (the same keys at
    every level, each amount's place holding numbers of one type, finite, in every
    record); else ``None`` (record by record, then)."""
    if any(map(_TAGGED, records)):
        return None
    columns: list[tuple[str, list[Any]]] = []
    if not _columns(list(map(_DELTAS, records)), "", "", columns, plans.texts):
        return None
    if len(columns) == 1:
        (where, amounts), = columns
        return "".join([f"{seq},{ts},{shape[2]},{block_id},{shape[3]},{where}{amount}\r\n"
                        for (seq, ts, block_id, shape, _, _), amount
                        in zip(records, map(repr, amounts), strict=True)])
    whos = [f"{seq},{ts},{shape[2]},{block_id},{shape[3]},"
            for seq, ts, block_id, shape, _, _ in records]
    return "".join(chain.from_iterable(zip(*[
        [f"{who}{where}{amount}\r\n"
         for who, amount in zip(whos, map(repr, amounts), strict=True)]
        for where, amounts in columns], strict=True)))


def _columns(values: list[Any], path: str, key: str, out: list[tuple[str, list[Any]]],
             texts: dict[Any, str]) -> bool:
    """The amounts of ``values`` (the same place in each record's deltas, at ``path``)
    into ``out`` as ``(the cells of path and key, the amounts)``, in the order
    :func:`~fsm_exec.journal.export.delta_amounts` yields them; ``False`` when they are not
    of one plain shape."""
    kinds = set(map(type, values))
    if kinds == {dict}:
        keys = set(map(tuple, values))
        if len(keys) != 1:
            return False
        for k in keys.pop():
            part = k.replace("~", "~0").replace("/", "~1")
            if not _columns(list(map(itemgetter(k), values)), f"{path}/{part}", k, out,
                            texts):
                return False
        return True
    if kinds <= _NO_AMOUNT:
        return True
    if kinds == {int} or (kinds == {float} and all(map(math.isfinite, values))):
        out.append((f"{texts[path]},{texts[key]},", values))
        return True
    return False
