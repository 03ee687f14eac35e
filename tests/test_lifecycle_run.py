"""The manager runs a user lifecycle (``ExecutionManager(..., lifecycle=lc)``): guards pick the
transition, hooks run on entering a state, a waiting state holds the block and the queue
behind it, polls and timeouts are checked on each ``update_state``, external triggers come in
through ``em.trigger``, and a guard or hook that raises fails the block (in doubt in a state in
flight or settling)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lchooks
import pytest

from fsm_exec import ComponentError, EventLogger, ExecutionManager, Lifecycle, LifecycleChangedError
from fsm_exec.core.lifecycle import IllegalTransitionError
from fsm_exec.core.running import DEFAULT_TABLE, LifecycleCallError, table_of
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.check import check_journal

from kit import T, block, rig

M = "the meaning"
FOUR_EYES: dict[str, Any] = {
    "version": 1, "name": "four-eyes", "extends": "default",
    "states": {"awaiting_approval": {
        "kind": "before_route", "meaning": M, "on_enter": ["lchooks:request_approval"],
        "wait": {"timeout_seconds": 3600, "timeout_to": "cancelled"}}},
    "transitions": [
        {"trigger": "start", "source": "queued", "dest": "awaiting_approval",
         "guards": [{"notional_above": {"value": "100000"}}], "meaning": M},
        {"trigger": "approve", "source": "awaiting_approval", "dest": "routing",
         "external": True, "meaning": M},
        {"trigger": "reject", "source": "awaiting_approval", "dest": "cancelled",
         "external": True, "meaning": M},
        {"trigger": "fail", "source": "awaiting_approval", "dest": "failed", "meaning": M},
        {"trigger": "cancel", "source": "awaiting_approval", "dest": "cancelled",
         "meaning": M},
    ]}
CHAIN: dict[str, Any] = {
    "version": 1, "name": "chain-confirmations", "extends": "default",
    "states": {"awaiting_confirmations": {
        "kind": "settling", "meaning": M, "on_enter": ["lchooks:watch_chain"],
        "wait": {"timeout_seconds": 600}}},
    "transitions": [
        {"trigger": "executed", "source": "routing", "dest": "awaiting_confirmations",
         "meaning": M},
        {"trigger": "confirmed", "source": "awaiting_confirmations",
         "dest": "pending_reconciliation", "poll": True,
         "guards": [{"call": {"path": "lchooks:confirmed"}}], "meaning": M},
        {"trigger": "fail", "source": "awaiting_confirmations", "dest": "failed",
         "meaning": M},
    ]}
WINDOW = {"start": "02:00", "end": "03:00"}
MAINTENANCE: dict[str, Any] = {
    "version": 1, "name": "maintenance-window", "extends": "default",
    "states": {"held": {"kind": "before_route", "meaning": M,
                        "wait": {"timeout_seconds": 86400, "timeout_to": "cancelled"}}},
    "transitions": [
        {"trigger": "start", "source": "queued", "dest": "held",
         "guards": [{"venue_in": {"venues": ["spot"]}}, {"clock_in_window": WINDOW}],
         "meaning": M},
        {"trigger": "release", "source": "held", "dest": "routing", "poll": True,
         "guards": [{"clock_outside_window": WINDOW}], "meaning": M},
        {"trigger": "cancel", "source": "held", "dest": "cancelled", "meaning": M},
    ]}
MODES = ["backtest", "live"]


@pytest.fixture(autouse=True)
def _hooks() -> Iterator[None]:
    lchooks.reset()
    yield
    lchooks.reset()


def lifecycle(doc: dict[str, Any]) -> Lifecycle:
    return Lifecycle.from_dict(doc)


def priced(block_id: str, amount: float, price: str = "200") -> dict[str, Any]:
    """A block whose one instruction has a price: its notional is ``amount x price``."""
    b = block(block_id, amount=amount)
    b["instructions"][0]["price"] = price
    return b


BIG, SMALL = 1000, 1  # x 200: 200,000 (above the four-eyes limit) and 200


# ------------------------------------------------------------------------ four eyes


@pytest.mark.parametrize("mode", MODES)
def test_four_eyes_waits_for_approval_and_holds_the_queue(mode: str) -> None:
    """Above the limit the block waits in awaiting_approval (its hook called once), the
    block behind it waits too; an approval routes it, then the next runs; below the limit a
    block goes straight to routing."""
    r = rig(mode, lifecycle=lifecycle(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("big", BIG), priced("small", SMALL)])
    assert em.block_state("big") == "awaiting_approval"
    assert em.queued_block_ids == ("small",)
    em.update_state(T(60), "strategy_manager")
    assert em.block_state("big") == "awaiting_approval" and r.venue.route_calls == {}
    assert lchooks.CALLS == [("request_approval", "big", "awaiting_approval")]
    assert em.trigger("big", "approve", T(90), reason="approved by bob") == "routing"
    em.update_state(T(120), "strategy_manager")
    assert r.path("big") == ["queued", "awaiting_approval", "routing",
                             "pending_reconciliation", "success"]
    assert r.path("small") == ["queued", "routing", "pending_reconciliation", "success"]
    assert r.venue.route_calls == {"big": 1, "small": 1}
    approve = [e for e in r.events("block_transition") if e["trigger"] == "approve"]
    assert approve == [{"block_id": "big", "source": "awaiting_approval", "dest": "routing",
                        "trigger": "approve", "attempt": 1, "reason": "approved by bob",
                        "external": True}]


@pytest.mark.parametrize("mode", MODES)
def test_four_eyes_rejection_and_timeout_cancel(mode: str) -> None:
    """A rejection cancels the waiting block; so does the wait's timeout (counted on the
    strategy's timestamps): neither is ever routed, both count as cancelled."""
    r = rig(mode, lifecycle=lifecycle(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", BIG)])
    assert em.trigger("a", "reject", T(10), reason="too big") == "cancelled"
    em.update_state(T(20), "strategy_manager")
    assert em.block_state("b") == "awaiting_approval"
    em.update_state(T(20 + 3599), "strategy_manager")
    assert em.block_state("b") == "awaiting_approval"
    em.update_state(T(20 + 3600), "strategy_manager")
    assert em.block_state("b") == "cancelled"
    assert r.venue.route_calls == {}
    assert em.blocks_cancelled == 2 and em.blocks_failed == 0
    timeout = [e for e in r.events("block_transition") if e["trigger"] == "timeout"]
    assert timeout == [{"block_id": "b", "source": "awaiting_approval", "dest": "cancelled",
                        "trigger": "timeout", "attempt": 1, "waited_s": 3600.0}]


def test_trigger_refusals_change_nothing() -> None:
    """A trigger that is not external, not allowed in the block's state, for a queued block
    or for an unknown one is refused (EXEC-012, EXEC-011) and writes nothing."""
    r = rig("live", lifecycle=lifecycle(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", SMALL)])
    before = len(r.log.events)
    cases = [("a", "cancel", "not an external trigger"), ("a", "executed", "allowed from"),
             ("a", "nope", "allowed from 'awaiting_approval': approve, reject"),
             ("b", "approve", "only the block in flight")]
    for block_id, event, says in cases:
        with pytest.raises(IllegalTransitionError) as info:
            em.trigger(block_id, event, T(1), reason="r")
        assert info.value.error_code == "EXEC-012" and says in str(info.value)
    with pytest.raises(ComponentError, match="not a known block") as unknown:
        em.trigger("zz", "approve", T(1), reason="r")
    assert unknown.value.error_code == "EXEC-011"
    with pytest.raises(ComponentError, match="reason"):
        em.trigger("a", "approve", T(1), reason=" ")
    assert len(r.log.events) == before
    assert em.block_state("a") == "awaiting_approval"


def test_trigger_under_the_default_lifecycle_is_refused() -> None:
    """The default lifecycle has no external trigger: em.trigger refuses every one."""
    r = rig("live", recon=[("pending", 1e9)])
    r.em.execute_instruction_blocks(T(0), [block("a")])
    with pytest.raises(IllegalTransitionError):
        r.em.trigger("a", "start", T(1), reason="r")


# --------------------------------------------------------------- hooks and guards that raise


@pytest.mark.parametrize("mode", MODES)
def test_a_before_route_hook_that_raises_fails_the_block_not_in_doubt(mode: str) -> None:
    """The approval hook raises: the block fails (EXEC-020) from awaiting_approval, never
    routed, and the manager is not halted; the next block runs (live)."""
    lchooks.RAISE.add("request_approval")
    r = rig(mode, lifecycle=lifecycle(FOUR_EYES))
    batch = [priced("a", BIG), priced("b", SMALL)]
    if mode == "backtest":
        with pytest.raises(ComponentError) as info:
            r.em.update_state(T(0), "strategy_manager", batch)
        assert info.value.error_code == "EXEC-020"
    else:
        r.em.update_state(T(0), "strategy_manager", batch)
        assert r.em.block_state("b") == "success"
    assert r.path("a") == ["queued", "awaiting_approval", "failed"]
    assert not r.em.halted and r.venue.route_calls.get("a") is None
    failed = [e for e in r.events("block_failed")]
    assert failed[0]["error_code"] == "EXEC-020"


def test_a_guard_that_cannot_be_evaluated_fails_the_block_from_queued() -> None:
    """A notional guard over a block without prices: the block fails (EXEC-020) naming
    the missing field, nothing routed, not halted."""
    r = rig("live", lifecycle=lifecycle(FOUR_EYES))
    r.em.update_state(T(0), "strategy_manager", [block("a")])
    assert r.path("a") == ["queued", "failed"]
    fail = r.events("block_transition")[-1]
    assert fail["error_code"] == "EXEC-020" and "'price'" in fail["reason"]
    assert not r.em.halted and r.venue.route_calls == {}


# --------------------------------------------------------------------- chain confirmations


@pytest.mark.parametrize("mode", MODES)
def test_chain_confirmations_hand_off_only_once_confirmed(mode: str) -> None:
    """executed leads to awaiting_confirmations (deltas journaled with it); the deltas go
    to the position handler only on entering pending_reconciliation, once the poll's guard
    holds; the block behind waits meanwhile."""
    r = rig(mode, lifecycle=lifecycle(CHAIN))
    em = r.em
    em.update_state(T(0), "strategy_manager", [block("a"), block("b")])
    assert em.block_state("a") == "awaiting_confirmations"
    executed = [e for e in r.events("block_transition") if e["trigger"] == "executed"]
    assert executed[0]["dest"] == "awaiting_confirmations" and "deltas" in executed[0]
    assert r.positions.updates == [] and em.queued_block_ids == ("b",)
    em.update_state(T(12), "strategy_manager")
    assert em.block_state("a") == "awaiting_confirmations"
    lchooks.CONFIRMED.add("a")
    lchooks.CONFIRMED.add("b")
    em.update_state(T(24), "strategy_manager")
    assert r.path("a") == ["queued", "routing", "awaiting_confirmations",
                           "pending_reconciliation", "success"]
    assert len(r.positions.updates) == 2 and em.block_state("b") == "success"


def test_chain_confirmation_timeout_is_in_doubt_and_halts_live() -> None:
    """No confirmation within the wait's timeout: the block fails in doubt (EXEC-007)
    through the implied timeout, the manager halts, the deltas are never handed off."""
    r = rig("live", lifecycle=lifecycle(CHAIN))
    em = r.em
    em.update_state(T(0), "strategy_manager", [block("a"), block("b")])
    em.update_state(T(600), "strategy_manager")
    assert r.path("a")[-2:] == ["awaiting_confirmations", "failed"]
    last = [e for e in r.events("block_transition") if e["block_id"] == "a"][-1]
    assert (last["trigger"], last["error_code"], last["halts"]) == ("timeout", "EXEC-007",
                                                                    True)
    assert em.halted and r.positions.updates == [] and em.queued_block_ids == ("b",)


@pytest.mark.parametrize("mode", MODES)
def test_a_settling_hook_that_raises_is_in_doubt(mode: str) -> None:
    """The hook of awaiting_confirmations raises: the venue executed, so the block fails
    in doubt (EXEC-007) and the manager halts."""
    lchooks.RAISE.add("watch_chain")
    r = rig(mode, lifecycle=lifecycle(CHAIN))
    with pytest.raises(ComponentError) if mode == "backtest" else _nothing():
        r.em.update_state(T(0), "strategy_manager", [block("a")])
    assert r.path("a")[-2:] == ["awaiting_confirmations", "failed"]
    assert r.em.halted and r.positions.updates == []
    assert r.events("block_failed")[0]["error_code"] == "EXEC-007"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ---------------------------------------------------------------------- maintenance window


@pytest.mark.parametrize("mode", MODES)
def test_maintenance_window_holds_blocks_for_the_venue(mode: str) -> None:
    """In the window a block for the venue is held; the poll releases it once the window
    ends (on the strategy's clock); outside the window blocks go straight to routing."""
    r = rig(mode, lifecycle=lifecycle(MAINTENANCE))
    em = r.em
    em.update_state(T(3600), "strategy_manager", [block("early")])
    assert em.block_state("early") == "success"
    em.update_state(T(2 * 3600 + 60), "strategy_manager", [block("a")])
    assert em.block_state("a") == "held"
    em.update_state(T(2 * 3600 + 1800), "strategy_manager")
    assert em.block_state("a") == "held"
    em.update_state(T(3 * 3600), "strategy_manager")
    assert r.path("a") == ["queued", "held", "routing", "pending_reconciliation", "success"]


# -------------------------------------------------------------------------- the tables


def test_the_default_lifecycle_runs_on_the_default_table() -> None:
    """Lifecycle.default() (or one that does the same) runs the default table: the
    engine's short path, the backtest's one pass, the journal unchanged."""
    assert table_of(Lifecycle.default()) is DEFAULT_TABLE
    assert table_of(None) is DEFAULT_TABLE
    r = rig("backtest", lifecycle=Lifecycle.default())
    assert r.em._lc.table is None


def test_a_hook_that_does_not_import_is_refused_at_construction() -> None:
    """A lifecycle naming a hook that cannot be imported: the manager is not built."""
    doc = {**FOUR_EYES, "states": {"awaiting_approval": {
        **FOUR_EYES["states"]["awaiting_approval"], "on_enter": ["lchooks:nope"]}}}
    with pytest.raises(LifecycleCallError, match="lchooks:nope"):
        rig("live", lifecycle=lifecycle(doc))


def test_a_lifecycle_that_is_not_one_is_refused() -> None:
    """lifecycle= takes a Lifecycle: anything else is a clear EXEC-011."""
    with pytest.raises(ComponentError, match=r"expected an fsm_exec\.Lifecycle"):
        rig("live", lifecycle={"name": "x"})


# ------------------------------------------------------------------------------ recovery


def manager(log_dir: Path, lc: Lifecycle | None, venue: SimVenue,
            clock: FakeClock) -> tuple[ExecutionManager, EventLogger]:
    el = EventLogger(log_dir, "live")
    rc = SimReconciliation(clock)
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc), venue, rc,
                          event_logger=el, clock=clock, sleep=clock.sleep, lifecycle=lc)
    return em, el


def test_the_journal_knows_its_lifecycle_and_recovery_resumes_the_wait(tmp_path: Path) -> None:
    """The checkpoint holds the lifecycle's definition and hash; a restart under the same
    lifecycle resumes the block where it waited (its wait still counted from the record of
    the move into the state), and check reads the journal with that lifecycle."""
    lc, venue, clock = lifecycle(FOUR_EYES), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", SMALL)])
    el.close()
    checkpoint = next(r for r in _records(tmp_path) if r["event_type"] == "checkpoint")
    assert checkpoint["data"]["lifecycle"] == lc.hash
    assert Lifecycle.from_dict(checkpoint["data"]["lifecycle_definition"]) == lc
    em2, el2 = manager(tmp_path, lc, venue, clock)
    report = em2.recover()
    assert (report.in_doubt, report.in_doubt_state, report.resolution) == (
        "a", "awaiting_approval", "resume")
    em2.update_state(T(3599), "strategy_manager")
    assert em2.block_state("a") == "awaiting_approval"
    em2.update_state(T(3600), "strategy_manager")
    assert em2.block_state("a") == "cancelled" and em2.block_state("b") == "success"
    el2.close()
    assert check_journal(tmp_path).ok
    assert venue.route_calls == {"b": 1}


def test_recovery_under_another_lifecycle_is_refused_unless_mapped(tmp_path: Path) -> None:
    """A journal of the four-eyes lifecycle, recovered by a default manager: refused,
    naming the block in a state the default lacks; with a mapping it carries over (a
    before-route state may map to queued's successor, routing)."""
    lc, venue, clock = lifecycle(FOUR_EYES), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    el.close()
    em2, el2 = manager(tmp_path, None, venue, clock)
    with pytest.raises(LifecycleChangedError) as info:
        em2.recover()
    assert "'a' is in state 'awaiting_approval'" in str(info.value)
    assert "four-eyes" in str(info.value)
    with pytest.raises(LifecycleChangedError, match="terminal"):
        em2.recover(state_map={"awaiting_approval": "success"})
    report = em2.recover(state_map={"awaiting_approval": "routing"})
    assert report.in_doubt_state == "routing"
    em2.update_state(T(1), "strategy_manager")
    assert em2.block_state("a") == "success" and venue.route_calls == {"a": 1}
    el2.close()
    assert check_journal(tmp_path).ok


def test_recovery_never_maps_a_sent_block_back_before_the_route(tmp_path: Path) -> None:
    """A block awaiting confirmations (sent, settling) cannot be mapped to queued or to
    routing: the venue may hold it."""
    lc, venue, clock = lifecycle(CHAIN), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [block("a")])
    el.close()
    em2, el2 = manager(tmp_path, None, venue, clock)
    with pytest.raises(LifecycleChangedError, match="never go back to 'routing'"):
        em2.recover(state_map={"awaiting_confirmations": "routing"})
    report = em2.recover(state_map={"awaiting_confirmations": "pending_reconciliation"})
    assert report.resolution == "hand_off_then_reconcile"
    em2.update_state(T(1), "strategy_manager")
    assert em2.block_state("a") == "success" and venue.route_calls == {"a": 1}
    el2.close()


def test_recovery_judges_a_state_by_its_kind_not_its_name(tmp_path: Path) -> None:
    """A sent block's state that another lifecycle has under the same name, before the
    route, is refused: carried over by name, the block would be approved and routed again
    (found by a hostile review: two routes)."""
    lc, venue, clock = lifecycle(CHAIN), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [block("a")])
    assert em.block_state("a") == "awaiting_confirmations"
    el.close()
    renamed = Lifecycle.from_dict({
        "version": 1, "name": "held-by-that-name", "extends": "default",
        "states": {"awaiting_confirmations": {
            "kind": "before_route", "meaning": "Waits for an approval, unsent.",
            "wait": {"timeout_seconds": 3600, "timeout_to": "cancelled"}}},
        "transitions": [
            {"trigger": "start", "source": "queued", "dest": "awaiting_confirmations",
             "meaning": "Every block waits for an approval."},
            {"trigger": "approve", "source": "awaiting_confirmations", "dest": "routing",
             "external": True, "meaning": "Approved: routed."}]})
    em2, el2 = manager(tmp_path, renamed, venue, clock)
    with pytest.raises(LifecycleChangedError, match="before_route in the new lifecycle"):
        em2.recover(state_map={})
    el2.close()
    assert venue.route_calls == {"a": 1}


