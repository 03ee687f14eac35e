"""Every reader reads a journal the same way: a corpus of valid and damaged journals (torn
tails, each tag corrupted, deep nesting, bad timestamps, every field of every record kind
made wrong) is either read by all of check, status, report, diagram --events and recover(),
or refused by each with a JournalCorruptError (or its report) naming the same file:line;
none raises anything that is not fsm_exec's. Also: only regular files are read."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm_exec.boundary import blocks as boundary_blocks
from fsm_exec.journal.codec import MAX_NESTING, CodecError, decode
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.reader import read_journal, read_records
from fsm_exec.journal.schema import BLOCK_ID
from fsm_exec.tools.check import check_journal
from fsm_exec.tools.diagram import overlay_events
from fsm_exec.tools.report import read_checked
from fsm_exec.tools.status import StatusUnreadable, read_status

from kit import rig

GOLDEN = Path(__file__).parent / "golden"
#: Journals written by the release before the one codec (made by make_golden.py, running
#: the manager on fsm_exec.sim's collaborators), in both modes.
VALID = ["backtest_clean.jsonl", "live_faults.jsonl", "crashed.jsonl",
         "crashed_then_recovered.jsonl",
         # as an earlier release wrote them (before idle runs, the run in checkpoints and
         # step times: see golden/earlier/README.md): committed, never regenerated
         "earlier/backtest_clean.jsonl", "earlier/live_faults.jsonl", "earlier/crashed.jsonl",
         "earlier/crashed_then_recovered.jsonl",
         # as the release before found_executed wrote them (golden/release/README.md)
         "release/live_faults.jsonl", "release/crashed_then_recovered.jsonl",
         "release/chain_lost_reply.jsonl"]
NAME = "execution_manager_events.jsonl"


def _lines(name: str) -> list[bytes]:
    return (GOLDEN / name).read_bytes().splitlines(keepends=True)


def _where(exc: JournalCorruptError) -> tuple[str, int]:
    return (Path(exc.path).name, exc.line)


def _outcomes(path: Path) -> dict[str, Any]:
    """What each reader makes of the journal at ``path``: ``"read"``, or where it refused
    (``(file name, line)``), or ``"refused"`` (an fsm_exec error that names no line)."""
    out: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except JournalCorruptError as exc:
            out[name] = _where(exc)
        except StatusUnreadable as exc:
            out[name] = ((Path(exc.path).name, exc.line) if exc.path and exc.line
                         else "refused")
        except Exception as exc:  # an fsm_exec error is fine; anything else is the bug
            out[name] = "refused" if type(exc).__module__.startswith("fsm_exec") else exc
        else:
            out.setdefault(name, "read")

    run("reader", lambda: list(read_journal(path)))
    report = check_journal(path)
    out["check"] = "read" if report.ok else report.problem
    run("status", lambda: read_status(path.parent))
    problem = read_checked(path)[1]
    out["report"] = "read" if problem is None else problem
    run("diagram", lambda: overlay_events(read_journal(path)))
    run("recover", lambda: rig("backtest").em.recover(path))
    foreign = {k: v for k, v in out.items() if isinstance(v, BaseException)}
    assert not foreign, foreign
    return out


def _agree(path: Path) -> None:
    """Where the one reader refuses a line, every reader names that file:line."""
    got = _outcomes(path)
    where = got["reader"]
    if where == "read":
        return
    name, line = where
    mark = f"{name}:{line}:"
    for reader in ("check", "report"):
        assert isinstance(got[reader], str) and mark in got[reader], (reader, got, where)
    for reader in ("status", "diagram", "recover"):
        assert got[reader] == where, (reader, got)


def _journal(tmp: Path, lines: list[bytes]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / NAME
    path.write_bytes(b"".join(lines))
    return path


def _replace(lines: list[bytes], i: int, edit: Callable[[dict[str, Any]], None]) -> list[bytes]:
    record = orjson.loads(lines[i])
    edit(record)
    return [*lines[:i], _dumps(record), *lines[i + 1:]]


def _dumps(record: Any) -> bytes:
    """A line as a hand edit writes it (integers of any size as digits)."""
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


# ------------------------------------------------------------------------ valid journals


@pytest.mark.parametrize("name", VALID)
def test_journals_of_the_previous_release_still_read_everywhere(name: str,
                                                                tmp_path: Path) -> None:
    """A committed journal written before the one codec (format 2) reads in every reader."""
    path = _journal(tmp_path, _lines(name))
    got = _outcomes(path)
    assert got["reader"] == got["diagram"] == "read"
    assert got["status"] == "read"
    first = orjson.loads(_lines(name)[0])
    assert first["event_type"] == "checkpoint" and first["data"]["format"] == 2


@pytest.mark.parametrize("name", VALID)
def test_a_torn_tail_is_read_as_before(name: str, tmp_path: Path) -> None:
    """A torn last line (no newline) is skipped by the reader, as it always was."""
    path = _journal(tmp_path, [*_lines(name), b'{"seq": 999, "timestamp": "2025-'])
    assert len(list(read_records(path))) == len(_lines(name))
    _agree(path)


# ------------------------------------------------------------------------ the corpus

BAD_TAGS: list[Any] = [
    {"__decimal__": "12,5"}, {"__decimal__": 12.5}, {"__decimal__": "1" * 20_000},
    {"__int__": 1.5}, {"__int__": "12a"}, {"__int__": "9" * 5000},
    {"__float__": "nan"}, {"__float__": 1.0},
    {"__dict__": "x"}, {"__dict__": [[1.5, 2]]}, {"__dict__": [["a", 1], ["a", 2]]},
    {"__dict__": [["a"]]}, {"__dict__": [[{"__decimal__": "1"}, 2]]},
]


def _kinds() -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(golden file, line index, record) for the first record of every kind there is."""
    seen = set()
    for name in VALID:
        for i, raw in enumerate(_lines(name)):
            record = orjson.loads(raw)
            if record["event_type"] not in seen:
                seen.add(record["event_type"])
                yield name, i, record


