"""Component health: the registry the manager reports to, and a rolling health window."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

HealthChecker = Callable[[], dict[str, Any]]


class HealthStatus(enum.StrEnum):
    """A component's health, per the spec's definitions."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class UnifiedHealthManager:
    """Components register a checker; :meth:`check` asks each for its report.

    One health manager serves many execution managers in one process when each has its
    own name: ``ExecutionManager(..., name="sma-10-20")`` registers as
    ``ExecutionManager[sma-10-20]`` (a :func:`~fsm_exec.backtest_run` journal names it
    after its run), and unregisters when it is closed."""

    def __init__(self) -> None:
        self._checkers: dict[str, HealthChecker] = {}

    def register_component(self, component_name: str, checker: HealthChecker) -> None:
        """Register ``checker`` under ``component_name`` (a name may be registered once)."""
        if not isinstance(component_name, str) or not component_name:
            raise ValueError("component_name must be a non-empty string")
        if not callable(checker):
            raise TypeError(f"checker for {component_name!r} must be callable")
        if component_name in self._checkers:
            raise ValueError(f"component {component_name!r} is already registered")
        self._checkers[component_name] = checker

    def unregister_component(self, component_name: str,
                             checker: HealthChecker | None = None) -> None:
        """Forget ``component_name`` (a replaced component registers its successor); with
        ``checker``, only while that checker is the one registered under the name (a
        closed component never unregisters its successor)."""
        if checker is None or self._checkers.get(component_name) == checker:
            self._checkers.pop(component_name, None)

    @property
    def components(self) -> tuple[str, ...]:
        """The registered component names, in registration order."""
        return tuple(self._checkers)

    def check(self) -> dict[str, dict[str, Any]]:
        """Each component's report, keyed by component name.

        A checker that raises is reported ``unhealthy`` with its error, never hidden.
        """
        out: dict[str, dict[str, Any]] = {}
        # A snapshot: a manager collected meanwhile (a garbage collection run by a checker's
        # own allocations) takes its registration out of the dict as this goes through it.
        for name, checker in tuple(self._checkers.items()):
            try:
                out[name] = checker()
            except Exception as exc:  # a broken checker is itself a health problem
                out[name] = {"status": str(HealthStatus.UNHEALTHY),
                             "errors": [f"health check raised {type(exc).__name__}"]}
        return out


HEALTHY, DEGRADED, UNHEALTHY = 0, 1, 2
#: Each level's status, and its text (an enum's ``.value`` is a Python-level lookup).
LEVELS = (HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY)
LEVEL_TEXTS = tuple(s.value for s in LEVELS)


class HealthWindow:
    """The worst level seen in each of the last ``size`` updates, with O(1) bookkeeping.

    ``note(level)`` raises the level of the update in progress; ``close()`` ends it. Only
    the number of the last closed update of each bad level is kept: the window holds a
    level while that update is among the last ``size`` (an all-healthy call costs one
    addition).
    """

    __slots__ = ("_size", "_closed", "_last", "_current")

    def __init__(self, size: int = 100) -> None:
        if type(size) is not int or size < 1:
            raise ValueError(f"a health window holds 1 update or more, got {size!r}")
        self._size = size
        self._closed = 0  # updates closed so far
        self._last = [0, -size, -size]  # by level: the number of its last closed update
        self._current = HEALTHY

    def note(self, level: int) -> None:
        if level > self._current:
            self._current = level

    def close(self) -> None:
        self._closed += 1
        if self._current:
            self._last[self._current] = self._closed
            self._current = HEALTHY

    def level(self, halted: bool = False) -> int:
        """The worst level of the window (``HEALTHY``, ``DEGRADED`` or ``UNHEALTHY``)."""
        oldest = self._closed - self._size  # the last update before the window
        current, last = self._current, self._last
        if halted or current == UNHEALTHY or last[UNHEALTHY] > oldest:
            return UNHEALTHY
        if current == DEGRADED or last[DEGRADED] > oldest:
            return DEGRADED
        return HEALTHY

    def status(self, *, halted: bool = False) -> HealthStatus:
        return LEVELS[self.level(halted)]
