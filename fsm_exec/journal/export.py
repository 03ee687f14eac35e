"""The CSV export of the journals: ``events.csv`` (one row per record) and ``deltas.csv``
(one row per number in the deltas a block's venue returned), streamed from the JSONL files.

Cells are spreadsheet-safe and typed on purpose: numbers are numbers, and a text cell that a
spreadsheet would run as a formula or read as a number, date, time, boolean or error value
gets one leading ``'`` (so ``1e5`` and ``00012`` stay the text they were). Any text cell
that starts with ``'`` had exactly one added: remove it to get the value back.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import pickle
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TextIO, cast

import orjson

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.journal import reader
from fsm_exec.journal.codec import decode
from fsm_exec.journal.export_batch import ORDER, NotOrdinary, Plans, Shape, delta_table, rows
from fsm_exec.journal.files import JournalCorruptError, components_in, files_of
from fsm_exec.journal.reader import envelope_of

_BACKTEST_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

#: The CSV columns, in order. ``data`` holds the whole event data as JSON.
CSV_COLUMNS: tuple[str, ...] = ("seq", "timestamp", "component", "event_type", "block_id",
                                "source", "dest", "trigger", "attempt", "error_code", "data")
#: The columns of ``deltas.csv``: one row per number in a ``block_transition``'s deltas.
DELTAS_COLUMNS: tuple[str, ...] = ("seq", "timestamp", "component", "block_id", "attempt",
                                   "path", "key", "amount")
# A formula (OWASP: = + - @ tab CR LF), or our own quote, which must stay unambiguous.
_QUOTED_START = ("=", "+", "-", "@", "\t", "\r", "\n", "'")
# A date-time with a T and an offset: LibreOffice and Excel both keep it as text.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)")
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
# Text a spreadsheet would read as a value other than text: a number, date, time,
# percentage, fraction, currency amount or error literal (all start with whitespace, a
# digit, a decimal sign, a bracket, # or a currency sign), a boolean, or a month and a
# number (Excel's SEPT2, Mar 1).
_READ_AS_VALUE = re.compile(
    r"[\s\d.,(#$\u00a2-\u00a5\u20a0-\u20cf]"
    r"|(?:true|false)\s*$"
    rf"|{_MONTH}[\s.,/-]*\d{{1,4}}(?:[\s.,/-]+\d{{1,4}})?\s*$", re.IGNORECASE)
# Text whose cell is itself (:func:`text_cell` adds no quote, and a CSV field needs none),
# in the forms most cells of a journal take: a date-time with an offset, and a name that
# starts with a letter or ``_`` and holds only letters, digits, ``_`` and ``-`` and starts
# with neither a month's name nor true or false (as a date or a boolean it would be read).
_PLAIN = (rf"(?:{_ISO_DATETIME.pattern}"
          rf"|(?!(?i:true|false|{_MONTH}))[A-Za-z_][A-Za-z0-9_-]*)")
#: Lines of such text (the batch's distinct timestamps or block ids, one a line).
PLAIN_LINES = re.compile(rf"{_PLAIN}(?:\n{_PLAIN})*")
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A spreadsheet-safe cell. Numbers stay numbers, booleans are ``true``/``false``,
    ``None`` is empty, structures are JSON text. Text that a spreadsheet would run as a
    formula (starting with = + - @ tab CR LF, OWASP) or read as something other than
    text (``1e5``, ``00012``, ``2025-10-01``, ``TRUE``, ``SEPT2``, ``#N/A``...), and text
    starting with ``'``, gets one leading ``'``: remove it to get the text back."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return text_cell(value if isinstance(value, str) else orjson.dumps(value).decode())


def text_cell(text: str) -> str:
    """:func:`csv_cell` of text."""
    if text.startswith(_QUOTED_START) or (_READ_AS_VALUE.match(text) is not None
                                          and _ISO_DATETIME.fullmatch(text) is None):
        return "'" + text
    return text


def check_backtest_id(backtest_id: object) -> str:
    """``backtest_id`` if it is a safe directory name, else ``ValueError``."""
    if not isinstance(backtest_id, str) or _BACKTEST_ID.fullmatch(backtest_id) is None:
        raise ValueError("backtest_id must be 1-128 letters, digits or ._- and must not "
                         "start with a dot")
    return backtest_id


def delta_amounts(deltas: Any) -> Iterator[tuple[str, str, Any]]:
    """Every number in ``deltas`` (as the journal holds them): ``(path, key, amount)``.

    ``path`` is a JSON Pointer into the deltas (RFC 6901: ``/changes/ETH``; ``""`` when the
    deltas are a bare number), ``key`` its last part. A decimal is yielded as its exact text;
    integers of any size as numbers. Text, booleans, ``None`` and non-finite floats are not
    amounts and are skipped.
    """

    def walk(value: Any, path: str, key: str) -> Iterator[tuple[str, str, Any]]:
        if isinstance(value, dict):
            for k, v in value.items():
                k = str(k)
                yield from walk(v, f"{path}/{k.replace('~', '~0').replace('/', '~1')}", k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}/{i}", str(i))
        elif isinstance(value, Decimal):
            yield path, key, str(value)  # exact; a non-finite one is quoted as text
        elif isinstance(value, float):
            if math.isfinite(value):
                yield path, key, value
        elif isinstance(value, int) and not isinstance(value, bool):
            yield path, key, value

    yield from walk(decode(deltas), "", "")


def _amount_cell(amount: Any) -> Any:
    """A number stays a number; a decimal's exact text is written as the number it is."""
    if isinstance(amount, str):
        return amount if _PLAIN_NUMBER.fullmatch(amount) else csv_cell(amount)
    return amount


