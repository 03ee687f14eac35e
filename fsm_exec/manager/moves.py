"""The moves of the block in flight (what the drivers call): each journaled first, then applied
to the state and the Machine; failures, hand-offs, halts and resumes.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from fsm_exec.boundary.blocks import TAKEN, convert_block
from fsm_exec.boundary.canonical import (
    NOT_PLAIN,
    Converted,
    canonical,
    plain_copy,
)
from fsm_exec.core.errors import (
    AlreadyAcceptedError,
    ComponentError,
    InvalidBlockError,
    ScrubbedException,
)
from fsm_exec.core.lifecycle import BlockState, Trigger
from fsm_exec.core.limits import MAX_TEXT, fit_text
from fsm_exec.core.running import RunTable
from fsm_exec.drivers.base import (
    T_FAIL,
    T_RECONCILIATION_TIMEOUT,
    T_REROUTE,
    Flight,
)
from fsm_exec.journal.state import (
    NO_DELTAS,
    RECONCILIATION_TIMEOUT_WHY,
)
from fsm_exec.observe.health import (
    UNHEALTHY,
)

_QUEUED, _ROUTING, _PENDING, _RETRYING, _SUCCESS, _FAILED, _CANCELLED = (
    str(s) for s in (BlockState.QUEUED, BlockState.ROUTING, BlockState.PENDING_RECONCILIATION,
                     BlockState.RETRYING, BlockState.SUCCESS, BlockState.FAILED,
                     BlockState.CANCELLED))
_NO_DELTAS = NO_DELTAS
_T_CANCEL = str(Trigger.CANCEL)

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def cancelled_since_loaded(self: ExecutionManager, f: Flight) -> bool:
    """Before the start record of the block ``advance`` loaded (under the mutex): True if
    another thread cancelled it since (its cancel record written, it left the queue). The
    Machine then takes it to ``cancelled`` too, with nothing more journaled, and it is never
    started: a start after its cancel would be a record no reader accepts."""
    if f.block.block_id in self._state.queue:
        return False
    self._lc.commit(_T_CANCEL)
    self._finish(f, _CANCELLED)
    return True


def move(self: ExecutionManager, trigger: str, *, _deltas: Any = _NO_DELTAS,
         _try: bool | None = None, **data: Any) -> str | None:
    """Fire ``trigger`` on the block in flight: journal first (write-ahead), then the
    state, then the bookkeeping, in one critical section. A hook of the state entered
    (a user lifecycle's) that raised is raised once the bookkeeping is done."""
    f = self._f
    assert f is not None
    reason = data.get("reason")
    if reason.__class__ is str and len(reason) > MAX_TEXT:  # a venue's error page
        data["reason"] = fit_text(reason)  # the journal and the state keep the same text
    with self._mutex:
        lc = self._lc
        source = lc.current
        if source == _QUEUED and self._cancelled_since_loaded(f):
            return _CANCELLED
        if lc.table is not None and "error_code" not in data:
            data = failing(lc.table, f, source, trigger, data)
        if _try is None:
            lc.fire(trigger, **data)  # the record first (write-ahead), then the Machine
        elif not lc.try_fire(trigger, **data):  # a user lifecycle's guards: none held
            return None
        dest = lc.current
        if dest == _FAILED and f.error is None:  # a user lifecycle's own move to failed
            failed_by_lifecycle(self, f, source, trigger, data)
        state = self._state
        if source == _QUEUED:
            state.start(f.block.block_id, f)
        # a failure that halts says so (a fail, or a user lifecycle's timeout in doubt)
        halts = data["error_code"] if data.get("halts") else None
        state.move(source, dest, trigger, attempt=data.get("attempt"), deltas=_deltas,
                   resolved="resolved_by" in data,
                   why=(RECONCILIATION_TIMEOUT_WHY if trigger == T_RECONCILIATION_TIMEOUT
                        and source == _PENDING else data.get("reason", "")),
                   halts=halts)
        f.entered_at = self._clock()
        f.entered = self._ts
        if trigger == T_REROUTE:
            f.call = None
        if halts is not None:
            self._halt_for(halts)
        if dest in lc.terminal:
            self._finish(f, dest)
    if self._observers:
        self._notify_transition(f, source, dest, trigger, data)
    error = lc.hook_error
    if error is not None:
        lc.hook_error = None
        raise error
    return dest


def _failure(table: RunTable, f: Flight, source: str, trigger: str) -> tuple[str, str, bool]:
    """A user lifecycle's own move to ``failed`` (a poll, a trigger, a wait's timeout):
    ``(code, reason, halts)``; from a state the block was sent in, it is in doubt."""
    sent = table.kinds.get(source) != "before_route"
    if sent:
        return ("EXEC-007", f"the lifecycle moved it {source} --{trigger}--> failed after it "
                "was sent: the outcome is in doubt", True)
    return ("EXEC-001", f"the lifecycle moved it {source} --{trigger}--> failed before the "
            "route (nothing was sent)", False)


def failing(table: RunTable, f: Flight, source: str, trigger: str,
            data: dict[str, Any]) -> dict[str, Any]:
    """``data`` for a move that can only lead to ``failed`` (under a user lifecycle), with
    the failure's code (and ``halts`` when in doubt) in its record, as a ``fail`` has."""
    if table.next.get((source, trigger)) != (_FAILED,):
        return data
    code, reason, halts = _failure(table, f, source, trigger)
    out = {"error_code": code, "reason": reason, **data}
    if halts:
        out["halts"] = True
    return out


def failed_by_lifecycle(self: ExecutionManager, f: Flight, source: str, trigger: str,
                        data: dict[str, Any]) -> None:
    """The block reached ``failed`` through a user lifecycle's own move: its error (the
    record's code, else the one :func:`_failure` says), and a halt when in doubt."""
    table = self._lc.table
    assert table is not None
    code, reason, halts = _failure(table, f, source, trigger)
    code = str(data.get("error_code", code))
    f.error = ComponentError(code, f"block {f.block.block_id!r}: {data.get('reason', reason)}",
                             block_id=f.block.block_id)
    if halts and not data.get("halts"):
        self._halt(code)  # journaled by finish(): manager_halted


def try_move(self: ExecutionManager, trigger: str, **data: Any) -> str | None:
    """:func:`move`, when ``trigger``'s guards hold; ``None`` (nothing moved, nothing
    written) when none does."""
    return self._move(trigger, _try=True, **data)


def fail(self: ExecutionManager, f: Flight, code: str, reason: str,
         exc: BaseException | None = None, *, halt: bool = False,
         trigger: str = T_FAIL) -> None:
    err = ComponentError(code, f"block {f.block.block_id!r}: {reason}",
                         original_exception=(ScrubbedException.of(exc, self._redact)
                                             if exc is not None else None),
                         block_id=f.block.block_id)
    f.error = err
    if halt:
        self._move(trigger, error_code=code, reason=reason, halts=True)
    else:
        self._move(trigger, error_code=code, reason=reason)


def handed_off(self: ExecutionManager, ts: Any, f: Flight) -> None:
    """The position handler took the deltas: say so (live recovery relies on it)."""
    with self._mutex:
        if self._policy.journal_hand_offs:  # what crash recovery needs; a backtest is rerun
            self._emit("positions_updated", {"block_id": f.block.block_id,
                                                 "attempt": f.attempt})
        self._state.hand_off()


def unresolved(self: ExecutionManager, ts: Any, f: Flight, how: str) -> None:
    """The venue's outcome is still unknown: ask again on the next attempt."""
    with self._mutex:
        attempt = f.attempt + 1
        self._emit("execution_unresolved", {
            "block_id": f.block.block_id, "attempt": attempt, "reason": fit_text(how)})
        self._state.unresolved(attempt)


def canonical_deltas(self: ExecutionManager, value: Any) -> Converted:
    """The venue's reply in canonical form (redacted), the moment it returns."""
    copied = plain_copy(value, self._finds)
    if copied is not NOT_PLAIN:
        return Converted(copied, copied)
    return canonical(value, redact=self._redact or None, finite="a venue's reply")


def finish(self: ExecutionManager, f: Flight, state: str) -> None:
    """Bookkeeping for a block that reached ``state`` (inside ``_move``'s section)."""
    ts = self._ts
    block_id = f.block.block_id
    self._f = None
    if state == _SUCCESS:
        self.reconciliation_status = "success"
        return
    if state == _CANCELLED:  # a user lifecycle's block cancelled while it waited
        self.reconciliation_status = "pending"
        return
    self.reconciliation_status = "failed"
    err = f.error
    assert err is not None
    self._record_error(ts, err)
    self._emit("block_failed", {"block_id": block_id, "error_code": err.error_code,
                                    "attempts": f.attempt})
    if self._halted:
        reason = self._halt_reason
        self._journal_halt(block_id)
        self._notify_event("halted", reason=reason, block_id=block_id)


def journal_halt(self: ExecutionManager, block_id: str | None) -> None:
    """Write ``manager_halted`` with the manager's reason as it stands; the journal's
    halt is then that one."""
    reason = self._halt_reason
    self._emit("manager_halted", {"reason": reason, "block_id": block_id})
    self._state.halted_for(reason)
    self._pending_halt = None


def halt(self: ExecutionManager, reason: str) -> None:
    """Halt for ``reason``, unless already halted: the first reason stands (positions
    in doubt stay the reason when the disk fails after), and a halt is journaled once.
    """
    with self._mutex:
        if self._halted:
            return
        self._pending_halt = reason
        self._health.note(UNHEALTHY)


def halt_for(self: ExecutionManager, code: str) -> None:
    """A failure record that halts (``halts: true``) was just journaled: it is the halt
    the journal holds first unless one is journaled already, so it replaces a halt the
    journal never took (an ``EXEC-009`` before it), as recovery reads it. The state took
    it already (``ManagerState.move``)."""
    self._pending_halt = None
    self._health.note(UNHEALTHY)


def conflicts(self: ExecutionManager, exc: InvalidBlockError, batch: Any
              ) -> InvalidBlockError:
    """``exc`` (a batch refused), saying of each block that reuses the id of a finished
    block with other content that it is not that block submitted again."""
    state = self._state
    problems = list(exc.problems)
    changed = False
    for i, p in enumerate(problems):
        end = state.finished.get(p.block_id) if p.block_id is not None else None
        if end is None or p.field != "block_id" or p.reason != TAKEN:
            continue
        found, block, _ = convert_block(batch[p.index], self._redact or None,
                                        self._cfg.asset_field)
        if block is not None and not found and state.same_as_finished(block) is False:
            problems[i] = attrs.evolve(p, reason=(
                f"already used by another block, which finished ({end}): this one asks "
                "for something else (its action, priority or instructions differ), so it "
                "is not that block submitted again; give it a block_id of its own"))
            changed = True
    if not changed:
        return exc
    return InvalidBlockError(problems, len(batch))


def resume(self: ExecutionManager, ts: Any) -> None:
    with self._mutex:
        reason = self._halt_reason
        self._emit("manager_resumed", {"reason": reason, "trigger_source": "manual"})
        self._state.resume()
        self._pending_halt = None
    self._notify_event("resumed", reason=reason)


def already_accepted(self: ExecutionManager, batch: Any) -> AlreadyAcceptedError | None:
    """If ``batch`` (refused as a duplicate) is a batch accepted before, submitted again:
    the error that says so; else ``None``. Every block must be valid, its id taken, and its
    content the same as the block the manager holds (queued or in flight) or held (finished:
    its content digest, when known; a block finished before digests were kept is compared
    by id alone)."""
    if not isinstance(batch, list | tuple):
        return None
    state = self._state
    flight_block = state.flight.block if state.flight is not None else None
    ids: list[str] = []
    where: list[str] = []
    for item in batch:
        found, block, _ = convert_block(item, self._redact or None)
        if found or block is None or block.block_id in ids:
            return None
        block_id = block.block_id
        held = state.queue.get(block_id)
        if held is None and flight_block is not None and flight_block.block_id == block_id:
            held = flight_block
        if held is None:
            finished = state.finished.get(block_id)
            if finished is None:
                return None
            same = state.same_as_finished(block)
            if same is False:
                return None  # another block under a finished one's id: a conflict
            where.append(f"same content; it finished: {finished}" if same else
                         f"same id; it finished: {finished} (its content is not known)")
        elif held != block:
            return None
        else:
            where.append("same content; it is "
                         + ("queued" if held is not flight_block else "in flight"))
        ids.append(block_id)
    return AlreadyAcceptedError(tuple(ids), tuple(where))
