"""The project's own nightly target: the machine and crash points over the kit's simulated
collaborators (:data:`SIMULATED`, what ``python -m fsm_exec.testing nightly`` runs when given
no target)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from hypothesis.stateful import invariant

from fsm_exec.sim.venues import (
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)
from fsm_exec.testing.machine import ExecutionManagerMachine
from fsm_exec.testing.nightly import Nightly


def _simulated_collaborators() -> dict[str, Any]:
    """The kit's own fakes, with a venue that is not idempotent (NaiveVenue: any double
    execution shows) and a book that deduplicates by block_id."""
    reconciliation = SimReconciliation()
    return {"data_provider": StaticDataProvider(),
            "position_update_handler": SimPositionHandler(reconciliation, idempotent=True),
            "execution_interface_manager": NaiveVenue(),
            "reconciliation_component": reconciliation}


def _executed_once(collaborators: Mapping[str, Any]) -> None:
    """The simulated venue executed each block at most once, and the book applied each
    block's deltas at most once."""
    venue = collaborators["execution_interface_manager"]
    book = collaborators["position_update_handler"]
    twice = {b: n for b, n in Counter(venue.execution_order).items() if n > 1}
    assert not twice, f"the venue executed {twice} more than once"
    again = {b: n for b, n in book.applied.items() if n > 1}
    assert not again, f"the book applied the deltas of {again} more than once"


class _SimulatedMachine(ExecutionManagerMachine):
    """The machine over the kit's own fakes (see :data:`SIMULATED`)."""

    def collaborators(self) -> Mapping[str, Any]:
        return _simulated_collaborators()

    @invariant()
    def each_block_executes_once(self) -> None:
        """NaiveVenue executes every route: a block routed after it executed shows."""
        _executed_once(self.kit.collaborators)


#: The nightly target the command runs when given none: the manager over the kit's own
#: fakes, its venue not idempotent, so that any double execution fails.
SIMULATED = Nightly(_simulated_collaborators, machine=_SimulatedMachine, check=_executed_once)

