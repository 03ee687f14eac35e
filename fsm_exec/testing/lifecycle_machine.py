"""The stateful machine over a user lifecycle: :class:`LifecycleMachine` draws a lifecycle
the checker accepts (:func:`~fsm_exec.testing.lifecycles`, its guards, ``call`` guards and
hooks included), runs the manager under it with the kit's faults, fires its external
triggers and lets time pass (waits time out, clock windows open and close), and checks the
kit's invariants after every step (:class:`~fsm_exec.testing.machine.Kit`): one block in
flight at a time, in submission order; only the lifecycle's moves; no block in flight or
settling routed again (a move into ``routing`` only from a before-route state, or the
confirmed-not-found ``reroute``), and no route the lifecycle did not make; the venue's
deltas (its reply, or found after a lost reply) take a block only where ``executed`` leads,
so a settling state there (confirmations) is never skipped on the way to the hand-off;
every accepted block accounted for. At the end of each example it drives what is left to
its end, as an operator would (resume a halt, fire a trigger, cancel, let time pass): every
accepted block ends terminal, or in doubt with the manager halted.

It runs over the kit's simulated collaborators (the venue not idempotent: a double
execution shows): ``TestLifecycles = LifecycleMachine.TestCase``. Subclass it like
:class:`~fsm_exec.testing.ExecutionManagerMachine` to fuzz your own (``collaborators()``),
and set ``lifecycle_strategy`` to draw your own lifecycles, or a fixed one
(``st.just(Lifecycle.load("four_eyes.yaml"))``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from fsm_exec.core.errors import ComponentError
from fsm_exec.core.lifecycles import GuardContext, Lifecycle
from fsm_exec.testing.lifecycles import lifecycles
from fsm_exec.testing.machine import ExecutionManagerMachine, Kit
from fsm_exec.testing.simulated import _executed_once, _simulated_collaborators

_ME = "fsm_exec.testing.lifecycle_machine"
#: The ``call`` guard and the hooks the default strategy draws (they import from here).
CALL_PATHS = (f"{_ME}:even_block",)
HOOK_PATHS = (f"{_ME}:note_entry", f"{_ME}:fail_some")


def _digest(ctx: GuardContext) -> int:
    return sum(map(ord, str(ctx.block.get("block_id", ""))))


def even_block(ctx: GuardContext) -> bool:
    """A ``call`` guard that holds for about half the blocks (by their id): deterministic."""
    return _digest(ctx) % 2 == 0


#: What :func:`note_entry` saw: ``(block_id, state)`` per call.
ENTRIES: list[tuple[str, str]] = []


def note_entry(ctx: GuardContext) -> None:
    """A hook that notes the block and the state it entered."""
    ENTRIES.append((str(ctx.block.get("block_id")), ctx.state))
    del ENTRIES[:-1000]


def fail_some(ctx: GuardContext) -> None:
    """A hook that raises for about one block in five (by its id): the block fails where
    it stands (in doubt, halting, when it was sent)."""
    if _digest(ctx) % 5 == 0:
        raise RuntimeError(f"fail_some: {ctx.block.get('block_id')} in {ctx.state}")


#: How long :meth:`LifecycleMachine.let_time_pass` may wait: past the strategy's timeouts
#: (1 s to 1 h) and across the clock windows' edges (7 h: every time of day over a few).
PASSES = (1.0, 31.0, 600.0, 3601.0, 7 * 3600.0)
#: How many operator actions the end-of-example drain may take before it says a block
#: never ends.
DRAIN_STEPS = 200


class LifecycleMachine(ExecutionManagerMachine):
    """:class:`~fsm_exec.testing.ExecutionManagerMachine` under a drawn user lifecycle (see
    the module docstring). ``lifecycle_strategy`` draws it."""

    lifecycle_strategy: ClassVar[st.SearchStrategy[Lifecycle]] = lifecycles(
        call_paths=CALL_PATHS, hook_paths=HOOK_PATHS)

    def collaborators(self) -> Mapping[str, Any]:
        """The kit's simulated collaborators, the venue not idempotent (override it to fuzz
        yours under a lifecycle)."""
        return _simulated_collaborators()

    @invariant()
    def each_block_executes_once_under_the_lifecycle(self) -> None:
        """The simulated venue executed each block at most once, the book applied each
        block's deltas at most once (with your collaborators: a no-op)."""
        if type(self).collaborators is LifecycleMachine.collaborators:
            _executed_once(self.kit.collaborators)

    @initialize(lc=st.runner().flatmap(lambda m: type(m).lifecycle_strategy))
    def run_under(self, lc: Lifecycle) -> None:
        """The manager runs this lifecycle (built before any step)."""
        self._kit_under(lc)

    @rule(pick=st.integers(0, 7))
    def fire_an_external_trigger(self, pick: int) -> None:
        """An operator fires one of the external triggers of the block in flight's state
        (``em.trigger``): it moves the block, or, its guards not holding, changes nothing."""
        kit = self.kit
        em, lc = kit.manager, kit.lifecycle
        assert lc is not None
        block_id = em.get_execution_status()["current_block"]
        if block_id is None:
            return
        state = str(em.block_state(block_id))
        triggers = sorted({t.trigger for t in lc.transitions_from(state) if t.external})
        if not triggers:
            return
        event = triggers[pick % len(triggers)]
        before = len(kit.journal.events)
        try:
            em.trigger(block_id, event, kit.clock.timestamp(), reason="kit: operator")
        except ComponentError as exc:
            if exc.error_code != "EXEC-012":
                raise AssertionError(f"trigger {event!r} raised {exc}") from exc
            if len(kit.journal.events) != before:
                raise AssertionError(f"a refused {event!r} wrote records") from exc

    @rule(seconds=st.sampled_from(PASSES))
    def let_time_pass(self, seconds: float) -> None:
        """Time passes, then an update: waits time out, windows open and close."""
        kit = self.kit
        kit.clock.advance(seconds)
        kit._update("strategy_manager", None)

    def teardown(self) -> None:
        """Drive what is left to its end (when the example has not failed already): every
        accepted block ends terminal, or in doubt with the manager halted."""
        if sys.exc_info()[1] is None:
            drain(self.kit)
        super().teardown()


