"""Reading a journal: its records in order, streamed, each with the file and line it came
from; what recovery needs (from the newest checkpoint on)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from fsm_exec.journal.codec import CHECKPOINT, MAX_LINE_BYTES, MAX_NESTING, CodecError, validate
from fsm_exec.journal.files import JournalCorruptError, journal_files, open_regular
from fsm_exec.journal.schema import check_record


@attrs.frozen
class JournalRecord:
    """One journal line, with where it came from."""

    path: str
    line: int
    seq: int
    timestamp: str
    event_type: str
    component: str
    data: dict[str, Any]


def duplicate_key(raw: bytes | str) -> str | None:
    """The first key that appears twice in one object of the JSON text ``raw`` (JSON
    readers differ on which value they keep), else ``None`` (also for text that is not
    JSON: the caller says why it is not)."""
    return _look_closer(raw)[0]


#: The integers orjson reads exactly (it reads any other as a float: 2**64 is
#: 1.8446744073709552e19); the writer writes one beyond them tagged, ``{"__int__": "..."}``.
_EXACT = (-(1 << 63), (1 << 64) - 1)


def _look_closer(raw: bytes | str) -> tuple[str | None, str | None]:
    """``(the first key twice in one object, the first integer beyond 64 bits)`` of the
    JSON text ``raw``, each ``None`` when there is none (both for text that is not JSON)."""
    twice: list[str] = []
    wide: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items) and not twice:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    twice.append(key)
                    break
                seen.add(key)
        return out

    def integer(text: str) -> int:
        if not wide and type(_wide_or_zero(text)) is Wide:
            wide.append(text)
        return 0

    try:
        json.loads(raw, object_pairs_hook=pairs, parse_int=integer)
    except (ValueError, RecursionError):
        return None, None
    return (twice[0] if twice else None), (wide[0] if wide else None)


def _unfaithful(path: Path | str, line_no: int, raw: bytes) -> JournalCorruptError | None:
    """Why a line that orjson reads otherwise than it is written is refused: a key twice in
    one object, or an integer beyond 64 bits (which orjson would read as another number)."""
    twice, wide = _look_closer(raw)
    if twice is not None:
        return JournalCorruptError(path, line_no, f"key {twice!r} appears twice in one "
                                                  "object (which value is meant?)")
    if wide is not None:
        shown = wide if len(wide) <= 30 else f"{wide[:12]}... ({len(wide)} digits)"
        return JournalCorruptError(path, line_no, f"the integer {shown} is beyond 64 bits, "
                                                  "written as digits (the writer writes one "
                                                  'tagged: {"__int__": "..."}) @ '
                                                  f"{_where_wide(raw)}")
    return None


def _where_wide(raw: bytes | str) -> str:
    """The path (``$.data.attempt``) of the first integer beyond 64 bits in ``raw``."""
    def walk(v: Any, at: str) -> str | None:
        if type(v) is dict:
            items: Iterable[tuple[Any, Any]] = ((f".{k}", x) for k, x in v.items())
        elif type(v) is list:
            items = ((f"[{i}]", x) for i, x in enumerate(v))
        else:
            return at if type(v) is Wide else None
        return next((p for k, x in items if (p := walk(x, at + k)) is not None), None)

    return walk(json.loads(raw, parse_int=_wide_or_zero), "$") or "$"


class Wide(str):
    """An integer beyond 64 bits, as its digits (only :func:`_where_wide` makes one)."""


def _wide_or_zero(text: str) -> Any:
    # (by its length first: int() refuses more than 4,300 digits)
    return Wide(text) if len(text) > 21 or not _EXACT[0] <= int(text) <= _EXACT[1] else 0


def envelope_of(path: Path | str, line_no: int, raw: bytes) -> dict[str, Any]:
    """One line of a journal as its record (a dict), its envelope and its tags checked: JSON,
    an object with the record's fields, every tag as the codec writes it and nesting no
    deeper than it writes (:func:`~fsm_exec.journal.codec.validate`), no key twice in one
    object (:func:`duplicate_key`), no integer beyond 64 bits written as digits; else
    :class:`JournalCorruptError` naming ``path:line_no``. The walk looking for tags runs
    only on a line that may hold one (``"__`` or an escape in it) or may nest too deep
    (as many opening brackets as :data:`~fsm_exec.journal.codec.MAX_NESTING`, so twice as
    many bytes): most lines hold neither, and a substring search costs a fraction of the
    walk."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise (_unfaithful(path, line_no, raw) or JournalCorruptError(
            path, line_no, "not valid JSON" + (
                " (a byte-order mark before it: an editor saved the file?)"
                if raw.startswith(b"\xef\xbb\xbf") else ""))) from None
    if type(obj) is not dict:
        raise JournalCorruptError(path, line_no, "not a JSON object")
    get = obj.get  # orjson makes exact types: a bool is no seq
    if (type(get("seq")) is not int or type(get("timestamp")) is not str
            or type(get("event_type")) is not str or type(get("component")) is not str
            or type(get("data")) is not dict):
        key = next(k for k, kind in _ENVELOPE if type(get(k)) is not kind)
        raise JournalCorruptError(path, line_no, f"missing or mistyped field {key!r}")
    if (b'"__' in raw or b"\\u" in raw or (  # a line that deep has as many closing brackets
            len(raw) >= 2 * MAX_NESTING and raw.count(b"{") + raw.count(b"[") >= MAX_NESTING)):
        try:
            validate(obj)
        except CodecError as exc:
            raise JournalCorruptError(path, line_no, str(exc)) from None
    # (validated first: nothing nested deeper than the writer writes)
    if orjson.dumps(obj) != raw.rstrip(b"\r\n"):  # not as the writer wrote it: look closer
        refusal = _unfaithful(path, line_no, raw)
        if refusal is not None:
            raise refusal
    return obj


