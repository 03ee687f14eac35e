"""Hooks and call guards for the user-lifecycle tests (named by import path ``lchooks:...``):
what they were called with is kept in :data:`CALLS`; :data:`RAISE` names the hooks that
raise, :data:`CONFIRMED` the blocks whose transaction is confirmed."""

from __future__ import annotations

from typing import Any

CALLS: list[tuple[str, str, str]] = []  # (hook, block_id, state)
RAISE: set[str] = set()
CONFIRMED: set[str] = set()
#: The blocks three_seconds_on has said are confirmed.
HELD: set[str] = set()


def reset() -> None:
    CALLS.clear()
    RAISE.clear()
    CONFIRMED.clear()
    HELD.clear()


def _called(name: str, ctx: Any) -> None:
    CALLS.append((name, ctx.block["block_id"], ctx.state))
    if name in RAISE:
        raise RuntimeError(f"{name} failed on purpose")


def request_approval(ctx: Any) -> None:
    _called("request_approval", ctx)


def watch_chain(ctx: Any) -> None:
    _called("watch_chain", ctx)


def confirmed(ctx: Any) -> bool:
    _called("confirmed", ctx)
    return ctx.block["block_id"] in CONFIRMED


def three_seconds_on(ctx: Any) -> bool:
    """Confirmed once the block has waited three seconds in its state (deterministic on the
    strategy's timestamps: three updates of the crash points' clock)."""
    held = (ctx.now - ctx.entered_at).total_seconds() >= 3
    if held:
        HELD.add(ctx.block["block_id"])
    return bool(held)
