"""The bundled example: its data, its strategy and venues, and that it runs and hedges."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
from pathlib import Path

import pytest

from fsm_exec import ConfigError, ExecutionManager
from fsm_exec.cli.demo import (
    DemoDirError,
    EthBasisStrategy,
    PriceSeries,
    VenueRouter,
    load_prices,
    run_demo,
)
from fsm_exec.sim.venues import RecordingEventLogger


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


def test_mode_defaults_to_basis_execution_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_demo() runs in BASIS_EXECUTION_MODE, as the manager does; a mode given wins."""
    monkeypatch.setenv("BASIS_EXECUTION_MODE", "live")
    assert run_demo().status["execution_mode"] == "live"
    assert run_demo("backtest").status["execution_mode"] == "backtest"


@pytest.mark.parametrize(("variable", "value"), [("BASIS_ENVIRONMENT", "prod"),
                                                 ("BASIS_EXECUTION_MODE", "paper")])
def test_a_bad_environment_creates_nothing(variable: str, value: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad BASIS_* variable is refused (ConfigError) before any output is created."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        run_demo(out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_an_output_path_that_is_a_file_is_refused_first(tmp_path: Path) -> None:
    """out naming a file: DemoDirError saying so, and nothing created."""
    (tmp_path / "f").write_text("keep")
    with pytest.raises(DemoDirError, match=re.escape(
            f"the output path {tmp_path / 'f'} is a file, not a directory")):
        run_demo(out=tmp_path / "f")
    with pytest.raises(DemoDirError, match=re.escape(
            f"{tmp_path / 'f'} is a file, where the outputs need a directory")):
        run_demo(out=tmp_path / "f" / "sub")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_deltas_csv_sums_to_the_positions(tmp_path: Path) -> None:
    """Summed by asset, deltas.csv of the live demo gives the demo's final positions."""
    result = run_demo("live", out=tmp_path)
    assert result.deltas == tmp_path / "results" / "demo-live" / "deltas.csv"
    with open(result.deltas, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    totals: dict[str, float] = {"USDT": 1_000_000.0}
    for r in rows:
        totals[r["key"]] = totals.get(r["key"], 0.0) + float(r["amount"])
    assert totals.keys() == result.positions.keys()
    for asset, amount in result.positions.items():
        assert totals[asset] == pytest.approx(amount, abs=1e-6)

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
    from fsm_exec.boundary.blocks import validate_batch

    (b,) = validate_batch(blocks[:1], set())
    assert venue.route_instruction(ts, b) == first[b.block_id]
    assert venue.query_execution(ts, b) == first[b.block_id]
    assert venue.calls == 3


def test_router_refuses_an_unknown_venue() -> None:
    """An instruction naming a venue the router does not know is an error."""
    data = PriceSeries(load_prices())
    from fsm_exec.boundary.blocks import validate_batch

    (b,) = validate_batch([{"block_id": "x", "action": "a", "priority": 1,
                            "instructions": [{"venue": "moon", "token": "ETH", "side": "buy",
                                              "amount": 1}]}], set())
    with pytest.raises(ValueError, match="moon"):
        VenueRouter(data).route_instruction(data.timestamps[0], b)


class _Null:
    reconciliation_status = "success"

    def update_state(self, *args: object) -> None:
        return None
