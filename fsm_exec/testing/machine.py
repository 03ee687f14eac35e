"""The stateful machine users subclass: :class:`ExecutionManagerMachine` drives a live
manager over their collaborators, wrapped with fault injection, and checks its promises after
every step; :class:`Kit` holds the kit's own handles on one machine."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fsm_exec.core.errors import ComponentError, InvalidBlockError, ManagerHaltedError
from fsm_exec.core.running import table_of
from fsm_exec.manager.manager import TRIGGER_SOURCES, ExecutionManager
from fsm_exec.sim.venues import (
    VENUE_FAULTS,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    RecordingEventLogger,
)
from fsm_exec.testing.crash_report import (
    faults_line,
    not_covered,
    nothing_exercised,
    uncovered_lines,
)
from fsm_exec.testing.profiles import DEFAULT_PHASES, DEFAULT_STEPS, KIT_PHASES, KIT_STEPS
from fsm_exec.testing.strategies import (
    InvalidBlock,
    fault_plans,
    instruction_blocks,
    invalid_blocks,
)

_INVALID_BLOCKS = invalid_blocks()

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle
_REQUIRED = ("data_provider", "position_update_handler", "execution_interface_manager",
             "reconciliation_component")
#: What ExecutionManagerMachine's handles were called before they moved to ``self.kit``.
_MOVED = ("manager", "journal", "clock", "venue", "reconciliation", "positions", "accepted")


#: Per machine class, what its examples exercised since its run began (Kit._check counts).
_EXERCISED: dict[type, Counter[str]] = {}


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
    unwrapped), ``accepted`` (the ids of the accepted blocks, in submission order) and
    ``injections`` (every fault the kit injected, one line of prose each, in order).
    """

    def __init__(self, machine: ExecutionManagerMachine, given: Mapping[str, Any],
                 lifecycle: Lifecycle | None = None) -> None:
        cls = type(machine)
        #: The lifecycle the manager runs (``None``: the default), and its runnable table.
        self.lifecycle = lifecycle
        self.table = table_of(lifecycle)
        self._legal = {(e.source, e.dest) for e in self.table.edges}
        #: Where the venue's deltas may take a block: where routing's executed leads.
        self._executed_to = frozenset(self.table.next.get(("routing", "executed"), ()))
        self._terminal = set(self.table.terminal)
        self.collaborators: Mapping[str, Any] = dict(given)
        self.injections: list[str] = []
        self.clock = FakeClock()
        self.journal = RecordingEventLogger()
        self.venue = FaultyVenue(given["execution_interface_manager"], clock=self.clock,
                                 hang_seconds=cls.hang_seconds, lag_queries=cls.lag_queries,
                                 lag_seconds=cls.lag_seconds, injections=self.injections)
        self.reconciliation = FaultyReconciliation(given["reconciliation_component"],
                                                   self.clock, injections=self.injections)
        self.positions = FaultyPositionHandler(given["position_update_handler"],
                                               reconciliation=self.reconciliation,
                                               injections=self.injections)
        self.manager = ExecutionManager(
            dict(cls.config), given["data_provider"], cls.mode, self.positions, self.venue,
            self.reconciliation, event_logger=self.journal, clock=self.clock,
            sleep=self.clock.sleep, lifecycle=lifecycle)
        self.accepted: list[str] = []
        self._strategies = _strategies_for(machine)
        self._next_id = 0
        self._checked = 0
        self._in_flight: str | None = None
        self._ended: dict[str, str] = {}
        self._routes_at_success: dict[str, int] = {}
        self._routings: Counter[str] = Counter()  # moves into routing, per block
        self._filled: set[str] = set()
        self._retries = 0
        self._tallied: dict[str, int] = {}
        self._tally = _EXERCISED.setdefault(cls, Counter())

    def exercised(self) -> dict[str, int]:
        """What this machine's run exercised up to its last check: blocks the venue
        executed (``fills``), deltas the position handler took (``hand_offs``) and
        ``retries`` (see :data:`~fsm_exec.testing.crash_report.COVERAGE`)."""
        return {"fills": len(self._filled), "hand_offs": self.positions.handed_off,
                "retries": self._retries}

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
            status = self.manager.update_state(self.clock.timestamp(), trigger, batch)
        except (InvalidBlockError, ManagerHaltedError):  # refused whole (a backtest halt)
            assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
            return
        except ComponentError as exc:
            if exc.error_code == "EXEC-003":
                assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
                return
            if self.manager.execution_mode != "backtest":
                raise  # live mode never raises for a block's own outcome
        else:
            assert status == self.manager.get_execution_status(), (
                f"update_state returned {status}, but the status is "
                f"{self.manager.get_execution_status()}")
        if batch:
            self.accepted.extend(b["block_id"] for b in batch if isinstance(b, Mapping))

    def _refused(self, batch: list[Any], what: str) -> None:
        before = self._snapshot()
        try:
            self.manager.execute_instruction_blocks(self.clock.timestamp(), batch)
        except (InvalidBlockError, ManagerHaltedError):
            pass
        else:
            raise AssertionError(f"{what} was accepted")
        assert self._snapshot() == before, f"refusing {what} changed the queue"

    # -------------------------------------------------------------- checking
    def _check(self) -> None:
        """Every promise of the manager, after every step (the machine's one invariant)."""
        self._check_journal()
        now = self.exercised()  # counted for the class's run (see _refuse_empty_runs)
        self._tally.update({k: n - self._tallied.get(k, 0) for k, n in now.items()})
        self._tallied = now
        for block_id, n in self._routes_at_success.items():
            assert self.venue.route_calls[block_id] == n, f"{block_id} routed after success"
        for block_id, n in self.venue.route_calls.items():
            assert n <= self._routings[block_id], (
                f"{block_id} was routed {n} times but entered routing {self._routings[block_id]}"
                " times: a route the lifecycle did not make")
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
            if "deltas" in d:
                self._filled.add(block_id)
                # Learnt from the reply or after it was lost (found_executed), the deltas
                # take the way executed takes: a settling state it leads to (confirmations)
                # is never skipped on the way to the hand-off.
                assert dest in self._executed_to, (
                    f"{block_id}: its deltas came {source} --{d['trigger']}--> {dest}, not "
                    f"where executed leads ({', '.join(sorted(self._executed_to))})")
            self._retries += dest == "retrying"
            assert (source, dest) in self._legal, f"{block_id}: illegal move {source} -> {dest}"
            assert block_id not in self._ended, (
                f"{block_id} moved {source} -> {dest} after it ended {self._ended[block_id]}")
            kind = self.table.kinds.get(source)
            if dest == "routing":
                self._routings[block_id] += 1
                assert kind == "before_route" or (source, d["trigger"]) == (
                    "retrying", "reroute"), (
                    f"{block_id} was routed again from {source} ({kind}): the venue may hold it")
            if dest == "cancelled" and source == "queued" and block_id != self._in_flight:
                self._ended[block_id] = dest  # from the queue: never in flight
                continue
            if dest == "cancelled":  # in flight: only before the route (nothing was sent)
                assert kind == "before_route", f"{block_id} was cancelled in flight ({source})"
            if source == "queued":
                assert self._in_flight is None, (
                    f"{block_id} started while {self._in_flight} was in flight")
                first = next((b for b in self.accepted if b not in self._ended), None)
                assert first == block_id, (
                    f"{block_id} started before {first}, which was submitted earlier")
                self._in_flight = block_id
            assert self._in_flight == block_id, (
                f"{block_id} moved {source} -> {dest} while {self._in_flight} was in flight")
            if dest in self._terminal:
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
    again after it succeeded; the venue's deltas, from its reply or found after the reply
    was lost, take a block only where the lifecycle's ``executed`` leads (a settling state
    it sends them through is never skipped); every accepted block accounted for (executed +
    failed + cancelled + queued + in flight); a refused batch changes nothing; a halted manager
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
        _refuse_empty_runs(cls)

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

    def _kit_under(self, lifecycle: Lifecycle) -> None:
        """Rebuild the kit, its manager running ``lifecycle`` (before any step: the
        lifecycle machine's ``@initialize``), over the same collaborators."""
        self.__kit = Kit(self, self.__kit.collaborators, lifecycle=lifecycle)

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

    def teardown(self) -> None:
        """After each example: when it failed, note on the exception the faults the kit
        injected, in order. Override it to tear down your own things, calling
        ``super().teardown()`` to keep that note."""
        failure = sys.exc_info()[1]
        if isinstance(failure, Exception):
            failure.add_note(faults_line(tuple(self.kit.injections)))


