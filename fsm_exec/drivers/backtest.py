"""The backtest driver: venue calls inline, reconciliation simulated, no retries (fail fast).

The happy path of a block (route, hand off, reconciled) runs as one pass when no observer is
attached (:meth:`BacktestDriver.quick_path`), or in one go telling the observers
(:meth:`BacktestDriver.straight_through`); the first deviation hands over to the state by
state driver of :class:`~fsm_exec.drivers.base.Driver`, where the block stands.
"""

from __future__ import annotations

from typing import Any

from fsm_exec.boundary.canonical import NOT_PLAIN, plain_copy
from fsm_exec.boundary.protocols import HandOffKey
from fsm_exec.core.errors import describe_exception
from fsm_exec.drivers.base import (
    _PENDING,
    _QUEUED,
    _ROUTING,
    _SUCCESS,
    EXECUTED,
    INVALID,
    T_EXECUTED,
    T_FOUND_EXECUTED,
    T_RECONCILED,
    T_REROUTE,
    T_ROUTE_FAILED,
    T_START,
    UNKNOWN,
    Driver,
    Flight,
)
from fsm_exec.drivers.calls import VenueCall


class BacktestDriver(Driver):
    """Backtest: venue calls inline, reconciliation simulated, no retries (fail fast)."""

    def drive(self, ts: Any, f: Flight) -> None:
        lc = self.host.lifecycle
        if lc.current == _QUEUED and lc.table is None:  # the default lifecycle's one pass
            self.happy_path(ts, f)
            if self.host.lifecycle.current == _SUCCESS:
                return
        super().drive(ts, f)  # a deviation: the state by state driver, where it stands

    def happy_path(self, ts: Any, f: Flight) -> None:
        """The happy path of a block in one pass (the one copy of it): start, the risk
        checks, the route, the hand-off, reconciled. Each move is journaled first (the
        record ``host.move`` would write), fired on the same Machine (its record written:
        ``_recorded``) and applied to the state; observers, when there are any, are told
        as ``host.move`` tells them. At the first deviation it returns where the block
        stands, and the state by state driver takes over. (Measured: the per-block hot
        path.)"""
        host = self.host
        observers = host.observers
        lc, clock, mutex = host.lifecycle, self.clock, host.mutex
        journal = host.journal_move if host.journaled else None
        state = host.state()
        block = f.block
        block_id = block.block_id
        with mutex:
            if host.cancelled_since_loaded(f):
                return
            if journal is not None:
                journal({"block_id": block_id, "source": _QUEUED, "dest": _ROUTING,
                         "trigger": T_START, "attempt": f.attempt}, True)  # intent to route
            lc.commit(T_START)
            state.start(block_id, f)
            state.move(_QUEUED, _ROUTING, T_START)
            f.entered_at = clock()
        if observers:
            host.notify_transition(f, _QUEUED, _ROUTING, T_START, {})
        refusal = self.risk.refusal(ts, block)
        if refusal is not None:
            host.fail(f, *refusal)
            return
        host.refuse_if_retired()  # retired during the checks: it trades no more
        f.call = call = VenueCall()  # recorded before the call: an interrupt leaves a trace
        t0 = clock() if observers else 0.0
        try:  # VenueCall.run_inline, inlined (measured)
            value = call.value = self.route_instruction(ts, block)
        except Exception as exc:
            call.error = exc
            if observers:
                host.call_done("route", f, t0, self.outcome_of(call), exc)
            return  # route() classifies the failure
        except BaseException as exc:  # KeyboardInterrupt: the outcome is now in doubt
            call.error = exc
            raise
        if observers:
            host.call_done("route", f, t0, self.outcome_of(call), None)
        if value is None:
            return
        deltas = plain_copy(value, host.finds)
        if deltas is NOT_PLAIN:  # the careful conversion (and EXEC-015 when it must)
            self.executed(T_EXECUTED, f, value)
            if lc.current == _PENDING and self.hand_off(ts, f):
                self.move(T_RECONCILED)
            return
        with mutex:
            if journal is not None:
                journal({"block_id": block_id, "source": _ROUTING, "dest": _PENDING,
                         "trigger": T_EXECUTED, "attempt": f.attempt, "deltas": deltas},
                        True)  # deltas about to be handed off: a barrier
            lc.commit(T_EXECUTED)
            state.move(_ROUTING, _PENDING, T_EXECUTED, deltas=deltas)
            f.entered_at = clock()
        if observers:
            host.notify_transition(f, _ROUTING, _PENDING, T_EXECUTED, {"deltas": deltas})
            t0 = clock()
        try:  # hand_off(), inlined: at most once, whatever the handler raises
            if self.keyed_hand_offs:
                self.update_positions(ts, "execution_manager", deltas,
                                      hand_off_key=HandOffKey(block_id, f.attempt))
            else:
                self.update_positions(ts, "execution_manager", deltas)
        except Exception as exc:
            if observers:
                host.call_done("hand_off", f, t0, "error", exc)
            host.fail(f, "EXEC-008", self.redact(
                f"position handler refused the deltas: {describe_exception(exc)}"),
                exc, halt=True)
            return
        if observers:
            host.call_done("hand_off", f, t0, "ok")
        with mutex:
            state.hand_off()  # positions_updated is a live record: none in backtest
            if journal is not None:
                journal({"block_id": block_id, "source": _PENDING, "dest": _SUCCESS,
                         "trigger": T_RECONCILED, "attempt": f.attempt}, False)  # rides along
            lc.commit(T_RECONCILED)
            state.move(_PENDING, _SUCCESS, T_RECONCILED)
            f.entered_at = clock()
            host.finish(f, _SUCCESS)
        if observers:
            host.notify_transition(f, _PENDING, _SUCCESS, T_RECONCILED, {})

    def route(self, ts: Any, f: Flight) -> None:
        call = f.call
        if call is None:
            call = self.new_call(ts, f)
            if call is None:
                return
            t0 = self.clock()
            call.run_inline(self.route_instruction, (ts, f.block))
            if self.host.observers:
                self.host.call_done("route", f, t0, self.outcome_of(call), call.error)
        if call.returned:
            self.executed(T_EXECUTED, f, call.value)
            return
        if call.in_doubt:  # interrupted, or lost to a restart: an unknown outcome
            self.move(T_ROUTE_FAILED, reason=self.why_failed(call))  # the state keeps why
            return
        self.host.fail(f, "EXEC-001", f"venue call failed: {self.why_failed(call)}",
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
        if verdict == INVALID:  # neither deltas nor None: still in doubt
            f.unresolved = True
            self.host.fail(f, "EXEC-015", how, halt=True)
        elif verdict == EXECUTED:
            # Its deltas take the way executed takes (found_executed is derived from it).
            self.executed(T_FOUND_EXECUTED, f, deltas, attempt=f.attempt + 1,
                          resolved_by=how)
        elif verdict == UNKNOWN:
            self.host.fail(f, "EXEC-007", f"outcome of the venue call unknown: {how}",
                            halt=True)
        else:
            self.move(T_REROUTE, attempt=f.attempt + 1, resolved_by=how)
