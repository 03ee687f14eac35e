"""``fsm-exec cancel``: the operator's cancel for a stopped manager; refused (nothing
changed) while another process holds the journal or when an id is not queued; and what it
cancels never runs, whatever record a crash cuts the journal at."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import BlockState, EventLogger, ExecutionManager, check_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.reader import read_journal
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
from fsm_exec.tools.cancel import RefusingCollaborator

from journals import (
    Reconciled,
    crashed_in,
    halted_journal,
    lines_of,
    manager,
    other_process,
    queued_journal,
    snapshot,
)
from kit import T, blocks


def cancel(log_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["cancel", str(log_dir), *args], out=out), out.getvalue()


def run_after(log_dir: Path) -> tuple[ExecutionManager, SimVenue]:
    """Restart the manager on ``log_dir`` with a venue that records every route, resume it
    and run everything it has."""
    venue = SimVenue()
    clock = FakeClock()
    el = EventLogger(log_dir, "live")
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), venue,
                          Reconciled(), event_logger=el, clock=clock, sleep=clock.sleep)
    em.recover()
    em.update_state(T(100), "manual")
    el.close()
    return em, venue


def test_cancel_all_of_a_halted_manager_and_they_never_run(tmp_path: Path) -> None:
    """--all cancels every queued block of a halted, stopped manager; it stays halted; after
    a restart and a manual resume none of them is routed, and the journal checks."""
    halted_journal(tmp_path, "EXEC-002", ("a", "b", "c"))
    code, out = cancel(tmp_path, "--all", "--reason", "positions reconciled by hand")
    assert code == 0
    assert out.splitlines() == [
        f"{tmp_path}: cancelled 2 blocks (reason: positions reconciled by hand): b, c",
        "  still queued: none",
        "  the manager stays halted (EXEC-002): resume it from the strategy process with "
        "update_state(ts, 'manual')"]
    moves = [r.data for r in read_journal(tmp_path) if r.event_type == "block_transition"
             and r.data["trigger"] == "cancel"]
    assert [(m["block_id"], m["reason"]) for m in moves] == [
        ("b", "positions reconciled by hand"), ("c", "positions reconciled by hand")]
    em, venue = run_after(tmp_path)
    assert venue.route_calls == {}
    assert em.block_state("b") is BlockState.CANCELLED
    assert em.get_execution_status()["blocks_cancelled"] == 2
    assert check_journal(tmp_path).ok


def test_cancel_named_blocks_leaves_the_others_queued(tmp_path: Path) -> None:
    """Named ids are cancelled; the rest stay queued and run, in order, after a restart."""
    queued_journal(tmp_path, ran=("a",), queued=("b", "c", "d"))
    code, out = cancel(tmp_path, "c", "--reason", "stale signal")
    assert code == 0 and "  still queued: b, d\n" in out
    _, venue = run_after(tmp_path)
    assert venue.execution_order == ["b", "d"]


@pytest.mark.parametrize(("ids", "problem"), [
    (["b", "zz"], "'zz': unknown block"),
    (["b", "a"], "'a': is success (only queued blocks can be cancelled)"),
    (["b", "b"], "'b': named twice"),
])
def test_an_id_that_is_not_queued_refuses_the_whole_call(
        ids: list[str], problem: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown, finished or repeated id is bad input: exit 2, every problem named, and
    not a byte of the journal changes (no restart records either)."""
    queued_journal(tmp_path, ran=("a",), queued=("b", "c"))
    before = snapshot(tmp_path)
    assert cancel(tmp_path, *ids, "--reason", "x")[0] == 2
    err = capsys.readouterr().err
    assert "cancel refused, nothing cancelled" in err and problem in err
    assert snapshot(tmp_path) == before


