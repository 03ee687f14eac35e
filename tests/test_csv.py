"""The CSV export (``fsm_exec.journal.export``): typed, spreadsheet-safe cells, ``deltas.csv`` and
temporary files that are never someone else's. LibreOffice checks what a spreadsheet makes
of the files, when it is installed."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec import CSV_COLUMNS, DELTAS_COLUMNS, EventLogger, export_csv
from fsm_exec.journal.codec import encode
from fsm_exec.journal.export import csv_cell, delta_amounts
from fsm_exec.journal.files import JournalCorruptError

EM = "ExecutionManager"
TS = "2025-10-01T00:00:00+00:00"
#: Block ids a spreadsheet would turn into numbers, dates or booleans, and one it would not.
ID_LIKE = ["1e5", "00012", "2025-10-01", "1.50", "TRUE", "SEPT2", "12%", "#N/A", "(5)",
           "open-1"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def unquote(cell: str) -> str:
    """What the README says a reader does: remove one leading quote."""
    return cell[1:] if cell.startswith("'") else cell


#: A component whose records have no schema: its block ids may be anything (the manager's
#: match the block-id pattern, which its journal's reader checks).
OTHER = "StrategyLog"


def transition(el: EventLogger, block_id: str, deltas: Any, attempt: int = 1,
               ts: str = TS, component: str = EM) -> None:
    el.log_event(ts, "block_transition", component, {
        "block_id": block_id, "source": "routing", "dest": "pending_reconciliation",
        "trigger": "executed", "attempt": attempt, "deltas": deltas})


# ------------------------------------------------------------------------ cells


@pytest.mark.parametrize(("text", "cell"), [
    ("1e5", "'1e5"), ("00012", "'00012"), ("2025-10-01", "'2025-10-01"), ("1.50", "'1.50"),
    (".5", "'.5"), ("1,5", "'1,5"), ("12%", "'12%"), ("1/2", "'1/2"), ("10:00", "'10:00"),
    ("TRUE", "'TRUE"), ("false", "'false"), ("SEPT2", "'SEPT2"), ("Mar 1", "'Mar 1"),
    ("march 2025", "'march 2025"), ("#N/A", "'#N/A"), ("(5)", "'(5)"), ("$5", "'$5"),
    ("\u20ac5", "'\u20ac5"), (" 7", "' 7"), ("'x", "''x"),
    ("2025-10-01T00:00:00", "'2025-10-01T00:00:00"),  # no offset: LibreOffice makes a date
    # text as it is
    (TS, TS), ("2025-10-01T00:00Z", "2025-10-01T00:00Z"), ("open-20251001T00", "open-20251001T00"),
    ("market-1", "market-1"), ("december", "december"), ("EXEC-002", "EXEC-002"),
    ("b1", "b1"), ("", ""),
])
def test_text_a_spreadsheet_would_read_as_a_value_gets_a_quote(text: str, cell: str) -> None:
    """Text that a spreadsheet reads as a number, date, time, boolean or error gets one `'`;
    the journal's timestamps and ordinary ids are written as they are."""
    assert csv_cell(text) == cell


@given(st.text())
def test_a_quote_is_always_removable(text: str) -> None:
    """Removing one leading quote from any text cell gives the text back exactly."""
    assert unquote(csv_cell(text)) == text


def test_id_like_block_ids_stay_text_in_the_export(tmp_path: Path) -> None:
    """events.csv and deltas.csv write id-like block ids with a quote, numbers as numbers."""
    with EventLogger(tmp_path / "logs") as el:
        for block_id in ID_LIKE:
            transition(el, block_id, {"ETH": -1.5}, component=OTHER)
        out = el.export_csv(tmp_path / "results", "r")
    _, events = read_csv(out)
    _, deltas = read_csv(out.with_name("deltas.csv"))
    for rows in (events, deltas):
        assert [unquote(r["block_id"]) for r in rows] == ID_LIKE
        assert [r["block_id"].startswith("'") for r in rows] == [b != "open-1" for b in ID_LIKE]
        assert {r["timestamp"] for r in rows} == {TS}
    assert {r["amount"] for r in deltas} == {"-1.5"}


# ------------------------------------------------------------------------ deltas.csv


