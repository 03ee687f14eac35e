"""A block the venue is found to have executed after its reply was lost (``query_execution``
or a late reply gave its deltas while it was retrying) goes where ``executed`` leads:
``retrying --found_executed-->`` is derived from the lifecycle's ``routing --executed-->``
transitions. Under chain confirmations it waits in awaiting_confirmations, and its deltas go
to the position handler only once the confirmation guard holds: never routed twice, handed
off once. (Before: ``retrying --resume_reconciliation--> pending_reconciliation`` handed the
deltas off with no confirmation at all.)"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lchooks
import pytest
from test_lifecycle_run import CHAIN

from fsm_exec import EventLogger, ExecutionManager, Lifecycle
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.check import check_journal

from kit import T, block, rig

CONFIRMED_PATH = ["queued", "routing", "retrying", "awaiting_confirmations",
                  "pending_reconciliation", "success"]


@pytest.fixture(autouse=True)
def _hooks() -> Iterator[None]:
    lchooks.reset()
    yield
    lchooks.reset()


def chain() -> Lifecycle:
    return Lifecycle.from_dict(CHAIN)


def moves(r: Any, block_id: str) -> list[tuple[str, str, str]]:
    return [(e["source"], e["trigger"], e["dest"]) for e in r.events("block_transition")
            if e["block_id"] == block_id]


@pytest.mark.parametrize("fault", ["lost_response", "eventually_consistent", "hang_after"])
def test_a_lost_reply_found_executed_waits_for_the_confirmations_live(fault: str) -> None:
    """Live, the route reply lost (an error after the venue executed, a lagging index, a
    reply after execution_timeout): the block retries, the venue is found to have executed,
    and the block goes to awaiting_confirmations with its deltas, not to
    pending_reconciliation; the position handler gets them only once the guard says
    confirmed; routed once, handed off once."""
    r = rig("live", faults=[fault], lifecycle=chain())
    em = r.em
    em.update_state(T(0), "strategy_manager", [block("a"), block("b")])
    for n in range(1, 4):  # a lagging index answers "not found" for a while
        if em.block_state("a") != "retrying":
            break
        em.update_state(T(n * 10), "strategy_manager")
    assert em.block_state("a") == "awaiting_confirmations"
    found = [m for m in moves(r, "a") if m[1] == "found_executed"]
    assert found == [("retrying", "found_executed", "awaiting_confirmations")]
    record = next(e for e in r.events("block_transition") if e["trigger"] == "found_executed")
    assert "deltas" in record and record["resolved_by"] in ("query_found", "late_reply")
    assert r.positions.updates == [] and em.queued_block_ids == ("b",)
    em.update_state(T(60), "strategy_manager")
    assert em.block_state("a") == "awaiting_confirmations" and r.positions.updates == []
    lchooks.CONFIRMED.update({"a", "b"})
    em.update_state(T(120), "strategy_manager")
    assert r.path("a") == CONFIRMED_PATH
    assert r.venue.route_calls["a"] == 1
    assert r.positions.applied["a"] == 1
    confirmed = [c for c in lchooks.CALLS if c[0] == "confirmed" and c[1] == "a"]
    assert confirmed, "the confirmation guard was never asked"
    assert em.block_state("b") == "success"


def test_after_the_hand_off_a_reconciliation_timeout_only_waits_again() -> None:
    """The other meaning, kept apart: once the deltas were handed off (after the
    confirmations), a reconciliation timeout resumes reconciliation
    (retrying --resume_reconciliation--> pending_reconciliation): no second wait for
    confirmations, no second hand-off."""
    lchooks.CONFIRMED.add("a")
    r = rig("live", recon=[("never", 0)], lifecycle=chain(), reconciliation_timeout=5,
            max_retries=2)
    r.em.update_state(T(0), "strategy_manager", [block("a")])
    r.em.update_state(T(10), "strategy_manager")
    assert [t for _, t, _ in moves(r, "a")][:5] == [
        "start", "executed", "confirmed", "reconciliation_timeout", "resume_reconciliation"]
    assert r.positions.applied["a"] == 1 and r.venue.route_calls["a"] == 1


def test_an_interrupted_route_found_executed_on_reopen_waits_for_the_confirmations(
        ) -> None:
    """Backtest: the venue executed, then Ctrl-C before the reply was recorded. Reopened,
    the block is in doubt: the venue is asked, says it executed, and the block waits for its
    confirmations (found_executed to awaiting_confirmations) before any hand-off; the
    journal checks."""
    class Interrupting(SimVenue):
        def route_instruction(self, timestamp: Any, b: Any) -> dict[str, Any]:
            super().route_instruction(timestamp, b)
            raise KeyboardInterrupt

    clock = FakeClock()
    rc = SimReconciliation(clock)
    positions = SimPositionHandler(rc)
    venue = Interrupting()
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLogger(Path(tmp), "backtest")
        em = ExecutionManager({}, StaticDataProvider(), "backtest", positions, venue, rc,
                              event_logger=log, clock=clock, sleep=clock.sleep,
                              lifecycle=chain())
        with pytest.raises(KeyboardInterrupt):
            em.update_state(T(0), "strategy_manager", [block("a")])
        assert em.interrupted
        em = em.reopen()
        em.update_state(T(10), "strategy_manager")
        assert em.block_state("a") == "awaiting_confirmations"
        assert positions.updates == []
        lchooks.CONFIRMED.add("a")
        em.update_state(T(20), "strategy_manager")
        assert em.block_state("a") == "success"
        assert positions.applied["a"] == 1 and venue.route_calls["a"] == 1
        log.close()
        report = check_journal(Path(tmp))
        assert report.ok, report.problem


def test_a_guarded_executed_is_derived_with_its_guards() -> None:
    """Only big blocks wait for confirmations (a guarded executed, the default after it):
    found executed, a big block waits, a small one goes on to pending_reconciliation."""
    doc = copy.deepcopy(CHAIN)
    doc["transitions"][0]["guards"] = [{"notional_above": {"value": "100000"}}]
    lc = Lifecycle.from_dict(doc)
    derived = [(t.dest, t.guards) for t in lc.all_transitions()
               if (t.source, t.trigger) == ("retrying", "found_executed")]
    executed = [(t.dest, t.guards) for t in lc.all_transitions()
                if (t.source, t.trigger) == ("routing", "executed")]
    assert derived == executed and len(derived) == 2
    r = rig("live", faults=["lost_response", "lost_response"], lifecycle=lc)
    big = block("big", amount=1000)
    small = block("small", amount=1)
    for b in (big, small):
        b["instructions"][0]["price"] = "200"
    r.em.update_state(T(0), "strategy_manager", [big])
    assert r.em.block_state("big") == "awaiting_confirmations"
    lchooks.CONFIRMED.add("big")
    r.em.update_state(T(10), "strategy_manager", [small])
    assert r.path("small") == ["queued", "routing", "retrying", "pending_reconciliation",
                               "success"]
    assert r.positions.applied == {"big": 1, "small": 1}


# ------------------------------------------------------------- journals of the release

RELEASE = Path(__file__).parent / "golden" / "release"
CHAIN_YAML = Path(__file__).resolve().parent.parent / "examples" / "lifecycles" / \
    "chain_confirmations.yaml"


@pytest.fixture
def examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain lifecycle's guard imports examples.lifecycle_hooks from the repository's
    root, which an installed package's test run (tox) does not have on sys.path."""
    monkeypatch.syspath_prepend(str(CHAIN_YAML.parent.parent.parent))


