"""The observer seam: what the manager tells its observers, and what an observer
that raises costs (its first failure journaled as ``EXEC-016``, then a count at most once
per :data:`OBSERVER_REPORT_INTERVAL`; health degraded by every failure; never the manager's
work).

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    ComponentError,
    ScrubbedException,
    describe_exception,
)
from fsm_exec.drivers.base import (
    Flight,
)
from fsm_exec.observe.health import DEGRADED
from fsm_exec.observe.seam import CallEvent, ManagerEvent, Observer, TransitionEvent

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager

#: Seconds (injected clock) between two ``EXEC-016`` records of one failing observer: a
#: metrics or tracing outage costs one fsynced record per interval, not one per hook call.
OBSERVER_REPORT_INTERVAL = 60.0


def fsynced(self: ExecutionManager, seconds: float) -> None:
    """A journal fsync's time, for the observers. Told from inside the journal's write:
    a failing observer is only noted here, and reported at the end of the call."""
    event = CallEvent("journal_fsync", None, 0, 0.0, seconds, "ok")
    for obs in self._observers:
        try:
            obs.on_call(event)
        except Exception as exc:
            self._late_observer_errors.append((obs, exc))


def notify_transition(self: ExecutionManager, f: Flight, source: str, dest: str, trigger: str,
                       data: Mapping[str, Any]) -> None:
    block = f.block
    # positional arguments: an attrs init by keyword costs twice as much (measured)
    event = (TransitionEvent(block.block_id, block.action, source, dest, trigger, f.attempt,
                             f.entered_at, data.get("error_code"), data.get("reason"),
                             bool(data.get("halts")), f.recovered) if data else
             TransitionEvent(block.block_id, block.action, source, dest, trigger, f.attempt,
                             f.entered_at, None, None, False, f.recovered))
    for obs in self._observers:
        try:
            obs.on_transition(event)
        except Exception as exc:
            self._observer_failed(obs, exc)


def call_done(self: ExecutionManager, kind: str, f: Flight | None, t0: float, outcome: str,
               exc: BaseException | None = None, *, duration: float | None = None) -> None:
    if not self._observers:
        return
    event = CallEvent(kind, f.block.block_id if f is not None else None,
                      f.attempt if f is not None else 0, t0,
                      (self._clock() - t0) if duration is None else duration, outcome,
                      type(exc).__name__ if exc is not None else None)
    for obs in self._observers:
        try:
            obs.on_call(event)
        except Exception as err:
            self._observer_failed(obs, err)


def notify_event(self: ExecutionManager, kind: str, **data: Any) -> None:
    wanted = self._observed_events
    if wanted is not None and kind not in wanted:
        return  # no observer wants this kind: not built
    event = ManagerEvent(kind, self._clock(), data)
    for obs in self._observers:
        if obs.manager_events is not None and kind not in obs.manager_events:
            continue
        try:
            obs.on_event(event)
        except Exception as exc:
            self._observer_failed(obs, exc)


def observed_events(observers: tuple[Observer, ...]) -> frozenset[str] | None:
    """The manager event kinds some observer wants (``None``: all of them)."""
    kinds: set[str] = set()
    for obs in observers:
        wanted = getattr(obs, "manager_events", None)
        if wanted is None:
            return None
        kinds |= set(wanted)
    return frozenset(kinds)


def observer_failed(self: ExecutionManager, obs: Observer, exc: Exception, *,
                     times: int = 1) -> None:
    """An observer raised: note it (health degraded), journal its first failure, then how
    many more at most once per :data:`OBSERVER_REPORT_INTERVAL`, and carry on."""
    if self._observer_failing:
        return
    now = self._clock()
    seen = self._observer_reports.get(id(obs))
    if seen is None:
        self._observer_reports[id(obs)] = [now, 0]
        again = f" ({times} times in this call)" if times > 1 else ""
    else:
        seen[1] += times
        if now - seen[0] < OBSERVER_REPORT_INTERVAL:
            with self._mutex:
                self._health.note(DEGRADED)  # health still says so; the journal waits
            return
        again = (f" ({int(seen[1])} times in the last {now - seen[0]:g}s; the first was "
                 "reported before)")
        seen[0], seen[1] = now, 0
    self._observer_failing = True
    try:
        self._record_error(self._ts, ComponentError(
            "EXEC-016", self._redact(f"observer {type(obs).__name__} raised "
                                     f"{describe_exception(exc)}{again}"),
            original_exception=ScrubbedException.of(exc, self._redact)))
    finally:
        self._observer_failing = False