def test_deltas_csv_has_one_row_per_number(tmp_path: Path) -> None:
    """deltas.csv: one row per number in each block_transition's deltas, whatever their shape;
    other records (checkpoints included) and non-numbers are not rows."""
    with EventLogger(tmp_path / "logs") as el:
        el.log_event(TS, "block_accepted", EM, {"block_id": "a", "action": "buy",
                                                 "priority": 1, "instructions": [
            {"token": "ETH", "amount": 9.0}]})
        transition(el, "a", {"block_id": "a", "changes": {"ETH": 2.0, "USDT": -6000}})
        el.log_event(TS, "positions_updated", EM, {"block_id": "a", "attempt": 1})
        el.log_event(TS, "checkpoint", EM, {"deltas": {"ETH": 1.0}, "seq": 4})
        transition(el, "b", {"ETH": Decimal("0.1"), "note": "x", "ok": True, "n": None},
                   attempt=2)
        transition(el, "c", {"legs": [{"qty": 1}, 3.5], "a/b~": 1e-7})
        transition(el, "d", 4.25)
        el.log_event(TS, "block_transition", EM, {"block_id": "e", "source": "queued",
                                                   "dest": "routing", "trigger": "start"})
        out = el.export_csv(tmp_path / "results", "r")
    header, rows = read_csv(out.with_name("deltas.csv"))
    assert tuple(header) == DELTAS_COLUMNS == (
        "seq", "timestamp", "component", "block_id", "attempt", "path", "key", "amount")
    assert [(r["seq"], r["block_id"], r["attempt"], r["path"], r["key"], r["amount"])
            for r in rows] == [
        ("2", "a", "1", "/changes/ETH", "ETH", "2.0"),
        ("2", "a", "1", "/changes/USDT", "USDT", "-6000"),
        ("5", "b", "2", "/ETH", "ETH", "0.1"),
        ("6", "c", "1", "/legs/0/qty", "qty", "1"),
        ("6", "c", "1", "/legs/1", "'1", "3.5"),  # a number as text: quoted
        ("6", "c", "1", "/a~1b~0", "a/b~", "1e-07"),
        ("7", "d", "1", "", "", "4.25")]
    assert {r["component"] for r in rows} == {EM} and {r["timestamp"] for r in rows} == {TS}
    _, events = read_csv(out)
    assert [r["event_type"] for r in events] == [
        "block_accepted", "block_transition", "positions_updated", "checkpoint",
        *["block_transition"] * 4]


def test_deltas_cells_are_injection_safe(tmp_path: Path) -> None:
    """Keys, paths and decimals that are not plain numbers are quoted like any text cell."""
    bad = '=HYPERLINK("https:evil.example","x")'
    with EventLogger(tmp_path / "logs") as el:
        transition(el, bad, {bad: 1.0, "-1": 2.0, "x": Decimal("-Infinity"),
                             "y": Decimal("-1.5E+3")}, component=OTHER)
        out = el.export_csv(tmp_path / "results", "r")
    _, rows = read_csv(out.with_name("deltas.csv"))
    assert [(r["block_id"], r["path"], r["key"], r["amount"]) for r in rows] == [
        ("'" + bad, "/" + bad, "'" + bad, "1.0"), ("'" + bad, "/-1", "'-1", "2.0"),
        ("'" + bad, "/x", "x", "'-Infinity"), ("'" + bad, "/y", "y", "-1.5E+3")]


def test_delta_amounts_of_the_readme_shape() -> None:
    """The README's venue returns {"ETH": 2.0}: one amount, filed under ETH."""
    assert list(delta_amounts({"ETH": 2.0})) == [("/ETH", "ETH", 2.0)]
    assert list(delta_amounts({"__decimal__": "1.5"})) == [("", "", "1.5")]
    assert list(delta_amounts([True, None, "1"])) == []


# ------------------------------------------------------------------------ temporary files


