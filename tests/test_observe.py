"""fsm_exec.observe: OpenTelemetry traces and Prometheus metrics of a real manager, checked
against the real SDKs (in-memory span exporter; HTTP exposition scraped and parsed), the
observer seam's promise that a failing observer changes nothing, and the optional imports."""

from __future__ import annotations

import contextlib
import itertools
import json
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_testing import SCENARIOS

import fsm_exec
from fsm_exec import (
    ComponentError,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    __version__,
)
from fsm_exec.cli.main import main
from fsm_exec.core.lifecycle import TABLE_HASH
from fsm_exec.manager.observing import OBSERVER_REPORT_INTERVAL
from fsm_exec.observe import (
    CALL_KINDS,
    EVENT_KINDS,
    RETRY_REASONS,
    CallEvent,
    ManagerEvent,
    Observer,
    OpenTelemetryObserver,
    PrometheusObserver,
    TransitionEvent,
)
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.testing import lifecycle_paths

from kit import CANARY, T, block, blocks, rig

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "examples" / "observe" / "grafana-dashboard.json"

# ------------------------------------------------------------------------ helpers


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


def _label(s: ReadableSpan) -> str:
    attempt: Any = (s.attributes or {}).get("fsm_exec.attempt")
    return f"attempt {attempt}" if s.name == "fsm_exec.attempt" else s.name


def shape(exporter: InMemorySpanExporter) -> list[Any]:
    """The finished spans as a tree of names (attempt spans as ``attempt N``), children in
    the order they ended."""
    spans = exporter.get_finished_spans()
    ids = {s.context.span_id for s in spans}

    def node(s: ReadableSpan) -> Any:
        kids = [k for k in spans if k.parent is not None and k.parent.span_id == s.context.span_id]
        return (_label(s), [node(k) for k in kids]) if kids else _label(s)

    return [node(s) for s in spans if s.parent is None or s.parent.span_id not in ids]


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = named(exporter, name)
    return span


def attrs(s: ReadableSpan) -> dict[str, Any]:
    return dict(s.attributes or {})


def transition_events(s: ReadableSpan) -> list[tuple[Any, ...]]:
    out = []
    for e in s.events:
        assert e.name == "fsm_exec.transition"
        a = dict(e.attributes or {})
        out.append((a["fsm_exec.source"], a["fsm_exec.dest"], a["fsm_exec.trigger"],
                    a["fsm_exec.attempt"]))
    return out


def journal_moves(r: Any, block_id: str) -> list[tuple[Any, ...]]:
    return [(m["source"], m["dest"], m["trigger"], m["attempt"])
            for m in r.events("block_transition") if m["block_id"] == block_id]


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class CrashingLog:
    """Forwards to a journal, and dies instead of writing the first record ``when`` picks."""

    def __init__(self, journal: EventLogger, when: Any) -> None:
        self.journal, self.when = journal, when

    def log_event(self, ts: Any, kind: str, component: str, data: Any) -> None:
        if self.when(kind, data):
            raise Crash
        self.journal.log_event(ts, kind, component, data)


def live_manager(log: Any, venue: Any, clock: FakeClock, observers: list[Observer],
                 **config: Any) -> ExecutionManager:
    rc = SimReconciliation(clock)
    return ExecutionManager(config, StaticDataProvider(), "live", SimPositionHandler(rc),
                            venue, rc, event_logger=log, clock=clock, sleep=clock.sleep,
                            observers=observers)


# ------------------------------------------------------------------------ the module


def test_observe_exports_the_seam_and_both_observers() -> None:
    """fsm_exec.observe re-exports the seam's classes and kinds and both observers."""
    import fsm_exec.observe as observe

    assert observe.__all__ == sorted(observe.__all__, key=lambda n: (not n.isupper(), n))
    assert issubclass(OpenTelemetryObserver, Observer)
    assert issubclass(PrometheusObserver, Observer)
    assert "journal_fsync" in CALL_KINDS and "recovered" in EVENT_KINDS
    import fsm_exec.observe.seam as seam

    for name in ("Observer", "TransitionEvent", "CallEvent", "ManagerEvent", "CALL_KINDS",
                 "EVENT_KINDS"):
        assert getattr(observe, name) is getattr(seam, name)


def test_core_imports_and_runs_without_either_extra() -> None:
    """With opentelemetry and prometheus_client unimportable, the package, fsm_exec.observe,
    the CLI and the demo import, a user's own observer runs, and each observer (and
    --metrics-port) says which extra to install."""
    code = r'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("opentelemetry", "prometheus_client"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
import fsm_exec, fsm_exec.observe, fsm_exec.cli.main, fsm_exec.cli.demo
from fsm_exec import ExecutionManager
from fsm_exec.sim.venues import SimPositionHandler, SimReconciliation, SimVenue, StaticDataProvider
from fsm_exec.observe import Observer, OpenTelemetryObserver, PrometheusObserver
class Count(Observer):
    moves = 0
    def on_transition(self, event):
        Count.moves += 1
rc = SimReconciliation()
em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(rc),
                      SimVenue(), rc, observers=[Count()])
em.update_state("2025-10-01T00:00Z", "strategy_manager", [{"block_id": "a", "action": "buy",
    "priority": 1,
    "instructions": [{"venue": "spot", "token": "ETH", "side": "buy", "amount": 1}]}])
print("moves", Count.moves)
for cls in (OpenTelemetryObserver, PrometheusObserver):
    try:
        cls()
    except ImportError as exc:
        print(exc)
print("cli", fsm_exec.cli.main.main(["demo", "--metrics-port", "0", "--out", sys.argv[1]]))
print("leaked", sorted(m for m in sys.modules
                       if m.partition(".")[0] in ("opentelemetry", "prometheus_client")))
