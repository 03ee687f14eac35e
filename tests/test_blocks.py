"""Tests for instruction blocks and the validation of a submitted batch (``boundary.blocks``)."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fsm_exec import BlockProblem, ComponentError, InstructionBlock, InvalidBlockError
from fsm_exec.boundary.blocks import checked_block, content_digest, validate_batch
from fsm_exec.boundary.escape import CONTROL
from fsm_exec.boundary.plain import copy_data

Block = dict[str, Any]


def block(block_id: str = "b1", /, **changes: Any) -> Block:
    """A valid block as a plain dict, with some fields changed."""
    base: Block = {"block_id": block_id, "action": "swap", "priority": 1,
                   "instructions": [{"token": "ETH", "amount": 1.5}]}
    base.update(changes)
    return base


def refused(batch: object, taken: frozenset[str] = frozenset()) -> InvalidBlockError:
    """The error a refused batch raises."""
    with pytest.raises(InvalidBlockError) as info:
        validate_batch(batch, taken)
    return info.value


def fields_of(err: InvalidBlockError) -> set[tuple[int, str]]:
    return {(p.index, p.field) for p in err.problems}


# --- accepted batches -------------------------------------------------------------------------


def test_valid_batch_returns_blocks_in_order() -> None:
    """A valid batch becomes InstructionBlocks, one per block, in the order submitted."""
    batch = [block("c", priority=5), block("a", priority=-2), block("b", priority=0)]

    blocks = validate_batch(batch, frozenset())

    assert [b.block_id for b in blocks] == ["c", "a", "b"]
    assert all(isinstance(b, InstructionBlock) for b in blocks)
    assert [b.priority for b in blocks] == [5, -2, 0]
    assert blocks[0].action == "swap"
    assert blocks[0].instructions == ({"token": "ETH", "amount": 1.5},)


def test_tuple_batch_and_empty_batch_accepted() -> None:
    """A tuple is a batch like a list, and an empty batch validates to no blocks."""
    assert [b.block_id for b in validate_batch((block("x"),), frozenset())] == ["x"]
    assert validate_batch([], frozenset()) == []


def test_instruction_block_is_frozen() -> None:
    """Assigning to a field of an InstructionBlock raises."""
    (b,) = validate_batch([block()], frozenset())

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        b.action = "other"  # type: ignore[misc]
    assert b.action == "swap"


def test_instructions_copied_at_acceptance() -> None:
    """Changing the caller's instruction dicts or list after validation leaves the block alone."""
    instr: dict[str, Any] = {"token": "ETH", "amount": 1}
    submitted = block(instructions=[instr])

    (b,) = validate_batch([submitted], frozenset())
    instr["amount"] = 999
    instr["extra"] = "x"
    submitted["instructions"].append({"amount": 2})

    assert b.instructions == ({"token": "ETH", "amount": 1},)


def test_instruction_mapping_types_become_dicts() -> None:
    """Instructions given as read-only mappings are accepted and stored as plain dicts."""
    (b,) = validate_batch([block(instructions=(MappingProxyType({"amount": 3}),))],
                          frozenset())

    assert b.instructions == ({"amount": 3},)
    assert type(b.instructions[0]) is dict


def test_to_dict_round_trips() -> None:
    """to_dict() gives plain data that validates back to an equal block."""
    (b,) = validate_batch([block("r:1", priority=7)], frozenset())

    data = b.to_dict()

    assert data == {"block_id": "r:1", "action": "swap", "priority": 7,
                    "instructions": [{"token": "ETH", "amount": 1.5}]}
    assert validate_batch([data], frozenset()) == [b]


def test_to_dict_is_a_copy() -> None:
    """Mutating the dict from to_dict() does not change the block."""
    (b,) = validate_batch([block()], frozenset())

    data = b.to_dict()
    data["instructions"][0]["amount"] = 0

    assert b.instructions[0]["amount"] == 1.5


