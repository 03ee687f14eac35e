"""The kit fuzzes user lifecycles: every lifecycle the checker accepts (lcmodel's
strategy, its guards, call guards and hooks included) keeps the manager's invariants under
the stateful machine with faults: no block starts before the previous one is terminal, no
block in flight or settling is routed again, every accepted block ends terminal or in
doubt, and the venue executes each block at most once."""

from __future__ import annotations

from fsm_exec.testing.lifecycle_machine import LifecycleMachine

TestEveryAcceptedLifecycle = LifecycleMachine.TestCase
