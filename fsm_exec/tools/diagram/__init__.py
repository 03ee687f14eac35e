"""Diagrams of the block lifecycle: the table as plain data, a small diagram model derived from
it, thin renderers (Mermaid, DOT, Markdown; SVG/PNG through Graphviz's ``dot``), overlays of
what a run did, and the difference between two versions of the table.

Nothing here names a state or an edge: everything is derived from a :class:`LifecycleTable`,
by default the code's own (:func:`current_table`).
"""

from __future__ import annotations

from fsm_exec.tools.diagram.graphviz import (
    GraphvizMissingError,
    dot_digest,
    render_graphviz,
    svg_source_digest,
)
from fsm_exec.tools.diagram.lifecycles import (
    lifecycle_changes,
    lifecycle_diagram,
    lifecycle_diff,
    lifecycle_table,
)
from fsm_exec.tools.diagram.model import (
    ADDED,
    CHANGED,
    REMOVED,
    DiagramEdge,
    DiagramModel,
    DiagramState,
    JournalOffTableError,
    PathStep,
    diff_model,
    lifecycle_model,
    overlay_block,
    overlay_events,
)
from fsm_exec.tools.diagram.render import (
    ADDED_INK,
    CHANGED_INK,
    FAINT,
    FAINT_TEXT,
    IN_FLIGHT,
    INK,
    KINDS,
    MERMAID_CONFIG,
    PATH,
    PATH_FILL,
    REMOVED_INK,
    SHADES,
    drawing_order,
    edge_width,
    shade,
    to_dot,
    to_markdown,
    to_markdown_table,
    to_mermaid,
)
from fsm_exec.tools.diagram.table import (
    TABLE_FORMAT,
    LifecycleFileError,
    LifecycleTable,
    TableDiff,
    TableEdge,
    TableState,
    current_table,
    diff_tables,
)

__all__ = [
    "ADDED", "ADDED_INK", "CHANGED", "CHANGED_INK", "DiagramEdge", "DiagramModel",
    "DiagramState", "FAINT", "FAINT_TEXT", "GraphvizMissingError", "INK", "IN_FLIGHT",
    "JournalOffTableError", "KINDS", "LifecycleFileError", "LifecycleTable", "MERMAID_CONFIG",
    "PATH",
    "PATH_FILL", "PathStep", "REMOVED", "REMOVED_INK", "SHADES", "TABLE_FORMAT", "TableDiff",
    "TableEdge", "TableState", "current_table", "diff_model", "diff_tables", "dot_digest",
    "drawing_order", "edge_width", "lifecycle_changes", "lifecycle_diagram",
    "lifecycle_diff", "lifecycle_model", "lifecycle_table", "overlay_block", "overlay_events",
    "render_graphviz", "shade", "svg_source_digest", "to_dot", "to_markdown",
    "to_markdown_table", "to_mermaid",
]
