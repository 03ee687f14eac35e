"""The project fuzzes itself with the kit it ships: fsm_exec.testing's state machine drives
the manager against a venue that is NOT idempotent, so any second execution would show."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis.stateful import invariant

from fsm_exec.testing import (
    ExecutionManagerMachine,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)


class ManagerMachine(ExecutionManagerMachine):
    """Live mode: retries, timeouts, halts and resumes, over a venue that executes every
    route it receives (so the manager alone must keep each block to one execution)."""

    def collaborators(self) -> dict[str, Any]:
        self.naive = NaiveVenue()
        rc = SimReconciliation(None)
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(rc),
                "execution_interface_manager": self.naive,
                "reconciliation_component": rc}

    @invariant()
    def no_block_executes_twice(self) -> None:
        order = self.naive.execution_order
        assert len(order) == len(set(order)), f"executed twice: {order}"

    @invariant()
    def the_venue_sees_blocks_in_submission_order(self) -> None:
        rank = {b: i for i, b in enumerate(self.accepted)}
        ranks = [rank[b] for b in self.naive.execution_order]
        assert ranks == sorted(ranks)


class BacktestManagerMachine(ManagerMachine):
    """The same invariants in backtest mode, where failures raise and nothing retries."""

    mode = "backtest"


TestManagerLive = ManagerMachine.TestCase
TestManagerBacktest = BacktestManagerMachine.TestCase
# The project searches deeper than the kit's default for users.
TestManagerLive.settings = settings(TestManagerLive.settings, stateful_step_count=50)
TestManagerBacktest.settings = settings(TestManagerBacktest.settings, stateful_step_count=50)
