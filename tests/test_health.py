"""Tests for fsm_exec.observe.health (the registry, the rolling window) and the manager's health
rule: a block stuck past its state's deadline is degraded, one in doubt unhealthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import (
    EventLogger,
    ExecutionConfig,
    ExecutionManager,
    HealthStatus,
    InstructionBlock,
    InvalidBlockError,
    UnifiedHealthManager,
)
from fsm_exec.drivers.deadline import GRACE_SECONDS, backoff, confirmation_time, state_deadline
from fsm_exec.observe.health import DEGRADED, HEALTHY, UNHEALTHY, HealthWindow
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks, rig

# --- UnifiedHealthManager -------------------------------------------------------------------


def test_check_reports_each_component_by_name() -> None:
    """check() returns each registered checker's report under its component name."""
    hm = UnifiedHealthManager()
    hm.register_component("exec", lambda: {"status": "healthy", "queue": 0})
    hm.register_component("venue", lambda: {"status": "degraded"})
    assert hm.check() == {"exec": {"status": "healthy", "queue": 0},
                          "venue": {"status": "degraded"}}


def test_check_with_no_components_is_empty() -> None:
    """With nothing registered, check() reports nothing."""
    assert UnifiedHealthManager().check() == {}


def test_check_asks_each_time() -> None:
    """check() calls the checkers on every call rather than caching a report."""
    calls: list[int] = []

    def checker() -> dict[str, Any]:
        calls.append(1)
        return {"status": "healthy", "n": len(calls)}

    hm = UnifiedHealthManager()
    hm.register_component("exec", checker)
    assert hm.check()["exec"]["n"] == 1
    assert hm.check()["exec"]["n"] == 2


def test_duplicate_name_is_refused() -> None:
    """A name can be registered once; the first checker stays."""
    hm = UnifiedHealthManager()
    hm.register_component("exec", lambda: {"status": "healthy"})
    with pytest.raises(ValueError, match="exec"):
        hm.register_component("exec", lambda: {"status": "unhealthy"})
    assert hm.components == ("exec",)
    assert hm.check() == {"exec": {"status": "healthy"}}


@pytest.mark.parametrize("name", ["", None, 42])
def test_bad_name_is_refused(name: Any) -> None:
    """An empty or non-string component name is refused with ValueError."""
    hm = UnifiedHealthManager()
    with pytest.raises(ValueError, match="component_name"):
        hm.register_component(name, lambda: {})
    assert hm.components == ()


@pytest.mark.parametrize("checker", [None, {"status": "healthy"}, "healthy"])
def test_non_callable_checker_is_refused(checker: Any) -> None:
    """A checker that is not callable is refused with TypeError."""
    hm = UnifiedHealthManager()
    with pytest.raises(TypeError, match="exec"):
        hm.register_component("exec", checker)
    assert hm.components == ()


class _CheckerBroke(Exception):
    """A failure inside a health checker."""


def test_raising_checker_is_reported_unhealthy() -> None:
    """A checker that raises is reported unhealthy with its error; the others still report."""
    def broken() -> dict[str, Any]:
        raise _CheckerBroke("boom")

    hm = UnifiedHealthManager()
    hm.register_component("broken", broken)
    hm.register_component("fine", lambda: {"status": "healthy"})
    report = hm.check()
    assert report["broken"]["status"] == HealthStatus.UNHEALTHY
    assert any("_CheckerBroke" in e for e in report["broken"]["errors"])
    assert report["fine"] == {"status": "healthy"}


def test_components_in_registration_order() -> None:
    """components lists names in registration order, and check() keeps that order."""
    hm = UnifiedHealthManager()
    names = ("zeta", "alpha", "mid")
    for name in names:
        hm.register_component(name, lambda: {})
    assert hm.components == names
    assert tuple(hm.check()) == names


# --- HealthWindow ---------------------------------------------------------------------------


def test_health_status_values() -> None:
    """The statuses are the spec's three words."""
    assert [str(s) for s in HealthStatus] == ["healthy", "degraded", "unhealthy"]


