"""Prometheus metrics of a manager (the ``prometheus`` extra: prometheus_client).

Names and types follow the Prometheus naming guide (base units, ``_total`` counters,
``_seconds``, ``_timestamp_seconds`` for Unix time, ``_info`` with the build's labels). No
label ever holds a ``block_id`` or any other unbounded value: every label value is from a
fixed set (outcomes, states, triggers, error codes, retry reasons, call kinds).
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import ERROR_CODES, InvalidArgumentError
from fsm_exec.core.lifecycle import TABLE_HASH, TERMINAL_STATES, TRANSITIONS, BlockState, Trigger
from fsm_exec.observe.extra import OneManager, missing_extra
from fsm_exec.observe.seam import (
    FieldsObserver,
    ManagerEvent,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from fsm_exec.manager.manager import ExecutionManager

_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_QUEUED, _RETRYING, _SUCCESS, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.RETRYING, BlockState.SUCCESS,
                     BlockState.CANCELLED))
_RECONCILIATION_TIMEOUT, _CANCEL = str(Trigger.RECONCILIATION_TIMEOUT), str(Trigger.CANCEL)
_CANCELS = (_QUEUED, _CANCELLED, _CANCEL)  # the edge on_event counts (any thread)
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


class _Tally:
    """The value of one series that only the thread driving the manager writes, in place of
    prometheus_client's own (a float behind a lock): the hot path adds to it without a lock
    or prometheus_client's checks, and a scrape reads it whole (one float, under the GIL),
    so it is exact whenever it is read. Same methods as ``prometheus_client.values``'s."""

    __slots__ = ("v", "_exemplar")
    _multiprocess = False

    def __init__(self, value: float) -> None:
        self.v = value
        self._exemplar: Any = None

    def inc(self, amount: float = 1.0) -> None:
        self.v += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self.v = value

    def get(self) -> float:
        return self.v

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get_exemplar(self) -> Any:
        return self._exemplar


def _in_process(prom: Any) -> bool:
    """prometheus_client keeps values in this process (not its multiprocess mode, whose
    values live in files): only then may a series' value be a :class:`_Tally`."""
    values = getattr(prom, "values", None)
    return getattr(values, "ValueClass", None) is getattr(values, "MutexValue", object())


def _tally(value: Any) -> _Tally:
    return value if type(value) is _Tally else _Tally(value.get())


def _inc(child: Any, fast: bool) -> Callable[..., None]:
    """``inc`` of one counter series the driving thread alone writes: a :class:`_Tally`'s
    when ``fast`` (and the series is a plain in-process one), else prometheus_client's."""
    value = getattr(child, "_value", None)
    if not fast or value is None:
        return child.inc  # type: ignore[no-any-return]
    child._value = tally = _tally(value)
    return tally.inc


class _Observe:
    """``observe`` of one histogram series the driving thread alone writes, on
    :class:`_Tally` values: the bucket found by bisection, as prometheus_client counts it
    (the first bound at or above the value; a NaN counts in the sum only)."""

    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, child: Any) -> None:
        self.bounds = tuple(child._upper_bounds)
        child._buckets[:] = self.buckets = [_tally(b) for b in child._buckets]
        child._sum = self.sum = _tally(child._sum)

    def observe(self, amount: float) -> None:
        self.sum.v += amount
        if amount == amount:  # not NaN (no bound is at or above it)
            self.buckets[bisect_left(self.bounds, amount)].v += 1.0


def _observe(child: Any, fast: bool) -> Callable[[float], None]:
    if fast and all(hasattr(child, a) for a in ("_upper_bounds", "_buckets", "_sum")):
        return _Observe(child).observe  # a bound method: calls quicker than __call__
    return child.observe  # type: ignore[no-any-return]


