"""The bundled example: its data, its strategy and venues, and that it runs and hedges."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from fsm_exec import ExecutionManager
from fsm_exec._demo import EthBasisStrategy, PriceSeries, VenueRouter, load_prices, run_demo
from fsm_exec._sim import RecordingEventLogger


def test_bundled_prices_are_hourly_and_positive() -> None:
    """The bundled series is 30 days of hourly ETH, stETH and USDT prices."""
    prices = load_prices()
    stamps = sorted(prices)
    assert len(stamps) == 720
    assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(stamps))
    assert all(p[t] > 0 for p in prices.values() for t in ("ETH", "stETH", "USDT"))


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_demo_executes_every_block_and_stays_hedged(mode: str) -> None:
    """Every block the strategy emits runs (live: all but the one whose reconciliation
    is scripted to fail), and the book ends delta-neutral."""
    result = run_demo(mode)
    s = result.status
    failed = 1 if mode == "live" else 0  # the live demo's scripted reconciliation failure
    assert s["blocks_failed"] == failed
    assert s["blocks_executed"] + failed == s["blocks_accepted"] > 10
    assert sum(result.blocks_by_action.values()) == s["blocks_accepted"]
    last = load_prices()[max(load_prices())]
    p = result.positions
    long_eth = p["stETH"] * last["stETH"] / last["ETH"] + p["ETH"]
    assert abs(long_eth + p["ETH-PERP"]) <= 0.01 * -p["ETH-PERP"]


def test_demo_logs_every_transition() -> None:
    """The demo's manager logs three transitions per block on the happy path."""
    log = RecordingEventLogger()
    result = run_demo("backtest", event_logger=log)
    assert len(log.of_type("block_transition")) == 3 * result.status["blocks_executed"]


def test_router_is_idempotent_and_queryable() -> None:
    """Routing a block twice executes it once; query_execution reports it."""
    data = PriceSeries(load_prices())
    venue = VenueRouter(data)
    ts = data.timestamps[0]
    blocks = EthBasisStrategy().blocks(ts, data.get_data(ts)["market_data"]["prices"], {})
    em = ExecutionManager({}, data, "backtest", _Null(), venue, _Null())
    em.execute_instruction_blocks(ts, blocks)
    em.update_state(ts, "strategy_manager")
    first = dict(venue.executed)
    from fsm_exec._blocks import validate_batch

    (b,) = validate_batch(blocks[:1], set())
    assert venue.route_instruction(ts, b) == first[b.block_id]
    assert venue.query_execution(ts, b) == first[b.block_id]
    assert venue.calls == 3


def test_router_refuses_an_unknown_venue() -> None:
    """An instruction naming a venue the router does not know is an error."""
    data = PriceSeries(load_prices())
    from fsm_exec._blocks import validate_batch

    (b,) = validate_batch([{"block_id": "x", "action": "a", "priority": 1,
                            "instructions": [{"venue": "moon", "token": "ETH", "side": "buy",
                                              "amount": 1}]}], set())
    with pytest.raises(ValueError, match="moon"):
        VenueRouter(data).route_instruction(data.timestamps[0], b)


class _Null:
    reconciliation_status = "success"

    def update_state(self, *args: object) -> None:
        return None