KINDS = list(_kinds())
WRONG: list[Any] = ["2", 10**30, -1, None, [], {}, "x" * 70_000, True, 1.5, "bad id\n`"]


@pytest.mark.parametrize("bad", BAD_TAGS, ids=repr)
def test_each_corrupted_tag_is_refused_alike(bad: Any, tmp_path: Path) -> None:
    """A tag holding what the codec never writes is refused by every reader at its line."""
    name, i, _ = next(k for k in KINDS if k[2]["event_type"] == "block_transition")
    lines = _replace(_lines(name), i, lambda r: r["data"].__setitem__("deltas", bad))
    path = _journal(tmp_path, lines)
    with pytest.raises(JournalCorruptError) as caught:
        list(read_journal(path))
    assert _where(caught.value) == (NAME, i + 1)
    assert "__" in str(caught.value)
    _agree(path)


@pytest.mark.parametrize("depth", [MAX_NESTING - 3, MAX_NESTING, 2000])
def test_nesting_deeper_than_the_writer_writes_is_refused(depth: int, tmp_path: Path) -> None:
    """Deltas nested deeper than the writer writes are refused (never a RecursionError);
    as deep as it writes, they read."""
    name, i, _ = next(k for k in KINDS if k[2]["event_type"] == "block_transition")
    lines = _replace(_lines(name), i, lambda r: r["data"].__setitem__("deltas", "DEEP"))
    lines[i] = lines[i].replace(b'"DEEP"', b'{"x":' * depth + b"1" + b"}" * depth)
    path = _journal(tmp_path, lines)
    if depth + 3 <= MAX_NESTING:  # the record, data and the deltas' own level
        list(read_journal(path))
    else:
        with pytest.raises(JournalCorruptError, match=r"nested deeper|not valid JSON"):
            list(read_journal(path))
    _agree(path)


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                                   "yesterday", 12345, None, "2025-10-01T00:00:00" * 5])
def test_bad_timestamps_never_crash_a_reader(stamp: Any, tmp_path: Path) -> None:
    """A timestamp that is no time, out of range or of the wrong type: read or refused
    alike, never a traceback."""
    name, i, _ = KINDS[2]
    path = _journal(tmp_path, _replace(_lines(name), i, lambda r: r.__setitem__("timestamp",
                                                                               stamp)))
    _agree(path)


CASES = [(name, i, field, value)
         for name, i, record in KINDS
         for field in record["data"]
         for value in WRONG]


@pytest.mark.parametrize(("name", "i", "field", "value"), CASES,
                         ids=[f"{orjson.loads(_lines(n)[i])['event_type']}.{f}={v!r:.20}"
                              for n, i, f, v in CASES])
def test_every_field_of_every_kind_made_wrong(name: str, i: int, field: str, value: Any,
                                              tmp_path: Path) -> None:
    """Each field of each record kind replaced by a value of another type or an extreme
    size: every reader reads it or names the same file:line."""
    path = _journal(tmp_path, _replace(_lines(name), i,
                                       lambda r: r["data"].__setitem__(field, value)))
    _agree(path)


