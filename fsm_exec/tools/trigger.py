"""``fsm-exec trigger``: an operator fires an external trigger of a user lifecycle (an approval,
a rejection) on the block in flight of a manager that is not running.

The same way in as ``fsm-exec cancel`` (:func:`~fsm_exec.tools.cancel.locked_journal`: the
journal's writer lock, refused while a running manager holds it; then a manager whose
collaborators refuse any use, running the journal's own lifecycle, recovered), then
``em.trigger(...)``. A refusal (the lock held, a journal that cannot be read, a block that is
not in flight, a trigger that is not external or not allowed in its state) changes nothing,
not even a record. What it writes is what a restart followed by ``em.trigger(...)`` writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import attrs

from fsm_exec.core.errors import ComponentError
from fsm_exec.tools.cancel import locked_journal, offline_manager
from fsm_exec.tools.status import StatusUnreadable, _replay


class TriggerRefused(ValueError):
    """The trigger was not fired, and nothing was written (the message says why)."""


@attrs.frozen
class TriggerResult:
    """What :func:`trigger_offline` did: ``block_id`` moved ``source --event--> dest``."""

    block_id: str
    event: str
    source: str
    dest: str
    queued: tuple[str, ...]
    halted: bool
    halt_reason: str | None


def trigger_offline(log_dir: Path | str, block_id: str, event: str, *, reason: str,
                    now: dt.datetime | None = None) -> TriggerResult:
    """Fire the external trigger ``event`` on ``block_id`` (the block in flight) in the
    journal of a manager that is not running. Raises :class:`TriggerRefused` (nothing
    written) when the directory is in use, holds no readable journal, or the manager
    refuses the trigger (``EXEC-012``: not external, or not allowed in the block's state;
    the block not in flight)."""
    if not isinstance(reason, str) or not reason.strip():
        raise TriggerRefused("--reason must say why (it is journaled with the trigger)")
    when = now if now is not None else dt.datetime.now(dt.UTC)
    with locked_journal(log_dir, TriggerRefused, "triggered",
                        "trigger from inside it with em.trigger(block_id, event, ts, "
                        "reason=...)") as journal:
        try:
            with contextlib.ExitStack() as stack:  # under the lock
                state = _replay(Path(log_dir), stack)[0]
        except StatusUnreadable as exc:
            raise TriggerRefused(f"{exc}; nothing was triggered") from None
        flight = state.flight
        if flight is None or flight.block.block_id != block_id:
            where = state.state_of(block_id)
            raise TriggerRefused(
                f"trigger refused, nothing changed: block {block_id!r} is "
                + ("unknown" if where is None else f"{where}, not the block in flight")
                + (f" (in flight: {flight.block.block_id!r}, {flight.state})"
                   if flight is not None else " (no block is in flight)"))
        source = flight.state
        refusal = state.table.trigger_refusal(source, event, block_id)
        if refusal is not None:  # before the manager's restart records are written
            raise TriggerRefused(f"trigger refused, nothing changed: {refusal.message}")
        em = offline_manager(journal, state, TriggerRefused, action="trigger", now=when)
        try:
            dest = em.trigger(block_id, event, when, reason=reason)
        except ComponentError as exc:
            raise TriggerRefused(f"trigger refused, nothing changed: {exc.message}") from None
        status = em.get_execution_status()
        return TriggerResult(block_id, event, source, dest, em.queued_block_ids,
                             status["halted"], status["halt_reason"])