class _Flying:
    """The block in flight as this observer knows it (swapped whole, read by scrapes)."""

    __slots__ = ("block_id", "since", "started", "entered")

    def __init__(self, block_id: str, since: float, started: float | None) -> None:
        self.block_id = block_id
        self.since = since  # manager clock: since when this process knows it in flight
        self.started = started  # when it entered routing; None if restored after a restart
        self.entered = started  # when it entered its current state, if known


class _Families:
    """The metric families of one registry and namespace, unregistered (``labels``: the
    label names every series starts with, ``("manager",)`` when managers share them)."""

    def __init__(self, prom: Any, namespace: str, labels: tuple[str, ...]) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": None}
        self.namespace, self.labels = namespace, labels
        self.fast = _in_process(prom)  # the driving thread's series may be tallies
        self.blocks = prom.Counter(
            "blocks_total", "Blocks that reached a terminal state, by outcome.",
            [*labels, "outcome"], **kw)
        self.transitions = prom.Counter(
            "transitions_total", "Block lifecycle transitions.",
            [*labels, "source", "dest", "trigger"], **kw)
        self.errors = prom.Counter(
            "errors_total", "Errors the manager recorded, by error code (EXEC-NNN).",
            [*labels, "code"], **kw)
        self.retries = prom.Counter(
            "retries_total", "Times a block went to retrying, by why.", [*labels, "reason"],
            **kw)
        self.block_duration = prom.Histogram(
            "block_duration_seconds", "Time from routing to a terminal state, for blocks "
            "started in this process (manager clock).", list(labels),
            buckets=_DURATION_BUCKETS, **kw)
        self.state_duration = prom.Histogram(
            "state_duration_seconds", "Time a block spent in a state before leaving it "
            "(manager clock).", [*labels, "state"], buckets=_DURATION_BUCKETS, **kw)
        self.venue_duration = prom.Histogram(
            "venue_call_duration_seconds", "Venue calls (route, query_execution), by how "
            "they ended (manager clock; an abandoned call counts the time waited).",
            [*labels, "call", "outcome"], buckets=_CALL_BUCKETS, **kw)
        self.fsync_duration = prom.Histogram(
            "journal_fsync_duration_seconds", "Journal fsyncs (real monotonic clock).",
            list(labels), buckets=_FSYNC_BUCKETS, **kw)
        from fsm_exec._version import __version__

        self.build = prom.Info("build", "The fsm_exec version and the fingerprint of its "
                               "lifecycle table.", **kw)
        self.build.info({"version": __version__, "lifecycle_hash": TABLE_HASH})

    def register(self, reg: CollectorRegistry, status: _StatusCollector) -> None:
        _register_all(reg, self.namespace, [
            self.blocks, self.transitions, self.errors, self.retries, self.block_duration,
            self.state_duration, self.venue_duration, self.fsync_duration, self.build,
            status])


def _prometheus(who: str) -> Any:
    try:
        import prometheus_client as prom
    except ImportError as exc:
        raise missing_extra(who, "prometheus", "prometheus_client") from exc
    return prom


