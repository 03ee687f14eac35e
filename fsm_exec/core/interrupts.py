"""Critical sections that an in-process interrupt does not cut in two.

A ``KeyboardInterrupt`` (Ctrl-C) or a ``SystemExit`` raised by a signal handler (a
supervisor's SIGTERM) lands between any two bytecodes of the main thread. Where a step and
its record must happen together or not at all (the position handler took the deltas, and
the journal says so), :func:`interrupts_deferred` holds SIGINT and SIGTERM for the length of
the section and delivers them, to whatever handled them before, once it ends. A hard kill
(SIGKILL, a power loss) cannot be held: the position handler's hand-off key covers that.
"""

from __future__ import annotations

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

try:  # the C function under signal.signal (CPython's _signal, which signal wraps): the
    # same, without turning the handler it returns into an enum member (a lookup that
    # fails, and raises, for a function: 4 µs of the 4.7 a call costs; a live block swaps
    # handlers four times)
    _swap: Callable[[int, Any], Any] = importlib.import_module("_signal").signal
except (ImportError, AttributeError):  # pragma: no cover - an interpreter without it
    _swap = signal.signal


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

    def hold(signum: int, frame: FrameType | None) -> None:
        if signum not in held:
            held.append(signum)

    previous = [(s, _swap(s, hold)) for s in _NUMBERS]
    try:
        yield
    finally:
        for s, handler in previous:
            _swap(s, handler)
        for signum in held:
            signal.raise_signal(signum)  # the restored handler runs now, in this thread