'''
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True,
                              text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "moves 3"
    assert lines[1] == ("OpenTelemetryObserver needs opentelemetry-api, which is not "
                        'installed: pip install "fsm-exec[otel]"')
    assert lines[2] == ("PrometheusObserver needs prometheus_client, which is not "
                        'installed: pip install "fsm-exec[prometheus]"')
    assert lines[3:] == ["cli 2", "leaked []"]
    assert 'pip install "fsm-exec[prometheus]"' in proc.stderr


@pytest.mark.parametrize(("cls", "module", "extra"), [
    (OpenTelemetryObserver, "opentelemetry", "otel"),
    (PrometheusObserver, "prometheus_client", "prometheus")])
def test_an_observer_without_its_extra_names_the_extra(
        cls: type[Observer], module: str, extra: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Building an observer whose library cannot be imported raises ImportError saying
    which extra to install (and so does --metrics-port)."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=re.escape(f'pip install "fsm-exec[{extra}]"')):
        cls()
    if extra == "prometheus":
        assert main(["demo", "--metrics-port", "0", "--out", str(tmp_path)]) == 2


def test_observers_must_subclass_the_base() -> None:
    """The manager refuses an observer that is not an fsm_exec.observe.Observer."""
    with pytest.raises(InvalidArgumentError, match=r"not an fsm_exec\.observe\.Observer"):
        rig(observers=[object()])


# ------------------------------------------------------------------------ traces


@pytest.mark.parametrize("path", lifecycle_paths(),
                         ids=lambda p: "-".join([str(p[0].source), *(str(e.dest) for e in p)]))
def test_each_lifecycle_path_is_one_block_span(path: tuple[Any, ...],
                                               provider: TracerProvider,
                                               exporter: InMemorySpanExporter) -> None:
    """Down each path of the table: one span fsm_exec.block <action> with one event per
    transition (as journaled), attempt spans under it and call spans under those, the
    terminal state as attribute and ERROR with the code for failed; a cancelled block,
    never started, has no span."""
    states = (str(path[0].source), *(str(e.dest) for e in path))
    scenario = dict(SCENARIOS[states])
    cancel = scenario.pop("cancel", False)
    r = rig(observers=[OpenTelemetryObserver(provider, calls=True)], **scenario)
    if cancel:
        r.em.execute_instruction_blocks(T(0), blocks("a"))
        r.em.cancel(T(0), ["a"], reason="operator")
        r.em.update_state(T(0), "strategy_manager")
        assert exporter.get_finished_spans() == ()
        return
    r.em.update_state(T(0), "strategy_manager", blocks("a"))

    span = only(exporter, "fsm_exec.block trade")
    moves = journal_moves(r, "a")
    assert transition_events(span) == moves
    assert span.parent is None and span.kind is trace.SpanKind.INTERNAL
    end = states[-1]
    a = attrs(span)
    assert {k: a[k] for k in ("fsm_exec.block_id", "fsm_exec.action", "fsm_exec.execution_mode",
                              "fsm_exec.recovered", "fsm_exec.state", "fsm_exec.attempts")} == {
        "fsm_exec.block_id": "a", "fsm_exec.action": "trade", "fsm_exec.execution_mode": "live",
        "fsm_exec.recovered": False, "fsm_exec.state": end, "fsm_exec.attempts": moves[-1][3]}
    assert a["fsm_exec.duration_s"] == pytest.approx(r.clock.now)
    if end == "failed":
        (failed,) = r.events("block_failed")
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == a["fsm_exec.error_code"] == failed["error_code"]
        assert a["error.type"] == failed["error_code"]
    else:
        assert span.status.status_code is StatusCode.UNSET
        assert "fsm_exec.error_code" not in a

    attempts = named(exporter, "fsm_exec.attempt")
    assert [attrs(s)["fsm_exec.attempt"] for s in attempts] == sorted({m[3] for m in moves})
    assert all(s.parent is not None and s.parent.span_id == span.context.span_id
               for s in attempts)
    attempt_ids = {s.context.span_id for s in attempts}
    calls = [s for s in exporter.get_finished_spans()
             if s.name not in ("fsm_exec.block trade", "fsm_exec.attempt")]
    assert all(s.parent is not None and s.parent.span_id in attempt_ids for s in calls)
    assert bool(calls) is (states[2] != "failed")  # a risk refusal calls nobody
    assert {s.name for s in calls} <= {f"fsm_exec.{k}" for k in CALL_KINDS}
    assert len(exporter.get_finished_spans()) == 1 + len(attempts) + len(calls)


def test_a_retried_block_has_one_span_per_attempt(provider: TracerProvider,
                                                  exporter: InMemorySpanExporter) -> None:
    """A rejected route, routed again: attempt 1 holds the failed route call (ERROR,
    rejected), attempt 2 the route, hand-off and reconciliation wait, each with its
    manager-clock duration."""
    r = rig(faults=["reject"], recon=[("ok", 2.5)],
            observers=[OpenTelemetryObserver(provider, calls=True)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert shape(exporter) == [("fsm_exec.block trade", [
        ("attempt 1", ["fsm_exec.route"]),
        ("attempt 2", ["fsm_exec.route", "fsm_exec.hand_off", "fsm_exec.reconciliation_wait"]),
    ])]
    failed_route, route = named(exporter, "fsm_exec.route")
    assert failed_route.status.status_code is StatusCode.ERROR
    assert failed_route.status.description == "rejected"
    assert attrs(failed_route) == {"fsm_exec.block_id": "a", "fsm_exec.attempt": 1,
                                   "fsm_exec.outcome": "rejected", "fsm_exec.duration_s": 0.0,
                                   "error.type": "ExecutionRejected"}
    assert route.status.status_code is StatusCode.UNSET
    assert attrs(route)["fsm_exec.attempt"] == 2
    wait = only(exporter, "fsm_exec.reconciliation_wait")
    assert attrs(wait)["fsm_exec.outcome"] == "success"
    assert attrs(wait)["fsm_exec.duration_s"] == pytest.approx(2.5, abs=0.1)
    first, second = named(exporter, "fsm_exec.attempt")
    assert attrs(first)["fsm_exec.duration_s"] == pytest.approx(sum(r.sleeps[:1]))
    block_span = only(exporter, "fsm_exec.block trade")
    assert attrs(block_span)["fsm_exec.attempts"] == 2
    assert transition_events(block_span) == [
        ("queued", "routing", "start", 1), ("routing", "retrying", "route_failed", 1),
        ("retrying", "routing", "reroute", 2),
        ("routing", "pending_reconciliation", "executed", 2),
        ("pending_reconciliation", "success", "reconciled", 2)]
    assert attrs(second)["fsm_exec.duration_s"] == pytest.approx(
        attrs(block_span)["fsm_exec.duration_s"] - attrs(first)["fsm_exec.duration_s"])


def test_a_halting_failure_is_an_error_span_saying_it_halts(
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A failed reconciliation halts the manager: the block span and its attempt are ERROR
    EXEC-002 with fsm_exec.halts; the next block starts (and gets its span) only after the
    manual resume."""
    r = rig(recon=[("fail", 0)], observers=[OpenTelemetryObserver(provider, calls=True)])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    (span,) = exporter.get_finished_spans()[-1:]
    assert span.name == "fsm_exec.block trade" and attrs(span)["fsm_exec.block_id"] == "a"
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "EXEC-002")
    assert attrs(span)["fsm_exec.halts"] is True
    last = dict(span.events[-1].attributes or {})
    assert (last["fsm_exec.dest"], last["fsm_exec.error_code"], last["fsm_exec.halts"]) == (
        "failed", "EXEC-002", True)
    attempt = only(exporter, "fsm_exec.attempt")
    assert (attempt.status.status_code, attempt.status.description) == (StatusCode.ERROR,
                                                                          "EXEC-002")
    assert len(named(exporter, "fsm_exec.block trade")) == 1  # b waits: the manager halted
    r.em.update_state(T(1), "manual")
    b = named(exporter, "fsm_exec.block trade")[-1]
    assert attrs(b)["fsm_exec.block_id"] == "b" and attrs(b)["fsm_exec.state"] == "success"


def test_the_callers_span_is_the_parent(provider: TracerProvider,
                                        exporter: InMemorySpanExporter) -> None:
    """Blocks run inside the caller's current span (a strategy step) are its children, in
    its trace."""
    r = rig(observers=[OpenTelemetryObserver(provider, calls=True)])
    tracer = provider.get_tracer("strategy")
    with tracer.start_as_current_span("strategy step") as step:
        r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    blocks_ = named(exporter, "fsm_exec.block trade")
    assert len(blocks_) == 2
    for s in blocks_:
        assert s.parent is not None and s.parent.span_id == step.get_span_context().span_id
        assert s.context.trace_id == step.get_span_context().trace_id


def test_the_global_tracer_provider_is_the_default(exporter: InMemorySpanExporter) -> None:
    """Without a tracer_provider the observer uses opentelemetry.trace's global one (here
    the API's proxy, which records nothing until an SDK is installed)."""
    r = rig(observers=[OpenTelemetryObserver(calls=True)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") == "success"


@pytest.mark.parametrize("crash_at", ["routing", "retrying"])
def test_a_block_resumed_after_a_restart_gets_a_new_recovered_span(
        tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter,
        crash_at: str) -> None:
    """The span in flight when the process dies is never ended; the recovered manager's
    observer opens a new span for the block it settles, saying it was recovered and from
    which state (linked to nothing it cannot know), then the queue runs as usual."""
    clock = FakeClock()
    venue = SimVenue()
    journal = EventLogger(tmp_path, "live")
    if crash_at == "routing":  # dies once the venue call ended, before its outcome is written
        faulty = FaultyVenue(venue, clock=clock)

        def when(kind: str, data: Any) -> bool:
            return kind == "block_transition" and data["source"] == "routing"
    else:  # the route failed, and the process dies before routing again
        faulty = FaultyVenue(venue, ["reject"], clock=clock)

        def when(kind: str, data: Any) -> bool:
            return kind == "block_transition" and data["trigger"] == "reroute"
    em = live_manager(CrashingLog(journal, when), faulty, clock,
                      [OpenTelemetryObserver(provider, calls=True)])
    with pytest.raises(Crash):
        em.update_state(T(1), "strategy_manager", blocks("a", "b"))
    journal.close()
    assert not named(exporter, "fsm_exec.block trade")  # in flight at the crash: not ended

    journal = EventLogger(tmp_path, "live")
    em2 = live_manager(journal, FaultyVenue(venue, clock=clock), clock,
                       [OpenTelemetryObserver(provider, calls=True)])
    assert em2.recover(tmp_path).in_doubt == "a"
    em2.update_state(T(2), "retry")
    journal.close()
    a, b = named(exporter, "fsm_exec.block trade")
    assert attrs(a)["fsm_exec.block_id"] == "a" and attrs(b)["fsm_exec.block_id"] == "b"
    assert attrs(a)["fsm_exec.recovered"] is True
    assert attrs(a)["fsm_exec.recovered_state"] == crash_at
    assert attrs(a)["fsm_exec.state"] == "success" and not a.links
    assert attrs(b)["fsm_exec.recovered"] is False and "fsm_exec.recovered_state" not in attrs(b)
    first = transition_events(a)[0]
    assert first[0] == crash_at  # the new span starts where the journal left the block
    kids = [s for s in exporter.get_finished_spans()
            if s.parent is not None and s.parent.span_id == a.context.span_id]
    assert kids and all(s.name == "fsm_exec.attempt" for s in kids)


def test_spans_take_the_real_monotonic_clock_as_wall_time(provider: TracerProvider,
                                                          exporter: InMemorySpanExporter
                                                          ) -> None:
    """On the default clock (time.monotonic) span times are the events' own, in wall time:
    nested in order, within the run, a call span as long as its fsm_exec.duration_s."""
    rc = SimReconciliation()
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc), SimVenue(),
                          rc, observers=[OpenTelemetryObserver(provider, calls=True)])
    before = time.time_ns()
    em.update_state(T(0), "strategy_manager", blocks("a"))
    after = time.time_ns()
    span, attempt = only(exporter, "fsm_exec.block trade"), only(exporter, "fsm_exec.attempt")
    route, hand_off = only(exporter, "fsm_exec.route"), only(exporter, "fsm_exec.hand_off")
    wait = only(exporter, "fsm_exec.reconciliation_wait")
    slack = 1_000_000  # two clock reads per conversion: allow 1 ms of jitter
    times = [t or 0 for t in (
        span.start_time, attempt.start_time, route.start_time, route.end_time,
        hand_off.start_time, hand_off.end_time, wait.start_time, wait.end_time,
        attempt.end_time, span.end_time)]
    assert before - slack <= times[0] and times[-1] <= after + slack
    assert all(a <= b + slack for a, b in itertools.pairwise(times))
    for call in (route, hand_off, wait):
        assert call.end_time is not None and call.start_time is not None
        assert (call.end_time - call.start_time) / 1e9 == pytest.approx(
            attrs(call)["fsm_exec.duration_s"], abs=slack / 1e9)


def test_an_observer_follows_one_manager_and_its_reopened_replacement(
        tmp_path: Path, provider: TracerProvider) -> None:
    """Attaching an observer to a second live manager is refused; reopen() hands it on to
    the replacement, which it then observes."""
    obs = OpenTelemetryObserver(provider, calls=True)
    rig(observers=[obs])
    with pytest.raises(InvalidArgumentError, match="already observes another manager"):
        rig(observers=[obs])
    clock = FakeClock()
    journal = EventLogger(tmp_path / "j", "live")
    em = live_manager(journal, SimVenue(), clock, [OpenTelemetryObserver(provider, calls=True)])
    em.update_state(T(0), "strategy_manager", blocks("a"))
    em2 = em.reopen()
    assert em2._observers[0]._manager is em2  # type: ignore[attr-defined]
    em2.update_state(T(1), "strategy_manager", blocks("b"))
    journal.close()


def test_the_observer_ignores_calls_it_cannot_place(provider: TracerProvider,
                                                    exporter: InMemorySpanExporter) -> None:
    """journal fsyncs, calls about no block, and calls about a block it never saw start are
    not spans (they are metrics only)."""
    obs = OpenTelemetryObserver(provider, calls=True)
    rig(observers=[obs])
    obs.on_call(CallEvent("journal_fsync", None, 0, 0.0, 0.001, "ok"))
    obs.on_call(CallEvent("market_data", None, 0, 0.0, 0.001, "ok"))
    obs.on_call(CallEvent("query", "ghost", 1, 0.0, 0.001, "executed"))
    obs.on_event(ManagerEvent("recovered", 0.0, {"in_doubt": None}))
    obs.on_call(CallEvent("query", "ghost", 1, 0.0, 0.001, "executed"))
    assert exporter.get_finished_spans() == ()


# ------------------------------------------------------------------------ metrics


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exposition(registry: CollectorRegistry) -> Iterator[str]:
    """A real HTTP exposition of ``registry`` on a loopback port; yields its URL."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def scrape(url: str) -> dict[str, Any]:
    """GET the exposition and parse it: metric families by name."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of the one sample called ``sample`` with exactly ``labels``."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    raise KeyError(f"{sample}{labels}")


def all_samples(families: dict[str, Any]) -> list[Sample]:
    return [s for f in families.values() for s in f.samples]


#: The issue's names and types (counters without their _total, as the parser names them).
FAMILIES = {
    "fsm_exec_blocks": ("counter", {"outcome"}),
    "fsm_exec_transitions": ("counter", {"source", "dest", "trigger"}),
    "fsm_exec_errors": ("counter", {"code"}),
    "fsm_exec_retries": ("counter", {"reason"}),
    "fsm_exec_queue_blocks": ("gauge", set()),
    "fsm_exec_halted": ("gauge", set()),
    "fsm_exec_block_in_flight_age_seconds": ("gauge", set()),
    "fsm_exec_last_success_timestamp_seconds": ("gauge", set()),
    "fsm_exec_block_duration_seconds": ("histogram", {"le"}),
    "fsm_exec_state_duration_seconds": ("histogram", {"le", "state"}),
    "fsm_exec_venue_call_duration_seconds": ("histogram", {"le", "call", "outcome"}),
    "fsm_exec_journal_fsync_duration_seconds": ("histogram", {"le"}),
    "fsm_exec_build_info": ("gauge", {"version", "lifecycle_hash"}),
}


def test_a_scripted_live_run_scraped_over_http(registry: CollectorRegistry,
                                               exposition: str) -> None:
    """Retries (an error, a timeout, reconciliation timeouts), a halt and a manual resume,
    scraped from a real HTTP exposition: every name with its type and labels, counters,
    gauges read at scrape time, histograms, build info; never a block_id."""
    ids = ["a", "b", "c", "d"]
    r = rig(faults=["error", None, "hang_before", None, None, None],
            recon=[("ok", 0), ("ok", 0), ("never", 0), ("ok", 0)],
            max_retries=2, reconciliation_timeout=1,
            observers=[PrometheusObserver(registry)])
    r.em.update_state(T(0), "strategy_manager", blocks(*ids))
    halted = scrape(exposition)
    assert r.em.halted and r.em.queued_block_ids == ("d",)

    for name, (kind, labels) in FAMILIES.items():
        family = halted[name]
        assert family.type == kind, name
        for s in family.samples:
            if not s.name.endswith("_created"):
                assert set(s.labels) == (labels if s.name.endswith("_bucket")
                                         else labels - {"le"}), s
    assert value(halted, "fsm_exec_halted") == 1.0
    assert value(halted, "fsm_exec_queue_blocks") == 1.0
    assert value(halted, "fsm_exec_block_in_flight_age_seconds") == 0.0
    assert value(halted, "fsm_exec_blocks_total", outcome="success") == 2.0
    assert value(halted, "fsm_exec_blocks_total", outcome="failed") == 1.0
    assert value(halted, "fsm_exec_blocks_total", outcome="cancelled") == 0.0
    assert value(halted, "fsm_exec_errors_total", code="EXEC-002") == 1.0
    assert value(halted, "fsm_exec_errors_total", code="EXEC-001") == 0.0  # there from the start
    assert value(halted, "fsm_exec_retries_total", reason="error") == 1.0
    assert value(halted, "fsm_exec_retries_total", reason="timeout") == 1.0
    assert value(halted, "fsm_exec_retries_total", reason="reconciliation_timeout") == 2.0
    assert value(halted, "fsm_exec_retries_total", reason="in_doubt") == 0.0
    for source, dest, trigger, n in [
            ("queued", "routing", "start", 3), ("routing", "retrying", "route_failed", 2),
            ("retrying", "routing", "reroute", 2),
            ("routing", "pending_reconciliation", "executed", 3),
            ("pending_reconciliation", "retrying", "reconciliation_timeout", 2),
            ("retrying", "pending_reconciliation", "resume_reconciliation", 1),
            ("retrying", "failed", "fail", 1), ("pending_reconciliation", "success",
                                                 "reconciled", 2)]:
        assert value(halted, "fsm_exec_transitions_total", source=source, dest=dest,
                     trigger=trigger) == n, (source, dest, trigger)
    journal_moves_ = len(r.events("block_transition"))
    assert sum(s.value for s in halted["fsm_exec_transitions"].samples
               if s.name.endswith("_total")) == journal_moves_
    assert value(halted, "fsm_exec_venue_call_duration_seconds_count",
                 call="route", outcome="timeout") == 1.0
    assert value(halted, "fsm_exec_venue_call_duration_seconds_sum",
                 call="route", outcome="timeout") == pytest.approx(31.0)
    assert value(halted, "fsm_exec_venue_call_duration_seconds_count",
                 call="route", outcome="ok") == 3.0
    queries = sum(s.value for s in halted["fsm_exec_venue_call_duration_seconds"].samples
                  if s.name.endswith("_count") and s.labels["call"] == "query")
    assert queries >= 2  # b and a were each asked before routing again
    assert value(halted, "fsm_exec_block_duration_seconds_count") == 3.0
    assert value(halted, "fsm_exec_state_duration_seconds_count", state="retrying") == 4.0
    assert value(halted, "fsm_exec_state_duration_seconds_count",
                 state="pending_reconciliation") == 4.0
    assert value(halted, "fsm_exec_build_info", version=__version__,
                 lifecycle_hash=TABLE_HASH) == 1.0
    last_success = value(halted, "fsm_exec_last_success_timestamp_seconds")
    assert abs(last_success - time.time()) < 3600  # Unix time, not the fake clock

    r.em.update_state(T(1), "manual")
    resumed = scrape(exposition)
    assert value(resumed, "fsm_exec_halted") == 0.0
    assert value(resumed, "fsm_exec_queue_blocks") == 0.0
    assert value(resumed, "fsm_exec_blocks_total", outcome="success") == 3.0
    assert value(resumed, "fsm_exec_last_success_timestamp_seconds") >= last_success

    for s in all_samples(resumed):
        assert "block_id" not in s.labels
        assert not set(s.labels.values()) & set(ids), s


def test_gauges_are_read_at_scrape_time_and_follow_a_recovered_block(
        tmp_path: Path, registry: CollectorRegistry) -> None:
    """After a restart the block in doubt counts as in flight from its recovery (its age
    grows on the manager's clock before any update); settling it counts an in_doubt
    retry, and no block duration for it (its start is not known to this process)."""
    clock = FakeClock()
    venue = SimVenue()
    journal = EventLogger(tmp_path, "live")
    em = live_manager(CrashingLog(journal, lambda kind, data: kind == "block_transition"
                                  and data["source"] == "routing"),
                      FaultyVenue(venue, clock=clock), clock, [])
    with pytest.raises(Crash):
        em.update_state(T(1), "strategy_manager", blocks("a", "b"))
    journal.close()
    journal = EventLogger(tmp_path, "live")
    em2 = live_manager(journal, FaultyVenue(venue, clock=clock), clock,
                       [PrometheusObserver(registry)])
    assert registry.get_sample_value("fsm_exec_block_in_flight_age_seconds") == 0.0
    em2.recover(tmp_path)
    clock.advance(7.0)
    assert registry.get_sample_value("fsm_exec_block_in_flight_age_seconds") == pytest.approx(7.0)
    assert registry.get_sample_value("fsm_exec_queue_blocks") == 1.0
    em2.update_state(T(2), "retry")
    journal.close()
    assert registry.get_sample_value("fsm_exec_block_in_flight_age_seconds") == 0.0
    assert registry.get_sample_value("fsm_exec_retries_total", {"reason": "in_doubt"}) == 1.0
    assert registry.get_sample_value("fsm_exec_blocks_total", {"outcome": "success"}) == 2.0
    assert registry.get_sample_value("fsm_exec_block_duration_seconds_count") == 1.0  # b only


def test_in_flight_age_grows_while_a_block_runs(registry: CollectorRegistry) -> None:
    """A scrape during a reconciliation wait sees the block's age on the manager clock."""
    seen: list[float | None] = []
    r = rig(recon=[("ok", 4.0)], observers=[PrometheusObserver(registry)])
    real = r.rc.notify

    def notify(block_id: str | None) -> None:
        real(block_id)
        r.clock.advance(1.5)
        seen.append(registry.get_sample_value("fsm_exec_block_in_flight_age_seconds"))

    r.rc.notify = notify  # type: ignore[method-assign]
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert seen == [pytest.approx(1.5)]


def test_cancellations_and_fsyncs_are_counted(registry: CollectorRegistry) -> None:
    """Cancelled blocks count as outcome cancelled and as queued->cancelled transitions;
    journal_fsync calls (reported by the journal's writer) fill the fsync histogram."""
    obs = PrometheusObserver(registry)
    r = rig(observers=[obs])
    r.em.execute_instruction_blocks(T(0), blocks("a", "b", "c"))
    assert r.em.cancel(T(0), ["a", "c"], reason="operator") == ("a", "c")
    get = registry.get_sample_value
    assert get("fsm_exec_blocks_total", {"outcome": "cancelled"}) == 2.0
    assert get("fsm_exec_transitions_total", {"source": "queued", "dest": "cancelled",
                                              "trigger": "cancel"}) == 2.0
    for seconds in (0.0004, 0.003, 0.2):
        obs.on_call(CallEvent("journal_fsync", None, 0, 0.0, seconds, "ok"))
    assert get("fsm_exec_journal_fsync_duration_seconds_count") == 3.0
    assert get("fsm_exec_journal_fsync_duration_seconds_sum") == pytest.approx(0.2034)
    assert get("fsm_exec_journal_fsync_duration_seconds_bucket", {"le": "0.0005"}) == 1.0
    assert get("fsm_exec_journal_fsync_duration_seconds_bucket", {"le": "0.005"}) == 2.0
    obs.on_call(CallEvent("hand_off", "b", 1, 0.0, 0.1, "ok"))  # not a venue call: no series
    assert get("fsm_exec_venue_call_duration_seconds_count",
               {"call": "hand_off", "outcome": "ok"}) is None


def test_a_route_failure_without_a_known_reason_counts_as_error(
        registry: CollectorRegistry) -> None:
    """A route outcome outside the retry reasons is counted under error, never as a new
    label value."""
    obs = PrometheusObserver(registry)
    rig(observers=[obs])
    obs.on_call(CallEvent("route", "x", 1, 0.0, 0.0, "something_new"))
    obs.on_transition(TransitionEvent("x", "trade", "routing", "retrying", "route_failed", 1,
                                      0.0))
    assert registry.get_sample_value("fsm_exec_retries_total", {"reason": "error"}) == 1.0
    assert {s.labels.get("reason") for m in registry.collect() for s in m.samples
            if s.name == "fsm_exec_retries_total"} == set(RETRY_REASONS)


def test_namespace_and_default_registry() -> None:
    """namespace prefixes every name; without a registry the observer registers in
    prometheus_client's default REGISTRY; before it is attached its gauges read zero."""
    obs = PrometheusObserver(namespace="fsm_exec_test_default")
    assert obs.registry is REGISTRY
    get = REGISTRY.get_sample_value
    assert get("fsm_exec_test_default_queue_blocks") == 0.0
    assert get("fsm_exec_test_default_build_info",
               {"version": __version__, "lifecycle_hash": TABLE_HASH}) == 1.0
    bare = CollectorRegistry()
    PrometheusObserver(bare, namespace="")
    assert bare.get_sample_value("halted") == 0.0


def test_backtest_route_calls_are_timed_too(registry: CollectorRegistry,
                                            provider: TracerProvider,
                                            exporter: InMemorySpanExporter) -> None:
    """In backtest the route call is reported like in live: a venue-call sample and a
    route span (a failed one fails the block, fast)."""
    r = rig("backtest", faults=[None, "error"],
            observers=[PrometheusObserver(registry), OpenTelemetryObserver(provider, calls=True)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(ComponentError):
        r.em.update_state(T(1), "strategy_manager", blocks("b"))
    get = registry.get_sample_value
    assert get("fsm_exec_venue_call_duration_seconds_count",
               {"call": "route", "outcome": "ok"}) == 1.0
    assert get("fsm_exec_venue_call_duration_seconds_count",
               {"call": "route", "outcome": "error"}) == 1.0
    assert shape(exporter) == [
        ("fsm_exec.block trade", [("attempt 1", ["fsm_exec.route", "fsm_exec.hand_off"])]),
        ("fsm_exec.block trade", [("attempt 1", ["fsm_exec.route"])])]


def test_a_rerouted_backtest_block_times_its_second_route(tmp_path: Path,
                                                          registry: CollectorRegistry) -> None:
    """A backtest block in doubt after a restart, found not executed, is routed again by
    the state-by-state driver, and that call is timed too."""
    venue = SimVenue()
    journal = EventLogger(tmp_path, "backtest")
    rc = SimReconciliation()

    def backtest(log: Any, observers: list[Observer]) -> ExecutionManager:
        return ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(rc),
                                FaultyVenue(venue, ["error"] if not observers else []), rc,
                                event_logger=log, observers=observers)

    em = backtest(CrashingLog(journal, lambda kind, data: kind == "block_transition"
                              and data["source"] == "routing"), [])
    with pytest.raises(Crash):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    journal.close()
    journal = EventLogger(tmp_path, "backtest")
    em2 = backtest(journal, [PrometheusObserver(registry)])
    em2.recover(tmp_path)
    em2.update_state(T(1), "retry")
    journal.close()
    assert em2.block_state("a") == "success"
    assert registry.get_sample_value("fsm_exec_venue_call_duration_seconds_count",
                                     {"call": "route", "outcome": "ok"}) == 1.0
    assert registry.get_sample_value("fsm_exec_retries_total", {"reason": "in_doubt"}) == 1.0


# ------------------------------------------------------------------------ the seam


class Boom(Observer):
    """An observer that raises from every method, quoting a secret."""

    def __init__(self) -> None:
        self.calls = 0

    def _boom(self, event: Any) -> None:
        self.calls += 1
        raise RuntimeError(f"observer backend refused key {CANARY}")

    on_transition = on_call = on_event = _boom


def _script(observers: list[Observer]) -> Any:
    r = rig(faults=["error", None, "lost_response"], recon=[("ok", 0), ("fail", 0)],
            observers=observers)
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    r.em.cancel(T(1), ["c"], reason="operator")
    r.em.update_state(T(2), "manual", [block("d")])
    with contextlib.suppress(ComponentError):
        r.em.update_state(T(3), "strategy_manager", [{"block_id": "bad"}])
    return r


def test_an_observer_that_raises_changes_nothing_and_is_reported() -> None:
    """With an observer raising from every call, the journal (less its EXEC-016 error
    records), the venue calls, the positions and the status are exactly those of the same
    run without it; the first failure is journaled as EXEC-016 (the run is shorter than the
    report interval: only that one), secret redacted, and health is degraded."""
    plain = _script([])
    boom = Boom()
    noisy = _script([boom, PrometheusObserver(CollectorRegistry())])
    assert boom.calls > 10

    def journal(r: Any, drop_observer_errors: bool) -> list[tuple[Any, str, dict[str, Any]]]:
        return [(e.timestamp, e.event_type, e.data) for e in r.log.events
                if not (drop_observer_errors and e.event_type == "error"
                        and e.data["error_code"] == "EXEC-016")]

    assert journal(noisy, True) == journal(plain, False)
    reported = [e.data for e in noisy.log.of_type("error") if e.data["error_code"] == "EXEC-016"]
    # The first failure is reported; the others within the interval are counted, not
    # journaled (the report's own error event, which Boom also fails on, is not reported
    # again: no recursion).
    assert len(reported) == 1 and boom.calls > 10
    assert reported[0]["error_message"].startswith("observer Boom raised RuntimeError")
    assert all(CANARY not in repr(d) for d in reported)
    assert noisy.venue.route_calls == plain.venue.route_calls
    assert noisy.positions.positions == plain.positions.positions
    status = noisy.em.get_execution_status()
    assert {k: v for k, v in status.items() if k != "status"} == {
        k: v for k, v in plain.em.get_execution_status().items() if k != "status"}
    health = noisy.em.health_check()
    assert "EXEC-016" in {e["error_code"] for e in health["errors"]}


def test_observer_failures_degrade_health() -> None:
    """A run whose only problem is a failing observer reports itself degraded."""
    r = rig(observers=[Boom()])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.get_execution_status()["status"] == "degraded"
    assert r.em.block_state("a") == "success"


def test_no_secret_reaches_a_span_or_a_metric(provider: TracerProvider,
                                              exporter: InMemorySpanExporter,
                                              registry: CollectorRegistry) -> None:
    """With a secret in the config and in every adapter error, no span name, attribute,
    event or status and no metric name, label or help text holds it."""
    from prometheus_client import generate_latest

    class Leaky(SimVenue):
        def route_instruction(self, ts: Any, b: Any) -> Any:
            if b.block_id == "leak":
                raise ConnectionError(f"401 for key {CANARY}")
            return super().route_instruction(ts, b)

        def query_execution(self, ts: Any, b: Any) -> Any:
            raise TimeoutError(f"query with {CANARY} timed out")

    clock = FakeClock()
    rc = SimReconciliation(clock)
    em = ExecutionManager({"api_key": CANARY, "max_retries": 2}, StaticDataProvider(), "live",
                          SimPositionHandler(rc), Leaky(), rc, clock=clock, sleep=clock.sleep,
                          observers=[OpenTelemetryObserver(provider, calls=True),
                                     PrometheusObserver(registry)])
    em.update_state(T(0), "strategy_manager", [block("leak"), block("ok")])
    em.update_state(T(1), "manual")
    spans = exporter.get_finished_spans()
    assert spans
    text = "\n".join(s.to_json() for s in spans) + generate_latest(registry).decode()
    assert CANARY not in text
    assert "EXEC-007" in text  # the failure itself is there, by its code


# ------------------------------------------------------------------------ the dashboard


def _exported_names() -> set[str]:
    """Every sample name the observer's metric families can expose, samples or not yet."""
    registry = CollectorRegistry()
    rig(observers=[PrometheusObserver(registry)])
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "info": ("_info",)}
    return {m.name + suffix for m in registry.collect()
            for suffix in suffixes.get(m.type, ("",))}


def test_the_grafana_dashboard_uses_exactly_the_exported_names() -> None:
    """Every PromQL expression in examples/observe/grafana-dashboard.json names only metrics the
    observer exports, and every metric of the issue is on the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, v in node.items():
                if key in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(board)
    assert len(exprs) >= len(FAMILIES)
    used = {name for e in exprs for name in re.findall(r"\bfsm_exec_[a-z0-9_]+", e)}
    exported = _exported_names()
    assert used <= exported, used - exported
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert set(FAMILIES) <= families, set(FAMILIES) - families
    assert board["title"] and board["uid"] and board["panels"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"


# ------------------------------------------------------------------------ the demo


def test_demo_serves_its_metrics_while_it_runs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """fsm-exec demo --mode live --metrics-port 0 prints its metrics URL, serves the run's
    metrics there until interrupted, then stops serving and exits 0."""
    import io

    import fsm_exec.cli.commands.demo as cli

    out = io.StringIO()
    seen: dict[str, Any] = {}

    def interrupted() -> None:
        url = re.search(r"metrics: (http://\S+)", out.getvalue())
        assert url is not None
        seen["url"] = url.group(1)
        seen["families"] = scrape(url.group(1))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "wait_for_interrupt", interrupted)
    assert main(["demo", "--mode", "live", "--metrics-port", "0", "--out", str(tmp_path)],
                out=out) == 0
    families = seen["families"]
    assert value(families, "fsm_exec_blocks_total", outcome="failed") == 1.0
    assert value(families, "fsm_exec_blocks_total", outcome="success") > 10
    assert value(families, "fsm_exec_retries_total", reason="reconciliation_timeout") >= 1
    assert value(families, "fsm_exec_halted") == 0.0  # the demo resumed it
    assert "serving the run's metrics until Ctrl-C" in out.getvalue()
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(seen["url"], timeout=5)


def test_demo_refuses_a_port_it_cannot_listen_on(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use (or out of range) is a usage error, exit 2, before anything runs."""
    server, _ = start_http_server(0, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        port = str(server.server_port)
        assert main(["demo", "--metrics-port", port, "--out", str(tmp_path)]) == 2
        assert main(["demo", "--metrics-port", "70000", "--out", str(tmp_path)]) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert "cannot listen" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()


def test_demo_stops_serving_when_it_fails(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that cannot write its outputs exits 2 and leaves no server behind."""
    import fsm_exec.cli.commands.demo as cli

    started: list[Any] = []
    real = cli.serve_metrics

    def spy(port: int | None, out: Any) -> Any:
        observers, server = real(port, out)
        started.append(server)
        return observers, server

    monkeypatch.setattr(cli, "serve_metrics", spy)
    (tmp_path / "file").write_text("not a directory")
    assert main(["demo", "--metrics-port", "0", "--out", str(tmp_path / "file")]) == 2
    (server,) = started
    with pytest.raises(OSError, match="Bad file descriptor"):
        server.socket.getsockname()  # closed


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_demo_metrics_port_from_a_real_process(tmp_path: Path) -> None:
    """The installed command serves real metrics over HTTP and stops cleanly on Ctrl-C."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "fsm_exec", "demo", "--mode", "live",
                             "--metrics-port", "0", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("metrics: "):
                url = line.split()[1]
            if line.startswith("serving the run's metrics"):
                break
        assert url is not None
        families = scrape(url)
        assert value(families, "fsm_exec_blocks_total", outcome="failed") == 1.0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_the_package_version_is_the_build_info_version() -> None:
    """build_info's version label is the package's own version."""
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    assert registry.get_sample_value(
        "fsm_exec_build_info", {"version": fsm_exec.__version__,
                                "lifecycle_hash": TABLE_HASH}) == 1.0


def test_a_failing_observer_costs_one_record_per_interval() -> None:
    """A metrics outage over 20 calls spread across 190 s: the first failure is journaled,
    then one count per OBSERVER_REPORT_INTERVAL (not one fsynced record per hook call), each
    naming how many failures it stands for; health is degraded after every call."""
    boom = Boom()
    r = rig(observers=[boom])
    for i in range(20):
        r.em.update_state(T(i), "strategy_manager", [block(f"b{i}")])
        assert r.em.get_execution_status()["status"] == "degraded"
        r.clock.advance(10)
    reported = [e.data["error_message"] for e in r.log.of_type("error")
                if e.data["error_code"] == "EXEC-016"]
    assert 1 < len(reported) <= 1 + 190 // OBSERVER_REPORT_INTERVAL + 1
    assert boom.calls > 10 * len(reported)
    assert "the first was reported before" in reported[1]
    counted = sum(int(m.split(" (")[1].split(" times")[0]) for m in reported[1:])
    assert 0 < counted < boom.calls


def test_a_second_prometheus_observer_on_one_registry_is_refused_clearly() -> None:
    """Two PrometheusObservers on one registry and namespace (one per manager on the default
    registry, say): the second is an InvalidArgumentError saying what to do, not a raw
    DuplicateTimeseries, and leaves the registry as it was; another namespace works."""
    registry = CollectorRegistry()
    first = PrometheusObserver(registry)
    before = sorted(m.name for m in registry.collect())
    with pytest.raises(InvalidArgumentError, match="its own registry or namespace"):
        PrometheusObserver(registry)
    assert sorted(m.name for m in registry.collect()) == before
    second = PrometheusObserver(registry, namespace="desk_b")
    r1, r2 = rig(observers=[first]), rig(observers=[second])
    r1.em.update_state(T(0), "strategy_manager", blocks("a"))
    r2.em.update_state(T(0), "strategy_manager", blocks("b", "c"))
    assert registry.get_sample_value("fsm_exec_blocks_total", {"outcome": "success"}) == 1
    assert registry.get_sample_value("desk_b_blocks_total", {"outcome": "success"}) == 2


# ------------------------------------------------------------------------ what costs is asked for


def test_by_default_a_block_is_one_span_and_a_failed_call_an_event(
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """Without calls=True a block is its one span: its transitions as events, a call that
    failed (the rejected first route) as an event fsm_exec.call; no attempt or call span."""
    r = rig(faults=["reject"], recon=[("ok", 2.5)], observers=[OpenTelemetryObserver(provider)])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["fsm_exec.block trade"] * 2
    first = spans[0]
    moves = [e for e in first.events if e.name == "fsm_exec.transition"]
    assert [(e.attributes or {})["fsm_exec.dest"] for e in moves] == [
        m[1] for m in journal_moves(r, "a")]
    (call,) = [e for e in first.events if e.name == "fsm_exec.call"]
    assert call.attributes is not None
    assert call.attributes["fsm_exec.call"] == "route"
    assert call.attributes["fsm_exec.outcome"] == "rejected"
    assert not [e for e in spans[1].events if e.name == "fsm_exec.call"]


def test_sample_traces_that_fraction_of_the_blocks_by_block_id(
        provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """sample=0.25 traces about a quarter of 400 blocks, the same ones on every run (chosen
    by block_id); the untraced cost no span."""
    def traced() -> set[str]:
        exporter.clear()
        r = rig("backtest", observers=[OpenTelemetryObserver(provider, sample=0.25)],
                max_queue_size=500)
        r.em.update_state(T(0), "strategy_manager", blocks(*(f"b{i}" for i in range(400))))
        return {str(attrs(s)["fsm_exec.block_id"]) for s in exporter.get_finished_spans()}

    first = traced()
    assert 60 <= len(first) <= 140
    assert traced() == first


def test_a_block_the_provider_samples_out_gets_no_spans(exporter: InMemorySpanExporter) -> None:
    """A provider whose sampler drops everything: the observer adds nothing to the dropped
    block span (no attempt or call spans are started under it, even with calls=True)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    obs = OpenTelemetryObserver(provider, calls=True)
    r = rig(observers=[obs])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert exporter.get_finished_spans() == ()
    assert r.em.get_execution_status()["blocks_executed"] == 1


@pytest.mark.parametrize(("kw", "match"), [({"sample": 0}, "sample"), ({"sample": 1.5}, "sample"),
                                           ({"sample": "all"}, "sample"),
                                           ({"calls": 1}, "calls")])
def test_bad_tracing_options_are_refused(kw: dict[str, Any], match: str) -> None:
    """sample outside (0, 1] or not a number, calls not a bool: a clear error."""
    with pytest.raises(InvalidArgumentError, match=match):
        OpenTelemetryObserver(**kw)


def test_an_observer_gets_only_the_manager_events_it_wants() -> None:
    """manager_events narrows on_event to those kinds; an observer without it gets every
    kind; the manager builds no event of a kind nobody wants (accepted, update)."""
    from fsm_exec.observe import ManagerEvent, Observer

    class Picky(Observer):
        manager_events: frozenset[str] | None = frozenset({"error"})

        def __init__(self) -> None:
            self.kinds: list[str] = []

        def on_event(self, event: ManagerEvent) -> None:
            self.kinds.append(event.kind)

    class All(Picky):
        manager_events = None

    picky, everything = Picky(), All()
    r = rig("backtest", observers=[picky])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(InvalidArgumentError):
        r.em.update_state(T(1), "cron")
    assert picky.kinds == ["error"]
    built: list[str] = []
    real = ManagerEvent.__init__

    def counting(self: Any, kind: str, *args: Any, **kw: Any) -> None:
        built.append(kind)
        real(self, kind, *args, **kw)

    r = rig("backtest", observers=[Picky(), everything])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert everything.kinds == ["initialized", "accepted", "update"]
    r = rig("backtest", observers=[Picky()])
    try:
        ManagerEvent.__init__ = counting  # type: ignore[method-assign]
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    finally:
        ManagerEvent.__init__ = real  # type: ignore[method-assign]
    assert built == []
