"""``fsm-exec run`` resumed from its journal (review findings 6 and 13): it skips every
block the journal ever accepted, not only those inside the duplicate window, and what it
says when stopped is what the journal says."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from fsm_exec import EventLogger, ExecutionManager, read_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.history import HistoryPrunedError, accepted_ids_in
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

from journals import Reconciled
from kit import T, block, blocks


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    return main([str(a) for a in argv], out=out), out.getvalue()


def blocks_file(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(json.dumps(block(i)) + "\n" for i in ids))
    return path


def accepted(log_dir: Path) -> Counter[str]:
    return Counter(r.data["block_id"] for r in read_journal(log_dir)
                   if r.event_type == "block_accepted")


def test_a_resume_skips_every_block_the_journal_holds_beyond_the_window(
        tmp_path: Path) -> None:
    """Review 6: with duplicate_window = 10, a resumed run used to start again every block
    that had left the window (2,191 of 3,000 in the review); now no id is accepted twice,
    and the blocks the journal does not hold yet are run."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"duplicate_window": 10}))
    out = tmp_path / "out"
    ids = [f"k{i}" for i in range(60)]
    first = blocks_file(tmp_path / "first.jsonl", ids[:40])  # the part that ran
    whole = blocks_file(tmp_path / "whole.jsonl", ids)
    assert cli("run", first, "--mode", "live", "--config", config, "--out", out)[0] == 0
    code, text = cli("run", whole, "--mode", "live", "--config", config, "--out", out)
    assert code == 0, text
    assert text.startswith("resuming from ")
    counts = accepted(out / "logs" / "events")
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def test_accepted_ids_fold_the_whole_history(tmp_path: Path) -> None:
    """accepted_ids_in: every id of every batch accepted whole, however long ago it
    finished (the duplicate window holds 2 of them)."""
    with EventLogger(tmp_path, "live") as log:
        em = ExecutionManager({"duplicate_window": 2}, StaticDataProvider(), "live",
                              SimPositionHandler(), SimVenue(), Reconciled(), event_logger=log)
        for i in range(6):
            em.update_state(T(i), "strategy_manager", blocks(f"a{i}", f"b{i}"))
        em.execute_instruction_blocks(T(9), blocks("q1", "q2"))
    assert accepted_ids_in(tmp_path) == {*(f"{x}{i}" for x in "ab" for i in range(6)),
                                         "q1", "q2"}


def pruned_journal(log_dir: Path) -> None:
    """A live journal over 6 days (one file a day) whose first 3 files were deleted, as
    retention does: the ids accepted in them are known to no record left."""
    day = [dt.date(2025, 10, 1)]
    with EventLogger(log_dir, "live", today=lambda: day[0], retention_days=None) as log:
        clock = FakeClock()
        em = ExecutionManager({"duplicate_window": 1}, StaticDataProvider(), "live",
                              SimPositionHandler(), SimVenue(), Reconciled(), event_logger=log,
                              clock=clock, sleep=clock.sleep)
        for i in range(6):
            day[0] = dt.date(2025, 10, 1) + dt.timedelta(days=i)
            em.update_state(T(i * 86400), "strategy_manager", blocks(f"k{i}"))
    files = sorted(log_dir.glob("execution_manager_events.*.jsonl"))
    assert len(files) >= 3
    for f in files[:3]:
        f.unlink()


def test_a_pruned_history_is_refused_not_guessed(tmp_path: Path) -> None:
    """When retention deleted the oldest records, the ids accepted then are unknown: the
    fold says so, and `fsm-exec run` refuses to resume (exit 2) rather than run any of
    them again."""
    log_dir = tmp_path / "out" / "logs" / "events"
    pruned_journal(log_dir)
    with pytest.raises(HistoryPrunedError, match="were deleted"):
        accepted_ids_in(log_dir)
    (log_dir / ".fsm_exec_owner").write_text("fsm-exec run\n")
    before = {p.name: p.read_bytes() for p in log_dir.iterdir()}
    whole = blocks_file(tmp_path / "b.jsonl", [f"k{i}" for i in range(8)])
    code, text = cli("run", whole, "--mode", "live", "--out", tmp_path / "out")
    assert code == 2 and text == ""
    assert {p.name: p.read_bytes() for p in log_dir.iterdir()} == before


