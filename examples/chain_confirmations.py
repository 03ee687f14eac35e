"""On-chain settlement: the deltas go to the position handler only once the venue's
transaction has enough confirmations.

The lifecycle is ``examples/lifecycles/chain_confirmations.yaml``: ``executed`` leads to
``awaiting_confirmations`` (settling: the block was sent, its deltas journaled with the move),
where a ``poll`` transition, its ``call`` guard counting confirmations
(``examples.lifecycle_hooks:confirmed``), moves it to ``pending_reconciliation`` (the hand-off)
once there are 12. A dropped or re-orged transaction leaves the block in doubt: it fails
(``EXEC-007``) and a live manager halts; it is never routed again. Runs in backtest and in
live mode, on a fake clock.

In live mode the venue loses the reply to swap-1's route (it executed, then the connection
dropped): the block retries, ``query_execution`` finds it executed, and it moves ``retrying
--found_executed--> awaiting_confirmations``. ``found_executed`` is derived from the
lifecycle's ``executed`` transitions (never declared in the file), so redirecting
``executed`` redirects it too: a lost reply never takes the deltas to the position handler
by a way round the confirmations.

    python examples/chain_confirmations.py [--out DIR]

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
from fsm_exec import (  # noqa: E402
    EventLogger,
    ExecutionManager,
    Lifecycle,
    check_journal,
    read_journal,
)
from fsm_exec.sim.venues import (  # noqa: E402
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)


def block(block_id: str) -> dict[str, Any]:
    return {"block_id": block_id, "action": "swap", "priority": 1, "instructions": [
        {"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0}]}


def run(mode: str, log_dir: Path) -> list[str]:
    lc = Lifecycle.load(ROOT / "examples" / "lifecycles" / "chain_confirmations.yaml")
    clock = FakeClock()
    rc = SimReconciliation(clock)
    # live: the reply to swap-1's route is lost (the venue executed it)
    venue = FaultyVenue(SimVenue(), ["lost_response"] if mode == "live" else [], clock=clock)
    positions = SimPositionHandler(rc)
    journal = EventLogger(log_dir, mode)
    em = ExecutionManager({}, StaticDataProvider(), mode, positions, venue, rc,
                          event_logger=journal, clock=clock, sleep=clock.sleep, lifecycle=lc)
    chain = lifecycle_hooks.CONFIRMATIONS

    def at(seconds: float) -> Any:
        return clock.timestamp() + timedelta(seconds=seconds)

    out = []
    em.update_state(at(0), "strategy_manager", [block("swap-1"), block("swap-2")])
    out.append(f"swap-1 {em.block_state('swap-1')}, swap-2 {em.block_state('swap-2')}; "
               f"hand-offs: {len(positions.updates)}")
    chain["swap-1"] = 5
    em.update_state(at(60), "strategy_manager")
    out.append(f"5 confirmations: swap-1 {em.block_state('swap-1')}")
    chain["swap-1"] = 12
    em.update_state(at(144), "strategy_manager")
    out.append(f"12 confirmations: swap-1 {em.block_state('swap-1')}, swap-2 "
               f"{em.block_state('swap-2')}; hand-offs: {len(positions.updates)}")
    lifecycle_hooks.DROPPED.add("swap-2")
    try:
        em.update_state(at(200), "strategy_manager")
    except Exception as exc:  # backtest fails fast, naming the block
        out.append(f"backtest raised {type(exc).__name__} [{getattr(exc, 'error_code', '')}]")
    status = em.get_execution_status()
    out.append(f"swap-2 dropped: {em.block_state('swap-2')}, halted: {status['halted']} "
               f"({status['halt_reason']}); hand-offs: {len(positions.updates)}")
    journal.close()
    path = [r.data["dest"] for r in read_journal(log_dir)
            if r.event_type == "block_transition" and r.data["block_id"] == "swap-1"]
    out.append(f"swap-1: queued -> {' -> '.join(path)}")
    report = check_journal(log_dir)
    out.append(f"routed: {dict(venue.route_calls)}; journal check: "
               f"{'OK' if report.ok else report.problem}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the journals here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for mode in ("backtest", "live"):
            lifecycle_hooks.CONFIRMATIONS.clear()
            lifecycle_hooks.DROPPED.clear()
            print(f"[{mode}]")
            for line in run(mode, base / mode):
                print(f"  {line}")


if __name__ == "__main__":
    main()
