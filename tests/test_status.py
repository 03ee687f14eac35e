"""``fsm-exec status``: what a journal says about its manager, read-only, for the person on
call; from real journals written by real managers on a fake clock (tests/journals.py)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    ERROR_CODES,
    EventLogError,
    EventLogger,
    ExecutionConfig,
    ExecutionManager,
)
from fsm_exec.cli.main import main
from fsm_exec.drivers.deadline import state_deadline
from fsm_exec.journal.files import journal_files
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
from fsm_exec.tools.status import FIRST_IDS, read_status, runbook_anchor

from journals import (
    HALTING_CODES,
    NOW,
    STAMP,
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

ROOT = Path(__file__).resolve().parent.parent


def status(log_dir: Path, *args: str, now: str = NOW) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["status", str(log_dir), "--now", now, *args], out=out)
    return code, out.getvalue()


def status_json(log_dir: Path, *args: str, now: str = NOW) -> tuple[int, dict[str, Any]]:
    code, text = status(log_dir, "--json", *args, now=now)
    return code, json.loads(text)


# ------------------------------------------------------------------------ halting codes

#: What the next step asks for first, per halting code.
FIRST_STEP = {
    "EXEC-002": "Reconcile positions by hand: the venue executed 'a'",
    "EXEC-007": "Ask the venue whether 'a' executed",
    "EXEC-008": "Apply the deltas of 'a' to positions by hand",
    "EXEC-009": "Fix the journal's disk first",
    "EXEC-014": "Fix the reconciliation component",
    "EXEC-015": "Apply the venue's fill for 'a' by hand",
}


@pytest.mark.parametrize("code", HALTING_CODES)
def test_status_of_each_halt_names_the_code_block_time_and_next_step(
        code: str, tmp_path: Path) -> None:
    """For every halting code: exit 1, unhealthy, the code with its message, the block and
    the time of the halt, the queue, and a next step for that code with its runbook entry."""
    halted_journal(tmp_path, code)
    exit_code, report = status_json(tmp_path)
    assert exit_code == 1 and report["exit_code"] == 1
    assert (report["health"], report["halted"], report["running"]) == ("unhealthy", True, False)
    halt = report["halt"]
    # A live record carries the time of its step: EXEC-007 halts after the retries'
    # backoff (0.1 s, then 0.2 s on the manager's clock), the others at once.
    at, age = (("2025-10-01T00:00:00.300000+00:00", 599.7) if code == "EXEC-007"
               else (STAMP, 600.0))
    assert (halt["code"], halt["message"], halt["block_id"], halt["at"]) == (
        code, ERROR_CODES[code].message, "a", at)
    assert halt["age_s"] == age
    assert report["queue"] == {"count": 2, "first": ["b", "c"], "oldest_block_id": "b",
                               "oldest_accepted_at": STAMP, "oldest_age_s": 600.0}
    assert report["next_step"].startswith(FIRST_STEP[code])
    assert report["runbook"] == f"docs/runbook.md#{code.lower()}"
    exit_text, text = status(tmp_path)
    assert exit_text == 1
    assert f"  halted       {code} {ERROR_CODES[code].message}\n" in text
    assert f"               block a, at {at} (10 min ago)" in text
    assert f"  runbook      docs/runbook.md#{code.lower()}\n" in text


@pytest.mark.parametrize("code", sorted(set(HALTING_CODES) - {"EXEC-009"}))
def test_a_halt_with_a_queue_offers_the_cancel_command(code: str, tmp_path: Path) -> None:
    """With the manager stopped and blocks queued behind the halt, the next step offers to
    drop them with fsm-exec cancel (the exact command) or to resume."""
    halted_journal(tmp_path, code)
    _, report = status_json(tmp_path)
    command = f"fsm-exec cancel {tmp_path} --all --reason '<why>'"
    assert report["commands"] == [command]
    assert "drop the 2 queued blocks" in report["next_step"]
    assert "update_state(ts, 'manual')" in report["next_step"]
    assert f"               $ {command}\n" in status(tmp_path)[1]


def test_the_halt_shows_what_the_operator_needs_to_apply_by_hand(tmp_path: Path) -> None:
    """EXEC-008: the deltas the position handler refused, and the error, are shown."""
    halted_journal(tmp_path, "EXEC-008")
    _, report = status_json(tmp_path)
    assert report["halt"]["deltas"] == {"block_id": "a", "changes": {"ETH": 1.0}}
    assert "ValueError: book locked" in report["halt"]["error"]
    text = status(tmp_path)[1]
    assert '               deltas {"block_id": "a", "changes": {"ETH": 1.0}}\n' in text
    assert "error: block 'a': position handler refused the deltas" in text


def test_an_unrecordable_reply_is_shown_with_the_path_that_cannot_be_recorded(
        tmp_path: Path) -> None:
    """EXEC-015: no deltas reached the journal; the error names the value's path."""
    halted_journal(tmp_path, "EXEC-015")
    _, report = status_json(tmp_path)
    assert report["halt"]["deltas"] is None
    assert "$.fills[0].obj: Fill has no faithful JSON form" in report["halt"]["error"]