def _create_temporary(directory: Path, name: str) -> tuple[Path, IO[str]]:
    """A new file next to ``directory/name``, under a fresh name this call created itself
    (``O_EXCL``: never a file or link that was already there)."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0))
    while True:
        tmp = directory / f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
        return tmp, open(fd, "w", newline="", encoding="utf-8")


def replace_file(target: Path | str, data: str | bytes) -> Path:
    """Write ``data`` to ``target`` as the CSVs are written: under a fresh temporary name
    next to it (``O_CREAT|O_EXCL|O_NOFOLLOW``), then renamed into place. A link planted at
    ``target`` is replaced, never followed; a failed write leaves nothing half-written."""
    target = Path(target)
    tmp, f = _create_temporary(target.parent, target.name)
    try:
        with f:
            if isinstance(data, bytes):
                cast(TextIO, f).buffer.write(data)
            else:
                f.write(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def _field(value: Any) -> str:
    """One CSV field as ``csv.writer`` writes it (the excel dialect: quoted only when it
    holds a comma, a quote, CR or LF; quotes doubled), from a :func:`csv_cell` value."""
    if type(value) is str:
        if _CSV_SPECIAL.search(value) is None:
            return value
        return '"' + value.replace('"', '""') + '"'
    if type(value) is float:
        return repr(value)
    return str(value)  # int (bool and None never reach here: csv_cell made them text)


def _cell(value: Any) -> str:
    """:func:`csv_cell` then :func:`_field`: one cell as it is written."""
    if type(value) is str:
        value = text_cell(value)
        return value if _CSV_SPECIAL.search(value) is None else _field(value)
    return _field(csv_cell(value))


def _plain_amounts(value: Any, path: str, key: str, out: list[tuple[str, str, Any]]) -> None:
    """:func:`delta_amounts` of deltas that hold no tag (orjson's types: nothing to
    decode), into ``out``."""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            t = type(v)
            if t is str or t is bool or v is None:
                continue
            part = k.replace("~", "~0").replace("/", "~1") if "~" in k or "/" in k else k
            where = f"{path}/{part}"
            if t is int or (t is float and math.isfinite(v)):
                out.append((where, k, v))
            elif t is dict or t is list:
                _plain_amounts(v, where, k, out)
    elif t is list:
        for i, v in enumerate(value):
            _plain_amounts(v, f"{path}/{i}", str(i), out)
    elif t is int or (t is float and math.isfinite(value)):
        out.append((path, key, value))


def _data_text(raw: bytes, obj: dict[str, Any]) -> str:
    """The record's data as compact JSON: the line's own bytes when the writer wrote it
    (its fields in the writer's order, so the first ``,"data":`` is the envelope's and the
    rest is the data as orjson writes it), else the data written again."""
    if tuple(obj) == ORDER and raw.endswith(b"}\n") and b"\\" not in raw:
        i = raw.find(b',"data":')
        if i > 0:
            return raw[i + 8:-2].decode()
    return orjson.dumps(obj["data"]).decode()


class Export:
    """One export's writing: each journal file in batches, the fast way
    (:mod:`~fsm_exec.journal.export_batch`) or, for a batch it cannot prove ordinary,
    line by line the careful way; both make their cells with the same plans."""

    def __init__(self, events: IO[str], deltas: IO[str]) -> None:
        self.events, self.deltas = events, deltas
        self.plans = Plans(_cell, PLAIN_LINES)

    def text(self, value: Any) -> str:
        """The cell of ``value``, kept when it is text."""
        if type(value) is int:
            return str(value)
        try:
            return self.plans.texts[value]
        except TypeError:  # a structure
            return _cell(value)

    def file(self, path: Path) -> None:
        write = self.events.write
        for first, joined, lines in reader.journal_batches(path):  # the reader's view
            try:
                out, with_deltas = rows(joined, lines, self.plans)
            except NotOrdinary:
                self.careful(path, first, lines)
                continue
            write(out)
            if with_deltas:
                table = delta_table(with_deltas, self.plans)
                self.deltas.write("".join([row for record in with_deltas
                                           for row in self.delta_rows(*record)])
                                  if table is None else table)

    def careful(self, path: Path, first: int, lines: list[bytes]) -> None:
        """Each line read as every reader reads it (:func:`envelope_of`: the first one
        at fault is named)."""
        write, text, shapes = self.events.write, self.text, self.plans.shapes
        for n, line in enumerate(lines, first):
            raw = line + b"\n"
            if not line.strip():
                raise JournalCorruptError(path, n, "empty line")
            r = envelope_of(path, n, raw)
            d = r["data"]
            get = d.get
            attempt = get("attempt")
            shape = shapes.make((r["component"], r["event_type"], get("source"),
                                 get("dest"), get("trigger"), attempt, type(attempt),
                                 get("error_code")))
            seq, ts, block_id = r["seq"], text(r["timestamp"]), text(get("block_id"))
            write(f"{seq},{ts},{shape[0]}{block_id}{shape[1]},"
                  f"{_field(csv_cell(_data_text(raw, r)))}\r\n")
            if r["event_type"] == "block_transition" and "deltas" in d:
                self.deltas.write("".join(
                    self.delta_rows(seq, ts, block_id, shape, d["deltas"], True)))

    def delta_rows(self, seq: int, ts: str, block_id: str, shape: Shape, deltas: Any,
                   tagged: bool) -> list[str]:
        """The rows of deltas.csv of one ``block_transition`` (:data:`WithDeltas`);
        ``tagged``: its line may hold a tag (the deltas are decoded first)."""
        if tagged:
            amounts: Any = delta_amounts(deltas)
        else:
            amounts = []
            _plain_amounts(deltas, "", "", amounts)
        who, text = f"{seq},{ts},{shape[2]},{block_id},{shape[3]}", self.text
        return [f"{who},{text(where)},{text(k)},{_field(_amount_cell(amount))}\r\n"
                for where, k, amount in amounts]


def _in_parallel(paths: list[Path], events: IO[str], deltas: IO[str], out_dir: Path,
                 workers: int) -> None:
    """The journal's files exported by ``workers`` processes of their own (file ``i`` by
    process ``i % workers``, each doing its files in order:
    :mod:`~fsm_exec.journal.export_worker`), each file's rows appended to ``events`` and
    ``deltas`` as its turn comes; the first file in order that fails raises its error,
    and the processes still running are stopped."""
    events.flush()
    deltas.flush()
    # This process's import path, in its order (as multiprocessing gives its children):
    # the workers import the very modules it did, this fsm_exec included.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    n = min(workers, len(paths))
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix=".parts-", dir=out_dir) as parts:
        part = [os.path.join(parts, str(i)) for i in range(len(paths))]
        try:
            for k in range(n):
                tasks = os.path.join(parts, f"tasks-{k}.json")
                with open(tasks, "w", encoding="utf-8") as f:
                    json.dump([[str(paths[i]), part[i] + ".events", part[i] + ".deltas",
                                part[i] + ".error"] for i in range(k, len(paths), n)], f)
                with open(os.path.join(parts, f"stderr-{k}"), "wb") as stderr:
                    processes.append(subprocess.Popen(
                        # -P: not the current directory first (a pickle.py, another
                        # fsm_exec there), only this process's path
                        [sys.executable, "-P", "-m", "fsm_exec.journal.export_worker", tasks],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                        env=env))
            for i, path in enumerate(paths):
                process = processes[i % n]
                assert process.stdout is not None
                said = process.stdout.readline()
                if not said:  # it ended before this file was done
                    raise _failed(part[i], path, process.wait(),
                                  os.path.join(parts, f"stderr-{i % n}"))
                if said != b"%d\n" % (i // n):  # pragma: no cover - its stdout is its own
                    raise RuntimeError(f"the export's worker process said {said!r} where it "
                                       f"says it has done {path}")
                for name, into in ((".events", events), (".deltas", deltas)):
                    _append(part[i] + name, cast(TextIO, into).buffer)
                    os.unlink(part[i] + name)  # the disk it takes, given back at once
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
                if process.stdout is not None:
                    process.stdout.close()


def _append(path: str, into: IO[bytes]) -> None:
    """The file at ``path`` appended to ``into``: copied by the kernel where it can
    (``os.copy_file_range``), else through this process."""
    into.flush()
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        with contextlib.suppress(OSError, AttributeError):  # no such call here: by hand
            while copied < size:
                n = os.copy_file_range(src.fileno(), into.fileno(), size - copied)
                if not n:
                    break
                copied += n
        if copied < size:
            src.seek(copied)
            shutil.copyfileobj(src, into, 1 << 20)


def _failed(part: str, path: Path, status: int, stderr: str) -> Exception:
    """The error a worker raised on ``path`` (pickled by it), or one saying how the worker
    ended, with the end of what it wrote to ``stderr``."""
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError,
                             ImportError, TypeError):
        with open(part + ".error", "rb") as f:
            error = pickle.load(f)  # written by the worker, in this export's own folder
        if isinstance(error, Exception):
            return error
    with open(stderr, "rb") as f:
        said = terminal_text(f.read()[-2000:].decode(errors="replace").strip(),
                             keep_lines=True)  # what a process printed: no escapes run
    return RuntimeError(f"the export of {path} failed in its worker process (exit status "
                        f"{status}){': ' + said if said else ''}")


def export_csv(log_dir: Path | str, results_dir: Path | str, backtest_id: str, *,
               workers: int = 1) -> Path:
    """Stream every journal in ``log_dir`` to ``<results_dir>/<backtest_id>/events.csv``
    and ``deltas.csv`` (in one pass); returns the path of ``events.csv``.

    Each file is written under a fresh temporary name and renamed into place, so a
    failed export leaves nothing half-written and a link planted in the folder is never
    followed.

    ``workers``: how many processes export the journal's files side by side (``python -m
    fsm_exec.journal.export_worker``, started for this export and ended with it; each
    file by one of them). The CSVs are the same bytes as with one, and a journal that cannot be
    read raises the same error, naming the same line. Worth it for a journal of many
    files (a file holds at least a checkpoint interval, and rotates only past 64 MiB:
    about 50,000 blocks of a backtest); a journal of one file is exported in this process.
    """
    check_backtest_id(backtest_id)
    if type(workers) is not int or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    root = Path(results_dir).resolve()
    out_dir = (root / backtest_id).resolve()
    if not out_dir.is_relative_to(root) or out_dir == root:
        raise ValueError("backtest_id must name a directory inside results_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = (out_dir / "events.csv", out_dir / "deltas.csv")
    log_dir = Path(log_dir)
    temporaries: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            files = []
            for target in targets:
                tmp, f = _create_temporary(out_dir, target.name)
                temporaries.append(tmp)
                files.append(stack.enter_context(f))
            events, deltas = files
            csv.writer(events).writerow(CSV_COLUMNS)
            csv.writer(deltas).writerow(DELTAS_COLUMNS)
            paths = [path for stem in components_in(log_dir)
                     for path in files_of(log_dir, stem)]
            if workers > 1 and len(paths) > 1 and sys.executable:
                _in_parallel(paths, events, deltas, out_dir, workers)
            else:
                export = Export(events, deltas)
                for path in paths:
                    export.file(path)
        for tmp, target in zip(temporaries, targets, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)  # a failed export leaves nothing half-written
    return targets[0]
