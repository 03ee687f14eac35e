"""Example tests pinning the ExecutionManager's contract, rule by rule."""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fsm_exec import (
    BlockState,
    ComponentError,
    ConfigError,
    EventLogError,
    ExecutionConfig,
    ExecutionManager,
    InstructionBlock,
    InvalidArgumentError,
    InvalidBlockError,
    QueueFullError,
    UnifiedHealthManager,
)
from fsm_exec.sim.venues import (
    FakeClock,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import CANARY, HAPPY_PATH, T, block, blocks, rig

# ------------------------------------------------------------------------ construction


def test_config_mapping_and_object_are_equivalent() -> None:
    """The system-wide dict and an ExecutionConfig configure the manager the same way."""
    a = rig(max_retries=5).em
    cfg = ExecutionConfig(max_retries=5, strategy_mode="eth_basis")
    b = ExecutionManager(cfg, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                         SimReconciliation())
    assert a.config == b.config
    assert a.config.max_retries == 5


def test_bad_config_is_refused_naming_the_field() -> None:
    """An out-of-range config value refuses construction with the field's name."""
    with pytest.raises(ConfigError, match="reconciliation_timeout"):
        rig(reconciliation_timeout=60)


def test_execution_mode_argument_is_validated() -> None:
    """Only backtest and live are modes."""
    with pytest.raises(ConfigError, match="execution_mode"):
        rig("paper")


def test_environment_is_read_once_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """execution_mode=None reads BASIS_* once; later changes to the environment do nothing."""
    monkeypatch.setenv("BASIS_EXECUTION_MODE", "live")
    monkeypatch.setenv("BASIS_ENVIRONMENT", "staging")
    monkeypatch.setenv("BASIS_DEPLOYMENT_MODE", "docker")
    em = ExecutionManager({}, StaticDataProvider(), None, SimPositionHandler(), SimVenue(),
                          SimReconciliation())
    monkeypatch.setenv("BASIS_EXECUTION_MODE", "backtest")
    monkeypatch.setenv("BASIS_ENVIRONMENT", "production")
    assert (em.execution_mode, em.environment, em.deployment_mode) == (
        "live", "staging", "docker")
    assert em.get_execution_status()["execution_mode"] == "live"


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without BASIS_* variables the manager is a local dev backtest."""
    for var in ("BASIS_EXECUTION_MODE", "BASIS_ENVIRONMENT", "BASIS_DEPLOYMENT_MODE"):
        monkeypatch.delenv(var, raising=False)
    em = ExecutionManager({}, StaticDataProvider(), None, SimPositionHandler(), SimVenue(),
                          SimReconciliation())
    assert (em.execution_mode, em.environment, em.deployment_mode) == (
        "backtest", "dev", "local")


def test_invalid_environment_value_is_refused_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad BASIS_ENVIRONMENT is refused; its value never reaches the message."""
    monkeypatch.setenv("BASIS_ENVIRONMENT", CANARY)
    with pytest.raises(ConfigError, match="BASIS_ENVIRONMENT") as info:
        rig()
    assert CANARY not in str(info.value)


def test_environment_views_are_read_only() -> None:
    """Mode, environment, deployment mode and config cannot be reassigned."""
    em = rig().em
    for name in ("execution_mode", "environment", "deployment_mode", "config"):
        with pytest.raises(AttributeError):
            setattr(em, name, "x")


def test_initialization_event_has_mode_and_hash_but_no_config_values() -> None:
    """component_initialization carries the mode and a config hash, never config values."""
    r = rig(max_retries=7)
    (init,) = r.events("component_initialization")
    assert init["execution_mode"] == "live"
    assert init["config_hash"] == r.em.config.digest()
    assert "7" not in str({k: v for k, v in init.items() if k != "config_hash"})
    assert CANARY not in repr(r.log.events)


def test_non_callable_risk_check_is_refused() -> None:
    """risk_checks must be callables."""
    with pytest.raises(InvalidArgumentError, match="risk_checks"):
        rig(risk_checks=["not a function"])


# ------------------------------------------------------------------------ happy path


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_blocks_run_in_submission_order_one_at_a_time(mode: str) -> None:
    """Blocks run in submission order (priority is carried, not used), each to success."""
    r = rig(mode)
    batch = [block("a"), {**block("b"), "priority": 99}, block("c")]
    status = r.em.update_state(T(0), "strategy_manager", batch)
    assert r.venue.execution_order == ["a", "b", "c"]
    assert status["blocks_executed"] == 3 and status["queue_length"] == 0
    for b in "abc":
        assert r.path(b) == HAPPY_PATH
    # no block leaves queued before the previous one is terminal
    starts = [i for i, (_, s, _) in enumerate(r.transitions()) if s == "queued"]
    ends = [i for i, (_, _, d) in enumerate(r.transitions()) if d in ("success", "failed")]
    assert all(e < s for e, s in zip(ends, starts[1:], strict=False))


def test_collaborators_are_called_exactly_so() -> None:
    """route_instruction(ts, frozen block), update_state(ts, 'execution_manager', deltas)."""
    calls: list[tuple[str, Any]] = []

    class Venue:
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            calls.append(("route", (ts, b)))
            return {"filled": b.block_id}

    class Positions:
        def update_state(self, ts: Any, source: str, deltas: Any) -> None:
            calls.append(("positions", (ts, source, deltas)))

    em = ExecutionManager({}, StaticDataProvider(), "backtest", Positions(), Venue(),
                          SimReconciliation())
    em.update_state(T(1), "strategy_manager", [block("x")])
    (_, (ts, b)), (_, pos) = calls
    assert ts == T(1) and isinstance(b, InstructionBlock) and b.block_id == "x"
    assert pos == (T(1), "execution_manager", {"filled": "x"})


def test_block_handed_to_venue_is_frozen_and_isolated_from_caller() -> None:
    """Changing the submitted dicts after submission does not change what is executed."""
    r = rig("backtest")
    raw = block("x", amount=1.0)
    r.em.execute_instruction_blocks(T(0), [raw])
    raw["instructions"][0]["amount"] = 1000.0
    r.em.update_state(T(0), "retry")
    assert r.venue.executed["x"]["changes"]["ETH"] == 1.0


def test_every_transition_is_logged_with_its_fields() -> None:
    """Each transition is a block_transition event with block_id, source, dest, trigger,
    attempt, written before the state changes."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", [block("x")])
    moves = r.events("block_transition")
    assert [(m["source"], m["dest"], m["trigger"]) for m in moves] == [
        ("queued", "routing", "start"),
        ("routing", "pending_reconciliation", "executed"),
        ("pending_reconciliation", "success", "reconciled")]
    assert all(m["block_id"] == "x" and m["attempt"] == 1 for m in moves)
    assert moves[1]["deltas"] == r.venue.executed["x"]


def test_events_are_in_journal_order() -> None:
    """Acceptance, the intent to route, the deltas, the hand-off and the update are ordered."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", [block("x")])
    kinds = [e.event_type for e in r.log.events]
    assert kinds == ["checkpoint", "component_initialization", "block_accepted",
                     "block_transition",
                     "block_transition", "positions_updated", "block_transition",
                     "state_update"]


