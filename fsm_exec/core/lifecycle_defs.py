"""The pieces of a lifecycle as data: state kinds, guards, waits, states, transitions, and the
violations and error of a refused lifecycle (:mod:`fsm_exec.core.lifecycles` puts them together)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fsm_exec.core.errors import ComponentError
from fsm_exec.core.lifecycle_guards import GuardContext, guard_holds

#: The ``version`` of the lifecycle file format this module reads and writes.
FORMAT_VERSION = 1


class StateKind(enum.StrEnum):
    """What a state means for the venue, and so what the manager may do with a block in it."""

    BEFORE_ROUTE = "before_route"  # nothing sent: may be cancelled, may wait
    IN_FLIGHT = "in_flight"        # the venue may hold the order (routing, retrying)
    SETTLING = "settling"          # sent, outcome being settled (pending_reconciliation)
    TERMINAL = "terminal"          # success, failed, cancelled


@attrs.frozen
class RuleViolation:
    """One broken safety rule: its stable id, where (a state, or ``source --trigger-->
    dest``), and why, in words."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


class LifecycleError(ComponentError, ValueError):
    """A lifecycle was refused: ``violations`` lists every broken rule (a file that cannot
    be read or does not have the file format's shape is one violation, rule ``file`` or
    ``schema``); ``source`` names the file, when there is one. Nothing was defined."""

    def __init__(self, violations: Sequence[RuleViolation], source: str | None = None,
                 name: str | None = None) -> None:
        self.violations = tuple(violations)
        self.source = source
        n = len(self.violations)
        who = f"lifecycle {name!r}" if name else "lifecycle"
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__("EXEC-019", f"{head}{who} refused, {n} broken rule"
                                     f"{'s' * (n != 1)}:\n{lines}")


def _args(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@attrs.frozen
class Guard:
    """One condition on a transition (see :mod:`fsm_exec.core.lifecycle_guards` for the
    kinds and their arguments); all of a transition's guards must hold."""

    kind: str
    args: Mapping[str, Any] = attrs.field(factory=dict, converter=_args, hash=False)

    def holds(self, ctx: GuardContext) -> bool:
        """Whether the guard holds for the block in ``ctx``: pure for every kind but
        ``call``. Raises ``GuardInputError`` when the block lacks what the guard reads."""
        return guard_holds(self.kind, self.args, ctx)

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: dict(self.args)}

    def words(self) -> str:
        """The guard in a few words, for diagrams: ``notional_above 100000``."""
        shown = ", ".join(", ".join(v) if isinstance(v, list | tuple) else str(v)
                          for v in self.args.values())
        return f"{self.kind} {shown}".strip()


@attrs.frozen
class Wait:
    """A state where the block waits (the queue behind it waits too). ``timeout_to``: the
    target on timeout of a before-route state (e.g. ``cancelled``); ``None`` for in-flight and
    settling states, whose timeout leaves the block in doubt (``failed``; live: halt)."""

    timeout_seconds: float | None = None
    timeout_to: str | None = None


def _names(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class StateDef:
    """A state: its kind, its meaning, whether the block waits there, and the hooks called
    (``func(ctx: GuardContext)``, named by import path) when a block enters it."""

    name: str
    kind: StateKind
    meaning: str
    wait: Wait | None = None
    on_enter: tuple[str, ...] = attrs.field(default=(), converter=_names)


def _guards(value: Sequence[Guard]) -> tuple[Guard, ...]:
    return tuple(value)


@attrs.frozen
class TransitionDef:
    """A transition: ``trigger`` moves a block from ``source`` to ``dest`` when every guard
    holds. ``external``: ``em.trigger`` / ``fsm-exec trigger`` may fire it; ``poll``: fired
    by the manager when its guards hold, checked on each ``update_state``."""

    trigger: str
    source: str
    dest: str
    meaning: str
    guards: tuple[Guard, ...] = attrs.field(default=(), converter=_guards)
    external: bool = False
    poll: bool = False

    def words(self) -> str:
        return f"{self.source} --{self.trigger}--> {self.dest}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.trigger, self.dest)


#: The trigger a waiting state's timeout fires (implied by its :class:`Wait`).
TIMEOUT_TRIGGER = "timeout"

#: The kind of each default state.
DEFAULT_KINDS: Mapping[str, StateKind] = {
    "queued": StateKind.BEFORE_ROUTE,
    "routing": StateKind.IN_FLIGHT,
    "pending_reconciliation": StateKind.SETTLING,
    "retrying": StateKind.IN_FLIGHT,
    "success": StateKind.TERMINAL,
    "failed": StateKind.TERMINAL,
    "cancelled": StateKind.TERMINAL,
}
