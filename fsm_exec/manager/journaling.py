"""Writing the journal: records, write-ahead barriers, checkpoints, and what a
failed write does to the manager (it halts, and retires when durability is lost).

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    COMPONENT,
    ComponentError,
    EventLogError,
    ManagerInterruptedError,
    ScrubbedException,
    Severity,
    describe_exception,
    type_name,
)
from fsm_exec.core.lifecycle import Trigger
from fsm_exec.core.limits import MAX_NAME, fit_text
from fsm_exec.journal.writer import JournalLossError
from fsm_exec.observe.health import (
    DEGRADED,
    UNHEALTHY,
)

_LEVEL = {Severity.CRITICAL: UNHEALTHY, Severity.HIGH: UNHEALTHY,
          Severity.MEDIUM: DEGRADED, Severity.LOW: DEGRADED}
_BARRIER_TRIGGERS = frozenset({str(Trigger.START), str(Trigger.REROUTE), str(Trigger.FAIL)})


if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def start_journal(self: ExecutionManager, *, reset: bool) -> None:
    """The first records of a run: a checkpoint of the state (a new file, for a journal
    that checkpoints), then ``component_initialization`` (for an operator's tool,
    ``operator_action``: not a start)."""
    self._write_checkpoint(new_file=True, reset=reset)
    action = self._operator_action
    if action is not None:  # an operator's tool: not a start of the deployment
        self._emit("operator_action", action)
        return
    self._emit("component_initialization", {
        "execution_mode": self._env.execution_mode,
        "environment": self._env.environment,
        "deployment_mode": self._env.deployment_mode,
        "config_hash": self._cfg.digest(),
        **self._clocks(),
    })
    self._state.started_component()


def record_time(self: ExecutionManager) -> Any:
    """The time a record written now carries: the call's timestamp (``None`` outside any
    call: the journal stamps the wall clock). In live mode, the call's timestamp advanced
    by the injected clock's time since the call began, so each record shows when its step
    happened, and never before the record this manager wrote last (a caller's clock may
    lag the steps the manager timed). Called only when the policy says ``step_times``: a
    backtest keeps the strategy's timestamp (its hot path makes no call for it)."""
    ts = self._ts
    if ts is None:
        return ts
    elapsed = self._clock() - self._t0
    try:
        at = dt.datetime.fromisoformat(ts)
        if elapsed > 0:  # not NaN, and a clock that stepped back adds nothing
            at += dt.timedelta(seconds=elapsed)
    except (OverflowError, ValueError):  # past year 9999: the call's time
        return ts
    last = self._last_time
    if last is not None and at < last:
        at = last
    self._last_time = at
    return at.isoformat()


def clocks(self: ExecutionManager) -> dict[str, str]:
    """What a checkpoint, start or recovery record says of its clocks: ``clock: wall`` when
    its timestamp is the wall clock (written outside any call: a start, a recovery), else
    the wall clock under its own name, ``wall_clock``, beside the caller's time."""
    if self._ts is None:
        return {"clock": "wall"}
    return {"wall_clock": dt.datetime.now(dt.UTC).isoformat()}


def write_checkpoint(self: ExecutionManager, *, new_file: bool, reset: bool = False) -> None:
    if self._log_event is None:
        return
    with self._mutex:
        if self._interrupted is not None:  # its memory may disagree: no state from it
            raise self._retired_error()
        if self._pending_halt is not None:
            # A halt the journal could not take when it happened (EXEC-009): record it
            # now, before the checkpoint that carries it.
            self._journal_halt(None)
        data = self._state.checkpoint_data()
        data["execution_mode"] = self._env.execution_mode  # readers know it, pruned or not
        data.update(self._clocks())
        if reset:
            data["reset"] = True  # state from elsewhere: not the records before it
        if self._operator_action is None:  # an operator's tool is no run of the deployment
            # the run writing it, so that a reader starting here needs no history (status)
            data["run"] = {"config_hash": self._cfg.digest(),
                           "execution_mode": self._env.execution_mode}
        if not self._checkpointing:
            self._emit("checkpoint", data)
            return
        try:
            ts = self._record_time() if self._step_times else self._ts
            self._log.checkpoint(COMPONENT, data, timestamp=ts,  # type: ignore[union-attr]
                                 new_file=new_file)
        except EventLogError as exc:
            self._halt("EXEC-009")
            self._durability_lost(exc)  # a checkpoint is written with an fsync
            raise
        except Exception as exc:
            raise self._log_failed("checkpoint", exc) from exc
        self._unsynced_acceptance = False


def maybe_checkpoint(self: ExecutionManager) -> None:
    """At a safe point (memory and journal agree): write the checkpoint the journal
    asks for (a new day: a new file; or every ``checkpoint_every`` records)."""
    due_of = self._checkpoint_due
    if due_of is None:
        return
    due = due_of(COMPONENT)
    if due is not None:
        self._write_checkpoint(new_file=due == "rotate")


