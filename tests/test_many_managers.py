"""Issue 26 item 3: many managers in one process, each with its own health registration and
its own metrics (a ``manager`` label), one health manager and one registry for them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fsm_exec import (
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    UnifiedHealthManager,
    backtest_run,
)
from fsm_exec.observe import PrometheusMetrics, PrometheusObserver
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks


def manager(log: Any = None, **kwargs: Any) -> ExecutionManager:
    rc = SimReconciliation(None)
    return ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(rc),
                            SimVenue(), rc, event_logger=log, **kwargs)


# ------------------------------------------------------------------------ health


def test_one_health_manager_serves_named_managers_side_by_side() -> None:
    """Two managers with names register as ExecutionManager[<name>]; each report is its
    own manager's."""
    health = UnifiedHealthManager()
    a = manager(health_manager=health, name="sma-10-20")
    b = manager(health_manager=health, name="sma-5-30")
    a.update_state(T(0), "strategy_manager", blocks("x", "y"))
    assert list(health.components) == ["ExecutionManager[sma-10-20]",
                                       "ExecutionManager[sma-5-30]"]
    assert (a.name, a.health_name) == ("sma-10-20", "ExecutionManager[sma-10-20]")
    reports = health.check()
    assert reports["ExecutionManager[sma-10-20]"]["metrics"]["blocks_executed"] == 2
    assert reports["ExecutionManager[sma-5-30]"]["metrics"]["blocks_executed"] == 0
    assert reports["ExecutionManager[sma-5-30]"] == b.health_check()


def test_a_backtest_run_names_its_manager_after_the_run(tmp_path: Path) -> None:
    """A manager on a backtest_run journal takes the run id as its name (name= wins)."""
    health = UnifiedHealthManager()
    with manager(backtest_run(tmp_path, run_id="r1"), health_manager=health) as one, \
            manager(backtest_run(tmp_path, run_id="r2"), health_manager=health,
                    name="mine") as two:
        assert (one.name, two.name) == ("r1", "mine")
        assert list(health.components) == ["ExecutionManager[r1]", "ExecutionManager[mine]"]


def test_an_unnamed_manager_registers_as_before_and_a_true_duplicate_is_refused() -> None:
    """Unnamed: 'ExecutionManager', as before; a second unnamed one, or a second with the
    same name, is refused clearly (naming name=), and registers nothing."""
    health = UnifiedHealthManager()
    first = manager(health_manager=health)
    assert first.name is None and health.components == ("ExecutionManager",)
    with pytest.raises(InvalidArgumentError, match=r"name=.*ExecutionManager\[<name>\]"):
        manager(health_manager=health)
    kept = manager(health_manager=health, name="a")  # alive: its name is taken
    with pytest.raises(InvalidArgumentError, match="already registered"):
        manager(health_manager=health, name="a")
    assert list(health.components) == ["ExecutionManager", "ExecutionManager[a]"]
    assert kept.health_name == "ExecutionManager[a]"


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "run/1", 7, b"run"])
def test_a_bad_name_is_refused(name: Any) -> None:
    """A name is 1-64 letters, digits and ._:-, or None."""
    with pytest.raises(InvalidArgumentError, match="name: must be None or 1-64"):
        manager(name=name)


def test_a_closed_manager_leaves_the_health_manager_and_never_its_successor() -> None:
    """close() unregisters the manager (a thousand runs leave no thousand checks), so its
    name may be used again; closing the old one again never removes the new one's."""
    health = UnifiedHealthManager()
    first = manager(health_manager=health, name="run")
    first.close()
    assert list(health.components) == []
    second = manager(health_manager=health, name="run")
    first.close()
    assert list(health.components) == ["ExecutionManager[run]"]
    assert health.check()["ExecutionManager[run]"] == second.health_check()


