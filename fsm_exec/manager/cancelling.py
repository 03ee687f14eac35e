"""Cancelling queued blocks: atomic (every id checked first by the state's one rule), each
journaled and durable before the call returns, never routed.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fsm_exec.core.errors import (
    InvalidArgumentError,
)
from fsm_exec.core.lifecycle import BlockState, Trigger
from fsm_exec.core.limits import fit_text

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS, _FAILED, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS, BlockState.FAILED,
                     BlockState.CANCELLED))
_T_CANCEL = str(Trigger.CANCEL)

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def cancel(self: ExecutionManager, stamp: str, block_ids: Iterable[str] | None,
            reason: str) -> tuple[str, ...]:
    with self._mutex:
        if self._interrupted is not None:  # retired (or replaced) since the entry check
            raise self._retired_error()
        outer = self._ts, self._t0
        self._ts, self._t0 = stamp, self._clock()
        try:
            done: tuple[str, ...] = self._cancel_now(block_ids, reason)
            return done
        finally:
            self._ts, self._t0 = outer


def cancel_now(self: ExecutionManager, block_ids: Iterable[str] | None,
               reason: str) -> tuple[str, ...]:
    reason = fit_text(self._redact(reason))  # refused over the bound; redaction may add
    with self._mutex:
        queued = list(self._state.queue)
        if block_ids is None:
            ids = queued
        else:
            ids = list(block_ids)
            # quoted redacted, then shortened
            problems = self._state.cancel_problems(ids, self._quote)
            if problems:
                raise InvalidArgumentError("cancel refused, nothing cancelled: "
                                           + "; ".join(problems))
        if not ids:
            return ()
        queue = self._state.queue
        waiting = [b for b in ids if b not in queue]  # the block in flight, waiting
        if waiting:  # checked above: before the route, with a cancel transition
            self._move(_T_CANCEL, reason=reason)
        queued_ids = [b for b in ids if b in queue]
        n = len(queued_ids)
        for i, block_id in enumerate(queued_ids):
            self._emit("block_transition", {
                "block_id": block_id, "source": _QUEUED, "dest": _CANCELLED,
                "trigger": _T_CANCEL, "attempt": 0, "reason": reason,
                "batch_index": i, "batch_size": n}, sync=False)
        self._state.cancel(queued_ids)
        self._barrier()
    self._notify_event("cancelled", count=len(ids), reason=reason)
    return tuple(ids)
