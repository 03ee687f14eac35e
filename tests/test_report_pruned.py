"""A journal whose older files retention removed reports as one (issue 25 item 13): the
report says history was pruned and from which day it counts, and its execution mode is
known (every checkpoint carries it; a journal written before that still reads)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.journal.reader import read_journal
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
from fsm_exec.tools.report import build_report

from journals import Reconciled
from kit import T, blocks

EARLIER = Path(__file__).parent / "golden" / "earlier"


def _forty_days(log_dir: Path, retention_days: int | None = 30) -> None:
    """A live manager, one block a day for 40 days, never restarted."""
    day = [dt.date(2025, 10, 1)]
    with EventLogger(log_dir, "live", today=lambda: day[0],
                     retention_days=retention_days) as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        for i in range(40):
            day[0] = dt.date(2025, 10, 1) + dt.timedelta(days=i)
            em.update_state(T(i * 86400), "strategy_manager", blocks(f"b{i}"))


def test_a_pruned_journal_says_so_and_knows_its_mode(tmp_path: Path) -> None:
    """Retention (30 days) removed the first days' files, the only start record with them:
    the report says history was pruned, from which day it counts and from which seq, and
    the mode is live (it said "unknown" and nothing of the pruning)."""
    _forty_days(tmp_path)
    first = next(iter(read_journal(tmp_path)))
    assert first.event_type == "checkpoint" and first.seq > 1
    totals = dict(build_report(tmp_path).totals)
    assert totals["execution mode"] == "live"
    day = first.data["written_on"]
    assert totals["history"] == (f"pruned by retention: counts from {day} (seq "
                                 f"{first.seq} on; seq 1-{first.seq - 1} removed)")


def test_a_whole_journal_says_its_history_is_complete(tmp_path: Path) -> None:
    """Nothing pruned: the history row says complete."""
    _forty_days(tmp_path, retention_days=None)
    totals = dict(build_report(tmp_path).totals)
    assert totals["history"] == "complete (from seq 1)"
    assert totals["execution mode"] == "live"


def test_every_checkpoint_carries_the_mode(tmp_path: Path) -> None:
    """Each checkpoint's data names the manager's execution mode."""
    _forty_days(tmp_path)
    modes = {r.data.get("execution_mode") for r in read_journal(tmp_path)
             if r.event_type == "checkpoint"}
    assert modes == {"live"}


@pytest.mark.parametrize("name", ["backtest_clean", "live_faults", "crashed",
                                  "crashed_then_recovered"])
def test_a_journal_written_before_checkpoints_carried_the_mode_still_reads(
        name: str) -> None:
    """Journals written before this change (tests/golden/earlier: checkpoints without the
    mode) report as before: the mode from component_initialization, history complete."""
    path = EARLIER / f"{name}.jsonl"
    first = next(iter(read_journal(path)))
    assert "execution_mode" not in first.data
    totals = dict(build_report(path).totals)
    assert totals["execution mode"] == ("backtest" if name == "backtest_clean" else "live")
    assert totals["history"] == "complete (from seq 1)"
    assert totals["journal"] == "obeys the lifecycle"
