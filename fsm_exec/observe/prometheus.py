"""Prometheus metrics of a manager (the ``prometheus`` extra: prometheus_client).

Names and types follow the Prometheus naming guide (base units, ``_total`` counters,
``_seconds``, ``_timestamp_seconds`` for Unix time, ``_info`` with the build's labels). No
label ever holds a ``block_id`` or any other unbounded value: every label value is from a
fixed set (outcomes, states, triggers, error codes, retry reasons, call kinds).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import ERROR_CODES, InvalidArgumentError
from fsm_exec.core.lifecycle import TABLE_HASH, TERMINAL_STATES, TRANSITIONS, BlockState, Trigger
from fsm_exec.observe.extra import OneManager, missing_extra
from fsm_exec.observe.seam import CallEvent, ManagerEvent, Observer, TransitionEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from fsm_exec.manager.manager import ExecutionManager

_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_QUEUED, _RETRYING, _SUCCESS, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.RETRYING, BlockState.SUCCESS,
                     BlockState.CANCELLED))
_RECONCILIATION_TIMEOUT, _CANCEL = str(Trigger.RECONCILIATION_TIMEOUT), str(Trigger.CANCEL)
#: Why a block went to ``retrying``: how its route call ended, ``in_doubt`` (the outcome of a
#: call cut short by a restart or an interrupt), or ``reconciliation_timeout``.
RETRY_REASONS: tuple[str, ...] = ("timeout", "rejected", "error", "no_deltas", "in_doubt",
                                  "reconciliation_timeout")
OUTCOMES: tuple[str, ...] = tuple(sorted(_TERMINAL))
#: States a block can be seen entering and leaving in this process (queued is left
#: without this observer knowing when the block was queued).
TIMED_STATES: tuple[str, ...] = tuple(
    str(s) for s in BlockState if str(s) not in _TERMINAL and s is not BlockState.QUEUED)
_VENUE_CALLS = frozenset({"route", "query"})

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                     60.0, 120.0, 300.0, 600.0, 1800.0)
_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0, 60.0)
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0)


class _Flying:
    """The block in flight as this observer knows it (swapped whole, read by scrapes)."""

    __slots__ = ("block_id", "since", "started", "entered")

    def __init__(self, block_id: str, since: float, started: float | None) -> None:
        self.block_id = block_id
        self.since = since  # manager clock: since when this process knows it in flight
        self.started = started  # when it entered routing; None if restored after a restart
        self.entered = started  # when it entered its current state, if known


class PrometheusObserver(OneManager, Observer):
    """Exports a manager's counters, gauges and histograms to a Prometheus registry.

    ``registry`` defaults to ``prometheus_client.REGISTRY``; ``namespace`` prefixes every
    name (``fsm_exec_blocks_total``, ...). Give each manager its own observer, and each
    observer its own registry or namespace. Gauges are read from the manager's consistent
    status snapshot when scraped, from the scrape's thread. Expose the registry with
    ``prometheus_client.start_http_server(port, registry=registry)`` or your own exporter.
    """

    manager_events = frozenset({"error", "cancelled", "recovered"})

    def __init__(self, registry: CollectorRegistry | None = None,
                 namespace: str = "fsm_exec") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise missing_extra(type(self).__name__, "prometheus", "prometheus_client") from exc
        from fsm_exec._version import __version__

        reg = prom.REGISTRY if registry is None else registry
        self.registry: CollectorRegistry = reg
        self.namespace = namespace
        # The hot path counts in plain dicts and lists (a dict increment, a bisect: no
        # lock, no validation, as many as the call makes); _Metrics turns them into the
        # counters and histograms at scrape time. Every series exists from the start
        # (rate() needs two points).
        created = time.time()
        self._by_outcome = dict.fromkeys(OUTCOMES, 0)
        self._by_edge = dict.fromkeys(((str(e.source), str(e.dest), str(e.trigger))
                                       for e in TRANSITIONS), 0)
        self._by_code = dict.fromkeys(ERROR_CODES, 0)
        self._by_reason = dict.fromkeys(RETRY_REASONS, 0)
        self._block_duration = _Hist(_DURATION_BUCKETS)
        self._in_state = {st: _Hist(_DURATION_BUCKETS) for st in TIMED_STATES}
        self._by_call: dict[tuple[str, str], _Hist] = {}
        self._fsync_duration = _Hist(_FSYNC_BUCKETS)
        build = prom.Info("build", "The fsm_exec version and the fingerprint of its "
                          "lifecycle table.", namespace=namespace, registry=None)
        build.info({"version": __version__, "lifecycle_hash": TABLE_HASH})
        # Registered together: a registry that already holds these names (another
        # observer's) is refused whole, with nothing left half-registered.
        _register_all(reg, namespace, [_Metrics(self, created), build, _StatusCollector(self)])
        self._flying: _Flying | None = None
        self._last_route: tuple[str, int, str] | None = None
        self._last_success: float | None = None

    # ----------------------------------------------------------------------- the seam
    def attach(self, manager: ExecutionManager) -> None:
        self._follow(manager)
        self._flying = None
        self._last_route = None

    def on_transition(self, event: TransitionEvent) -> None:
        source, dest = event.source, event.dest
        key = (source, dest, event.trigger)
        edges = self._by_edge
        edges[key] = edges.get(key, 0) + 1
        fl = self._flying
        if source == _QUEUED:
            fl = self._flying = _Flying(event.block_id, event.at, event.at)
        elif fl is None or fl.block_id != event.block_id:  # restored: since when, unknown
            fl = self._flying = _Flying(event.block_id, event.at, None)
        elif fl.entered is not None:
            self._in_state[source].observe(event.at - fl.entered)
        fl.entered = event.at
        if dest == _RETRYING:
            self._by_reason[self._why_retrying(event)] += 1
        elif dest in _TERMINAL:
            self._by_outcome[dest] += 1
            if fl.started is not None:
                self._block_duration.observe(event.at - fl.started)
            if dest == _SUCCESS:
                self._last_success = time.time()
            self._flying = None

    def on_call(self, event: CallEvent) -> None:
        kind = event.kind
        if kind in _VENUE_CALLS:
            key = (kind, event.outcome)
            hist = self._by_call.get(key)
            if hist is None:  # outcomes are a small fixed set: a series on first sight
                hist = self._by_call[key] = _Hist(_CALL_BUCKETS)
            hist.observe(event.duration)
            if kind == "route" and event.block_id is not None:
                self._last_route = (event.block_id, event.attempt, event.outcome)
        elif kind == "journal_fsync":
            self._fsync_duration.observe(event.duration)

    def on_event(self, event: ManagerEvent) -> None:
        kind, data = event.kind, event.data
        if kind == "error":
            code = str(data.get("error_code"))
            self._by_code[code] = self._by_code.get(code, 0) + 1
        elif kind == "cancelled":
            n = int(data.get("count", 0))
            self._by_outcome[_CANCELLED] += n
            self._by_edge[_QUEUED, _CANCELLED, _CANCEL] += n
        elif kind == "recovered" and data.get("in_doubt") is not None:
            self._flying = _Flying(str(data["in_doubt"]), event.at, None)

    def _why_retrying(self, event: TransitionEvent) -> str:
        if event.trigger == _RECONCILIATION_TIMEOUT:
            return "reconciliation_timeout"
        last = self._last_route
        if last is not None and last[:2] == (event.block_id, event.attempt):
            return last[2] if last[2] in RETRY_REASONS else "error"
        return "in_doubt"  # no route call in this process: cut short by a restart


class _Hist:
    """A histogram's buckets as plain numbers (``prometheus_client``'s ``le`` rule: a
    value counts in the first bucket whose bound it does not exceed)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        from prometheus_client.utils import floatToGoString

        out, total = [], 0
        for bound, n in zip((*self.bounds, math.inf), list(self.counts), strict=True):
            total += n
            out.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
        return out


