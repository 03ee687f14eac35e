"""The nightly run: the stateful machine and :func:`~fsm_exec.testing.crash_points` over
random scenarios, one seed per round; every failure is printed with its seed and the
command that replays it.

A round with seed *s* runs (1) your :class:`~fsm_exec.testing.ExecutionManagerMachine`
under the ``fsm-exec-nightly`` profile, and (2) a hypothesis search over random crash
scenarios (random batches of your machine's ``block_strategy()``, random fault plans of
its ``venue_faults`` or none), each crashed at every point. A round fails when either part
finds a broken promise, or exercised nothing over all its examples (no fill, no
hand-off: an adapter that refuses everything is not a pass). Both are seeded with *s* (hypothesis's
``@seed``, no example database), so the same seed runs the same examples: a failure
printed at night is replayed in the morning with ``--seed s``.

    python -m fsm_exec.testing nightly mypkg.fuzz:NIGHTLY --runs 5
    python -m fsm_exec.testing nightly mypkg.fuzz:NIGHTLY --seed 1234   # the replay
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TextIO, cast

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from fsm_exec.sim.venues import VENUE_FAULTS, FaultPlan
from fsm_exec.testing.crash import _crash_points
from fsm_exec.testing.crash_report import (
    COVERAGE,
    not_covered,
    nothing_exercised,
    uncovered_lines,
)
from fsm_exec.testing.crash_world import Check, Collaborators, MakeCollaborators
from fsm_exec.testing.machine import _EXERCISED, ExecutionManagerMachine, exercised_nothing
from fsm_exec.testing.profiles import KIT_PHASES, PROFILES
from fsm_exec.testing.strategies import fault_plans, instruction_blocks

PROFILE = "fsm-exec-nightly"
#: The venue faults a backtest's crash scenarios draw: not ``eventually_consistent``. A
#: backtest asks the venue once about a block in doubt and believes its answer (its
#: venues are simulated and answer at once: see BacktestDriver.retry), so a lagging
#: query there routes an executed block again, by design.
BACKTEST_VENUE_FAULTS = tuple(f for f in VENUE_FAULTS if f != "eventually_consistent")
#: Crash scenarios searched per round unless ``--scenarios`` says otherwise.
SCENARIOS = 50
#: The target the command runs when given none: the kit's own simulated collaborators.
DEFAULT_TARGET = "fsm_exec.testing:SIMULATED"


@attrs.frozen(repr=False)
class CrashScenario:
    """One scripted scenario for :func:`~fsm_exec.testing.crash_points`: its ``batches``
    (block ids ``b1``, ``b2``, ... in submission order) and the ``faults`` injected into
    every run (``None``: none)."""

    batches: tuple[tuple[Mapping[str, Any], ...], ...]
    faults: FaultPlan | None = None

    def __repr__(self) -> str:
        batches = [list(b) for b in self.batches]
        return f"CrashScenario(batches={batches!r}, faults={self.faults!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """One line in hypothesis's printed examples."""
        printer.text(repr(self))


def _numbered(drawn: list[list[dict[str, Any]]]) -> tuple[tuple[Mapping[str, Any], ...], ...]:
    n = 0
    out = []
    for batch in drawn:
        blocks = []
        for b in batch:
            n += 1
            blocks.append({**b, "block_id": f"b{n}"})
        out.append(tuple(blocks))
    return tuple(out)


def crash_scenarios(blocks: st.SearchStrategy[dict[str, Any]] | None = None, *,
                    max_batches: int = 3, max_batch_size: int = 2,
                    faults: st.SearchStrategy[FaultPlan | None] | None = None,
                    venue_faults: tuple[str, ...] = VENUE_FAULTS
                    ) -> st.SearchStrategy[CrashScenario]:
    """Random crash scenarios: 1 to ``max_batches`` batches of 1 to ``max_batch_size``
    blocks drawn from ``blocks`` (default: the machine's small blocks), ids ``b1``, ``b2``,
    ... in order; and ``faults`` (default: no faults, or ``fault_plans(venue_faults=
    venue_faults)``). Scenarios shrink towards one block and no faults."""
    if max_batches < 1 or max_batch_size < 1:
        raise ValueError(f"max_batches ({max_batches}) and max_batch_size "
                         f"({max_batch_size}) must be at least 1")
    if blocks is None:
        blocks = instruction_blocks(block_id=st.just("id"), amounts=st.sampled_from(
            (0.5, 1.0, 2.5)), max_instructions=1)
    if faults is None:
        faults = st.none() | fault_plans(venue_faults=venue_faults)
    batches = st.lists(st.lists(blocks, min_size=1, max_size=max_batch_size),
                       min_size=1, max_size=max_batches).map(_numbered)
    return st.builds(CrashScenario, batches, faults)


