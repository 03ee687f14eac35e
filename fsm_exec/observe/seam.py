"""The observer seam: what the manager reports about its work, to whoever listens.

Transitions and collaborator calls are reported from one place in the manager, through the
small protocol below; :mod:`fsm_exec.observe` builds OpenTelemetry and Prometheus observers on
it, and users implement it for their own systems (StatsD, Datadog). With no observer the
manager builds none of these events. An observer that raises is reported (an ``error`` event
``EXEC-016``, health degraded) and never changes what the manager does. The journal is not an
observer: it is written first, and a journal that cannot write halts the manager.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


@attrs.frozen(slots=True)
class TransitionEvent:
    """A block moved: ``source --trigger--> dest`` at ``attempt``.

    ``at`` is the manager's injected clock (monotonic seconds). ``error_code`` is set on
    ``fail``; ``halts`` when that failure halts the manager; ``recovered`` when the block was
    restored from a journal after a restart.
    """

    block_id: str
    action: str
    source: str
    dest: str
    trigger: str
    attempt: int
    at: float
    error_code: str | None = None
    reason: str | None = None
    halts: bool = False
    recovered: bool = False


#: Kinds of :class:`CallEvent`.
CALL_KINDS: tuple[str, ...] = ("route", "query", "hand_off", "reconciliation_wait",
                               "market_data", "journal_fsync")


@attrs.frozen(slots=True)
class CallEvent:
    """A collaborator call finished (or was abandoned): ``kind`` is one of
    :data:`CALL_KINDS`; ``started`` and ``duration`` are on the manager's clock (seconds;
    ``journal_fsync`` is timed on the real monotonic clock). ``outcome`` is ``ok``, or what
    went wrong (``error``, ``timeout``, ``rejected``, ``not_executed``, ``failed``, ...)."""

    kind: str
    block_id: str | None
    attempt: int
    started: float
    duration: float
    outcome: str
    error_type: str | None = None


#: Kinds of :class:`ManagerEvent`.
EVENT_KINDS: tuple[str, ...] = ("initialized", "accepted", "cancelled", "halted", "resumed",
                                "error", "recovered", "update")


@attrs.frozen(slots=True)
class ManagerEvent:
    """Something about the manager rather than one move: ``kind`` is one of
    :data:`EVENT_KINDS`; ``data`` holds ids, counts and codes, never payloads.

    ``data`` by kind: ``initialized``: ``execution_mode``; ``accepted``: ``count``,
    ``queue_length``; ``cancelled``: ``count``, ``reason`` (the operator's words: not a
    label); ``halted``: ``reason`` (an error code), ``block_id``; ``resumed``: ``reason``;
    ``error``: ``error_code``, ``block_id``; ``recovered``: ``in_doubt`` (a block id or
    ``None``), ``action``, ``in_doubt_state``, ``resolution``, ``queued``, ``halted``;
    ``update``: ``trigger_source``, ``duration_s``, ``queue_length``, ``halted``.
    """

    kind: str
    at: float
    data: Mapping[str, Any] = attrs.field(factory=dict)


_Method = TypeVar("_Method", bound=Callable[..., None])


def forwards_to(hook: str) -> Callable[[_Method], _Method]:
    """Marks an observer's ``on_transition`` or ``on_call`` as one that only forwards the
    event's fields, in their order, to its method ``hook``: the manager then calls the hook
    itself and builds no event for that observer (the package's own observers). A subclass
    that overrides the marked method, or an observer given its own, gets events."""

    def mark(method: _Method) -> _Method:
        method._fsm_exec_forwards_to = hook  # type: ignore[attr-defined]
        return method
    return mark


class Observer:
    """Base class for observers: override the methods you need; each is a no-op here.

    Methods are called on the thread that drives the manager (``on_call`` for
    ``journal_fsync`` on the thread that wrote). Keep them quick: they run on the hot path.

    ``manager_events``: the :data:`EVENT_KINDS` this observer's ``on_event`` wants, or
    ``None`` (the default) for all of them. The manager builds no :class:`ManagerEvent` of
    a kind no observer wants (most calls send ``accepted`` and ``update``: events that
    cost the hot path even when ignored). ``call_kinds``: likewise the :data:`CALL_KINDS`
    its ``on_call`` wants (every block has a ``route`` and a ``hand_off`` call).

    (The package's own observers also take each event's fields as arguments, in a private
    method their ``on_transition`` and ``on_call`` only forward to (:func:`forwards_to`):
    for them the manager builds no event. A subclass that overrides ``on_transition`` or
    ``on_call`` gets its events as any observer does.)
    """

    manager_events: frozenset[str] | None = None
    call_kinds: frozenset[str] | None = None

    def attach(self, manager: ExecutionManager) -> None:
        """Called once, when the manager is built (read its status from here if needed)."""

    def on_transition(self, event: TransitionEvent) -> None:
        """A block moved."""

    def on_call(self, event: CallEvent) -> None:
        """A collaborator call finished."""

    def on_event(self, event: ManagerEvent) -> None:
        """Something happened to the manager."""


class FieldsObserver(Observer):
    """An observer that takes each transition's and call's fields as arguments, in
    :meth:`_moved` and :meth:`_called` (the package's own observers): its ``on_transition``
    and ``on_call`` only forward an event's fields there (:func:`forwards_to`), so the
    manager calls those two itself and builds no event for it."""

    @forwards_to("_moved")
    def on_transition(self, event: TransitionEvent) -> None:
        self._moved(event.block_id, event.action, event.source, event.dest, event.trigger,
                    event.attempt, event.at, event.error_code, event.reason, event.halts,
                    event.recovered)

    def _moved(self, block_id: str, action: str, source: str, dest: str, trigger: str,
               attempt: int, at: float, error_code: str | None, reason: str | None,
               halts: bool, recovered: bool) -> None:
        """``on_transition``, the event's fields as arguments."""

    @forwards_to("_called")
    def on_call(self, event: CallEvent) -> None:
        self._called(event.kind, event.block_id, event.attempt, event.started,
                     event.duration, event.outcome, event.error_type)

    def _called(self, kind: str, block_id: str | None, attempt: int, started: float,
                duration: float, outcome: str, error_type: str | None) -> None:
        """``on_call``, the event's fields as arguments."""
