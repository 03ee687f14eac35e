"""Crash recovery: rebuild a manager from its journal, settle the block in doubt first,
never lose a block, never run one twice."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    EventLogger,
    ExecutionManager,
    InstructionBlock,
    InvalidArgumentError,
    InvalidBlockError,
    JournalCorruptError,
    JournalRecord,
    check_journal,
    read_journal,
)
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block, blocks


class Reconciled:
    """A reconciliation component that always reports success (a fresh process's view)."""

    reconciliation_status = "success"


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class CrashingLog:
    """Forwards to a journal, and dies instead of writing the first record ``when`` picks."""

    def __init__(self, journal: EventLogger, when: Any) -> None:
        self.journal, self.when = journal, when

    def log_event(self, ts: Any, kind: str, component: str, data: Any) -> None:
        if self.when(kind, data):
            raise Crash
        self.journal.log_event(ts, kind, component, data)


def manager(log_dir: Path, venue: Any, *, positions: Any = None, rc: Any = None,
            crash_when: Any = None, **config: Any) -> tuple[ExecutionManager, EventLogger]:
    clock = FakeClock()
    el = EventLogger(log_dir, "live")
    log: Any = el if crash_when is None else CrashingLog(el, crash_when)
    rc = rc if rc is not None else Reconciled()
    em = ExecutionManager(config, StaticDataProvider(), "live",
                          positions if positions is not None else SimPositionHandler(), venue,
                          rc, event_logger=log, clock=clock, sleep=clock.sleep)
    return em, el


def after_the_venue_call(kind: str, data: Any) -> bool:
    """The process dies once the venue call ended, before its outcome is journaled."""
    return kind == "block_transition" and data["source"] == "routing"


def run_until_crash(em: ExecutionManager, batch: list[dict[str, Any]]) -> None:
    with pytest.raises(Crash):
        em.update_state(T(1), "strategy_manager", batch)


# ------------------------------------------------------------------------ examples


def test_recover_clean_journal_restores_counters_and_refuses_old_ids(tmp_path: Path) -> None:
    """Finished blocks keep their result, are never run again, and their ids stay taken."""
    venue = SimVenue()
    em, el = manager(tmp_path, venue)
    em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    el.close()
    em2, el2 = manager(tmp_path, venue)
    report = em2.recover(tmp_path)
    assert (report.blocks_executed, report.queued, report.in_doubt) == (2, (), None)
    status = em2.get_execution_status()
    assert (status["blocks_accepted"], status["blocks_executed"]) == (2, 2)
    assert em2.block_state("a") is BlockState.SUCCESS
    with pytest.raises(InvalidBlockError):
        em2.execute_instruction_blocks(T(1), blocks("a"))
    em2.update_state(T(1), "strategy_manager", blocks("c"))
    assert venue.route_calls == {"a": 1, "b": 1, "c": 1}
    el2.close()
    assert check_journal(tmp_path).ok


def test_accepted_blocks_are_queued_again_in_order(tmp_path: Path) -> None:
    """Blocks accepted but not started before the crash run after it, in their order."""
    venue = SimVenue()
    em, el = manager(tmp_path, venue)
    em.execute_instruction_blocks(T(0), blocks("a", "b"))
    em.execute_instruction_blocks(T(0), blocks("c"))
    el.close()
    em2, el2 = manager(tmp_path, venue)
    assert em2.recover(tmp_path).queued == ("a", "b", "c")
    em2.update_state(T(1), "retry")
    assert venue.execution_order == ["a", "b", "c"]
    el2.close()


@pytest.mark.parametrize("executed", [True, False])
def test_block_in_doubt_is_settled_by_asking_the_venue(tmp_path: Path, executed: bool) -> None:
    """A crash during the venue call: query_execution says whether it executed; it is
    routed again (same block_id) only if it did not, and before any other block."""
    venue = NaiveVenue()
    first = FaultyVenue(venue, [] if executed else ["error"])
    em, el = manager(tmp_path, first, crash_when=after_the_venue_call)
    run_until_crash(em, blocks("a", "b"))
    el.close()
    em2, el2 = manager(tmp_path, venue)
    report = em2.recover(tmp_path)
    assert (report.in_doubt, report.in_doubt_state, report.resolution) == (
        "a", BlockState.ROUTING, "query_execution")
    assert report.queued == ("b",)
    em2.update_state(T(2), "retry")
    assert venue.execution_order == ["a", "b"]  # once each, a first
    el2.close()
    moves = [r.data for r in read_journal(tmp_path) if r.event_type == "block_transition"
             and r.data["block_id"] == "a"]
    resolved = [m.get("resolved_by") for m in moves if m["source"] == "retrying"]
    assert resolved == (["query_found"] if executed else ["query_not_found"])
    assert check_journal(tmp_path).ok


def test_without_query_the_block_in_doubt_is_routed_again_and_said_so(tmp_path: Path) -> None:
    """With no query_execution, the in-doubt block is routed again under its block_id
    (at-least-once), and the report says so."""
    venue = SimVenue()
    em, el = manager(tmp_path, venue, crash_when=after_the_venue_call)
    run_until_crash(em, blocks("a"))
    el.close()
    em2, el2 = manager(tmp_path, FaultyVenue(venue, queryable=False))
    report = em2.recover(tmp_path)
    assert report.resolution == "reroute_at_least_once"
    em2.update_state(T(2), "retry")
    assert venue.route_calls["a"] == 2 and venue.execution_order == ["a"]  # deduplicated
    el2.close()


@pytest.mark.parametrize("handed_off", [True, False])
def test_deltas_are_handed_off_again_only_if_never_accepted(tmp_path: Path,
                                                            handed_off: bool) -> None:
    """A crash while waiting for reconciliation: the deltas go to the position handler
    again only when the journal shows it never accepted them; the venue is not called."""
    venue = SimVenue()
    positions = SimPositionHandler()

    class CrashingReconciliation:
        @property
        def reconciliation_status(self) -> str:
            raise Crash

    class CrashingPositions:
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            raise Crash

    if handed_off:
        em, el = manager(tmp_path, venue, positions=positions, rc=CrashingReconciliation())
    else:
        em, el = manager(tmp_path, venue, positions=CrashingPositions())
    run_until_crash(em, blocks("a"))
    el.close()
    em2, el2 = manager(tmp_path, venue, positions=positions)
    report = em2.recover(tmp_path)
    assert report.in_doubt_state is BlockState.PENDING_RECONCILIATION
    assert report.resolution == ("reconcile" if handed_off else "hand_off_then_reconcile")
    em2.update_state(T(2), "retry")
    assert em2.block_state("a") is BlockState.SUCCESS
    assert len(positions.updates) == 1 and venue.route_calls["a"] == 1
    el2.close()


def test_reconciliation_timeout_in_doubt_waits_again(tmp_path: Path) -> None:
    """A crash while retrying a reconciliation timeout resumes waiting; no route."""
    venue = SimVenue()
    clock = FakeClock()
    rc = SimReconciliation(clock, [("never", 0)])
    el = EventLogger(tmp_path, "live")

    def sleep(s: float) -> None:
        clock.sleep(s)
        if clock.now > 10.5:  # just after the first reconciliation timeout
            raise Crash

    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc), venue, rc,
                          event_logger=el, clock=clock, sleep=sleep)
    with pytest.raises(Crash):
        em.update_state(T(1), "strategy_manager", blocks("a"))
    el.close()
    em2, el2 = manager(tmp_path, venue)
    report = em2.recover(tmp_path)
    assert report.in_doubt_state in (BlockState.RETRYING, BlockState.PENDING_RECONCILIATION)
    assert report.resolution == "reconcile"
    em2.update_state(T(2), "retry")
    assert em2.block_state("a") is BlockState.SUCCESS and venue.route_calls["a"] == 1
    el2.close()


