"""The runtime's money edges (a hostile review's findings): what reaches the venue, what a
venue's or a component's odd answer does, and what a refused or failed batch tells its
caller. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
)
from fsm_exec.sim.venues import FakeClock, SimPositionHandler, StaticDataProvider

from kit import T, block


class Reconciled:
    reconciliation_status = "success"


class Venue:
    """Fills every block (idempotent by block_id), recording what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def route_instruction(self, ts: Any, b: Any) -> dict[str, float]:
        self.sent.append((b.block_id, [dict(i) for i in b.instructions]))
        return {"ETH": 1.0}


def manager(mode: str = "live", venue: Any = None, *, log: Any = None,
            rc: Any = None, positions: Any = None, **config: Any) -> ExecutionManager:
    clock = FakeClock()
    cfg = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0,
           "not_found_interval_seconds": 0, **config}
    return ExecutionManager(cfg, StaticDataProvider(), mode,
                            positions or SimPositionHandler(), venue or Venue(),
                            rc or Reconciled(), event_logger=log, clock=clock,
                            sleep=clock.sleep)


# ------------------------------------------------------------------ 15d: the keywords


@pytest.mark.parametrize(("keyword", "value", "says"), [
    ("event_logger", "logs/events", "event_logger: a str has no log_event method"),
    ("health_manager", "x", "health_manager: a str has no register_component method"),
    ("clock", 5, "clock: a int is not callable"),
    ("sleep", 5, "sleep: a int is not callable"),
    ("clock", None, "clock: a NoneType is not callable"),
])
def test_a_keyword_collaborator_of_the_wrong_kind_is_refused_naming_it(
        keyword: str, value: Any, says: str) -> None:
    """event_logger='logs/events', health_manager='x', clock=5, sleep=5: refused at
    construction with InvalidArgumentError naming the parameter (not a raw AttributeError,
    not a TypeError later that retires the manager)."""
    clock = FakeClock()
    kwargs: dict[str, Any] = {"clock": clock, "sleep": clock.sleep, keyword: value}
    with pytest.raises(InvalidArgumentError, match=f"^\\[EXEC-011\\] {says}"):
        ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                         Venue(), Reconciled(), **kwargs)


def test_a_keyword_collaborator_refused_claims_nothing(tmp_path: Path) -> None:
    """A bad health_manager is refused before the journal is claimed: the same
    EventLogger serves the next manager."""
    log = EventLogger(tmp_path, "live")
    with pytest.raises(InvalidArgumentError, match="health_manager"):
        ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), Venue(),
                         Reconciled(), event_logger=log, health_manager=object())
    em = manager(log=log)
    em.update_state(T(), "strategy_manager", [block("b1")])
    assert em.blocks_executed == 1
    em.close()
