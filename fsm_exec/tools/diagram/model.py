"""The diagram model derived from a table, and overlays of what a journal shows a run did."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.journal.reader import JournalRecord
from fsm_exec.tools.diagram.table import (
    LifecycleTable,
    current_table,
    diff_tables,
)

# ------------------------------------------------------------------------ the model

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


@attrs.frozen
class DiagramState:
    """A state as drawn. Overlays: ``ended`` is how many blocks ended here (terminal
    states), ``left`` how many were still here when the journal ends, ``share`` the fraction
    of the run's blocks that ``ended`` is. ``change`` is set by a diff."""

    name: str
    meaning: str
    initial: bool = False
    terminal: bool = False
    ended: int | None = None
    left: int = 0
    share: float = 0.0
    highlighted: bool = False
    current: bool = False  # a block overlay: where the block is, or ended
    change: str | None = None
    #: A user lifecycle's state kind (``before_route``, ``in_flight``, ``settling``,
    #: ``terminal``): drawn as a shape and colour per kind, with a legend. ``None`` (the
    #: code's own table) draws as before.
    state_kind: str | None = None


@attrs.frozen
class DiagramEdge:
    """An edge as drawn: ``count`` is how often it was taken (run overlays); ``steps``
    numbers a block's moves along it and ``attempts`` gives each move's attempt (block
    overlays); ``change`` is set by a diff."""

    source: str
    dest: str
    trigger: str
    meaning: str
    count: int | None = None
    steps: tuple[int, ...] = ()
    attempts: tuple[int, ...] = ()
    change: str | None = None
    #: What else the label says: guards in brackets, ``(external)``, ``(poll)``.
    detail: str = ""
    #: An edge the lifecycle implies (a wait's timeout): drawn dashed.
    implied: bool = False

    @property
    def highlighted(self) -> bool:
        return bool(self.steps)


@attrs.frozen
class PathStep:
    """One move of a block (block overlays): the table under the diagram."""

    n: int
    timestamp: str
    source: str
    trigger: str
    dest: str
    attempt: int
    detail: str


@attrs.frozen
class DiagramModel:
    """What a renderer draws. ``kind``: ``lifecycle``, ``run``, ``block`` or ``diff``;
    ``notes`` are listed under the diagram (a diff's changes, in words)."""

    title: str
    states: tuple[DiagramState, ...]
    edges: tuple[DiagramEdge, ...]
    caption: str | None = None
    kind: str = "lifecycle"
    notes: tuple[str, ...] = ()
    path: tuple[PathStep, ...] = ()

    @property
    def counted(self) -> bool:
        return any(e.count is not None for e in self.edges)

    @property
    def max_count(self) -> int:
        return max((e.count or 0 for e in self.edges), default=0)


def lifecycle_model(title: str = "Block lifecycle",
                    table: LifecycleTable | None = None) -> DiagramModel:
    """A lifecycle table (the code's by default) as a diagram model."""
    table = table or current_table()
    return DiagramModel(
        title=title,
        states=tuple(DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal")
                     for s in table.states),
        edges=tuple(DiagramEdge(e.source, e.dest, e.trigger, e.meaning) for e in table.edges))


class JournalOffTableError(ValueError):
    """A journal's transition is not an edge of the lifecycle table (``where`` is
    ``file:line``)."""

    def __init__(self, where: str, move: str) -> None:
        self.where = where
        super().__init__(terminal_text(f"{where}: transition {move} is not an edge of the "
                                       "lifecycle"))  # what it quotes: shown, never sent


def journal_table(records: list[JournalRecord], component: str) -> LifecycleTable:
    """The lifecycle ``records`` were written under (:mod:`.journal_table`)."""
    from fsm_exec.tools.diagram.journal_table import journal_table as read

    return read(records, component)


def _moves(records: Iterable[JournalRecord], component: str,
           table: LifecycleTable) -> list[JournalRecord]:
    known = {e.key for e in table.edges}
    out = []
    for r in records:
        if r.component != component or r.event_type != "block_transition":
            continue
        d = r.data
        key = (d.get("source"), d.get("trigger"), d.get("dest"))
        if key not in known:
            raise JournalOffTableError(f"{r.path}:{r.line}",
                                       f"{key[0]} --{key[1]}--> {key[2]} of block "
                                       f"{d.get('block_id')!r}")
        out.append(r)
    return out


