"""A retired manager is a crashed one: from the instant any thread retires it (an interrupt
in the middle of a step, a journal that could not make its records durable), it writes
nothing more, on every thread, and starts nothing; the journal is what a crash at that
instant would leave, and a replacement (reopen(), or a new manager once the old one has
returned) settles it as recovery settles any crash. Each test here was a reproduction of a
way this failed (a hostile review of the first design, which let a retired manager finish
its block)."""

from __future__ import annotations

import datetime as dt
import errno
import os
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
from fsm_exec._sim import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

from kit import T, block, blocks

CFG = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0}


class Reconciled:
    reconciliation_status = "success"


class Interrupting(int):
    """A priority whose conversion is interrupted: Ctrl-C on the thread submitting it."""

    def __int__(self) -> int:
        raise KeyboardInterrupt


def interrupt_acceptance(em: ExecutionManager) -> None:
    """Retire ``em`` from this thread: a Ctrl-C in the middle of accepting a batch."""
    with pytest.raises(KeyboardInterrupt):
        em.execute_instruction_blocks(T(1), [{**block("x"), "priority": Interrupting(1)}])
    assert em.interrupted


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def losing_fsync(monkeypatch: pytest.MonkeyPatch, thread: threading.Thread) -> list[bool]:
    """Once armed, the next fsync on ``thread`` fails (EIO) and the file loses what no
    earlier fsync covered, as a kernel may drop the dirty pages."""
    real, armed = os.fsync, [False]
    synced: dict[int, int] = {}

    def fsync(fd: int) -> None:
        if armed[0] and threading.current_thread() is thread:
            armed[0] = False
            os.ftruncate(fd, synced.get(fd, 0))
            raise OSError(errno.EIO, "Input/output error")
        real(fd)
        synced[fd] = os.fstat(fd).st_size

    monkeypatch.setattr("fsm_exec._journal.os.fsync", fsync)
    return armed


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
    """em1 is inside route_instruction(a) when a Ctrl-C on another thread retires it. A
    fresh manager may take the journal (em1 is retired) and settles a. When em1's venue
    call returns, em1 writes nothing and hands nothing off: one hand-off, a clean journal."""
    venue, positions = GatedVenue(), SimPositionHandler()
    with EventLogger(tmp_path, "live") as log:
        em1 = live(log, venue, positions)
        t, errors = in_thread(lambda: em1.update_state(T(0), "strategy_manager", blocks("a")))
        assert venue.gate.entered.wait(10)
        interrupt_acceptance(em1)
        em2 = live(log, venue, positions)
        em2.recover()
        em2.update_state(T(2), "strategy_manager")
        venue.gate.release.set()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ManagerInterruptedError)
        assert em2.block_state("a") is BlockState.SUCCESS
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
