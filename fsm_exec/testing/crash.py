"""Crash points: kill the manager at every record of a scripted scenario's journal, restart
it on what the disk kept, and check its promises against your own collaborators.

The venue and the position store are outside the process: a crash kills the manager, not
them. So one scenario can be crashed deterministically, in-process, at every point that
matters. :func:`crash_points` runs the scenario once to count the journal's records and
the moments they become durable (an fsync in live mode; every record in backtest), then
once per crash point on a fresh directory:

1. the journal raises a private ``BaseException`` out of the manager right before record
   *k* is written, or right after it became durable (the manager is never told: nothing
   it does catches the kill);
2. the dead process's journal is abandoned (no further writes; its lock is released) and
   the file is truncated to the last durable byte, as a power cut would leave it: records
   written but not yet fsynced are lost;
3. ``on_restart(collaborators)`` runs (what your process's death does to your adapters'
   own memory), and a fresh manager is built on the surviving journal with the *same*
   collaborator objects, ``recover()`` is called, and the rest of the scenario runs: the
   batches not yet submitted, the one whose call was cut short submitted again (the
   manager takes it, or refuses it whole as already taken), then updates until the queue
   is done (a halt resumed with ``manual``, as an operator would).

Then it checks: the journal obeys the lifecycle across the restart (``check_journal``);
every submitted block was accepted once and ended exactly once, started and ended in
submission order; a halt the surviving journal held was recovered; and your
``check(collaborators)`` holds. A failure names the point, the records before it (which
were lost with the crash), how recovery settled the block in doubt, what went wrong and the
at-least-once window of the README's "Guarantees" it falls in, when it falls in one.
"""


from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsm_exec.sim.venues import FaultPlan

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle
from fsm_exec.testing.crash_report import (
    COVERAGE,
    WINDOWS,
    CrashFailure,
    CrashPoint,
    CrashReport,
    faults_line,
    not_covered,
    nothing_exercised,
    uncovered_lines,
)
from fsm_exec.testing.crash_run import DEFAULT_CONFIG, _Run, _Scenario, _workspace
from fsm_exec.testing.crash_world import Batches, Check, Collaborators, MakeCollaborators

__all__ = ["DEFAULT_CONFIG", "WINDOWS", "CrashFailure", "CrashPoint", "CrashReport",
           "assert_crash_safe", "crash_point_tests", "crash_points"]


def crash_points(make_collaborators: MakeCollaborators, batches: Batches, *,
                 check: Check | None = None, mode: str = "live",
                 config: Mapping[str, Any] | None = None, faults: FaultPlan | None = None,
                 at_least_once: bool | Collection[str] = False,
                 on_restart: Callable[[Collaborators], object] | None = None,
                 workdir: Path | str | None = None, lifecycle: Lifecycle | None = None,
                 triggers: Sequence[str] = ()) -> CrashReport:
    """Crash a scripted scenario at every point of its journal, restart it, and check it.

    ``make_collaborators()`` returns the four collaborators, as
    ``ExecutionManagerMachine.collaborators()`` does (``data_provider``,
    ``position_update_handler``, ``execution_interface_manager``,
    ``reconciliation_component``); it is called once per run, and the objects it returns
    are the outside world: they survive the crash. ``batches`` are the scenario: each is
    submitted with one ``update_state`` call, then updates run the queue to its end.
    ``check(collaborators)`` raises ``AssertionError`` when your own promise is broken
    ("my venue filled each block at most once", "my book holds the sum of the deltas").

    ``mode``: ``live`` (records become durable at the manager's fsyncs; the kill truncates
    the journal to the last one) or ``backtest`` (every record is durable once written; a
    backtest asks the venue once about a block in doubt and believes it, so an
    ``eventually_consistent`` fault there routes an executed block again, by design).
    ``config``: the manager's config (default :data:`DEFAULT_CONFIG`). ``faults``: a
    :class:`~fsm_exec.testing.FaultPlan` injected into every run, so a crash can meet a
    lost reply, a timeout or an eventually consistent query. ``at_least_once``: the
    windows of :data:`WINDOWS` your adapters accept (``True``: all of them): where your
    check fails in a run that met one, the point is reported in ``at_least_once``, not as
    a failure (whichever of your assertions failed: check one promise per call to keep
    them apart). The manager's own promises are never excused.
    ``on_restart(collaborators)``: called after each kill, before the restart: forget
    there what your adapters keep in the process's memory (the exchange keeps its orders;
    your adapter's cache of them dies with the process). ``workdir``: where the runs'
    journals go (default: a temporary directory, removed); a failing point's journal is
    kept there to read.

    A run that exercised nothing a crash could break is not ``ok``, even when nothing
    failed: the uncrashed run must see the venue execute a block (a fill) and the position
    handler take its deltas (a hand-off). An adapter that refuses every block makes a
    report whose ``ok`` is false, whose ``failures`` are empty, and whose
    ``not_covered`` (and ``story()``) says what was missing; ``exercised`` counts what
    was covered (see :class:`CrashReport`).

    ``lifecycle``: the user lifecycle the manager runs (default: the default one);
    ``triggers``: the external triggers an operator fires, in this order of preference, on
    a block waiting in a state that has one of them (four-eyes: ``("approve",)``), between
    the updates that run the queue.
    """
    return _crash_points(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart,
                         workdir=workdir, first_only=False, lifecycle=lifecycle,
                         triggers=triggers)


