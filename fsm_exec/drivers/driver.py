"""The block in flight: route it, hand its deltas off, wait for reconciliation, retry, resolve.

The :class:`~fsm_exec.ExecutionManager` keeps the entry points, the queue, the accounting and
recovery; it hands the one block in flight to a driver chosen once at construction:
:class:`BacktestDriver` (inline venue calls, simulated reconciliation, fail fast) or
:class:`LiveDriver` (abandonable venue calls, polled reconciliation, retries that find out
whether the venue executed before anything is routed again). Every move of the block goes
through the manager's ``_move``, which journals it first (write-ahead), fires the lifecycle
trigger and does the bookkeeping in one critical section.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.canonical import NOT_PLAIN, plain_copy
from fsm_exec.boundary.protocols import ExecutionRejected
from fsm_exec.core.errors import ComponentError, describe_exception
from fsm_exec.core.lifecycle import BlockState, Trigger
from fsm_exec.drivers.calls import VenueCall, Worker
from fsm_exec.journal.state import RECONCILIATION_TIMEOUT_WHY
from fsm_exec.journal.state import Flight as JournalFlight
from fsm_exec.observe.health import DEGRADED

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS))
# Triggers as plain strings: an enum member's hash is a Python-level call on the hot path.
(T_START, T_EXECUTED, T_ROUTE_FAILED, T_REROUTE, T_RESUME_RECONCILIATION, T_RECONCILED,
 T_RECONCILIATION_TIMEOUT, T_FAIL) = (
    str(t) for t in (Trigger.START, Trigger.EXECUTED, Trigger.ROUTE_FAILED, Trigger.REROUTE,
                     Trigger.RESUME_RECONCILIATION, Trigger.RECONCILED,
                     Trigger.RECONCILIATION_TIMEOUT, Trigger.FAIL))

_POLL_FIRST, _POLL_MAX = 0.05, 1.0
_MISSING = object()

# Verdicts of resolving a venue call whose outcome is not known yet.
EXECUTED, NOT_EXECUTED, UNKNOWN, UNCONFIRMED = (
    "executed", "not_executed", "unknown", "unconfirmed")


@attrs.define(eq=False)
class Flight(JournalFlight):
    """The block in flight: what the journal says of it (:class:`~fsm_exec.journal.state.Flight`,
    kept by the manager's :class:`~fsm_exec.journal.state.ManagerState`), and what only this
    run knows (the venue call, the error, the clocks)."""

    call: VenueCall | None = None  # the venue call of this attempt, once made
    error: ComponentError | None = None
    entered_at: float = 0.0  # when the block entered its current state (injected clock)
    route_started: float | None = None  # when this attempt's route call began
    not_found: int = 0  # consecutive "not found" answers of query_execution
    last_query_at: float | None = None
    recovered: bool = False  # restored from a journal after a restart


class Driver:
    """What both modes share: risk checks, the hand-off, and the terminal moves."""

    live = False
    worker: Worker | None = None  # live: the thread venue calls run on

    def __init__(self, host: ExecutionManager) -> None:
        self.host = host
        self.cfg = host.config
        self.clock: Callable[[], float] = host._clock
        self.sleep: Callable[[float], None] = host._sleep
        self.route_instruction = host._route_instruction
        self.update_positions = host._update_positions
        self.reconciliation = host._reconciliation
        self.query = host._query
        self.redact = host._redact
        self.move = host._move
        self.risk = host._risk

    def drive(self, ts: Any, f: Flight) -> None:
        """Move the block in flight until it is terminal (or the manager halts)."""
        lc, move = self.host._lc, self.move
        while True:
            state = lc.current
            if state == _QUEUED:
                move(T_START)
            elif state == _ROUTING:
                self.route(ts, f)
            elif state == _PENDING:
                self.reconcile(ts, f)
            elif state == _RETRYING:
                self.retry(ts, f)
            else:
                return

    # ------------------------------------------------------------------ shared steps
    def route(self, ts: Any, f: Flight) -> None:  # pragma: no cover - each mode has its own
        raise NotImplementedError

    def reconcile(self, ts: Any, f: Flight) -> None:  # pragma: no cover
        raise NotImplementedError

    def retry(self, ts: Any, f: Flight) -> None:  # pragma: no cover
        raise NotImplementedError

    def executed(self, trigger: str, f: Flight, value: Any, **data: Any) -> None:
        """The venue executed: record its deltas (canonical) and move on, or, when the reply
        has no faithful form, fail the block (positions in doubt) naming what cannot be
        recorded."""
        conv = self.host._canonical_deltas(value)
        if conv.problems:
            self.host._fail(f, "EXEC-015", "the venue executed, but its reply cannot be "
                            "recorded faithfully: " + "; ".join(conv.problems), halt=True)
            return
        self.move(trigger, deltas=conv.wire, _deltas=conv.value, **data)

    def hand_off(self, ts: Any, f: Flight) -> bool:
        """Give the deltas to the position handler, at most once; False if it refused them.

        Whatever the handler raises, it is not called again for these deltas: an exception
        fails the block (``EXEC-008``, halting), an interrupt stops the manager."""
        host = self.host
        host._refuse_if_retired()  # a recovered block's hand-off has no record before it
        t0 = self.clock() if host._observers else 0.0
        try:
            self.update_positions(ts, "execution_manager", f.deltas)
        except Exception as exc:
            host._call_done("hand_off", f, t0, "error", exc)
            host._fail(f, "EXEC-008", self.redact(
                f"position handler refused the deltas: {describe_exception(exc)}"),
                exc, halt=True)
            return False
        if host._observers:
            host._call_done("hand_off", f, t0, "ok")
        host._handed_off(ts, f)
        return True

    def outcome_of(self, call: VenueCall) -> str:
        """How a venue call ended, for observers (an inline call is never late)."""
        if not call.done or call.elapsed > self.cfg.execution_timeout:
            return "timeout"
        if call.returned:
            return "ok"
        if isinstance(call.error, ExecutionRejected):
            return "rejected"
        return "error" if call.error is not None else "no_deltas"

    def risk_refusal(self, ts: Any, f: Flight) -> tuple[str, str] | None:
        return self.risk.refusal(ts, f.block)

    def new_call(self, ts: Any, f: Flight) -> VenueCall | None:
        """Before routing: the risk checks (a refusal fails the block: ``None``), then the
        call's record, made before the call so that an interrupt leaves a trace."""
        refusal = self.risk_refusal(ts, f)
        if refusal is not None:
            self.host._fail(f, *refusal)
            return None
        self.host._refuse_if_retired()  # retired during the checks: it trades no more
        f.call = call = VenueCall()
        return call

    def why_failed(self, call: VenueCall) -> str:
        """Why a venue call gave no deltas, for the record (secrets redacted)."""
        if call.in_doubt:
            return f"outcome in doubt: {type(call.error).__name__}"
        if call.error is not None:
            kind = "rejected" if isinstance(call.error, ExecutionRejected) else "error"
            return self.redact(f"{kind}: {describe_exception(call.error)}")
        return "the venue returned no deltas (None)"

    def query_once(self, ts: Any, f: Flight) -> tuple[str, Any, str]:
        """Ask ``query_execution`` once: ``(verdict, deltas, how we know)``."""
        query = self.query
        if query is None:
            # No way to ask: route again under the same block_id (at-least-once; the venue
            # must deduplicate by block_id).
            return NOT_EXECUTED, None, "no_query_at_least_once"
        cfg, host = self.cfg, self.host
        t0 = self.clock()
        q = VenueCall()
        if self.worker is not None:
            q.run_on(self.worker, query, (ts, f.block), cfg.execution_timeout, self.clock)
        else:
            q.run_inline(query, (ts, f.block))
        f.last_query_at = self.clock()
        if not q.done or (self.live and q.elapsed > cfg.execution_timeout):
            verdict: tuple[str, Any, str] = (UNKNOWN, None,
                                             "query_execution did not reply in time")
        elif q.error is not None:
            verdict = (UNKNOWN, None, self.redact(
                f"query_execution raised {describe_exception(q.error)}"))
        elif q.value is None:
            verdict = (NOT_EXECUTED, None, "query_not_found")
        else:
            verdict = (EXECUTED, q.value, "query_found")
        if host._observers:
            host._call_done("query", f, t0, verdict[0], q.error,
                            duration=q.elapsed if self.live else None)
        return verdict


class BacktestDriver(Driver):
    """Backtest: venue calls inline, reconciliation simulated, no retries (fail fast)."""

    def drive(self, ts: Any, f: Flight) -> None:
        host = self.host
        if host._lc._flight.state == _QUEUED:
            if not host._observers and host._log_event is not None:
                self.quick_path(ts, f)
            else:
                self.straight_through(ts, f)
            if host._lc._flight.state == _SUCCESS:
                return
        super().drive(ts, f)

    def straight_through(self, ts: Any, f: Flight) -> None:
        """The happy path in one go, telling the observers: the same steps and records as
        the state by state driver, which takes over where it stands at the first
        deviation."""
        move = self.move
        move(T_START)
        refusal = self.risk_refusal(ts, f)
        if refusal is not None:
            self.host._fail(f, *refusal)
            return
        self.host._refuse_if_retired()
        f.call = call = VenueCall()  # recorded before the call: an interrupt leaves a trace
        t0 = self.clock()
        try:  # VenueCall.run_inline, inlined (measured)
            call.value = self.route_instruction(ts, f.block)
        except Exception as exc:
            call.error = exc
        except BaseException as exc:  # KeyboardInterrupt: the outcome is now in doubt
            call.error = exc
            raise
        self.host._call_done("route", f, t0, self.outcome_of(call), call.error)
        if not call.returned:
            return  # route() classifies the failure
        self.executed(T_EXECUTED, f, call.value)
        if self.host._lc.current == _PENDING and self.hand_off(ts, f):
            move(T_RECONCILED)

    def quick_path(self, ts: Any, f: Flight) -> None:
        """:meth:`straight_through` with no observer to tell: the three moves of a block that
        succeeds, each journaled first (the same records ``_move`` writes) and fired on the
        same Machine, with only the bookkeeping they need. A deviation hands over to the
        state by state driver, where it stands. (Measured: the per-block hot path.)"""
        host = self.host
        lc, clock, mutex, journal = host._lc, self.clock, host._mutex, host._journal_move
        block = f.block
        block_id = block.block_id
        state = host._state
        with mutex:
            journal({"block_id": block_id, "source": _QUEUED, "dest": _ROUTING,
                     "trigger": T_START, "attempt": f.attempt}, True)  # intent to route
            lc.commit(T_START)
            state.start(block_id, f)
            state.move(_QUEUED, _ROUTING, T_START)
            f.entered_at = clock()
        refusal = self.risk.refusal(ts, block)
        if refusal is not None:
            host._fail(f, *refusal)
            return
        if host._interrupted is not None:  # retired during the checks: it trades no more
            raise host._retired_error()
        f.call = call = VenueCall()  # recorded before the call: an interrupt leaves a trace
        try:  # VenueCall.run_inline, inlined (measured)
            value = call.value = self.route_instruction(ts, block)
        except Exception as exc:
            call.error = exc
            return  # route() classifies the failure
        except BaseException as exc:  # KeyboardInterrupt: the outcome is now in doubt
            call.error = exc
            raise
        if value is None:
            return
        deltas = plain_copy(value, host._finds)
        if deltas is NOT_PLAIN:  # the careful conversion (and EXEC-015 when it must)
            self.executed(T_EXECUTED, f, value)
            if lc.current == _PENDING and self.hand_off(ts, f):
                self.move(T_RECONCILED)
            return
        with mutex:
            journal({"block_id": block_id, "source": _ROUTING, "dest": _PENDING,
                     "trigger": T_EXECUTED, "attempt": f.attempt, "deltas": deltas},
                    True)  # deltas about to be handed off: a barrier
            lc.commit(T_EXECUTED)
            state.move(_ROUTING, _PENDING, T_EXECUTED, deltas=deltas)
            f.entered_at = clock()
        try:  # hand_off(), inlined: at most once, whatever the handler raises
            self.update_positions(ts, "execution_manager", deltas)
        except Exception as exc:
            host._fail(f, "EXEC-008", self.redact(
                f"position handler refused the deltas: {describe_exception(exc)}"),
                exc, halt=True)
            return
        with mutex:
            state.hand_off()  # positions_updated is a live record: none in backtest
            journal({"block_id": block_id, "source": _PENDING, "dest": _SUCCESS,
                     "trigger": T_RECONCILED, "attempt": f.attempt}, False)  # rides along
            lc.commit(T_RECONCILED)
            state.move(_PENDING, _SUCCESS, T_RECONCILED)
            f.entered_at = clock()
            host._finish(f, _SUCCESS)

    def route(self, ts: Any, f: Flight) -> None:
        call = f.call
        if call is None:
            call = self.new_call(ts, f)
            if call is None:
                return
            t0 = self.clock()
            call.run_inline(self.route_instruction, (ts, f.block))
            if self.host._observers:
                self.host._call_done("route", f, t0, self.outcome_of(call), call.error)
        if call.returned:
            self.executed(T_EXECUTED, f, call.value)
            return
        if call.in_doubt:  # interrupted, or lost to a restart: an unknown outcome
            self.move(T_ROUTE_FAILED, reason=self.why_failed(call))  # the state keeps why
            return
        self.host._fail(f, "EXEC-001", f"venue call failed: {self.why_failed(call)}",
                        call.error)

    def reconcile(self, ts: Any, f: Flight) -> None:
        # Simulated: success once the position handler took the deltas.
        if f.handed_off or self.hand_off(ts, f):
            self.move(T_RECONCILED)

    def retry(self, ts: Any, f: Flight) -> None:
        """Only an outcome in doubt (an interrupted call, a restart) retries in backtest:
        ask the venue once (simulated venues answer at once), never back off."""
        verdict, deltas, how = self.query_once(ts, f)
        f.unresolved = verdict == UNKNOWN  # the venue answered: no longer in doubt
        if verdict == EXECUTED:
            self.executed(T_RESUME_RECONCILIATION, f, deltas, attempt=f.attempt + 1,
                          resolved_by=how)
        elif verdict == UNKNOWN:
            self.host._fail(f, "EXEC-007", f"outcome of the venue call unknown: {how}",
                            halt=True)
        else:
            self.move(T_REROUTE, attempt=f.attempt + 1, resolved_by=how)


class LiveDriver(Driver):
    """Live: abandonable venue calls, polled reconciliation, retries that never route a block
    again while the venue may have executed it."""

    live = True

    def __init__(self, host: ExecutionManager) -> None:
        super().__init__(host)
        # One thread for the venue calls (replaced when a call is abandoned), ended when
        # the manager goes away.
        self.worker = Worker("fsm_exec-venue")
        weakref.finalize(host, self.worker.close)

    def route(self, ts: Any, f: Flight) -> None:
        cfg = self.cfg
        call = f.call
        if call is None:
            call = self.new_call(ts, f)
            if call is None:
                return
            f.route_started = self.clock()
            f.not_found = 0
            assert self.worker is not None
            call.run_on(self.worker, self.route_instruction, (ts, f.block),
                        cfg.execution_timeout, self.clock)
            if self.host._observers:
                self.host._call_done("route", f, f.route_started, self.outcome_of(call),
                                     call.error, duration=call.elapsed)
        if call.returned and call.elapsed <= cfg.execution_timeout:
            self.executed(T_EXECUTED, f, call.value)
            return
        why = self.why_failed(call)
        if isinstance(call.error, ExecutionRejected) and not call.error.retryable:
            self.host._fail(f, "EXEC-001", f"venue refused the block for good: {why}",
                            call.error)
        else:
            self.host._health.note(DEGRADED)
            self.move(T_ROUTE_FAILED, reason=why)

    def why_failed(self, call: VenueCall) -> str:
        if not call.done or call.elapsed > self.cfg.execution_timeout:
            return f"no reply within execution_timeout ({self.cfg.execution_timeout:g}s)"
        return super().why_failed(call)

    def reconcile(self, ts: Any, f: Flight) -> None:
        if not f.handed_off and not self.hand_off(ts, f):
            return  # hand_off() failed the block (EXEC-008): the handler is not retried
        host = self.host
        t0 = self.clock()
        verdict, waited, exc = self.poll_reconciliation(f.block.block_id)
        if host._observers:
            host._call_done("reconciliation_wait", f, t0, verdict, exc, duration=waited)
        if verdict == "success":
            self.move(T_RECONCILED, waited_s=waited)
        elif verdict == "failed":
            host._fail(f, "EXEC-002", "reconciliation reported failure", halt=True)
        elif verdict == "error":
            assert exc is not None
            host._fail(f, "EXEC-014", self.redact(
                f"the reconciliation component raised {describe_exception(exc)}"), exc,
                halt=True)
        else:
            host._emit("reconciliation_timeout", {
                "block_id": f.block.block_id, "attempt": f.attempt, "waited_s": waited},
                sync=False)
            host._health.note(DEGRADED)
            self.move(T_RECONCILIATION_TIMEOUT, waited_s=waited)

    def poll_reconciliation(self, block_id: str) -> tuple[str, float, Exception | None]:
        """Poll until success, failure or ``reconciliation_timeout`` on the injected clock;
        a component that raises ends the wait as ``error``."""
        rc, clock, sleep = self.reconciliation, self.clock, self.sleep
        start = clock()
        timeout = self.cfg.reconciliation_timeout
        deadline = start + timeout
        interval = min(_POLL_FIRST, timeout / 10)
        while True:
            try:
                status = rc.reconciliation_status
                about = (getattr(rc, "reconciled_block_id", _MISSING)
                         if status in ("success", "failed") else _MISSING)
            except Exception as exc:
                return "error", clock() - start, exc
            # A component that says which block it reconciled is held to it: a success left
            # over from the previous block does not count for this one.
            if status in ("success", "failed") and (about is _MISSING or about == block_id):
                return status, clock() - start, None
            now = clock()
            if now >= deadline:
                return "timeout", now - start, None
            sleep(min(interval, deadline - now))
            interval = min(interval * 2, _POLL_MAX)

    def retry(self, ts: Any, f: Flight) -> None:
        cfg, host = self.cfg, self.host
        if f.why == RECONCILIATION_TIMEOUT_WHY:
            # The venue executed: never route again; wait for reconciliation once more.
            if f.attempt >= cfg.max_retries:
                host._fail(f, "EXEC-002", f"reconciliation timed out on every one of "
                           f"{cfg.max_retries} attempts", halt=True)
                return
            self.move(T_RESUME_RECONCILIATION, attempt=f.attempt + 1)
            return
        call = f.call
        rejected = call is not None and call.done and isinstance(call.error, ExecutionRejected)
        if rejected and f.attempt >= cfg.max_retries:
            host._fail(f, "EXEC-001", f"venue call failed on every one of "
                       f"{cfg.max_retries} attempts; last: {f.why}", call.error)  # type: ignore[union-attr]
            return
        if f.not_found:  # confirming a "not found": space the answers, do not back off again
            now = self.clock()
            last = f.last_query_at if f.last_query_at is not None else now
            wait = cfg.not_found_interval_seconds - (now - last)
            if f.not_found >= cfg.not_found_confirmations:  # enough answers, too young
                wait = max(wait, cfg.not_found_min_age_seconds - (now - self.started(f)))
            if wait > 0:
                self.sleep(wait)
        else:
            self.sleep(min(cfg.retry_delay_seconds * 2 ** (f.attempt - 1),
                           cfg.max_retry_delay_seconds))
        verdict, deltas, how = self.resolve(ts, f)
        if verdict == EXECUTED:
            f.unresolved = False
            self.executed(T_RESUME_RECONCILIATION, f, deltas, attempt=f.attempt + 1,
                          resolved_by=how)
        elif verdict == UNCONFIRMED:
            return  # still retrying: the next answer is asked for on the next round
        elif verdict == UNKNOWN:
            f.unresolved = True
            if f.attempt >= cfg.max_retries:
                host._fail(f, "EXEC-007", f"outcome of the venue call unknown: {how}",
                           halt=True)
                return
            host._unresolved(ts, f, how)
        elif f.attempt >= cfg.max_retries:
            f.unresolved = False
            host._fail(f, "EXEC-001", f"venue call failed on every one of "
                       f"{cfg.max_retries} attempts; last: {f.why}",
                       call.error if call is not None else None)
        else:
            f.unresolved = False
            self.move(T_REROUTE, attempt=f.attempt + 1, resolved_by=how)

    def resolve(self, ts: Any, f: Flight) -> tuple[str, Any, str]:
        """Did the failed venue call execute? ``(verdict, deltas, how we know)``."""
        call = f.call
        if call is not None and not call.done:
            # Abandoned and still running: only the venue's own word can settle it now.
            verdict, deltas, how = self.ask_venue(ts, f, confirm=False)
            if verdict == EXECUTED:
                return verdict, deltas, how
            if not call.wait(self.cfg.execution_timeout):
                return UNKNOWN, None, "the abandoned venue call is still running"
        if call is not None and call.returned:
            return EXECUTED, call.value, "late_reply"
        if call is not None and isinstance(call.error, ExecutionRejected):
            return NOT_EXECUTED, None, "rejected"
        return self.ask_venue(ts, f)

    def ask_venue(self, ts: Any, f: Flight, *, confirm: bool = True) -> tuple[str, Any, str]:
        """Ask ``query_execution``. A "not found" counts as not executed only once it is
        sure: ``not_found_confirmations`` consecutive answers, spaced at least
        ``not_found_interval_seconds``, no earlier than ``not_found_min_age_seconds`` after
        the route call began (exchanges index orders with a delay)."""
        verdict = self.query_once(ts, f)
        if verdict[2] == "no_query_at_least_once":
            return verdict
        cfg, host = self.cfg, self.host
        if verdict[0] != NOT_EXECUTED:
            f.not_found = 0
            return verdict
        if not confirm:
            return verdict
        f.not_found += 1
        age = (f.last_query_at or 0.0) - self.started(f)
        sure = (f.not_found >= cfg.not_found_confirmations
                and age >= cfg.not_found_min_age_seconds)
        host._emit("execution_query", {
            "block_id": f.block.block_id, "attempt": f.attempt, "answer": "not_found",
            "count": f.not_found, "needed": cfg.not_found_confirmations,
            "age_s": age, "confirmed": sure}, sync=False)
        if sure:
            f.not_found = 0
            return verdict
        return UNCONFIRMED, None, "query_not_found_unconfirmed"

    @staticmethod
    def started(f: Flight) -> float:
        """When this attempt's route call began (after a restart: when the block was
        restored, the earliest moment this process knows of)."""
        return f.route_started if f.route_started is not None else f.entered_at
