"""A live manager run that the crash test kills with SIGKILL at random moments.

Usage: python crash_child.py WORKDIR N_BLOCKS SEED

Every start recovers from the journal in WORKDIR/logs, submits (in batches of three) the
blocks the manager does not know yet, and runs the queue. The venue is slow and NOT
idempotent: every route executes again, and each execution is recorded durably in
WORKDIR/venue.jsonl, so a block run twice would show there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from fsm_exec import EventLogger, ExecutionManager, InstructionBlock
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.sim.venues import SimPositionHandler, StaticDataProvider


class DurableVenue:
    def __init__(self, ledger: Path, rng: random.Random) -> None:
        self.ledger, self.rng = ledger, rng

    def executed(self) -> set[str]:
        if not self.ledger.exists():
            return set()
        lines = self.ledger.read_bytes().split(b"\n")[:-1]  # a torn last line never happened
        return {json.loads(line)["block_id"] for line in lines}

    def route_instruction(self, ts: Any, block: InstructionBlock) -> dict[str, Any]:
        time.sleep(self.rng.uniform(0.001, 0.015))
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, json.dumps({"block_id": block.block_id}).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        time.sleep(self.rng.uniform(0.001, 0.015))
        return {"block_id": block.block_id, "changes": {}}

    def query_execution(self, ts: Any, block: InstructionBlock) -> dict[str, Any] | None:
        if block.block_id in self.executed():
            return {"block_id": block.block_id, "changes": {}}
        return None


class Reconciled:
    reconciliation_status = "success"


class Days:
    """The UTC day moves on with the blocks submitted (a new day every two batches), so runs
    rotate files, checkpoint and prune all the time; kills land in the middle of that."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> dt.date:
        return dt.date(2025, 1, 1) + dt.timedelta(days=self.n // 2)


def main() -> None:
    workdir, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    days = Days()
    days.n = len(DurableVenue(workdir / "venue.jsonl", rng).executed()) // 3
    try:
        journal = EventLogger(workdir / "logs", "live", today=days, retention_days=2,
                              checkpoint_every=7)
    except JournalLockedError as exc:
        print(f"locked {exc.pid}", flush=True)
        sys.exit(3)
    # This venue records an execution durably before it replies: its "not found" is sure at
    # once, so no confirmations are needed (and none would be quick in real time).
    em = ExecutionManager({"retry_delay_seconds": 0.001, "execution_timeout": 10,
                           "not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                          StaticDataProvider(), "live", SimPositionHandler(),
                          DurableVenue(workdir / "venue.jsonl", rng), Reconciled(),
                          event_logger=journal)
    em.recover()
    print("ready", flush=True)
    hold = os.environ.get("CRASH_CHILD_HOLD")
    while hold and not Path(hold).exists():  # the test starts a rival meanwhile
        time.sleep(0.01)
    ids = [f"b{i:03d}" for i in range(n)]
    for i in range(0, n, 3):
        days.n = i // 3
        fresh = [b for b in ids[i:i + 3] if em.block_state(b) is None]
        em.update_state(time.time(), "strategy_manager", [
            {"block_id": b, "action": "trade", "priority": 1,
             "instructions": [{"venue": "spot", "token": "ETH", "amount": 1.0}]}
            for b in fresh])
    status = em.update_state(time.time(), "strategy_manager")
    journal.close()
    (workdir / "done.json").write_text(json.dumps(status))


if __name__ == "__main__":
    main()
