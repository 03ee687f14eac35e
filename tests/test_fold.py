"""One meaning per record: folding the journal written so far gives the live manager's own
state, at every step, in both modes, with faults, cancels, halts, resumes and restarts.

The live manager changes its state only through :class:`~fsm_exec.journal.state.ManagerState`'s
operations, right after writing each record; recovery, ``check``, ``status`` and the offline
``cancel`` fold the records read back through the same operations. This machine drives a real
manager on a real journal (on disk, through the codec and the reader) and compares the two
after every step.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fsm_exec import ComponentError, EventLogger, ExecutionManager, check_journal
from fsm_exec.journal.fold import replay
from fsm_exec.journal.reader import recovery_records
from fsm_exec.testing import (
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
    fault_plans,
)

CONFIG = {"execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
          "retry_delay_seconds": 0.5, "max_queue_size": 20, "duplicate_window": 6,
          "checkpoint_every": 25}
TOKENS = ("ETH", "BTC", "USDC")


class InterruptingVenue(NaiveVenue):
    """A venue whose next route call can be cut by an interrupt (Ctrl-C, a supervisor's
    signal): before the order reaches it, or after it executed and before the reply."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupt: str | None = None

    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, Any]:
        when, self.interrupt = self.interrupt, None
        if when == "before":
            raise KeyboardInterrupt("before the order left")
        result = super().route_instruction(timestamp, block)
        if when == "after":
            raise KeyboardInterrupt("after the venue executed")
        return result


def blocks(n: int, first: int) -> list[dict[str, Any]]:
    """``n`` valid blocks with ids ``b<first>`` ... (a price exists for every token)."""
    return [{"block_id": f"b{first + i}", "action": "trade", "priority": i % 3,
             "instructions": [{"token": TOKENS[(first + i) % 3], "amount": 1.5 + i}]}
            for i in range(n)]


class FoldMachine(RuleBasedStateMachine):
    """A live manager on a journal on disk; after every step its state is the fold of what
    the journal holds."""

    mode: ClassVar[str] = "live"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fsm-fold-"))
        self.clock = FakeClock()
        self.inner = InterruptingVenue()
        self.venue = FaultyVenue(self.inner, clock=self.clock, hang_seconds=6.0,
                                 lag_queries=2, lag_seconds=4.0)
        self.reconciliation = FaultyReconciliation(SimReconciliation(None), self.clock)
        self.positions = FaultyPositionHandler(SimPositionHandler(None),
                                               reconciliation=self.reconciliation)
        self.next_id = 1
        self.log: EventLogger | None = None
        self.em = self._build(recover=False)

    def _build(self, *, recover: bool) -> ExecutionManager:
        self.log = EventLogger(self.dir, self.mode)
        em = ExecutionManager(dict(CONFIG), StaticDataProvider(), self.mode, self.positions,
                              self.venue, self.reconciliation, event_logger=self.log,
                              clock=self.clock, sleep=self.clock.sleep)
        if recover:
            em.recover()
        return em

    def teardown(self) -> None:
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _call(self, *args: Any) -> None:
        try:
            self.em.update_state(self.clock.timestamp(), *args)
        except ComponentError:
            pass  # a block's failure (backtest raises it) or a halt: the state still counts
        except KeyboardInterrupt:
            pass  # the manager retired: replaced below, as the README's recipe says
        self.clock.advance(1.0)
        if self.em.interrupted:
            self.em = self.em.reopen()

    # ------------------------------------------------------------------ rules
    @rule(n=st.integers(1, 3))
    def submit(self, n: int) -> None:
        """A batch of new blocks."""
        self._call("strategy_manager", blocks(n, self.next_id))
        self.next_id += n

    @rule(plan=fault_plans())
    def inject_faults(self, plan: FaultPlan) -> None:
        """The next venue, reconciliation and position-handler faults."""
        self.venue.faults.extend(plan.venue)
        self.reconciliation.script.extend(plan.reconciliation)
        self.positions.failures.extend(plan.positions)

    @rule(trigger=st.sampled_from(("strategy_manager", "manual", "retry")))
    def tick(self, trigger: str) -> None:
        """An update with no new blocks ('manual' resumes a halt)."""
        self._call(trigger)

    @precondition(lambda self: bool(self.em.queued_block_ids))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """An operator cancels some queued blocks."""
        queued = self.em.queued_block_ids
        ids = data.draw(st.lists(st.sampled_from(queued), min_size=1, unique=True))
        self.em.cancel(self.clock.timestamp(), ids, reason="operator")

    @rule(when=st.sampled_from(("before", "after")))
    def interrupt_the_next_route(self, when: str) -> None:
        """The next route call is cut by an interrupt, before the order leaves or after the
        venue executed it (the reply lost)."""
        self.inner.interrupt = when

    @rule()
    def restart(self) -> None:
        """The process stops (its journal closed as it stands) and a new manager recovers
        from the journal."""
        assert self.log is not None
        self.log.close()
        self.em = self._build(recover=True)

    # ------------------------------------------------------------------ the property
    @invariant()
    def the_journal_folds_to_the_live_state(self) -> None:
        """The fold of the journal on disk is the manager's state, field by field."""
        assert self.log is not None
        self.log.flush()
        folded = replay(recovery_records(self.dir))
        live = self.em._state
        assert folded.checkpoint_data() == live.checkpoint_data()
        assert folded.halted == self.em.halted
        assert folded.halt_reason == self.em.get_execution_status()["halt_reason"]
        assert tuple(folded.queue) == self.em.queued_block_ids
        status = self.em.get_execution_status()
        assert (folded.executed, folded.failed, folded.cancelled, folded.accepted) == (
            status["blocks_executed"], status["blocks_failed"], status["blocks_cancelled"],
            status["blocks_accepted"])
        flight = folded.flight
        assert status["current_block"] == (flight.block.block_id if flight else None)
        assert status["current_block_state"] == (flight.state if flight else None)
        assert check_journal(self.dir).ok


class BacktestFoldMachine(FoldMachine):
    """The same property in backtest mode (a buffered journal, failures raise)."""

    mode: ClassVar[str] = "backtest"


TestFoldLive = FoldMachine.TestCase
TestFoldBacktest = BacktestFoldMachine.TestCase
# Fewer examples than the ci profile's 200: each step writes and reads a journal on disk.
# FSM_EXEC_LONGRUN-style depth: run with --hypothesis-profile=fsm-exec-nightly for more.
for _case in (TestFoldLive, TestFoldBacktest):
    _case.settings = settings(_case.settings, stateful_step_count=30, deadline=None,
                              max_examples=min(_case.settings.max_examples, 60))
