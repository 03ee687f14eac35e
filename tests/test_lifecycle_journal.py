"""The journal knows its lifecycle: check, status, report and the diagram overlays read a
journal written under a user lifecycle with that lifecycle (its states, its triggers), and a
default journal exactly as before."""

from __future__ import annotations

import io
import json
from pathlib import Path

import lchooks
import pytest
from test_lifecycle_run import BIG, CHAIN, FOUR_EYES, SMALL, lifecycle, manager, priced

from fsm_exec import check_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.reader import read_journal
from fsm_exec.sim.venues import FakeClock, SimVenue
from fsm_exec.tools.diagram import current_table, overlay_block, overlay_events
from fsm_exec.tools.diagram.journal_table import journal_table
from fsm_exec.tools.report.build import build_report
from fsm_exec.tools.status import read_status

from kit import T, block


@pytest.fixture
def four_eyes_journal(tmp_path: Path) -> Path:
    """'a' approved and done, 'b' done, 'c' waiting for approval when the journal ends."""
    em, el = manager(tmp_path, lifecycle(FOUR_EYES), SimVenue(), FakeClock())
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", SMALL)])
    em.trigger("a", "approve", T(5), reason="ok")
    em.update_state(T(10), "strategy_manager", [priced("c", BIG)])
    el.close()
    lchooks.reset()
    return tmp_path


def _records(log_dir: Path) -> list:  # type: ignore[type-arg]
    return list(read_journal(next(log_dir.glob("*.jsonl"))))


def test_check_and_status_read_the_journals_lifecycle(four_eyes_journal: Path) -> None:
    """check folds the journal with its own lifecycle (it is OK, 'c' in awaiting_approval);
    status names the state, the lifecycle, and the triggers an operator may fire."""
    report = check_journal(four_eyes_journal)
    assert report.ok, report.problem
    status = read_status(four_eyes_journal)
    fl = status["in_flight"]
    assert (fl["state"], fl["lifecycle"], fl["external_triggers"], fl["resolution"]) == (
        "awaiting_approval", "four-eyes", ["approve", "reject"], "resume")
    assert "waits in awaiting_approval" in status["next_step"]
    assert any("fsm-exec trigger" in c and " c approve " in c for c in status["commands"])


def test_report_and_overlays_draw_the_journals_lifecycle(four_eyes_journal: Path) -> None:
    """The report and both overlays take the lifecycle from the journal: its own states
    and transitions, with how often each was taken."""
    records = _records(four_eyes_journal)
    table = journal_table(records)
    assert "awaiting_approval" in {s.name for s in table.states}
    edges = {e.key for e in table.edges}
    assert {("queued", "start", "awaiting_approval"),
            ("awaiting_approval", "timeout", "cancelled"),
            ("queued", "fail", "failed")} <= edges
    model = overlay_events(records)
    taken = {(e.source, e.trigger, e.dest): e.count for e in model.edges}
    assert taken[("awaiting_approval", "approve", "routing")] == 1
    path = overlay_block(records, "a")
    assert [s.dest for s in path.path] == ["awaiting_approval", "routing",
                                           "pending_reconciliation", "success"]
    report = build_report(four_eyes_journal)
    assert "awaiting_approval" in report.states
    out = io.StringIO()
    assert main(["diagram", "--events", str(four_eyes_journal), "--block", "c",
                 "--format", "mermaid"], out=out) == 0
    assert "awaiting_approval" in out.getvalue()


def test_a_default_journal_reads_with_the_code_table(tmp_path: Path) -> None:
    """A journal of the default lifecycle holds no definition, only the code's table hash,
    and reads with the code's table."""
    em, el = manager(tmp_path, None, SimVenue(), FakeClock())
    em.update_state(T(0), "strategy_manager", [block("a")])
    el.close()
    records = _records(tmp_path)
    first = records[0].data
    assert "lifecycle_definition" not in first
    assert journal_table(records) == current_table()
    assert check_journal(tmp_path).ok


def test_a_journal_whose_definition_was_tampered_with_is_refused(tmp_path: Path) -> None:
    """A checkpoint whose lifecycle definition does not match its hash: check names it."""
    em, el = manager(tmp_path, lifecycle(CHAIN), SimVenue(), FakeClock())
    em.update_state(T(0), "strategy_manager", [block("a")])
    el.close()
    path = next(tmp_path.glob("*.jsonl"))
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["data"]["lifecycle_definition"]["states"]["awaiting_confirmations"]["wait"][
        "timeout_seconds"] = 1
    lines[0] = json.dumps(first, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    report = check_journal(tmp_path)
    assert not report.ok and "says" in str(report.problem) and "hash" in str(report.problem)
