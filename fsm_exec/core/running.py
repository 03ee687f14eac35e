"""A :class:`~fsm_exec.core.lifecycles.Lifecycle` made runnable: the one table the block's
Machine (:class:`~fsm_exec.core.lifecycle.BlockLifecycle`), the drivers and the journal's fold
(:class:`~fsm_exec.journal.state.ManagerState`) read.

The lifecycle's own transitions, in its order, plus the moves the runtime makes on its own:

- ``timeout`` (:meth:`~fsm_exec.core.lifecycles.Lifecycle.all_transitions`): a waiting
  state's timeout moves a before-route block to the wait's ``timeout_to``, and fails an
  in-flight or settling one (in doubt: ``EXEC-007``, halting);
- ``fail``: from every state the lifecycle adds (and from ``queued``) to ``failed``: a guard
  or a hook that raises fails the block (``EXEC-020``; in doubt, ``EXEC-007`` and halting,
  when the state is in flight or settling).

The default lifecycle's table is :data:`DEFAULT_TABLE` (:mod:`fsm_exec.core.lifecycle`'s
``TRANSITIONS``, nothing added): the engine's short path runs it as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from fsm_exec.core.errors import LifecycleCallError
from fsm_exec.core.lifecycle import (
    INITIAL_STATE,
    STATE_MEANINGS,
    TABLE_HASH,
    TERMINAL_STATES,
    TRANSITIONS,
    BlockState,
    IllegalTransitionError,
    Trigger,
)

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Guard, Lifecycle, Wait

#: The implied trigger of a waiting state's timeout.
TIMEOUT = "timeout"
_FAIL = str(Trigger.FAIL)
_FAILED = str(BlockState.FAILED)
_INITIAL = str(INITIAL_STATE)
#: The kinds of the default states.
DEFAULT_KINDS: Mapping[str, str] = {
    "queued": "before_route", "routing": "in_flight", "retrying": "in_flight",
    "pending_reconciliation": "settling", "success": "terminal", "failed": "terminal",
    "cancelled": "terminal"}


@attrs.frozen
class Edge:
    """One transition as the runtime runs it."""

    source: str
    trigger: str
    dest: str
    guards: tuple[Guard, ...] = ()
    external: bool = False
    poll: bool = False
    implied: bool = False  # added by the runtime (a timeout, a fail): not in the definition


@attrs.frozen(eq=False)
class RunTable:
    """What the runtime reads of a lifecycle: its states and their kinds, the transitions
    (the lifecycle's, in order, then the implied ones), the waits and the hooks."""

    lifecycle: Lifecycle | None  # None: the default lifecycle
    hash: str
    states: tuple[str, ...]
    kinds: Mapping[str, str]
    edges: tuple[Edge, ...]
    waits: Mapping[str, Wait]
    hooks: Mapping[str, tuple[str, ...]]
    #: ``(source, trigger) -> (dest, ...)``: every destination the trigger may lead to.
    next: Mapping[tuple[str, str], tuple[str, ...]] = attrs.field(init=False)
    #: The (source, trigger) pairs whose moves are conditional (a guard on one of them).
    conditional: frozenset[tuple[str, str]] = attrs.field(init=False)
    terminal: frozenset[str] = attrs.field(init=False)

    @next.default
    def _next(self) -> dict[tuple[str, str], tuple[str, ...]]:
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        for e in self.edges:
            key = (e.source, e.trigger)
            if e.dest not in out.get(key, ()):
                out[key] = (*out.get(key, ()), e.dest)
        return out

    @conditional.default
    def _conditional(self) -> frozenset[tuple[str, str]]:
        return frozenset((e.source, e.trigger) for e in self.edges if e.guards)

    @terminal.default
    def _terminal(self) -> frozenset[str]:
        return frozenset(s for s, k in self.kinds.items() if k == "terminal")

    @property
    def is_default(self) -> bool:
        """True for the default lifecycle (today's table, nothing added)."""
        return self.lifecycle is None

    def kind(self, state: str) -> str:
        """``before_route``, ``in_flight``, ``settling`` or ``terminal``."""
        return self.kinds[state]

    def allowed(self, state: str) -> list[str]:
        """The triggers that may fire from ``state`` (sorted, once each)."""
        return sorted({e.trigger for e in self.edges if e.source == state})

    def polls(self, state: str) -> tuple[str, ...]:
        """The poll transitions' triggers out of ``state``, in order, once each."""
        return tuple(dict.fromkeys(e.trigger for e in self.edges
                                   if e.source == state and e.poll))

    def is_external(self, state: str, trigger: str) -> bool:
        """True when ``trigger`` may be fired from ``state`` by ``em.trigger``."""
        return any(e.external for e in self.edges
                   if e.source == state and e.trigger == trigger)

    def trigger_refusal(self, state: str, trigger: str,
                        block_id: str | None) -> IllegalTransitionError | None:
        """Why ``em.trigger`` must refuse ``trigger`` on a block in ``state`` (``None``: it
        may fire it): not allowed there, or not external. The one rule ``em.trigger`` and
        ``fsm-exec trigger`` apply."""
        if self.is_external(state, trigger):
            return None
        allowed = [t for t in self.allowed(state) if self.is_external(state, t)]
        why = ("" if trigger not in self.allowed(state)
               else "it is not an external trigger (em.trigger fires only those); ")
        return IllegalTransitionError(trigger, state, block_id, allowed, why)


def _default_table() -> RunTable:
    return RunTable(
        lifecycle=None, hash=TABLE_HASH, states=tuple(str(s) for s in BlockState),
        kinds=dict(DEFAULT_KINDS),
        edges=tuple(Edge(str(e.source), str(e.trigger), str(e.dest)) for e in TRANSITIONS),
        waits={}, hooks={})


#: The default lifecycle's table.
DEFAULT_TABLE: RunTable = _default_table()
assert set(DEFAULT_KINDS) == {str(s) for s in STATE_MEANINGS}  # every default state has one
assert _INITIAL == "queued" and {str(s) for s in TERMINAL_STATES} == DEFAULT_TABLE.terminal


def table_of(lifecycle: Lifecycle | None) -> RunTable:
    """The runnable table of ``lifecycle`` (``None``, or one that does what the default
    does, same :attr:`~fsm_exec.core.lifecycles.Lifecycle.hash`: :data:`DEFAULT_TABLE`).
    The lifecycle is checked first (:meth:`~fsm_exec.core.lifecycles.Lifecycle.validate`);
    its hooks are imported by the Machine that runs it, not here (a reader of a journal
    needs none of them)."""
    if lifecycle is None or lifecycle.hash == TABLE_HASH:
        return DEFAULT_TABLE
    lifecycle.validate()
    kinds = {s.name: str(s.kind) for s in lifecycle.states}
    own = len(lifecycle.transitions)
    edges = [Edge(t.source, t.trigger, t.dest, tuple(t.guards), t.external, t.poll,
                  implied=i >= own)
             for i, t in enumerate(lifecycle.all_transitions())]
    declared = {(e.source, e.trigger) for e in edges}
    for s in lifecycle.states:
        added = s.name not in DEFAULT_KINDS or s.name == _INITIAL
        if added and kinds[s.name] != "terminal" and (s.name, _FAIL) not in declared:
            edges.append(Edge(s.name, _FAIL, _FAILED, implied=True))
    waits = {s.name: s.wait for s in lifecycle.states if s.wait is not None}
    hooks = {s.name: tuple(s.on_enter) for s in lifecycle.states if s.on_enter}
    return RunTable(lifecycle=lifecycle, hash=lifecycle.hash,
                    states=tuple(s.name for s in lifecycle.states), kinds=kinds,
                    edges=tuple(edges), waits=waits, hooks=hooks)


__all__ = ["DEFAULT_KINDS", "DEFAULT_TABLE", "TIMEOUT", "Edge", "LifecycleCallError", "RunTable",
           "table_of"]