@pytest.mark.parametrize("block_id", ["a", "A" * 64, "Az09._:-", "2024-01-01T00:00:00.000"])
def test_block_id_allowed_characters(block_id: str) -> None:
    """A block_id of 1-64 letters, digits and ._:- is accepted."""
    assert validate_batch([block(block_id)], frozenset())[0].block_id == block_id


@pytest.mark.parametrize("amount", [
    0, -3, pytest.param(10**400, id="10**400"), 1.5, -0.0, 1e308, Decimal("1.10"), Decimal("-1E+5"),
])
@pytest.mark.parametrize("key", ["amount", "in_amount", "min_out_amount"])
def test_finite_amounts_accepted_unchanged(key: str, amount: object) -> None:
    """Finite int, float and Decimal amounts are accepted and kept as given (no coercion)."""
    (b,) = validate_batch([block(instructions=[{key: amount}])], frozenset())

    assert b.instructions[0][key] == amount
    assert type(b.instructions[0][key]) is type(amount)


def test_number_subclasses_accepted_as_amounts() -> None:
    """Subclasses of int and float are numbers too, however large the int."""

    class Qty(int):
        pass

    class Price(float):
        pass

    batch = [block(instructions=[{"amount": Qty(10**400), "px_amount": Price(2.5)}])]

    assert validate_batch(batch, frozenset())[0].instructions[0]["amount"] == 10**400


def test_keys_not_named_amount_are_free() -> None:
    """Only `amount` and `*_amount` keys are checked as amounts; other keys take any value
    (but NaN and infinities: see test_no_nan_or_infinity_anywhere_in_a_block)."""
    instr = {"amounts": "x", "amount_usd": "y", "AMOUNT": None, "note": 1.5, "side": 1}

    (b,) = validate_batch([block(instructions=[instr])], frozenset())

    assert b.instructions == (instr,)


def test_empty_instruction_mapping_accepted() -> None:
    """An instruction mapping with no keys is a valid instruction."""
    assert validate_batch([block(instructions=[{}])], frozenset())[0].instructions == ({},)


def test_instruction_block_instances_accepted() -> None:
    """InstructionBlock instances in a batch are accepted, mixed with dicts, as equal blocks."""
    (original,) = validate_batch([block("a")], frozenset())

    blocks = validate_batch([original, block("b")], frozenset())

    assert blocks[0] == original
    assert [b.block_id for b in blocks] == ["a", "b"]


def test_ids_taken_by_other_batches_only_refuse_themselves() -> None:
    """Ids not in `taken` are accepted even when `taken` holds other ids."""
    assert len(validate_batch([block("new")], frozenset({"old", "older"}))) == 1


# --- refused batches: the error itself ---------------------------------------------------------


def test_invalid_block_error_kind_and_code() -> None:
    """A refused batch raises InvalidBlockError: a ComponentError and ValueError, EXEC-004."""
    err = refused([block(priority="high")])

    assert isinstance(err, ComponentError)
    assert isinstance(err, ValueError)
    assert err.error_code == "EXEC-004"
    assert err.problems == (BlockProblem(0, "b1", "priority", err.problems[0].reason),)


@pytest.mark.parametrize("batch", [
    None, "b1", {"block_id": "b1"}, 3, block(), iter([block()]),
])
def test_batch_must_be_list_or_tuple(batch: object) -> None:
    """A batch that is not a list or tuple is refused with one problem about the batch."""
    err = refused(batch)

    assert len(err.problems) == 1
    assert err.problems[0].block_id is None
    assert err.problems[0].field == ""
    assert "list" in err.problems[0].reason


@pytest.mark.parametrize("item", [None, "b1", 5, ["block_id", "b1"], (("block_id", "b1"),)])
def test_block_must_be_mapping(item: object) -> None:
    """A batch item that is neither a mapping nor an InstructionBlock is refused by index."""
    err = refused([block("ok"), item])

    assert len(err.problems) == 1
    assert (err.problems[0].index, err.problems[0].block_id) == (1, None)
    assert "mapping" in err.problems[0].reason
    assert "[1]" in str(err)


def test_missing_fields_all_reported() -> None:
    """An empty block reports each of the four required fields as missing."""
    err = refused([{}])

    assert fields_of(err) == {(0, "block_id"), (0, "action"), (0, "priority"),
                              (0, "instructions")}
    assert all("missing" in p.reason for p in err.problems)


