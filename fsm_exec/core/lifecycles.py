"""Lifecycles as data: a desk's own states, triggers, guards and hooks, checked when defined.

:class:`Lifecycle` is a block lifecycle as plain, frozen data. :meth:`Lifecycle.default` is
the code's own table (:mod:`fsm_exec.core.lifecycle`); a user lifecycle extends it, in a
YAML or JSON file (:meth:`Lifecycle.load`, the shape of ``fsm_exec/data/lifecycle.schema.json``)
or in Python. Every lifecycle is checked against the safety rules of
:mod:`fsm_exec.core.lifecycle_rules` (:meth:`Lifecycle.violations`); a refused one raises
:class:`LifecycleError` naming each broken rule and the state or transition that breaks it.

The module is pure: it reads a file in :meth:`Lifecycle.load`, and imports the hooks a
lifecycle names only when asked to (``resolve=True``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from fsm_exec.core.lifecycle import DERIVED, FOUND_EXECUTED_MEANING
from fsm_exec.core.lifecycle_defs import (
    DEFAULT_KINDS,
    FORMAT_VERSION,
    TIMEOUT_TRIGGER,
    Guard,
    LifecycleError,
    RuleViolation,
    StateDef,
    StateKind,
    TransitionDef,
    Wait,
)
from fsm_exec.core.lifecycle_file import (
    Parts,
    from_document,
    json_schema,
    read_document,
    to_document,
)
from fsm_exec.core.lifecycle_guards import GuardContext, GuardInputError
from fsm_exec.core.lifecycle_rules import check

__all__ = [
    "DEFAULT_KINDS", "FORMAT_VERSION", "TIMEOUT_TRIGGER", "Guard", "GuardContext",
    "GuardInputError", "Lifecycle", "LifecycleError", "RuleViolation", "StateDef", "StateKind",
    "TransitionDef", "Wait",
]


def _states(value: Sequence[StateDef]) -> tuple[StateDef, ...]:
    return tuple(value)


def _transitions(value: Sequence[TransitionDef]) -> tuple[TransitionDef, ...]:
    return tuple(value)



@attrs.frozen
class Lifecycle:
    """A block lifecycle as data: its states and its transitions, in order (the same
    ``(source, trigger)`` with guards first, the unguarded default last: ``transitions``
    tries them in order)."""

    name: str
    states: tuple[StateDef, ...] = attrs.field(converter=_states)
    transitions: tuple[TransitionDef, ...] = attrs.field(converter=_transitions)

    # ---------------------------------------------------------------- building

    @classmethod
    def default(cls) -> Lifecycle:
        """The code's own lifecycle (:mod:`fsm_exec.core.lifecycle`), as data."""
        return _default()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Lifecycle:
        """A lifecycle from the file format's shape (``extends: default`` adds to the
        default). Raises :class:`LifecycleError` for a shape that is not the format's, or
        a lifecycle that breaks a rule; ``source`` names the file in the error."""
        return cls._build(from_document(data, source)).validate(source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, resolve: bool = True) -> Lifecycle:
        """Read a lifecycle file (``.yaml``/``.yml``, which needs PyYAML: the
        ``fsm-exec[lifecycles]`` extra; or ``.json``), check its shape, then its rules;
        with ``resolve`` (the default), every hook and ``call`` guard must import.
        Raises :class:`LifecycleError` naming the file."""
        where = str(path)
        return cls._build(from_document(read_document(Path(path)), where)).validate(
            resolve=resolve, source=where)

    @classmethod
    def _build(cls, parts: Parts) -> Lifecycle:
        if parts.extends == "default":
            base = _default()
            return cls(parts.name, *parts.merge(base.states, base.transitions))
        return cls(parts.name, tuple(parts.states), tuple(parts.transitions))

    @staticmethod
    def json_schema() -> dict[str, Any]:
        """The JSON Schema of the file format (``fsm_exec/data/lifecycle.schema.json``): point
        an editor at it (``# yaml-language-server: $schema=...``) for completion and checks.
        :meth:`load` checks the same shape itself (no schema library needed)."""
        return json_schema()

    def to_dict(self) -> dict[str, Any]:
        """The lifecycle in the file format, whole (no ``extends``), canonical and JSON-able:
        :meth:`from_dict` reads it back equal."""
        return to_document(self.name, self.states, self.transitions)

    # ---------------------------------------------------------------- reading

    @property
    def hash(self) -> str:
        """A short stable fingerprint of what the lifecycle does (16 hex digits): the sha256
        of the compact JSON list of its transitions, each ``[source, trigger, dest]`` (with
        its guards and flags, when it has any), followed, when any state differs from the
        default's, by the states that do. Meanings and the name are left out. The default's
        is ``core.lifecycle.TABLE_HASH``."""
        return _fingerprint(self)

    @property
    def initial(self) -> str:
        """The start state: ``queued``."""
        return "queued"

    @property
    def terminal(self) -> frozenset[str]:
        """The terminal states' names."""
        return frozenset(s.name for s in self.states if s.kind is StateKind.TERMINAL)

    def state(self, name: str) -> StateDef:
        """The state called ``name``; ``KeyError`` names the known ones if there is none."""
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(f"lifecycle {self.name!r} has no state {name!r} (its states: "
                       f"{', '.join(s.name for s in self.states)})")

    def transitions_from(self, state: str) -> tuple[TransitionDef, ...]:
        """The transitions leaving ``state``, in order (timeouts not included)."""
        return tuple(t for t in self.transitions if t.source == state)

    def timeout_transition(self, state: str) -> TransitionDef | None:
        """The transition a waiting state's timeout implies (trigger ``timeout``): to its
        ``timeout_to`` (before-route states) or to ``failed`` (in-flight and settling states:
        in doubt); ``None`` when the state has no timeout."""
        s = self.state(state)
        if s.wait is None or s.wait.timeout_seconds is None:
            return None
        if s.kind is StateKind.BEFORE_ROUTE:
            if s.wait.timeout_to is None:
                return None
            dest, why = s.wait.timeout_to, "the wait timed out"
        else:
            dest, why = "failed", "the wait timed out: the outcome is in doubt"
        return TransitionDef(TIMEOUT_TRIGGER, state, dest, f"{why} (timeout_seconds).")

    def derived_transitions(self) -> tuple[TransitionDef, ...]:
        """The transitions the lifecycle does not declare but has, derived from those it
        does (:data:`~fsm_exec.core.lifecycle.DERIVED`): ``retrying --found_executed-->``,
        one for each ``routing --executed-->``, to the same state with the same guards, in
        the same order. A block whose reply was lost and that the venue is found to have
        executed (``query_execution``, a late reply) takes the way ``executed`` takes."""
        out = []
        for (source, trigger), (of_source, of_trigger) in DERIVED.items():
            out += [TransitionDef(trigger, source, t.dest, FOUND_EXECUTED_MEANING, t.guards)
                    for t in self.transitions if (t.source, t.trigger) == (of_source,
                                                                            of_trigger)]
        return tuple(out)

    def all_transitions(self) -> tuple[TransitionDef, ...]:
        """The transitions, then the derived ones (:meth:`derived_transitions`), then the
        timeouts the waiting states imply."""
        implied = []
        for s in self.states:
            t = self.timeout_transition(s.name) if s.wait is not None else None
            if t is not None:
                implied.append(t)
        return (*self.transitions, *self.derived_transitions(), *implied)

    def violations(self, *, resolve: bool = False) -> list[RuleViolation]:
        """Every safety rule this lifecycle breaks (empty: it is valid); with ``resolve``,
        also every hook or ``call`` guard whose import path does not import."""
        return check(self, resolve=resolve)

    def validate(self, *, resolve: bool = False, source: str | None = None) -> Lifecycle:
        """``self`` if it breaks no rule; else raise :class:`LifecycleError` listing them."""
        broken = self.violations(resolve=resolve)
        if broken:
            raise LifecycleError(broken, source, self.name)
        return self