@attrs.frozen
class NightlyFailure:
    """One part of a round that failed: ``part`` (``stateful`` or ``crash_points``) and
    the ``message`` (the exception, with the shortest failing program or scenario)."""

    part: str
    message: str


@attrs.frozen
class NightlyResult:
    """One round: its ``seed``, ``ok``, ``failures``, ``crash_points`` (points tried over
    all scenarios), ``scenarios``, ``seconds``, and ``exercised`` (what the crash
    scenarios exercised, summed: see :class:`~fsm_exec.testing.CrashReport`). A round
    whose machine or crash scenarios exercised nothing a fault could break (no fill or no
    hand-off in any example) is not ``ok``: its ``failures`` say what was not covered."""

    seed: int
    ok: bool
    failures: tuple[NightlyFailure, ...]
    crash_points: int = 0
    scenarios: int = 0
    seconds: float = 0.0
    exercised: tuple[tuple[str, int], ...] = ()


def _message(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes])


@attrs.frozen
class Nightly:
    """What the nightly run needs to fuzz your adapters: ``make_collaborators`` and the
    rest of :func:`~fsm_exec.testing.crash_points`'s arguments for the crash scenarios,
    and your ``machine`` (an :class:`~fsm_exec.testing.ExecutionManagerMachine` subclass;
    ``None``: crash scenarios only). ``scenarios``: the crash scenarios to search
    (default :func:`crash_scenarios` over your machine's ``block_strategy()`` and
    ``venue_faults`` when you give a machine, without ``eventually_consistent`` in
    backtest: see :data:`BACKTEST_VENUE_FAULTS`). Put one in a module and run
    ``python -m fsm_exec.testing nightly yourmodule:NAME``."""

    make_collaborators: MakeCollaborators
    machine: type[ExecutionManagerMachine] | None = None
    check: Check | None = None
    mode: str = "live"
    config: Mapping[str, Any] | None = None
    at_least_once: bool | Collection[str] = False
    on_restart: Callable[[Collaborators], object] | None = None
    scenarios: st.SearchStrategy[CrashScenario] | None = None

    def run(self, seed: int, *, examples: int | None = None,
            scenarios: int = SCENARIOS) -> NightlyResult:
        """One round with seed ``seed``: the machine under the ``fsm-exec-nightly``
        profile (``examples`` overrides its ``max_examples``), then ``scenarios`` crash
        scenarios. The same seed runs the same examples."""
        try:
            profile = settings.get_profile(PROFILE)
        except InvalidArgument:  # not registered: its values, on hypothesis's defaults
            profile = settings(settings.get_profile("default"), **PROFILES[PROFILE])
        started = time.perf_counter()
        failures: list[NightlyFailure] = []
        if self.machine is not None:
            machine = self.machine

            def factory() -> RuleBasedStateMachine:
                return machine()

            stateful = settings(profile, phases=KIT_PHASES, database=None)
            if examples:
                stateful = settings(stateful, max_examples=examples)
            # Any factory will do (hypothesis's docs), though its annotation says a class:
            # a seeded function leaves the user's class untouched.
            seeded = cast("type[RuleBasedStateMachine]", hypothesis_seed(seed)(factory))
            _EXERCISED.pop(machine, None)
            try:
                run_state_machine_as_test(seeded, settings=stateful)
            except Exception as exc:
                failures.append(NightlyFailure("stateful", _message(exc)))
            else:
                empty = exercised_nothing(machine, "every example of the round")
                if empty is not None:
                    failures.append(NightlyFailure("stateful", empty))
        tried = [0, 0]
        exercised: Counter[str] = Counter()
        if scenarios > 0:
            space = self.scenarios if self.scenarios is not None else self._scenarios()

            @hypothesis_seed(seed)
            @settings(profile, max_examples=scenarios, phases=KIT_PHASES, database=None,
                      deadline=None, suppress_health_check=list(HealthCheck))
            @given(space)
            def crash_scenario(scenario: CrashScenario) -> None:
                report = _crash_points(
                    self.make_collaborators, scenario.batches, check=self.check,
                    mode=self.mode, config=self.config, faults=scenario.faults,
                    at_least_once=self.at_least_once, on_restart=self.on_restart,
                    workdir=None, first_only=True)
                tried[0] += 1
                tried[1] += report.points
                exercised.update(dict(report.exercised))
                if report.failures:  # one scenario may exercise little: the round counts
                    raise AssertionError(report.story())

            try:
                crash_scenario()
            except Exception as exc:
                failures.append(NightlyFailure("crash_points", _message(exc)))
            else:
                missing = nothing_exercised(not_covered(exercised))
                if missing:
                    failures.append(NightlyFailure("crash_points", "\n".join([
                        f"the {tried[0]} crash scenarios exercised nothing a crash could "
                        f"break:", *uncovered_lines(missing)])))
        return NightlyResult(seed, not failures, tuple(failures), crash_points=tried[1],
                             scenarios=tried[0], seconds=time.perf_counter() - started,
                             exercised=tuple((k, exercised[k]) for k in COVERAGE))

    def _scenarios(self) -> st.SearchStrategy[CrashScenario]:
        """The default crash scenarios: your machine's blocks and venue faults (the kit's
        when no machine is given), without those a backtest cannot survive by design."""
        faults = self.machine.venue_faults if self.machine is not None else VENUE_FAULTS
        if self.mode == "backtest":
            faults = tuple(f for f in faults if f in BACKTEST_VENUE_FAULTS)
        blocks = self.machine().block_strategy() if self.machine is not None else None
        if not faults:
            return crash_scenarios(blocks, faults=st.none())
        return crash_scenarios(blocks, venue_faults=faults)

    def runs(self, seeds: Iterable[int], *, examples: int | None = None,
             scenarios: int = SCENARIOS, target: str = "yourmodule:NIGHTLY",
             out: TextIO | None = None) -> list[NightlyResult]:
        """A round per seed, each printed to ``out`` as it ends: ``ok`` or the failure,
        its seed, and the command that replays it."""
        stream = out if out is not None else sys.stdout
        results = []
        for s in seeds:
            result = self.run(s, examples=examples, scenarios=scenarios)
            results.append(result)
            print(_line(result), file=stream, flush=True)
            if not result.ok:
                for f in result.failures:
                    print(f"  {f.part} failed:", file=stream)
                    for line in f.message.splitlines():
                        print(f"    {line}", file=stream)
                extra = (f" --examples {examples}" if examples else "") + (
                    f" --scenarios {scenarios}" if scenarios != SCENARIOS else "")
                print(f"  replay: python -m fsm_exec.testing nightly {target} --seed {s}"
                      f"{extra}", file=stream, flush=True)
        return results


