"""Crash points over the four-eyes and chain-confirmation lifecycles: killed at every record
(live: what was not fsynced is lost), restarted on what the disk kept under the same
lifecycle: no double route, no double hand-off, nothing lost, every block ends once."""

from __future__ import annotations

import copy
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lchooks
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_exactly_once import ArmingHandler, SignalAt
from test_lifecycle_run import BIG, CHAIN, FOUR_EYES, SMALL, priced

from fsm_exec import EventLogger, ExecutionManager, Lifecycle
from fsm_exec.sim.venues import (
    FakeClock,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)
from fsm_exec.testing import CrashReport, assert_crash_safe, crash_points

from kit import T, block, blocks


def world(idempotent: bool = True) -> dict[str, Any]:
    """A venue that is not idempotent (any second execution shows) and a book that
    deduplicates by block_id (or not: then a hand-off given twice is applied twice)."""
    rc = SimReconciliation()
    return {"data_provider": StaticDataProvider(),
            "position_update_handler": SimPositionHandler(rc, idempotent=idempotent),
            "execution_interface_manager": NaiveVenue(), "reconciliation_component": rc}


def naive_world() -> dict[str, Any]:
    return world(idempotent=False)


def once(given: Mapping[str, Any]) -> None:
    """The venue executed each block at most once; the book was handed each block's
    deltas at most once."""
    venue, book = given["execution_interface_manager"], given["position_update_handler"]
    twice = {b: n for b, n in Counter(venue.execution_order).items() if n > 1}
    assert not twice, f"executed twice: {twice}"
    again = {b: n for b, n in book.applied.items() if n > 1}
    assert not again, f"handed off twice: {again}"


def chain() -> Lifecycle:
    doc = copy.deepcopy(CHAIN)
    doc["transitions"][1]["guards"] = [{"call": {"path": "lchooks:three_seconds_on"}}]
    doc["states"]["awaiting_confirmations"]["on_enter"] = []
    return Lifecycle.from_dict(doc)


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_four_eyes_crash_points(mode: str) -> None:
    """Four eyes, an approval fired by the operator between updates, killed at every
    point: each block routed and handed off once, each ends once, in order."""
    batches = [[priced("a", BIG), priced("b", SMALL)], [priced("c", BIG)]]
    lc = Lifecycle.from_dict(FOUR_EYES)
    report = assert_crash_safe(world, batches, check=once, mode=mode, lifecycle=lc,
                               triggers=("approve",))
    assert report.points == report.total_points
    assert report.points > 10
    _hand_offs_doubled_only_by_a_hard_kill(report, batches, mode, lc, ("approve",))


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_chain_confirmation_crash_points(mode: str) -> None:
    """Chain confirmations, the hand-off only once confirmed, killed at every point: no
    double route, no double hand-off, nothing lost."""
    batches = [[block("a"), block("b")], [block("c")]]
    report = assert_crash_safe(world, batches, check=once, mode=mode, lifecycle=chain())
    assert report.points == report.total_points
    assert report.points > 10
    _hand_offs_doubled_only_by_a_hard_kill(report, batches, mode, chain(), ())


class ConfirmedOnly(SimPositionHandler):
    """A book that notes each hand-off of a block whose confirmations were never seen
    (lchooks.three_seconds_on never held for it)."""

    def __init__(self, rc: SimReconciliation) -> None:
        super().__init__(rc, idempotent=True)
        self.unconfirmed: list[str] = []

    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        if deltas.get("block_id") not in lchooks.HELD:
            self.unconfirmed.append(str(deltas.get("block_id")))
        super().update_state(timestamp, trigger_source, deltas)


def confirmed_world() -> dict[str, Any]:
    """world(), its book noting a hand-off before the confirmations (one world per crash
    point: what the guard said in another point's run does not count here)."""
    lchooks.HELD.clear()
    out = world()
    out["position_update_handler"] = ConfirmedOnly(out["reconciliation_component"])
    return out


def confirmed_once(given: Mapping[str, Any]) -> None:
    once(given)
    book = given["position_update_handler"]
    assert not book.unconfirmed, f"handed off before the confirmations: {book.unconfirmed}"


@pytest.mark.parametrize("mode", ["live", "backtest"])
def test_a_crash_before_the_executed_record_never_skips_the_confirmations(mode: str) -> None:
    """Killed anywhere, among others after the venue executed and before its reply was
    journaled: recovered, the venue says it executed (found_executed), and the block still
    waits for its confirmations before its deltas go to the book."""
    batches = [[block("a"), block("b")], [block("c")]]
    report = assert_crash_safe(confirmed_world, batches, check=confirmed_once, mode=mode,
                               lifecycle=chain())
    assert report.points == report.total_points


def _hand_offs_doubled_only_by_a_hard_kill(report: CrashReport, batches: Any, mode: str,
                                           lc: Lifecycle, triggers: tuple[str, ...]) -> None:
    """As under the default lifecycle: each block's deltas are given again only after a
    kill between the hand-off and its durable record (the README's hand-off window), once
    per block; a book without deduplication fails exactly there."""
    assert [b for _, b in report.doubled_hand_offs] == ["a", "b", "c"]
    naive = crash_points(naive_world, batches, check=once, mode=mode, lifecycle=lc,
                         triggers=triggers)
    assert [p for p, _ in report.doubled_hand_offs] == [f.point for f in naive.failures]
    assert all("handed off twice" in f.problem for f in naive.failures)


@settings(max_examples=40, deadline=None)
@given(at=st.integers(1, 400), before=st.booleans(), n_blocks=st.integers(1, 3))
def test_an_interrupt_anywhere_in_a_confirmed_hand_off_never_doubles_it(
        at: int, before: bool, n_blocks: int) -> None:
    """Property, under chain confirmations (the hand-off made on the poll's move into
    pending_reconciliation): Ctrl-C at any line from the position handler's call until
    well past its record, then em.reopen() and the run finished: each block's deltas are
    handed over exactly once, each block executed once."""
    clock = FakeClock()
    venue = NaiveVenue()
    rc = SimReconciliation(clock)
    tracer = SignalAt(at)
    handler = ArmingHandler(rc, tracer, before)
    ids = [f"b{i}" for i in range(n_blocks)]
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLogger(Path(tmp), "live")
        em = ExecutionManager({}, StaticDataProvider(), "live", handler, venue, rc,
                              event_logger=log, clock=clock, sleep=clock.sleep,
                              lifecycle=chain())
        em.update_state(T(0), "strategy_manager", blocks(*ids))
        outer = sys.gettrace()
        for n in range(1, 6 * n_blocks):
            sys.settrace(tracer)
            try:
                em.update_state(T(n * 3), "manual")
            except KeyboardInterrupt:
                pass
            finally:
                sys.settrace(outer)
            if em.interrupted:
                em = em.reopen()
        log.close()
    assert sorted(venue.execution_order) == ids
    assert sorted(handler.applied.elements()) == ids, handler.applied
