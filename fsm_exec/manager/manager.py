"""The ExecutionManager: the entry points, the queue, the accounting and recovery.

The block in flight is driven by a :mod:`~fsm_exec.drivers` chosen once at construction
(backtest or live). Every state change happens inside one critical section (``_mutex``), so
the read APIs give a consistent snapshot from any thread.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.config import Environment, ExecutionConfig, Redactor
from fsm_exec.boundary.protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
)
from fsm_exec.core.errors import (
    ComponentError,
    InvalidArgumentError,
    ReentrantCallError,
    describe_exception,
)
from fsm_exec.core.lifecycle import _STATE_OF, BlockLifecycle, BlockState
from fsm_exec.core.limits import too_long
from fsm_exec.core.running import RunTable
from fsm_exec.drivers.base import Driver, Flight
from fsm_exec.drivers.policy import ModePolicy
from fsm_exec.drivers.risk import RiskChecks
from fsm_exec.journal.flight import Measured
from fsm_exec.journal.reader import JournalRecord
from fsm_exec.journal.state import ManagerState, RecoveryReport
from fsm_exec.manager import (
    cancelling,
    guard,
    health,
    journaling,
    moves,
    observing,
    queueing,
    recovery,
    triggering,
    wiring,
)
from fsm_exec.observe.health import HealthStatus, HealthWindow, UnifiedHealthManager
from fsm_exec.observe.seam import Observer

if TYPE_CHECKING:
    from fsm_exec.core.lifecycles import Lifecycle

TRIGGER_SOURCES: tuple[str, ...] = ("strategy_manager", "manual", "retry")

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS, _FAILED, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS, BlockState.FAILED,
                     BlockState.CANCELLED))
# Errors about the manager itself rather than a block: raised in preference to a refusal.
_SYSTEM_CODES = frozenset({"EXEC-009", "EXEC-012"})


class ExecutionManager:
    """Runs instruction blocks one at a time: route, hand off deltas, wait for reconciliation.

    Collaborators, clock and sleep are given once here and never passed at runtime. See
    ``specs/execution_manager.md`` for the full contract. ``assume_timezone`` (a zone name
    such as ``'UTC'``, or a ``tzinfo``) reads naive timestamps (a framework's naive
    ``pandas.Timestamp``) as times in that zone; by default they are refused. ``name``
    tells managers side by side in one process apart (default: the run id of a
    :func:`~fsm_exec.backtest_run` journal): a health manager registers it as
    ``ExecutionManager[<name>]``, and :class:`~fsm_exec.observe.PrometheusMetrics` labels
    its metrics with it.
    """

    # Set once at construction (manager/wiring.py): the arguments, resolved.
    _init_args: tuple[tuple[Any, ...], dict[str, Any]]
    _assume_tz: dt.tzinfo | None
    _name: str | None
    _health_manager: UnifiedHealthManager | None
    _health_checker: wiring.WeakHealthCheck  # what a health manager holds (weakly)
    #: Whether a user lifecycle's hooks and ``call`` guards are imported and run (an
    #: offline tool acting on a journal it was given runs none: data is not code).
    _imports_lifecycle_code = True
    _cfg: ExecutionConfig
    _env: Environment
    _redact: Redactor
    _finds: Callable[[str], bool] | None
    _policy: ModePolicy
    _clock: Callable[[], float]
    _sleep: Callable[[float], None]
    _risk: RiskChecks
    _observers: tuple[Observer, ...]
    _observed_events: frozenset[str] | None  # the manager events some observer wants
    # Each observer with its hook taking an event's fields, or None (manager/observing.py).
    _transition_targets: tuple[tuple[Observer, observing.Moved | None], ...]
    _call_targets: observing.CallTargets  # by call kind, the observers that want it
    # The collaborators' bound calls, and the journal's.
    _reconciliation: ReconciliationComponent
    _query: Callable[..., Any] | None
    _route_instruction: Callable[..., Any]
    _update_positions: Callable[..., Any]
    _log: EventSink | None
    _log_event: Callable[..., Any] | None
    _own_journal: bool  # an EventLogger with its own log_event (checked=, join_idle)
    _join_idle: Callable[[str, str, float], bool] | None
    _idle_said: tuple[Any, ...] | None  # what the last state_update said (health.py)
    _idle_status: dict[str, Any] | None  # the status dict of that run of idle calls
    _syncable: bool
    _driver: Driver
    _checkpointing: bool
    _checkpoint_due: Callable[[str], str | None] | None
    #: The bytes of blocks a checkpoint holds for the queue and the block in flight (a
    #: journal that checkpoints; else None), those held (an upper bound once blocks left)
    #: and the held blocks measured so far, by id (queueing.recount).
    _queue_room: int | None
    _held_bytes: int
    _sizes: Measured
    _needs_recovery: bool
    _fsync_listener: Callable[[float], None]
    _table: RunTable  # the lifecycle it runs (manager/triggering.py)
    # The state the journal describes (ManagerState: one fold), the block in flight's
    # Machine, and the call in progress; changed only under _mutex.
    _mutex: threading.RLock
    _state: ManagerState
    _lc: BlockLifecycle
    _f: Flight | None
    _ts: Any
    _t0: float
    _step_times: bool  # the policy's: each live record carries its step's time
    _last_time: dt.datetime | None
    _busy: int | None
    _interrupted: str | None
    _closed: bool
    _unsynced_acceptance: bool
    _pending_halt: str | None  # a halt the journal could not take (EXEC-009)
    reconciliation_status: str
    # Health and observers' bookkeeping (manager/health.py, manager/observing.py).
    _health: HealthWindow
    _update_count: int
    _processing_ms_total: float
    _error_count: int
    _recent_errors: deque[dict[str, Any]]
    _last_update: Any
    _observer_failing: bool
    _observer_reports: dict[int, list[float]]
    _late_observer_errors: list[tuple[Observer, Exception]]
    #: An operator's tool carries out one action with this manager (``fsm-exec cancel``):
    #: its start is journaled as that action (``operator_action``), never as a start of
    #: the deployment (``component_initialization``), and its recovery writes no
    #: ``recovered``. ``None``: a deployment's manager.
    _operator_action: dict[str, Any] | None = None


    def __init__(self, config: ExecutionConfig | Mapping[str, Any],
                 data_provider: DataProvider,
                 execution_mode: str | None,
                 position_update_handler: PositionUpdateHandler,
                 execution_interface_manager: ExecutionInterfaceManager,
                 reconciliation_component: ReconciliationComponent,
                 *,
                 event_logger: EventSink | None = None,
                 health_manager: UnifiedHealthManager | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 risk_checks: Sequence[RiskCheck] = (),
                 observers: Sequence[Observer] = (),
                 assume_timezone: str | dt.tzinfo | None = None,
                 name: str | None = None,
                 lifecycle: Lifecycle | None = None) -> None:
        wiring.construct(
            self, config, data_provider, execution_mode, position_update_handler,
            execution_interface_manager, reconciliation_component, event_logger=event_logger,
            health_manager=health_manager, clock=clock, sleep=sleep, risk_checks=risk_checks,
            observers=observers, assume_timezone=assume_timezone, name=name,
            lifecycle=lifecycle)

    # ----------------------------------------------------------------- read-only views
    @property
    def config(self) -> ExecutionConfig:
        """This component's own config fields (never the system-wide mapping)."""
        return self._cfg

    @property
    def execution_mode(self) -> str:
        """``backtest`` or ``live``, fixed at init."""
        return self._env.execution_mode

    @property
    def environment(self) -> str:
        """``BASIS_ENVIRONMENT`` as read at init."""
        return self._env.environment

    @property
    def deployment_mode(self) -> str:
        """``BASIS_DEPLOYMENT_MODE`` as read at init."""
        return self._env.deployment_mode

    @property
    def name(self) -> str | None:
        """This manager's name among others in one process (``name=``, else the run id of
        a :func:`~fsm_exec.backtest_run` journal); ``None`` for one unnamed manager."""
        return self._name

    @property
    def health_name(self) -> str:
        """The name it registers under with a health manager: ``ExecutionManager``, or
        ``ExecutionManager[<name>]`` for a named manager, so that many share one."""
        return guard.health_name(self._name)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: every later call is refused."""
        return self._closed

    @property
    def halted(self) -> bool:
        """True when positions are in doubt: nothing starts until a ``manual`` update."""
        return self._state.halted or self._pending_halt is not None

    @property
    def _halted(self) -> bool:
        return self._state.halted or self._pending_halt is not None

    @property
    def _halt_reason(self) -> str | None:
        """The first halt's reason: the journal's, else the one it could not take."""
        state = self._state
        return state.halt_reason if state.halted else self._pending_halt

    # The counters are the state's (the spec's names; read-only).
    @property
    def blocks_accepted(self) -> int:
        """Blocks accepted since the journal began (across restarts)."""
        return self._state.accepted

    @property
    def blocks_executed(self) -> int:
        """Blocks that reached ``success``."""
        return self._state.executed

    @property
    def blocks_failed(self) -> int:
        """Blocks that reached ``failed``."""
        return self._state.failed

    @property
    def blocks_cancelled(self) -> int:
        """Blocks that were cancelled while queued."""
        return self._state.cancelled

    @property
    def blocks_retried(self) -> int:
        """Moves into ``retrying`` (one block may retry several times)."""
        return self._state.retried

    @property
    def current_block_index(self) -> int:
        """Blocks that reached a terminal state."""
        return self._state.finished_count

    @property
    def interrupted(self) -> bool:
        """True once an interrupt stopped this manager mid-step (see :meth:`reopen`)."""
        with self._mutex:
            return self._interrupted is not None or self._cut_short()

    @property
    def queued_block_ids(self) -> tuple[str, ...]:
        """The ids of the queued blocks, in the order they will run."""
        with self._mutex:
            return tuple(self._state.queue)

    @property
    def execution_queue(self) -> list[dict[str, Any]]:
        """The queued blocks, in the order they will run, as the component spec's dicts
        (``block_id``, ``action``, ``priority``, ``instructions``) in canonical form: a
        copy (changing it changes nothing), consistent from any thread."""
        with self._mutex:
            return [copy.deepcopy(b.to_dict()) for b in self._state.queue.values()]

    @property
    def current_instruction_block(self) -> dict[str, Any] | None:
        """The block in flight as the spec's dict (a copy), or ``None`` when none is;
        its state is ``get_execution_status()["current_block_state"]``."""
        with self._mutex:
            f = self._state.flight  # started: a block loaded but not started is queued
            if f is None:
                return None
            return copy.deepcopy(f.block.to_dict())

    def block_state(self, block_id: str) -> BlockState | str | None:
        """A queued, in-flight or recently finished block's state (a state a user lifecycle
        adds: its name); ``None`` if unknown."""
        with self._mutex:
            state = self._state
            end = state.finished.get(block_id)
            if end is not None:
                return _STATE_OF[end]
            if block_id in state.queue:
                lc = self._lc  # loaded but not started yet: still queued
                return (lc.state if lc.in_flight and lc.block_id == block_id
                        else BlockState.QUEUED)
            f = state.flight
            if f is not None and f.block.block_id == block_id:
                return self._lc.state
            return None

    def get_execution_status(self) -> dict[str, Any]:
        """The status dict (also returned by :meth:`update_state`); a consistent snapshot,
        from any thread."""
        with self._mutex:
            return self._status_dict()

    # ---------------------------------------------------------------------- entry points
    def update_state(self, timestamp: Any, trigger_source: str,
                     instruction_blocks: Sequence[Mapping[str, Any]] | None = None
                     ) -> dict[str, Any]:
        """Accept a batch (if given), then run queued blocks until the queue is empty.

        A refused batch (``EXEC-003``, ``EXEC-004``) queues nothing, does not stop queued work,
        and is raised once that work is done. ``manual`` resumes a halted manager. In backtest
        a failed block raises its ``ComponentError`` and leaves the rest of the queue queued,
        and a halted manager raises :class:`ManagerHaltedError` for any other trigger.
        """
        self._check_usable()
        stamp = self._stamp(timestamp)
        if trigger_source not in TRIGGER_SOURCES:
            err = InvalidArgumentError(
                f"trigger_source must be one of {', '.join(TRIGGER_SOURCES)}, got "
                f"{type(trigger_source).__name__} "
                f"{self._quote(trigger_source)}")
            self._record_error(timestamp, err)
            raise err
        if trigger_source != "manual":  # the resume is the one update a halt allows
            self._refuse_if_halted("update_state", trigger_source)
        me = threading.get_ident()
        with self._mutex:
            if self._interrupted is not None:  # retired since the entry check
                raise self._retired_error()
            if self._busy is not None:
                if self._cut_short():
                    self._check_usable()
                where = ("from a collaborator?" if self._busy == me else
                         "in another thread")
                reentry = ReentrantCallError(
                    f"update_state was called while update_state is running ({where}); "
                    "queue follow-up blocks with execute_instruction_blocks")
                self._record_error(timestamp, reentry)
                raise reentry
            self._busy = me
        try:  # _guarded, inlined (the per-call hot path)
            status: dict[str, Any] = self._update(timestamp, stamp, trigger_source,
                                                  instruction_blocks)
        except ComponentError:
            raise
        except BaseException as exc:
            self._retire(exc)
            raise
        finally:
            self._busy = None
        return status

    def execute_instruction_blocks(self, timestamp: Any,
                                   instruction_blocks: Sequence[Mapping[str, Any]]) -> None:
        """Validate a batch and queue it whole, or refuse it whole; runs nothing.

        Safe from any thread and from collaborators (to queue follow-up blocks). Accepted
        means durable: the batch's records are on disk before this returns (called from a
        collaborator during ``update_state``: before that call returns). A halted backtest
        manager raises :class:`ManagerHaltedError`."""
        self._check_usable()
        stamp = self._stamp(timestamp)
        self._refuse_if_halted("execute_instruction_blocks")
        self._guarded(self._accept_now, timestamp, stamp, instruction_blocks)

    def cancel(self, timestamp: Any, block_ids: Iterable[str] | None = None, *,
               reason: str) -> tuple[str, ...]:
        """Cancel queued blocks (all of them when ``block_ids`` is ``None``); return their ids.

        Atomic: an id that is unknown, in flight or finished refuses the whole call and
        nothing changes. Each cancelled block goes ``queued --cancel--> cancelled``, is
        journaled (and durable) before this returns, is never routed, and keeps its
        ``block_id`` taken like any finished block. Works while the manager is halted (in
        backtest too: it is the operator's lever, with the ``manual`` resume).
        """
        self._check_usable()
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidArgumentError("cancel: reason must be a non-empty string")
        if (long := too_long(reason)) is not None:
            raise InvalidArgumentError(f"cancel: reason {long}; nothing cancelled")
        if isinstance(block_ids, str):
            raise InvalidArgumentError("cancel: block_ids must be a list of ids (or None for "
                                       "every queued block), not one string")
        if block_ids is not None:
            try:
                block_ids = list(block_ids)
            except Exception as exc:
                raise InvalidArgumentError(
                    "cancel: block_ids must be a list of ids (or None for every queued "
                    f"block); reading it raised {self._redact(describe_exception(exc))}"
                ) from None
        stamp = self._stamp(timestamp)
        result: tuple[str, ...] = self._guarded(self._cancel, stamp, block_ids, reason)
        return result

    # ------------------------------------------------------- methods kept by concern
    # Each group lives in its own module (specs/architecture.md); bound here as methods.
    _update = queueing.update
    _cut_short = queueing.cut_short
    _running_here = queueing.running_here
    _accept = queueing.accept
    _accept_now = queueing.accept_now
    _overflow = queueing.overflow
    _recount = queueing.recount
    _advance = queueing.advance
    _cancel = cancelling.cancel
    trigger = triggering.trigger
    _trigger_now = triggering.trigger_now
    _lifecycle_machine = triggering.lifecycle_machine
    _guard_context = triggering.guard_context
    _waited = triggering.waited
    _try_move = moves.try_move
    _cancel_now = cancelling.cancel_now
    _attach = wiring.attach
    _driver_host = wiring.driver_host
    _move = moves.move
    _fail = moves.fail
    _handed_off = moves.handed_off
    _unresolved = moves.unresolved
    _canonical_deltas = moves.canonical_deltas
    _finish = moves.finish
    _cancelled_since_loaded = moves.cancelled_since_loaded
    _journal_halt = moves.journal_halt
    _halt = moves.halt
    _halt_for = moves.halt_for
    _resume = moves.resume
    _already_accepted = moves.already_accepted
    _conflicts = moves.conflicts
    _guarded = guard.guarded
    _retire = guard.retire
    _quote = guard.quote
    _call_running = guard.call_running
    _refuse_if_retired = guard.refuse_if_retired
    _retired_error = guard.retired_error
    _check_usable = guard.check_usable
    _stamp = guard.stamp
    _refuse_if_halted = guard.refuse_if_halted
    _start_journal = journaling.start_journal
    _write_checkpoint = journaling.write_checkpoint
    _maybe_checkpoint = journaling.maybe_checkpoint
    _durability_lost = journaling.durability_lost
    _barrier = journaling.barrier
    _on_transition = journaling.on_transition
    _emit = journaling.emit
    _write_held = journaling.write_held
    _record_time = journaling.record_time
    _clocks = journaling.clocks
    _log_failed = journaling.log_failed
    _record_error = journaling.record_error
    _end_update = health.end_update
    _status = health.status
    _status_dict = health.status_dict
    _assess = health.assess
    _health_check = health.health_report
    _fsynced = observing.fsynced
    _notify_transition = observing.notify_transition
    _call_done = observing.call_done
    _notify_event = observing.notify_event
    _observer_failed = observing.observer_failed

    def close(self) -> None:
        """Close this manager's journal (its ``close()``: an :class:`EventLogger` writes
        what it buffers, fsyncs it if its records are fsynced, and releases its files and
        the directory's lock); every later call on the manager is refused. Safe to call
        twice; the end of ``with ExecutionManager(...) as em:`` calls it, also when the
        block raised. Call it once no call of this manager is running."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
        health = self._health_manager
        if health is not None:  # a closed manager reports nothing (its replacement does)
            health.unregister_component(self.health_name, self._health_checker)
        wiring.give_back(self)
        closer = getattr(self._log, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> ExecutionManager:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except Exception as err:
            if exc is None:
                raise
            exc.add_note(f"Closing the manager's journal also failed: {err}")

    def recover(self, source: Path | str | Iterable[Path | str] | Iterable[JournalRecord]
                | None = None, *, state_map: Mapping[str, str] | None = None
                ) -> RecoveryReport:
        """Rebuild this (new) manager's state from a journal, before any ``update_state``.

        ``source`` is a log directory, journal files, or records; ``None`` (the usual call)
        reads the manager's own journal. Recovery starts from the newest checkpoint:
        blocks accepted but not started are queued again in their original order; finished
        blocks keep their result and are never run again (while inside the duplicate
        window); a halted manager stays halted. The block that was in flight is *in
        doubt*: it stays in flight and is settled first on the next ``update_state`` (the
        report's ``resolution`` says how). A journal that cannot be read, that lost records
        (a gap in ``seq``), or whose records break the lifecycle, is refused with
        :class:`JournalCorruptError` naming the file and line. The state is then written
        as a checkpoint starting a new file.

        A journal written under another lifecycle than this manager's (``lifecycle=``)
        is refused (:class:`~fsm_exec.LifecycleChangedError`, naming the
        blocks in a state the new lifecycle lacks) unless ``state_map`` maps the old states
        to new ones (``{}`` when every state the journal holds still exists).
        """
        return recovery.recover(self, source, state_map=state_map)

    def reopen(self) -> ExecutionManager:
        """A replacement for this manager, built with the same config, collaborators,
        journal, clock and observers, and recovered from the journal exactly as a restart
        would. This manager is retired: every further call on it is refused.

        The one call to make after an interrupt (:class:`ManagerInterruptedError`):
        ``em = em.reopen()``. Needs an :class:`~fsm_exec.EventLogger` (or any journal
        with a ``log_dir``) to recover from.
        """
        return recovery.reopen(self)

    def health_check(self) -> dict[str, Any]:
        """This component's health report (what the health manager receives)."""
        return self._health_check()

    @property
    def health_status(self) -> HealthStatus:
        """``healthy``, ``degraded`` or ``unhealthy``: the last 100 updates, a halt, and the
        block in flight (in doubt: unhealthy; stuck past its state's deadline: degraded)."""
        with self._mutex:
            return self._status()
