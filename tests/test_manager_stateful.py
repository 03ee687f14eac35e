"""The project fuzzes itself with the kit it ships: fsm_exec.testing's state machine drives
the manager against a venue that is NOT idempotent, so any second execution would show."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

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


class ManagerMachine(ExecutionManagerMachine):
    """Live mode: retries, timeouts, halts, resumes and cancels, over a venue that executes
    every route it receives (so the manager alone must keep each block to one execution)."""

    venue_faults = VENUE_FAULTS  # the eventually consistent venue included

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


class TrustingMachine(ManagerMachine):
    """The same machine with the not-found rule switched off: one "not found" is believed
    at once, as trading bots that filled every retry did."""

    config: ClassVar[Mapping[str, Any]] = {**ManagerMachine.config,
                                           "not_found_confirmations": 1,
                                           "not_found_min_age_seconds": 0}


TestManagerLive = ManagerMachine.TestCase
TestManagerBacktest = BacktestManagerMachine.TestCase
# The project searches deeper than the kit's default for users.
TestManagerLive.settings = settings(TestManagerLive.settings, stateful_step_count=50)
TestManagerBacktest.settings = settings(TestManagerBacktest.settings, stateful_step_count=50)


def test_believing_one_not_found_executes_a_block_twice() -> None:
    """The not-found rule matters: with not_found_confirmations=1 and no minimum age, the
    kit's eventually consistent venue makes the manager route an executed block again, and
    the search finds it (with the defaults, TestManagerLive holds)."""
    find = settings(max_examples=200, stateful_step_count=20, derandomize=True,
                    deadline=None, database=None,
                    phases=[Phase.explicit, Phase.reuse, Phase.generate])
    with pytest.raises(AssertionError, match="executed twice"):
        run_state_machine_as_test(TrustingMachine, settings=find)
