"""``fsm-exec cancel``: the operator's cancel, for a manager that is not running.

It takes the journal's writer lock (an :class:`~fsm_exec.EventLogger` on the directory: a
running manager holds it, and then nothing is done), checks the ids against the state the
journal describes, and only then builds a manager whose collaborators refuse any use,
recovers it, cancels and closes. A refusal (an id that is not queued, the lock held, a
journal that cannot be read) changes nothing, not even a record.

What it writes: a checkpoint starting a new file, ``operator_action`` (who cancelled, with
which tool, the wall clock: an operator's action, not a start of the deployment), and one
``queued --cancel--> cancelled`` transition per block, fsynced before it returns; every
record stamped with ``now`` (``--at``; default the wall clock).
A halted manager stays halted: resuming is the strategy process's decision.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import pwd
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from fsm_exec.core.errors import ComponentError, InvalidArgumentError, LifecycleCallError
from fsm_exec.core.limits import too_long
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.journal.writer import EventLogger
from fsm_exec.tools.status import StatusUnreadable, _replay

if TYPE_CHECKING:
    from fsm_exec.journal.state import ManagerState
    from fsm_exec.manager.manager import ExecutionManager


class CancelRefused(ValueError):
    """The cancel was not done, and nothing was written (the message says why)."""


class RefusingCollaborator:
    """Stands for every collaborator of a manager that only cancels: cancelling never calls
    one, so any call is a bug, and says so loudly."""

    def __init__(self, role: str) -> None:
        self.role = role

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(f"an offline fsm-exec command (cancel, trigger) never uses the "
                           f"{self.role}; it was called")

    route_instruction = query_execution = update_state = get_data = _refuse

    @property
    def reconciliation_status(self) -> str:
        self._refuse()


@attrs.frozen
class CancelResult:
    """What :func:`cancel_offline` did."""

    cancelled: tuple[str, ...]
    queued: tuple[str, ...]  # still queued afterwards, in order
    halted: bool
    halt_reason: str | None
    in_flight: str | None


def cancel_offline(log_dir: Path | str, block_ids: Sequence[str] | None, *, reason: str,
                   now: dt.datetime | None = None) -> CancelResult:
    """Cancel queued blocks (all when ``block_ids`` is ``None``) in the journal of a manager
    that is not running. Raises :class:`CancelRefused` (nothing written) when the directory
    is in use, holds no readable journal, or an id is not queued."""
    if not isinstance(reason, str) or not reason.strip():
        raise CancelRefused("--reason must say why (it is journaled with each block)")
    if (long := too_long(reason)) is not None:  # the journal's bound, as em.cancel's
        raise CancelRefused(f"--reason {long}; nothing was cancelled")
    with locked_journal(log_dir, CancelRefused, "cancelled",
                        "cancel from inside it with em.cancel(ts, block_ids, reason=...)"
                        ) as journal:
        return _cancel_locked(journal, Path(log_dir), block_ids, reason,
                              now if now is not None else dt.datetime.now(dt.UTC))


@contextlib.contextmanager
def locked_journal(log_dir: Path | str, refused: type[Exception], done: str,
                   inside: str) -> Iterator[EventLogger]:
    """The journal of a manager that is not running, its writer lock taken (closed on the
    way out); ``refused`` (nothing written, nothing ``done``) when the directory is in use
    (``inside``: how to do it from the process that holds it), holds no journal, or the
    ``BASIS_*`` variables are wrong. The one way in of the offline tools that write."""
    from fsm_exec.boundary.config import Environment

    log_dir = Path(log_dir)
    try:
        Environment.read("live")  # the BASIS_* variables, checked before anything is taken
    except ComponentError as exc:
        raise refused(str(exc)) from None
    files = journal_files(log_dir) if log_dir.is_dir() else []
    if not files:
        raise refused(f"{log_dir}: holds no ExecutionManager journal")
    like = _owner_file(log_dir, files[-1], refused, done)
    try:
        # retention_days=None: an offline tool never deletes history (it knows not the
        # deployment's retention; its new file's checkpoint would otherwise prune at 30 days)
        journal = EventLogger(log_dir, "live", retention_days=None, files_like=like)
    except JournalLockedError as exc:
        holder = f"process {exc.pid}" if exc.pid is not None else "another process"
        raise refused(
            f"{log_dir} is in use by {holder}: a running manager holds its journal. Nothing "
            f"was {done}. Stop that process first, or {inside}") from None
    except (ComponentError, OSError) as exc:  # the directory or its lock cannot be written
        raise refused(f"{log_dir}: cannot take the journal's lock: {exc}") from None
    try:
        yield journal
    finally:
        journal.close()


def operator_action(action: str) -> dict[str, Any]:
    """The data of an ``operator_action`` record: what, by which tool, which user (and the
    one behind ``sudo``), and the wall clock when it was done."""
    try:
        user: str | None = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = None
    data: dict[str, Any] = {"action": action, "tool": f"fsm-exec {action}", "user": user,
                            "wall_clock": dt.datetime.now(dt.UTC).isoformat()}
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        data["sudo_user"] = sudo_user
    return data


def _owner_file(log_dir: Path, newest: Path, refused: type[Exception] = CancelRefused,
                done: str = "cancelled") -> Path | None:
    """The file whose owner, group and bits the files the cancel creates take: the
    journal's newest file, when the cancel runs as root (``sudo``). Run as another user than
    the journal's, it is refused: the files it wrote would be that user's, and the
    manager could not write them (EXEC-009 "Permission denied" at its next start)."""
    try:
        owner = newest.stat().st_uid
    except OSError as exc:
        raise refused(f"{newest}: cannot read: {exc.strerror}") from None
    me = os.geteuid()
    if me == 0:
        return newest
    if owner != me:
        try:
            name = pwd.getpwuid(owner).pw_name
        except KeyError:
            name = f"#{owner}"
        raise refused(
            f"{log_dir}: the journal belongs to {name} (uid {owner}), not to you (uid "
            f"{me}): files this command writes would be yours, and the manager running as "
            f"{name} could not write them. Nothing was {done}. Run it as that user: "
            f"sudo -u {shlex.quote(name)} fsm-exec ... (or as root: sudo fsm-exec ... "
            "gives the new files the journal's owner and mode)")
    return None


def offline_manager(journal: EventLogger, state: ManagerState,
                    refused: type[Exception], *, action: str,
                    now: dt.datetime, imports: bool = True) -> ExecutionManager:
    """A manager on ``journal`` whose collaborators refuse any use, running the journal's
    own lifecycle, recovered: what an offline tool acts through. Its records are an
    operator's ``action`` (never a start of the deployment, whose config hash
    ``status --config`` compares), every one at the operator's time ``now``. ``refused``
    when the lifecycle's hooks cannot be imported here. Without ``imports`` it imports and
    runs none of the hooks and ``call`` guards the journal's lifecycle names (the journal
    is data, possibly hostile, never code to run: what ``cancel`` acts through)."""
    from fsm_exec.manager.manager import ExecutionManager

    cls = ExecutionManager if imports else _no_imports()
    try:
        em = cls(
            {"duplicate_window": state.window}, RefusingCollaborator("data provider"), "live",
            RefusingCollaborator("position handler"), RefusingCollaborator("venue"),
            RefusingCollaborator("reconciliation component"), event_logger=journal,
            clock=lambda: 0.0,  # a clock that stands still: every record at ``now``
            lifecycle=state.table.lifecycle)
    except LifecycleCallError as exc:
        raise refused(f"the journal's lifecycle cannot run here: {exc.message}") from None
    em._operator_action = operator_action(action)
    em._ts, em._t0 = em._stamp(now), 0.0
    try:
        em.recover()
    except ComponentError as exc:  # its checkpoint cannot be written, say: refused, named
        raise refused(f"the journal cannot be recovered here: {exc}") from None
    return em


@functools.cache
def _no_imports() -> type[ExecutionManager]:
    """The manager's class, importing no code a journal's lifecycle names (made once)."""
    from fsm_exec.manager.manager import ExecutionManager

    class NoImports(ExecutionManager):
        """An offline manager that imports no code its journal's lifecycle names."""

        _imports_lifecycle_code = False

    return NoImports


