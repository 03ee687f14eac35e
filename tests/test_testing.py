"""fsm_exec.testing, the kit users fuzz their adapters with: its strategies, its fakes and
fault injection, its lifecycle paths, and proof that it catches a real adapter bug."""

from __future__ import annotations

import itertools
import os
import pathlib
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, run_state_machine_as_test

from fsm_exec import TERMINAL_STATES, TRANSITIONS, InstructionBlock, InvalidBlockError
from fsm_exec._blocks import validate_batch
from fsm_exec.testing import (
    RECONCILIATION_FAULTS,
    VENUE_FAULTS,
    ExecutionManagerMachine,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    InvalidBlock,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
    block_batches,
    fault_plans,
    instruction_blocks,
    invalid_blocks,
    lifecycle_paths,
    register_profiles,
)

from kit import HAPPY_PATH, T, blocks, rig

ROOT = pathlib.Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------ strategies


@given(block_batches())
def test_generated_batches_are_valid_with_unique_ids(batch: list[dict[str, Any]]) -> None:
    """block_batches() yields batches the validator accepts whole, ids unique."""
    out = validate_batch(batch, set())
    assert [b.block_id for b in out] == [b["block_id"] for b in batch]


@given(instruction_blocks(tokens=("BTC",), venues=("perp",)))
def test_instruction_blocks_use_the_given_tokens_and_venues(b: dict[str, Any]) -> None:
    """instruction_blocks() names only the tokens and venues it is given."""
    assert {(i["token"], i["venue"]) for i in b["instructions"]} == {("BTC", "perp")}


@given(invalid_blocks())
def test_every_invalid_block_is_refused_at_its_field(bad: InvalidBlock) -> None:
    """Each labelled invalid block is refused, with a problem at the labelled field."""
    with pytest.raises(InvalidBlockError) as info:
        validate_batch([bad.block], set())
    assert bad.field in {p.field for p in info.value.problems}, (bad, info.value.problems)
    assert bad.reason and repr(bad).startswith("InvalidBlock(")


@given(fault_plans())
def test_fault_plans_hold_known_faults(plan: FaultPlan) -> None:
    """fault_plans() draws only faults the wrappers know."""
    assert set(plan.venue) <= {None, *VENUE_FAULTS}
    assert {k for k, _ in plan.reconciliation} <= set(RECONCILIATION_FAULTS)
    assert all(isinstance(x, bool) for x in plan.positions)


def test_profiles_are_registered() -> None:
    """register_profiles() registers a fast, a deterministic ci and a nightly profile."""
    names = register_profiles()
    assert names == ("fsm-exec-fast", "fsm-exec-ci", "fsm-exec-nightly")
    assert settings.get_profile("fsm-exec-ci").derandomize
    assert settings.get_profile("fsm-exec-nightly").max_examples >= 1000


# ------------------------------------------------------------------------ wrappers


def test_faulty_reconciliation_scripts_each_hand_off() -> None:
    """Each hand-off takes the next behaviour: slow, never, fail; then pass-through."""
    clock = FakeClock()
    inner = SimReconciliation()
    rc = FaultyReconciliation(inner, clock, [("ok", 2.0), ("never", 0), ("fail", 0)])
    positions = FaultyPositionHandler(SimPositionHandler(inner), reconciliation=rc)
    positions.update_state(T(0), "execution_manager", {"block_id": "a", "changes": {}})
    assert rc.reconciliation_status == "pending"
    clock.advance(2.0)
    assert rc.reconciliation_status == "success"
    assert rc.reconciled_block_id == "a"  # other attributes are the wrapped component's
    positions.update_state(T(0), "execution_manager", {"block_id": "b", "changes": {}})
    clock.advance(1000)
    assert rc.reconciliation_status == "pending"
    positions.update_state(T(0), "execution_manager", {"block_id": "c", "changes": {}})
    assert rc.reconciliation_status == "failed"
    positions.update_state(T(0), "execution_manager", ["not a mapping"])
    assert rc.reconciliation_status == "success"
    assert rc.injected == [("ok", 2.0), ("never", 0), ("fail", 0)]


