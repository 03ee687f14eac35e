"""Tests for fsm_exec.core.errors: the error code registry and the exception hierarchy."""

from __future__ import annotations

import pickle
import re
from typing import Any

import attrs
import pytest

from fsm_exec import (
    ERROR_CODES,
    BlockProblem,
    ComponentError,
    ConfigError,
    ErrorCode,
    EventLogError,
    IllegalTransitionError,
    InvalidArgumentError,
    InvalidBlockError,
    QueueFullError,
    Severity,
)
from fsm_exec.core.errors import COMPONENT

# --- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        ("EXEC-001", Severity.HIGH),
        ("EXEC-002", Severity.HIGH),
        ("EXEC-003", Severity.MEDIUM),
        ("EXEC-009", Severity.CRITICAL),
    ],
)
def test_registry_severities(code: str, severity: Severity) -> None:
    """The spec's codes are registered with the spec's severities."""
    assert ERROR_CODES[code].severity is severity


def test_registry_has_invalid_batch_code() -> None:
    """EXEC-004 (invalid instruction block batch) is registered."""
    assert "EXEC-004" in ERROR_CODES


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("EXEC-005", ("price",)),
        ("EXEC-009", ("log", "write")),
    ],
)
def test_registry_codes_are_about_their_subject(code: str, words: tuple[str, ...]) -> None:
    """EXEC-005 is price validation; EXEC-009 is an event log write failure."""
    message = ERROR_CODES[code].message.lower()
    assert all(word in message for word in words)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_registry_entry_is_complete(code: str) -> None:
    """Each entry is keyed by its own code, belongs to ExecutionManager and says what to do."""
    entry = ERROR_CODES[code]
    assert isinstance(entry, ErrorCode)
    assert entry.code == code
    assert re.fullmatch(r"EXEC-\d{3}", code)
    assert entry.component == "ExecutionManager"
    assert isinstance(entry.severity, Severity)
    assert entry.message.strip()
    assert entry.resolution.strip()


