"""Exactly-once at the edges (issue 25): a slow route call whose reply is lost is not routed
again before the venue's index can show it; an interrupt in the hand-off never doubles it."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fsm_exec
from fsm_exec import EventLogger, ExecutionManager, HandOffKey
from fsm_exec.boundary.protocols import takes_hand_off_key
from fsm_exec.core.interrupts import interrupts_deferred
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    NaiveVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import T, blocks


class SlowVenue:
    """Each route call spends ``seconds`` on the fake clock before its order goes out (an
    SDK retrying a connect, a rate limiter), then hands over to ``inner``."""

    def __init__(self, inner: FaultyVenue, clock: FakeClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    def route_instruction(self, timestamp: Any, block: Any) -> Any:
        self.clock.advance(self.seconds)
        return self.inner.route_instruction(timestamp, block)

    def query_execution(self, timestamp: Any, block: Any) -> Any:
        return self.inner.query_execution(timestamp, block)


def slow_lossy_run(duration: float, lag: float, **config: Any) -> tuple[NaiveVenue,
                                                                        RecordingEventLogger]:
    """One block through a live manager whose first route call takes ``duration`` seconds,
    executes on a venue that is not idempotent, loses its reply, and whose index shows the
    order only ``lag`` seconds later; ``not_found_min_age_seconds`` is that lag."""
    clock = FakeClock()
    venue = NaiveVenue()
    faulty = FaultyVenue(venue, ["eventually_consistent"], clock=clock, lag_queries=0,
                         lag_seconds=lag)
    rc = SimReconciliation(clock)
    log = RecordingEventLogger()
    cfg = {"not_found_min_age_seconds": lag, "max_retries": 5, **config}
    em = ExecutionManager(cfg, StaticDataProvider(), "live", SimPositionHandler(rc),
                          SlowVenue(faulty, clock, duration), rc, event_logger=log,
                          clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    return venue, log


def test_a_slow_route_call_whose_reply_is_lost_is_not_filled_twice() -> None:
    """The issue's case: min age 5 s (the index lag), a route call of 8 s whose reply is
    lost, three "not found" answers within two seconds: the age counts from the end of the
    call, so the block is not routed again and executes once."""
    venue, log = slow_lossy_run(8.0, 5.0, not_found_interval_seconds=0.5)
    assert venue.execution_order == ["a"]
    queries = [e.data for e in log.of_type("execution_query")]
    assert queries and all(q["age_s"] < 5.0 for q in queries if not q["confirmed"])


#: Durations in eighths of a second: exact in binary, so that the fake clock (which stands
#: still while the manager computes) is never asked to sleep less than its resolution.
EIGHTHS = st.integers(0, 8 * 120).map(lambda n: n / 8)


@settings(max_examples=150, deadline=None)
@given(duration=EIGHTHS, lag=EIGHTHS,
       timeout=st.sampled_from([1.0, 10.0, 30.0]),
       interval=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
       confirmations=st.integers(1, 4))
def test_any_call_duration_and_index_lag_never_fills_twice(
        duration: float, lag: float, timeout: float, interval: float,
        confirmations: int) -> None:
    """Property: whatever the route call's duration (under or past execution_timeout) and
    the venue's indexing lag, with the min age set to that lag, a block whose reply was
    lost executes at most once on a venue that is not idempotent."""
    venue, _ = slow_lossy_run(duration, lag, execution_timeout=timeout,
                              not_found_interval_seconds=interval,
                              not_found_confirmations=confirmations)
    assert venue.execution_order.count("a") <= 1


class HeldVenue(SlowVenue):
    """A route call held until the first query releases it, so that the manager abandons
    it at execution_timeout; released, it spends ``seconds`` more, then executes and loses
    its reply (the call that sends late)."""

    def __init__(self, inner: FaultyVenue, clock: FakeClock, seconds: float) -> None:
        super().__init__(inner, clock, seconds)
        self.release = threading.Event()

    def route_instruction(self, timestamp: Any, block: Any) -> Any:
        self.release.wait(30)
        return super().route_instruction(timestamp, block)

    def query_execution(self, timestamp: Any, block: Any) -> Any:
        self.release.set()
        return super().query_execution(timestamp, block)


def test_a_call_abandoned_at_the_timeout_that_sends_late_is_not_filled_twice() -> None:
    """A route call given up at execution_timeout that sends its order later and loses its
    reply: the "not found" age counts from when the call was seen finished, not from when
    the manager gave up on it, so the block executes once."""
    clock = FakeClock()
    venue = NaiveVenue()
    faulty = FaultyVenue(venue, ["eventually_consistent"], clock=clock, lag_queries=0,
                         lag_seconds=5.0)
    held = HeldVenue(faulty, clock, 10.0)
    rc = SimReconciliation(clock)
    em = ExecutionManager({"not_found_min_age_seconds": 5.0, "execution_timeout": 0.2,
                           "max_retries": 9}, StaticDataProvider(), "live",
                          SimPositionHandler(rc), held, rc, clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert held.release.is_set()
    assert venue.execution_order == ["a"]
    assert em.get_execution_status()["status"] != "halted"


# --- the hand-off: an in-process interrupt never doubles it ------------------------------

PACKAGE = os.path.dirname(str(fsm_exec.__file__)) + os.sep


class SignalAt:
    """Once armed, sends SIGINT at the n-th line the manager executes (as a signal lands
    between two lines: ``raise_signal`` runs the installed handler there)."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.armed, self.fired = at, 0, False, False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        if event == "line" and self.armed and not self.fired:
            self.seen += 1
            if self.seen >= self.at:
                self.fired = True
                signal.raise_signal(signal.SIGINT)
        return self


