"""The README's interrupt recipe, ``em = em.reopen(); em.update_state(..., batch)``, when the
batch had been taken before the interrupt (issue 25 item 3): recognised as already accepted,
told apart from a conflicting duplicate, and nothing done by the refused call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fsm_exec import AlreadyAcceptedError, EventLogger, ExecutionManager, InvalidBlockError
from fsm_exec.sim.venues import (
    FakeClock,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import T, block, blocks


class InterruptingHandler(SimPositionHandler):
    """Ctrl-C inside the n-th hand-off (before it books anything)."""

    def __init__(self, rc: SimReconciliation, at: int) -> None:
        super().__init__(rc)
        self.at, self.calls = at, 0

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        super().update_state(timestamp, trigger_source, deltas)


def interrupted(tmp_path: Path) -> tuple[ExecutionManager, NaiveVenue, InterruptingHandler]:
    """Batch a, b, c taken; a finished, Ctrl-C in b's hand-off (b in flight, c queued);
    the manager replaced with ``reopen()``."""
    clock = FakeClock()
    venue = NaiveVenue()
    rc = SimReconciliation(clock)
    handler = InterruptingHandler(rc, at=2)
    em = ExecutionManager({}, StaticDataProvider(), "live", handler, venue, rc,
                          event_logger=EventLogger(tmp_path, "live"), clock=clock,
                          sleep=clock.sleep)
    with pytest.raises(KeyboardInterrupt):
        em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    return em.reopen(), venue, handler


def test_a_batch_taken_before_the_interrupt_is_recognised_as_already_accepted(
        tmp_path: Path) -> None:
    """The same ids with the same content (one finished, one in flight, one queued) raise
    AlreadyAcceptedError (an InvalidBlockError, so old callers still catch it), and the call
    did nothing: no venue call, no hand-off; the next call without the batch finishes it."""
    em, venue, handler = interrupted(tmp_path)
    routed, handed = list(venue.execution_order), handler.calls
    with pytest.raises(AlreadyAcceptedError) as caught:
        em.update_state(T(1), "strategy_manager", blocks("a", "b", "c"))
    assert isinstance(caught.value, InvalidBlockError)
    assert caught.value.block_ids == ("a", "b", "c")
    text = str(caught.value)
    assert ("'a' @ $[0].block_id: already accepted before (same content; it finished: "
            "success)") in text
    assert "'b' @ $[1].block_id: already accepted before (same content; it is in flight)" in text
    assert "'c' @ $[2].block_id: already accepted before (same content; it is queued)" in text
    assert (venue.execution_order, handler.calls) == (routed, handed)
    em.update_state(T(2), "strategy_manager")
    assert venue.execution_order == ["a", "b", "c"]
    assert sorted(handler.applied.elements()) == ["a", "b", "c"]
    with pytest.raises(AlreadyAcceptedError):  # all finished now: their digests compared
        em.execute_instruction_blocks(T(3), blocks("a", "b", "c"))
    assert venue.execution_order == ["a", "b", "c"]


def test_a_conflicting_duplicate_is_not_already_accepted(tmp_path: Path) -> None:
    """Same id, other content (or an id never seen in the batch) is a plain refusal, not
    AlreadyAcceptedError: the caller is told it is a different block."""
    em, _, _ = interrupted(tmp_path)
    for batch in ([block("c", amount=2.0)], [*blocks("b", "c"), block("d")],
                  [block("c"), block("c")], [block("c"), {"block_id": "x"}],
                  "not a batch"):
        with pytest.raises(InvalidBlockError) as caught:
            em.execute_instruction_blocks(T(1), batch)  # type: ignore[arg-type]
        assert not isinstance(caught.value, AlreadyAcceptedError), batch
