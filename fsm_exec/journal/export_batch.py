"""The CSV export's fast path: a journal file read in batches of lines, each batch turned
into rows with one C-level call per column (orjson to parse and to prove the lines are
as the writer writes them, ``map`` over the records, ``str.replace`` over the batch's
text), with Python run only for the cells not seen before.

A batch it cannot prove ordinary (a line that is not JSON or not as the writer writes it,
an envelope mistyped or out of order, a tag the codec refuses, a structure where a name
belongs) is raised back as :class:`NotOrdinary`: :mod:`~fsm_exec.journal.export` then
exports it line by line, the careful way, which also names the line at fault. Both ways
write the same bytes or raise the same error (a differential property test in
``tests/test_csv.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import compress, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from fsm_exec.journal.codec import MAX_LINE_BYTES, MAX_NESTING, CodecError, validate
from fsm_exec.journal.files import JournalCorruptError, open_regular

#: The bytes read at a time; a batch is the whole lines among them. Small enough that a
#: batch's records are freed before the garbage collector's older generations see them
#: (a megabyte costs a third more).
BLOCK_BYTES = 64 << 10
#: The envelope, in the order the writer writes it.
ORDER = ("seq", "timestamp", "event_type", "component", "data")
_SEQ, _TS, _ET, _COMP, _DATA = (itemgetter(k) for k in ORDER)
_MARK = ',""data"":'  # the envelope's data key, its quotes doubled as in a CSV field
_PIECE = itemgetter(2)
_GET = dict.get
_LOADS, _DUMPS = orjson.loads, orjson.dumps


class NotOrdinary(Exception):
    """The batch needs the careful path."""


def batches(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(number of the first line, whole lines)`` of one journal file, a block at a time:
    the lines' text without its last newline. A torn last line (no newline: never
    acknowledged) is left out, a line longer than
    :data:`~fsm_exec.journal.codec.MAX_LINE_BYTES` is :class:`JournalCorruptError` (after
    the lines before it), as :func:`~fsm_exec.journal.reader.journal_lines` reads them."""
    n = 1
    with open_regular(path) as f:
        read = f.read
        carry: list[bytes] = []  # the start of a line that goes on in the next block
        held = 0
        while block := read(BLOCK_BYTES):
            cut = block.rfind(b"\n")
            if cut < 0:
                carry.append(block)
                held += len(block)
                if held > MAX_LINE_BYTES:
                    raise _too_long(path, n)
                continue
            text = b"".join((*carry, block[:cut])) if carry else block[:cut]
            carry, held = [block[cut + 1:]], len(block) - cut - 1
            if len(text) >= MAX_LINE_BYTES:  # a line of it may be too long (its newline
                lines = text.split(b"\n")     # included): the lines before it are read
                for i, line in enumerate(lines):
                    if len(line) >= MAX_LINE_BYTES:
                        if i:
                            yield n, b"\n".join(lines[:i])
                        raise _too_long(path, n + i)
            yield n, text
            n += text.count(b"\n") + 1
        if held > MAX_LINE_BYTES:
            raise _too_long(path, n)


def _too_long(path: Path, n: int) -> JournalCorruptError:
    return JournalCorruptError(path, n, f"a line longer than {MAX_LINE_BYTES} bytes (the "
                                        "writer never writes one)")


class Plans:
    """The cells that come back record after record, each made once: a record's shape
    (component, event type, source, dest, trigger, attempt, error code: the row around its
    block id), timestamps and block ids. ``cell`` makes one cell the careful way
    (:func:`~fsm_exec.journal.export.csv_cell` then the CSV field)."""

    def __init__(self, cell: Callable[[Any], str]) -> None:
        self.cell = cell
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
        if memoryview(_DUMPS(objs))[1:-1] != joined.replace(b"\n", b","):
            raise NotOrdinary  # not as the writer writes it: a duplicate key, a space...
        if set(map(tuple, objs)) != {ORDER}:  # the envelope, in order, nothing else
            raise NotOrdinary
        seqs = list(map(_SEQ, objs))
        datas = list(map(_DATA, objs))
        if set(map(type, seqs)) != {int} or set(map(type, datas)) != {dict}:
            raise NotOrdinary
        # What envelope_of walks with the codec: a line with a tag or an escape, or one
        # that may nest too deep (a backslash is found ten times faster than a pair).
        tagged = b'"__' in joined
        if tagged or (b"\\" in joined and b"\\u" in joined):
            for obj, line in zip(objs, lines, strict=True):
                if b'"__' in line or b"\\u" in line:
                    validate(obj)
        if max(map(len, lines)) >= 2 * MAX_NESTING:
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
        texts = plans.texts.__getitem__
        timestamps = list(map(_TS, objs))
        if set(map(type, timestamps)) != {str}:
            raise NotOrdinary
        timestamps = list(map(texts, timestamps))
        ids = list(map(texts, map(_GET, datas, repeat("block_id"))))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, CodecError, TypeError,
            KeyError, ValueError):
        raise NotOrdinary from None
    # Quotes doubled, as in a CSV field; each line cut before its envelope's closing brace.
    doubled = (joined.decode().replace('"', '""') + "\n").split("}\n")
    doubled.pop()
    pieces = map(_PIECE, map(str.partition, doubled, repeat(_MARK)))
    if b',"data":{}}' in joined:  # empty data is the one JSON object written unquoted
        fields = ["{}" if p == "{}" else f'"{p}"' for p in pieces]
        out = "".join([f"{seq},{ts},{head}{block_id}{tail},{field}\r\n"
                       for seq, ts, (head, tail, _, _), block_id, field
                       in zip(seqs, timestamps, shapes, ids, fields, strict=True)])
    else:
        out = "".join([f'{seq},{ts},{head}{block_id}{tail},"{p}"\r\n'
                       for seq, ts, (head, tail, _, _), block_id, p
                       in zip(seqs, timestamps, shapes, ids, pieces, strict=True)])
    with_deltas = [(seq, ts, block_id, shape, data["deltas"], tagged and b'"__' in line)
                   for seq, ts, block_id, shape, data, line, obj in compress(
                       zip(seqs, timestamps, ids, shapes, datas, lines, objs, strict=True),
                       map(dict.__contains__, datas, repeat("deltas")))
                   if obj["event_type"] == "block_transition"]
    return out, with_deltas