def test_a_halt_the_journal_could_not_record_is_still_shown(tmp_path: Path) -> None:
    """EXEC-009 leaves no halt record (the journal failed); a later state_update says the
    manager is halted: status reports it, names the block left in flight, and warns that a
    restarted manager would not be halted."""
    halted_journal(tmp_path, "EXEC-009")
    _, report = status_json(tmp_path)
    assert report["halt"]["recorded"] is False
    assert report["in_flight"]["block_id"] == "a"
    assert report["in_flight"]["state"] == "pending_reconciliation"
    assert "will not be halted" in report["next_step"]
    assert "the halt record was lost" in status(tmp_path)[1]


def test_the_full_text_of_a_halt(tmp_path: Path) -> None:
    """The text report, line by line, for a reconciliation failure with two blocks queued."""
    halted_journal(tmp_path, "EXEC-002")
    code, text = status(tmp_path)
    assert code == 1
    assert text == f"""\
fsm-exec status: {tmp_path} (as of {NOW})
  manager      not running
  health       unhealthy: halted
  halted       EXEC-002 Reconciliation failed or timed out
               block a, at {STAMP} (10 min ago)
               error: block 'a': reconciliation reported failure
               deltas {{"block_id": "a", "changes": {{"ETH": 1.0}}}}
  in flight    none
  queue        2 blocks: b, c
               oldest b accepted at {STAMP} (10 min ago)
  counters     accepted 3, executed 0, failed 1, cancelled 0, retried 0, restarts 0
  last record  seq 13 state_update at {STAMP} (10 min ago)
  next step
               Reconcile positions by hand: the venue executed 'a' and its deltas
               reached the position handler, but reconciliation failed or never
               confirmed them. Then either drop the 2 queued blocks (computed from
               positions now known to be wrong) with the command below, or start the
               strategy process (recover()) and resume with update_state(ts, 'manual').
               $ fsm-exec cancel {tmp_path} --all --reason '<why>'
  runbook      docs/runbook.md#exec-002
"""


def test_json_keys_are_the_documented_ones(tmp_path: Path) -> None:
    """The --json object has exactly the keys the Operate guide documents, in that order."""
    halted_journal(tmp_path, "EXEC-002")
    _, report = status_json(tmp_path)
    readme = (ROOT / "docs" / "how-to" / "operate.md").read_text()
    section = readme[readme.index("`fsm-exec status --json`"):]
    documented = [line.split("`")[1] for line in section.splitlines()
                  if line.startswith("| `")][:len(report)]
    assert list(report) == documented
    assert list(report["halt"]) == ["code", "message", "block_id", "at", "age_s",
                                    "recorded", "error", "deltas"]
    assert list(report["queue"]) == ["count", "first", "oldest_block_id",
                                     "oldest_accepted_at", "oldest_age_s"]


# ------------------------------------------------------------------------ not halted


def test_a_clean_journal_is_healthy_and_needs_nothing(tmp_path: Path) -> None:
    """Everything finished, nothing queued: exit 0, healthy, "Nothing to do."."""
    queued_journal(tmp_path, ran=("a", "b"), queued=())
    code, report = status_json(tmp_path)
    assert (code, report["health"], report["halt"], report["in_flight"]) == (
        0, "healthy", None, None)
    assert report["counters"] == {"accepted": 2, "executed": 2, "failed": 0, "cancelled": 0,
                                  "retried": 0, "restarts": 0}
    assert report["next_step"] == "Nothing to do." and report["commands"] == []
    assert report["last_activity"]["event_type"] == "state_update"
    assert "  queue        empty\n" in status(tmp_path)[1]


def test_a_stopped_manager_with_a_queue_is_healthy_and_offers_cancel(tmp_path: Path) -> None:
    """Blocks queued in a journal nobody runs: exit 0; they run at the next start, or are
    dropped with the command shown."""
    queued_journal(tmp_path)
    code, report = status_json(tmp_path)
    assert code == 0 and report["queue"]["first"] == ["b", "c", "d"]
    assert "they run when the strategy process starts again" in report["next_step"]
    assert report["commands"] == [f"fsm-exec cancel {tmp_path} --all --reason '<why>'"]


