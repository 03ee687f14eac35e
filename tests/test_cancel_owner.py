"""``sudo fsm-exec cancel`` leaves the service user's journal writable by it (issue 25
item 4): every file the cancel creates takes the owner, group and mode of the journal's
files, and the manager started again as the service user works. Run as another user than
the journal's (not root), the cancel is refused, saying how to run it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from fsm_exec.cli.main import main
from fsm_exec.journal.files import journal_files

from journals import queued_journal
from service_user import (
    SERVICE_GID,
    SERVICE_UID,
    as_service,
    needs_root,
    owners,
    service_dir,
)

__all__ = ["service_dir"]  # the fixture, used by name

SERVICE_MODE = oct(0o640)  # what the service user's umask (027) makes a journal file

QUEUED = """
    import sys
    from pathlib import Path
    from journals import queued_journal
    queued_journal(Path(sys.argv[1]), ran=("a",), queued=("b", "c"))
"""

RESTART = """
    import sys
    from fsm_exec import EventLogger, ExecutionManager
    from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
    from journals import Reconciled
    from kit import T, blocks

    venue, clock = SimVenue(), FakeClock()
    with EventLogger(sys.argv[1], "live") as log:
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), venue,
                              Reconciled(), event_logger=log, clock=clock, sleep=clock.sleep)
        em.recover()
        em.update_state(T(100), "strategy_manager", blocks("d"))
        print(" ".join(sorted(venue.route_calls)), em.block_state("b").value,
              em.block_state("d").value)
"""


def cancel(log_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["cancel", str(log_dir), *args], out=out), out.getvalue()


@needs_root
def test_sudo_cancel_leaves_files_the_service_user_can_write(service_dir: Path) -> None:
    """The manager ran as the service user (files 0640, its own); root cancels its queue,
    which starts a new journal file: that file (and every other) is the service user's,
    mode 0640, and the manager started again as that user recovers and runs on (it died
    with EXEC-009 "Permission denied")."""
    made = as_service(QUEUED, service_dir)
    assert made.returncode == 0, made.stderr
    before = owners(service_dir)
    assert {o[:2] for o in before.values()} == {(SERVICE_UID, SERVICE_GID)}
    assert before["execution_manager_events.jsonl"][2] == SERVICE_MODE
    code, out = cancel(service_dir, "--all", "--reason", "reconciled by hand")
    assert code == 0, out
    after = owners(service_dir)
    assert len(journal_files(service_dir)) == 2  # the cancel started a new file
    for name, (uid, gid, mode) in after.items():
        assert (uid, gid) == (SERVICE_UID, SERVICE_GID), (name, after)
        if name.endswith(".jsonl"):
            assert mode == SERVICE_MODE, (name, after)
    assert not [p for p in service_dir.iterdir() if p.name.endswith(".new")]
    again = as_service(RESTART, service_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["d", "cancelled", "success"]


@needs_root
def test_a_torn_tail_set_aside_by_a_sudo_cancel_is_the_service_users(
        service_dir: Path) -> None:
    """A journal left torn by a crash: the cancel (as root) sets the torn line aside in a
    new ``.torn`` file, which is the service user's too, and a second cancel's lock file
    (deleted meanwhile) as well."""
    assert as_service(QUEUED, service_dir).returncode == 0
    current = service_dir / "execution_manager_events.jsonl"
    with current.open("ab") as f:
        f.write(b'{"seq": 99, "time')
    (service_dir / ".lock").unlink()
    assert cancel(service_dir, "b", "--reason", "x")[0] == 0
    after = owners(service_dir)
    assert after["execution_manager_events.jsonl.torn"] == (SERVICE_UID, SERVICE_GID,
                                                            SERVICE_MODE)
    assert after[".lock"][:2] == (SERVICE_UID, SERVICE_GID)
    again = as_service(RESTART, service_dir)
    assert again.returncode == 0, again.stderr


def test_cancel_as_another_user_than_the_journals_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Not root, and not the journal's owner: refused (exit 2), nothing written, and the
    message says to run it as the journal's user (sudo -u) or as root."""
    from journals import snapshot

    queued_journal(tmp_path)
    owner = journal_files(tmp_path)[-1].stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1000)
    before = snapshot(tmp_path)
    assert cancel(tmp_path, "--all", "--reason", "x")[0] == 2
    err = capsys.readouterr().err
    assert f"(uid {owner}), not to you (uid {owner + 1000})" in err
    assert "Run it as that user: sudo -u " in err and "Nothing was cancelled" in err
    assert snapshot(tmp_path) == before