def test_block_accepted_event_carries_the_whole_block() -> None:
    """block_accepted has the block's id and every field, plus its place in the batch."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), [block("x"), block("y")])
    first, second = r.events("block_accepted")
    assert first["block_id"] == "x" and first["action"] == "trade" and first["priority"] == 1
    assert list(first["instructions"]) == block("x")["instructions"]
    assert (first["batch_index"], first["batch_size"], second["batch_index"]) == (0, 2, 1)


def test_execute_instruction_blocks_only_queues() -> None:
    """execute_instruction_blocks validates and queues; nothing runs until update_state."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a", "b"))
    assert r.venue.route_calls == {}
    assert r.em.queued_block_ids == ("a", "b")
    assert r.em.block_state("a") is BlockState.QUEUED
    r.em.update_state(T(1), "strategy_manager")
    assert r.em.block_state("a") is BlockState.SUCCESS
    assert r.em.block_state("zzz") is None


def test_status_dict_has_the_contract_keys() -> None:
    """get_execution_status and update_state return the contract's status dict."""
    r = rig()
    status = r.em.update_state(T(0), "strategy_manager", [block("a")])
    assert status == r.em.get_execution_status()
    for key in ("status", "current_block", "reconciliation_status", "blocks_executed",
                "blocks_failed", "queue_length", "execution_mode", "halted"):
        assert key in status
    assert status["current_block"] is None and status["reconciliation_status"] == "success"


def test_current_block_is_the_one_in_flight() -> None:
    """While a block is being routed, the status names it as current_block."""
    seen: list[dict[str, Any]] = []
    r = rig()

    class Peeking(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            seen.append(r.em.get_execution_status())
            return super().route_instruction(ts, b)

    r.faulty.inner = Peeking()
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert [(s["current_block"], s["current_block_state"], s["queue_length"]) for s in seen] \
        == [("a", "routing", 1), ("b", "routing", 0)]
    assert seen[0]["reconciliation_status"] == "pending"


def test_trigger_source_is_validated() -> None:
    """Only strategy_manager, manual and retry are trigger sources."""
    r = rig()
    with pytest.raises(InvalidArgumentError, match="trigger_source"):
        r.em.update_state(T(0), "cron", [block("a")])
    assert r.em.queued_block_ids == ()
    assert r.events("error")[-1]["error_code"] == "EXEC-011"


def test_state_update_event_on_every_call() -> None:
    """Every update_state logs a state_update with trigger source, counters and timing."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", [block("a")])
    r.em.update_state(T(1), "retry")
    ups = r.events("state_update")
    assert [u["trigger_source"] for u in ups] == ["strategy_manager", "retry"]
    assert ups[0]["blocks_executed"] == 1 and ups[0]["current_block_index"] == 1
    assert all(u["processing_time_ms"] >= 0 for u in ups)


# ------------------------------------------------------------------------ refusals


def test_invalid_batch_leaves_queue_exactly_as_it_was() -> None:
    """One bad block refuses the whole batch (EXEC-004); the queue is unchanged."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a", "b"))
    before = (r.em.queued_block_ids, r.em.get_execution_status())
    with pytest.raises(InvalidBlockError) as info:
        r.em.execute_instruction_blocks(T(1), [block("c"), {**block("d"), "priority": "high"},
                                            {**block("e"), "action": 17}])
    assert info.value.error_code == "EXEC-004"
    assert {(p.block_id, p.field) for p in info.value.problems} == {
        ("d", "priority"), ("e", "action")}
    assert (r.em.queued_block_ids, r.em.get_execution_status()["blocks_accepted"]) == (
        before[0], before[1]["blocks_accepted"])
    assert r.events("error")[-1]["error_code"] == "EXEC-004"
    assert [e["block_id"] for e in r.events("block_accepted")] == ["a", "b"]


def test_refused_batch_does_not_stop_queued_work() -> None:
    """update_state with a bad batch still runs queued blocks, then raises the refusal."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a"))
    with pytest.raises(InvalidBlockError):
        r.em.update_state(T(1), "strategy_manager", [{"block_id": "b"}])
    assert r.em.block_state("a") is BlockState.SUCCESS
    assert r.em.block_state("b") is None


@pytest.mark.parametrize("where", ["queued", "finished", "batch"])
def test_duplicate_block_ids_are_refused(where: str) -> None:
    """A block_id already queued, recently finished, or repeated in the batch is refused."""
    r = rig()
    if where == "queued":
        r.em.execute_instruction_blocks(T(0), blocks("a"))
        batch = blocks("a")
    elif where == "finished":
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
        batch = blocks("a")
    else:
        batch = blocks("a", "a")
    with pytest.raises(InvalidBlockError, match="block_id"):
        r.em.execute_instruction_blocks(T(1), batch)
    assert r.venue.route_calls["a"] <= 1


def test_duplicate_of_block_in_flight_is_refused() -> None:
    """A block_id that is in flight cannot be submitted again, even from a collaborator."""
    r = rig()
    errors: list[Exception] = []

    class Resubmitting(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            try:
                r.em.execute_instruction_blocks(ts, [block(b.block_id)])
            except InvalidBlockError as exc:
                errors.append(exc)
            return super().route_instruction(ts, b)

    r.faulty.inner = Resubmitting()
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert len(errors) == 1 and r.em.queued_block_ids == ()


def test_finished_ids_are_remembered_for_ten_thousand_blocks() -> None:
    """The last 10,000 finished block_ids are refused; older ones may be used again."""
    em = ExecutionManager({"max_queue_size": 20_000}, StaticDataProvider(), "backtest",
                          SimPositionHandler(), SimVenue(), SimReconciliation())
    em.update_state(T(0), "strategy_manager", [block(f"b{i}") for i in range(10_001)])
    em.execute_instruction_blocks(T(1), [block("b0")])  # the 10,001st oldest
    with pytest.raises(InvalidBlockError):
        em.execute_instruction_blocks(T(1), [block("b1")])


def test_queue_overflow_refuses_batch_whole() -> None:
    """A batch that would pass max_queue_size is refused (EXEC-003); the queue keeps going."""
    r = rig(max_queue_size=3)
    r.em.execute_instruction_blocks(T(0), blocks("a", "b"))
    with pytest.raises(QueueFullError) as info:
        r.em.update_state(T(1), "strategy_manager", blocks("c", "d"))
    assert info.value.error_code == "EXEC-003"
    assert r.em.block_state("a") is BlockState.SUCCESS  # queued work went on
    assert r.em.block_state("c") is None and r.em.block_state("d") is None
    (overflow,) = r.events("execution_queue_overflow")
    assert overflow == {"queue_length": 2, "batch_size": 2, "max_queue_size": 3}
    r.em.update_state(T(2), "strategy_manager", blocks("c", "d"))  # fits now
    assert r.em.get_execution_status()["blocks_executed"] == 4


def test_empty_batch_is_a_no_op() -> None:
    """An empty batch queues nothing and logs nothing about blocks."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", [])
    assert r.events("block_accepted") == [] and r.em.get_execution_status()[
        "blocks_accepted"] == 0


