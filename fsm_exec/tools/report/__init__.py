"""A run report: what a journal says happened, for a reviewer or an operator.

:func:`build_report` reads a journal into a :class:`RunReport` (plain data); two thin
renderers draw it: :func:`to_html`, one self-contained page whose plots matplotlib draws as
inline SVG (the optional ``report`` extra, imported only here and only when called), and
:func:`to_markdown`, the same with Mermaid (a ``gantt`` timeline, ``xychart-beta`` bars) for
a pull-request comment.

Durations come from the records: the time between a block's records (the caller's
timestamps), except where the manager measured a wait itself (``waited_s`` on the move out of
``pending_reconciliation``), which is used instead. Within one ``update_state`` call every
record carries the same timestamp, so a backtest shows no time in any state.
"""

from __future__ import annotations

from fsm_exec.tools.report.as_html import to_html
from fsm_exec.tools.report.as_markdown import to_markdown
from fsm_exec.tools.report.build import (
    SECTIONS,
    TIMELINE_ROWS,
    BlockSummary,
    Failure,
    Halt,
    ReportDependencyError,
    RunReport,
    Visit,
    build_report,
    parse_ts,
    read_checked,
)

__all__ = [
    "BlockSummary", "Failure", "Halt", "ReportDependencyError", "RunReport", "SECTIONS",
    "TIMELINE_ROWS", "Visit", "build_report", "parse_ts", "read_checked", "to_html",
    "to_markdown",
]
