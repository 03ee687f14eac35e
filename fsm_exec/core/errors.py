"""Structured errors: one base exception with codes, and the registry of ``EXEC-NNN`` codes."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from fsm_exec.core.text import terminal_text

COMPONENT = "ExecutionManager"


class Severity(enum.StrEnum):
    """How bad an error is, and what the health system does about it."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


@attrs.frozen
class ErrorCode:
    """One entry of the error code registry."""

    code: str
    component: str
    severity: Severity
    message: str
    resolution: str


#: The runbook: a page of the documentation, named by its path in the source tree (on the built
#: site it is ``runbook/``). It has one entry per code; every link into it is built here.
RUNBOOK_PAGE = "docs/runbook.md"


def runbook_link(topic: str) -> str:
    """The link to a runbook entry: a code (``EXEC-008``), ``in-doubt``, ``stuck`` or
    ``when-the-manager-halts``."""
    return f"{RUNBOOK_PAGE}#{topic.lower()}"


def _registry(*codes: ErrorCode) -> Mapping[str, ErrorCode]:
    # Each resolution ends with the link to the code's runbook entry.
    return MappingProxyType({c.code: attrs.evolve(
        c, resolution=f"{c.resolution} Runbook: {runbook_link(c.code)}.") for c in codes})


_C, _S = COMPONENT, Severity

#: Every error code this component raises, keyed by code.
ERROR_CODES: Mapping[str, ErrorCode] = _registry(
    ErrorCode("EXEC-001", _C, _S.HIGH, "Instruction block execution failed",
              "Live: retried with exponential backoff under the same block_id; after the last "
              "attempt the block is failed and the next one starts. Backtest: fails fast; the "
              "next update_state resumes the queue. Check the venue and the instructions."),
    ErrorCode("EXEC-002", _C, _S.HIGH, "Reconciliation failed or timed out",
              "The block is failed and the manager halts: positions are in doubt. Reconcile "
              "positions by hand, then cancel the queued blocks computed from them, or resume "
              "with update_state(ts, 'manual')."),
    ErrorCode("EXEC-003", _C, _S.MEDIUM, "Execution queue overflow",
              "The batch was refused whole and nothing was queued; queued work goes on. "
              "Submit the batch again once the queue has drained, or raise max_queue_size (a "
              "queue full by its bytes, which a journal checkpoint must hold: a smaller "
              "duplicate_window leaves it more)."),
    ErrorCode("EXEC-004", _C, _S.MEDIUM, "Invalid instruction block batch",
              "The batch was refused whole and the queue is unchanged. Fix every listed "
              "block and field, then submit the batch again."),
    ErrorCode("EXEC-005", _C, _S.HIGH, "Price validation failed",
              "The block was failed before routing: an instruction names a token without a "
              "finite positive price in the market data. Check the data provider."),
    ErrorCode("EXEC-006", _C, _S.MEDIUM, "Pre-trade risk check failed",
              "The block was failed before routing, as the named risk check asked."),
    ErrorCode("EXEC-007", _C, _S.CRITICAL, "Execution outcome unknown",
              "A venue call did not return and could not be resolved; the block is failed and "
              "the manager halts. Ask the venue whether the block executed, fix positions, "
              "then cancel the queued blocks or resume with update_state(ts, 'manual')."),
    ErrorCode("EXEC-008", _C, _S.CRITICAL, "Position update failed",
              "The venue executed but the position handler refused the deltas; the block is "
              "failed and the manager halts. Apply the logged deltas by hand, then cancel the "
              "queued blocks or resume with update_state(ts, 'manual')."),
    ErrorCode("EXEC-009", _C, _S.CRITICAL, "Event log write failed",
              "The manager halted before acting on an unrecorded step; nothing accepted is "
              "lost. Fix the log destination (disk, permissions), then resume with "
              "update_state(ts, 'manual')."),
    ErrorCode("EXEC-010", _C, _S.HIGH, "Invalid configuration",
              "Fix the named config field or environment variable."),
    ErrorCode("EXEC-011", _C, _S.MEDIUM, "Invalid call",
              "Fix the named argument, or do not call update_state from inside a "
              "collaborator (execute_instruction_blocks may be called from one)."),
    ErrorCode("EXEC-012", _C, _S.CRITICAL, "Illegal lifecycle transition",
              "A bug: a trigger was fired from a state that has no edge for it. The state "
              "is unchanged; report it with the event log."),
    ErrorCode("EXEC-013", _C, _S.CRITICAL, "Journal unreadable",
              "A journal line is not a valid record, or the records break the lifecycle; "
              "recovery is refused. The error names the file and line: restore the file "
              "from a copy, or reconcile positions by hand and start a new journal."),
    ErrorCode("EXEC-014", _C, _S.CRITICAL, "Reconciliation component failed",
              "Reading the reconciliation component's status raised, or gave a value that is "
              "none of pending, success and failed (the error names it); the venue executed "
              "and the deltas were handed off, but whether positions reconcile is unknown. "
              "The block is failed and the manager halts. Fix the reconciliation component, "
              "check positions, then cancel the queued blocks or resume with "
              "update_state(ts, 'manual')."),
    ErrorCode("EXEC-015", _C, _S.CRITICAL, "Venue reply cannot be recorded",
              "The venue executed, but its reply holds a value with no faithful journal form "
              "or a number that is NaN or an infinity (no quantity: the error names the "
              "value's path), or query_execution answered something "
              "that is neither deltas nor None (the error names it: whether the venue "
              "executed is unknown); the deltas never reached the position handler. The "
              "block is failed and the manager halts. Ask the venue for the fill and apply "
              "it by hand, fix the adapter to return plain data (None when nothing "
              "executed), then cancel the queued blocks or resume with "
              "update_state(ts, 'manual')."),
    ErrorCode("EXEC-016", _C, _S.LOW, "Observer failed",
              "An observer (metrics, tracing) raised; what the manager does is unchanged and "
              "the journal is complete. Fix the observer."),
    ErrorCode("EXEC-017", _C, _S.CRITICAL, "Manager interrupted",
              "An interrupt (KeyboardInterrupt, SystemExit) or an unexpected error stopped the "
              "manager in the middle of a step, so its memory may disagree with its journal; "
              "it refuses to go on. Replace it with em.reopen(), which recovers from the "
              "journal exactly as a restart would."),
    ErrorCode("EXEC-018", _C, _S.CRITICAL, "Journal in use",
              "Another EventLogger (in this process or another, named by its pid) holds the "
              "log directory; two writers would run the same queue twice. Stop the other "
              "process, or use another directory. A crashed holder's lock is released by "
              "the operating system: no cleanup is needed."),
    ErrorCode("EXEC-019", _C, _S.HIGH, "Invalid lifecycle",
              "A lifecycle (a file, or one built in Python) breaks a safety rule or is not "
              "the file format's shape; nothing was defined. The error names each broken "
              "rule and the state or transition; fsm-exec lifecycle check FILE lists them. "
              "Fix the lifecycle."),
    ErrorCode("EXEC-020", _C, _S.HIGH, "Lifecycle guard or hook failed",
              "A user lifecycle's guard could not be evaluated (a notional guard over a block "
              "without amount or price, a call guard that raised) or a hook raised, in a state "
              "before the route: the block failed, nothing was sent to a venue. The message "
              "names the guard or hook. (In a state in flight or settling the same failure "
              "leaves the block in doubt: EXEC-007, and the manager halts.) Fix the guard, the "
              "hook or the block, and submit it again under a new block_id."),
)


