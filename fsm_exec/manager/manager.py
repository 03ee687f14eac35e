"""The ExecutionManager: the entry points, the queue, the accounting and recovery.

The block in flight is driven by a :mod:`~fsm_exec.drivers.driver` chosen once at construction
(backtest or live). Every state change happens inside one critical section (``_mutex``), so
the read APIs give a consistent snapshot from any thread.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from fsm_exec.boundary.blocks import InstructionBlock, convert_batch
from fsm_exec.boundary.canonical import (
    NOT_PLAIN,
    Converted,
    canonical,
    canonical_timestamp,
    plain_copy,
    timestamp_problem,
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
)
from fsm_exec.core.errors import (
    COMPONENT,
    ComponentError,
    EventLogError,
    InvalidArgumentError,
    InvalidBlockError,
    ManagerInterruptedError,
    QueueFullError,
    ReentrantCallError,
    ScrubbedException,
    Severity,
    describe_exception,
    safe_repr,
    shorten,
)
from fsm_exec.core.lifecycle import _STATE_OF, TERMINAL_STATES, BlockLifecycle, BlockState, Trigger
from fsm_exec.drivers.calls import VenueCall
from fsm_exec.drivers.deadline import state_deadline
from fsm_exec.drivers.driver import (
    T_FAIL,
    T_REROUTE,
    BacktestDriver,
    Driver,
    Flight,
    LiveDriver,
)
from fsm_exec.journal.files import JournalCorruptError, journal_files
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.journal.reader import JournalRecord, read_journal, recovery_records
from fsm_exec.journal.state import Flight as JournalFlight
from fsm_exec.journal.state import (
    RecoveryReport,
    ReplayError,
    checkpoint_payload,
    replay,
    resolution_of,
)
from fsm_exec.journal.writer import JournalLossError
from fsm_exec.observe.health import (
    DEGRADED,
    UNHEALTHY,
    HealthStatus,
    HealthWindow,
    UnifiedHealthManager,
)
from fsm_exec.observe.seam import CallEvent, ManagerEvent, Observer, TransitionEvent

TRIGGER_SOURCES: tuple[str, ...] = ("strategy_manager", "manual", "retry")

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS, _FAILED, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS, BlockState.FAILED,
                     BlockState.CANCELLED))
_T_CANCEL = str(Trigger.CANCEL)
_TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
_LEVEL = {Severity.CRITICAL: UNHEALTHY, Severity.HIGH: UNHEALTHY,
          Severity.MEDIUM: DEGRADED, Severity.LOW: DEGRADED}
# Errors about the manager itself rather than a block: raised in preference to a refusal.
_SYSTEM_CODES = frozenset({"EXEC-009", "EXEC-012"})
_BARRIER_TRIGGERS = frozenset({str(Trigger.START), str(Trigger.REROUTE), str(Trigger.FAIL)})
_NO_DELTAS = object()


def _positive_price(p: object) -> bool:
    """A finite number > 0: a float or int, or any real number a data provider hands over
    (numpy and pandas scalars, ``Decimal``, ``Fraction``); never a bool."""
    kind = type(p)
    if kind is float:
        return 0 < p < math.inf  # type: ignore[operator]  # NaN compares false
    if kind is int:
        return p > 0  # type: ignore[operator]
    if isinstance(p, bool) or not isinstance(p, numbers.Real | Decimal):
        return False
    try:
        if isinstance(p, Decimal):
            return p.is_finite() and p > 0
        if isinstance(p, numbers.Integral):
            return bool(p > 0)  # type: ignore[operator]  # numbers.Integral: no typed >
        return bool(math.isfinite(p) and p > 0)  # type: ignore[operator]
    except (ArithmeticError, ValueError, TypeError):  # a number type of its own that fails
        return False


def _ignore(*_: object) -> None:
    """What a dead manager does when told of an fsync."""


def check_prices(block: InstructionBlock, market_data: Mapping[str, Any]) -> str | None:
    """The first pre-trade check: every instruction naming a ``token`` needs a price.

    The price must be a finite number > 0 in ``market_data['prices']``.
    """
    prices = (market_data.get("prices")
              if type(market_data) is dict or isinstance(market_data, Mapping) else None)
    if not (type(prices) is dict or isinstance(prices, Mapping)):
        prices = None
    for i, instr in enumerate(block.instructions):
        token = instr.get("token")
        if token is None:
            continue
        if prices is None:
            return "market data has no prices"
        if not _positive_price(prices.get(token)):
            return f"instructions[{i}]: no finite positive price for token {token!r}"
    return None


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


class ExecutionManager:
    """Runs instruction blocks one at a time: route, hand off deltas, wait for reconciliation.

    Collaborators, clock and sleep are given once here and never passed at runtime. See
    ``specs/execution_manager.md`` for the full contract.
    """

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
                 observers: Sequence[Observer] = ()) -> None:
        self._init_args: tuple[tuple[Any, ...], dict[str, Any]] = (
            (config, data_provider, execution_mode, position_update_handler,
             execution_interface_manager, reconciliation_component),
            {"event_logger": event_logger, "health_manager": health_manager, "clock": clock,
             "sleep": sleep, "risk_checks": risk_checks, "observers": observers})
        self._cfg = resolve_config(config)
        self._env = Environment.read(execution_mode)
        self._redact = Redactor(config if isinstance(config, Mapping) else {}, OWN_FIELDS)
        self._finds = self._redact.finds if self._redact else None  # a string holds a secret
        self._data_provider = data_provider
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
        self._risk_checks: tuple[RiskCheck, ...] = (check_prices, *risk_checks)
        for obs in observers:
            if not isinstance(obs, Observer):
                raise InvalidArgumentError(
                    f"observers: {type(obs).__name__} is not an fsm_exec.observe.Observer "
                    "(subclass it and override the methods you need)")
        self._observers: tuple[Observer, ...] = tuple(observers)
        self._late_observer_errors: list[tuple[Observer, Exception]] = []
        self._live = self._env.execution_mode == "live"

        self._mutex = threading.RLock()
        self._queue: deque[InstructionBlock] = deque()
        self._active: set[str] = set()  # queued and in flight
        self._finished: dict[str, BlockState] = {}  # the last duplicate_window blocks
        self._finished_order: deque[str] = deque()
        self._taken: set[str] = set()  # ids a new batch may not reuse: _active | _finished
        self._lc = BlockLifecycle(self._on_transition if event_logger is not None else None)
        self._f: Flight | None = None
        self._ts: Any = None
        self._busy: int | None = None  # the thread running update_state, if any
        self._interrupted: str | None = None
        self._observer_failing = False

        self.blocks_accepted = 0
        self.blocks_executed = 0
        self.blocks_failed = 0
        self.blocks_cancelled = 0
        self.blocks_retried = 0
        self.current_block_index = 0
        self.reconciliation_status = "pending"
        self._halted = False
        self._halt_reason: str | None = None

        self._health = HealthWindow(100)
        self._update_count = 0
        self._processing_ms_total = 0.0
        self._error_count = 0
        self._recent_errors: deque[dict[str, Any]] = deque(maxlen=10)
        self._last_update: Any = None

        if self._live and getattr(event_logger, "mode", "live") != "live":
            raise InvalidArgumentError(
                "a live manager needs a live journal: this EventLogger is in "
                f"{getattr(event_logger, 'mode', '?')!r} mode (buffered, never fsynced), so "
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

    def _attach(self, event_logger: Any) -> None:
        """The part of construction that takes the journal: the claim, the driver, the
        first records (unless an earlier run must be recovered first), the listeners."""
        claim = getattr(event_logger, "claim", None)
        if callable(claim):  # one manager per journal, in this process too
            claim(COMPONENT, self)
        self._driver: Driver = LiveDriver(self) if self._live else BacktestDriver(self)
        # A journal that checkpoints (EventLogger): every file starts with the state.
        self._checkpointing = callable(getattr(event_logger, "checkpoint", None)) and \
            callable(getattr(event_logger, "checkpoint_due", None))
        self._checkpoint_due: Callable[[str], str | None] | None = (
            event_logger.checkpoint_due if self._checkpointing else None)
        self._starts = 0
        self._halt_journaled = True
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

    # ------------------------------------------------------------------- checkpoints
    def _start_journal(self, *, reset: bool) -> None:
        """The first records of a run: a checkpoint of the state (a new file, for a journal
        that checkpoints), then ``component_initialization``."""
        self._write_checkpoint(new_file=True, reset=reset)
        self._starts += 1
        self._emit("component_initialization", {
            "execution_mode": self._env.execution_mode,
            "environment": self._env.environment,
            "deployment_mode": self._env.deployment_mode,
            "config_hash": self._cfg.digest(),
        })

    def _checkpoint_data(self) -> dict[str, Any]:
        """Everything recovery needs, from memory (the same shape the replay builds)."""
        lc, f = self._lc, self._f
        flight = None
        if lc.in_flight and f is not None:
            flight = JournalFlight(f.block, lc.current, f.attempt, f.deltas, f.handed_off,
                                   f.why)
        return checkpoint_payload(
            window=self._cfg.duplicate_window,
            counters={"accepted": self.blocks_accepted, "executed": self.blocks_executed,
                      "failed": self.blocks_failed, "cancelled": self.blocks_cancelled,
                      "retried": self.blocks_retried, "starts": self._starts},
            halted=self._halted, halt_reason=self._halt_reason, queue=self._queue,
            flight=flight,
            finished=((b, str(self._finished[b])) for b in self._finished_order))

    def _write_checkpoint(self, *, new_file: bool, reset: bool = False) -> None:
        if self._log_event is None:
            return
        with self._mutex:
            if self._interrupted is not None:  # its memory may disagree: no state from it
                raise self._retired_error()
            if self._halted and not self._halt_journaled:
                # A halt the journal could not take when it happened (EXEC-009): record it
                # now, before the checkpoint that carries it.
                self._emit("manager_halted", {"reason": self._halt_reason, "block_id": None})
                self._halt_journaled = True
            data = self._checkpoint_data()
            if reset:
                data["reset"] = True  # state from elsewhere: not the records before it
            if not self._checkpointing:
                self._emit("checkpoint", data)
                return
            try:
                self._log.checkpoint(COMPONENT, data, timestamp=self._ts,  # type: ignore[union-attr]
                                     new_file=new_file)
            except EventLogError as exc:
                self._halt("EXEC-009")
                self._durability_lost(exc)  # a checkpoint is written with an fsync
                raise
            except Exception as exc:
                raise self._log_failed("checkpoint", exc) from exc
            self._unsynced_acceptance = False

    def _maybe_checkpoint(self) -> None:
        """At a safe point (memory and journal agree): write the checkpoint the journal
        asks for (a new day: a new file; or every ``checkpoint_every`` records)."""
        due_of = self._checkpoint_due
        if due_of is None:
            return
        due = due_of(COMPONENT)
        if due is not None:
            self._write_checkpoint(new_file=due == "rotate")

    def _fsynced(self, seconds: float) -> None:
        """A journal fsync's time, for the observers. Told from inside the journal's write:
        a failing observer is only noted here, and reported at the end of the call."""
        event = CallEvent(kind="journal_fsync", block_id=None, attempt=0, started=0.0,
                          duration=seconds, outcome="ok")
        for obs in self._observers:
            try:
                obs.on_call(event)
            except Exception as exc:
                self._late_observer_errors.append((obs, exc))

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
        return self._halted

    @property
    def interrupted(self) -> bool:
        """True once an interrupt stopped this manager mid-step (see :meth:`reopen`)."""
        with self._mutex:
            return self._interrupted is not None or self._cut_short()

    @property
    def queued_block_ids(self) -> tuple[str, ...]:
        """The ids of the queued blocks, in the order they will run."""
        with self._mutex:
            return tuple(b.block_id for b in self._queue)

    @property
    def execution_queue(self) -> list[dict[str, Any]]:
        """The queued blocks, in the order they will run, as the component spec's dicts
        (``block_id``, ``action``, ``priority``, ``instructions``) in canonical form: a
        copy (changing it changes nothing), consistent from any thread."""
        with self._mutex:
            return [copy.deepcopy(b.to_dict()) for b in self._queue]

    @property
    def current_instruction_block(self) -> dict[str, Any] | None:
        """The block in flight as the spec's dict (a copy), or ``None`` when none is;
        its state is ``get_execution_status()["current_block_state"]``."""
        with self._mutex:
            f = self._f
            if f is None or not self._lc.in_flight:
                return None
            return copy.deepcopy(f.block.to_dict())

    def block_state(self, block_id: str) -> BlockState | None:
        """A queued, in-flight or recently finished block's state; ``None`` if unknown."""
        with self._mutex:
            if block_id in self._finished:
                return self._finished[block_id]
            if block_id in self._active:
                lc = self._lc
                return (lc.state if lc.in_flight and lc.block_id == block_id
                        else BlockState.QUEUED)
            return None

    def get_execution_status(self) -> dict[str, Any]:
        """The status dict (also returned by :meth:`update_state`); a consistent snapshot,
        from any thread."""
        with self._mutex:
            lc = self._lc
            flying = lc.in_flight
            return {
                "status": self._status().value,
                "current_block": lc.block_id if flying else None,
                "current_block_state": lc.current if flying else None,
                "reconciliation_status": self.reconciliation_status,
                "blocks_accepted": self.blocks_accepted,
                "blocks_executed": self.blocks_executed,
                "blocks_failed": self.blocks_failed,
                "blocks_cancelled": self.blocks_cancelled,
                "blocks_retried": self.blocks_retried,
                "current_block_index": self.current_block_index,
                "queue_length": len(self._queue),
                "execution_mode": self._env.execution_mode,
                "halted": self._halted,
                "halt_reason": self._halt_reason,
                "interrupted": self._interrupted is not None,
            }

    # ----------------------------------------------------------------------- recovery
    def recover(self, source: Path | str | Iterable[Path | str] | Iterable[JournalRecord]
                | None = None) -> RecoveryReport:
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
        """
        self._check_usable(recovering=True)
        if (self.blocks_accepted or self._update_count or self._lc.in_flight
                or self._finished):
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
        if isinstance(source, str | Path):
            path = Path(source)
            records: Any = (recovery_records(path, COMPONENT) if path.is_dir()
                            else read_journal(path, COMPONENT))
        else:
            records = source
        try:
            state = replay(records)
        except ReplayError as exc:
            r = exc.record
            raise JournalCorruptError(r.path if r else "?", r.line if r else 0,
                                      str(exc)) from None
        except JournalCorruptError:
            raise
        with self._mutex:
            self._queue.extend(state.queue.values())
            self._active.update(state.queue)
            self._taken.update(state.queue)
            for block_id, end in state.finished.items():
                self._taken.add(block_id)
                self._remember(block_id, BlockState(end))
            self.blocks_accepted = state.accepted
            self.blocks_executed, self.blocks_failed = state.executed, state.failed
            self.blocks_retried = state.retried
            self.blocks_cancelled = state.cancelled
            self.current_block_index = state.executed + state.failed + state.cancelled
            if state.halted:
                self._halted, self._halt_reason = True, state.halt_reason
            resolution = None
            fl = state.flight
            if fl is not None:
                f = self._f = Flight(fl.block)
                f.attempt, f.deltas, f.handed_off = fl.attempt, fl.deltas, fl.handed_off
                f.why, f.recovered = fl.why, True
                f.entered_at = self._clock()
                self._lc.restore(fl.block.block_id, BlockState(fl.state))
                self._active.add(fl.block.block_id)
                self._taken.add(fl.block.block_id)
                self.reconciliation_status = "pending"
                resolution = resolution_of(fl, queryable=self._query is not None)
                if resolution in ("query_execution", "reroute_at_least_once"):
                    f.call = VenueCall.lost()  # the venue may have executed: ask first
                    f.unresolved = True
            deferred = self._needs_recovery
            self._starts = state.starts + (0 if deferred else self._starts)
            self._needs_recovery = False
            if deferred:
                self._start_journal(reset=not same)
            else:
                self._write_checkpoint(new_file=True, reset=True)
        report = RecoveryReport(
            queued=tuple(state.queue), in_doubt=fl.block.block_id if fl else None,
            in_doubt_state=BlockState(fl.state) if fl else None, resolution=resolution,
            blocks_executed=state.executed, blocks_failed=state.failed,
            halted=state.halted, halt_reason=state.halt_reason,
            dropped=tuple(state.dropped), records=state.records, restarts=state.restarts,
            blocks_cancelled=state.cancelled, checkpoint_seq=state.checkpoint_seq)
        self._emit("recovered", {
            "queued": len(report.queued), "in_doubt": report.in_doubt,
            "in_doubt_state": fl.state if fl else None, "resolution": resolution,
            "blocks_executed": state.executed, "blocks_failed": state.failed,
            "blocks_cancelled": state.cancelled, "halted": state.halted,
            "dropped": len(report.dropped), "from_seq": state.checkpoint_seq})
        self._notify_event("recovered", in_doubt=report.in_doubt, resolution=resolution,
                           queued=len(report.queued), halted=state.halted,
                           action=fl.block.action if fl else None,
                           in_doubt_state=fl.state if fl else None)
        return report

    def reopen(self) -> ExecutionManager:
        """A replacement for this manager, built with the same config, collaborators,
        journal, clock and observers, and recovered from the journal exactly as a restart
        would. This manager is retired: every further call on it is refused.

        The one call to make after an interrupt (:class:`ManagerInterruptedError`):
        ``em = em.reopen()``. Needs an :class:`~fsm_exec.EventLogger` (or any journal
        with a ``log_dir``) to recover from.
        """
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
            health.unregister_component(COMPONENT)
        new = ExecutionManager(*args, **kwargs)
        new.recover()
        return new

    # ---------------------------------------------------------------------- entry points
    def update_state(self, timestamp: Any, trigger_source: str,
                     instruction_blocks: Sequence[Mapping[str, Any]] | None = None
                     ) -> dict[str, Any]:
        """Accept a batch (if given), then run queued blocks until the queue is empty.

        A refused batch (``EXEC-003``, ``EXEC-004``) queues nothing, does not stop queued work,
        and is raised once that work is done. ``manual`` resumes a halted manager. In backtest
        a failed block raises its ``ComponentError`` and leaves the rest of the queue queued.
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

    def _guarded(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run ``step``; an interrupt (or an error that is not one of ours) in the middle of
        it may leave memory and journal disagreeing, so it retires the manager."""
        try:
            return step(*args)
        except ComponentError:
            raise
        except BaseException as exc:
            self._retire(exc)
            raise

    def _retire(self, exc: BaseException) -> None:
        """Stopped in the middle of a step: refuse to go on (see :meth:`reopen`)."""
        with self._mutex:
            self._interrupted = describe_exception(exc)
            self._health.note(UNHEALTHY)
        exc.add_note("fsm_exec: the manager stopped in the middle of a step and refuses "
                     "to go on; em.reopen() gives its replacement, recovered from the "
                     "journal.")

    def _quote(self, value: object) -> str:
        """``value`` as a message quotes it: its repr, redacted, then shortened."""
        return shorten(self._redact(safe_repr(value)))

    def _call_running(self) -> bool:
        """True while a venue call this manager abandoned may still execute (the journal
        is not to be taken from it until then: see ``EventLogger.claim``)."""
        f = self._f
        return f is not None and f.call is not None and f.call.abandoned and not f.call.done

    def _refuse_if_retired(self) -> None:
        """Before a collaborator call that trades (a route, a hand-off) with no journal
        write just before it: a retired manager makes none (a crash would not)."""
        if self._interrupted is not None:
            raise self._retired_error()

    def _retired_error(self) -> ManagerInterruptedError:
        return ManagerInterruptedError(
            f"this manager was stopped in the middle of a step ({self._interrupted}), so its "
            "memory may disagree with its journal; it refuses to go on. Replace it with "
            "em.reopen(), which recovers from the journal as a restart would")

    def _check_usable(self, *, recovering: bool = False) -> None:
        if self._interrupted is not None:
            raise self._retired_error()
        if self._needs_recovery and not recovering:
            raise InvalidArgumentError(
                f"the journal in {getattr(self._log, 'log_dir', '?')} holds an earlier run: "
                "call recover() first (it reads the queue, the finished blocks and a halt "
                "from it), or give the manager a new log directory to start afresh")

    def _stamp(self, timestamp: Any) -> str:
        """The journal's canonical form of a caller's timestamp, or a clear refusal."""
        stamp = canonical_timestamp(timestamp)
        if stamp is None:
            raise InvalidArgumentError(
                f"timestamp: {timestamp_problem(timestamp)}; got {type(timestamp).__name__} "
                f"{self._quote(timestamp)}")
        return stamp

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
                except (InvalidBlockError, QueueFullError) as exc:
                    refusal = exc
            if self._halted and trigger_source == "manual":
                self._resume(timestamp)
            if not self._halted and (self._queue or self._f is not None):
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
        collaborator during ``update_state``: before that call returns)."""
        self._check_usable()
        stamp = self._stamp(timestamp)
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
        ``block_id`` taken like any finished block. Works while the manager is halted.
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

    def _cancel(self, stamp: str, block_ids: Iterable[str] | None,
                reason: str) -> tuple[str, ...]:
        with self._mutex:
            if self._interrupted is not None:  # retired (or replaced) since the entry check
                raise self._retired_error()
            outer, self._ts = self._ts, stamp
            try:
                return self._cancel_now(block_ids, reason)
            finally:
                self._ts = outer

    def _cancel_now(self, block_ids: Iterable[str] | None, reason: str) -> tuple[str, ...]:
        reason = self._redact(reason)
        with self._mutex:
            queued = [b.block_id for b in self._queue]
            if block_ids is None:
                ids = queued
            else:
                ids = list(block_ids)
                waiting = set(queued)
                problems = []
                seen: set[str] = set()
                for block_id in ids:
                    quoted = self._quote(block_id)  # redacted, then shortened
                    if not isinstance(block_id, str):
                        problems.append(f"{quoted}: not a block id")
                        continue
                    if block_id in seen:
                        problems.append(f"{quoted}: named twice")
                    elif block_id not in waiting:
                        state = self.block_state(block_id)
                        problems.append(f"{quoted}: " + (
                            "unknown block" if state is None else
                            f"is {state} (only queued blocks can be cancelled)"))
                    seen.add(block_id)
                if problems:
                    raise InvalidArgumentError("cancel refused, nothing cancelled: "
                                               + "; ".join(problems))
            if not ids:
                return ()
            n = len(ids)
            for i, block_id in enumerate(ids):
                self._emit("block_transition", {
                    "block_id": block_id, "source": _QUEUED, "dest": _CANCELLED,
                    "trigger": _T_CANCEL, "attempt": 0, "reason": reason,
                    "batch_index": i, "batch_size": n}, sync=False)
            gone = set(ids)
            self._queue = deque(b for b in self._queue if b.block_id not in gone)
            for block_id in ids:
                self._active.discard(block_id)
                self._remember(block_id, BlockState.CANCELLED)
            self.blocks_cancelled += n
            self.current_block_index += n
            self._barrier()
        self._notify_event("cancelled", count=n, reason=reason)
        return tuple(ids)

    def _durability_lost(self, exc: BaseException) -> None:
        """A synced write (or a barrier) failed: the records written unsynced before it
        (acceptances, a cancel, moves that ride along) may or may not survive, and memory
        has acted on them. Memory may disagree with the journal: retire, as a crash here
        would (see :meth:`_barrier`)."""
        self._interrupted = ("the journal could not make its records durable: "
                             + self._redact(describe_exception(exc)))

    def _barrier(self) -> None:
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

    # ------------------------------------------------------------------------- the queue
    def _accept(self, ts: Any, batch: Any) -> None:
        with self._mutex:
            try:
                blocks, wires = convert_batch(batch, self._taken,
                                              self._redact if self._redact else None)
            except InvalidBlockError as exc:
                exc.scrub(self._redact)  # it quotes the caller's values
                self._record_error(ts, exc)
                raise
            n = len(blocks)
            if not n:
                return
            cap = self._cfg.max_queue_size
            if len(self._queue) + n > cap:
                err = QueueFullError(len(self._queue), n, cap)
                self._emit("execution_queue_overflow", {
                    "queue_length": len(self._queue), "batch_size": n, "max_queue_size": cap})
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
            self._queue.extend(blocks)
            for b in blocks:
                self._active.add(b.block_id)
                self._taken.add(b.block_id)
            self.blocks_accepted += n
        if self._observers:
            self._notify_event("accepted", count=n, queue_length=len(self._queue))

    def _advance(self, ts: Any) -> None:
        lc = self._lc
        while not self._halted:
            with self._mutex:
                if not lc.in_flight:
                    if not self._queue:
                        return
                    self._maybe_checkpoint()
                    block = self._queue[0]
                    lc.load(block.block_id)  # refuses unless the previous block is terminal
                    self._queue.popleft()
                    f = self._f = Flight(block)
                    f.entered_at = self._clock()
                    self.reconciliation_status = "pending"
                f = self._f  # type: ignore[assignment]
            assert f is not None
            self._driver.drive(ts, f)
            if not self._live and f.error is not None:
                raise f.error  # backtest fails fast; the rest of the queue waits

    # ---------------------------------------------------------------- moves (the driver's)
    def _move(self, trigger: str, *, _deltas: Any = _NO_DELTAS, **data: Any) -> str:
        """Fire ``trigger`` on the block in flight: journal first (write-ahead), then the
        state, then the bookkeeping, in one critical section."""
        f = self._f
        assert f is not None
        with self._mutex:
            lc = self._lc
            source = lc.current
            lc.fire(trigger, **data)
            dest = lc.current
            attempt = data.get("attempt")
            if attempt is not None:
                f.attempt = attempt
            if _deltas is not _NO_DELTAS:
                f.deltas, f.handed_off = _deltas, False
            f.entered_at = self._clock()
            if dest == _RETRYING:
                self.blocks_retried += 1
            elif trigger == T_REROUTE:
                f.call = None
            if trigger == T_FAIL and data.get("halts"):
                self._halt_for(data["error_code"])
            if dest in _TERMINAL:
                self._finish(f, dest)
        if self._observers:
            self._notify_transition(f, source, dest, trigger, data)
        return dest

    def _fail(self, f: Flight, code: str, reason: str, exc: BaseException | None = None,
              *, halt: bool = False) -> None:
        err = ComponentError(code, f"block {f.block.block_id!r}: {reason}",
                             original_exception=(ScrubbedException.of(exc, self._redact)
                                                 if exc is not None else None),
                             block_id=f.block.block_id)
        f.error = err
        if halt:
            self._move(T_FAIL, error_code=code, reason=reason, halts=True)
        else:
            self._move(T_FAIL, error_code=code, reason=reason)

    def _handed_off(self, ts: Any, f: Flight) -> None:
        """The position handler took the deltas: say so (live recovery relies on it)."""
        with self._mutex:
            f.handed_off = True
            if self._live:  # what crash recovery needs to know; a backtest is rerun instead
                self._emit("positions_updated", {"block_id": f.block.block_id,
                                                     "attempt": f.attempt})

    def _unresolved(self, ts: Any, f: Flight, how: str) -> None:
        """The venue's outcome is still unknown: ask again on the next attempt."""
        with self._mutex:
            f.attempt += 1
            self._emit("execution_unresolved", {
                "block_id": f.block.block_id, "attempt": f.attempt, "reason": how})

    def _canonical_deltas(self, value: Any) -> Converted:
        """The venue's reply in canonical form (redacted), the moment it returns."""
        copied = plain_copy(value, self._finds)
        if copied is not NOT_PLAIN:
            return Converted(copied, copied)
        return canonical(value, redact=self._redact or None)

    # ---------------------------------------------------------------------- risk checks
    def _risk_refusal(self, ts: Any, block: InstructionBlock) -> tuple[str, str] | None:
        checks = self._risk_checks
        if len(checks) == 1:  # prices only: no token named, nothing to check
            for instr in block.instructions:
                if "token" in instr:
                    break
            else:
                return None
        try:
            market = self._data_provider.get_data(ts)["market_data"]
        except Exception as exc:
            return "EXEC-005", self._redact(
                f"market data unavailable: {describe_exception(exc)}")
        for check in checks:
            code = "EXEC-005" if check is check_prices else "EXEC-006"
            name = getattr(check, "__name__", type(check).__name__)
            try:
                verdict = check(block, market)
            except Exception as exc:
                return code, self._redact(
                    f"risk check {name} raised {describe_exception(exc)}")
            if verdict is None or verdict is True:
                continue
            reason = verdict if isinstance(verdict, str) and verdict else "refused"
            return code, self._redact(f"{name}: {reason}")
        return None

    # --------------------------------------------------------------------- terminal moves
    def _finish(self, f: Flight, state: str) -> None:
        """Bookkeeping for a block that reached ``state`` (inside ``_move``'s section)."""
        ts = self._ts
        block_id = f.block.block_id
        self._active.discard(block_id)
        self._remember(block_id, _STATE_OF[state])
        self.current_block_index += 1
        self._f = None
        if state == _SUCCESS:
            self.blocks_executed += 1
            self.reconciliation_status = "success"
            return
        self.blocks_failed += 1
        self.reconciliation_status = "failed"
        err = f.error
        assert err is not None
        self._record_error(ts, err)
        self._emit("block_failed", {"block_id": block_id, "error_code": err.error_code,
                                        "attempts": f.attempt})
        if self._halted:
            self._emit("manager_halted", {"reason": self._halt_reason,
                                          "block_id": block_id})
            self._halt_journaled = True
            self._notify_event("halted", reason=self._halt_reason, block_id=block_id)

    def _remember(self, block_id: str, state: BlockState) -> None:
        self._finished[block_id] = state
        order = self._finished_order
        order.append(block_id)
        while len(order) > self._cfg.duplicate_window:
            old = order.popleft()
            del self._finished[old]
            self._taken.discard(old)

    def _halt(self, reason: str) -> None:
        """Halt for ``reason``, unless already halted: the first reason stands (positions
        in doubt stay the reason when the disk fails after), and a halt is journaled once.
        """
        with self._mutex:
            if self._halted:
                return
            self._halted = True
            self._halt_reason = reason
            self._halt_journaled = False
            self._health.note(UNHEALTHY)

    def _halt_for(self, code: str) -> None:
        """A failure record that halts (``halts: true``) was just journaled: it is the halt
        the journal holds first unless one is journaled already, so it replaces a halt the
        journal never took (an ``EXEC-009`` before it), as recovery reads it."""
        if self._halted and self._halt_journaled:
            return
        self._halted = True
        self._halt_reason = code
        self._halt_journaled = True
        self._health.note(UNHEALTHY)

    def _resume(self, ts: Any) -> None:
        with self._mutex:
            reason = self._halt_reason
            self._halted = False
            self._halt_reason = None
            self._emit("manager_resumed", {"reason": reason, "trigger_source": "manual"})
        self._notify_event("resumed", reason=reason)

    # ------------------------------------------------------------------ events and health
    def _journal_move(self, event: dict[str, Any], sync: bool) -> None:
        """Write a move's ``block_transition`` record (the driver's hot path; see
        :meth:`_on_transition` for the general one). A retired manager writes nothing:
        its retirement is a crash at that instant, on every thread."""
        if self._interrupted is not None:
            raise self._retired_error()
        try:
            if self._syncable:
                self._log_event(self._ts, "block_transition", COMPONENT,  # type: ignore[misc]
                                event, sync=sync)  # type: ignore[call-arg]
            else:
                self._log_event(self._ts, "block_transition", COMPONENT, event)  # type: ignore[misc]
        except EventLogError as exc:
            self._halt("EXEC-009")
            if sync or isinstance(exc, JournalLossError):
                self._durability_lost(exc)
            raise
        except Exception as exc:
            raise self._log_failed("block_transition", exc) from exc
        if sync:
            self._unsynced_acceptance = False

    def _on_transition(self, source: str, dest: str, trigger: str, data: dict[str, Any]) -> None:
        f = self._f
        assert f is not None
        event = {"block_id": f.block.block_id, "source": source, "dest": dest,
                 "trigger": trigger, "attempt": f.attempt}
        if data:
            event.update(data)
        # Write-ahead barriers: the intent to route (start, reroute), deltas about to be
        # handed off, and a block's failure must be durable before the manager acts on
        # them; the other moves ride on the next barrier.
        self._journal_move(event, trigger in _BARRIER_TRIGGERS or "deltas" in event)

    def _emit(self, event_type: str, data: dict[str, Any], *, sync: bool = True) -> None:
        """Journal one record, stamped with the current call's canonical timestamp."""
        log_event = self._log_event
        if log_event is None:
            return
        try:
            with self._mutex:  # one writer at a time, each with its own call's timestamp
                if self._interrupted is not None:  # retired meanwhile: a crash at that instant
                    raise self._retired_error()
                if self._syncable:
                    log_event(self._ts, event_type, COMPONENT, data,  # type: ignore[call-arg]
                              sync=sync)
                else:
                    log_event(self._ts, event_type, COMPONENT, data)
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

    def _log_failed(self, event_type: str, exc: Exception) -> EventLogError:
        """The journal could not record: halt before acting on it, and say so."""
        self._halt("EXEC-009")
        return EventLogError(self._redact(
            f"event log write failed ({event_type}): {describe_exception(exc)}"),
            ScrubbedException.of(exc, self._redact))

    def _record_error(self, ts: Any, err: ComponentError) -> None:
        entry = {"timestamp": ts, "error_code": err.error_code, "error_message": err.message,
                 "error_severity": str(err.severity), "block_id": err.block_id}
        with self._mutex:
            self._recent_errors.append(entry)
            self._error_count += 1
            self._health.note(_LEVEL[err.severity])
        data = {k: v for k, v in entry.items() if k != "timestamp"}
        if err.original_exception is not None:
            original = err.original_exception
            data["exception_type"] = (original.type_name.rpartition(".")[2]
                                      if isinstance(original, ScrubbedException)
                                      else type(original).__name__)
        self._emit("error", data)
        if self._observers:
            self._notify_event("error", error_code=err.error_code, block_id=err.block_id)

    def _end_update(self, ts: Any, trigger_source: str, t0: float, *, failing: bool) -> None:
        ms = (self._clock() - t0) * 1000.0
        with self._mutex:
            self._update_count += 1
            self._processing_ms_total += ms
            self._last_update = ts
            self._health.close()
            data = {
                "trigger_source": trigger_source,
                "current_block_index": self.current_block_index,
                "blocks_executed": self.blocks_executed,
                "blocks_failed": self.blocks_failed,
                "queue_length": len(self._queue),
                "halted": self._halted,
                "processing_time_ms": ms,
            }
            try:
                if self._interrupted is None:  # a retired manager's counters prove nothing
                    # a barrier only for blocks still queued
                    self._emit("state_update", data, sync=self._unsynced_acceptance)
            except EventLogError:
                if not failing:  # never hide the error already on its way out
                    raise
        late = self._late_observer_errors
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
                               duration_s=ms / 1000.0, queue_length=data["queue_length"],
                               halted=data["halted"])

    def _status(self) -> HealthStatus:
        if self._f is None:  # nothing in flight (the end of every update): the short way
            return self._health.status(halted=self._halted or self._interrupted is not None)
        return self._assess()[0]

    def _assess(self) -> tuple[HealthStatus, dict[str, Any] | None, dict[str, Any] | None]:
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

    def _health_check(self) -> dict[str, Any]:
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
                    "queue_size": len(self._queue),
                },
            }

    def health_check(self) -> dict[str, Any]:
        """This component's health report (what the health manager receives)."""
        return self._health_check()

    @property
    def health_status(self) -> HealthStatus:
        """``healthy``, ``degraded`` or ``unhealthy``: the last 100 updates, a halt, and the
        block in flight (in doubt: unhealthy; stuck past its state's deadline: degraded)."""
        with self._mutex:
            return self._status()

    # ------------------------------------------------------------------------ observers
    def _notify_transition(self, f: Flight, source: str, dest: str, trigger: str,
                           data: Mapping[str, Any]) -> None:
        event = TransitionEvent(
            block_id=f.block.block_id, action=f.block.action, source=source, dest=dest,
            trigger=trigger, attempt=f.attempt, at=f.entered_at,
            error_code=data.get("error_code"), reason=data.get("reason"),
            halts=bool(data.get("halts")), recovered=f.recovered)
        for obs in self._observers:
            try:
                obs.on_transition(event)
            except Exception as exc:
                self._observer_failed(obs, exc)

    def _call_done(self, kind: str, f: Flight | None, t0: float, outcome: str,
                   exc: BaseException | None = None, *, duration: float | None = None) -> None:
        if not self._observers:
            return
        event = CallEvent(kind=kind, block_id=f.block.block_id if f is not None else None,
                          attempt=f.attempt if f is not None else 0, started=t0,
                          duration=(self._clock() - t0) if duration is None else duration,
                          outcome=outcome,
                          error_type=type(exc).__name__ if exc is not None else None)
        for obs in self._observers:
            try:
                obs.on_call(event)
            except Exception as err:
                self._observer_failed(obs, err)

    def _notify_event(self, kind: str, **data: Any) -> None:
        if not self._observers:
            return
        event = ManagerEvent(kind=kind, at=self._clock(), data=data)
        for obs in self._observers:
            try:
                obs.on_event(event)
            except Exception as exc:
                self._observer_failed(obs, exc)

    def _observer_failed(self, obs: Observer, exc: Exception, *, times: int = 1) -> None:
        """An observer raised: report it once (journal, health), and carry on."""
        if self._observer_failing:
            return
        self._observer_failing = True
        again = f" ({times} times in this call)" if times > 1 else ""
        try:
            self._record_error(self._ts, ComponentError(
                "EXEC-016", self._redact(f"observer {type(obs).__name__} raised "
                                         f"{describe_exception(exc)}{again}"),
                original_exception=ScrubbedException.of(exc, self._redact)))
        finally:
            self._observer_failing = False
