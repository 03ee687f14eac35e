"""Component health: the registry the manager reports to, and a rolling health window."""

from __future__ import annotations

import enum
from collections import deque
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
        for name, checker in self._checkers.items():
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

    ``note(level)`` raises the level of the update in progress; ``close()`` ends it.
    """

    __slots__ = ("_levels", "_counts", "_current")

    def __init__(self, size: int = 100) -> None:
        self._levels: deque[int] = deque(maxlen=size)
        self._counts = [0, 0, 0]
        self._current = HEALTHY

    def note(self, level: int) -> None:
        if level > self._current:
            self._current = level

    def close(self) -> None:
        levels = self._levels
        if len(levels) == levels.maxlen:
            self._counts[levels[0]] -= 1
        levels.append(self._current)
        self._counts[self._current] += 1
        self._current = HEALTHY

    def level(self, *, halted: bool = False) -> int:
        """The worst level of the window (``HEALTHY``, ``DEGRADED`` or ``UNHEALTHY``)."""
        if halted or self._counts[UNHEALTHY] or self._current == UNHEALTHY:
            return UNHEALTHY
        if self._counts[DEGRADED] or self._current == DEGRADED:
            return DEGRADED
        return HEALTHY

    def status(self, *, halted: bool = False) -> HealthStatus:
        return LEVELS[self.level(halted=halted)]