def overlay_events(records: Iterable[JournalRecord], *, component: str = "ExecutionManager",
                   title: str = "Block lifecycle: what the run did",
                   table: LifecycleTable | None = None) -> DiagramModel:
    """The lifecycle with how often each edge was taken and how many blocks ended where.

    Raises :class:`JournalOffTableError` if a transition is not an edge of the table.
    """
    records = list(records)
    table = table or journal_table(records, component)  # the lifecycle it was written under
    moves = [r.data for r in _moves(records, component, table)]
    taken = Counter((m["source"], m["trigger"], m["dest"]) for m in moves)
    last: dict[Any, str] = {}
    for m in moves:
        last[m["block_id"]] = m["dest"]
    where = Counter(last.values())
    blocks = len(last)
    base = lifecycle_model(title, table)
    states = []
    for s in base.states:
        n = where[s.name]
        states.append(attrs.evolve(s, ended=n if s.terminal else None,
                                   left=0 if s.terminal else n,
                                   share=n / blocks if blocks else 0.0))
    in_flight = sum(s.left for s in states)
    caption = (f"{len(moves)} transitions of {blocks} block{'s' * (blocks != 1)}"
               if moves else "no block moved in this journal")
    if in_flight:
        caption += f", {in_flight} still in flight when the journal ends"
    return DiagramModel(
        title=title, states=tuple(states),
        edges=tuple(attrs.evolve(e, count=taken[(e.source, e.trigger, e.dest)])
                    for e in base.edges),
        caption=caption, kind="run")


def _detail(d: Mapping[str, Any]) -> str:
    parts = []
    for key in ("error_code", "reason", "resolved_by"):
        if d.get(key) not in (None, ""):
            parts.append(f"{key} {d[key]}")
    if isinstance(d.get("waited_s"), int | float):
        parts.append(f"waited {d['waited_s']:g} s")
    return "; ".join(parts)


def overlay_block(records: Iterable[JournalRecord], block_id: str, *,
                  component: str = "ExecutionManager",
                  table: LifecycleTable | None = None) -> DiagramModel:
    """One block's path through the lifecycle: its edges highlighted and numbered, the
    attempts and details of each move in :attr:`DiagramModel.path`.

    Raises ``LookupError`` if the journal has no transition of that block, and
    :class:`JournalOffTableError` if a transition is not an edge of the table.
    """
    records = list(records)
    table = table or journal_table(records, component)  # the lifecycle it was written under
    moves = [r for r in _moves(records, component, table) if r.data["block_id"] == block_id]
    if not moves:
        raise LookupError(f"no transition of block {block_id!r} in the journal")
    steps: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    path = []
    for n, r in enumerate(moves, start=1):
        m = r.data
        attempt = m.get("attempt")
        a = attempt if isinstance(attempt, int) else 0
        steps[(m["source"], m["trigger"], m["dest"])].append((n, a))
        path.append(PathStep(n, r.timestamp, m["source"], m["trigger"], m["dest"], a,
                             _detail(m)))
    visited = {m.data["source"] for m in moves} | {m.data["dest"] for m in moves}
    last = moves[-1].data["dest"]
    base = lifecycle_model(f"Block {block_id}", table)
    terminal = {s.name for s in table.states if s.kind == "terminal"}
    where = "ended" if last in terminal else "is still"
    return DiagramModel(
        title=base.title,
        states=tuple(attrs.evolve(s, highlighted=s.name in visited, current=s.name == last)
                     for s in base.states),
        edges=tuple(attrs.evolve(e, steps=tuple(n for n, _ in steps[key]),
                                 attempts=tuple(a for _, a in steps[key]))
                    for e in base.edges for key in [(e.source, e.trigger, e.dest)]),
        caption=f"{where} in {last} after {len(moves)} transitions",
        kind="block", path=tuple(path))


def diff_model(old: LifecycleTable, new: LifecycleTable | None = None, *,
               since: str = "the older table") -> DiagramModel:
    """The ``new`` lifecycle (the code's by default) drawn against ``old``: added states
    and edges in one style, removed ones in another, changed meanings listed as notes."""
    new = new or current_table()
    d = diff_tables(old, new)
    added_s, removed_s = set(d.added_states), set(d.removed_states)
    added_e = {e.key for e in d.added_edges}
    states = [DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal",
                           change=ADDED if s.name in added_s else
                           CHANGED if s.name in d.changed_states else None)
              for s in new.states]
    states += [DiagramState(s.name, s.meaning, s.kind == "initial", s.kind == "terminal",
                            change=REMOVED) for s in old.states if s.name in removed_s]
    edges = [DiagramEdge(e.source, e.dest, e.trigger, e.meaning,
                         change=ADDED if e.key in added_e else
                         CHANGED if e.key in d.changed_edges else None) for e in new.edges]
    edges += [DiagramEdge(e.source, e.dest, e.trigger, e.meaning, change=REMOVED)
              for e in d.removed_edges]
    n = len(d.lines())
    caption = (f"{n} change{'s' * (n != 1)} since {since}" if n
               else f"no change since {since}")
    return DiagramModel(title="Block lifecycle: what changed", states=tuple(states),
                        edges=tuple(edges), caption=caption, kind="diff",
                        notes=tuple(d.lines()))
