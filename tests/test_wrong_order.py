"""Collaborators passed in the wrong order end in a clear InvalidArgumentError naming the
parameter, at construction (issue 25 item 14), not a raw AttributeError later."""

from __future__ import annotations

from typing import Any

import pytest

from fsm_exec import ExecutionManager, InvalidArgumentError
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyReconciliation,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)


def parts() -> dict[str, Any]:
    rc = SimReconciliation()
    return {"data_provider": StaticDataProvider(),
            "position_update_handler": SimPositionHandler(rc),
            "execution_interface_manager": SimVenue(), "reconciliation_component": rc}


def build(p: dict[str, Any]) -> ExecutionManager:
    return ExecutionManager({}, p["data_provider"], "live", p["position_update_handler"],
                            p["execution_interface_manager"], p["reconciliation_component"])


@pytest.mark.parametrize(("a", "b", "named"), [
    ("position_update_handler", "execution_interface_manager", "position_update_handler"),
    ("data_provider", "reconciliation_component", "data_provider"),
    ("execution_interface_manager", "reconciliation_component",
     "execution_interface_manager"),
    ("position_update_handler", "reconciliation_component", "position_update_handler"),
])
def test_swapped_collaborators_are_refused_naming_the_parameter(
        a: str, b: str, named: str) -> None:
    """Two collaborators swapped: InvalidArgumentError naming the first parameter whose
    object lacks its protocol's member, and the order to give them in."""
    p = parts()
    p[a], p[b] = p[b], p[a]
    with pytest.raises(InvalidArgumentError, match=f"^\\[EXEC-011\\] {named}: a ") as caught:
        build(p)
    assert "The order is config, data_provider, execution_mode" in str(caught.value)


def test_a_reconciliation_component_without_the_status_is_refused() -> None:
    """The status is looked up, not read: a component without it is refused; a wrapper
    that delegates it (FaultyReconciliation) is accepted."""
    p = parts()
    p["reconciliation_component"] = object()
    with pytest.raises(InvalidArgumentError, match="reconciliation_component: a object has no"):
        build(p)
    p["reconciliation_component"] = FaultyReconciliation(SimReconciliation(), FakeClock())
    assert build(p).get_execution_status()["status"] == "healthy"


class Delegating:
    """A wrapper that passes unknown attributes on (its status is its inner one's)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)


def test_a_delegating_wrapper_is_taken_at_its_word() -> None:
    """A reconciliation component that delegates through __getattr__ is not refused (its
    status is not read at construction)."""
    p = parts()
    p["reconciliation_component"] = Delegating(SimReconciliation())
    assert build(p).get_execution_status()["status"] == "healthy"
