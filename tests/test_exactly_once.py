"""Exactly-once at the edges (issue 25): a slow route call whose reply is lost is not routed
again before the venue's index can show it; an interrupt in the hand-off never doubles it."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec import ExecutionManager
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
