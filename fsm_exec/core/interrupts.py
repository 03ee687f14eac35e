"""Critical sections that an in-process interrupt does not cut in two.

A ``KeyboardInterrupt`` (Ctrl-C) or a ``SystemExit`` raised by a signal handler (a
supervisor's SIGTERM) lands between any two bytecodes of the main thread. Where a step and
its record must happen together or not at all (the position handler took the deltas, and
the journal says so), :func:`interrupts_deferred` holds SIGINT and SIGTERM for the length of
the section and delivers them, to whatever handled them before, once it ends. A hard kill
(SIGKILL, a power loss) cannot be held: the position handler's hand-off key covers that.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["DEFERRED_SIGNALS", "interrupts_deferred"]

#: The signals held by :func:`interrupts_deferred`.
DEFERRED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
_NUMBERS = tuple(int(s) for s in DEFERRED_SIGNALS)

try:  # the C functions under signal.signal and signal.getsignal (CPython's _signal, which
    # signal wraps): the same, without turning the handler they return into an enum member
    # (a lookup that fails, and raises, for a function: 4 µs of the 4.7 a call costs; a
    # live block swaps handlers four times)
    _c = importlib.import_module("_signal")
    _swap: Callable[[int, Any], Any] = _c.signal
    _handler: Callable[[int], Any] = _c.getsignal
except (ImportError, AttributeError):  # pragma: no cover - an interpreter without them
    _swap, _handler = signal.signal, signal.getsignal
#: Trips a signal for the Python handler installed (a hold), which runs at the next check.
_trip: Callable[[int], None] = _thread.interrupt_main  # type: ignore[assignment]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs; then restore their handlers and deliver
    what arrived (once per signal), so the interrupt is raised after the section, not in it.

    Only the main thread receives signals: elsewhere this does nothing. Sections nest (an
    inner one hands what it held to the outer one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    trips = map(_trip, held)  # consumed once, by one call at the end: each held one tripped
    ended: list[object] = []  # non-empty once the section is over

    def hold(signum: int, frame: FrameType | None) -> None:
        if ended:  # the section is over: every handler put back, then this one delivered
            try:
                list(map(_swap, restore, restore.values()))
            finally:  # even if another signal's handler raised meanwhile
                signal.raise_signal(signum)  # the restored handler runs now, here
            return
        if signum not in held:
            held.append(signum)

    # What each handler is put back to, read before any is swapped: a signal whose handler
    # raises between two swaps (a supervisor's SIGTERM) leaves none of them held. One not
    # installed from Python (None) cannot be put back: it is not held.
    restore = {s: h for s in _NUMBERS if (h := _handler(s)) is not None}
    raised: BaseException | None = None
    try:
        for s in restore:
            _swap(s, hold)
        yield
    finally:
        # One call, first (no handler runs inside it): the section is over, and what it
        # held is tripped again while the holds are in place, to run at the next check
        # through a hold, which puts every handler back before it delivers (the default
        # action included: SIGTERM ends the process). A signal landing later meets a
        # restored handler, or a hold not swapped back yet, which does the same.
        ended.extend([True, *trips])
        for s, handler in restore.items():
            for _ in range(2):  # pragma: no branch - a handler put back runs at once
                try:
                    _swap(s, handler)
                    break
                except BaseException as exc:  # raised once all are back
                    raised = raised or exc
        if raised is not None:
            raise raised
