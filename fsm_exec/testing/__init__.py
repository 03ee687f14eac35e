"""Property-test fuzzing for ExecutionManager and for *your own* adapters, with hypothesis.

Subclass :class:`ExecutionManagerMachine`, return your collaborators from
``collaborators()``, add your own ``@invariant()`` methods, and run it with pytest::

    class MyVenueMachine(ExecutionManagerMachine):
        def collaborators(self):
            self.venue = MyVenueAdapter(sandbox=True)   # your names are yours
            return {"data_provider": MyPrices(), "position_update_handler": MyPositions(),
                    "execution_interface_manager": self.venue,
                    "reconciliation_component": MyReconciliation()}

        @invariant()
        def each_block_fills_at_most_once(self):
            assert all(n <= 1 for n in self.venue.fills_per_block().values())

    TestMyVenue = MyVenueMachine.TestCase

The machine drives a live manager on a fake clock, wraps your collaborators with fault
injection (lost replies, refusals, hangs past the timeout, a venue whose query lags behind
its executions, slow or failing reconciliation, position updates that raise), submits
random valid and invalid batches, pokes the resume triggers, cancels queued blocks, and
checks the manager's own invariants after every step. The kit's own handles are under
``self.kit`` (:class:`Kit`); every other name on the machine is yours.

:func:`crash_points` (and :func:`assert_crash_safe`, :func:`crash_point_tests`) crashes a
scripted scenario at every record of its journal, restarts the manager on what the disk
kept with the same collaborators, and checks the manager's promises and yours::

    report = assert_crash_safe(make_collaborators, [[block("b1")], [block("b2")]],
                               check=my_venue_filled_each_block_at_most_once)

``python -m fsm_exec.testing nightly yourmodule:NIGHTLY`` (a :class:`Nightly`) runs seeded
rounds of both over random scenarios and prints every failure with the seed that replays
it. Needs the ``testing`` extra (``pip install fsm-exec[testing]``) for hypothesis.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fsm_exec.core.errors import ComponentError, InvalidBlockError
from fsm_exec.core.lifecycle import LEGAL_MOVES, TERMINAL_STATES, Edge, lifecycle_paths
from fsm_exec.manager.manager import TRIGGER_SOURCES, ExecutionManager
from fsm_exec.sim.venues import (
    RECONCILIATION_FAULTS,
    VENUE_FAULTS,
    Event,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    NaiveVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
    block_deltas,
)
from fsm_exec.testing.crash import (
    DEFAULT_CONFIG,
    WINDOWS,
    CrashFailure,
    CrashPoint,
    CrashReport,
    assert_crash_safe,
    crash_point_tests,
    crash_points,
)
from fsm_exec.testing.nightly import (
    CrashScenario,
    Nightly,
    NightlyFailure,
    NightlyResult,
    crash_scenarios,
)

__all__ = [
    "DEFAULT_CONFIG",
    "PROFILES",
    "RECONCILIATION_FAULTS",
    "SIMULATED",
    "VENUE_FAULTS",
    "WINDOWS",
    "CrashFailure",
    "CrashPoint",
    "CrashReport",
    "CrashScenario",
    "Edge",
    "Event",
    "ExecutionManagerMachine",
    "FakeClock",
    "FaultPlan",
    "FaultyPositionHandler",
    "FaultyReconciliation",
    "FaultyVenue",
    "InvalidBlock",
    "Kit",
    "NaiveVenue",
    "Nightly",
    "NightlyFailure",
    "NightlyResult",
    "RecordingEventLogger",
    "SimPositionHandler",
    "SimReconciliation",
    "SimVenue",
    "StaticDataProvider",
    "assert_crash_safe",
    "block_batches",
    "block_deltas",
    "block_ids",
    "crash_point_tests",
    "crash_points",
    "crash_scenarios",
    "fault_plans",
    "instruction_blocks",
    "invalid_blocks",
    "lifecycle_paths",
    "register_profiles",
]

# ------------------------------------------------------------------------ profiles

PROFILES: Mapping[str, dict[str, Any]] = {
    # quick local runs while editing an adapter
    "fsm-exec-fast": {"max_examples": 25, "stateful_step_count": 25, "deadline": None},
    # deterministic CI: the same examples every run
    "fsm-exec-ci": {"max_examples": 200, "deadline": None, "derandomize": True,
                    "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]},
    # a long nightly search: what `python -m fsm_exec.testing nightly` runs the machine
    # under (seeded per round: see _nightly.py)
    "fsm-exec-nightly": {"max_examples": 5000, "stateful_step_count": 100,
                         "deadline": None, "suppress_health_check": [HealthCheck.too_slow]},
}


def register_profiles() -> tuple[str, ...]:
    """Register hypothesis profiles ``fsm-exec-fast``, ``fsm-exec-ci`` (derandomized) and
    ``fsm-exec-nightly``; load one with ``settings.load_profile(name)`` or
    ``pytest --hypothesis-profile=name``. Returns their names. Each is hypothesis's
    default profile with these values, whatever profile is loaded when this is called."""
    for name, values in PROFILES.items():
        settings.register_profile(name, parent=settings.get_profile("default"), **values)
    return tuple(PROFILES)


# ------------------------------------------------------------------------ strategies

_ID_CHARS = string.ascii_letters + string.digits + "._:-"


def block_ids() -> st.SearchStrategy[str]:
    """Valid ``block_id`` values: 1-64 characters of letters, digits and ``._:-``."""
    return st.text(alphabet=_ID_CHARS, min_size=1, max_size=64)


def _amounts() -> st.SearchStrategy[float]:
    return st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


def instruction_blocks(*, block_id: st.SearchStrategy[str] | None = None,
                       tokens: tuple[str, ...] = ("ETH", "USDT"),
                       venues: tuple[str, ...] = ("spot", "lending", "staking", "perp"),
                       amounts: st.SearchStrategy[float] | None = None,
                       max_instructions: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """Valid blocks (as mappings) whose instructions name one of ``venues`` and
    ``tokens`` with a finite positive amount (any float in 1e-6..1e6 unless ``amounts``
    says otherwise) and a side."""
    instruction = st.fixed_dictionaries({
        "venue": st.sampled_from(venues), "token": st.sampled_from(tokens),
        "side": st.sampled_from(("buy", "sell")),
        "amount": amounts if amounts is not None else _amounts()})
    return st.fixed_dictionaries({
        "block_id": block_id if block_id is not None else block_ids(),
        "action": st.sampled_from(("open", "hedge", "rebalance", "close")),
        "priority": st.integers(0, 10),
        "instructions": st.lists(instruction, min_size=1, max_size=max_instructions),
    })


def block_batches(blocks: st.SearchStrategy[dict[str, Any]] | None = None, *,
                  min_size: int = 1, max_size: int = 5
                  ) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Batches of valid blocks with unique ``block_id``s."""
    return st.lists(blocks if blocks is not None else instruction_blocks(),
                    min_size=min_size, max_size=max_size,
                    unique_by=lambda b: b["block_id"])


