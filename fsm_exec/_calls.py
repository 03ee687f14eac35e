"""Venue calls that can be abandoned: the only place the package starts a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class OutcomeInDoubt(Exception):
    """Stands for a venue call whose outcome was lost: the process stopped during it."""


class VenueCall:
    """One call to a venue: finished, or abandoned on a worker thread and still running.

    Create it, keep a reference, then run it, so that even a call interrupted by
    ``KeyboardInterrupt`` leaves a record. ``value`` and ``error`` are meaningful once ``done``;
    ``elapsed`` is the time the caller waited, on the manager's clock.
    """

    __slots__ = ("value", "error", "elapsed", "_event")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self._event: threading.Event | None = None

    @property
    def done(self) -> bool:
        """True once the call returned or raised (or was interrupted)."""
        return self._event is None or self._event.is_set()

    @property
    def returned(self) -> bool:
        """True if the call is done and returned a value other than ``None``."""
        return self.done and self.error is None and self.value is not None

    @property
    def in_doubt(self) -> bool:
        """True if the call was cut short by an interrupt or a crash, not by the venue."""
        err = self.error
        return isinstance(err, OutcomeInDoubt) or (
            err is not None and not isinstance(err, Exception))

    @classmethod
    def lost(cls) -> VenueCall:
        """A call made before a crash, whose outcome only the venue knows."""
        call = cls()
        call.error = OutcomeInDoubt("the process stopped during this venue call")
        return call

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` real seconds for a running call; True if it is done."""
        return self._event is None or self._event.wait(timeout)

    def run_inline(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> VenueCall:
        """Call ``fn(*args)`` in this thread (no timeout: backtest); a ``BaseException`` is
        recorded, then re-raised."""
        try:
            self.value = fn(*args)
        except Exception as exc:
            self.error = exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it go
            self.error = exc
            raise
        return self

    def run_guarded(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float,
                    clock: Callable[[], float], name: str) -> VenueCall:
        """Call ``fn(*args)`` on a daemon thread; stop waiting after ``timeout`` real seconds.

        A call that does not return in time is abandoned, not cancelled: ``done`` stays false
        until it finishes, so an outcome still being decided is never taken for a known one.
        """
        event = threading.Event()
        self._event = event

        def run() -> None:
            try:
                self.value = fn(*args)
            except BaseException as exc:  # recorded for the manager; the thread ends quietly
                self.error = exc
            finally:
                event.set()

        t0 = clock()
        threading.Thread(target=run, name=name, daemon=True).start()
        try:
            event.wait(timeout)
        finally:
            self.elapsed = clock() - t0
        return self
