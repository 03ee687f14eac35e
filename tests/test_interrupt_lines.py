"""An interrupt is a crash at that line, at *every* line.

A scripted live run with faults is executed once per line: a trace function sends SIGINT
(Ctrl-C: ``KeyboardInterrupt`` from Python's handler, or whatever handler is installed then) at
the n-th line executed inside fsm_exec and transitions (on the manager's thread), for every n
until the run completes without meeting one. After the
interrupt the caller does what the README says (an interrupted manager is replaced with
``em.reopen()``; a batch whose call was cut short is submitted again), then finishes the
script. Every run must end with each block executed once at the venue, each executed
block's real deltas handed to the position handler exactly once, the journal checking clean,
and a fresh manager recovering it with nothing left to do.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
from interrupting import every_line, interrupt_steps

from fsm_exec import (
    AlreadyAcceptedError,
    BlockState,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    InvalidBlockError,
    check_journal,
)
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import T, blocks

CONFIG = {"max_retries": 3, "retry_delay_seconds": 0.5, "reconciliation_timeout": 2,
          "execution_timeout": 5, "not_found_confirmations": 2,
          "not_found_interval_seconds": 0.5, "not_found_min_age_seconds": 1}


class Run:
    """One deployment: the outside world (venue, positions) survives the manager."""

    def __init__(self, log_dir: Path) -> None:
        self.clock = FakeClock()
        self.venue = NaiveVenue()  # executes every route it gets: only the manager dedups
        self.faulty = FaultyVenue(self.venue, ["lost_response", None, "error"],
                                  clock=self.clock)
        self.rc = SimReconciliation(self.clock, [("ok", 0), ("ok", 3), ("ok", 0.5)])
        self.positions = SimPositionHandler(self.rc)
        self.log = EventLogger(log_dir, "live")
        self.em = self.manager()

    def manager(self) -> ExecutionManager:
        return ExecutionManager(dict(CONFIG), StaticDataProvider(), "live", self.positions,
                                self.faulty, self.rc, event_logger=self.log,
                                clock=self.clock, sleep=self.clock.sleep)


# The script: (what, arguments). A step cut short by the interrupt is done again.
SCRIPT: list[tuple[str, Any]] = [
    ("update", ("strategy_manager", blocks("b1", "b2"))),
    ("submit", blocks("b3", "b4")),
    ("cancel", ["b4"]),
    ("update", ("retry", None)),
]


def _step(run: Run, i: int, what: str, args: Any) -> None:
    em = run.em
    if what == "update":
        em.update_state(T(i), args[0], args[1])
    elif what == "submit":
        em.execute_instruction_blocks(T(i), args)
    else:
        em.cancel(T(i), args, reason="operator")


def _again(run: Run, i: int, what: str, args: Any) -> None:
    """Do a step again after an interrupt: a batch already taken is refused as taken, a
    block already cancelled is refused as cancelled; neither is taken twice."""
    refused: Exception | None = None
    try:
        _step(run, i, what, args)
    except (InvalidBlockError, InvalidArgumentError) as exc:
        refused = exc
    if isinstance(refused, InvalidBlockError):
        assert what in ("update", "submit") and isinstance(refused, AlreadyAcceptedError), (
            refused)
        if what == "update":
            _step(run, i, what, (args[0], None))
    elif refused is not None:
        assert what == "cancel" and "is cancelled" in str(refused), refused


def run_interrupted_at(n: int, log_dir: Path) -> bool:
    """Run the script with an interrupt at traced line ``n``; True if it fired."""
    run = Run(log_dir)
    done, fired = interrupt_steps([functools.partial(_step, run, i, what, args)
                               for i, (what, args) in enumerate(SCRIPT)], n)
    if fired:
        if run.em.interrupted:
            run.em = run.em.reopen()
        if done < len(SCRIPT):
            _again(run, done, *SCRIPT[done])
            done += 1
    for i in range(done, len(SCRIPT)):
        _step(run, i, *SCRIPT[i])
    status = run.em.update_state(T(20), "manual")  # finish whatever is left, halted or not
    _check(run, status, log_dir)
    return fired


def _check(run: Run, status: dict[str, Any], log_dir: Path) -> None:
    em = run.em
    order = run.venue.execution_order
    assert sorted(order) == ["b1", "b2", "b3"], f"venue executions {order}"
    for b in ("b1", "b2", "b3"):
        assert em.block_state(b) is BlockState.SUCCESS, (b, em.block_state(b), status)
        handed = [d for d in run.positions.updates if d["block_id"] == b]
        assert handed and all(d == run.venue.executed[b] for d in handed), (b, handed)
        assert len(handed) == 1, f"{b}'s deltas handed over {len(handed)} times"
    assert em.block_state("b4") is BlockState.CANCELLED
    run.log.close()
    report = check_journal(log_dir)
    assert report.ok, report.problems
    with EventLogger(log_dir, "live") as log:
        fresh = ExecutionManager(dict(CONFIG), StaticDataProvider(), "live",
                                 SimPositionHandler(), NaiveVenue(), SimReconciliation(),
                                 event_logger=log)
        rec = fresh.recover()
    assert (rec.queued, rec.in_doubt, rec.blocks_executed, rec.blocks_cancelled) == (
        (), None, 3, 1)


def test_an_interrupt_at_any_line_leaves_what_a_crash_there_would(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every line of the scripted run, one run per line: each block once at the venue,
    its deltas handed off, a journal that checks clean and recovers."""
    # An interrupt is not a power loss: what was written is read back whether or not it was
    # fsynced, so fsync is skipped here (it would make the ~5,000 runs slow, not stronger).
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    assert every_line(run_interrupted_at) > 500  # long enough for the proof to mean something


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_first_lines_are_interruptible_too(tmp_path: Path, n: int) -> None:
    """Control: an interrupt at the very first lines fires and is survived."""
    assert run_interrupted_at(n, tmp_path)
