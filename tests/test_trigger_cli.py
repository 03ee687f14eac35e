"""``fsm-exec trigger``: an operator's external trigger (four-eyes' approve, reject) for a
stopped manager; refused (nothing changed) while another process holds the journal, for a
block not in flight, or a trigger that is not external or not allowed in its state."""

from __future__ import annotations

import io
from pathlib import Path

import lchooks
import pytest
from test_lifecycle_run import BIG, FOUR_EYES, SMALL, manager, priced

from fsm_exec import Lifecycle, check_journal
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import FakeClock, SimVenue
from fsm_exec.tools.trigger import TriggerRefused, trigger_offline

from journals import other_process, snapshot
from kit import T


def trigger(log_dir: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = main(["trigger", str(log_dir), *args], out=out)
    return code, out.getvalue(), err.getvalue()


def waiting_journal(log_dir: Path) -> None:
    """A four-eyes journal: 'a' waits for approval, 'b' queued behind it."""
    em, el = manager(log_dir, Lifecycle.from_dict(FOUR_EYES), SimVenue(), FakeClock())
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", SMALL)])
    el.close()
    lchooks.reset()


def test_trigger_approves_and_the_strategy_process_routes_it(tmp_path: Path) -> None:
    """approve moves the waiting block to routing, journaled with the reason; the next
    start of the strategy process routes it once, then the block behind it."""
    waiting_journal(tmp_path)
    code, out, _ = trigger(tmp_path, "a", "approve", "--reason", "ok by ops",
                           "--at", "2025-10-01T00:10:00Z")
    assert code == 0
    assert out.splitlines()[0] == (f"{tmp_path}: a awaiting_approval --approve--> routing "
                                   "(reason: ok by ops)")
    assert "still queued: b" in out
    venue = SimVenue()
    em, el = manager(tmp_path, Lifecycle.from_dict(FOUR_EYES), venue, FakeClock())
    report = em.recover()
    assert (report.in_doubt, report.in_doubt_state) == ("a", "routing")
    em.update_state(T(700), "strategy_manager")
    assert em.block_state("a") == "success" and em.block_state("b") == "success"
    el.close()
    assert check_journal(tmp_path).ok


@pytest.mark.parametrize(("block_id", "event", "says"), [
    ("a", "cancel", "not an external trigger"),
    ("a", "executed", "allowed from 'awaiting_approval': approve, reject"),
    ("b", "approve", "'b' is queued, not the block in flight"),
    ("zz", "approve", "'zz' is unknown"),
])
def test_refusals_change_nothing(tmp_path: Path, block_id: str, event: str, says: str) -> None:
    """Refused triggers exit 2 naming why, and leave the journal as it was."""
    waiting_journal(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = trigger(tmp_path, block_id, event, "--reason", "r")
    assert code == 2 and says in err
    assert snapshot(tmp_path) == before


def test_refused_while_another_process_holds_the_journal(tmp_path: Path) -> None:
    """Like fsm-exec cancel: a running manager's directory is not touched."""
    waiting_journal(tmp_path)
    with other_process(tmp_path) as proc:
        before = snapshot(tmp_path)
        with pytest.raises(TriggerRefused) as info:
            trigger_offline(tmp_path, "a", "approve", reason="r")
        assert snapshot(tmp_path) == before
    assert f"in use by process {proc.pid}" in str(info.value)
    assert "Nothing was triggered" in str(info.value)
    assert "em.trigger(block_id, event, ts, reason=...)" in str(info.value)
    assert trigger(tmp_path, "a", "approve", "--reason", "r")[0] == 0


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """No reason, a bad --at, a directory without a journal: exit 2, nothing written."""
    waiting_journal(tmp_path)
    before = snapshot(tmp_path)
    assert trigger(tmp_path, "a", "approve", "--reason", " ")[0] == 2
    code, _, err = trigger(tmp_path, "a", "approve", "--reason", "r", "--at", "yesterday")
    assert code == 2 and "--at" in err
    assert snapshot(tmp_path) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no ExecutionManager journal" in trigger(empty, "a", "approve",
                                                          "--reason", "r")[2]