def test_registry_is_read_only() -> None:
    """Codes cannot be added, replaced or removed, and entries cannot be changed."""
    registry: Any = ERROR_CODES
    entry = ERROR_CODES["EXEC-001"]
    with pytest.raises(TypeError):
        registry["EXEC-999"] = entry
    with pytest.raises(TypeError):
        registry["EXEC-001"] = ERROR_CODES["EXEC-002"]
    with pytest.raises(TypeError):
        del registry["EXEC-001"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        entry.severity = Severity.LOW  # type: ignore[misc]
    assert ERROR_CODES["EXEC-001"].severity is Severity.HIGH


# --- ComponentError -------------------------------------------------------------------------


def test_component_error_stores_its_fields() -> None:
    """The five positional arguments and block_id are kept as attributes."""
    cause = KeyError("x")
    err = ComponentError("EXEC-001", "venue said no", "Router", "LOW", cause, block_id="b-1")
    assert err.error_code == "EXEC-001"
    assert err.message == "venue said no"
    assert err.component == "Router"
    assert err.severity is Severity.LOW
    assert err.original_exception is cause
    assert err.block_id == "b-1"


def test_component_error_defaults() -> None:
    """By default: this component, the registry's severity, no block and no cause."""
    err = ComponentError("EXEC-009", "disk full")
    assert err.component == COMPONENT == "ExecutionManager"
    assert err.severity is ERROR_CODES["EXEC-009"].severity
    assert err.block_id is None
    assert err.original_exception is None


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_component_error_severity_defaults_from_registry(code: str) -> None:
    """With no severity given, each code takes its registered severity."""
    assert ComponentError(code, "m").severity is ERROR_CODES[code].severity


def test_component_error_rejects_unknown_severity() -> None:
    """A severity that is not a Severity value is refused."""
    with pytest.raises(ValueError, match="SEVERE"):
        ComponentError("EXEC-001", "m", severity="SEVERE")


def test_component_error_exposes_resolution() -> None:
    """resolution is the registry's resolution for the code, None for an unregistered code."""
    assert ComponentError("EXEC-002", "m").resolution == ERROR_CODES["EXEC-002"].resolution
    unknown = ComponentError("EXEC-999", "m")
    assert unknown.resolution is None
    assert isinstance(unknown.severity, Severity)


def test_component_error_str_has_code_and_message() -> None:
    """str(error) shows the code and the message."""
    text = str(ComponentError("EXEC-003", "queue is full"))
    assert "EXEC-003" in text
    assert "queue is full" in text


# --- the subclasses -------------------------------------------------------------------------

_PROBLEM = BlockProblem(0, "b-1", "amount", "must be positive")
_INSTANCES: dict[str, tuple[ComponentError, type[Exception], str]] = {
    "InvalidBlockError": (InvalidBlockError([_PROBLEM], 1), ValueError, "EXEC-004"),
    "ConfigError": (ConfigError(["max_queue_size: must be > 0"]), ValueError, "EXEC-010"),
    "InvalidArgumentError": (InvalidArgumentError("ts must be aware"), ValueError, "EXEC-011"),
    "EventLogError": (EventLogError("disk full"), OSError, "EXEC-009"),
    "QueueFullError": (QueueFullError(9, 2, 10), ComponentError, "EXEC-003"),
    "IllegalTransitionError": (IllegalTransitionError("start", "success", None), RuntimeError,
                               "EXEC-012"),
}


@pytest.mark.parametrize(("err", "builtin", "code"), list(_INSTANCES.values()),
                         ids=list(_INSTANCES))
def test_subclass_is_builtin_and_component_error(err: ComponentError, builtin: type[Exception],
                                                 code: str) -> None:
    """Each error is a ComponentError and the builtin it stands for, with its own code."""
    assert isinstance(err, ComponentError)
    assert isinstance(err, builtin)
    assert err.error_code == code
    assert code in ERROR_CODES
    assert err.severity is ERROR_CODES[code].severity
    assert code in str(err)


def test_queue_full_error_is_not_a_value_error() -> None:
    """A full queue is not a bad value: QueueFullError is not a ValueError."""
    assert not isinstance(QueueFullError(1, 1, 1), ValueError)


def test_queue_full_error_fields_and_message() -> None:
    """QueueFullError keeps the numbers and shows them."""
    err = QueueFullError(queue_length=98, batch_size=5, max_queue_size=100)
    assert (err.queue_length, err.batch_size, err.max_queue_size) == (98, 5, 100)
    assert all(n in str(err) for n in ("98", "5", "100"))


def test_queue_full_by_its_bytes_says_how_far_and_what_to_do() -> None:
    """A queue full by its bytes names them, the room and the window that takes the rest;
    a batch larger than the room alone is told it can never be queued."""
    err = QueueFullError(3, 2, 10_000, queue_bytes=900, batch_bytes=200,
                         max_queue_bytes=1_000, duplicate_window=5_000)
    assert (err.queue_bytes, err.batch_bytes, err.max_queue_bytes) == (900, 200, 1_000)
    assert all(n in str(err) for n in ("900 bytes", "200 bytes", "1,000", "5,000"))
    assert "never" not in str(err) and "in flight" not in str(err)
    assert "the queue (3 blocks) from 900 bytes" in str(err)
    assert "and the block in flight" in str(QueueFullError(
        1, 1, 9, queue_bytes=9, batch_bytes=2, max_queue_bytes=10, in_flight=True))
    one = QueueFullError(1, 1, 9, queue_bytes=9, batch_bytes=2, max_queue_bytes=10,
                         duplicate_window=1)
    assert "batch of 1 block refused" in str(one) and "(1 block)" in str(one)
    assert str(one).endswith("window of 1 finished block")
    huge = QueueFullError(0, 1, 10_000, queue_bytes=0, batch_bytes=2_000,
                          max_queue_bytes=1_000)
    assert "can never be queued" in str(huge) and "duplicate_window" not in str(huge)
    assert pickle.loads(pickle.dumps(err)).max_queue_bytes == 1_000
    assert QueueFullError(1, 2, 3).queue_bytes is None


def test_config_error_lists_every_problem() -> None:
    """ConfigError keeps its problems and its message lists each one."""
    problems = ["max_queue_size: must be > 0", "FSM_EXEC_ENV: unknown value 'prod2'"]
    err = ConfigError(problems)
    assert err.problems == tuple(problems)
    assert all(p in str(err) for p in problems)


def test_event_log_error_keeps_its_cause() -> None:
    """EventLogError carries the OS error that caused it."""
    cause = PermissionError(13, "denied")
    err = EventLogError("cannot write events.jsonl", cause)
    assert err.original_exception is cause
    assert "cannot write events.jsonl" in str(err)


# --- BlockProblem and InvalidBlockError -----------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (BlockProblem(2, "b-7", "instructions[0].amount", "must be positive"),
         "block 'b-7' @ $[2].instructions[0].amount: must be positive"),
        (BlockProblem(0, None, "block_id", "required field missing"),
         "block @ $[0].block_id: required field missing"),
        (BlockProblem(3, "b-9", "", "not a mapping"),
         "block 'b-9' @ $[3]: not a mapping"),
        (BlockProblem(1, None, "", "duplicate"),
         "block @ $[1]: duplicate"),
    ],
    ids=["with block_id", "without block_id", "whole block", "whole block, no id"],
)
def test_block_problem_str(problem: BlockProblem, text: str) -> None:
    """A problem reads as: block, its id if known, its path in the batch, and the reason."""
    assert str(problem) == text


