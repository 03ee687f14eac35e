"""The observers' quick ways: what a scrape sees of the Prometheus observer's lock-free series
is exactly what prometheus_client's own would show, for any stream of events; the series other
threads write keep prometheus_client's locks; the multiprocess mode keeps its own values. The
seam's hooks (the package's observers take an event's fields: no event built) export exactly
what the events do, and call_kinds spares the manager the calls nobody wants."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.values import MutexValue
from test_testing import SCENARIOS

from fsm_exec import ComponentError, EventLogger, ExecutionManager
from fsm_exec.core.lifecycle import TRANSITIONS
from fsm_exec.manager import observing
from fsm_exec.observe import (
    CallEvent,
    ManagerEvent,
    Observer,
    OpenTelemetryObserver,
    PrometheusMetrics,
    PrometheusObserver,
    TransitionEvent,
)
from fsm_exec.observe import prometheus as prom_observer
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.testing import lifecycle_paths

from kit import T, blocks, rig

EDGES = [(str(e.source), str(e.dest), str(e.trigger)) for e in TRANSITIONS]
durations = st.one_of(st.floats(min_value=0, max_value=4000, allow_nan=False),
                      st.sampled_from([0.0, 0.005, 0.01, 1800.0, math.inf, math.nan]))
events = st.lists(st.one_of(
    st.tuples(st.just("t"), st.sampled_from(EDGES), st.sampled_from(["a", "b"]),
              st.integers(1, 3), durations),
    st.tuples(st.just("c"), st.sampled_from(["route", "query", "hand_off", "journal_fsync"]),
              st.sampled_from(["ok", "timeout", "error", "executed"]), st.integers(1, 3),
              durations),
    st.tuples(st.just("e"), st.sampled_from(["error", "cancelled", "recovered"]),
              st.sampled_from(["EXEC-001", "EXEC-999"]), st.integers(0, 3), durations)),
    max_size=40)


def play(obs: PrometheusObserver, script: list[tuple[Any, ...]]) -> None:
    for kind, what, ident, n, x in script:
        if kind == "t":
            source, dest, trigger = what
            obs.on_transition(TransitionEvent(ident, "trade", source, dest, trigger, n, x,
                                              "EXEC-001" if dest == "failed" else None))
        elif kind == "c":
            obs.on_call(CallEvent(what, "a", n, 0.0, x, ident))
        else:
            obs.on_event(ManagerEvent(what, x, {"error_code": ident, "count": n,
                                                "in_doubt": "b" if n else None}))


def samples(registry: CollectorRegistry) -> list[tuple[str, tuple[Any, ...], str]]:
    """Every sample but the ``_created`` times, values as text (NaN equal to NaN)."""
    return sorted((s.name, tuple(sorted(s.labels.items())), repr(s.value))
                  for m in registry.collect() for s in m.samples
                  if not s.name.endswith("_created")
                  and not s.name.endswith("last_success_timestamp_seconds"))


@given(events)
def test_a_scrape_sees_what_prometheus_clients_own_series_would(
        script: list[tuple[Any, ...]]) -> None:
    """The same events into an observer on lock-free tallies and into one forced onto
    prometheus_client's own values (as in its multiprocess mode): every sample equal,
    bucket by bucket, sums to the last bit (NaN and infinities included)."""
    quick, plain = CollectorRegistry(), CollectorRegistry()
    fast = PrometheusObserver(quick)
    real = prom_observer._in_process
    prom_observer._in_process = lambda prom: False
    try:
        slow = PrometheusObserver(plain)
    finally:
        prom_observer._in_process = real
    assert not slow._fam.fast and fast._fam.fast
    play(fast, script)
    play(slow, script)
    assert samples(quick) == samples(plain)


def _value_types(obs: PrometheusObserver) -> dict[str, set[str]]:
    fam = obs._fam
    out: dict[str, set[str]] = {}
    for name, metric in (("blocks", fam.blocks), ("transitions", fam.transitions),
                         ("errors", fam.errors), ("retries", fam.retries)):
        for labels, child in metric._metrics.items():
            out.setdefault(name, set()).add(f"{labels[-1]}:{type(child._value).__name__}")
    for name, metric in (("state", fam.state_duration), ("venue", fam.venue_duration)):
        for child in metric._metrics.values():
            out.setdefault(name, set()).add(type(child._sum).__name__)
    for name, metric in (("block", fam.block_duration), ("fsync", fam.fsync_duration)):
        out[name] = {type(metric._sum).__name__}
    return out


def test_only_the_driving_threads_series_go_without_a_lock() -> None:
    """Errors and cancellations (told by on_event, from whichever thread cancels or fails)
    and fsyncs (the journal writer's thread) keep prometheus_client's locked values; the
    moves and calls the driving thread alone reports count without a lock."""
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    rig(observers=[obs])
    obs.on_call(CallEvent("route", "a", 1, 0.0, 0.1, "ok"))
    types = _value_types(obs)
    assert {t.split(":")[1] for t in types["errors"]} == {"MutexValue"}
    assert "cancelled:MutexValue" in types["blocks"]
    assert {t for t in types["blocks"] if not t.startswith("cancelled")} == {
        "success:_Tally", "failed:_Tally"}
    assert "cancel:MutexValue" in types["transitions"]
    assert {t.split(":")[1] for t in types["transitions"] if t != "cancel:MutexValue"} == {
        "_Tally"}
    assert {t.split(":")[1] for t in types["retries"]} == {"_Tally"}
    assert types["state"] == types["venue"] == types["block"] == {"_Tally"}
    assert types["fsync"] == {"MutexValue"}


def test_a_label_taken_again_counts_on_in_the_same_tallies() -> None:
    """A closed manager's label taken by a new observer goes on from the same counts."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    first = metrics.observer("run")
    first.on_transition(TransitionEvent("a", "trade", "queued", "routing", "start", 1, 0.0))
    second = metrics.observer("run")
    second.on_transition(TransitionEvent("b", "trade", "queued", "routing", "start", 1, 0.0))
    assert registry.get_sample_value("fsm_exec_transitions_total", {
        "manager": "run", "source": "queued", "dest": "routing", "trigger": "start"}) == 2.0


def test_prometheus_clients_multiprocess_mode_keeps_its_own_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Values kept in files (prometheus_client's multiprocess mode: another ValueClass) are
    never replaced: every series goes through prometheus_client's own methods."""
    assert prom_observer._in_process(prometheus_client)
    monkeypatch.setattr(prometheus_client.values, "ValueClass", object)
    assert not prom_observer._in_process(prometheus_client)
    assert not prom_observer._in_process(SimpleNamespace())  # no values module at all
    monkeypatch.undo()
    obs = PrometheusObserver(CollectorRegistry())
    tally = obs._by_reason["timeout"]
    assert getattr(tally, "__self__", None).__class__.__name__ == "_Tally"
    child = obs._fam.errors.labels("EXEC-001")
    assert prom_observer._inc(child, True) is not child.inc  # a tally from now on
    assert type(child._value) is not MutexValue
    bare: Any = SimpleNamespace(inc=len)
    assert prom_observer._inc(bare, True) is bare.inc  # nothing to replace


# ------------------------------------------------------------------------ the seam's hooks


class EventProm(PrometheusObserver):
    """PrometheusObserver taking events (on_transition and on_call overridden)."""

    def on_transition(self, event: TransitionEvent) -> None:
        super().on_transition(event)

    def on_call(self, event: CallEvent) -> None:
        super().on_call(event)


class EventOtel(OpenTelemetryObserver):
    """OpenTelemetryObserver taking events."""

    def on_transition(self, event: TransitionEvent) -> None:
        super().on_transition(event)

    def on_call(self, event: CallEvent) -> None:
        super().on_call(event)


class Recorder(Observer):
    """Every event, as given."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_transition(self, event: TransitionEvent) -> None:
        self.seen.append(event)

    def on_call(self, event: CallEvent) -> None:
        self.seen.append(event)


def spans(exporter: InMemorySpanExporter) -> list[Any]:
    """The finished spans without their times and ids: names, parents' names, attributes
    (durations on the fake clock included), events, status."""
    done = exporter.get_finished_spans()
    name = {s.context.span_id: s.name for s in done}
    return [(s.name, name.get(s.parent.span_id) if s.parent else None,
             dict(s.attributes or {}), [(e.name, dict(e.attributes or {})) for e in s.events],
             s.status.status_code, s.status.description) for s in done]


def run_path(mode: str, path: tuple[Any, ...], observers: list[Observer]) -> Any:
    states = (str(path[0].source), *(str(e.dest) for e in path))
    scenario = dict(SCENARIOS[states])
    cancel = scenario.pop("cancel", False)
    r = rig(mode, observers=observers, **scenario)
    r.em.execute_instruction_blocks(T(0), blocks("a", "b"))
    if cancel:
        r.em.cancel(T(0), ["a"], reason="operator")
    with contextlib.suppress(ComponentError):
        r.em.update_state(T(0), "strategy_manager")
    return r


@pytest.mark.parametrize("mode", ["live", "backtest"])
@pytest.mark.parametrize("calls", [False, True])
@pytest.mark.parametrize("path", lifecycle_paths(),
                         ids=lambda p: "-".join([str(p[0].source), *(str(e.dest) for e in p)]))
def test_the_hooks_export_what_the_events_do(path: tuple[Any, ...], calls: bool,
                                             mode: str) -> None:
    """Down each path of the table, in both modes: the package's observers called through
    their hooks (no event built) export exactly what they export given the events
    (subclasses that override on_transition and on_call), and the manager builds events
    for the observers that take them, one per move for all of them."""
    hooked_reg, evented_reg = CollectorRegistry(), CollectorRegistry()
    hooked_exp, evented_exp = InMemorySpanExporter(), InMemorySpanExporter()
    providers = []
    for exporter in (hooked_exp, evented_exp):
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(tp)
    one, two = Recorder(), Recorder()
    hooked = run_path(mode, path, [PrometheusObserver(hooked_reg),
                                   OpenTelemetryObserver(providers[0], calls=calls)])
    evented = run_path(mode, path, [one, EventProm(evented_reg),
                                    EventOtel(providers[1], calls=calls), two])
    assert hooked.log.events == evented.log.events
    assert samples(hooked_reg) == samples(evented_reg)
    assert spans(hooked_exp) == spans(evented_exp)
    assert one.seen == two.seen and all(a is b for a, b in zip(one.seen, two.seen, strict=True))
    assert [e.trigger for e in one.seen if isinstance(e, TransitionEvent)] == [
        m["trigger"] for m in evented.events("block_transition")
        if m["trigger"] != "cancel"]  # a cancellation is a manager event


def test_an_observer_given_its_own_method_gets_events() -> None:
    """An on_transition set on the observer itself (not its class) is called with events,
    and a hook is used only beside the method it forwards for."""
    seen: list[TransitionEvent] = []
    obs = PrometheusObserver(CollectorRegistry())
    obs.on_transition = seen.append  # type: ignore[method-assign,assignment]
    assert observing.field_hook(obs, "on_transition") is None
    assert observing.field_hook(obs, "on_call") == obs._called
    assert observing.field_hook(Recorder(), "on_call") is None
    r = rig("backtest", observers=[obs])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert [e.dest for e in seen] == ["routing", "pending_reconciliation", "success"]


def test_only_a_marked_method_makes_a_hook() -> None:
    """An observer of one's own with a method that happens to be called _moved still gets
    events: only on_transition or on_call marked forwards_to() names a hook."""

    class Mine(Recorder):
        def _moved(self, *fields: Any) -> None:
            raise AssertionError("not a hook")

    mine = Mine()
    assert observing.field_hook(mine, "on_transition") is None
    r = rig("backtest", observers=[mine])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert [e.dest for e in mine.seen if isinstance(e, TransitionEvent)] == [
        "routing", "pending_reconciliation", "success"]
    assert not r.events("error")


def test_an_observer_gets_only_the_call_kinds_it_wants() -> None:
    """call_kinds narrows on_call to those kinds; the manager builds no CallEvent of a kind
    nobody wants (the hand-off, for the Prometheus observer), and none for a hook."""

    class Routes(Recorder):
        call_kinds: frozenset[str] | None = frozenset({"route"})

    routes = Routes()
    r = rig("backtest", observers=[routes])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert [e.kind for e in routes.seen if isinstance(e, CallEvent)] == ["route"]
    built: list[str] = []
    real = CallEvent.__init__

    def counting(self: Any, kind: str, *args: Any, **kw: Any) -> None:
        built.append(kind)
        real(self, kind, *args, **kw)

    registry = CollectorRegistry()
    r = rig("backtest", observers=[PrometheusObserver(registry), Routes()])
    try:
        CallEvent.__init__ = counting  # type: ignore[method-assign]
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    finally:
        CallEvent.__init__ = real  # type: ignore[method-assign]
    assert built == ["route"]  # for Routes only: the Prometheus observer takes the fields
    assert registry.get_sample_value("fsm_exec_venue_call_duration_seconds_count",
                                     {"call": "route", "outcome": "ok"}) == 1.0


def test_fsyncs_reach_the_observers_that_want_them(tmp_path: Path) -> None:
    """A journal fsync is told to the observers whose call_kinds have it, through the hook
    or as one event for all that take events; a failing one is reported after the call."""

    class Boom(Recorder):
        def on_call(self, event: CallEvent) -> None:
            raise RuntimeError("fsync observer down")

    registry = CollectorRegistry()
    one, two, boom = Recorder(), Recorder(), Boom()
    journal = EventLogger(tmp_path, "live")
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(
        SimReconciliation()), SimVenue(), SimReconciliation(), event_logger=journal,
        observers=[one, PrometheusObserver(registry), two, boom])
    em._fsynced(0.002)
    journal.close()
    fsyncs = [e for e in one.seen if e.kind == "journal_fsync"]
    assert fsyncs and fsyncs == [e for e in two.seen if e.kind == "journal_fsync"]
    assert all(a is b for a, b in zip(fsyncs, [e for e in two.seen
                                               if e.kind == "journal_fsync"], strict=True))
    assert registry.get_sample_value("fsm_exec_journal_fsync_duration_seconds_count") == len(
        fsyncs)
    assert em._late_observer_errors and em._late_observer_errors[0][0] is boom


def test_a_user_lifecycles_edges_are_counted_too() -> None:
    """An edge outside the default table (a user lifecycle's) is counted under its own
    labels, looked up when it is taken; every journaled move is counted once."""
    import lchooks
    from test_lifecycle_run import BIG, FOUR_EYES, lifecycle, priced

    registry = CollectorRegistry()
    r = rig("backtest", lifecycle=lifecycle(FOUR_EYES), observers=[PrometheusObserver(registry)])
    try:
        r.em.update_state(T(0), "strategy_manager", [priced("big", BIG)])
        assert r.em.trigger("big", "approve", T(90), reason="approved") == "routing"
        r.em.update_state(T(120), "strategy_manager")
    finally:
        lchooks.reset()  # the lifecycle's hooks record their calls there
    moves = [(m["source"], m["dest"], m["trigger"]) for m in r.events("block_transition")]
    assert ("queued", "awaiting_approval", "start") in moves
    for source, dest, trigger in moves:
        assert registry.get_sample_value("fsm_exec_transitions_total", {
            "source": source, "dest": dest, "trigger": trigger}) == moves.count(
                (source, dest, trigger))


def test_a_tallied_series_takes_prometheus_clients_own_calls() -> None:
    """A series counted in a tally still answers prometheus_client's own methods: reset()
    and exemplars."""
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry)
    obs._by_reason["timeout"]()
    child = obs._fam.retries.labels("timeout")
    labels = {"reason": "timeout"}
    assert registry.get_sample_value("fsm_exec_retries_total", labels) == 1.0
    child.inc(2, exemplar={"trace_id": "abc"})
    assert registry.get_sample_value("fsm_exec_retries_total", labels) == 3.0
    assert child._value.get_exemplar().labels == {"trace_id": "abc"}
    child.reset()
    obs._by_reason["timeout"]()
    assert registry.get_sample_value("fsm_exec_retries_total", labels) == 1.0