@pytest.mark.parametrize("extra", ["token", "amount", "status", "Block_id"])
def test_unknown_top_level_field_refused(extra: str) -> None:
    """A top-level field other than the four block fields is refused by name."""
    err = refused([block(**{extra: "x"})])

    assert fields_of(err) == {(0, extra)}


def test_non_string_top_level_key_refused() -> None:
    """A non-string top-level key is reported as an unexpected field."""
    bad = block()
    bad[7] = "x"  # type: ignore[index]

    assert fields_of(refused([bad])) == {(0, "7")}


# One row per (field, bad value): no value is coerced into what the field wants.
BAD_FIELDS: list[tuple[str, object]] = [
    ("block_id", ""),
    ("block_id", "A" * 65),
    ("block_id", "has space"),
    ("block_id", "slash/id"),
    ("block_id", "é"),
    ("block_id", "id\n"),
    ("block_id", 17),
    ("block_id", None),
    ("action", ""),
    ("action", "   "),
    ("action", 17),
    ("action", None),
    ("action", ["swap"]),
    ("priority", "high"),
    ("priority", "1"),
    ("priority", True),
    ("priority", False),
    ("priority", 1.0),
    ("priority", None),
    ("priority", Decimal(1)),
    ("instructions", []),
    ("instructions", ()),
    ("instructions", None),
    ("instructions", {"amount": 1}),
    ("instructions", "swap"),
    ("instructions", {"amount": 1}.items()),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_bad_top_level_value_refused(field: str, value: object) -> None:
    """Each wrongly typed or shaped block field is refused, naming the block and the field."""
    err = refused([block("good"), block("b2", **{field: value})])

    problems = [p for p in err.problems if p.index == 1]
    assert [p.field for p in problems] == [field]
    assert all(p.index == 1 for p in err.problems)
    if field != "block_id":
        assert problems[0].block_id == "b2"


@pytest.mark.parametrize("value", [
    "1.5", "", None, True, False, float("nan"), float("inf"), -math.inf,
    Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), [1], {"v": 1}, 1 + 2j,
])
@pytest.mark.parametrize("key", ["amount", "out_amount"])
def test_bad_amount_refused(key: str, value: object) -> None:
    """Amounts must be finite int/float/Decimal: strings, bools, NaN, inf and others are refused."""
    err = refused([block(instructions=[{"token": "ETH"}, {key: value}])])

    assert fields_of(err) == {(0, f"instructions[1].{key}")}
    assert "finite number" in err.problems[0].reason


@pytest.mark.parametrize("value", ["", None, 17, ["ETH"], b"ETH"])
def test_bad_token_refused(value: object) -> None:
    """A token, when present, must be a non-empty string."""
    err = refused([block(instructions=[{"token": value, "amount": 1}])])

    assert fields_of(err) == {(0, "instructions[0].token")}


@pytest.mark.parametrize("instr", [None, 5, "amount", ["amount", 1], [("amount", 1)]])
def test_instruction_must_be_mapping(instr: object) -> None:
    """An instruction that is not a mapping is refused by its index (no dict() coercion)."""
    err = refused([block(instructions=[{"amount": 1}, instr])])

    assert fields_of(err) == {(0, "instructions[1]")}


def test_instruction_keys_must_be_strings() -> None:
    """An instruction with a non-string key is refused, naming the instruction."""
    err = refused([block(instructions=[{1: "x"}])])

    assert fields_of(err) == {(0, "instructions[0]")}
    assert "key" in err.problems[0].reason


# --- refused batches: ids -----------------------------------------------------------------------


def test_taken_id_refused() -> None:
    """A block_id already in `taken` is refused."""
    err = refused([block("a"), block("queued")], frozenset({"queued"}))

    assert fields_of(err) == {(1, "block_id")}
    assert err.problems[0].block_id == "queued"