@pytest.mark.parametrize("value", ["2", 10**30, -1, 10_001, 1.0])
def test_an_attempt_is_a_small_non_negative_integer(value: Any, tmp_path: Path) -> None:
    """attempt "2", an attempt of 30 digits, a negative or a float: JournalCorruptError
    naming the file, the line and the field."""
    name, i, _ = next(k for k in KINDS if k[2]["event_type"] == "block_transition")
    path = _journal(tmp_path, _replace(_lines(name), i,
                                       lambda r: r["data"].__setitem__("attempt", value)))
    with pytest.raises(JournalCorruptError, match=r"\$\.data\.attempt") as caught:
        list(read_journal(path))
    assert _where(caught.value) == (NAME, i + 1)


def test_a_checkpoint_in_flight_attempt_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    """A checkpoint whose block in flight has "attempt": "2" is refused by recover() with
    JournalCorruptError naming the field's path (it used to pass, then crash later)."""
    lines = _lines("crashed_then_recovered.jsonl")
    i = next(n for n, raw in enumerate(lines) if b'"flight":{' in raw)
    path = _journal(tmp_path, _replace(
        lines, i, lambda r: r["data"]["flight"].__setitem__("attempt", "2")))
    with pytest.raises(JournalCorruptError, match=r"\$\.data\.flight\.attempt"):
        rig("live").em.recover(path)
    _agree(path)


def test_block_ids_in_the_manager_s_records_match_the_manager_s_pattern(tmp_path: Path) -> None:
    """check refuses a block id the manager never writes (the schema's pattern is the
    boundary's)."""
    assert BLOCK_ID.pattern == boundary_blocks._BLOCK_ID.pattern
    name, i, _ = next(k for k in KINDS if k[2]["event_type"] == "block_accepted")
    path = _journal(tmp_path, _replace(_lines(name), i,
                                       lambda r: r["data"].__setitem__("block_id", "a\r#")))
    assert "block id" in str(check_journal(path).problem)


# ------------------------------------------------------------------------ hypothesis

_VALUES = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40), st.floats(allow_nan=False),
    st.text(max_size=80), st.booleans(), st.none(),
    st.sampled_from([*BAD_TAGS, "\x1b[2K", "<img src=x>", "\r# Totals", "$x$", "1" * 100_000]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=3))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(VALID), data=st.data())
def test_a_corrupted_real_journal_is_read_or_refused_alike(source: str, data: st.DataObject,
                                                          tmp_path_factory: Any) -> None:
    """Flipped bytes or any field replaced by a value of another type or an extreme size:
    every reader reads it or names the same file:line; none raises a foreign exception."""
    lines = _lines(source)
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    if data.draw(st.booleans(), label="flip"):
        raw = bytearray(lines[i])
        at = data.draw(st.integers(0, len(raw) - 2), label="at")
        raw[at] ^= data.draw(st.integers(1, 255), label="mask")
        lines = [*lines[:i], bytes(raw), *lines[i + 1:]]
    else:
        record = orjson.loads(lines[i])
        target = record["data"] if record["data"] and data.draw(st.booleans()) else record
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        value = data.draw(_VALUES, label="value")
        target[key] = value
        lines = [*lines[:i], _dumps(record), *lines[i + 1:]]
    _agree(_journal(tmp_path_factory.mktemp("j"), lines))


# ------------------------------------------------------------------------ the codec


def test_decode_names_where_a_tag_is_wrong() -> None:
    """The decoder raises CodecError with the JSON path of the bad tag."""
    with pytest.raises(CodecError) as caught:
        decode({"a": [1, {"__decimal__": "1,5"}]})
    assert caught.value.where == "$.a[1].__decimal__"


# ------------------------------------------------------------------------ files