def test_a_block_in_flight_cannot_be_cancelled(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The block left in flight by a crash is named with its state and refused; cancelling
    the queue behind it works and leaves it in flight for recovery."""
    crashed_in(tmp_path, "routing", ("a", "b"))
    assert cancel(tmp_path, "a", "--reason", "x")[0] == 2
    assert "'a': is routing (only queued blocks can be cancelled)" in capsys.readouterr().err
    code, out = cancel(tmp_path, "--all", "--reason", "x")
    assert code == 0 and "cancelled 1 block (reason: x): b" in out
    assert "  in flight: a (settled by recover()" in out
    em, venue = run_after(tmp_path)
    assert venue.route_calls == {"a": 1} and em.block_state("a") is BlockState.SUCCESS


def test_nothing_queued_is_not_an_error_and_writes_nothing(tmp_path: Path) -> None:
    """--all with an empty queue says so, exits 0, and writes nothing."""
    queued_journal(tmp_path, ran=("a",), queued=())
    before = snapshot(tmp_path)
    assert cancel(tmp_path, "--all", "--reason", "x") == (
        0, f"{tmp_path}: nothing queued, nothing cancelled\n  still queued: none\n")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args", [
    ["--reason", "x"], ["b", "--all", "--reason", "x"], ["b", "--reason", "  "], ["b"]])
def test_arguments_are_checked(args: list[str], tmp_path: Path) -> None:
    """Ids or --all (exactly one of them) and a non-empty --reason, else exit 2 with nothing
    changed."""
    queued_journal(tmp_path)
    before = snapshot(tmp_path)
    assert cancel(tmp_path, *args)[0] == 2
    assert snapshot(tmp_path) == before


def test_no_journal_or_a_corrupt_one_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A directory without a journal (nothing is created in it) or with a corrupt line
    (named by file:line) is exit 2."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cancel(empty, "--all", "--reason", "x")[0] == 2
    assert "holds no ExecutionManager journal" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
    log = tmp_path / "log"
    queued_journal(log)
    path = log / "execution_manager_events.jsonl"
    lines = lines_of(log)
    path.write_bytes(b"".join([*lines[:2], b"garbage\n", *lines[2:]]))
    before = snapshot(log)
    assert cancel(log, "--all", "--reason", "x")[0] == 2
    assert f"{path}:3: not valid JSON" in capsys.readouterr().err
    assert snapshot(log) == before


def test_refused_while_another_process_holds_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second process holding an EventLogger on the directory: exit 2 naming its pid,
    and nothing changes; once it is gone, the cancel goes through."""
    queued_journal(tmp_path)
    with other_process(tmp_path) as proc:
        before = snapshot(tmp_path)
        assert cancel(tmp_path, "--all", "--reason", "x")[0] == 2
        err = capsys.readouterr().err
        assert f"is in use by process {proc.pid}" in err and "Nothing was cancelled" in err
        assert snapshot(tmp_path) == before
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 0


def test_refused_while_this_process_holds_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manager in this very process holds the directory: refused the same way."""
    queued_journal(tmp_path)
    el = EventLogger(tmp_path, "live")
    try:
        assert cancel(tmp_path, "--all", "--reason", "x")[0] == 2
    finally:
        el.close()
    assert "in use by process" in capsys.readouterr().err


def test_the_duplicate_window_of_the_journal_is_kept(tmp_path: Path) -> None:
    """The checkpoint the cancel writes keeps the journal's duplicate window, not the
    default one."""
    em, el = manager(tmp_path, duplicate_window=5)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    em.execute_instruction_blocks(T(0), blocks("b"))
    el.close()
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 0
    checkpoints = [r.data for r in read_journal(tmp_path) if r.event_type == "checkpoint"]
    assert [c["duplicate_window"] for c in checkpoints] == [5, 5]
    assert checkpoints[-1]["finished"] == [["a", "success"]]


def test_its_collaborators_refuse_any_use() -> None:
    """The stand-in collaborators raise on every call, naming their role."""
    c = RefusingCollaborator("venue")
    calls: list[Callable[[], object]] = [
        lambda: c.route_instruction(0, None), lambda: c.query_execution(0, None),
        lambda: c.update_state(0, "x", {}), lambda: c.get_data(0),
        lambda: c.reconciliation_status]
    for call in calls:
        with pytest.raises(RuntimeError, match="never uses the venue"):
            call()


def test_help_says_what_cancel_does_and_its_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    """cancel --help says it is for a stopped manager, that there is no resume, and lists
    its exit codes."""
    assert main(["cancel", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("manager that is not running", "refused while a manager holds",
                   "there is no resume command", "0 cancelled", "2 refused, nothing changed"):
        assert phrase in text


# ------------------------------------------------------------------------ across crashes


def journal_lines(log_dir: Path) -> list[bytes]:
    """Every line of the manager's journal files, in seq order."""
    from fsm_exec.journal.files import journal_files

    return [line for p in journal_files(log_dir)
            for line in p.read_bytes().splitlines(keepends=True)]


def cut(lines: list[bytes], k: int, target: Path, *, torn: bool = False) -> None:
    """A journal of the first ``k`` lines (and half of the next one, ``torn``)."""
    target.mkdir()
    data = b"".join(lines[:k])
    if torn and k < len(lines):
        data += lines[k][: len(lines[k]) // 2]
    (target / "execution_manager_events.jsonl").write_bytes(data)


def source_journal(log_dir: Path) -> None:
    """a succeeds; b fails reconciliation and halts the manager; c is queued behind it, d
    and e in a second batch, f in a third (submitted while halted)."""
    from fsm_exec.sim.venues import SimReconciliation

    rc = SimReconciliation(None, [("ok", 0), ("fail", 0)])
    em, el = manager(log_dir, rc=rc, positions=SimPositionHandler(rc))
    em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    em.execute_instruction_blocks(T(1), blocks("d", "e"))
    em.update_state(T(2), "strategy_manager", blocks("f"))
    el.close()


@pytest.mark.parametrize("torn", [False, True], ids=["whole", "torn"])
def test_cancelled_blocks_never_run_whatever_record_the_journal_was_cut_at(
        torn: bool, tmp_path: Path) -> None:
    """Cut the journal after every record k (a crash there; also with half of record k+1):
    cancel its whole queue from the shell, restart and resume: no cancelled block is ever
    routed, every accepted block is accounted for, and the journal checks."""
    source_journal(tmp_path / "source")
    lines = journal_lines(tmp_path / "source")
    assert len(lines) > 20
    for k in range(1, len(lines) + 1):
        d = tmp_path / f"cut{k}"
        cut(lines, k, d, torn=torn)
        code, out = cancel(d, "--all", "--reason", "crash drill")
        assert code == 0, (k, out)
        cancelled = [r.data["block_id"] for r in read_journal(d)
                     if r.event_type == "block_transition" and r.data["trigger"] == "cancel"]
        em, venue = run_after(d)
        assert not set(cancelled) & set(venue.route_calls), k
        for block_id in cancelled:
            assert em.block_state(block_id) is BlockState.CANCELLED, (k, block_id)
        s = em.get_execution_status()
        assert s["queue_length"] == 0 and s["current_block"] is None, k
        assert s["blocks_accepted"] == (s["blocks_executed"] + s["blocks_failed"]
                                        + s["blocks_cancelled"]), k
        assert check_journal(d).ok, k
        shutil.rmtree(d)


def test_a_crash_inside_the_cancel_cancels_all_or_nothing(tmp_path: Path) -> None:
    """Cut the journal after each record the cancel itself wrote (its restart records and
    each cancelled block): a restart finds either every block cancelled or none, and those
    it finds cancelled never run."""
    queued_journal(tmp_path / "source", ran=("a",), queued=("b", "c", "d"))
    before = len(journal_lines(tmp_path / "source"))
    assert cancel(tmp_path / "source", "--all", "--reason", "x")[0] == 0
    lines = journal_lines(tmp_path / "source")
    kinds = [json.loads(line)["event_type"] for line in lines[before:]]
    assert kinds == ["checkpoint", "operator_action",
                     "block_transition", "block_transition", "block_transition"]
    outcomes = set()
    for k in range(before, len(lines) + 1):
        d = tmp_path / f"cut{k}"
        cut(lines, k, d)
        em, venue = run_after(d)
        states: Any = {b: em.block_state(b) for b in ("b", "c", "d")}
        gone = {b for b, s in states.items() if s is BlockState.CANCELLED}
        assert gone in (set(), {"b", "c", "d"}), (k, states)
        assert not gone & set(venue.route_calls), k
        outcomes.add(frozenset(gone))
        shutil.rmtree(d)
    assert outcomes == {frozenset(), frozenset({"b", "c", "d"})}


def test_a_bad_environment_is_refused_before_anything_is_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid BASIS_* variable is named (never its value) and nothing is written."""
    queued_journal(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setenv("BASIS_ENVIRONMENT", "not-an-environment")
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 2
    err = capsys.readouterr().err
    assert "BASIS_ENVIRONMENT" in err and "not-an-environment" not in err
    assert snapshot(tmp_path) == before


def test_a_lock_that_cannot_be_taken_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A lock file that cannot be opened (here a directory in its place) is exit 2, with
    the journal unchanged."""
    queued_journal(tmp_path)
    (tmp_path / ".lock").unlink()
    (tmp_path / ".lock").mkdir()
    before = snapshot(tmp_path)
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 2
    assert "cannot take the journal's lock" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_cancel_never_deletes_the_journals_history(tmp_path: Path) -> None:
    """A deployment that keeps everything (retention_days=None) has 40 days of files; the
    offline cancel does not know that retention, and deletes none of them."""
    import datetime as dt

    from journals import Reconciled as Done

    day = [dt.date(2025, 10, 1)]
    with EventLogger(tmp_path, "live", today=lambda: day[0], retention_days=None) as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Done(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        for i in range(40):
            day[0] = dt.date(2025, 10, 1) + dt.timedelta(days=i)
            em.update_state(T(i * 86400), "strategy_manager", blocks(f"b{i}"))
        em.execute_instruction_blocks(T(40 * 86400), blocks("q"))
    before = {p.name for p in tmp_path.glob("execution_manager_events.*.jsonl")}
    assert len(before) >= 39
    code, _ = cancel(tmp_path, "--all", "--reason", "stale")
    assert code == 0
    assert before <= {p.name for p in tmp_path.glob("execution_manager_events.*.jsonl")}
    assert check_journal(sorted(tmp_path.glob("execution_manager_events*.jsonl"))).ok
