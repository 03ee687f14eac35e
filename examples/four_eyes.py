"""Four eyes: a block above 100,000 of notional waits for a second person's approval.

The lifecycle is ``examples/lifecycles/four_eyes.yaml``: a guarded ``start`` sends a big block
to ``awaiting_approval`` (its hook asks for approval, ``examples/lifecycle_hooks.py``), where
it waits, and the blocks queued behind it wait too, until a second person approves
(``em.trigger(block_id, "approve", ts, reason=...)``, or ``fsm-exec trigger`` with the manager
stopped), rejects, or an hour passes (then it is cancelled, never sent). Small blocks start
as usual. Runs in backtest and in live mode, on a fake clock, with a journal that
``fsm-exec check`` reads with its lifecycle.

    python examples/four_eyes.py [--out DIR]

Needs PyYAML (``pip install 'fsm-exec[lifecycles]'``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the hooks' import paths: examples.lifecycle_hooks:...

# The hooks' module, as the lifecycle's import paths name it (examples.lifecycle_hooks).
lifecycle_hooks: Any = importlib.import_module("examples.lifecycle_hooks")
from fsm_exec import EventLogger, ExecutionManager, Lifecycle, check_journal  # noqa: E402
from fsm_exec.sim.venues import (  # noqa: E402
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)


def block(block_id: str, amount: float, price: str) -> dict[str, Any]:
    """A block buying ``amount`` ETH at ``price``: its notional is ``amount x price``."""
    return {"block_id": block_id, "action": "trade", "priority": 1, "instructions": [
        {"venue": "spot", "token": "ETH", "side": "buy", "amount": amount, "price": price}]}


def run(mode: str, log_dir: Path) -> list[str]:
    lc = Lifecycle.load(ROOT / "examples" / "lifecycles" / "four_eyes.yaml")
    clock = FakeClock()
    rc = SimReconciliation(clock)
    venue = SimVenue()
    journal = EventLogger(log_dir, mode)
    em = ExecutionManager({}, StaticDataProvider(), mode, SimPositionHandler(rc), venue, rc,
                          event_logger=journal, clock=clock, sleep=clock.sleep, lifecycle=lc)

    def at(minutes: float) -> Any:
        return clock.timestamp() + timedelta(minutes=minutes)

    out = []
    em.update_state(at(0), "strategy_manager", [block("big-1", 100, "2500"),
                                                block("small-1", 1, "2500")])
    out.append(f"big-1 {em.block_state('big-1')}, small-1 {em.block_state('small-1')} "
               f"(behind it); approvals asked: {lifecycle_hooks.APPROVAL_REQUESTS}")
    em.trigger("big-1", "approve", at(5), reason="approved by the second trader")
    em.update_state(at(6), "strategy_manager")
    out.append(f"approved: big-1 {em.block_state('big-1')}, small-1 "
               f"{em.block_state('small-1')}")
    em.update_state(at(10), "strategy_manager", [block("big-2", 80, "2500")])
    em.trigger("big-2", "reject", at(12), reason="too large for today")
    out.append(f"rejected: big-2 {em.block_state('big-2')}")
    em.update_state(at(20), "strategy_manager", [block("big-3", 60, "2500")])
    em.update_state(at(20 + 60), "strategy_manager")
    out.append(f"an hour unanswered: big-3 {em.block_state('big-3')}")
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
            lifecycle_hooks.APPROVAL_REQUESTS.clear()
            print(f"[{mode}]")
            for line in run(mode, base / mode):
                print(f"  {line}")


if __name__ == "__main__":
    main()