class InvalidBlock:
    """A block the validator must refuse, with the field at fault and why."""

    __slots__ = ("block", "field", "reason")

    def __init__(self, block: object, field: str, reason: str) -> None:
        self.block, self.field, self.reason = block, field, reason

    def __repr__(self) -> str:
        return f"InvalidBlock({self.reason}: {self.block!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """One line in hypothesis's printed examples."""
        printer.text(repr(self))


def _good() -> dict[str, Any]:
    return {"block_id": "blk-1", "action": "open", "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0}]}


def _with(field: str, value: Any) -> dict[str, Any]:
    b = _good()
    b[field] = value
    return b


def _instr(key: str, value: Any) -> dict[str, Any]:
    b = _good()
    b["instructions"] = [{**b["instructions"][0], key: value}]
    return b


def _without(field: str) -> dict[str, Any]:
    b = _good()
    del b[field]
    return b


def invalid_blocks() -> st.SearchStrategy[InvalidBlock]:
    """Every kind of malformed block the validator must refuse, labelled with the reason
    and the field (the path the error names)."""
    bad = st.one_of(
        st.sampled_from(["block_id", "action", "priority", "instructions"]).map(
            lambda f: InvalidBlock(_without(f), f, f"missing {f}")),
        st.sampled_from(["", "a b", "x" * 65, "é", "a/b", "a\n"]).map(
            lambda v: InvalidBlock(_with("block_id", v), "block_id", "malformed block_id")),
        st.sampled_from([17, None, 1.5, ["b"]]).map(
            lambda v: InvalidBlock(_with("block_id", v), "block_id", "block_id not a string")),
        st.sampled_from(["", "   ", 17, None, ["buy"]]).map(
            lambda v: InvalidBlock(_with("action", v), "action", "action not a non-empty string")),
        st.sampled_from(["high", "1", 1.0, True, False, None]).map(
            lambda v: InvalidBlock(_with("priority", v), "priority", "priority not an int")),
        st.sampled_from([[], (), {}, "spot", None, 3]).map(
            lambda v: InvalidBlock(_with("instructions", v), "instructions",
                                   "instructions not a non-empty list")),
        st.sampled_from([["spot"], [None], [3]]).map(
            lambda v: InvalidBlock(_with("instructions", v), "instructions[0]",
                                   "instruction not a mapping")),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), "1.5", True, None]).map(
            lambda v: InvalidBlock(_instr("amount", v), "instructions[0].amount",
                                   "amount not a finite number")),
        st.sampled_from(["", 7, None]).map(
            lambda v: InvalidBlock(_instr("token", v), "instructions[0].token",
                                   "token not a non-empty string")),
        st.just(InvalidBlock({**_good(), "metadata": {}}, "metadata", "unexpected field")),
        st.sampled_from(["block", 7, None, ["x"]]).map(
            lambda v: InvalidBlock(v, "", "not a mapping")),
    )
    return bad


