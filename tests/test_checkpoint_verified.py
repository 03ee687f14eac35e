"""Every reader refuses a checkpoint that disagrees with the records before it, as ``check``
does (review finding 2; SECURITY.md promises it).

Recovery starts from the newest checkpoint; it now checks that checkpoint against the
records before it first (from the checkpoint before it), through the one fold
(:func:`fsm_exec.journal.fold.recovery_state`, :class:`~fsm_exec.journal.state.ManagerState`),
so ``recover()``, ``fsm-exec status`` and the offline ``cancel`` give ``check``'s verdict:
EXEC-013 with the same message, naming ``file:line``. Before, a block lost from the queue or
amounts changed in the checkpoint were recovered and routed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsm_exec import JournalCorruptError, check_journal
from fsm_exec.cli.main import main
from fsm_exec.journal.files import journal_files
from fsm_exec.journal.fold import recovery_state
from fsm_exec.sim.venues import SimVenue
from fsm_exec.tools.cancel import CancelRefused, cancel_offline
from fsm_exec.tools.status import StatusUnreadable, read_status

from journals import crashed_in, manager
from kit import T


def _amount(n: float) -> Callable[[dict[str, Any]], None]:
    def edit(block: dict[str, Any]) -> None:
        block["instructions"][0]["amount"] = n
    return edit


def _in_flight(n: float) -> Callable[[dict[str, Any]], str]:
    def edit(d: dict[str, Any]) -> str:
        _amount(n)(d["flight"]["block"])
        return "flight"
    return edit


def _queued(n: float) -> Callable[[dict[str, Any]], str]:
    def edit(d: dict[str, Any]) -> str:
        _amount(n)(d["queue"][0])
        return "queue"
    return edit


def _lost(d: dict[str, Any]) -> str:
    del d["queue"][0]
    return "queue"


def _both(d: dict[str, Any]) -> str:
    _in_flight(1000.0)(d)
    _queued(2000.0)(d)
    return "queue"


EDITS = {"in-flight amount": _in_flight(1000.0), "queued amount": _queued(2000.0),
         "queued block lost": _lost, "both amounts (the review's repro)": _both}


def _crashed_then_cancelled(log_dir: Path) -> Path:
    """The review's set-up: a live run crashes while c2 is routing (c3, c4 queued); an
    offline cancel of c4 starts a new file with a checkpoint. Its file."""
    crashed_in(log_dir, "routing", ids=("c2", "c3", "c4"))
    cancel_offline(log_dir, ["c4"], reason="t")
    newest = journal_files(log_dir)[-1]
    assert orjson.loads(newest.read_bytes().splitlines()[0])["event_type"] == "checkpoint"
    return newest


def _tamper(path: Path, edit: Callable[[dict[str, Any]], str]) -> str:
    lines = path.read_bytes().splitlines(keepends=True)
    record = orjson.loads(lines[0])
    key = edit(record["data"])
    lines[0] = orjson.dumps(record) + b"\n"
    path.write_bytes(b"".join(lines))
    return key


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_every_reader_refuses_a_checkpoint_that_disagrees(tmp_path: Path, edit: str,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """check, recover(), status (API and CLI), the offline cancel: one verdict, one
    message, naming the checkpoint's ``file:line``; nothing is routed."""
    path = _crashed_then_cancelled(tmp_path)
    key = _tamper(path, EDITS[edit])
    message = f"{path}:1: the checkpoint disagrees with the records before it on {key!r}"

    report = check_journal(tmp_path)
    assert not report.ok and report.problems[0] == message

    routed: list[Any] = []

    class Venue(SimVenue):
        def route_instruction(self, timestamp: Any, block: Any) -> Any:
            routed.append(block)
            return super().route_instruction(timestamp, block)

    em, el = manager(tmp_path, venue=Venue())
    try:
        with pytest.raises(JournalCorruptError) as caught:
            em.recover()
        assert caught.value.error_code == "EXEC-013"
        assert str(caught.value) == f"[EXEC-013] {message}"
    finally:
        el.close()
    assert routed == []

    with pytest.raises(StatusUnreadable) as unreadable:
        read_status(tmp_path)
    assert str(unreadable.value) == message
    capsys.readouterr()
    assert main(["status", str(tmp_path)]) == 2
    assert "the checkpoint disagrees with the records before it" in capsys.readouterr().err
    with pytest.raises(CancelRefused, match="the checkpoint disagrees"):
        cancel_offline(tmp_path, ["c3"], reason="t")


def test_an_untouched_journal_still_recovers_from_its_newest_checkpoint(
        tmp_path: Path) -> None:
    """The checked checkpoint is where recovery starts, as before: the report counts the
    records from it, the blocks are those it holds."""
    _crashed_then_cancelled(tmp_path)
    state, files, at = recovery_state(tmp_path)
    assert at == (len(files) - 1, 1) and state.checkpoint_seq > 1
    assert check_journal(tmp_path).ok
    em, el = manager(tmp_path, not_found_min_age_seconds=0, not_found_interval_seconds=0)
    report = em.recover()
    assert report.queued == ("c3",) and report.in_doubt == "c2"
    em.update_state(T(60), "strategy_manager")
    el.close()
    assert check_journal(tmp_path).ok


def test_pruned_history_before_the_newest_checkpoint_is_not_a_disagreement(
        tmp_path: Path) -> None:
    """When the records between the two newest checkpoints are gone (retention removes whole
    files), there is nothing to compare with: recovery goes on, as check notes it."""
    _crashed_then_cancelled(tmp_path)
    em, el = manager(tmp_path)
    em.recover()  # a third file
    el.close()
    files = journal_files(tmp_path)
    assert len(files) == 3
    files[1].unlink()  # the middle file: seq jumps, just before a checkpoint
    assert check_journal(tmp_path).ok
    em, el = manager(tmp_path)
    assert em.recover().queued == ("c3",)
    el.close()