def test_halted_manager_stays_halted(tmp_path: Path) -> None:
    """A manager halted when it stopped is halted after recovery, until 'manual'."""
    venue = SimVenue()
    rc = SimReconciliation(None, [("fail", 0)])
    em, el = manager(tmp_path, venue, positions=SimPositionHandler(rc), rc=rc)
    em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert em.halted
    el.close()
    em2, el2 = manager(tmp_path, venue)
    report = em2.recover(tmp_path)
    assert report.halted and report.halt_reason == "EXEC-002" and report.queued == ("b",)
    em2.update_state(T(1), "retry")
    assert venue.route_calls["b"] == 0
    em2.update_state(T(2), "manual")
    assert em2.block_state("b") is BlockState.SUCCESS
    el2.close()


def test_partly_written_batch_is_not_queued(tmp_path: Path) -> None:
    """A batch whose acceptance records were cut short was never accepted: recovery drops
    it, and its ids may be submitted again."""
    el = EventLogger(tmp_path, "live")
    written = []

    class CutShort:
        def log_event(self, ts: Any, kind: str, component: str, data: Any) -> None:
            if kind == "block_accepted" and data["batch_index"] == 1:
                raise Crash
            written.append(kind)
            el.log_event(ts, kind, component, data)

    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Reconciled(), event_logger=CutShort())
    em.execute_instruction_blocks(T(0), blocks("a"))
    with pytest.raises(Crash):
        em.execute_instruction_blocks(T(0), blocks("b", "c"))
    el.close()
    venue = SimVenue()
    em2, el2 = manager(tmp_path, venue)
    report = em2.recover(tmp_path)
    assert report.queued == ("a",) and report.dropped == ("b",)
    em2.update_state(T(1), "strategy_manager", blocks("b", "c"))
    assert venue.execution_order == ["a", "b", "c"]
    el2.close()