def test_window_is_healthy_without_notes() -> None:
    """No notes, whether or not updates were closed: healthy."""
    w = HealthWindow(5)
    assert w.status() is HealthStatus.HEALTHY
    for _ in range(7):
        w.close()
    assert w.status() is HealthStatus.HEALTHY


@pytest.mark.parametrize(
    ("levels", "status"),
    [
        ([HEALTHY], HealthStatus.HEALTHY),
        ([DEGRADED], HealthStatus.DEGRADED),
        ([UNHEALTHY], HealthStatus.UNHEALTHY),
        ([DEGRADED, UNHEALTHY], HealthStatus.UNHEALTHY),
        ([UNHEALTHY, DEGRADED], HealthStatus.UNHEALTHY),
        ([DEGRADED, HEALTHY], HealthStatus.DEGRADED),
    ],
)
@pytest.mark.parametrize("closed", [True, False], ids=["closed", "in progress"])
def test_window_worst_note_wins(levels: list[int], status: HealthStatus, closed: bool) -> None:
    """The worst level noted wins, whether its update is closed or still in progress."""
    w = HealthWindow(10)
    w.close()
    for level in levels:
        w.note(level)
    if closed:
        w.close()
    assert w.status() is status


def test_window_worst_wins_across_updates() -> None:
    """A degraded update and an unhealthy update in the window: unhealthy."""
    w = HealthWindow(10)
    w.note(UNHEALTHY)
    w.close()
    w.note(DEGRADED)
    w.close()
    assert w.status() is HealthStatus.UNHEALTHY


@pytest.mark.parametrize("level", [HEALTHY, DEGRADED])
def test_halted_forces_unhealthy(level: int) -> None:
    """halted=True reports unhealthy whatever the window holds."""
    w = HealthWindow(10)
    w.note(level)
    w.close()
    assert w.status(halted=True) is HealthStatus.UNHEALTHY
    assert w.status() is not HealthStatus.UNHEALTHY


@pytest.mark.parametrize(
    ("level", "status"),
    [(DEGRADED, HealthStatus.DEGRADED), (UNHEALTHY, HealthStatus.UNHEALTHY)])
def test_window_forgets_after_size_clean_updates(level: int, status: HealthStatus) -> None:
    """With size 100, a bad update counts through 99 clean ones and is gone after the 100th."""
    w = HealthWindow(100)
    w.note(level)
    w.close()
    for _ in range(99):
        w.close()
    assert w.status() is status
    w.close()
    assert w.status() is HealthStatus.HEALTHY


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_a_window_of_no_update_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="1 update or more"):
        HealthWindow(size)  # type: ignore[arg-type]


def test_window_default_size_is_100() -> None:
    """The default window is the last 100 updates."""
    w = HealthWindow()
    w.note(DEGRADED)
    w.close()
    for _ in range(99):
        w.close()
    assert w.status() is HealthStatus.DEGRADED
    w.close()
    assert w.status() is HealthStatus.HEALTHY


def test_close_starts_a_clean_update() -> None:
    """close() ends the update in progress: the next update starts healthy."""
    w = HealthWindow(1)
    w.note(UNHEALTHY)
    w.close()
    w.close()
    assert w.status() is HealthStatus.HEALTHY


_MODEL_STATUS = {HEALTHY: HealthStatus.HEALTHY, DEGRADED: HealthStatus.DEGRADED,
                 UNHEALTHY: HealthStatus.UNHEALTHY}
_OPS = st.lists(
    st.one_of(st.sampled_from([HEALTHY, DEGRADED, UNHEALTHY]), st.just("close")), max_size=80)


@given(size=st.integers(min_value=1, max_value=6), ops=_OPS, halted=st.booleans())
def test_window_matches_reference_model(size: int, ops: list[int | str], halted: bool) -> None:
    """HealthWindow agrees with a list of the last N closed levels plus the open one, max'd."""
    w = HealthWindow(size)
    closed: list[int] = []
    current = HEALTHY
    for op in ops:
        if op == "close":
            w.close()
            closed.append(current)
            current = HEALTHY
        else:
            assert isinstance(op, int)
            w.note(op)
            current = max(current, op)
        worst = max([*closed[-size:], current])
        expected = HealthStatus.UNHEALTHY if halted else _MODEL_STATUS[worst]
        assert w.status(halted=halted) is expected
        assert w.status() is _MODEL_STATUS[worst]


