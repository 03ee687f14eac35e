"""Venue calls that can be abandoned: the only place the package starts a thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class OutcomeInDoubt(Exception):
    """Stands for a venue call whose outcome was lost: the process stopped during it."""


class VenueCall:
    """One call to a venue: finished, or abandoned on a worker thread and still running.

    Create it, keep a reference, then run it, so that even a call interrupted by
    ``KeyboardInterrupt`` leaves a record. ``value`` and ``error`` are meaningful once ``done``;
    ``elapsed`` is the time the caller waited, on the manager's clock; ``abandoned`` is true
    once a call handed to a worker thread was no longer waited for (its timeout, or an
    interrupt of the wait): until ``done``, it may still execute.
    """

    __slots__ = ("value", "error", "elapsed", "abandoned", "_event")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self.abandoned = False
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

    def run_on(self, worker: Worker, fn: Callable[..., Any], args: tuple[Any, ...],
               timeout: float, clock: Callable[[], float]) -> VenueCall:
        """Call ``fn(*args)`` on ``worker``'s thread (started once, reused); stop waiting
        after ``timeout`` real seconds. A call that does not return in time is abandoned,
        not cancelled (and its thread with it): ``done`` stays false until it finishes, so
        an outcome still being decided is never taken for a known one."""
        event = threading.Event()
        self._event = event
        t0 = clock()
        worker.submit(self, fn, args, event)
        try:
            event.wait(timeout)
        except BaseException:
            self.abandoned = True  # handed over, and nobody waits for it any more
            raise
        finally:
            self.elapsed = clock() - t0
        if not event.is_set():
            self.abandoned = True
            worker.abandon()  # its thread finishes this call, then ends; a new one follows
        return self


class Worker:
    """One daemon thread that runs a manager's venue calls one at a time, so that a call
    does not pay for starting a thread. A call abandoned at its timeout takes the thread
    with it (it finishes that call, then ends); the next call starts a new one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Any] | None = None

    def submit(self, call: VenueCall, fn: Callable[..., Any], args: tuple[Any, ...],
               done: threading.Event) -> None:
        jobs = self._jobs
        if jobs is None:
            jobs = self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(jobs,), name=self.name, daemon=True).start()
        jobs.put((call, fn, args, done))

    def abandon(self) -> None:
        """The thread is busy with a call nobody waits for: let it end after that call."""
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)

    def close(self) -> None:
        """End the thread once it is idle."""
        self.abandon()


def _serve(jobs: queue.SimpleQueue[Any]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        call, fn, args, done = job
        try:
            call.value = fn(*args)
        except BaseException as exc:  # recorded for the manager; the thread goes on
            call.error = exc
        finally:
            done.set()
