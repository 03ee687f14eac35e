"""The calls and the queue: one update_state after its entry checks, a batch accepted (or
refused whole), and the queue run one block at a time through the driver.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from fsm_exec.boundary.blocks import InstructionBlock, convert_batch
from fsm_exec.core.errors import (
    AlreadyAcceptedError,
    ComponentError,
    InvalidBlockError,
    QueueFullError,
)
from fsm_exec.core.lifecycle import BlockState
from fsm_exec.drivers.base import Flight
from fsm_exec.journal.flight import block_data, data_size, measure_held

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager

_QUEUED = str(BlockState.QUEUED)
# Errors about the manager itself rather than a block: raised in preference to a refusal.
_SYSTEM_CODES = frozenset({"EXEC-009", "EXEC-012"})
#: The frame an update_state of the manager runs in (running_here looks for it).
_UPDATE_STATE = "ExecutionManager.update_state"


def cut_short(self: ExecutionManager) -> bool:
    """True (and the manager retired) if the last update_state on this thread died
    before it could say it had ended: an interrupt at its very last lines."""
    if self._busy != threading.get_ident() or self._running_here():
        return False
    self._interrupted = "an update_state that never finished"
    self._busy = None
    return True


def running_here(self: ExecutionManager) -> bool:
    """True if an update_state of this manager is on the current thread's stack, below
    the call asking (``update_state`` or ``interrupted``, which reach here through
    ``_cut_short``)."""
    frame = sys._getframe(3)
    while frame is not None:
        if frame.f_code.co_qualname == _UPDATE_STATE and frame.f_locals.get("self") is self:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def update(self: ExecutionManager, timestamp: Any, stamp: str, trigger_source: str,
           instruction_blocks: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """One update_state, once its entry checks passed: checkpoint if due, take the batch,
    resume on ``manual``, run the queue, and account for the call."""
    t0 = self._t0 = self._clock()
    self._ts = stamp
    refusal: ComponentError | None = None
    try:
        self._maybe_checkpoint()
        if instruction_blocks is not None:
            try:
                self._accept(timestamp, instruction_blocks)
            except AlreadyAcceptedError:
                raise  # taken before: this call does nothing, not even the queue
            except (InvalidBlockError, QueueFullError) as exc:
                refusal = exc
        state = self._state
        if (state.halted or self._pending_halt is not None) and trigger_source == "manual":
            self._resume(timestamp)
            state = self._state
        if not (state.halted or self._pending_halt is not None) and (
                state.queue or self._f is not None):
            self._advance(timestamp)
    except ComponentError as exc:
        self._end_update(timestamp, trigger_source, t0, failing=True)
        if refusal is None:
            raise
        if exc.error_code not in _SYSTEM_CODES:
            # The caller must learn that its batch was not taken: the refusal wins over
            # a block's own failure, which rides along as a note and as __context__.
            refusal.add_note(f"Queued work also stopped on: {exc}")
            raise refusal  # noqa: B904 - __context__ keeps the block's failure
        exc.add_note(f"The batch given with this call was also refused: {refusal}")
        raise
    status = self._end_update(timestamp, trigger_source, t0, failing=False)
    if self._interrupted is not None:  # retired meanwhile (by another thread), idle
        raise self._retired_error()
    if refusal is not None:
        raise refusal
    if status is not None:  # made as the call ended, in its critical section
        return status
    return self.get_execution_status()


def accept_now(self: ExecutionManager, timestamp: Any, stamp: str,
               instruction_blocks: Any) -> None:
    """Accept a batch given outside update_state (or by a collaborator inside it)."""
    with self._mutex:
        if self._interrupted is not None:  # retired (or replaced) since the entry check
            raise self._retired_error()
        outer = self._ts, self._t0
        self._ts, self._t0 = stamp, self._clock()
        try:
            self._accept(timestamp, instruction_blocks)
            if self._unsynced_acceptance and self._busy != threading.get_ident():
                self._barrier()  # accepted means durable, once the call returns
        finally:
            self._ts, self._t0 = outer  # a collaborator's call in update_state: put back


def accept(self: ExecutionManager, ts: Any, batch: Any) -> None:
    """Validate a batch and queue it whole (journaled first), or refuse it whole."""
    with self._mutex:
        try:
            blocks, wires = convert_batch(batch, self._state.taken,
                                          self._redact if self._redact else None,
                                          self._cfg.asset_field)
        except InvalidBlockError as exc:
            again = self._already_accepted(batch)
            if again is not None:  # taken before: say so, and do nothing
                self._record_error(ts, again)
                raise again from None
            exc = self._conflicts(exc, batch)  # an id reused by another block: say so
            exc.scrub(self._redact)  # it quotes the caller's values
            self._record_error(ts, exc)
            raise exc from None
        n = len(blocks)
        if not n:
            return
        cap = self._cfg.max_queue_size
        queued = len(self._state.queue)
        if queued + n > cap:
            self._overflow(ts, QueueFullError(queued, n, cap))
        # The acceptance records' data: as a checkpoint holds each block, then its place.
        # With a checkpointing journal, the batch is measured once, as it is given.
        room = self._queue_room
        records: list[dict[str, Any]] = []
        size = 0
        for b, wire in zip(blocks, wires, strict=True):
            data = block_data(b, wire)
            if room is not None:
                size += data_size(data)
            records.append(data)
        if room is not None:
            s = self._state
            if s.queue or s.flight is not None:
                held = self._held_bytes
            else:  # nothing held: none of its blocks is counted (nor kept) any more
                held = 0
                if self._sizes:
                    self._sizes = {}
            if held + size > room:  # (an upper bound, once blocks left): count exactly
                held = self._recount()
                if held + size > room:  # its next checkpoint could not be written
                    self._overflow(ts, QueueFullError(
                        len(s.queue), n, cap, queue_bytes=held, batch_bytes=size,
                        max_queue_bytes=room, duplicate_window=self._cfg.duplicate_window,
                        in_flight=s.flight is not None))
            self._held_bytes = held + size
        # Journal first: the batch counts as accepted only once every record is written.
        try:
            for i, data in enumerate(records):
                data["batch_index"], data["batch_size"] = i, n
                self._write_held("block_accepted", data,
                                 False,  # durable by the next barrier, before returning
                                 checked=True)  # validated: no NaN, no infinity anywhere
        except ComponentError as exc:  # EXEC-009 (or retired meanwhile): none of it queued
            exc.add_note(not_accepted(blocks))
            raise
        self._unsynced_acceptance = True
        self._state.accept(blocks)
    if self._observers:
        self._notify_event("accepted", count=n, queue_length=len(self._state.queue))


def recount(self: ExecutionManager) -> int:
    """The bytes the blocks held (queued and in flight) take in a checkpoint, exactly:
    each measured once while it is held (``_sizes``)."""
    s = self._state
    sizes = self._sizes = measure_held(s.queue, s.flight, self._sizes)
    return sum(size for _, size in sizes.values())


def overflow(self: ExecutionManager, ts: Any, err: QueueFullError) -> NoReturn:
    """Refuse a batch that would overflow the queue (EXEC-003): said as an event (its
    bytes too, when they refused it), recorded, raised."""
    event: dict[str, int | None] = {
        "queue_length": err.queue_length, "batch_size": err.batch_size,
        "max_queue_size": err.max_queue_size}
    if err.queue_bytes is not None:
        event.update(queue_bytes=err.queue_bytes, batch_bytes=err.batch_bytes,
                     max_queue_bytes=err.max_queue_bytes)
    self._emit("execution_queue_overflow", event)
    self._record_error(ts, err)
    raise err


_NAMED = 20  # block ids a note names before it counts the rest


def not_accepted(blocks: Sequence[InstructionBlock]) -> str:
    """The note on a journal failure while a batch was being accepted: which blocks were
    not, and that they must be submitted again."""
    ids = ", ".join(repr(b.block_id) for b in blocks[:_NAMED])
    more = f" and {len(blocks) - _NAMED} more" if len(blocks) > _NAMED else ""
    return (f"The batch given with this call was NOT accepted: none of its {len(blocks)} "
            f"block(s) is queued ({ids}{more}). Submit them again once the journal can be "
            "written and the manager is resumed (update_state(ts, 'manual'); em.reopen() "
            "first if em.interrupted). Part of the batch may be in the journal: a batch "
            "counts only once all of its records are, so a restart drops it too.")


def advance(self: ExecutionManager, ts: Any) -> None:
    """Run queued blocks one at a time, each to a terminal state, until the queue is empty
    or the manager halts (backtest: until a block fails)."""
    lc = self._lc
    while not (self._state.halted or self._pending_halt is not None):
        with self._mutex:
            if not lc.in_flight:
                queue = self._state.queue
                if not queue:
                    return
                self._maybe_checkpoint()
                block = next(iter(queue.values()))
                lc.load(block.block_id)  # refuses unless the previous block is terminal
                # It leaves the queue with its start record (see _move).
                f = self._f = Flight(block, _QUEUED)
                f.entered_at = self._clock()
                self.reconciliation_status = "pending"
            f = self._f  # type: ignore[assignment]
        assert f is not None
        self._driver.drive(ts, f)
        if self._policy.fail_fast and f.error is not None:
            raise f.error  # backtest fails fast; the rest of the queue waits
        if f.waiting:
            return  # it waits in its state (a user lifecycle's): so does the queue
