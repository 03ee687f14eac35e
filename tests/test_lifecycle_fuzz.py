"""The kit fuzzes user lifecycles: every lifecycle the checker accepts (lcmodel's
strategy, its guards, call guards and hooks included) keeps the manager's invariants under
the stateful machine with faults: no block starts before the previous one is terminal, no
block in flight or settling is routed again, every accepted block ends terminal or in
doubt, the venue executes each block at most once, and the venue's deltas take a block only
where executed leads (a settling state there is never skipped on the way to the hand-off)."""

from __future__ import annotations

from typing import ClassVar

from hypothesis import strategies as st

from fsm_exec.core.lifecycles import Lifecycle
from fsm_exec.testing.lifecycle_machine import CALL_PATHS, HOOK_PATHS, LifecycleMachine
from fsm_exec.testing.lifecycles import lifecycles

TestEveryAcceptedLifecycle = LifecycleMachine.TestCase


def _executed_settles_first(lc: Lifecycle) -> bool:
    """executed never leads straight to pending_reconciliation: a state of the lifecycle's
    own (confirmations, say) stands between the venue's reply and the hand-off."""
    return all(t.dest != "pending_reconciliation" for t in lc.transitions
               if (t.source, t.trigger) == ("routing", "executed"))


class LostRepliesUnderASettlingExecuted(LifecycleMachine):
    """Lifecycles whose executed leads to a state they add, and only the venue faults that
    lose a reply the venue executed (an error after it, a lagging index, a reply past the
    timeout): the block is found executed while retrying, and must still go through the
    states executed sends it through before the hand-off."""

    venue_faults = ("lost_response", "eventually_consistent", "hang_after")
    lifecycle_strategy: ClassVar[st.SearchStrategy[Lifecycle]] = lifecycles(
        call_paths=CALL_PATHS, hook_paths=HOOK_PATHS).filter(_executed_settles_first)


TestLostRepliesUnderASettlingExecuted = LostRepliesUnderASettlingExecuted.TestCase
