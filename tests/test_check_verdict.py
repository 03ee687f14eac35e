"""One reader, one verdict (issue 25 item 8): ``check`` passes every journal a kill during
a rotation can leave, exactly as recovery accepts it: the new current file missing, empty,
or holding part of its checkpoint."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm_exec import EventLogger, ExecutionManager, check_journal
from fsm_exec.journal.files import journal_files
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider

from journals import Reconciled
from kit import T, blocks

CURRENT = "execution_manager_events.jsonl"


def _rotated_journal(log_dir: Path, n_before: int) -> None:
    """A live manager runs ``n_before`` blocks on one day, queues one more, and the day
    changes: its next call rotates (a new current file that starts with a checkpoint)."""
    day = [dt.date(2025, 10, 1)]
    with EventLogger(log_dir, "live", today=lambda: day[0]) as log:
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        em.update_state(T(0), "strategy_manager", blocks(*(f"a{i}" for i in range(n_before))))
        em.execute_instruction_blocks(T(1), blocks("q"))
        day[0] = dt.date(2025, 10, 2)
        em.update_state(T(86_400), "strategy_manager")
    assert len(journal_files(log_dir)) == 2


def _killed_in_rotation(source: Path, target: Path, cut: int | None) -> None:
    """``target``: the directory as a kill during ``source``'s rotation left it. ``None``:
    after the old file was renamed, before the new one was created; else the new current
    file holds the first ``cut`` bytes of its first line (0: created, nothing written; a
    cut inside the line: the checkpoint's write torn)."""
    target.mkdir()
    old, new = journal_files(source)
    shutil.copy(old, target / old.name)
    if cut is not None:
        first = new.read_bytes().splitlines(keepends=True)[0]
        (target / CURRENT).write_bytes(first[:cut])


def _recovery_accepts(log_dir: Path) -> tuple[bool, Any]:
    """A restart on the directory: its verdict and what it queues."""
    with EventLogger(log_dir, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log)
        try:
            em.recover()
        except Exception as exc:  # the verdict is what is compared
            return False, repr(exc)
        return True, tuple(em.queued_block_ids)


def test_an_empty_current_file_left_by_a_kill_in_rotation_checks(tmp_path: Path) -> None:
    """The kill after the new current file was created and before its checkpoint: check
    is ok (it said "empty journal file"), notes the empty file, and agrees with recovery."""
    _rotated_journal(tmp_path / "source", 2)
    d = tmp_path / "killed"
    _killed_in_rotation(tmp_path / "source", d, 0)
    report = check_journal(d)
    assert report.ok, report.problems
    assert report.queued == ("q",)
    assert any("empty" in n and CURRENT in n for n in report.notes), report.notes
    assert _recovery_accepts(d) == (True, ("q",))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_before=st.integers(0, 3), where=st.integers(-1, 10_000))
def test_check_and_recovery_agree_at_every_kill_point_of_a_rotation(
        tmp_path_factory: Any, n_before: int, where: int) -> None:
    """A kill at any point of a rotation (the new file missing, empty, or any prefix of its
    checkpoint line, whole included): check's verdict is recovery's, and both accept."""
    base = tmp_path_factory.mktemp("rotation")
    _rotated_journal(base / "source", n_before)
    first = journal_files(base / "source")[1].read_bytes().splitlines(keepends=True)[0]
    cut = None if where < 0 else where % (len(first) + 1)
    _killed_in_rotation(base / "source", base / "killed", cut)
    report = check_journal(base / "killed")
    accepted, queued = _recovery_accepts(base / "killed")
    assert report.ok == accepted, (cut, report.problems, queued)
    assert accepted, (cut, queued)
    assert report.queued == queued == ("q",)
