"""The kit's hypothesis strategies: valid blocks and batches, malformed blocks labelled
with the field at fault, and fault plans."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from fsm_exec.sim.venues import VENUE_FAULTS, FaultPlan

_ID_CHARS = string.ascii_letters + string.digits + "._:-"


def block_ids() -> st.SearchStrategy[str]:
    """Valid ``block_id`` values: 1-64 characters of letters, digits and ``._:-``."""
    return st.text(alphabet=_ID_CHARS, min_size=1, max_size=64)


def _amounts() -> st.SearchStrategy[float]:
    return st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


def instruction_blocks(*, block_id: st.SearchStrategy[str] | None = None,
                       tokens: tuple[str, ...] = ("ETH", "USDT"),
                       venues: tuple[str, ...] = ("spot", "lending", "staking", "perp"),
                       amounts: st.SearchStrategy[float] | None = None,
                       max_instructions: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """Valid blocks (as mappings) whose instructions name one of ``venues`` and
    ``tokens`` with a finite positive amount (any float in 1e-6..1e6 unless ``amounts``
    says otherwise) and a side."""
    instruction = st.fixed_dictionaries({
        "venue": st.sampled_from(venues), "token": st.sampled_from(tokens),
        "side": st.sampled_from(("buy", "sell")),
        "amount": amounts if amounts is not None else _amounts()})
    return st.fixed_dictionaries({
        "block_id": block_id if block_id is not None else block_ids(),
        "action": st.sampled_from(("open", "hedge", "rebalance", "close")),
        "priority": st.integers(0, 10),
        "instructions": st.lists(instruction, min_size=1, max_size=max_instructions),
    })


def block_batches(blocks: st.SearchStrategy[dict[str, Any]] | None = None, *,
                  min_size: int = 1, max_size: int = 5
                  ) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Batches of valid blocks with unique ``block_id``s."""
    return st.lists(blocks if blocks is not None else instruction_blocks(),
                    min_size=min_size, max_size=max_size,
                    unique_by=lambda b: b["block_id"])


class InvalidBlock:
    """A block the validator must refuse, with the field at fault and why."""

    __slots__ = ("block", "field", "reason")

    def __init__(self, block: object, field: str, reason: str) -> None:
        self.block, self.field, self.reason = block, field, reason

    def __repr__(self) -> str:
        return f"InvalidBlock({self.reason}: {self.block!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """One line in hypothesis's printed examples."""
        printer.text(repr(self))


def _good() -> dict[str, Any]:
    return {"block_id": "blk-1", "action": "open", "priority": 1,
            "instructions": [{"venue": "spot", "token": "ETH", "side": "buy", "amount": 1.0}]}


def _with(field: str, value: Any) -> dict[str, Any]:
    b = _good()
    b[field] = value
    return b


def _instr(key: str, value: Any) -> dict[str, Any]:
    b = _good()
    b["instructions"] = [{**b["instructions"][0], key: value}]
    return b


def _without(field: str) -> dict[str, Any]:
    b = _good()
    del b[field]
    return b


def invalid_blocks() -> st.SearchStrategy[InvalidBlock]:
    """Every kind of malformed block the validator must refuse, labelled with the reason
    and the field (the path the error names)."""
    bad = st.one_of(
        st.sampled_from(["block_id", "action", "priority", "instructions"]).map(
            lambda f: InvalidBlock(_without(f), f, f"missing {f}")),
        st.sampled_from(["", "a b", "x" * 65, "é", "a/b", "a\n"]).map(
            lambda v: InvalidBlock(_with("block_id", v), "block_id", "malformed block_id")),
        st.sampled_from([17, None, 1.5, ["b"]]).map(
            lambda v: InvalidBlock(_with("block_id", v), "block_id", "block_id not a string")),
        st.sampled_from(["", "   ", 17, None, ["buy"]]).map(
            lambda v: InvalidBlock(_with("action", v), "action", "action not a non-empty string")),
        st.sampled_from(["high", "1", 1.0, True, False, None]).map(
            lambda v: InvalidBlock(_with("priority", v), "priority", "priority not an int")),
        st.sampled_from([[], (), {}, "spot", None, 3]).map(
            lambda v: InvalidBlock(_with("instructions", v), "instructions",
                                   "instructions not a non-empty list")),
        st.sampled_from([["spot"], [None], [3]]).map(
            lambda v: InvalidBlock(_with("instructions", v), "instructions[0]",
                                   "instruction not a mapping")),
        st.sampled_from([float("nan"), float("inf"), -float("inf"), "1.5", True, None]).map(
            lambda v: InvalidBlock(_instr("amount", v), "instructions[0].amount",
                                   "amount not a finite number")),
        st.sampled_from(["", 7, None]).map(
            lambda v: InvalidBlock(_instr("token", v), "instructions[0].token",
                                   "token not a non-empty string")),
        st.just(InvalidBlock({**_good(), "metadata": {}}, "metadata", "unexpected field")),
        st.sampled_from(["block", 7, None, ["x"]]).map(
            lambda v: InvalidBlock(v, "", "not a mapping")),
    )
    return bad


#: The reconciliation behaviours the kit draws: each one differs from a prompt success.
_RECONCILIATION_PLANS: tuple[tuple[str, float], ...] = (
    ("never", 0.0), ("fail", 0.0), ("ok", 0.3), ("ok", 1.5), ("ok", 2.5))


def _plan(faults: list[tuple[str, Any]]) -> FaultPlan:
    return FaultPlan(venue=tuple(f for k, f in faults if k == "venue"),
                     reconciliation=tuple(f for k, f in faults if k == "reconciliation"),
                     positions=tuple(f for k, f in faults if k == "positions"))


def fault_plans(*, max_faults: int = 3,
                venue_faults: tuple[str, ...] = VENUE_FAULTS) -> st.SearchStrategy[FaultPlan]:
    """Which calls fail and how: 1 to ``max_faults`` faults, each a venue fault for the next
    route call (one of ``venue_faults``), a reconciliation behaviour for the next hand-off
    (never, failed, or slow: 0.15 to 1.25 reconciliation timeouts), or a position update
    that raises. Never an empty plan, so a shrunk example holds no step that does nothing;
    plans shrink towards a single venue fault."""
    unknown = set(venue_faults) - set(VENUE_FAULTS)
    if unknown or not venue_faults:
        raise ValueError(f"venue_faults must be a non-empty subset of VENUE_FAULTS; unknown: "
                         f"{sorted(unknown)}")
    if max_faults < 1:
        raise ValueError(f"max_faults must be at least 1, got {max_faults}")
    fault = st.one_of(
        st.tuples(st.just("venue"), st.sampled_from(venue_faults)),
        st.tuples(st.just("reconciliation"), st.sampled_from(_RECONCILIATION_PLANS)),
        st.tuples(st.just("positions"), st.just(True)))
    return st.lists(fault, min_size=1, max_size=max_faults).map(_plan)