class PrometheusObserver(OneManager, FieldsObserver):
    """Exports a manager's counters, gauges and histograms to a Prometheus registry.

    ``registry`` defaults to ``prometheus_client.REGISTRY``; ``namespace`` prefixes every
    name (``fsm_exec_blocks_total``, ...). One observer serves one manager, and a registry
    holds one such observer per namespace (a second is refused). Many managers in one
    process (a research loop, several strategies) share one :class:`PrometheusMetrics`
    instead, whose series carry a ``manager`` label. Gauges are read from the manager's
    consistent status snapshot when scraped, from the scrape's thread. Expose the registry
    with ``prometheus_client.start_http_server(port, registry=registry)`` or your own
    exporter.
    """

    manager_events = frozenset({"error", "cancelled", "recovered"})
    call_kinds = frozenset({*_VENUE_CALLS, "journal_fsync"})  # no hand-off series

    def __init__(self, registry: CollectorRegistry | None = None,
                 namespace: str = "fsm_exec") -> None:
        prom = _prometheus(type(self).__name__)
        reg = prom.REGISTRY if registry is None else registry
        self.registry: CollectorRegistry = reg
        self.namespace = namespace
        # Built unregistered, then registered together: a registry that already holds these
        # names (another observer's) is refused whole, with nothing left half-registered.
        fam = _Families(prom, namespace, ())
        fam.register(reg, _StatusCollector(namespace, (), lambda: (self,)))
        self._setup(fam, None)
        self._bind(())

    @classmethod
    def _shared(cls, metrics: PrometheusMetrics, label: str | None) -> PrometheusObserver:
        """One manager's observer of ``metrics`` (see :meth:`PrometheusMetrics.observer`)."""
        obs = cls.__new__(cls)
        obs.registry, obs.namespace = metrics.registry, metrics.namespace
        obs._setup(metrics._families, metrics)
        obs._label = label
        if label is not None:
            obs._bind((label,))
        return obs

    def _setup(self, fam: _Families, metrics: PrometheusMetrics | None) -> None:
        self._fam = fam
        self._metrics = metrics
        self._label: str | None = None
        self._prefix: tuple[str, ...] = ()
        self._flying: _Flying | None = None
        self._last_route: tuple[str, int, str] | None = None
        self._last_success: float | None = None

    def _bind(self, prefix: tuple[str, ...]) -> None:
        """Look up every series of this observer's manager (``prefix``: its label values).
        Every series exists from the start (rate() needs two points); the hot path calls
        each series' ``inc`` or ``observe`` from plain dicts (labels() costs a lock and
        validation). Series only the driving thread writes count in :class:`_Tally` values
        (no lock, read whole by a scrape); those other threads may write keep
        prometheus_client's: errors, cancellations (``on_event``) and fsyncs (the writer's
        thread)."""
        fam = self._fam
        fast = fam.fast
        self._prefix = prefix
        self._by_outcome = {o: _inc(fam.blocks.labels(*prefix, o), fast and o != _CANCELLED)
                            for o in OUTCOMES}
        self._by_edge = {k: _inc(fam.transitions.labels(*prefix, *k), fast and k != _CANCELS)
                         for k in ((str(e.source), str(e.dest), str(e.trigger))
                                   for e in TRANSITIONS)}
        self._by_code = {c: fam.errors.labels(*prefix, c).inc for c in ERROR_CODES}
        self._by_reason = {r: _inc(fam.retries.labels(*prefix, r), fast) for r in RETRY_REASONS}
        self._in_state = {st: _observe(fam.state_duration.labels(*prefix, st), fast)
                          for st in TIMED_STATES}
        self._block_duration = _observe(fam.block_duration.labels(*prefix) if prefix
                                        else fam.block_duration, fast)
        self._fsync_duration = (fam.fsync_duration.labels(*prefix) if prefix
                                else fam.fsync_duration).observe
        self._by_call: dict[tuple[str, str], Callable[[float], None]] = {}

    # ----------------------------------------------------------------------- the seam
    def attach(self, manager: ExecutionManager) -> None:
        metrics = self._metrics
        if metrics is not None:
            label = self._label or manager.name
            if label is None:
                raise InvalidArgumentError(
                    "PrometheusMetrics.observer(): this manager has no name to label its "
                    "metrics with: give the manager name= (or a backtest_run journal), or "
                    "the observer a manager label")
            metrics._claim(label, self, manager)
            if self._prefix != (label,):
                self._bind((label,))
        self._follow(manager)
        self._flying = None
        self._last_route = None

    def _moved(self, block_id: str, action: str, source: str, dest: str, trigger: str,
               attempt: int, at: float, error_code: str | None, reason: str | None,
               halts: bool, recovered: bool) -> None:
        """``on_transition``, the event's fields as arguments (the manager calls this one:
        it builds no event for this observer)."""
        key = (source, dest, trigger)
        edge = self._by_edge.get(key)
        if edge is not None:
            edge()
        else:  # an edge of a user lifecycle: looked up each time (locked: any thread)
            self._fam.transitions.labels(*self._prefix, *key).inc()
        fl = self._flying
        if source == _QUEUED:
            fl = self._flying = _Flying(block_id, at, at)
        elif fl is None or fl.block_id != block_id:  # restored: since when, unknown
            fl = self._flying = _Flying(block_id, at, None)
        elif fl.entered is not None:
            self._in_state[source](at - fl.entered)
        fl.entered = at
        if dest == _RETRYING:
            self._by_reason[self._why_retrying(block_id, attempt, trigger)]()
        elif dest in _TERMINAL:
            self._by_outcome[dest]()
            if fl.started is not None:
                self._block_duration(at - fl.started)
            if dest == _SUCCESS:
                self._last_success = time.time()
            self._flying = None

    def _called(self, kind: str, block_id: str | None, attempt: int, started: float,
                duration: float, outcome: str, error_type: str | None) -> None:
        """``on_call``, the event's fields as arguments (see :meth:`_moved`)."""
        if kind in _VENUE_CALLS:
            key = (kind, outcome)
            observe = self._by_call.get(key)
            if observe is None:  # outcomes are a small fixed set: cached on first sight
                observe = self._by_call[key] = _observe(self._fam.venue_duration.labels(
                    *self._prefix, *key), self._fam.fast)
            observe(duration)
            if kind == "route" and block_id is not None:
                self._last_route = (block_id, attempt, outcome)
        elif kind == "journal_fsync":
            self._fsync_duration(duration)

    def on_event(self, event: ManagerEvent) -> None:
        kind, data = event.kind, event.data
        if kind == "error":
            code = str(data.get("error_code"))
            inc = self._by_code.get(code)
            (inc if inc is not None else self._fam.errors.labels(*self._prefix, code).inc)()
        elif kind == "cancelled":
            n = int(data.get("count", 0))
            self._by_outcome[_CANCELLED](n)
            self._by_edge[_CANCELS](n)
        elif kind == "recovered" and data.get("in_doubt") is not None:
            self._flying = _Flying(str(data["in_doubt"]), event.at, None)

    def _why_retrying(self, block_id: str, attempt: int, trigger: str) -> str:
        if trigger == _RECONCILIATION_TIMEOUT:
            return "reconciliation_timeout"
        last = self._last_route
        if last is not None and last[:2] == (block_id, attempt):
            return last[2] if last[2] in RETRY_REASONS else "error"
        return "in_doubt"  # no route call in this process: cut short by a restart