_ENVELOPE = (("seq", int), ("timestamp", str), ("event_type", str), ("component", str),
             ("data", dict))


def parse(path: Path | str, line_no: int, raw: bytes) -> JournalRecord:
    """One line of a journal, validated: :func:`envelope_of`, then every field of the
    manager's record kinds as its schema says (:mod:`~fsm_exec.journal.schema`); else
    :class:`JournalCorruptError` naming ``path:line_no`` and the field."""
    obj = envelope_of(path, line_no, raw)
    problem = check_record(obj)
    if problem is not None:
        raise JournalCorruptError(path, line_no, problem)
    return JournalRecord(str(path), line_no, obj["seq"], obj["timestamp"], obj["event_type"],
                         obj["component"], obj["data"])


#: The envelope every journal record has.
RECORD_FIELDS = frozenset(("seq", "timestamp", "event_type", "component", "data"))
#: The bytes :func:`journal_batches` reads at a time; a batch is the whole lines among
#: them. Small enough that a batch's records are freed before the garbage collector's
#: older generations see them (a megabyte costs a third more).
BATCH_BYTES = 64 << 10



def looks_like_a_record(raw: bytes) -> bool:
    """``raw`` (one line) is a JSON object with a journal record's envelope fields: the one
    test of "is this a journal?" (whether it is a good one is for the reader to say)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.keys() >= RECORD_FIELDS


def looks_like_a_journal(path: Path | str) -> bool:
    """``path``'s first line is a journal record or, when it is not JSON at all (torn,
    corrupt, empty), the file is named ``*.jsonl``: a journal to read (and report on). Raises
    :class:`JournalCorruptError` for what is no regular file and ``OSError`` when it cannot
    be read."""
    p = Path(path)
    with open_regular(p) as f:  # a named pipe or a device: refused, never blocks
        first = f.readline(1 << 20)
    first = first.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark an editor added
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:  # not JSON, not UTF-8, or nothing at all
        return p.suffix == ".jsonl"
    return looks_like_a_record(first)


def journal_lines(path: Path | str, opened: IO[bytes] | None = None
                  ) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of one journal file, streamed: only a regular file is
    read (a named pipe or a device is refused, without blocking), and a line longer than
    :data:`~fsm_exec.journal.codec.MAX_LINE_BYTES` is :class:`JournalCorruptError`.
    ``opened``: the file, already open (:func:`open_journal`), read from its start; ``path``
    then only names it."""
    if opened is not None:
        opened.seek(0)
        yield from _lines(path, opened)
        return
    with open_regular(path) as f:
        yield from _lines(path, f)


