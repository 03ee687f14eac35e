"""``recover()`` on a fresh directory is not a restart (issue 25 item 14)."""

from __future__ import annotations

from pathlib import Path

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.sim.venues import SimPositionHandler, SimReconciliation, SimVenue, StaticDataProvider
from fsm_exec.tools.status import read_status


def start(log_dir: Path) -> int:
    """One run of a deployment that calls recover() at start, as the runbook says; the
    restarts its report counts (those the journal held before this start)."""
    with EventLogger(log_dir, "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), SimReconciliation(), event_logger=log)
        return em.recover().restarts


def test_recover_on_a_fresh_directory_is_not_a_restart(tmp_path: Path) -> None:
    """The first run recovering from its own fresh journal counts no restart (the journal
    used to count its start twice: status said "restarts 1"); each later run counts one."""
    assert start(tmp_path) == 0
    assert read_status(tmp_path)["counters"]["restarts"] == 0
    assert start(tmp_path) == 0
    assert read_status(tmp_path)["counters"]["restarts"] == 1
    assert start(tmp_path) == 1
    assert read_status(tmp_path)["counters"]["restarts"] == 2
