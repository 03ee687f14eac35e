"""The ExecutionManager: the entry points, the queue, the accounting and recovery.

The block in flight is driven by a :mod:`~fsm_exec.drivers` chosen once at construction
(backtest or live). Every state change happens inside one critical section (``_mutex``), so
the read APIs give a consistent snapshot from any thread.
"""

from __future__ import annotations

import copy
import datetime as dt
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.blocks import convert_batch
from fsm_exec.boundary.canonical import (
    to_wire,
)
from fsm_exec.boundary.config import (
    OWN_FIELDS,
    Environment,
    ExecutionConfig,
    Redactor,
    resolve_config,
)
from fsm_exec.boundary.protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
    check_collaborators,
)
from fsm_exec.core.errors import (
    COMPONENT,
    AlreadyAcceptedError,
    ComponentError,
    InvalidArgumentError,
    InvalidBlockError,
    QueueFullError,
    ReentrantCallError,
    describe_exception,
    safe_repr,
)
from fsm_exec.core.lifecycle import _STATE_OF, BlockLifecycle, BlockState
from fsm_exec.core.running import RunTable
from fsm_exec.drivers.base import Driver, Flight
from fsm_exec.drivers.policy import POLICIES
from fsm_exec.drivers.risk import RiskChecks
from fsm_exec.journal.reader import JournalRecord
from fsm_exec.journal.state import (
    ManagerState,
    RecoveryReport,
)
from fsm_exec.manager import (
    cancelling,
    guard,
    health,
    journaling,
    moves,
    observing,
    recovery,
    triggering,
    wiring,
)
from fsm_exec.observe.health import (
    HealthStatus,
    HealthWindow,
    UnifiedHealthManager,
)
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
    ``pandas.Timestamp``) as times in that zone; by default they are refused.
    """

    # Set by the wiring at construction (manager/wiring.py).
    _driver: Driver
    _checkpointing: bool
    _checkpoint_due: Callable[[str], str | None] | None
    _needs_recovery: bool
    _fsync_listener: Callable[[float], None]
    _table: RunTable  # the lifecycle it runs (manager/triggering.py)
    _lc: BlockLifecycle


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
                 lifecycle: Lifecycle | None = None) -> None:
        self._init_args: tuple[tuple[Any, ...], dict[str, Any]] = (
            (config, data_provider, execution_mode, position_update_handler,
             execution_interface_manager, reconciliation_component),
            {"event_logger": event_logger, "health_manager": health_manager, "clock": clock,
             "sleep": sleep, "risk_checks": risk_checks, "observers": observers,
             "assume_timezone": assume_timezone, "lifecycle": lifecycle})
        # Naive timestamps are refused unless the caller says which zone they are in.
        self._assume_tz = guard.time_zone(assume_timezone)
        self._cfg = resolve_config(config)
        self._env = Environment.read(execution_mode)
        check_collaborators(data_provider=data_provider,
                            position_update_handler=position_update_handler,
                            execution_interface_manager=execution_interface_manager,
                            reconciliation_component=reconciliation_component)
        self._redact = Redactor(config if isinstance(config, Mapping) else {}, OWN_FIELDS)
        self._finds = self._redact.finds if self._redact else None  # a string holds a secret
        self._reconciliation = reconciliation_component
        self._query = getattr(execution_interface_manager, "query_execution", None)
        self._log = event_logger
        self._log_event = event_logger.log_event if event_logger is not None else None
        # A journal with sync() takes sync= on log_event: group commit (see _emit).
        self._syncable = callable(getattr(event_logger, "sync", None))
        self._unsynced_acceptance = False
        self._route_instruction = execution_interface_manager.route_instruction
        self._update_positions = position_update_handler.update_state
        self._clock = clock
        self._sleep = sleep
        for check in risk_checks:
            if not callable(check):
                raise InvalidArgumentError(f"risk_checks: {safe_repr(check)} is not callable")
        # The pre-trade checks: prices first, then the desk's own (drivers/risk.py).
        self._risk = RiskChecks(data_provider, risk_checks, self._redact,
                                self._cfg.asset_field)
        for obs in observers:
            if not isinstance(obs, Observer):
                raise InvalidArgumentError(
                    f"observers: {type(obs).__name__} is not an fsm_exec.observe.Observer "
                    "(subclass it and override the methods you need)")
        self._observers: tuple[Observer, ...] = tuple(observers)
        self._late_observer_errors: list[tuple[Observer, Exception]] = []
        # What differs between the modes, named once (drivers/policy.py).
        self._policy = POLICIES[self._env.execution_mode]

        self._mutex = threading.RLock()
        # The queue, the block in flight, the finished blocks and the counters: the state
        # the journal's records describe, changed only through its operations, each right
        # after its record is written (the same code recovery and every tool fold with).
        # The lifecycle it runs (manager/triggering.py): the default, or a user's, checked.
        self._lc = self._lifecycle_machine(lifecycle)
        self._state = ManagerState(COMPONENT, window=self._cfg.duplicate_window,
                                   flight_cls=Flight, table=self._table)
        self._f: Flight | None = None
        self._ts: Any = None
        self._busy: int | None = None  # the thread running update_state, if any
        self._interrupted: str | None = None
        self._closed = False  # close(): its journal closed, every later call refused
        self._observer_failing = False
        # Per failing observer (by id): [when its failures were last journaled, how many
        # since] (observing.observer_failed: the first, then a count per interval).
        self._observer_reports: dict[int, list[float]] = {}

        self.reconciliation_status = "pending"
        # A halt the journal has not taken (it failed: EXEC-009); the journaled one is the
        # state's. The manager is halted when either says so.
        self._pending_halt: str | None = None

        self._health = HealthWindow(100)
        self._update_count = 0
        self._processing_ms_total = 0.0
        self._error_count = 0
        self._recent_errors: deque[dict[str, Any]] = deque(maxlen=10)
        self._last_update: Any = None

        if self._policy.durable_journal and getattr(event_logger, "mode", "live") != "live":
            raise InvalidArgumentError(
                "a live manager needs a live journal: this EventLogger is in "
                f"{getattr(event_logger, 'mode', '?')!r} mode (it does not make a record "
                "durable before the manager acts on it), so "
                "an accepted block or a routed one could be lost in a crash; use "
                "EventLogger(log_dir, 'live')")
        if health_manager is not None:  # first: a refusal here has claimed nothing
            try:
                health_manager.register_component(COMPONENT, self._health_check)
            except ValueError as exc:
                raise InvalidArgumentError(
                    f"health_manager: {describe_exception(exc)}; a manager replacing another "
                    "takes its place "
                    "through reopen(), or unregister the other first") from None
        try:
            self._attach(event_logger)
        except BaseException:  # a manager that was never built is not registered either
            if health_manager is not None:
                health_manager.unregister_component(COMPONENT)
            raise
        self._notify_event("initialized", execution_mode=self._env.execution_mode)

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
            st = self._state
            # The block in flight as the journal says: a block loaded into the Machine but
            # not started yet (its start record not written) is still queued, counted there.
            f = st.flight
            return {
                "status": self._status().value,
                "current_block": f.block.block_id if f is not None else None,
                "current_block_state": f.state if f is not None else None,
                "reconciliation_status": self.reconciliation_status,
                "blocks_accepted": st.accepted,
                "blocks_executed": st.executed,
                "blocks_failed": st.failed,
                "blocks_cancelled": st.cancelled,
                "blocks_retried": st.retried,
                "current_block_index": st.executed + st.failed + st.cancelled,
                "queue_length": len(self._state.queue),
                "execution_mode": self._env.execution_mode,
                "halted": st.halted or self._pending_halt is not None,
                "halt_reason": st.halt_reason if st.halted else self._pending_halt,
                "interrupted": self._interrupted is not None,
            }

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
            self._refuse_if_halted(f"update_state({trigger_source!r})")
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

    def _cut_short(self) -> bool:
        """True (and the manager retired) if the last update_state on this thread died
        before it could say it had ended: an interrupt at its very last lines."""
        if self._busy != threading.get_ident() or self._running_here():
            return False
        self._interrupted = "an update_state that never finished"
        self._busy = None
        return True

    def _running_here(self) -> bool:
        """True if an update_state of this manager is on the current thread's stack, below
        the call asking (``update_state`` or ``interrupted``, which reach here through
        ``_cut_short``)."""
        frame = sys._getframe(3)
        code = ExecutionManager.update_state.__code__
        while frame is not None:
            if frame.f_code is code and frame.f_locals.get("self") is self:
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def _update(self, timestamp: Any, stamp: str, trigger_source: str,
                instruction_blocks: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        t0 = self._clock()
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
        self._end_update(timestamp, trigger_source, t0, failing=False)
        if self._interrupted is not None:  # retired meanwhile (by another thread), idle
            raise self._retired_error()
        if refusal is not None:
            raise refusal
        return self.get_execution_status()

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

    def _accept_now(self, timestamp: Any, stamp: str, instruction_blocks: Any) -> None:
        with self._mutex:
            if self._interrupted is not None:  # retired (or replaced) since the entry check
                raise self._retired_error()
            outer, self._ts = self._ts, stamp
            try:
                self._accept(timestamp, instruction_blocks)
                if self._unsynced_acceptance and self._busy != threading.get_ident():
                    self._barrier()  # accepted means durable, once the call returns
            finally:
                self._ts = outer  # a collaborator's call inside update_state: put it back

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

    # ------------------------------------------------------------------------- the queue
    def _accept(self, ts: Any, batch: Any) -> None:
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
                exc.scrub(self._redact)  # it quotes the caller's values
                self._record_error(ts, exc)
                raise
            n = len(blocks)
            if not n:
                return
            cap = self._cfg.max_queue_size
            queued = len(self._state.queue)
            if queued + n > cap:
                err = QueueFullError(queued, n, cap)
                self._emit("execution_queue_overflow", {
                    "queue_length": queued, "batch_size": n, "max_queue_size": cap})
                self._record_error(ts, err)
                raise err
            # Journal first: the batch counts as accepted only once every record is written.
            for i, (b, wire) in enumerate(zip(blocks, wires, strict=True)):
                self._emit("block_accepted", {
                    "block_id": b.block_id, "action": b.action,
                    "priority": to_wire(b.priority), "instructions": wire,
                    "batch_index": i, "batch_size": n},
                    sync=False)  # durable by the next barrier, at the latest before returning
            self._unsynced_acceptance = True
            self._state.accept(blocks)
        if self._observers:
            self._notify_event("accepted", count=n, queue_length=len(self._state.queue))

    def _advance(self, ts: Any) -> None:
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

    # ---------------------------------------------------------------- moves (the driver's)

    # --------------------------------------------------------------------- terminal moves

    # ------------------------------------------------------- methods kept by concern
    # Each group lives in its own module (specs/architecture.md); bound here as methods.
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
    _journal_halt = moves.journal_halt
    _halt = moves.halt
    _halt_for = moves.halt_for
    _resume = moves.resume
    _already_accepted = moves.already_accepted
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
    _journal_move = journaling.journal_move
    _on_transition = journaling.on_transition
    _emit = journaling.emit
    _log_failed = journaling.log_failed
    _record_error = journaling.record_error
    _end_update = health.end_update
    _status = health.status
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
        is refused (:class:`~fsm_exec.manager.recovery.LifecycleChangedError`, naming the
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
