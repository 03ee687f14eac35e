"""Fuzz your own venue adapter with the kit: random batches, lost replies, hangs, lagging
queries and crashes at every point, against the ccxt-style adapter of
``ccxt_style_adapter.py`` (beside this file).

Three runs:

1. ``ExecutionManagerMachine`` (hypothesis) over the adapter: its invariant, and ours, "the
   exchange placed at most one order per block", hold under every fault the kit injects;
2. the same machine over a *broken* adapter (a fresh client order id on every call, a
   common bug): the kit finds a block placed twice and prints the shortest steps to it;
3. ``crash_points``: a scenario crashed at every record of its journal and restarted on
   what the disk kept, with the exchange (the outside world) surviving each crash.

    python examples/fuzz_my_adapter.py [--examples N]

Needs the ``testing`` extra (hypothesis).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from fsm_exec.testing import (
    ExecutionManagerMachine,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
    crash_points,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ccxt_style_adapter import CcxtStyleAdapter, FakeExchange

PRICES = {"ETH/USDT": 3000.0, "USDT/USDT": 1.0}
# An example keeps no example database (.hypothesis/) in the directory it is run from.
settings.register_profile("example", database=None)
settings.load_profile("example")


def orders_per_block(exchange: FakeExchange) -> Counter[str]:
    """Orders the exchange placed, per block (the part of the client id before any '#')."""
    return Counter(str(o["clientOrderId"]).split("#")[0] for o in exchange.orders.values())


class BrokenAdapter(CcxtStyleAdapter):
    """The bug: a new client order id on every call, so the exchange cannot deduplicate a
    block routed again, and ``query_execution`` never finds the first order."""

    _calls = itertools.count()

    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, Any]:
        leg = self._leg(block)
        order = self.exchange.create_order(
            f"{leg['token']}/{self.quote}", "market", leg["side"], leg["amount"],
            params={"clientOrderId": f"{block.block_id}#{next(self._calls)}"})
        return self._deltas(block.block_id, order)


class AdapterMachine(ExecutionManagerMachine):
    """The kit's machine around our adapter; our own invariant on the exchange."""

    adapter = CcxtStyleAdapter
    # The search spends its faults where this adapter can go wrong: replies lost or late
    # after the exchange placed the order (drop this line to inject every kind).
    venue_faults = ("lost_response", "hang_after", "eventually_consistent", "error")

    def collaborators(self) -> dict[str, Any]:
        self.exchange = FakeExchange(PRICES)  # names on the machine are ours
        reconciliation = SimReconciliation()
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(reconciliation),
                "execution_interface_manager": self.adapter(self.exchange),
                "reconciliation_component": reconciliation}

    @invariant()
    def each_block_placed_at_most_once(self) -> None:
        twice = {b: n for b, n in orders_per_block(self.exchange).items() if n > 1}
        assert not twice, f"placed more than once: {twice}"


class BrokenAdapterMachine(AdapterMachine):
    adapter = BrokenAdapter


def fuzz(machine: type[AdapterMachine], examples: int) -> list[str] | None:
    """Run the machine's TestCase (derandomized: the same examples every run); the failure
    and the shortest steps to it that hypothesis found, or None when it passed."""
    case = machine.TestCase
    case.settings = settings(case.settings, max_examples=examples, derandomize=True,
                             deadline=None, print_blob=False,
                             suppress_health_check=[HealthCheck.too_slow])
    try:
        case("runTest").runTest()
    except AssertionError as exc:
        return [str(exc).splitlines()[0], *getattr(exc, "__notes__", [])]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50,
                        help="hypothesis examples per machine (default 50)")
    args = parser.parse_args(argv)

    good = fuzz(AdapterMachine, args.examples)
    print(f"1. fuzzing the adapter ({args.examples} examples): "
          + ("FAILED: " + "\n".join(good) if good else "passed"))
    broken = fuzz(BrokenAdapterMachine, args.examples)
    print("2. fuzzing the broken adapter: " + (
        "found: " + "\n   ".join(broken) if broken else "NOT CAUGHT"))

    def make_collaborators() -> dict[str, Any]:  # one run's outside world: survives crashes
        reconciliation = SimReconciliation()
        return {"data_provider": StaticDataProvider(),
                "position_update_handler": SimPositionHandler(reconciliation),
                "execution_interface_manager": CcxtStyleAdapter(FakeExchange(PRICES)),
                "reconciliation_component": reconciliation}

    def check(collaborators: Mapping[str, Any]) -> None:
        exchange = collaborators["execution_interface_manager"].exchange
        twice = {b: n for b, n in orders_per_block(exchange).items() if n > 1}
        assert not twice, f"placed more than once: {twice}"

    def restart(collaborators: Mapping[str, Any]) -> None:
        pass  # the adapter keeps nothing in memory: the exchange is the record

    def block(n: int, side: str) -> dict[str, Any]:
        return {"block_id": f"c{n}", "action": "trade", "priority": 1,
                "instructions": [{"venue": "spot", "token": "ETH", "side": side,
                                  "amount": 1.0}]}

    batches = [[block(1, "buy"), block(2, "sell")], [block(3, "buy")]]
    report = crash_points(make_collaborators, batches, check=check, on_restart=restart)
    print(f"3. crash points: {report.summary()}")
    print(f"   exercised: {dict(report.exercised)}")
    ok = good is None and broken is not None and report.ok
    print("the adapter is exactly once under every fault and crash tried" if ok else
          "SOMETHING IS WRONG: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
