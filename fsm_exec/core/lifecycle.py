"""The block lifecycle: every state, trigger and transition lives in this module.

Nothing else in the package defines a transition. The ``transitions.Machine`` that drives
the block in flight, the diagrams, the docs' state table and the conformance checks are all
derived from :data:`TRANSITIONS`. The table is checked when this module is imported; a broken
table raises :class:`InvalidLifecycleError` naming the offending states.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from transitions import MachineError

from fsm_exec.core.engine import EngineMachine
from fsm_exec.core.errors import ComponentError, LifecycleCallError, describe_exception
from fsm_exec.core.lifecycle_guards import resolve

if TYPE_CHECKING:
    from fsm_exec.core.running import RunTable


class BlockState(enum.StrEnum):
    """Where an instruction block is in its life."""

    QUEUED = "queued"
    ROUTING = "routing"
    PENDING_RECONCILIATION = "pending_reconciliation"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: What each state means; docs and diagrams take their words from here.
STATE_MEANINGS: Mapping[BlockState, str] = {
    BlockState.QUEUED: "Accepted and waiting its turn; nothing has been sent to a venue.",
    BlockState.ROUTING: "The block in flight: risk checks, then the venue call.",
    BlockState.PENDING_RECONCILIATION:
        "The venue executed: the deltas go to the position handler, then the manager "
        "waits for reconciliation.",
    BlockState.RETRYING:
        "Something failed or is unknown: back off, and find out whether the venue executed "
        "before routing again or waiting again.",
    BlockState.SUCCESS: "Executed and reconciled (terminal).",
    BlockState.FAILED:
        "Not executed, or executed with positions in doubt (terminal; the error code says "
        "which).",
    BlockState.CANCELLED:
        "Dropped from the queue by an operator before it started; never sent to a venue "
        "(terminal).",
}


class Trigger(enum.StrEnum):
    """The names of the events that move a block from one state to another."""

    START = "start"
    CANCEL = "cancel"
    EXECUTED = "executed"
    ROUTE_FAILED = "route_failed"
    REROUTE = "reroute"
    FOUND_EXECUTED = "found_executed"
    RESUME_RECONCILIATION = "resume_reconciliation"
    RECONCILED = "reconciled"
    RECONCILIATION_TIMEOUT = "reconciliation_timeout"
    FAIL = "fail"


@attrs.frozen
class Edge:
    """One row of the transition table: ``trigger`` moves a block from ``source`` to ``dest``."""

    trigger: Trigger
    source: BlockState
    dest: BlockState
    meaning: str


INITIAL_STATE: BlockState = BlockState.QUEUED
TERMINAL_STATES: frozenset[BlockState] = frozenset(
    {BlockState.SUCCESS, BlockState.FAILED, BlockState.CANCELLED})

_S = BlockState
_N = TypeVar("_N")  # a node of a graph walk (reach)
_T = Trigger

#: What ``found_executed`` means, in every lifecycle (derived: see :data:`DERIVED`).
FOUND_EXECUTED_MEANING = (
    "The venue did execute (query_execution or a late reply returned deltas, after the "
    "reply was lost): the deltas, not handed off yet, go wherever executed leads from "
    "routing (derived from it); never routed again.")

#: Derived transitions: ``(source, trigger)`` leads wherever ``(from source, from trigger)``
#: does, with the same guards, in every lifecycle. A block the venue is found to have
#: executed while retrying (its reply was lost) is the block ``executed`` moves: its deltas
#: take the same way to the hand-off (a lifecycle that sends ``executed`` to a settling state
#: of its own sends ``found_executed`` there too). A lifecycle never declares them; they are
#: left out of its hash (they follow from the transitions it declares).
DERIVED: Mapping[tuple[str, str], tuple[str, str]] = {
    ("retrying", "found_executed"): ("routing", "executed"),
}

#: The transition table, in the order the docs and diagrams present it.
TRANSITIONS: tuple[Edge, ...] = (
    Edge(_T.START, _S.QUEUED, _S.ROUTING,
         "The block becomes the one in flight; pre-trade risk checks (price validation first) "
         "run before the venue is called."),
    Edge(_T.CANCEL, _S.QUEUED, _S.CANCELLED,
         "An operator cancelled the block while it waited (ExecutionManager.cancel, or "
         "fsm-exec cancel): it is never routed, and its block_id stays taken."),
    Edge(_T.FAIL, _S.ROUTING, _S.FAILED,
         "A risk check refused the block (the venue is not called), the venue refused it for "
         "good, or a backtest venue call failed (fail fast)."),
    Edge(_T.EXECUTED, _S.ROUTING, _S.PENDING_RECONCILIATION,
         "The venue executed the block; its deltas go to the position handler."),
    Edge(_T.ROUTE_FAILED, _S.ROUTING, _S.RETRYING,
         "The venue call failed: rejected, or outcome unknown (error, timeout)."),
    Edge(_T.REROUTE, _S.RETRYING, _S.ROUTING,
         "Nothing was executed (definitive rejection, the venue's query_execution says not "
         "found, or there is no way to ask): route again with the same block_id."),
    Edge(_T.FOUND_EXECUTED, _S.RETRYING, _S.PENDING_RECONCILIATION, FOUND_EXECUTED_MEANING),
    Edge(_T.RESUME_RECONCILIATION, _S.RETRYING, _S.PENDING_RECONCILIATION,
         "Only reconciliation is outstanding: it timed out after the deltas were handed off; "
         "wait for reconciliation again, never route again."),
    Edge(_T.FAIL, _S.RETRYING, _S.FAILED,
         "Attempts exhausted, or the outcome of an abandoned venue call cannot be resolved."),
    Edge(_T.RECONCILED, _S.PENDING_RECONCILIATION, _S.SUCCESS,
         "Reconciliation reported success for this block."),
    Edge(_T.RECONCILIATION_TIMEOUT, _S.PENDING_RECONCILIATION, _S.RETRYING,
         "Reconciliation did not report within reconciliation_timeout for this attempt."),
    Edge(_T.FAIL, _S.PENDING_RECONCILIATION, _S.FAILED,
         "Reconciliation reported failure, or the position handler refused the deltas: "
         "positions are in doubt."),
)


class InvalidLifecycleError(ValueError):
    """A transition table breaks one of the lifecycle's structural rules."""


