"""A venue adapter for a ccxt-style exchange API, idempotent by client order id.

ccxt (and most exchange SDKs) place an order with ``create_order(symbol, type, side,
amount, price=None, params={})`` and read it back with ``fetch_order(id, symbol,
params={})``. Exchanges that take a *client order id* refuse a second order with the same
one: that is what makes routing a block again safe. This adapter uses the block's
``block_id`` as the client order id, so:

- ``route_instruction`` places one order per block; if the exchange says the client order
  id is taken (the first attempt reached it, its reply was lost), the adapter reads that
  order back instead of placing another;
- ``query_execution`` asks the exchange for the order with that client order id: the
  manager calls it after an unknown outcome, before routing anything again;
- an order the exchange refuses outright (``InvalidOrder``) executed nothing:
  ``ExecutionRejected(..., retryable=False)`` fails the block at once; a network error is an
  unknown outcome, left to the manager.

One instruction per block: a block of several orders can be half filled when the process
dies between two of them, which one client order id cannot describe (split such blocks).

``FakeExchange`` below stands in for ``ccxt.<exchange>(...)``: same method names and
exception names, in memory, no network, no ccxt needed. Run the file to see the adapter
survive lost replies in a live manager on a fake clock:

    python examples/ccxt_style_adapter.py
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from fsm_exec import ExecutionManager, ExecutionRejected
from fsm_exec.testing import FakeClock, SimPositionHandler, SimReconciliation, StaticDataProvider

# ------------------------------------------------------------------ the fake exchange


class ExchangeError(Exception):
    """ccxt.ExchangeError."""


class InvalidOrder(ExchangeError):
    """ccxt.InvalidOrder: refused, nothing placed."""


class DuplicateOrderId(InvalidOrder):
    """ccxt.DuplicateOrderId: the client order id is already used."""


class OrderNotFound(ExchangeError):
    """ccxt.OrderNotFound."""


class NetworkError(Exception):
    """ccxt.NetworkError (ccxt.RequestTimeout is one): the outcome is unknown."""


class FakeExchange:
    """An in-memory exchange with a ccxt-style API. Market orders fill at once at
    ``prices[symbol]``. ``lose_replies``: how many of the next ``create_order`` replies are
    lost *after* the order was placed (a timeout on a request that went through).
    ``fills`` counts the orders placed per client order id (the test of idempotency)."""

    InvalidOrder = InvalidOrder  # ccxt exposes its exceptions on the module; so does this
    DuplicateOrderId = DuplicateOrderId
    OrderNotFound = OrderNotFound
    NetworkError = NetworkError

    def __init__(self, prices: dict[str, float], *, lose_replies: int = 0,
                 dedupe: bool = True) -> None:
        self.prices = dict(prices)
        self.lose_replies = lose_replies
        self.dedupe = dedupe  # False: an exchange that ignores client order ids
        self.orders: dict[str, dict[str, Any]] = {}  # exchange id -> order
        self.by_client_id: dict[str, str] = {}
        self.fills: Counter[str] = Counter()
        self.fetches = 0
        self._ids = itertools.count(1)

    def create_order(self, symbol: str, type: str, side: str, amount: float,
                     price: float | None = None, params: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
        client_id = (params or {}).get("clientOrderId")
        if symbol not in self.prices:
            raise InvalidOrder(f"unknown symbol {symbol}")
        if type != "market" or side not in ("buy", "sell") or not amount > 0:
            raise InvalidOrder(f"unsupported order: {type} {side} {amount}")
        if self.dedupe and client_id is not None and client_id in self.by_client_id:
            raise DuplicateOrderId(f"clientOrderId {client_id} already used")
        order_id = str(next(self._ids))
        order: dict[str, Any] = {"id": order_id, "clientOrderId": client_id, "symbol": symbol,
                 "side": side, "amount": amount, "filled": amount, "status": "closed",
                 "average": self.prices[symbol], "cost": amount * self.prices[symbol]}
        self.orders[order_id] = order
        if client_id is not None:
            self.by_client_id[client_id] = order_id
            self.fills[client_id] += 1
        if self.lose_replies > 0:
            self.lose_replies -= 1
            raise NetworkError("RequestTimeout: the reply was lost")
        return dict(order)

    def fetch_order(self, id: str | None, symbol: str | None = None,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.fetches += 1
        client_id = (params or {}).get("clientOrderId")
        if id is None and client_id is not None:
            id = self.by_client_id.get(client_id)
        if id is None or id not in self.orders:
            raise OrderNotFound(f"order {id or client_id} not found")
        return dict(self.orders[id])


# ------------------------------------------------------------------ the adapter


class CcxtStyleAdapter:
    """fsm_exec's venue adapter (``execution_interface_manager``) over a ccxt-style client.

    ``quote``: the currency a token is traded against (``ETH`` -> ``ETH/USDT``). Deltas are
    ``{"block_id": ..., "changes": {token: +-filled, quote: -+cost}}``.
    """

    def __init__(self, exchange: Any, quote: str = "USDT") -> None:
        self.exchange = exchange
        self.quote = quote

    def _leg(self, block: Any) -> dict[str, Any]:
        if len(block.instructions) != 1:
            raise ExecutionRejected(f"{len(block.instructions)} instructions: this adapter "
                                    "places one order per block", retryable=False)
        return dict(block.instructions[0])

    def _deltas(self, block_id: str, order: dict[str, Any]) -> dict[str, Any]:
        base = order["symbol"].split("/")[0]
        sign = 1.0 if order["side"] == "buy" else -1.0
        return {"block_id": block_id, "changes": {base: sign * float(order["filled"]),
                                                  self.quote: -sign * float(order["cost"])}}

    def route_instruction(self, timestamp: Any, block: Any) -> dict[str, Any]:
        leg = self._leg(block)
        symbol = f"{leg['token']}/{self.quote}"
        try:
            order = self.exchange.create_order(symbol, "market", leg["side"], leg["amount"],
                                               params={"clientOrderId": block.block_id})
        except self.exchange.DuplicateOrderId:  # an earlier attempt went through
            order = self.exchange.fetch_order(None, symbol,
                                              params={"clientOrderId": block.block_id})
        except self.exchange.InvalidOrder as exc:  # refused: nothing was placed
            raise ExecutionRejected(str(exc), retryable=False) from exc
        return self._deltas(block.block_id, order)

    def query_execution(self, timestamp: Any, block: Any) -> dict[str, Any] | None:
        leg = self._leg(block)
        try:
            order = self.exchange.fetch_order(None, f"{leg['token']}/{self.quote}",
                                              params={"clientOrderId": block.block_id})
        except self.exchange.OrderNotFound:
            return None  # surely not placed (the manager asks again before believing it)
        return self._deltas(block.block_id, order)


# ------------------------------------------------------------------ a run


def main() -> int:
    exchange = FakeExchange({"ETH/USDT": 3000.0, "BTC/USDT": 60000.0}, lose_replies=2)
    adapter = CcxtStyleAdapter(exchange)
    clock = FakeClock()
    reconciliation = SimReconciliation(clock)
    book = SimPositionHandler(reconciliation)
    em = ExecutionManager({"execution_timeout": 5, "not_found_confirmations": 1},
                          StaticDataProvider({"ETH": 3000.0, "BTC": 60000.0, "DOGE": 0.1,
                                              "USDT": 1.0}),
                          "live", book, adapter, reconciliation, clock=clock,
                          sleep=clock.sleep)
    batch = [{"block_id": f"order-{n}", "action": "trade", "priority": 1,
              "instructions": [{"venue": "spot", "token": token, "side": side,
                                "amount": amount}]}
             for n, (token, side, amount) in enumerate(
                 [("ETH", "buy", 2.0), ("BTC", "buy", 0.1), ("ETH", "sell", 0.5)])]
    batch.append({"block_id": "order-bad", "action": "trade", "priority": 1,
                  "instructions": [{"venue": "spot", "token": "DOGE", "side": "buy",
                                    "amount": 1.0}]})
    status = em.update_state(clock.timestamp(), "strategy_manager", batch)
    print(f"blocks executed: {status['blocks_executed']}  failed: {status['blocks_failed']}")
    print(f"orders placed per client order id: {dict(exchange.fills)}")
    print(f"book: {dict(sorted(book.positions.items()))}")
    print(f"replies lost: {2 - exchange.lose_replies}; fetch_order calls that settled "
          f"them: {exchange.fetches}")
    print(f"order-bad: {em.block_state('order-bad')} (the exchange refused it: "
          "no DOGE/USDT market)")
    once = all(n == 1 for n in exchange.fills.values())
    print("each block placed exactly one order" if once else "A BLOCK PLACED TWO ORDERS")
    return 0 if once and status["blocks_executed"] == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
