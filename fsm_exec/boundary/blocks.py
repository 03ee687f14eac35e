"""Instruction blocks, and the validation and canonical conversion of a submitted batch."""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Callable, Container, Mapping
from typing import Any

import attrs
import orjson

from fsm_exec.boundary.canonical import TAGS, canonical, is_plain, to_wire
from fsm_exec.boundary.escape import CONTROL
from fsm_exec.boundary.plain import copy_data, int_problem
from fsm_exec.core.errors import BlockProblem, InvalidBlockError, safe_repr, shorten, type_name
from fsm_exec.core.limits import MAX_TEXT, too_long

BLOCK_FIELDS: tuple[str, ...] = ("block_id", "action", "priority", "instructions")
#: The instruction field that names the asset (what the price check prices), unless the
#: config's ``asset_field`` says otherwise.
ASSET_FIELD = "token"
_BLOCK_FIELD_SET = frozenset(BLOCK_FIELDS)
_BLOCK_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Why a block whose id is taken (queued, in flight, recently finished) is refused.
TAKEN = "already queued, in flight or recently finished"

Redact = Callable[[str], str]


@attrs.frozen(slots=True)
class InstructionBlock:
    """One validated instruction block, as the manager queues it and hands it to the venue.

    Its fields are in canonical form (see :mod:`fsm_exec.boundary.canonical`): ``priority`` an
    ``int``; ``instructions`` a tuple of dicts holding only ``None``, ``bool``, ``int``,
    ``float``, ``str``, ``Decimal``, lists and dicts (keys ``str``, or ``int`` below the
    top level), deep-copied at acceptance, so a caller changing its own objects afterwards
    changes nothing, and the venue receives exactly the same block before and after a
    restart. Treat it as immutable.
    """

    block_id: str
    action: str
    priority: int
    instructions: tuple[dict[str, Any], ...]

    def copy(self) -> InstructionBlock:
        """A deep copy: what each venue call and each risk check is given, so that one
        changing the instructions it was handed (normalising units in place, say) changes
        neither what the manager journals and keeps nor what a later attempt routes."""
        return checked_block(self.block_id, self.action, self.priority,
                             tuple(map(copy_data, self.instructions)))

    def to_dict(self) -> dict[str, Any]:
        """The block as plain data (instructions as a list of dicts, one level copied)."""
        return {"block_id": self.block_id, "action": self.action, "priority": self.priority,
                "instructions": [dict(i) for i in self.instructions]}


_new_object = object.__new__
# The slots' own setters: attrs' frozen __init__ ends in them through object.__setattr__.
_SLOTS = InstructionBlock.__dict__
_SET_ID = _SLOTS["block_id"].__set__
_SET_ACTION = _SLOTS["action"].__set__
_SET_PRIORITY = _SLOTS["priority"].__set__
_SET_INSTRUCTIONS = _SLOTS["instructions"].__set__


def checked_block(block_id: str, action: str, priority: int,
                  instructions: tuple[dict[str, Any], ...]) -> InstructionBlock:
    """``InstructionBlock(block_id, action, priority, instructions)`` for fields already
    checked (the hot path's acceptance and copies), its slots set directly instead of
    through ``object.__setattr__`` (two thirds of the cost, measured); equal to the class's
    own in every field, type and hash (a property test)."""
    block = _new_object(InstructionBlock)
    _SET_ID(block, block_id)
    _SET_ACTION(block, action)
    _SET_PRIORITY(block, priority)
    _SET_INSTRUCTIONS(block, instructions)
    return block


