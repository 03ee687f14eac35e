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

import contextlib
import datetime as dt
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from fsm_exec.boundary.blocks import validate_batch
from fsm_exec.core.errors import COMPONENT, ComponentError, InvalidBlockError, describe_exception
from fsm_exec.core.lifecycle import TERMINAL_STATES, Trigger
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.journal.state import RecoveryReport
from fsm_exec.journal.writer import EventLogger, _Journal
from fsm_exec.manager.manager import ExecutionManager
from fsm_exec.sim.venues import (
    FAKE_EPOCH,
    FakeClock,
    FaultPlan,
    FaultyPositionHandler,
    FaultyReconciliation,
    FaultyVenue,
    _Delegating,
)
from fsm_exec.tools.check import check_journal

__all__ = ["WINDOWS", "CrashFailure", "CrashPoint", "CrashReport", "assert_crash_safe",
           "crash_point_tests", "crash_points"]

#: A venue adapter without ``query_execution``: a block whose outcome was lost (to an
#: error, a timeout or a crash) is routed again under the same ``block_id``.
NO_QUERY = "no_query_at_least_once"
#: A crash after the position handler returned and before the journal recorded the
#: hand-off (``positions_updated`` durable, live; the next record, backtest): the deltas
#: are handed off again.
HAND_OFF = "position_hand_off"
#: The at-least-once windows the README's "Guarantees" documents, and what each means.
WINDOWS: Mapping[str, str] = {
    NO_QUERY: "the venue adapter has no query_execution: a block whose outcome was lost is "
              "routed again under the same block_id (at-least-once at the venue: it must "
              "deduplicate by block_id)",
    HAND_OFF: "the crash came after the position handler returned and before the journal "
              "held the hand-off: the deltas are handed off again (at-least-once: the "
              "handler must deduplicate)",
}

#: The config crash_points uses when given none: the stateful machine's.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
    "retry_delay_seconds": 0.5, "max_queue_size": 20}
_REQUIRED = ("data_provider", "position_update_handler", "execution_interface_manager",
             "reconciliation_component")
_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_FAIL = str(Trigger.FAIL)
_SHOWN = 12  # records shown before a crash point in a story

Collaborators = Mapping[str, Any]
MakeCollaborators = Callable[[], Collaborators]
Check = Callable[[Collaborators], object]
Batches = Sequence[Sequence[Mapping[str, Any]]]


# ------------------------------------------------------------------------ the report


@attrs.frozen(order=True)
class CrashPoint:
    """Where a run is killed: right ``before`` record ``record`` (1-based, in the journal of
    the uncrashed run) is written, or right ``after`` it became durable. ``event`` says
    what that record is (``b1 routing->pending_reconciliation``, ``block_accepted b2``)."""

    record: int
    when: Literal["before", "after"]
    event: str = attrs.field(default="", order=False)

    def __str__(self) -> str:
        return f"{self.when} record {self.record}" + (f" ({self.event})" if self.event else "")

    @property
    def id(self) -> str:
        """A short id for a parametrized test: ``before-9-positions_updated-b1``."""
        return re.sub(r"[^A-Za-z0-9_.>-]+", "-", f"{self.when}-{self.record}-{self.event}"
                      ).strip("-")


