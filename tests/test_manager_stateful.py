"""Model-based fuzzing of the ExecutionManager: random batches, faults and resumes, with the
manager's invariants checked after every step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fsm_exec import (
    LEGAL_MOVES,
    TERMINAL_STATES,
    TRIGGER_SOURCES,
    BlockState,
    ComponentError,
    ExecutionManager,
    InvalidBlockError,
)
from fsm_exec._sim import (
    VENUE_FAULTS,
    FakeClock,
    FaultyVenue,
    NaiveVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import block

TERMINAL = {str(s) for s in TERMINAL_STATES}
LEGAL = {(str(a), str(b)) for a, b in LEGAL_MOVES}

INVALID_BLOCKS = st.sampled_from([
    {"block_id": "", "action": "a", "priority": 1, "instructions": [{"amount": 1}]},
    {"block_id": "x y", "action": "a", "priority": 1, "instructions": [{"amount": 1}]},
    {"block_id": "ok", "action": 17, "priority": 1, "instructions": [{"amount": 1}]},
    {"block_id": "ok", "action": "a", "priority": "high", "instructions": [{"amount": 1}]},
    {"block_id": "ok", "action": "a", "priority": True, "instructions": [{"amount": 1}]},
    {"block_id": "ok", "action": "a", "priority": 1, "instructions": []},
    {"block_id": "ok", "action": "a", "priority": 1, "instructions": [{"amount": "1"}]},
    {"block_id": "ok", "action": "a", "priority": 1, "instructions": [{"amount": float("nan")}]},
    {"block_id": "ok", "action": "a", "priority": 1},
    "not a block",
])


class ManagerMachine(RuleBasedStateMachine):
    """Drives one live manager on a fake clock against a venue that is NOT idempotent, so
    that any second execution of a block would show."""

    mode = "live"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.log = RecordingEventLogger()
        self.rc = SimReconciliation(self.clock)
        self.positions = SimPositionHandler(self.rc)
        self.venue = NaiveVenue()
        self.faulty = FaultyVenue(self.venue, clock=self.clock, hang_seconds=6.0)
        self.em = ExecutionManager(
            {"execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
             "retry_delay_seconds": 0.5, "max_queue_size": 12},
            StaticDataProvider(), self.mode, self.positions, self.faulty, self.rc,
            event_logger=self.log, clock=self.clock, sleep=self.clock.sleep)
        self.accepted: list[str] = []
        self.next_id = 0
        self.checked = 0  # events already checked
        self.in_flight: str | None = None  # per the event stream
        self.ended: dict[str, str] = {}  # block -> terminal state, per the event stream
        self.routes_at_success: dict[str, int] = {}

    # ------------------------------------------------------------------ actions
    def _call(self, trigger: str, batch: list[Any] | None) -> None:
        before = (self.em.queued_block_ids, self.em.get_execution_status()["blocks_accepted"])
        try:
            self.em.update_state(self.clock(), trigger, batch)
        except InvalidBlockError:
            assert before[1] == self.em.get_execution_status()["blocks_accepted"]
            return
        except ComponentError as exc:
            if exc.error_code == "EXEC-003":
                assert before[1] == self.em.get_execution_status()["blocks_accepted"]
                return
            # Backtest fails fast; live never raises for a block's outcome.
            if self.mode != "backtest":
                raise
        if batch:
            self.accepted.extend(b["block_id"] for b in batch if isinstance(b, dict))

    @rule(n=st.integers(1, 4), trigger=st.sampled_from(TRIGGER_SOURCES))
    def submit(self, n: int, trigger: str) -> None:
        batch = [block(f"b{self.next_id + i}") for i in range(n)]
        queued = len(self.em.queued_block_ids)
        self.next_id += n
        accepted_before = len(self.accepted)
        self._call(trigger, batch)
        if queued + n > 12:
            assert len(self.accepted) == accepted_before  # refused whole

    @rule(bad=INVALID_BLOCKS, n_good=st.integers(0, 2), at=st.integers(0, 2))
    def submit_invalid(self, bad: Any, n_good: int, at: int) -> None:
        batch: list[Any] = [block(f"g{self.next_id + i}") for i in range(n_good)]
        self.next_id += n_good
        batch.insert(min(at, len(batch)), bad)
        queue_before = self.em.queued_block_ids
        accepted_before = self.em.get_execution_status()["blocks_accepted"]
        with pytest.raises(InvalidBlockError) as info:
            self.em.execute_instruction_blocks(self.clock(), batch)
        assert info.value.problems
        assert self.em.queued_block_ids == queue_before
        assert self.em.get_execution_status()["blocks_accepted"] == accepted_before

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def resubmit_known_id(self, data: st.DataObject) -> None:
        block_id = data.draw(st.sampled_from(self.accepted))
        queue_before = self.em.queued_block_ids
        try:
            self.em.execute_instruction_blocks(self.clock(), [block(block_id)])
        except InvalidBlockError:
            pass
        else:
            raise AssertionError(f"{block_id} accepted twice")
        assert self.em.queued_block_ids == queue_before

    @rule(faults=st.lists(st.sampled_from([None, *VENUE_FAULTS]), max_size=4))
    def venue_faults(self, faults: list[str | None]) -> None:
        self.faulty.faults.extend(faults)

    @rule(script=st.lists(st.tuples(st.sampled_from(["ok", "fail", "never"]),
                                    st.sampled_from([0.0, 0.3, 1.5, 2.5])), max_size=3))
    def reconciliation_script(self, script: list[tuple[str, float]]) -> None:
        self.rc.script.extend(script)

    @rule()
    def position_handler_fails_once(self) -> None:
        self.positions.failures.append(True)

    @rule(trigger=st.sampled_from(TRIGGER_SOURCES))
    def tick(self, trigger: str) -> None:
        self._call(trigger, None)

    # --------------------------------------------------------------- invariants
    @invariant()
    def every_accepted_block_is_accounted_for(self) -> None:
        s = self.em.get_execution_status()
        in_flight = 1 if s["current_block"] is not None else 0
        assert s["blocks_accepted"] == len(self.accepted)
        assert s["blocks_accepted"] == (s["blocks_executed"] + s["blocks_failed"]
                                        + s["queue_length"] + in_flight)

    @invariant()
    def the_journal_obeys_the_lifecycle(self) -> None:
        events = self.log.events
        for e in events[self.checked:]:
            if e.event_type != "block_transition":
                continue
            d = e.data
            block_id, source, dest = d["block_id"], d["source"], d["dest"]
            assert (source, dest) in LEGAL, (source, dest)
            assert block_id not in self.ended, f"{block_id} moved after it ended"
            if source == "queued":
                # one block at a time: nothing else may be in flight
                assert self.in_flight is None, (self.in_flight, block_id)
                self.in_flight = block_id
            assert self.in_flight == block_id
            if dest in TERMINAL:
                self.ended[block_id] = dest
                self.in_flight = None
                if dest == "success":
                    self.routes_at_success[block_id] = self.venue.route_calls[block_id]
        self.checked = len(events)

    @invariant()
    def no_block_runs_twice(self) -> None:
        assert len(self.venue.execution_order) == len(set(self.venue.execution_order))
        for block_id, n in self.routes_at_success.items():
            assert self.venue.route_calls[block_id] == n

    @invariant()
    def blocks_execute_in_submission_order(self) -> None:
        order = {b: i for i, b in enumerate(self.accepted)}
        ranks = [order[b] for b in self.venue.execution_order]
        assert ranks == sorted(ranks)

    @invariant()
    def states_agree_with_the_journal(self) -> None:
        for block_id, dest in self.ended.items():
            state = self.em.block_state(block_id)
            assert state is BlockState(dest)
        s = self.em.get_execution_status()
        assert s["current_block"] == self.in_flight

    @invariant()
    def halted_means_positions_in_doubt(self) -> None:
        s = self.em.get_execution_status()
        if s["halted"]:
            assert s["status"] == "unhealthy" and s["halt_reason"] is not None


class BacktestManagerMachine(ManagerMachine):
    """The same invariants in backtest mode, where failures raise and nothing retries."""

    mode = "backtest"


TestManagerLive = ManagerMachine.TestCase
TestManagerBacktest = BacktestManagerMachine.TestCase
