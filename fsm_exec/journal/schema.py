"""What each record the manager writes may hold: its schema, checked on every read.

Every record has an envelope (``seq``, ``timestamp``, ``event_type``, ``component``,
``data``). The :class:`~fsm_exec.ExecutionManager`'s records also have a schema per kind:
each field's type (an ``attempt`` is an integer, never ``"2"``), its range (counts are
non-negative and fit 63 bits, an attempt is at most :data:`MAX_ATTEMPT`), block ids match
:data:`BLOCK_ID` (what the manager accepts), texts are bounded. Fields a kind does not name
are let through (the codec has checked their tags and nesting), so journals of earlier
releases, which wrote fewer fields, still read. The schema is attrs classes structured by
cattrs; a failure names the field's path (``$.data.flight.attempt``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NewType

import attrs
import cattrs

from fsm_exec.boundary.blocks import BLOCK_FIELDS, check_block
from fsm_exec.boundary.timestamps import journal_time
from fsm_exec.core.limits import MAX_NAME, MAX_TEXT
from fsm_exec.journal.codec import CHECKPOINT, decode

#: The block ids the manager writes.
BLOCK_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: The highest attempt number a record may hold (``max_retries`` is at most 10).
MAX_ATTEMPT = 10_000
_MAX_COUNT = (1 << 63) - 1
_MAX_TEXT = MAX_TEXT  # an error message, a reason: the writer's bound too (core.limits)
_MAX_NAME = MAX_NAME  # a state, a trigger, a code, a source

BlockId = NewType("BlockId", str)
Count = NewType("Count", int)
Attempt = NewType("Attempt", int)
Name = NewType("Name", str)
Text = NewType("Text", str)
Number = NewType("Number", float)
Flag = NewType("Flag", bool)
Stamp = NewType("Stamp", str)  # a time (boundary.timestamps.journal_time: no offset is UTC)


class SchemaProblem(ValueError):
    """A field that is not what the writer writes (the message says what it should be)."""


def _shown(v: Any) -> str:
    if v is None or type(v) in (bool, int, float):
        text = repr(v)
        return text if len(text) <= 40 else text[:37] + "..."
    if type(v) is str:
        return repr(v[:32]) + ("..." if len(v) > 32 else "")
    return f"a {type(v).__name__}"


def _text(limit: int) -> Callable[[Any, Any], str]:
    def hook(v: Any, _: Any) -> str:
        if type(v) is not str:
            raise SchemaProblem(f"must be text, got {_shown(v)}")
        if len(v) > limit:
            raise SchemaProblem(f"must be at most {limit} characters, got {len(v)}")
        return v
    return hook


def _int(low: int, high: int) -> Callable[[Any, Any], int]:
    def hook(v: Any, _: Any) -> int:
        if type(v) is not int:
            raise SchemaProblem(f"must be an integer, got {_shown(v)}")
        if not low <= v <= high:
            raise SchemaProblem(f"must be from {low} to {high}, got {_shown(v)}")
        return v
    return hook


def _block_id(v: Any, _: Any) -> str:
    if type(v) is not str or not BLOCK_ID.fullmatch(v):
        raise SchemaProblem(f"must be a block id ({BLOCK_ID.pattern}), got {_shown(v)}")
    return v


def _number(v: Any, _: Any) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise SchemaProblem(f"must be a finite number, got {_shown(v)}")
    return float(v)


_NO_STAMP = "must be an ISO 8601 time, as the manager writes it, got {}"


def _stamp(v: Any, _: Any) -> str:
    if journal_time(v) is None:  # recovery counts waits from it
        raise SchemaProblem(_NO_STAMP.format(_shown(v)))
    return str(v)


def _flag(v: Any, _: Any) -> bool:
    if type(v) is not bool:
        raise SchemaProblem(f"must be true or false, got {_shown(v)}")
    return bool(v)


_converter = cattrs.Converter(forbid_extra_keys=False)
for _type, _hook in ((BlockId, _block_id), (Count, _int(0, _MAX_COUNT)),
                     (Attempt, _int(0, MAX_ATTEMPT)), (Name, _text(_MAX_NAME)),
                     (Text, _text(_MAX_TEXT)), (Number, _number), (Flag, _flag),
                     (Stamp, _stamp)):
    _converter.register_structure_hook(_type, _hook)


def _list(v: Any, _: Any) -> list[Any]:
    if type(v) is not list:
        raise SchemaProblem(f"must be a list, got {_shown(v)}")
    return list(v)


def _dict(v: Any, _: Any) -> dict[str, Any]:
    if type(v) is not dict:
        raise SchemaProblem(f"must be an object, got {_shown(v)}")
    return dict(v)


_converter.register_structure_hook_func(lambda t: t == list[Any], _list)
_converter.register_structure_hook_func(lambda t: t == dict[str, Any], _dict)
_converter.register_structure_hook_func(lambda t: t is Any, lambda v, _: v)


# ------------------------------------------------------------------------ the kinds

#: A field a record may leave out (records of tests and earlier releases hold fewer); when
#: there, it is checked (``null`` only where the type says ``| None``).
_ABSENT: Any = None


@attrs.frozen
class Block:
    block_id: BlockId = _ABSENT
    action: Text = _ABSENT
    priority: Any = _ABSENT
    instructions: list[Any] = _ABSENT


@attrs.frozen
class BlockAccepted(Block):
    batch_index: Count = _ABSENT
    batch_size: Count = _ABSENT


@attrs.frozen
class BlockTransition:
    # What every reader of a move needs: required (a move without them is corrupt).
    block_id: BlockId
    source: Name
    dest: Name
    trigger: Name
    attempt: Attempt = _ABSENT
    reason: Text | None = _ABSENT
    batch_index: Count = _ABSENT
    batch_size: Count = _ABSENT


@attrs.frozen
class OfABlock:
    """positions_updated, execution_unresolved, reconciliation_timeout, execution_query."""

    block_id: BlockId
    attempt: Attempt = _ABSENT


@attrs.frozen
class BlockFailed:
    block_id: BlockId = _ABSENT
    error_code: Name = _ABSENT
    attempts: Attempt = _ABSENT


@attrs.frozen
class Error:
    error_code: Name = _ABSENT
    error_message: Text | None = _ABSENT
    error_severity: Name | None = _ABSENT
    block_id: BlockId | None = _ABSENT
    exception_type: Name | None = _ABSENT


@attrs.frozen
class Halted:
    reason: Text | None = _ABSENT
    block_id: BlockId | None = _ABSENT


@attrs.frozen
class StateUpdate:
    trigger_source: Name | None = _ABSENT
    current_block_index: Count = _ABSENT
    blocks_executed: Count = _ABSENT
    blocks_failed: Count = _ABSENT
    queue_length: Count = _ABSENT
    halted: Flag = _ABSENT
    processing_time_ms: Number = _ABSENT
    calls: Count = _ABSENT  # a run of calls that changed nothing (journal/idle.py)
    first_timestamp: Stamp = _ABSENT


@attrs.frozen
class Counters:
    accepted: Count = _ABSENT
    executed: Count = _ABSENT
    failed: Count = _ABSENT
    cancelled: Count = _ABSENT
    retried: Count = _ABSENT
    starts: Count = _ABSENT


@attrs.frozen
class InFlight:
    block: Block = _ABSENT
    state: Name = _ABSENT
    attempt: Attempt = _ABSENT
    deltas: Any = _ABSENT
    handed_off: Flag = _ABSENT
    why: Text = _ABSENT
    entered: Stamp = _ABSENT  # when it entered its state (its move's record; since lifecycles)


@attrs.frozen
class Checkpoint:
    format: Count = _ABSENT
    lifecycle: Name = _ABSENT
    duplicate_window: Count = _ABSENT
    counters: Counters = _ABSENT
    halted: Flag = _ABSENT
    halt_reason: Text | None = _ABSENT
    queue: list[Block] = _ABSENT
    flight: InFlight | None = _ABSENT
    finished: list[tuple[BlockId, Name]] = _ABSENT
    finished_digests: dict[BlockId, Name] = _ABSENT
    written_on: Name | None = _ABSENT
    execution_mode: Name | None = _ABSENT  # since issue 25; absent in older journals
    wall_clock: Stamp | None = _ABSENT  # since issue 25
    clock: Name | None = _ABSENT  # "wall": the timestamp is the wall clock (since issue 25)


@attrs.frozen
class OperatorAction:
    """An operator's tool acted on the journal (``fsm-exec cancel``): not a start."""

    action: Name = _ABSENT
    tool: Name = _ABSENT
    user: Text | None = _ABSENT
    sudo_user: Text | None = _ABSENT
    wall_clock: Name | None = _ABSENT