def test_decimal_amounts_survive_recovery(tmp_path: Path) -> None:
    """A Decimal amount is journaled exactly and comes back as the same Decimal."""
    seen: list[Any] = []

    class Recording(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            seen.append(b.instructions[0]["amount"])
            return super().route_instruction(ts, b)

    em, el = manager(tmp_path, SimVenue())
    em.execute_instruction_blocks(T(0), [block("a", amount=Decimal("0.1000000000000000055"))])
    el.close()
    em2, el2 = manager(tmp_path, Recording())
    em2.recover(tmp_path)
    em2.update_state(T(1), "retry")
    assert seen == [Decimal("0.1000000000000000055")]
    el2.close()


def test_recover_needs_a_new_manager(tmp_path: Path) -> None:
    """recover() after work has begun is refused."""
    em, el = manager(tmp_path, SimVenue())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(InvalidArgumentError, match="recover"):
        em.recover(tmp_path)
    el.close()


def test_corrupt_line_refuses_recovery_naming_file_and_line(tmp_path: Path) -> None:
    """A corrupt line in the middle of a journal refuses recovery, naming file and line."""
    em, el = manager(tmp_path, SimVenue())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    el.close()
    path = tmp_path / "execution_manager_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"seq": 4, "oops\n'
    path.write_bytes(b"".join(lines))
    em2 = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                           Reconciled())
    with pytest.raises(JournalCorruptError, match=rf"{path}:4: not valid JSON"):
        em2.recover(tmp_path)


def test_journal_that_breaks_the_lifecycle_is_refused(tmp_path: Path) -> None:
    """Records that break the lifecycle refuse recovery, naming the first bad line."""
    em, el = manager(tmp_path, SimVenue())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    el.close()
    records = list(read_journal(tmp_path))
    bad = [r if r.data.get("trigger") != "reconciled" else JournalRecord(
        r.path, r.line, r.seq, r.timestamp, r.event_type, r.component,
        {**r.data, "dest": "failed"}) for r in records]
    em2 = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                           Reconciled())
    line = next(r.line for r in records if r.data.get("trigger") == "reconciled")
    with pytest.raises(JournalCorruptError, match=rf":{line}: .*not an edge"):
        em2.recover(bad)


# ------------------------------------------------------------------------ every crash point


