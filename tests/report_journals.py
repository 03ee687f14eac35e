"""Journals for the report's chart tests: a live run on a fake clock with as many blocks as
asked, ids as long as asked, lost replies (retries), blocks failed by a missing price, and
a halt during which queued blocks are cancelled."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.testing import (
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)


def block_id(i: int, width: int) -> str:
    """``block-<i>``, or, with ``width``, an id of exactly that many characters."""
    return f"block-{i}" if not width else f"{i:07d}-".ljust(width, "x")


def write_journal(log_dir: Path, blocks: int, *, id_width: int = 0,
                  failing_every: int = 0, cancelled: int = 0) -> Path:
    """A live run of ``blocks`` blocks, one per update a second apart; every 13th route
    loses its reply (the block retries); with ``failing_every``, every such block names a
    token without a price (it fails, in no time); with ``cancelled``, the first block's
    reconciliation fails (the manager halts), that many blocks are queued and cancelled
    while it is halted, and the operator resumes it. Returns ``log_dir``."""
    clock = FakeClock()
    script: list[tuple[str, float]] = [("fail", 0.0)] if cancelled else []
    script += [("ok", 0.5 + (i % 7) * 0.3) for i in range(blocks * 2)]
    reconciliation = SimReconciliation(clock, script)
    venue = FaultyVenue(SimVenue(), [("lost_response" if i % 13 == 5 else None)
                                     for i in range(blocks * 2)], clock=clock)
    journal = EventLogger(log_dir, "live")
    em = ExecutionManager({"execution_timeout": 5, "max_queue_size": blocks + cancelled + 10},
                          StaticDataProvider(), "live", SimPositionHandler(reconciliation),
                          venue, reconciliation, event_logger=journal, clock=clock,
                          sleep=clock.sleep)

    def block(bid: str, token: str = "ETH") -> dict[str, Any]:
        return {"block_id": bid, "action": "trade", "priority": 1,
                "instructions": [{"venue": "spot", "token": token, "side": "buy",
                                  "amount": 1.0}]}

    for i in range(blocks):
        clock.advance(1.0)
        failing = failing_every and i % failing_every == failing_every - 1
        em.update_state(clock.timestamp(), "strategy_manager",
                        [block(block_id(i, id_width), "NOPE" if failing else "ETH")])
        if em.halted and cancelled:
            ids = [block_id(blocks + n, id_width) for n in range(cancelled)]
            em.update_state(clock.timestamp(), "strategy_manager", [block(b) for b in ids])
            em.cancel(clock.timestamp(), ids, reason="positions reconciled by hand")
            clock.advance(5.0)
            em.update_state(clock.timestamp(), "manual")
        elif em.halted:
            em.update_state(clock.timestamp(), "manual")
    journal.close()
    return log_dir


@contextlib.contextmanager
def fast_dir() -> Iterator[Path]:
    """A temporary directory in memory (/dev/shm) where there is one: a live journal fsyncs
    every step, which costs nothing there (a 10,000-block journal: 2 s, not 45 s on a
    loaded disk). Removed afterwards."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fsm-exec-report-", dir=where) as d:
        yield Path(d)
