"""The event log: JSON lines per component, buffered in backtest, fsynced in live mode, so
that it doubles as the crash-recovery journal. Also its readers (the CSV export is in
``_csv``).

A record is one line: ``{"seq", "timestamp", "event_type", "component", "data"}``. ``seq``
grows by one per record of a component's journal, across restarts and rotated files.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import enum
import math
import os
import re
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from ._csv import CSV_COLUMNS as CSV_COLUMNS  # re-exported: the CSV export lives in _csv
from ._csv import check_backtest_id as check_backtest_id
from ._csv import csv_cell as csv_cell
from ._csv import export_csv
from ._errors import ComponentError, EventLogError
from ._oplog import MIRRORED, mirror

JOURNAL_SUFFIX = "_events.jsonl"
_DATED = re.compile(r"^(?P<stem>.+_events)\.(?P<day>\d{4}-\d{2}-\d{2})(?:\.(?P<n>\d+))?\.jsonl$")
_DECIMAL_TAG = "__decimal__"
MODES = ("backtest", "live")
_dumps = orjson.dumps
_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


class JournalCorruptError(ComponentError, ValueError):
    """A journal line cannot be read; names the file and the line."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path, self.line = str(path), line
        super().__init__("EXEC-013", f"{path}:{line}: {reason}")


def journal_name(component: str) -> str:
    """``ExecutionManager`` -> ``execution_manager_events.jsonl``."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", component)
    snake = re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower()
    if not snake:
        raise ValueError(f"component name {component!r} has no letters or digits")
    return snake + JOURNAL_SUFFIX


# ------------------------------------------------------------------------ encoding


def _default(obj: Any) -> Any:
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
    :func:`_default` says."""
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
    converted = _default(value)
    return converted if isinstance(converted, str) else to_jsonable(converted)


def encode(record: Mapping[str, Any]) -> bytes:
    """One JSON line (with its newline). Always valid JSON."""
    try:
        line = orjson.dumps(record, default=_default, option=orjson.OPT_APPEND_NEWLINE)
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


# ------------------------------------------------------------------------ files


def journal_files(log_dir: Path | str, component: str = "ExecutionManager") -> list[Path]:
    """A component's journal files in order: rotated ones oldest first, then the current."""
    return _files_of(Path(log_dir), journal_name(component)[: -len(".jsonl")])


def _files_of(log_dir: Path, stem: str) -> list[Path]:
    dated: list[tuple[str, int, Path]] = []
    if log_dir.is_dir():
        for p in log_dir.iterdir():
            m = _DATED.match(p.name)
            if m and m["stem"] == stem:
                dated.append((m["day"], int(m["n"] or 0), p))
    files = [p for _, _, p in sorted(dated)]
    current = log_dir / f"{stem}.jsonl"
    if current.exists():
        files.append(current)
    return files


def _components(log_dir: Path) -> list[str]:
    """Journal stems present in a directory (``execution_manager_events`` ...), sorted."""
    stems = set()
    if log_dir.is_dir():
        for p in log_dir.iterdir():
            m = _DATED.match(p.name)
            if m:
                stems.add(m["stem"])
            elif p.name.endswith(JOURNAL_SUFFIX):
                stems.add(p.name[: -len(".jsonl")])
    return sorted(stems)


def _tail_offsets(f: IO[bytes], size: int) -> tuple[int, int]:
    """(offset just after the last newline, offset where that last full line starts)."""
    found: list[int] = []
    pos = size
    while pos > 0 and len(found) < 2:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        buf = f.read(pos - start)
        i = len(buf)
        while len(found) < 2:
            i = buf.rfind(b"\n", 0, i)
            if i < 0:
                break
            found.append(start + i)
        pos = start
    if not found:
        return 0, 0
    return found[0] + 1, (found[1] + 1 if len(found) > 1 else 0)