def test_faulty_position_handler_refuses_before_reaching_the_wrapped_one() -> None:
    """A scripted failure raises without the wrapped handler seeing the deltas."""
    inner = SimPositionHandler()
    positions = FaultyPositionHandler(inner, [True, False])
    with pytest.raises(RuntimeError, match="injected"):
        positions.update_state(T(0), "execution_manager", {"changes": {"ETH": 1.0}})
    positions.update_state(T(0), "execution_manager", {"changes": {"ETH": 1.0}})
    assert inner.positions == {"ETH": 1.0} and positions.refused == 1


# ------------------------------------------------------------------------ paths


def test_lifecycle_paths_are_every_simple_path_to_an_end() -> None:
    """lifecycle_paths(): simple, from queued to a terminal state, covering every edge."""
    paths = lifecycle_paths()
    assert len(paths) == len(set(paths)) == 8
    for path in paths:
        states = [str(path[0].source), *(str(e.dest) for e in path)]
        assert states[0] == "queued" and path[-1].dest in TERMINAL_STATES
        assert len(states) == len(set(states))
        assert all(a.dest == b.source for a, b in itertools.pairwise(path))
    assert {e for p in paths for e in p} == set(TRANSITIONS) - {
        e for e in TRANSITIONS if e.source == "retrying" and e.dest == "routing"}


# How to drive the manager down each path: rig() arguments.
SCENARIOS: dict[tuple[str, ...], dict[str, Any]] = {
    ("queued", "cancelled"): {"cancel": True},
    ("queued", "routing", "failed"): {"prices": {}},
    ("queued", "routing", "pending_reconciliation", "success"): {},
    ("queued", "routing", "pending_reconciliation", "failed"): {"recon": [("fail", 0)]},
    ("queued", "routing", "retrying", "failed"): {"faults": ["reject"], "max_retries": 1},
    ("queued", "routing", "pending_reconciliation", "retrying", "failed"): {
        "recon": [("never", 0)], "max_retries": 1, "reconciliation_timeout": 1},
    ("queued", "routing", "retrying", "pending_reconciliation", "success"): {
        "faults": ["lost_response"]},
    ("queued", "routing", "retrying", "pending_reconciliation", "failed"): {
        "faults": ["lost_response"], "recon": [("fail", 0)]},
}


def _states(path: tuple[Any, ...]) -> tuple[str, ...]:
    return (str(path[0].source), *(str(e.dest) for e in path))


@pytest.mark.parametrize("path", lifecycle_paths(), ids=lambda p: "-".join(_states(p)))
def test_every_lifecycle_path_is_driven_for_real(path: tuple[Any, ...]) -> None:
    """Each simple path of the table has a scenario that takes a block exactly along it."""
    states = _states(path)
    assert states in SCENARIOS, f"no scenario drives {' -> '.join(states)}: add one"
    scenario = dict(SCENARIOS[states])
    cancel = scenario.pop("cancel", False)
    r = rig(**scenario)
    if cancel:
        r.em.execute_instruction_blocks(T(0), blocks("a"))
        r.em.cancel(T(0), ["a"], reason="operator")
    r.em.update_state(T(0), "strategy_manager", blocks("a") if not cancel else None)
    assert tuple(r.path("a")) == states
    triggers = [m["trigger"] for m in r.events("block_transition")]
    assert triggers == [str(e.trigger) for e in path]


def test_happy_path_is_the_shortest_success() -> None:
    """The shortest path to success is the happy path."""
    success = [p for p in lifecycle_paths() if p[-1].dest == "success"]
    assert list(_states(success[0])) == HAPPY_PATH


# ------------------------------------------------------------------------ the machine


class FillingVenue:
    """An adapter that sends every route to the exchange as a new order (a real bug: not
    idempotent), and cannot be asked what it executed."""

    def __init__(self) -> None:
        self.fills: Counter[str] = Counter()

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        self.fills[block.block_id] += 1
        return {"block_id": block.block_id, "changes": {}}


class DedupVenue(FillingVenue):
    """The same adapter, fixed: it deduplicates by block_id."""

    def __init__(self) -> None:
        super().__init__()
        self.done: dict[str, dict[str, Any]] = {}

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        if block.block_id not in self.done:
            self.done[block.block_id] = super().route_instruction(ts, block)
        return self.done[block.block_id]


