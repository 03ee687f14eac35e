"""The lifecycle table a journal was written under, for the overlays and the report: the
lifecycles its checkpoints hold (:mod:`fsm_exec.journal.lifecycle_record`), as the runtime
runs them (the implied moves included: a wait's timeout, a guard or hook's ``fail``); the
code's own table for a journal of the default lifecycle (every journal before lifecycles
were data)."""

from __future__ import annotations

from collections.abc import Iterable

from fsm_exec.core.running import RunTable
from fsm_exec.journal.codec import CHECKPOINT
from fsm_exec.journal.lifecycle_record import (
    DEFINITION,
    LifecycleMismatch,
    table_of_checkpoint,
)
from fsm_exec.journal.reader import JournalRecord
from fsm_exec.tools.diagram.table import LifecycleTable, TableEdge, TableState, current_table

#: What an implied move means, when the lifecycle does not say.
IMPLIED_MEANINGS = {
    "timeout": "The wait timed out.",
    "fail": "A guard could not be evaluated or a hook raised (implied by the runtime).",
}


def run_table(table: RunTable) -> LifecycleTable:
    """A runnable lifecycle as a plain table: its states (kinds: initial, terminal) and every
    move the runtime may make, the implied ones included."""
    lc = table.lifecycle
    if lc is None:
        return current_table()
    meanings = {t.key: t.meaning for t in lc.all_transitions()}
    states = tuple(TableState(s.name, s.meaning,
                              "initial" if s.name == lc.initial else
                              "terminal" if s.name in table.terminal else "")
                   for s in lc.states)
    edges: dict[tuple[str, str, str], TableEdge] = {}
    for e in table.edges:
        key = (e.source, e.trigger, e.dest)
        edges.setdefault(key, TableEdge(e.source, e.trigger, e.dest, meanings.get(
            key, IMPLIED_MEANINGS.get(e.trigger, ""))))
    return LifecycleTable(states, tuple(edges.values()))


def journal_table(records: Iterable[JournalRecord],
                  component: str = "ExecutionManager") -> LifecycleTable:
    """The table of the lifecycles ``records``' checkpoints hold (several, merged in order,
    when a recovery carried the journal over to another lifecycle); the code's own table
    when they hold none, or one that cannot be read (the fold says why, elsewhere)."""
    tables: dict[str, RunTable] = {}
    for r in records:
        if (r.component == component and r.event_type == CHECKPOINT
                and DEFINITION in r.data and r.data.get("lifecycle") not in tables):
            try:
                tables[str(r.data.get("lifecycle"))] = table_of_checkpoint(r.data)
            except LifecycleMismatch:
                continue
    if not tables:
        return current_table()
    merged = [run_table(t) for t in tables.values()]
    if len(merged) == 1:
        return merged[0]
    states: dict[str, TableState] = {}
    edges: dict[tuple[str, str, str], TableEdge] = {}
    for t in merged:
        for s in t.states:
            states.setdefault(s.name, s)
        for e in t.edges:
            edges.setdefault(e.key, e)
    return LifecycleTable(tuple(states.values()), tuple(edges.values()))
