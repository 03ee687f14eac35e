"""Watch a manager the way operators watch systems: traces, metrics, or your own observer.

Give observers to the manager when you build it::

    ExecutionManager(..., observers=[OpenTelemetryObserver(), PrometheusObserver()])

:class:`OpenTelemetryObserver` needs ``pip install "fsm-exec[otel]"`` and
:class:`PrometheusObserver` ``pip install "fsm-exec[prometheus]"``; this module imports
without either. Many managers in one process share one :class:`PrometheusMetrics` (a
``manager`` label on every series): ``observers=[metrics.observer()]`` for each.

For another system (StatsD, Datadog), subclass :class:`Observer` and override
``on_transition``, ``on_call`` and ``on_event``: they receive the frozen events below, on the
thread that drives the manager. An observer that raises is reported (``EXEC-016``) and never
changes what the manager does.
"""

from fsm_exec.observe.otel import OpenTelemetryObserver
from fsm_exec.observe.prometheus import RETRY_REASONS, PrometheusMetrics, PrometheusObserver
from fsm_exec.observe.seam import (
    CALL_KINDS,
    EVENT_KINDS,
    CallEvent,
    ManagerEvent,
    Observer,
    TransitionEvent,
)

__all__ = [
    "CALL_KINDS",
    "EVENT_KINDS",
    "RETRY_REASONS",
    "CallEvent",
    "ManagerEvent",
    "Observer",
    "OpenTelemetryObserver",
    "PrometheusMetrics",
    "PrometheusObserver",
    "TransitionEvent",
]
