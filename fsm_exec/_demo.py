"""The bundled example: an ETH basis strategy's blocks over a bundled price series.

The strategy buys ETH spot, stakes it for stETH, shorts the same amount on a perpetual and
lends the spare USDT; every hour it re-hedges when the position's ETH delta drifts. Each
instruction is routed to the simulated venue it names (``spot``, ``staking``, ``lending``,
``perp``). The price series is synthetic (a seeded random walk), bundled as
``fsm_exec/data/eth_prices_1h.csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import attrs

from ._blocks import InstructionBlock
from ._manager import ExecutionManager
from ._sim import SimPositionHandler, SimReconciliation

PRICE_FILE = "eth_prices_1h.csv"


def load_prices() -> dict[dt.datetime, dict[str, float]]:
    """The bundled hourly prices, keyed by UTC timestamp."""
    text = resources.files("fsm_exec").joinpath("data", PRICE_FILE).read_text()
    out: dict[dt.datetime, dict[str, float]] = {}
    for row in csv.DictReader(text.splitlines()):
        ts = dt.datetime.fromisoformat(row.pop("timestamp").replace("Z", "+00:00"))
        out[ts] = {k: float(v) for k, v in row.items()}
    return out


class PriceSeries:
    """A DataProvider over a price table: ``get_data(ts)['market_data']['prices']``."""

    def __init__(self, prices: Mapping[dt.datetime, Mapping[str, float]]) -> None:
        self._prices = prices

    @property
    def timestamps(self) -> list[dt.datetime]:
        return sorted(self._prices)

    def get_data(self, timestamp: Any) -> dict[str, Any]:
        return {"market_data": {"prices": dict(self._prices[timestamp])}}


class VenueRouter:
    """Routes each instruction to the simulated venue it names; idempotent by block_id.

    ``spot``: buy/sell ETH for USDT at the ETH price. ``staking``: stake/unstake ETH for
    stETH at the stETH price. ``lending``: deposit/withdraw USDT as aUSDT. ``perp``:
    short/cover ETH-PERP (margin is not modelled).
    """

    def __init__(self, data: PriceSeries) -> None:
        self._data = data
        self.executed: dict[str, dict[str, Any]] = {}
        self.calls = 0

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any]:
        self.calls += 1
        done = self.executed.get(block.block_id)
        if done is not None:
            return done
        prices = self._data.get_data(timestamp)["market_data"]["prices"]
        changes: dict[str, float] = {}

        def add(asset: str, amount: float) -> None:
            changes[asset] = changes.get(asset, 0.0) + amount

        for instr in block.instructions:
            venue, side, amount = instr["venue"], instr["side"], float(instr["amount"])
            sign = 1.0 if side in ("buy", "stake", "deposit", "cover") else -1.0
            if venue == "spot":
                add("ETH", sign * amount)
                add("USDT", -sign * amount * prices["ETH"])
            elif venue == "staking":
                add("ETH", -sign * amount)
                add("stETH", sign * amount * prices["ETH"] / prices["stETH"])
            elif venue == "lending":
                add("USDT", -sign * amount)
                add("aUSDT", sign * amount)
            elif venue == "perp":
                add("ETH-PERP", sign * amount)
            else:
                raise ValueError(f"unknown venue {venue!r} in block {block.block_id!r}")
        deltas = {"block_id": block.block_id, "changes": changes}
        self.executed[block.block_id] = deltas
        return deltas

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> dict[str, Any] | None:
        return self.executed.get(block.block_id)


@attrs.define
class EthBasisStrategy:
    """Emits the blocks of a delta-neutral staked-ETH basis trade."""

    capital: float = 1_000_000.0
    hedge_band: float = 0.001  # re-hedge when |delta| exceeds this share of the short

    def blocks(self, ts: dt.datetime, prices: Mapping[str, float],
               positions: Mapping[str, float]) -> list[dict[str, Any]]:
        stamp = ts.strftime("%Y%m%dT%H")
        if "ETH-PERP" not in positions:
            eth = round(self.capital * 0.6 / prices["ETH"], 6)
            return [
                _block(f"open-{stamp}", "open_basis", 1, [
                    ("spot", "ETH", "buy", eth),
                    ("staking", "ETH", "stake", eth),
                    ("perp", "ETH", "short", eth)]),
                _block(f"lend-{stamp}", "lend_idle_usdt", 2, [
                    ("lending", "USDT", "deposit", round(self.capital * 0.3, 2))]),
            ]
        long_eth = positions.get("stETH", 0.0) * prices["stETH"] / prices["ETH"]
        long_eth += positions.get("ETH", 0.0)
        short = -positions.get("ETH-PERP", 0.0)
        drift = long_eth - short
        if short and abs(drift) > self.hedge_band * short:
            side = "short" if drift > 0 else "cover"
            return [_block(f"hedge-{stamp}", "rehedge", 1,
                           [("perp", "ETH", side, round(abs(drift), 6))])]
        return []


def _block(block_id: str, action: str, priority: int,
           legs: list[tuple[str, str, str, float]]) -> dict[str, Any]:
    return {"block_id": block_id, "action": action, "priority": priority,
            "instructions": [{"venue": v, "token": t, "side": s, "amount": a}
                             for v, t, s, a in legs]}


@attrs.frozen
class DemoResult:
    """What a demo run did."""

    status: dict[str, Any]
    positions: dict[str, float]
    blocks_by_action: dict[str, int]
    steps: int
    seconds: float


def run_demo(mode: str = "backtest", *, event_logger: Any = None,
             clock: Callable[[], float] | None = None,
             sleep: Callable[[float], None] | None = None) -> DemoResult:
    """Run the example strategy through an ExecutionManager, one update_state per hour."""
    prices = load_prices()
    data = PriceSeries(prices)
    reconciliation = SimReconciliation()
    positions = SimPositionHandler(reconciliation)
    strategy = EthBasisStrategy()
    positions.positions["USDT"] = strategy.capital
    venue = VenueRouter(data)
    extra: dict[str, Any] = {}
    if clock is not None:
        extra["clock"] = clock
    if sleep is not None:
        extra["sleep"] = sleep
    em = ExecutionManager({"strategy_mode": "eth_basis", "share_class": "usdt_stable",
                           "initial_capital": strategy.capital},
                          data, mode, positions, venue, reconciliation,
                          event_logger=event_logger, **extra)
    by_action: dict[str, int] = {}
    started = time.perf_counter()
    status: dict[str, Any] = {}
    steps = 0
    for ts in data.timestamps:
        batch = strategy.blocks(ts, prices[ts], positions.positions)
        for b in batch:
            by_action[b["action"]] = by_action.get(b["action"], 0) + 1
        status = em.update_state(ts, "strategy_manager", batch)
        steps += 1
    return DemoResult(status, dict(positions.positions), by_action, steps,
                      time.perf_counter() - started)


def format_result(result: DemoResult) -> str:
    """A short human-readable summary of a demo run."""
    s = result.status
    n = s["blocks_executed"] + s["blocks_failed"]
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    lines = [
        f"fsm_exec demo: ETH basis strategy, {s['execution_mode']} mode, "
        f"{result.steps} hourly steps",
        "",
        f"  {'blocks accepted':<22}{s['blocks_accepted']:>10}",
        f"  {'blocks executed':<22}{s['blocks_executed']:>10}",
        f"  {'blocks failed':<22}{s['blocks_failed']:>10}",
        f"  {'retries':<22}{s['blocks_retried']:>10}",
        f"  {'health':<22}{s['status']:>10}",
        f"  {'time':<22}{result.seconds * 1000:>8.1f} ms",
        f"  {'throughput':<22}{rate:>8.0f} blocks/s",
        "",
        "  blocks by action: " + ", ".join(
            f"{k} {v}" for k, v in sorted(result.blocks_by_action.items())),
        "  final positions: " + ", ".join(
            f"{k} {v:,.4f}" for k, v in sorted(result.positions.items())),
    ]
    return "\n".join(lines)