# -------------------------------------------------------------------- the default


@functools.cache
def _default() -> Lifecycle:
    from fsm_exec.core.lifecycle import STATE_MEANINGS, TRANSITIONS

    # The derived transitions (found_executed) are the lifecycle's own, not declared: a
    # lifecycle extending the default that redirects executed takes them along.
    return Lifecycle(
        name="default",
        states=tuple(StateDef(str(s), DEFAULT_KINDS[str(s)], m)
                     for s, m in STATE_MEANINGS.items()),
        transitions=tuple(TransitionDef(str(e.trigger), str(e.source), str(e.dest), e.meaning)
                          for e in TRANSITIONS
                          if (str(e.source), str(e.trigger)) not in DERIVED))


def _fingerprint(lc: Lifecycle) -> str:
    payload: list[Any] = []
    for t in lc.transitions:
        row: list[Any] = [t.source, t.trigger, t.dest]
        extra: dict[str, Any] = {}
        if t.guards:
            extra["guards"] = [g.to_dict() for g in t.guards]
        if t.external:
            extra["external"] = True
        if t.poll:
            extra["poll"] = True
        if extra:
            row.append(extra)
        payload.append(row)
    states: dict[str, Any] = {}
    for s in lc.states:
        if DEFAULT_KINDS.get(s.name) is s.kind and s.wait is None and not s.on_enter:
            continue
        doc: dict[str, Any] = {"kind": str(s.kind)}
        if s.wait is not None:
            doc["wait"] = attrs.asdict(s.wait)
        if s.on_enter:
            doc["on_enter"] = list(s.on_enter)
        states[s.name] = doc
    if states:
        payload.append({"states": states})
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
