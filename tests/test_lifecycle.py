"""Tests for fsm_exec.core.lifecycle: the transition table, its validation, and BlockLifecycle."""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fsm_exec.core.lifecycle as lifecycle_module
from fsm_exec import (
    INITIAL_STATE,
    TERMINAL_STATES,
    TRANSITIONS,
    BlockLifecycle,
    BlockState,
    ComponentError,
    Edge,
    IllegalTransitionError,
    InvalidLifecycleError,
    Trigger,
    validate_table,
)
from fsm_exec.core.lifecycle import LEGAL_MOVES, NEXT_STATE

S = BlockState
T = Trigger

#: The intended edges, written out by hand: this is the spec the table must match.
EXPECTED_MOVES = {
    (S.QUEUED, S.ROUTING),
    (S.QUEUED, S.CANCELLED),
    (S.ROUTING, S.FAILED),
    (S.ROUTING, S.PENDING_RECONCILIATION),
    (S.ROUTING, S.RETRYING),
    (S.RETRYING, S.ROUTING),
    (S.RETRYING, S.PENDING_RECONCILIATION),
    (S.RETRYING, S.FAILED),
    (S.PENDING_RECONCILIATION, S.SUCCESS),
    (S.PENDING_RECONCILIATION, S.RETRYING),
    (S.PENDING_RECONCILIATION, S.FAILED),
}

NON_TERMINAL = [s for s in BlockState if s not in TERMINAL_STATES]


class _Extra(enum.StrEnum):
    """States that do not exist in the real lifecycle, for building broken tables."""

    ORPHAN = "orphan"
    LIMBO = "limbo"
    LIMBO2 = "limbo2"
    GHOST = "ghost"


# validate_table is typed for BlockState; these stand-ins are StrEnum members like it.
ORPHAN = cast(BlockState, _Extra.ORPHAN)
LIMBO = cast(BlockState, _Extra.LIMBO)
LIMBO2 = cast(BlockState, _Extra.LIMBO2)
GHOST = cast(BlockState, _Extra.GHOST)
ALL_NAMES = [str(s) for s in BlockState] + [str(s) for s in _Extra]


def _edge(source: BlockState, dest: BlockState) -> Edge:
    """The one real edge from ``source`` to ``dest``."""
    (edge,) = [e for e in TRANSITIONS if (e.source, e.dest) == (source, dest)]
    return edge


