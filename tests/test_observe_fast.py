"""The observers' quick ways: what a scrape sees of the Prometheus observer's lock-free series
is exactly what prometheus_client's own would show, for any stream of events; the series other
threads write keep prometheus_client's locks; the multiprocess mode keeps its own values."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.values import MutexValue

from fsm_exec.core.lifecycle import TRANSITIONS
from fsm_exec.observe import CallEvent, ManagerEvent, PrometheusMetrics, PrometheusObserver
from fsm_exec.observe import prometheus as prom_observer
from fsm_exec.observe.seam import TransitionEvent

from kit import rig

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
