"""The runbook (docs/runbook.md, "When the manager halts"; the README's operations
section) followed end to end as a deployment runs it (issue 25, done when): the manager
runs as a service user (uid 65534, in a subprocess), the operator's commands (status,
check, cancel, report) run as root, and afterwards the manager, as its user, restarts,
resumes and carries on. Skipped, saying so, when the tests do not run as root (CI does)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from fsm_exec.cli.main import main

from service_user import (
    SERVICE_GID,
    SERVICE_UID,
    as_service,
    needs_root,
    owners,
    service_dir,
    service_process,
)

__all__ = ["service_dir"]  # the fixture, used by name

pytestmark = needs_root

#: The deployment: a live manager that halts with EXEC-002 on its first block ("a"),
#: reconciliation having failed; "b" and "c" stay queued behind the halt.
HALTS = """
    import sys
    from pathlib import Path
    from journals import halted_journal
    halted_journal(Path(sys.argv[1]), "EXEC-002", ("a", "b", "c"))
"""

#: The manager holding its journal (started, recovered, idle) until told to stop.
HOLDS = """
    import sys
    from fsm_exec import EventLogger, ExecutionManager
    from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
    from journals import Reconciled

    clock = FakeClock()
    with EventLogger(sys.argv[1], "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=log, clock=clock,
                              sleep=clock.sleep)
        em.recover()
        print("ready", flush=True)
        sys.stdin.readline()
"""

#: Step 4, in the strategy process: recover, resume (manual), and carry on with new work.
RESUMES = """
    import json, sys
    from fsm_exec import EventLogger, ExecutionManager
    from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
    from journals import Reconciled
    from kit import T, blocks

    venue, clock = SimVenue(), FakeClock()
    with EventLogger(sys.argv[1], "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), venue,
                              Reconciled(), event_logger=log, clock=clock, sleep=clock.sleep)
        report = em.recover()
        halted_before = em.halted
        em.update_state(T(600), "manual")
        em.update_state(T(660), "strategy_manager", blocks("d", "e"))
        print(json.dumps({"halted_before": halted_before, "halted": em.halted,
                          "queued_at_restart": list(report.queued),
                          "routed": sorted(venue.route_calls),
                          "states": {b: em.block_state(b).value
                                     for b in ("a", "b", "c", "d", "e")}}))
"""


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def _all_the_service_users(log_dir: Path) -> None:
    """Every file in the journal's directory belongs to the service user."""
    found = owners(log_dir)
    assert found and all(o[:2] == (SERVICE_UID, SERVICE_GID) for o in found.values()), found


def test_the_runbook_end_to_end_with_the_operator_as_root(
        service_dir: Path, tmp_path: Path) -> None:
    """Halt (EXEC-002) as the service user; as root: look (status, while the manager runs
    and after it stopped), check, drop the queue (cancel, refused while the manager runs),
    report; then the service user's manager recovers, resumes and runs new work, and
    status says healthy. Every file stays the service user's."""
    made = as_service(HALTS, service_dir)
    assert made.returncode == 0, made.stderr
    _all_the_service_users(service_dir)

    # 1. Look, while the (restarted) manager holds its journal: running, with its pid;
    # the cancel is refused while it runs, and changes nothing.
    with service_process(HOLDS, service_dir) as proc:
        code, out = cli("status", str(service_dir), "--json")
        running = json.loads(out)
        assert (running["running"], running["pid"]) == (True, proc.pid)
        assert running["halt"]["code"] == "EXEC-002"
        before = {p.name: p.read_bytes() for p in service_dir.iterdir()}
        assert cli("cancel", str(service_dir), "--all", "--reason", "x")[0] == 2
        assert {p.name: p.read_bytes() for p in service_dir.iterdir()} == before

    # 1. Look, with the manager stopped: exit 1, the code, the block, the next step.
    code, out = cli("status", str(service_dir))
    assert code == 1, out
    assert "not running" in out and "EXEC-002" in out and "block a" in out
    assert f"fsm-exec cancel {service_dir} --all --reason" in out
    code, out = cli("check", str(service_dir))
    assert code == 0 and out.startswith("OK"), out

    # 3. Decide about the queue: drop it (the manager stopped), as root.
    code, out = cli("cancel", str(service_dir), "--all", "--reason",
                    "computed from positions now known to be wrong")
    assert code == 0, out
    assert "cancelled 2 blocks" in out and "stays halted (EXEC-002)" in out
    _all_the_service_users(service_dir)

    # The report, as root, written where the operator wants it.
    report = tmp_path / "incident.md"
    code, out = cli("report", str(service_dir), "-o", str(report))
    assert code == 0, out
    assert "EXEC-002" in report.read_text()
    _all_the_service_users(service_dir)

    # 4. Resume from the strategy process, as the service user: it carries on.
    resumed = as_service(RESUMES, service_dir)
    assert resumed.returncode == 0, resumed.stderr
    outcome: dict[str, Any] = json.loads(resumed.stdout)
    assert outcome == {
        "halted_before": True, "halted": False, "queued_at_restart": [],
        "routed": ["d", "e"],  # never a, b or c again
        "states": {"a": "failed", "b": "cancelled", "c": "cancelled", "d": "success",
                   "e": "success"}}
    _all_the_service_users(service_dir)

    # Then status again: healthy, nothing to do, and the cancel was no restart.
    code, out = cli("status", str(service_dir), "--json")
    after = json.loads(out)
    assert code == 0 and after["health"] == "healthy", after
    assert after["counters"]["cancelled"] == 2 and after["counters"]["restarts"] == 2
    assert after["config"]["matches_journal"] is True
    assert cli("check", str(service_dir))[0] == 0