def _last_seq(path: Path) -> int:
    """The seq of the last complete line of ``path`` (0 if none)."""
    size = path.stat().st_size
    if not size:
        return 0
    with open(path, "rb") as f:
        full_end, line_start = _tail_offsets(f, size)
        if full_end == 0:
            return 0
        f.seek(line_start)
        line = f.read(full_end - line_start)
    try:
        seq = orjson.loads(line)["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        n = _count_lines(path, full_end)
        raise JournalCorruptError(path, n, "the last line is not a journal record") from None
    if type(seq) is not int:
        raise JournalCorruptError(path, _count_lines(path, full_end), "seq is not an integer")
    return seq


def _count_lines(path: Path, upto: int) -> int:
    with open(path, "rb") as f:
        return f.read(upto).count(b"\n")


def repair_torn_tail(path: Path) -> bytes:
    """Set aside a torn last line (a crash mid-write: no final newline) and truncate the
    file to its last complete line. Returns the bytes set aside (empty if none)."""
    size = path.stat().st_size
    if not size:
        return b""
    with open(path, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return b""
        full_end, _ = _tail_offsets(f, size)
        f.seek(full_end)
        torn = f.read()
        aside = path.with_name(path.name + ".torn")
        with open(aside, "ab") as t:
            t.write(torn + b"\n")
            t.flush()
            os.fsync(t.fileno())
        f.truncate(full_end)
        f.flush()
        os.fsync(f.fileno())
    return torn


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ writing


class _Journal:
    """One component's open journal file."""

    __slots__ = ("path", "seq", "day", "file", "fd", "unsynced")

    def __init__(self, path: Path, seq: int, day: dt.date) -> None:
        self.path, self.seq, self.day = path, seq, day
        self.file: IO[bytes] | None = None
        self.fd = -1
        self.unsynced = False  # live: written records not yet fsynced


_open_loggers: weakref.WeakSet[EventLogger] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    for logger in list(_open_loggers):
        with contextlib.suppress(Exception):
            logger.close()


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class EventLogger:
    """Writes each component's events to ``<log_dir>/<component>_events.jsonl``.

    ``backtest``: buffered writes (flushed at :meth:`close`, when full, and at interpreter
    exit). ``live``: every record is written before :meth:`log_event` returns and fsynced
    with it unless ``sync=False`` (then the next synced record or :meth:`sync` makes it
    durable); files rotate daily (UTC, or as ``today`` says) and rotated files older than
    ``retention_days`` are deleted. Opening a directory that holds a journal appends to it:
    a torn last line is set aside (``<file>.torn``) and sequence numbers continue.
    A write that fails raises :class:`EventLogError` (``EXEC-009``).
    """

    def __init__(self, log_dir: Path | str = "logs/events", mode: str = "backtest", *,
                 retention_days: int = 30, today: Callable[[], dt.date] = _utc_today,
                 buffer_bytes: int = 1 << 20) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        self.log_dir = Path(log_dir)
        self.mode = mode
        self.retention_days = retention_days
        self._today = today
        self._buffer = buffer_bytes
        self._live = mode == "live"
        self._journals: dict[str, _Journal] = {}
        self._last_component: str | None = None  # the journal written to last, at hand
        self._last_journal: _Journal | None = None
        self._closed = False
        self._last_ts: Any = object()
        self._last_iso = ""
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventLogError(f"cannot create log directory {self.log_dir}: "
                                f"{exc.strerror}", exc) from exc
        _open_loggers.add(self)

    # -------------------------------------------------------------- journals
    def path_for(self, component: str) -> Path:
        """The current journal file of ``component``."""
        return self.log_dir / journal_name(component)

    def _open(self, component: str) -> _Journal:
        if self._closed:
            raise EventLogError("event logger is closed")
        path = self.path_for(component)
        for other in self._journals.values():
            if other.path == path:  # "Foo" and "foo" share a file: one writer, one seq
                self._journals[component] = other
                return other
        try:
            # the day of the last write, read before a repair touches the file
            mtime = path.stat().st_mtime if path.exists() else None
            repair_torn_tail(path) if mtime is not None else None
            seq = 0
            for p in reversed(journal_files(self.log_dir, component)):
                seq = _last_seq(p)
                if seq:
                    break
            day = (dt.datetime.fromtimestamp(mtime, dt.UTC).date()
                   if mtime is not None and path.stat().st_size else self._today())
            j = _Journal(path, seq, day)
            self._attach(j)
        except OSError as exc:
            raise EventLogError(f"cannot open journal {path}: {exc.strerror}", exc) from exc
        self._journals[component] = j
        return j

    def _attach(self, j: _Journal) -> None:
        if self._live:
            j.fd = os.open(j.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _fsync_dir(j.path.parent)
        else:
            j.file = open(j.path, "ab", buffering=self._buffer)  # noqa: SIM115

    def _rotate(self, j: _Journal, today: dt.date) -> None:
        if j.unsynced:
            os.fsync(j.fd)
            j.unsynced = False
        os.close(j.fd)
        j.fd = -1
        if j.path.stat().st_size:
            stem = j.path.name[: -len(".jsonl")]
            target = j.path.with_name(f"{stem}.{j.day.isoformat()}.jsonl")
            n = 0
            while target.exists():
                n += 1
                target = j.path.with_name(f"{stem}.{j.day.isoformat()}.{n}.jsonl")
            os.rename(j.path, target)
        j.day = today
        self._attach(j)  # creates the new file and fsyncs the directory
        cutoff = today - dt.timedelta(days=self.retention_days)
        for p in j.path.parent.iterdir():
            m = _DATED.match(p.name)
            if m and m["stem"] == j.path.name[: -len(".jsonl")] and \
                    dt.date.fromisoformat(m["day"]) < cutoff:
                p.unlink()

    # -------------------------------------------------------------- writing
    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True) -> None:
        """Append one record to ``component``'s journal.

        Live: the record is written before this returns and, with ``sync`` (the default),
        fsynced together with every record written before it. ``sync=False`` leaves the
        fsync to the next synced record or :meth:`sync` (group commit): the manager uses it
        for records that no action of its depends on.
        """
        j: _Journal | None
        if component is self._last_component:
            j = self._last_journal
        else:
            j = self._journals.get(component) or self._open(component)
            self._last_component, self._last_journal = component, j
        assert j is not None
        if timestamp is self._last_ts and timestamp is not None:
            iso = self._last_iso  # the events of one update share its timestamp
        else:
            iso = iso_timestamp(timestamp)
            self._last_ts, self._last_iso = timestamp, iso
        seq = j.seq + 1
        record = {"seq": seq, "timestamp": iso, "event_type": event_type,
                  "component": component, "data": data}
        try:  # encode(), inlined: this is the per-event hot path
            line = _dumps(record, default=_default, option=_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            line = b"null"
        if b"null" in line:
            line = _dumps(to_jsonable(record), option=_APPEND_NEWLINE)
        if self._live:
            self._write_durably(j, line, sync)
        else:
            try:
                j.file.write(line)  # type: ignore[union-attr]
            except (OSError, ValueError) as exc:
                raise EventLogError(f"cannot write journal {j.path}: {exc}", exc) from exc
        j.seq = seq
        if event_type in MIRRORED:
            mirror(event_type, component, data)

    def _write_durably(self, j: _Journal, line: bytes, sync: bool = True) -> None:
        try:
            today = self._today()
            if today != j.day:
                self._rotate(j, today)
            offset = os.lseek(j.fd, 0, os.SEEK_END)
        except OSError as exc:
            raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}", exc) from exc
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(j.fd, view):]
            if sync:
                os.fsync(j.fd)
            j.unsynced = not sync
        except OSError as exc:
            with contextlib.suppress(OSError):  # take back a partial line: keep it whole
                os.ftruncate(j.fd, offset)
            raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}", exc) from exc

    def sync(self) -> None:
        """Make every record written so far durable (live: fsync what is not yet; backtest
        journals are buffered by design: this flushes them to the files)."""
        for j in self._journals.values():
            if j.fd >= 0 and j.unsynced:
                try:
                    os.fsync(j.fd)
                except OSError as exc:
                    raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}",
                                        exc) from exc
                j.unsynced = False
        self.flush()

    def flush(self) -> None:
        """Push buffered records to the files (backtest); live records are already there."""
        for j in self._journals.values():
            if j.file is not None:
                try:
                    j.file.flush()
                except OSError as exc:
                    raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}",
                                        exc) from exc

    def close(self) -> None:
        """Flush (and, live, fsync) and close every journal. Safe to call twice."""
        if self._closed:
            return
        try:
            self.sync()
        finally:
            self._closed = True
            for j in set(self._journals.values()):
                if j.file is not None:
                    with contextlib.suppress(OSError):  # a failed flush was raised above
                        j.file.close()
                if j.fd >= 0:
                    os.close(j.fd)
            self._journals.clear()
            self._last_component, self._last_journal = None, None
            _open_loggers.discard(self)

    def __enter__(self) -> EventLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- exporting
    def export_csv(self, results_dir: Path | str, backtest_id: str) -> Path:
        """Write ``<results_dir>/<backtest_id>/events.csv`` from the journals (streamed)."""
        self.flush()
        return export_csv(self.log_dir, results_dir, backtest_id)


