"""Cancel: an operator drops queued blocks; they end ``cancelled`` and never reach a venue."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsm_exec import (
    BlockState,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    InvalidBlockError,
    check_journal,
)
from fsm_exec.sim.venues import SimPositionHandler, SimReconciliation, SimVenue, StaticDataProvider

from kit import CANARY, T, block, blocks, rig


def test_cancel_named_queued_blocks_ends_them_cancelled() -> None:
    """Named queued blocks go queued -> cancelled; the others still run, in order."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a", "b", "c"))
    assert r.em.cancel(T(0), ["b"], reason="stale signal") == ("b",)
    assert r.em.block_state("b") is BlockState.CANCELLED
    assert r.em.queued_block_ids == ("a", "c")
    r.em.update_state(T(1), "strategy_manager")
    assert r.venue.execution_order == ["a", "c"]
    moves = [m for m in r.events("block_transition") if m["block_id"] == "b"]
    assert moves == [{"block_id": "b", "source": "queued", "dest": "cancelled",
                      "trigger": "cancel", "attempt": 0, "reason": "stale signal",
                      "batch_index": 0, "batch_size": 1}]
    s = r.em.get_execution_status()
    assert (s["blocks_cancelled"], s["blocks_executed"], s["current_block_index"]) == (1, 2, 3)
    assert s["blocks_accepted"] == s["blocks_executed"] + s["blocks_failed"] + \
        s["blocks_cancelled"] + s["queue_length"]


def test_cancel_all_while_halted_drops_the_queue() -> None:
    """block_ids=None cancels every queued block, also while the manager is halted."""
    r = rig(recon=[("fail", 0)])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    assert r.em.halted and r.em.queued_block_ids == ("b", "c")
    assert r.em.cancel(T(1), reason="positions in doubt") == ("b", "c")
    assert not r.em.queued_block_ids
    assert r.em.halted
    r.em.update_state(T(2), "manual")
    assert r.venue.execution_order == ["a"]


def test_cancel_with_nothing_queued_is_a_no_op() -> None:
    """Cancelling all of an empty queue cancels nothing and writes nothing."""
    r = rig()
    before = len(r.log.events)
    assert r.em.cancel(T(0), None, reason="x") == ()
    assert len(r.log.events) == before


@pytest.mark.parametrize(("ids", "match"), [
    (["a", "zz"], "'zz': unknown block"),
    (["a", "a"], "'a': named twice"),
    ("a", "not one string"),
])
def test_cancel_refuses_the_whole_call(ids: object, match: str) -> None:
    """An unknown or repeated id refuses the whole call; nothing is cancelled."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a", "b"))
    with pytest.raises(InvalidArgumentError, match=match):
        r.em.cancel(T(0), ids, reason="x")  # type: ignore[arg-type]
    assert r.em.queued_block_ids == ("a", "b")
    assert r.em.get_execution_status()["blocks_cancelled"] == 0


@pytest.mark.parametrize("bad", [
    "zz-" + CANARY, ("x" * 30) + CANARY + ("y" * 30), ["id", CANARY], CANARY * 3])
def test_a_refused_cancel_never_quotes_a_secret_or_a_whole_long_id(bad: object) -> None:
    """An id holding the config's secret (whole, split by shortening, in a non-str id) is
    redacted before it is shortened; a long id is quoted short."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a"))
    with pytest.raises(InvalidArgumentError) as info:
        r.em.cancel(T(0), ["a", bad], reason="x")  # type: ignore[list-item]
    message = str(info.value)
    assert CANARY not in message and CANARY[:8] not in message
    assert len(message) < 200
    assert r.em.queued_block_ids == ("a",)


def test_cancel_refuses_a_finished_block_naming_its_state() -> None:
    """A finished block cannot be cancelled; the error names its state."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    with pytest.raises(InvalidArgumentError, match="'a': is success"):
        r.em.cancel(T(1), ["a"], reason="x")


def test_cancel_needs_a_reason() -> None:
    """The reason is required and must say something."""
    r = rig()
    with pytest.raises(InvalidArgumentError, match="reason"):
        r.em.cancel(T(0), reason="  ")


def test_a_cancelled_block_id_stays_taken() -> None:
    """Resubmitting a cancelled block_id is refused like any finished block: accepted
    before (AlreadyAcceptedError, an InvalidBlockError), naming its state."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a"))
    r.em.cancel(T(0), ["a"], reason="x")
    with pytest.raises(InvalidBlockError, match="it finished: cancelled"):
        r.em.execute_instruction_blocks(T(1), [block("a")])


def test_cancel_survives_a_restart(tmp_path: Path) -> None:
    """A cancel is in the journal: a recovered manager keeps the block cancelled."""
    def make(log: EventLogger) -> ExecutionManager:
        rc = SimReconciliation()
        return ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                                SimVenue(), rc, event_logger=log)

    with EventLogger(tmp_path, mode="live") as log:
        em = make(log)
        em.execute_instruction_blocks(T(0), blocks("a", "b"))
        em.cancel(T(0), ["a"], reason="x")
    assert check_journal(tmp_path).ok
    with EventLogger(tmp_path, mode="live") as log:
        em = make(log)
        em.recover(tmp_path)
        assert em.block_state("a") is BlockState.CANCELLED
        assert em.queued_block_ids == ("b",)
        assert em.get_execution_status()["blocks_cancelled"] == 1