def reach(start: Iterable[_N], pairs: Iterable[tuple[_N, _N]]) -> set[_N]:
    """Every state reachable from ``start`` along the ``(from, to)`` pairs (``start``
    included): the one graph walk of the table's checks and of a user lifecycle's rules."""
    step: dict[_N, set[_N]] = {}
    for a, b in pairs:
        step.setdefault(a, set()).add(b)
    seen = set(start)
    todo = list(seen)
    while todo:
        for nxt in step.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _reachable(start: Iterable[BlockState], edges: Iterable[Edge],
               *, reverse: bool = False) -> set[BlockState]:
    return reach(start, ((e.dest, e.source) if reverse else (e.source, e.dest)
                         for e in edges))


def validate_table(states: Iterable[BlockState], initial: Iterable[BlockState],
                   terminal: Iterable[BlockState], edges: Iterable[Edge],
                   meanings: Mapping[BlockState, str] | None = None) -> None:
    """Check a transition table's structure; raise :class:`InvalidLifecycleError` if broken.

    Rules: exactly one initial state; every edge joins known states; no trigger leads from one
    state to two destinations; every state is reachable from the initial one; every
    non-terminal state can reach a terminal one; terminal states have no way out; and, when
    ``meanings`` is given, every state has one.
    """
    states, initial, terminal, edges = list(states), list(initial), set(terminal), list(edges)
    known = set(states)
    problems: list[str] = []

    def names(xs: Iterable[BlockState]) -> str:
        return ", ".join(sorted(str(x) for x in xs))

    if len(initial) != 1:
        problems.append(f"exactly one initial state is needed, got {len(initial)}"
                        + (f" ({names(initial)})" if initial else ""))
    unknown = {s for e in edges for s in (e.source, e.dest)} - known
    unknown |= (set(initial) | terminal) - known
    if unknown:
        problems.append(f"unknown states: {names(unknown)}")
    if not terminal:
        problems.append("no terminal state")
    seen: dict[tuple[BlockState, Trigger], BlockState] = {}
    for e in edges:
        other = seen.setdefault((e.source, e.trigger), e.dest)
        if other != e.dest:
            problems.append(f"trigger {e.trigger!s} leads from {e.source!s} to both "
                            f"{other!s} and {e.dest!s}")
    exits = {e.source for e in edges} & terminal
    if exits:
        problems.append(f"terminal states with a way out: {names(exits)}")
    if len(initial) == 1:
        unreachable = known - _reachable(initial, edges)
        if unreachable:
            problems.append(f"states unreachable from {initial[0]!s}: {names(unreachable)}")
    trapped = known - terminal - _reachable(terminal, edges, reverse=True)
    if trapped:
        problems.append(f"non-terminal states that cannot reach a terminal state: "
                        f"{names(trapped)}")
    for (source, trigger), (of_source, of_trigger) in DERIVED.items():
        got = [e.dest for e in edges if (str(e.source), str(e.trigger)) == (source, trigger)]
        want = [e.dest for e in edges
                if (str(e.source), str(e.trigger)) == (of_source, of_trigger)]
        if got != want:
            problems.append(f"{source} --{trigger}--> is derived from {of_source} "
                            f"--{of_trigger}-->: it leads to {names(want) or 'nowhere'}, "
                            f"not {names(got) or 'nowhere'}")
    if meanings is not None:
        unexplained = known - {s for s, text in meanings.items() if text}
        if unexplained:
            problems.append(f"states without a meaning: {names(unexplained)}")
    if problems:
        raise InvalidLifecycleError("invalid block lifecycle: " + "; ".join(problems))


