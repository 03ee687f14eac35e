"""A run of idle calls is written into the buffer as one record (``handles.settle``); an
interrupt between the line going into the buffer and its seq being counted must not make
the next record reuse that seq (before: ``seq 3 does not follow seq 3``, a journal no
reader accepts)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from fsm_exec import EventLogger
from fsm_exec.journal import handles
from fsm_exec.journal.reader import read_records

ISO = "2025-10-01T00:00:00+00:00"
OTHER = "strategy"  # a component of its own: no checkpoints, the writer's rules only
IDLE = {"trigger_source": "strategy_manager", "current_block_index": 0,
        "blocks_executed": 0, "blocks_failed": 0, "queue_length": 0, "halted": False,
        "processing_time_ms": 0.5}


def interrupt_settle_after(marker: str, outer: Any) -> Any:
    """A trace function raising KeyboardInterrupt in ``settle`` just before the line that
    holds ``marker`` runs, then putting ``outer`` back (coverage's, when it measures)."""
    lines, first = inspect.getsourcelines(handles.settle)
    target = first + next(i for i, line in enumerate(lines) if marker in line)
    code = handles.settle.__code__

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == target:
            sys.settrace(outer)
            raise KeyboardInterrupt
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return tracer


@pytest.mark.parametrize("marker", ["j.buffered += len(line)", "j.seq = seq",
                                    "j.since_checkpoint += 1"])
def test_an_interrupted_settle_leaves_no_seq_twice(tmp_path: Path, marker: str) -> None:
    log = EventLogger(tmp_path, "backtest")
    log.log_event(ISO, "state_update", OTHER, dict(IDLE))  # held back
    outer = sys.gettrace()  # coverage's, when it measures: put back afterwards
    sys.settrace(interrupt_settle_after(marker, outer))
    try:
        with pytest.raises(KeyboardInterrupt):
            log.log_event(ISO, "tick", OTHER, {"n": 1})  # settles the run first
    finally:
        sys.settrace(outer)
    log.log_event(ISO, "tick", OTHER, {"n": 2})
    log.close()
    records = list(read_records(log.path_for(OTHER)))
    # Every record once, each with the next seq (the idle run, in the buffer or not).
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    # The interrupted call wrote nothing of its own; the next one did.
    assert [r.data.get("n") for r in records if r.event_type == "tick"] == [2]
