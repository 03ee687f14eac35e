"""Blocks read back from a journal obey the rules blocks are accepted by (review finding 3).

The reader checks the block in a ``block_accepted`` record, and every block a checkpoint
holds (its queue, the block in flight), with the boundary's own rules
(:func:`fsm_exec.boundary.blocks.check_block`, the function the manager accepts a block
by): a NaN or infinite amount, a priority that is no integer, control characters in an
action, empty instructions or instructions that are no mappings are refused by every
reader with EXEC-013 naming ``file:line`` and the field. Before, ``check`` said OK and
``recover()`` handed the venue ``action='buy\\x1b[2J'``, ``priority='x'``, ``amount=nan``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsm_exec import JournalCorruptError, check_journal, read_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.files import journal_files
from fsm_exec.tools.status import StatusUnreadable, read_status

from journals import crashed_in, manager, queued_journal
from kit import T

#: Edits of a block as the journal holds it, each with the field the reader names.
EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "nan amount": (lambda b: b["instructions"][0].update(amount={"__float__": "NaN"}),
                   "instructions[0].amount"),
    "infinite amount": (lambda b: b["instructions"][0].update(
        amount={"__float__": "Infinity"}), "instructions[0].amount"),
    "text priority": (lambda b: b.update(priority="x"), "priority"),
    "float priority": (lambda b: b.update(priority=1.5), "priority"),
    "escape in action": (lambda b: b.update(action="buy\x1b[2J"), "action"),
    "empty action": (lambda b: b.update(action=" "), "action"),
    "no instructions": (lambda b: b.update(instructions=[]), "instructions"),
    "numbers as instructions": (lambda b: b.update(instructions=[1, 2]), "instructions[0]"),
}


def _edit(path: Path, pick: Callable[[dict[str, Any]], dict[str, Any] | None],
          edit: Callable[[dict[str, Any]], None]) -> int:
    """Apply ``edit`` to the block ``pick`` finds in the first record that has one; the
    line number edited."""
    lines = path.read_bytes().splitlines(keepends=True)
    for n, raw in enumerate(lines, 1):
        record = orjson.loads(raw)
        target = pick(record)
        if target is not None:
            edit(target)
            lines[n - 1] = orjson.dumps(record) + b"\n"
            path.write_bytes(b"".join(lines))
            return n
    raise AssertionError("no block to edit")


def _accepted(record: dict[str, Any]) -> dict[str, Any] | None:
    return record["data"] if record["event_type"] == "block_accepted" else None


def _queued_in_checkpoint(record: dict[str, Any]) -> dict[str, Any] | None:
    queue = record["data"].get("queue") if record["event_type"] == "checkpoint" else None
    return queue[0] if queue else None


def _in_flight_in_checkpoint(record: dict[str, Any]) -> dict[str, Any] | None:
    flight = record["data"].get("flight") if record["event_type"] == "checkpoint" else None
    return flight["block"] if flight else None


def _journal(tmp: Path, where: str) -> tuple[Path, Callable[..., Any], str]:
    """A journal whose block ``where`` says is there; the file to edit, the picker, and
    the path prefix the reader names."""
    if where == "block_accepted":
        queued_journal(tmp)
        return tmp / "execution_manager_events.jsonl", _accepted, "$.data"
    if where == "checkpoint queue":
        queued_journal(tmp)
    else:
        crashed_in(tmp, "routing")
    em, el = manager(tmp)
    em.recover()  # a new file, starting with a checkpoint that holds the blocks
    el.close()
    newest = journal_files(tmp)[-1]
    if where == "checkpoint queue":
        return newest, _queued_in_checkpoint, "$.data.queue[0]"
    return newest, _in_flight_in_checkpoint, "$.data.flight.block"


@pytest.mark.parametrize("where", ["block_accepted", "checkpoint queue", "checkpoint flight"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_every_reader_refuses_a_block_the_boundary_refuses(tmp_path: Path, where: str,
                                                             edit: str) -> None:
    """A block a journal holds that the boundary's rules refuse: check FAILED, status,
    recover() and read_journal EXEC-013, each naming ``file:line`` and the field."""
    fn, field = EDITS[edit]
    path, pick, prefix = _journal(tmp_path, where)
    line = _edit(path, pick, fn)
    where_ = f"{path}:{line}:"
    named = f"@ {prefix}.{field}"

    report = check_journal(tmp_path)
    assert not report.ok
    assert any(p.startswith(where_) and named in p for p in report.problems), report.problems
    with pytest.raises(JournalCorruptError) as caught:
        list(read_journal(tmp_path))
    assert caught.value.error_code == "EXEC-013"
    assert str(caught.value).count(where_) == 1 and named in str(caught.value)
    with pytest.raises(StatusUnreadable) as unreadable:
        read_status(tmp_path)
    assert where_ in str(unreadable.value) and named in str(unreadable.value)
    em, el = manager(tmp_path)
    try:
        with pytest.raises(JournalCorruptError) as caught:
            em.recover()
        assert caught.value.error_code == "EXEC-013" and named in str(caught.value)
        assert where_ in str(caught.value)
    finally:
        el.close()
    assert main(["check", str(tmp_path)]) == 1
    assert main(["status", str(tmp_path)]) == 2


def test_the_review_repro_is_refused(tmp_path: Path) -> None:
    """The review's repro (02): the three edits at once; check is no longer OK and the venue
    is never handed the block."""
    queued_journal(tmp_path, ran=())
    path = tmp_path / "execution_manager_events.jsonl"

    def all_three(b: dict[str, Any]) -> None:
        b["instructions"] = [{"token": "ETH", "amount": {"__float__": "NaN"}}]
        b["priority"] = "x"
        b["action"] = "buy\x1b[2J"

    _edit(path, _accepted, all_three)
    assert not check_journal(tmp_path).ok
    em, el = manager(tmp_path)
    try:
        with pytest.raises(JournalCorruptError, match="EXEC-013"):
            em.recover()
    finally:
        el.close()


def test_valid_blocks_of_every_journal_form_still_read(tmp_path: Path) -> None:
    """What the writer writes reads back: decimals, integers beyond 64 bits, a priority
    beyond 64 bits, nested instructions (no false refusal)."""
    from decimal import Decimal

    em, el = manager(tmp_path)
    em.execute_instruction_blocks(T(0), [
        {"block_id": "a", "action": "trade", "priority": 10**30,
         "instructions": [{"token": "ETH", "amount": Decimal("1.5"),
                           "legs": [{"n": 10**25}], "meta": {"__int__": "x"}}]}])
    el.close()
    assert check_journal(tmp_path).ok
    em, el = manager(tmp_path)
    assert em.recover().queued == ("a",)
    el.close()
    assert check_journal(tmp_path).ok