def exercised_nothing(cls: type[ExecutionManagerMachine], examples: str) -> str | None:
    """Why the examples of ``cls`` checked since its count was reset (``_EXERCISED``)
    proved nothing (no fill or no hand-off in any of them), or ``None`` when they
    exercised enough."""
    missing = nothing_exercised(not_covered(_EXERCISED.get(cls, Counter())))
    if not missing:
        return None
    return "\n".join([f"{cls.__name__} exercised nothing a fault could break over "
                      f"{examples}:", *uncovered_lines(missing)])


def _refuse_empty_runs(cls: type[ExecutionManagerMachine]) -> None:
    """Make ``cls.TestCase`` fail when its examples, all together, exercised no fill or
    no hand-off: a run over an adapter that refuses everything is not a pass."""
    case = cls.TestCase  # each machine class has its own
    run = case.runTest

    def runTest(self: Any) -> None:  # unittest's name
        _EXERCISED.pop(cls, None)
        run(self)
        problem = exercised_nothing(cls, "all its examples")
        if problem is not None:
            raise AssertionError(problem)

    runTest.__dict__.update(vars(run))  # hypothesis's marks: is_hypothesis_test, ...
    case.runTest = runTest  # type: ignore[method-assign]


#: The names on the machine that are the kit's: a subclass (or collaborators()) defining
#: one fails, naming it. Everything else on the machine is the user's.
_HOOKS = frozenset({"collaborators", "block_strategy", "mode", "config", "hang_seconds",
                    "lag_queries", "lag_seconds", "venue_faults", "teardown"})
_OWNED = frozenset(n for n in vars(ExecutionManagerMachine)
                   if not n.startswith("__") and n not in _HOOKS)