def test_export_never_follows_a_link_planted_at_a_temporary_path(tmp_path: Path) -> None:
    """Links planted where the export used to put its temporary files (and at the outputs)
    are never written through: the files outside results_dir stay as they were."""
    with EventLogger(tmp_path / "logs") as el:
        transition(el, "a", {"ETH": 1.0})
    folder = tmp_path / "results" / "r"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("keep")
    for name in ("events.csv.tmp", "deltas.csv.tmp"):
        (folder / name).symlink_to(outside / name)  # a dangling link: open() would create
    (folder / "events.csv").symlink_to(outside / "kept")
    out = export_csv(tmp_path / "logs", tmp_path / "results", "r")
    assert sorted(p.name for p in outside.iterdir()) == ["kept"]
    assert (outside / "kept").read_text() == "keep"
    for name in ("events.csv", "deltas.csv"):
        assert not (folder / name).is_symlink() and (folder / name).is_file()
    assert read_csv(out)[1][0]["block_id"] == "a"
    assert sorted(p.name for p in folder.iterdir()) == [
        "deltas.csv", "deltas.csv.tmp", "events.csv", "events.csv.tmp"]


def test_failed_export_leaves_neither_temporary_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename that fails removes both temporary files."""
    with EventLogger(tmp_path / "logs") as el:
        el.log_event(TS, "x", EM, {})
    real, calls = os.replace, []

    def second_fails(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr("fsm_exec.journal.export.os.replace", second_fails)
    with pytest.raises(OSError, match="No space"):
        export_csv(tmp_path / "logs", tmp_path / "results", "r")
    assert sorted(p.name for p in (tmp_path / "results" / "r").iterdir()) == ["events.csv"]


def test_export_files_are_readable_as_usual(tmp_path: Path) -> None:
    """The exported files get the usual permissions (the umask's), not a private 0600."""
    with EventLogger(tmp_path / "logs") as el:
        el.log_event(TS, "x", EM, {})
    umask = os.umask(0o022)
    try:
        out = export_csv(tmp_path / "logs", tmp_path / "results", "r")
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644
    assert out.with_name("deltas.csv").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------ LibreOffice

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
#: LibreOffice's CSV import options: comma, double quote, UTF-8, from line 1; with and
#: without "detect special numbers" (dates, times, scientific notation).
IMPORTS = {"default": "CSV:44,34,76,1", "special numbers": "CSV:44,34,76,1,,1033,false,true"}


def convert(source: Path, to: str, profile: Path, infilter: str | None = None) -> Path:
    """``source`` converted by LibreOffice (headless, its own profile) to ``to``."""
    outdir = source.parent / f"{source.stem}.{to.split(':')[0]}.d"
    outdir.mkdir()
    argv = [str(SOFFICE), f"-env:UserInstallation={profile.as_uri()}", "--headless",
            "--convert-to", to, "--outdir", str(outdir), str(source)]
    if infilter:
        argv[3:3] = [f"--infilter={infilter}"]
    subprocess.run(argv, capture_output=True, timeout=180, check=True)
    (result,) = outdir.iterdir()
    return result


def typed_cells(xlsx: Path) -> dict[str, list[tuple[str, str]]]:
    """Column name -> (type, value) of each cell below the header: text, number or bool."""
    with zipfile.ZipFile(xlsx) as z:
        strings = ["".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t"))
                   for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iterfind("m:si", NS)]
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iterfind("m:sheetData/m:row", NS):
        cells = {}  # column letters -> cell; an empty cell is left out
        for c in row.iterfind("m:c", NS):
            v = c.findtext("m:v", "", NS)
            kind = {"s": "text", "str": "text", "b": "bool"}.get(c.get("t", "n"), "number")
            cells[c.get("r", "").rstrip("0123456789")] = (
                kind, strings[int(v)] if c.get("t") == "s" else v)
        rows.append(cells)
    header = {column: value for column, (_, value) in rows[0].items()}
    return {name: [r.get(column, ("empty", "")) for r in rows[1:]]
            for column, name in header.items()}


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LibreOffice user profile of our own (another running office cannot interfere)."""
    if SOFFICE is None:
        pytest.skip("LibreOffice (soffice) is not installed: apt-get install libreoffice-calc")
    return tmp_path_factory.mktemp("lo-profile")


@pytest.mark.parametrize("how", sorted(IMPORTS))
def test_libreoffice_keeps_ids_text_and_numbers_numbers(how: str, profile: Path,
                                                        tmp_path: Path) -> None:
    """Opened in LibreOffice, block ids stay text (1e5 is not 100000, 00012 is not 12), seq,
    attempt and amount are numbers, timestamps text; saved as CSV and opened again, the same."""
    with EventLogger(tmp_path / "logs") as el:
        for i, block_id in enumerate(ID_LIKE):
            transition(el, block_id, {"changes": {"ETH": -1.5, "USDT": Decimal("4500.25")}},
                       attempt=i + 1, component=OTHER)
        events = el.export_csv(tmp_path / "results", "r")
    for name, numbers in (("events.csv", ("seq", "attempt")),
                          ("deltas.csv", ("seq", "attempt", "amount"))):
        source = tmp_path / name
        shutil.copy(events.with_name(name), source)
        xlsx = convert(source, "xlsx", profile, IMPORTS[how])
        first = typed_cells(xlsx)
        assert first["block_id"] == [("text", csv_cell(b)) for b in ID_LIKE for _ in (
            (1, 2) if name == "deltas.csv" else (1,))]
        assert {kind for kind, _ in first["timestamp"]} == {"text"}
        for column in numbers:
            assert {kind for kind, _ in first[column]} == {"number"}, column
        if name == "deltas.csv":
            assert [float(v) for _, v in first["amount"][:2]] == [-1.5, 4500.25]
        # the round trip: saved as CSV by LibreOffice, opened again
        saved = convert(xlsx, "csv:Text - txt - csv (StarCalc):44,34,76,1", profile)
        again = convert(saved, "xlsx", profile, IMPORTS[how])
        assert typed_cells(again)["block_id"] == first["block_id"]
    assert tuple(read_csv(events)[0]) == CSV_COLUMNS


def _reference_export(log_dir: Path, out: Path) -> tuple[bytes, bytes]:
    """The export as it was written before it was made fast: every record read through
    the reader, every row through csv.writer (the bytes the fast export must match)."""
    import csv as csv_module
    import io

    import orjson

    from fsm_exec.journal.export import (
        CSV_COLUMNS,
        DELTAS_COLUMNS,
        _amount_cell,
        csv_cell,
        delta_amounts,
    )
    from fsm_exec.journal.files import components_in, files_of
    from fsm_exec.journal.reader import read_records

    texts = io.StringIO(newline=""), io.StringIO(newline="")
    events, deltas = (csv_module.writer(t) for t in texts)
    events.writerow(CSV_COLUMNS)
    deltas.writerow(DELTAS_COLUMNS)
    for stem in components_in(log_dir):
        for path in files_of(log_dir, stem):
            for r in read_records(path):
                d = r.data
                head = [r.seq, csv_cell(r.timestamp), csv_cell(r.component)]
                events.writerow([*head, csv_cell(r.event_type),
                                 *(csv_cell(d.get(c)) for c in CSV_COLUMNS[4:10]),
                                 csv_cell(orjson.dumps(d).decode())])
                if r.event_type == "block_transition" and "deltas" in d:
                    who = [csv_cell(d.get("block_id")), csv_cell(d.get("attempt"))]
                    for where, key, amount in delta_amounts(d["deltas"]):
                        deltas.writerow([*head, *who, csv_cell(where), csv_cell(key),
                                         _amount_cell(amount)])
    return tuple(t.getvalue().encode() for t in texts)  # type: ignore[return-value]


@pytest.mark.parametrize("golden", ["backtest_clean.jsonl", "live_faults.jsonl",
                                    "crashed.jsonl", "crashed_then_recovered.jsonl",
                                    "earlier_halt_then_disk_error.jsonl"])
def test_fast_export_writes_the_bytes_csv_writer_writes(tmp_path: Path, golden: str) -> None:
    """The export writes its rows by hand, for speed: byte for byte what csv.writer wrote
    from the reader's records, on the golden journals and on hostile values (quotes,
    commas, newlines, formulas, escapes, numbers as text, booleans, decimals, NaN)."""
    import shutil

    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(Path(__file__).parent / "golden" / golden,
                logs / "execution_manager_events.jsonl")
    with EventLogger(logs, "backtest") as el:
        for i, v in enumerate(['a,"b"\r\nc', "=1+1", "00012", True, None, 1.5, "é\\u",
                               {"k": [1, "x,y"]}, Decimal("1.10"), float("nan"), "'q"]):
            el.log_event("2025-10-01T00:00:00+00:00", "note", "Strategy,\"x\"",
                         {"block_id": v, "source": v, "attempt": v, "error_code": v,
                          "n": i})
            el.log_event(f"2025-10-0{1 + i % 9}", "block_transition", "Other",
                         {"block_id": f"b{i}", "attempt": 1,
                          "deltas": {"changes": {"ETH": v, "a/b~c": [i, Decimal("2.5")]}}})
    out = export_csv(logs, tmp_path / "results", "x")
    want_events, want_deltas = _reference_export(logs, tmp_path)
    assert out.read_bytes() == want_events
    assert out.with_name("deltas.csv").read_bytes() == want_deltas


# ------------------------------------------------------------------------ fast path = careful path

#: Text a cell, a key or a name may hold: formulas, numbers and dates as text, CSV's own
#: characters, JSON's escapes, a tag's name, the envelope's data key, a long line.
HOSTILE = ["", "=1+1", "+x", "-1.5", "@a", "\t1", "\r\n", "'q", "1e5", "00012", "TRUE", "SEPT2",
           "#N/A", "(5)", 'a,"b"\r\nc', "{}", ',"data":', '"data"', "__int__", "__x", "\\u0041",
           "\x00", "é", "\u2028", "\ud800", TS, "b1", "open-1", "~/", "x" * 3000,
           # plain to the eye: a month's name or a boolean first, a newline, other digits
           "mar1", "Dec-2", "truex", "b1\nb2", "_a-1", "\u0662025-10-01T00:00:00+00:00"]
names = st.sampled_from(HOSTILE) | st.text(max_size=12)
keys = st.sampled_from([h for h in HOSTILE if h != "\ud800"]) | st.text(max_size=12)
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
           | st.decimals(allow_nan=True, places=3) | names)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=6)
KINDS = ["block_transition", "block_accepted", "state_update", "checkpoint"]
records = st.fixed_dictionaries({
    "seq": st.integers(0, 2**63 - 1),
    "timestamp": st.sampled_from([TS, "2025-10-01T00:01:00+00:00"]) | names,
    "event_type": st.sampled_from(KINDS) | names,
    "component": st.sampled_from([OTHER, 'Strategy,"x"', "=cmd"]) | names,
    "data": st.fixed_dictionaries({}, optional={
        **{k: st.one_of(scalars, scalars, scalars, values)  # a structure: the careful path
           for k in ("block_id", "source", "dest", "trigger", "attempt", "error_code")},
        **{k: values for k in ("deltas", "data", "n")}}),
}).filter(lambda r: r["component"] != EM).map(  # the manager's records have a schema
    lambda r: {k: r[k] for k in ("seq", "timestamp", "event_type", "component", "data")})


def spoiled(line: bytes, how: int) -> bytes:
    """``line`` as no writer writes it: spaces, a key twice, the envelope out of order, a
    field missing or mistyped, no object, not JSON, CRLF, or nothing at all."""
    obj = json.loads(line)
    variants: list[Callable[[], bytes]] = [
        lambda: json.dumps(obj).encode() + b"\n",
        lambda: line.replace(b'{"seq":', b'{"seq":1,"seq":', 1),
        lambda: orjson.dumps({"data": obj["data"], **obj}) + b"\n",
        lambda: orjson.dumps({k: v for k, v in obj.items() if k != "timestamp"}) + b"\n",
        lambda: orjson.dumps({**obj, "seq": str(obj["seq"])}) + b"\n",
        lambda: orjson.dumps({**obj, "timestamp": 5}) + b"\n",
        lambda: orjson.dumps({**obj, "component": None}) + b"\n",
        lambda: orjson.dumps({**obj, "data": [obj["data"]]}) + b"\n",
        lambda: orjson.dumps({**obj, "extra": 1}) + b"\n",
        lambda: b"[1, 2]\n",
        lambda: line[: len(line) // 2] + b"\n",
        lambda: line[:-1] + b"\r\n",
        lambda: b"  \n",
    ]
    return variants[how]()


def export_outcome(logs: Path, out: Path, *, careful: bool, block: int) -> Any:
    """The two files the export writes, or the error it raises: the fast way (in blocks of
    ``block`` bytes) or every batch the careful way."""
    from fsm_exec.journal import export, export_batch, reader

    def refuse(*args: Any) -> Any:
        raise export_batch.NotOrdinary

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "BATCH_BYTES", block)
        if careful:
            mp.setattr(export, "rows", refuse)
        try:
            events = export_csv(logs, out, "careful" if careful else "fast")
        except Exception as exc:  # JournalCorruptError, or what the reader lets through
            return type(exc), str(exc)
    return events.read_bytes(), events.with_name("deltas.csv").read_bytes()


@settings(max_examples=300)
@given(st.lists(st.tuples(records, st.integers(0, 150).map(lambda i: i if i < 13 else None)),
                max_size=12),
       st.sampled_from([64, 333, 4096, 1 << 16]), st.booleans())
def test_the_fast_path_writes_what_the_careful_path_writes(
        lines: list[tuple[dict[str, Any], int | None]], block: int, torn: bool) -> None:
    """Any journal: records of any shape (hostile text, NaN and infinities, decimals,
    integers beyond 64 bits, nested data, a data key inside data, long text), some lines
    spoiled, a torn last line, read in blocks of any size: the export's fast path writes
    the bytes its careful path writes, or both raise the same error naming the same line.
    Without spoiled lines, both write what csv.writer writes from the reader's records
    (when the reader, which also checks the records' schema, reads them)."""
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        raw = [encode(r) if how is None else spoiled(encode(r), how) for r, how in lines]
        if torn and raw:
            raw[-1] = raw[-1].rstrip(b"\n")
        (logs / "strategy_log_events.jsonl").write_bytes(b"".join(raw))
        fast = export_outcome(logs, Path(tmp) / "results", careful=False, block=block)
        assert fast == export_outcome(logs, Path(tmp) / "results", careful=True, block=block)
        if all(how is None for _, how in lines):
            try:
                reference = _reference_export(logs, Path(tmp))
            except JournalCorruptError:  # the reader's schema: a timestamp of 3000 chars...
                return
            assert fast == reference


def test_equal_values_of_other_types_are_other_cells(tmp_path: Path) -> None:
    """1, True and 1.0 are equal keys in Python but different cells, as are 0.0 and -0.0:
    a cell made for one is never written for the other."""
    with EventLogger(tmp_path / "logs") as el:
        for v in (1, True, 1.0, 0.0, -0.0, 1, None, "1"):
            el.log_event(TS, "x", OTHER, {"block_id": v, "source": v, "attempt": v,
                                          "error_code": v})
        out = el.export_csv(tmp_path / "results", "r")
    _, rows = read_csv(out)
    want = ["1", "true", "1.0", "0.0", "-0.0", "1", "", "'1"]
    for column in ("block_id", "source", "attempt", "error_code"):
        assert [r[column] for r in rows] == want, column


def test_batches_cut_anywhere_write_the_reference_bytes(tmp_path: Path) -> None:
    """A line longer than a block, empty data, a data key inside data, a line the writer
    would not write (CRLF) among ordinary ones and a torn last line: read in blocks of
    every size, the export writes what csv.writer writes from the reader's records."""
    logs = tmp_path / "logs"
    with EventLogger(logs, "backtest") as el:
        for i in range(40):
            el.log_event(TS, "block_transition", OTHER, {
                "block_id": f"b{i}", "source": "queued", "dest": "routing", "attempt": 1,
                "data": {"data": i}, "deltas": {"changes": {"ETH": i / 3, "x/y~": [i]}}})
            el.log_event(TS, "tick", OTHER, {})
        el.log_event(TS, "note", OTHER, {"text": "é=" * 50_000, "block_id": "=1"})
        el.log_event(TS, "note", OTHER, {"many": [[]] * 300, "tag": Decimal("1.5")})
    path = logs / "strategy_log_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[7] = lines[7][:-1] + b"\r\n"
    path.write_bytes(b"".join(lines) + lines[3][:-1])  # torn: never acknowledged
    want = _reference_export(logs, tmp_path)
    for block in (17, 300, 1 << 16, 1 << 20):
        assert export_outcome(logs, tmp_path / "results", careful=False, block=block) == want


@pytest.mark.parametrize(("bad", "why"), [(b'{"seq": oops}\n', "not valid JSON"),
                                          (b"  \n", "empty line")])
@pytest.mark.parametrize("block", [50, 1 << 16])
def test_the_line_at_fault_is_named_whatever_the_batch(tmp_path: Path, block: int,
                                                       bad: bytes, why: str) -> None:
    """A line that is not JSON, or is empty, in the middle of ordinary ones: the error
    names it."""
    logs = tmp_path / "logs"
    with EventLogger(logs, "backtest") as el:
        for i in range(30):
            el.log_event(TS, "tick", OTHER, {"n": i})
    path = logs / "strategy_log_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[20] = bad
    path.write_bytes(b"".join(lines))
    outcome = export_outcome(logs, tmp_path / "results", careful=False, block=block)
    assert outcome == (JournalCorruptError, f"[EXEC-013] {path}:21: {why}")


@pytest.mark.parametrize("torn", [False, True])
@pytest.mark.parametrize("long", [118, 400])  # 230 bytes: found whole in a later block
@pytest.mark.parametrize("block", [64, 1 << 16])
def test_a_line_too_long_is_refused_as_the_reader_refuses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bool, long: int,
        block: int) -> None:
    """A line longer than the reader reads (here 200 bytes), whole or torn at the end,
    spanning blocks: the export refuses it with the reader's words and line number; a
    line of exactly the limit (its newline included) is read."""
    from fsm_exec.journal import reader

    logs = tmp_path / "logs"
    with EventLogger(logs, "backtest") as el:
        el.log_event(TS, "tick", OTHER, {"n": "x" * 88})  # 200 bytes with its newline
        el.log_event(TS, "tick", OTHER, {"n": "x" * long})
        el.log_event(TS, "tick", OTHER, {})
    path = logs / "strategy_log_events.jsonl"
    assert len(path.read_bytes().splitlines(keepends=True)[0]) == 200
    if torn:
        path.write_bytes(path.read_bytes().rsplit(b"\n", 2)[0])
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 200)
    monkeypatch.setattr(reader, "BATCH_BYTES", block)
    with pytest.raises(JournalCorruptError) as read:
        list(reader.read_records(path))
    with pytest.raises(JournalCorruptError) as exported:
        export_csv(logs, tmp_path / "results", "r")
    assert str(exported.value) == str(read.value)
    assert str(read.value).startswith(f"[EXEC-013] {path}:2: a line longer than 200 bytes")


