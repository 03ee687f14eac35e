"""Health and accounting: the end of each call (its ``state_update`` record and
metrics), and what the manager reports of itself (healthy, degraded, unhealthy).

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    COMPONENT,
    EventLogError,
)
from fsm_exec.drivers.deadline import state_deadline
from fsm_exec.observe.health import LEVEL_TEXTS, HealthStatus

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def end_update(self: ExecutionManager, ts: Any, trigger_source: str, t0: float, *,
                failing: bool) -> dict[str, Any] | None:
    """Account for the call: its ``state_update`` (or one more call of the run it joins),
    the health window, late observer failures, the observers' ``update``. Returns the
    status dict, made in the same critical section, when nothing is left to change it
    after (no observer, no late failure to report, the call not failing); else ``None``."""
    ms = (self._clock() - t0) * 1000.0
    with self._mutex:
        self._update_count += 1
        self._processing_ms_total += ms
        self._last_update = ts
        self._health.close()
        st = self._state
        halted = st.halted or self._pending_halt is not None
        queued = len(st.queue)
        said = (trigger_source, st.executed, st.failed, st.cancelled, queued, halted)
        # The same as the call before said, whose record the journal still holds back:
        # this call joins its run of idle calls (as the record it would write would).
        joined = (said == self._idle_said and self._interrupted is None
                  and not self._unsynced_acceptance and self._join_idle is not None
                  and self._join_idle(COMPONENT, self._ts, ms))
        if not joined:
            self._idle_said = self._idle_status = None
            data = {
                "trigger_source": trigger_source,
                "current_block_index": st.executed + st.failed + st.cancelled,
                "blocks_executed": st.executed,
                "blocks_failed": st.failed,
                "queue_length": queued,
                "halted": halted,
                "processing_time_ms": ms,
            }
            try:
                if self._interrupted is None:  # a retired manager's counters prove nothing
                    # a barrier only for blocks still queued
                    self._write_held("state_update", data, self._unsynced_acceptance)
                    self._idle_said = said
            except EventLogError:
                if not failing:  # never hide the error already on its way out
                    raise
        late = self._late_observer_errors
        if not (failing or late or self._observers):
            if joined and self._f is None:
                return idle_status_dict(self)
            return self._status_dict()
    if late and not failing:
        # One report per call, however many fsyncs failed in it (the report's own fsync
        # may fail the same way: it is noted for the next call, not looped on).
        obs, exc = late[0]
        count = len(late)
        late.clear()
        self._observer_failed(obs, exc, times=count)
        late.clear()
    if self._observers:
        self._notify_event("update", trigger_source=trigger_source,
                           duration_s=ms / 1000.0, queue_length=queued, halted=halted)
    return None


def idle_status_dict(self: ExecutionManager) -> dict[str, Any]:
    """:func:`status_dict` at the end of a call that joined its run of idle calls, with
    nothing in flight: no record was written since the run's first call, so nothing the
    dict shows changed since then but the health level (the window moves on). The run's
    dict is made once and kept; each call gets a copy, its ``status`` read again."""
    kept = self._idle_status
    if kept is None:
        kept = self._idle_status = self._status_dict()
        return kept.copy()
    status = kept.copy()
    status["status"] = LEVEL_TEXTS[self._health.level(kept["halted"])]
    return status


def status_dict(self: ExecutionManager) -> dict[str, Any]:
    """:meth:`~fsm_exec.ExecutionManager.get_execution_status`, for a caller that holds the
    mutex (the end of every update makes it: each read counted once)."""
    st = self._state
    # The block in flight as the journal says: a block loaded into the Machine but not
    # started yet (its start record not written) is still queued, counted there.
    f = st.flight
    halted = st.halted or self._pending_halt is not None
    interrupted = self._interrupted is not None
    return {
        "status": (LEVEL_TEXTS[self._health.level(halted or interrupted)]
                   if self._f is None  # nothing in flight (the end of every update)
                   else self._assess()[0].value),
        "current_block": f.block.block_id if f is not None else None,
        "current_block_state": f.state if f is not None else None,
        "reconciliation_status": self.reconciliation_status,
        "blocks_accepted": st.accepted,
        "blocks_executed": st.executed,
        "blocks_failed": st.failed,
        "blocks_cancelled": st.cancelled,
        "blocks_retried": st.retried,
        "current_block_index": st.executed + st.failed + st.cancelled,
        "queue_length": len(st.queue),
        "execution_mode": self._env.execution_mode,
        "halted": halted,
        "halt_reason": st.halt_reason if st.halted else self._pending_halt,
        "interrupted": interrupted,
    }


def status(self: ExecutionManager) -> HealthStatus:
    if self._f is None:  # nothing in flight (the end of every update): the short way
        return self._health.status(halted=self._halted or self._interrupted is not None)
    return self._assess()[0]


def assess(self: ExecutionManager
            ) -> tuple[HealthStatus, dict[str, Any] | None, dict[str, Any] | None]:
    """Health, with what is wrong with the block in flight: ``(status, in_doubt,
    stuck)``. In doubt (the venue may have executed it and nobody knows yet: restored
    in routing or retrying after a restart, or an outcome that could not be found out)
    or halted or interrupted is ``unhealthy``; a block in its state longer than that
    state's deadline (:func:`~fsm_exec.drivers.deadline.state_deadline`, on the injected
    clock) is at least ``degraded``."""
    in_doubt = stuck = None
    f = self._f
    if f is not None and self._lc.in_flight:
        state = self._lc.current
        age = self._clock() - f.entered_at
        deadline = state_deadline(self._cfg, state, f.attempt)
        about = {"block_id": f.block.block_id, "state": state, "attempt": f.attempt,
                 "age_s": age, "deadline_s": deadline}
        if f.unresolved:
            in_doubt = about
        if deadline is not None and age > deadline:
            stuck = about
    status = self._health.status(halted=self._halted or self._interrupted is not None
                                 or in_doubt is not None)
    if stuck is not None and status is HealthStatus.HEALTHY:
        status = HealthStatus.DEGRADED
    return status, in_doubt, stuck


def health_report(self: ExecutionManager) -> dict[str, Any]:
    """The health report the health manager receives (see ``health_check``)."""
    with self._mutex:
        updates = self._update_count
        status, in_doubt, stuck = self._assess()
        return {
            "status": str(status),
            "in_doubt": in_doubt,
            "stuck": stuck,
            "last_update": self._last_update,
            "errors": list(self._recent_errors),
            "metrics": {
                "update_count": updates,
                "avg_processing_time_ms": (self._processing_ms_total / updates
                                           if updates else 0.0),
                "error_rate": self._error_count / max(updates, 1),
                "blocks_executed": self.blocks_executed,
                "blocks_failed": self.blocks_failed,
                "blocks_retried": self.blocks_retried,
                "queue_size": len(self._state.queue),
            },
        }