#: The reconciliation behaviours the kit draws: each one differs from a prompt success.
_RECONCILIATION_PLANS: tuple[tuple[str, float], ...] = (
    ("never", 0.0), ("fail", 0.0), ("ok", 0.3), ("ok", 1.5), ("ok", 2.5))


def _plan(faults: list[tuple[str, Any]]) -> FaultPlan:
    return FaultPlan(venue=tuple(f for k, f in faults if k == "venue"),
                     reconciliation=tuple(f for k, f in faults if k == "reconciliation"),
                     positions=tuple(f for k, f in faults if k == "positions"))


def fault_plans(*, max_faults: int = 3,
                venue_faults: tuple[str, ...] = VENUE_FAULTS) -> st.SearchStrategy[FaultPlan]:
    """Which calls fail and how: 1 to ``max_faults`` faults, each a venue fault for the next
    route call (one of ``venue_faults``), a reconciliation behaviour for the next hand-off
    (never, failed, or slow: 0.15 to 1.25 reconciliation timeouts), or a position update
    that raises. Never an empty plan, so a shrunk example holds no step that does nothing;
    plans shrink towards a single venue fault."""
    unknown = set(venue_faults) - set(VENUE_FAULTS)
    if unknown or not venue_faults:
        raise ValueError(f"venue_faults must be a non-empty subset of VENUE_FAULTS; unknown: "
                         f"{sorted(unknown)}")
    if max_faults < 1:
        raise ValueError(f"max_faults must be at least 1, got {max_faults}")
    fault = st.one_of(
        st.tuples(st.just("venue"), st.sampled_from(venue_faults)),
        st.tuples(st.just("reconciliation"), st.sampled_from(_RECONCILIATION_PLANS)),
        st.tuples(st.just("positions"), st.just(True)))
    return st.lists(fault, min_size=1, max_size=max_faults).map(_plan)


# ------------------------------------------------------------------------ the machine

_INVALID_BLOCKS = invalid_blocks()

DEFAULT_STEPS = settings.get_profile("default").stateful_step_count
KIT_STEPS = 20  # steps per example for kit machines, unless a profile says otherwise
DEFAULT_PHASES = tuple(settings.get_profile("default").phases)
#: Kit machines skip the explain phase unless a profile sets the phases.
KIT_PHASES = tuple(p for p in DEFAULT_PHASES if p is not Phase.explain)

_TERMINAL = {str(s) for s in TERMINAL_STATES}
_LEGAL = {(str(a), str(b)) for a, b in LEGAL_MOVES}
_REQUIRED = ("data_provider", "position_update_handler", "execution_interface_manager",
             "reconciliation_component")
#: What ExecutionManagerMachine's handles were called before they moved to ``self.kit``.
_MOVED = ("manager", "journal", "clock", "venue", "reconciliation", "positions", "accepted")