def durability_lost(self: ExecutionManager, exc: BaseException) -> None:
    """A synced write (or a barrier) failed: the records written unsynced before it
    (acceptances, a cancel, moves that ride along) may or may not survive, and memory
    has acted on them. Memory may disagree with the journal: retire, as a crash here
    would (see :meth:`_barrier`)."""
    self._interrupted = ("the journal could not make its records durable: "
                         + self._redact(describe_exception(exc)))


def barrier(self: ExecutionManager) -> None:
    """Make every record written so far durable (a journal with sync()). If it cannot,
    records already counted may or may not survive, so memory (which has acted on
    them: blocks queued, or cancelled) may disagree with the journal: the manager
    halts (``EXEC-009``) and retires, and ``reopen()`` reads back what the journal
    holds."""
    if self._syncable:
        try:
            self._log.sync()  # type: ignore[union-attr]
        except Exception as exc:
            self._durability_lost(exc)
            if isinstance(exc, EventLogError):
                self._halt("EXEC-009")
                raise
            raise self._log_failed("sync", exc) from exc
    self._unsynced_acceptance = False


def on_transition(self: ExecutionManager, source: str, dest: str, trigger: str,
                   data: dict[str, Any]) -> None:
    f = self._f
    assert f is not None
    event = {"block_id": f.block.block_id, "source": source, "dest": dest,
             "trigger": trigger, "attempt": f.attempt}
    if data:
        event.update(data)
    # Write-ahead barriers: the intent to route (start, reroute), deltas about to be
    # handed off, and a block's failure must be durable before the manager acts on
    # them; the other moves ride on the next barrier.
    # Under a user lifecycle every move is one (a move into a waiting state or into
    # pending_reconciliation must never be lost behind the hand-off that follows it).
    self._write_held("block_transition", event, trigger in _BARRIER_TRIGGERS
                     or "deltas" in event or self._lc.table is not None)


def emit(self: ExecutionManager, event_type: str, data: dict[str, Any], *,
          sync: bool = True) -> None:
    """Journal one record, stamped with the time of the step it records
    (:func:`record_time`): :func:`write_held` under the manager's mutex."""
    if self._log_event is None:
        return
    with self._mutex:  # one writer at a time, each with its own call's timestamp
        self._write_held(event_type, data, sync)


def write_held(self: ExecutionManager, event_type: str, data: dict[str, Any],
               sync: bool = True, *, checked: bool = False) -> None:
    """:func:`emit` for a caller that holds the manager's mutex (the moves, an acceptance,
    the end of a call: one critical section each, not one more per record). A retired
    manager writes nothing: its retirement is a crash at that instant, on every thread. A
    journal that cannot write halts the manager (``EXEC-009``), and loses its durability
    when a synced record (or records counted as written) failed."""
    log_event = self._log_event
    if log_event is None:
        return
    try:
        if self._interrupted is not None:  # retired meanwhile: a crash at that instant
            raise self._retired_error()
        ts = self._record_time() if self._step_times else self._ts
        if checked and self._own_journal:  # its values proved finite: see log_event
            log_event(ts, event_type, COMPONENT, data, sync=sync, checked=True)
        elif self._syncable:
            log_event(ts, event_type, COMPONENT, data, sync=sync)
        else:
            log_event(ts, event_type, COMPONENT, data)
    except ManagerInterruptedError:
        raise
    except EventLogError as exc:
        self._halt("EXEC-009")
        if sync or isinstance(exc, JournalLossError):
            self._durability_lost(exc)
        raise
    except Exception as exc:
        raise self._log_failed(event_type, exc) from exc
    if sync:
        self._unsynced_acceptance = False


def log_failed(self: ExecutionManager, event_type: str, exc: Exception) -> EventLogError:
    """The journal could not record: halt before acting on it, and say so."""
    self._halt("EXEC-009")
    return EventLogError(self._redact(
        f"event log write failed ({event_type}): {describe_exception(exc)}"),
        ScrubbedException.of(exc, self._redact))


def record_error(self: ExecutionManager, ts: Any, err: ComponentError) -> None:
    message = fit_text(err.message)  # an exception's text, a batch's every problem
    entry = {"timestamp": ts, "error_code": err.error_code, "error_message": message,
             "error_severity": str(err.severity), "block_id": err.block_id}
    with self._mutex:
        self._recent_errors.append(entry)
        self._error_count += 1
        self._health.note(_LEVEL[err.severity])
    data = {k: v for k, v in entry.items() if k != "timestamp"}
    if err.original_exception is not None:
        original = err.original_exception
        data["exception_type"] = fit_text(original.type_name.rpartition(".")[2]
                                          if isinstance(original, ScrubbedException)
                                          else type_name(original), MAX_NAME)
    self._emit("error", data)
    if self._observers:
        self._notify_event("error", error_code=err.error_code, block_id=err.block_id)