def _cancel_locked(journal: EventLogger, log_dir: Path, block_ids: Sequence[str] | None,
                   reason: str, now: dt.datetime) -> CancelResult:
    try:
        with contextlib.ExitStack() as stack:  # under the lock: nobody else can change it
            state = _replay(log_dir, stack)[0]
    except StatusUnreadable as exc:
        raise CancelRefused(f"{exc}; nothing was cancelled") from None
    queued = list(state.queue)
    flight = state.flight
    if block_ids is not None:
        problems = state.cancel_problems(block_ids)
        if problems:
            raise CancelRefused("cancel refused, nothing cancelled: " + "; ".join(problems))
    targets = queued if block_ids is None else list(block_ids)
    if not targets:
        return CancelResult((), (), state.halted, state.halt_reason,
                            flight.block.block_id if flight is not None else None)
    if flight is not None and flight.block.block_id in targets:
        code = [g.args.get("path") for e in state.table.edges
                if e.source == flight.state and e.trigger == "cancel"
                for g in e.guards if g.kind == "call"]
        if code:  # code the journal names decides: never run here (a journal is data)
            raise CancelRefused(
                f"cancel refused, nothing cancelled: block {flight.block.block_id!r} "
                f"({flight.state}) is cancelled through a transition whose guard is code "
                f"the journal names ({', '.join(map(repr, code))}), which an offline tool "
                "never runs; cancel it from the strategy process (em.cancel)")
    em = offline_manager(journal, state, CancelRefused, action="cancel", now=now,
                         imports=False)
    try:
        cancelled = em.cancel(now, None if block_ids is None else targets, reason=reason)
    except InvalidArgumentError as exc:  # pragma: no cover - the check above refuses first
        raise CancelRefused(str(exc)) from None
    status = em.get_execution_status()
    return CancelResult(cancelled, em.queued_block_ids, status["halted"],
                        status["halt_reason"], status["current_block"])
