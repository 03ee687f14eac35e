"""Issue 26 item 6: rough edges where a backtest framework meets the manager: ids made from
timestamps, naive timestamps, and a backtest journal's status."""

from __future__ import annotations

import datetime as dt
import io
import json
import zoneinfo
from pathlib import Path

import pandas as pd
import pytest

from fsm_exec import (
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    InvalidBlockError,
    JournalRecord,
    read_journal,
)
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import block, rig


@pytest.mark.parametrize(("block_id", "where"), [
    ("buy-2004-10-01T00:00:00+00:00", "'+' at position 23"),
    ("buy-2004-10-01 00:00:00", "' ' at position 14"),
    ("sell/1", "'/' at position 4"),
    ("é", "'é' at position 0"),
    ("", "it is empty"),
    ("x" * 65, "it is 65 characters long"),
])
def test_an_invalid_id_names_its_offending_character_and_position(block_id: str,
                                                                  where: str) -> None:
    """A block_id outside [A-Za-z0-9._:-]{1,64} is refused naming the first character
    that is not allowed and its position (from 0), or what is wrong with its length."""
    r = rig("backtest")
    with pytest.raises(InvalidBlockError) as info:
        r.em.update_state("2025-10-01T00:00Z", "strategy_manager", [block(block_id)])
    (problem,) = info.value.problems
    assert problem.field == "block_id" and f"({where}" in problem.reason


def test_an_id_made_from_a_timestamp_gets_a_hint() -> None:
    """An id made with str(ts) or ts.isoformat() is told how to make one from a time."""
    r = rig("backtest")
    with pytest.raises(InvalidBlockError, match=r"ts\.strftime\('%Y%m%dT%H%M%S'\)"):
        r.em.execute_instruction_blocks("2025-10-01T00:00Z", [
            block(f"buy-{pd.Timestamp('2004-10-01')}")])


NAIVE = [dt.datetime(2004, 10, 1, 9, 30), pd.Timestamp("2004-10-01 09:30"),
         "2004-10-01T09:30:00"]


@pytest.mark.parametrize("ts", NAIVE, ids=repr)
def test_naive_timestamps_are_refused_by_default_naming_the_option(ts: object) -> None:
    """A naive timestamp is still refused by default, and the refusal names the option
    that reads it in a zone."""
    r = rig("backtest")
    with pytest.raises(InvalidArgumentError, match="assume_timezone='UTC'"):
        r.em.update_state(ts, "strategy_manager", [block("a")])
    assert r.em.blocks_accepted == 0


@pytest.mark.parametrize("ts", NAIVE, ids=repr)
@pytest.mark.parametrize(("zone", "utc"), [
    ("UTC", "2004-10-01T09:30:00+00:00"),
    ("America/New_York", "2004-10-01T13:30:00+00:00"),
    (zoneinfo.ZoneInfo("Asia/Tokyo"), "2004-10-01T00:30:00+00:00"),
    (dt.timezone(dt.timedelta(hours=2)), "2004-10-01T07:30:00+00:00"),
])
def test_assume_timezone_reads_naive_timestamps_in_that_zone(
        tmp_path: Path, ts: object, zone: str | dt.tzinfo, utc: str) -> None:
    """With assume_timezone a naive timestamp is read as a time in that zone and
    journaled as its UTC instant; aware ones are unchanged; reopen() keeps the option."""
    rc = SimReconciliation(None)
    with EventLogger(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(rc),
                              SimVenue(), rc, event_logger=log, assume_timezone=zone)
        em.update_state(ts, "strategy_manager", [block("a")])
        em.update_state("2004-10-02T00:00:00Z", "strategy_manager", [block("b")])
        em._retire(KeyboardInterrupt())  # stopped mid-step: reopen() rebuilds it as given
        em = em.reopen()
        em.update_state(ts, "strategy_manager", [block("c")])
        log.flush()
        stamps = {r.data["block_id"]: r.timestamp for r in _records(tmp_path)
                  if r.event_type == "block_accepted"}
    assert stamps == {"a": utc, "b": "2004-10-02T00:00:00+00:00", "c": utc}


def _records(log_dir: Path) -> list[JournalRecord]:
    return list(read_journal(log_dir))


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", 5, "../etc/passwd", "UTC\n"])
def test_assume_timezone_must_name_a_zone(zone: object) -> None:
    """assume_timezone is None, a tzinfo or an IANA zone name; anything else is refused
    at construction."""
    with pytest.raises(InvalidArgumentError, match="assume_timezone: must be None"):
        ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                         SimVenue(), SimReconciliation(),
                         assume_timezone=zone)  # type: ignore[arg-type]


def backtest_journal(log_dir: Path) -> None:
    """A backtest of 2004 that stopped with one block queued behind a halt."""
    rc = SimReconciliation(None)
    positions = SimPositionHandler(rc, [False, True])
    with EventLogger(log_dir, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", positions, SimVenue(), rc,
                              event_logger=log)
        em.update_state("2004-10-01T00:00:00Z", "strategy_manager", [block("a")])
        with pytest.raises(Exception, match="EXEC-008"):
            em.update_state("2004-10-04T00:00:00Z", "strategy_manager",
                            [block("b"), block("c")])


def status(log_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["status", str(log_dir), *args], out=out)
    return code, out.getvalue()


def test_status_of_a_backtest_journal_is_as_of_its_own_time(tmp_path: Path) -> None:
    """A backtest journal's status measures ages to its last record (a backtest runs on
    its own time), says so, and never says "5119.8 d ago"."""
    backtest_journal(tmp_path)
    code, text = status(tmp_path)
    assert code == 1  # halted
    assert (f"fsm-exec status: {tmp_path} (as of its last record, "
            "2004-10-04T00:00:00+00:00: a backtest runs on its own time)") in text
    assert " ago)" not in text
    assert "block b, at 2004-10-04T00:00:00+00:00 (the last record)" in text
    code, out = status(tmp_path, "--json")
    report = json.loads(out)
    assert (report["clock"], report["execution_mode"], report["now"]) == (
        "journal", "backtest", "2004-10-04T00:00:00+00:00")
    assert report["queue"]["oldest_age_s"] == 0.0


def test_status_of_a_backtest_journal_with_now_given_uses_it(tmp_path: Path) -> None:
    """--now still wins: the ages are measured to it."""
    backtest_journal(tmp_path)
    report = json.loads(status(tmp_path, "--json", "--now", "2004-10-04T00:10:00Z")[1])
    assert (report["clock"], report["now"]) == ("given", "2004-10-04T00:10:00+00:00")
    assert report["last_activity"]["age_s"] == 600.0


def test_status_of_a_live_journal_is_as_of_the_wall_clock(tmp_path: Path) -> None:
    """A live journal's status is as of the current time, as before."""
    rc = SimReconciliation(None)
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                              SimVenue(), rc, event_logger=log)
        em.update_state("2004-10-01T00:00:00Z", "strategy_manager", [block("a")])
    report = json.loads(status(tmp_path, "--json")[1])
    assert (report["clock"], report["execution_mode"]) == ("wall", "live")
    assert report["last_activity"]["age_s"] > 86400 * 365
