"""A venue's maintenance window: blocks for that venue wait in ``held`` until it ends.

The lifecycle is ``examples/lifecycles/maintenance_window.yaml``: a guarded ``start`` holds a
block with a ``spot`` instruction while the clock (the strategy's timestamps) is between
02:00 and 03:00 UTC; a ``poll`` transition, checked on each ``update_state``, routes it once
the window is over, and the queue behind it waits meanwhile. Outside the window blocks start
as usual; an operator may cancel a held block (never sent). Runs in backtest and in live
mode, on a fake clock.

    python examples/maintenance_window.py [--out DIR]

Needs PyYAML (``pip install 'fsm-exec[lifecycles]'``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the hooks' import paths: examples.lifecycle_hooks:...

from fsm_exec import EventLogger, ExecutionManager, Lifecycle, check_journal  # noqa: E402
from fsm_exec.sim.venues import (  # noqa: E402
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)


def block(block_id: str, venue: str = "spot") -> dict[str, Any]:
    return {"block_id": block_id, "action": "trade", "priority": 1, "instructions": [
        {"venue": venue, "token": "ETH", "side": "buy", "amount": 1.0}]}


def run(mode: str, log_dir: Path) -> list[str]:
    lc = Lifecycle.load(ROOT / "examples" / "lifecycles" / "maintenance_window.yaml")
    clock = FakeClock()
    rc = SimReconciliation(clock)
    venue = SimVenue()
    journal = EventLogger(log_dir, mode)
    em = ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(rc), venue, rc,
                          event_logger=journal, clock=clock, sleep=clock.sleep, lifecycle=lc)
    day = clock.timestamp().replace(hour=0, minute=0, second=0, microsecond=0)

    def at(hh: int, mm: int) -> Any:
        return day + timedelta(hours=hh, minutes=mm)

    out = []
    em.update_state(at(1, 30), "strategy_manager", [block("before")])
    out.append(f"01:30 before {em.block_state('before')}")
    em.update_state(at(2, 10), "strategy_manager", [block("spot-1"), block("other", "perp")])
    out.append(f"02:10 spot-1 {em.block_state('spot-1')}, other {em.block_state('other')} "
               "(behind it)")
    em.update_state(at(2, 40), "strategy_manager")
    out.append(f"02:40 spot-1 {em.block_state('spot-1')}")
    em.update_state(at(3, 0), "strategy_manager")
    out.append(f"03:00 spot-1 {em.block_state('spot-1')}, other {em.block_state('other')}")
    em.update_state(at(26, 15), "strategy_manager", [block("spot-2")])
    em.cancel(at(26, 20), ["spot-2"], reason="the desk drops it")
    out.append(f"next day 02:15 spot-2 held, then cancelled by the desk: "
               f"{em.block_state('spot-2')}")
    journal.close()
    report = check_journal(log_dir)
    out.append(f"routed: {sorted(venue.route_calls)}; journal check: "
               f"{'OK' if report.ok else report.problem}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the journals here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for mode in ("backtest", "live"):
            print(f"[{mode}]")
            for line in run(mode, base / mode):
                print(f"  {line}")


if __name__ == "__main__":
    main()