def test_the_queue_names_only_the_first_ids(tmp_path: Path) -> None:
    """A long queue is counted whole and named by its first ids."""
    ids = tuple(f"q{i:02d}" for i in range(FIRST_IDS + 5))
    queued_journal(tmp_path, ran=(), queued=ids)
    _, report = status_json(tmp_path)
    assert report["queue"]["count"] == len(ids)
    assert report["queue"]["first"] == list(ids[:FIRST_IDS])
    assert f"{len(ids)} blocks: {', '.join(ids[:FIRST_IDS])}, ...\n" in status(tmp_path)[1]


def test_a_block_left_in_routing_by_a_crash_is_in_doubt(tmp_path: Path) -> None:
    """The process died with a block routed and no outcome journaled: in doubt (exit 1),
    and recovery would ask the venue before routing it again."""
    crashed_in(tmp_path, "routing")
    code, report = status_json(tmp_path)
    fl = report["in_flight"]
    assert code == 1 and report["health"] == "unhealthy" and not report["halted"]
    assert (fl["block_id"], fl["state"], fl["attempt"], fl["in_doubt"], fl["resolution"]) == (
        "a", "routing", 1, True, "query_execution")
    assert (fl["since"], fl["age_s"], fl["stuck"]) == (STAMP, 600.0, False)
    assert report["runbook"] == "docs/runbook.md#in-doubt"
    assert "the venue may have executed it" in report["next_step"]
    text = status(tmp_path)[1]
    assert "  in flight    a (trade) routing, attempt 1\n" in text
    assert "IN DOUBT" in text and "recovery would: query_execution" in text


def test_a_block_left_waiting_for_reconciliation_is_not_in_doubt(tmp_path: Path) -> None:
    """The venue executed and the journal has the deltas: not in doubt (exit 0); recovery
    waits for reconciliation again and never calls the venue."""
    crashed_in(tmp_path, "pending_reconciliation")
    code, report = status_json(tmp_path)
    fl = report["in_flight"]
    assert code == 0 and report["health"] == "healthy"
    assert (fl["state"], fl["in_doubt"], fl["handed_off"], fl["resolution"]) == (
        "pending_reconciliation", False, True, "reconcile")
    assert "waits for reconciliation" in report["next_step"]


def test_what_a_checkpoint_does_not_hold_is_found_in_the_history(tmp_path: Path) -> None:
    """After a restart (a new checkpoint file), the halt's block and time and the oldest
    queued block's acceptance come from the records before the checkpoint."""
    halted_journal(tmp_path, "EXEC-002")
    em, el = manager(tmp_path)
    em.recover()
    el.close()
    assert len(list(tmp_path.glob("execution_manager_events*.jsonl"))) == 2
    _, report = status_json(tmp_path)
    assert (report["halt"]["block_id"], report["halt"]["at"]) == ("a", STAMP)
    assert report["queue"]["oldest_accepted_at"] == STAMP
    assert report["counters"]["restarts"] == 1
    assert report["checkpoint_seq"] > 1


def test_a_restored_block_is_in_its_state_since_the_restart(tmp_path: Path) -> None:
    """A block restored by a restart counts its time in the state from the restart, as the
    manager's own clock does."""
    crashed_in(tmp_path, "routing")
    em, el = manager(tmp_path)
    em.recover()
    el.close()
    _, report = status_json(tmp_path)
    recovered = [json.loads(line) for line in lines_of(tmp_path)
                 if b'"recovered"' in line][-1]
    assert report["in_flight"]["since"] == recovered["timestamp"]


def test_the_journal_lets_a_gap_in_history_go(tmp_path: Path) -> None:
    """History that was pruned (only the newest checkpoint's file is left) leaves the halt's
    time unknown; the rest of the report stands."""
    halted_journal(tmp_path, "EXEC-002")
    em, el = manager(tmp_path)
    em.recover()
    el.close()
    for p in tmp_path.glob("execution_manager_events.*.jsonl"):
        p.unlink()
    code, report = status_json(tmp_path)
    assert code == 1 and report["halt"]["code"] == "EXEC-002"
    assert (report["halt"]["block_id"], report["halt"]["at"]) == (None, None)
    assert report["queue"]["oldest_accepted_at"] is None
    assert "no block, at an unknown time" in status(tmp_path)[1]


