"""An interrupt is a crash at that line: an interrupted manager refuses to go on, and
``reopen()`` replaces it with one recovered from the journal, exactly as a restart would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    EventLogger,
    ExecutionManager,
    InstructionBlock,
    InvalidArgumentError,
    UnifiedHealthManager,
    check_journal,
)
from fsm_exec.core.errors import ManagerInterruptedError
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks


class Interrupting(SimVenue):
    """Executes, then raises KeyboardInterrupt on the first route (Ctrl-C mid-call)."""

    def __init__(self, *, before: bool = False) -> None:
        super().__init__()
        self.armed, self.before = True, before

    def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
        if self.armed and self.before:
            self.armed = False
            self.route_calls[b.block_id] += 1
            raise KeyboardInterrupt
        deltas = super().route_instruction(ts, b)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return deltas


def build(log: EventLogger, venue: Any, mode: str = "backtest", **kw: Any) -> ExecutionManager:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    config = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0}
    return ExecutionManager(config, StaticDataProvider(), mode, SimPositionHandler(rc), venue,
                            rc, event_logger=log, clock=clock, sleep=clock.sleep, **kw)


class InterruptingHandler(SimPositionHandler):
    """Raises KeyboardInterrupt on the first hand-off, after applying it (Ctrl-C while the
    handler persists the deltas: on the main thread, also in live mode)."""

    def __init__(self, rc: SimReconciliation) -> None:
        super().__init__(rc)
        self.armed = True

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        super().update_state(timestamp, trigger_source, deltas)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt


def test_a_ctrl_c_in_a_live_venue_thread_is_an_unknown_outcome_not_an_interrupt() -> None:
    """In live mode the venue runs on a worker thread: an exception of any kind there is a
    call whose outcome is unknown, resolved by asking the venue; nothing is interrupted."""
    clock = FakeClock()
    rc = SimReconciliation(clock)
    venue = Interrupting()
    em = ExecutionManager({"not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                          StaticDataProvider(), "live", SimPositionHandler(rc), venue, rc,
                          clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.block_state("a") is BlockState.SUCCESS and not em.interrupted
    assert venue.route_calls["a"] == 1


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_an_interrupted_manager_refuses_to_go_on(tmp_path: Path, mode: str) -> None:
    """After a KeyboardInterrupt mid-step, every entry point refuses with EXEC-017 and
    names the way out; reads still work and say unhealthy."""
    with EventLogger(tmp_path, mode=mode) as log:
        clock = FakeClock()
        rc = SimReconciliation(clock)
        em = ExecutionManager({}, StaticDataProvider(), mode, InterruptingHandler(rc),
                              SimVenue(), rc, event_logger=log, clock=clock,
                              sleep=clock.sleep)
        with pytest.raises(KeyboardInterrupt) as info:
            em.update_state(T(0), "strategy_manager", blocks("a"))
        assert "em.reopen()" in "".join(info.value.__notes__)
        assert em.block_state("a") is BlockState.PENDING_RECONCILIATION
        for call in (lambda: em.update_state(T(1), "manual"),
                     lambda: em.execute_instruction_blocks(T(1), blocks("b")),
                     lambda: em.cancel(T(1), reason="x")):
            with pytest.raises(ManagerInterruptedError, match=r"EXEC-017.*em\.reopen\(\)"):
                call()
        status = em.get_execution_status()
        assert status["interrupted"] and status["status"] == "unhealthy"
        assert em.interrupted and em.health_status == "unhealthy"
        em = em.reopen()  # the hand-off may or may not have happened: it is handed again
        em.update_state(T(2), "strategy_manager")
        assert em.block_state("a") is BlockState.SUCCESS


def test_reopen_settles_an_interrupted_call_by_asking_the_venue(tmp_path: Path) -> None:
    """An interrupted venue call is an unknown outcome: the replacement asks the venue,
    finds the execution, and never routes the block again."""
    venue = Interrupting()
    with EventLogger(tmp_path, mode="backtest") as log:
        em = build(log, venue)
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a", "b"))
        em = em.reopen()
        assert em.block_state("a") is BlockState.ROUTING
        em.update_state(T(1), "strategy_manager")
        assert em.block_state("a") is BlockState.SUCCESS
        assert em.block_state("b") is BlockState.SUCCESS
    assert venue.route_calls == {"a": 1, "b": 1}
    assert check_journal(tmp_path).ok


def test_reopen_routes_again_a_call_that_never_executed(tmp_path: Path) -> None:
    """Interrupted before the venue executed anything, the block is routed again once."""
    venue = Interrupting(before=True)
    with EventLogger(tmp_path, mode="backtest") as log:
        em = build(log, venue)
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        em = em.reopen()
        em.update_state(T(1), "strategy_manager")
        assert em.block_state("a") is BlockState.SUCCESS
    assert venue.route_calls["a"] == 2 and venue.execution_order == ["a"]


def test_interrupt_while_retrying_resumes_through_the_venue_query(tmp_path: Path) -> None:
    """Interrupted during the backoff of a lost reply, the replacement asks the venue and
    does not route the executed block again."""
    venue = SimVenue()
    clock = FakeClock()
    calls = [0]

    def sleep(s: float) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyboardInterrupt
        clock.sleep(s)

    with EventLogger(tmp_path, mode="live") as log:
        rc = SimReconciliation(clock)
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                              FaultyVenue(venue, ["lost_response"]), rc, event_logger=log,
                              clock=clock, sleep=sleep)
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        em = em.reopen()
        assert em.block_state("a") is BlockState.RETRYING
        em.update_state(T(1), "strategy_manager")
        assert em.block_state("a") is BlockState.SUCCESS
    assert venue.route_calls["a"] == 1


def test_an_unexpected_error_inside_a_step_also_retires_the_manager(tmp_path: Path) -> None:
    """An exception that is not one of ours escaping a step (a bug, a hostile object) is
    treated like an interrupt: the manager refuses to go on rather than guess."""
    class Broken(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            raise SystemExit(3)

    with EventLogger(tmp_path, mode="backtest") as log:
        em = build(log, Broken())
        with pytest.raises(SystemExit):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        with pytest.raises(ManagerInterruptedError, match="SystemExit"):
            em.update_state(T(1), "strategy_manager")


def test_reopen_retires_the_old_manager_and_reregisters_health(tmp_path: Path) -> None:
    """reopen() on a healthy manager retires it (two managers must never run one journal)
    and hands its health registration to the replacement."""
    health = UnifiedHealthManager()
    with EventLogger(tmp_path, mode="live") as log:
        em = build(log, SimVenue(), "live", health_manager=health)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        new = em.reopen()
        with pytest.raises(ManagerInterruptedError, match="replaced by reopen"):
            em.update_state(T(1), "strategy_manager")
        assert new.block_state("a") is BlockState.SUCCESS
        assert health.components == ("ExecutionManager",)
        assert health.check()["ExecutionManager"]["metrics"]["blocks_executed"] == 1


def test_reopen_needs_a_journal() -> None:
    """Without a journal to recover from, reopen() says what it needs."""
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation())
    with pytest.raises(InvalidArgumentError, match="EventLogger"):
        em.reopen()