validate_table(BlockState, [INITIAL_STATE], TERMINAL_STATES, TRANSITIONS, STATE_MEANINGS)

#: A short stable fingerprint of the table: the first 16 hex digits of the sha256 of the
#: compact JSON list of ``[source, trigger, dest]`` triples, in table order (meanings, and
#: the :data:`DERIVED` transitions, which follow from the others, left out). Journals and
#: metrics (``fsm_exec_build_info``) carry it, so a journal written under another lifecycle
#: is refused rather than misread.
TABLE_HASH: str = hashlib.sha256(json.dumps(
    [[str(e.source), str(e.trigger), str(e.dest)] for e in TRANSITIONS
     if (str(e.source), str(e.trigger)) not in DERIVED],
    separators=(",", ":")).encode()).hexdigest()[:16]

#: ``(state, trigger) -> next state``, derived from the table.
NEXT_STATE: Mapping[tuple[BlockState, Trigger], BlockState] = {
    (e.source, e.trigger): e.dest for e in TRANSITIONS
}
#: Every ``(source, dest)`` pair the table allows.
LEGAL_MOVES: frozenset[tuple[BlockState, BlockState]] = frozenset(
    (e.source, e.dest) for e in TRANSITIONS
)


def lifecycle_paths(edges: tuple[Edge, ...] = TRANSITIONS) -> tuple[tuple[Edge, ...], ...]:
    """Every simple path (no state visited twice) from the initial state to a terminal one,
    as tuples of edges, shortest first: one test per path covers every way a block can go
    (in the spirit of XState's model-based testing)."""
    out: list[tuple[Edge, ...]] = []

    def walk(state: BlockState, seen: frozenset[BlockState], path: tuple[Edge, ...]) -> None:
        if state in TERMINAL_STATES:
            out.append(path)
            return
        for e in edges:
            if e.source == state and e.dest not in seen:
                walk(e.dest, seen | {e.dest}, (*path, e))

    walk(INITIAL_STATE, frozenset({INITIAL_STATE}), ())
    return tuple(sorted(out, key=len))


class IllegalTransitionError(ComponentError, RuntimeError):
    """A trigger was fired from a state that has no edge for it; the state is unchanged."""

    def __init__(self, trigger: str, state: str, block_id: str | None,
                 allowed: Iterable[str] | None = None, why: str = "") -> None:
        self.trigger, self.state = trigger, state
        if allowed is None:
            allowed = sorted(str(e.trigger) for e in TRANSITIONS if e.source == state)
        super().__init__(
            "EXEC-012",
            f"illegal transition: trigger {trigger!r} from state {state!r} (block "
            f"{block_id!r}); {why}allowed from {state!r}: "
            f"{', '.join(allowed) or 'nothing'}",
            block_id=block_id)


def _resolve_hook(path: str) -> Callable[..., Any]:
    """The callable a hook's import path names; :class:`LifecycleCallError` says why not."""
    try:
        return resolve(path)
    except LookupError as exc:
        raise LifecycleCallError(f"hook {path!r}: {exc}", "-", None) from None


class _Flight:
    """The model the Machine drives: the one block in flight (``transitions`` sets ``state``)."""

    state: str
    block_id: str | None = None


TransitionListener = Callable[[str, str, str, dict[str, Any]], None]


_NEXT: dict[tuple[str, str], str] = {(str(a), str(t)): str(b) for (a, t), b in NEXT_STATE.items()}
_STATE_OF: dict[str, BlockState] = {str(s): s for s in BlockState}
_TERMINAL_VALUES = frozenset(str(s) for s in TERMINAL_STATES)
_INITIAL = str(INITIAL_STATE)


