"""The observer seam: what the manager tells its observers, and what an observer
that raises costs (its first failure journaled as ``EXEC-016``, then a count at most once
per :data:`OBSERVER_REPORT_INTERVAL`; health degraded by every failure; never the manager's
work).

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    ComponentError,
    ScrubbedException,
    describe_exception,
    type_name,
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


#: An observer's hook that takes a :class:`TransitionEvent`'s fields as arguments, in its
#: order (``_moved``), or ``None``: the event is built for its ``on_transition``.
Moved = Callable[[str, str, str, str, str, int, float, "str | None", "str | None", bool, bool],
                 None]
#: Likewise a :class:`CallEvent`'s fields (``_called``).
Called = Callable[[str, "str | None", int, float, float, str, "str | None"], None]


def field_hook(obs: Observer, method: str) -> Callable[..., None] | None:
    """``obs``'s bound hook that its ``method`` only forwards the event's fields to
    (marked :func:`~fsm_exec.observe.seam.forwards_to`: the package's own observers): the
    manager may then call the hook and build no event. ``None`` for any other observer,
    for a subclass that overrides ``method``, and for an observer given its own ``method``
    (they get events)."""
    if method in getattr(obs, "__dict__", ()):
        return None
    hook = getattr(getattr(type(obs), method), "_fsm_exec_forwards_to", None)
    return getattr(obs, hook) if hook is not None else None


def transition_targets(observers: tuple[Observer, ...]
                       ) -> tuple[tuple[Observer, Moved | None], ...]:
    """Each observer with its ``_moved`` hook, or ``None`` (it is given the event)."""
    return tuple((obs, field_hook(obs, "on_transition")) for obs in observers)


class CallTargets(dict[str, tuple[tuple[Observer, "Called | None"], ...]]):
    """By call kind, the observers that want it (:attr:`Observer.call_kinds`), each with
    its ``_called`` hook or ``None``; a kind is looked at on first sight. A kind nobody
    wants costs the manager one look-up, and no event."""

    def __init__(self, observers: tuple[Observer, ...]) -> None:
        super().__init__()
        self.observers = observers

    def __missing__(self, kind: str) -> tuple[tuple[Observer, Called | None], ...]:
        targets = self[kind] = tuple(
            (obs, field_hook(obs, "on_call")) for obs in self.observers
            if obs.call_kinds is None or kind in obs.call_kinds)
        return targets


def fsynced(self: ExecutionManager, seconds: float) -> None:
    """A journal fsync's time, for the observers. Told from inside the journal's write:
    a failing observer is only noted here, and reported at the end of the call."""
    event: CallEvent | None = None
    for obs, called in self._call_targets["journal_fsync"]:
        try:
            if called is not None:
                called("journal_fsync", None, 0, 0.0, seconds, "ok", None)
                continue
            if event is None:
                event = CallEvent("journal_fsync", None, 0, 0.0, seconds, "ok")
            obs.on_call(event)
        except Exception as exc:
            self._late_observer_errors.append((obs, exc))


def notify_transition(self: ExecutionManager, f: Flight, source: str, dest: str, trigger: str,
                       data: Mapping[str, Any]) -> None:
    block = f.block
    if data:
        error_code, reason, halts = data.get("error_code"), data.get("reason"), bool(
            data.get("halts"))
    else:
        error_code = reason = None
        halts = False
    event: TransitionEvent | None = None
    for obs, moved in self._transition_targets:
        try:
            if moved is not None:  # the fields as arguments: no event built
                moved(block.block_id, block.action, source, dest, trigger, f.attempt,
                      f.entered_at, error_code, reason, halts, f.recovered)
                continue
            if event is None:  # one event for every observer that takes events
                # positional arguments: an attrs init by keyword costs twice as much
                event = TransitionEvent(block.block_id, block.action, source, dest, trigger,
                                        f.attempt, f.entered_at, error_code, reason, halts,
                                        f.recovered)
            obs.on_transition(event)
        except Exception as exc:
            self._observer_failed(obs, exc)


def call_done(self: ExecutionManager, kind: str, f: Flight | None, t0: float, outcome: str,
               exc: BaseException | None = None, *, duration: float | None = None) -> None:
    targets = self._call_targets[kind]
    if not targets:
        return  # no observer wants this kind: nothing built
    block_id = f.block.block_id if f is not None else None
    attempt = f.attempt if f is not None else 0
    seconds = (self._clock() - t0) if duration is None else duration
    error_type = type_name(exc) if exc is not None else None
    event: CallEvent | None = None
    for obs, called in targets:
        try:
            if called is not None:
                called(kind, block_id, attempt, t0, seconds, outcome, error_type)
                continue
            if event is None:
                event = CallEvent(kind, block_id, attempt, t0, seconds, outcome, error_type)
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
            "EXEC-016", self._redact(f"observer {type_name(obs)} raised "
                                     f"{describe_exception(exc)}{again}"),
            original_exception=ScrubbedException.of(exc, self._redact)))
    finally:
        self._observer_failing = False