# ------------------------------------------------------------------------ unreadable


def test_no_directory_or_no_journal_is_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A missing directory, or one with no journal, is exit 2 with the reason on stderr and,
    with --json, an object that says it is unreadable."""
    assert status(tmp_path / "nope")[0] == 2
    assert "no such directory" in capsys.readouterr().err
    code, text = status(tmp_path, "--json")
    assert code == 2
    assert json.loads(text)["readable"] is False
    assert "holds no ExecutionManager journal" in capsys.readouterr().err


def test_a_corrupt_line_is_exit_2_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not a record: exit 2, naming file:line (also in the JSON object)."""
    queued_journal(tmp_path)
    path = tmp_path / "execution_manager_events.jsonl"
    lines = lines_of(tmp_path)
    lines.insert(3, b"{not json\n")
    path.write_bytes(b"".join(lines))
    code, text = status(tmp_path, "--json")
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:4: not valid JSON" in err
    report = json.loads(text)
    assert (report["readable"], report["path"], report["line"], report["exit_code"]) == (
        False, str(path), 4, 2)


def test_records_that_break_the_lifecycle_are_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A record that breaks the lifecycle (a block that was never accepted moves) is exit 2
    naming its file:line."""
    queued_journal(tmp_path, ran=("a",), queued=())
    path = tmp_path / "execution_manager_events.jsonl"
    last = json.loads(lines_of(tmp_path)[-1])
    bad = {"seq": last["seq"] + 1, "timestamp": STAMP, "event_type": "block_transition",
           "component": "ExecutionManager",
           "data": {"block_id": "zz", "source": "queued", "dest": "routing",
                    "trigger": "start", "attempt": 1}}
    with open(path, "a") as f:
        f.write(json.dumps(bad) + "\n")
    assert status(tmp_path)[0] == 2
    n = len(lines_of(tmp_path))
    assert f"{path}:{n}: transition of block 'zz', which was never accepted" in \
        capsys.readouterr().err


def test_a_torn_last_line_is_skipped_and_left_alone(tmp_path: Path) -> None:
    """Half a record at the end (being written, or a crash) is skipped, as recovery would,
    and the file is not repaired: status never writes."""
    queued_journal(tmp_path)
    _, before = status_json(tmp_path)
    with open(tmp_path / "execution_manager_events.jsonl", "ab") as f:
        f.write(b'{"seq": 40, "timestamp": "2025-')
    files = snapshot(tmp_path)
    assert status_json(tmp_path) == (0, before)
    assert snapshot(tmp_path) == files


def test_bad_now_and_bad_config_are_usage_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--now must be ISO 8601 with an offset; --config must be a valid config file."""
    queued_journal(tmp_path)
    assert status(tmp_path, now="yesterday")[0] == 2
    assert "--now: not an ISO 8601 time" in capsys.readouterr().err
    assert status(tmp_path, now="2025-10-01T00:10:00")[0] == 2
    assert "--now: give an offset" in capsys.readouterr().err
    bad = tmp_path / "system.json"
    bad.write_text('{"execution_timeout": -1}')
    assert status(tmp_path, "--config", str(bad))[0] == 2
    assert "execution_timeout" in capsys.readouterr().err


# ------------------------------------------------------------------------ a running manager


def test_status_while_a_manager_runs_in_another_process_reads_only(tmp_path: Path) -> None:
    """A live manager in another process holds the journal, with half a record being
    written: status says running with its pid, sees the blocks it queued, skips the torn
    line, and leaves every file (the lock too) byte-identical."""
    halted_journal(tmp_path, "EXEC-002")
    with other_process(tmp_path, "manager") as proc:
        before = snapshot(tmp_path)
        assert before["execution_manager_events.jsonl"].endswith(b'"event_')
        code, report = status_json(tmp_path)
        code_text, text = status(tmp_path)
        after = snapshot(tmp_path)
    assert after == before
    assert (code, code_text) == (1, 1)
    assert (report["running"], report["pid"]) == (True, proc.pid)
    assert report["queue"]["first"] == ["b", "c", "x", "y"]
    assert report["halt"]["code"] == "EXEC-002"
    assert f"  manager      running (pid {proc.pid})\n" in text
    assert "with em.cancel(ts, reason=...) in the strategy process" in report["next_step"]
    assert report["commands"] == []
    _, stopped = status_json(tmp_path)
    assert (stopped["running"], stopped["pid"]) == (False, None)


