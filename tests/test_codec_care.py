"""The writer's line of a record (``encode_line``) takes orjson's own line unless the
careful encoding (``to_jsonable``) would write another: a record with a legitimate ``None``
(every checkpoint) is no longer rebuilt, and every other record is written as before."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.journal.codec import encode_default, needs_care, to_jsonable
from fsm_exec.journal.idle import encode_line
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

_NL = orjson.OPT_APPEND_NEWLINE


def careful_everywhere(record: Any) -> bytes:
    """The encoding before needs_care: any null in orjson's line took the careful path."""
    try:
        line = orjson.dumps(record, default=encode_default, option=_NL)
    except orjson.JSONEncodeError:
        line = b"null"
    if b"null" in line:
        line = orjson.dumps(to_jsonable(record), option=_NL)
    return line


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["\ud800", "null", "__float__", Decimal("1.5"), Decimal("NaN"),
                     dt.datetime(2025, 1, 1, tzinfo=dt.UTC), (1, None), b"\x00"]))
keys = st.one_of(st.text(max_size=6),
                 st.sampled_from(["__float__", "__int__", "__decimal__", "__dict__"]),
                 st.integers(min_value=-3, max_value=3), st.none())
values = st.recursive(
    leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                    st.tuples(inner, inner),
                                    st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20)


@given(st.dictionaries(st.text(max_size=6), values, max_size=5))
def test_the_line_is_the_careful_one_whatever_the_record_holds(data: dict[str, Any]) -> None:
    record = {"seq": 1, "timestamp": "2025-01-01T00:00:00+00:00", "event_type": "x",
              "component": "ExecutionManager", "data": data}
    assert encode_line(record) == careful_everywhere(record)


def test_a_legitimate_none_takes_no_careful_walk() -> None:
    assert not needs_care({"flight": None, "finished": [["a", "success"]], "n": 1.5,
                           "nested": [(1, 2), {"k": None}]})


def test_what_the_careful_path_changes_is_seen() -> None:
    for value in (math.nan, math.inf, -math.inf, 1 << 64, -(1 << 63) - 1, {1: "a"},
                  {"__float__": "NaN"}, Decimal("1"), [dt.date(2025, 1, 1)], True.__class__,
                  [{"x": [float("nan")]}]):
        assert needs_care({"data": value}), value
    assert not needs_care({"data": [(1 << 64) - 1, -(1 << 63), "é"]})


# --- EventLogger.log_event(checked=True): the caller proved its values finite ---------------

finite_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
finite_values = st.recursive(
    finite_leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=6).filter(lambda k: not k.startswith("__")), inner,
                        min_size=2, max_size=4)),
    max_leaves=20)


def _journal_bytes(tmp: Path, data: dict[str, Any], checked: bool) -> bytes:
    journal = EventLogger(tmp, "backtest")
    journal.log_event("2025-01-01T00:00:00+00:00", "block_transition", "ExecutionManager",
                      data, checked=checked)
    journal.close()
    return (tmp / "execution_manager_events.jsonl").read_bytes()


@given(st.dictionaries(st.text(max_size=6), finite_values, max_size=5))
def test_a_checked_record_is_written_as_an_unchecked_one(data: dict[str, Any]) -> None:
    """What the manager vouches for (no NaN, no infinity: validated blocks, its one pass's
    moves) is written byte for byte as the scanned line, None and all."""
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        assert _journal_bytes(Path(a), data, True) == _journal_bytes(Path(b), data, False)


def test_a_checked_record_orjson_cannot_write_takes_the_careful_path(tmp_path: Path) -> None:
    """checked skips only the scan for null: a value orjson refuses (an integer beyond 64
    bits) is still written in its tagged form, never as a bare null."""
    line = _journal_bytes(tmp_path, {"n": 1 << 70, "none": None}, True).splitlines()[-1]
    assert orjson.loads(line)["data"] == {"n": {"__int__": str(1 << 70)}, "none": None}


def test_a_journal_subclass_of_the_earlier_signature_is_never_given_checked(
        tmp_path: Path) -> None:
    """A subclass whose log_event was written before checked= existed sees every record
    and is never passed the keyword: the manager gives it only to EventLogger's own."""
    seen: list[str] = []

    class Earlier(EventLogger):
        def log_event(self, timestamp: Any, event_type: str,  # type: ignore[override]
                      component: str, data: dict[str, Any], *, sync: bool = True) -> None:
            seen.append(event_type)
            super().log_event(timestamp, event_type, component, data, sync=sync)

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(FakeClock()),
                          event_logger=Earlier(tmp_path, "backtest"))
    em.update_state(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "strategy_manager",
                    [{"block_id": "a", "action": "open", "priority": 1,
                      "instructions": [{"venue": "v", "token": "ETH", "amount": 1.0}]}])
    em.close()
    assert em.block_state("a") == "success"
    assert seen.count("block_accepted") == 1 and seen.count("block_transition") == 3


class Reconciled:
    """Reconciliation that has always seen the positions: success."""

    reconciliation_status = "success"


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_a_log_event_wrapped_on_the_instance_is_never_given_checked(
        tmp_path: Path, mode: str) -> None:
    """An audit wrapper set on the journal object, written to the earlier signature, sees
    every record (the idle calls' too) and is never given checked= (the manager decides by
    the function it will call, not by the class): no EXEC-009 halt on the first
    acceptance (review)."""
    journal = EventLogger(tmp_path, mode)
    real, seen = journal.log_event, []

    def audited(timestamp: Any, event_type: str, component: str, data: dict[str, Any], *,
                sync: bool = True) -> None:
        seen.append(event_type)
        real(timestamp, event_type, component, data, sync=sync)

    journal.log_event = audited  # type: ignore[assignment]
    em = ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(), SimVenue(),
                          Reconciled(), event_logger=journal)
    status = em.update_state(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "strategy_manager",
                             [{"block_id": "a", "action": "open", "priority": 1,
                               "instructions": [{"venue": "v", "token": "ETH",
                                                 "amount": 1.0}]}])
    for minute in range(1, 4):  # idle calls: the wrapper sees each one's state_update
        em.update_state(dt.datetime(2025, 1, 1, 0, minute, tzinfo=dt.UTC),
                        "strategy_manager")
    em.close()
    assert status["blocks_executed"] == 1 and not status["halted"]
    assert seen.count("block_accepted") == 1 and seen.count("state_update") == 4


def test_a_sink_that_hands_on_an_event_loggers_log_event_runs(tmp_path: Path) -> None:
    """A journal object that is not an EventLogger but whose log_event is one's (a thin
    wrapper) is accepted, and its records reach that EventLogger: the manager takes what
    it needs of the journal from the object the method belongs to (review: it asked the
    wrapper for join_idle and could not be built)."""
    inner = EventLogger(tmp_path, "backtest")

    class Sink:
        def __init__(self) -> None:
            self.log_event = inner.log_event

    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), Reconciled(), event_logger=Sink())
    for minute in range(3):
        em.update_state(dt.datetime(2025, 1, 1, 0, minute, tzinfo=dt.UTC),
                        "strategy_manager",
                        [{"block_id": "a", "action": "open", "priority": 1,
                          "instructions": [{"venue": "v", "token": "ETH", "amount": 1.0}]}]
                        if minute == 0 else None)
    em.close()
    inner.close()
    lines = (tmp_path / "execution_manager_events.jsonl").read_bytes().splitlines()
    kinds = [orjson.loads(line)["event_type"] for line in lines]
    assert em.block_state("a") == "success"
    assert kinds.count("block_accepted") == 1 and kinds.count("block_transition") == 3
