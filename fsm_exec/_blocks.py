"""Instruction blocks and the validation of a submitted batch."""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
from decimal import Decimal
from typing import Any

import attrs

from ._errors import BlockProblem, InvalidBlockError

BLOCK_FIELDS: tuple[str, ...] = ("block_id", "action", "priority", "instructions")
_BLOCK_FIELD_SET = frozenset(BLOCK_FIELDS)
_BLOCK_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@attrs.frozen(slots=True)
class InstructionBlock:
    """One validated instruction block, as the manager queues it and hands it to the venue.

    ``instructions`` is a tuple of the instruction mappings, copied at acceptance so that a
    caller changing its own dicts afterwards does not change what is executed.
    """

    block_id: str
    action: str
    priority: int
    instructions: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        """The block as plain, JSON-ready data (instructions as a list of dicts)."""
        return {"block_id": self.block_id, "action": self.action, "priority": self.priority,
                "instructions": [dict(i) for i in self.instructions]}


def _short(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _got(v: object) -> str:
    return f"got {type(v).__name__} {_short(v)}"


def is_amount_key(key: object) -> bool:
    """Keys whose values must be finite numbers: ``amount`` and ``*_amount``."""
    return isinstance(key, str) and (key == "amount" or key.endswith("_amount"))


def _is_finite_number(v: object) -> bool:
    t = type(v)
    if t is float:
        return math.isfinite(v)  # type: ignore[arg-type]
    if t is int:
        return True
    if isinstance(v, bool):
        return False
    if isinstance(v, Decimal):
        return v.is_finite()
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _check_instruction(instr: object, path: str, out: list[tuple[str, str]]) -> None:
    if not isinstance(instr, Mapping):
        out.append((path, f"must be a mapping, {_got(instr)}"))
        return
    for key, value in instr.items():
        if not isinstance(key, str):
            out.append((path, f"keys must be strings, got {type(key).__name__} {_short(key)}"))
        elif is_amount_key(key):
            if not _is_finite_number(value):
                out.append((f"{path}.{key}", f"must be a finite number, {_got(value)}"))
        elif key == "token" and not (isinstance(value, str) and value):
            out.append((f"{path}.token", f"must be a non-empty string, {_got(value)}"))


def check_block(item: object) -> list[tuple[str, str]]:
    """Every ``(field path, reason)`` problem with one submitted block."""
    if isinstance(item, InstructionBlock):
        item = attrs.asdict(item, recurse=False)  # as given: to_dict() would coerce or crash
    if not isinstance(item, Mapping):
        return [("", f"a block must be a mapping, {_got(item)}")]
    out: list[tuple[str, str]] = []
    for name in BLOCK_FIELDS:
        if name not in item:
            out.append((name, "required field is missing"))
    for name in item:
        if name not in _BLOCK_FIELD_SET:
            out.append((str(name), "unexpected field (a block has block_id, action, "
                                   "priority, instructions)"))
    if "block_id" in item:
        v = item["block_id"]
        if not isinstance(v, str):
            out.append(("block_id", f"must be a string, {_got(v)}"))
        elif _BLOCK_ID.fullmatch(v) is None:
            out.append(("block_id", "must be 1-64 characters of letters, digits and ._:- "
                                    f"got {_short(v)}"))
    if "action" in item:
        v = item["action"]
        if not isinstance(v, str) or not v.strip():
            out.append(("action", f"must be a non-empty string, {_got(v)}"))
    if "priority" in item:
        v = item["priority"]
        if isinstance(v, bool) or not isinstance(v, int):
            out.append(("priority", f"must be an int, {_got(v)}"))
    if "instructions" in item:
        v = item["instructions"]
        if not isinstance(v, list | tuple):
            out.append(("instructions", f"must be a non-empty list of mappings, {_got(v)}"))
        elif not v:
            out.append(("instructions", "must be a non-empty list of mappings, got an empty "
                                        f"{type(v).__name__}"))
        else:
            for i, instr in enumerate(v):
                _check_instruction(instr, f"instructions[{i}]", out)
    return out


def validate_batch(batch: object, taken: Container[str]) -> list[InstructionBlock]:
    """Validate a whole batch; return its blocks, or raise listing every problem at once.

    ``taken`` holds the ``block_id``s that may not be used again (queued, in flight, or
    recently finished). The batch is refused whole if any block is bad.
    """
    if not isinstance(batch, list | tuple):
        raise InvalidBlockError(
            [BlockProblem(0, None, "", f"the batch must be a list of mappings, {_got(batch)}")],
            None)
    problems: list[BlockProblem] = []
    blocks: list[InstructionBlock] = []
    seen: set[str] = set()
    for index, item in enumerate(batch):
        if not problems:
            fast = _plain_valid_block(item)
            if fast is not None and fast.block_id not in seen and fast.block_id not in taken:
                seen.add(fast.block_id)
                blocks.append(fast)
                continue
        # The careful path: every problem, with its field, for the error.
        found = check_block(item)
        raw_id = item.get("block_id") if isinstance(item, Mapping) else (
            item.block_id if isinstance(item, InstructionBlock) else None)
        block_id = raw_id if isinstance(raw_id, str) else None
        if block_id is not None and not any(p == "block_id" for p, _ in found):
            if block_id in seen:
                found.append(("block_id", "repeated within the batch"))
            elif block_id in taken:
                found.append(("block_id", "already queued, in flight or recently finished"))
            seen.add(block_id)
        if found:
            problems.extend(BlockProblem(index, block_id, p, r) for p, r in found)
        elif not problems:
            blocks.append(_build(item.to_dict() if isinstance(item, InstructionBlock)
                                 else item))
    if problems:
        raise InvalidBlockError(problems, len(batch))
    return blocks


_ID_OK = _BLOCK_ID.fullmatch


def _plain_valid_block(item: object) -> InstructionBlock | None:
    """The block, if ``item`` is a plain dict that :func:`check_block` would pass; else
    ``None`` (then the careful path says why). The per-block hot path: a plain dict of
    plain values is checked once, without collecting anything."""
    if type(item) is not dict or len(item) != 4:
        return None
    try:
        block_id, action = item["block_id"], item["action"]
        priority, instructions = item["priority"], item["instructions"]
    except KeyError:
        return None
    if (type(block_id) is not str or _ID_OK(block_id) is None or type(action) is not str
            or not action.strip() or type(priority) is not int
            or type(instructions) is not list or not instructions):
        return None
    copies = []
    for instr in instructions:
        if type(instr) is not dict:
            return None
        for key, value in instr.items():
            if type(key) is not str:
                return None
            if key == "amount" or key.endswith("_amount"):
                kind = type(value)
                if not ((kind is float and math.isfinite(value)) or kind is int):
                    return None  # Decimals and number subclasses: the careful path decides
            elif key == "token" and (type(value) is not str or not value):
                return None
        copies.append(instr.copy())
    return InstructionBlock(block_id, action, priority, tuple(copies))


def _build(item: Mapping[str, Any]) -> InstructionBlock:
    return InstructionBlock(item["block_id"], item["action"], item["priority"],
                            tuple(dict(i) for i in item["instructions"]))
