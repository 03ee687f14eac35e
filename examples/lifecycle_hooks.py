"""The hooks and guards the example lifecycles (``examples/lifecycles/*.yaml``) name by import
path, e.g. ``examples.lifecycle_hooks:request_approval``: plain functions called with the
block's :class:`fsm_exec.GuardContext`.

A desk writes its own (``mydesk.approvals:request``): a hook returns nothing (one that
raises fails the block: in doubt once it was sent), a guard returns a bool. Here they only
keep what they were asked in module-level state, which the example scripts and tests set.
"""

from __future__ import annotations

from fsm_exec import GuardContext

#: The blocks a second person was asked to approve, in order (four_eyes.yaml).
APPROVAL_REQUESTS: list[str] = []

#: Confirmations seen so far, by block_id, and how many a transaction needs
#: (chain_confirmations.yaml).
CONFIRMATIONS: dict[str, int] = {}
REQUIRED_CONFIRMATIONS = 12
#: Blocks whose transaction was dropped or re-orged.
DROPPED: set[str] = set()


def request_approval(ctx: GuardContext) -> None:
    """Ask a second person to approve the block (here: remember that we asked)."""
    APPROVAL_REQUESTS.append(str(ctx.block["block_id"]))


class TransactionDroppedError(RuntimeError):
    """The block's transaction left the chain: whether it executed is in doubt."""


def confirmed(ctx: GuardContext) -> bool:
    """True once the block's transaction has :data:`REQUIRED_CONFIRMATIONS`; raises when it
    was dropped or re-orged (the block is then in doubt)."""
    block_id = str(ctx.block["block_id"])
    if block_id in DROPPED:
        raise TransactionDroppedError(f"the transaction of block {block_id!r} was dropped or "
                                      "re-orged")
    return CONFIRMATIONS.get(block_id, 0) >= REQUIRED_CONFIRMATIONS
