"""Each record carries the time of the step it records (issue 25 item 12): in live mode the
call's timestamp advanced by the injected clock's time since the call began, so routing,
retries and reconciliation show how long they took; a backtest keeps the strategy's
timestamp. Records written outside any call say that their timestamp is the wall clock,
and checkpoints and start records carry the wall clock under its own name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec import EventLogger, ExecutionManager, InstructionBlock
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks

START = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
EARLIER = Path(__file__).parent / "golden" / "earlier"


class SlowVenue(SimVenue):
    """Each route call takes ``seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        self.clock.advance(self.seconds)
        return super().route_instruction(timestamp, block)


def _live_run(log_dir: Path, route_s: float, reconcile_s: float) -> tuple[
        list[JournalRecord], FakeClock]:
    clock = FakeClock(1000.0)
    rc = SimReconciliation(clock, [("ok", reconcile_s)])
    with EventLogger(log_dir, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                              SlowVenue(clock, route_s), rc, event_logger=log, clock=clock,
                              sleep=clock.sleep)
        em.update_state(START, "strategy_manager", blocks("a"))
    return list(read_journal(log_dir)), clock


def _at(r: JournalRecord) -> float:
    return (dt.datetime.fromisoformat(r.timestamp) - START).total_seconds()


def _move(records: list[JournalRecord], dest: str) -> JournalRecord:
    return next(r for r in records if r.event_type == "block_transition"
                and r.data["dest"] == dest)


def test_live_records_show_how_long_routing_and_reconciliation_took(tmp_path: Path) -> None:
    """A route call of 8 s and a reconciliation of 3 s: the block's move out of routing is
    stamped 8 s after its start, its reconciliation at least 11 s after, the call's last
    record when the clock says the call ended (every record said the call's start)."""
    records, clock = _live_run(tmp_path, 8.0, 3.0)
    call = [r for r in records if r.event_type not in ("checkpoint",
                                                       "component_initialization")]
    assert _at(_move(call, "routing")) == 0.0
    assert _at(_move(call, "pending_reconciliation")) == 8.0
    reconciled = _move(call, "success")
    assert 11.0 <= _at(reconciled) <= _at(call[-1])
    assert _at(call[-1]) == pytest.approx(clock() - 1000.0, abs=1e-6)
    stamps = [_at(r) for r in call]
    assert stamps == sorted(stamps)


@settings(max_examples=50, deadline=None)
@given(route_s=st.floats(0, 25), reconcile_s=st.floats(0, 20))
def test_live_record_times_follow_the_injected_clock(
        tmp_path_factory: pytest.TempPathFactory, route_s: float, reconcile_s: float) -> None:
    """Any route duration and reconciliation delay: the records of the call never go back
    in time, the move out of routing is stamped the route call's duration after the start,
    and the last record is stamped when the injected clock says the call ended (to the
    microsecond a timestamp holds). Route calls within execution_timeout (30 s)."""
    records, clock = _live_run(tmp_path_factory.mktemp("times"), route_s, reconcile_s)
    call = [r for r in records if r.seq > 2]
    stamps = [dt.datetime.fromisoformat(r.timestamp) for r in call]
    assert stamps == sorted(stamps)
    routed = dt.datetime.fromisoformat(_move(call, "pending_reconciliation").timestamp)
    micro = dt.timedelta(microseconds=1)
    assert abs(routed - START - dt.timedelta(seconds=route_s)) <= micro
    assert abs(stamps[-1] - START - dt.timedelta(seconds=clock() - 1000.0)) <= micro


def test_backtest_records_keep_the_strategys_timestamp(tmp_path: Path) -> None:
    """A backtest's records of one call all carry that call's timestamp, however long its
    collaborators took on the clock."""
    clock = FakeClock()
    with EventLogger(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              SlowVenue(clock, 8.0), SimReconciliation(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        em.update_state(T(60), "strategy_manager", blocks("a", "b"))
    call = [r for r in read_journal(tmp_path) if r.seq > 2]
    assert {r.timestamp for r in call} == {"2025-10-01T00:01:00+00:00"}


def test_records_written_outside_a_call_say_theirs_is_the_wall_clock(
        tmp_path: Path) -> None:
    """The start's checkpoint and component_initialization (no call yet) say ``clock:
    wall`` (their timestamp is the wall clock); a checkpoint written inside a call (a new
    day) carries the caller's time, no ``clock`` mark, and the wall clock under its own
    name."""
    day = [dt.date(2025, 10, 1)]
    before = dt.datetime.now(dt.UTC)
    with EventLogger(tmp_path, "live", today=lambda: day[0]) as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), SimReconciliation(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        day[0] = dt.date(2025, 10, 2)
        em.update_state(T(86_400), "strategy_manager", blocks("b"))
    records = list(read_journal(tmp_path))
    start = [r for r in records if r.seq <= 2]
    assert [r.event_type for r in start] == ["checkpoint", "component_initialization"]
    for r in start:
        assert r.data["clock"] == "wall" and "wall_clock" not in r.data
        assert dt.datetime.fromisoformat(r.timestamp) >= before.replace(microsecond=0)
    rotated = [r for r in records if r.event_type == "checkpoint" and r.seq > 2]
    assert len(rotated) == 1
    assert rotated[0].timestamp == "2025-10-02T00:00:00+00:00"
    assert "clock" not in rotated[0].data
    assert dt.datetime.fromisoformat(rotated[0].data["wall_clock"]) >= before.replace(
        microsecond=0)


def test_a_journal_of_before_still_recovers(tmp_path: Path) -> None:
    """Journals written before records carried step times (tests/golden/earlier) still
    recover and check."""
    from fsm_exec import check_journal

    for path in sorted(EARLIER.glob("*.jsonl")):
        assert check_journal(path).ok, path
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), SimReconciliation())
        em.recover(path)