def _named(message: str) -> set[str]:
    """The state names (real or stand-in) that ``message`` mentions as whole words."""
    return {n for n in ALL_NAMES if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", message)}


def _invalid(states: Iterable[BlockState], initial: Iterable[BlockState],
             terminal: Iterable[BlockState], edges: Iterable[Edge]) -> str:
    """Validate a table that must be refused; return the error message."""
    with pytest.raises(InvalidLifecycleError) as info:
        validate_table(states, initial, terminal, edges)
    return str(info.value)


def _at(state: BlockState, block_id: str = "b-1", listener: Any = None) -> BlockLifecycle:
    """A lifecycle with ``block_id`` in flight at ``state``."""
    lc = BlockLifecycle(listener)
    lc.restore(block_id, state)
    return lc


# --- the table ------------------------------------------------------------------------------


def test_states_are_exactly_the_seven_lifecycle_states() -> None:
    """BlockState has exactly the seven states of the design, by value."""
    assert {str(s) for s in BlockState} == {
        "queued", "routing", "pending_reconciliation", "retrying", "success", "failed",
        "cancelled"}


def test_initial_and_terminal_states() -> None:
    """A block starts at queued and ends at success, failed or cancelled."""
    assert INITIAL_STATE is S.QUEUED
    assert frozenset({S.SUCCESS, S.FAILED, S.CANCELLED}) == TERMINAL_STATES


def test_table_edges_are_the_intended_ones() -> None:
    """The table's (source, dest) pairs are exactly the intended edges, with no duplicates
    but one: retrying -> pending_reconciliation is two facts, two triggers (the venue is
    found to have executed: found_executed; only reconciliation is outstanding:
    resume_reconciliation)."""
    pairs = [(e.source, e.dest) for e in TRANSITIONS]
    assert set(pairs) == EXPECTED_MOVES
    twice = {p for p in pairs if pairs.count(p) > 1}
    assert twice == {(S.RETRYING, S.PENDING_RECONCILIATION)}
    assert len(pairs) == len(EXPECTED_MOVES) + 1
    assert sorted(str(e.trigger) for e in TRANSITIONS
                  if (e.source, e.dest) in twice) == ["found_executed", "resume_reconciliation"]
    assert LEGAL_MOVES == EXPECTED_MOVES


@pytest.mark.parametrize("edge", TRANSITIONS, ids=lambda e: f"{e.source}->{e.dest}")
def test_every_edge_has_a_meaning(edge: Edge) -> None:
    """Every edge explains itself: its meaning is a non-blank string."""
    assert isinstance(edge.meaning, str)
    assert edge.meaning.strip()


def test_next_state_is_derived_from_the_table() -> None:
    """NEXT_STATE maps each edge's (source, trigger) to its dest, and nothing else."""
    assert dict(NEXT_STATE) == {(e.source, e.trigger): e.dest for e in TRANSITIONS}
    assert len(NEXT_STATE) == len(TRANSITIONS)  # no (source, trigger) repeated


def test_every_trigger_is_used_by_the_table() -> None:
    """No trigger is dead: each one labels at least one edge."""
    assert {e.trigger for e in TRANSITIONS} == set(Trigger)


def test_edges_are_frozen() -> None:
    """An Edge cannot be changed in place (the table is constant data)."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        TRANSITIONS[0].dest = S.FAILED  # type: ignore[misc]


# --- validate_table -------------------------------------------------------------------------


def test_validate_table_accepts_the_real_table() -> None:
    """The real lifecycle table passes validation."""
    validate_table(BlockState, [INITIAL_STATE], TERMINAL_STATES, TRANSITIONS)  # no error


def test_validate_table_accepts_another_valid_table() -> None:
    """validate_table is generic: a minimal two-state table with one edge is valid."""
    edges = [Edge(T.START, LIMBO, ORPHAN, "go")]
    validate_table([LIMBO, ORPHAN], [LIMBO], [ORPHAN], edges)  # no error


def test_invalid_lifecycle_error_is_a_value_error() -> None:
    """InvalidLifecycleError can be caught as ValueError."""
    assert issubclass(InvalidLifecycleError, ValueError)


def test_validate_table_rejects_zero_initial_states() -> None:
    """A table without an initial state is refused, and the message says so."""
    message = _invalid(BlockState, [], TERMINAL_STATES, TRANSITIONS)
    assert "initial" in message
    assert _named(message) == set()  # no state is to blame, so none is named


# Each case: (states, initial, terminal, edges, the states the message must name, the states
# it may also name as context, e.g. the other end of an offending edge).
_REAL = list(BlockState)
_BROKEN_TABLES: dict[str, tuple[Any, ...]] = {
    "two initial states": (
        _REAL, [S.QUEUED, S.ROUTING], TERMINAL_STATES, TRANSITIONS,
        {"queued", "routing"}, set()),
    "unreachable state": (
        [*_REAL, ORPHAN], [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS, attrs.evolve(_edge(S.ROUTING, S.FAILED), source=ORPHAN)],
        {"orphan"}, {"queued", "failed"}),
    "unreachable real states": (
        _REAL, [INITIAL_STATE], TERMINAL_STATES,
        [e for e in TRANSITIONS if e.dest is not S.PENDING_RECONCILIATION],
        {"pending_reconciliation", "success"}, {"queued"}),
    "dead-end trap state": (
        [*_REAL, LIMBO], [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS, Edge(T.RECONCILED, S.ROUTING, LIMBO, "into limbo")],
        {"limbo"}, {"routing"}),
    "trap cycle": (
        [*_REAL, LIMBO, LIMBO2], [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS,
         Edge(T.RECONCILED, S.ROUTING, LIMBO, "into limbo"),
         Edge(T.START, LIMBO, LIMBO2, "round"),
         Edge(T.START, LIMBO2, LIMBO, "and round")],
        {"limbo", "limbo2"}, {"routing"}),
    "terminal state with a way out": (
        _REAL, [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS, attrs.evolve(_edge(S.QUEUED, S.ROUTING), source=S.SUCCESS)],
        {"success"}, {"routing"}),
    "edge to an unknown state": (
        _REAL, [INITIAL_STATE], TERMINAL_STATES,
        [attrs.evolve(e, dest=GHOST) if (e.source, e.dest) == (S.RETRYING, S.FAILED) else e
         for e in TRANSITIONS],
        {"ghost"}, {"retrying"}),
    "edge from an unknown state": (
        _REAL, [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS, attrs.evolve(_edge(S.ROUTING, S.FAILED), source=GHOST)],
        {"ghost"}, {"failed"}),
    "unknown terminal state": (
        _REAL, [INITIAL_STATE], [*TERMINAL_STATES, GHOST], TRANSITIONS,
        {"ghost"}, set()),
    "same trigger to two destinations": (
        _REAL, [INITIAL_STATE], TERMINAL_STATES,
        [*TRANSITIONS, attrs.evolve(_edge(S.ROUTING, S.FAILED), dest=S.RETRYING)],
        {"routing", "failed", "retrying"}, set()),
}


@pytest.mark.parametrize(
    ("states", "initial", "terminal", "edges", "offenders", "context"),
    list(_BROKEN_TABLES.values()), ids=list(_BROKEN_TABLES))
def test_validate_table_rejects_broken_table_naming_offenders(
        states: list[BlockState], initial: list[BlockState], terminal: list[BlockState],
        edges: list[Edge], offenders: set[str], context: set[str]) -> None:
    """A broken table is refused with a message naming the offending states (and no others)."""
    named = _named(_invalid(states, initial, terminal, edges))
    assert offenders <= named
    assert named <= offenders | context


def test_validate_table_rejects_no_terminal_state() -> None:
    """With no terminal state the table is refused, and every state is named as trapped."""
    message = _invalid(BlockState, [INITIAL_STATE], [], TRANSITIONS)
    assert "terminal" in message
    assert _named(message) == {str(s) for s in BlockState}


def test_validate_table_reports_every_problem_at_once() -> None:
    """Several faults in one table are all reported in the one error."""
    edges = [*TRANSITIONS,
             attrs.evolve(_edge(S.QUEUED, S.ROUTING), source=S.FAILED),
             attrs.evolve(_edge(S.ROUTING, S.FAILED), source=ORPHAN)]
    named = _named(_invalid([*_REAL, ORPHAN], [INITIAL_STATE], TERMINAL_STATES, edges))
    assert {"failed", "orphan"} <= named


def test_validate_table_keeps_found_executed_where_executed_goes() -> None:
    """retrying --found_executed--> is derived from routing --executed-->: a table where
    it leads elsewhere (or is missing) is refused, naming both triggers."""
    moved = [attrs.evolve(e, dest=S.FAILED) if e.trigger == T.FOUND_EXECUTED else e
             for e in TRANSITIONS]
    message = _invalid(BlockState, [INITIAL_STATE], TERMINAL_STATES, moved)
    assert ("retrying --found_executed--> is derived from routing --executed-->: it leads "
            "to pending_reconciliation, not failed") in message
    gone = [e for e in TRANSITIONS if e.trigger != T.FOUND_EXECUTED]
    assert "not nowhere" in _invalid(BlockState, [INITIAL_STATE], TERMINAL_STATES, gone)


def test_validate_table_accepts_iterators() -> None:
    """validate_table consumes its arguments once: one-shot iterators work like lists."""
    validate_table(iter(BlockState), iter([INITIAL_STATE]), iter(TERMINAL_STATES),
                   iter(TRANSITIONS))
    with pytest.raises(InvalidLifecycleError, match="ghost"):
        validate_table(iter(BlockState), iter([INITIAL_STATE]), iter(TERMINAL_STATES),
                       iter([*TRANSITIONS, Edge(T.START, GHOST, S.FAILED, "x")]))


# --- validation at import -------------------------------------------------------------------

_SOURCE = Path(lifecycle_module.__file__).read_text(encoding="utf-8")


def _exec_module_source(source: str, module: types.ModuleType | None = None) -> types.ModuleType:
    """Execute a (possibly edited) copy of _lifecycle's source as a fresh, unregistered module.

    Nothing in ``sys.modules`` is touched, so the real module and its importers are unaffected.
    """
    if module is None:
        module = types.ModuleType("fsm_exec._lifecycle_probe")
    module.__package__ = "fsm_exec"
    exec(compile(source, "<edited fsm_exec/core/lifecycle.py>", "exec"), module.__dict__)
    return module


def test_unedited_module_source_imports_cleanly() -> None:
    """Control for the next test: the module's own source executes and builds the table."""
    module = _exec_module_source(_SOURCE)
    assert [(e.source, e.trigger, e.dest) for e in module.TRANSITIONS] == [
        (e.source, e.trigger, e.dest) for e in TRANSITIONS]


@pytest.mark.parametrize(
    ("original", "broken", "offender"),
    [
        ("INITIAL_STATE: BlockState = BlockState.QUEUED",
         "INITIAL_STATE: BlockState = BlockState.ROUTING", "queued"),
        ("{BlockState.SUCCESS, BlockState.FAILED, BlockState.CANCELLED})",
         "{BlockState.SUCCESS, BlockState.CANCELLED})", "failed"),
        ("Edge(_T.START, _S.QUEUED, _S.ROUTING,", "Edge(_T.START, _S.QUEUED, _S.QUEUED,",
         "routing"),
        ('    BlockState.SUCCESS: "Executed and reconciled (terminal).",\n', "", "success"),
    ],
    ids=["queued unreachable", "failed trapped", "routing unreachable", "success unexplained"])
def test_module_validates_its_table_at_import(original: str, broken: str,
                                              offender: str) -> None:
    """Importing the module with a broken table raises InvalidLifecycleError naming the state."""
    assert _SOURCE.count(original) == 1, "the module source changed; update this test"
    module = types.ModuleType("fsm_exec._lifecycle_probe")
    with pytest.raises(ValueError, match="lifecycle") as info:
        _exec_module_source(_SOURCE.replace(original, broken), module)
    # the probe defines its own copy of the class, so compare with that copy
    assert type(info.value) is module.InvalidLifecycleError
    assert offender in _named(str(info.value))


# --- BlockLifecycle -------------------------------------------------------------------------


def test_new_lifecycle_has_nothing_in_flight() -> None:
    """Before any load: no block id, not in flight, and the state is terminal."""
    lc = BlockLifecycle()
    assert lc.block_id is None
    assert not lc.in_flight
    assert lc.state in TERMINAL_STATES


def test_fire_before_any_load_is_illegal() -> None:
    """Firing with nothing loaded raises IllegalTransitionError naming no block."""
    lc = BlockLifecycle()
    before = lc.state
    with pytest.raises(IllegalTransitionError) as info:
        lc.fire(T.START)
    assert info.value.block_id is None
    assert lc.state is before


def test_load_puts_block_at_initial_state() -> None:
    """load(block_id) makes the block the one in flight, at queued."""
    lc = BlockLifecycle()
    lc.load("b-1")
    assert lc.block_id == "b-1"
    assert lc.state is S.QUEUED
    assert lc.in_flight


def test_state_and_current_agree() -> None:
    """state is a BlockState; current is the same value as a plain str."""
    lc = _at(S.PENDING_RECONCILIATION)
    assert isinstance(lc.state, BlockState)
    assert lc.state is S.PENDING_RECONCILIATION
    assert type(lc.current) is str
    assert lc.current == "pending_reconciliation"


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_load_while_in_flight_is_refused(state: BlockState) -> None:
    """Loading while a block is in flight raises IllegalTransitionError; nothing changes."""
    lc = _at(state, "b-1")
    with pytest.raises(IllegalTransitionError) as info:
        lc.load("b-2")
    assert isinstance(info.value, ComponentError)
    assert info.value.error_code == "EXEC-012"
    assert str(state) in str(info.value)
    assert "b-1" in str(info.value) and info.value.block_id == "b-1"  # the one in the way
    assert (lc.state, lc.block_id) == (state, "b-1")


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_load_after_terminal_state_is_allowed(state: BlockState) -> None:
    """Once the block is terminal, the next block can be loaded."""
    lc = _at(state, "b-1")
    assert not lc.in_flight
    lc.load("b-2")
    assert (lc.state, lc.block_id) == (S.QUEUED, "b-2")


@pytest.mark.parametrize("state", list(BlockState))
def test_restore_puts_block_back_at_state(state: BlockState) -> None:
    """restore(block_id, state) puts the block in flight at exactly that state."""
    lc = BlockLifecycle()
    lc.restore("b-7", state)
    assert (lc.state, lc.block_id) == (state, "b-7")
    assert lc.in_flight == (state not in TERMINAL_STATES)


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_restore_while_in_flight_is_refused(state: BlockState) -> None:
    """restore while a block is in flight raises IllegalTransitionError; nothing changes."""
    lc = _at(state, "b-1")
    with pytest.raises(IllegalTransitionError):
        lc.restore("b-2", S.ROUTING)
    assert (lc.state, lc.block_id) == (state, "b-1")


def test_restore_unknown_state_changes_nothing() -> None:
    """restore with a value that is not a state raises ValueError and changes nothing."""
    lc = _at(S.SUCCESS, "b-1")
    with pytest.raises(ValueError, match="bogus"):
        lc.restore("b-2", cast(BlockState, "bogus"))
    assert (lc.state, lc.block_id) == (S.SUCCESS, "b-1")


@pytest.mark.parametrize("edge", TRANSITIONS, ids=lambda e: f"{e.trigger}:{e.source}")
def test_fire_follows_the_table(edge: Edge) -> None:
    """Firing an edge's trigger from its source returns and enters its dest."""
    lc = _at(edge.source)
    assert lc.fire(edge.trigger) is edge.dest
    assert lc.state is edge.dest
    assert lc.block_id == "b-1"


_ILLEGAL = [(s, t) for s in BlockState for t in Trigger if (s, t) not in NEXT_STATE]


@pytest.mark.parametrize(("state", "trigger"), _ILLEGAL, ids=lambda x: str(x))
def test_illegal_trigger_raises_and_keeps_state(state: BlockState, trigger: Trigger) -> None:
    """A trigger with no edge from the state raises IllegalTransitionError, state unchanged."""
    calls: list[Any] = []
    lc = _at(state, "blk-42", listener=lambda *a: calls.append(a))
    with pytest.raises(IllegalTransitionError) as info:
        lc.fire(trigger)
    err = info.value
    assert isinstance(err, ComponentError)
    assert isinstance(err, RuntimeError)
    assert err.error_code == "EXEC-012"
    assert (err.trigger, err.state, err.block_id) == (trigger, state, "blk-42")
    message = str(err)
    assert str(trigger) in message
    assert str(state) in message
    assert "blk-42" in message
    assert (lc.state, lc.block_id) == (state, "blk-42")
    assert calls == []  # the listener only hears of moves that happen


@pytest.mark.parametrize("edge", TRANSITIONS, ids=lambda e: f"{e.trigger}:{e.source}")
def test_commit_follows_the_table_without_the_listener(edge: Edge) -> None:
    """commit (the hot path's fire, for a caller that journaled the move itself) enters the
    same dest on the same table, and tells no listener."""
    calls: list[Any] = []
    lc = _at(edge.source, listener=lambda *a: calls.append(a))
    lc.commit(str(edge.trigger))
    assert (lc.state, lc.block_id) == (edge.dest, "b-1")
    assert calls == []


@pytest.mark.parametrize(("state", "trigger"), _ILLEGAL[::7], ids=lambda x: str(x))
def test_commit_refuses_an_illegal_trigger_and_moves_nothing(state: BlockState,
                                                             trigger: Trigger) -> None:
    lc = _at(state, "blk-42")
    with pytest.raises(IllegalTransitionError) as info:
        lc.commit(str(trigger))
    assert (info.value.trigger, info.value.state, info.value.block_id) == (
        trigger, state, "blk-42")
    assert (lc.state, lc.block_id) == (state, "blk-42")


@pytest.mark.parametrize("state", NON_TERMINAL)
def test_illegal_trigger_message_lists_allowed_triggers(state: BlockState) -> None:
    """The error for an illegal trigger names each trigger that is allowed from the state."""
    allowed = {t for (s, t) in NEXT_STATE if s is state}
    illegal = next(t for t in Trigger if t not in allowed)
    with pytest.raises(IllegalTransitionError) as info:
        _at(state).fire(illegal)
    tail = str(info.value).split("allowed", 1)[1]
    assert {str(t) for t in allowed} <= set(re.findall(r"\w+", tail))


def test_listener_sees_move_before_state_changes() -> None:
    """The listener gets (source, dest, trigger, data) while the state is still the source."""
    seen: list[tuple[Any, ...]] = []
    lc = BlockLifecycle(lambda *args: seen.append((*args, lc.state)))
    lc.load("b-1")
    lc.fire(T.START)
    lc.fire(T.EXECUTED, deltas={"ETH": 1.5}, attempt=1)
    assert seen == [
        (S.QUEUED, S.ROUTING, T.START, {}, S.QUEUED),
        (S.ROUTING, S.PENDING_RECONCILIATION, T.EXECUTED, {"deltas": {"ETH": 1.5}, "attempt": 1},
         S.ROUTING),
    ]


class _JournalDown(Exception):
    """A journal that cannot write."""


def test_listener_failure_leaves_state_unchanged() -> None:
    """Write-ahead: if the listener raises, its error propagates and the state does not move."""
    broken = True

    def listener(source: str, dest: str, trigger: str, data: dict[str, Any]) -> None:
        if broken:
            raise _JournalDown(trigger)

    lc = _at(S.ROUTING, "b-1", listener=listener)
    with pytest.raises(_JournalDown):
        lc.fire(T.EXECUTED)
    assert (lc.state, lc.block_id) == (S.ROUTING, "b-1")
    broken = False  # the journal recovers: the same move now goes through
    assert lc.fire(T.EXECUTED) is S.PENDING_RECONCILIATION


def test_lifecycle_works_without_listener() -> None:
    """With no listener, a block runs its whole course."""
    lc = BlockLifecycle()
    lc.load("b-1")
    for trigger in (T.START, T.ROUTE_FAILED, T.REROUTE, T.EXECUTED, T.RECONCILED):
        lc.fire(trigger)
    assert lc.state is S.SUCCESS
    assert not lc.in_flight


_HAPPY = (T.START, T.EXECUTED, T.RECONCILED)
_RETRY_THEN_FAIL = (T.START, T.ROUTE_FAILED, T.RESUME_RECONCILIATION,
                    T.RECONCILIATION_TIMEOUT, T.FAIL)


def test_machine_is_reused_across_many_blocks() -> None:
    """After success or failure the next block loads, many times, on the same Machine."""
    lc = BlockLifecycle()
    machine = lc._machine
    for n in range(200):
        lc.load(f"b-{n}")
        assert (lc.state, lc.block_id) == (S.QUEUED, f"b-{n}")
        for trigger in _HAPPY if n % 2 else _RETRY_THEN_FAIL:
            lc.fire(trigger)
        assert lc.state is (S.SUCCESS if n % 2 else S.FAILED)
        assert lc._machine is machine
    assert len(machine.models) == 1  # one model, reused: no per-block state leaks in


@given(st.lists(st.sampled_from(Trigger), max_size=60))
def test_random_triggers_follow_table_or_raise(triggers: list[Trigger]) -> None:
    """Any trigger sequence: each fire follows NEXT_STATE or raises with the state unchanged."""
    moves: list[tuple[str, str]] = []
    lc = BlockLifecycle(lambda source, dest, trigger, data: moves.append((source, dest)))
    blocks = 0
    lc.load("b-0")
    for trigger in triggers:
        before = lc.state
        expected = NEXT_STATE.get((BlockState(before), trigger))
        if expected is None:
            with pytest.raises(IllegalTransitionError):
                lc.fire(trigger)
            assert lc.state is before
        else:
            assert lc.fire(trigger) is expected
            assert lc.state is expected
        if not lc.in_flight:
            blocks += 1
            lc.load(f"b-{blocks}")
    legal = sum((s, t) in NEXT_STATE for s, t in _replay(triggers))
    assert len(moves) == legal
    assert set(moves) <= LEGAL_MOVES


def _replay(triggers: list[Trigger]) -> list[tuple[BlockState, Trigger]]:
    """The (state, trigger) pairs seen when ``triggers`` run on the pure table from queued."""
    state, out = INITIAL_STATE, []
    for trigger in triggers:
        out.append((state, trigger))
        state = NEXT_STATE.get((state, trigger), state)
        if state in TERMINAL_STATES:
            state = INITIAL_STATE
    return out


def test_every_state_needs_a_meaning() -> None:
    """validate_table refuses a state without a meaning (docs and diagrams need one)."""
    from fsm_exec.core.lifecycle import STATE_MEANINGS

    meanings = {**STATE_MEANINGS, BlockState.RETRYING: ""}
    with pytest.raises(InvalidLifecycleError, match="without a meaning: retrying"):
        validate_table(BlockState, [INITIAL_STATE], TERMINAL_STATES, TRANSITIONS, meanings)
    validate_table(BlockState, [INITIAL_STATE], TERMINAL_STATES, TRANSITIONS, STATE_MEANINGS)


def test_table_hash_fingerprints_the_triples_in_order() -> None:
    """TABLE_HASH is the first 16 hex digits of the sha256 of the compact JSON list of
    [source, trigger, dest] triples, in table order, the derived ones (found_executed, which
    follows from executed) left out: it is the hash of the release before them, so the
    journals it wrote read on."""
    import hashlib

    import orjson

    from fsm_exec.core.lifecycle import TABLE_HASH

    triples = [[str(e.source), str(e.trigger), str(e.dest)] for e in TRANSITIONS
               if e.trigger != T.FOUND_EXECUTED]
    assert hashlib.sha256(orjson.dumps(triples)).hexdigest()[:16] == TABLE_HASH
    assert TABLE_HASH == "a3d17bf174a610f6"  # the release's: its journals carry it
    assert len(TABLE_HASH) == 16 and int(TABLE_HASH, 16) >= 0