class _Metrics:
    """The counters and histograms, built from the observer's numbers at scrape time."""

    def __init__(self, owner: PrometheusObserver, created: float) -> None:
        self._owner, self._created = owner, created
        ns = owner.namespace
        self._name = (lambda n: f"{ns}_{n}") if ns else (lambda n: n)

    def describe(self) -> Iterator[Metric]:
        return self._families(values=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(values=True)

    def _families(self, *, values: bool) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        o, name, created = self._owner, self._name, self._created
        for metric, doc, labels, counts in (
                ("blocks", "Blocks that reached a terminal state, by outcome.", ["outcome"],
                 o._by_outcome),
                ("transitions", "Block lifecycle transitions.", ["source", "dest", "trigger"],
                 o._by_edge),
                ("errors", "Errors the manager recorded, by error code (EXEC-NNN).",
                 ["code"], o._by_code),
                ("retries", "Times a block went to retrying, by why.", ["reason"],
                 o._by_reason)):
            family = CounterMetricFamily(name(metric), doc, labels=labels)
            for key, n in (list(counts.items()) if values else ()):
                label_values: list[str] = list(key) if isinstance(key, tuple) else [str(key)]
                family.add_metric(label_values, n, created=created)
            yield family
        for metric, doc, labels, hists in (
                ("block_duration_seconds", "Time from routing to a terminal state, for "
                 "blocks started in this process (manager clock).", [],
                 {(): o._block_duration}),
                ("state_duration_seconds", "Time a block spent in a state before leaving it "
                 "(manager clock).", ["state"], {(k,): v for k, v in o._in_state.items()}),
                ("venue_call_duration_seconds", "Venue calls (route, query_execution), by "
                 "how they ended (manager clock; an abandoned call counts the time waited).",
                 ["call", "outcome"], o._by_call),
                ("journal_fsync_duration_seconds", "Journal fsyncs (real monotonic clock).",
                 [], {(): o._fsync_duration})):
            hist_family = HistogramMetricFamily(name(metric), doc, labels=labels)
            for key, h in (list(hists.items()) if values else ()):
                hist_family.add_metric(list(key), h.buckets(), h.sum, created)
            yield hist_family


class _StatusCollector:
    """The gauges, read from the manager's status snapshot at scrape time."""

    def __init__(self, owner: PrometheusObserver) -> None:
        self._owner = owner
        ns = owner.namespace
        self._names = [f"{ns}_{n}" if ns else n for n in (
            "queue_blocks", "halted", "block_in_flight_age_seconds",
            "last_success_timestamp_seconds")]

    def describe(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        for name in self._names:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        owner = self._owner
        em = owner._manager
        queue, halted, age = 0.0, 0.0, 0.0
        if em is not None:
            status = em.get_execution_status()  # no lock of ours held: see the manager's
            queue = float(status["queue_length"])
            halted = 1.0 if status["halted"] else 0.0
            fl = owner._flying
            current = status["current_block"]
            if current is not None and fl is not None and fl.block_id == current:
                age = max(0.0, em._clock() - fl.since)
        q, h, a, s = self._names
        yield GaugeMetricFamily(q, "Blocks queued, not started.", queue)
        yield GaugeMetricFamily(h, "1 while the manager is halted (positions in doubt: "
                                "nothing starts until a manual update), else 0.", halted)
        yield GaugeMetricFamily(a, "How long the block in flight has been in flight "
                                "(manager clock; 0 when none is).", age)
        last = GaugeMetricFamily(s, "Unix time of the last block success in this process "
                                 "(absent until the first).")
        if owner._last_success is not None:
            last.add_metric([], owner._last_success)
        yield last


def _register_all(reg: CollectorRegistry, namespace: str, collectors: list[Any]) -> None:
    """Register every collector, or none: a name already in ``reg`` (another
    :class:`PrometheusObserver` with this namespace, one per manager on the default
    registry, say) is an :class:`~fsm_exec.InvalidArgumentError` saying what to do, not
    prometheus_client's ``DuplicateTimeseries``."""
    done: list[Any] = []
    for c in collectors:
        try:
            reg.register(c)
        except ValueError as exc:
            for d in done:
                reg.unregister(d)
            raise InvalidArgumentError(
                f"PrometheusObserver: the registry already holds metrics named "
                f"{namespace}_* ({exc}); another PrometheusObserver uses this registry and "
                "namespace. Give each manager's observer its own registry or namespace "
                "(reopen() hands an observer on to the replacement: do not build another)"
            ) from None
        done.append(c)