@pytest.mark.parametrize("proven", [True, False])
@pytest.mark.parametrize("depth", [251, 252, 253, 254])
def test_a_line_nested_deep_is_read_as_the_reader_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int, proven: bool) -> None:
    """Nesting as deep as orjson writes (252 lists in the data) is exported, as is a line
    with as many brackets side by side; one level
    deeper fails the export as it fails the reader (which raises orjson's own TypeError
    there, not JournalCorruptError: the reader's to fix). The same when the fast path
    walks each deep line for its depth (as it would under an orjson that wrote deeper)
    rather than trusting the batch's one dumps."""
    from fsm_exec.journal import export_batch, reader

    monkeypatch.setattr(export_batch, "_DEPTH_PROVEN", proven)

    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "strategy_log_events.jsonl"
    wide = {"seq": 1, "timestamp": TS, "event_type": "x", "component": OTHER,
            "data": {"l": [[]] * 300}}  # as many brackets, not as deep
    record = {"seq": 2, "timestamp": TS, "event_type": "x", "component": OTHER,
              "data": {"l": json.loads("[" * depth + "]" * depth)}}
    path.write_bytes(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n"
                              for r in (wide, record)))
    try:
        list(reader.read_records(path))
    except Exception as exc:
        assert depth >= 253
        want: Any = (type(exc), str(exc))
    else:
        want = _reference_export(logs, tmp_path)
    for careful in (False, True):
        assert export_outcome(logs, tmp_path / "results", careful=careful, block=1 << 16) == want


