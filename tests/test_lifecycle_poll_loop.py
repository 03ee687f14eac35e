"""A lifecycle whose polls lead round a loop while their guards all hold (the checker
accepts it: the guards are the data's) never holds the manager: within one
``update_state`` a block moves out of each of the lifecycle's own states at most once, and
back in one it already left, it waits there for the next call, as a block whose guards do
not hold does (before: ``update_state`` never returned, the journal growing without end,
found by the lifecycle fuzz with ``--hypothesis-seed=4``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsm_exec import EventLogger, ExecutionManager, Lifecycle
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.check import check_journal

from kit import T, blocks

SPOT = {"venue_in": {"venues": ["spot"]}}
LOOP = {
    "version": 1, "name": "desk", "extends": "default",
    "states": {"held_0": {"kind": "before_route", "meaning": "Held before routing (0)."},
               "held_1": {"kind": "before_route", "meaning": "Held before routing (1)."}},
    "transitions": [
        {"trigger": "start", "source": "queued", "dest": "held_0",
         "meaning": "The guards send the block here first.", "guards": [SPOT]},
        {"trigger": "divert_0", "source": "held_0", "dest": "held_1", "poll": True,
         "meaning": "Its guards divert the block.", "guards": [SPOT]},
        {"trigger": "go_0", "source": "held_0", "dest": "routing", "poll": True,
         "meaning": "Moves on at once."},
        {"trigger": "divert_1", "source": "held_1", "dest": "held_0", "poll": True,
         "meaning": "Its guards divert the block.", "guards": [SPOT]},
        {"trigger": "go_1", "source": "held_1", "dest": "routing", "poll": True,
         "meaning": "Moves on at once."},
    ]}


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_a_loop_of_polls_waits_for_the_next_call(tmp_path: Path, mode: str) -> None:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    venue = SimVenue()
    log = EventLogger(tmp_path, mode)
    em = ExecutionManager({"strategy_mode": "eth_basis"}, StaticDataProvider(), mode,
                          SimPositionHandler(rc), venue, rc, event_logger=log, clock=clock,
                          sleep=clock.sleep, lifecycle=Lifecycle.from_dict(LOOP))
    for n in range(3):
        status = em.update_state(T(n), "strategy_manager", blocks("a") if n == 0 else None)
        # round the loop once a call: out of held_0, out of held_1, back in held_0
        assert str(em.block_state("a")) == "held_0", n
        assert status["current_block"] == "a" and not status["halted"]
    assert not venue.route_calls  # never sent
    em.close()
    assert check_journal(tmp_path).ok