def test_a_running_manager_with_a_block_past_its_deadline_is_stuck(tmp_path: Path) -> None:
    """While a process holds the journal, a block in pending_reconciliation for longer than
    its deadline is stuck: degraded, exit 1, with its age and deadline."""
    crashed_in(tmp_path, "pending_reconciliation")
    with other_process(tmp_path):
        code, report = status_json(tmp_path)
        text = status(tmp_path)[1]
    fl = report["in_flight"]
    assert code == 1 and report["health"] == "degraded"
    assert (fl["stuck"], fl["in_doubt"], fl["age_s"]) == (True, False, 600.0)
    assert fl["deadline_s"] == state_deadline(ExecutionConfig(), "pending_reconciliation")
    assert report["runbook"] == "docs/runbook.md#stuck"
    assert "check the reconciliation component" in report["next_step"]
    assert "deadline 11.0 s: STUCK)" in text
    assert "  health       degraded: block stuck\n" in text


def test_a_running_manager_settling_a_block_is_not_in_doubt(tmp_path: Path) -> None:
    """A block in routing under a running manager is being settled by it: not in doubt;
    within its deadline it is healthy (exit 0)."""
    crashed_in(tmp_path, "routing")
    with other_process(tmp_path):
        code, report = status_json(tmp_path, now="2025-10-01T00:00:20+00:00")
    assert code == 0 and report["health"] == "healthy"
    assert report["in_flight"]["in_doubt"] is False and not report["in_flight"]["stuck"]


def test_an_unresolved_outcome_under_a_running_manager_is_in_doubt(tmp_path: Path) -> None:
    """A journal that says the venue's outcome could not be found out (execution_unresolved)
    is in doubt even while the manager runs: unhealthy, with the runbook's in-doubt entry."""
    from journals import Crash, Journal, LostVenue

    calls = []

    def dies(kind: str, data: Any) -> bool:
        calls.append(kind)
        return calls.count("execution_unresolved") == 2

    em, el = manager(tmp_path, venue=LostVenue(),
                     journal=lambda el: Journal(el, crash=dies))
    with pytest.raises(Crash):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    el.close()
    with other_process(tmp_path):
        code, report = status_json(tmp_path, now="2025-10-01T00:00:05+00:00")
    assert code == 1 and report["health"] == "unhealthy"
    assert report["in_flight"]["in_doubt"] and report["in_flight"]["state"] == "retrying"
    assert "cannot find out whether the venue executed 'a'" in report["next_step"]


def test_deadlines_come_from_the_managers_config_file(tmp_path: Path) -> None:
    """--config gives the deadlines (a longer reconciliation_timeout: not stuck) and says
    whether it is the config the manager started with."""
    crashed_in(tmp_path, "pending_reconciliation", reconciliation_timeout=50)
    config = tmp_path.parent / f"{tmp_path.name}-system.toml"
    config.write_text("reconciliation_timeout = 50\nstrategy_mode = 'x'\n")
    same = tmp_path.parent / f"{tmp_path.name}-same.json"
    same.write_text('{"reconciliation_timeout": 50}')
    with other_process(tmp_path):
        _, default = status_json(tmp_path, now="2025-10-01T00:00:30+00:00")
        _, given = status_json(tmp_path, "--config", str(same),
                               now="2025-10-01T00:00:30+00:00")
        _, other = status_json(tmp_path, "--config", str(config),
                               now="2025-10-01T00:00:30+00:00")
        text = status(tmp_path, now="2025-10-01T00:00:30+00:00")[1]
    assert default["in_flight"]["stuck"] and default["config"] == {
        "source": "the default config", "matches_journal": False}
    assert "not the config the manager started with" in text
    assert not given["in_flight"]["stuck"] and given["config"] == {
        "source": str(same), "matches_journal": True}
    assert other["config"]["matches_journal"] is False


def test_status_agrees_with_the_managers_own_health(tmp_path: Path) -> None:
    """On the journal of a recovered manager, status and the manager's health report agree
    on in doubt: the same block, the same state."""
    crashed_in(tmp_path, "routing")
    clock = FakeClock()
    el = EventLogger(tmp_path, "live")
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Reconciled(), event_logger=el, clock=clock, sleep=clock.sleep)
    em.recover()
    health = em.health_check()
    report = read_status(tmp_path)
    el.close()
    assert report["running"] and report["pid"] == os.getpid()
    assert health["status"] == report["health"] == "unhealthy"
    assert health["in_doubt"]["block_id"] == report["in_flight"]["block_id"] == "a"
    assert health["in_doubt"]["state"] == report["in_flight"]["state"] == "routing"


