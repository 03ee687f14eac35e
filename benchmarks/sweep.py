"""How a sweep of backtests scales on this machine's cores: the same runs one after the
other in this process, in a pool of processes (one per core), and on a local Ray
(``examples/sweep_ray.py``), elapsed time. Each run is the example's :func:`backtest`, with
its own manager and journal directory."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import sweep_ray  # noqa: E402 - the example is a script, not a package


def _pairs(runs: int) -> list[tuple[int, int]]:
    return [(2 + i, 48) for i in range(runs)]


def sequential(runs: int, hours: int, out: str) -> float:
    t0 = time.perf_counter()
    for f, s in _pairs(runs):
        sweep_ray.backtest(f, s, out, hours)
    return time.perf_counter() - t0


def pooled(runs: int, hours: int, out: str, workers: int) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(sweep_ray.backtest, *zip(*_pairs(runs), strict=True),
                      [out] * runs, [hours] * runs))
    return time.perf_counter() - t0


def on_ray(runs: int, hours: int, out: str, workers: int) -> tuple[float, float] | None:
    """(seconds with Ray's start and stop, seconds of the sweep alone), or None."""
    try:
        import ray
    except ModuleNotFoundError:
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING,
             object_store_memory=100_000_000)
    try:
        t1 = time.perf_counter()
        sweep_ray.sweep(_pairs(runs), out, hours=hours)
        alone = time.perf_counter() - t1
    finally:
        ray.shutdown()
    return time.perf_counter() - t0, alone


def rows(table: Any, *, runs: int, calls: int, quick: bool) -> None:
    from benchmarks import bench

    workers = os.cpu_count() or 1
    hours = min(calls, 720)
    with tempfile.TemporaryDirectory(prefix="fsm-sweep-") as tmp:
        bench.progress(f"sweep: {runs} backtests of {hours} hours, one process")
        one = sequential(runs, hours, f"{tmp}/one")
        bench.progress(f"sweep: the same on {workers} processes")
        many = pooled(runs, hours, f"{tmp}/pool", workers)
        bench.progress(f"sweep: the same on a local Ray with {workers} CPUs")
        ray = None if quick else on_ray(runs, hours, f"{tmp}/ray", workers)
    table.add(f"sweep of {runs} backtests: {workers} processes / 1 process, speed-up",
              f"{one / many:.2f}x", "", f"printed ({one:.1f} s / {many:.1f} s)")
    if ray is not None:
        table.add(f"  the same on a local Ray ({workers} CPUs), speed-up",
                  f"{one / ray[1]:.2f}x", "",
                  f"printed ({ray[1]:.1f} s; {ray[0]:.1f} s with start/stop)")