def type_name(value: object) -> str:
    """The name of ``value``'s type, or ``"?"`` when reading it raises (a metaclass's
    ``__name__``): a collaborator's class is named in errors, and never escapes from one."""
    try:
        name = type(value).__name__
    except Exception:
        return "?"
    return str.__str__(name) if isinstance(name, str) else "?"


def qualified_name(value: object) -> str:
    """``module.QualName`` of ``value``'s type (just ``QualName`` for a builtin), or as
    much of it as reading does not raise (a metaclass's property): else
    :func:`type_name`."""
    kind = type(value)
    try:
        module, name = kind.__module__, kind.__qualname__
    except Exception:
        return type_name(value)
    if not isinstance(module, str) or not isinstance(name, str):
        return type_name(value)
    module, name = str.__str__(module), str.__str__(name)
    return name if module == "builtins" else f"{module}.{name}"


def name_of(value: object) -> str:
    """``value.__name__`` as text (a function's, a class's), else its type's name (see
    :func:`type_name`), never raising (a property or a proxy that raises)."""
    try:
        name = getattr(value, "__name__", _NAMELESS)
    except Exception:
        name = _NAMELESS
    return type_name(value) if name is _NAMELESS else safe_str(name)


_NAMELESS = object()


def safe_str(value: object) -> str:
    """``str(value)``, or a description by type when ``__str__`` itself raises."""
    try:
        return str(value)
    except Exception as exc:  # a hostile or broken __str__ never escapes
        return f"<{type_name(value)}: str() raised {type_name(exc)}>"


def safe_repr(value: object) -> str:
    """``repr(value)``, or a description by type when ``__repr__`` itself raises."""
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type_name(value)}: repr() raised {type_name(exc)}>"