def test_a_dropped_managers_name_is_free_for_the_next_run_at_once() -> None:
    """A run's manager dropped without close() (a framework with no end hook) gives its name
    back to the next run of the loop at once, not only once a garbage collection found it
    (it is held in reference cycles: the next run with the same name was refused, 'already
    registered', until one did). A name a living manager holds stays refused."""
    import gc

    health = UnifiedHealthManager()
    gc.disable()  # no collection but the one a refusal may ask for
    try:
        for i in range(3):
            em = manager(health_manager=health, name="sma")
            em.update_state(T(0), "strategy_manager", blocks(f"a{i}"))
            del em  # dropped, never closed
        assert health.components == ("ExecutionManager[sma]",)
        alive = manager(health_manager=health, name="sma")
        with pytest.raises(InvalidArgumentError, match="already registered"):
            manager(health_manager=health, name="sma")
        assert health.check()["ExecutionManager[sma]"] == alive.health_check()
    finally:
        gc.enable()


def test_a_shared_health_manager_never_keeps_an_unclosed_run_alive(tmp_path: Path) -> None:
    """A manager dropped without close() is collected although a long-lived health manager
    holds its check: its buffered journal is written, its files and lock let go, and its
    registration goes with it (before: the registry held the manager, so its records were
    never written while the process went on, and each run kept its descriptors)."""
    import gc
    import os

    from fsm_exec import check_journal

    health = UnifiedHealthManager()
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        em = manager(backtest_run(tmp_path, run_id=f"r{i}"), health_manager=health)
        em.update_state(T(0), "strategy_manager", blocks(f"a{i}", f"b{i}"))
        assert health.components == (f"ExecutionManager[r{i}]",)
        del em  # dropped, never closed (a run that raised, a framework with no end hook)
        gc.collect()
        assert not health.components
    assert len(os.listdir("/proc/self/fd")) == fds
    for i in range(20):
        report = check_journal(tmp_path / f"r{i}")
        assert report.ok and (report.blocks_accepted, report.blocks_executed) == (2, 2)
    again = manager(backtest_run(tmp_path, run_id="r0-again"), health_manager=health,
                    name="r0")  # the name is free again
    assert health.check()["ExecutionManager[r0]"] == again.health_check()
    again.close()


def test_a_health_check_of_a_collected_manager_says_so() -> None:
    """The check a shared health manager holds reports a manager collected meanwhile as
    unhealthy, naming why, until its registration is gone."""
    from fsm_exec.manager.wiring import WeakHealthCheck

    em = manager()
    check = WeakHealthCheck(em)
    assert check() == em.health_check()
    del em
    import gc

    gc.collect()
    assert check() == {"status": "unhealthy", "errors": [
        "the manager was garbage-collected without close()"]}


def test_reopen_hands_a_named_registration_to_the_replacement(tmp_path: Path) -> None:
    """reopen() registers the replacement under the same name; closing the retired one
    afterwards leaves it."""
    health = UnifiedHealthManager()
    log = EventLogger(tmp_path, "backtest")
    em = manager(log, health_manager=health, name="n")
    em.update_state(T(0), "strategy_manager", blocks("a"))
    new = em.reopen()
    em.close()
    assert list(health.components) == ["ExecutionManager[n]"]
    assert health.check()["ExecutionManager[n]"] == new.health_check()
    new.close()