def test_repeated_id_refused_at_each_repeat() -> None:
    """A block_id repeated within the batch is refused at every repeat after the first."""
    err = refused([block("a"), block("b"), block("a"), block("a")])

    assert fields_of(err) == {(2, "block_id"), (3, "block_id")}
    assert {p.block_id for p in err.problems} == {"a"}


def test_repeat_of_bad_block_still_reported() -> None:
    """A repeat is reported even when the first block with that id is bad for another reason."""
    err = refused([block("a", action=""), block("a")])

    assert fields_of(err) == {(0, "action"), (1, "block_id")}


def test_taken_id_repeated_reported_each_time() -> None:
    """A taken id submitted twice is refused at both positions."""
    err = refused([block("t"), block("t")], frozenset({"t"}))

    assert fields_of(err) == {(0, "block_id"), (1, "block_id")}


def test_taken_may_be_any_container() -> None:
    """`taken` is any container of ids (a list, a dict's keys), checked by membership."""
    assert fields_of(refused([block("x")], ["x"])) == {(0, "block_id")}  # type: ignore[arg-type]
    assert fields_of(refused([block("y")], {"y": 1}.keys())) == {  # type: ignore[arg-type]
        (0, "block_id")}


def test_validation_does_not_change_taken_or_batch() -> None:
    """Validating neither records ids in `taken` nor changes the submitted batch."""
    taken: set[str] = set()
    batch = [block("a"), block("b", priority="x")]
    before = copy.deepcopy(batch)

    refused(batch, taken)  # type: ignore[arg-type]
    validate_batch(batch[:1], taken)

    assert taken == set()
    assert batch == before


# --- refused batches: atomicity and reporting every problem -------------------------------------


def test_one_bad_block_refuses_whole_batch() -> None:
    """A bad block anywhere refuses the batch: no block is returned, good ones included."""
    with pytest.raises(InvalidBlockError) as info:
        validate_batch([block("a"), block("b"), block("c", priority=None)], frozenset())

    assert fields_of(info.value) == {(2, "priority")}


def test_every_problem_in_every_block_reported() -> None:
    """Several bad blocks and several bad fields in one block are all reported at once."""
    bad = {"block_id": "x y", "action": 17, "priority": "high",
           "instructions": [{"amount": "1.5", "token": ""}, 3], "extra": 1}
    batch = [block("ok"), bad, block("ok2", instructions=[]), None, block("ok")]

    err = refused(batch, frozenset())

    assert fields_of(err) == {
        (1, "block_id"), (1, "action"), (1, "priority"), (1, "instructions[0].amount"),
        (1, "instructions[0].token"), (1, "instructions[1]"), (1, "extra"),
        (2, "instructions"), (3, ""), (4, "block_id"),
    }


def test_message_names_each_block_field_and_reason() -> None:
    """The message names every problem's block id (or index), field path and reason."""
    batch = [block("ok"), block("b-7", instructions=[{"amount": "1.5"}]), 42,
             block("z9", priority=True)]

    err = refused(batch)
    message = str(err)

    assert "'b-7'" in message
    assert "'z9'" in message
    assert "[2]" in message
    assert "'ok'" not in message
    for p in err.problems:
        assert p.field in message
        assert p.reason in message
    assert "instructions[0].amount" in message
    assert "'1.5'" in message


def test_problem_block_id_only_when_a_string() -> None:
    """A problem carries the submitted block_id when it is a string, None otherwise."""
    err = refused([block(17), block("a b")])  # type: ignore[arg-type]

    assert [(p.index, p.block_id) for p in err.problems] == [(0, None), (1, "a b")]


def test_long_bad_values_shortened_in_message() -> None:
    """A long bad value is shortened in the reason rather than repeated whole."""
    err = refused([block(action=["x" * 500])])

    assert "x" * 100 not in str(err)
    assert "..." in err.problems[0].reason