@attrs.frozen
class CrashFailure:
    """One crash point where a promise broke.

    ``point`` (``None``: the scenario fails without any crash), ``records`` (what the
    journal had been asked to write before the kill, one short line each), ``durable``
    (how many of them survived: the rest were lost with the crash), ``problem`` (what went
    wrong), ``windows`` (the at-least-once windows of :data:`WINDOWS` the run met, empty
    when none), ``in_doubt``, ``in_doubt_state`` and ``resolution`` (how ``recover()``
    settled the block left in flight), ``after_restart`` (what the restarted run did),
    ``mode``, and ``journal`` (the run's log directory, kept when ``workdir`` was given).
    """

    point: CrashPoint | None
    records: tuple[str, ...]
    durable: int
    problem: str
    windows: tuple[str, ...] = ()
    in_doubt: str | None = None
    in_doubt_state: str | None = None
    resolution: str | None = None
    after_restart: tuple[str, ...] = ()
    mode: str = "live"
    journal: str | None = None

    def story(self) -> str:
        """The failing point as a few readable lines: the crash, what the disk kept, the
        restart, what went wrong, and the window it falls in."""
        if self.point is None:
            head = [f"without any crash ({self.mode} mode), the scenario breaks a promise:"]
        else:
            lost = len(self.records) - self.durable
            moment = ("just before writing that record" if self.point.when == "before"
                      else "just after that record became durable")
            head = [f"crash {self.point}, {self.mode} mode: the process dies {moment}.",
                    f"Of the {len(self.records)} records written, {self.durable} were "
                    f"durable" + (f"; the last {lost} were lost with the crash (written, "
                                  "not yet fsynced):" if lost else ":")]
            first = max(0, len(self.records) - _SHOWN)
            if first:
                head.append(f"  ... {first} earlier records")
            for i in range(first, len(self.records)):
                mark = "  (lost)" if i >= self.durable else ""
                head.append(f"  {i + 1:4d}  {self.records[i]}{mark}")
            if self.in_doubt is not None:
                head.append(f"The restarted manager recovered {self.in_doubt} in doubt "
                            f"({self.in_doubt_state}), settled by {self.resolution}.")
            else:
                head.append("The restarted manager recovered no block in flight.")
        if self.after_restart:
            head.append("Then: " + "; ".join(self.after_restart) + ".")
        head.append("What went wrong: " + self.problem.replace("\n", "\n    "))
        for w in self.windows:
            head.append(f"At-least-once window {w}: {WINDOWS[w]} (README, Guarantees).")
        if self.journal is not None:
            head.append(f"Journal kept in {self.journal} (fsm-exec check {self.journal}).")
        return "\n".join(head)


@attrs.frozen
class CrashReport:
    """What :func:`crash_points` found.

    ``ok`` (no failure), ``points`` (crash points tried), ``records`` (records the
    uncrashed run wrote), ``failures`` (:class:`CrashFailure`, in point order),
    ``at_least_once`` (points where your check failed inside an at-least-once window you
    declared with ``at_least_once=``: what that window allows, so not a failure), and
    ``windows_met`` (per window, how many points met it, whether your check held there
    or not), ``mode``, and ``total_points`` (the scenario's crash points: more than
    ``points`` when :func:`assert_crash_safe` stopped at the first failure).
    """

    ok: bool
    points: int
    records: int
    failures: tuple[CrashFailure, ...] = ()
    at_least_once: tuple[CrashFailure, ...] = ()
    windows_met: tuple[tuple[str, int], ...] = ()
    mode: str = "live"
    total_points: int | None = None

    def summary(self) -> str:
        """One line: points tried, failures, windows met."""
        total = self.total_points if self.total_points is not None else self.points
        tried = f"{self.points} of {total}" if total != self.points else f"{self.points}"
        text = (f"{tried} crash points over {self.records} journal records "
                f"({self.mode}): " + ("ok" if self.ok else f"{len(self.failures)} failed"))
        if total != self.points:
            text += " (stopped at the first)"
        if self.at_least_once:
            text += (f"; {len(self.at_least_once)} broke your check inside a declared "
                     f"at-least-once window")
        if self.windows_met:
            text += "; windows met: " + ", ".join(f"{w} at {n}" for w, n in self.windows_met)
        return text

    def story(self) -> str:
        """The summary, then the first failure's story (or the first declared
        at-least-once point's, when nothing failed)."""
        shown = self.failures or self.at_least_once
        if not shown:
            return self.summary()
        what = "first failing point" if self.failures else "first at-least-once point"
        return f"{self.summary()}\n\n{what}:\n{shown[0].story()}"


