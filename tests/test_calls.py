"""Live venue calls run on one reused worker thread, replaced only when a call is
abandoned, and gone when the manager is."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from fsm_exec import BlockState, ExecutionManager, InstructionBlock
from fsm_exec.sim.venues import SimPositionHandler, SimVenue, StaticDataProvider

from kit import T, blocks


class Reconciled:
    reconciliation_status = "success"


class Threads(SimVenue):
    """Notes the thread each route runs on; the block named ``slow`` hangs until released."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.release = threading.Event()

    def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
        self.threads.append(threading.get_ident())
        if b.block_id == "slow":
            self.release.wait(10)
        return super().route_instruction(ts, b)


def manager(venue: Any) -> ExecutionManager:
    return ExecutionManager({"execution_timeout": 0.05, "max_retries": 1,
                             "not_found_confirmations": 1, "not_found_min_age_seconds": 0,
                             "retry_delay_seconds": 0.01},
                            StaticDataProvider(), "live", SimPositionHandler(), venue,
                            Reconciled())


def test_venue_calls_share_one_worker_thread() -> None:
    """Calls after each other run on the same thread: no thread is started per call."""
    venue = Threads()
    manager(venue).update_state(T(0), "strategy_manager", blocks("a", "b", "c"))
    assert len(venue.threads) == 3 and len(set(venue.threads)) == 1
    assert threading.get_ident() not in venue.threads


def test_an_abandoned_call_takes_its_thread_and_the_next_call_gets_a_new_one() -> None:
    """A call that outlives execution_timeout is abandoned with its thread; the manager
    goes on with a fresh one, and the old one ends once the call returns."""
    venue = Threads()
    em = manager(venue)
    try:
        em.update_state(T(0), "strategy_manager", blocks("slow", "next"))
    finally:
        venue.release.set()
    assert em.block_state("slow") is BlockState.FAILED and em.halted  # EXEC-007: unknown
    em.update_state(T(1), "manual")
    assert em.block_state("next") is BlockState.SUCCESS
    slow_thread, *rest = venue.threads
    assert slow_thread not in rest
    for _ in range(200):
        if not any(t.ident == slow_thread for t in threading.enumerate()):
            break
        time.sleep(0.01)
    assert not any(t.ident == slow_thread for t in threading.enumerate())


def test_the_worker_thread_ends_with_its_manager() -> None:
    """When the manager is gone, its idle worker thread ends too (no thread per manager
    left behind)."""
    before = {t.ident for t in threading.enumerate()}
    venue = Threads()
    em = manager(venue)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    worker = venue.threads[0]
    assert worker not in before
    del em
    gc.collect()
    for _ in range(200):
        if not any(t.ident == worker for t in threading.enumerate()):
            break
        time.sleep(0.01)
    assert not any(t.ident == worker for t in threading.enumerate())


def test_an_interrupt_while_waiting_abandons_the_call() -> None:
    """An interrupt that lands while the manager waits for a venue call leaves the call
    abandoned (nobody waits for it any more) and re-raises; its elapsed time is kept."""
    import pytest

    from fsm_exec.drivers.calls import VenueCall, Worker

    class Interrupting(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            raise KeyboardInterrupt("Ctrl-C")

    release = threading.Event()
    worker = Worker("test-interrupt")
    VenueCall().run_on(worker, lambda: None, (), 1.0, time.monotonic)  # its thread, started
    call = VenueCall()
    real = threading.Event
    threading.Event = Interrupting  # type: ignore[misc]  # the call's own event only
    try:
        with pytest.raises(KeyboardInterrupt):
            call.run_on(worker, lambda: release.wait(5), (), 1.0, time.monotonic)
    finally:
        threading.Event = real  # type: ignore[misc]
        release.set()
    assert call.abandoned and call.elapsed >= 0.0
    worker.close()
