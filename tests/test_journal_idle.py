"""A backtest journal writes a run of calls that changed nothing as one ``state_update``
(``calls``, ``first_timestamp``): an empty call costs no bytes, the fold reads the run as it
reads one call, and nothing else changes (live journals, calls that did something, the
order of records, a flush in the middle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fsm_exec import EventLogger, ExecutionManager, check_journal
from fsm_exec.journal.fold import replay
from fsm_exec.journal.reader import read_journal, recovery_records
from fsm_exec.testing import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block

NAME = "execution_manager_events.jsonl"


def _manager(log: EventLogger, mode: str = "backtest") -> ExecutionManager:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    return ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(rc),
                            SimVenue(), rc, event_logger=log, clock=clock,
                            sleep=clock.sleep)


def _records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (path / NAME).read_bytes().splitlines()]


def _updates(path: Path) -> list[dict[str, Any]]:
    return [r for r in _records(path) if r["event_type"] == "state_update"]


def test_empty_calls_after_a_block_are_one_record(tmp_path: Path) -> None:
    """A block's call and the 50 empty calls after it (their counters all the same) are
    one state_update: calls 51, the first call's timestamp, the last call's as its own;
    the fold of the journal is the live manager's state and the check passes."""
    log = EventLogger(tmp_path, "backtest")
    em = _manager(log)
    em.update_state(T(0), "strategy_manager", [block("b1")])
    for i in range(1, 51):
        em.update_state(T(60 * i), "strategy_manager")
    log.close()
    (update,) = _updates(tmp_path)
    assert update["data"]["calls"] == 51
    assert update["data"]["first_timestamp"] == "2025-10-01T00:00:00+00:00"
    assert update["timestamp"] == "2025-10-01T00:50:00+00:00"
    assert update["data"]["blocks_executed"] == 1 and update["data"]["queue_length"] == 0
    kinds = [r["event_type"] for r in _records(tmp_path)]
    assert kinds[-5:] == ["block_accepted", "block_transition", "block_transition",
                          "block_transition", "state_update"]
    folded = replay(recovery_records(tmp_path))
    assert folded.checkpoint_data() == em._state.checkpoint_data()
    assert check_journal(tmp_path / NAME).ok


def test_an_empty_call_costs_no_bytes(tmp_path: Path) -> None:
    """1,000 empty calls write as many bytes as one, give or take the count's digits and
    the first timestamp (about 50 bytes in all: 0.05 a call)."""
    sizes = []
    for n in (1, 1000):
        log = EventLogger(tmp_path / str(n), "backtest")
        em = _manager(log)
        for i in range(n):
            em.update_state(T(60 * i), "strategy_manager")
        log.close()
        sizes.append((tmp_path / str(n) / NAME).stat().st_size)
    assert 0 < sizes[1] - sizes[0] <= 60


def test_a_call_that_says_something_else_starts_a_new_record(tmp_path: Path) -> None:
    """Another trigger source, another count or a block in between ends the run: each
    record says what its calls said, and the calls add up."""
    log = EventLogger(tmp_path, "backtest")
    em = _manager(log)
    for i in range(3):
        em.update_state(T(i), "strategy_manager")
    em.update_state(T(3), "retry")
    em.update_state(T(4), "retry")
    em.update_state(T(5), "strategy_manager", [block("b1")])
    em.update_state(T(6), "strategy_manager")
    log.close()
    got = [(u["data"]["trigger_source"], u["data"].get("calls", 1),
            u["data"]["blocks_executed"]) for u in _updates(tmp_path)]
    assert got == [("strategy_manager", 3, 0), ("retry", 2, 0), ("strategy_manager", 2, 1)]
    seqs = [r["seq"] for r in _records(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_flush_writes_the_run_so_far(tmp_path: Path) -> None:
    """flush() (and so sync(), close(), a rotation) writes the run so far: a run may be
    split in two records, and the calls still add up; the processing time is summed."""
    log = EventLogger(tmp_path, "backtest")
    em = _manager(log)
    for i in range(10):
        em.update_state(T(i), "strategy_manager")
    log.flush()
    assert [u["data"]["calls"] for u in _updates(tmp_path)] == [10]
    for i in range(10, 15):
        em.update_state(T(i), "strategy_manager")
    log.close()
    updates = _updates(tmp_path)
    assert [u["data"]["calls"] for u in updates] == [10, 5]
    assert all(isinstance(u["data"]["processing_time_ms"], float) for u in updates)
    assert [r.data.get("calls") for r in read_journal(tmp_path)
            if r.event_type == "state_update"] == [10, 5]  # the reader's schema takes them


def test_live_journals_write_every_call(tmp_path: Path) -> None:
    """A live journal is the crash-recovery record: one state_update per call, as before."""
    log = EventLogger(tmp_path, "live")
    em = _manager(log, "live")
    for i in range(4):
        em.update_state(T(i), "strategy_manager")
    log.close()
    updates = _updates(tmp_path)
    assert len(updates) == 4 and not any("calls" in u["data"] for u in updates)


@pytest.mark.parametrize("other", [{"halted": 1}, {"queue_length": 0.0},
                                   {"processing_time_ms": 1}, {"extra": 1},
                                   {"trigger_source": None}])
def test_only_records_that_say_exactly_the_same_join(tmp_path: Path,
                                                     other: dict[str, Any]) -> None:
    """The writer joins state_update records equal in value and type (True is not 1, 0 is
    not 0.0), with the same fields, the time taken aside."""
    base = {"trigger_source": "x", "queue_length": 0, "halted": True,
            "processing_time_ms": 0.5}
    with EventLogger(tmp_path, "backtest") as log:
        log.log_event(T(0), "state_update", "C", base)
        log.log_event(T(1), "state_update", "C", {**base, "processing_time_ms": 0.25})
        log.log_event(T(2), "state_update", "C", {**base, **other})
    lines = [orjson.loads(x) for x in (tmp_path / "c_events.jsonl").read_bytes().split()]
    assert [x["data"].get("calls", 1) for x in lines] == [2, 1]
    assert lines[0]["data"]["processing_time_ms"] == 0.75


def test_records_holding_null_or_nan_never_join(tmp_path: Path) -> None:
    """A state_update holding None or NaN (both null to orjson) is written as it is, never
    joined to another: NaN and None stay apart."""
    with EventLogger(tmp_path, "backtest") as log:
        for value in (None, None, float("nan"), float("nan")):
            log.log_event(T(0), "state_update", "C", {"x": value, "processing_time_ms": 0.5})
    lines = [orjson.loads(x) for x in (tmp_path / "c_events.jsonl").read_bytes().split()]
    assert [x["data"]["x"] for x in lines] == [None, None, {"__float__": "NaN"},
                                              {"__float__": "NaN"}]