# ------------------------------------------------------------------------ the kill


class _Crash(BaseException):
    """The simulated kill: a BaseException, so nothing in the manager takes it for an error
    of its own (it retires the manager, as any interrupt does)."""


@attrs.frozen
class _Rec:
    label: str
    block_id: str | None = None
    deltas: bool = False

    @classmethod
    def of(cls, event_type: str, data: Mapping[str, Any]) -> _Rec:
        b = data.get("block_id")
        block_id = b if isinstance(b, str) else None
        if event_type == "block_transition":
            return cls(f"{block_id} {data.get('source')}->{data.get('dest')}", block_id,
                       "deltas" in data)
        return cls(f"{event_type} {block_id}" if block_id else event_type, block_id)


class _Trace:
    """The records one life of the manager wrote, and how many of them are durable; kills
    the process at its crash point."""

    def __init__(self, *, live: bool, kill: CrashPoint | None = None,
                 expected: Sequence[str] | None = None) -> None:
        self.live, self.kill, self.expected = live, kill, expected
        self.records: list[_Rec] = []
        self.ends: list[int] = []  # the file offset after each record written
        self.pending = False  # a record being written
        self.durable = 0
        self.durable_bytes = 0
        self.marks: list[int] = []  # the durable count after each durability event
        self.diverged: str | None = None
        self.killed = False

    def writing(self, rec: _Rec) -> None:
        k = len(self.records) + 1
        if self.expected is not None and self.diverged is None:
            was = self.expected[k - 1] if k <= len(self.expected) else "nothing"
            if was != rec.label:
                self.diverged = (f"record {k} was {was!r} in the first run and {rec.label!r} "
                                 f"in this one")
        if self._due(k, "before"):
            raise _Crash
        self.records.append(rec)
        self.pending = True

    def written(self, size: int) -> None:
        self.ends.append(size)
        self.pending = False
        if not self.live:  # backtest: every record counts as durable once written
            self._durable_to(len(self.ends), size)

    def synced(self, size: int) -> None:
        last = self.ends[-1] if self.ends else 0
        self._durable_to(len(self.ends) + (self.pending and size > last), size)

    def _durable_to(self, n: int, size: int) -> None:
        if n <= self.durable:
            return
        before, self.durable, self.durable_bytes = self.durable, n, size
        self.marks.append(n)
        kill = self.kill
        if (kill is not None and kill.when == "after" and before < kill.record <= n
                and self.diverged is None):
            self.killed = True
            raise _Crash

    def _due(self, k: int, when: str) -> bool:
        kill = self.kill
        due = (kill is not None and kill.when == when and kill.record == k
               and self.diverged is None)
        self.killed = self.killed or due
        return due


def _today() -> dt.date:
    return FAKE_EPOCH.date()  # one day for the whole run: no rotation at midnight


class _CrashJournal(EventLogger):
    """An EventLogger that traces its records and their durability and kills the process at
    the trace's crash point. Unbuffered (every record reaches the file when written), and
    its fsync is the durability point without the disk's cost: the crash itself truncates
    the file to the last fsync, as a power cut would."""

    def __init__(self, log_dir: Path, mode: str, trace: _Trace) -> None:
        super().__init__(log_dir, mode, today=_today, buffer_bytes=0, retention_days=None)
        self.trace = trace

    def _size(self) -> int:
        return os.path.getsize(self.path_for(COMPONENT))

    # Its one writer is the manager, and it writes one component's journal only.
    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True) -> None:
        self.trace.writing(_Rec.of(event_type, data))
        super().log_event(timestamp, event_type, component, data, sync=sync)
        self.trace.written(self._size())

    def checkpoint(self, component: str, data: dict[str, Any], *, timestamp: Any = None,
                   new_file: bool = True) -> int:
        self.trace.writing(_Rec("checkpoint"))
        seq = super().checkpoint(component, data, timestamp=timestamp, new_file=new_file)
        self.trace.written(self._size())
        return seq

    def _fsync(self, j: _Journal) -> None:
        j.unsynced = False  # durable from here on: a crash keeps every byte written so far
        if self.mode == "live":
            self.trace.synced(os.path.getsize(j.path))


