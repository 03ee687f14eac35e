"""A key given twice in one JSON object, or a price column named twice, is refused with an
error naming it and the line (review finding 15e): JSON readers differ on which value they
keep, so an order's amount must never depend on it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fsm_exec import check_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.reader import duplicate_key, read_journal
from fsm_exec.sim.venues import SimPositionHandler, SimVenue

from journals import Reconciled
from kit import T, block

GOOD = json.dumps(block("b0")) + "\n"


def run(tmp_path: Path, text: str, *extra: str) -> tuple[int, str]:
    blocks = tmp_path / "b.jsonl"
    blocks.write_text(text)
    out = io.StringIO()
    return main(["run", str(blocks), "--out", str(tmp_path / "out"), *extra], out=out), \
        out.getvalue()


@pytest.mark.parametrize(("line", "key"), [
    ('{"block_id":"b1","action":"buy","priority":1,"instructions":[{"token":"ETH",'
     '"amount":1,"amount":1000}]}', "amount"),
    ('{"block_id":"b1","block_id":"b2","action":"buy","priority":1,"instructions":'
     '[{"token":"ETH","amount":1}]}', "block_id"),
    ('[{"block_id":"b1","action":"buy","priority":1,"instructions":[{"token":"ETH",'
     '"amount":1}]},{"block_id":"b2","action":"buy","action":"sell","priority":1,'
     '"instructions":[{"token":"ETH","amount":1}]}]', "action")])
def test_a_key_given_twice_in_a_blocks_file_is_refused(
        line: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``"amount":1,"amount":1000`` was accepted (the last won): now exit 2 naming the key
    and the line, before anything is created."""
    code, text = run(tmp_path, GOOD + line + "\n")
    assert code == 2 and text == ""
    err = capsys.readouterr().err
    assert f"b.jsonl:2: key {key!r} appears twice in one object" in err
    assert not (tmp_path / "out").exists()


def test_a_duplicated_key_that_is_a_secret_is_masked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The key quoted by the error goes through the config's redactor."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"api_key": "sk-LIVE-abcdef123456"}))
    line = ('{"block_id":"b1","action":"buy","priority":1,"instructions":[{"token":"ETH",'
            '"amount":1,"sk-LIVE-abcdef123456":1,"sk-LIVE-abcdef123456":2}]}')
    assert run(tmp_path, line + "\n", "--config", str(config))[0] == 2
    err = capsys.readouterr().err
    assert "appears twice" in err and "sk-LIVE" not in err


@pytest.mark.parametrize("header", ["ETH,USDT,ETH", "timestamp,ETH, ETH "])
def test_a_price_column_named_twice_is_refused(
        header: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--prices with two ETH columns was accepted (the last won): now exit 2 naming the
    column and where."""
    prices = tmp_path / "p.csv"
    prices.write_text(header + "\n" + ",".join(
        ["2025-10-01T00:00:00Z" if c == "timestamp" else "3000" for c in header.split(",")])
        + "\n")
    code, _ = run(tmp_path, GOOD, "--prices", str(prices))
    assert code == 2
    err = capsys.readouterr().err
    assert f"p.csv:1: column 'ETH' is named twice (columns {2 if 'timestamp' in header else 1} " \
           "and 3)" in err


def test_duplicate_key_finds_nested_keys_and_nothing_else() -> None:
    """The first key given twice at any depth; None for unique keys and for non-JSON."""
    assert duplicate_key(b'{"a":1,"b":{"c":1,"d":[{"e":1,"e":2}]}}') == "e"
    assert duplicate_key('{"a":1,"b":{"a":1}}') is None
    assert duplicate_key(b"not json") is None


def test_a_journal_line_with_a_key_twice_is_refused_by_every_reader(tmp_path: Path) -> None:
    """A journal edited to say ``"dest":"success","dest":"routing"``: the reader keeps
    neither, it refuses the line (check and recovery: EXEC-013 naming the line)."""
    from fsm_exec import EventLogger, ExecutionManager, JournalCorruptError
    from fsm_exec.sim.venues import StaticDataProvider

    with EventLogger(tmp_path, "live") as log:
        ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                         Reconciled(), event_logger=log
                         ).update_state(T(0), "strategy_manager", [block("b1")])
    path = tmp_path / "execution_manager_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    at = next(i for i, raw in enumerate(lines) if b'"dest":"routing"' in raw)
    lines[at] = lines[at].replace(b'"dest":"routing"', b'"dest":"success","dest":"routing"')
    path.write_bytes(b"".join(lines))
    report = check_journal(tmp_path)
    assert not report.ok
    assert f":{at + 1}" in str(report.problem) and "'dest' appears twice" in str(report.problem)
    with pytest.raises(JournalCorruptError, match="'dest' appears twice"):
        list(read_journal(tmp_path))