def _in_thread(fn: Callable[[], Any]) -> list[Any]:
    """Run ``fn`` in a thread; fail (rather than hang) if it does not return soon."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(("ok", fn()))
        except BaseException as exc:  # what the reader raised, handed to the test
            result.append(("raised", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)  # a guard against a hang, not a timing assertion
    assert not t.is_alive(), "the reader blocked"
    return result


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_only_regular_files_are_read_and_never_block(kind: str, tmp_path: Path) -> None:
    """A journal file that is a named pipe, or a link to /dev/zero, is refused at once with
    JournalCorruptError by the reader, check, status and report: none blocks or reads for
    ever."""
    path = tmp_path / NAME
    if kind == "fifo":
        os.mkfifo(path)
    else:
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        path.symlink_to("/dev/zero")
    [(how, exc)] = _in_thread(lambda: list(read_journal(path)))
    assert how == "raised" and isinstance(exc, JournalCorruptError)
    assert "not a regular file" in str(exc)
    [(how, report)] = _in_thread(lambda: check_journal(path))
    assert how == "ok" and not report.ok
    [(how, exc)] = _in_thread(lambda: read_status(tmp_path))
    assert how == "raised" and isinstance(exc, StatusUnreadable)
    [(how, got)] = _in_thread(lambda: read_checked(path))
    assert how == "ok" and got[1] is not None
    shutil.rmtree(tmp_path, ignore_errors=True)


# ------------------------------------------------------------------------ the writer


def test_the_writer_never_writes_what_the_reader_refuses(tmp_path: Path) -> None:
    """On the careful path (a record holding a NaN), data that would read as a tag it does
    not hold is wrapped, not written as a tag; non-finite floats and big integers are
    tagged; the line reads back. (The hot path looks for NaN only: the manager's data is
    canonical, and to_wire wraps tag-like dicts, see test_canonical.)"""
    from fsm_exec.journal.writer import EventLogger

    data = {"looks": {"__decimal__": "12,5"}, "tag": {"__int__": 1.5},
            "ok": {"__decimal__": "1.5"}, "nan": float("nan"), "big": 10**30}
    with EventLogger(tmp_path) as el:
        el.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy", data)
    [record] = read_journal(tmp_path, "Strategy")
    back = decode(record.data)
    assert back["looks"] == {"__decimal__": "12,5"} and back["tag"] == {"__int__": 1.5}
    assert str(back["ok"]) == "1.5" and back["big"] == 10**30 and back["nan"] != back["nan"]


def test_a_line_longer_than_any_reader_reads_is_refused_before_it_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer refuses (EXEC-009) a record longer than MAX_LINE_BYTES, in both modes,
    and writes nothing of it."""
    from fsm_exec.core.errors import EventLogError
    from fsm_exec.journal.writer import EventLogger

    monkeypatch.setattr("fsm_exec.journal.writer.MAX_LINE_BYTES", 200)
    for mode in ("backtest", "live"):
        logs = tmp_path / mode
        with EventLogger(logs, mode) as el:
            el.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy", {"x": 1})
            with pytest.raises(EventLogError, match="longer than the 200 bytes"):
                el.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy",
                             {"x": "y" * 300})
            el.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy", {"x": 2})
        assert [r.data["x"] for r in read_journal(logs, "Strategy")] == [1, 2]


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_without_a_utc_instant_are_refused_not_overflowed(stamp: str) -> None:
    """The one timestamp parser refuses a time whose UTC instant is beyond datetime's
    range (it raised OverflowError) and says why."""
    import datetime as dt

    from fsm_exec.boundary.canonical import canonical_timestamp, parse_timestamp, timestamp_problem

    assert parse_timestamp(stamp) is None and canonical_timestamp(stamp) is None
    assert "outside the years 1-9999" in timestamp_problem(stamp)
    edge = dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-1)))
    assert canonical_timestamp(edge) is None
    assert "outside the years 1-9999" in timestamp_problem(edge)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("command", [
    ["check", "{file}"], ["check", "{dir}"], ["status", "{dir}"],
    ["report", "{file}", "--format", "markdown", "-o", "{dir}/r.md"],
    ["diagram", "--events", "{file}", "--format", "markdown"]])
def test_the_commands_refuse_a_journal_that_is_no_regular_file(
        kind: str, command: list[str], tmp_path: Path) -> None:
    """fsm-exec check, status, report and diagram --events on a named pipe or a link to
    /dev/zero say so and exit non-zero, never block (a thread with a join guard)."""
    import io

    from fsm_exec.cli.main import main

    path = tmp_path / NAME
    if kind == "fifo":
        os.mkfifo(path)
    elif Path("/dev/zero").exists():
        path.symlink_to("/dev/zero")
    else:
        pytest.skip("no /dev/zero")
    argv = [a.format(file=path, dir=tmp_path) for a in command]
    out = io.StringIO()
    [(how, code)] = _in_thread(lambda: main(argv, out=out))
    assert how == "ok" and code != 0, (how, code)


@pytest.mark.parametrize("stamp", [
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "datetime.max-01:00"])
def test_entry_points_refuse_times_beyond_the_range_with_exec_011(stamp: str) -> None:
    """update_state, execute_instruction_blocks and cancel refuse a time whose UTC instant
    a datetime cannot hold with InvalidArgumentError (they raised a bare OverflowError)."""
    import datetime as dt

    from fsm_exec import InvalidArgumentError

    ts: Any = (dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-1)))
               if stamp.startswith("datetime") else stamp)
    em = rig("backtest").em
    for call in (lambda: em.update_state(ts, "strategy_manager", []),
                 lambda: em.execute_instruction_blocks(ts, []),
                 lambda: em.cancel(ts, reason="operator")):
        with pytest.raises(InvalidArgumentError, match="outside the years 1-9999"):
            call()


