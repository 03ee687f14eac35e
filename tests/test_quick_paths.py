"""The backtest's quick paths leave exactly the journal, the answers and the state the
general path would: an idle call joining the held-back ``state_update`` of the call before
it (``EventLogger.join_idle``) against every call writing its own record, which the writer
joins, over scripts of calls that hypothesis draws (idle calls from two sources, batches,
refused batches, blocks that fail, repeated ids, manual resumes)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.core.errors import ComponentError, EventLogError
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, block


class Ticking(FakeClock):
    """A clock that moves on a millisecond and a bit at every reading: each call's time
    taken differs, so a run of idle calls sums real figures."""

    def __call__(self) -> float:
        self.now += 0.00125
        return self.now


Step = tuple[str, Any]
steps = st.lists(st.one_of(
    st.tuples(st.just("idle"), st.sampled_from(["strategy_manager", "retry", "manual"])),
    st.tuples(st.just("batch"), st.integers(min_value=1, max_value=3)),
    st.tuples(st.just("unpriced"), st.none()),
    st.tuples(st.just("bad"), st.none()),
    st.tuples(st.just("again"), st.none()),
), max_size=25)


def run(script: list[Step], log_dir: Path, *, quick: bool) -> tuple[list[Any], bytes]:
    clock = Ticking()
    rc = SimReconciliation(clock)
    log = EventLogger(log_dir, "backtest")
    em = ExecutionManager({"strategy_mode": "eth_basis"}, StaticDataProvider(), "backtest",
                          SimPositionHandler(rc), SimVenue(), rc, event_logger=log,
                          clock=clock)
    if not quick:
        em._join_idle = None  # every call writes its record: the writer joins the runs
    ids = itertools.count()
    outcomes: list[Any] = []
    for n, (kind, arg) in enumerate(script):
        ts = T(60 * n)
        try:
            if kind == "idle":
                got: Any = em.update_state(ts, arg)
            elif kind == "batch":
                got = em.update_state(ts, "strategy_manager",
                                      [block(f"b{next(ids)}") for _ in range(arg)])
            elif kind == "unpriced":  # refused by the price check: the block fails
                got = em.update_state(ts, "strategy_manager",
                                      [block(f"b{next(ids)}", token="DOGE")])
            elif kind == "bad":  # refused whole: nothing queued
                got = em.update_state(ts, "strategy_manager", [{"block_id": "?"}])
            else:  # an id taken before
                got = em.update_state(ts, "strategy_manager", [block("b0")])
        except ComponentError as exc:
            got = (type(exc).__name__, exc.error_code)
        outcomes.append(got)
    outcomes.append(em.get_execution_status())
    em.close()
    lines = b"".join(p.read_bytes() for p in sorted(log_dir.glob("*.jsonl"))).splitlines()
    # The first two records (checkpoint, start) carry the wall clock: the rest must agree
    # byte for byte.
    return outcomes, b"\n".join(lines[2:])


@given(steps)
def test_an_idle_call_joining_its_run_writes_what_its_record_would(
        script: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as d:
        quick = run(script, Path(d) / "quick", quick=True)
        general = run(script, Path(d) / "general", quick=False)
    assert quick == general


def test_a_run_of_idle_calls_is_one_record_summing_their_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    joined: list[bool] = []
    join = EventLogger.join_idle

    def counted(self: EventLogger, component: str, iso: str, ms: float) -> bool:
        joined.append(join(self, component, iso, ms))
        return joined[-1]

    monkeypatch.setattr(EventLogger, "join_idle", counted)
    with tempfile.TemporaryDirectory() as d:
        _, journal = run([("idle", "strategy_manager")] * 5
                                + [("batch", 1)] + [("idle", "strategy_manager")] * 3,
                                Path(d), quick=True)
    records = [line for line in journal.splitlines() if b'"state_update"' in line]
    # Five idle calls; then the call that ran a block, which the three idle calls after it
    # join (they say what it said once it was done).
    assert len(records) == 2
    assert b'"calls":5' in records[0] and b'"current_block_index":0' in records[0]
    assert b'"calls":4' in records[1] and b'"current_block_index":1' in records[1]
    assert b'"first_timestamp":"2025-10-01T00:05:00+00:00"' in records[1]
    assert joined == [True] * 7  # the quick way: every idle call after the first of a run


class Watched(EventLogger):
    """A desk's journal with a log_event of its own: it forwards each state_update (a
    heartbeat) and can be told the disk is full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeats = 0
        self.full = False

    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True,
                  checked: bool = False) -> None:
        if event_type == "state_update":
            if self.full:
                raise EventLogError("cannot write journal: No space left on device")
            self.heartbeats += 1
        super().log_event(timestamp, event_type, component, data, sync=sync,
                          checked=checked)


def test_a_journal_with_a_log_event_of_its_own_sees_every_idle_call(tmp_path: Path) -> None:
    """The idle calls' quick way is for the package's own EventLogger: a subclass that
    overrides log_event is told of every call, and its failure halts the manager."""
    log = Watched(tmp_path, "backtest")
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(), event_logger=log)
    for n in range(5):
        em.update_state(T(60 * n), "strategy_manager")
    assert log.heartbeats == 5
    log.full = True
    with pytest.raises(EventLogError):
        em.update_state(T(600), "strategy_manager")
    assert em.halted and em.get_execution_status()["halt_reason"] == "EXEC-009"
    log.full = False
    em.close()