# --- the manager: stuck is not healthy, in doubt is unhealthy --------------------------------

def test_deadlines_are_derived_from_the_config() -> None:
    """Each state's deadline is its budget in the config plus the grace, as documented."""
    cfg = ExecutionConfig.from_dict({
        "execution_timeout": 10, "reconciliation_timeout": 4, "max_retries": 3,
        "retry_delay_seconds": 0.5, "max_retry_delay_seconds": 1.5,
        "not_found_confirmations": 2, "not_found_interval_seconds": 2.0,
        "not_found_min_age_seconds": 3.0})
    assert [backoff(cfg, a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    assert confirmation_time(cfg) == 3.0 + 2 * 2.0
    assert state_deadline(cfg, "routing") == 10 + (0.5 + 1.0 + 1.5) + 7.0 + GRACE_SECONDS
    assert state_deadline(cfg, "pending_reconciliation") == 4 + GRACE_SECONDS
    assert state_deadline(cfg, "retrying", 1) == 0.5 + 7.0 + 10 + GRACE_SECONDS
    assert state_deadline(cfg, "retrying", 3) == 1.5 + 7.0 + 10 + GRACE_SECONDS
    assert state_deadline(cfg, "queued") is None


def test_defaults_give_deadlines_of_tens_of_seconds() -> None:
    """With the default config the deadlines are 39.7 s, 11 s and 39.1 s (first retry)."""
    cfg = ExecutionConfig()
    assert state_deadline(cfg, "routing") == pytest.approx(39.7)
    assert state_deadline(cfg, "pending_reconciliation") == pytest.approx(11.0)
    assert state_deadline(cfg, "retrying", 1) == pytest.approx(39.1)


def test_a_block_in_routing_past_its_deadline_is_degraded() -> None:
    """A risk check slower than the routing deadline makes the report degraded, naming the
    block, its state and its age; just at the deadline it is still healthy."""
    seen: list[dict[str, Any]] = []
    r: Any = None

    def slow_check(b: InstructionBlock, market: Any) -> None:
        deadline = state_deadline(r.em.config, "routing")
        r.clock.advance(deadline)
        seen.append(r.em.health_check())
        r.clock.advance(0.5)
        seen.append(r.em.health_check())
        seen.append({"status": r.em.get_execution_status()["status"],
                     "property": str(r.em.health_status)})

    r = rig(risk_checks=[slow_check])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    at, past, status = seen
    assert at["status"] == "healthy" and at["stuck"] is None and at["in_doubt"] is None
    assert past["status"] == "degraded"
    deadline = state_deadline(r.em.config, "routing")
    assert deadline is not None
    assert past["stuck"] == {"block_id": "a", "state": "routing", "attempt": 1,
                             "age_s": pytest.approx(deadline + 0.5), "deadline_s": deadline}
    assert status == {"status": "degraded", "property": "degraded"}
    after = r.em.health_check()
    assert after["stuck"] is None and after["status"] == "healthy"


class SlowReconciliation:
    """Each read of the status takes ``seconds`` on the fake clock; the manager's health is
    taken at every read."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self.em: Any = None
        self.reports: list[dict[str, Any]] = []

    @property
    def reconciliation_status(self) -> str:
        self.clock.advance(self.seconds)
        self.reports.append(self.em.health_check())
        return "pending"


def test_a_block_waiting_for_reconciliation_past_its_deadline_is_degraded() -> None:
    """Reconciliation reads slow enough to pass reconciliation_timeout plus the grace
    make the block stuck in pending_reconciliation: degraded, never unhealthy."""
    clock = FakeClock()
    rc = SlowReconciliation(clock, 1.6)
    em = ExecutionManager({"reconciliation_timeout": 2, "max_retries": 1},
                          StaticDataProvider(), "live", SimPositionHandler(), SimVenue(), rc,
                          clock=clock, sleep=clock.sleep)
    rc.em = em
    em.update_state(T(0), "strategy_manager", blocks("a"))
    first, second = rc.reports[:2]
    assert first["status"] == "healthy" and first["stuck"] is None
    assert second["status"] == "degraded"
    assert second["stuck"]["block_id"] == "a"
    assert second["stuck"]["state"] == "pending_reconciliation"
    assert second["stuck"]["age_s"] == pytest.approx(1.6 + 0.05 + 1.6)
    assert second["stuck"]["deadline_s"] == 2 + GRACE_SECONDS
    assert second["in_doubt"] is None


class QueryingVenue(SimVenue):
    """Refuses the first route call (nothing executed); each query records the manager's
    health report; ``answers`` scripts the queries (an exception to raise, or ``None``)."""

    def __init__(self, answers: list[Any]) -> None:
        super().__init__()
        self.answers = answers
        self.em: Any = None
        self.reports: list[dict[str, Any]] = []
        self.refused = False

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any]:
        if not self.refused:
            self.refused = True
            raise ConnectionResetError("connection reset")
        return super().route_instruction(timestamp, block)

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> Any:
        self.reports.append(self.em.health_check())
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        return answer


def retrying_manager(oversleep: float, answers: list[Any]
                     ) -> tuple[ExecutionManager, QueryingVenue]:
    """A live manager whose every sleep (the backoff) lasts ``oversleep`` s too long."""
    clock = FakeClock()
    venue = QueryingVenue(answers)
    em = ExecutionManager({"execution_timeout": 2, "not_found_confirmations": 1,
                           "not_found_min_age_seconds": 0, "max_retries": 3},
                          StaticDataProvider(), "live", SimPositionHandler(), venue,
                          _Reconciled(), clock=clock,
                          sleep=lambda s: clock.sleep(s + oversleep))
    venue.em = em
    return em, venue


class _Reconciled:
    reconciliation_status = "success"


def test_a_block_retrying_past_its_deadline_is_degraded() -> None:
    """A backoff that oversleeps past the retrying deadline: the block is stuck in retrying
    (degraded), with its attempt; once it moves on, the report is clean again."""
    cfg = ExecutionConfig.from_dict({"execution_timeout": 2, "not_found_confirmations": 1,
                                     "not_found_min_age_seconds": 0})
    deadline = state_deadline(cfg, "retrying", 1)
    assert deadline is not None
    em, venue = retrying_manager(deadline + 1, [None])
    em.update_state(T(0), "strategy_manager", blocks("a"))
    (report,) = venue.reports
    assert report["status"] == "degraded"
    assert report["stuck"] == {"block_id": "a", "state": "retrying", "attempt": 1,
                               "age_s": pytest.approx(backoff(cfg, 1) + deadline + 1),
                               "deadline_s": deadline}
    assert em.block_state("a") == "success"
    assert em.health_check()["stuck"] is None


def test_an_outcome_that_cannot_be_found_out_is_unhealthy() -> None:
    """A query that fails leaves the block in doubt: unhealthy, with the block named under
    in_doubt, until the venue answers."""
    em, venue = retrying_manager(0.0, [TimeoutError("venue down"), None])
    em.update_state(T(0), "strategy_manager", blocks("a"))
    before, during = venue.reports
    assert before["in_doubt"] is None
    assert during["status"] == "unhealthy"
    assert during["in_doubt"]["block_id"] == "a"
    assert during["in_doubt"]["state"] == "retrying"
    assert during["stuck"] is None
    assert em.block_state("a") == "success" and not em.halted
    assert em.health_check()["in_doubt"] is None


class Crash(BaseException):
    """Stands for the process dying."""


class CrashingJournal:
    """Forwards to a journal; dies instead of journaling a move out of ``state``."""

    def __init__(self, journal: EventLogger, state: str) -> None:
        self.journal, self.state = journal, state

    def log_event(self, ts: Any, kind: str, component: str, data: Any) -> None:
        if kind == "block_transition" and data["source"] == self.state:
            raise Crash
        self.journal.log_event(ts, kind, component, data)


def recovered_in_flight(tmp_path: Path, mode: str, venue: Any,
                        state: str = "routing") -> ExecutionManager:
    """A manager recovered from a journal whose process died with block ``a`` in
    ``state``."""
    clock = FakeClock()
    el = EventLogger(tmp_path, "live")
    em = ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(), SimVenue(),
                          _Reconciled(), event_logger=CrashingJournal(el, state),
                          clock=clock, sleep=clock.sleep)
    with pytest.raises(Crash):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    el.close()
    em2 = ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(), venue,
                           _Reconciled(), event_logger=EventLogger(tmp_path, "live"),
                           clock=clock, sleep=clock.sleep)
    em2.recover()
    return em2


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_block_recovered_in_routing_is_in_doubt_until_the_venue_answers(
        tmp_path: Path, mode: str) -> None:
    """Restored in routing after a crash, the block is in doubt: unhealthy (not halted)
    until the venue is asked; routed again after "not executed", it is no longer in doubt."""
    seen: list[dict[str, Any]] = []
    venue = SimVenue()
    em = recovered_in_flight(tmp_path, mode, venue)
    report = em.health_check()
    assert report["status"] == "unhealthy" and not em.halted
    assert report["in_doubt"]["block_id"] == "a"
    assert report["in_doubt"]["state"] == "routing"
    assert em.get_execution_status()["status"] == "unhealthy"

    def check(b: InstructionBlock, market: Any) -> None:
        seen.append(em.health_check())

    em._risk.checks = (*em._risk.checks, check)
    em.update_state(T(1), "strategy_manager")
    assert em.block_state("a") == "success" and venue.route_calls == {"a": 1}
    assert seen and all(s["in_doubt"] is None for s in seen)
    assert em.health_check()["status"] != "unhealthy"


def test_a_block_recovered_waiting_for_reconciliation_is_not_in_doubt(tmp_path: Path) -> None:
    """Restored in pending_reconciliation (the venue executed and said so), the block is
    not in doubt: the report is healthy."""
    em = recovered_in_flight(tmp_path, "live", SimVenue(), "pending_reconciliation")
    assert em.get_execution_status()["current_block_state"] == "pending_reconciliation"
    report = em.health_check()
    assert report["status"] == "healthy"
    assert report["in_doubt"] is None and report["stuck"] is None


def test_a_halted_manager_is_unhealthy_with_nothing_in_flight() -> None:
    """A halt is unhealthy on its own: no block in flight, nothing stuck or in doubt."""
    r = rig(recon=[("fail", 0)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    report = r.em.health_check()
    assert r.em.halted and report["status"] == "unhealthy"
    assert report["in_doubt"] is None and report["stuck"] is None


def test_a_run_of_idle_calls_reports_its_health_as_it_moves_on(tmp_path: Path) -> None:
    """Idle calls that join one journal record still report the health window as it moves:
    a refused batch makes the manager degraded for the window's 100 calls, each call's
    status equals a fresh get_execution_status(), and the dict is the caller's own (a
    change to one changes neither the next nor the manager)."""
    journal = EventLogger(tmp_path, "backtest")
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(FakeClock()), event_logger=journal)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(InvalidBlockError):
        em.update_state(T(1), "strategy_manager", [{"block_id": "b"}])
    seen = []
    for i in range(2, 110):
        status = em.update_state(T(i), "strategy_manager")
        assert status == em.get_execution_status()
        seen.append(status["status"])
        status["status"] = status["blocks_executed"] = "changed by the caller"
    assert seen == ["degraded"] * 99 + ["healthy"] * 9
    em.close()
    lines = (tmp_path / "execution_manager_events.jsonl").read_bytes().splitlines()
    assert len(lines) < 10  # the idle calls joined one record