def describe_exception(exc: BaseException) -> str:
    """``TypeName: message`` for an exception, built safely (never raises), on one line
    with its control characters shown (``\\x1b``, ``\\n``): a collaborator's message goes
    into errors, the journal and the operational log, and is printed from there."""
    text, name = terminal_text(safe_str(exc)), terminal_text(type_name(exc))
    return f"{name}: {text}" if text else name


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters (run redaction first: never cut a secret)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ScrubbedException(Exception):
    """Stands for a collaborator's exception in a :class:`ComponentError`: its type and its
    message with every config secret redacted. The original object is not kept, so neither
    pickling nor printing the error can carry what the collaborator put in it."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message

    @classmethod
    def of(cls, exc: BaseException, redact: Callable[[str], str]) -> ScrubbedException:
        if isinstance(exc, ScrubbedException):
            return cls(exc.type_name, redact(exc.message))
        # Shown, not sent (escaped first: the redactor knows a secret's escaped forms too).
        return cls(terminal_text(qualified_name(exc)), redact(terminal_text(safe_str(exc))))

    def __repr__(self) -> str:
        return f"ScrubbedException({self.type_name!r}, {self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.type_name, self.message)


class ComponentError(Exception):
    """Base of every error this package raises about its work.

    Carries the registry ``error_code``, the ``component``, the ``severity``, the ``block_id``
    concerned (if any) and the ``original_exception`` (if any).
    """

    def __init__(self, error_code: str, message: str, component: str = COMPONENT,
                 severity: str | None = None, original_exception: BaseException | None = None,
                 *, block_id: str | None = None) -> None:
        entry = ERROR_CODES.get(error_code)
        if severity is None:
            severity = entry.severity if entry is not None else Severity.HIGH
        self.error_code = error_code
        self.message = message
        self.component = component
        self.severity = Severity(severity)
        self.block_id = block_id
        self.original_exception = original_exception
        super().__init__(f"[{error_code}] {message}")

    @property
    def resolution(self) -> str | None:
        """What to do about it, from the registry."""
        entry = ERROR_CODES.get(self.error_code)
        return entry.resolution if entry is not None else None

    def scrub(self, redact: Callable[[str], str]) -> None:
        """Pass the message through ``redact`` and replace ``original_exception`` with a
        :class:`ScrubbedException` (used to keep secrets out of it)."""
        self.message = redact(self.message)
        self.args = tuple(redact(a) if isinstance(a, str) else a for a in self.args)
        if self.original_exception is not None:
            self.original_exception = ScrubbedException.of(self.original_exception, redact)

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other constructor arguments; rebuild from the fields, so errors
        # survive a process boundary (parameter sweeps run backtests in worker processes).
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[ComponentError], args: tuple[Any, ...],
             state: dict[str, Any]) -> ComponentError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigError(ComponentError, ValueError):
    """A config field or environment variable is missing, mistyped or out of range."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("EXEC-010", "invalid configuration: " + "; ".join(problems))


class InvalidArgumentError(ComponentError, ValueError):
    """A call was given an argument outside its contract."""

    def __init__(self, message: str) -> None:
        super().__init__("EXEC-011", message)


class ReentrantCallError(ComponentError, RuntimeError):
    """``update_state`` was called while it was already running (from a collaborator)."""

    def __init__(self, message: str) -> None:
        super().__init__("EXEC-011", message)


@attrs.frozen
class BlockProblem:
    """One problem with one block of a refused batch."""

    index: int
    block_id: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        who = f"block {self.block_id!r} " if self.block_id is not None else "block "
        return f"{who}@ $[{self.index}]{'.' if self.field else ''}{self.field}: {self.reason}"


class InvalidBlockError(ComponentError, ValueError):
    """A batch was refused: it lists every bad block, field and reason. Nothing was queued."""

    def __init__(self, problems: list[BlockProblem], batch_size: int | None) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        size = "" if batch_size is None else f" of {batch_size} block{'s' * (batch_size != 1)}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            "EXEC-004",
            f"batch{size} refused, nothing queued; {n} problem{'s' * (n != 1)}:\n{lines}")


class AlreadyAcceptedError(InvalidBlockError):
    """A batch submitted again that was accepted before: every block id is taken (queued,
    in flight or finished inside the duplicate window) and every block has the same content
    as the block of its id (queued, in flight, or finished). The call did nothing (no block
    settled, nothing routed); call ``update_state`` without the batch to go on.

    A subclass of :class:`InvalidBlockError`, so callers that catch that still catch it;
    a conflicting duplicate (an id taken by a block with other content, finished blocks
    included: each keeps a digest of its content) stays a plain :class:`InvalidBlockError`.
    A block finished under a journal written before digests were kept is compared by id
    alone."""

    def __init__(self, block_ids: tuple[str, ...], where: tuple[str, ...]) -> None:
        """``where``: each block's state now (``queued``, ``routing``, ..., ``success``)."""
        self.block_ids = block_ids
        super().__init__([BlockProblem(i, b, "block_id", f"already accepted before ({how}); "
                                       "nothing was done by this call")
                          for i, (b, how) in enumerate(zip(block_ids, where, strict=True))],
                         len(block_ids))