# ------------------------------------------------------------------------ backtest


def test_backtest_does_not_read_reconciliation() -> None:
    """Backtest reconciliation is simulated: success once the positions took the deltas."""

    class Exploding:
        @property
        def reconciliation_status(self) -> str:
            raise AssertionError("read in backtest")

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), Exploding())
    assert em.update_state(T(0), "strategy_manager", blocks("a"))["blocks_executed"] == 1


def test_backtest_fails_fast_and_resumes_on_next_call() -> None:
    """A backtest venue error fails the block (EXEC-001, raised), no retry; the rest stays
    queued until the next update_state."""
    r = rig("backtest", faults=["error"])
    with pytest.raises(ComponentError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    assert info.value.error_code == "EXEC-001" and info.value.block_id == "a"
    assert info.value.original_exception.type_name == "ConnectionError"  # type: ignore[union-attr]
    assert r.path("a") == ["queued", "routing", "failed"]
    assert r.em.queued_block_ids == ("b", "c")
    assert r.em.get_execution_status()["halted"] is False
    r.em.update_state(T(1), "retry")
    assert r.em.block_state("a") is BlockState.FAILED
    assert r.venue.execution_order == ["b", "c"]
    assert r.sleeps == []


def test_backtest_position_failure_halts() -> None:
    """A position handler failure in backtest fails the block (EXEC-008) and halts; only
    'manual' runs on (a 'retry' raises, naming the halt)."""
    r = rig("backtest", position_failures=[True])
    with pytest.raises(ComponentError, match="EXEC-008"):
        r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.em.halted
    with pytest.raises(ComponentError, match="EXEC-008"):
        r.em.update_state(T(1), "retry")
    assert r.em.queued_block_ids == ("b",)
    r.em.update_state(T(2), "manual")
    assert r.em.block_state("b") is BlockState.SUCCESS


# ------------------------------------------------------------------------ live retries


def test_live_venue_error_reroutes_same_block_after_backoff() -> None:
    """An error goes to retrying, backs off (doubling), asks the venue, routes again."""
    r = rig(faults=["error", "error"], retry_delay_seconds=0.1, max_retries=3,
            not_found_confirmations=1, not_found_min_age_seconds=0)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.path("a") == ["queued", "routing", "retrying", "routing", "retrying", "routing",
                           "pending_reconciliation", "success"]
    assert r.sleeps[:2] == [0.1, 0.2]
    assert [m["attempt"] for m in r.events("block_transition")] == [1, 1, 2, 2, 3, 3, 3]
    reroutes = [m for m in r.events("block_transition") if m["trigger"] == "reroute"]
    assert {m["resolved_by"] for m in reroutes} == {"query_not_found"}


def test_backoff_is_capped() -> None:
    """Backoff doubles per attempt up to max_retry_delay_seconds."""
    r = rig(faults=["reject"] * 8, retry_delay_seconds=1.0, max_retry_delay_seconds=3.0,
            max_retries=9)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.sleeps[:8] == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]


def test_lost_response_is_not_executed_twice_when_venue_can_be_asked() -> None:
    """Executed but the reply was lost: query_execution finds it; no second route."""
    r = rig(faults=["lost_response"])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.venue.route_calls["a"] == 1
    assert r.path("a") == ["queued", "routing", "retrying", "pending_reconciliation",
                           "success"]
    resume = r.events("block_transition")[2]
    assert resume["resolved_by"] == "query_found" and resume["deltas"] == r.venue.executed["a"]
    assert r.positions.updates == [r.venue.executed["a"]]


def test_lost_response_without_query_reroutes_same_block_id() -> None:
    """Without query_execution the block is routed again under the same block_id."""
    r = rig(faults=["lost_response"], queryable=False)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.venue.route_calls["a"] == 2 and r.venue.execution_order == ["a"]
    reroute = r.events("block_transition")[2]
    assert reroute["trigger"] == "reroute"
    assert reroute["resolved_by"] == "no_query_at_least_once"


def test_reply_after_execution_timeout_is_ambiguous_then_resolved() -> None:
    """A reply later than execution_timeout is an unknown outcome, settled without a
    second route."""
    r = rig(faults=["hang_after"], execution_timeout=30)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.venue.route_calls["a"] == 1
    failed = r.events("block_transition")[1]
    assert failed["trigger"] == "route_failed" and "execution_timeout" in failed["reason"]
    assert r.events("block_transition")[2]["resolved_by"] == "late_reply"
    assert r.em.block_state("a") is BlockState.SUCCESS


def test_timeout_before_execution_routes_again() -> None:
    """A call that timed out without executing is found absent and routed again."""
    r = rig(faults=["hang_before"])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.venue.route_calls["a"] == 1  # the hung call never reached the venue
    assert r.path("a")[:4] == ["queued", "routing", "retrying", "routing"]
    assert r.em.block_state("a") is BlockState.SUCCESS


def test_attempts_exhausted_fails_block_and_moves_on() -> None:
    """After max_retries failed attempts: EXEC-001, logged, next block runs, no raise."""
    r = rig(faults=["reject"] * 3, max_retries=3)
    status = r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.em.block_state("a") is BlockState.FAILED
    assert r.em.block_state("b") is BlockState.SUCCESS
    assert status["blocks_failed"] == 1 and not status["halted"]
    (failed,) = r.events("block_failed")
    assert failed == {"block_id": "a", "error_code": "EXEC-001", "attempts": 3}
    assert r.events("error")[-1]["error_code"] == "EXEC-001"
    assert r.sleeps[:2] == [0.1, 0.2]  # no pointless wait after the last attempt


def test_permanent_rejection_fails_at_once() -> None:
    """A non-retryable rejection fails the block from routing without retrying."""
    r = rig(faults=["reject_final"])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.path("a") == ["queued", "routing", "failed"]
    assert r.em.block_state("b") is BlockState.SUCCESS


