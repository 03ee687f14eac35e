"""The block in flight: route it, hand its deltas off, wait for reconciliation, retry, resolve.

The :class:`~fsm_exec.ExecutionManager` keeps the entry points, the queue, the accounting and
recovery; it hands the one block in flight to a driver chosen once at construction by its
mode's policy (:mod:`~fsm_exec.drivers.policy`): :class:`~fsm_exec.drivers.backtest.BacktestDriver`
(inline venue calls, simulated reconciliation, fail fast) or
:class:`~fsm_exec.drivers.live.LiveDriver` (abandonable venue calls, polled reconciliation,
retries that find out whether the venue executed before anything is routed again). A driver
sees the manager only through its :class:`~fsm_exec.drivers.host.Host`; every move of the
block goes through ``host.move``, which journals it first (write-ahead), fires the lifecycle
trigger and applies the record to the state in one critical section.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.boundary.protocols import ExecutionRejected, HandOffKey, takes_hand_off_key
from fsm_exec.core.errors import ComponentError, describe_exception, safe_repr, type_name
from fsm_exec.core.interrupts import interrupts_deferred
from fsm_exec.core.lifecycle import BlockState, IllegalTransitionError, Trigger
from fsm_exec.core.running import TIMEOUT, LifecycleCallError
from fsm_exec.drivers.calls import VenueCall, Worker
from fsm_exec.journal.state import Flight as JournalFlight

if TYPE_CHECKING:
    from fsm_exec.drivers.host import Host

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS))
# Triggers as plain strings: an enum member's hash is a Python-level call on the hot path.
(T_START, T_EXECUTED, T_ROUTE_FAILED, T_REROUTE, T_FOUND_EXECUTED, T_RESUME_RECONCILIATION,
 T_RECONCILED, T_RECONCILIATION_TIMEOUT, T_FAIL) = (
    str(t) for t in (Trigger.START, Trigger.EXECUTED, Trigger.ROUTE_FAILED, Trigger.REROUTE,
                     Trigger.FOUND_EXECUTED, Trigger.RESUME_RECONCILIATION, Trigger.RECONCILED,
                     Trigger.RECONCILIATION_TIMEOUT, Trigger.FAIL))

_POLL_FIRST, _POLL_MAX = 0.05, 1.0
_MISSING = object()

# Verdicts of resolving a venue call whose outcome is not known yet (INVALID: the venue's
# answer was neither deltas nor None).
EXECUTED, NOT_EXECUTED, UNKNOWN, UNCONFIRMED, INVALID = (
    "executed", "not_executed", "unknown", "unconfirmed", "invalid")
_SHOWN = 80  # characters of a venue's answer quoted in an error


@attrs.define(eq=False)
class Flight(JournalFlight):
    """The block in flight: what the journal says of it (:class:`~fsm_exec.journal.state.Flight`,
    kept by the manager's :class:`~fsm_exec.journal.state.ManagerState`), and what only this
    run knows (the venue call, the error, the clocks)."""

    call: VenueCall | None = None  # the venue call of this attempt, once made
    error: ComponentError | None = None
    entered_at: float = 0.0  # when the block entered its current state (injected clock)
    route_started: float | None = None  # when this attempt's route call began
    #: When this attempt's abandoned route call was first seen finished (it ended no later).
    call_ended_at: float | None = None
    not_found: int = 0  # consecutive "not found" answers of query_execution
    last_query_at: float | None = None
    recovered: bool = False  # restored from a journal after a restart
    #: A user lifecycle's waiting state holds the block: the driver stopped, and the queue
    #: behind it waits (checked again on the next ``update_state``).
    waiting: bool = False
    #: When this run began counting the wait of a block whose entry into its state no record
    #: says (a checkpoint without ``entered``): never journaled, as no record said it.
    wait_from: str | None = None


class Driver:
    """What both modes share: risk checks, the hand-off, and the terminal moves."""

    #: Venue calls run on a worker thread under ``execution_timeout``: a reply later than
    #: that counts as none (live). Inline calls are never late (backtest).
    timed_calls = False
    worker: Worker | None = None  # the thread timed venue calls run on
    #: Hold SIGINT and SIGTERM from just before the position handler is called until its
    #: ``positions_updated`` record is durable (live), so that an in-process interrupt never
    #: makes the next run hand the same deltas over again.
    hold_interrupts = False

    def __init__(self, host: Host) -> None:
        self.host = host
        self.cfg = host.config
        self.clock: Callable[[], float] = host.clock
        self.sleep: Callable[[float], None] = host.sleep
        self.route_instruction = host.route_instruction
        self.update_positions = host.update_positions
        #: The handler takes the hand-off's key (``hand_off_key=``): decided once, here.
        self.keyed_hand_offs = takes_hand_off_key(host.update_positions)
        self.reconciliation = host.reconciliation
        self.query = host.query
        self.redact = host.redact
        self.move = host.move
        self.risk = host.risk

    def drive(self, ts: Any, f: Flight) -> None:
        """Move the block in flight until it is terminal (or the manager halts)."""
        lc = self.host.lifecycle
        if lc.table is not None:
            self.drive_table(ts, f)
            return
        while self.default_step(ts, f, lc.current):
            pass

    def default_step(self, ts: Any, f: Flight, state: str) -> bool:
        """One step of the block in a default state (start, route, reconcile, retry): True
        if it took one, False in any other state (terminal, or one a lifecycle adds)."""
        if state == _QUEUED:
            self.move(T_START)
        elif state == _ROUTING:
            self.route(ts, f)
        elif state == _PENDING:
            self.reconcile(ts, f)
        elif state == _RETRYING:
            self.retry(ts, f)
        else:
            return False
        return True

    def drive_table(self, ts: Any, f: Flight) -> None:
        """A user lifecycle: the default states as :meth:`drive` drives them; in a state the
        lifecycle adds, its poll transitions (the first whose guards hold fires), then, in a
        waiting state, its timeout; in a state without a ``Wait``, the first of its
        transitions whose guards hold. A guard or a hook that raises fails the block (in
        doubt, halting, when the state is in flight or settling). Within one pass the block
        moves out of each state the lifecycle adds at most once: back in one it already
        left (a loop of polls whose guards all hold), it waits there for the next call."""
        lc = self.host.lifecycle
        f.waiting = False
        left: set[str] = set()  # the lifecycle's own states this pass moved it out of
        while lc.in_flight:
            state = lc.current
            try:
                if self.default_step(ts, f, state):
                    pass
                elif state in left or not self.user_state(f, state):
                    f.waiting = True
                    return
                else:
                    left.add(state)
            except LifecycleCallError as exc:
                self.call_failed(f, exc)
            except IllegalTransitionError:
                # An operator moved the waiting block meanwhile (em.trigger, em.cancel from
                # another thread): nothing moved here; look again where it stands.
                if lc.current == state:
                    raise

    def user_state(self, f: Flight, state: str) -> bool:
        """One look at a block in a state the lifecycle adds: True if it moved on."""
        host = self.host
        table = host.lifecycle.table
        assert table is not None
        try_move = host.try_move
        for trigger in table.polls(state):
            if try_move(trigger) is not None:
                return True
        wait = table.waits.get(state)
        # A state without a wait moves on by its unguarded poll (rule moves-on): here only
        # a state with a wait is left, or one whose poll an operator's move beat.
        if wait is None or wait.timeout_seconds is None:
            return False
        waited = host.waited(f)
        if waited < wait.timeout_seconds:
            return False
        if table.kind(state) == "before_route":  # nothing sent: where the wait says
            self.move(TIMEOUT, waited_s=waited)
        else:  # the implied timeout to failed: the outcome is in doubt
            host.fail(f, "EXEC-007", f"timed out in {state} after {waited:g}s (timeout "
                      f"{wait.timeout_seconds:g}s): the outcome is in doubt", halt=True,
                      trigger=TIMEOUT)
        return True

    def call_failed(self, f: Flight, exc: LifecycleCallError) -> None:
        """A guard or a hook raised: fail the block where it stands; in a state in flight
        or settling its outcome is in doubt, and the manager halts."""
        host = self.host
        table = host.lifecycle.table
        assert table is not None
        state = host.lifecycle.current
        # Default states (the terminal ones among them) take no hooks: the block is not
        # terminal here (rule default-states).
        if table.kind(state) == "before_route":
            host.fail(f, "EXEC-020", self.redact(exc.message), exc.original_exception)
        else:
            host.fail(f, "EXEC-007", self.redact(f"outcome in doubt: {exc.message}"),
                      exc.original_exception, halt=True)

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
        conv = self.host.canonical_deltas(value)
        if conv.problems:
            self.host.fail(f, "EXEC-015", "the venue executed, but its reply cannot be "
                            "recorded faithfully: " + "; ".join(conv.problems), halt=True)
            return
        self.move(trigger, deltas=conv.wire, _deltas=conv.value, **data)

    def hand_off(self, ts: Any, f: Flight) -> bool:
        """Give the deltas to the position handler, at most once; False if it refused them.

        Whatever the handler raises, it is not called again for these deltas: an exception
        fails the block (``EXEC-008``, halting), an interrupt stops the manager. An interrupt
        (SIGINT, SIGTERM) arriving from the call until the record is durable is delivered
        after it (:attr:`hold_interrupts`)."""
        self.host.refuse_if_retired()  # a recovered block's hand-off has no record before it
        with interrupts_deferred() if self.hold_interrupts else contextlib.nullcontext():
            return self._hand_off(ts, f)

    def _hand_off(self, ts: Any, f: Flight) -> bool:
        host = self.host
        t0 = self.clock() if host.observers else 0.0
        try:
            if self.keyed_hand_offs:
                self.update_positions(ts, "execution_manager", f.deltas,
                                      hand_off_key=HandOffKey(f.block.block_id, f.attempt))
            else:
                self.update_positions(ts, "execution_manager", f.deltas)
        except Exception as exc:
            host.call_done("hand_off", f, t0, "error", exc)
            host.fail(f, "EXEC-008", self.redact(
                f"position handler refused the deltas: {describe_exception(exc)}"),
                exc, halt=True)
            return False
        if host.observers:
            host.call_done("hand_off", f, t0, "ok")
        host.handed_off(ts, f)
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
            self.host.fail(f, *refusal)
            return None
        self.host.refuse_if_retired()  # retired during the checks: it trades no more
        f.call = call = VenueCall()
        return call

    def why_failed(self, call: VenueCall) -> str:
        """Why a venue call gave no deltas, for the record (secrets redacted)."""
        if call.in_doubt:
            return f"outcome in doubt: {type_name(call.error)}"
        if call.error is not None:
            kind = "rejected" if isinstance(call.error, ExecutionRejected) else "error"
            return self.redact(f"{kind}: {describe_exception(call.error)}")
        return "the venue returned no deltas (None)"

    def not_deltas(self, value: Any) -> bool:
        """True if ``query_execution``'s answer (not ``None``) is not deltas: deltas are a
        mapping with at least one entry (in canonical form). ``False``, ``0``, ``""``,
        ``[]`` and ``{}`` are an adapter's "not found" written wrong, and an empty mapping
        says nothing was filled: none of them is taken for "executed". Anything else is
        judged by its canonical form (a record, a Series: as it would be kept); one that has
        none is left to :meth:`executed` (``EXEC-015`` naming its path)."""
        if type(value) is dict:
            return not value
        conv = self.host.canonical_deltas(value)
        return not conv.problems and not (type(conv.value) is dict and conv.value)

    def not_deltas_why(self, f: Flight, value: Any) -> str:
        """Why a block fails on an answer of ``query_execution`` that is not deltas."""
        shown = terminal_text(self.redact(safe_repr(value)))
        if len(shown) > _SHOWN:
            shown = shown[:_SHOWN - 3] + "..."
        return (f"query_execution answered {shown} (a {type_name(value)}), which is "
                "neither deltas (a non-empty mapping) nor None (not executed): whether the "
                f"venue executed block {f.block.block_id!r} is unknown; the adapter must "
                "return None when the venue has no such order")

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
        if not q.done or (self.timed_calls and q.elapsed > cfg.execution_timeout):
            verdict: tuple[str, Any, str] = (UNKNOWN, None,
                                             "query_execution did not reply in time")
        elif q.error is not None:
            verdict = (UNKNOWN, None, self.redact(
                f"query_execution raised {describe_exception(q.error)}"))
        elif q.value is None:
            verdict = (NOT_EXECUTED, None, "query_not_found")
        elif self.not_deltas(q.value):
            verdict = (INVALID, None, self.not_deltas_why(f, q.value))
        else:
            verdict = (EXECUTED, q.value, "query_found")
        if host.observers:
            host.call_done("query", f, t0, verdict[0], q.error,
                            duration=q.elapsed if self.timed_calls else None)
        return verdict