class QueueFullError(ComponentError):
    """A batch would take the queue past ``max_queue_size`` blocks, or its blocks (with the
    block in flight) past the bytes a journal checkpoint holds for them; it was refused
    whole. For the latter, ``queue_bytes`` (the blocks held), ``batch_bytes`` and
    ``max_queue_bytes`` say how far, as a checkpoint counts them (else ``None``), beside a
    ``duplicate_window`` of that many finished blocks, ``in_flight`` whether a block was."""

    def __init__(self, queue_length: int, batch_size: int, max_queue_size: int, *,
                 queue_bytes: int | None = None, batch_bytes: int | None = None,
                 max_queue_bytes: int | None = None, duplicate_window: int | None = None,
                 in_flight: bool = False) -> None:
        self.queue_length, self.batch_size, self.max_queue_size = (
            queue_length, batch_size, max_queue_size)
        self.queue_bytes, self.batch_bytes, self.max_queue_bytes = (
            queue_bytes, batch_bytes, max_queue_bytes)
        self.duplicate_window, self.in_flight = duplicate_window, in_flight
        batch = f"batch of {batch_size} block{'' if batch_size == 1 else 's'} refused"
        if queue_bytes is None or batch_bytes is None or max_queue_bytes is None:
            super().__init__(
                "EXEC-003", f"{batch}, nothing queued: the queue holds "
                            f"{queue_length} of at most {max_queue_size}")
            return
        beside = ("" if duplicate_window is None else
                  f" beside a full duplicate_window of {duplicate_window:,} finished "
                  f"block{'' if duplicate_window == 1 else 's'}")
        held = (f"the queue ({queue_length} block{'' if queue_length == 1 else 's'})"
                + (" and the block in flight" if in_flight else ""))
        why = (f"its {batch_bytes:,} bytes alone are more than the {max_queue_bytes:,} a "
               f"journal checkpoint holds for queued blocks{beside}, so it can never be "
               "queued: send fewer or smaller blocks at a time"
               if batch_bytes > max_queue_bytes else
               f"its {batch_bytes:,} bytes would take {held} from {queue_bytes:,} bytes "
               f"past the {max_queue_bytes:,} a journal checkpoint holds for them{beside}")
        super().__init__("EXEC-003", f"{batch}, nothing queued: {why}")


class EventLogError(ComponentError, OSError):
    """The event log could not record an event; the manager halts before acting further."""

    def __init__(self, message: str, original_exception: BaseException | None = None) -> None:
        super().__init__("EXEC-009", message, original_exception=original_exception)


class ManagerInterruptedError(ComponentError, RuntimeError):
    """The manager was stopped mid-step (an interrupt, or an unexpected error); it refuses
    to go on. ``ExecutionManager.reopen()`` gives its replacement, recovered from the
    journal."""

    def __init__(self, message: str) -> None:
        super().__init__("EXEC-017", message)


class ManagerHaltedError(ComponentError, RuntimeError):
    """A call on a halted manager in a mode that fails fast (backtest): the halt cannot be
    caught once and ignored. ``error_code`` is the halt's own code (``EXEC-008`` ...) when it
    is one; ``halt_reason`` is the halt's reason as the status reports it."""

    def __init__(self, halt_reason: str | None, message: str) -> None:
        self.halt_reason = halt_reason
        code = halt_reason if isinstance(halt_reason, str) and halt_reason in ERROR_CODES \
            else "EXEC-011"
        super().__init__(code, message)


class LifecycleChangedError(InvalidArgumentError):
    """Recovery refused (``EXEC-011``, nothing changed): the journal was written under
    another lifecycle than the manager runs, and no mapping of its states was given to
    ``recover(state_map=...)`` (or the mapping cannot be used: the message names the block
    and why)."""


class LifecycleCallError(ComponentError, RuntimeError):
    """A user lifecycle's guard or hook raised (or could not be evaluated) while a block
    moved, or a hook cannot be imported. The driver fails the block (``EXEC-020``); in a
    state in flight or settling the block's outcome is in doubt and the manager halts
    (``EXEC-007``)."""

    def __init__(self, what: str, state: str, block_id: str | None,
                 exc: BaseException | None = None) -> None:
        self.what, self.state = what, state
        super().__init__("EXEC-020", f"{what} (block {block_id!r} in state {state!r})",
                         original_exception=exc if isinstance(exc, Exception) else None,
                         block_id=block_id)
