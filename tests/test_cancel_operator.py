"""An operator's cancel is journaled as an operator's action, not a start of the
deployment (issue 25 item 9), at the time ``--at`` gives (item 11)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fsm_exec import check_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.reader import read_journal

from journals import manager, snapshot
from kit import T, blocks


def cancel(log_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["cancel", str(log_dir), *args], out=out), out.getvalue()


def status_json(log_dir: Path, *args: str) -> dict[str, object]:
    out = io.StringIO()
    main(["status", str(log_dir), "--json", *args], out=out)
    report: dict[str, object] = json.loads(out.getvalue())
    return report


def _deployment(log_dir: Path) -> Path:
    """A manager started with its own config (max_retries 5) that ran ``a`` and left
    ``b`` and ``c`` queued; the config file it was started with."""
    em, el = manager(log_dir, max_retries=5)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    em.execute_instruction_blocks(T(1), blocks("b", "c"))
    el.close()
    config = log_dir.parent / f"{log_dir.name}-config.json"
    config.write_text('{"max_retries": 5}')
    return config


def test_a_cli_cancel_is_no_start_and_status_config_still_matches(tmp_path: Path) -> None:
    """After ``fsm-exec cancel``, status --config with the manager's own config says it
    matches (it said "config mismatch": the cancel journaled its throw-away config as a
    start), restarts stay 0, and the journal holds an ``operator_action`` record (who,
    with which tool) where it held ``component_initialization`` and ``recovered``."""
    config = _deployment(tmp_path)
    assert cancel(tmp_path, "b", "--reason", "stale")[0] == 0
    report = status_json(tmp_path, "--config", str(config))
    assert report["config"] == {"source": str(config), "matches_journal": True}
    assert report["counters"]["restarts"] == 0  # type: ignore[index]
    kinds = [r.event_type for r in read_journal(tmp_path)]
    assert kinds.count("component_initialization") == 1 and "recovered" not in kinds
    action = [r for r in read_journal(tmp_path) if r.event_type == "operator_action"]
    assert len(action) == 1
    assert action[0].data["action"] == "cancel"
    assert action[0].data["tool"] == "fsm-exec cancel"
    assert "user" in action[0].data and "wall_clock" in action[0].data
    checked = check_journal(tmp_path)
    assert checked.ok and checked.restarts == 0, checked.problems


def test_the_manager_started_after_a_cli_cancel_counts_one_restart(tmp_path: Path) -> None:
    """The deployment's own restart after the cancel is its first restart."""
    _deployment(tmp_path)
    assert cancel(tmp_path, "--all", "--reason", "stale")[0] == 0
    em, el = manager(tmp_path, max_retries=5)
    assert em.recover().restarts == 0
    el.close()
    assert status_json(tmp_path)["counters"]["restarts"] == 1  # type: ignore[index]


def test_cancel_at_stamps_every_record_of_the_cancel(tmp_path: Path) -> None:
    """``--at`` (an ISO 8601 time with an offset): every record the cancel writes carries
    it, in UTC; the wall clock is in the operator_action record under its own name."""
    _deployment(tmp_path)
    before = len(list(read_journal(tmp_path)))
    assert cancel(tmp_path, "--all", "--reason", "replay", "--at",
                  "2025-10-01T14:00:00+02:00")[0] == 0
    written = list(read_journal(tmp_path))[before:]
    assert [r.event_type for r in written] == [
        "checkpoint", "operator_action", "block_transition", "block_transition"]
    assert {r.timestamp for r in written} == {"2025-10-01T12:00:00+00:00"}


def test_cancel_without_at_stamps_the_wall_clock(tmp_path: Path) -> None:
    """Without ``--at``, the cancel's records carry one time: the wall clock's."""
    import datetime as dt

    _deployment(tmp_path)
    before = len(list(read_journal(tmp_path)))
    start = dt.datetime.now(dt.UTC)
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 0
    stamps = {r.timestamp for r in list(read_journal(tmp_path))[before:]}
    assert len(stamps) == 1
    assert dt.datetime.fromisoformat(stamps.pop()) >= start.replace(microsecond=0)


@pytest.mark.parametrize(("at", "says"), [
    ("yesterday", "--at: not an ISO 8601 time: 'yesterday'"),
    ("2025-10-01T12:00:00", "--at: give an offset (e.g. 2025-10-01T12:00:00Z"),
    ("2025-13-01T00:00:00Z", "--at: not an ISO 8601 time"),
    ("x" * 80, "--at: not an ISO 8601 time"),
])
def test_a_bad_at_is_refused_and_nothing_is_written(
        at: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad ``--at`` is a usage error (exit 2) naming the option; nothing is written."""
    _deployment(tmp_path)
    before = snapshot(tmp_path)
    assert cancel(tmp_path, "--all", "--reason", "x", "--at", at)[0] == 2
    assert says in capsys.readouterr().err
    assert snapshot(tmp_path) == before