def _manager(lc: Lifecycle | None, log_dir: Path | None = None) -> tuple[
        ExecutionManager, SimPositionHandler, SimVenue]:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    positions = SimPositionHandler(rc)
    venue = SimVenue()
    venue.executed["a"] = {"block_id": "a", "changes": {"ETH": 1.0}}
    log = EventLogger(log_dir, "live") if log_dir is not None else None
    em = ExecutionManager({}, StaticDataProvider(), "live", positions, venue, rc,
                          event_logger=log, clock=clock, sleep=clock.sleep, lifecycle=lc)
    return em, positions, venue


@pytest.mark.parametrize("name", ["live_faults", "crashed_then_recovered",
                                  "chain_lost_reply"])
@pytest.mark.usefixtures("examples_importable")
def test_journals_the_release_wrote_still_read_check_report_and_recover(
        name: str, tmp_path: Path) -> None:
    """The release's journals (resume_reconciliation carrying the deltas a query found)
    read, check, report and recover as before: the lifecycle hashes are unchanged (the
    derived found_executed is left out of them), so recovery needs no state_map."""
    from fsm_exec.tools.report import read_checked
    from fsm_exec.tools.status import read_status

    path = tmp_path / "execution_manager_events.jsonl"
    path.write_bytes((RELEASE / f"{name}.jsonl").read_bytes())
    report = check_journal(path)
    assert report.ok, report.problem
    assert read_checked(path)[1] is None
    read_status(tmp_path)
    lc = Lifecycle.load(CHAIN_YAML) if name.startswith("chain") else None
    em, _, _ = _manager(lc)
    got = em.recover(path)
    assert got.in_doubt is None and got.blocks_executed >= 1


def _resumes(line: bytes) -> bool:
    r = json.loads(line)
    return bool(r["event_type"] == "block_transition"
                and r["data"].get("trigger") == "resume_reconciliation")


@pytest.mark.usefixtures("examples_importable")
def test_the_releases_chain_journal_crashed_before_its_hand_off_hands_off_once(
        tmp_path: Path) -> None:
    """The release's chain journal cut just after its resume_reconciliation with the
    deltas (the process died before the hand-off): the journal says pending_reconciliation,
    so the new code goes on from there (hand_off_then_reconcile): handed off once, never
    routed again."""
    lines = (RELEASE / "chain_lost_reply.jsonl").read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if _resumes(line))
    log_dir = tmp_path / "j"
    log_dir.mkdir()
    (log_dir / "execution_manager_events.jsonl").write_bytes(b"".join(lines[:cut + 1]))
    em, positions, venue = _manager(Lifecycle.load(CHAIN_YAML), log_dir)
    got = em.recover()
    assert (got.in_doubt, got.resolution) == ("a", "hand_off_then_reconcile")
    em.update_state(T(10), "strategy_manager")
    assert em.block_state("a") == "success"
    assert positions.applied["a"] == 1 and venue.route_calls["a"] == 0
    assert check_journal(log_dir).ok


def test_a_journal_under_a_lifecycle_that_breaks_a_rule_says_what_to_do(
        tmp_path: Path) -> None:
    """A journal whose lifecycle an earlier release accepted but a rule now refuses (here:
    a declared found_executed) is refused by every reader naming the rule, and says what
    the operator does next, not only that it cannot be read."""
    em, _, _ = _manager(chain(), tmp_path)
    em.close()
    path = tmp_path / "execution_manager_events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    first = json.loads(lines[0])
    definition = first["data"]["lifecycle_definition"]
    definition["transitions"].append({"trigger": "found_executed", "source": "retrying",
                                      "dest": "failed", "meaning": "Found by hand."})
    lines[0] = json.dumps(first).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    report = check_journal(path)
    assert not report.ok
    assert "[derived-trigger]" in str(report.problem)
    assert "settle its block in flight by hand" in str(report.problem)