def test_venue_returning_none_is_not_taken_as_executed() -> None:
    """A route call that returns None is an unknown outcome, resolved by asking."""

    class Silent(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            super().route_instruction(ts, b)
            return None

    r = rig()
    r.faulty.inner = Silent()
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert "no deltas" in r.events("block_transition")[1]["reason"]
    assert r.events("block_transition")[2]["resolved_by"] == "query_found"


# ------------------------------------------------------------------------ reconciliation


def test_reconciliation_first_poll_is_immediate() -> None:
    """The first poll comes right after the hand-off: an instant success waits for nothing."""
    r = rig()
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.sleeps == []


def test_reconciliation_poll_intervals_grow_from_50ms_to_1s() -> None:
    """Polling starts at <= 50 ms and doubles up to 1 s, within reconciliation_timeout."""
    r = rig(recon=[("ok", 5.0)], reconciliation_timeout=10)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.sleeps[0] <= 0.05
    assert all(b == min(2 * a, 1.0) for a, b in zip(r.sleeps, r.sleeps[1:], strict=False))
    assert max(r.sleeps) == 1.0
    assert r.em.block_state("a") is BlockState.SUCCESS


def test_reconciliation_timeout_polls_again_without_rerouting() -> None:
    """A reconciliation timeout goes to retrying and waits again; the venue is not called."""
    r = rig(recon=[("ok", 15.0)], reconciliation_timeout=10)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.venue.route_calls["a"] == 1
    assert r.path("a") == ["queued", "routing", "pending_reconciliation", "retrying",
                           "pending_reconciliation", "success"]
    (timeout,) = r.events("reconciliation_timeout")
    assert timeout["block_id"] == "a" and math.isclose(timeout["waited_s"], 10.0)
    assert len(r.positions.updates) == 1  # deltas handed off once


def test_reconciliation_never_halts_the_manager() -> None:
    """Reconciliation that never succeeds: EXEC-002, block failed, manager halted."""
    r = rig(recon=[("never", 0)], reconciliation_timeout=1, max_retries=2)
    status = r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert status["halted"] and status["halt_reason"] == "EXEC-002"
    assert status["status"] == "unhealthy"
    assert r.em.block_state("a") is BlockState.FAILED
    assert r.em.queued_block_ids == ("b",)
    assert len(r.events("reconciliation_timeout")) == 2
    assert r.events("manager_halted") == [{"reason": "EXEC-002", "block_id": "a"}]


def test_halted_manager_queues_but_starts_nothing_until_manual() -> None:
    """While halted, batches are validated and queued but nothing runs until 'manual'."""
    r = rig(recon=[("fail", 0)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.halted and r.em.block_state("a") is BlockState.FAILED
    r.em.update_state(T(1), "strategy_manager", blocks("b"))
    r.em.update_state(T(2), "retry")
    with pytest.raises(InvalidBlockError):
        r.em.update_state(T(3), "strategy_manager", [{"block_id": "bad"}])
    assert r.em.queued_block_ids == ("b",) and r.venue.route_calls["b"] == 0
    status = r.em.update_state(T(4), "manual")
    assert not status["halted"] and r.em.block_state("b") is BlockState.SUCCESS
    assert r.em.block_state("a") is BlockState.FAILED
    assert r.events("manager_resumed")[0]["reason"] == "EXEC-002"


def test_reconciliation_failure_is_immediate() -> None:
    """A 'failed' reconciliation status fails the block at once (EXEC-002) and halts."""
    r = rig(recon=[("fail", 0)])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.path("a") == ["queued", "routing", "pending_reconciliation", "failed"]
    assert r.events("block_failed")[0]["error_code"] == "EXEC-002"


def test_stale_success_from_previous_block_is_not_trusted() -> None:
    """A component naming another block as reconciled does not count for this one."""
    r = rig(reconciliation_timeout=1, max_retries=1)

    class Stale:
        reconciled_block_id = "previous"
        reconciliation_status = "success"

    em = ExecutionManager({"reconciliation_timeout": 1, "max_retries": 1},
                          StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Stale(), clock=r.clock, sleep=r.clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.block_state("a") is BlockState.FAILED and em.halted


def test_a_reconciled_id_whose_comparison_raises_is_the_components_error() -> None:
    """A component whose reconciled_block_id is a proxy that raises when compared fails the
    block as a reconciliation error, named; it escaped from the driver and retired the
    manager in the middle of its step."""
    clock = rig().clock

    class RemoteId:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("remote id gone")

        __hash__ = object.__hash__

    class Proxied:
        reconciliation_status = "success"
        reconciled_block_id = RemoteId()

    em = ExecutionManager({"reconciliation_timeout": 1, "max_retries": 1},
                          StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          Proxied(), clock=clock, sleep=clock.sleep)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.block_state("a") is BlockState.FAILED and not em.interrupted
    assert "RuntimeError: remote id gone" in str(em.health_check()["errors"])


def test_position_handler_failure_never_reroutes() -> None:
    """The position handler refusing deltas fails the block (EXEC-008) and halts; the
    venue is not called again."""
    r = rig(position_failures=[True])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.venue.route_calls["a"] == 1
    assert r.path("a") == ["queued", "routing", "pending_reconciliation", "failed"]
    assert r.em.halted and r.em.get_execution_status()["halt_reason"] == "EXEC-008"
    assert r.em.queued_block_ids == ("b",)


# ------------------------------------------------------------------------ risk checks


class BrokenReal(float):
    """A number type of its own whose comparison fails."""

    def __gt__(self, other: object) -> bool:
        raise ArithmeticError("cannot compare")


@pytest.mark.parametrize("price", [
    None, 0, -1.0, math.nan, math.inf, True, "3000", np.bool_(True), np.float32("nan"),
    np.int64(0), np.float64(-2), Decimal("NaN"), Decimal("sNaN"), Decimal("-1"),
    Decimal("Infinity"), Fraction(0), BrokenReal(5.0)])
def test_price_validation_fails_block_unrouted(price: Any) -> None:
    """An instruction naming a token needs a finite positive price, or EXEC-005 unrouted."""
    prices = {} if price is None else {"ETH": price}
    r = rig(prices=prices)
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.venue.route_calls == {}
    assert r.path("a") == ["queued", "routing", "failed"]
    fail = r.events("block_transition")[1]
    assert fail["error_code"] == "EXEC-005" and "ETH" in fail["reason"]


@pytest.mark.parametrize("price", [
    3000, 2999.5, np.int64(3000), np.float32(2999.5), np.float64(3000), np.uint16(3000),
    Decimal("2999.50"), Fraction(5999, 2), pd.Series([3000.0]).iloc[0]])
def test_a_price_may_be_any_finite_positive_real(price: Any) -> None:
    """Prices from numpy, pandas, Decimal or Fraction data pass as the number they are."""
    r = rig(prices={"ETH": price})
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.path("a") == ["queued", "routing", "pending_reconciliation", "success"]


def test_price_validation_in_backtest_raises() -> None:
    """In backtest a refused block fails fast with its own code."""
    r = rig("backtest", prices={"USDT": 1.0})
    with pytest.raises(ComponentError, match="EXEC-005"):
        r.em.update_state(T(0), "strategy_manager", blocks("a"))


def test_instruction_without_token_is_refused() -> None:
    """An instruction naming no asset cannot be price-checked: refused (EXEC-004) at
    acceptance, naming the field and the config's asset_field; nothing queued."""
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation())
    with pytest.raises(InvalidBlockError) as info:
        em.update_state(T(0), "strategy_manager", [block("a", token=None)])
    (problem,) = info.value.problems
    assert problem.field == "instructions[0].token"
    assert "required field is missing" in problem.reason and "asset_field" in problem.reason
    assert em.block_state("a") is None


def test_market_data_failure_fails_price_validation() -> None:
    """Market data that cannot be read fails the block with EXEC-005, unrouted."""

    class Broken:
        def get_data(self, ts: Any) -> Any:
            return {"prices": {}}  # no market_data key

    venue = SimVenue()
    em = ExecutionManager({}, Broken(), "live", SimPositionHandler(), venue,
                          SimReconciliation())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.block_state("a") is BlockState.FAILED and venue.route_calls == {}


def test_custom_risk_checks_run_after_prices_in_order() -> None:
    """Risk checks see the block and market data, run after price validation; a refusal
    fails the block with EXEC-006 and the check's reason."""
    seen: list[str] = []

    def first(b: InstructionBlock, market: Any) -> None:
        seen.append(f"first:{b.block_id}:{market['prices']['ETH']}")

    def max_size(b: InstructionBlock, market: Any) -> str | None:
        seen.append("max_size")
        return "too big" if b.instructions[0]["amount"] > 10 else None

    r = rig(risk_checks=[first, max_size])
    r.em.update_state(T(0), "strategy_manager", [block("a", amount=1), block("b", amount=50)])
    assert r.em.block_state("a") is BlockState.SUCCESS
    assert r.em.block_state("b") is BlockState.FAILED and r.venue.route_calls["b"] == 0
    fail = r.events("block_transition")[-1]
    assert fail["error_code"] == "EXEC-006" and fail["reason"] == "max_size: too big"
    assert seen == ["first:a:3000.0", "max_size", "first:b:3000.0", "max_size"]


@pytest.mark.parametrize("verdict", [False, "", 0])
def test_falsy_non_none_verdict_refuses(verdict: Any) -> None:
    """Only None or True passes a risk check; any other verdict refuses."""
    r = rig(risk_checks=[lambda b, m: verdict])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.FAILED


def test_risk_check_that_raises_refuses_the_block() -> None:
    """A risk check that raises is a refusal (fail safe), not a crash."""

    def broken(b: InstructionBlock, market: Any) -> None:
        raise KeyError("limits")

    r = rig(risk_checks=[broken])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.FAILED
    assert "raised KeyError" in r.events("block_transition")[-1]["reason"]


@pytest.mark.parametrize(("name", "says"), [(None, "None: refused"), (7, "7: refused"),
                                             ("lim{}its", "lim{}its: refused")])
def test_a_risk_check_of_any_name_refuses_by_it(name: Any, says: str) -> None:
    """A check whose __name__ is not a string (or holds braces) is named as it is: the
    block fails with EXEC-006, the manager goes on (a non-str name once stopped it)."""

    class Check:
        def __call__(self, b: InstructionBlock, market: Any) -> bool:
            return False

    check = Check()
    check.__name__ = name  # type: ignore[attr-defined]
    r = rig(risk_checks=[check])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.FAILED
    fail = r.events("block_transition")[-1]
    assert (fail["error_code"], fail["reason"]) == ("EXEC-006", says)


def test_a_risk_check_whose_name_raises_refuses_by_its_type() -> None:
    """A check whose __name__ itself raises (a property, a proxy) is named by its type: the
    block fails with EXEC-006 and the manager goes on (the error escaped raw)."""

    class Proxy:
        @property
        def __name__(self) -> str:
            raise RuntimeError("remote object gone")

        def __call__(self, b: InstructionBlock, market: Any) -> bool:
            return False

    r = rig(risk_checks=[Proxy()])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.FAILED
    fail = r.events("block_transition")[-1]
    assert (fail["error_code"], fail["reason"]) == ("EXEC-006", "Proxy: refused")


class _NamelessMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("metaclass name gone")


def test_a_risk_check_or_error_of_a_class_whose_name_raises_is_named_so() -> None:
    """A check whose very type's name raises (a metaclass property), or a check that raises
    an exception of such a class, refuses the block (EXEC-006) named '?', and the manager
    goes on (both escaped and retired it)."""

    class Check(metaclass=_NamelessMeta):
        def __call__(self, b: InstructionBlock, market: Any) -> bool:
            return False

    class Boom(Exception, metaclass=_NamelessMeta):
        pass

    def raises(b: InstructionBlock, market: Any) -> bool:
        raise Boom("limits")

    for check, says in ((Check(), "?: refused"), (raises, "risk check raises raised ?: limits")):
        r = rig(risk_checks=[check])
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
        assert r.em.block_state("a") is BlockState.FAILED and not r.em.interrupted
        fail = r.events("block_transition")[-1]
        assert (fail["error_code"], fail["reason"]) == ("EXEC-006", says)


def test_collaborators_of_classes_whose_name_raises_never_retire_the_manager() -> None:
    """A venue raising an exception of such a class (an observer watching its calls), a
    reconciliation status or a venue's answer of such a class, and an observer of such a
    class that raises: each is named '?' where it is described, and the manager goes on
    (each escaped and retired it)."""
    from fsm_exec.observe import Observer

    class Lost(ConnectionError, metaclass=_NamelessMeta):
        pass

    class Odd(metaclass=_NamelessMeta):
        pass

    class Watching(Observer):
        def on_call(self, event: Any) -> None:
            pass

    class Failing(Observer, metaclass=_NamelessMeta):
        def on_transition(self, event: Any) -> None:
            raise ValueError("observer down")

    class LostVenue(SimVenue):
        def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
            raise Lost("reset")

    class OddVenue(SimVenue):
        def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
            return Odd()

    class OddStatus:
        reconciliation_status = Odd()

    clock = rig().clock
    cases: list[tuple[Any, Any, list[Any]]] = [
             (LostVenue(), SimReconciliation(None), [Watching()]),
             (SimVenue(), OddStatus(), []),
             (OddVenue(), SimReconciliation(None), []),
             (SimVenue(), SimReconciliation(None), [Failing()])]
    for venue, rc, observers in cases:
        em = ExecutionManager({"reconciliation_timeout": 1, "max_retries": 1},
                              StaticDataProvider(), "live", SimPositionHandler(rc), venue,
                              rc, clock=clock, sleep=clock.sleep, observers=observers)
        em.update_state(T(0), "strategy_manager", blocks("a"))
        assert not em.interrupted, venue
        assert em.block_state("a") is not None


class _ModulelessMeta(type):
    @property
    def __module__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("module gone")


def test_a_collaborators_exception_whose_module_raises_is_named_by_its_type() -> None:
    """A venue or a position handler raising an exception whose class's __module__ raises
    fails the block as that collaborator's error, named by its type, and the manager goes
    on (the scrubbed copy of the exception read __module__: it escaped and retired the
    manager, the block stuck in routing or pending_reconciliation)."""

    class Boom(Exception, metaclass=_ModulelessMeta):
        pass

    class Venue(SimVenue):
        def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
            raise Boom("x")

    class Positions(SimPositionHandler):
        def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
            raise Boom("y")

    for venue, positions in ((Venue(), SimPositionHandler()), (SimVenue(), Positions())):
        em = ExecutionManager({}, StaticDataProvider(), "backtest", positions, venue,
                              SimReconciliation(None))
        with pytest.raises(ComponentError) as caught:
            em.update_state(T(0), "strategy_manager", blocks("a"))
        assert "Boom" in str(caught.value) and not em.interrupted
        assert em.block_state("a") is BlockState.FAILED


# ------------------------------------------------------------------------ journal faults


def test_event_log_failure_halts_and_loses_nothing() -> None:
    """A journal write failure raises EXEC-009 and halts before acting further; the block
    stays in flight and a manual resume finishes it without routing it again."""
    r = rig()
    r.log.fail_on = {"positions_updated"}
    with pytest.raises(EventLogError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert info.value.error_code == "EXEC-009" and r.em.halted
    status = r.em.get_execution_status()
    assert status["current_block"] == "a"
    assert status["current_block_state"] == "pending_reconciliation"
    assert r.em.queued_block_ids == ("b",)
    r.log.fail_on = set()
    r.em.update_state(T(1), "retry")  # still halted: needs manual
    assert r.em.block_state("a") is BlockState.PENDING_RECONCILIATION
    r.em.update_state(T(2), "manual")
    assert r.venue.route_calls == {"a": 1, "b": 1}
    assert r.em.block_state("a") is BlockState.SUCCESS


def test_failed_transition_record_leaves_state_unchanged() -> None:
    """If the record of a transition cannot be written, the transition does not happen."""
    r = rig()
    r.log.fail_on = {"block_transition"}
    with pytest.raises(EventLogError):
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.QUEUED
    assert r.venue.route_calls == {}
    r.log.fail_on = set()
    r.em.update_state(T(1), "manual")
    assert r.em.block_state("a") is BlockState.SUCCESS


def test_unwritable_acceptance_queues_nothing() -> None:
    """A batch whose acceptance cannot be journaled is not queued."""
    r = rig()
    r.log.fail_on = {"block_accepted"}
    with pytest.raises(EventLogError):
        r.em.execute_instruction_blocks(T(0), blocks("a"))
    assert r.em.queued_block_ids == () and r.em.block_state("a") is None


def test_event_log_error_during_failure_keeps_the_original_error() -> None:
    """If the state_update record also fails while another error propagates, the first
    error is the one raised."""
    r = rig("backtest", faults=["error"])
    r.log.fail_on = {"state_update"}
    with pytest.raises(ComponentError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert info.value.error_code == "EXEC-001"


# ------------------------------------------------------------------------ interruption


# ------------------------------------------------------------------------ real timeouts


def test_call_that_never_returns_does_not_hang_the_manager() -> None:
    """A venue call that never returns is abandoned at execution_timeout (real time); the
    block is never routed again while it may still execute; unresolved, it halts EXEC-007."""
    release = threading.Event()
    calls: list[str] = []

    class Hanging:
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            calls.append(b.block_id)
            release.wait(10)
            return {"late": True}

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            return None

    em = ExecutionManager({"execution_timeout": 0.05, "max_retries": 2,
                           "retry_delay_seconds": 0.01},
                          StaticDataProvider(), "live", SimPositionHandler(), Hanging(),
                          SimReconciliation())
    t0 = time.monotonic()
    try:
        status = em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    finally:
        release.set()
    assert time.monotonic() - t0 < 9  # the venue hangs 10 s: the manager did not wait for it
    assert calls == ["a"]
    assert status["halted"] and status["halt_reason"] == "EXEC-007"
    assert em.block_state("a") is BlockState.FAILED and em.queued_block_ids == ("b",)


def test_abandoned_call_that_finishes_late_is_used() -> None:
    """An abandoned call that finishes while the manager waits on it settles the outcome."""
    release = threading.Event()
    calls: list[str] = []

    class Slow:
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            calls.append(b.block_id)
            release.wait(10)
            return {"block_id": b.block_id, "changes": {}}

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            release.set()  # the venue finishes while we ask
            return None

    rc = SimReconciliation()
    em = ExecutionManager({"execution_timeout": 0.05, "retry_delay_seconds": 0.01},
                          StaticDataProvider(), "live", SimPositionHandler(rc), Slow(), rc)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert calls == ["a"] and em.block_state("a") is BlockState.SUCCESS


# ------------------------------------------------------------------------ health


def test_health_manager_gets_a_report() -> None:
    """The manager registers with the health manager; the report has the spec's metrics."""
    hm = UnifiedHealthManager()
    r = rig(health_manager=hm, faults=["error"])
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    report = hm.check()["ExecutionManager"]
    assert report["status"] == "degraded"  # a retry that succeeded
    assert report["last_update"] == T(0)
    metrics = report["metrics"]
    assert metrics["blocks_executed"] == 1 and metrics["queue_size"] == 0
    assert metrics["update_count"] == 1 and metrics["error_rate"] == 0
    assert report == r.em.health_check()


def test_health_goes_unhealthy_then_recovers_after_100_clean_updates() -> None:
    """A failed block makes the manager unhealthy for the next 100 updates, then healthy."""
    r = rig(faults=["reject"] * 3)
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.health_status == "unhealthy"
    report = r.em.health_check()
    assert report["errors"][-1]["error_code"] == "EXEC-001"
    assert report["metrics"]["error_rate"] == 1.0
    for t in range(1, 100):
        r.em.update_state(T(t), "retry")
    assert r.em.health_status == "unhealthy"
    r.em.update_state(T(100), "retry")
    assert r.em.health_status == "healthy"


def test_invalid_batch_degrades_health() -> None:
    """A refused batch is a MEDIUM error: degraded, not unhealthy."""
    r = rig()
    with pytest.raises(InvalidBlockError):
        r.em.update_state(T(0), "strategy_manager", [{}])
    assert r.em.health_status == "degraded"


# ------------------------------------------------------------------------ secrets


def test_no_secret_reaches_events_or_errors() -> None:
    """A secret from the config never reaches an event or an error, even when an adapter
    puts it in its own exception message."""

    class Leaky(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            raise ConnectionError(f"auth failed for key {CANARY}")

    r = rig("backtest")
    r.faulty.inner = Leaky()
    with pytest.raises(ComponentError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert CANARY not in str(info.value)
    assert CANARY not in repr([e.data for e in r.log.events])
    assert "[REDACTED]" in str(info.value)
    assert CANARY not in repr(r.em.health_check()) + repr(r.em.get_execution_status())


# ------------------------------------------------------------------------ edge paths


def test_every_instruction_is_priced() -> None:
    """In a block, every instruction's token is priced: the first without a price fails
    the block (EXEC-005), naming it."""
    b = {**block("a"), "instructions": [{"venue": "lending", "token": "ETH", "amount": 5.0},
                                        {"venue": "spot", "token": "BTC", "amount": 1.0}]}
    r = rig(prices={"ETH": 3000.0})
    r.em.update_state(T(0), "strategy_manager", [b])
    reason = r.events("block_transition")[-1]["reason"]
    assert "instructions[1]" in reason and "token 'BTC'" in reason


def test_market_data_without_prices_fails_price_validation() -> None:
    """Market data lacking a prices mapping refuses blocks that name a token."""

    class NoPrices:
        def get_data(self, ts: Any) -> Any:
            return {"market_data": {}}

    em = ExecutionManager({}, NoPrices(), "live", SimPositionHandler(), SimVenue(),
                          SimReconciliation())
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.block_state("a") is BlockState.FAILED
    assert em.health_check()["errors"][-1]["error_code"] == "EXEC-005"


def test_refusal_wins_over_a_block_failure_in_the_same_call() -> None:
    """When queued work fails fast in the call that refused a batch, the refusal is raised
    (the caller must keep its blocks) and carries the block's failure."""
    r = rig("backtest", faults=["error"])
    r.em.execute_instruction_blocks(T(0), blocks("a"))
    with pytest.raises(InvalidBlockError) as info:
        r.em.update_state(T(1), "strategy_manager", [{"block_id": "bad"}])
    assert any("EXEC-001" in n for n in info.value.__notes__)
    context = info.value.__context__
    assert isinstance(context, ComponentError) and context.error_code == "EXEC-001"
    assert r.em.block_state("a") is BlockState.FAILED


def test_journal_failure_wins_over_a_refusal() -> None:
    """A journal failure in the same call is raised, with the refusal noted on it."""
    r = rig()
    r.em.execute_instruction_blocks(T(0), blocks("a"))
    r.log.fail_on = {"positions_updated"}
    with pytest.raises(EventLogError) as info:
        r.em.update_state(T(1), "strategy_manager", [{"block_id": "bad"}])
    assert any("also refused" in n for n in info.value.__notes__)


def test_ambiguous_errors_exhaust_attempts_with_exec_001() -> None:
    """Errors that the venue's query shows executed nothing fail the block after
    max_retries attempts (EXEC-001) and the manager moves on."""
    r = rig(faults=["error"] * 3, max_retries=3)
    status = r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.em.block_state("a") is BlockState.FAILED and not status["halted"]
    assert r.events("block_failed")[0]["error_code"] == "EXEC-001"
    assert r.venue.route_calls["a"] == 0 and r.em.block_state("b") is BlockState.SUCCESS


def test_abandoned_call_confirmed_by_query_is_not_routed_again() -> None:
    """While an abandoned call still runs, a query that finds the execution settles it."""
    release = threading.Event()
    calls: list[str] = []

    class Venue:
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            calls.append(b.block_id)
            release.wait(10)
            return {"late": True}

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            return {"block_id": b.block_id, "changes": {"ETH": 1.0}}

    rc = SimReconciliation()
    positions = SimPositionHandler(rc)
    em = ExecutionManager({"execution_timeout": 0.05, "retry_delay_seconds": 0.01},
                          StaticDataProvider(), "live", positions, Venue(), rc)
    try:
        em.update_state(T(0), "strategy_manager", blocks("a"))
    finally:
        release.set()
    assert calls == ["a"] and em.block_state("a") is BlockState.SUCCESS
    assert positions.updates == [{"block_id": "a", "changes": {"ETH": 1.0}}]


@pytest.mark.parametrize("query_fault", ["raises", "slow"])
def test_unanswered_query_defers_then_halts_with_exec_007(query_fault: str) -> None:
    """A query that fails leaves the outcome unknown: the manager asks again on the next
    attempt and, out of attempts, fails the block with EXEC-007 and halts; it never
    routes again while the outcome is unknown."""
    clock = FakeClock()
    venue = SimVenue()

    class Venue:
        def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
            venue.route_instruction(ts, b)
            raise ConnectionResetError("lost")

        def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
            if query_fault == "slow":
                clock.advance(60)
                return None
            raise TimeoutError(f"query failed {CANARY}")

    log = RecordingEventLogger()
    em = ExecutionManager({"max_retries": 3, "api_key": CANARY}, StaticDataProvider(),
                          "live", SimPositionHandler(), Venue(), SimReconciliation(),
                          event_logger=log, clock=clock, sleep=clock.sleep)
    status = em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert venue.route_calls["a"] == 1
    assert status["halted"] and status["halt_reason"] == "EXEC-007"
    unresolved = [e.data for e in log.of_type("execution_unresolved")]
    assert [u["attempt"] for u in unresolved] == [2, 3]
    assert CANARY not in repr(log.events)
    assert em.queued_block_ids == ("b",)


def test_event_log_error_from_the_logger_is_passed_through() -> None:
    """A logger that raises EventLogError itself gets it raised unchanged, and halts."""

    class Logger:
        def __init__(self) -> None:
            self.fail = False

        def log_event(self, ts: Any, event_type: str, component: str, data: Any) -> None:
            if self.fail:
                raise EventLogError("disk full")

    logger = Logger()
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(), event_logger=logger)
    logger.fail = True
    with pytest.raises(EventLogError, match="disk full"):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.halted and em.queued_block_ids == ()


def test_state_update_write_failure_is_raised() -> None:
    """If only the state_update record fails, the call raises EXEC-009 and halts."""
    r = rig()
    r.log.fail_on = {"state_update"}
    with pytest.raises(EventLogError):
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert r.em.block_state("a") is BlockState.SUCCESS and r.em.halted


def test_update_state_from_inside_a_collaborator_is_refused() -> None:
    """A collaborator may queue follow-up blocks but not re-enter update_state."""
    r = rig()
    seen: list[Exception] = []

    class Reentrant(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            if b.block_id == "a":
                try:
                    r.em.update_state(ts, "strategy_manager")
                except ComponentError as exc:
                    seen.append(exc)
                r.em.execute_instruction_blocks(ts, blocks("follow-up"))
            return super().route_instruction(ts, b)

    venue = r.faulty.inner = Reentrant()
    r.em.update_state(T(0), "strategy_manager", blocks("a"))
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)
    assert venue.execution_order == ["a", "follow-up"]
    r.em.update_state(T(1), "retry")  # the guard is released after the call


def test_errors_survive_pickling() -> None:
    """A block failure raised in a worker process can be sent back whole."""
    import pickle

    r = rig("backtest", faults=["error"])
    with pytest.raises(ComponentError) as info:
        r.em.update_state(T(0), "strategy_manager", blocks("a"))
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is type(info.value) and str(copy) == str(info.value)
    assert (copy.error_code, copy.block_id, copy.severity) == ("EXEC-001", "a", "HIGH")
    for err in (InvalidBlockError([], 0), QueueFullError(1, 2, 3), ConfigError(["x: bad"]),
                EventLogError("disk"), InvalidArgumentError("arg")):
        again = pickle.loads(pickle.dumps(err))
        assert str(again) == str(err) and again.__dict__.keys() == err.__dict__.keys()


def test_transition_record_failing_with_event_log_error_halts() -> None:
    """A journal raising EventLogError on a transition record halts the manager and the
    error is passed through unchanged."""

    class Logger:
        def log_event(self, ts: Any, event_type: str, component: str, data: Any) -> None:
            if event_type == "block_transition":
                raise EventLogError("journal gone")

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(), event_logger=Logger())
    with pytest.raises(EventLogError, match="journal gone"):
        em.update_state(T(0), "strategy_manager", blocks("a"))
    assert em.halted and em.block_state("a") is BlockState.QUEUED


@pytest.mark.parametrize("error", [EventLogError("disk full"), OSError(5, "I/O error")])
def test_failed_barrier_halts(error: Exception) -> None:
    """If making accepted blocks durable fails, the call raises EXEC-009 and the manager
    halts."""

    class Logger:
        def log_event(self, ts: Any, event_type: str, component: str, data: Any, *,
                      sync: bool = True) -> None:
            return None

        def sync(self) -> None:
            raise error

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(), event_logger=Logger())
    with pytest.raises(EventLogError) as info:
        em.execute_instruction_blocks(T(0), blocks("a"))
    assert info.value.error_code == "EXEC-009" and em.halted


# ------------------------------------------------------------------------ the spec's names


def _spec_block_fields() -> list[str]:
    """The InstructionBlock fields the system-wide component spec lists."""
    spec = (Path(__file__).resolve().parents[2] / "shared" / "spec" /
            "execution_manager.md")
    if not spec.exists():  # a clone without the shared spec: the fields it lists
        return ["block_id", "action", "priority", "instructions"]
    text = spec.read_text()
    found = [f for f in ("block_id", "action", "priority", "instructions") if f in text]
    assert found == ["block_id", "action", "priority", "instructions"]
    return found


def test_execution_queue_lists_the_queued_blocks_as_the_specs_dicts() -> None:
    """em.execution_queue: the queued blocks in order, as dicts with the spec's fields,
    in canonical form; a copy (changing it changes nothing)."""
    r = rig(recon=[("fail", 0)])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b", "c"))  # a halts
    queue = r.em.execution_queue
    assert [q["block_id"] for q in queue] == ["b", "c"]
    assert all(list(q) == _spec_block_fields() for q in queue)
    assert queue[0]["instructions"] == [block("b")["instructions"][0]]
    queue[0]["instructions"][0]["amount"] = 99.0
    queue.clear()
    assert r.em.execution_queue[0]["instructions"][0]["amount"] == 1.0


def test_current_instruction_block_is_the_block_in_flight_or_none() -> None:
    """em.current_instruction_block: the in-flight block as the spec's dict, else None."""
    seen: list[Any] = []

    class Peeking(SimVenue):
        def route_instruction(self, ts: Any, b: InstructionBlock) -> dict[str, Any]:
            seen.append(em.current_instruction_block)
            return super().route_instruction(ts, b)

    rc = SimReconciliation()
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(rc),
                          Peeking(), rc)
    assert em.current_instruction_block is None
    em.update_state(T(0), "strategy_manager", [block("a")])
    assert seen == [{**block("a")}] and list(seen[0]) == _spec_block_fields()
    assert em.current_instruction_block is None


def test_a_later_halt_never_replaces_the_first_reason() -> None:
    """Halted with positions in doubt (EXEC-008), then the journal fails too (EXEC-009):
    the halt still says EXEC-008 (what the operator must reconcile before resuming), and
    nothing records a second halt."""
    r = rig(position_failures=[True])
    r.em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    assert r.em.get_execution_status()["halt_reason"] == "EXEC-008"
    halts = len(r.events("manager_halted"))
    r.log.fail_on = {"state_update", "block_accepted"}
    with pytest.raises(EventLogError):
        r.em.update_state(T(1), "strategy_manager", blocks("c"))
    r.log.fail_on = set()
    assert r.em.halted and r.em.get_execution_status()["halt_reason"] == "EXEC-008"
    r.em.update_state(T(2), "strategy_manager")
    assert r.em.get_execution_status()["halt_reason"] == "EXEC-008"
    assert len(r.events("manager_halted")) == halts


def test_the_counter_properties_are_the_status_counters() -> None:
    """blocks_accepted ... current_block_index read the same state get_execution_status
    reports, after executed, failed and cancelled blocks."""
    em = rig().em
    em.update_state(T(0), "strategy_manager", blocks("a", "b"))
    em.execute_instruction_blocks(T(1), blocks("c"))
    em.cancel(T(2), ["c"], reason="operator")
    s = em.get_execution_status()
    assert (em.blocks_accepted, em.blocks_executed, em.blocks_failed, em.blocks_cancelled,
            em.blocks_retried, em.current_block_index) == (
        s["blocks_accepted"], s["blocks_executed"], s["blocks_failed"], s["blocks_cancelled"],
        s["blocks_retried"], s["current_block_index"]) == (3, 2, 0, 1, 0, 3)