# --- InstructionBlock instances are validated the same way --------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    *BAD_FIELDS,
    ("instructions", (5,)),
    ("instructions", ([("amount", 1)],)),
    ("instructions", ({"amount": "1.5"},)),
])
def test_instruction_block_instances_validated(field: str, value: object) -> None:
    """An InstructionBlock built directly with a bad field is refused like the same dict."""
    fields = block("b2", **{field: value})
    as_dict = refused([fields])

    as_block = refused([InstructionBlock(**fields)])

    assert fields_of(as_block) == fields_of(as_dict)
    assert len(as_block.problems) >= 1


def test_instruction_block_instance_checked_against_taken() -> None:
    """An InstructionBlock whose id is taken, or repeated, is refused."""
    (b,) = validate_batch([block("a")], frozenset())

    assert fields_of(refused([b], frozenset({"a"}))) == {(0, "block_id")}
    assert fields_of(refused([b, b])) == {(1, "block_id")}


def test_instruction_block_instance_copied() -> None:
    """Accepting an InstructionBlock copies its instruction dicts into the new block."""
    instr: dict[str, Any] = {"amount": 1}
    original = InstructionBlock("a", "swap", 1, (instr,))

    (b,) = validate_batch([original], frozenset())
    instr["amount"] = 2

    assert b.instructions == ({"amount": 1},)


# --- invariants --------------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
finite_numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
)
amount_keys = st.one_of(st.just("amount"), st.from_regex(r"[a-z_]{0,8}_amount", fullmatch=True))
free_keys = st.text(max_size=10).filter(
    lambda k: k != "amount" and not k.endswith("_amount") and k != "token")
free_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10),
                        st.lists(st.integers(), max_size=3))


@st.composite
def instructions(draw: st.DrawFn) -> dict[str, Any]:
    instr: dict[str, Any] = draw(st.dictionaries(free_keys, free_values, max_size=3))
    instr.update(draw(st.dictionaries(amount_keys, finite_numbers, max_size=3)))
    if draw(st.booleans()):
        instr["token"] = draw(st.text(min_size=1, max_size=8))
    return instr


def valid_block(block_id: str) -> st.SearchStrategy[Block]:
    return st.fixed_dictionaries({
        "block_id": st.just(block_id),
        "action": st.text(min_size=1, max_size=10).filter(
            lambda s: bool(s.strip()) and CONTROL.search(s) is None),
        "priority": st.integers(),
        "instructions": st.lists(instructions(), min_size=1, max_size=3),
    })


@st.composite
def valid_batches(draw: st.DrawFn, min_size: int = 0) -> list[Block]:
    block_ids = draw(st.lists(ids, min_size=min_size, max_size=6, unique=True))
    return [draw(valid_block(i)) for i in block_ids]


@given(valid_batches(), st.data())
def test_valid_batches_validate_to_equal_blocks(batch: list[Block], data: st.DataObject) -> None:
    """Any batch of valid blocks with unique ids validates to blocks equal field by field."""
    as_instances = data.draw(st.lists(st.booleans(), min_size=len(batch), max_size=len(batch)))
    submitted: list[object] = [
        InstructionBlock(**b) if inst else b for b, inst in zip(batch, as_instances, strict=True)]
    others = data.draw(st.frozensets(ids)) - {b["block_id"] for b in batch}

    blocks = validate_batch(submitted, others)

    assert len(blocks) == len(batch)
    for got, want in zip(blocks, batch, strict=True):
        assert got.block_id == want["block_id"]
        assert got.action == want["action"]
        assert got.priority == want["priority"]
        assert got.instructions == tuple(want["instructions"])
        assert got.to_dict() == want


def _set_instruction(key: str, value: object) -> Callable[[Block], None]:
    def corrupt(b: Block) -> None:
        b["instructions"][0][key] = value
    return corrupt


def _set(field: str, value: object) -> Callable[[Block], None]:
    def corrupt(b: Block) -> None:
        b[field] = value
    return corrupt


def _drop(field: str) -> Callable[[Block], None]:
    def corrupt(b: Block) -> None:
        del b[field]
    return corrupt


def _bad_instruction(b: Block) -> None:
    b["instructions"][0] = "not a mapping"