class ArmingHandler(SimPositionHandler):
    """A position handler that arms the interrupt when it is called (``before``) or as it
    returns (not ``before``): the interrupt then lands ``at`` lines later."""

    def __init__(self, rc: SimReconciliation, tracer: SignalAt, before: bool) -> None:
        super().__init__(rc)
        self.tracer, self.before = tracer, before

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        self.tracer.armed = self.tracer.armed or self.before
        super().update_state(timestamp, trigger_source, deltas)
        self.tracer.armed = True


@settings(max_examples=60, deadline=None)
@given(at=st.integers(1, 400), before=st.booleans(), n_blocks=st.integers(1, 3))
def test_an_interrupt_anywhere_in_the_hand_off_never_doubles_it(
        at: int, before: bool, n_blocks: int) -> None:
    """Property: Ctrl-C at any line from the position handler's call until well past its
    record, then ``em.reopen()`` and the run finished: each block's deltas are handed over
    exactly once."""
    clock = FakeClock()
    venue = NaiveVenue()
    rc = SimReconciliation(clock)
    tracer = SignalAt(at)
    handler = ArmingHandler(rc, tracer, before)
    ids = [f"b{i}" for i in range(n_blocks)]
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLogger(Path(tmp), "live")
        em = ExecutionManager({}, StaticDataProvider(), "live", handler, venue, rc,
                              event_logger=log, clock=clock, sleep=clock.sleep)
        outer = sys.gettrace()
        sys.settrace(tracer)
        try:
            em.update_state(T(0), "strategy_manager", blocks(*ids))
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(outer)
        if em.interrupted:
            em = em.reopen()
        em.update_state(T(1), "manual")
        log.close()
    assert sorted(venue.execution_order) == ids
    assert sorted(handler.applied.elements()) == ids, handler.applied