def test_invalid_block_error_lists_every_problem() -> None:
    """InvalidBlockError keeps every problem and its message shows each one and the count."""
    problems = [
        BlockProblem(0, "b-1", "amount", "must be positive"),
        BlockProblem(0, "b-1", "token", "unknown token"),
        BlockProblem(4, None, "block_id", "required field missing"),
    ]
    err = InvalidBlockError(problems, batch_size=5)
    assert err.problems == tuple(problems)
    message = str(err)
    assert all(str(p) in message for p in problems)
    assert "3 problems" in message
    assert "5 blocks" in message


def test_invalid_block_error_without_batch_size() -> None:
    """Without a batch size the message still lists the problem, in the singular."""
    err = InvalidBlockError([_PROBLEM], batch_size=None)
    assert str(_PROBLEM) in str(err)
    assert "1 problem:" in str(err)


def test_a_scrubbed_exception_scrubbed_again_is_redacted_again() -> None:
    """ScrubbedException.of on one already scrubbed keeps its type name and passes its
    message through the new redactor (a second config's secrets are removed too)."""
    from fsm_exec import ScrubbedException

    first = ScrubbedException.of(ValueError("token abc and key xyz"),
                                 lambda s: s.replace("abc", "***"))
    again = ScrubbedException.of(first, lambda s: s.replace("xyz", "***"))
    assert again.type_name == first.type_name == "ValueError"
    assert again.message == "token *** and key ***"


def test_scrub_replaces_the_original_exception() -> None:
    """ComponentError.scrub redacts its message and arguments and replaces the original
    exception by a ScrubbedException holding only its redacted text."""
    from fsm_exec import ComponentError, ScrubbedException

    err = ComponentError("EXEC-001", "venue said sk-123",
                         original_exception=RuntimeError("sk-123 refused"))
    err.scrub(lambda s: s.replace("sk-123", "***"))
    assert "sk-123" not in err.message and "sk-123" not in str(err.args)
    assert isinstance(err.original_exception, ScrubbedException)
    assert err.original_exception.message == "*** refused"


def test_qualified_name_is_the_types_and_never_raises() -> None:
    """``module.QualName`` of a value's type (a builtin's bare); a type whose module or
    name is no text, or raises when read, is named as type_name names it."""
    from fsm_exec.core.errors import qualified_name

    class Odd:
        __module__ = 7  # type: ignore[assignment]

    class Raising(type):
        @property
        def __module__(cls) -> str:  # type: ignore[override]
            raise RuntimeError("gone")

    class Hidden(metaclass=Raising):
        pass

    assert qualified_name(ValueError("x")) == "ValueError"
    assert qualified_name(QueueFullError(1, 1, 1)) == "fsm_exec.core.errors.QueueFullError"
    assert qualified_name(Odd()) == "Odd" and qualified_name(Hidden()) == "Hidden"