def _lines(path: Path | str, f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    n = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        n += 1
        if len(raw) > MAX_LINE_BYTES:
            raise _too_long(path, n)
        yield n, raw


def journal_batches(path: Path) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """``(number of the first line, whole lines, the same lines apart)`` of one journal
    file, a block at a time: the lines' text without its last newline, and its lines
    without their newlines. A torn last line (no newline: never acknowledged) is left out,
    a line longer than :data:`~fsm_exec.journal.codec.MAX_LINE_BYTES` is
    :class:`JournalCorruptError` (after the lines before it), as :func:`journal_lines`
    reads them: the reader's other view of a file, for a caller that works on many lines
    at once (the CSV export's fast path)."""
    n = 1
    with open_regular(path) as f:
        read = f.read
        carry: list[bytes] = []  # the start of a line that goes on in the next block
        held = 0
        while block := read(BATCH_BYTES):
            cut = block.rfind(b"\n")
            if cut < 0:
                carry.append(block)
                held += len(block)
                if held > MAX_LINE_BYTES:
                    raise _too_long(path, n)
                continue
            text = b"".join((*carry, block[:cut])) if carry else block[:cut]
            carry, held = [block[cut + 1:]], len(block) - cut - 1
            lines = text.split(b"\n")
            if len(text) >= MAX_LINE_BYTES:  # a line of it may be too long (its newline
                for i, line in enumerate(lines):  # included): the lines before it are read
                    if len(line) >= MAX_LINE_BYTES:
                        if i:
                            yield n, b"\n".join(lines[:i]), lines[:i]
                        raise _too_long(path, n + i)
            yield n, text, lines
            n += len(lines)
        if held > MAX_LINE_BYTES:
            raise _too_long(path, n)


def _too_long(path: Path | str, n: int) -> JournalCorruptError:
    return JournalCorruptError(path, n, f"a line longer than {MAX_LINE_BYTES} bytes (the "
                                        "writer never writes one)")


def read_records(path: Path | str, opened: IO[bytes] | None = None
                 ) -> Iterator[JournalRecord]:
    """The records of one journal file, in order, streamed. A torn last line (no final
    newline: a crash mid-write, never acknowledged) is skipped (:func:`fsm_exec.check_journal`
    reports it); any other unreadable line raises :class:`JournalCorruptError`. ``opened``:
    as for :func:`journal_lines`."""
    path = Path(path)
    for n, raw in journal_lines(path, opened):
        if not raw.endswith(b"\n"):
            return  # torn by a crash mid-write: never acknowledged, never acted on
        if raw.strip():
            yield parse(path, n, raw)
        else:
            raise JournalCorruptError(path, n, "empty line")


class JournalChanged(Exception):
    """The set of a journal's files changed while it was being opened (a rotation)."""


def open_journal(log_dir: Path | str, component: str = "ExecutionManager",
                 stack: contextlib.ExitStack | None = None
                 ) -> tuple[list[Path], list[IO[bytes]]]:
    """A consistent snapshot of a journal that a running manager may rotate: its files (in
    ``seq`` order) all opened, then listed again; the same names on the same files, or
    :class:`JournalChanged` (try again). Read through the open files, the snapshot stays
    whole whatever is renamed, started or deleted after it. The files are closed by
    ``stack`` (when given) or by the caller."""
    files = journal_files(log_dir, component)
    opened: list[IO[bytes]] = []
    try:
        for p in files:
            try:
                f = open_regular(p)
            except FileNotFoundError:
                raise JournalChanged(str(p)) from None
            opened.append(f)
        if journal_files(log_dir, component) != files:
            raise JournalChanged(str(log_dir))
        for p, f in zip(files, opened, strict=True):
            try:
                now = os.stat(p)
            except FileNotFoundError:
                raise JournalChanged(str(p)) from None
            held = os.fstat(f.fileno())
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                raise JournalChanged(str(p))
    except BaseException:
        for f in opened:
            f.close()
        raise
    if stack is not None:
        for f in opened:
            stack.callback(f.close)
    return files, opened


def read_journal(source: Path | str | Iterable[Path | str],
                 component: str = "ExecutionManager") -> Iterator[JournalRecord]:
    """Records of a journal: a log directory (the component's files in ``seq`` order), a
    single file, or a list of files read in the order given."""
    if isinstance(source, str | Path):
        p = Path(source)
        files: list[Path] = journal_files(p, component) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in source]
    for f in files:
        yield from read_records(f)


_CHECKPOINT_MARK = b'"event_type":"checkpoint"'


def newest_checkpoint(files: list[Path], component: str = "ExecutionManager",
                      opened: Sequence[IO[bytes]] | None = None) -> tuple[int, int]:
    """``(file index, line)`` of the newest complete checkpoint record of ``component`` in
    ``files`` (in seq order); ``(0, 0)`` when there is none. A line is a checkpoint when the
    record itself says so: payloads that merely contain the words are not. ``opened``: the
    files, already open (:func:`open_journal`)."""
    found = newest_checkpoints(files, component, 1, opened)
    return found[-1] if found else (0, 0)


def newest_checkpoints(files: list[Path], component: str = "ExecutionManager",
                       n: int = 2, opened: Sequence[IO[bytes]] | None = None
                       ) -> list[tuple[int, int]]:
    """``(file index, line)`` of the ``n`` newest complete checkpoint records of
    ``component`` in ``files`` (in seq order), oldest first; fewer when the journal holds
    fewer. ``opened``: the files, already open (:func:`open_journal`)."""
    found: list[tuple[int, int]] = []
    for i in range(len(files) - 1, -1, -1):
        here = [(i, line) for line, raw in journal_lines(
                    files[i], opened[i] if opened is not None else None)
                if _CHECKPOINT_MARK in raw and raw.endswith(b"\n")
                and _is_checkpoint(raw, component)]
        found[:0] = here
        if len(found) >= n:
            return found[-n:]
    return found


def _is_checkpoint(raw: bytes, component: str) -> bool:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return (isinstance(record, dict) and record.get("event_type") == CHECKPOINT
            and record.get("component") == component)


def recovery_records(log_dir: Path | str, component: str = "ExecutionManager"
                     ) -> Iterator[JournalRecord]:
    """The records recovery needs: from the newest complete checkpoint of ``component`` to
    the end (everything, when there is no checkpoint). Older files are history."""
    files = journal_files(log_dir, component)
    yield from records_from(files, *newest_checkpoint(files, component))


def records_from(files: list[Path], start_file: int, start_line: int
                 ) -> Iterator[JournalRecord]:
    """The records of ``files`` from line ``start_line`` of ``files[start_file]`` on (the
    lines of that file before it are read and checked too: every reader refuses the same
    damaged line; a checkpoint that rotates starts a new file, so that is little)."""
    for i, p in enumerate(files[start_file:]):
        for r in read_records(p):
            if i == 0 and r.line < start_line:
                continue
            yield r