def test_an_interrupt_in_a_deferred_section_is_raised_after_it() -> None:
    """SIGINT inside the section lets the section finish, then raises KeyboardInterrupt
    once (two signals, one interrupt), with Python's own handler back in place."""
    before = signal.getsignal(signal.SIGINT)
    done = []
    try:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            done.append("section")
    except KeyboardInterrupt:
        done.append("interrupt")
    assert done == ["section", "interrupt"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_sigterm_handler_runs_after_the_section() -> None:
    """A supervisor's SIGTERM handler (raising SystemExit) runs once the section ends."""
    calls: list[str] = []

    def terminated(signum: int, frame: Any) -> None:
        calls.append("handler")
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        try:
            with interrupts_deferred():
                signal.raise_signal(signal.SIGTERM)
                calls.append("section")
        except SystemExit as exc:
            calls.append(f"exit {exc.code}")
        assert calls == ["section", "handler", "exit 143"]
        assert signal.getsignal(signal.SIGTERM) is terminated
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("before", [signal.SIG_DFL, signal.SIG_IGN])
def test_the_section_puts_back_the_default_and_the_ignore_handler(before: Any) -> None:
    """The handlers the section swaps in and out by number (the C function under
    signal.signal) come back as signal.getsignal names them: SIG_DFL and SIG_IGN included;
    a signal ignored before is ignored after the section too."""
    previous = signal.signal(signal.SIGTERM, before)
    try:
        with interrupts_deferred():
            assert signal.getsignal(signal.SIGTERM) is not before  # held meanwhile
            if before is signal.SIG_IGN:
                signal.raise_signal(signal.SIGTERM)  # held, then delivered: ignored
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(("at", "signum"), [(1, signal.SIGTERM), (2, signal.SIGTERM),
                                           (3, signal.SIGINT), (4, signal.SIGINT),
                                           (4, signal.SIGTERM)])
def test_a_signal_between_two_swaps_leaves_no_handler_held(
        monkeypatch: pytest.MonkeyPatch, at: int, signum: int) -> None:
    """A signal landing just before the section's ``at``-th handler swap (two on entry,
    two on exit), its handler raising: both handlers end as they were before the section,
    and the signal's exception is raised (a supervisor's SIGTERM here exits, a Ctrl-C
    interrupts), once."""
    from fsm_exec.core import interrupts

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(143)

    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.signal(signal.SIGTERM, terminated)
    real, swaps = interrupts._swap, [0]

    def swap(s: int, handler: Any) -> Any:
        swaps[0] += 1
        if swaps[0] == at:
            signal.raise_signal(signum)  # its handler runs here, before the swap
        return real(s, handler)

    monkeypatch.setattr(interrupts, "_swap", swap)
    try:
        with pytest.raises(SystemExit if signum == signal.SIGTERM else KeyboardInterrupt), \
                interrupts_deferred():
            pass
        assert signal.getsignal(signal.SIGINT) is before_int
        assert signal.getsignal(signal.SIGTERM) is terminated
    finally:
        signal.signal(signal.SIGTERM, before_term)


@pytest.mark.parametrize("held_term", [False, True])
@pytest.mark.parametrize("at", [1, 2, 3, 4, 5, 6])
def test_a_ctrl_c_at_any_swap_leaves_no_signal_swallowed(
        monkeypatch: pytest.MonkeyPatch, at: int, held_term: bool) -> None:
    """A Ctrl-C landing at the section's ``at``-th handler swap (two on entry, two back,
    and the swaps made again), with or without a SIGTERM held by the section: the held
    SIGTERM reaches its handler once, and afterwards neither signal is swallowed (a
    handler not swapped back yet puts the real one back when its signal comes: review)."""
    from fsm_exec.core import interrupts

    terms: list[int] = []

    def term(signum: int, frame: Any) -> None:
        terms.append(signum)

    before = signal.signal(signal.SIGTERM, term)
    real, swaps = interrupts._swap, [0]

    def swap(s: int, handler: Any) -> Any:
        swaps[0] += 1
        if swaps[0] == at:
            signal.raise_signal(signal.SIGINT)  # the Ctrl-C, here
        return real(s, handler)

    monkeypatch.setattr(interrupts, "_swap", swap)
    ran = False
    try:
        try:
            with interrupts_deferred():
                ran = True
                if held_term:
                    signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            pass
        monkeypatch.setattr(interrupts, "_swap", real)
        time.sleep(0)  # a call: a signal tripped again runs at the next check
        assert terms == ([signal.SIGTERM] if held_term and ran else [])
        terms.clear()
        signal.raise_signal(signal.SIGTERM)
        assert terms == [signal.SIGTERM]  # not swallowed by a hold left in place
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_hold_left_in_place_puts_the_handler_back_when_its_signal_comes() -> None:
    """The section's holding handler, still installed once the section is over (a swap
    back cut short), puts the real handler back when its signal comes and delivers the
    signal to it, once: never a signal swallowed for good (review)."""
    terms: list[int] = []

    def term(signum: int, frame: Any) -> None:
        terms.append(signum)

    before = signal.signal(signal.SIGTERM, term)
    try:
        with interrupts_deferred():
            hold = signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is term
        signal.signal(signal.SIGTERM, hold)  # as if its swap back had been cut short
        signal.raise_signal(signal.SIGTERM)
        assert terms == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is term
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_handler_not_installed_from_python_is_not_held(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler that Python cannot name (signal.getsignal gives None: installed by C
    code) cannot be put back, so the section leaves that signal alone; the other is held."""
    from fsm_exec.core import interrupts

    real = interrupts._handler
    monkeypatch.setattr(interrupts, "_handler",
                        lambda s: None if s == signal.SIGTERM else real(s))
    before = signal.getsignal(signal.SIGTERM)
    with interrupts_deferred():
        assert signal.getsignal(signal.SIGTERM) is before  # not swapped
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # held
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_the_main_thread_the_section_changes_no_handler() -> None:
    """Signals reach only the main thread: elsewhere the section installs nothing."""
    seen: list[Any] = []

    def body() -> None:
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


# --- the hand-off key: what a handler deduplicates a hard kill's second hand-off by ----------

class KeyedBook:
    """A position handler that takes the hand-off key and books each key once; the first
    hand-off ends the process right after booking (a hard kill before the record)."""

    def __init__(self, rc: SimReconciliation) -> None:
        self.rc = rc
        self.keys: list[HandOffKey] = []
        self.booked: dict[HandOffKey, Any] = {}
        self.kill = True

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any, *,
                     hand_off_key: HandOffKey | None = None) -> None:
        assert hand_off_key is not None
        self.keys.append(hand_off_key)
        self.booked.setdefault(hand_off_key, deltas)
        self.rc.notify(deltas["block_id"])
        if self.kill:
            self.kill = False
            raise SystemExit("killed after booking, before the manager's record")


def test_a_hand_off_made_again_after_a_crash_has_the_same_key(tmp_path: Path) -> None:
    """The hand-off key is the block id and attempt, and the hand-off made again after the
    process died between the handler's return and its record carries the same key, so a
    handler that books each key once books the deltas once."""
    clock = FakeClock()
    rc = SimReconciliation(clock)
    book = KeyedBook(rc)
    log = EventLogger(tmp_path, "live")
    em = ExecutionManager({}, StaticDataProvider(), "live", book, NaiveVenue(), rc,
                          event_logger=log, clock=clock, sleep=clock.sleep)
    with pytest.raises(SystemExit):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    em = em.reopen()
    em.update_state(T(1), "manual")
    log.close()
    assert book.keys == [HandOffKey("a", 1), HandOffKey("a", 1)]
    assert list(book.booked) == [HandOffKey("a", 1)]


def test_a_handler_without_the_keyword_is_called_as_before() -> None:
    """The key is given only to a handler that names it: the three-argument handler of
    every existing deployment is called with three arguments (``**kwargs`` does not count),
    and a callable without a signature is not given it."""
    assert takes_hand_off_key(KeyedBook(SimReconciliation()).update_state)
    assert not takes_hand_off_key(SimPositionHandler().update_state)
    assert not takes_hand_off_key(lambda *a, **k: None)
    assert not takes_hand_off_key(print)