def test_recovery_never_maps_an_unsent_block_past_the_route(tmp_path: Path) -> None:
    """A block awaiting approval (never sent) cannot be mapped to pending_reconciliation:
    it would end executed, the position handler given no deltas (found by a hostile
    review)."""
    lc, venue, clock = lifecycle(FOUR_EYES), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    el.close()
    em2, el2 = manager(tmp_path, None, venue, clock)
    with pytest.raises(LifecycleChangedError, match="never sent"):
        em2.recover(state_map={"awaiting_approval": "pending_reconciliation"})
    el2.close()
    assert not venue.route_calls


def _records(log_dir: Path) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    for p in sorted(log_dir.glob("*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


# ------------------------------------------------------------------------------ cancel


def test_a_block_waiting_before_the_route_can_be_cancelled() -> None:
    """em.cancel takes the block waiting in awaiting_approval (a before-route state with a
    cancel transition): it ends cancelled, never routed, and the queue moves on; a block
    awaiting confirmations (sent) cannot be cancelled."""
    r = rig("live", lifecycle=lifecycle(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG), priced("b", SMALL)])
    assert em.cancel(T(1), ["a"], reason="desk closed") == ("a",)
    assert r.path("a") == ["queued", "awaiting_approval", "cancelled"]
    em.update_state(T(2), "strategy_manager")
    assert em.block_state("b") == "success" and r.venue.route_calls == {"b": 1}
    assert em.blocks_cancelled == 1
    chain = rig("live", lifecycle=lifecycle(CHAIN))
    chain.em.update_state(T(0), "strategy_manager", [block("c")])
    with pytest.raises(ComponentError, match="is awaiting_confirmations"):
        chain.em.cancel(T(1), ["c"], reason="no")


def test_trigger_refused_while_update_state_drives_the_block() -> None:
    """em.trigger from a collaborator (inside update_state) is refused: the block is being
    driven."""
    r = rig("live", lifecycle=lifecycle(FOUR_EYES))
    em = r.em
    seen: list[Exception] = []

    def route(ts: Any, b: Any) -> Any:
        try:
            em.trigger("a", "approve", T(1), reason="inside")
        except ComponentError as exc:
            seen.append(exc)
        return r.venue.route_instruction(ts, b)

    r.faulty.inner = type("V", (), {"route_instruction": staticmethod(route),
                                     "query_execution": r.venue.query_execution})()
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    em.trigger("a", "approve", T(1), reason="ok")
    em.update_state(T(2), "strategy_manager")
    assert seen and isinstance(seen[0], ComponentError) and seen[0].error_code == "EXEC-011"
    assert em.block_state("a") == "success"


# ------------------------------------------------------------------- the edges of the runtime


def _with(doc: dict[str, Any], *, states: dict[str, Any] | None = None,
          transitions: list[dict[str, Any]] | None = None) -> Lifecycle:
    d = {**doc, "states": {**doc["states"], **(states or {})},
         "transitions": [*doc["transitions"], *(transitions or [])]}
    return Lifecycle.from_dict(d)


def test_a_lifecycles_own_move_to_failed_records_its_code() -> None:
    """An external trigger to failed before the route records EXEC-001 (not halting); a
    sent block moved to failed by its lifecycle records EXEC-007 and halts."""
    lc = _with(FOUR_EYES, transitions=[
        {"trigger": "drop", "source": "awaiting_approval", "dest": "failed",
         "external": True, "meaning": M}])
    r = rig("live", lifecycle=lc)
    r.em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    assert r.em.trigger("a", "drop", T(1), reason="desk says no") == "failed"
    last = r.events("block_transition")[-1]
    assert last["error_code"] == "EXEC-001" and "halts" not in last and not r.em.halted
    chain = _with(CHAIN, transitions=[
        {"trigger": "abandon", "source": "awaiting_confirmations", "dest": "failed",
         "external": True, "meaning": M}])
    c = rig("live", lifecycle=chain)
    c.em.update_state(T(0), "strategy_manager", [block("b")])
    c.em.trigger("b", "abandon", T(1), reason="the chain forked")
    last = c.events("block_transition")[-1]
    assert (last["error_code"], last["halts"]) == ("EXEC-007", True) and c.em.halted


def test_a_conditional_move_to_failed_halts_when_the_block_was_sent() -> None:
    """A poll whose default (unguarded) leads to failed: the record cannot say the code
    before the guards decide, so the failure gets EXEC-007 and the halt is journaled."""
    doc = {**CHAIN, "transitions": [
        CHAIN["transitions"][0],
        {"trigger": "settle", "source": "awaiting_confirmations",
         "dest": "pending_reconciliation", "poll": True,
         "guards": [{"call": {"path": "lchooks:confirmed"}}], "meaning": M},
        {"trigger": "settle", "source": "awaiting_confirmations", "dest": "failed",
         "poll": True, "meaning": M},
        CHAIN["transitions"][2]]}
    r = rig("live", lifecycle=Lifecycle.from_dict(doc))
    r.em.update_state(T(0), "strategy_manager", [block("a")])
    assert r.em.block_state("a") == "failed" and r.em.halted
    assert r.events("block_failed")[0]["error_code"] == "EXEC-007"
    assert r.events("manager_halted")[0]["reason"] == "EXEC-007"


def test_a_hook_of_the_state_an_operator_moved_the_block_to_raises() -> None:
    """An escalation's hook raises: the block, not sent, fails there (EXEC-020), the
    trigger says where it ended, the manager goes on."""
    lc = _with(FOUR_EYES, states={"escalated": {
        "kind": "before_route", "meaning": "Up the chain.", "on_enter": ["lchooks:watch_chain"],
        "wait": {"timeout_seconds": 60, "timeout_to": "cancelled"}}}, transitions=[
        {"trigger": "escalate", "source": "awaiting_approval", "dest": "escalated",
         "external": True, "meaning": M},
        {"trigger": "fail", "source": "escalated", "dest": "failed", "meaning": M}])
    lchooks.RAISE.add("watch_chain")
    r = rig("live", lifecycle=lc)
    r.em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    assert r.em.trigger("a", "escalate", T(1), reason="too big for me") == "failed"
    assert r.path("a") == ["queued", "awaiting_approval", "escalated", "failed"]
    assert r.events("block_failed")[0]["error_code"] == "EXEC-020" and not r.em.halted


def test_a_settling_wait_without_timeout_waits_until_its_poll_holds() -> None:
    """No timeout: the block waits however long it takes, then its poll moves it."""
    doc = {**CHAIN, "states": {"awaiting_confirmations": {
        **CHAIN["states"]["awaiting_confirmations"], "wait": {}}}}
    r = rig("live", lifecycle=Lifecycle.from_dict(doc))
    r.em.update_state(T(0), "strategy_manager", [block("a")])
    r.em.update_state(T(10 * 86400), "strategy_manager")
    assert r.em.block_state("a") == "awaiting_confirmations" and not r.em.halted
    lchooks.CONFIRMED.add("a")
    r.em.update_state(T(10 * 86400 + 1), "strategy_manager")
    assert r.em.block_state("a") == "success"


def test_trigger_arguments_are_checked() -> None:
    """block_id and event must be strings: EXEC-011, nothing written."""
    r = rig("live", lifecycle=lifecycle(FOUR_EYES))
    r.em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    before = len(r.log.events)
    with pytest.raises(ComponentError, match="must be strings"):
        r.em.trigger("a", 3, T(1), reason="r")  # type: ignore[arg-type]
    assert len(r.log.events) == before


def test_recovery_maps_to_a_state_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """A mapping to a state the new lifecycle lacks is refused, naming it."""
    lc, venue, clock = lifecycle(FOUR_EYES), SimVenue(), FakeClock()
    em, el = manager(tmp_path, lc, venue, clock)
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    el.close()
    em2, el2 = manager(tmp_path, None, venue, clock)
    with pytest.raises(LifecycleChangedError, match="has no state 'parked'"):
        em2.recover(state_map={"awaiting_approval": "parked"})
    with pytest.raises(LifecycleChangedError, match="does not map it"):
        em2.recover(state_map={})
    el2.close()


def test_a_guard_without_context_is_a_clear_error() -> None:
    """A Machine whose guards have no context to read refuses to guess."""
    from fsm_exec.core.lifecycle import BlockLifecycle

    lc = BlockLifecycle(table=table_of(lifecycle(FOUR_EYES)))
    lc.load("a")
    with pytest.raises(LifecycleCallError, match="no context"):
        lc.fire("start")


def test_the_machine_refuses_what_no_guard_allows() -> None:
    """fire() of a trigger whose guards all refuse moves nothing and says so; try_fire()
    of a trigger the state does not have raises; two hooks that raise: the first is the
    block's error."""
    import datetime as dt

    from fsm_exec.core.lifecycle import BlockLifecycle
    from fsm_exec.core.lifecycles import GuardContext

    lc = BlockLifecycle(table=table_of(lifecycle(MAINTENANCE)))
    inside = dt.datetime(2026, 1, 5, 2, 30, tzinfo=dt.UTC)
    lc.context = lambda: GuardContext(block=block("a"), now=inside, entered_at=inside,
                                      state=lc.current)
    lc.restore("a", "held")
    with pytest.raises(IllegalTransitionError, match="no transition's guards hold"):
        lc.fire("release")
    assert lc.current == "held"
    with pytest.raises(IllegalTransitionError):
        lc.try_fire("approve")
    doc = {**FOUR_EYES, "states": {"awaiting_approval": {
        **FOUR_EYES["states"]["awaiting_approval"],
        "on_enter": ["lchooks:request_approval", "lchooks:watch_chain"]}}}
    lchooks.RAISE.update({"request_approval", "watch_chain"})
    r = rig("live", lifecycle=lifecycle(doc))
    r.em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    assert "request_approval" in r.events("block_transition")[-1]["reason"]


def _waiting_journal(tmp_path: Path) -> tuple[Lifecycle, SimVenue, FakeClock]:
    """A four-eyes journal of block "a" waiting for approval (moved there at T(0)), every
    record in a file of its own after a checkpoint (``checkpoint_every=1``)."""
    lc, venue, clock = lifecycle(FOUR_EYES), SimVenue(), FakeClock()
    el = EventLogger(tmp_path, "live", checkpoint_every=1)
    rc = SimReconciliation(clock)
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc), venue, rc,
                          event_logger=el, clock=clock, sleep=clock.sleep, lifecycle=lc)
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    em.update_state(T(1), "strategy_manager")  # a checkpoint with "a" in flight
    assert em.block_state("a") == "awaiting_approval"
    el.close()
    return lc, venue, clock


