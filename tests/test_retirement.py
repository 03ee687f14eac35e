"""A retired manager is a crashed one: from the instant any thread retires it (an interrupt
in the middle of a step, a journal that could not make its records durable), it writes
nothing more, on every thread, and starts nothing; the journal is what a crash at that
instant would leave, and a replacement (reopen(), or a new manager once the old one has
returned) settles it as recovery settles any crash. Each test here was a reproduction of a
way this failed (a hostile review of the first design, which let a retired manager finish
its block)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    EventLogError,
    EventLogger,
    ExecutionManager,
    ManagerInterruptedError,
    ReentrantCallError,
    check_journal,
    read_journal,
)
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

from kit import Interrupting, T, block, blocks, in_thread, losing_fsync

CFG = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0}


class Reconciled:
    reconciliation_status = "success"


def interrupt_acceptance(em: ExecutionManager) -> None:
    """Retire ``em`` from this thread: a Ctrl-C in the middle of accepting a batch."""
    with pytest.raises(KeyboardInterrupt):
        em.execute_instruction_blocks(T(1), [{**block("x"), "priority": Interrupting(1)}])
    assert em.interrupted


class Gated:
    """A gate a collaborator waits at, once, until the test lets it go."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def wait_once(self) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)


class GatedVenue(SimVenue):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gated()

    def route_instruction(self, ts: Any, b: Any) -> Any:
        self.gate.wait_once()
        return super().route_instruction(ts, b)


class GatedPositions(SimPositionHandler):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gated()

    def update_state(self, ts: Any, source: str, deltas: Any) -> Any:
        self.gate.wait_once()
        return super().update_state(ts, source, deltas)


class FailsFirst(SimVenue):
    """The first route of each block fails (the venue unreachable); later ones fill."""

    def route_instruction(self, ts: Any, b: Any) -> Any:
        if not self.route_calls[b.block_id]:
            self.route_calls[b.block_id] += 1
            raise ConnectionError("venue unreachable")
        return super().route_instruction(ts, b)


def live(log: Any, venue: Any, positions: Any = None, sleep: Any = None) -> ExecutionManager:
    clock = FakeClock()
    return ExecutionManager(CFG, StaticDataProvider(), "live", positions or SimPositionHandler(),
                            venue, Reconciled(), event_logger=log, clock=clock,
                            sleep=sleep or clock.sleep)


def test_a_new_manager_taking_over_from_a_retired_one_settles_the_block_alone(
        tmp_path: Any) -> None:
    """em1 is inside route_instruction(a) when a Ctrl-C on another thread retires it.
    When em1's venue call returns, em1 writes nothing and hands nothing off; a fresh
    manager then takes the journal, finds a in doubt, asks the venue and settles a alone:
    one hand-off, a clean journal."""
    venue, positions = GatedVenue(), SimPositionHandler()
    with EventLogger(tmp_path, "live") as log:
        em1 = live(log, venue, positions)
        t, errors = in_thread(lambda: em1.update_state(T(0), "strategy_manager", blocks("a")))
        assert venue.gate.entered.wait(10)
        interrupt_acceptance(em1)
        venue.gate.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert positions.updates == []
        em2 = live(log, venue, positions)
        assert em2.recover().in_doubt == "a"
        em2.update_state(T(2), "strategy_manager")
        assert em2.block_state("a") is BlockState.SUCCESS
        assert venue.route_calls["a"] == 1
    assert [d["block_id"] for d in positions.updates] == ["a"]
    assert check_journal(tmp_path).ok