# (expected field path, corruption)
CORRUPTIONS: list[tuple[str, Callable[[Block], None]]] = [
    *((field, _set(field, value)) for field, value in BAD_FIELDS),
    *((field, _drop(field)) for field in ("block_id", "action", "priority", "instructions")),
    ("status", _set("status", "new")),
    ("block_id", _set("block_id", "TAKEN")),
    ("instructions[0]", _bad_instruction),
    ("instructions[0].amount", _set_instruction("amount", "1.5")),
    ("instructions[0].amount", _set_instruction("amount", float("nan"))),
    ("instructions[0].amount", _set_instruction("amount", True)),
    ("instructions[0].fee_amount", _set_instruction("fee_amount", math.inf)),
    ("instructions[0].token", _set_instruction("token", "")),
    ("instructions[0].token", _set_instruction("token", 17)),
]


@given(valid_batches(min_size=1), st.data())
def test_one_corrupted_field_refuses_the_batch(batch: list[Block], data: st.DataObject) -> None:
    """Corrupting one field of one block of a valid batch always refuses it, naming both."""
    batch = [b for b in batch if b["block_id"] != "TAKEN"] or [block("b1")]
    index = data.draw(st.integers(0, len(batch) - 1), label="index")
    field, corrupt = data.draw(st.sampled_from(CORRUPTIONS), label="corruption")
    corrupt(batch[index])

    with pytest.raises(InvalidBlockError) as info:
        validate_batch(batch, frozenset({"TAKEN"}))

    assert (index, field) in fields_of(info.value)
    assert {p.index for p in info.value.problems} == {index}


@given(st.lists(st.one_of(
    st.fixed_dictionaries({
        "block_id": st.one_of(st.sampled_from(["ok-1", "b:2", "", "a b", "x" * 65]),
                              st.text(max_size=70), st.integers()),
        "action": st.one_of(st.sampled_from(["buy", " ", ""]), st.text(max_size=5),
                            st.none()),
        "priority": st.one_of(st.integers(), st.booleans(), st.floats()),
        "instructions": st.one_of(st.lists(st.dictionaries(
            st.sampled_from(["amount", "fee_amount", "token", "venue", 1]),
            st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.booleans(),
                      st.none(), st.decimals())), max_size=3), st.text(max_size=2))}),
    st.dictionaries(st.sampled_from(["block_id", "action", "priority", "instructions", "x"]),
                    st.integers(), max_size=5)), max_size=4))
def test_fast_path_agrees_with_the_careful_check(batch: list[Any]) -> None:
    """The plain-dict fast path accepts exactly what the careful check passes, and builds
    the same blocks."""
    from fsm_exec.boundary.blocks import _plain_valid_block, convert_block
    from fsm_exec.boundary.canonical import is_plain

    def plain(v: Any) -> bool:
        return is_plain(v) and (type(v) is not str or v.isascii())

    accepted = 0
    for item in batch:
        fast = _plain_valid_block(item)
        problems, careful, _ = convert_block(item)
        accepted += fast is not None
        assert (fast is not None) <= (not problems)  # the fast path never accepts more
        if fast is not None:
            assert fast == careful
        elif careful is not None and type(item) is dict:
            # a valid plain dict takes the careful path only for what needs care: numbers
            # other than int/float in amounts, non-ASCII text, values needing a tag
            values = [(k, v) for i in item["instructions"] for k, v in i.items()]
            assert any(not plain(v) or (isinstance(k, str) and not k.isascii())
                       for k, v in values) or not item["action"].isascii(), item
    event("fast path took a block" if accepted else "fast path took none")


@pytest.mark.parametrize("action", ["buy\x1b[1A\x1b[2K", "buy\r\nhalted: no", "sell\x9b2K",
                                    "buy\x07", "buy\u202eyub", "buy\u2028x", "buy\tnow"])
