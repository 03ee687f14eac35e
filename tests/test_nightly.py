"""The nightly run (fsm_exec.testing.nightly): rounds of the stateful machine and crash points over
random scenarios, every failure printed with its seed, and the seed replaying its round."""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from test_crash_points import readme_namespace

from fsm_exec import ExecutionRejected, InstructionBlock
from fsm_exec.testing import (
    SIMULATED,
    CrashScenario,
    ExecutionManagerMachine,
    FaultPlan,
    Nightly,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
    crash_scenarios,
    instruction_blocks,
    register_profiles,
)
from fsm_exec.testing.nightly import BACKTEST_VENUE_FAULTS, load_target, main

#: Small rounds: a failure is found and shrunk in a second or two.
SMALL = ["--examples", "10", "--scenarios", "3"]


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> str:
    """The docs' NIGHTLY over its adapter without the dedup check (deliberately broken:
    no query_execution, and it fills a block again on every route), importable by name."""
    module = types.ModuleType("readme_fuzz")
    module.NIGHTLY = readme_namespace(broken=True)["NIGHTLY"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "readme_fuzz", module)
    return "readme_fuzz:NIGHTLY"


def rounds(text: str) -> dict[int, str]:
    """Each round's printed block, by seed, without its timing."""
    found = re.findall(r"^(seed (\d+): .*?)(?=^seed |^\d+ of \d+ rounds)", text, re.S | re.M)
    return {int(s): re.sub(r"; [\d.]+ s\)", ")", block) for block, s in found}


def test_a_failing_round_prints_its_seed_and_the_replay_reproduces_it(broken: str) -> None:
    """Two rounds of a broken adapter fail, each printed with its seed, the failing part
    and a replay command; running that command runs the same round: the same failures,
    found after the same number of crash scenarios and points."""
    out = io.StringIO()
    assert main(["nightly", broken, "--seed", "41", "--runs", "2", *SMALL], out=out) == 1
    text = out.getvalue()
    assert text.splitlines()[0].startswith(f"fsm-exec nightly: {broken}, seeds 41..42")
    assert text.rstrip().endswith("0 of 2 rounds passed; failing seeds: 41, 42")
    first = rounds(text)
    assert sorted(first) == [41, 42]
    block = first[42]
    assert block.startswith("seed 42: FAILED in stateful, crash_points (")
    assert "filled more than once: {'b1': 2}" in block
    assert "At-least-once window no_query_at_least_once" in block
    assert "state.inject_faults(plan=FaultPlan(venue=('lost_response',)))" in block
    replay = re.search(r"replay: python -m fsm_exec\.testing (nightly .*)", block)
    assert replay is not None
    assert replay.group(1) == f"nightly {broken} --seed 42 --examples 10 --scenarios 3"
    again = io.StringIO()
    assert main(replay.group(1).split(), out=again) == 1
    assert rounds(again.getvalue()) == {42: block}


