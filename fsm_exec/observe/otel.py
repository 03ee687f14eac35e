"""OpenTelemetry traces of the blocks a manager runs (the ``otel`` extra: opentelemetry-api).

The span tree of one block::

    <the caller's current span, if any>        e.g. the strategy step that called update_state
    └── fsm_exec.block <action>                 queued -> routing, to the terminal state
        ├── fsm_exec.attempt                    one per attempt (fsm_exec.attempt = 1, 2, ...)
        │   ├── fsm_exec.route                  a venue call
        │   ├── fsm_exec.hand_off               the deltas to the position handler
        │   └── fsm_exec.reconciliation_wait    polling reconciliation
        └── fsm_exec.attempt                    (attempt 2: fsm_exec.query, ...)

Every transition is a span event ``fsm_exec.transition`` on the block span. Attributes are
ids, states, codes and counts only (never instructions, deltas, reasons or config).

What costs is asked for: by default a block is its one span with its transitions as events
(a collaborator call that failed is an event ``fsm_exec.call`` too); ``calls=True`` adds the
attempt and call spans of the tree above. ``sample`` traces that fraction of the blocks
(chosen by ``block_id``, so a block restored after a restart is traced or not as before);
a block span the tracer provider's own sampler drops (not recording) gets nothing more.

Span times: spans are stamped in wall-clock time, as the rest of a trace is. When the manager
runs on the real monotonic clock (``clock=time.monotonic``, the default), the events' clock
values are converted to wall time, so a call span starts when the call started and lasts as
long as it did. Any other clock (a fake one in tests, a simulated one) says nothing about wall
time, so the spans are stamped when the observer hears of them (a call span is then a point
at the moment it ended). Either way the manager-clock durations are the ``fsm_exec.duration_s``
attributes, which are what tests and alerts should read.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import InvalidArgumentError
from fsm_exec.core.lifecycle import TERMINAL_STATES, BlockState
from fsm_exec.observe.extra import OneManager, missing_extra
from fsm_exec.observe.seam import (
    CALL_KINDS,
    FieldsObserver,
    ManagerEvent,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider

    from fsm_exec.manager.manager import ExecutionManager

_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_FAILED = str(BlockState.FAILED)
#: Call outcomes that are not a failure of the call (others set the span's status to ERROR).
_FINE: dict[str, frozenset[str]] = {
    "route": frozenset({"ok"}),
    "query": frozenset({"executed", "not_executed"}),
    "hand_off": frozenset({"ok"}),
    "reconciliation_wait": frozenset({"success"}),
}
_OK = frozenset({"ok"})

Attributes = dict[str, str | bool | int | float]


class _Flight:
    """The spans of the block in flight."""

    __slots__ = ("block_id", "span", "started", "attempt", "attempt_span", "attempt_started")

    def __init__(self, block_id: str, span: Span | None, started: float) -> None:
        self.block_id = block_id
        self.span = span
        self.started = started  # manager clock
        self.attempt = 0
        self.attempt_span: Span | None = None
        self.attempt_started = started


class OpenTelemetryObserver(OneManager, FieldsObserver):
    """Traces each block as a span, its attempts and collaborator calls as child spans.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace``). Give it to
    the manager: ``ExecutionManager(..., observers=[OpenTelemetryObserver()])``. The span of
    a block starts at ``queued -> routing``, under the caller's current span, and ends at
    the terminal state: status ``ERROR`` with the error code for ``failed``, left unset
    otherwise (the OpenTelemetry rule for instrumentation); ``fsm_exec.state`` says which
    end. A cancelled block never started, so it has no span. A span in flight when the
    process dies is never ended (the journal remains the record); the block, settled after
    a restart, gets a new span with ``fsm_exec.recovered = true``.

    ``calls``: also the attempt spans and a span per collaborator call (by default a call
    that failed is only an event ``fsm_exec.call`` on the block span). ``sample``: the
    fraction of blocks traced (above 0, at most 1), chosen by ``block_id``.
    """

    manager_events = frozenset({"recovered"})
    call_kinds = frozenset(CALL_KINDS) - {"journal_fsync"}  # calls of a block only

    def __init__(self, tracer_provider: TracerProvider | None = None, *,
                 calls: bool = False, sample: float = 1.0) -> None:
        if type(calls) is not bool:
            raise InvalidArgumentError(f"OpenTelemetryObserver: calls must be True or False, "
                                       f"got {calls!r}")
        if type(sample) not in (int, float) or not 0 < sample <= 1:
            raise InvalidArgumentError(f"OpenTelemetryObserver: sample must be a fraction "
                                       f"of the blocks, above 0 and at most 1, got {sample!r}")
        self.calls, self.sample = calls, float(sample)
        self._cut = int(self.sample * 2**32)  # crc32(block_id) below this: traced
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise missing_extra(type(self).__name__, "otel", "opentelemetry-api") from exc
        from fsm_exec._version import __version__

        self._tracer: Tracer = trace.get_tracer("fsm_exec", __version__,
                                                tracer_provider=tracer_provider)
        self._in_context: Callable[[Span], Context] = trace.set_span_in_context
        self._error: StatusCode = trace.StatusCode.ERROR
        self._flight: _Flight | None = None
        self._pending: tuple[str, str, str] | None = None  # recovered: id, action, state
        self._mode = ""
        self._real_time = False

    # ----------------------------------------------------------------------- the seam
    def attach(self, manager: ExecutionManager) -> None:
        self._follow(manager)
        self._flight = None  # a span left in flight by a retired manager is never ended
        self._pending = None
        self._mode = manager.execution_mode
        self._real_time = manager._clock is time.monotonic

    def on_event(self, event: ManagerEvent) -> None:
        if event.kind == "recovered":
            data = event.data
            in_doubt = data.get("in_doubt")
            self._pending = ((in_doubt, str(data.get("action")),
                              str(data.get("in_doubt_state")))
                             if in_doubt is not None else None)

    def _traced(self, block_id: str) -> bool:
        return self._cut > 0xFFFFFFFF or zlib.crc32(block_id.encode()) < self._cut

    def _moved(self, block_id: str, action: str, source: str, dest: str, trigger: str,
               attempt: int, at: float, error_code: str | None, reason: str | None,
               halts: bool, recovered: bool) -> None:
        """``on_transition``, the event's fields as arguments (the manager calls this one:
        it builds no event for this observer)."""
        fl = self._flight
        if fl is None or fl.block_id != block_id:
            if not self._traced(block_id):
                return
            fl = self._open(block_id, action, at, source if recovered else None)
        span = fl.span
        if span is None:  # dropped by the provider's sampler
            if dest in _TERMINAL:
                self._flight = None
            return
        if self.calls:
            self._roll(fl, attempt, at)
        attrs: Attributes = {"fsm_exec.source": source, "fsm_exec.dest": dest,
                             "fsm_exec.trigger": trigger, "fsm_exec.attempt": attempt}
        if error_code is not None:
            attrs["fsm_exec.error_code"] = error_code
            attrs["fsm_exec.halts"] = halts
        span.add_event("fsm_exec.transition", attrs, timestamp=self._ns(at))
        if dest in _TERMINAL:
            self._close(fl, dest, attempt, at, error_code, halts)

    def _called(self, kind: str, block_id: str | None, attempt: int, started: float,
                duration: float, outcome: str, error_type: str | None) -> None:
        """``on_call``, the event's fields as arguments (see :meth:`_moved`)."""
        if block_id is None or kind == "journal_fsync":
            return  # not about a block: metrics only
        fl = self._flight
        if fl is None or fl.block_id != block_id:
            pending = self._pending
            if pending is None or pending[0] != block_id:
                return  # not a block this observer saw start or recover
            if not self._traced(block_id):
                return
            fl = self._open(block_id, pending[1], started, pending[2])
        if fl.span is None:  # dropped by the provider's sampler
            return
        failed = outcome not in _FINE.get(kind, _OK)
        if not self.calls:  # the block span only: a call that failed is an event on it
            if failed:
                fl.span.add_event("fsm_exec.call", {
                    "fsm_exec.block_id": block_id, "fsm_exec.attempt": attempt,
                    "fsm_exec.outcome": outcome, "fsm_exec.duration_s": duration,
                    "fsm_exec.call": kind, "error.type": error_type or outcome},
                    timestamp=self._ns(started + duration))
            return
        self._roll(fl, attempt, started)
        assert fl.attempt_span is not None
        span = self._tracer.start_span(f"fsm_exec.{kind}",
                                       context=self._in_context(fl.attempt_span),
                                       attributes={"fsm_exec.block_id": block_id,
                                                   "fsm_exec.attempt": attempt,
                                                   "fsm_exec.outcome": outcome,
                                                   "fsm_exec.duration_s": duration},
                                       start_time=self._ns(started))
        if failed:
            span.set_attribute("error.type", error_type or outcome)
            span.set_status(self._error, outcome)
        span.end(end_time=self._ns(started + duration))

    # ---------------------------------------------------------------------- the spans
    def _ns(self, at: float) -> int | None:
        """Wall-clock nanoseconds for a manager-clock value, when that is sound (see the
        module's docstring); ``None`` lets the SDK take the current time."""
        if not self._real_time:
            return None
        return time.time_ns() - round((time.monotonic() - at) * 1e9)

    def _open(self, block_id: str, action: str, at: float,
              recovered_state: str | None) -> _Flight:
        attrs: Attributes = {"fsm_exec.block_id": block_id, "fsm_exec.action": action,
                             "fsm_exec.execution_mode": self._mode,
                             "fsm_exec.recovered": recovered_state is not None}
        if recovered_state is not None:
            attrs["fsm_exec.recovered_state"] = recovered_state
            self._pending = None
        span: Span | None = self._tracer.start_span(
            f"fsm_exec.block {action}", attributes=attrs, start_time=self._ns(at))
        if span is not None and not span.is_recording():
            span = None  # sampled out by the provider: nothing more for this block
        fl = self._flight = _Flight(block_id, span, at)
        return fl

    def _roll(self, fl: _Flight, attempt: int, at: float) -> None:
        """Make ``attempt`` the attempt span in progress."""
        assert fl.span is not None
        if fl.attempt_span is not None and attempt <= fl.attempt:
            return
        self._end_attempt(fl, at)
        fl.attempt, fl.attempt_started = attempt, at
        fl.attempt_span = self._tracer.start_span(
            "fsm_exec.attempt", context=self._in_context(fl.span),
            attributes={"fsm_exec.block_id": fl.block_id, "fsm_exec.attempt": attempt},
            start_time=self._ns(at))

    def _end_attempt(self, fl: _Flight, at: float, code: str | None = None) -> None:
        span = fl.attempt_span
        if span is None:
            return
        span.set_attribute("fsm_exec.duration_s", at - fl.attempt_started)
        if code is not None:
            span.set_attribute("fsm_exec.error_code", code)
            span.set_status(self._error, code)
        span.end(end_time=self._ns(at))

    def _close(self, fl: _Flight, dest: str, attempt: int, at: float, error_code: str | None,
               halts: bool) -> None:
        span = fl.span
        assert span is not None
        failed = dest == _FAILED
        code = (error_code or "unknown") if failed else None
        self._end_attempt(fl, at, code)
        attrs: dict[str, Any] = {"fsm_exec.state": dest, "fsm_exec.attempts": attempt,
                                 "fsm_exec.duration_s": at - fl.started}
        if code is not None:
            attrs.update({"fsm_exec.error_code": code, "fsm_exec.halts": halts,
                          "error.type": code})
            span.set_status(self._error, code)
        span.set_attributes(attrs)
        span.end(end_time=self._ns(at))
        self._flight = None
