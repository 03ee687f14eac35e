"""Defects a hostile review found, each pinned by the test that shows it: the fix holds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fsm_exec import (
    EventLogger,
    ExecutionManager,
    check_journal,
    read_journal,
)
from fsm_exec._sim import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
from fsm_exec.observe import Observer

from kit import T, block, blocks


class Reconciled:
    reconciliation_status = "success"


class FailsOnFsync(Observer):
    """An observer whose client raises on every journal fsync (a StatsD socket error)."""

    def on_call(self, event: Any) -> None:
        if event.kind == "journal_fsync":
            raise ConnectionError("statsd down")


def live(log: Any, venue: Any = None, **kw: Any) -> ExecutionManager:
    clock = FakeClock()
    return ExecutionManager({"not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                            StaticDataProvider(), "live", SimPositionHandler(),
                            venue or SimVenue(), Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep, **kw)


def test_an_observer_failing_on_fsync_never_breaks_the_journal(tmp_path: Path) -> None:
    """An observer raising on every journal fsync: seqs stay 1, 2, 3 ..., the journal
    checks clean and recovers, and the failure is reported (EXEC-016) after the call."""
    with EventLogger(tmp_path, "live") as log:
        em = live(log, observers=[FailsOnFsync()])
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))
        em.update_state(T(1), "strategy_manager", blocks("c"))
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert check_journal(tmp_path).ok
    codes = [r.data.get("error_code") for r in read_journal(tmp_path)
             if r.event_type == "error"]
    assert codes and set(codes) == {"EXEC-016"}
    with EventLogger(tmp_path, "live") as log:
        assert live(log).recover().blocks_executed == 3


def test_another_writer_and_a_failing_observer_do_not_deadlock(tmp_path: Path) -> None:
    """Another component writing to the shared journal from its own thread while an
    observer fails on fsync: both finish (no lock taken in two orders)."""
    log = EventLogger(tmp_path, "live")
    em = live(log, observers=[FailsOnFsync()])
    stop = threading.Event()

    def other_component() -> None:
        while not stop.is_set():
            log.log_event(T(0), "tick", "OtherComponent", {"n": 1})

    writer = threading.Thread(target=other_component, daemon=True)
    writer.start()
    done = threading.Event()

    def run() -> None:
        for i in range(30):
            em.update_state(T(i), "strategy_manager", blocks(f"b{i}"))
        done.set()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)
    stop.set()
    writer.join(10)
    assert done.is_set(), "the manager deadlocked with the other writer"
    log.close()
    assert check_journal(tmp_path).ok


def test_a_payload_that_looks_like_a_checkpoint_is_not_one(tmp_path: Path) -> None:
    """A block whose instruction holds ``{"event_type": "checkpoint"}`` journals those exact
    bytes; recovery, status and check still start from the real checkpoint."""
    from fsm_exec._status import read_status

    with EventLogger(tmp_path, "live", checkpoint_every=None) as log:
        em = live(log)
        em.update_state(T(0), "strategy_manager", blocks("a", "b", "d"))
        lookalike = block("c")
        lookalike["instructions"][0]["meta"] = {"event_type": "checkpoint",
                                                 "component": "ExecutionManager"}
        em.update_state(T(1), "strategy_manager", [lookalike])
    raw = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.jsonl")))
    assert b'{"event_type":"checkpoint","component":"ExecutionManager"}' in raw
    assert check_journal(tmp_path).ok
    with EventLogger(tmp_path, "live") as log:
        assert live(log).recover().blocks_executed == 4
    report = read_status(tmp_path)
    assert report["counters"]["executed"] == 4 and report["health"] == "healthy"
    assert report["checkpoint_seq"] is not None
