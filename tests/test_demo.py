"""The bundled example: it runs, it hedges, and ``python -m fsm_exec`` prints its summary."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from fsm_exec import ExecutionManager
from fsm_exec.__main__ import main
from fsm_exec._demo import EthBasisStrategy, PriceSeries, VenueRouter, load_prices, run_demo
from fsm_exec._sim import FakeClock, RecordingEventLogger


def test_bundled_prices_are_hourly_and_positive() -> None:
    """The bundled series is 30 days of hourly ETH, stETH and USDT prices."""
    prices = load_prices()
    stamps = sorted(prices)
    assert len(stamps) == 720
    assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(stamps))
    assert all(p[t] > 0 for p in prices.values() for t in ("ETH", "stETH", "USDT"))


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_demo_executes_every_block_and_stays_hedged(mode: str) -> None:
    """Every block the strategy emits succeeds, and the book ends delta-neutral."""
    clock = FakeClock()
    result = run_demo(mode, clock=clock, sleep=clock.sleep)
    s = result.status
    assert s["blocks_failed"] == 0 and s["blocks_executed"] == s["blocks_accepted"] > 10
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


def test_main_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m fsm_exec runs the backtest and prints counts and positions."""
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "backtest mode" in out and "blocks executed" in out and "stETH" in out


def test_main_refuses_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown arguments print usage and exit 2."""
    assert main(["--bogus"]) == 2
    assert "usage" in capsys.readouterr().err


class _Null:
    reconciliation_status = "success"

    def update_state(self, *args: object) -> None:
        return None