# ------------------------------------------------------------------------ one run


class _HandOffs(_Delegating):
    """Notes each hand-off the position handler took: (life, block, its deltas record)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trace: _Trace | None = None
        self.life = 1
        self.taken: list[tuple[int, str | None, int]] = []

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> Any:
        result = self.inner.update_state(timestamp, trigger_source, deltas)
        trace = self.trace
        if trace is not None:
            at = next((i for i in range(len(trace.records) - 1, -1, -1)
                       if trace.records[i].deltas), -1)
            self.taken.append((self.life, trace.records[at].block_id if at >= 0 else None,
                               at))
        return result


class _World:
    """One run's outside world: your collaborators, the kit's fault wrappers around them
    and the fake clock. It outlives the crash."""

    def __init__(self, make: MakeCollaborators, faults: FaultPlan | None,
                 hang_seconds: float) -> None:
        given = make()
        if not isinstance(given, Mapping):
            raise TypeError(f"make_collaborators() must return a mapping with "
                            f"{', '.join(_REQUIRED)}; got {type(given).__name__}")
        missing = [k for k in _REQUIRED if k not in given]
        if missing:
            raise TypeError(f"make_collaborators() is missing {', '.join(missing)}")
        self.given: Collaborators = given
        self.clock = FakeClock()
        self.venue = FaultyVenue(given["execution_interface_manager"], clock=self.clock,
                                 hang_seconds=hang_seconds)
        self.reconciliation = FaultyReconciliation(given["reconciliation_component"],
                                                   self.clock)
        self.positions = _HandOffs(FaultyPositionHandler(
            given["position_update_handler"], reconciliation=self.reconciliation))
        if faults is not None:
            self.venue.faults.extend(faults.venue)
            self.reconciliation.script.extend(faults.reconciliation)
            self.positions.inner.failures.extend(faults.positions)

    def manager(self, config: Mapping[str, Any], mode: str,
                journal: EventLogger) -> ExecutionManager:
        return ExecutionManager(dict(config), self.given["data_provider"], mode,
                                self.positions, self.venue, self.reconciliation,
                                event_logger=journal, clock=self.clock, sleep=self.clock.sleep)


class _Stop(Exception):
    """The run cannot go on: a promise broke on the way (the message says which)."""


@attrs.define
class _Run:
    point: CrashPoint | None
    world: _World
    log_dir: Path
    first: _Trace
    next_batch: int = 0
    calling: int | None = None  # the batch whose update_state call is under way
    recovery: RecoveryReport | None = None
    actions: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)  # the manager's promises broken
    user_problem: str | None = None  # your check broken
    records: list[JournalRecord] = attrs.Factory(list)  # the whole journal, at the end
    journals: dict[int, EventLogger] = attrs.Factory(dict)  # per life

    def note(self, action: str) -> None:
        if self.recovery is not None or self.first.killed:
            self.actions.append(action)


class _Scenario:
    """A scripted scenario and everything needed to run it, crashed at one point or not."""

    def __init__(self, make_collaborators: MakeCollaborators, batches: Batches, *,
                 check: Check | None, mode: str, config: Mapping[str, Any] | None,
                 faults: FaultPlan | None, at_least_once: bool | Collection[str],
                 on_restart: Callable[[Collaborators], object] | None) -> None:
        if mode not in ("live", "backtest"):
            raise ValueError(f"mode must be 'live' or 'backtest', got {mode!r}")
        if faults is not None and not isinstance(faults, FaultPlan):
            raise TypeError(f"faults must be a FaultPlan, got {type(faults).__name__}")
        if isinstance(at_least_once, bool):
            declared = frozenset(WINDOWS) if at_least_once else frozenset()
        else:
            declared = frozenset(at_least_once)
            unknown = sorted(declared - set(WINDOWS))
            if unknown or isinstance(at_least_once, str):
                raise ValueError(f"at_least_once must be a bool or a collection of "
                                 f"{', '.join(WINDOWS)}; unknown: {unknown or at_least_once}")
        self.make, self.check, self.mode = make_collaborators, check, mode
        self.config: Mapping[str, Any] = dict(DEFAULT_CONFIG if config is None else config)
        self.faults, self.declared, self.on_restart = faults, declared, on_restart
        self.batches = [list(b) for b in batches]
        self.order: list[str] = []
        taken: set[str] = set()
        for i, batch in enumerate(self.batches):
            try:
                ids = [b.block_id for b in validate_batch(batch, taken)]
            except InvalidBlockError as exc:
                raise ValueError(f"crash_points: batch {i} would be refused before any "
                                 f"crash: {exc}") from None
            if not ids:
                raise ValueError(f"crash_points: batch {i} is empty")
            taken.update(ids)
            self.order.extend(ids)
        if not self.order:
            raise ValueError("crash_points needs at least one batch")
        timeout = float(self.config.get("execution_timeout", 30))
        self.hang_seconds = timeout + 1.0
        self.updates_allowed = 8 + 4 * len(self.order)
        self.expected: list[str] | None = None

    # -------------------------------------------------------------- points
    def points(self, base: _Run) -> list[CrashPoint]:
        """Every crash point of the uncrashed run ``base``: before each record, and after
        each durability event (one fsync makes a group of live records durable at once)."""
        recs = base.first.records
        pts = [CrashPoint(k, "before", recs[k - 1].label) for k in range(1, len(recs) + 1)]
        pts += [CrashPoint(m, "after", recs[m - 1].label) for m in base.first.marks]
        return sorted(pts, key=lambda p: (p.record, p.when != "before"))

    # -------------------------------------------------------------- running
    def run(self, point: CrashPoint | None, log_dir: Path) -> _Run:
        """One run, killed at ``point`` (``None``: never), then checked."""
        world = _World(self.make, self.faults, self.hang_seconds)
        trace = _Trace(live=self.mode == "live", kill=point, expected=self.expected)
        run = _Run(point, world, log_dir, trace)
        world.positions.trace = trace
        try:
            journal = run.journals[0] = _CrashJournal(log_dir, self.mode, trace)
            try:
                em = world.manager(self.config, self.mode, journal)
                self._play(run, em)
                journal.close()
            except _Crash:
                journal._abandon()  # a dead process writes nothing more
                em = self._restart(run)
            self._verify(run, em)
        except _Stop as exc:
            run.problems.append(str(exc))
        except Exception as exc:  # anything the manager or a collaborator raised
            run.problems.append(f"{describe_exception(exc)} was raised"
                                + (" after the restart" if run.recovery is not None else ""))
        finally:
            for j in run.journals.values():
                j._abandon()  # files and lock released whatever happened (closed: no-op)
        if trace.diverged is not None:
            run.problems.insert(0, f"the scenario did not replay the same way: "
                                   f"{trace.diverged} (make_collaborators() must build "
                                   f"the same world every time)")
        elif point is not None and not trace.killed:
            run.problems.insert(0, f"the run never reached {point}: it wrote "
                                   f"{len(trace.records)} records")
        return run

    def _restart(self, run: _Run) -> ExecutionManager:
        log_dir, trace, world = run.log_dir, run.first, run.world
        files = journal_files(log_dir, COMPONENT)
        if len(files) > 1:  # pragma: no cover - the first life never rotates (fixed today)
            raise RuntimeError(f"crash_points: the first run wrote {len(files)} journal files")
        for f in files:
            os.truncate(f, trace.durable_bytes)  # what was not fsynced is lost
        surviving = list(read_journal(log_dir, COMPONENT))
        if self.on_restart is not None:
            self.on_restart(world.given)
        journal = run.journals[1] = _CrashJournal(log_dir, self.mode,
                                                   _Trace(live=self.mode == "live"))
        world.positions.life, world.positions.trace = 2, None
        em = world.manager(self.config, self.mode, journal)
        try:
            run.recovery = em.recover()
        except Exception as exc:
            raise _Stop(f"recover() refused the surviving journal: "
                        f"{describe_exception(exc)}") from None
        halted = _halted_in(surviving)
        if em.halted != halted:
            raise _Stop(f"the surviving journal {'holds' if halted else 'holds no'} halt, "
                        f"but the recovered manager is {'not ' if halted else ''}halted")
        if em.halted:
            self._update(run, em, "manual", None)
            run.note(f"resumed the recovered halt ({run.recovery.halt_reason}) with a manual "
                     "update")
        self._play(run, em, again=run.calling)
        journal.close()
        return em

    def _play(self, run: _Run, em: ExecutionManager, *, again: int | None = None) -> None:
        for i in range(run.next_batch, len(self.batches)):
            run.calling = i
            self._submit(run, em, i, again=i == again)
            run.calling, run.next_batch = None, i + 1
            if em.halted:
                reason = em.get_execution_status()["halt_reason"]
                self._update(run, em, "manual", None)
                run.note(f"resumed a halt ({reason}) with a manual update")
        for ticks in range(self.updates_allowed):
            s = em.get_execution_status()
            if not s["queue_length"] and s["current_block"] is None and not s["halted"]:
                if ticks:
                    run.note(f"{ticks} update{'s' * (ticks != 1)} to finish the queue")
                return
            self._update(run, em, "manual" if s["halted"] else "strategy_manager", None)
        raise _Stop(f"the queue did not finish in {self.updates_allowed} updates: "
                    f"{em.get_execution_status()}")

    def _submit(self, run: _Run, em: ExecutionManager, i: int, *, again: bool) -> None:
        batch = self.batches[i]
        ids = [b["block_id"] for b in batch]
        taken = [b for b in ids if em.block_state(b) is not None]
        if again and taken and len(taken) != len(ids):
            raise _Stop(f"batch {i} was partly taken before the crash: {taken} of {ids}")
        before = em.get_execution_status()["blocks_accepted"]
        try:
            self._update(run, em, "strategy_manager", batch)
        except InvalidBlockError as exc:
            if again and taken and all(p.field == "block_id" for p in exc.problems) and (
                    em.get_execution_status()["blocks_accepted"] == before):
                run.note(f"submitted batch {i} again: refused whole, taken before the crash")
                return
            raise _Stop(f"batch {i} ({', '.join(ids)}) was refused: {exc}") from None
        except ComponentError as exc:
            if exc.error_code == "EXEC-003":
                raise _Stop(f"batch {i} was refused: {exc}") from None
            raise
        if taken:
            raise _Stop(f"batch {i} was taken before the crash and again after it")
        run.note(f"submitted batch {i} again: taken" if again else f"submitted batch {i}")

    def _update(self, run: _Run, em: ExecutionManager, trigger: str,
                batch: list[Mapping[str, Any]] | None) -> None:
        run.world.clock.advance(1.0)
        try:
            em.update_state(run.world.clock.timestamp(), trigger, batch)
        except InvalidBlockError:
            raise
        except ComponentError as exc:
            if exc.error_code == "EXEC-003" or not (
                    self.mode == "backtest" and exc.block_id is not None):
                raise
            # backtest raises a block's own failure; the rest of the queue waits

    # -------------------------------------------------------------- checking
    def _verify(self, run: _Run, em: ExecutionManager) -> None:
        problems = run.problems
        report = check_journal(run.log_dir)
        if not report.ok:
            problems.append(f"the journal breaks the lifecycle: {report.problem}")
        run.records = records = list(read_journal(run.log_dir, COMPONENT))
        ends: dict[str, list[str]] = {}
        started: list[str] = []
        ended: list[str] = []
        for r in records:
            if r.event_type != "block_transition":
                continue
            b, d = r.data.get("block_id"), r.data
            if not isinstance(b, str):
                continue
            if d.get("source") == "queued" and b not in started:
                started.append(b)
            if d.get("dest") in _TERMINAL:
                ends.setdefault(b, []).append(d["dest"])
                ended.append(b)
        stray = sorted(set(ends) - set(self.order))
        if stray:
            problems.append(f"the journal ends blocks never submitted: {stray}")
        for b in self.order:
            n = len(ends.get(b, ()))
            if n != 1:
                problems.append(f"{b} ended {n} times" + (
                    f" ({', '.join(ends[b])})" if n else ": it never finished"))
        if started != [b for b in self.order if b in started]:
            problems.append(f"blocks started in the order {started}, submitted {self.order}")
        if ended != [b for b in self.order if b in ended] and len(set(ended)) == len(ended):
            problems.append(f"blocks ended in the order {ended}, submitted {self.order}")
        s = em.get_execution_status()
        if s["blocks_accepted"] != len(self.order):
            problems.append(f"the manager counts {s['blocks_accepted']} blocks accepted, the "
                            f"scenario submitted {len(self.order)}: a batch lost or taken "
                            "twice")
        unfinished = [b for b in self.order if str(em.block_state(b)) not in _TERMINAL]
        if unfinished:
            problems.append(f"the manager does not hold {unfinished} as finished")
        if self.check is not None:
            try:
                self.check(run.world.given)
            except AssertionError as exc:
                run.user_problem = f"your check failed: {exc}" if str(exc) else (
                    "your check failed (AssertionError)")
            except Exception as exc:
                run.user_problem = f"your check raised {describe_exception(exc)}"

    def windows(self, run: _Run) -> tuple[str, ...]:
        """The at-least-once windows this run met."""
        met: list[str] = []
        if any(r.event_type == "block_transition"
               and r.data.get("resolved_by") == NO_QUERY for r in run.records):
            met.append(NO_QUERY)
        rep = run.recovery
        if rep is not None and rep.resolution == "hand_off_then_reconcile":
            durable = run.first.records[:run.first.durable]
            last = next((i for i in range(len(durable) - 1, -1, -1)
                         if durable[i].deltas and durable[i].block_id == rep.in_doubt), -1)
            if (1, rep.in_doubt, last) in run.world.positions.taken:
                met.append(HAND_OFF)
        return tuple(met)

    def failure(self, run: _Run, journal: str | None, windows: tuple[str, ...]
                ) -> tuple[CrashFailure | None, bool]:
        """The run's failure, if any (``windows``: those it met), and whether it falls in
        a declared window."""
        problem = "; ".join(run.problems) if run.problems else run.user_problem
        if problem is None:
            return None, False
        rep, trace = run.recovery, run.first
        failure = CrashFailure(
            point=run.point, records=tuple(r.label for r in trace.records),
            durable=trace.durable if run.point is not None else len(trace.records),
            problem=problem, windows=windows,
            in_doubt=rep.in_doubt if rep else None,
            in_doubt_state=str(rep.in_doubt_state) if rep and rep.in_doubt_state else None,
            resolution=rep.resolution if rep else None, after_restart=tuple(run.actions),
            mode=self.mode, journal=journal)
        excused = (not run.problems and bool(windows)
                   and bool(set(windows) & self.declared))
        return failure, excused


def _halted_in(records: Sequence[JournalRecord]) -> bool:
    """Whether the records say the manager is halted (read here, not by the replay)."""
    halted = False
    for r in records:
        kind, d = r.event_type, r.data
        if kind == "checkpoint":
            halted = bool(d.get("halted"))
        elif kind == "manager_halted" or (
                kind == "block_transition" and d.get("trigger") == _FAIL and d.get("halts")):
            halted = True
        elif kind == "manager_resumed":
            halted = False
    return halted


@contextlib.contextmanager
def _workspace(workdir: Path | str | None) -> Iterator[Path]:
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="fsm_exec-crash-") as tmp:
            yield Path(tmp)
    else:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path


# ------------------------------------------------------------------------ the API


def crash_points(make_collaborators: MakeCollaborators, batches: Batches, *,
                 check: Check | None = None, mode: str = "live",
                 config: Mapping[str, Any] | None = None, faults: FaultPlan | None = None,
                 at_least_once: bool | Collection[str] = False,
                 on_restart: Callable[[Collaborators], object] | None = None,
                 workdir: Path | str | None = None) -> CrashReport:
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
    """
    return _crash_points(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart,
                         workdir=workdir, first_only=False)


