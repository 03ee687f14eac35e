"""A parameter sweep of backtests on Ray: one backtest per parameter set, each with its own
manager and its own journal directory, the results gathered into one pandas frame.

The strategy is the moving-average crossover of ``first_strategy.py`` over the bundled
hourly ETH series; the sweep tries every (fast, slow) pair of the grid. Each run is an
ordinary function (:func:`backtest`): Ray only ships it to a worker, so the same code runs
in one process, in a process pool, or on a cluster. Nothing is shared between runs: each
builds its own manager, exchange, book and journal (``fsm_exec.backtest_run`` makes a new
directory per run and refuses to reuse one).

    pip install 'fsm-exec[ray,pandas]'
    python examples/sweep_ray.py                        # ray.init() on this machine
    python examples/sweep_ray.py --address auto         # an existing cluster (or ray://...)
    python examples/sweep_ray.py --fast 3 6 --slow 24 48 --out runs --num-cpus 2

On a cluster, ``--out`` must be a directory every node can write (a shared file system),
or each node keeps its runs' journals on its own disk (the frame says where).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from fsm_exec import ExecutionManager, backtest_run


def load_prices(hours: int | None = None) -> pd.DataFrame:
    """The bundled hourly prices (the first ``hours`` of them), indexed by timestamp."""
    with resources.files("fsm_exec").joinpath("data", "eth_prices_1h.csv").open() as f:
        frame = pd.read_csv(f, index_col="timestamp", parse_dates=["timestamp"])
    return frame if hours is None else frame.iloc[:hours]


class FramePrices:
    """The data provider: the row of the price frame at the manager's timestamp."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": self.frame.loc[timestamp].to_dict()}}


class ToyExchange:
    """Fills at the frame's price, once per block_id (idempotent)."""

    def __init__(self, prices: FramePrices) -> None:
        self.prices = prices
        self.fills: dict[str, dict[str, float]] = {}

    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, float]:
        if block.block_id not in self.fills:
            price = self.prices.get_data(timestamp)["market_data"]["prices"]["ETH"]
            eth = sum((1 if i["side"] == "buy" else -1) * i["amount"]
                      for i in block.instructions)
            self.fills[block.block_id] = {"ETH": eth, "USDT": -eth * price}
        return self.fills[block.block_id]

    def query_execution(self, timestamp: Any, block: Any) -> dict[str, float] | None:
        return self.fills.get(block.block_id)


class Book:
    """The position handler: books the deltas the exchange returned."""

    def __init__(self, cash: float) -> None:
        self.positions = {"ETH": 0.0, "USDT": cash}

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        for asset, amount in deltas.items():
            self.positions[asset] = self.positions.get(asset, 0.0) + amount


class Reconciled:
    reconciliation_status = "success"


def backtest(fast: int, slow: int, out: str, hours: int | None = None) -> dict[str, Any]:
    """One backtest of the crossover with these windows, journaled in a new directory
    ``<out>/ma-<fast>-<slow>``; returns one row of the sweep's frame."""
    t0 = time.perf_counter()
    prices = load_prices(hours)
    data = FramePrices(prices)
    book, exchange = Book(cash=10_000.0), ToyExchange(data)
    fast_ma = prices["ETH"].rolling(fast).mean()
    slow_ma = prices["ETH"].rolling(slow).mean()
    target = (fast_ma > slow_ma).astype(float).where(slow_ma.notna(), 0.0)
    run_id = f"ma-{fast}-{slow}"
    with backtest_run(out, run_id=run_id, params={"fast": fast, "slow": slow}) as journal:
        em = ExecutionManager({"strategy_mode": "ma_crossover"}, data, "backtest", book,
                              exchange, Reconciled(), event_logger=journal)
        for ts, want in target.items():
            trade = round(want - book.positions["ETH"], 6)
            batch = [] if trade == 0 else [{
                "block_id": f"eth-{ts:%Y%m%dT%H}", "action": "rebalance", "priority": 1,
                "instructions": [{"venue": "spot", "token": "ETH", "amount": abs(trade),
                                  "side": "buy" if trade > 0 else "sell"}]}]
            em.update_state(ts, "strategy_manager", batch)
        status = em.get_execution_status()
    last = float(prices["ETH"].iloc[-1])
    return {"run_id": run_id, "fast": fast, "slow": slow,
            "blocks_executed": status["blocks_executed"],
            "blocks_failed": status["blocks_failed"],
            "equity": book.positions["USDT"] + book.positions["ETH"] * last,
            "journal": str(Path(out) / run_id), "pid": os.getpid(),
            "seconds": time.perf_counter() - t0}


def grid(fast: list[int], slow: list[int]) -> list[tuple[int, int]]:
    """Every (fast, slow) pair with fast < slow."""
    return [(f, s) for f, s in itertools.product(fast, slow) if f < s]


def sweep(pairs: list[tuple[int, int]], out: str, *, hours: int | None = None,
          address: str | None = None, num_cpus: int | None = None) -> pd.DataFrame:
    """Run one backtest per pair on Ray and gather the results into one frame (a row per
    run, ordered by equity). ``address``: a cluster (``auto``, ``ray://host:10001``), or
    ``None`` for a local Ray started here (and shut down after)."""
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:  # a small local Ray: no dashboard, a small object store (results are rows)
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                     object_store_memory=100_000_000)
    try:
        if backtest.__module__ != "__main__":  # imported: ship the code, not its name
            ray.cloudpickle.register_pickle_by_value(  # type: ignore[no-untyped-call]
                sys.modules[backtest.__module__])
        remote = ray.remote(backtest)
        rows = ray.get([remote.remote(f, s, out, hours) for f, s in pairs])
    finally:
        if started:
            ray.shutdown()
    return pd.DataFrame(rows).sort_values("equity", ascending=False, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a Ray cluster (default: start Ray here)")
    parser.add_argument("--num-cpus", type=int, help="local Ray: how many CPUs to use")
    parser.add_argument("--fast", type=int, nargs="+", default=[3, 6, 12])
    parser.add_argument("--slow", type=int, nargs="+", default=[24, 48])
    parser.add_argument("--hours", type=int, help="only the first HOURS of the prices")
    parser.add_argument("--out", help="where the runs' journals go (default: a temporary "
                        "directory)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="sweep-")
    frame = sweep(grid(args.fast, args.slow), out, hours=args.hours, address=args.address,
                  num_cpus=args.num_cpus)
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(frame.drop(columns=["journal", "pid"]).to_string(index=False))
    print(f"{len(frame)} runs in {frame['pid'].nunique()} worker processes; journals in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
