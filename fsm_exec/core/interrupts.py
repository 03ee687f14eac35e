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
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["DEFERRED_SIGNALS", "interrupts_deferred"]

#: The signals held by :func:`interrupts_deferred`.
DEFERRED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


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

    previous = {s: signal.signal(s, hold) for s in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in held:
            signal.raise_signal(signum)  # the restored handler runs now, in this thread