def _crash_points(make_collaborators: MakeCollaborators, batches: Batches, *,
                  check: Check | None, mode: str, config: Mapping[str, Any] | None,
                  faults: FaultPlan | None, at_least_once: bool | Collection[str],
                  on_restart: Callable[[Collaborators], object] | None,
                  workdir: Path | str | None, first_only: bool) -> CrashReport:
    """:func:`crash_points`; ``first_only`` stops at the first failing point (``points``
    then counts the points tried up to it)."""
    scenario = _Scenario(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart)
    keep = workdir is not None
    failures: list[CrashFailure] = []
    excused: list[CrashFailure] = []
    met: Counter[str] = Counter()
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
        if failures:
            return CrashReport(ok=False, points=0, records=len(base.first.records),
                               failures=tuple(failures), mode=mode, total_points=0)
        scenario.expected = [r.label for r in base.first.records]
        tried = 0
        points = scenario.points(base)
        for point in points:
            tried += 1
            attempt(point, tried)
            if failures and first_only:
                break
    return CrashReport(ok=not failures, points=tried, records=len(base.first.records),
                       failures=tuple(failures), at_least_once=tuple(excused),
                       windows_met=tuple(sorted(met.items())), mode=mode,
                       total_points=len(points))


def assert_crash_safe(make_collaborators: MakeCollaborators, batches: Batches, *,
                      check: Check | None = None, mode: str = "live",
                      config: Mapping[str, Any] | None = None,
                      faults: FaultPlan | None = None,
                      at_least_once: bool | Collection[str] = False,
                      on_restart: Callable[[Collaborators], object] | None = None,
                      workdir: Path | str | None = None) -> CrashReport:
    """:func:`crash_points`, for a test: returns the report when it is ``ok``, else raises
    ``AssertionError`` telling the first failing point's story (it stops there)."""
    report = _crash_points(make_collaborators, batches, check=check, mode=mode,
                           config=config, faults=faults, at_least_once=at_least_once,
                           on_restart=on_restart, workdir=workdir, first_only=True)
    if not report.ok:
        raise AssertionError(report.story())
    return report


def crash_point_tests(make_collaborators: MakeCollaborators, batches: Batches, *,
                      check: Check | None = None, mode: str = "live",
                      config: Mapping[str, Any] | None = None,
                      faults: FaultPlan | None = None,
                      at_least_once: bool | Collection[str] = False,
                      on_restart: Callable[[Collaborators], object] | None = None
                      ) -> Callable[[CrashPoint | None], None]:
    """A pytest test parametrized by crash point, one test per point (and one without a
    crash), each failing with its point's story::

        test_my_adapter_crashes = crash_point_tests(make_collaborators, BATCHES,
                                                    check=filled_at_most_once)

    The uncrashed run that finds the points runs when this is called (at collection).
    Needs pytest."""
    import pytest

    scenario = _Scenario(make_collaborators, batches, check=check, mode=mode, config=config,
                         faults=faults, at_least_once=at_least_once, on_restart=on_restart)
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
        if failure is not None and not allowed:
            raise AssertionError(failure.story())

    return test_crash_point