def test_an_action_with_control_characters_is_refused_naming_block_and_field(
        action: str) -> None:
    """An action holding control characters (escape sequences, line breaks, bidi controls)
    is refused at the boundary: the error names the block and the field and quotes the
    value escaped, never raw; the fast path refuses it too."""
    from fsm_exec.boundary.blocks import _plain_valid_block

    item = {"block_id": "hedge-1", "action": action, "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "side": "buy", "amount": 1}]}
    assert _plain_valid_block(item) is None
    with pytest.raises(InvalidBlockError) as refused:
        validate_batch([item], set())
    (problem,) = refused.value.problems
    assert (problem.block_id, problem.field) == ("hedge-1", "action")
    assert problem.reason.startswith("must not hold control characters")
    assert CONTROL.search(str(refused.value).replace("\n", "")) is None
    assert action not in str(refused.value)


# --- the hot path's own constructor and digest ------------------------------------------------

_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
_instructions = st.lists(st.dictionaries(st.text(max_size=5), st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False), st.text(max_size=5)),
    max_size=4), min_size=1, max_size=3).map(tuple)


@given(_ids, st.text(min_size=1, max_size=8), st.integers(), _instructions)
def test_the_hot_paths_constructor_makes_the_class_own_block(
        block_id: str, action: str, priority: int,
        instructions: tuple[dict[str, Any], ...]) -> None:
    """checked_block is InstructionBlock(...) for checked fields: the same type, fields,
    equality and hash, and as frozen."""
    fast = checked_block(block_id, action, priority, instructions)
    slow = InstructionBlock(block_id, action, priority, instructions)
    assert type(fast) is InstructionBlock
    assert attrs.astuple(fast, recurse=False) == attrs.astuple(slow, recurse=False)
    assert fast == slow and fast.copy() == slow
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.action = "changed"  # type: ignore[misc]


_nested = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=3)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


def _containers(v: Any) -> list[Any]:
    """Every dict and list in ``v``, at every depth."""
    if isinstance(v, dict):
        return [v, *(c for x in v.values() for c in _containers(x))]
    if isinstance(v, list):
        return [v, *(c for x in v for c in _containers(x))]
    return []


@given(st.lists(st.dictionaries(st.text(max_size=3), _nested, max_size=3), min_size=1,
                max_size=3))
def test_a_copy_shares_no_container_with_its_block(
        instructions: list[dict[str, Any]]) -> None:
    """InstructionBlock.copy (what each venue call is given) is equal to its block and
    shares none of its dicts and lists at any depth (a flat instruction's quick copy
    included), so a venue editing it in place changes nothing the manager keeps."""
    b = InstructionBlock("a", "buy", 1, tuple(instructions))
    before = copy.deepcopy(instructions)
    c = b.copy()
    assert type(c) is InstructionBlock and c == b
    mine = {id(x) for x in _containers(list(b.instructions))}
    assert mine.isdisjoint(id(x) for x in _containers(list(c.instructions)))
    for x in _containers(list(c.instructions)):  # the venue edits every one in place
        x.clear()
    assert list(b.instructions) == before


def test_a_copy_of_a_value_whose_type_cannot_be_hashed_is_made_as_before() -> None:
    """copy_data's quick test hashes each value's type: a type that cannot be hashed (its
    metaclass defines __eq__ alone; no canonical value has one) is copied as it was before
    that test, shared, never a TypeError."""

    class Meta(type):
        def __eq__(cls, other: object) -> bool:
            return cls is other

    class Odd(metaclass=Meta):
        pass

    odd = Odd()
    copied = copy_data({"a": odd, "b": [1]})
    assert copied == {"a": odd, "b": [1]} and copied["a"] is odd


@given(st.text(min_size=1, max_size=8), st.integers(min_value=-(1 << 63),
                                                   max_value=(1 << 63) - 1), _instructions)
def test_the_content_digest_is_blake2b_of_the_sorted_json(
        action: str, priority: int, instructions: tuple[dict[str, Any], ...]) -> None:
    """The documented digest (the first 64 bits of BLAKE2b over the sorted-key JSON of
    action, priority and instructions), whatever copy of the hash computes it."""
    b = InstructionBlock("a", action, priority, instructions)
    text = orjson.dumps([action, priority, instructions], option=orjson.OPT_SORT_KEYS)
    assert content_digest(b) == hashlib.blake2b(text, digest_size=8).hexdigest()
    assert content_digest(b) == content_digest(b.copy())
