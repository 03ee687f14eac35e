"""Construction's wiring: the journal claimed (one manager per journal), the driver and the
Host it sees of the manager, the fsync listener, the observers attached.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from fsm_exec.core.errors import (
    COMPONENT,
)
from fsm_exec.drivers.host import Host
from fsm_exec.journal.files import journal_files


def _ignore(*_: object) -> None:
    """What a dead manager does when told of an fsync."""


def _holds_a_run(sink: object) -> bool:
    """True if the journal ``sink`` already holds records of this component (an earlier
    run, or an earlier manager in this process): an EventLogger says so itself; any other
    sink with a ``log_dir`` is asked through its files."""
    history = getattr(sink, "has_history", None)
    if callable(history):
        return bool(history(COMPONENT))
    log_dir = getattr(sink, "log_dir", None)
    if log_dir is None:
        return False
    return any(p.stat().st_size for p in journal_files(log_dir, COMPONENT))

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def attach(self: ExecutionManager, event_logger: Any) -> None:
    """The part of construction that takes the journal: the claim, the driver, the
    first records (unless an earlier run must be recovered first), the listeners."""
    claim = getattr(event_logger, "claim", None)
    if callable(claim):  # one manager per journal, in this process too
        claim(COMPONENT, self)
    self._driver = self._policy.driver(self._driver_host())
    # A journal that checkpoints (EventLogger): every file starts with the state.
    self._checkpointing = callable(getattr(event_logger, "checkpoint", None)) and \
        callable(getattr(event_logger, "checkpoint_due", None))
    self._checkpoint_due = (
        event_logger.checkpoint_due if self._checkpointing else None)
    # Nothing is written to a journal that holds an earlier run until recover() has
    # read it: opening must never rotate, prune or checkpoint over live state.
    self._needs_recovery = _holds_a_run(event_logger)
    if not self._needs_recovery:
        self._start_journal(reset=False)
    me = weakref.ref(self)

    def fsync_listener(seconds: float) -> None:
        # Through a weak reference: the journal must not keep a dropped manager alive
        # (it would hold the journal's claim for ever); a dead one's is a no-op.
        getattr(me(), "_fsynced", _ignore)(seconds)

    self._fsync_listener = fsync_listener
    if self._observers:
        add_listener = getattr(event_logger, "add_fsync_listener", None)
        if callable(add_listener):
            add_listener(fsync_listener)
            weakref.finalize(self, getattr(event_logger, "remove_fsync_listener", _ignore),
                             fsync_listener)  # tidy: a dead manager's is a no-op anyway
    for obs in self._observers:
        obs.attach(self)


def driver_host(self: ExecutionManager) -> Host:
    """What the driver may use of this manager (its one surface: drivers/host.py)."""
    return Host(
        owner=self, config=self._cfg, clock=self._clock, sleep=self._sleep,
        route_instruction=self._route_instruction,
        update_positions=self._update_positions, reconciliation=self._reconciliation,
        query=self._query, risk=self._risk, redact=self._redact, finds=self._finds,
        lifecycle=self._lc, state=lambda: self._state, mutex=self._mutex,
        observers=self._observers, journaled=self._log_event is not None,
        move=self._move, fail=self._fail, handed_off=self._handed_off,
        unresolved=self._unresolved, finish=self._finish,
        canonical_deltas=self._canonical_deltas, journal_move=self._journal_move,
        emit=self._emit, refuse_if_retired=self._refuse_if_retired,
        call_done=self._call_done, notify_transition=self._notify_transition,
        note_health=self._health.note, try_move=self._try_move, waited=self._waited,
        report_error=lambda err: self._record_error(self._ts, err))
