"""One reader, one verdict: a journal the manager writes is always one its own readers read.

The reader bounds every text field (:mod:`fsm_exec.core.limits`, the one place both sides
take their bounds from); the manager shortens free text it did not choose (a venue's error
page, an exception's message or type name) after redacting it, with a visible marker, and
the boundary refuses what is the user's own (an ``action``, a cancel's ``reason``) when it
is longer. The property: any text any collaborator raises or the user gives ends in a
journal that ``check``, ``status`` and ``recover()`` all read.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm_exec import (
    ExecutionRejected,
    InstructionBlock,
    InvalidArgumentError,
    InvalidBlockError,
    check_journal,
)
from fsm_exec.boundary.blocks import check_block
from fsm_exec.cli.main import main
from fsm_exec.core.limits import MAX_NAME, MAX_TEXT, fit_text, too_long
from fsm_exec.journal.reader import read_journal
from fsm_exec.sim.venues import SimPositionHandler, SimVenue
from fsm_exec.tools.status import read_status

from journals import manager, snapshot
from kit import T, block, blocks

#: Texts of every size around the bound: short, just under, just over, far over.
TEXTS = st.builds(lambda piece, n: (piece * n)[: max(n, 1) * len(piece)],
                  st.text(min_size=1, max_size=8),
                  st.sampled_from([1, 3, MAX_TEXT // 8, MAX_TEXT - 1, MAX_TEXT, MAX_TEXT + 1,
                                   70_000, 3 * MAX_TEXT]))
#: Where a collaborator's text enters the manager.
WHERE = ("route", "rejected", "query", "positions", "reconciliation", "type_name")


def _raiser(where: str, text: str) -> type[BaseException]:
    if where == "rejected":
        return ExecutionRejected
    if where == "type_name":  # a collaborator's own exception class, named at will
        name = "".join(c for c in text if c.isidentifier()) or "E"
        return type((name * (MAX_NAME // len(name) + 2))[: MAX_NAME + 50], (Exception,), {})
    return ConnectionError


class _Venue(SimVenue):
    def __init__(self, where: str, text: str) -> None:
        super().__init__()
        self.where, self.text = where, text

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        if self.where in ("route", "rejected", "type_name", "query"):
            raise _raiser(self.where, self.text)(self.text)
        return super().route_instruction(timestamp, block)

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> Any:
        if self.where == "query":
            raise TimeoutError(self.text)
        return None


class _Positions(SimPositionHandler):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        raise ValueError(self.text)


class _Reconciliation:
    def __init__(self, text: str) -> None:
        self.text = text

    @property
    def reconciliation_status(self) -> str:
        raise RuntimeError(self.text)


def _readable(log_dir: Path) -> None:
    """Every reader reads the journal: check, status, recover() on a new manager."""
    report = check_journal(log_dir)
    assert report.ok, report.summary()
    read_status(log_dir)
    em, el = manager(log_dir)
    try:
        em.recover()
    finally:
        el.close()


def _run(log_dir: Path, where: str, text: str) -> None:
    kwargs: dict[str, Any] = {"venue": _Venue(where, text)}
    if where == "positions":
        kwargs["positions"] = _Positions(text)
    elif where == "reconciliation":
        kwargs["rc"] = _Reconciliation(text)
    em, el = manager(log_dir, max_retries=1, not_found_min_age_seconds=0,
                     not_found_interval_seconds=0, **kwargs)
    try:
        for i in range(3):
            with contextlib.suppress(Exception):  # a halt: the journal is what counts
                em.update_state(T(i), "strategy_manager", blocks("b0") if i == 0 else None)
    finally:
        el.close()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
@given(where=st.sampled_from(WHERE), text=TEXTS)
def test_any_collaborator_text_ends_in_a_journal_every_reader_reads(
        where: str, text: str) -> None:
    """Whatever text a venue, a query, the position handler or the reconciliation component
    raises (an exchange's HTML error page; an exception type's own name), the journal the
    manager writes reads back: check OK, status and recover() read it."""
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "j"
        _run(log_dir, where, text)
        _readable(log_dir)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
@given(action=TEXTS, reason=TEXTS)
def test_any_text_the_user_gives_is_refused_or_journaled_readably(
        action: str, reason: str) -> None:
    """An ``action`` or a cancel ``reason`` the journal could not hold is refused (EXEC-004
    naming the block and the field; InvalidArgumentError), nothing changed; anything else is
    journaled, readably."""
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "j"
        submitted = {**block("a"), "action": action}
        problems = check_block(submitted)
        if len(action) > MAX_TEXT and action.strip():  # (a blank one is refused as blank)
            assert [p for p, why in problems if "at most 65536 characters" in why] == [
                "action"]
        em, el = manager(log_dir)
        try:
            if problems:
                with pytest.raises(InvalidBlockError):
                    em.execute_instruction_blocks(T(0), [submitted, block("b")])
                assert em.queued_block_ids == ()
                em.execute_instruction_blocks(T(0), blocks("a", "b"))
            else:
                em.execute_instruction_blocks(T(0), [submitted, block("b")])
            if len(reason) > MAX_TEXT or not reason.strip():
                with pytest.raises(InvalidArgumentError):
                    em.cancel(T(1), ["b"], reason=reason)
                assert em.queued_block_ids == ("a", "b")
            else:
                em.cancel(T(1), ["b"], reason=reason)
        finally:
            el.close()
        _readable(log_dir)


def test_a_long_venue_error_keeps_its_head_and_says_it_was_cut(tmp_path: Path) -> None:
    """The repro of the review's finding 1: a venue's 70,000-character error page is
    journaled shortened (its head, then ``... [truncated, N characters]``), and the
    manager restarts on the journal (it failed EXEC-013 before)."""
    page = "502 Bad Gateway: <html>" + "x" * 70_000 + "</html>"

    class Venue(SimVenue):
        calls = 0

        def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
            Venue.calls += 1
            if Venue.calls == 1:
                raise ConnectionError(page)
            return super().route_instruction(timestamp, block)

        def query_execution(self, timestamp: Any, block: InstructionBlock) -> Any:
            return None

    em, el = manager(tmp_path, venue=Venue(), not_found_min_age_seconds=0,
                     not_found_interval_seconds=0)
    st_ = em.update_state(T(0), "strategy_manager", blocks("b1"))
    assert st_["blocks_executed"] == 1 and st_["blocks_retried"] == 1
    el.close()
    reasons = [r.data["reason"] for r in read_journal(tmp_path)
               if r.event_type == "block_transition" and r.data.get("reason")]
    assert reasons and len(reasons[0]) == MAX_TEXT
    assert reasons[0].startswith("error: ConnectionError: 502 Bad Gateway: <html>xxx")
    whole = "error: ConnectionError: " + page
    assert reasons[0].endswith(f"... [truncated, {len(whole)} characters]")
    em2, el2 = manager(tmp_path)
    em2.recover()
    el2.close()


def test_an_action_over_the_bound_is_refused_naming_the_block_and_field(
        tmp_path: Path) -> None:
    """An ``action`` of 70,000 characters (the boundary took it before): EXEC-004 naming the
    block and ``action``; nothing is accepted, the journal stays readable."""
    em, el = manager(tmp_path)
    with pytest.raises(InvalidBlockError) as caught:
        em.execute_instruction_blocks(T(0), [{**block("long"), "action": "b" * 70_000}])
    assert caught.value.error_code == "EXEC-004"
    [problem] = caught.value.problems
    assert (problem.block_id, problem.field) == ("long", "action")
    assert "at most 65536 characters" in problem.reason and "70000" in problem.reason
    assert em.queued_block_ids == ()
    el.close()
    _readable(tmp_path)


def test_a_cancel_reason_over_the_bound_is_refused(tmp_path: Path) -> None:
    """em.cancel and ``fsm-exec cancel --reason`` refuse a reason the journal could not
    hold (it failed EXEC-013 on the next start before); nothing is cancelled."""
    em, el = manager(tmp_path)
    em.execute_instruction_blocks(T(0), blocks("a", "b"))
    with pytest.raises(InvalidArgumentError, match="at most 65536 characters"):
        em.cancel(T(1), ["a"], reason="r" * (MAX_TEXT + 1))
    assert em.queued_block_ids == ("a", "b")
    el.close()
    assert main(["cancel", str(tmp_path), "a", "--reason", "r" * (MAX_TEXT + 1)]) == 2
    _readable(tmp_path)
    em, el = manager(tmp_path)
    assert em.recover().queued == ("a", "b")
    el.close()


def test_a_huge_batch_error_is_journaled_readably(tmp_path: Path) -> None:
    """A batch whose every problem makes an error message longer than the bound: the
    ``error`` record holds it shortened, readably."""
    em, el = manager(tmp_path)
    bad = [{**block(f"b{i}"), "priority": "x" * 200} for i in range(2000)]
    with pytest.raises(InvalidBlockError):
        em.execute_instruction_blocks(T(0), bad)
    el.close()
    messages = [r.data["error_message"] for r in read_journal(tmp_path)
                if r.event_type == "error"]
    assert messages and all(len(m) <= MAX_TEXT for m in messages)
    _readable(tmp_path)


def test_fit_text_marks_what_it_cuts() -> None:
    """``fit_text`` keeps a text that fits; else its head and the marker, at the bound."""
    assert fit_text("short") == "short"
    cut = fit_text("y" * 100, 60)
    assert len(cut) == 60 and cut.endswith("... [truncated, 100 characters]")
    assert cut.startswith("y" * 29)
    assert fit_text("y" * 100, 5) == "... ["
    assert too_long("x" * MAX_TEXT) is None and too_long("x" * (MAX_TEXT + 1)) is not None


def test_the_reader_and_the_writer_take_one_bound() -> None:
    """The schema's bounds are core.limits' (one place, not two numbers that agree)."""
    from fsm_exec.journal import schema

    assert schema._MAX_TEXT is MAX_TEXT and schema._MAX_NAME is MAX_NAME



def test_a_decimal_longer_than_the_reader_reads_is_refused_at_the_boundary(
        tmp_path: Path) -> None:
    """A Decimal amount of 20,000 digits was accepted and journaled as a ``__decimal__``
    the reader refuses (the journal unreadable): EXEC-004 naming the field, nothing
    queued; the codec's bound is core.limits' too."""
    from decimal import Decimal

    from fsm_exec.core.limits import MAX_DECIMAL_TEXT
    from fsm_exec.journal import codec

    assert codec._MAX_DECIMAL_TEXT is MAX_DECIMAL_TEXT
    em, el = manager(tmp_path)
    huge = Decimal("1." + "0" * 20_000)
    with pytest.raises(InvalidBlockError) as caught:
        em.execute_instruction_blocks(T(0), [block("a", amount=huge)])
    [problem] = caught.value.problems
    assert problem.field == "instructions[0].amount" and "20002 characters" in problem.reason
    em.execute_instruction_blocks(T(0), [block("b", amount=Decimal("1." + "0" * 9_000))])
    el.close()
    _readable(tmp_path)


def _noted(block_id: str, size: int) -> dict[str, Any]:
    b = block(block_id)
    b["instructions"][0]["note"] = "n" * size
    return b


def test_an_offline_cancel_whose_recovery_fails_is_refused_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A journal whose recovery cannot write its checkpoint (here: a line bound smaller than
    the queue's checkpoint) is refused by the offline cancel, saying why, exit status 2
    (before: a raw traceback)."""
    from fsm_exec.journal import writer

    em, _ = manager(tmp_path)
    em.execute_instruction_blocks(T(0), [_noted(f"b{i}", 600) for i in range(5)])
    em.close()
    monkeypatch.setattr(writer, "MAX_LINE_BYTES", 2048)
    code = main(["cancel", str(tmp_path), "--all", "--reason", "drain"])
    assert code == 2
    assert "the journal cannot be recovered here" in capsys.readouterr().err