@pytest.mark.parametrize(("dest", "says"), [
    ("routing", ["the journal holds 5 blocks executed, 0 failed, 0 queued",
                 "block k5 is routing (attempt 1): the venue may have executed it: recovery "
                 "asks the venue"]),
    ("pending_reconciliation", [
        "the journal holds 5 blocks executed", "block k5 is pending_reconciliation "
        "(attempt 1): the venue executed it and the journal holds its deltas: recovery hands "
        "them off to the position handler, then waits for reconciliation"]),
    ("success", ["the journal holds 6 blocks executed, 0 failed, 0 queued"])])
def test_a_stopped_run_says_what_the_journal_says(
        dest: str, says: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 13: Ctrl-C lands just after the journal recorded k5's move to ``dest`` and
    before the process's memory took it. The summary is read from the journal: it said
    "1 queued" with nothing in doubt while the journal had k5 routing, and "was routing"
    while the journal had k5 pending_reconciliation with its deltas."""
    from fsm_exec.tools.status import read_status

    original = EventLogger.log_event

    def log_event(self: EventLogger, ts: object, event_type: str, component: str,
                  data: dict[str, object], *, sync: bool = True) -> None:
        original(self, ts, event_type, component, data, sync=sync)
        if (event_type == "block_transition" and data.get("block_id") == "k5"
                and data.get("dest") == dest):
            raise KeyboardInterrupt

    monkeypatch.setattr(EventLogger, "log_event", log_event)
    whole = blocks_file(tmp_path / "b.jsonl", [f"k{i}" for i in range(10)])
    code, _ = cli("run", whole, "--mode", "live", "--out", tmp_path / "out")
    assert code == 130
    err = capsys.readouterr().err
    for said in says:
        assert said in " ".join(err.split()), err
    if dest == "success":
        assert "block k5" not in err
    monkeypatch.undo()
    status = read_status(tmp_path / "out" / "logs" / "events")
    flight = status["in_flight"]
    assert (flight is None) == (dest == "success")
    if flight is not None:
        assert f"block {flight['block_id']} is {flight['state']}" in err


def test_a_resume_never_skips_a_changed_block_silently(tmp_path: Path) -> None:
    """The file was edited between the runs: a block whose id the journal holds now asks
    for something else. The resume does not run it (its id is taken) and does not skip it
    as done either: it is reported refused, naming the block and why (a changed block
    needs a new id), and the run's exit says something was refused. The unchanged blocks
    are skipped as before, the new ones run."""
    out = tmp_path / "out"
    first = blocks_file(tmp_path / "first.jsonl", ["a", "b"])
    assert cli("run", first, "--mode", "live", "--out", out)[0] == 0
    changed = block("b")
    changed["instructions"][0]["amount"] = 2.5
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(json.dumps(b) + "\n" for b in (block("a"), changed, block("c"))))
    code, text = cli("run", whole, "--mode", "live", "--out", out)
    assert code != 0, text
    assert "block 'b'" in text and "new block_id" in text, text
    counts = accepted(out / "logs" / "events")
    assert counts == Counter({"a": 1, "b": 1, "c": 1})


def test_a_changed_block_refuses_its_whole_batch_on_resume(tmp_path: Path) -> None:
    """A line of the file is one batch, accepted whole or not at all: when a block of it
    that the journal holds has changed, none of the line's new blocks runs either (they
    ran without it), and the summary counts the batch refused, naming the block."""
    out = tmp_path / "out"
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps([block("a"), block("b")]) + "\n")
    assert cli("run", first, "--mode", "live", "--out", out)[0] == 0
    changed = block("b")
    changed["instructions"][0]["amount"] = 2.5
    whole = tmp_path / "whole.jsonl"
    whole.write_text(json.dumps([block("a"), changed, block("c"), block("d")]) + "\n"
                     + json.dumps(block("e")) + "\n")
    code, text = cli("run", whole, "--mode", "live", "--out", out)
    assert code != 0 and "block 'b'" in text and "1 batch refused" in text, text
    assert accepted(out / "logs" / "events") == Counter({"a": 1, "b": 1, "e": 1})


def test_a_blocks_file_is_split_at_line_feeds_only(tmp_path: Path) -> None:
    """JSON lets a string hold U+2028, U+0085 or a form feed raw; str.splitlines() broke the
    line there ("Unterminated string"). The file is split at line feeds only (CRLF read as
    one), so such a block reads, and line numbers count line feeds."""
    b = block("a")
    b["instructions"][0]["memo"] = "x\u2028y\x85z\x0cw"
    path = tmp_path / "blocks.jsonl"
    path.write_bytes((json.dumps(b, ensure_ascii=False) + "\r\n"
                      + json.dumps(block("b")) + "\n").encode())
    code, text = cli("run", path, "--out", tmp_path / "out")
    assert code == 0, text
    assert "2 blocks" in text, text