@attrs.frozen
class Recovered:
    queued: Count | None = _ABSENT
    in_doubt: BlockId | None = _ABSENT
    in_doubt_state: Name | None = _ABSENT
    blocks_executed: Count | None = _ABSENT
    blocks_failed: Count | None = _ABSENT
    blocks_cancelled: Count | None = _ABSENT
    dropped: Count | None = _ABSENT
    from_seq: Count | None = _ABSENT
    wall_clock: Name | None = _ABSENT
    clock: Name | None = _ABSENT


#: The manager's record kinds with a schema; other kinds are checked by the envelope only.
KINDS: dict[str, type] = {
    "block_accepted": BlockAccepted, "block_transition": BlockTransition,
    "positions_updated": OfABlock, "execution_unresolved": OfABlock,
    "reconciliation_timeout": OfABlock, "execution_query": OfABlock,
    "block_failed": BlockFailed, "error": Error, "manager_halted": Halted,
    "state_update": StateUpdate, "checkpoint": Checkpoint, "recovered": Recovered,
    "operator_action": OperatorAction,
}

#: The component whose records have a schema per kind.
MANAGER = "ExecutionManager"


@attrs.frozen
class Envelope:
    seq: Count
    timestamp: Name  # a time the readers parse (parse_timestamp) or show as it is
    event_type: Name
    component: Name
    data: dict[str, Any]


