"""Property-test fuzzing for ExecutionManager and for *your own* adapters, with hypothesis.

Subclass :class:`ExecutionManagerMachine`, return your collaborators from
``collaborators()``, add your own ``@invariant()`` methods, and run it with pytest::

    class MyVenueMachine(ExecutionManagerMachine):
        def collaborators(self):
            self.venue = MyVenueAdapter(sandbox=True)
            return {"data_provider": MyPrices(), "position_update_handler": MyPositions(),
                    "execution_interface_manager": self.venue,
                    "reconciliation_component": MyReconciliation()}

        @invariant()
        def each_block_fills_at_most_once(self):
            assert all(n <= 1 for n in self.venue.fills_per_block().values())

    TestMyVenue = MyVenueMachine.TestCase

The machine drives a live manager on a fake clock, wraps your collaborators with fault
injection (lost replies, refusals, hangs past the timeout, slow or failing reconciliation,
position updates that raise), submits random valid and invalid batches, pokes the resume
triggers, and checks the manager's own invariants after every step. Needs the ``testing``
extra (``pip install fsm-exec[testing]``) for hypothesis.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ._errors import ComponentError, InvalidBlockError
from ._lifecycle import LEGAL_MOVES, TERMINAL_STATES, Edge, lifecycle_paths
from ._manager import TRIGGER_SOURCES, ExecutionManager
from ._sim import (
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

__all__ = [
    "RECONCILIATION_FAULTS",
    "VENUE_FAULTS",
    "Edge",
    "Event",
    "ExecutionManagerMachine",
    "FakeClock",
    "FaultPlan",
    "FaultyPositionHandler",
    "FaultyReconciliation",
    "FaultyVenue",
    "InvalidBlock",
    "NaiveVenue",
    "RecordingEventLogger",
    "SimPositionHandler",
    "SimReconciliation",
    "SimVenue",
    "StaticDataProvider",
    "block_batches",
    "block_deltas",
    "block_ids",
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
    # a long nightly search
    "fsm-exec-nightly": {"max_examples": 5000, "stateful_step_count": 100,
                         "deadline": None, "suppress_health_check": [HealthCheck.too_slow]},
}


def register_profiles() -> tuple[str, ...]:
    """Register hypothesis profiles ``fsm-exec-fast``, ``fsm-exec-ci`` (derandomized) and
    ``fsm-exec-nightly``; load one with ``settings.load_profile(name)`` or
    ``pytest --hypothesis-profile=name``. Returns their names."""
    for name, values in PROFILES.items():
        settings.register_profile(name, **values)
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


def fault_plans(*, max_faults: int = 3) -> st.SearchStrategy[FaultPlan]:
    """Which calls fail and how: venue faults per route call, reconciliation behaviours
    per hand-off (delays of 0 to 2.5 reconciliation timeouts), position update failures."""
    recon = st.tuples(st.sampled_from(RECONCILIATION_FAULTS),
                      st.sampled_from((0.0, 0.3, 1.5, 2.5)))
    return st.builds(
        FaultPlan,
        venue=st.lists(st.sampled_from((None, *VENUE_FAULTS)), max_size=max_faults).map(tuple),
        reconciliation=st.lists(recon, max_size=max_faults).map(tuple),
        positions=st.lists(st.booleans(), max_size=max_faults).map(tuple))


# ------------------------------------------------------------------------ the machine

_INVALID_BLOCKS = invalid_blocks()

DEFAULT_STEPS = settings.get_profile("default").stateful_step_count
KIT_STEPS = 20  # steps per example for kit machines, unless a profile says otherwise

_TERMINAL = {str(s) for s in TERMINAL_STATES}
_LEGAL = {(str(a), str(b)) for a, b in LEGAL_MOVES}
_REQUIRED = ("data_provider", "position_update_handler", "execution_interface_manager",
             "reconciliation_component")


_EPOCH = 1_735_689_600  # 2025-01-01T00:00:00Z: fake-clock seconds become real timestamps


def _stamp(clock: FakeClock) -> float:
    """The timestamp for the fake clock's now (epoch seconds the manager accepts)."""
    return _EPOCH + clock()