class _StatusCollector:
    """The gauges, read from each manager's status snapshot at scrape time (one sample per
    observer that ``observers()`` gives, labelled by ``labels``, or one unlabelled)."""

    def __init__(self, namespace: str, labels: tuple[str, ...],
                 observers: Callable[[], Iterable[PrometheusObserver]]) -> None:
        self._labels = list(labels)
        self._observers = observers
        self._names = [f"{namespace}_{n}" if namespace else n for n in (
            "queue_blocks", "halted", "block_in_flight_age_seconds",
            "last_success_timestamp_seconds")]

    def describe(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        for name in self._names:
            yield GaugeMetricFamily(name, "", labels=self._labels)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        q, h, a, s = self._names
        labels = self._labels
        gq = GaugeMetricFamily(q, "Blocks queued, not started.", labels=labels)
        gh = GaugeMetricFamily(h, "1 while the manager is halted (positions in doubt: "
                               "nothing starts until a manual update), else 0.", labels=labels)
        ga = GaugeMetricFamily(a, "How long the block in flight has been in flight "
                               "(manager clock; 0 when none is).", labels=labels)
        gs = GaugeMetricFamily(s, "Unix time of the last block success in this process "
                               "(absent until the first).", labels=labels)
        for owner in self._observers():
            em = owner._manager
            if labels and (em is None or em.closed):  # a closed run leaves the gauges
                continue
            queue, halted, age = 0.0, 0.0, 0.0
            if em is not None:
                status = em.get_execution_status()  # no lock of ours held: see the manager's
                queue = float(status["queue_length"])
                halted = 1.0 if status["halted"] else 0.0
                fl = owner._flying
                current = status["current_block"]
                if current is not None and fl is not None and fl.block_id == current:
                    age = max(0.0, em._clock() - fl.since)
            values = list(owner._prefix)
            gq.add_metric(values, queue)
            gh.add_metric(values, halted)
            ga.add_metric(values, age)
            if owner._last_success is not None:
                gs.add_metric(values, owner._last_success)
        yield from (gq, gh, ga, gs)


class PrometheusMetrics:
    """Metrics of many managers in one process, on one registry: every series carries a
    ``manager`` label, the manager's name. Give each manager its observer::

        metrics = PrometheusMetrics()                        # registers once
        for fast, slow in grid:
            with ExecutionManager(..., event_logger=backtest_run("runs", run_id=...),
                                  observers=[metrics.observer()]) as em:
                ...

    The label is the one given to :meth:`observer`, else the manager's ``name`` (the run
    id of a :func:`~fsm_exec.backtest_run` journal). Two managers in use at once may not
    share a label (refused); a closed manager's label may be taken again, and its counters
    go on. The gauges show the managers not closed. Each name adds its series for the
    life of the process: name managers, not blocks. ``registry`` and ``namespace`` as for
    :class:`PrometheusObserver`; the registry may hold one of these per namespace.
    """

    def __init__(self, registry: CollectorRegistry | None = None,
                 namespace: str = "fsm_exec") -> None:
        prom = _prometheus(type(self).__name__)
        self.registry: CollectorRegistry = prom.REGISTRY if registry is None else registry
        self.namespace = namespace
        self._observers: weakref.WeakSet[PrometheusObserver] = weakref.WeakSet()
        self._by_label: dict[str, weakref.ref[PrometheusObserver]] = {}
        self._lock = threading.Lock()
        self._families = _Families(prom, namespace, ("manager",))
        self._families.register(self.registry, _StatusCollector(
            namespace, ("manager",), lambda: sorted(
                (o for o in list(self._observers) if o._prefix), key=lambda o: o._prefix)))

    def observer(self, manager: str | None = None) -> PrometheusObserver:
        """A new observer for one manager, its series labelled ``manager=<manager>``
        (default: the manager's ``name``, read when it is attached)."""
        if manager is not None and not (isinstance(manager, str) and manager):
            raise InvalidArgumentError(
                f"PrometheusMetrics.observer: manager must be a non-empty label, got "
                f"{type(manager).__name__} {manager!r:.80}")
        obs = PrometheusObserver._shared(self, manager)
        self._observers.add(obs)
        return obs

    def _claim(self, label: str, obs: PrometheusObserver, manager: ExecutionManager) -> None:
        """``obs`` takes ``label``, unless another observer's manager still in use has it."""
        with self._lock:
            ref = self._by_label.get(label)
            other = ref() if ref is not None else None
            held = other._manager if other is not None and other is not obs else None
            if held is not None and held is not manager and not (
                    held.closed or held.interrupted):
                raise InvalidArgumentError(
                    f"PrometheusMetrics: manager label {label!r} is already used by another "
                    "manager in use; give each manager its own name (or observer(manager=...)"
                    "); reopen() hands an observer on to the replacement")
            self._by_label[label] = weakref.ref(obs)


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
                "namespace. Give each manager's observer its own registry or namespace, or "
                "run many managers through one PrometheusMetrics (a manager label per "
                "manager); reopen() hands an observer on to the replacement: do not build "
                "another"
            ) from None
        done.append(c)