#: A leaf of the deltas: numbers of either type, what is no amount, a decimal (a tag).
leaves = st.sampled_from([
    st.integers(-(2**63), 2**63 - 1), st.integers(-(2**70), 2**70), st.floats(),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(), names,
    st.decimals(allow_nan=False, places=2)])
skeletons = st.recursive(st.none(), lambda inner: st.dictionaries(keys, inner, max_size=3),
                         max_leaves=5)


def _filled(skeleton: Any, leaf: Callable[[list[int]], Any], at: list[int]) -> Any:
    if isinstance(skeleton, dict):
        return {k: _filled(v, leaf, [*at, i]) for i, (k, v) in enumerate(skeleton.items())}
    return leaf(at)


@settings(max_examples=200)
@given(skeletons, st.integers(1, 30), st.data(), st.sampled_from([64, 4096, 1 << 16]))
def test_deltas_of_one_shape_are_written_column_by_column_as_record_by_record(
        skeleton: Any, n: int, data: st.DataObject, block: int) -> None:
    """Many records whose deltas share a shape (the same keys; each place holding numbers
    of one type, or text, booleans and nulls, or, now and then, a value of another type,
    NaN, a decimal): deltas.csv made column by column is what the careful path and
    csv.writer write."""
    kinds: dict[tuple[int, ...], st.SearchStrategy[Any]] = {}

    def leaf(at: list[int]) -> Any:
        kind = kinds.setdefault(tuple(at), data.draw(leaves))
        return data.draw(kind if data.draw(st.integers(0, 9)) else scalars)

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        with EventLogger(logs, "backtest") as el:
            for i in range(n):
                transition(el, f"b{i}", _filled(skeleton, leaf, []), component=OTHER)
                el.log_event(TS, "tick", OTHER, {"n": i})
        fast = export_outcome(logs, Path(tmp) / "results", careful=False, block=block)
        assert fast == export_outcome(logs, Path(tmp) / "results", careful=True, block=block)
        try:
            reference = _reference_export(logs, Path(tmp))
        except JournalCorruptError:  # a key that is a tag's name: no reader reads it
            assert fast[0] is JournalCorruptError
            return
        assert fast == reference


