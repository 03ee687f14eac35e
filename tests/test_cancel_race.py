"""A cancel from another thread that lands between the moment ``update_state`` takes the
head of the queue (the block loaded, not started yet) and the block's start record: the
block is cancelled, never started nor routed, and the journal checks clean (before, the
start was journaled after the cancel: a journal recovery refuses, a manager that retires)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import EventLogger, ExecutionManager, Lifecycle
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.check import check_journal

from kit import T, blocks


def cancel_as_it_loads(em: ExecutionManager, block_id: str) -> list[tuple[str, ...]]:
    """Make the driver's next drive() (only) first wait for another thread's cancel of
    ``block_id`` (the loaded block, still queued)."""
    done: list[tuple[str, ...]] = []
    drive = em._driver.drive

    def late(ts: Any, f: Any) -> None:
        em._driver.drive = drive  # type: ignore[method-assign]  # once
        t = threading.Thread(target=lambda: done.append(
            em.cancel(T(0), [block_id], reason="desk call")))
        t.start()
        t.join()
        drive(ts, f)

    em._driver.drive = late  # type: ignore[method-assign]
    return done


@pytest.mark.parametrize(("mode", "lifecycle"), [("backtest", None), ("live", None),
                                                 ("backtest", "default-as-data")])
def test_a_block_cancelled_once_loaded_is_never_started(
        tmp_path: Path, mode: str, lifecycle: str | None) -> None:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    venue = SimVenue()
    log = EventLogger(tmp_path, mode)
    em = ExecutionManager({"strategy_mode": "eth_basis"}, StaticDataProvider(), mode,
                          SimPositionHandler(rc), venue, rc, event_logger=log, clock=clock,
                          sleep=clock.sleep,
                          lifecycle=Lifecycle.default() if lifecycle else None)
    done = cancel_as_it_loads(em, "a")
    status = em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert done == [("a",)]
    assert venue.route_calls == Counter({"b": 1})  # "a" never routed
    assert status["blocks_cancelled"] == 1 and status["blocks_executed"] == 1
    assert str(em.block_state("a")) == "cancelled" and not em.interrupted
    em.close()
    report = check_journal(tmp_path)
    assert report.ok, report
    assert (report.blocks_cancelled, report.blocks_executed) == (1, 1)