def test_a_rotated_journal_is_read_in_seq_order(tmp_path: Path) -> None:
    """A log directory copied elsewhere (rotated files and all) reads the same."""
    halted_journal(tmp_path / "a", "EXEC-007")
    em, el = manager(tmp_path / "a")
    em.recover()
    el.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _, a = status_json(tmp_path / "a")
    _, b = status_json(tmp_path / "b")
    assert {k: v for k, v in a.items() if k not in ("log_dir", "next_step", "commands")} == \
        {k: v for k, v in b.items() if k not in ("log_dir", "next_step", "commands")}


def test_help_says_what_status_does_and_its_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    """status --help says it is read-only and lists its exit codes."""
    assert main(["status", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("without taking its lock or writing anything", "--json", "--config",
                   "0 healthy", "1 needs attention", "2 unreadable"):
        assert phrase in text


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_every_runbook_link_has_its_entry_in_the_runbook_page() -> None:
    """Each link status can print, and each code's resolution, points at a runbook entry
    that exists in docs/runbook.md (as a Git host renders its headings; tests/test_docs.py
    checks the built site)."""
    anchors = github_anchors((ROOT / "docs" / "runbook.md").read_text())
    topics = [*HALTING_CODES, "EXEC-017", "EXEC-018", "in-doubt", "stuck",
              "when-the-manager-halts"]
    for topic in topics:
        assert runbook_anchor(topic) == f"docs/runbook.md#{topic.lower()}"
        assert topic.lower() in anchors, topic
    for code in ERROR_CODES:
        assert ERROR_CODES[code].resolution.endswith(f" Runbook: docs/runbook.md#{code.lower()}.")


# ------------------------------------------------------------------------ edges


def test_exec_009_with_nothing_in_flight_and_its_first_time(tmp_path: Path) -> None:
    """A journal failure with no block in flight (the state_update that could not be
    written): halted, no block named; the time is the first state_update that says so."""
    from journals import Journal

    em, el = manager(tmp_path, journal=lambda el: Journal(el, fail="state_update"))
    with pytest.raises(EventLogError):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    em.update_state(T(5), "strategy_manager", blocks("b"))
    em.update_state(T(9), "strategy_manager")
    el.close()
    _, report = status_json(tmp_path)
    halt = report["halt"]
    assert (halt["code"], halt["block_id"], halt["recorded"]) == ("EXEC-009", None, False)
    assert halt["at"] == "2025-10-01T00:00:05+00:00"
    assert report["in_flight"] is None and report["queue"]["first"] == ["b"]
    assert "is still" not in report["next_step"]
    assert report["next_step"].endswith("resume with update_state(ts, 'manual') from the "
                                        "strategy process.")


def test_an_exec_009_halt_recorded_later_names_the_block_in_flight(tmp_path: Path) -> None:
    """Once the journal works again the manager records the halt at its next checkpoint
    (no block named there): status shows it recorded, with the block left in flight."""
    from journals import Journal

    em, el = manager(tmp_path, checkpoint_every=3,
                     journal=lambda el: Journal(el, fail="positions_updated"))
    with pytest.raises(EventLogError):
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    em.update_state(T(5), "strategy_manager")
    el.close()
    _, report = status_json(tmp_path)
    halt = report["halt"]
    assert (halt["code"], halt["block_id"], halt["recorded"]) == ("EXEC-009", "a", True)
    assert "'a' is still pending_reconciliation" in report["next_step"]
    assert "will not be halted" not in report["next_step"]


def test_a_halt_with_nothing_queued_says_resume(tmp_path: Path) -> None:
    """No block queued behind the halt: no cancel to offer, only the resume."""
    halted_journal(tmp_path, "EXEC-008", ("a",))
    _, report = status_json(tmp_path)
    assert report["commands"] == []
    assert report["next_step"].endswith("Then resume with update_state(ts, 'manual') from "
                                        "the strategy process.")


@pytest.mark.parametrize(("code", "says"), [
    ("EXEC-001", ERROR_CODES["EXEC-001"].resolution),
    ("EXEC-099", "The manager halted (EXEC-099): reconcile positions by hand."),
])
def test_a_halt_code_without_a_runbook_entry_gets_the_general_one(
        code: str, says: str, tmp_path: Path) -> None:
    """A halt under a code that does not halt (edited, or from another version) is shown
    as it is, with its registry resolution (if any) and the runbook's general steps."""
    halted_journal(tmp_path, "EXEC-002")
    path = tmp_path / "execution_manager_events.jsonl"
    path.write_bytes(path.read_bytes().replace(b"EXEC-002", code.encode()))
    code_, report = status_json(tmp_path)
    assert code_ == 1 and report["halt"]["code"] == code
    assert report["next_step"] == says
    assert report["runbook"] == "docs/runbook.md#when-the-manager-halts"


def test_a_checkpoint_inside_a_file_starts_the_state_there(tmp_path: Path) -> None:
    """With checkpoints written inside the current file, the state is read from the newest
    one, and what it does not hold (the block in flight's entry, the config hash, the
    oldest acceptance) comes from the lines before it."""
    def dies(kind: str, data: Any) -> bool:
        return kind == "block_transition" and data["source"] == "routing"

    from journals import Crash, Journal

    em, el = manager(tmp_path, checkpoint_every=4, journal=lambda el: Journal(el, crash=dies))
    em.execute_instruction_blocks(T(0), blocks("a", "b", "c", "d", "e"))
    em.execute_instruction_blocks(T(1), blocks("f"))
    with pytest.raises(Crash):
        em.update_state(T(2), "strategy_manager")
    el.close()
    lines = lines_of(tmp_path)
    marks = [i for i, line in enumerate(lines) if b'"checkpoint"' in line]
    assert len(marks) > 1 and len(list(tmp_path.glob("*.jsonl"))) == 1
    _, report = status_json(tmp_path)
    assert report["checkpoint_seq"] == marks[-1] + 1
    assert report["in_flight"]["since"] == "2025-10-01T00:00:02+00:00"
    assert report["queue"]["oldest_accepted_at"] == STAMP
    assert report["config"]["matches_journal"] is True


def test_an_empty_current_file_reads_the_rotated_one(tmp_path: Path) -> None:
    """Right after a rotation (a new, still empty current file) the state is the rotated
    file's."""
    queued_journal(tmp_path)
    _, before = status_json(tmp_path)
    current = tmp_path / "execution_manager_events.jsonl"
    current.rename(tmp_path / "execution_manager_events.2025-10-01.1.jsonl")
    current.write_bytes(b"")
    assert status_json(tmp_path) == (0, before)


def test_a_journal_without_records_or_checkpoint_is_unreadable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty journal file, or one whose records have no checkpoint (journal format 1),
    is exit 2."""
    path = tmp_path / "execution_manager_events.jsonl"
    path.write_bytes(b"")
    assert status(tmp_path)[0] == 2
    assert "the journal holds no records" in capsys.readouterr().err
    path.write_text(json.dumps({"seq": 1, "timestamp": STAMP, "event_type": "state_update",
                                "component": "ExecutionManager", "data": {}}) + "\n")
    assert status(tmp_path)[0] == 2
    assert f"{path}:1: this journal has no checkpoint at its start" in capsys.readouterr().err


def test_unreadable_history_is_left_alone(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupt line, or a record that makes no sense, before the checkpoint the newest
    one is checked from (recovery never reads there) does not make the journal
    unreadable: what only the history could say is unknown. Between the two newest
    checkpoints it does, as it does for recovery and check (one verdict)."""
    halted_journal(tmp_path, "EXEC-002")
    for _ in range(2):
        em, el = manager(tmp_path)
        em.recover()
        el.close()
    oldest, middle, _ = journal_files(tmp_path)
    bads = (b"garbage\n", json.dumps({
        "seq": 99, "timestamp": STAMP, "event_type": "block_transition",
        "component": "ExecutionManager", "data": {}}).encode() + b"\n")
    good = oldest.read_bytes()
    for bad in bads:
        oldest.write_bytes(good + bad)
        code, report = status_json(tmp_path)
        assert code == 1 and report["halt"]["code"] == "EXEC-002"
        assert report["halt"]["at"] is None
    oldest.write_bytes(good)
    good = middle.read_bytes()
    lines = good.count(b"\n")
    where = f"{middle}:{lines + 1}:"
    for bad in bads:
        middle.write_bytes(good + bad)
        capsys.readouterr()
        assert status(tmp_path)[0] == 2
        assert where in capsys.readouterr().err


def test_files_that_change_while_opened_are_opened_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A journal whose files change while status opens them (rotated by a live manager)
    is opened again; one that keeps changing is exit 2, saying so. Once open, the files
    are read through their descriptors (tests/test_status_edges.py rotates them then)."""
    import fsm_exec.tools.status as status_module
    from fsm_exec.journal.reader import JournalChanged
    from fsm_exec.journal.reader import open_journal as real

    queued_journal(tmp_path)
    misses = [1]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if misses:
            misses.pop()
            raise JournalChanged(str(tmp_path))
        return real(*args, **kwargs)

    monkeypatch.setattr(status_module, "open_journal", flaky)
    assert status(tmp_path)[0] == 0 and not misses

    def changing(*args: Any, **kwargs: Any) -> Any:
        raise JournalChanged(str(tmp_path))

    monkeypatch.setattr(status_module, "open_journal", changing)
    assert status(tmp_path)[0] == 2
    assert "its files changed each of the 5 times" in capsys.readouterr().err


def test_timestamps_that_are_not_times_are_refused_naive_ones_are_utc(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manager's record stamped with text that is not a time is refused naming file:line
    and the field, as every reader refuses it (status gave it an unknown age, and recovery
    counted no wait from it); a time without an offset is taken as UTC."""
    queued_journal(tmp_path, ran=(), queued=("b",))
    path = tmp_path / "execution_manager_events.jsonl"
    data = path.read_bytes()
    path.write_bytes(data.replace(STAMP.encode(), b"yesterday"))
    code, _ = status(tmp_path)
    text = capsys.readouterr().err
    line = next(n for n, raw in enumerate(data.splitlines(), 1) if STAMP.encode() in raw)
    assert code == 2 and f"{path.name}:{line}: " in text and "$.timestamp" in text, text
    path.write_bytes(data.replace(STAMP.encode(), b"2025-10-01T00:00:00"))
    assert status_json(tmp_path)[1]["queue"]["oldest_age_s"] == 600.0
    assert "(10 min after now)" in status(tmp_path, now="2025-09-30T23:50:00Z")[1]


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "an unknown time"), (5, "5.0 s"), (-5, "-5.0 s"), (600, "10 min"),
    (7200, "2.0 h"), (3 * 86400, "3.0 d")])
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    """Seconds under two minutes, minutes under two hours, hours under two days, then days."""
    from fsm_exec.tools.status import _duration

    assert _duration(seconds) == text


