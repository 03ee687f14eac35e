"""An interrupt at *every* line of a backtest: its buffered journal never lies.

The backtest's hot path (one pass per block, its records written without the ``null`` scan,
idle calls joining the held-back ``state_update``, the status of an idle run kept) is run
once per line, as ``tests/test_interrupt_lines.py`` runs the live path: a trace function
sends SIGINT (Ctrl-C) at the n-th line executed inside fsm_exec and transitions, for every
n until the run completes without meeting one. A backtest that stops is run again (the
spec), so what is proved here is what its journal says, in two endings:

- closed at once, as a ``with`` block ends: the journal checks clean, every block the
  venue executed is in it at least as routed (the intent is written before the call),
  every hand-off the position handler took has its deltas record (written before the
  hand-off), a fresh manager recovers it, and ``fsm-exec status`` reads it;
- ``em.reopen()`` and the script finished (the README's recipe): each block executed once
  at the venue, all of them succeeded, each handed over once but for the one whose
  hand-off was cut short (at most twice: a backtest journal writes no
  ``positions_updated``), and the journal checks clean.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from interrupting import every_line, interrupt_steps

import fsm_exec
from fsm_exec import (
    AlreadyAcceptedError,
    BlockState,
    EventLogger,
    ExecutionManager,
    check_journal,
    read_journal,
)
from fsm_exec.sim.venues import (
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)
from fsm_exec.tools.status import format_status, read_status

from kit import T, blocks

#: The simulated collaborators are the outside world (in a live run they are called on the
#: worker thread, which is not traced): their own bookkeeping is not interrupted.
WORLD = (os.path.join(os.path.dirname(str(fsm_exec.__file__)), "sim") + os.sep,)

#: One ``update_state`` per step: blocks, then idle calls (the second joins the first's
#: held-back record), then a block again.
SCRIPT: list[list[dict[str, Any]] | None] = [blocks("b1", "b2"), None, None, blocks("b3"),
                                             None, None]
IDS = ["b1", "b2", "b3"]


class Run:
    """One backtest: the outside world (venue, positions) outlives its manager."""

    def __init__(self, log_dir: Path, buffer_bytes: int | None = None) -> None:
        self.venue = NaiveVenue()  # executes every route it gets: only the manager dedups
        self.positions = SimPositionHandler()
        self.log = (EventLogger(log_dir, "backtest") if buffer_bytes is None  # buffered
                    else EventLogger(log_dir, "backtest", buffer_bytes=buffer_bytes))
        self.em = ExecutionManager({}, StaticDataProvider(), "backtest", self.positions,
                                   self.venue, SimReconciliation(), event_logger=self.log)


def interrupted(n: int, log_dir: Path, buffer_bytes: int | None = None, *,
                close: bool = False) -> tuple[Run, int, bool]:
    """The script (then ``em.close()``, with ``close``) with SIGINT at traced line ``n``:
    the run, the steps done, whether the interrupt fired."""
    run = Run(log_dir, buffer_bytes)
    steps = [functools.partial(run.em.update_state, T(i), "strategy_manager", batch)
             for i, batch in enumerate(SCRIPT)]
    done, fired = interrupt_steps([*steps, run.em.close] if close else steps, n,
                                  skip=WORLD)
    return run, done, fired


def closed_at_once(run: Run, log_dir: Path) -> set[str]:
    """The journal of a backtest closed right after the interrupt (the manager's close,
    which the interrupt may have cut short, then the journal's own) tells no lie. Returns
    the block whose hand-off it leaves in doubt (its deltas journaled, no result), if any."""
    run.em.close()
    run.log.close()
    report = check_journal(log_dir)
    assert report.ok, report.problems
    moves = [r.data for r in read_journal(log_dir) if r.event_type == "block_transition"]
    routed = {m["block_id"] for m in moves if m["dest"] == "routing"}
    handed = {m["block_id"]: m["deltas"] for m in moves if "deltas" in m}
    order = run.venue.execution_order
    assert len(order) == len(set(order)), f"venue executions {order}"
    assert set(order) <= routed, (order, routed)  # the intent is journaled first
    for deltas in run.positions.updates:
        assert handed.get(deltas["block_id"]) == deltas, (deltas, handed)
    with EventLogger(log_dir, "backtest") as log:
        fresh = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                                 NaiveVenue(), SimReconciliation(), event_logger=log)
        rec = fresh.recover()
        finished = {b for b in IDS if fresh.block_state(b) is BlockState.SUCCESS}
    assert rec.blocks_executed == len(finished) and finished <= set(order)
    assert "Traceback" not in format_status(read_status(log_dir))
    return set(handed) - finished


def reopened_and_finished(run: Run, done: int, log_dir: Path, in_doubt: set[str]) -> None:
    """After ``em.reopen()`` and the rest of the script, each block once at the venue, and
    handed over once, but the block ``in_doubt`` (see :func:`closed_at_once`)."""
    em = run.em = run.em.reopen() if run.em.interrupted else run.em
    for i in range(done, len(SCRIPT)):
        try:
            em.update_state(T(i), "strategy_manager", SCRIPT[i])
        except AlreadyAcceptedError:  # the batch of the call cut short was taken
            assert i == done
            em.update_state(T(i), "strategy_manager", None)
    em.update_state(T(20), "strategy_manager")  # the queue runs on, whatever was left
    assert Counter(run.venue.execution_order) == Counter(IDS), run.venue.execution_order
    # The block whose hand-off the interrupt may have cut short (its deltas journaled,
    # no result) is handed over again: a backtest journal writes no positions_updated, so
    # reopen() cannot know (the at-least-once window of a hard kill; a handler that
    # deduplicates on hand_off_key closes it). Every other block exactly once.
    handed = Counter(d["block_id"] for d in run.positions.updates)
    assert set(handed) == set(IDS) and max(handed.values()) <= 2, handed
    assert {b for b, times in handed.items() if times > 1} <= in_doubt, (handed, in_doubt)
    assert [em.block_state(b) for b in IDS] == [BlockState.SUCCESS] * 3
    em.close()
    report = check_journal(log_dir)
    assert report.ok, report.problems
    assert (report.blocks_accepted, report.blocks_executed) == (3, 3)


@pytest.mark.parametrize("buffer_bytes", [None, 400])
def test_an_interrupt_at_any_line_of_a_backtest_leaves_a_true_journal(
        buffer_bytes: int | None) -> None:
    """Every line of the scripted backtest, twice (each ending): see the module. With the
    journal's default buffer (written at close) and with one of 400 bytes, written to its
    file again and again as the blocks run; the close is interrupted too."""

    def both_endings(n: int, log_dir: Path) -> bool:
        run, _, hit = interrupted(n, log_dir / "closed", buffer_bytes, close=True)
        in_doubt = closed_at_once(run, log_dir / "closed")
        run, done, _ = interrupted(n, log_dir / "reopened", buffer_bytes)
        reopened_and_finished(run, done, log_dir / "reopened", in_doubt)
        return hit

    assert every_line(both_endings) > 300  # long enough for the proof to mean something


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_first_lines_of_a_backtest_are_interruptible_too(tmp_path: Path,
                                                              n: int) -> None:
    """Control: an interrupt at the very first lines fires, and both endings hold."""
    run, done, hit = interrupted(n, tmp_path / "closed", close=True)
    assert hit and done == 0
    in_doubt = closed_at_once(run, tmp_path / "closed")
    run, done, hit = interrupted(n, tmp_path / "reopened")
    reopened_and_finished(run, done, tmp_path / "reopened", in_doubt)