def test_a_step_time_past_year_9999_keeps_the_calls_timestamp(tmp_path: Path) -> None:
    """A call stamped at the last second a timestamp holds, whose route call takes 8 s:
    the records keep the call's timestamp (no overflow, nothing refused)."""
    clock = FakeClock()
    end = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SlowVenue(clock, 8.0), SimReconciliation(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        em.update_state(end, "strategy_manager", blocks("a"))
    call = [r for r in read_journal(tmp_path) if r.seq > 2]
    assert {r.timestamp for r in call} == {end.isoformat()}


def test_a_call_stamped_before_the_last_record_never_goes_back(tmp_path: Path) -> None:
    """A call whose timestamp is before the time the manager's previous records reached
    (its steps took longer than the caller's clock moved): its records carry the last
    time, never an earlier one."""
    records_before: list[JournalRecord]
    clock = FakeClock()
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SlowVenue(clock, 8.0), SimReconciliation(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        em.update_state(START, "strategy_manager", blocks("a"))
        records_before = list(read_journal(tmp_path))
        em.update_state(START + dt.timedelta(seconds=1), "strategy_manager", blocks("b"))
    later = list(read_journal(tmp_path))[len(records_before):]
    last = dt.datetime.fromisoformat(records_before[-1].timestamp)
    assert last - START >= dt.timedelta(seconds=8)  # past the next call's timestamp
    stamps = [dt.datetime.fromisoformat(r.timestamp) for r in later]
    assert stamps[0] == last and stamps == sorted(stamps)


@pytest.mark.parametrize("stamp", ["yesterday", float("nan"),
                                   dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(
                                       dt.timedelta(hours=-5)))])
def test_the_writer_never_writes_a_manager_timestamp_the_readers_refuse(
        stamp: Any, tmp_path: Path) -> None:
    """A record of the manager's component given a timestamp that is no time (text, NaN, a
    time with no UTC instant) is refused by the writer, nothing written: the readers refuse
    it, so the journal could no longer be recovered. Another component's record keeps what
    its caller gave it."""
    from fsm_exec.core.errors import EventLogError

    with EventLogger(tmp_path, "live") as log:
        log.log_event(START, "operator_note", "ExecutionManager", {"n": 1})
        with pytest.raises(EventLogError, match="no time"):
            log.log_event(stamp, "operator_note", "ExecutionManager", {"n": 2})
        with pytest.raises(EventLogError, match="no time"):
            log.checkpoint("ExecutionManager", {"n": 4}, timestamp=stamp, new_file=False)
        log.log_event("whenever", "note", "Strategy", {"n": 3})
    assert [r.data["n"] for r in read_journal(tmp_path)] == [1]
    assert [r.data["n"] for r in read_journal(tmp_path, "Strategy")] == [3]


@pytest.mark.parametrize(("text", "utc"), [
    ("2025-10-01T00:00:00+00:00", "2025-10-01T00:00:00+00:00"),
    ("2025-10-01T02:00:00+02:00", "2025-10-01T00:00:00+00:00"),
    ("2025-10-01T00:00:00", "2025-10-01T00:00:00+00:00"),  # no offset: UTC
    ("yesterday", None), ("9999-12-31T23:59:59-01:00", None), (17, None), (None, None)])
def test_a_journal_time_is_one_rule(text: object, utc: str | None) -> None:
    """journal_time: what the writer, every reader and the tools take a record's time to
    be (a time; without an offset, UTC), or None."""
    from fsm_exec.boundary.timestamps import journal_time

    t = journal_time(text)
    assert (None if t is None else t.astimezone(dt.UTC).isoformat()) == utc
