"""A first strategy, backtested over a pandas price frame.

A moving-average crossover on ETH: long one ETH while the 6-hour average is above the
24-hour one, flat otherwise. Each hour the strategy compares the position it wants with
the one the book holds and hands the manager a block for the difference; the manager runs
each block through its lifecycle (queued -> routing -> pending_reconciliation -> success)
against a toy exchange, and journals every step.

    python examples/first_strategy.py [--out DIR]

Needs pandas (``pip install 'fsm-exec[pandas]'``). The prices are the bundled hourly ETH
series (``fsm_exec/data/eth_prices_1h.csv``), read into a DataFrame as you would read
yours.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from fsm_exec import EventLogger, ExecutionManager, journal_frame


def load_prices() -> pd.DataFrame:
    """Hourly prices, one column per token, indexed by a tz-aware timestamp."""
    with resources.files("fsm_exec").joinpath("data", "eth_prices_1h.csv").open() as f:
        return pd.read_csv(f, index_col="timestamp", parse_dates=["timestamp"])


class FramePrices:
    """The data provider: the row of the price frame at the manager's timestamp."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": self.frame.loc[timestamp].to_dict()}}


class ToyExchange:
    """The venue adapter: fills at the frame's price, once per block_id (idempotent)."""

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
    """The reconciliation component: a backtest's book always agrees with itself."""

    reconciliation_status = "success"


def signals(prices: pd.DataFrame) -> pd.Series:
    """1.0 (hold one ETH) where the fast average is above the slow one, else 0.0."""
    fast = prices["ETH"].rolling(6).mean()
    slow = prices["ETH"].rolling(24).mean()
    return (fast > slow).astype(float).where(slow.notna(), 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the journal "
                        "(default: a temporary directory)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="first-strategy-"))

    prices = load_prices()
    data = FramePrices(prices)
    book = Book(cash=10_000.0)
    exchange = ToyExchange(data)
    journal = EventLogger(out / "logs", "backtest")
    em = ExecutionManager({"strategy_mode": "ma_crossover"}, data, "backtest", book,
                          exchange, Reconciled(), event_logger=journal)
    for ts, target in signals(prices).items():
        trade = round(target - book.positions["ETH"], 6)
        batch = [] if trade == 0 else [{
            "block_id": f"eth-{ts:%Y%m%dT%H}", "action": "rebalance", "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "amount": abs(trade),
                              "side": "buy" if trade > 0 else "sell"}]}]
        em.update_state(ts, "strategy_manager", batch)
    journal.close()

    status = em.get_execution_status()
    last = prices["ETH"].iloc[-1]
    equity = book.positions["USDT"] + book.positions["ETH"] * last
    frames = journal_frame(out / "logs")
    print(f"hours: {len(prices)}  blocks executed: {status['blocks_executed']}  "
          f"failed: {status['blocks_failed']}")
    print(f"final ETH: {book.positions['ETH']:g}  USDT: {book.positions['USDT']:,.2f}  "
          f"equity: {equity:,.2f}")
    print(f"journal: {len(frames.blocks)} blocks, {len(frames.transitions)} transitions, "
          f"states {frames.blocks['state'].value_counts().to_dict()}")
    print(f"journal directory: {out / 'logs'}")
    return 0 if status["blocks_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
