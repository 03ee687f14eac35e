"""The runtime's rarer paths under a user lifecycle: a recorded transition on a machine
nobody listens to, a lifecycle with two guarded ways to one state, an operator moving the
waiting block while the driver looks at it, recovery into another lifecycle with nothing in
flight, and ``em.trigger`` called where it must not be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_lifecycle_run import BIG, FOUR_EYES, SMALL, manager, priced

from fsm_exec import ComponentError, Lifecycle, ManagerInterruptedError
from fsm_exec.core.engine import EngineMachine
from fsm_exec.core.lifecycle import IllegalTransitionError
from fsm_exec.core.running import table_of
from fsm_exec.sim.venues import FakeClock, SimVenue

from kit import T, rig


def test_a_recorded_transition_without_a_listener_still_moves() -> None:
    """A conditional transition's recorder on a machine with no ``on_move`` (nobody
    journals) lets the move happen, once its conditions hold."""

    class Model:
        state = "a"

    model = Model()
    machine = EngineMachine(model=model, states=["a", "b"], initial="a",
                            auto_transitions=False)
    machine.add_transition("go", "a", "b", conditions=[lambda *a, **k: True],
                           before=[machine.recorder("a", "b", "go")])
    assert getattr(machine, "on_move", None) is None
    assert machine.events["go"].trigger(model)
    assert model.state == "b"


def test_two_guarded_ways_to_one_state_make_one_destination() -> None:
    """Two guarded transitions on one trigger to the same state (either guard suffices)
    give the runnable table that destination once, before the unguarded default."""
    doc: dict[str, Any] = {**FOUR_EYES, "transitions": [
        {"trigger": "start", "source": "queued", "dest": "awaiting_approval",
         "guards": [{"venue_in": {"venues": ["otc"]}}], "meaning": "m"},
        *FOUR_EYES["transitions"]]}
    table = table_of(Lifecycle.from_dict(doc))
    assert table.next["queued", "start"] == ("awaiting_approval", "routing")


def test_a_block_moved_by_an_operator_while_the_driver_looks_is_looked_at_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver meets a refused move because the waiting block moved meanwhile (an
    operator's trigger from another thread): it looks again where the block stands and
    drives it on from there, instead of failing the call."""
    r = rig("backtest", lifecycle=Lifecycle.from_dict(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    assert em.block_state("a") == "awaiting_approval"
    driver = em._driver
    real = driver.user_state

    def moved_meanwhile(f: Any, state: str) -> bool:
        monkeypatch.setattr(driver, "user_state", real)  # once
        em._lc.fire("reject", reason="the other desk")  # the operator's move, journaled
        em._state.move(state, "cancelled", "reject")
        raise IllegalTransitionError("timeout", state, "a")

    monkeypatch.setattr(driver, "user_state", moved_meanwhile)
    em.update_state(T(60), "strategy_manager", [priced("b", SMALL)])
    assert em.block_state("a") == "cancelled" and em.block_state("b") == "success"
    assert r.venue.route_calls == {"b": 1}


def test_recovery_into_another_lifecycle_with_nothing_in_flight(tmp_path: Path) -> None:
    """A journal of the four-eyes lifecycle with nothing in flight, recovered by a default
    manager given a mapping: it carries over (no block to move) and runs on the default."""
    venue, clock = SimVenue(), FakeClock()
    em, el = manager(tmp_path, Lifecycle.from_dict(FOUR_EYES), venue, clock)
    em.update_state(T(0), "strategy_manager", [priced("a", SMALL)])
    assert em.block_state("a") == "success"
    el.close()
    em2, el2 = manager(tmp_path, None, venue, clock)
    report = em2.recover(state_map={})
    assert report.in_doubt is None and report.blocks_executed == 1
    em2.update_state(T(1), "strategy_manager", [priced("b", BIG)])
    assert em2.block_state("b") == "success"  # the default lifecycle: no approval
    el2.close()


def test_trigger_from_inside_update_state_on_its_thread_is_refused() -> None:
    """A backtest venue (called on the strategy's thread) that calls em.trigger gets
    EXEC-011 (the block is being driven), and the call goes on."""
    r = rig("backtest", lifecycle=Lifecycle.from_dict(FOUR_EYES))
    em = r.em
    seen: list[ComponentError] = []

    class Venue:
        def route_instruction(self, ts: Any, b: Any) -> Any:
            try:
                em.trigger("a", "approve", T(1), reason="inside")
            except ComponentError as exc:
                seen.append(exc)
            return r.venue.route_instruction(ts, b)

        def query_execution(self, ts: Any, b: Any) -> Any:
            return None

    r.faulty.inner = Venue()
    em.update_state(T(0), "strategy_manager", [priced("a", SMALL)])
    assert [e.error_code for e in seen] == ["EXEC-011"]
    assert "from inside update_state" in seen[0].message
    assert em.block_state("a") == "success"


def test_trigger_on_a_manager_retired_meanwhile_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A manager retired between trigger's entry check and its critical section (another
    thread's interrupt) refuses, writing nothing."""
    r = rig("live", lifecycle=Lifecycle.from_dict(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    before = len(r.log.events)
    monkeypatch.setattr(em, "_check_usable", lambda **_: None)
    em._interrupted = "an interrupt in another thread"
    with pytest.raises(ManagerInterruptedError):
        em.trigger("a", "approve", T(1), reason="late")
    assert len(r.log.events) == before


def test_a_wait_with_no_recorded_entry_has_waited_nothing() -> None:
    """A block whose move into its state carries no time (a journal written before the
    runtime recorded it) has waited 0 s: its timeout counts from now on, never early."""
    r = rig("live", lifecycle=Lifecycle.from_dict(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])
    f = em._f
    assert f is not None
    f.entered = None
    assert em._waited(f) == 0.0


def test_a_refused_move_of_a_block_nobody_moved_is_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused move while the block still stands where the driver found it is a bug, not
    an operator's move: it is raised (EXEC-012), never swallowed."""
    r = rig("backtest", lifecycle=Lifecycle.from_dict(FOUR_EYES))
    em = r.em
    em.update_state(T(0), "strategy_manager", [priced("a", BIG)])

    def refused(f: Any, state: str) -> bool:
        raise IllegalTransitionError("timeout", state, "a")

    monkeypatch.setattr(em._driver, "user_state", refused)
    with pytest.raises(IllegalTransitionError) as info:
        em.update_state(T(60), "strategy_manager")
    assert info.value.error_code == "EXEC-012"
    assert em.block_state("a") == "awaiting_approval"
