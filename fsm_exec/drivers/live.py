"""The live driver: abandonable venue calls, polled reconciliation, and retries that never
route a block again while the venue may have executed it (an unknown outcome is settled by
asking the venue, with confirmations, before anything is routed again).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.boundary.protocols import ExecutionRejected
from fsm_exec.core.errors import describe_exception, safe_repr, type_name
from fsm_exec.drivers.base import (
    _MISSING,
    _POLL_FIRST,
    _POLL_MAX,
    EXECUTED,
    INVALID,
    NOT_EXECUTED,
    T_EXECUTED,
    T_FOUND_EXECUTED,
    T_RECONCILED,
    T_RECONCILIATION_TIMEOUT,
    T_REROUTE,
    T_RESUME_RECONCILIATION,
    T_ROUTE_FAILED,
    UNCONFIRMED,
    UNKNOWN,
    Driver,
    Flight,
)
from fsm_exec.drivers.calls import VenueCall, Worker
from fsm_exec.journal.state import RECONCILIATION_TIMEOUT_WHY
from fsm_exec.observe.health import DEGRADED

if TYPE_CHECKING:
    from fsm_exec.drivers.host import Host


class UnrecognisedStatus(Exception):
    """A ``reconciliation_status`` that is none of ``pending``, ``success``, ``failed``."""

    def __init__(self, status: object) -> None:
        super().__init__("reconciliation_status is none of 'pending', 'success', 'failed'")
        self.status = status

    def describe(self, redact: Callable[[str], str]) -> str:
        """Why the block fails, naming the status seen: its ``repr`` (secrets redacted,
        control characters escaped, then shortened)."""
        shown = terminal_text(redact(safe_repr(self.status)))
        if len(shown) > _SHOWN:
            shown = shown[:_SHOWN - 3] + "..."
        return (f"the reconciliation component's reconciliation_status is {shown} (a "
                f"{type_name(self.status)}), which is none of 'pending', 'success' and "
                "'failed': whether positions reconcile is unknown")


_SHOWN = 80  # characters of an unrecognised status shown


class LiveDriver(Driver):
    """Live: abandonable venue calls, polled reconciliation, retries that never route a block
    again while the venue may have executed it."""

    timed_calls = True
    hold_interrupts = True

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        # One thread for the venue calls (replaced when a call is abandoned), ended when
        # the manager goes away.
        self.worker = Worker("fsm_exec-venue")
        weakref.finalize(host.owner, self.worker.close)

    def route(self, ts: Any, f: Flight) -> None:
        cfg = self.cfg
        call = f.call
        if call is None:
            call = self.new_call(ts, f)
            if call is None:
                return
            f.route_started = self.clock()
            f.call_ended_at = None
            f.not_found = 0
            assert self.worker is not None
            call.run_on(self.worker, self.route_instruction, (ts, f.block),
                        cfg.execution_timeout, self.clock)
            if self.host.observers:
                self.host.call_done("route", f, f.route_started, self.outcome_of(call),
                                     call.error, duration=call.elapsed)
        if call.returned and call.elapsed <= cfg.execution_timeout:
            self.executed(T_EXECUTED, f, call.value)
            return
        why = self.why_failed(call)
        if isinstance(call.error, ExecutionRejected) and not call.error.retryable:
            self.host.fail(f, "EXEC-001", f"venue refused the block for good: {why}",
                            call.error)
        else:
            self.host.note_health(DEGRADED)
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
        if host.observers:
            host.call_done("reconciliation_wait", f, t0, verdict, exc, duration=waited)
        if verdict == "success":
            self.move(T_RECONCILED, waited_s=waited)
        elif verdict == "failed":
            host.fail(f, "EXEC-002", "reconciliation reported failure", halt=True)
        elif isinstance(exc, UnrecognisedStatus):
            host.fail(f, "EXEC-014", exc.describe(self.redact), halt=True)
        elif verdict == "error":
            assert exc is not None
            host.fail(f, "EXEC-014", self.redact(
                f"the reconciliation component raised {describe_exception(exc)}"), exc,
                halt=True)
        else:
            host.emit("reconciliation_timeout", {
                "block_id": f.block.block_id, "attempt": f.attempt, "waited_s": waited},
                sync=False)
            host.note_health(DEGRADED)
            self.move(T_RECONCILIATION_TIMEOUT, waited_s=waited)

    def poll_reconciliation(self, block_id: str) -> tuple[str, float, Exception | None]:
        """Poll until success, failure or ``reconciliation_timeout`` on the injected clock;
        a component that raises, or whose status is none of ``pending``, ``success`` and
        ``failed`` (:class:`UnrecognisedStatus`), ends the wait as ``error``."""
        rc, clock, sleep = self.reconciliation, self.clock, self.sleep
        start = clock()
        timeout = self.cfg.reconciliation_timeout
        deadline = start + timeout
        interval = min(_POLL_FIRST, timeout / 10)
        while True:
            try:
                status = rc.reconciliation_status
                if status in ("success", "failed"):
                    # A component that says which block it reconciled is held to it: a
                    # success left over from the previous block does not count for this
                    # one. (Compared here: an id whose == raises is the component's error.)
                    about = getattr(rc, "reconciled_block_id", _MISSING)
                    settled = about is _MISSING or bool(about == block_id)
                elif status == "pending":
                    settled = False
                else:  # "SUCCESS", True, an Enum: never taken for pending (nor a timeout)
                    return "error", clock() - start, UnrecognisedStatus(status)
            except Exception as exc:
                return "error", clock() - start, exc
            if settled:
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
                host.fail(f, "EXEC-002", f"reconciliation timed out on every one of "
                           f"{cfg.max_retries} attempts", halt=True)
                return
            self.move(T_RESUME_RECONCILIATION, attempt=f.attempt + 1)
            return
        call = f.call
        rejected = call is not None and call.done and isinstance(call.error, ExecutionRejected)
        if rejected and f.attempt >= cfg.max_retries:
            host.fail(f, "EXEC-001", f"venue call failed on every one of "
                       f"{cfg.max_retries} attempts; last: {f.why}", call.error)  # type: ignore[union-attr]
            return
        if f.not_found:  # confirming a "not found": space the answers, do not back off again
            now = self.clock()
            last = f.last_query_at if f.last_query_at is not None else now
            wait = cfg.not_found_interval_seconds - (now - last)
            if f.not_found >= cfg.not_found_confirmations:  # enough answers, too young
                wait = max(wait, cfg.not_found_min_age_seconds - (now - self.sent_by(f)))
            if wait > 0:
                self.sleep(wait)
        else:
            self.sleep(min(cfg.retry_delay_seconds * 2 ** (f.attempt - 1),
                           cfg.max_retry_delay_seconds))
        verdict, deltas, how = self.resolve(ts, f)
        if verdict == INVALID:  # neither deltas nor None: still in doubt, loudly
            f.unresolved = True
            host.fail(f, "EXEC-015", how, halt=True)
        elif verdict == EXECUTED:
            f.unresolved = False
            # Its deltas take the way executed takes (found_executed is derived from it).
            self.executed(T_FOUND_EXECUTED, f, deltas, attempt=f.attempt + 1,
                          resolved_by=how)
        elif verdict == UNCONFIRMED:
            return  # still retrying: the next answer is asked for on the next round
        elif verdict == UNKNOWN:
            f.unresolved = True
            if f.attempt >= cfg.max_retries:
                host.fail(f, "EXEC-007", f"outcome of the venue call unknown: {how}",
                           halt=True)
                return
            host.unresolved(ts, f, how)
        elif f.attempt >= cfg.max_retries:
            f.unresolved = False
            host.fail(f, "EXEC-001", f"venue call failed on every one of "
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
            if verdict in (EXECUTED, INVALID):
                return verdict, deltas, how
            if not call.wait(self.cfg.execution_timeout):
                return UNKNOWN, None, "the abandoned venue call is still running"
        if call is not None and call.abandoned and f.call_ended_at is None:
            f.call_ended_at = self.clock()  # first seen finished: it ended no later than now
        if call is not None and call.returned:
            return EXECUTED, call.value, "late_reply"
        if call is not None and isinstance(call.error, ExecutionRejected):
            return NOT_EXECUTED, None, "rejected"
        return self.ask_venue(ts, f)

    def ask_venue(self, ts: Any, f: Flight, *, confirm: bool = True) -> tuple[str, Any, str]:
        """Ask ``query_execution``. A "not found" counts as not executed only once it is
        sure: ``not_found_confirmations`` consecutive answers, spaced at least
        ``not_found_interval_seconds``, no earlier than ``not_found_min_age_seconds`` after
        the route call ended, or was given up at ``execution_timeout``, whichever is later
        (the order may reach the exchange at any moment of the call, and exchanges index
        orders with a delay)."""
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
        age = (f.last_query_at or 0.0) - self.sent_by(f)
        sure = (f.not_found >= cfg.not_found_confirmations
                and age >= cfg.not_found_min_age_seconds)
        host.emit("execution_query", {
            "block_id": f.block.block_id, "attempt": f.attempt, "answer": "not_found",
            "count": f.not_found, "needed": cfg.not_found_confirmations,
            "age_s": age, "confirmed": sure}, sync=False)
        if sure:
            f.not_found = 0
            return verdict
        return UNCONFIRMED, None, "query_not_found_unconfirmed"

    @staticmethod
    def sent_by(f: Flight) -> float:
        """The latest moment this attempt's order may have reached the venue, which the age
        of a "not found" counts from: the end of the route call, or when the manager gave up
        on it (``execution_timeout``), whichever is later; for a call abandoned and finished
        since, when it was first seen finished. After a restart: when the block was restored
        (the process that made the call is gone, and the call with it)."""
        if f.route_started is None:
            return f.entered_at
        ended = f.route_started + (f.call.elapsed if f.call is not None else 0.0)
        return max(ended, f.call_ended_at) if f.call_ended_at is not None else ended
