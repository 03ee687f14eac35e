"""Retirement: a manager stopped in the middle of a step refuses to go on, on every
thread, as a crash at that instant would; and the checks every entry point makes first.

Methods of :class:`~fsm_exec.ExecutionManager`, kept in their own module by concern:
each function here is bound in the class body of ``manager.py`` (``self`` is the manager).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fsm_exec.boundary.canonical import (
    assume_zone,
    canonical_timestamp,
    timestamp_problem,
)
from fsm_exec.core.errors import (
    COMPONENT,
    ERROR_CODES,
    ComponentError,
    InvalidArgumentError,
    ManagerHaltedError,
    ManagerInterruptedError,
    describe_exception,
    safe_repr,
    shorten,
    type_name,
)
from fsm_exec.observe.health import (
    UNHEALTHY,
)

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def guarded(self: ExecutionManager, step: Callable[..., Any], *args: Any) -> Any:
    """Run ``step``; an interrupt (or an error that is not one of ours) in the middle of
    it may leave memory and journal disagreeing, so it retires the manager."""
    try:
        return step(*args)
    except ComponentError:
        raise
    except BaseException as exc:
        self._retire(exc)
        raise


def retire(self: ExecutionManager, exc: BaseException) -> None:
    """Stopped in the middle of a step: refuse to go on (see :meth:`reopen`)."""
    with self._mutex:
        self._interrupted = describe_exception(exc)
        self._health.note(UNHEALTHY)
    exc.add_note("fsm_exec: the manager stopped in the middle of a step and refuses "
                 "to go on; em.reopen() gives its replacement, recovered from the "
                 "journal.")


def quote(self: ExecutionManager, value: object) -> str:
    """``value`` as a message quotes it: its repr, redacted, then shortened."""
    return shorten(self._redact(safe_repr(value)))


def call_running(self: ExecutionManager) -> bool:
    """True while a venue call this manager abandoned may still execute (the journal
    is not to be taken from it until then: see ``EventLogger.claim``)."""
    f = self._f
    return f is not None and f.call is not None and f.call.abandoned and not f.call.done


def refuse_if_retired(self: ExecutionManager) -> None:
    """Before a collaborator call that trades (a route, a hand-off) with no journal
    write just before it: a retired manager makes none (a crash would not)."""
    if self._interrupted is not None:
        raise self._retired_error()


def retired_error(self: ExecutionManager) -> ManagerInterruptedError:
    return ManagerInterruptedError(
        f"this manager was stopped in the middle of a step ({self._interrupted}), so its "
        "memory may disagree with its journal; it refuses to go on. Replace it with "
        "em.reopen(), which recovers from the journal as a restart would")


def check_usable(self: ExecutionManager, *, recovering: bool = False) -> None:
    if self._interrupted is not None:
        raise self._retired_error()
    if self._closed:
        raise InvalidArgumentError(
            "this manager was closed (close(), or the end of its with block), and its "
            "journal with it; build a new manager to go on")
    if self._needs_recovery and not recovering:
        raise InvalidArgumentError(
            f"the journal in {getattr(self._log, 'log_dir', '?')} holds an earlier run: "
            "call recover() first (it reads the queue, the finished blocks and a halt "
            "from it), or give the manager a new log directory to start afresh")


def time_zone(value: object) -> dt.tzinfo | None:
    """``assume_timezone`` as a tzinfo: ``None``, a ``tzinfo``, or an IANA zone name
    (``'UTC'``, ``'America/New_York'``); anything else is refused."""
    if value is None or isinstance(value, dt.tzinfo):
        return value
    if isinstance(value, str) and value and value.isascii() and value.isprintable():
        try:
            return zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    raise InvalidArgumentError(
        f"assume_timezone: must be None (naive timestamps refused), a tzinfo or an IANA "
        f"time zone name such as 'UTC' or 'America/New_York', got "
        f"{type(value).__name__} {shorten(safe_repr(value))}")


#: Zones that are UTC at every instant: a naive time in one is written with +00:00.
_UTC_ZONES: frozenset[dt.tzinfo] = frozenset({
    dt.UTC, zoneinfo.ZoneInfo("UTC"), zoneinfo.ZoneInfo("Etc/UTC")})
_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def manager_name(name: object, event_logger: object) -> str | None:
    """``name`` as given (1-64 letters, digits and ``._:-``), else the run id of a
    :func:`~fsm_exec.backtest_run` journal, else ``None`` (one unnamed manager)."""
    if name is None:
        run_id = getattr(event_logger, "run_id", None)
        return run_id if isinstance(run_id, str) and _NAME.fullmatch(run_id) else None
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    raise InvalidArgumentError(
        f"name: must be None or 1-64 letters, digits and ._:- (it names this manager among "
        f"others in the process: its health registration, its metrics), got "
        f"{type(name).__name__} {shorten(safe_repr(name))}")


def health_name(name: str | None) -> str:
    """What a manager named ``name`` registers as with a health manager:
    ``ExecutionManager``, or ``ExecutionManager[<name>]``."""
    return COMPONENT if name is None else f"{COMPONENT}[{name}]"


def refuse_if_halted(self: ExecutionManager, call: str, trigger_source: str | None = None
                     ) -> None:
    """In a mode whose policy says so (backtest: fail fast), a halted manager refuses
    ``call`` (with its ``trigger_source``, when given), naming the halt: a halt caught once
    cannot be ignored by calling on. The text is made only when it refuses (every call
    passes here)."""
    if not (self._policy.halt_raises and self._halted):
        return
    if trigger_source is not None:
        call = f"{call}({trigger_source!r})"
    raise ManagerHaltedError(self._halt_reason, halted_message(self, call))


def halted_message(self: ExecutionManager, call: str) -> str:
    reason = self._halt_reason
    entry = ERROR_CODES.get(reason) if isinstance(reason, str) else None
    what = f"{reason} {entry.message}" if entry is not None else self._quote(reason)
    by = next((e["block_id"] for e in reversed(self._recent_errors)
               if e["error_code"] == reason and e["block_id"] is not None), None)
    if by is not None:
        what += f", on block {self._quote(by)}"
    queued = len(self._state.queue)
    return (f"{call} refused: this manager is halted ({what}), and in "
            f"{self._env.execution_mode} mode a halted manager refuses every call until it "
            f"is resumed; {queued} queued block{'s' * (queued != 1)} "
            f"wait{'s' * (queued == 1)}. Settle the positions in doubt, then cancel the "
            "queued blocks computed from them (em.cancel(ts, reason=...)) and resume with "
            "update_state(ts, 'manual')")


def stamp(self: ExecutionManager, timestamp: Any) -> str:
    """The journal's canonical form of a caller's timestamp, or a clear refusal (a naive
    one is read in ``assume_timezone``, when the manager was given one)."""
    stamp = canonical_timestamp(timestamp)
    if stamp is None and self._assume_tz is not None:  # naive times, read in the zone given
        if (self._assume_tz in _UTC_ZONES and isinstance(timestamp, dt.datetime)
                and timestamp.tzinfo is None and timestamp == timestamp):
            # A framework's naive UTC times (one per bar): written as read, in UTC.
            return timestamp.isoformat() + "+00:00"
        stamp = canonical_timestamp(assume_zone(timestamp, self._assume_tz))
    if stamp is None:
        raise InvalidArgumentError(
            f"timestamp: {timestamp_problem(timestamp)}; got {type_name(timestamp)} "
            f"{self._quote(timestamp)}")
    return stamp