def _format(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, SchemaProblem):
        return str(exc)
    if isinstance(exc, KeyError):
        return "missing"
    return f"must be a {getattr(_type, '__name__', _type)}"


def _problem(exc: Exception, path: str) -> str:
    problems = cattrs.transform_error(exc, path=path, format_exception=_format)
    return problems[0] if problems else f"{path}: {exc}"


#: The manager's record timestamp :func:`check_record` last found to be a time (one string
#: compare for the records of a call, which share it; a race between threads only checks
#: one again).
_good_stamp = ""


def check_record(obj: dict[str, Any]) -> str | None:
    """Why the decoded line ``obj`` is not a record the writer writes (``field: what``),
    or ``None`` when it is one."""
    try:
        _converter.structure(obj, Envelope)
    except Exception as exc:  # cattrs' grouped errors: one line names the first
        return _problem(exc, "$")
    if obj["component"] != MANAGER:
        return None  # another component's records: its own business
    global _good_stamp  # the last one found good: the records of a call share it
    stamp = obj["timestamp"]
    if stamp != _good_stamp:
        if journal_time(stamp) is None:  # waits count from it
            return _NO_STAMP.format(_shown(stamp)) + " @ $.timestamp"
        _good_stamp = stamp
    kind = KINDS.get(obj["event_type"])
    if kind is None:
        return None
    try:
        _converter.structure(obj["data"], kind)
    except Exception as exc:  # as above
        return _problem(exc, "$.data")
    return _blocks_problem(obj["event_type"], obj["data"])


def _blocks_problem(kind: str, data: dict[str, Any]) -> str | None:
    """The first block of a ``block_accepted`` or ``checkpoint`` record that the boundary's
    own rules (:func:`~fsm_exec.boundary.blocks.check_block`, the function the manager
    accepts blocks by) refuse: a NaN amount, a priority that is no integer, control
    characters in an action, empty instructions; ``reason @ path``, or ``None``."""
    if kind == "block_accepted":
        where: list[tuple[str, Any]] = [("$.data", data)]
    elif kind == CHECKPOINT:
        queue = data.get("queue") or ()
        where = [(f"$.data.queue[{i}]", b) for i, b in enumerate(queue)]
        flight = data.get("flight")
        if isinstance(flight, dict) and "block" in flight:
            where.append(("$.data.flight.block", flight["block"]))
    else:
        return None
    for path, d in where:
        if type(d) is not dict:
            return f"must be an object (a block), got {_shown(d)} @ {path}"
        item = {k: d[k] for k in BLOCK_FIELDS if k in d}  # the record's own fields aside
        if "priority" in item:
            item["priority"] = decode(item["priority"])  # beyond 64 bits: {"__int__": ..}
            if isinstance(item["priority"], Decimal):  # as journals before 2026-12 wrote it
                item["priority"] = int(item["priority"])
        if "instructions" in item:
            item["instructions"] = decode(item["instructions"])
        for field, reason in check_block(item):
            if reason != "required field is missing":  # absent: let through, as above
                return f"{reason} @ {path}" + (f".{field}" if field else "")
    return None
