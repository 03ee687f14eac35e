"""No secret from the config ever reaches the journal, the CSV, the operational log or an
exception message, even when an adapter puts one in its own error."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from fsm_exec import (
    ComponentError,
    EventLogger,
    ExecutionManager,
    InstructionBlock,
    disable_logging,
    enable_logging,
)
from fsm_exec._sim import FakeClock, SimReconciliation, SimVenue, StaticDataProvider

from kit import T, block

TOP = "sk-live-TOPSECRET-11111"
NESTED = "nested-VENUE-SECRET-22222"
LISTED = "listed-KEY-33333"
ENV = "env-SECRET-44444"
CANARIES = (TOP, NESTED, LISTED, ENV)

CONFIG = {
    "strategy_mode": "eth_basis",
    "api_key": TOP,
    "venues": {"binance": {"secret": NESTED, "passphrase": NESTED + "-x"}},
    "backup_keys": [LISTED],
    "max_retries": 2,
    "retry_delay_seconds": 0.01,
}


@pytest.fixture
def oplog() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = enable_logging(sink, level="DEBUG")
    yield sink
    logger.remove(handler)
    disable_logging()


class LeakyVenue(SimVenue):
    """Puts secrets in its errors, as careless adapters do."""

    def route_instruction(self, ts: Any, b: InstructionBlock) -> Any:
        if b.block_id == "leak-route":
            raise ConnectionError(f"401 for key {TOP} / {NESTED}")
        return super().route_instruction(ts, b)

    def query_execution(self, ts: Any, b: InstructionBlock) -> Any:
        if b.block_id == "leak-route":
            raise TimeoutError(f"query with {LISTED} timed out")
        return super().query_execution(ts, b)


class LeakyPositions:
    def update_state(self, ts: Any, source: str, deltas: Any) -> None:
        if deltas["block_id"] == "leak-positions":
            raise RuntimeError(f"position db refused {NESTED}")


class LeakyData(StaticDataProvider):
    def get_data(self, ts: Any) -> Any:
        if ts == T(3):
            raise KeyError(f"price feed auth {TOP}")
        return super().get_data(ts)


def leaky_check(b: InstructionBlock, market: Any) -> str | None:
    if b.block_id == "leak-check":
        raise ValueError(f"risk service {LISTED}")
    return None


@pytest.mark.parametrize("mode", ["backtest", "live"])
def test_canaries_reach_no_output(tmp_path: Path, mode: str, oplog: io.StringIO,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every failure path with secrets in config, environment and adapter errors, then
    grep every output for them."""
    monkeypatch.setenv("VENUE_API_SECRET", ENV)
    clock = FakeClock()
    messages: list[str] = []
    journal = EventLogger(tmp_path / "logs", "live" if mode == "live" else "backtest")
    em = ExecutionManager(CONFIG, LeakyData(), mode, LeakyPositions(), LeakyVenue(),
                          SimReconciliation(), event_logger=journal, clock=clock,
                          sleep=clock.sleep, risk_checks=[leaky_check])

    def step(ts: int, trigger: str, batch: list[Any] | None = None) -> None:
        try:
            em.update_state(T(ts), trigger, batch)
        except ComponentError as exc:
            messages.append(str(exc))
            messages.extend(getattr(exc, "__notes__", []))

    step(1, "strategy_manager", [block("leak-route"), block("leak-check")])
    step(2, "retry")
    step(3, "strategy_manager", [block("leak-data")])
    step(4, "strategy_manager", [block("leak-positions")])
    step(5, "manual", [{"block_id": TOP}])  # a bad batch echoing a secret-shaped id
    messages.append(repr(em.health_check()) + repr(em.get_execution_status()))
    csv_path = journal.export_csv(tmp_path / "results", "run-1")
    journal.close()

    outputs = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    outputs[Path("<loguru>")] = oplog.getvalue()
    outputs[Path("<exceptions>")] = "\n".join(messages)
    assert csv_path in outputs and oplog.getvalue()  # the outputs were really produced
    assert any("[REDACTED]" in text for text in outputs.values())
    for where, text in outputs.items():
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked into {where}"
