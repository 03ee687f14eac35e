"""What a driver may use of the manager that drives it: one small, public surface.

The manager builds a :class:`Host` once, at construction, from its own parts (the
collaborators, the clock, the lifecycle Machine, the state, and the moves that journal first
and then change the state); a driver never reaches into the manager itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from fsm_exec.boundary.canonical import Converted
    from fsm_exec.boundary.config import ExecutionConfig
    from fsm_exec.core.lifecycle import BlockLifecycle
    from fsm_exec.drivers.base import Flight
    from fsm_exec.drivers.risk import RiskChecks
    from fsm_exec.journal.state import ManagerState


@attrs.frozen(slots=True)
class Host:
    """The manager, as its driver sees it."""

    #: The manager itself, only to tie resources (the venue worker thread) to its life.
    owner: object
    config: ExecutionConfig
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    # The collaborators.
    route_instruction: Callable[..., Any]
    update_positions: Callable[..., Any]
    reconciliation: Any
    query: Callable[..., Any] | None
    risk: RiskChecks
    redact: Callable[[str], str]
    #: Finds a config secret in a string (the fast form of redaction), or ``None``.
    finds: Callable[[str], bool] | None
    # The block in flight: the Machine, the state, and the lock both change under.
    lifecycle: BlockLifecycle
    state: Callable[[], ManagerState]
    mutex: threading.RLock
    observers: Sequence[object]
    #: True when the manager has a journal to write (the backtest's one-pass path needs it).
    journaled: bool
    # The moves: each journals first, then changes the Machine and the state.
    move: Callable[..., str | None]
    fail: Callable[..., None]
    handed_off: Callable[[Any, Flight], None]
    unresolved: Callable[[Any, Flight, str], None]
    finish: Callable[[Flight, str], None]
    canonical_deltas: Callable[[Any], Converted]
    #: Writes a move's ``block_transition`` record, ``(event, sync)``, under the manager's
    #: mutex, unscanned for NaN (``EventLogger.log_event(checked=True)``): for events of
    #: ids, states, ints and deltas ``plain_copy`` proved finite only (the one pass).
    journal_move: Callable[[dict[str, Any], bool], None]
    emit: Callable[..., None]
    #: Before the start record: True (the block cancelled, never to start) if another
    #: thread cancelled the loaded block since it was loaded.
    cancelled_since_loaded: Callable[[Flight], bool]
    # The guard and the reports.
    refuse_if_retired: Callable[[], None]
    call_done: Callable[..., None]
    notify_transition: Callable[[Flight, str, str, str, dict[str, Any]], None]
    note_health: Callable[[int], None]
    # A user lifecycle's moves: fire when its guards hold (else None), and how long the
    # block in flight has waited in its state (the strategy's timestamps).
    try_move: Callable[..., str | None]
    waited: Callable[[Flight], float]