def content_digest(block: InstructionBlock) -> str:
    """What ``block`` asks for (its ``action``, ``priority`` and ``instructions``; not its
    id), as 16 hex digits: the first 64 bits of the BLAKE2b hash of its canonical form as
    JSON with sorted keys (tagged as the journal tags, when it holds what JSON cannot).
    The same canonical content always gives the same digest, in any process and after a
    restart; a finished block keeps it, so that a different block reusing its id is told
    apart from the same one submitted again."""
    try:
        text = orjson.dumps([block.action, block.priority, block.instructions],
                            option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a Decimal, an integer beyond 64 bits, integer keys: tagged
        text = orjson.dumps([block.action, to_wire(block.priority),
                             to_wire(list(block.instructions))], option=orjson.OPT_SORT_KEYS)
    digest = _BLAKE2B_64.copy()  # the configured hash, copied: cheaper than made anew
    digest.update(text)
    return digest.hexdigest()


#: An empty BLAKE2b of 64 bits, never updated: each digest starts from a copy of it.
_BLAKE2B_64 = hashlib.blake2b(digest_size=8)


def given_copies(call: Callable[[Any, InstructionBlock], Any]
                 ) -> Callable[[Any, InstructionBlock], Any]:
    """``call(timestamp, block)`` (a venue's ``route_instruction`` or ``query_execution``),
    given a fresh deep copy of the block each time (:meth:`InstructionBlock.copy`): an
    adapter that edits the block it is handed changes neither the block the manager keeps
    and journals nor what its next attempt sends."""
    def with_a_copy(timestamp: Any, block: InstructionBlock) -> Any:
        return call(timestamp, block.copy())

    return with_a_copy


def _got(v: object, redact: Redact | None = None) -> str:
    text = safe_repr(v)
    if redact is not None:
        text = redact(text)  # before shortening: a cut secret is not recognised
    return f"got {type_name(v)} {shorten(text)}"


def is_amount_key(key: object) -> bool:
    """Keys whose values must be finite numbers: ``amount`` and ``*_amount``."""
    return isinstance(key, str) and (key == "amount" or key.endswith("_amount"))


def _is_int(v: object) -> bool:
    return (isinstance(v, numbers.Integral) and not isinstance(v, bool)
            and type_name(v) not in ("bool_", "timedelta64"))


_SECRET = ("holds a secret from the config (a block is never rewritten and a secret never "
           "journaled: take it out)")


def finder(redact: Redact | None) -> Callable[[str], bool] | None:
    """Whether a string holds a secret, for ``redact``: its own ``finds`` (a
    :class:`~fsm_exec.boundary.config.Redactor`), or a comparison of what it does."""
    if redact is None:
        return None
    finds: Callable[[str], bool] | None = getattr(redact, "finds", None)
    if finds is None:
        def finds(text: str) -> bool:
            return redact(text) != text
    return finds


def id_problem(v: str) -> str:
    """What is wrong with ``v`` as a ``block_id``: its first character outside
    ``[A-Za-z0-9._:-]`` and that character's position (from 0), or its length."""
    if not v:
        return "it is empty"
    for i, c in enumerate(v):
        if not _BLOCK_ID.fullmatch(c):
            hint = (": an id made from a timestamp can use ts.strftime('%Y%m%dT%H%M%S')"
                    if c in " +" else "")
            return f"{c!r} at position {i}{hint}"
    return f"it is {len(v)} characters long"


def _field_name(name: object, redact: Redact | None) -> str:
    text = name if isinstance(name, str) else safe_repr(name)
    return shorten(redact(text) if redact is not None else text)


def convert_block(item: object, redact: Redact | None = None,
                  asset_field: str | None = None
                  ) -> tuple[list[tuple[str, str]], InstructionBlock | None, Any]:
    """Check one submitted block and convert it: ``(problems, block, wire)``.

    ``problems`` lists every ``(field path, reason)``; when it is empty, ``block`` is the
    canonical block and ``wire`` its instructions as the journal writes them. A block is
    never redacted: one holding a secret (anything ``redact`` would change) is refused,
    and the problems quote it redacted. No number anywhere in an instruction is NaN or
    infinite. With ``asset_field`` (the manager passes its config's) every instruction
    names its asset there, a non-empty string (what the price check prices); without it a
    ``token``, when present, is one."""
    finds = finder(redact)
    if isinstance(item, InstructionBlock):
        item = attrs.asdict(item, recurse=False)  # as given: to_dict() would coerce or crash
    if not isinstance(item, Mapping):
        return [("", f"a block must be a mapping, {_got(item, redact)}")], None, None
    out: list[tuple[str, str]] = []
    for name in BLOCK_FIELDS:
        if name not in item:
            out.append((name, "required field is missing"))
    for name in item:
        if name not in _BLOCK_FIELD_SET:
            out.append((_field_name(name, redact), "unexpected field (a block has "
                        "block_id, action, priority, instructions)"))
    block_id = action = priority = None
    if "block_id" in item:
        v = item["block_id"]
        if not isinstance(v, str):
            out.append(("block_id", f"must be a string, {_got(v, redact)}"))
        elif _BLOCK_ID.fullmatch(v) is None:
            out.append(("block_id", f"must be 1-64 characters of letters, digits and ._:- "
                                    f"({id_problem(v)}), {_got(v, redact)[4:]}"))
        elif finds is not None and finds(v):
            out.append(("block_id", _SECRET))
        else:
            block_id = str.__str__(v)
    if "action" in item:
        v = item["action"]
        if not isinstance(v, str) or not v.strip():
            out.append(("action", f"must be a non-empty string, {_got(v, redact)}"))
        elif (long := too_long(v)) is not None:  # the journal's bound: never shortened
            out.append(("action", long))
        elif CONTROL.search(v):  # it is shown on terminals and in reports: it must not act
            out.append(("action", "must not hold control characters (escape sequences, "
                                  f"line breaks, bidi controls), {_got(v, redact)}"))
        else:
            conv = canonical(v, path="action", redact=redact, refuse=finds)
            if conv.problems:
                out.extend(_split(p) for p in conv.problems)
            action = conv.value
    if "priority" in item:
        v = item["priority"]
        if not _is_int(v):
            out.append(("priority", f"must be an int, {_got(v, redact)}"))
        else:
            try:
                priority = int(v)
            except Exception as exc:  # an Integral whose int() raises
                out.append(("priority", f"could not be read as an int: "
                                        f"{_got(exc, redact)[4:]}"))
            else:
                problem = int_problem(priority)
                if problem is not None:
                    out.append(("priority", problem))
                    priority = None
    instructions: list[dict[str, Any]] = []
    wires: list[Any] = []
    if "instructions" in item:
        v = item["instructions"]
        if not isinstance(v, list | tuple):
            out.append(("instructions", f"must be a non-empty list of mappings, "
                                        f"{_got(v, redact)}"))
        elif not v:
            out.append(("instructions", "must be a non-empty list of mappings, got an empty "
                                        f"{type_name(v)}"))
        else:
            for i, instr in enumerate(v):
                path = f"instructions[{i}]"
                if not isinstance(instr, Mapping):
                    out.append((path, f"must be a mapping, {_got(instr, redact)}"))
                    continue
                bad_keys = [k for k in instr if not isinstance(k, str)]
                for k in bad_keys:
                    out.append((path, f"keys must be strings, {_got(k, redact)}"))
                if bad_keys:
                    continue
                named = asset_field or ASSET_FIELD
                if named not in instr:
                    if asset_field is not None:
                        out.append((f"{path}.{_field_name(named, redact)}",
                                    _missing_asset(named)))
                else:
                    asset = instr[named]
                    if not (isinstance(asset, str) and asset):
                        out.append((f"{path}.{_field_name(named, redact)}",
                                    f"must be a non-empty string, {_got(asset, redact)}"))
                conv = canonical(instr, path=path, redact=redact, amounts=True,
                                 refuse=finds, finite="a block")
                if conv.problems:
                    out.extend(_split(p) for p in conv.problems)
                    continue
                instructions.append(conv.value)
                wires.append(conv.wire)
    if out:
        return out, None, None
    assert block_id is not None and action is not None and priority is not None
    block = InstructionBlock(block_id, action, priority, tuple(instructions))
    same = all(a is b for a, b in zip(instructions, wires, strict=True))
    return out, block, (block.instructions if same else wires)


def _missing_asset(field: str) -> str:
    if field == ASSET_FIELD:
        return ("required field is missing: the price check prices the asset it names (if "
                "your instructions name their asset in another field, say which in the "
                "config's asset_field)")
    return ("required field is missing: the config's asset_field names it as the field "
            "that holds the asset the price check prices")


def _split(problem: str) -> tuple[str, str]:
    path, _, reason = problem.partition(": ")
    return path, reason


def check_block(item: object, redact: Redact | None = None,
                asset_field: str | None = None) -> list[tuple[str, str]]:
    """Every ``(field path, reason)`` problem with one submitted block: the rules the
    manager accepts a block by, and the journal's readers read one back by."""
    if _plain_valid_block(item, finder(redact), asset_field) is not None:
        return []  # the hot path's verdict: a block convert_block passes unchanged
    return convert_block(item, redact, asset_field)[0]


def convert_batch(batch: object, taken: Container[str], redact: Redact | None = None,
                  asset_field: str | None = None
                  ) -> tuple[list[InstructionBlock], list[Any]]:
    """Validate and convert a whole batch: its canonical blocks and their instructions'
    journal forms, or :class:`InvalidBlockError` listing every problem at once.

    ``taken`` holds the ``block_id``s that may not be used again (queued, in flight, or
    recently finished). The batch is refused whole if any block is bad. ``asset_field``:
    see :func:`convert_block`."""
    if not isinstance(batch, list | tuple):
        raise InvalidBlockError(
            [BlockProblem(0, None, "", f"the batch must be a list of mappings, "
                                       f"{_got(batch, redact)}")], None)
    problems: list[BlockProblem] = []
    blocks: list[InstructionBlock] = []
    wires: list[Any] = []
    seen: set[str] = set()
    finds = finder(redact)
    for index, item in enumerate(batch):
        if not problems:
            fast = _plain_valid_block(item, finds, asset_field)
            if fast is not None and fast.block_id not in seen and fast.block_id not in taken:
                seen.add(fast.block_id)
                blocks.append(fast)
                wires.append(fast.instructions)
                continue
        # The careful path: every problem, with its field, for the error.
        found, block, wire = convert_block(item, redact, asset_field)
        raw_id = item.get("block_id") if isinstance(item, Mapping) else (
            item.block_id if isinstance(item, InstructionBlock) else None)
        block_id = (str.__str__(raw_id) if isinstance(raw_id, str)
                    and not (finds is not None and finds(raw_id)) else None)
        if block_id is not None and not any(p == "block_id" for p, _ in found):
            if block_id in seen:
                found.append(("block_id", "repeated within the batch"))
            elif block_id in taken:
                found.append(("block_id", TAKEN))
            seen.add(block_id)
        if found:
            problems.extend(BlockProblem(index, block_id, p, r) for p, r in found)
        elif not problems:
            assert block is not None
            blocks.append(block)
            wires.append(wire)
    if problems:
        raise InvalidBlockError(problems, len(batch))
    return blocks, wires


def validate_batch(batch: object, taken: Container[str], redact: Redact | None = None,
                   asset_field: str | None = None) -> list[InstructionBlock]:
    """Validate a whole batch; return its canonical blocks, or raise listing every problem
    at once (see :func:`convert_batch`)."""
    return convert_batch(batch, taken, redact, asset_field)[0]


_ID_OK = _BLOCK_ID.fullmatch


def _plain_valid_block(item: object, finds: Callable[[str], bool] | None = None,
                       asset_field: str | None = None) -> InstructionBlock | None:
    """The block, if ``item`` is a plain dict of flat instructions of plain values that
    :func:`convert_block` would pass unchanged; else ``None`` (then the careful path
    decides). The per-block hot path: checked once, without collecting anything, and
    copied with one ``dict.copy()`` per instruction (a deep copy, for flat plain values).
    ``finds`` tells whether a string holds a secret (then the careful path refuses it)."""
    if type(item) is not dict or len(item) != 4:
        return None
    try:
        block_id, action = item["block_id"], item["action"]
        priority, instructions = item["priority"], item["instructions"]
    except KeyError:
        return None
    if (type(block_id) is not str or _ID_OK(block_id) is None or type(action) is not str
            or not action.isascii() or not action.isprintable() or not action.strip()
            or len(action) > MAX_TEXT
            or type(priority) is not int or not -(1 << 63) <= priority < (1 << 63)
            or type(instructions) is not list or not instructions
            or (finds is not None and (finds(action) or finds(block_id)))):
        return None
    copies = []
    asset = asset_field or ASSET_FIELD
    for instr in instructions:
        if type(instr) is not dict or (asset_field is not None and asset not in instr):
            return None
        for key, value in instr.items():
            if type(key) is not str or not key.isascii() or (finds is not None and finds(key)):
                return None
            kind = type(value)
            if key == "amount" or key.endswith("_amount"):
                if not ((kind is float and math.isfinite(value)) or
                        (kind is int and is_plain(value))):
                    return None  # Decimals, numpy numbers, NaN: the careful path decides
            elif kind is str:
                if not value.isascii() or (key == asset and not value) or (
                        finds is not None and finds(value)):
                    return None
            elif not is_plain(value) or key == asset:
                return None
        if len(instr) == 1 and next(iter(instr)) in TAGS:
            return None  # a dict that reads as a journal tag: the careful path wraps it
        copies.append(instr.copy())
    return checked_block(block_id, action, priority, tuple(copies))
