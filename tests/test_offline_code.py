"""The offline ``fsm-exec cancel`` treats the journal as data: it never imports or runs the
code a journal's lifecycle names (its hooks, its ``call`` guards). A journal may be hostile,
and the runbook has an operator, root included, run the cancel on a service's journal (a
hostile review's finding: the cancel imported every hook module the journal named)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fsm_exec import EventLogger, ExecutionManager, Lifecycle, check_journal
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.cancel import cancel_offline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "lifecycles"
HOOK = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
def request_approval(ctx):
    Path({marker!r} + ".ran").write_text("ran")
'''


def block(block_id: str, amount: float) -> dict[str, Any]:
    return {"block_id": block_id, "action": "trade", "priority": 1, "instructions": [
        {"venue": "spot", "token": "ETH", "side": "buy", "amount": amount, "price": "2500"}]}


def run_live(log_dir: Path, doc: dict[str, Any], batch: list[dict[str, Any]]) -> list[str]:
    """One live call of a manager running lifecycle ``doc`` on ``batch``, journaled in
    ``log_dir``, closed: the ids left queued."""
    clock = FakeClock()
    rc = SimReconciliation(clock)
    with ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                          SimVenue(), rc, event_logger=EventLogger(log_dir, "live"),
                          clock=clock, sleep=clock.sleep,
                          lifecycle=Lifecycle.from_dict(doc)) as em:
        em.update_state(clock.timestamp(), "strategy_manager", batch)
        return list(em.queued_block_ids)


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A four-eyes journal whose hook (a module of this test's own) writes a marker when it
    is imported: a block waiting for approval, one queued behind it."""
    marker = tmp_path / "imported"
    sys.modules.pop("desk_hooks_offline", None)  # this test's own, made anew
    (tmp_path / "desk_hooks_offline.py").write_text(HOOK.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = yaml.safe_load((EXAMPLES / "four_eyes.yaml").read_text())
    doc["states"]["awaiting_approval"]["on_enter"] = ["desk_hooks_offline:request_approval"]
    log_dir = tmp_path / "logs"
    queued = run_live(log_dir, doc, [block("big-1", 100), block("small-1", 1)])
    assert queued == ["small-1"]
    assert marker.exists()  # the deployment imported and ran its own hook
    marker.unlink()
    Path(str(marker) + ".ran").unlink()
    sys.modules.pop("desk_hooks_offline", None)
    return log_dir, marker


@pytest.mark.parametrize("targets", [["small-1"], ["big-1"], None],
                         ids=["a queued block", "the waiting block", "all"])
def test_the_offline_cancel_imports_and_runs_none_of_the_journals_code(
        journal: tuple[Path, Path], targets: list[str] | None) -> None:
    log_dir, marker = journal
    result = cancel_offline(log_dir, targets, reason="stale")
    assert sorted(result.cancelled) == sorted(targets or ["small-1"])
    assert not marker.exists() and not Path(str(marker) + ".ran").exists()
    assert "desk_hooks_offline" not in sys.modules
    assert check_journal(log_dir).ok


def test_the_offline_cancel_works_where_the_hooks_do_not_import(
        journal: tuple[Path, Path], tmp_path: Path) -> None:
    """Run where the deployment's code is not (an operator's shell, another host): the
    hooks are not needed to cancel, so their absence refuses nothing (before: "the
    journal's lifecycle cannot run here")."""
    log_dir, _ = journal
    (tmp_path / "desk_hooks_offline.py").unlink()
    assert cancel_offline(log_dir, ["small-1"], reason="stale").cancelled == ("small-1",)


def _machine(guard: dict[str, Any] | None) -> Any:
    """A four-eyes machine, built importing nothing, whose hook and (with ``guard``) start
    guard name a module that does not exist."""
    from fsm_exec.core.lifecycle import BlockLifecycle
    from fsm_exec.core.lifecycles import GuardContext
    from fsm_exec.core.running import table_of

    doc = yaml.safe_load((EXAMPLES / "four_eyes.yaml").read_text())
    doc["states"]["awaiting_approval"]["on_enter"] = ["no_such_module_anywhere:hook"]
    if guard is not None:
        doc["transitions"][0]["guards"] = [guard]
    lc = BlockLifecycle(None, table_of(Lifecycle.from_dict(doc)), imports=False)
    lc.context = lambda: GuardContext(block=block("b", 100), now=dt.datetime.now(dt.UTC),
                                      entered_at=dt.datetime.now(dt.UTC), state="queued")
    lc.load("b")
    return lc


def test_a_machine_that_imports_nothing_enters_a_state_without_its_hooks() -> None:
    """Built with imports=False, no hook is imported (the module does not exist) and
    entering the state runs none."""
    lc = _machine(None)
    assert lc.fire("start") == "awaiting_approval" and lc.hook_error is None


def test_a_machine_that_imports_nothing_refuses_a_call_guard() -> None:
    """A call guard names code: evaluated by a machine that imports nothing, it refuses the
    move, naming the guard (nothing is imported, nothing moves)."""
    from fsm_exec.core.errors import LifecycleCallError

    lc = _machine({"call": {"path": "no_such_module_anywhere:guard"}})
    with pytest.raises(LifecycleCallError, match="guard call 'no_such_module_anywhere:guard' "
                                                 "is code the journal names"):
        lc.fire("start")
    assert lc.current == "queued"


def test_check_says_a_block_waiting_before_its_route_is_waiting_not_in_doubt(
        journal: tuple[Path, Path]) -> None:
    """A block a user lifecycle holds before its route (nothing sent) is not in doubt:
    check says it waits, as status does (before: "in doubt")."""
    log_dir, _ = journal
    report = check_journal(log_dir)
    assert report.ok and report.in_doubt is None
    assert (report.waiting, report.waiting_state) == ("big-1", "awaiting_approval")
    assert "waiting: block 'big-1' (awaiting_approval), before its route" in report.summary()
    assert "in doubt" not in report.summary()


def test_an_offline_cancel_through_a_call_guard_is_refused_before_any_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting block whose cancel transition is guarded by code the journal names: the
    offline cancel refuses it, saying so, and writes nothing (before: a traceback, after a
    checkpoint and an operator's record were written)."""
    doc = yaml.safe_load((EXAMPLES / "four_eyes.yaml").read_text())
    doc["states"]["awaiting_approval"]["on_enter"] = []
    cancel = next(t for t in doc["transitions"] if t["trigger"] == "cancel")
    doc["transitions"].insert(doc["transitions"].index(cancel), {
        **cancel, "guards": [{"call": {"path": "operator:truth"}}]})
    log_dir = tmp_path / "logs"
    run_live(log_dir, doc, [block("big-1", 100)])
    before = {p.name: p.read_bytes() for p in log_dir.glob("*.jsonl")}
    code = main(["cancel", str(log_dir), "big-1", "--reason", "stale"])
    assert code == 2
    assert {p.name: p.read_bytes() for p in log_dir.glob("*.jsonl")} == before
