"""The conformance check and the journal replay behind it, on golden journals and on
hand-made records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from fsm_exec import (
    BlockState,
    ExecutionManager,
    JournalRecord,
    check_journal,
    read_journal,
)
from fsm_exec.journal.fold import replay
from fsm_exec.journal.state import ReplayError, checkpoint_payload
from fsm_exec.sim.venues import SimPositionHandler, SimVenue, StaticDataProvider

from golden.make_golden import BAD, write_good
from kit import T

GOLDEN = Path(__file__).with_name("golden")
GOOD = {"backtest_clean": (3, 3, 0, None), "live_faults": (3, 2, 1, None),
        "crashed": (3, 1, 0, "c2"), "crashed_then_recovered": (3, 3, 0, None)}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_golden_journals_pass(name: str) -> None:
    """Journals written by real runs (a crashed one included) obey the lifecycle."""
    report = check_journal(GOLDEN / f"{name}.jsonl")
    accepted, executed, failed, in_doubt = GOOD[name]
    assert report.ok, report.problem
    assert (report.blocks_accepted, report.blocks_executed, report.blocks_failed,
            report.in_doubt) == (accepted, executed, failed, in_doubt)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_golden_journals_name_the_first_offending_line(name: str) -> None:
    """Each broken journal fails at exactly the line that was broken."""
    path = GOLDEN / f"{name}.jsonl"
    report = check_journal(path)
    assert not report.ok
    assert report.problem is not None
    assert report.problem.startswith(f"{path}:{BAD[name][1]}: ")


def test_golden_journals_are_what_the_code_writes(tmp_path: Path) -> None:
    """The journal format is a contract: today's code writes the golden journals byte for
    byte (regenerate with tests/golden/make_golden.py and review the diff to change it)."""
    made = write_good(tmp_path)
    assert set(made) == set(GOOD)
    for name, path in made.items():
        assert path.read_bytes() == (GOLDEN / f"{name}.jsonl").read_bytes(), name


def test_crashed_golden_journal_recovers() -> None:
    """The crashed golden journal recovers with its in-doubt block settled first."""
    venue = SimVenue()
    venue.executed["c2"] = {"block_id": "c2", "changes": {"ETH": 1.0}}
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), venue,
                          _Reconciled())
    report = em.recover(GOLDEN / "crashed.jsonl")
    assert (report.in_doubt, report.resolution, report.queued) == (
        "c2", "query_execution", ("c3",))
    em.update_state(T(0), "retry")
    assert venue.route_calls == {"c3": 1}
    assert em.block_state("c2") is BlockState.SUCCESS


def test_summary_reads_well() -> None:
    """The summary says OK or the problem, the counts, and a block left in doubt."""
    ok = check_journal(GOLDEN / "crashed.jsonl").summary()
    assert ok.startswith("OK") and "in doubt: block 'c2' (routing)" in ok
    bad = check_journal(GOLDEN / "bad_edge.jsonl").summary()
    assert bad.startswith("FAILED: ") and "not an edge" in bad


def test_check_reads_several_files_in_order() -> None:
    """Journals given as a list of files are read in that order."""
    records = list(read_journal([GOLDEN / "crashed.jsonl"]))
    assert check_journal(records).ok
    assert check_journal([GOLDEN / "backtest_clean.jsonl"]).ok


# ------------------------------------------------------------------------ replay rules


def rec(seq: int, kind: str, **data: Any) -> JournalRecord:
    return JournalRecord("mem", seq, seq, "t", kind, "ExecutionManager", data)


def journal(records: list[JournalRecord]) -> list[JournalRecord]:
    """``records`` after the checkpoint a journal starts with (an empty state), their seq
    shifted by one."""
    first = rec(1, "checkpoint", **checkpoint_payload(
        window=10_000, counters=dict.fromkeys(
            ("accepted", "executed", "failed", "cancelled", "retried", "starts"), 0),
        halted=False, halt_reason=None, queue=(), flight=None, finished=()))
    return [first, *(attrs.evolve(r, seq=r.seq + 1, line=r.line + 1) for r in records)]


def accepted(seq: int, block_id: str, i: int = 0, n: int = 1) -> JournalRecord:
    return rec(seq, "block_accepted", block_id=block_id, action="a", priority=1,
               instructions=[{"amount": 1}], batch_index=i, batch_size=n)


def move(seq: int, block_id: str, source: str, trigger: str, dest: str,
         **extra: Any) -> JournalRecord:
    return rec(seq, "block_transition", block_id=block_id, source=source, trigger=trigger,
               dest=dest, **{"attempt": 1, **extra})


START = ("queued", "start", "routing")
EXEC = ("routing", "executed", "pending_reconciliation")
DONE = ("pending_reconciliation", "reconciled", "success")


@pytest.mark.parametrize(("records", "message"), [
    ([move(1, "x", *START)], "never accepted"),
    ([accepted(1, "a"), accepted(2, "b"), move(3, "b", *START)], "out of order"),
    ([accepted(1, "a"), move(2, "a", *START), move(3, "a", *EXEC), move(4, "a", *DONE),
      move(5, "a", *EXEC)], "moved after it ended"),
    ([accepted(1, "a"), move(2, "a", *START), move(3, "a", *DONE)], "moved from"),
    ([accepted(1, "a"), accepted(2, "b"), move(3, "a", *START), move(4, "b", *EXEC)],
     "not in flight"),
    ([accepted(1, "a"), move(2, "a", *START),
      rec(3, "positions_updated", block_id="a", attempt=1)], "in state 'routing'"),
    ([accepted(1, "a"), rec(2, "execution_unresolved", block_id="a", attempt=2)],
     "not in flight"),
    ([accepted(1, "a"), move(2, "a", "queued", "start", "routing", attempt="1")],
     "attempt must be an integer"),
    ([accepted(1, "a"), accepted(2, "a")], "accepted twice"),
    ([accepted(1, "a", 1, 2)], "number 1 of a batch of 2"),
    ([rec(1, "block_accepted", batch_index=0, batch_size=1)], "without a block_id"),
    ([accepted(1, "a"), rec(2, "block_transition", source="queued", dest="routing",
                            trigger="start")], "without a block_id"),
    ([accepted(1, "a"), move(2, "a", "queued", "jump", "success")], "not an edge"),
])
def test_replay_refuses_what_breaks_the_rules(records: list[JournalRecord],
                                              message: str) -> None:
    """Each rule of the journal is enforced, at the record that breaks it."""
    records = journal(records)
    with pytest.raises(ReplayError, match=message) as info:
        replay(records)
    assert info.value.record is records[-1]


def test_replay_drops_an_unfinished_batch() -> None:
    """A batch cut short is dropped (even when a new batch starts after it)."""
    state = replay(journal([accepted(1, "a", 0, 2), accepted(2, "b", 0, 1),
                            accepted(3, "c", 0, 2)]))
    assert state.queued == ["b"] and state.dropped == ["a", "c"]
    assert state.records == 4


def test_a_record_of_another_component_in_the_journal_is_refused() -> None:
    """Each component has a file of its own: a record naming another component there is a
    damaged record, refused at that record (before, it was skipped: a damaged ``component``
    hid a move, and recovery routed the block again)."""
    records = journal([accepted(1, "a", 0, 1)])
    records.append(JournalRecord("mem", 3, 2, "t", "block_transition", "ExecutionManagEr",
                                 {"block_id": "a", "source": "queued", "dest": "routing",
                                  "trigger": "start", "attempt": 1}))
    with pytest.raises(ReplayError, match="a record of component 'ExecutionManagEr' in the "
                                          "journal of 'ExecutionManager'") as info:
        replay(records)
    assert info.value.record is records[-1]


def test_replay_tracks_halts_retries_and_resumes() -> None:
    """Halting, resuming and retries are replayed into the state recovery restores."""
    state = replay(journal([
        accepted(1, "a"), move(2, "a", *START),
        move(3, "a", "routing", "route_failed", "retrying", reason="error: x"),
        rec(4, "execution_unresolved", block_id="a", attempt=2),
        move(5, "a", "retrying", "fail", "failed", error_code="EXEC-007"),
        rec(6, "manager_halted", reason="EXEC-007", block_id="a"),
    ]))
    assert (state.halted, state.halt_reason, state.retried, state.failed) == (
        True, "EXEC-007", 1, 1)
    state = replay(journal([rec(1, "manager_halted", reason="EXEC-002"),
                            rec(2, "manager_resumed", reason="EXEC-002")]))
    assert not state.halted


class _Reconciled:
    reconciliation_status = "success"


# ------------------------------------------------ what is missing (the first-hour issue)


def _lines(name: str) -> list[bytes]:
    return (GOLDEN / f"{name}.jsonl").read_bytes().splitlines(keepends=True)


def _cli_check(path: Path) -> tuple[int, str]:
    import io

    from fsm_exec.cli.main import main

    out = io.StringIO()
    return main(["check", str(path)], out=out), out.getvalue()


def _two_days(tmp_path: Path) -> Path:
    """A live journal of two update_state calls: a state_update in the middle."""
    from fsm_exec import EventLogger

    class Reconciled:
        reconciliation_status = "success"

    log_dir = tmp_path / "run"
    with EventLogger(log_dir, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        em.update_state(T(0), "strategy_manager", [{"block_id": "a", "action": "trade",
                        "priority": 1, "instructions": [{"venue": "spot", "token": "ETH"}]}])
        em.update_state(T(60), "strategy_manager", [{"block_id": "b", "action": "trade",
                        "priority": 1, "instructions": [{"venue": "spot", "token": "ETH"}]}])
    return log_dir / "execution_manager_events.jsonl"


@pytest.mark.parametrize("kind", ["positions_updated", "state_update"])
def test_check_names_the_gap_a_deleted_line_leaves(tmp_path: Path, kind: str) -> None:
    """Deleting one record in the middle of a journal (a positions_updated in a golden
    journal, a state_update between two calls) is a gap in seq: check fails, exit 1,
    naming the file and the missing seq."""
    if kind == "positions_updated":
        lines = _lines("live_faults")
    else:
        lines = _two_days(tmp_path).read_bytes().splitlines(keepends=True)
    import orjson

    kinds = [orjson.loads(x)["event_type"] for x in lines]
    i = kinds.index(kind)
    assert i < len(lines) - 1  # in the middle: a record follows it
    missing = orjson.loads(lines[i])["seq"]
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"".join(lines[:i] + lines[i + 1:]))
    report = check_journal(path)
    assert not report.ok
    assert any(str(path) in p and str(missing) in p and "gap" in p for p in report.problems), \
        report.problems
    code, out = _cli_check(path)
    assert code == 1 and "gap" in out


@pytest.mark.parametrize("cut", ["half the last line", "the final newline"])
def test_check_notes_a_torn_or_unterminated_last_line(tmp_path: Path, cut: str) -> None:
    """A torn last line is what a kill mid-write leaves, and recovery sets it aside: a
    note naming ``path:line``, not a failure (one reader, one verdict; issue 25 item 8)."""
    lines = _lines("live_faults")
    last = lines[-1][: len(lines[-1]) // 2] if cut == "half the last line" else lines[-1][:-1]
    path = tmp_path / "torn.jsonl"
    path.write_bytes(b"".join(lines[:-1]) + last)
    report = check_journal(path)
    assert report.ok, report.problems
    assert any(f"{path}:{len(lines)}" in n and "torn" in n for n in report.notes), report.notes
    assert _cli_check(path)[0] == 0


def test_check_reports_a_torn_line_before_the_last_file(tmp_path: Path) -> None:
    """A torn line at the end of a file that is not the last one is no crash's doing (the
    writer sets a torn tail aside before it writes on): a problem."""
    lines = _lines("live_faults")
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(lines[:10]) + lines[10][:20])
    second.write_bytes(b"".join(lines[10:]))
    report = check_journal([first, second])
    assert not report.ok
    assert any(f"{first}:11" in p and "torn" in p for p in report.problems), report.problems


def test_check_reports_an_empty_journal_file(tmp_path: Path) -> None:
    path = tmp_path / "execution_manager_events.jsonl"
    path.write_bytes(b"")
    report = check_journal(path)
    assert not report.ok and "empty" in report.problems[0], report.problems
    assert _cli_check(path)[0] == 1


@pytest.mark.parametrize("name", sorted(GOOD))
def test_check_counts_what_recovery_counts(tmp_path: Path, name: str) -> None:
    """check's records, blocks and restarts agree with recover()'s RecoveryReport for the
    same journal."""
    report = check_journal(GOLDEN / f"{name}.jsonl")
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          SimReconciled())
    recovered = em.recover(GOLDEN / f"{name}.jsonl")
    assert (report.records, report.restarts, report.queued) == (
        recovered.records, recovered.restarts, tuple(recovered.queued))
    status = em.get_execution_status()
    assert report.blocks_accepted == status["blocks_accepted"]


class SimReconciled:
    reconciliation_status = "success"
