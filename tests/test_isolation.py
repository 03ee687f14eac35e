"""Many managers run independently, in one process and across processes: no state is
shared between them (journals and their locks, metric registries, the operational log), so
a sweep of backtests gives each run what it would get alone."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import orjson
from loguru import logger
from prometheus_client import CollectorRegistry

from fsm_exec import EventLogger, ExecutionManager, check_journal
from fsm_exec.observe import PrometheusObserver
from fsm_exec.testing import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block

NAME = "execution_manager_events.jsonl"
BLOCKS = 40


def run_backtest(log_dir: str, amount: float) -> dict[str, Any]:
    """One backtest: the same block ids in every run, the amount its own; returns what it
    did, what its journal holds and what its metrics say."""
    registry = CollectorRegistry()
    clock = FakeClock()
    rc = SimReconciliation(clock)
    positions = SimPositionHandler(rc)
    with EventLogger(log_dir, "backtest") as log:
        em = ExecutionManager({"strategy_mode": "sweep"}, StaticDataProvider(), "backtest",
                              positions, SimVenue(), rc, event_logger=log, clock=clock,
                              sleep=clock.sleep, observers=[PrometheusObserver(registry)])
        for i in range(BLOCKS):
            em.update_state(T(60 * i), "strategy_manager",
                            [block(f"b{i}", amount=amount)])
            em.update_state(T(60 * i + 30), "strategy_manager")
    records = [orjson.loads(x) for x in (Path(log_dir) / NAME).read_bytes().splitlines()]
    return {
        "executed": em.get_execution_status()["blocks_executed"],
        "metric": registry.get_sample_value("fsm_exec_blocks_total", {"outcome": "success"}),
        "amounts": sorted({r["data"]["instructions"][0]["amount"] for r in records
                           if r["event_type"] == "block_accepted"}),
        "moves": [(r["data"]["block_id"], r["data"]["dest"]) for r in records
                  if r["event_type"] == "block_transition"],
        "ok": check_journal(Path(log_dir) / NAME).ok,
    }


def _expected(amount: float) -> dict[str, Any]:
    return {"executed": BLOCKS, "metric": float(BLOCKS), "amounts": [amount],
            "moves": [(f"b{i}", d) for i in range(BLOCKS)
                      for d in ("routing", "pending_reconciliation", "success")],
            "ok": True}


def test_managers_on_threads_of_one_process_share_nothing(tmp_path: Path) -> None:
    """Six managers at once on six threads, the same block ids, each its own journal and
    metrics registry: each journal holds exactly its own run, each registry counts its own
    blocks, and fsm_exec wrote nothing to the process's loguru logger (off unless asked)."""
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="TRACE")
    results: dict[int, dict[str, Any]] = {}
    try:
        def worker(i: int) -> None:
            results[i] = run_backtest(str(tmp_path / f"run{i}"), float(i + 1))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        logger.remove(sink)
    assert {i: results.get(i) for i in range(6)} == {i: _expected(float(i + 1))
                                                    for i in range(6)}
    assert seen == []


def test_managers_in_other_processes_get_what_they_get_alone(tmp_path: Path) -> None:
    """The same runs in a pool of fresh processes (spawned, as a sweep's workers are) give
    the results each gives alone in this process."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.starmap(run_backtest, [(str(tmp_path / f"p{i}"), float(i + 1))
                                          for i in range(4)])
    assert got == [_expected(float(i + 1)) for i in range(4)]
    alone = run_backtest(str(tmp_path / "alone"), 1.0)
    assert alone == got[0]