# ------------------------------------------------------------------------ metrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_one_prometheus_metrics_serves_many_managers_with_a_manager_label(
        tmp_path: Path) -> None:
    """Each manager's series carry its name; counters and gauges are each manager's own."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    a = manager(name="a", observers=[metrics.observer()])
    b = manager(name="b", observers=[metrics.observer()])
    a.update_state(T(0), "strategy_manager", blocks("x", "y"))
    b.update_state(T(0), "strategy_manager", blocks("z"))
    b.execute_instruction_blocks(T(1), blocks("q"))
    assert value(registry, "fsm_exec_blocks_total", manager="a", outcome="success") == 2.0
    assert value(registry, "fsm_exec_blocks_total", manager="b", outcome="success") == 1.0
    assert value(registry, "fsm_exec_queue_blocks", manager="a") == 0.0
    assert value(registry, "fsm_exec_queue_blocks", manager="b") == 1.0
    assert value(registry, "fsm_exec_transitions_total", manager="a", source="queued",
                 dest="routing", trigger="start") == 2.0
    assert value(registry, "fsm_exec_block_duration_seconds_count", manager="b") == 1.0
    b.close()  # a closed manager leaves the gauges; its counters stay
    assert value(registry, "fsm_exec_queue_blocks", manager="b") is None
    assert value(registry, "fsm_exec_blocks_total", manager="b", outcome="success") == 1.0


def test_a_backtest_loop_labels_each_run_by_its_id(tmp_path: Path) -> None:
    """observer() with no label takes the manager's name: a backtest_run's id."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for i in range(3):
        with manager(backtest_run(tmp_path, run_id=f"run-{i}"),
                     observers=[metrics.observer()]) as em:
            em.update_state(T(0), "strategy_manager", blocks(*(f"b{j}" for j in range(i))))
    for i in range(3):
        got = value(registry, "fsm_exec_blocks_total", manager=f"run-{i}", outcome="success")
        assert got == float(i)


def test_two_managers_in_use_may_not_share_a_label() -> None:
    """A true duplicate (one label, both managers in use) is refused, naming the label;
    an unnamed manager without a label is refused too; a closed one's label is free."""
    metrics = PrometheusMetrics(CollectorRegistry())
    first = manager(name="a", observers=[metrics.observer()])
    with pytest.raises(InvalidArgumentError, match="'a' is already used"):
        manager(name="b", observers=[metrics.observer("a")])
    with pytest.raises(InvalidArgumentError, match="no name to label"):
        manager(observers=[metrics.observer()])
    with pytest.raises(InvalidArgumentError, match="non-empty label"):
        metrics.observer("")
    first.close()
    manager(name="a", observers=[metrics.observer()])


def test_a_second_observer_on_one_registry_is_still_refused_and_points_the_way() -> None:
    """The single-manager observer keeps its clear refusal of a true duplicate, which now
    names PrometheusMetrics; so does a second PrometheusMetrics."""
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    with pytest.raises(InvalidArgumentError, match="PrometheusMetrics"):
        PrometheusObserver(registry)
    PrometheusMetrics(registry, namespace="runs")
    with pytest.raises(InvalidArgumentError, match="already holds metrics named runs_"):
        PrometheusMetrics(registry, namespace="runs")


def test_reopen_keeps_the_label(tmp_path: Path) -> None:
    """The replacement reopen() builds is observed under the same label, counters going on."""
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    log = EventLogger(tmp_path, "backtest")
    em = manager(log, name="n", observers=[metrics.observer()])
    em.update_state(T(0), "strategy_manager", blocks("a"))
    new = em.reopen()
    new.update_state(T(1), "strategy_manager", blocks("b"))
    assert value(registry, "fsm_exec_blocks_total", manager="n", outcome="success") == 2.0
    assert value(registry, "fsm_exec_queue_blocks", manager="n") == 0.0
    new.close()


def test_a_manager_collected_while_the_health_manager_checks_breaks_no_check() -> None:
    """A manager dropped unclosed is collected whenever the garbage collector runs, which
    may be in the middle of check() (a later checker's allocations): its registration
    leaves then, and check() still returns every report (before: RuntimeError, the dict
    changed size during iteration)."""
    import gc

    health = UnifiedHealthManager()
    dropped = manager(health_manager=health, name="a")
    collecting = manager(health_manager=health, name="b")
    del dropped
    report = collecting.health_check

    def collect_then_report() -> dict[str, Any]:
        gc.collect()  # as an allocation inside this check could
        return report()

    health.unregister_component("ExecutionManager[b]")
    health.register_component("ExecutionManager[b]", collect_then_report)
    gc.disable()
    try:
        reports = health.check()
    finally:
        gc.enable()
    assert "ExecutionManager[b]" in reports and health.components == ("ExecutionManager[b]",)
    collecting.close()