def _crash_points(make_collaborators: MakeCollaborators, batches: Batches, *,
                  check: Check | None, mode: str, config: Mapping[str, Any] | None,
                  faults: FaultPlan | None, at_least_once: bool | Collection[str],
                  on_restart: Callable[[Collaborators], object] | None,
                  workdir: Path | str | None, first_only: bool,
                  lifecycle: Lifecycle | None = None,
                  triggers: Sequence[str] = ()) -> CrashReport:
    """:func:`crash_points`; ``first_only`` stops at the first failing point (``points``
    then counts the points tried up to it)."""
    scenario = _Scenario(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart,
                         lifecycle=lifecycle, triggers=triggers)
    keep = workdir is not None
    failures: list[CrashFailure] = []
    excused: list[CrashFailure] = []
    met: Counter[str] = Counter()
    doubled: list[tuple[CrashPoint, str]] = []
    with _workspace(workdir) as root:
        def attempt(point: CrashPoint | None, n: int) -> _Run:
            log_dir = root / (f"run-{n:04d}-" + (point.id if point else "no-crash"))
            if log_dir.exists():
                shutil.rmtree(log_dir)
            run = scenario.run(point, log_dir)
            windows = scenario.windows(run)
            failure, allowed = scenario.failure(run, str(log_dir) if keep else None, windows)
            met.update(windows if point is not None else ())
            if failure is not None:
                (excused if allowed else failures).append(failure)
            if failure is None or not keep:
                shutil.rmtree(log_dir, ignore_errors=True)
            return run

        base = attempt(None, 0)
        exercised = Counter(scenario.exercised(base))
        injected = tuple(base.world.injections)
        if failures:
            missing = not_covered(exercised)
            return CrashReport(ok=False, points=0, records=len(base.first.records),
                               failures=tuple(failures), mode=mode, total_points=0,
                               exercised=tuple((k, exercised[k]) for k in COVERAGE),
                               not_covered=missing,
                               faults=injected)
        scenario.expected = [r.label for r in base.first.records]
        tried = 0
        points = scenario.points(base)
        for point in points:
            tried += 1
            run = attempt(point, tried)
            doubled.extend((point, b) for b in run.world.positions.doubled(
                run.recovery.in_doubt if run.recovery is not None else None))
            exercised["in_doubt"] += run.recovery is not None and (
                run.recovery.in_doubt is not None)
            if failures and first_only:
                break
    missing = not_covered(exercised)
    return CrashReport(ok=not failures and not nothing_exercised(missing), points=tried,
                       records=len(base.first.records), failures=tuple(failures),
                       at_least_once=tuple(excused), windows_met=tuple(sorted(met.items())),
                       mode=mode, total_points=len(points),
                       exercised=tuple((k, exercised[k]) for k in COVERAGE),
                       not_covered=missing, faults=injected,
                       doubled_hand_offs=tuple(doubled))


def assert_crash_safe(make_collaborators: MakeCollaborators, batches: Batches, *,
                      check: Check | None = None, mode: str = "live",
                      config: Mapping[str, Any] | None = None,
                      faults: FaultPlan | None = None,
                      at_least_once: bool | Collection[str] = False,
                      on_restart: Callable[[Collaborators], object] | None = None,
                      workdir: Path | str | None = None, lifecycle: Lifecycle | None = None,
                      triggers: Sequence[str] = ()) -> CrashReport:
    """:func:`crash_points`, for a test: returns the report when it is ``ok``, else raises
    ``AssertionError`` telling the first failing point's story (it stops there), or what
    the run did not exercise when it exercised nothing a crash could break."""
    report = _crash_points(make_collaborators, batches, check=check, mode=mode,
                           config=config, faults=faults, at_least_once=at_least_once,
                           on_restart=on_restart, workdir=workdir, first_only=True,
                           lifecycle=lifecycle, triggers=triggers)
    if not report.ok:
        raise AssertionError(report.story())
    return report


def crash_point_tests(make_collaborators: MakeCollaborators, batches: Batches, *,
                      check: Check | None = None, mode: str = "live",
                      config: Mapping[str, Any] | None = None,
                      faults: FaultPlan | None = None,
                      at_least_once: bool | Collection[str] = False,
                      on_restart: Callable[[Collaborators], object] | None = None,
                      lifecycle: Lifecycle | None = None, triggers: Sequence[str] = ()
                      ) -> Callable[[CrashPoint | None], None]:
    """A pytest test parametrized by crash point, one test per point (and one without a
    crash, which also fails when the run exercised nothing a crash could break: no fill or
    no hand-off, as :func:`crash_points` reports), each failing with its point's story::

        test_my_adapter_crashes = crash_point_tests(make_collaborators, BATCHES,
                                                    check=filled_at_most_once)

    The uncrashed run that finds the points runs when this is called (at collection).
    Needs pytest."""
    import pytest

    scenario = _Scenario(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart,
                         lifecycle=lifecycle, triggers=triggers)
    with _workspace(None) as root:
        base = scenario.run(None, root / "count")
    scenario.expected = [r.label for r in base.first.records]
    points: list[CrashPoint | None] = [None, *scenario.points(base)]

    @pytest.mark.parametrize("crash_point", points,
                             ids=[p.id if p else "no-crash" for p in points])
    def test_crash_point(crash_point: CrashPoint | None) -> None:
        """The scenario keeps every promise when killed at this crash point."""
        with _workspace(None) as tmp:
            run = scenario.run(crash_point, tmp / "run")
            failure, allowed = scenario.failure(run, None, scenario.windows(run))
            missing = nothing_exercised(not_covered(scenario.exercised(run)))
            faults = tuple(run.world.injections)
        if failure is not None and not allowed:
            raise AssertionError(failure.story())
        if crash_point is None and missing:
            raise AssertionError("\n".join([
                "the scenario exercised nothing a crash could break:",
                *uncovered_lines(missing), faults_line(faults)]))

    return test_crash_point
