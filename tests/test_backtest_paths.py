"""A backtest block runs on one of two fast paths: the quick path when no observer listens,
the straight-through path when one does. Both must write exactly the records, and leave
exactly the state, the state by state driver would: each deviation from the happy path is
driven here through both and compared."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from fsm_exec import ExecutionManager
from fsm_exec.observe import Observer
from fsm_exec.sim.venues import (
    FakeClock,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block


class ScriptedVenue(SimVenue):
    """A venue whose first reply is scripted: a value, or an exception to raise."""

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self.reply = reply

    def route_instruction(self, timestamp: Any, b: Any) -> Any:
        reply, self.reply = self.reply, "real"
        if isinstance(reply, BaseException):
            raise reply
        if reply == "real":
            return super().route_instruction(timestamp, b)
        return reply


class Listening(Observer):
    def __init__(self) -> None:
        self.moves: list[tuple[str, str]] = []

    def on_transition(self, event: Any) -> None:
        self.moves.append((event.source, event.dest))


def refuse_all(b: Any, market: Any) -> str:
    return "over the limit"


SCENARIOS: dict[str, dict[str, Any]] = {
    "success": {},
    "risk refusal": {"risk_checks": [refuse_all]},
    "venue error": {"reply": ConnectionError("refused")},
    "venue returns nothing": {"reply": None},
    "deltas not plain": {"reply": {"block_id": "a", "changes": {"ETH": np.float64(1.5)}}},
    "deltas need a tag": {"reply": {"block_id": "a", "changes": {"ETH": Decimal("1.5")}}},
    "deltas refused": {"reply": {"block_id": "a", "changes": {"ETH": object()}}},
    "deltas for another block": {"reply": {"block_id": "zz", "changes": {"ETH": 1.0}}},
    "position handler fails": {"position_failures": [True]},
}


def run(scenario: dict[str, Any], observed: bool) -> tuple[Any, ...]:
    clock = FakeClock()
    log = RecordingEventLogger()
    rc = SimReconciliation(clock)
    listener = Listening()
    em = ExecutionManager(
        {"strategy_mode": "eth_basis"}, StaticDataProvider(), "backtest",
        SimPositionHandler(rc, scenario.get("position_failures", ())),
        ScriptedVenue(scenario.get("reply", "real")), rc, event_logger=log, clock=clock,
        sleep=clock.sleep, risk_checks=scenario.get("risk_checks", ()),
        observers=[listener] if observed else [])
    outcome: Any
    try:
        outcome = em.update_state(T(0), "strategy_manager", [block("a"), block("b")])
    except BaseException as exc:  # the outcome compared is the exception
        outcome = (type(exc).__name__, getattr(exc, "error_code", None))
    records = [(e.event_type, {k: v for k, v in e.data.items()
                               if k not in ("elapsed", "duration", "duration_ms")})
               for e in log.events]
    status = em.get_execution_status()
    return (outcome if isinstance(outcome, tuple) else _stable(outcome), records,
            _stable(status), listener.moves)


def _stable(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if "time" not in k and "_at" not in k}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_quick_and_the_observed_paths_agree(name: str) -> None:
    quick_outcome, quick_records, quick_status, _ = run(SCENARIOS[name], observed=False)
    seen_outcome, seen_records, seen_status, moves = run(SCENARIOS[name], observed=True)
    assert quick_records == seen_records
    assert quick_status == seen_status
    assert quick_outcome == seen_outcome
    transitions = [(d["source"], d["dest"]) for t, d in quick_records
                   if t == "block_transition"]
    assert moves == transitions  # the observer heard every move, in order


def test_an_interrupted_venue_call_leaves_the_same_trace_on_both_paths() -> None:
    """A KeyboardInterrupt inside the venue call: both paths re-raise it with the block
    recorded as routing (its outcome in doubt), and the same records written."""
    scenario = {"reply": KeyboardInterrupt()}
    quick = run(scenario, observed=False)
    seen = run(scenario, observed=True)
    assert quick[0] == seen[0] == ("KeyboardInterrupt", None)
    assert quick[1] == seen[1]
    assert [d["dest"] for t, d in quick[1] if t == "block_transition"][-1] == "routing"


@pytest.mark.parametrize(("name", "code"), [
    ("risk refusal", "EXEC-006"), ("venue error", "EXEC-001"),
    ("venue returns nothing", "EXEC-001"), ("deltas refused", "EXEC-015"),
    ("position handler fails", "EXEC-008")])
def test_a_deviation_fails_the_block_in_backtest(name: str, code: str) -> None:
    """Backtest fails fast: the first block ends failed with its code, never retried."""
    _, records, _, _ = run(SCENARIOS[name], observed=False)
    moves = [d for t, d in records if t == "block_transition" and d["block_id"] == "a"]
    assert (moves[-1]["dest"], moves[-1].get("error_code")) == ("failed", code)
    assert [d["dest"] for d in moves].count("routing") == 1
