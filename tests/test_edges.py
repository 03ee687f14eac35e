"""Edge cases of the manager and its drivers: each test pins one rule at a corner the
scenario tests do not reach."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    ComponentError,
    EventLogError,
    EventLogger,
    ExecutionManager,
    InstructionBlock,
    InvalidArgumentError,
    check_journal,
    read_journal,
)
from fsm_exec.core.errors import ManagerInterruptedError
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block, blocks


class Reconciled:
    reconciliation_status = "success"


def live(log: Any, venue: Any = None, **config: Any) -> ExecutionManager:
    clock = FakeClock()
    cfg = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0, **config}
    return ExecutionManager(cfg, StaticDataProvider(), "live", SimPositionHandler(),
                            venue or SimVenue(), Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep)


# ------------------------------------------------------------------------ checkpoints


def test_a_halt_the_journal_could_not_take_is_recorded_before_the_next_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An EXEC-009 halt (a write that failed) is journaled before the next checkpoint, so
    a restart recovers it halted."""
    log = EventLogger(tmp_path, "live", checkpoint_every=1)
    em = live(log)
    real = log.log_event

    def fails_once(*args: Any, **kw: Any) -> None:
        monkeypatch.setattr(log, "log_event", real)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "log_event", fails_once)
    em._log_event = log.log_event
    with pytest.raises(EventLogError):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    em._log_event = real
    assert em.halted and em.get_execution_status()["halt_reason"] == "EXEC-009"
    em.update_state(T(1), "retry")
    em.update_state(T(2), "retry")  # a safe point where a checkpoint is due
    log.close()
    kinds = [r.event_type for r in read_journal(tmp_path)]
    halt = kinds.index("manager_halted")
    assert kinds[halt + 1] == "checkpoint"
    with EventLogger(tmp_path, "live") as log:
        again = live(log)
        assert again.recover().halted


def test_recovering_from_another_journal_marks_the_checkpoint_as_a_reset(
        tmp_path: Path) -> None:
    """A manager on a fresh journal recovering from another one writes the state as a
    checkpoint marked reset: its journal still checks clean."""
    with EventLogger(tmp_path / "old", "live") as log:
        live(log).execute_instruction_blocks(T(0), blocks("a", "b"))
    with EventLogger(tmp_path / "new", "live") as log:
        em = live(log)
        assert em.recover(tmp_path / "old").queued == ("a", "b")
    checkpoints = [r.data for r in read_journal(tmp_path / "new")
                   if r.event_type == "checkpoint"]
    assert [c.get("reset", False) for c in checkpoints] == [False, True]
    assert check_journal(tmp_path / "new").ok


@pytest.mark.parametrize("error", [EventLogError("disk gone"), RuntimeError("bug")])
def test_a_checkpoint_that_cannot_be_written_halts(tmp_path: Path, error: Exception,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint that fails is a journal failure: EXEC-009, halted, nothing acted on."""
    log = EventLogger(tmp_path, "live", checkpoint_every=1)
    em = live(log)
    em.execute_instruction_blocks(T(0), blocks("a"))

    def broken(*args: Any, **kw: Any) -> int:
        raise error

    monkeypatch.setattr(log, "checkpoint", broken)
    with pytest.raises(EventLogError):
        em.update_state(T(1), "strategy_manager")
    assert em.halted and em.get_execution_status()["halt_reason"] == "EXEC-009"
    assert em.block_state("a") is BlockState.QUEUED
    log.close()


def test_recover_without_a_source_needs_an_event_logger() -> None:
    """recover() reads the manager's own journal: without an EventLogger it says so."""
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Reconciled())
    with pytest.raises(InvalidArgumentError, match="needs the manager's journal"):
        em.recover()


def test_a_manager_on_an_earlier_run_refuses_work_until_it_recovers(tmp_path: Path) -> None:
    """On a journal that holds an earlier run, every call but recover() is refused, and
    nothing is written until recover() has read it."""
    with EventLogger(tmp_path, "live") as log:
        live(log).execute_instruction_blocks(T(0), blocks("a"))
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    with EventLogger(tmp_path, "live") as log:
        em = live(log)
        for call in (lambda: em.update_state(T(1), "strategy_manager"),
                     lambda: em.execute_instruction_blocks(T(1), blocks("b")),
                     lambda: em.cancel(T(1), reason="x")):
            with pytest.raises(InvalidArgumentError, match=r"call recover\(\) first"):
                call()
        assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before
        em.recover()
        em.update_state(T(1), "strategy_manager")
        assert em.block_state("a") is BlockState.SUCCESS


class Forwarding:
    """A journal sink that is not an EventLogger: it forwards to one, has a log_dir and a
    sync(), but no resync()."""

    def __init__(self, log: EventLogger) -> None:
        self.inner, self.log_dir = log, log.log_dir

    def log_event(self, *args: Any, **kw: Any) -> None:
        self.inner.log_event(*args, **kw)

    def sync(self) -> None:
        self.inner.sync()


