"""The ExecutionManager: one block at a time, each driven through the lifecycle Machine."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._blocks import InstructionBlock, validate_batch
from ._calls import VenueCall
from ._config import OWN_FIELDS, Environment, ExecutionConfig, Redactor, resolve_config
from ._errors import (
    COMPONENT,
    ComponentError,
    EventLogError,
    InvalidArgumentError,
    InvalidBlockError,
    QueueFullError,
    ReentrantCallError,
    Severity,
)
from ._health import DEGRADED, UNHEALTHY, HealthStatus, HealthWindow, UnifiedHealthManager
from ._journal import JournalCorruptError, JournalRecord, read_journal
from ._lifecycle import _STATE_OF, BlockLifecycle, BlockState, Trigger
from ._protocols import (
    DataProvider,
    EventSink,
    ExecutionInterfaceManager,
    ExecutionRejected,
    PositionUpdateHandler,
    ReconciliationComponent,
    RiskCheck,
)
from ._replay import RecoveryReport, ReplayError, replay

TRIGGER_SOURCES: tuple[str, ...] = ("strategy_manager", "manual", "retry")
RECENT_FINISHED = 10_000
_POLL_FIRST, _POLL_MAX = 0.05, 1.0

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS, _FAILED = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS, BlockState.FAILED))
_CANCELLED, _T_CANCEL = str(BlockState.CANCELLED), str(Trigger.CANCEL)
# Triggers as plain strings: an enum member's hash is a Python-level call on the hot path.
(_T_START, _T_EXECUTED, _T_ROUTE_FAILED, _T_REROUTE, _T_RESUME_RECONCILIATION, _T_RECONCILED,
 _T_RECONCILIATION_TIMEOUT, _T_FAIL) = (
    str(t) for t in (Trigger.START, Trigger.EXECUTED, Trigger.ROUTE_FAILED, Trigger.REROUTE,
                     Trigger.RESUME_RECONCILIATION, Trigger.RECONCILED,
                     Trigger.RECONCILIATION_TIMEOUT, Trigger.FAIL))
_LEVEL = {Severity.CRITICAL: UNHEALTHY, Severity.HIGH: UNHEALTHY,
          Severity.MEDIUM: DEGRADED, Severity.LOW: DEGRADED}
_MISSING = object()
# Errors about the manager itself rather than a block: raised in preference to a refusal.
_SYSTEM_CODES = frozenset({"EXEC-009", "EXEC-012"})
_BARRIER_TRIGGERS = frozenset({str(Trigger.START), str(Trigger.REROUTE), str(Trigger.FAIL)})

# Verdicts of resolving a venue call whose outcome is not known yet.
_EXECUTED, _NOT_EXECUTED, _UNKNOWN = "executed", "not_executed", "unknown"


class _Flight:
    """What the manager knows about the block in flight, beyond its lifecycle state."""

    __slots__ = ("block", "attempt", "call", "why", "deltas", "handed_off", "error")

    def __init__(self, block: InstructionBlock) -> None:
        self.block = block
        self.attempt = 1
        self.call: VenueCall | None = None  # the venue call of this attempt, once made
        self.why = ""  # why the block is retrying
        self.deltas: Any = None
        self.handed_off = False
        self.error: ComponentError | None = None


def _positive_price(p: object) -> bool:
    kind = type(p)
    if kind is float:
        return 0 < p < math.inf  # type: ignore[operator]  # NaN compares false
    if kind is int:
        return p > 0  # type: ignore[operator]
    return (isinstance(p, int | float) and not isinstance(p, bool)
            and math.isfinite(p) and p > 0)


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
                 risk_checks: Sequence[RiskCheck] = ()) -> None:
        self._cfg = resolve_config(config)
        self._env = Environment.read(execution_mode)
        self._redact = Redactor(config if isinstance(config, Mapping) else {}, OWN_FIELDS)
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
                raise InvalidArgumentError(f"risk_checks: {check!r} is not callable")
        self._risk_checks: tuple[RiskCheck, ...] = (check_prices, *risk_checks)
        self._live = self._env.execution_mode == "live"

        self._queue: deque[InstructionBlock] = deque()
        self._active: set[str] = set()  # queued and in flight
        self._finished: dict[str, BlockState] = {}  # the last RECENT_FINISHED blocks
        self._finished_order: deque[str] = deque()
        self._taken: set[str] = set()  # ids a new batch may not reuse: _active | _finished
        self._lc = BlockLifecycle(self._on_transition if event_logger is not None else None)
        self._f: _Flight | None = None
        self._ts: Any = None

        self.blocks_accepted = 0
        self.blocks_executed = 0
        self.blocks_failed = 0
        self.blocks_cancelled = 0
        self.blocks_retried = 0
        self.current_block_index = 0
        self.reconciliation_status = "pending"
        self._halted = False
        self._halt_reason: str | None = None
        self._busy = False

        self._health = HealthWindow(100)
        self._update_count = 0
        self._processing_ms_total = 0.0
        self._error_count = 0
        self._recent_errors: deque[dict[str, Any]] = deque(maxlen=10)
        self._last_update: Any = None

        if health_manager is not None:
            health_manager.register_component(COMPONENT, self._health_check)
        self._emit(None, "component_initialization", {
            "execution_mode": self._env.execution_mode,
            "environment": self._env.environment,
            "deployment_mode": self._env.deployment_mode,
            "config_hash": self._cfg.digest(),
        })

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
    def queued_block_ids(self) -> tuple[str, ...]:
        """The ids of the queued blocks, in the order they will run."""
        return tuple(b.block_id for b in self._queue)

    def block_state(self, block_id: str) -> BlockState | None:
        """A queued, in-flight or recently finished block's state; ``None`` if unknown."""
        if block_id in self._finished:
            return self._finished[block_id]
        if block_id in self._active:
            lc = self._lc
            return lc.state if lc.in_flight and lc.block_id == block_id else BlockState.QUEUED
        return None

    def get_execution_status(self) -> dict[str, Any]:
        """The status dict (also returned by :meth:`update_state`)."""
        lc = self._lc
        flying = lc.in_flight
        return {
            "status": self._health.status(halted=self._halted).value,
            "current_block": lc.block_id if flying else None,
            "current_block_state": str(lc.state) if flying else None,
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
        }

    # ----------------------------------------------------------------------- recovery
    def recover(self, source: Path | str | Iterable[Path | str] | Iterable[JournalRecord]
                ) -> RecoveryReport:
        """Rebuild this (new) manager's state from a journal, before any ``update_state``.

        ``source`` is a log directory, journal files, or records. Blocks accepted but not
        started are queued again in their original order; finished blocks keep their
        result and are never run again; a halted manager stays halted. The block that was
        in flight is *in doubt*: it stays in flight and is settled first on the next
        ``update_state`` (the report's ``resolution`` says how). A journal that cannot be
        read, or whose records break the lifecycle, is refused with
        :class:`JournalCorruptError` naming the file and line.
        """
        if (self.blocks_accepted or self._update_count or self._lc.in_flight
                or self._finished):
            raise InvalidArgumentError("recover() must be called on a new manager, before "
                                       "any batch or update_state")
        records = (read_journal(source, COMPONENT) if isinstance(source, str | Path)
                   else source)
        try:
            state = replay(records)  # type: ignore[arg-type]
        except ReplayError as exc:
            r = exc.record
            raise JournalCorruptError(r.path if r else "?", r.line if r else 0,
                                      str(exc)) from None
        self._queue.extend(state.accepted[i] for i in state.queued)
        self._active.update(state.queued)
        self._taken.update(state.queued)
        for block_id, end in state.finished.items():
            self._taken.add(block_id)
            self._remember(block_id, BlockState(end))
        self.blocks_accepted = len(state.order)
        self.blocks_executed, self.blocks_failed = state.executed, state.failed
        self.blocks_retried = state.retried
        self.blocks_cancelled = state.cancelled
        self.current_block_index = state.executed + state.failed + state.cancelled
        if state.halted:
            self._halted, self._halt_reason = True, state.halt_reason
        resolution = None
        fl = state.flight
        if fl is not None:
            f = self._f = _Flight(fl.block)
            f.attempt, f.deltas, f.handed_off = fl.attempt, fl.deltas, fl.handed_off
            self._lc.restore(fl.block.block_id, BlockState(fl.state))
            self._active.add(fl.block.block_id)
            self._taken.add(fl.block.block_id)
            self.reconciliation_status = "pending"
            if fl.state == _PENDING:
                resolution = "reconcile" if fl.handed_off else "hand_off_then_reconcile"
            elif fl.state == _RETRYING and fl.why == "reconciliation_timeout":
                f.why = fl.why
                resolution = "reconcile"
            else:  # routing, or retrying a route: the venue may have executed
                f.why, f.call = fl.why or "in doubt after a restart", VenueCall.lost()
                resolution = ("query_execution" if self._query is not None
                              else "reroute_at_least_once")
        report = RecoveryReport(
            queued=tuple(state.queued), in_doubt=fl.block.block_id if fl else None,
            in_doubt_state=BlockState(fl.state) if fl else None, resolution=resolution,
            blocks_executed=state.executed, blocks_failed=state.failed,
            halted=state.halted, halt_reason=state.halt_reason,
            dropped=tuple(state.dropped), records=state.records, restarts=state.restarts)
        self._emit(None, "recovered", {
            "queued": len(report.queued), "in_doubt": report.in_doubt,
            "in_doubt_state": fl.state if fl else None, "resolution": resolution,
            "blocks_executed": state.executed, "blocks_failed": state.failed,
            "halted": state.halted, "dropped": len(report.dropped)})
        return report

    # ---------------------------------------------------------------------- entry points
    def update_state(self, timestamp: Any, trigger_source: str,
                     instruction_blocks: Sequence[Mapping[str, Any]] | None = None
                     ) -> dict[str, Any]:
        """Accept a batch (if given), then run queued blocks until the queue is empty.

        A refused batch (``EXEC-003``, ``EXEC-004``) queues nothing, does not stop queued work,
        and is raised once that work is done. ``manual`` resumes a halted manager. In backtest
        a failed block raises its ``ComponentError`` and leaves the rest of the queue queued.
        """
        if trigger_source not in TRIGGER_SOURCES:
            err = InvalidArgumentError(
                f"trigger_source must be one of {', '.join(TRIGGER_SOURCES)}, got "
                f"{type(trigger_source).__name__} {self._redact(repr(trigger_source))[:40]}")
            self._record_error(timestamp, err)
            raise err
        if self._busy:
            reentry = ReentrantCallError(
                "update_state was called while update_state is running (from a "
                "collaborator?); queue follow-up blocks with execute_instruction_blocks")
            self._record_error(timestamp, reentry)
            raise reentry
        self._busy = True
        try:
            return self._update(timestamp, trigger_source, instruction_blocks)
        finally:
            self._busy = False

    def _update(self, timestamp: Any, trigger_source: str,
                instruction_blocks: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        t0 = self._clock()
        self._ts = timestamp
        refusal: ComponentError | None = None
        try:
            if instruction_blocks is not None:
                try:
                    self._accept(timestamp, instruction_blocks)
                except (InvalidBlockError, QueueFullError) as exc:
                    refusal = exc
            if self._halted and trigger_source == "manual":
                self._resume(timestamp)
            if not self._halted:
                self._advance(timestamp)
        except BaseException as exc:
            if not isinstance(exc, Exception) and self._lc.in_flight:
                self._halt("interrupted")  # KeyboardInterrupt mid-block: the block is in doubt
            self._end_update(timestamp, trigger_source, t0, failing=True)
            if refusal is None:
                raise
            if isinstance(exc, ComponentError) and exc.error_code not in _SYSTEM_CODES:
                # The caller must learn that its batch was not taken: the refusal wins over
                # a block's own failure, which rides along as a note and as __context__.
                refusal.add_note(f"Queued work also stopped on: {exc}")
                raise refusal  # noqa: B904 - __context__ keeps the block's failure
            exc.add_note(f"The batch given with this call was also refused: {refusal}")
            raise
        self._end_update(timestamp, trigger_source, t0, failing=False)
        if refusal is not None:
            raise refusal
        return self.get_execution_status()

    def execute_instruction_blocks(self, timestamp: Any,
                                   instruction_blocks: Sequence[Mapping[str, Any]]) -> None:
        """Validate a batch and queue it whole, or refuse it whole; runs nothing."""
        self._accept(timestamp, instruction_blocks)
        if self._unsynced_acceptance and not self._busy:
            self._barrier()  # accepted means durable, once the call returns

    def cancel(self, timestamp: Any, block_ids: Iterable[str] | None = None, *,
               reason: str) -> tuple[str, ...]:
        """Cancel queued blocks (all of them when ``block_ids`` is ``None``); return their ids.

        Atomic: an id that is unknown, in flight or finished refuses the whole call and
        nothing changes. Each cancelled block goes ``queued --cancel--> cancelled``, is
        journaled (and durable) before this returns, is never routed, and keeps its
        ``block_id`` taken like any finished block. Works while the manager is halted.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidArgumentError("cancel: reason must be a non-empty string")
        if isinstance(block_ids, str):
            raise InvalidArgumentError("cancel: block_ids must be a list of ids (or None for "
                                       "every queued block), not one string")
        queued = [b.block_id for b in self._queue]
        if block_ids is None:
            ids = queued
        else:
            ids = list(block_ids)
            waiting = set(queued)
            problems = []
            seen: set[str] = set()
            for block_id in ids:
                if block_id in seen:
                    problems.append(f"{block_id!r}: named twice")
                elif block_id not in waiting:
                    state = self.block_state(block_id) if isinstance(block_id, str) else None
                    problems.append(f"{block_id!r}: " + (
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
            self._emit(timestamp, "block_transition", {
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
        return tuple(ids)

    def _barrier(self) -> None:
        """Make every record written so far durable (a journal with sync())."""
        if self._syncable:
            try:
                self._log.sync()  # type: ignore[union-attr]
            except EventLogError:
                self._halt("EXEC-009")
                raise
            except Exception as exc:
                raise self._log_failed("sync", exc) from exc
        self._unsynced_acceptance = False

    # ------------------------------------------------------------------------- the queue
    def _accept(self, ts: Any, batch: Any) -> None:
        try:
            blocks = validate_batch(batch, self._taken)
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
            self._emit(ts, "execution_queue_overflow", {
                "queue_length": len(self._queue), "batch_size": n, "max_queue_size": cap})
            self._record_error(ts, err)
            raise err
        # Journal first: the batch counts as accepted only once every record is written.
        for i, b in enumerate(blocks):
            self._emit(ts, "block_accepted", {
                "block_id": b.block_id, "action": b.action, "priority": b.priority,
                "instructions": b.instructions, "batch_index": i, "batch_size": n},
                sync=False)  # durable by the next barrier, at the latest before returning
        self._unsynced_acceptance = True
        self._queue.extend(blocks)
        for b in blocks:
            self._active.add(b.block_id)
            self._taken.add(b.block_id)
        self.blocks_accepted += n

    def _advance(self, ts: Any) -> None:
        lc = self._lc
        while not self._halted:
            if not lc.in_flight:
                if not self._queue:
                    return
                block = self._queue[0]
                lc.load(block.block_id)  # refuses unless the previous block is terminal
                self._queue.popleft()
                self._f = _Flight(block)
                self.reconciliation_status = "pending"
            self._drive(ts)

    def _drive(self, ts: Any) -> None:
        """Move the block in flight until it is terminal (or the manager halts)."""
        lc, f = self._lc, self._f
        assert f is not None
        if not self._live and lc.current == _QUEUED:
            self._straight_through(ts, f)
        while True:
            state = lc.current
            if state == _QUEUED:
                lc.fire(_T_START)
            elif state == _ROUTING:
                self._route(ts, f)
            elif state == _PENDING:
                self._reconcile(ts, f)
            elif state == _RETRYING:
                self._retry(ts, f)
            else:
                self._finish(ts, f, state)
                return

    # ----------------------------------------------------------------------- the states
    def _straight_through(self, ts: Any, f: _Flight) -> None:
        """The backtest happy path in one go: the same steps and records as the state by
        state driver (which takes over, where it stands, at the first deviation)."""
        lc = self._lc
        lc.fire(_T_START)
        refusal = self._risk_refusal(ts, f.block)
        if refusal is not None:
            self._fail(ts, f, *refusal)
            return
        f.call = call = VenueCall()  # recorded before the call: an interrupt leaves a trace
        try:  # VenueCall.run_inline, inlined (measured)
            call.value = self._route_instruction(ts, f.block)
        except Exception as exc:
            call.error = exc
        except BaseException as exc:  # KeyboardInterrupt: the outcome is now in doubt
            call.error = exc
            raise
        if not call.returned:
            return  # _route classifies the failure
        self._executed(_T_EXECUTED, f, call.value)
        if self._hand_off(ts, f):
            lc.fire(_T_RECONCILED)

    def _route(self, ts: Any, f: _Flight) -> None:
        call = f.call
        if call is None:
            refusal = self._risk_refusal(ts, f.block)
            if refusal is not None:
                code, reason = refusal
                self._fail(ts, f, code, reason)
                return
            f.call = call = VenueCall()
            args = (ts, f.block)
            if self._live:
                call.run_guarded(self._route_instruction, args,
                                 self._cfg.execution_timeout, self._clock,
                                 f"fsm_exec-route-{f.block.block_id}")
            else:
                call.run_inline(self._route_instruction, args)
        if call.returned and not (self._live and call.elapsed > self._cfg.execution_timeout):
            self._executed(_T_EXECUTED, f, call.value)
            return
        why = self._why_failed(call)
        if not self._live and not call.in_doubt:
            self._fail(ts, f, "EXEC-001", f"venue call failed: {why}", call.error)
        elif isinstance(call.error, ExecutionRejected) and not call.error.retryable:
            self._fail(ts, f, "EXEC-001", f"venue refused the block for good: {why}",
                       call.error)
        else:
            f.why = why
            self.blocks_retried += 1
            self._health.note(DEGRADED)
            self._lc.fire(_T_ROUTE_FAILED, reason=why)

    def _why_failed(self, call: VenueCall) -> str:
        if not call.done or (self._live and call.elapsed > self._cfg.execution_timeout):
            return f"no reply within execution_timeout ({self._cfg.execution_timeout:g}s)"
        if call.in_doubt:
            return f"outcome in doubt: {type(call.error).__name__}"
        if call.error is not None:
            kind = "rejected" if isinstance(call.error, ExecutionRejected) else "error"
            return self._redact(f"{kind}: {type(call.error).__name__}: {call.error}")
        return "the venue returned no deltas (None)"

    def _executed(self, trigger: str, f: _Flight, deltas: Any, **data: Any) -> None:
        """Move to pending_reconciliation with fresh deltas, not yet handed off."""
        self._lc.fire(trigger, deltas=deltas, **data)
        f.deltas, f.handed_off = deltas, False

    def _hand_off(self, ts: Any, f: _Flight) -> bool:
        """Give the deltas to the position handler, once; False if it refused them."""
        try:
            self._update_positions(ts, "execution_manager", f.deltas)
        except Exception as exc:
            self._fail(ts, f, "EXEC-008", self._redact(
                f"position handler refused the deltas: {type(exc).__name__}: {exc}"),
                exc, halt=True)
            return False
        f.handed_off = True
        if self._live:  # what crash recovery needs to know; a backtest is rerun instead
            self._emit(ts, "positions_updated", {"block_id": f.block.block_id,
                                                 "attempt": f.attempt})
        return True

    def _reconcile(self, ts: Any, f: _Flight) -> None:
        if not f.handed_off and not self._hand_off(ts, f):
            return
        if not self._live:  # simulated: success once the position handler took the deltas
            self._lc.fire(_T_RECONCILED)
            return
        verdict, waited = self._poll_reconciliation(f.block.block_id)
        if verdict == "success":
            self._lc.fire(_T_RECONCILED, waited_s=waited)
        elif verdict == "failed":
            self._fail(ts, f, "EXEC-002", "reconciliation reported failure", halt=True)
        else:
            self._emit(ts, "reconciliation_timeout", {
                "block_id": f.block.block_id, "attempt": f.attempt, "waited_s": waited},
                sync=False)
            f.why = "reconciliation_timeout"
            self.blocks_retried += 1
            self._health.note(DEGRADED)
            self._lc.fire(_T_RECONCILIATION_TIMEOUT, waited_s=waited)

    def _poll_reconciliation(self, block_id: str) -> tuple[str, float]:
        """Poll until success, failure or ``reconciliation_timeout`` on the injected clock."""
        rc, clock, sleep = self._reconciliation, self._clock, self._sleep
        start = clock()
        deadline = start + self._cfg.reconciliation_timeout
        interval = min(_POLL_FIRST, self._cfg.reconciliation_timeout / 10)
        while True:
            status = rc.reconciliation_status
            if status in ("success", "failed"):
                # A component that says which block it reconciled is held to it: a success
                # left over from the previous block does not count for this one.
                about = getattr(rc, "reconciled_block_id", _MISSING)
                if about is _MISSING or about == block_id:
                    return status, clock() - start
            now = clock()
            if now >= deadline:
                return "timeout", now - start
            sleep(min(interval, deadline - now))
            interval = min(interval * 2, _POLL_MAX)

    def _retry(self, ts: Any, f: _Flight) -> None:
        cfg, lc = self._cfg, self._lc
        if f.why == "reconciliation_timeout":
            # The venue executed: never route again; wait for reconciliation once more.
            if f.attempt >= cfg.max_retries:
                self._fail(ts, f, "EXEC-002", f"reconciliation timed out on every one of "
                           f"{cfg.max_retries} attempts", halt=True)
                return
            lc.fire(_T_RESUME_RECONCILIATION, attempt=f.attempt + 1)
            f.attempt += 1
            return
        call = f.call
        rejected = call is not None and call.done and isinstance(call.error, ExecutionRejected)
        if rejected and f.attempt >= cfg.max_retries:
            self._fail(ts, f, "EXEC-001", f"venue call failed on every one of "
                       f"{cfg.max_retries} attempts; last: {f.why}", call.error)  # type: ignore[union-attr]
            return
        self._sleep(min(cfg.retry_delay_seconds * 2 ** (f.attempt - 1),
                        cfg.max_retry_delay_seconds))
        verdict, deltas, how = self._resolve(ts, f)
        if verdict == _EXECUTED:
            self._executed(_T_RESUME_RECONCILIATION, f, deltas,
                           attempt=f.attempt + 1, resolved_by=how)
            f.attempt += 1
        elif verdict == _UNKNOWN:
            if f.attempt >= cfg.max_retries:
                self._fail(ts, f, "EXEC-007", f"outcome of the venue call unknown: {how}",
                           halt=True)
                return
            f.attempt += 1
            self._emit(ts, "execution_unresolved", {
                "block_id": f.block.block_id, "attempt": f.attempt, "reason": how})
        elif f.attempt >= cfg.max_retries:
            self._fail(ts, f, "EXEC-001", f"venue call failed on every one of "
                       f"{cfg.max_retries} attempts; last: {f.why}",
                       call.error if call is not None else None)
        else:
            lc.fire(_T_REROUTE, attempt=f.attempt + 1, resolved_by=how)
            f.attempt += 1
            f.call = None

    def _resolve(self, ts: Any, f: _Flight) -> tuple[str, Any, str]:
        """Did the failed venue call execute? ``(verdict, deltas, how we know)``."""
        call = f.call
        if call is not None and not call.done:
            # Abandoned and still running: only the venue's own word can settle it now.
            verdict, deltas, how = self._ask_venue(ts, f)
            if verdict == _EXECUTED:
                return verdict, deltas, how
            if not call.wait(self._cfg.execution_timeout):
                return _UNKNOWN, None, "the abandoned venue call is still running"
        if call is not None and call.returned:
            return _EXECUTED, call.value, "late_reply"
        if call is not None and isinstance(call.error, ExecutionRejected):
            return _NOT_EXECUTED, None, "rejected"
        return self._ask_venue(ts, f)

    def _ask_venue(self, ts: Any, f: _Flight) -> tuple[str, Any, str]:
        query = self._query
        if query is None:
            # No way to ask: route again under the same block_id (at-least-once; the venue
            # must deduplicate by block_id).
            return _NOT_EXECUTED, None, "no_query_at_least_once"
        q = VenueCall().run_guarded(query, (ts, f.block), self._cfg.execution_timeout,
                                    self._clock, f"fsm_exec-query-{f.block.block_id}")
        if not q.done or q.elapsed > self._cfg.execution_timeout:
            return _UNKNOWN, None, "query_execution did not reply in time"
        if q.error is not None:
            return _UNKNOWN, None, self._redact(
                f"query_execution raised {type(q.error).__name__}: {q.error}")
        if q.value is None:
            return _NOT_EXECUTED, None, "query_not_found"
        return _EXECUTED, q.value, "query_found"

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
                f"market data unavailable: {type(exc).__name__}: {exc}")
        for check in checks:
            code = "EXEC-005" if check is check_prices else "EXEC-006"
            name = getattr(check, "__name__", type(check).__name__)
            try:
                verdict = check(block, market)
            except Exception as exc:
                return code, self._redact(
                    f"risk check {name} raised {type(exc).__name__}: {exc}")
            if verdict is None or verdict is True:
                continue
            reason = verdict if isinstance(verdict, str) and verdict else "refused"
            return code, self._redact(f"{name}: {reason}")
        return None

    # --------------------------------------------------------------------- terminal moves
    def _fail(self, ts: Any, f: _Flight, code: str, reason: str,
              exc: BaseException | None = None, *, halt: bool = False) -> None:
        f.error = ComponentError(code, f"block {f.block.block_id!r}: {reason}",
                                 original_exception=exc, block_id=f.block.block_id)
        self._lc.fire(_T_FAIL, error_code=code, reason=reason)
        if halt:
            self._halt(code)

    def _finish(self, ts: Any, f: _Flight, state: str) -> None:
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
        self._emit(ts, "block_failed", {"block_id": block_id, "error_code": err.error_code,
                                        "attempts": f.attempt})
        if self._halted:
            self._emit(ts, "manager_halted", {"reason": self._halt_reason,
                                              "block_id": block_id})
        if not self._live:
            raise err

    def _remember(self, block_id: str, state: BlockState) -> None:
        self._finished[block_id] = state
        order = self._finished_order
        order.append(block_id)
        if len(order) > RECENT_FINISHED:
            old = order.popleft()
            del self._finished[old]
            self._taken.discard(old)

    def _halt(self, reason: str) -> None:
        self._halted = True
        self._halt_reason = reason
        self._health.note(UNHEALTHY)

    def _resume(self, ts: Any) -> None:
        reason = self._halt_reason
        self._halted = False
        self._halt_reason = None
        self._emit(ts, "manager_resumed", {"reason": reason, "trigger_source": "manual"})

    # ------------------------------------------------------------------ events and health
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
        sync = trigger in _BARRIER_TRIGGERS or "deltas" in event
        try:  # _emit, inlined (measured): three of these per block
            if self._syncable:
                self._log_event(self._ts, "block_transition", COMPONENT,  # type: ignore[misc]
                                event, sync=sync)  # type: ignore[call-arg]
            else:
                self._log_event(self._ts, "block_transition", COMPONENT, event)  # type: ignore[misc]
        except EventLogError:
            self._halt("EXEC-009")
            raise
        except Exception as exc:
            raise self._log_failed("block_transition", exc) from exc
        if sync:
            self._unsynced_acceptance = False

    def _emit(self, ts: Any, event_type: str, data: dict[str, Any], *,
              sync: bool = True) -> None:
        log_event = self._log_event
        if log_event is None:
            return
        try:
            if self._syncable:
                log_event(ts, event_type, COMPONENT, data, sync=sync)  # type: ignore[call-arg]
            else:
                log_event(ts, event_type, COMPONENT, data)
        except EventLogError:
            self._halt("EXEC-009")
            raise
        except Exception as exc:
            raise self._log_failed(event_type, exc) from exc
        if sync:
            self._unsynced_acceptance = False

    def _log_failed(self, event_type: str, exc: Exception) -> EventLogError:
        """The journal could not record: halt before acting on it, and say so."""
        self._halt("EXEC-009")
        return EventLogError(self._redact(
            f"event log write failed ({event_type}): {type(exc).__name__}: {exc}"), exc)

    def _record_error(self, ts: Any, err: ComponentError) -> None:
        entry = {"timestamp": ts, "error_code": err.error_code, "error_message": err.message,
                 "error_severity": str(err.severity), "block_id": err.block_id}
        self._recent_errors.append(entry)
        self._error_count += 1
        self._health.note(_LEVEL[err.severity])
        data = {k: v for k, v in entry.items() if k != "timestamp"}
        if err.original_exception is not None:
            data["exception_type"] = type(err.original_exception).__name__
        self._emit(ts, "error", data)

    def _end_update(self, ts: Any, trigger_source: str, t0: float, *, failing: bool) -> None:
        ms = (self._clock() - t0) * 1000.0
        self._update_count += 1
        self._processing_ms_total += ms
        self._last_update = ts
        self._health.close()
        try:
            self._emit(ts, "state_update", {
                "trigger_source": trigger_source,
                "current_block_index": self.current_block_index,
                "blocks_executed": self.blocks_executed,
                "blocks_failed": self.blocks_failed,
                "queue_length": len(self._queue),
                "halted": self._halted,
                "processing_time_ms": ms,
            }, sync=self._unsynced_acceptance)  # a barrier only for blocks still queued
        except EventLogError:
            if not failing:  # never hide the error already on its way out
                raise

    def _health_check(self) -> dict[str, Any]:
        updates = self._update_count
        return {
            "status": str(self._health.status(halted=self._halted)),
            "last_update": self._last_update,
            "errors": list(self._recent_errors),
            "metrics": {
                "update_count": updates,
                "avg_processing_time_ms": self._processing_ms_total / updates if updates else 0.0,
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
        """``healthy``, ``degraded`` or ``unhealthy`` over the last 100 updates."""
        return self._health.status(halted=self._halted)