def test_a_move_whose_timestamp_is_no_time_is_refused_not_waited_on_forever(
        tmp_path: Path) -> None:
    """The record of the move into a waiting state holds a timestamp that is no time (a
    hand edit, a damaged byte): recovery refuses it naming file:line, as every reader
    does. (It recovered, and the wait, counted from that timestamp, never timed out.)"""
    import orjson

    from fsm_exec.journal.files import JournalCorruptError

    lc, venue, clock = _waiting_journal(tmp_path)
    for p in sorted(tmp_path.glob("*.jsonl")):
        lines = p.read_bytes().splitlines(keepends=True)
        for i, raw in enumerate(lines):
            r = orjson.loads(raw)
            if r["event_type"] == "block_transition" and r["data"]["dest"] == \
                    "awaiting_approval":
                r["timestamp"] = "yesterday"
                lines[i] = orjson.dumps(r) + b"\n"
                p.write_bytes(b"".join(lines))
                where = f"{p.name}:{i + 1}: "
    em, _ = manager(tmp_path, lc, venue, clock)
    with pytest.raises(JournalCorruptError, match=f"{where}.*timestamp"):
        em.recover()
    report = check_journal(tmp_path)
    assert not report.ok and where in str(report.problem), report.problem


def test_a_wait_whose_start_is_unknown_counts_from_the_first_call_after_recovery(
        tmp_path: Path) -> None:
    """A checkpoint that does not say when the waiting block entered its state (a
    damaged or hand-made one): the wait counts from the first call after recovery, so its
    timeout still fires (it never did: the block waited, the queue behind it, for ever)."""
    import orjson

    lc, venue, clock = _waiting_journal(tmp_path)
    (path,) = tmp_path.glob("*.jsonl")
    records = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    last = max(i for i, r in enumerate(records) if r["event_type"] == "checkpoint"
               and r["data"]["flight"] is not None)
    assert records[last]["data"]["flight"]["entered"] == "2025-10-01T00:00:00+00:00"
    del records[last]["data"]["flight"]["entered"]
    path.write_bytes(orjson.dumps(records[last]) + b"\n")  # the journal: that checkpoint
    el = EventLogger(tmp_path, "live", checkpoint_every=1)  # a checkpoint after each call
    rc = SimReconciliation(clock)
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc), venue, rc,
                          event_logger=el, clock=clock, sleep=clock.sleep, lifecycle=lc)
    em.recover()
    em.update_state(T(7200), "strategy_manager")
    assert em.block_state("a") == "awaiting_approval"
    em.update_state(T(7200 + 3599), "strategy_manager")
    assert em.block_state("a") == "awaiting_approval"
    em.update_state(T(7200 + 3600), "strategy_manager")
    assert em.block_state("a") == "cancelled"
    el.close()
    # The count's start is this run's own: no checkpoint says what no record said (the
    # checkpoints after it agree with the records before them).
    assert check_journal(tmp_path).ok, check_journal(tmp_path).problems


def test_a_checkpoint_whose_entered_is_no_time_is_refused(tmp_path: Path) -> None:
    """The checkpoint says when the waiting block entered its state, in a form that is no
    time: refused naming the field (it was read, and the wait never timed out)."""
    import orjson

    from fsm_exec.journal.files import JournalCorruptError

    lc, venue, clock = _waiting_journal(tmp_path)
    (path,) = tmp_path.glob("*.jsonl")
    records = [orjson.loads(raw) for raw in path.read_bytes().splitlines()]
    last = max(i for i, r in enumerate(records) if r["event_type"] == "checkpoint"
               and r["data"]["flight"] is not None)
    records[last]["data"]["flight"]["entered"] = "after lunch"
    path.write_bytes(orjson.dumps(records[last]) + b"\n")
    em, _ = manager(tmp_path, lc, venue, clock)
    with pytest.raises(JournalCorruptError, match=r":1: .*\$\.data\.flight\.entered"):
        em.recover()
