"""The lifecycle table as plain data (and as JSON), and what changed between two versions of it."""

from __future__ import annotations

import json
from typing import Any

import attrs

# ------------------------------------------------------------------------ the table as data

TABLE_FORMAT = "fsm_exec.lifecycle/1"


class LifecycleFileError(ValueError):
    """A lifecycle file (``block_lifecycle.json``) that cannot be read as a table."""


@attrs.frozen
class TableState:
    """A state of a lifecycle table: ``kind`` is ``initial``, ``terminal`` or empty."""

    name: str
    meaning: str
    kind: str = ""


@attrs.frozen
class TableEdge:
    """A row of a lifecycle table."""

    source: str
    trigger: str
    dest: str
    meaning: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.trigger, self.dest)

    def words(self) -> str:
        return f"{self.source} --{self.trigger}--> {self.dest}"


@attrs.frozen
class LifecycleTable:
    """A block lifecycle as plain data: its states (in order) and its edges (in order)."""

    states: tuple[TableState, ...]
    edges: tuple[TableEdge, ...]

    def state(self, name: str) -> TableState | None:
        return next((s for s in self.states if s.name == name), None)

    def to_json(self) -> str:
        """The table as the JSON of ``diagrams/block_lifecycle.json`` (stable, sorted)."""
        doc = {"format": TABLE_FORMAT,
               "states": [attrs.asdict(s) for s in self.states],
               "transitions": [attrs.asdict(e) for e in self.edges]}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "lifecycle file") -> LifecycleTable:
        """Read :meth:`to_json`'s output; :class:`LifecycleFileError` names what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LifecycleFileError(f"{where}: not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(doc, dict) or doc.get("format") != TABLE_FORMAT:
            raise LifecycleFileError(f"{where}: not a lifecycle table (format "
                                     f"{TABLE_FORMAT!r} expected)")
        try:
            states = tuple(TableState(str(s["name"]), str(s["meaning"]), str(s.get("kind", "")))
                           for s in doc["states"])
            edges = tuple(TableEdge(str(e["source"]), str(e["trigger"]), str(e["dest"]),
                                    str(e["meaning"])) for e in doc["transitions"])
        except (KeyError, TypeError) as exc:
            raise LifecycleFileError(f"{where}: a state or transition lacks {exc}") from None
        return cls(states, edges)


def current_table() -> LifecycleTable:
    """The code's lifecycle table (:mod:`fsm_exec.core.lifecycle`) as data."""
    from fsm_exec.core.lifecycle import INITIAL_STATE, STATE_MEANINGS, TERMINAL_STATES, TRANSITIONS

    def kind(s: Any) -> str:
        return "initial" if s == INITIAL_STATE else "terminal" if s in TERMINAL_STATES else ""

    return LifecycleTable(
        states=tuple(TableState(str(s), m, kind(s)) for s, m in STATE_MEANINGS.items()),
        edges=tuple(TableEdge(str(e.source), str(e.trigger), str(e.dest), e.meaning)
                    for e in TRANSITIONS))


# ------------------------------------------------------------------------ what changed


@attrs.frozen
class TableDiff:
    """What changed from ``old`` to ``new``: states and edges added and removed, and the
    meanings (and kinds) that changed, each as a sentence."""

    added_states: tuple[str, ...]
    removed_states: tuple[str, ...]
    added_edges: tuple[TableEdge, ...]
    removed_edges: tuple[TableEdge, ...]
    changed: tuple[str, ...]  # meanings and kinds, in words
    changed_states: frozenset[str] = frozenset()
    changed_edges: frozenset[tuple[str, str, str]] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.added_states or self.removed_states or self.added_edges
                    or self.removed_edges or self.changed)

    def lines(self) -> list[str]:
        """The changes in words, one a line."""
        out = [f"added state {s}" for s in self.added_states]
        out += [f"removed state {s}" for s in self.removed_states]
        out += [f"added edge {e.words()}" for e in self.added_edges]
        out += [f"removed edge {e.words()}" for e in self.removed_edges]
        return out + list(self.changed)


def diff_tables(old: LifecycleTable, new: LifecycleTable) -> TableDiff:
    """Compare two tables: edges are the same when source, trigger and dest are."""
    old_s = {s.name: s for s in old.states}
    new_s = {s.name: s for s in new.states}
    old_e = {e.key: e for e in old.edges}
    new_e = {e.key: e for e in new.edges}
    changed: list[str] = []
    changed_states: set[str] = set()
    changed_edges: set[tuple[str, str, str]] = set()
    for name, s in new_s.items():
        was = old_s.get(name)
        if was is None:
            continue
        if was.kind != s.kind:
            changed.append(f"state {name} was {was.kind or 'neither initial nor terminal'}, "
                           f"is {s.kind or 'neither initial nor terminal'}")
            changed_states.add(name)
        if was.meaning != s.meaning:
            changed.append(f"meaning of state {name}: {was.meaning!r} -> {s.meaning!r}")
            changed_states.add(name)
    for key, e in new_e.items():
        was_e = old_e.get(key)
        if was_e is not None and was_e.meaning != e.meaning:
            changed.append(f"meaning of edge {e.words()}: {was_e.meaning!r} -> {e.meaning!r}")
            changed_edges.add(key)
    return TableDiff(
        added_states=tuple(n for n in new_s if n not in old_s),
        removed_states=tuple(n for n in old_s if n not in new_s),
        added_edges=tuple(e for k, e in new_e.items() if k not in old_e),
        removed_edges=tuple(e for k, e in old_e.items() if k not in new_e),
        changed=tuple(changed), changed_states=frozenset(changed_states),
        changed_edges=frozenset(changed_edges))
