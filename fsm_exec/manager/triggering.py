"""The manager's lifecycle: the table it runs (``lifecycle=``), the context its guards and
hooks see, how long a block has waited, and the external triggers (``em.trigger``).

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.timestamps import journal_time
from fsm_exec.core.errors import InvalidArgumentError, ReentrantCallError
from fsm_exec.core.lifecycle import BlockLifecycle, IllegalTransitionError
from fsm_exec.core.running import DEFAULT_TABLE, LifecycleCallError, RunTable, table_of
from fsm_exec.manager.wiring import idle_lifecycle

if TYPE_CHECKING:
    import datetime as dt

    from fsm_exec.core.lifecycles import GuardContext, Lifecycle
    from fsm_exec.drivers.base import Flight
    from fsm_exec.manager.manager import ExecutionManager


def lifecycle_machine(self: ExecutionManager, lifecycle: Lifecycle | None) -> BlockLifecycle:
    """The Machine of the block in flight, running ``lifecycle`` (``None``: the default),
    checked first; its guards and hooks see :func:`guard_context`."""
    if lifecycle is not None and not hasattr(lifecycle, "all_transitions"):
        raise InvalidArgumentError(
            f"lifecycle: expected an fsm_exec.Lifecycle (Lifecycle.load(path), "
            f"Lifecycle.default()), got {type(lifecycle).__name__}")
    table = table_of(lifecycle)
    self._table = table
    listener = self._on_transition if self._log is not None else None
    # The default lifecycle's Machine may be one a closed manager left (manager/wiring.py).
    lc = (idle_lifecycle(listener) if table.is_default else
          BlockLifecycle(listener, table, imports=self._imports_lifecycle_code))
    lc.context = self._guard_context
    return lc


def lifecycle_table(self: ExecutionManager) -> RunTable:
    """The table this manager runs."""
    return getattr(self, "_table", DEFAULT_TABLE)


def _instant(stamp: str | None) -> dt.datetime | None:
    return journal_time(stamp) if stamp is not None else None


def guard_context(self: ExecutionManager) -> GuardContext:
    """What a guard or a hook sees of the block in flight: the block (plain data), the
    strategy's timestamp of the current call (``now``), when the block entered its state
    (the timestamp of that move's record), and the state."""
    from fsm_exec.core.lifecycles import GuardContext

    f = self._f
    assert f is not None
    now = _instant(self._ts)
    assert now is not None  # every entry point stamps its call first
    entered = _instant(f.entered) or now
    return GuardContext(block=f.block.to_dict(), now=now, entered_at=entered,
                        state=self._lc.current)


def waited(self: ExecutionManager, f: Flight) -> float:
    """Seconds the block in flight has been in its state, on the strategy's timestamps (a
    restart keeps counting from the record of the move into it). When that is not known
    (a checkpoint that does not say), the count starts now: a wait's timeout fires late,
    never not at all."""
    now, entered = _instant(self._ts), _instant(f.entered)
    assert now is not None  # every entry point stamps its call first
    if entered is None:
        if f.wait_from is None:
            f.wait_from = self._ts
        entered = _instant(f.wait_from)
        assert entered is not None
    return max((now - entered).total_seconds(), 0.0)


def trigger(self: ExecutionManager, block_id: str, event: str, timestamp: Any, *,
            reason: str) -> str:
    """See :meth:`ExecutionManager.trigger`."""
    self._check_usable()
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgumentError("trigger: reason must be a non-empty string")
    if not isinstance(block_id, str) or not isinstance(event, str):
        raise InvalidArgumentError("trigger: block_id and event must be strings")
    stamp = self._stamp(timestamp)
    if self._busy == threading.get_ident():
        raise ReentrantCallError(
            "trigger() was called from inside update_state (a collaborator, a hook or a "
            "guard): call it from the strategy or an operator's thread")
    dest: str = self._guarded(self._trigger_now, block_id, event, stamp, reason)
    return dest


def trigger_now(self: ExecutionManager, block_id: str, event: str, stamp: str,
                reason: str) -> str:
    reason = self._redact(reason)
    with self._mutex:
        if self._interrupted is not None:  # retired (or replaced) since the entry check
            raise self._retired_error()
        lc, table = self._lc, lifecycle_table(self)
        f = self._state.flight
        if f is None or f.block.block_id != block_id or f is not self._f:
            where = self._state.state_of(block_id)
            if where is None:
                raise InvalidArgumentError(
                    f"trigger refused, nothing changed: {self._quote(block_id)} is not a "
                    "known block")
            raise IllegalTransitionError(
                event, where, block_id, [],
                "only the block in flight can be triggered, and this one is not; ")
        if self._busy is not None and not self._f.waiting:
            raise ReentrantCallError(
                f"trigger refused, nothing changed: block {block_id!r} is being driven by "
                "update_state in another thread (it is not waiting in a state); trigger it "
                "once that call has returned")
        state = lc.current
        refusal = table.trigger_refusal(state, event, block_id)
        if refusal is not None:
            raise refusal
        outer, self._ts = self._ts, stamp
        try:
            try:
                dest = self._move(event, reason=reason, external=True) or state
            except LifecycleCallError as exc:  # a hook of the state entered raised
                assert self._f is not None  # hooks are never on a terminal state
                self._driver.call_failed(self._f, exc)
                dest = lc.current
            self._barrier()  # durable before it returns, like a cancel
        finally:
            self._ts = outer
    self._notify_event("triggered", block_id=block_id, trigger=event, dest=dest)
    return dest
