"""Pre-trade risk checks: the first step of routing, before any venue is called.

:func:`check_prices` always runs first (the asset every instruction names, in ``token`` or
the config's ``asset_field``, needs a finite positive price); a desk's own checks
(:class:`~fsm_exec.RiskCheck`) follow in order. A refusal fails the block
(``routing --fail--> failed``) with ``EXEC-005`` (prices, market data) or ``EXEC-006`` (a
desk's check), and the venue is never called.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from fsm_exec.boundary.blocks import ASSET_FIELD, InstructionBlock
from fsm_exec.boundary.escape import terminal_text
from fsm_exec.boundary.protocols import DataProvider, RiskCheck
from fsm_exec.core.errors import describe_exception, name_of


def _positive_price(p: object) -> bool:
    """A finite number > 0: a float or int, or any real number a data provider hands over
    (numpy and pandas scalars, ``Decimal``, ``Fraction``); never a bool."""
    kind = type(p)
    if kind is float:
        return 0 < p < math.inf  # type: ignore[operator]  # NaN compares false
    if kind is int:
        return p > 0  # type: ignore[operator]
    if isinstance(p, bool) or not isinstance(p, numbers.Real | Decimal):
        return False
    try:
        if isinstance(p, Decimal):
            return p.is_finite() and p > 0
        if isinstance(p, numbers.Integral):
            return bool(p > 0)  # type: ignore[operator]  # numbers.Integral: no typed >
        return bool(math.isfinite(p) and p > 0)  # type: ignore[operator]
    except (ArithmeticError, ValueError, TypeError):  # a number type of its own that fails
        return False


def check_prices(block: InstructionBlock, market_data: Mapping[str, Any], *,
                 asset_field: str = ASSET_FIELD) -> str | None:
    """The first pre-trade check: the asset each instruction names in ``asset_field``
    (``token`` unless the config's ``asset_field`` says otherwise) needs a price.

    The price must be a finite number > 0 in ``market_data['prices']``. The manager
    accepts no instruction without the field; one given here without it is refused.
    """
    prices = (market_data.get("prices")
              if type(market_data) is dict or isinstance(market_data, Mapping) else None)
    if not (type(prices) is dict or isinstance(prices, Mapping)):
        prices = None
    for i, instr in enumerate(block.instructions):
        token = instr.get(asset_field)
        if token is None:
            return f"instructions[{i}]: names no asset (no {asset_field!r} field) to price"
        if prices is None:
            return "market data has no prices"
        if not _positive_price(prices.get(token)):
            return f"instructions[{i}]: no finite positive price for {asset_field} {token!r}"
    return None


class RiskChecks:
    """The pre-trade checks of one manager: prices first, then the desk's own, in order."""

    __slots__ = ("asset_field", "checks", "data_provider", "redact")

    def __init__(self, data_provider: DataProvider, checks: Sequence[RiskCheck],
                 redact: Callable[[str], str], asset_field: str = ASSET_FIELD) -> None:
        self.data_provider = data_provider
        self.checks: tuple[RiskCheck, ...] = (check_prices, *checks)
        self.redact = redact
        self.asset_field = asset_field

    def refusal(self, ts: Any, block: InstructionBlock) -> tuple[str, str] | None:
        """``(error code, reason)`` of the first check that refuses ``block``, else ``None``.
        A check that raises, or market data that cannot be had, refuses (redacted). A
        desk's check is given its own copy of the block (one that edits it changes
        nothing routed)."""
        checks = self.checks
        try:
            market = self.data_provider.get_data(ts)["market_data"]
        except Exception as exc:
            return "EXEC-005", self.redact(
                f"market data unavailable: {describe_exception(exc)}")
        for check in checks:
            try:
                verdict = (check_prices(block, market, asset_field=self.asset_field)
                           if check is check_prices else check(block.copy(), market))
            except Exception as exc:
                return self._refused(check, "risk check {} raised " + describe_exception(exc))
            if verdict is None or verdict is True:
                continue
            # A desk's own text, shown (escaped) wherever the refusal goes: one line.
            reason = (terminal_text(str.__str__(verdict)) if isinstance(verdict, str)
                      and verdict else "refused")
            return self._refused(check, "{}: " + reason)
        return None

    def _refused(self, check: Any, text: str) -> tuple[str, str]:
        """``(error code, reason)`` of ``check``'s refusal: ``text`` with the check's name
        in place of its ``{}`` (named only when it refuses: the hot path names nothing)."""
        code = "EXEC-005" if check is check_prices else "EXEC-006"
        name = terminal_text(name_of(check))  # (a property or a proxy that raises: its type)
        return code, self.redact(text.replace("{}", name, 1))