def _small_lines(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """A journal line bound of ``limit`` bytes for the writer, every reader and the room a
    manager made after this leaves its queue (the real one, 256 MiB, would need blocks
    of that size)."""
    from fsm_exec.journal import codec, files, reader, writer

    for module in (codec, files, reader, writer):
        monkeypatch.setattr(module, "MAX_LINE_BYTES", limit)


def test_a_queue_no_checkpoint_can_hold_is_refused_when_the_batch_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that would take the queue (with the block in flight and a full duplicate
    window) past what a checkpoint line holds is refused whole when it is given (EXEC-003,
    naming the bytes): nothing queued, the manager not halted, and the journal still
    recovers. Before: accepted; the next checkpoint was longer than a journal line, the
    writer refused it, the manager halted (EXEC-009), and no restart could write its first
    checkpoint, so the operator's offline cancel was refused too."""
    from fsm_exec import QueueFullError

    _small_lines(monkeypatch, 64 * 1024)
    em, el = manager(tmp_path, duplicate_window=10)
    first = [_noted(f"a{i}", 10_000) for i in range(5)]
    em.execute_instruction_blocks(T(0), first)  # about 50 KB: it fits
    with pytest.raises(QueueFullError, match="bytes") as caught:
        em.execute_instruction_blocks(T(1), [block("b0"), _noted("b1", 20_000)])
    err = caught.value
    assert err.error_code == "EXEC-003" and err.batch_size == 2
    assert err.max_queue_bytes is not None and err.queue_bytes is not None
    assert err.batch_bytes is not None and err.queue_bytes + err.batch_bytes > err.max_queue_bytes
    assert "duplicate_window" in str(err)
    assert not em.halted and em.block_state("b0") is None and em.block_state("b1") is None
    em.execute_instruction_blocks(T(2), [block("c")])  # a small one still fits
    em.close()
    el.close()
    again, el = manager(tmp_path, duplicate_window=10)  # a restart counts what it recovers
    again.recover(tmp_path)
    with pytest.raises(QueueFullError, match="bytes"):
        again.execute_instruction_blocks(T(3), [_noted("d", 20_000)])
    again.close()
    el.close()
    assert main(["cancel", str(tmp_path), "--all", "--reason", "drain"]) == 0
    assert check_journal(tmp_path).ok


def test_one_block_no_checkpoint_can_hold_is_refused_not_a_halt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block larger than a checkpoint holds, even on an empty queue, is refused with the
    batch (EXEC-003, saying it can never be queued), not written and then a halt (EXEC-009:
    the writer refused its acceptance record, longer than a line)."""
    from fsm_exec import QueueFullError

    _small_lines(monkeypatch, 64 * 1024)
    em, el = manager(tmp_path, duplicate_window=10)
    with pytest.raises(QueueFullError, match="never") as caught:
        em.execute_instruction_blocks(T(0), [_noted("huge", 70_000)])
    assert caught.value.queue_bytes == 0
    assert not em.halted and em.block_state("huge") is None
    em.execute_instruction_blocks(T(1), [block("small")])
    em.update_state(T(2), "strategy_manager")
    assert em.block_state("small") is not None
    el.close()


_GIVE = st.tuples(st.just("give"), st.lists(
    st.one_of(st.sampled_from([0, 9_000, 17_000, 24_000]), st.integers(0, 24_000)),
    min_size=1, max_size=3))
_STEPS = st.lists(st.one_of(_GIVE, _GIVE, _GIVE, st.tuples(
    st.sampled_from(["run", "cancel", "restart"]), st.just([]))), min_size=4, max_size=16)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_every_checkpoint_of_a_queue_it_accepted_is_written(
        monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, list[int]]]) -> None:
    """Whatever blocks are given (their sizes, how many at a time), run, cancelled, or
    recovered after a restart, with a checkpoint due after every record and a duplicate
    window of the longest ids: each batch is either queued or refused whole (EXEC-003),
    whose bytes are exactly what the journal's blocks held take in a checkpoint; no
    checkpoint is ever longer than a line (no EXEC-009, no halt); the journal reads whole."""
    from fsm_exec import QueueFullError
    from fsm_exec.journal.flight import block_size
    from fsm_exec.journal.fold import replay

    _small_lines(monkeypatch, 64 * 1024)
    with tempfile.TemporaryDirectory() as d:
        em, el = manager(Path(d), duplicate_window=10, checkpoint_every=1)
        for k, (step, sizes) in enumerate(steps):
            if step == "give":
                batch = [_noted(f"{k:0>32}-{i:0>31}", n) for i, n in enumerate(sizes)]
                refused: QueueFullError | None = None
                try:
                    em.execute_instruction_blocks(T(k), batch)
                except QueueFullError as err:
                    refused = err
                if refused is not None:
                    assert all(em.block_state(b["block_id"]) is None for b in batch)
                    held = replay(read_journal(Path(d), "ExecutionManager"))
                    blocks = [*held.queue.values(),
                              *((held.flight.block,) if held.flight else ())]
                    assert refused.queue_bytes == sum(map(block_size, blocks))
            elif step == "run":
                em.update_state(T(k), "strategy_manager")
            elif step == "cancel" and em.queued_block_ids:
                em.cancel(T(k), em.queued_block_ids[-1:], reason="test")
            elif step == "restart":
                em.close()
                el.close()
                em, el = manager(Path(d), duplicate_window=10, checkpoint_every=1)
                em.recover()
            assert not em.halted
        em.update_state(T(len(steps)), "strategy_manager")
        assert not em.halted
        em.close()
        el.close()
        assert check_journal(Path(d)).ok


def test_a_restart_whose_window_leaves_no_room_for_the_queue_is_refused_naming_one_that_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal whose queue was accepted beside a smaller duplicate window, recovered with
    a larger one that leaves its blocks no room in a checkpoint, is refused at recover()
    (ConfigError, naming the largest window that fits, and the offline cancel), before
    anything is written; the window it names recovers, and the offline cancel drains it.
    Before: recovered, and as the window filled a checkpoint outgrew a journal line: the
    manager halted (EXEC-009) and no restart could write its first checkpoint."""
    from fsm_exec import ConfigError, QueueFullError

    _small_lines(monkeypatch, 64 * 1024)
    em, el = manager(tmp_path, duplicate_window=1)
    for i in range(1_000):  # filled to the room a window of 1 leaves
        try:
            em.execute_instruction_blocks(T(0), [_noted(f"{i:0>64}", 200)])
        except QueueFullError:
            break
    else:
        pytest.fail("the queue never filled")
    queued = len(em.queued_block_ids)
    em.close()
    el.close()
    before = snapshot(tmp_path)
    again, el = manager(tmp_path, duplicate_window=200)
    with pytest.raises(ConfigError, match=r"duplicate_window at most (\d+)") as caught:
        again.recover()
    el.close()
    assert snapshot(tmp_path) == before  # nothing written
    fits = int(caught.value.message.split("duplicate_window at most ")[1].split()[0])
    assert 1 <= fits < 200
    ok, el = manager(tmp_path, duplicate_window=fits, checkpoint_every=1)
    assert len(ok.recover().queued) == queued
    for k in range(queued):  # the window fills as the queue drains: every checkpoint fits
        ok.update_state(T(1 + k), "strategy_manager")
    assert not ok.halted and ok.get_execution_status()["blocks_executed"] == queued
    ok.close()
    el.close()
    assert check_journal(tmp_path).ok


def test_a_large_venue_answer_beside_a_short_queue_is_journaled_not_a_halt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A venue's answer larger than a 32nd of a line, with room in the checkpoint for it, is
    journaled and the block settles: no halt (a cap on such answers halted the manager,
    retired it, and every restart routed the block again)."""

    class Verbose(SimVenue):
        def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
            return {"ETH": 1.0, "fills": "f" * 3_000}

    _small_lines(monkeypatch, 64 * 1024)
    em, el = manager(tmp_path, venue=Verbose(), duplicate_window=10, checkpoint_every=1)
    em.execute_instruction_blocks(T(0), [_noted("a", 100)])
    em.update_state(T(1), "strategy_manager")
    assert not em.halted and not em.interrupted
    assert em.get_execution_status()["blocks_executed"] == 1
    el.close()
    assert check_journal(tmp_path).ok


def test_a_drained_queue_keeps_none_of_its_blocks_alive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks measured for the checkpoint's room (here: recovered, then run) are let go
    once nothing is held and the next batch is given (their measures pinned them all for
    the life of the manager)."""
    import gc

    _small_lines(monkeypatch, 64 * 1024)
    em, el = manager(tmp_path, duplicate_window=10)
    em.execute_instruction_blocks(T(0), [_noted(f"old{i}", 2_000) for i in range(5)])
    em.close()
    el.close()
    em, el = manager(tmp_path, duplicate_window=10)
    em.recover()
    em.update_state(T(1), "strategy_manager")  # runs all five
    em.execute_instruction_blocks(T(2), [block("new")])
    gc.collect()
    kept = [o.block_id for o in gc.get_objects()
            if isinstance(o, InstructionBlock) and o.block_id.startswith("old")]
    assert kept in ([], ["old4"])  # (the last one run: the manager's last flight)
    el.close()