def test_reopen_flushes_a_journal_without_resync_through_sync(tmp_path: Path) -> None:
    """reopen() makes what was written readable first: resync() if the journal has one,
    else sync()."""
    log = EventLogger(tmp_path, "backtest")
    em = live(Forwarding(log))
    em.execute_instruction_blocks(T(0), blocks("a"))
    new = em.reopen()
    assert new.queued_block_ids == ("a",)
    log.close()


# ------------------------------------------------------------------------ calls


def test_an_update_state_cut_short_at_its_last_line_retires_the_manager() -> None:
    """If the last update_state on this thread died before saying it had ended (an
    interrupt at its last lines), the next call treats it as a step cut short."""
    em = live(None)
    em._busy = threading.get_ident()  # what such an interrupt leaves behind
    with pytest.raises(ManagerInterruptedError, match="never finished"):
        em.update_state(T(0), "strategy_manager")
    assert em.interrupted


def test_a_collaborator_may_queue_follow_ups_and_they_are_durable_with_the_call(
        tmp_path: Path) -> None:
    """A collaborator (on the thread running update_state) queues follow-up blocks: they
    are taken, made durable by that call's own barrier, and run in the same call."""
    class Chaining(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            if b.block_id == "a":
                em.execute_instruction_blocks(T(0), blocks("a-follow"))
            return super().route_instruction(ts, b)

    with EventLogger(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              Chaining(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        assert em.block_state("a-follow") is BlockState.SUCCESS


def test_cancel_names_what_is_not_a_block_id() -> None:
    """An id that is not a string refuses the cancel, described by its repr."""
    em = live(None)
    em.execute_instruction_blocks(T(0), blocks("a"))
    with pytest.raises(InvalidArgumentError, match="42: not a block id"):
        em.cancel(T(0), ["a", 42], reason="x")  # type: ignore[list-item]
    assert em.queued_block_ids == ("a",)


# ------------------------------------------------------------------------ drivers


class CutBefore(SimVenue):
    """Interrupts the first route before executing anything (Ctrl-C mid-call)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return super().route_instruction(ts, b)


def backtest(log: EventLogger, venue: Any, data: Any = None) -> ExecutionManager:
    return ExecutionManager({}, data or StaticDataProvider(), "backtest",
                            SimPositionHandler(), venue, Reconciled(), event_logger=log)


def test_backtest_routes_again_through_the_risk_checks(tmp_path: Path) -> None:
    """After an interrupted backtest call the venue says not found: the block is routed
    again, and the pre-trade checks run again first (prices gone: EXEC-005)."""
    data = StaticDataProvider()
    with EventLogger(tmp_path, "backtest") as log:
        em = backtest(log, CutBefore(), data)
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        data.prices.clear()
        em = em.reopen()
        with pytest.raises(ComponentError, match="EXEC-005"):
            em.update_state(T(1), "strategy_manager")
        assert em.block_state("a") is BlockState.FAILED


def test_backtest_cannot_tell_an_interrupted_call_when_the_query_fails(
        tmp_path: Path) -> None:
    """An interrupted backtest call whose outcome the venue cannot report is EXEC-007:
    failed and halted (positions in doubt)."""
    class Unknowable(CutBefore):
        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            raise ConnectionError("venue unreachable")

    with EventLogger(tmp_path, "backtest") as log:
        em = backtest(log, Unknowable())
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        em = em.reopen()
        with pytest.raises(ComponentError, match="EXEC-007"):
            em.update_state(T(1), "strategy_manager")
        assert em.halted


def test_backtest_venue_returning_nothing_fails_the_block() -> None:
    """A backtest venue that returns None executed nothing: EXEC-001, saying so."""
    class Silent(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            return None

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          Silent(), Reconciled())
    with pytest.raises(ComponentError, match=r"EXEC-001.*returned no deltas \(None\)"):
        em.update_state(T(0), "strategy_manager", blocks("a"))


def test_a_hand_off_already_recorded_is_not_done_again_in_backtest(tmp_path: Path) -> None:
    """A journal that recorded the hand-off (positions_updated), recovered in backtest
    mode, reconciles without handing the deltas over a second time."""
    handed: list[Any] = []

    class Book(SimPositionHandler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            handed.append(deltas)

    class Never:
        reconciliation_status = "pending"

    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({"reconciliation_timeout": 0.1, "max_retries": 1},
                              StaticDataProvider(), "live", Book(), SimVenue(), Never(),
                              event_logger=log, clock=FakeClock(), sleep=lambda s: None)
        def die(*a: Any) -> None:
            raise SystemExit  # the process dies while waiting for reconciliation

        em._driver.poll_reconciliation = die  # type: ignore[attr-defined]
        with pytest.raises(SystemExit):
            em.update_state(T(0), "strategy_manager", blocks("a"))
    assert len(handed) == 1
    with EventLogger(tmp_path, "backtest") as log:
        again = ExecutionManager({}, StaticDataProvider(), "backtest", Book(), SimVenue(),
                                 Reconciled(), event_logger=log)
        assert again.recover().resolution == "reconcile"
        again.update_state(T(1), "strategy_manager")
    assert len(handed) == 1 and again.block_state("a") is BlockState.SUCCESS


def test_not_found_answers_may_follow_each_other_at_once() -> None:
    """With not_found_interval_seconds=0 the confirmations are asked for back to back."""
    clock = FakeClock()
    venue = FaultyVenue(SimVenue(), ["error"], clock=clock)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.sleep(s)

    em = ExecutionManager({"not_found_confirmations": 3, "not_found_interval_seconds": 0,
                           "not_found_min_age_seconds": 0, "retry_delay_seconds": 0.5},
                          StaticDataProvider(), "live", SimPositionHandler(), venue,
                          Reconciled(), clock=clock, sleep=sleep)
    em.update_state(T(0), "strategy_manager", [block("a")])
    assert em.block_state("a") is BlockState.SUCCESS
    assert sleeps == [0.5]  # one backoff; the three answers with no wait between them


def test_update_state_from_a_collaborator_on_the_same_thread_is_refused_not_retired() -> None:
    """In backtest the venue runs on the manager's thread: re-entering update_state from it
    is refused as re-entry (the outer call is alive), and the manager goes on."""
    seen: list[Exception] = []

    class Reentrant(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            try:
                em.update_state(ts, "strategy_manager")
            except ComponentError as exc:
                seen.append(exc)
            return super().route_instruction(ts, b)

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          Reentrant(), Reconciled())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert len(seen) == 1 and "from a collaborator" in str(seen[0])
    assert not em.interrupted and em.block_state("a") is BlockState.SUCCESS


class Plain:
    """A journal sink with a log_dir but neither resync() nor sync() (writes unbuffered)."""

    def __init__(self, log: EventLogger) -> None:
        self.inner, self.log_dir = log, log.log_dir

    def log_event(self, *args: Any, **kw: Any) -> None:
        self.inner.log_event(*args, **kw)


def test_reopen_needs_nothing_to_flush_on_an_unbuffered_journal(tmp_path: Path) -> None:
    """A journal sink with nothing to flush is read as it is by reopen()."""
    log = EventLogger(tmp_path, "live")
    em = live(Plain(log))
    em.execute_instruction_blocks(T(0), blocks("a"))
    assert em.reopen().queued_block_ids == ("a",)
    log.close()


def test_a_recovered_backtest_hand_off_that_is_refused_fails_the_block(
        tmp_path: Path) -> None:
    """A block recovered after its deltas were journaled but never handed off: in backtest
    the hand-off happens on the next update; a handler that refuses it fails the block
    (EXEC-008), halting."""
    with EventLogger(tmp_path, "backtest") as log:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", blocks("a"))
    path = tmp_path / "execution_manager_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    executed = next(i for i, line in enumerate(lines) if b'"trigger":"executed"' in line)
    path.write_bytes(b"".join(lines[:executed + 1]))  # the process died before the hand-off

    class Refusing(SimPositionHandler):
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            raise RuntimeError("book locked")

    with EventLogger(tmp_path, "backtest") as log:
        again = ExecutionManager({}, StaticDataProvider(), "backtest", Refusing(),
                                 SimVenue(), Reconciled(), event_logger=log)
        assert again.recover().resolution == "hand_off_then_reconcile"
        with pytest.raises(ComponentError, match="EXEC-008"):
            again.update_state(T(1), "strategy_manager")
        assert again.halted and again.block_state("a") is BlockState.FAILED


@pytest.mark.parametrize("needed", [1, 2, 3, 5])
@pytest.mark.parametrize("lag", ["one short", "exactly"])
def test_a_block_is_routed_again_only_after_the_configured_not_found_answers(
        needed: int, lag: str) -> None:
    """A lost reply from a venue whose index lags: with not_found_confirmations=N, N-1
    "not found" answers never route the block again (the Nth query finds the fill), and
    only N of them in a row do."""
    clock = FakeClock()
    lag_queries = needed - 1 if lag == "one short" else needed
    venue = FaultyVenue(SimVenue(), ["eventually_consistent"], clock=clock,
                        lag_queries=lag_queries, lag_seconds=0)
    em = ExecutionManager({"not_found_confirmations": needed, "not_found_interval_seconds": 0,
                           "not_found_min_age_seconds": 0, "retry_delay_seconds": 0.1},
                          StaticDataProvider(), "live", SimPositionHandler(), venue,
                          Reconciled(), clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", [block("a")])
    assert em.block_state("a") is BlockState.SUCCESS
    assert venue.lagged["a"] == lag_queries
    assert venue.route_calls["a"] == (1 if lag == "one short" else 2)