def test_a_lost_acceptance_leaves_no_gap_for_the_writes_after_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A is handing a's deltas off when B's acceptance fsync fails and the file loses B's
    record. A writes nothing more, the journal re-reads its last seq before the next
    write, and the replacement's records follow with no gap: reopen() and check read it."""
    positions = GatedPositions()
    armed = losing_fsync(monkeypatch, threading.current_thread())
    with EventLogger(tmp_path, "live") as log:
        em = live(log, SimVenue(), positions)
        t, _ = in_thread(lambda: em.update_state(T(0), "strategy_manager", blocks("a")))
        assert positions.gate.entered.wait(10)
        armed[0] = True
        with pytest.raises(EventLogError):
            em.execute_instruction_blocks(T(1), blocks("b"))
        assert em.interrupted
        positions.gate.release.set()
        t.join(10)
        again = em.reopen()
        assert again.queued_block_ids == ()  # b's acceptance was lost, and b is not queued
        again.update_state(T(2), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert check_journal(tmp_path).ok


def test_a_lost_tail_with_the_blocks_own_move_in_it_is_settled_from_the_journal(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """a's own route_failed move (unsynced) is in the tail the failed fsync lost: A goes on
    from nothing, and the replacement settles a from what the journal holds."""
    clock = FakeClock()
    backoff = Gated()

    def sleep(s: float) -> None:
        backoff.wait_once()
        clock.sleep(s)

    armed = losing_fsync(monkeypatch, threading.current_thread())
    venue = FailsFirst()
    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue, sleep=sleep)
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager", blocks("a")))
        assert backoff.entered.wait(10)  # a: routing --route_failed--> retrying
        armed[0] = True
        with pytest.raises(EventLogError):
            em.execute_instruction_blocks(T(1), blocks("b"))
        backoff.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
    assert venue.execution_order == ["a"]
    assert check_journal(tmp_path).ok


def test_a_retired_manager_never_routes_its_block_again(tmp_path: Any) -> None:
    """a is in its retry backoff when a Ctrl-C on another thread retires the manager:
    reopen() must wait for the running call, which then routes nothing more (a crash
    there); the replacement asks the venue and routes a once more, itself."""
    clock = FakeClock()
    backoff = Gated()

    def sleep(s: float) -> None:
        backoff.wait_once()
        clock.sleep(s)

    venue = FailsFirst()
    with EventLogger(tmp_path, "live") as log:
        em = live(log, venue, sleep=sleep)
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager", blocks("a")))
        assert backoff.entered.wait(10)
        interrupt_acceptance(em)
        with pytest.raises(ReentrantCallError):
            em.reopen()
        at_retirement = venue.route_calls["a"]
        backoff.release.set()
        t.join(10)
        assert venue.route_calls["a"] == at_retirement
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
    assert venue.execution_order == ["a"]
    assert check_journal(tmp_path).ok


class GatedToday:
    """EventLogger(today=...) that waits once on the thread it is armed for: the start of
    update_state's work, just past its entry check."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.gate = Gated()

    def __call__(self) -> dt.date:
        if self.thread is threading.current_thread():
            self.gate.wait_once()
        return dt.date(2025, 10, 1)


def _retired_just_after_entry(em: ExecutionManager, today: GatedToday,
                              call: Callable[[], object]) -> list[BaseException]:
    def armed_call() -> None:
        today.thread = threading.current_thread()
        call()

    t, errors = in_thread(armed_call)
    assert today.gate.entered.wait(10)
    interrupt_acceptance(em)
    today.gate.release.set()
    t.join(10)
    return errors


def test_an_update_retired_just_after_its_entry_check_accepts_nothing(tmp_path: Any) -> None:
    today = GatedToday()
    with EventLogger(tmp_path, "live", today=today) as log:
        em = live(log, SimVenue())
        errors = _retired_just_after_entry(
            em, today, lambda: em.update_state(T(2), "strategy_manager", blocks("b")))
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        log.sync()
        assert [r for r in read_journal(tmp_path) if r.event_type == "block_accepted"] == []
        assert em.reopen().queued_block_ids == ()


class FirstRouteInterrupted(SimVenue):
    def route_instruction(self, ts: Any, b: Any) -> Any:
        if not self.route_calls[b.block_id]:
            self.route_calls[b.block_id] += 1
            raise KeyboardInterrupt
        return super().route_instruction(ts, b)


def test_an_update_retired_just_after_its_entry_check_drives_no_block(tmp_path: Any) -> None:
    venue = FirstRouteInterrupted()
    with EventLogger(tmp_path, "backtest") as log:  # a crash leaves block a in routing
        em0 = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                               venue, Reconciled(), event_logger=log)
        with pytest.raises(KeyboardInterrupt):
            em0.update_state(T(0), "strategy_manager", blocks("a"))
    today = GatedToday()
    with EventLogger(tmp_path, "live", today=today) as log:
        em = live(log, venue)
        assert em.recover().in_doubt == "a"
        before = venue.route_calls["a"]
        errors = _retired_just_after_entry(
            em, today, lambda: em.update_state(T(2), "strategy_manager"))
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert venue.route_calls["a"] == before


def test_a_move_lost_with_a_failed_fsync_retires_the_manager(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """a's reconciled move rides along unsynced; b's start record's fsync fails and the
    file loses that move. Memory had finished a: the manager retires instead of running b
    on it, writes no state_update from it, and the replacement settles a, then runs b."""
    armed = losing_fsync(monkeypatch, threading.current_thread())

    class ArmsOnFirstPoll:
        polled = False

        @property
        def reconciliation_status(self) -> str:
            if not self.polled:
                self.polled = armed[0] = True
            return "success"

    clock = FakeClock()
    venue = SimVenue()
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager(CFG, StaticDataProvider(), "live", SimPositionHandler(), venue,
                              ArmsOnFirstPoll(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        with pytest.raises(EventLogError):
            em.update_state(T(0), "strategy_manager", blocks("a", "b"))
        assert em.interrupted
        with pytest.raises(ManagerInterruptedError):
            em.update_state(T(1), "manual")
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
        assert again.block_state("b") is BlockState.SUCCESS
    assert venue.execution_order == ["a", "b"]
    assert check_journal(tmp_path).ok


def test_an_update_retired_while_it_waits_for_the_lock_is_refused(tmp_path: Any) -> None:
    """update_state has passed its entry check and waits for the manager's lock while
    another thread's step is interrupted: it is refused as it takes the lock, before it
    marks itself running (so reopen() is not held up by a call that will do nothing)."""
    with EventLogger(tmp_path, "live") as log:
        em = live(log, SimVenue())
        passed = threading.Event()
        check = em._check_usable

        def signalling_check(**kw: Any) -> None:
            check(**kw)
            if threading.current_thread() is not main:
                passed.set()

        main = threading.current_thread()
        em._check_usable = signalling_check  # type: ignore[method-assign]
        with em._mutex:  # the update waits here, past its entry check
            t, errors = in_thread(lambda: em.update_state(T(2), "strategy_manager",
                                                          blocks("b")))
            assert passed.wait(10)
            interrupt_acceptance(em)
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert em.reopen().queued_block_ids == ()
    assert check_journal(tmp_path).ok


# ------------------------------------------------ the third review: what a retired manager
# could still do before a journal write stopped it


class GatedData(StaticDataProvider):
    """Market data whose first read (the pre-trade check) waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gated()

    def get_data(self, ts: Any) -> Any:
        self.gate.wait_once()
        return super().get_data(ts)


def with_data(log: Any, venue: Any, data: Any, mode: str = "live",
              observers: Any = ()) -> ExecutionManager:
    clock = FakeClock()
    return ExecutionManager(CFG, data, mode, SimPositionHandler(), venue, Reconciled(),
                            event_logger=log, clock=clock, sleep=clock.sleep,
                            observers=list(observers))


@pytest.mark.parametrize("path", ["live", "backtest", "backtest observed"])
def test_a_manager_retired_during_its_pre_trade_check_routes_nothing(
        tmp_path: Any, path: str) -> None:
    """a's start is journaled, then the price check reads market data; a Ctrl-C on
    another thread retires the manager meanwhile. Nothing is written between that check
    and the route, so the manager looks before it trades: it routes nothing."""
    from fsm_exec.observe import Observer

    class Listening(Observer):
        pass

    venue, data = SimVenue(), GatedData()
    mode = "live" if path == "live" else "backtest"
    with EventLogger(tmp_path, mode) as log:
        em = with_data(log, venue, data, mode,
                       [Listening()] if path == "backtest observed" else ())
        t, errors = in_thread(lambda: em.update_state(T(0), "strategy_manager", blocks("a")))
        assert data.gate.entered.wait(10)
        interrupt_acceptance(em)
        data.gate.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert venue.route_calls["a"] == 0
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
    assert venue.execution_order == ["a"]
    assert check_journal(tmp_path).ok


def test_no_manager_takes_over_while_the_retired_one_is_still_running(tmp_path: Any) -> None:
    """While em1's retired call is still running (its collaborators may still answer
    it), a new manager on the journal is refused (EXEC-018); once em1 has returned, one
    is accepted and routes a once."""
    from fsm_exec import JournalLockedError

    data, venue = GatedData(), SimVenue()
    with EventLogger(tmp_path, "live") as log:
        em1 = with_data(log, venue, data)
        t, _ = in_thread(lambda: em1.update_state(T(0), "strategy_manager", blocks("a")))
        assert data.gate.entered.wait(10)
        interrupt_acceptance(em1)
        with pytest.raises(JournalLockedError):
            with_data(log, venue, StaticDataProvider())
        data.gate.release.set()
        t.join(10)
        em2 = with_data(log, venue, StaticDataProvider())
        em2.recover()
        em2.update_state(T(2), "strategy_manager")
        assert em2.block_state("a") is BlockState.SUCCESS
    assert venue.route_calls["a"] == 1
    assert check_journal(tmp_path).ok


class InterruptedOnce(SimPositionHandler):
    """The first hand-off is interrupted (a crash with the deltas journaled, not handed)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def update_state(self, ts: Any, source: str, deltas: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise KeyboardInterrupt
        return super().update_state(ts, source, deltas)


def test_a_recovered_hand_off_is_not_made_by_a_retired_manager(tmp_path: Any) -> None:
    """A recovered block waits for its hand-off (no record comes before it); an update
    retired just past its entry check hands nothing off, and the replacement hands the
    deltas off once."""
    venue, positions = SimVenue(), InterruptedOnce()
    clock = FakeClock()

    def make(log: Any) -> ExecutionManager:
        return ExecutionManager(CFG, StaticDataProvider(), "live", positions, venue,
                                Reconciled(), event_logger=log, clock=clock,
                                sleep=clock.sleep)

    with EventLogger(tmp_path, "live") as log, pytest.raises(KeyboardInterrupt):
        make(log).update_state(T(0), "strategy_manager", blocks("a"))
    today = GatedToday()
    with EventLogger(tmp_path, "live", today=today) as log:
        em = make(log)
        assert em.recover().resolution == "hand_off_then_reconcile"
        before = positions.calls
        errors = _retired_just_after_entry(
            em, today, lambda: em.update_state(T(2), "strategy_manager"))
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert positions.calls == before
        again = em.reopen()
        again.update_state(T(3), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
    assert len(positions.updates) == 1


def test_records_lost_by_someone_elses_failed_fsync_retire_the_manager(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager's ride-along records are lost by an fsync that fails in another
    caller's sync() (another component, the application): its next write learns of the
    loss (JournalLossError, EXEC-009), and it retires instead of going on from memory."""
    from fsm_exec.journal.writer import JournalLossError

    armed = losing_fsync(monkeypatch, threading.current_thread())
    with EventLogger(tmp_path, "live") as log:
        em = live(log, SimVenue())
        em.update_state(T(0), "strategy_manager", blocks("a"))
        armed[0] = True
        with pytest.raises(EventLogError):
            log.sync()
        with pytest.raises(JournalLossError, match="were lost"):
            em.update_state(T(1), "strategy_manager", blocks("b"))
        assert em.interrupted
        again = em.reopen()
        again.update_state(T(2), "strategy_manager", blocks("b"))
        assert again.block_state("b") is BlockState.SUCCESS
    assert check_journal(tmp_path).ok


@pytest.mark.parametrize("ids", [5, object()])
def test_cancel_with_ids_that_are_not_a_list_is_refused_and_retires_nothing(
        tmp_path: Any, ids: Any) -> None:
    from fsm_exec import InvalidArgumentError

    with EventLogger(tmp_path, "live") as log:
        em = live(log, SimVenue())
        with pytest.raises(InvalidArgumentError, match="block_ids must be a list"):
            em.cancel(T(0), ids, reason="r")
        assert not em.interrupted


def test_cancel_with_an_iterator_that_raises_is_refused_and_retires_nothing(
        tmp_path: Any) -> None:
    from fsm_exec import InvalidArgumentError

    def ids() -> Any:
        yield "a"
        raise ValueError("the caller's bug")

    with EventLogger(tmp_path, "live") as log:
        em = live(log, SimVenue())
        em.execute_instruction_blocks(T(0), blocks("a"))
        with pytest.raises(InvalidArgumentError, match="the caller's bug"):
            em.cancel(T(0), ids(), reason="r")
        assert not em.interrupted and em.queued_block_ids == ("a",)


def _with_health(log: Any, health: Any, observers: Any = ()) -> ExecutionManager:
    clock = FakeClock()
    return ExecutionManager(CFG, StaticDataProvider(), "live", SimPositionHandler(),
                            SimVenue(), Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep, health_manager=health, observers=observers)


def test_a_reopen_after_another_manager_took_over_is_refused_and_changes_nothing(
        tmp_path: Any) -> None:
    from fsm_exec import JournalLockedError, UnifiedHealthManager

    health = UnifiedHealthManager()
    with EventLogger(tmp_path, "live") as log:
        em1 = _with_health(log, health)
        interrupt_acceptance(em1)
        health.unregister_component("ExecutionManager")
        em2 = _with_health(log, health)
        em2.recover()
        with pytest.raises(JournalLockedError):
            em1.reopen()
        assert "ExecutionManager" in health.components  # em2's check is still there


def test_a_second_manager_on_a_registered_health_name_is_refused_clearly(
        tmp_path: Any) -> None:
    """The health manager already has the retired manager's check: the new one is refused
    with a clear error (not a raw ValueError) and has claimed nothing; reopen() works."""
    from fsm_exec import InvalidArgumentError, UnifiedHealthManager

    health = UnifiedHealthManager()
    with EventLogger(tmp_path, "live") as log:
        em1 = _with_health(log, health)
        interrupt_acceptance(em1)
        with pytest.raises(InvalidArgumentError, match="reopen"):
            _with_health(log, health)
        assert em1.reopen().queued_block_ids == ()


def test_a_refused_claim_leaves_the_health_manager_as_it_was(tmp_path: Any) -> None:
    from fsm_exec import JournalLockedError, UnifiedHealthManager

    health = UnifiedHealthManager()
    with EventLogger(tmp_path, "live") as log:
        first = live(log, SimVenue())  # the journal's manager (no health manager)
        with pytest.raises(JournalLockedError):
            _with_health(log, health)
        assert "ExecutionManager" not in health.components
        assert not first.interrupted


def test_reopen_hands_the_fsync_listener_over(tmp_path: Any) -> None:
    """Each fsync is told once, however many times the manager was replaced (and the
    replaced managers are not kept alive by the journal)."""
    from fsm_exec.observe import Observer

    class Count(Observer):
        fsyncs = 0

        def on_call(self, event: Any) -> None:
            if event.kind == "journal_fsync":
                self.fsyncs += 1

    counter = Count()
    with EventLogger(tmp_path, "live") as log:
        em = _with_health(log, None, [counter])
        for _ in range(3):
            em = em.reopen()
        counter.fsyncs = 0
        log.log_event(T(0), "x", "Other", {})
        assert counter.fsyncs == 1


def test_a_checkpoint_whose_fsync_fails_retires_the_manager(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    armed = losing_fsync(monkeypatch, threading.current_thread())
    with EventLogger(tmp_path, "live", checkpoint_every=8) as log:
        em = live(log, SimVenue())
        em.update_state(T(0), "strategy_manager", blocks("a"))
        armed[0] = True
        with pytest.raises(EventLogError):
            em.update_state(T(1), "strategy_manager", blocks("b"))
        assert em.interrupted
        again = em.reopen()
        again.update_state(T(2), "strategy_manager")
    assert check_journal(tmp_path).ok


def test_a_rotation_whose_fsync_fails_leaves_no_gap(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    day = [dt.date(2025, 10, 1)]
    armed = losing_fsync(monkeypatch, threading.current_thread())
    with EventLogger(tmp_path, "live", today=lambda: day[0]) as log:
        em = live(log, SimVenue())
        em.update_state(T(0), "strategy_manager", blocks("a"))
        day[0] = dt.date(2025, 10, 2)
        armed[0] = True
        with pytest.raises(EventLogError):
            em.update_state(T(86400), "strategy_manager")  # checkpoint: rotate: fsync fails
        assert em.interrupted
        em.reopen().update_state(T(86401), "strategy_manager", blocks("b"))
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert check_journal(tmp_path).ok


class Refuses(SimPositionHandler):
    def update_state(self, ts: Any, source: str, deltas: Any) -> Any:
        raise RuntimeError("the book is down")


def test_a_halted_update_retired_past_its_entry_check_says_so(tmp_path: Any) -> None:
    """Halted, the update writes nothing; retired meanwhile, it still raises
    ManagerInterruptedError rather than return a status as if it had run."""
    today = GatedToday()
    clock = FakeClock()
    with EventLogger(tmp_path, "live", today=today) as log:
        em = ExecutionManager(CFG, StaticDataProvider(), "live", Refuses(), SimVenue(),
                              Reconciled(), event_logger=log, clock=clock, sleep=clock.sleep)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        assert em.halted
        errors = _retired_just_after_entry(
            em, today, lambda: em.update_state(T(1), "strategy_manager"))
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)


def test_a_stale_reopen_after_a_takeover_hides_no_loss_from_the_new_owner(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """em2 took the journal from the retired em1; an fsync failing in the application's
    sync() loses em2's ride-along records. A stale em1.reopen() is refused before it
    touches anything, so em2's next write still learns of the loss and retires."""
    from fsm_exec import JournalLockedError
    from fsm_exec.journal.writer import JournalLossError

    armed = losing_fsync(monkeypatch, threading.current_thread())
    with EventLogger(tmp_path, "live") as log:
        em1 = live(log, SimVenue())
        interrupt_acceptance(em1)
        em2 = live(log, SimVenue())
        em2.recover()
        em2.update_state(T(0), "strategy_manager", blocks("a"))
        armed[0] = True
        with pytest.raises(EventLogError):
            log.sync()
        with pytest.raises(JournalLockedError):
            em1.reopen()
        with pytest.raises(JournalLossError):
            em2.update_state(T(1), "strategy_manager", blocks("b"))
        assert em2.interrupted
        em2.reopen().update_state(T(2), "strategy_manager", blocks("b"))
    assert check_journal(tmp_path).ok


def test_a_retired_manager_whose_running_thread_died_hands_its_journal_over(
        tmp_path: Any) -> None:
    """A retired manager still marked running, by a thread that no longer exists (it died
    in its last lines), does not hold the journal for ever: a new manager may take it."""
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    with EventLogger(tmp_path, "live") as log:
        em1 = live(log, SimVenue())
        interrupt_acceptance(em1)
        em1._busy = done.ident  # as an update_state that never reached its finally would
        em2 = live(log, SimVenue())
        em2.recover()
        assert em2.queued_block_ids == ()


def test_a_dropped_manager_with_observers_hands_its_journal_over(tmp_path: Any) -> None:
    """The journal tells an observing manager of each fsync through a weak reference: a
    manager dropped without reopen() is not kept alive by it, so a new one may claim."""
    import gc

    from fsm_exec.observe import Observer

    with EventLogger(tmp_path, "live") as log:
        clock = FakeClock()
        first = ExecutionManager(CFG, StaticDataProvider(), "live", SimPositionHandler(),
                                 SimVenue(), Reconciled(), event_logger=log, clock=clock,
                                 sleep=clock.sleep, observers=[Observer()])
        first.execute_instruction_blocks(T(0), blocks("a"))
        del first
        gc.collect()
        second = live(log, SimVenue())
        second.recover()
        assert second.queued_block_ids == ("a",)
        log.log_event(T(1), "x", "Other", {})  # an fsync no dropped manager is told of


def test_a_construction_that_fails_leaves_no_health_registration(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first checkpoint cannot be written (EXEC-009): the manager was never built, so
    its health check is not registered, and building it again once the disk is back works."""
    from fsm_exec import UnifiedHealthManager

    health = UnifiedHealthManager()
    armed = losing_fsync(monkeypatch)
    with EventLogger(tmp_path, "live") as log:
        armed[0] = True

        def build() -> ExecutionManager:
            clock = FakeClock()
            return ExecutionManager(CFG, StaticDataProvider(), "live", SimPositionHandler(),
                                    SimVenue(), Reconciled(), event_logger=log, clock=clock,
                                    sleep=clock.sleep, health_manager=health)

        with pytest.raises(EventLogError):
            build()
        assert "ExecutionManager" not in health.components
        assert build().get_execution_status()["queue_length"] == 0


class Unprintable(ValueError):
    def __str__(self) -> str:
        raise RuntimeError("cannot print me")


def test_a_health_manager_whose_refusal_cannot_be_printed_is_still_a_clear_error(
        tmp_path: Any) -> None:
    from fsm_exec import InvalidArgumentError

    class Refusing:
        def register_component(self, name: str, check: Any) -> None:
            raise Unprintable

        def unregister_component(self, name: str) -> None: ...

    with EventLogger(tmp_path, "live") as log, \
            pytest.raises(InvalidArgumentError, match="Unprintable"):
        ExecutionManager(CFG, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                         Reconciled(), event_logger=log,
                         health_manager=Refusing())  # type: ignore[arg-type]


def test_no_replacement_while_an_abandoned_venue_call_may_still_fill(tmp_path: Any) -> None:
    """a's venue call hangs past execution_timeout and is abandoned on its worker thread; a
    Ctrl-C in the retry backoff retires the manager. While that call may still fill,
    reopen() and a new manager are both refused (a replacement would route a again); once
    it has returned, the replacement asks the venue and finds the one fill."""
    from fsm_exec import JournalLockedError

    class Hangs(SimVenue):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def route_instruction(self, ts: Any, b: Any) -> Any:
            assert self.release.wait(10)
            return super().route_instruction(ts, b)

    slept: list[float] = []

    def interrupted_sleep(seconds: float) -> None:  # the first backoff: Ctrl-C
        slept.append(seconds)
        if len(slept) == 1:
            raise KeyboardInterrupt

    venue = Hangs()
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({**CFG, "execution_timeout": 0.05}, StaticDataProvider(), "live",
                              SimPositionHandler(), venue, Reconciled(), event_logger=log,
                              sleep=interrupted_sleep)
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", blocks("a"))
        assert em.interrupted
        with pytest.raises(ReentrantCallError, match="abandoned"):
            em.reopen()
        with pytest.raises(JournalLockedError):
            live(log, SimVenue())
        venue.release.set()
        for _ in range(500):  # the abandoned call returns on its own thread
            if not em._call_running():
                break
            threading.Event().wait(0.01)
        again = em.reopen()
        again.update_state(T(1), "strategy_manager")
        assert again.block_state("a") is BlockState.SUCCESS
    assert venue.execution_order == ["a"]
    assert check_journal(tmp_path).ok