def full_run_journal(tmp_path: Path) -> list[JournalRecord]:
    """A complete live run with faults: retries, a lost reply, a reconciliation timeout."""
    clock = FakeClock()
    rc = SimReconciliation(clock, [("ok", 0), ("ok", 12), ("ok", 0), ("ok", 0), ("ok", 0)])
    venue = FaultyVenue(SimVenue(), ["error", None, "lost_response", None, "hang_after"],
                        clock=clock)
    el = EventLogger(tmp_path / "full", "live")
    em = ExecutionManager({"reconciliation_timeout": 10}, StaticDataProvider(), "live",
                          SimPositionHandler(rc), venue, rc, event_logger=el, clock=clock,
                          sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    em.update_state(T(1), "strategy_manager", blocks("c", "d", "e"))
    el.close()
    assert em.get_execution_status()["blocks_executed"] == 5
    return list(read_journal(tmp_path / "full"))


def test_recovery_from_every_crash_point_runs_each_block_exactly_once(tmp_path: Path) -> None:
    """Cut the journal after every record (a crash there), with the venue having executed
    the block in doubt or not: recovery then runs every accepted block to success, each
    executed exactly once at the venue, in order, deltas handed off once."""
    records = full_run_journal(tmp_path)
    crash_points = 0
    for k in range(1, len(records) + 1):
        prefix = records[:k]
        for venue_executed_in_doubt in (True, False):
            crash_points += 1
            _check_recovery_from(prefix, venue_executed_in_doubt)
    assert crash_points == 2 * len(records) and len(records) > 30


def _check_recovery_from(prefix: list[JournalRecord], venue_executed_in_doubt: bool) -> None:
    state = check_journal(prefix)
    assert state.ok, state.problem
    # What the venue and the position handler had done when the process died.
    venue = NaiveVenue()
    executed = {r.data["block_id"] for r in prefix if r.event_type == "block_transition"
                and "deltas" in r.data}
    if state.in_doubt is not None and venue_executed_in_doubt:
        executed.add(state.in_doubt)
    for block_id in executed:
        venue.executed[block_id] = {"block_id": block_id, "changes": {"ETH": 1.0}}
    handed = [r.data["block_id"] for r in prefix if r.event_type == "positions_updated"]
    positions = SimPositionHandler()
    clock = FakeClock()
    em = ExecutionManager({}, StaticDataProvider(), "live", positions, venue, Reconciled(),
                          clock=clock, sleep=clock.sleep)
    report = em.recover(prefix)
    em.update_state(T(99), "manual")
    accepted = [b for b in "abcde" if em.block_state(b) is not None]
    assert all(em.block_state(b) is BlockState.SUCCESS for b in accepted), (
        len(prefix), {b: em.block_state(b) for b in accepted})
    # exactly once at the venue: what it had done before, plus what recovery made it do
    assert not executed & set(venue.execution_order), (len(prefix), venue.execution_order)
    assert sorted(executed | set(venue.execution_order)) == accepted
    assert venue.execution_order == sorted(venue.execution_order)
    # deltas handed off once per block
    again = [d["block_id"] for d in positions.updates]
    assert sorted(handed + again) == accepted, (len(prefix), handed, again)
    assert set(report.dropped).isdisjoint(accepted)


# ------------------------------------------------------------------------ write-ahead barriers


def test_live_block_costs_three_fsyncs_at_its_write_ahead_barriers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In live mode a happy block is fsynced exactly where recovery needs it: the intent to
    route before the venue is called, the deltas before the hand-off, the hand-off record;
    acceptance, the success and the state update ride on those (group commit)."""
    import os

    synced_upto: list[int] = []
    real = os.fsync
    path = tmp_path / "execution_manager_events.jsonl"

    def fsync(fd: int) -> None:
        real(fd)
        synced_upto.append(len(path.read_text().splitlines()) if path.exists() else 0)

    seen: dict[str, list[str]] = {}

    def durable_kinds() -> list[str]:
        lines = path.read_text().splitlines()[:synced_upto[-1]]
        return [json.loads(line)["data"].get("trigger") or json.loads(line)["event_type"]
                for line in lines]

    class Witness(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            seen["venue"] = durable_kinds()
            return super().route_instruction(ts, b)

    class Positions(SimPositionHandler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            seen["hand_off"] = durable_kinds()
            super().update_state(ts, source, deltas)

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", fsync)
    em, el = manager(tmp_path, Witness(), positions=Positions())
    before = len(synced_upto)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert len(synced_upto) - before == 3
    assert seen["venue"][-2:] == ["block_accepted", "start"]
    assert seen["hand_off"][-1] == "executed"
    el.close()


def test_accepted_blocks_are_durable_when_the_call_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks queued but not started (a halted manager, or execute_instruction_blocks) are
    on disk before the call returns: accepted means durable."""
    em, el = manager(tmp_path, SimVenue())
    assert el._journals  # the journal is open
    em.execute_instruction_blocks(T(0), blocks("a"))
    assert not any(j.unsynced for j in el._journals.values())
    em._halt("EXEC-002")  # halted: the next batch is queued, not started
    em.update_state(T(1), "strategy_manager", blocks("b"))
    assert not any(j.unsynced for j in el._journals.values())
    el.close()