def unsettled(kit: Kit, state: str) -> bool:
    """True when a block in ``state`` was sent (in flight or settling): still there when
    the drain gives up, it is in doubt (the venue holds it, nobody settled it). The checker
    accepts lifecycles where that can last: a cycle of sent states left only by a failure,
    a wait without a timeout whose poll's guards never hold for the block."""
    table = kit.table
    if table.kinds.get(state) in ("in_flight", "settling"):
        return True
    # Before the route, a wait without a timeout whose polls never hold for the block (and
    # no cancel): it waits, unsent, as its lifecycle says.
    wait = table.waits.get(state)
    return wait is not None and wait.timeout_seconds is None


def drain(kit: Kit) -> None:
    """Act as an operator until every accepted block has ended: resume a halt, fire an
    external trigger of a waiting block, cancel it when it may be, let time pass. Raises
    ``AssertionError`` naming a block that never ends."""
    em, lc = kit.manager, kit.lifecycle
    for step in range(DRAIN_STEPS):
        status = em.get_execution_status()
        block_id = status["current_block"]
        if block_id is None and not status["queue_length"]:
            break
        if em.halted:
            kit._update("manual", None)
            continue
        state = str(em.block_state(block_id)) if block_id is not None else ""
        ways = sorted({t.trigger for t in lc.transitions_from(state) if t.external}) \
            if lc is not None and block_id is not None and state in {
                s.name for s in lc.states} else []
        if ways and step % 3 == 2:
            try:
                em.trigger(block_id, ways[step % len(ways)], kit.clock.timestamp(),
                           reason="kit: drain")
            except ComponentError as exc:
                if exc.error_code != "EXEC-012":
                    raise AssertionError(str(exc)) from exc
        elif block_id is not None and step > DRAIN_STEPS // 2 and \
                kit.table.kinds.get(state) == "before_route" and \
                (state, "cancel") in kit.table.next:
            em.cancel(kit.clock.timestamp(), [block_id], reason="kit: drain")
        else:
            kit.clock.advance(PASSES[step % len(PASSES)])
            kit._update("strategy_manager", None)
        kit._check()
    status = em.get_execution_status()
    left = [b for b in kit.accepted if str(em.block_state(b)) not in kit.table.terminal]
    where = status["current_block_state"]
    queued = set(em.queued_block_ids)
    if (where is not None and unsettled(kit, where)
            and set(left) <= {status["current_block"], *queued}):
        return  # sent and never settled: in doubt, as the lifecycle allows (the queue waits)
    assert not left or em.halted, (
        f"{', '.join(left)} never ended under lifecycle {lc.name if lc else 'default'!r} "
        f"(the block in flight: {status['current_block']} in "
        f"{status['current_block_state']})")