class ExecutionManagerMachine(RuleBasedStateMachine):
    """A hypothesis state machine around one ExecutionManager and your collaborators.

    Override :meth:`collaborators` (required) and, if your adapter needs particular
    blocks, :meth:`block_strategy`. Tune ``mode``, ``config`` and ``hang_seconds`` as class
    attributes. After every step it checks: one block in flight at a time, in submission
    order; only edges of the lifecycle; no block routed again after it succeeded; every
    accepted block accounted for (executed + failed + queued + in flight); a refused batch
    changes nothing; a halted manager reports itself unhealthy.

    Useful in your own invariants: ``self.manager``, ``self.journal`` (a
    :class:`RecordingEventLogger`), ``self.clock``, ``self.venue`` (your venue, wrapped:
    ``self.venue.inner``, ``self.venue.route_calls``), ``self.accepted`` (block ids).
    """

    mode: ClassVar[str] = "live"
    config: ClassVar[Mapping[str, Any]] = {
        "execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
        "retry_delay_seconds": 0.5, "max_queue_size": 20}
    hang_seconds: ClassVar[float] = 6.0  # past execution_timeout, on the fake clock

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "collaborators" not in cls.__dict__ and not any(
                "collaborators" in b.__dict__ for b in cls.__mro__[1:]
                if b is not ExecutionManagerMachine and issubclass(b, ExecutionManagerMachine)):
            raise TypeError(f"{cls.__name__} must override collaborators() to return the four "
                            f"collaborators: {', '.join(_REQUIRED)}")
        # Hypothesis's default of 50 steps per example makes a failure slow to shrink (a
        # minute and more here); adapter bugs show within a few steps. A profile or an
        # @settings(stateful_step_count=...) on the class still decides.
        if settings().stateful_step_count == DEFAULT_STEPS:
            cls.TestCase.settings = settings(cls.TestCase.settings,
                                             stateful_step_count=KIT_STEPS)

    def collaborators(self) -> Mapping[str, Any]:
        """Return ``{"data_provider": ..., "position_update_handler": ...,
        "execution_interface_manager": ..., "reconciliation_component": ...}``."""
        raise NotImplementedError

    def block_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        """Blocks to submit (their ids are replaced by fresh unique ones). The default is
        small on purpose: the search is about sequences and faults, not block contents,
        and small blocks make failing examples shrink fast."""
        return instruction_blocks(block_id=st.just("id"), amounts=st.sampled_from(
            (0.5, 1.0, 2.5)), max_instructions=1)

    def __init__(self) -> None:
        super().__init__()
        given = self.collaborators()
        missing = [k for k in _REQUIRED if k not in given]
        if missing:
            raise TypeError(f"{type(self).__name__}.collaborators() is missing "
                            f"{', '.join(missing)}")
        self.clock = FakeClock()
        self.journal = RecordingEventLogger()
        self.venue = FaultyVenue(given["execution_interface_manager"], clock=self.clock,
                                 hang_seconds=self.hang_seconds)
        self.reconciliation = FaultyReconciliation(given["reconciliation_component"],
                                                   self.clock)
        self.positions = FaultyPositionHandler(given["position_update_handler"],
                                               reconciliation=self.reconciliation)
        self.manager = ExecutionManager(
            dict(self.config), given["data_provider"], self.mode, self.positions, self.venue,
            self.reconciliation, event_logger=self.journal, clock=self.clock,
            sleep=self.clock.sleep)
        # Strategies are built once: building them for every draw costs more than the step.
        blocks = self.block_strategy()
        self._blocks = blocks
        self._batches = st.lists(blocks, min_size=1, max_size=4)  # ids replaced: no unique_by
        self._small_batches = st.lists(blocks, max_size=2)
        self.accepted: list[str] = []
        self._next_id = 0
        self._checked = 0
        self._in_flight: str | None = None
        self._ended: dict[str, str] = {}
        self._routes_at_success: dict[str, int] = {}

    # -------------------------------------------------------------- helpers
    def _fresh(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for b in blocks:
            self._next_id += 1
            out.append({**b, "block_id": f"fz-{self._next_id}"})
        return out

    def _snapshot(self) -> tuple[tuple[str, ...], int]:
        return (self.manager.queued_block_ids,
                self.manager.get_execution_status()["blocks_accepted"])

    def _update(self, trigger: str, batch: list[Any] | None) -> None:
        before = self._snapshot()
        try:
            self.manager.update_state(_stamp(self.clock), trigger, batch)
        except InvalidBlockError:
            assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
            return
        except ComponentError as exc:
            if exc.error_code == "EXEC-003":
                assert self._snapshot()[1] == before[1], "a refused batch was partly accepted"
                return
            if self.mode != "backtest":
                raise  # live mode never raises for a block's own outcome
        if batch:
            self.accepted.extend(b["block_id"] for b in batch if isinstance(b, Mapping))

    # -------------------------------------------------------------- rules
    @rule(data=st.data(), trigger=st.sampled_from(TRIGGER_SOURCES))
    def submit_batch(self, data: st.DataObject, trigger: str) -> None:
        """Submit a batch of valid blocks (it may be refused if the queue is full)."""
        batch = self._fresh(data.draw(self._batches))
        self._update(trigger, batch)

    @rule(data=st.data())
    def submit_invalid_batch(self, data: st.DataObject) -> None:
        """A batch with one malformed block is refused whole, and changes nothing."""
        good = self._fresh(data.draw(self._small_batches))
        bad = data.draw(_INVALID_BLOCKS)
        batch: list[Any] = [*good]
        batch.insert(data.draw(st.integers(0, len(good))), bad.block)
        before = self._snapshot()
        try:
            self.manager.execute_instruction_blocks(_stamp(self.clock), batch)
        except InvalidBlockError:
            pass
        else:
            raise AssertionError(f"a batch holding {bad!r} was accepted")
        assert self._snapshot() == before, "a refused batch changed the queue"

    @precondition(lambda self: bool(self.accepted))
    @rule(data=st.data())
    def resubmit_a_known_block(self, data: st.DataObject) -> None:
        """A block_id already accepted is refused (while queued, in flight or finished)."""
        block_id = data.draw(st.sampled_from(self.accepted))
        b = {**data.draw(self._blocks), "block_id": block_id}
        before = self._snapshot()
        try:
            self.manager.execute_instruction_blocks(_stamp(self.clock), [b])
        except InvalidBlockError:
            pass
        else:
            raise AssertionError(f"block {block_id!r} was accepted twice")
        assert self._snapshot() == before

    @rule(plan=fault_plans())
    def inject_faults(self, plan: FaultPlan) -> None:
        """Script the next venue, reconciliation and position handler faults."""
        self.venue.faults.extend(plan.venue)
        self.reconciliation.script.extend(plan.reconciliation)
        self.positions.failures.extend(plan.positions)

    @rule(trigger=st.sampled_from(TRIGGER_SOURCES))
    def tick(self, trigger: str) -> None:
        """An update with no new blocks: runs the queue; 'manual' resumes a halt."""
        self._update(trigger, None)

    # -------------------------------------------------------------- invariants
    @invariant()
    def every_accepted_block_is_accounted_for(self) -> None:
        s = self.manager.get_execution_status()
        in_flight = 1 if s["current_block"] is not None else 0
        assert s["blocks_accepted"] == len(self.accepted), "a block was lost or invented"
        assert s["blocks_accepted"] == (s["blocks_executed"] + s["blocks_failed"]
                                        + s["queue_length"] + in_flight)
        for block_id in self.accepted:
            assert self.manager.block_state(block_id) is not None, f"{block_id} was lost"

    @invariant()
    def the_journal_obeys_the_lifecycle(self) -> None:
        events = self.journal.events
        for e in events[self._checked:]:
            if e.event_type != "block_transition":
                continue
            d = e.data
            block_id, source, dest = d["block_id"], d["source"], d["dest"]
            assert (source, dest) in _LEGAL, f"illegal move {source} -> {dest}"
            assert block_id not in self._ended, f"{block_id} moved after it ended"
            if source == "queued":
                assert self._in_flight is None, (
                    f"{block_id} started while {self._in_flight} was in flight")
                done = [b for b in self.accepted if b in self._ended]
                assert self.accepted[len(done)] == block_id, f"{block_id} started out of order"
                self._in_flight = block_id
            assert self._in_flight == block_id, f"{block_id} moved while not in flight"
            if dest in _TERMINAL:
                self._ended[block_id] = dest
                self._in_flight = None
                if dest == "success":
                    self._routes_at_success[block_id] = self.venue.route_calls[block_id]
        self._checked = len(events)

    @invariant()
    def no_block_is_routed_after_success(self) -> None:
        for block_id, n in self._routes_at_success.items():
            assert self.venue.route_calls[block_id] == n, f"{block_id} routed after success"

    @invariant()
    def status_agrees_with_the_journal(self) -> None:
        s = self.manager.get_execution_status()
        assert s["current_block"] == self._in_flight
        if s["halted"]:
            assert s["status"] == "unhealthy" and s["halt_reason"] is not None
