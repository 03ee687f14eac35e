"""The every-line interrupt tests' trace function: SIGINT at the n-th line executed inside
fsm_exec and transitions (``tests/test_interrupt_lines.py``, live;
``tests/test_interrupt_lines_backtest.py``, backtest)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import fsm_exec

#: Where the traced lines are: fsm_exec's and transitions' own files.
ROOTS = tuple(os.path.dirname(str(m.__file__)) + os.sep
              for m in (fsm_exec, sys.modules["transitions"]))


class Interrupt:
    """A trace function that sends SIGINT at the n-th traced line (delivered there, as
    Python delivers a signal between two lines: ``raise_signal`` runs the handler now).
    Files under ``skip`` are not traced (nor are their calls, unless into ours)."""

    def __init__(self, at: int, skip: tuple[str, ...] = ()) -> None:
        self.at, self.seen, self.fired = at, 0, False
        self.skip = skip

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        name = frame.f_code.co_filename
        if not name.startswith(ROOTS) or (self.skip and name.startswith(self.skip)):
            return None  # neither this frame's lines nor its calls' (unless they are ours)
        if event == "line" and not self.fired:
            self.seen += 1
            if self.seen == self.at:
                self.fired = True
                signal.raise_signal(signal.SIGINT)
        return self


def interrupt_steps(steps: Sequence[Callable[[], object]], at: int,
                skip: tuple[str, ...] = ()) -> tuple[int, bool]:
    """Run ``steps`` in order with SIGINT at traced line ``at``, until one is cut short:
    (the steps done, whether the interrupt fired)."""
    tracer = Interrupt(at, skip)
    done = 0
    outer = sys.gettrace()  # coverage's, when it measures: put back afterwards
    sys.settrace(tracer)
    try:
        for step in steps:
            step()
            done += 1
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(outer)
    return done, tracer.fired


def every_line(run_at: Callable[[int, Path], bool]) -> int:
    """``run_at(n, a new directory)`` for n = 1, 2, ... until the interrupt no longer
    fires (the run ended before line n): how many times it fired."""
    n = 1
    with tempfile.TemporaryDirectory() as tmp:
        while run_at(n, Path(tmp) / f"n{n}"):
            n += 1
    print(f"{n - 1} interrupt points")
    return n - 1