def test_deltas_of_one_shape_in_a_batch(tmp_path: Path) -> None:
    """One batch of transitions whose deltas share their keys: numbers of one type
    (written column by column, escaped paths and keys included), an int among floats, NaN,
    text among numbers, keys in another order, a list: each as csv.writer writes it."""
    cases: list[list[Any]] = [
        [{"changes": {"ETH": 1.5, "a/b~c": 2}, "note": "x", "ok": True}] * 3,
        [{"changes": {"ETH": 1.5}}, {"changes": {"ETH": 2}}],
        [{"changes": {"ETH": 1.5}}, {"changes": {"ETH": float("nan")}}],
        [{"changes": {"ETH": 1.5}}, {"changes": {"ETH": "1.5"}}],
        [{"a": 1, "b": 2}, {"b": 2, "a": 1}],
        [{"a": [1, 2]}, {"a": [3, 4]}],
        [7, 8], [{}, {}], ["x", None],
    ]
    for i, deltas in enumerate(cases):
        logs = tmp_path / f"logs{i}"
        with EventLogger(logs, "backtest") as el:
            for j, d in enumerate(deltas):
                transition(el, f"b{j}", d, component=OTHER)
        want = _reference_export(logs, tmp_path)
        assert export_outcome(logs, tmp_path / "results", careful=False, block=1 << 16) == want


plain_looking = (st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
                 | st.from_regex(r"(?i:true|false|mar|dec|sept?|may)[a-z0-9 ./-]{0,4}",
                                 fullmatch=True)
                 | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                                 r"(Z|[+-]\d{2}(:?\d{2})?)\n?", fullmatch=True)
                 | st.sampled_from(HOSTILE) | st.just(""))


@given(st.lists(plain_looking | st.text(max_size=8), max_size=6))
def test_cells_proved_plain_are_the_cells_made_one_by_one(values: list[str]) -> None:
    """A batch's timestamps or block ids taken as their own cells (one match over them
    all) are exactly the cells made one by one (csv_cell, then the CSV field)."""
    from fsm_exec.journal.export import PLAIN_LINES, _cell
    from fsm_exec.journal.export_batch import Plans, _cells

    plans = Plans(_cell, PLAIN_LINES)
    assert list(_cells(values, plans)) == [_cell(v) for v in values]