def test_without_now_ages_are_measured_to_the_current_time(tmp_path: Path) -> None:
    """Without --now the report is as of the current UTC time."""
    import datetime as dt

    queued_journal(tmp_path)
    out = io.StringIO()
    assert main(["status", str(tmp_path), "--json"], out=out) == 0
    now = dt.datetime.fromisoformat(json.loads(out.getvalue())["now"])
    assert abs((dt.datetime.now(dt.UTC) - now).total_seconds()) < 60


def test_a_restored_block_is_no_longer_in_doubt_once_the_venue_answered(
        tmp_path: Path) -> None:
    """Restored in routing after a crash, asked about, routed again and executed, then left
    waiting for reconciliation by a second crash: under a running manager it is not in
    doubt (the venue answered); restored there, its time counts from that restart."""
    from journals import Crash, Journal

    crashed_in(tmp_path, "routing", ("a",))

    def dies(kind: str, data: Any) -> bool:
        return kind == "block_transition" and data["source"] == "pending_reconciliation"

    em, el = manager(tmp_path, journal=lambda el: Journal(el, crash=dies))
    em.recover()
    with pytest.raises(Crash):
        em.update_state(T(1), "strategy_manager")
    el.close()
    with other_process(tmp_path):
        _, report = status_json(tmp_path, now="2025-10-01T00:00:10+00:00")
    fl = report["in_flight"]
    assert (fl["state"], fl["in_doubt"], fl["attempt"]) == ("pending_reconciliation", False, 2)
    # the call at 00:00:01 spent 5 s (on its clock) asking the venue before it routed again
    assert fl["since"] == "2025-10-01T00:00:06+00:00"
    em, el = manager(tmp_path)
    em.recover()
    el.close()
    _, report = status_json(tmp_path)
    recovered = [json.loads(line) for line in lines_of(tmp_path) if b'"recovered"' in line]
    assert report["in_flight"]["since"] == recovered[-1]["timestamp"]
    assert report["in_flight"]["in_doubt"] is False


def test_after_a_resume_the_halt_is_gone(tmp_path: Path) -> None:
    """A halted manager restarted and resumed, its queue run: healthy, exit 0."""
    halted_journal(tmp_path, "EXEC-002")
    em, el = manager(tmp_path)
    em.recover()
    em.update_state(T(30), "manual")
    el.close()
    code, report = status_json(tmp_path)
    assert (code, report["halted"], report["halt"], report["health"]) == (
        0, False, None, "healthy")
    assert report["counters"]["executed"] == 2
