"""A rig of simulated collaborators around one ExecutionManager, for the example tests."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import attrs

from fsm_exec import ExecutionManager
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

CANARY = "sk-CANARY-7f3e9a1c55"
T0 = 1_759_276_800  # 2025-10-01T00:00:00Z in epoch seconds


def empty_checkpoint() -> dict[str, Any]:
    """The data of the checkpoint a fresh journal starts with (nothing accepted yet)."""
    from fsm_exec.journal.state import checkpoint_payload

    return checkpoint_payload(
        window=10_000, counters=dict.fromkeys(
            ("accepted", "executed", "failed", "cancelled", "retried", "starts"), 0),
        halted=False, halt_reason=None, queue=(), flight=None, finished=())


def T(n: float = 0) -> float:
    """A timestamp the manager accepts: ``n`` seconds after 2025-10-01T00:00:00Z."""
    return T0 + n


def block(block_id: str, token: str | None = "ETH", amount: float | Decimal = 1.0,
          **extra: Any) -> dict[str, Any]:
    """A valid block with one instruction."""
    instr: dict[str, Any] = {"venue": "spot", "amount": amount, "side": "buy"}
    if token is not None:
        instr["token"] = token
    return {"block_id": block_id, "action": "trade", "priority": 1,
            "instructions": [instr], **extra}


def blocks(*ids: str) -> list[dict[str, Any]]:
    return [block(i) for i in ids]


@attrs.define
class Rig:
    em: ExecutionManager
    clock: FakeClock
    log: RecordingEventLogger
    venue: SimVenue
    faulty: FaultyVenue
    rc: SimReconciliation
    positions: SimPositionHandler
    data: StaticDataProvider
    sleeps: list[float]

    def transitions(self, block_id: str | None = None) -> list[tuple[str, str, str]]:
        return self.log.transitions(block_id)

    def path(self, block_id: str) -> list[str]:
        """The states a block went through, starting at queued."""
        moves = self.transitions(block_id)
        return [moves[0][1], *(d for _, _, d in moves)] if moves else []

    def events(self, *types: str) -> list[dict[str, Any]]:
        return [e.data for e in self.log.of_type(*types)]


def rig(mode: str = "live", *, faults: Iterable[str | None] = (),
        recon: Iterable[tuple[str, float]] = (), position_failures: Iterable[bool] = (),
        queryable: bool = True, prices: dict[str, Any] | None = None,
        risk_checks: Iterable[Any] = (), health_manager: Any = None,
        observers: Iterable[Any] = (), lifecycle: Any = None, **config: Any) -> Rig:
    """A manager wired to simulated collaborators on a fake clock."""
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.sleep(s)

    log = RecordingEventLogger()
    rc = SimReconciliation(clock, recon)
    positions = SimPositionHandler(rc, position_failures)
    venue = SimVenue()
    faulty = FaultyVenue(venue, faults, clock=clock, queryable=queryable)
    data = StaticDataProvider(prices)
    cfg = {"strategy_mode": "eth_basis", "api_key": CANARY, **config}
    em = ExecutionManager(cfg, data, mode, positions, faulty, rc, event_logger=log,
                          clock=clock, sleep=sleep, risk_checks=list(risk_checks),
                          health_manager=health_manager, observers=list(observers),
                          lifecycle=lifecycle)
    return Rig(em, clock, log, venue, faulty, rc, positions, data, sleeps)


HAPPY_PATH = ["queued", "routing", "pending_reconciliation", "success"]


#: The fuzzing guide's example's dedup check, and the same adapter without it (the bug the
#: guide shows, docs/how-to/fuzz.md): the suite edits the guide's code with these.
DEDUP = """\
        if block.block_id not in self.orders:
            self.fills[block.block_id] += 1
            self.orders[block.block_id] = {"block_id": block.block_id, "changes": {}}
"""
NO_DEDUP = """\
        self.fills[block.block_id] += 1
        self.orders[block.block_id] = {"block_id": block.block_id, "changes": {}}
"""


class Interrupting(int):
    """A priority whose conversion is interrupted: Ctrl-C on the thread submitting it."""

    def __int__(self) -> int:
        raise KeyboardInterrupt


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``fn`` on a daemon thread; the thread, and what it raised (filled on exit)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def losing_fsync(monkeypatch: Any, thread: threading.Thread | None = None) -> list[bool]:
    """Patch the journal's ``os.fsync``: once armed (``armed[0] = True``), the next fsync
    (on ``thread``, if given) fails with EIO and the file loses what no earlier fsync
    covered, as a kernel may drop the dirty pages. Returns ``armed``."""
    real, armed = os.fsync, [False]
    synced: dict[int, int] = {}

    def fsync(fd: int) -> None:
        if armed[0] and (thread is None or threading.current_thread() is thread):
            armed[0] = False
            os.ftruncate(fd, synced.get(fd, 0))
            raise OSError(errno.EIO, "Input/output error")
        real(fd)
        synced[fd] = os.fstat(fd).st_size

    monkeypatch.setattr("fsm_exec.journal.writer.os.fsync", fsync)
    return armed