class _Batch(list[Any]):
    """The blocks a step submits: one line in a falsifying example, ids included."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(list(self)))


class Kit:
    """The kit's own handles on one machine, as ``self.kit``: everything the kit keeps lives
    here, so no name of yours on the machine can clash with it.

    ``manager`` (the :class:`ExecutionManager` under test), ``journal`` (a
    :class:`RecordingEventLogger` with every event), ``clock`` (the :class:`FakeClock`),
    ``venue`` (your venue wrapped in :class:`FaultyVenue`: ``.route_calls``, ``.injected``,
    ``.inner``; any other attribute reads through to yours), ``reconciliation`` and
    ``positions`` (yours, wrapped in :class:`FaultyReconciliation` and
    :class:`FaultyPositionHandler`), ``collaborators`` (what ``collaborators()`` returned,
    unwrapped) and ``accepted`` (the ids of the accepted blocks, in submission order).
    """

    def __init__(self, machine: ExecutionManagerMachine, given: Mapping[str, Any]) -> None:
        cls = type(machine)
        self.collaborators: Mapping[str, Any] = dict(given)
        self.clock = FakeClock()
        self.journal = RecordingEventLogger()
        self.venue = FaultyVenue(given["execution_interface_manager"], clock=self.clock,
                                 hang_seconds=cls.hang_seconds, lag_queries=cls.lag_queries,
                                 lag_seconds=cls.lag_seconds)
        self.reconciliation = FaultyReconciliation(given["reconciliation_component"],
                                                   self.clock)
        self.positions = FaultyPositionHandler(given["position_update_handler"],
                                               reconciliation=self.reconciliation)
        self.manager = ExecutionManager(
            dict(cls.config), given["data_provider"], cls.mode, self.positions, self.venue,
            self.reconciliation, event_logger=self.journal, clock=self.clock,
            sleep=self.clock.sleep)
        self.accepted: list[str] = []
        self._strategies = _strategies_for(machine)
        self._next_id = 0
        self._checked = 0
        self._in_flight: str | None = None
        self._ended: dict[str, str] = {}
        self._routes_at_success: dict[str, int] = {}

    # -------------------------------------------------------------- driving
    def _fresh(self, blocks: list[dict[str, Any]]) -> _Batch:
        out = _Batch()
        for b in blocks:
            self._next_id += 1
            out.append({**b, "block_id": f"b{self._next_id}"})
        return out

    def _snapshot(self) -> tuple[tuple[str, ...], int]:
        return (self.manager.queued_block_ids,
                self.manager.get_execution_status()["blocks_accepted"])

    def _update(self, trigger: str, batch: list[Any] | None) -> None:
        before = self._snapshot()
        try:
            self.manager.update_state(self.clock.timestamp(), trigger, batch)
        except InvalidBlockError:
            assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
            return
        except ComponentError as exc:
            if exc.error_code == "EXEC-003":
                assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
                return
            if self.manager.execution_mode != "backtest":
                raise  # live mode never raises for a block's own outcome
        if batch:
            self.accepted.extend(b["block_id"] for b in batch if isinstance(b, Mapping))

    def _refused(self, batch: list[Any], what: str) -> None:
        before = self._snapshot()
        try:
            self.manager.execute_instruction_blocks(self.clock.timestamp(), batch)
        except InvalidBlockError:
            pass
        else:
            raise AssertionError(f"{what} was accepted")
        assert self._snapshot() == before, f"refusing {what} changed the queue"

    # -------------------------------------------------------------- checking
    def _check(self) -> None:
        """Every promise of the manager, after every step (the machine's one invariant)."""
        self._check_journal()
        for block_id, n in self._routes_at_success.items():
            assert self.venue.route_calls[block_id] == n, f"{block_id} routed after success"
        s = self.manager.get_execution_status()
        assert s["blocks_accepted"] == len(self.accepted), (
            f"the manager counts {s['blocks_accepted']} accepted blocks, the kit saw "
            f"{len(self.accepted)} accepted: a block was lost or invented")
        in_flight = 1 if s["current_block"] is not None else 0
        accounted = (s["blocks_executed"] + s["blocks_failed"] + s["blocks_cancelled"]
                     + s["queue_length"] + in_flight)
        assert s["blocks_accepted"] == accounted, (
            f"{s['blocks_accepted']} accepted but {accounted} executed, failed, cancelled, "
            f"queued or in flight")
        for block_id in self.accepted:
            state = self.manager.block_state(block_id)
            assert state is not None, f"{block_id} was lost"
            ended = self._ended.get(block_id)
            assert ended is None or str(state) == ended, (
                f"{block_id} ended {ended} in the journal but is {state} in the manager")
        assert s["current_block"] == self._in_flight, (
            f"status says {s['current_block']} is in flight, the journal {self._in_flight}")
        if s["halted"]:
            assert s["status"] == "unhealthy" and s["halt_reason"] is not None, (
                f"a halted manager reports {s['status']!r}, halt_reason {s['halt_reason']!r}")

    def _check_journal(self) -> None:
        events = self.journal.events
        for e in events[self._checked:]:
            if e.event_type != "block_transition":
                continue
            d = e.data
            block_id, source, dest = d["block_id"], d["source"], d["dest"]
            assert (source, dest) in _LEGAL, f"{block_id}: illegal move {source} -> {dest}"
            assert block_id not in self._ended, (
                f"{block_id} moved {source} -> {dest} after it ended {self._ended[block_id]}")
            if dest == "cancelled":  # from queued: never in flight
                assert block_id != self._in_flight, f"{block_id} was cancelled in flight"
                self._ended[block_id] = dest
                continue
            if source == "queued":
                assert self._in_flight is None, (
                    f"{block_id} started while {self._in_flight} was in flight")
                first = next((b for b in self.accepted if b not in self._ended), None)
                assert first == block_id, (
                    f"{block_id} started before {first}, which was submitted earlier")
                self._in_flight = block_id
            assert self._in_flight == block_id, (
                f"{block_id} moved {source} -> {dest} while {self._in_flight} was in flight")
            if dest in _TERMINAL:
                self._ended[block_id] = dest
                self._in_flight = None
                if dest == "success":
                    self._routes_at_success[block_id] = self.venue.route_calls[block_id]
        self._checked = len(events)


class _Strategies:
    """A machine class's strategies, built once for the class: building strategies per
    machine or per draw costs more than a step (and slows shrinking). Drawing a batch gives
    its blocks their ids (b1, b2, ... from the machine's counter), so the ids are in the
    printed step and every message names one that appears there."""

    def __init__(self, machine: ExecutionManagerMachine) -> None:
        blocks = machine.block_strategy()
        self.batches = st.tuples(st.runner(), st.lists(blocks, min_size=1, max_size=4)
                                 ).map(_fresh_blocks)
        self.small_batches = st.tuples(st.runner(), st.lists(blocks, max_size=2)
                                       ).map(_fresh_blocks)
        self.fault_plans = _fault_plans_for(type(machine).venue_faults)


def _fresh_blocks(drawn: tuple[Any, list[dict[str, Any]]]) -> _Batch:
    machine, blocks = drawn
    return _kit_of(machine)._fresh(blocks)


_STRATEGIES: dict[type, _Strategies] = {}


def _strategies_for(machine: ExecutionManagerMachine) -> _Strategies:
    cls = type(machine)
    if cls not in _STRATEGIES:
        _STRATEGIES[cls] = _Strategies(machine)
    return _STRATEGIES[cls]


_PLANS: dict[tuple[str, ...], st.SearchStrategy[FaultPlan]] = {}


def _fault_plans_for(venue_faults: tuple[str, ...]) -> st.SearchStrategy[FaultPlan]:
    key = tuple(venue_faults)
    if key not in _PLANS:
        _PLANS[key] = fault_plans(venue_faults=key)
    return _PLANS[key]


def _kit_of(machine: Any) -> Kit:
    kit: Kit = machine.kit
    return kit


_NOTHING: st.SearchStrategy[None] = st.none()


def _known_ids(accepted: list[str]) -> st.SearchStrategy[str | None]:
    return st.sampled_from(tuple(accepted)) if accepted else _NOTHING


def _queued_ids(queued: tuple[str, ...]) -> st.SearchStrategy[list[str] | None]:
    if not queued:
        return _NOTHING
    return _NOTHING | st.lists(st.sampled_from(queued), min_size=1, unique=True)


class ExecutionManagerMachine(RuleBasedStateMachine):
    """A hypothesis state machine around one ExecutionManager and your collaborators.

    Override :meth:`collaborators` (required) and, if your adapter needs particular
    blocks, :meth:`block_strategy`. Tune ``mode``, ``config``, ``hang_seconds``,
    ``lag_queries``, ``lag_seconds`` and ``venue_faults`` as class attributes. After every
    step it checks (its one invariant, ``manager_keeps_its_promises``): one block in
    flight at a time, in submission order; only edges of the lifecycle; no block routed
    again after it succeeded; every accepted block accounted for (executed + failed +
    cancelled + queued + in flight); a refused batch changes nothing; a halted manager
    reports itself unhealthy.

    The kit's own handles are under ``self.kit`` (a :class:`Kit`): ``self.kit.manager``,
    ``self.kit.journal``, ``self.kit.venue`` (yours, wrapped), ``self.kit.accepted``, ...
    Every other name on the machine is yours: ``self.venue = MyVenue()`` in
    ``collaborators()`` is kept as you set it. Defining a name the kit owns (``kit``, its
    rules, its invariant) fails when the class is defined, naming it.
    """

    mode: ClassVar[str] = "live"
    config: ClassVar[Mapping[str, Any]] = {
        "execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
        "retry_delay_seconds": 0.5, "max_queue_size": 20}
    hang_seconds: ClassVar[float] = 6.0  # past execution_timeout, on the fake clock
    #: After an ``eventually_consistent`` fault, ``query_execution`` answers ``None`` about
    #: the block for this many queries and this many fake seconds (see FaultyVenue).
    lag_queries: ClassVar[int] = 2
    lag_seconds: ClassVar[float] = 4.0
    #: The venue faults the machine injects (a subset of VENUE_FAULTS).
    venue_faults: ClassVar[tuple[str, ...]] = VENUE_FAULTS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clash = sorted(set(vars(cls)) & _OWNED)
        if clash:
            raise TypeError(
                f"{cls.__name__} defines {', '.join(clash)}: "
                f"{'that name belongs' if len(clash) == 1 else 'those names belong'} to "
                f"ExecutionManagerMachine (its rules, its invariant and self.kit); "
                f"rename yours")
        if "collaborators" not in cls.__dict__ and not any(
                "collaborators" in b.__dict__ for b in cls.__mro__[1:]
                if b is not ExecutionManagerMachine and issubclass(b, ExecutionManagerMachine)):
            raise TypeError(f"{cls.__name__} must override collaborators() to return the four "
                            f"collaborators: {', '.join(_REQUIRED)}")
        _fault_plans_for(cls.venue_faults)  # an unknown fault fails here, naming it
        # Hypothesis's default of 50 steps per example makes a failure slow to shrink (a
        # minute and more here); adapter bugs show within a few steps. Its explain phase
        # (the "# or any other generated value" comments) replays a stateful failure
        # hundreds of times: four fifths of the time to report one, for comments the
        # kit's one-line steps do not need. A profile that sets either to another value
        # than hypothesis's default, or @settings(...) on the class, still decides.
        current, changes = settings(), dict[str, Any]()
        if current.stateful_step_count == DEFAULT_STEPS:
            changes["stateful_step_count"] = KIT_STEPS
        if tuple(current.phases) == DEFAULT_PHASES:
            changes["phases"] = KIT_PHASES
        if changes:
            cls.TestCase.settings = settings(cls.TestCase.settings, **changes)

    def collaborators(self) -> Mapping[str, Any]:
        """Return ``{"data_provider": ..., "position_update_handler": ...,
        "execution_interface_manager": ..., "reconciliation_component": ...}``."""
        raise NotImplementedError

    def block_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        """Blocks to submit (their ids are replaced by fresh ones: b1, b2, ...). Called once
        per machine class, on its first machine. The default is small on purpose: the
        search is about sequences and faults, not block contents, and small blocks make
        failing examples shrink fast."""
        return instruction_blocks(block_id=st.just("id"), amounts=st.sampled_from(
            (0.5, 1.0, 2.5)), max_instructions=1)

    def __init__(self) -> None:
        super().__init__()
        given = self.collaborators()
        if not isinstance(given, Mapping):
            raise TypeError(f"{type(self).__name__}.collaborators() must return a mapping "
                            f"with {', '.join(_REQUIRED)}; got {type(given).__name__}")
        missing = [k for k in _REQUIRED if k not in given]
        if missing:
            raise TypeError(f"{type(self).__name__}.collaborators() is missing "
                            f"{', '.join(missing)}")
        clash = sorted(set(vars(self)) & _OWNED)
        if clash:
            raise TypeError(f"{type(self).__name__}.collaborators() set "
                            f"{', '.join('self.' + n for n in clash)}: the kit owns "
                            f"{'that name' if len(clash) == 1 else 'those names'}; "
                            f"rename yours")
        self.__kit = Kit(self, given)

    @property
    def kit(self) -> Kit:
        """The kit's own handles: manager, journal, clock, venue, ... (see :class:`Kit`)."""
        return self.__kit  # before __init__ sets it: __getattr__ says why

    @kit.setter
    def kit(self, value: Any) -> None:
        raise TypeError("self.kit belongs to ExecutionManagerMachine; name yours otherwise")

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:
            # Only reached for names not set: point users of the old names at self.kit.
            if name == "kit":
                raise AttributeError(f"{type(self).__name__}.kit is there once "
                                     f"collaborators() has returned")
            if name in _MOVED:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}: the kit's "
                    f"own {name} is self.kit.{name} (the name self.{name} is yours)")
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -------------------------------------------------------------- rules
    # No rule has a precondition: a rule with nothing to act on draws a no-op (which
    # shrinking deletes), where a precondition would make shrinking draw invalid examples.
    @rule(batch=st.runner().flatmap(lambda m: _kit_of(m)._strategies.batches),
          trigger=st.sampled_from(TRIGGER_SOURCES))
    def submit_batch(self, batch: list[dict[str, Any]], trigger: str) -> None:
        """Submit a batch of valid blocks and run the queue (the batch is refused whole if
        the queue is full); 'manual' also resumes a halt."""
        self.kit._update(trigger, list(batch))

    @rule(bad=_INVALID_BLOCKS,
          good=st.runner().flatmap(lambda m: _kit_of(m)._strategies.small_batches),
          at=st.integers(0, 2))
    def submit_invalid_batch(self, bad: InvalidBlock, good: list[dict[str, Any]],
                             at: int) -> None:
        """A batch with one malformed block is refused whole, and changes nothing."""
        batch: list[Any] = list(good)
        batch.insert(min(at, len(batch)), bad.block)
        self.kit._refused(batch, f"a batch holding {bad!r}")

    @rule(block_id=st.runner().flatmap(lambda m: _known_ids(_kit_of(m).accepted)))
    def resubmit_a_known_block(self, block_id: str | None) -> None:
        """A block_id already accepted is refused (while queued, in flight or finished);
        ``None`` when nothing was accepted yet (then it does nothing)."""
        if block_id is None:
            return
        block = {"block_id": block_id, "action": "open", "priority": 1, "instructions": [
            {"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0}]}
        self.kit._refused([block], f"block {block_id!r} a second time")

    @rule(plan=st.runner().flatmap(lambda m: _kit_of(m)._strategies.fault_plans))
    def inject_faults(self, plan: FaultPlan) -> None:
        """Script the next venue, reconciliation and position handler faults."""
        kit = self.kit
        kit.venue.faults.extend(plan.venue)
        kit.reconciliation.script.extend(plan.reconciliation)
        kit.positions.failures.extend(plan.positions)

    @rule(trigger=st.sampled_from(TRIGGER_SOURCES))
    def tick(self, trigger: str) -> None:
        """An update with no new blocks: runs the queue; 'manual' resumes a halt."""
        self.kit._update(trigger, None)

    @rule(block_ids=st.runner().flatmap(
        lambda m: _queued_ids(_kit_of(m).manager.queued_block_ids)))
    def cancel_queued_blocks(self, block_ids: list[str] | None) -> None:
        """An operator cancels queued blocks (all of them for None): exactly those leave
        the queue, each ends cancelled, the rest keep their order."""
        manager = self.kit.manager
        queued = manager.queued_block_ids
        done = manager.cancel(self.kit.clock.timestamp(), block_ids, reason="kit: operator")
        wanted = queued if block_ids is None else tuple(block_ids)
        assert done == wanted, f"cancel({block_ids!r}) cancelled {done!r}"
        assert manager.queued_block_ids == tuple(b for b in queued if b not in done), (
            f"after cancelling {done!r} the queue is {manager.queued_block_ids!r}")

    # -------------------------------------------------------------- invariant
    @invariant()
    def manager_keeps_its_promises(self) -> None:
        """One block in flight, in submission order; lifecycle edges only; nothing routed
        after success; every accepted block accounted for; a halt reported unhealthy."""
        self.kit._check()


#: The names on the machine that are the kit's: a subclass (or collaborators()) defining
#: one fails, naming it. Everything else on the machine is the user's.
_HOOKS = frozenset({"collaborators", "block_strategy", "mode", "config", "hang_seconds",
                    "lag_queries", "lag_seconds", "venue_faults"})
_OWNED = frozenset(n for n in vars(ExecutionManagerMachine)
                   if not n.startswith("__") and n not in _HOOKS)


# ------------------------------------------------------------------------ the project's own nightly


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