def test_the_projects_own_nightly_passes_from_the_command_line() -> None:
    """``python -m fsm_exec.testing nightly`` (the kit's own fakes by default) runs a small
    round and exits 0."""
    proc = subprocess.run([sys.executable, "-m", "fsm_exec.testing", "nightly", "--seed",
                           "7", "--examples", "5", "--scenarios", "2"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "seed 7: ok (2 crash scenarios run" in proc.stdout
    assert proc.stdout.rstrip().endswith("1 of 1 rounds passed")


def test_without_a_seed_a_random_one_is_printed(broken: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With no --seed the round's seed is drawn (here: made to be 99) and printed, with
    the command that replays it."""
    monkeypatch.setattr(random.SystemRandom, "randrange", lambda self, n: 99)
    out = io.StringIO()
    assert main(["nightly", broken, "--examples", "1", "--scenarios", "1"], out=out) == 1
    text = out.getvalue()
    (seed,) = re.findall(r"^seed (\d+): FAILED", text, re.M)
    assert seed == "99"
    assert f"seeds {seed}..{seed} " in text.splitlines()[0]
    assert f"nightly {broken} --seed {seed} --examples 1 --scenarios 1\n" in text


def test_targets_and_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """A target that is not module:attribute or not a Nightly, and counts below their
    minimum, are refused naming the problem."""
    with pytest.raises(ValueError, match="module:attribute"):
        load_target("fsm_exec.testing")
    with pytest.raises(TypeError, match=r"is a dict, not a fsm_exec\.testing\.Nightly"):
        load_target("fsm_exec.testing:PROFILES")
    assert load_target("fsm_exec.testing:SIMULATED") is SIMULATED
    with pytest.raises(SystemExit):
        main(["nightly", "--runs", "0"])
    assert "--runs and --examples must be at least 1" in capsys.readouterr().err


def test_a_nightly_without_a_machine_runs_crash_scenarios_only() -> None:
    """Nightly(machine=None).run() searches crash scenarios only; a passing round says how
    many scenarios and points it tried."""
    nightly = Nightly(SIMULATED.make_collaborators, check=SIMULATED.check, mode="backtest")
    result = nightly.run(3, scenarios=2)
    assert result.ok and result.seed == 3 and result.scenarios == 2
    assert result.crash_points > 0 and not result.failures


@settings(max_examples=20, deadline=None)
@given(crash_scenarios())
def test_crash_scenarios_number_their_blocks_in_order(scenario: CrashScenario) -> None:
    """Drawn scenarios hold one to three non-empty batches, ids b1, b2, ... in order, and
    no faults or a fault plan; they print on one line."""
    ids = [b["block_id"] for batch in scenario.batches for b in batch]
    assert ids == [f"b{i}" for i in range(1, len(ids) + 1)]
    assert 1 <= len(scenario.batches) <= 3 and all(1 <= len(b) <= 2 for b in scenario.batches)
    assert scenario.faults is None or isinstance(scenario.faults, FaultPlan)
    assert "\n" not in repr(scenario) and repr(scenario).startswith("CrashScenario(batches=[[")


@settings(max_examples=20, deadline=None)
@given(crash_scenarios(venue_faults=BACKTEST_VENUE_FAULTS))
def test_backtest_scenarios_leave_out_the_lagging_query(scenario: CrashScenario) -> None:
    """A backtest's scenarios draw no eventually_consistent fault (a backtest believes the
    venue's first answer, by design)."""
    assert scenario.faults is None or "eventually_consistent" not in scenario.faults.venue


def test_crash_scenarios_refuse_empty_shapes() -> None:
    """max_batches and max_batch_size below 1 are refused."""
    with pytest.raises(ValueError, match="at least 1"):
        crash_scenarios(max_batches=0)


def test_the_nightly_profile_is_long_and_seeded_whatever_profile_is_loaded() -> None:
    """fsm-exec-nightly is 5,000 examples of up to 100 steps, not derandomized (each
    round's seed decides), even when registered while a derandomized profile is loaded."""
    current = settings._current_profile or "default"
    settings.register_profile("derandomized-now", derandomize=True)
    settings.load_profile("derandomized-now")
    try:
        register_profiles()
    finally:
        settings.load_profile(current)
    profile = settings.get_profile("fsm-exec-nightly")
    assert profile.max_examples == 5000 and profile.stateful_step_count == 100
    assert not profile.derandomize


def test_a_nightly_without_the_profile_registered_uses_its_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Run before register_profiles(), a round takes the profile's values from PROFILES."""
    monkeypatch.delitem(settings._profiles, "fsm-exec-nightly")
    with pytest.raises(InvalidArgument):
        settings.get_profile("fsm-exec-nightly")
    # 5 examples: with 2, seed 5 fills no block, and a round that exercised nothing fails
    assert Nightly(SIMULATED.make_collaborators, machine=SIMULATED.machine).run(
        5, examples=5, scenarios=0).ok


def test_the_readme_nightly_passes_on_the_readme_adapter() -> None:
    """The docs' NIGHTLY over its adapter as written (it deduplicates) passes a small
    round of both parts."""
    result = readme_namespace()["NIGHTLY"].run(11, examples=10, scenarios=2)
    assert result.ok, result.failures


# ------------------------------------------------------------------------ no false confidence


def _world(venue: type[SimVenue]) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        rc = SimReconciliation()
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(rc, idempotent=True),
                "execution_interface_manager": venue(), "reconciliation_component": rc}

    return make


class RefusesEverything(SimVenue):
    """A venue adapter that rejects every block."""

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        raise ExecutionRejected("refuses everything", retryable=False)


class RefusingMachine(ExecutionManagerMachine):
    def collaborators(self) -> dict[str, Any]:
        return _world(RefusesEverything)()


def test_a_round_over_an_adapter_that_refuses_everything_is_not_ok() -> None:
    """The machine and the crash scenarios both exercised nothing: the round fails, and
    each part says what was not covered."""
    result = Nightly(_world(RefusesEverything), machine=RefusingMachine).run(
        7, examples=5, scenarios=3)
    assert not result.ok
    assert [f.part for f in result.failures] == ["stateful", "crash_points"]
    assert all("exercised nothing" in f.message and "no fill" in f.message
               and "no hand-off" in f.message for f in result.failures)
    assert dict(result.exercised)["fills"] == 0


class BtcMachine(ExecutionManagerMachine):
    """A machine whose adapter only trades BTC, and says so in its block strategy."""

    def collaborators(self) -> dict[str, Any]:
        return _world(SimVenue)()

    def block_strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return instruction_blocks(block_id=st.just("id"), tokens=("BTC",), max_instructions=1)


def _btc_only(c: Mapping[str, Any]) -> None:
    """The adapter was only ever asked to trade BTC."""
    executed = c["execution_interface_manager"].executed
    assert all(set(d["changes"]) <= {"BTC"} for d in executed.values()), executed


def test_the_nightly_crash_scenarios_use_the_machines_block_strategy() -> None:
    """The crash scenarios draw their blocks from the user's machine's block_strategy()
    (not the kit's default ETH/USDT blocks), and its venue faults."""
    result = Nightly(_world(SimVenue), machine=BtcMachine, check=_btc_only).run(
        3, examples=10, scenarios=3)
    assert result.ok, result.failures
    assert dict(result.exercised)["fills"] > 0


def test_a_nightly_failure_names_the_faults_the_kit_injected_in_order(broken: str) -> None:
    """Both parts of a failing round name, in their message, the faults the kit injected
    into the failing example, in order."""
    result = load_target(broken).run(42, examples=10, scenarios=3)
    assert [f.part for f in result.failures] == ["stateful", "crash_points"]
    for f in result.failures:
        assert re.search(r"Faults the kit injected, in order: \(1\) (venue \w+ on route call"
                         r" \d+ of b\d+|the kill (before|after) record \d+)", f.message), (
            f.message)


class RejectOnlyMachine(BtcMachine):
    venue_faults = ("reject",)


class LaggingOnlyMachine(BtcMachine):
    venue_faults = ("eventually_consistent",)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_the_nightly_crash_scenarios_inject_only_the_machines_venue_faults(
        data: st.DataObject) -> None:
    """The crash scenarios inject only the machine's venue_faults; in backtest, less those
    a backtest cannot survive by design (none left: no faults at all)."""
    live = data.draw(Nightly(_world(SimVenue), machine=RejectOnlyMachine)._scenarios())
    assert live.faults is None or set(live.faults.venue) <= {"reject"}
    assert all(set(i["token"] for i in b["instructions"]) == {"BTC"}
               for batch in live.batches for b in batch)
    backtest = Nightly(_world(SimVenue), machine=LaggingOnlyMachine, mode="backtest")
    assert data.draw(backtest._scenarios()).faults is None
