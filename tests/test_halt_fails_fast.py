"""Issue 26 item 4: in backtest mode (fail fast) a halt cannot be caught once and ignored."""

from __future__ import annotations

import pickle

import pytest

from fsm_exec import ComponentError, ManagerHaltedError
from fsm_exec.core.lifecycle import BlockState

from kit import Rig, T, blocks, rig


def halted_backtest() -> Rig:
    r = rig("backtest", position_failures=[True])
    with pytest.raises(ComponentError, match="EXEC-008"):
        r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.em.halted
    return r


def test_backtest_update_on_a_halted_manager_raises_naming_the_halt() -> None:
    """A halted backtest manager refuses update_state (any trigger but 'manual') with
    ManagerHaltedError carrying the halt's code, reason and block; nothing is queued."""
    r = halted_backtest()
    for trigger in ("strategy_manager", "retry"):
        with pytest.raises(ManagerHaltedError) as info:
            r.em.update_state(T(1), trigger, blocks("c"))
        err = info.value
        assert err.error_code == "EXEC-008" and err.halt_reason == "EXEC-008"
        assert "halted (EXEC-008 Position update failed, on block 'a')" in str(err)
        assert f"update_state({trigger!r}) refused" in str(err)
        assert "update_state(ts, 'manual')" in str(err)
    assert r.em.queued_block_ids == ("b",)
    assert r.em.blocks_accepted == 2


def test_backtest_execute_instruction_blocks_on_a_halted_manager_raises() -> None:
    """execute_instruction_blocks on a halted backtest manager raises and queues nothing."""
    r = halted_backtest()
    with pytest.raises(ManagerHaltedError, match="execute_instruction_blocks refused"):
        r.em.execute_instruction_blocks(T(1), blocks("c"))
    assert r.em.queued_block_ids == ("b",)


def test_backtest_halt_keeps_the_operator_levers() -> None:
    """cancel and update_state(ts, 'manual') still work on a halted backtest manager; once
    resumed, calls are taken again."""
    r = halted_backtest()
    em = r.em
    assert em.cancel(T(1), ["b"], reason="computed from positions in doubt") == ("b",)
    em.update_state(T(2), "manual", blocks("c"))
    assert not em.halted and em.block_state("c") is BlockState.SUCCESS
    em.update_state(T(3), "strategy_manager", blocks("d"))
    assert em.block_state("d") is BlockState.SUCCESS


def test_live_halt_still_returns_halted() -> None:
    """In live mode a halted manager keeps today's behaviour: it queues and reports halted."""
    r = rig("live", position_failures=[True])
    status = r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert status["halted"]
    status = r.em.update_state(T(1), "strategy_manager", blocks("b"))
    assert status["halted"] and r.em.queued_block_ids == ("b",)


def test_halted_error_survives_pickling() -> None:
    """ManagerHaltedError crosses a process boundary (optimizer workers) intact."""
    err = ManagerHaltedError("EXEC-009", "halted")
    again = pickle.loads(pickle.dumps(err))
    assert (again.error_code, again.halt_reason, str(again)) == (
        "EXEC-009", "EXEC-009", str(err))
    odd = ManagerHaltedError("disk gone", "halted")
    assert odd.error_code == "EXEC-011" and odd.halt_reason == "disk gone"


def test_a_halt_with_no_block_is_named_by_its_code() -> None:
    """A halt no block caused (the journal failed: EXEC-009) is named by its code alone."""
    r = rig("backtest")
    r.em._halt("EXEC-009")
    with pytest.raises(ManagerHaltedError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert info.value.error_code == "EXEC-009"
    assert "halted (EXEC-009 Event log write failed)," in str(info.value)
    assert "0 queued blocks wait." in str(info.value)
