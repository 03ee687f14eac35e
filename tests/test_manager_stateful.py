"""The project fuzzes itself with the kit it ships: fsm_exec.testing's state machine drives
the manager against a venue that is NOT idempotent, so any second execution would show."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from fsm_exec.testing import (
    VENUE_FAULTS,
    ExecutionManagerMachine,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

#: Every venue fault but the eventually consistent venue: with it, today's manager takes
#: the first "not found" for "not executed" and routes again (issue 11); see
#: test_no_double_execution_when_the_venue_index_lags.
TRUSTED_QUERY_FAULTS = tuple(f for f in VENUE_FAULTS if f != "eventually_consistent")


class ManagerMachine(ExecutionManagerMachine):
    """Live mode: retries, timeouts, halts, resumes and cancels, over a venue that executes
    every route it receives (so the manager alone must keep each block to one execution)."""

    venue_faults = TRUSTED_QUERY_FAULTS

    def collaborators(self) -> dict[str, Any]:
        self.venue = NaiveVenue()  # the machine's own names are ours: the kit's are self.kit
        rc = SimReconciliation(None)
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(rc),
                "execution_interface_manager": self.venue,
                "reconciliation_component": rc}

    @invariant()
    def no_block_executes_twice(self) -> None:
        order = self.venue.execution_order
        twice = sorted({b for b in order if order.count(b) > 1})
        assert not twice, f"executed twice: {', '.join(twice)} (venue order {order})"

    @invariant()
    def the_venue_sees_blocks_in_submission_order(self) -> None:
        rank = {b: i for i, b in enumerate(self.kit.accepted)}
        ranks = [rank[b] for b in self.venue.execution_order]
        assert ranks == sorted(ranks), f"venue order {self.venue.execution_order}"


class BacktestManagerMachine(ManagerMachine):
    """The same invariants in backtest mode, where failures raise and nothing retries."""

    mode = "backtest"


class LaggingIndexMachine(ManagerMachine):
    """The same machine with every venue fault, the eventually consistent venue included."""

    venue_faults = VENUE_FAULTS


TestManagerLive = ManagerMachine.TestCase
TestManagerBacktest = BacktestManagerMachine.TestCase
# The project searches deeper than the kit's default for users.
TestManagerLive.settings = settings(TestManagerLive.settings, stateful_step_count=50)
TestManagerBacktest.settings = settings(TestManagerBacktest.settings, stateful_step_count=50)


# Today one None from query_execution counts as "not executed", so the search finds a double
# execution; once the manager confirms "not found" (issue 11) this passes: drop the mark, and
# let ManagerMachine draw every venue fault.
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="needs the not-found confirmation rule (issue 11)")
def test_no_double_execution_when_the_venue_index_lags() -> None:
    """No block executes twice when the venue's query lags (fails until issue 11's rule)."""
    find = settings(max_examples=200, stateful_step_count=20, derandomize=True,
                    deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])
    try:
        run_state_machine_as_test(LaggingIndexMachine, settings=find)
    except AssertionError as exc:
        if "executed twice" not in str(exc):  # any other failure is a real one
            pytest.fail(f"expected a double execution, got: {exc}")
        raise
