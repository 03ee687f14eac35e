"""Crash recovery and replacement: rebuild a new manager's state from its journal
(the same fold every tool uses), or replace a retired manager with a recovered one.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    COMPONENT,
    ConfigError,
    InvalidArgumentError,
    LifecycleChangedError,
    ReentrantCallError,
)
from fsm_exec.core.lifecycle import _STATE_OF, BlockState
from fsm_exec.drivers.base import (
    Flight,
)
from fsm_exec.drivers.calls import VenueCall
from fsm_exec.journal import codec
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.flight import Measured, measure_held, window_for
from fsm_exec.journal.fold import recovery_state, replay
from fsm_exec.journal.lifecycle_record import describe
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.journal.reader import JournalRecord, read_journal
from fsm_exec.journal.state import (
    ManagerState,
    RecoveryReport,
    ReplayError,
    resolution_of,
)

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager

#: The ends of a block that say how its reconciliation went (``reconciliation_status``).
_RECONCILED = frozenset({str(BlockState.SUCCESS), str(BlockState.FAILED)})


def recover(self: ExecutionManager,
            source: Path | str | Iterable[Path | str] | Iterable[JournalRecord]
            | None = None, *, state_map: Mapping[str, str] | None = None) -> RecoveryReport:
    """See :meth:`ExecutionManager.recover`."""
    self._check_usable(recovering=True)
    if (self.blocks_accepted or self._update_count or self._lc.in_flight
            or self._state.finished):
        raise InvalidArgumentError("recover() must be called on a new manager, before "
                                   "any batch or update_state")
    own = getattr(self._log, "log_dir", None)
    if source is None:
        if own is None:
            raise InvalidArgumentError("recover() without a source needs the manager's "
                                       "journal to be an EventLogger")
        source = own
    same = own is not None and isinstance(source, str | Path) and \
        Path(source).resolve() == Path(own).resolve()
    try:
        if isinstance(source, str | Path) and Path(source).is_dir():
            # the one reading of a log directory: its newest checkpoint checked first
            state = recovery_state(source, COMPONENT)[0]
        else:
            records: Any = (read_journal(source, COMPONENT)
                            if isinstance(source, str | Path) else source)
            state = replay(records)
    except ReplayError as exc:
        r = exc.record
        raise JournalCorruptError(r.path if r else "?", r.line if r else 0,
                                  str(exc)) from None
    except JournalCorruptError:
        raise
    sizes, held = (None, 0) if self._queue_room is None else held_sizes(self, state)
    remapped = state.table.hash != self._table.hash
    if remapped:  # its checkpoint is then state from elsewhere (reset), not the records'
        remap(self, state, state_map)
    with self._mutex:
        deferred = self._needs_recovery
        restarts = state.restarts  # the journal's, as the report says them
        if not deferred and not same:
            # This manager started a journal of its own elsewhere: count its start too (in
            # its own directory the records just replayed hold it already).
            state.starts += self._state.starts
        state.component = COMPONENT
        state.window = self._cfg.duplicate_window  # this run's window, from now on
        state._trim()
        state.flight_cls = Flight
        resolution = None
        fl = state.flight
        # Nothing in flight: the last block's outcome, as the manager that wrote the
        # journal said it (cancelled blocks are never reconciled; none yet: pending).
        self.reconciliation_status = next(
            (end for end in reversed(state.finished.values()) if end in _RECONCILED),
            "pending")
        if fl is not None:
            f = self._f = state.flight = Flight(fl.block, fl.state, fl.attempt, fl.deltas,
                                                fl.handed_off, fl.why)
            f.recovered = True
            f.entered_at = self._clock()
            f.entered = fl.entered
            self._lc.restore(fl.block.block_id, fl.state)
            self.reconciliation_status = "pending"
            resolution = resolution_of(fl, queryable=self._query is not None)
            if resolution in ("query_execution", "reroute_at_least_once"):
                f.call = VenueCall.lost()  # the venue may have executed: ask first
                f.unresolved = True
        self._state = state
        if sizes is not None:  # the bytes of the blocks it holds
            self._sizes, self._held_bytes = sizes, held
        self._needs_recovery = False
        if deferred:
            self._start_journal(reset=not same or remapped)
        else:
            self._write_checkpoint(new_file=True, reset=True)
    report = RecoveryReport(
        queued=tuple(state.queue), in_doubt=fl.block.block_id if fl else None,
        in_doubt_state=_STATE_OF.get(fl.state, fl.state) if fl else None,
        resolution=resolution,
        blocks_executed=state.executed, blocks_failed=state.failed,
        halted=state.halted, halt_reason=state.halt_reason,
        dropped=tuple(state.dropped), records=state.records, restarts=restarts,
        blocks_cancelled=state.cancelled, checkpoint_seq=state.checkpoint_seq)
    if self._operator_action is not None:  # an operator's action, not a restart
        return report
    self._emit("recovered", {
        "queued": len(report.queued), "in_doubt": report.in_doubt,
        "in_doubt_state": fl.state if fl else None, "resolution": resolution,
        "blocks_executed": state.executed, "blocks_failed": state.failed,
        "blocks_cancelled": state.cancelled, "halted": state.halted,
        "dropped": len(report.dropped), "from_seq": state.checkpoint_seq,
        **self._clocks()})
    self._notify_event("recovered", in_doubt=report.in_doubt, resolution=resolution,
                       queued=len(report.queued), halted=state.halted,
                       action=fl.block.action if fl else None,
                       in_doubt_state=fl.state if fl else None)
    return report


def remap(self: ExecutionManager, state: ManagerState,
          state_map: Mapping[str, str] | None) -> None:
    """Carry a journal's state over to this manager's lifecycle: the block in flight moves
    to the state ``state_map`` names for its own (kept when it names none and the new
    lifecycle has it); the finished blocks keep their terminal states (every lifecycle has
    them). Refused, nothing changed, without a mapping, or when the block in flight would
    land in a state that does not exist, or that ends it; judged by the states' kinds in
    each lifecycle, not their names: a block that was sent never lands before the route (the
    venue may hold it: it is never routed again), and one never sent lands only before the
    route or in ``routing`` (never where its deltas would be handed off)."""
    old, new = state.table, self._table
    f = state.flight
    stranded = f is not None and f.state not in new.kinds
    if state_map is None:
        where = (f" Block {f.block.block_id!r} is in state {f.state!r}, which the new "
                 "lifecycle does not have." if f is not None and stranded else "")
        raise LifecycleChangedError(
            f"recover() refused: the journal was written under lifecycle {describe(old)}, "
            f"this manager runs {describe(new)}.{where} Recover with the journal's "
            "lifecycle, or give state_map={old state: new state} (an empty mapping when "
            "every state the journal holds still exists) to carry the state over")
    if f is None:
        state.table = new
        return
    dest = state_map.get(f.state, f.state)
    problem = None
    if dest not in new.kinds:
        problem = (f"the new lifecycle has no state {dest!r}" if dest != f.state
                   else "the new lifecycle does not have it, and state_map does not map it")
    elif dest in new.terminal:
        problem = f"{dest!r} is terminal: a block in flight cannot be mapped to its end"
    elif old.kind(f.state) != "before_route":  # sent: the venue may hold it
        if new.kind(dest) == "before_route" or (dest == "routing" != f.state):
            problem = (f"{f.state!r} is {old.kind(f.state)}: the venue may hold the block, "
                       f"so it can never go back to {dest!r}"
                       + (f" ({new.kind(dest)} in the new lifecycle)" if dest == f.state
                          else ""))
    elif new.kind(dest) != "before_route" and dest != "routing":  # never sent
        problem = (f"{f.state!r} is before_route: the block was never sent, so it cannot be "
                   f"{dest!r} ({new.kind(dest)}), where only a sent block stands")
    if problem is not None:
        raise LifecycleChangedError(
            f"recover() refused, nothing changed: block {f.block.block_id!r} is in state "
            f"{f.state!r} of lifecycle {describe(old)}: {problem}")
    f.state = dest
    state.table = new


def held_sizes(self: ExecutionManager, state: ManagerState) -> tuple[Measured, int]:
    """The bytes each block ``state`` holds (queued, in flight) takes in a checkpoint, and
    their sum; or
    :class:`ConfigError` when they leave no room for this run's full duplicate window (a
    journal whose blocks were accepted under a smaller one: its checkpoints would
    outgrow a journal line as the window fills, and no restart could write one)."""
    sizes = measure_held(state.queue, state.flight)
    room, total = self._queue_room, sum(size for _, size in sizes.values())
    assert room is not None
    if total > room and self._operator_action is None:  # (a tool only drains the queue)
        window = self._cfg.duplicate_window
        fits = window_for(total, self._table, codec.MAX_LINE_BYTES)
        lever = (f"start with duplicate_window at most {fits:,} until the queue has "
                 "drained, or cancel queued blocks (fsm-exec cancel)" if fits else
                 "cancel queued blocks first (fsm-exec cancel): no window fits beside them")
        raise ConfigError([
            f"duplicate_window: {window:,}: the journal's {len(sizes):,} queued and in-flight "
            f"block(s) take {total:,} bytes of a checkpoint, which holds at most {room:,} "
            f"beside a full window of {window:,} finished blocks; {lever}"])
    return sizes, total


def reopen(self: ExecutionManager) -> ExecutionManager:
    """See :meth:`ExecutionManager.reopen`."""
    log_dir = getattr(self._log, "log_dir", None)
    if log_dir is None:
        raise InvalidArgumentError("reopen() needs a journal to recover from: give the "
                                   "manager an EventLogger")
    taken = getattr(self._log, "taken_by_another", None)
    if callable(taken) and taken(COMPONENT, self):  # before anything is touched
        raise JournalLockedError(log_dir, os.getpid(), component=COMPONENT)
    if self._call_running() and not self._f.call.wait(  # type: ignore[union-attr]
            self._cfg.execution_timeout):  # one abandoned may still fill: give it time
        raise ReentrantCallError(
            "reopen() while a venue call abandoned at execution_timeout is still "
            "running on its worker thread: a replacement could route the block again "
            "and the venue fill it twice. Call it once that call has returned, or "
            "restart the process (which ends the call)")
    with self._mutex:
        if self._busy is not None and not self._cut_short():
            where = ("from a collaborator" if self._busy == threading.get_ident()
                     else "in another thread")
            raise ReentrantCallError(
                f"reopen() while update_state is running ({where}): two managers would "
                "share one journal; call it once that update_state has returned or "
                "raised")
        if self._interrupted is None:
            self._interrupted = "replaced by reopen()"
        resync = getattr(self._log, "resync", None)
        if callable(resync):  # what was written must be readable first (ours only:
            resync(COMPONENT)  # another component's loss is still its to learn)
        else:
            sync = getattr(self._log, "sync", None)
            if callable(sync):
                sync()
    remove = getattr(self._log, "remove_fsync_listener", None)
    if callable(remove):  # the retired manager is not told any more
        remove(self._fsync_listener)
    args, kwargs = self._init_args
    health = kwargs.get("health_manager")
    if health is not None:
        health.unregister_component(self.health_name, self._health_checker)
    new = type(self)(*args, **kwargs)  # built as this one was
    new.recover()
    return new
