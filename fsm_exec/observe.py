"""Watch a manager the way operators watch systems: traces, metrics, or your own observer.

Give observers to the manager when you build it::

    ExecutionManager(..., observers=[OpenTelemetryObserver(), PrometheusObserver()])

:class:`OpenTelemetryObserver` needs ``pip install "fsm-exec[otel]"`` and
:class:`PrometheusObserver` ``pip install "fsm-exec[prometheus]"``; this module imports
without either. For another system (StatsD, Datadog), subclass :class:`Observer` and override
``on_transition``, ``on_call`` and ``on_event``: they receive the frozen events below, on the
thread that drives the manager. An observer that raises is reported (``EXEC-016``) and never
changes what the manager does.
"""

from ._observe import (
    CALL_KINDS,
    EVENT_KINDS,
    CallEvent,
    ManagerEvent,
    Observer,
    TransitionEvent,
)
from ._otel import OpenTelemetryObserver
from ._prom import RETRY_REASONS, PrometheusObserver

__all__ = [
    "CALL_KINDS",
    "EVENT_KINDS",
    "RETRY_REASONS",
    "CallEvent",
    "ManagerEvent",
    "Observer",
    "OpenTelemetryObserver",
    "PrometheusObserver",
    "TransitionEvent",
]

# Public classes present themselves under this module (tracebacks, reprs).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("fsm_exec._"):
        _obj.__module__ = __name__
del _name, _obj
