"""Issue 26 item 5: validation per instruction field that no field name can bypass: no NaN
or infinity anywhere in a block, and no instruction the price check cannot price."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import (
    BlockState,
    ConfigError,
    ExecutionConfig,
    InstructionBlock,
    InvalidBlockError,
    check_prices,
)

from kit import T, block, rig

NAN = float("nan")


def instruction(**fields: Any) -> dict[str, Any]:
    return {"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0, **fields}


@pytest.mark.parametrize(("fields", "path"), [
    ({"size": NAN}, "instructions[0].size"),
    ({"limit_price": math.inf}, "instructions[0].limit_price"),
    ({"stop": -math.inf}, "instructions[0].stop"),
    ({"size": Decimal("NaN")}, "instructions[0].size"),
    ({"size": Decimal("-Infinity")}, "instructions[0].size"),
    ({"size": np.float64("nan")}, "instructions[0].size"),
    ({"size": np.float32("inf")}, "instructions[0].size"),
    ({"legs": [{"px": 1.0}, {"px": NAN}]}, "instructions[0].legs[1].px"),
    ({"meta": {"deep": {"deeper": [1, [math.inf]]}}}, "instructions[0].meta.deep.deeper[1][0]"),
    ({"weights": np.array([0.5, np.nan])}, "instructions[0].weights[1]"),
    ({"weights": pd.Series({"a": 1.0, "b": np.inf})}, "instructions[0].weights.b"),
], ids=repr)
def test_no_nan_or_infinity_anywhere_in_a_block(fields: dict[str, Any], path: str) -> None:
    """A NaN or an infinity under any field, at any depth (float, Decimal, numpy, pandas),
    refuses the batch (EXEC-004) naming its path; nothing is queued."""
    r = rig("backtest")
    with pytest.raises(InvalidBlockError) as info:
        r.em.update_state(T(0), "strategy_manager", [
            {**block("a"), "instructions": [instruction(**fields)]}])
    (problem,) = info.value.problems
    assert (problem.field, problem.block_id) == (path, "a")
    assert "must be a finite number (no NaN or infinity anywhere in a block)" in problem.reason
    assert r.em.block_state("a") is None and r.venue.route_calls == {}


@st.composite
def nested_with_one(draw: st.DrawFn, bad: Any) -> tuple[Any, str]:
    """A JSON-like value holding ``bad`` at one place, and that place's path suffix."""
    depth = draw(st.integers(0, 4))
    value: Any = bad
    path = ""
    for _ in range(depth):
        if draw(st.booleans()):
            key = draw(st.sampled_from(["a", "b", "px", "qty"]))
            value, path = {key: value, "z": 1}, f".{key}{path}"
        else:
            i = draw(st.integers(0, 2))
            value, path = [0.5] * i + [value], f"[{i}]{path}"
    return value, path


@given(data=st.data(), bad=st.sampled_from([NAN, math.inf, -math.inf, Decimal("sNaN"),
                                            Decimal("Infinity")]),
       name=st.sampled_from(["size", "qty", "limit", "fee", "legs"]))
def test_a_nan_at_any_depth_under_any_name_is_refused(data: st.DataObject, bad: Any,
                                                     name: str) -> None:
    """Property: wherever a non-finite number sits in an instruction, the batch is refused
    and the problem names exactly its path."""
    value, suffix = data.draw(nested_with_one(bad))
    r = rig("backtest")
    with pytest.raises(InvalidBlockError) as info:
        r.em.execute_instruction_blocks(T(0), [
            {**block("a"), "instructions": [instruction(**{name: value})]}])
    assert [p.field for p in info.value.problems] == [f"instructions[0].{name}{suffix}"]
    assert r.em.blocks_accepted == 0


def test_finite_values_under_any_name_still_pass() -> None:
    """Finite numbers under any name, at any depth, are accepted and kept as given."""
    r = rig("backtest")
    instr = instruction(size=2.5, legs=[{"px": Decimal("3000.5")}], w=np.float64(0.25))
    r.em.update_state(T(0), "strategy_manager", [{**block("a"), "instructions": [instr]}])
    assert r.em.block_state("a") is BlockState.SUCCESS


def symbol_block(block_id: str, symbol: str = "BTC") -> dict[str, Any]:
    return {"block_id": block_id, "action": "buy", "priority": 1, "instructions": [
        {"venue": "spot", "symbol": symbol, "side": "buy", "amount": 1.0}]}


def test_naming_the_asset_symbol_does_not_bypass_the_price_check() -> None:
    """An instruction naming its asset under ``symbol`` (no ``token``) is refused at
    acceptance, pointing at the config's asset_field; it is never routed unpriced."""
    r = rig("backtest", prices={"ETH": 3000.0})  # no price for BTC
    with pytest.raises(InvalidBlockError) as info:
        r.em.update_state(T(0), "strategy_manager", [symbol_block("a")])
    (problem,) = info.value.problems
    assert problem.field == "instructions[0].token"
    assert "asset_field" in problem.reason
    assert r.venue.route_calls == {}


def test_asset_field_names_the_field_the_price_check_prices() -> None:
    """With ``asset_field: symbol`` the price check prices ``symbol``: no price fails the
    block (EXEC-005) unrouted, naming it; a priced one runs; one without it is refused."""
    r = rig("live", prices={"ETH": 3000.0}, asset_field="symbol")
    r.em.update_state(T(0), "strategy_manager", [symbol_block("a", "BTC")])
    assert r.em.block_state("a") is BlockState.FAILED
    assert r.venue.route_calls == {}
    assert "no finite positive price for symbol 'BTC'" in r.events(
        "block_transition")[-1]["reason"]
    r.em.update_state(T(1), "strategy_manager", [symbol_block("b", "ETH")])
    assert r.em.block_state("b") is BlockState.SUCCESS
    with pytest.raises(InvalidBlockError) as info:
        r.em.update_state(T(2), "strategy_manager", [block("c")])  # token, no symbol
    assert [p.field for p in info.value.problems] == ["instructions[0].symbol"]
    assert "the config's asset_field names it" in info.value.problems[0].reason


@pytest.mark.parametrize("asset", ["", 5, None, " symbol", "amount", "fee_amount", "sy\nm"])
def test_asset_field_must_name_a_field_that_can_hold_an_asset(asset: Any) -> None:
    """``asset_field`` is a printable field name, never an amount field."""
    with pytest.raises(ConfigError) as info:
        ExecutionConfig(asset_field=asset)
    assert info.value.problems[0].startswith("asset_field:")


def test_check_prices_refuses_an_instruction_naming_no_asset() -> None:
    """check_prices called directly refuses an instruction without the asset field."""
    b = InstructionBlock("a", "buy", 1, ({"symbol": "ETH", "amount": 1.0},))
    market = {"prices": {"ETH": 3000.0}}
    assert check_prices(b, market) == (
        "instructions[0]: names no asset (no 'token' field) to price")
    assert check_prices(b, market, asset_field="symbol") is None
