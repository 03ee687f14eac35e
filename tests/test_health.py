"""Tests for fsm_exec._health: the component health registry and the rolling health window."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import HealthStatus, UnifiedHealthManager
from fsm_exec._health import DEGRADED, HEALTHY, UNHEALTHY, HealthWindow

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