class BlockLifecycle:
    """One reusable ``transitions.Machine`` (the :mod:`fsm_exec.core.engine` one) for the block in
    flight.

    ``load(block_id)`` puts a new block at the initial state, and only when the previous one
    reached a terminal state (or none was loaded yet). ``fire(trigger, **data)`` moves it;
    the Machine itself calls the listener, if any, with ``(source, dest, trigger, data)``
    *before* the state changes (its ``on_move``: :mod:`fsm_exec.core.engine`), so a listener
    that raises (a journal that cannot write) leaves the state as it was. The default
    lifecycle's transitions stay bare (no callbacks), so the engine moves the block on its
    short path, through transitions' own ``State`` and ``Transition`` objects.

    ``table`` (a :class:`~fsm_exec.core.running.RunTable`; ``None``: the default lifecycle)
    runs a user lifecycle on the same Machine: its guards are the transitions' ``conditions``
    (each conditional transition journals its own move once they hold: an engine
    ``Recorder``, write-ahead still), its hooks the states' ``on_enter`` callbacks. Guards and
    hooks are given :attr:`context` (a callable returning the
    :class:`~fsm_exec.core.lifecycles.GuardContext`); one that raises raises
    :class:`~fsm_exec.core.running.LifecycleCallError`.
    """

    __slots__ = ("_flight", "_machine", "_triggers", "_recorded", "_listener", "_next",
                 "terminal", "table", "context", "hook_error", "imports")

    def __init__(self, listener: TransitionListener | None = None,
                 table: RunTable | None = None, *, imports: bool = True) -> None:
        self._flight = _Flight()
        self._listener = listener
        self.table = table
        #: Whether the hooks and ``call`` guards a lifecycle names are imported and run;
        #: ``False`` for an offline tool acting on a journal it was given (its data is not
        #: code to run): such a hook or guard refuses its move instead.
        self.imports = imports
        #: Gives guards and hooks the block's context (set by the manager).
        self.context: Callable[[], Any] | None = None
        #: The first hook that raised on the last move (the mover raises it, once its
        #: bookkeeping is done: :mod:`fsm_exec.manager.moves`).
        self.hook_error: Exception | None = None
        if table is None or table.is_default:
            self.table = None
            self._next: Mapping[tuple[str, str], object] = _NEXT
            #: The lifecycle's terminal states, as plain strings.
            self.terminal: frozenset[str] = _TERMINAL_VALUES
            self._machine = EngineMachine(
                model=self._flight,
                states=[str(s) for s in BlockState],
                transitions=[
                    {"trigger": str(e.trigger), "source": str(e.source), "dest": str(e.dest)}
                    for e in TRANSITIONS
                ],
                initial=str(INITIAL_STATE),
                auto_transitions=False,
            )
        else:
            self._next, self.terminal = table.next, table.terminal
            self._machine = self._build(table)
        # The Machine itself tells the listener of each move, before making it (write-ahead).
        self._machine.on_move = listener
        self._machine.freeze()  # built, never changed, never handed out: plan its moves
        events = self._machine.events
        self._triggers = {name: event.trigger for name, event in events.items()}
        self._recorded = {name: event.fire_recorded  # type: ignore[attr-defined]
                          for name, event in events.items()}
        # nothing in flight yet: a terminal state
        self._flight.state = str(BlockState.SUCCESS)

    def _build(self, table: RunTable) -> EngineMachine:
        states = [{"name": name, "on_enter": [  # none imported, none run (imports=False)
                      self._hook(path, _resolve_hook(path))
                      for path in (table.hooks.get(name, ()) if self.imports else ())]}
                  for name in table.states]
        machine = EngineMachine(model=self._flight, states=states, initial=_INITIAL,
                                auto_transitions=False)
        for e in table.edges:
            conditional = (e.source, e.trigger) in table.conditional
            machine.add_transition(
                e.trigger, e.source, e.dest,
                conditions=[self._guard(g) for g in e.guards],
                before=[machine.recorder(e.source, e.dest, e.trigger)] if conditional else [])
        return machine

    def _ctx(self) -> Any:
        context = self.context
        if context is None:
            raise RuntimeError("no context to evaluate the lifecycle's guards and hooks in")
        return context()

    def _guard(self, guard: Any) -> Callable[..., bool]:
        def holds(*_: Any, **__: Any) -> bool:
            if guard.kind == "call" and not self.imports:
                raise LifecycleCallError(
                    f"guard call {guard.args.get('path')!r} is code the journal names: an "
                    "offline tool never imports it", self._flight.state,
                    self._flight.block_id, None)
            try:
                return bool(guard.holds(self._ctx()))
            except Exception as exc:
                raise LifecycleCallError(
                    f"guard {guard.kind} {dict(guard.args)!r} could not be evaluated: "
                    f"{describe_exception(exc)}", self._flight.state,
                    self._flight.block_id, exc) from None
        return holds

    def _hook(self, path: str, func: Callable[..., Any]) -> Callable[..., None]:
        def call(*_: Any, **__: Any) -> None:
            # The block has moved (its record written): the error waits for the mover's
            # bookkeeping (hook_error), then fails the block where it stands.
            try:
                func(self._ctx())
            except Exception as exc:
                if self.hook_error is None:
                    self.hook_error = LifecycleCallError(
                        f"hook {path} raised {describe_exception(exc)}",
                        self._flight.state, self._flight.block_id, exc)
        return call

    def rebind(self, listener: TransitionListener | None) -> None:
        """Hand this lifecycle, idle, to a new owner telling ``listener`` of its moves: as
        good as a new one (no block loaded), without building another Machine. Refused
        while a block is in flight."""
        if self._flight.state not in _TERMINAL_VALUES:
            raise IllegalTransitionError("rebind", self._flight.state, self._flight.block_id)
        self._listener = listener
        self._machine.on_move = listener
        self._flight.block_id = None
        self._flight.state = str(BlockState.SUCCESS)

    @property
    def state(self) -> BlockState | str:
        """The state of the block in flight (a terminal state when none is): a
        :class:`BlockState`, or the name of a state a user lifecycle adds."""
        value = self._flight.state
        return _STATE_OF.get(value, value)

    @property
    def current(self) -> str:
        """The state's value, as a plain string (the cheap form of :attr:`state`)."""
        return self._flight.state

    @property
    def block_id(self) -> str | None:
        """The ``block_id`` last loaded, or ``None`` before the first block."""
        return self._flight.block_id

    @property
    def in_flight(self) -> bool:
        """True while the loaded block has not reached a terminal state."""
        return self._flight.state not in self.terminal

    def _illegal(self, trigger: str, why: str = "") -> IllegalTransitionError:
        flight, table = self._flight, self.table
        return IllegalTransitionError(
            trigger, flight.state, flight.block_id,
            None if table is None else table.allowed(flight.state), why)

    def load(self, block_id: str) -> None:
        """Make ``block_id`` the block in flight, in the initial state."""
        if self._flight.state not in self.terminal:  # name the block that is in the way
            raise self._illegal(f"load {block_id!r}")
        self._flight.block_id = block_id
        self._flight.state = _INITIAL

    def restore(self, block_id: str, state: BlockState | str) -> None:
        """Put ``block_id`` back in flight at ``state`` (crash recovery from a journal)."""
        if self._flight.state not in self.terminal:
            raise self._illegal(f"restore {block_id!r}")
        # refuse an unknown state before changing anything
        value = (str(BlockState(state)) if self.table is None
                 else self._machine.get_state(str(state)).name)
        self._flight.block_id = block_id
        self._flight.state = value

    def commit(self, trigger: str) -> None:
        """Fire ``trigger`` without the listener: for a caller that has just written the
        move's record itself (write-ahead), the hot path's form of :meth:`fire`. The same
        table check (an illegal trigger raises and moves nothing), the same Machine."""
        flight = self._flight
        if (flight.state, trigger) not in self._next:
            raise self._illegal(str(trigger))
        self._recorded[trigger](flight)

    def fire(self, trigger: Trigger | str, **data: Any) -> BlockState | str:
        """Fire ``trigger`` on the block in flight and return the new state."""
        flight = self._flight
        source = flight.state
        if (source, trigger) not in self._next:
            raise self._illegal(str(trigger))
        try:  # the Machine tells the listener first (write-ahead: may raise, nothing moved)
            moved = self._triggers[trigger](flight, **data)
        except MachineError:  # pragma: no cover - the table above already refused it
            raise self._illegal(str(trigger)) from None
        if not moved:  # a user lifecycle's guards all refused: nothing moved
            raise self._illegal(str(trigger), "no transition's guards hold; ")
        value = flight.state
        return _STATE_OF.get(value, value)

    def try_fire(self, trigger: str, **data: Any) -> bool:
        """Fire ``trigger`` if its guards hold (a user lifecycle's poll, or a state the
        driver moves on from); ``False``, nothing moved, when none holds. An illegal
        trigger raises as :meth:`fire` does."""
        flight = self._flight
        if (flight.state, trigger) not in self._next:
            raise self._illegal(str(trigger))
        return bool(self._triggers[trigger](flight, **data))
