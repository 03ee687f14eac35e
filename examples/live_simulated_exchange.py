"""Going live against a simulated exchange that loses replies, on a fake clock.

The exchange executes every order it receives, but the network loses some of its replies,
and one reply comes back after the manager stopped waiting. For each unknown outcome the
manager asks the exchange whether that block_id executed (``query_execution``) before it
routes anything again, so every block fills exactly once. Nothing really waits: the
manager's ``clock`` and ``sleep`` are a FakeClock.

    python examples/live_simulated_exchange.py [--out DIR]

The journal is written under ``--out`` (default: a temporary directory); ``fsm-exec status
DIR/logs`` and ``fsm-exec report DIR/logs`` read it.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from fsm_exec import EventLogger, ExecutionManager, read_journal
from fsm_exec.testing import (
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

#: What happens to each route call, in order: None is a clean reply. ``lost_response``: the
#: exchange executed, the reply never arrived. ``error``: the connection was refused before
#: the order reached the exchange. ``hang_after``: the exchange executed, the reply came
#: after ``execution_timeout``.
FAULTS = [None, "lost_response", None, "error", "lost_response", None, "hang_after", None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the journal "
                        "(default: a temporary directory)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="live-example-"))

    clock = FakeClock()
    exchange = SimVenue()                     # idempotent by block_id, answers queries
    network = FaultyVenue(exchange, FAULTS, clock=clock, hang_seconds=45.0)
    reconciliation = SimReconciliation(clock, [("ok", 2.0)] * 8)  # books agree 2 s later
    book = SimPositionHandler(reconciliation)
    journal = EventLogger(out / "logs", "live")
    em = ExecutionManager({"execution_timeout": 30, "reconciliation_timeout": 10},
                          StaticDataProvider({"ETH": 3000.0, "USDT": 1.0}), "live", book,
                          network, reconciliation, event_logger=journal,
                          clock=clock, sleep=clock.sleep)
    for n in range(6):
        side = "buy" if n % 2 == 0 else "sell"
        em.update_state(clock.timestamp(), "strategy_manager", [{
            "block_id": f"eth-{n}", "action": side, "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "side": side,
                              "amount": 1.0 + n}]}])
        clock.advance(60.0)
    journal.close()

    status = em.get_execution_status()
    records = list(read_journal(out / "logs"))
    kinds = Counter(r.event_type for r in records)
    retried = Counter(r.data["block_id"] for r in records if r.event_type == "block_transition"
                      and r.data["dest"] == "retrying")
    print(f"faults injected: {', '.join(f'{f} on {b}' for b, f in network.injected)}")
    print(f"blocks executed: {status['blocks_executed']}  failed: {status['blocks_failed']}  "
          f"halted: {status['halted']}")
    print(f"route calls: {sum(network.route_calls.values())}  "
          f"queries after an unknown outcome: {kinds['execution_query']}  "
          f"blocks retried: {len(retried)}")
    fills = Counter(exchange.execution_order)
    print(f"fills per block: {dict(fills)}")
    print(f"book: ETH {book.positions['ETH']:g}")
    print(f"fake time passed: {clock():.0f} s (none of it waited for)")
    print(f"journal directory: {out / 'logs'}")
    once = all(n == 1 for n in fills.values()) and len(fills) == 6
    print("every block filled exactly once" if once else "A BLOCK FILLED TWICE")
    return 0 if once and status["blocks_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