class FillingVenueMachine(ExecutionManagerMachine):
    venue_class: type[FillingVenue] = FillingVenue

    def collaborators(self) -> dict[str, Any]:
        self.adapter = self.venue_class()
        rc = SimReconciliation(None)
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(rc),
                "execution_interface_manager": self.adapter,
                "reconciliation_component": rc}

    @invariant()
    def each_block_fills_at_most_once(self) -> None:
        twice = {b: n for b, n in self.adapter.fills.items() if n > 1}
        assert not twice, f"filled more than once: {twice}"


class DedupVenueMachine(FillingVenueMachine):
    venue_class = DedupVenue


SEARCH = settings(max_examples=100, stateful_step_count=20, derandomize=True,
                  deadline=None, database=None)


def test_kit_catches_a_venue_that_is_not_idempotent() -> None:
    """Under lost-reply faults, the kit finds the double fill of an adapter that does not
    deduplicate by block_id (the search alone: shrinking the example is for people)."""
    find = settings(SEARCH, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    with pytest.raises(AssertionError, match="filled more than once"):
        run_state_machine_as_test(FillingVenueMachine, settings=find)


def test_kit_passes_the_same_venue_once_it_deduplicates() -> None:
    """The fixed adapter survives the same search."""
    run_state_machine_as_test(DedupVenueMachine, settings=SEARCH)


def test_machine_without_collaborators_fails_at_class_definition() -> None:
    """Forgetting collaborators() fails when the class is defined, naming it."""
    with pytest.raises(TypeError, match="Forgetful must override collaborators"):
        type("Forgetful", (ExecutionManagerMachine,), {})


def test_collaborators_missing_a_key_are_named() -> None:
    """A collaborators() dict missing a key fails naming the key."""

    class Partial(ExecutionManagerMachine):
        def collaborators(self) -> dict[str, Any]:
            return {"data_provider": StaticDataProvider()}

    with pytest.raises(TypeError, match="missing position_update_handler"):
        Partial()


# ------------------------------------------------------------------------ README


def test_readme_fuzzing_example_runs() -> None:
    """The README's "Fuzz your own adapters" example is complete and runs as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Fuzz your own adapters", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    machines = [v for v in namespace.values() if isinstance(v, type)
                and issubclass(v, ExecutionManagerMachine) and v is not ExecutionManagerMachine]
    assert machines
    for machine in machines:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=30, derandomize=True, deadline=None, database=None))


class BtcOnly(DedupVenueMachine):
    def block_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return instruction_blocks(tokens=("BTC",))


@given(st.data())
def test_block_strategy_can_be_overridden(data: st.DataObject) -> None:
    """A machine's block_strategy() decides what blocks reach the adapter."""
    b = data.draw(BtcOnly().block_strategy())
    assert {i["token"] for i in b["instructions"]} == {"BTC"}


def test_kit_machines_default_to_short_examples_unless_a_profile_says() -> None:
    """Kit machines run 20 steps per example when the profile keeps hypothesis's default,
    and leave a profile's own step count alone."""
    from fsm_exec.testing import DEFAULT_STEPS, KIT_STEPS

    assert settings().stateful_step_count == DEFAULT_STEPS  # the suite's profiles keep it
    assert DedupVenueMachine.TestCase.settings.stateful_step_count == KIT_STEPS
    current = os.environ.get("HYPOTHESIS_PROFILE", "dev")
    settings.load_profile("fsm-exec-nightly")
    try:
        class Deep(DedupVenueMachine):
            pass

        assert Deep.TestCase.settings.stateful_step_count == 100
    finally:
        settings.load_profile(current)


def test_the_library_imports_without_hypothesis() -> None:
    """hypothesis is only needed for fsm_exec.testing: the library, the demo and the CLI
    import without it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import fsm_exec, fsm_exec._cli, fsm_exec._demo, fsm_exec._sim\n"
            "try:\n    import fsm_exec.testing\nexcept ImportError:\n    print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.stdout.strip() == "ok", proc.stderr