# ------------------------------------------------------------------------ reading


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


def _parse(path: Path, line_no: int, raw: bytes) -> JournalRecord:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise JournalCorruptError(path, line_no, "not valid JSON") from None
    if not isinstance(obj, dict):
        raise JournalCorruptError(path, line_no, "not a JSON object")
    for key, kind in (("seq", int), ("timestamp", str), ("event_type", str),
                      ("component", str), ("data", dict)):
        if not isinstance(obj.get(key), kind) or (kind is int and isinstance(obj[key], bool)):
            raise JournalCorruptError(path, line_no, f"missing or mistyped field {key!r}")
    return JournalRecord(str(path), line_no, obj["seq"], obj["timestamp"], obj["event_type"],
                         obj["component"], obj["data"])


def read_records(path: Path | str) -> Iterator[JournalRecord]:
    """The records of one journal file, in order, streamed. A torn last line (no final
    newline) is skipped; any other unreadable line raises :class:`JournalCorruptError`."""
    path = Path(path)
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return  # torn by a crash mid-write: never acknowledged, never acted on
            if raw.strip():
                yield _parse(path, n, raw)
            else:
                raise JournalCorruptError(path, n, "empty line")


def read_journal(source: Path | str | Iterable[Path | str],
                 component: str = "ExecutionManager") -> Iterator[JournalRecord]:
    """Records of a journal: a log directory (the component's rotated files in order, then
    the current one), a single file, or a list of files read in the order given."""
    if isinstance(source, str | Path):
        p = Path(source)
        files: list[Path] = journal_files(p, component) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in source]
    for f in files:
        yield from read_records(f)