def _line(r: NightlyResult) -> str:
    verdict = "ok" if r.ok else "FAILED in " + ", ".join(f.part for f in r.failures)
    return (f"seed {r.seed}: {verdict} ({r.scenarios} crash scenarios run, {r.crash_points} "
            f"crash points; {r.seconds:.1f} s)")


def load_target(spec: str) -> Nightly:
    """``module:attribute`` -> the :class:`Nightly` it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"target must be module:attribute (a Nightly), got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Nightly):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a fsm_exec.testing.Nightly")
    return obj


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """``python -m fsm_exec.testing nightly [TARGET] [--seed N] [--runs R] [--examples M]
    [--scenarios S]``: exit status 0 when every round passed, 1 when one failed."""
    parser = argparse.ArgumentParser(
        prog="python -m fsm_exec.testing",
        description="Fuzz adapters: the stateful machine and crash points over random "
                    "scenarios, one seed per round.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("nightly", help="rounds of the stateful machine and crash points; "
                                       "every failure printed with the seed that replays it")
    p.add_argument("target", nargs="?", default=DEFAULT_TARGET,
                   help=f"module:attribute naming a fsm_exec.testing.Nightly "
                        f"(default {DEFAULT_TARGET}: the kit's own simulated collaborators)")
    p.add_argument("--seed", type=int, default=None,
                   help="the first round's seed (default: a random one); round i uses "
                        "seed + i. To replay a failure, pass its seed")
    p.add_argument("--runs", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--examples", type=int, default=None,
                   help=f"the machine's examples per round (default: the {PROFILE} "
                        "profile's max_examples)")
    p.add_argument("--scenarios", type=int, default=SCENARIOS,
                   help=f"crash scenarios per round (default {SCENARIOS}; 0: none)")
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.runs < 1 or args.scenarios < 0 or (args.examples is not None
                                                 and args.examples < 1):
        parser.error("--runs and --examples must be at least 1, --scenarios at least 0")
    target = load_target(args.target)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"fsm-exec nightly: {args.target}, seeds {first}..{first + args.runs - 1} "
          f"(profile {PROFILE}), {args.scenarios} crash scenarios per round", file=stream,
          flush=True)
    results = target.runs(range(first, first + args.runs), examples=args.examples,
                          scenarios=args.scenarios, target=args.target, out=stream)
    failed = [r.seed for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} rounds passed"
          + (f"; failing seeds: {', '.join(map(str, failed))}" if failed else ""),
          file=stream, flush=True)
    return 1 if failed else 0
