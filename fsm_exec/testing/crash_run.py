"""One crash-points scenario: run it, killed at one point or not, restart it on what the
disk kept, and check the manager's promises and the user's."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.blocks import validate_batch
from fsm_exec.core.errors import COMPONENT, ComponentError, InvalidBlockError, describe_exception
from fsm_exec.core.lifecycle import TERMINAL_STATES, BlockState
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.journal.state import RecoveryReport
from fsm_exec.journal.writer import EventLogger
from fsm_exec.manager.manager import ExecutionManager
from fsm_exec.sim.venues import FaultPlan
from fsm_exec.testing.crash_report import HAND_OFF, NO_QUERY, WINDOWS, CrashFailure, CrashPoint
from fsm_exec.testing.crash_world import (
    Batches,
    Check,
    Collaborators,
    MakeCollaborators,
    _Crash,
    _CrashJournal,
    _Trace,
    _World,
)
from fsm_exec.tools.check import check_journal

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle

#: The config crash_points uses when given none: the stateful machine's.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "execution_timeout": 5, "reconciliation_timeout": 2, "max_retries": 3,
    "retry_delay_seconds": 0.5, "max_queue_size": 20}
_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_FAILED = str(BlockState.FAILED)


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
                 on_restart: Callable[[Collaborators], object] | None,
                 lifecycle: Lifecycle | None = None, triggers: Sequence[str] = ()) -> None:
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
        self.lifecycle, self.triggers = lifecycle, tuple(triggers)
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
                em = world.manager(self.config, self.mode, journal, self.lifecycle)
                self._play(run, em)
                journal.close()
            except _Crash:
                world.injections.append(f"the kill {point}")
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
        second = _Trace(live=self.mode == "live")
        journal = run.journals[1] = _CrashJournal(log_dir, self.mode, second)
        world.positions.life, world.positions.trace = 2, second
        em = world.manager(self.config, self.mode, journal, self.lifecycle)
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
            if self.triggers and s["current_block"] is not None and not s["halted"]:
                self._operate(run, em, s["current_block"])
            self._update(run, em, "manual" if s["halted"] else "strategy_manager", None)
        raise _Stop(f"the queue did not finish in {self.updates_allowed} updates: "
                    f"{em.get_execution_status()}")

    def _operate(self, run: _Run, em: ExecutionManager, block_id: str) -> None:
        """An operator fires the first of :attr:`triggers` the block's state allows."""
        lc = self.lifecycle
        state = str(em.block_state(block_id))
        if lc is None or state not in {s.name for s in lc.states}:
            return
        allowed = {t.trigger for t in lc.transitions_from(state) if t.external}
        for event in self.triggers:
            if event in allowed:
                em.trigger(block_id, event, run.world.clock.timestamp(),
                           reason="crash points: the operator")
                run.note(f"fired {event} on {block_id}")
                return

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

    def exercised(self, run: _Run) -> dict[str, int]:
        """What the run ``run`` (uncrashed) exercised: blocks the venue executed (``fills``),
        deltas the position handler took (``hand_offs``) and ``retries``."""
        recs = run.first.records
        return {"fills": len({r.block_id for r in recs if r.deltas}),
                "hand_offs": run.world.positions.inner.handed_off,
                "retries": sum(1 for r in recs if r.label.endswith("->retrying"))}

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
            mode=self.mode, journal=journal, faults=tuple(run.world.injections))
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
        elif kind == "manager_halted" or (  # a fail, or a user lifecycle's move in doubt
                kind == "block_transition" and d.get("dest") == _FAILED and d.get("halts")):
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