@pytest.mark.parametrize("which", ["a move", "the last record", "every record"])
def test_a_record_naming_another_component_is_refused_by_every_fold(which: str,
                                                                    tmp_path: Path) -> None:
    """A ``component`` damaged (a flipped byte, a hand edit) in one record, in the last one
    or in every one: check, status and recover() all refuse the journal, none reads it as a
    shorter or an empty one (before: such records were skipped, so recover() started a
    manager that had forgotten a move, or everything, and routed a block again)."""
    lines = _lines("live_faults.jsonl")
    moves = [i for i, line in enumerate(lines) if b'"block_transition"' in line]
    targets = {"a move": [moves[0]], "the last record": [len(lines) - 1],
               "every record": range(len(lines))}[which]
    for i in targets:
        lines = _replace(lines, i, lambda r: r.update(component="ExecutionManagEr"))
    got = _outcomes(_journal(tmp_path, lines))
    assert got["check"] != "read" and "ExecutionManagEr" in got["check"], got
    assert got["status"] != "read" and got["recover"] != "read", got


def test_a_name_the_writer_gives_the_same_file_is_read_as_before(tmp_path: Path) -> None:
    """Component names that map to one file share it (the writer's own rule: one writer,
    one seq): a record of "execution_manager" in the manager's file is not damage, and
    every fold reads the journal as before."""
    from journals import manager
    from kit import T, blocks

    em, log = manager(tmp_path)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    log.log_event(T(1), "note", "execution_manager", {"x": 1})
    em.close()
    report = check_journal(tmp_path)
    assert report.ok and report.blocks_executed == 1, report.problem
    assert rig("backtest").em.recover(tmp_path).blocks_executed == 1


@pytest.mark.parametrize("digits", [b"18446744073709551616", b"-9223372036854775809",
                                    b"9" * 5000])
def test_an_integer_beyond_64_bits_written_as_digits_is_refused(digits: bytes,
                                                                tmp_path: Path) -> None:
    """An integer no reader reads exactly (orjson reads it as a float: 2**64 became
    1.8446744073709552e19), written as digits where the writer writes it tagged
    (``{"__int__": "..."}``): every reader refuses the line, naming it, instead of reading
    another number."""
    lines = _lines("backtest_clean.jsonl")
    i = next(n for n, raw in enumerate(lines) if b'"deltas"' in raw)
    record = orjson.loads(lines[i])
    record["data"]["deltas"] = {"changes": {"ETH": 0}}
    lines[i] = orjson.dumps(record).replace(b'"ETH":0', b'"ETH":' + digits) + b"\n"
    path = _journal(tmp_path, lines)
    with pytest.raises(JournalCorruptError, match=rf":{i + 1}: .*beyond 64 bits"):
        list(read_journal(path))
    _agree(path)


@pytest.mark.parametrize("case", ["bom", "not json", "null", "seq float"])
def test_every_reader_refuses_a_first_line_with_the_same_message(case: str,
                                                                 tmp_path: Path) -> None:
    """The first line is no record (a byte-order mark an editor added, text, ``null``, a
    seq of 1.0): check, status, report and recover() refuse it with one message, the
    reader's (check said "not a journal file" where the others said "not valid JSON");
    check adds its guess as a note."""
    lines = _lines("backtest_clean.jsonl")
    first = {"bom": b"\xef\xbb\xbf" + lines[0], "not json": b"seq,timestamp\n",
             "null": b"null\n", "seq float": lines[0].replace(b'"seq":1,', b'"seq":1.0,')
             }[case]
    path = _journal(tmp_path, [first, *lines[1:]])
    with pytest.raises(JournalCorruptError) as caught:
        list(read_journal(path))
    said = caught.value.message
    assert said.startswith(f"{path}:1: ")
    report = check_journal(path)
    assert report.problem == said, (report.problem, said)
    assert read_checked(path)[1] == said
    with pytest.raises(StatusUnreadable, match=re.escape(said)):
        read_status(tmp_path)
    with pytest.raises(JournalCorruptError) as recovered:
        rig("backtest").em.recover(path)
    assert recovered.value.message == said
    if case == "bom":
        assert "byte-order mark" in said
