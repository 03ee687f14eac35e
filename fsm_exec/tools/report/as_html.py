"""The report as one self-contained HTML page: no script, nothing fetched when viewed."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.tools.diagram import (
    DiagramModel,
    GraphvizMissingError,
    render_graphviz,
    to_dot,
)

if TYPE_CHECKING:  # pragma: no cover
    pass
from fsm_exec.tools.report.axes import shortened, timeline_rows
from fsm_exec.tools.report.build import (
    SECTIONS,
    TABLE_NOTES,
    TIMELINE_ROWS,
    RunReport,
    block_rows,
    halt_rows,
    odd_waits_note,
    total_definition,
)
from fsm_exec.tools.report.charts import (
    attempts_svg,
    halts_svg,
    overview_svg,
    require_matplotlib,
    timeline_svg,
    waits_svg,
)

# ------------------------------------------------------------------------ HTML

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; max-width: 1100px; padding: 1.2em 1.6em 3em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.sources { color: #666; margin-top: 0; }
.banner { background: #fdecea; border-left: 5px solid #c62828; padding: .6em 1em; }
.ok { color: #2e7d32; }
.note { color: #555; font-style: italic; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td.num { white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; min-width: 9em; }
.defn { color: #555; font-size: .9em; margin-top: -.2em; }
th { background: #f4f6fb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
svg { max-width: 100%; height: auto; }
.pair { display: flex; gap: 2em; flex-wrap: wrap; }
.pair > div { flex: 1 1 420px; }
code { font-size: .95em; }
"""


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _e(x: object) -> str:
    # Control characters shown as their escapes first: a bidi override (U+202E) would
    # otherwise reverse the rest of a cell, an ESC show as a box.
    return html.escape(terminal_text(x), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]],
           numeric: Sequence[int] = (), wrap: Sequence[int] = ()) -> str:
    """A table; ``numeric`` columns align right, ``wrap`` columns (ids, messages quoting
    them) may break anywhere, so a 64-character id never makes the page wider."""
    out = ["<table>"]
    if any(head):
        out += ["<thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead>"]
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{_e(c)}</td>' if i in numeric else
            f'<td class="wrap">{_e(c)}</td>' if i in wrap else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _section(sid: str, body: Sequence[str]) -> str:
    heading = dict(SECTIONS)[sid]
    return f'<section id="{sid}">\n<h2>{_e(heading)}</h2>\n' + "\n".join(body) + "\n</section>"


def _overlay_svg(model: DiagramModel) -> str | None:
    try:
        svg = render_graphviz(to_dot(model), "svg").decode()
    except GraphvizMissingError:
        return None
    return svg[svg.index("<svg"):]


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _defn(sid: str) -> str:
    """The one line under a table that says what its numbers mean."""
    return f'<p class="defn">{_e(TABLE_NOTES[sid])}</p>'



def to_html(report: RunReport) -> str:
    """One self-contained HTML page: no script, nothing fetched at view time.

    Raises :class:`ReportDependencyError` without matplotlib.
    """
    from fsm_exec._version import __version__

    require_matplotlib()
    head = [f"<h1>{_e(report.title)}</h1>",
            f'<p class="sources">from {_e(", ".join(report.sources))}</p>']
    if report.problem:
        head.append(f'<p class="banner" id="problem"><strong>This journal breaks the '
                    f"lifecycle:</strong> {_e(report.problem)}. Everything below is drawn "
                    "from the records before that line.</p>")
    if report.in_doubt:
        head.append(f'<p class="banner">Block <code>{_e(report.in_doubt)}</code> is still in '
                    "flight when the journal ends: after a crash it is in doubt until "
                    "recovery settles it.</p>")
    parts = []
    parts.append(_section("totals", [
        _table(("", "", "what it counts"),
               [(name, value, total_definition(name)) for name, value in report.totals],
               numeric=(1,))]))
    overlay = _overlay_svg(report.overlay)
    body = [f"<p>{_e(report.overlay.caption or '')}.</p>"]
    body.append(overlay if overlay else _note(
        "Graphviz's dot is not installed, so the diagram is left out; the table says the "
        "same."))
    body.append(_table(("source", "trigger", "dest", "count", "meaning"),
                       [(e.source, e.trigger, e.dest, e.count, e.meaning)
                        for e in report.overlay.edges], numeric=(3,)))
    body.append(_defn("lifecycle"))
    parts.append(_section("lifecycle", body))
    overview = overview_svg(report)
    timeline = timeline_svg(report)
    rows = timeline_rows(report.blocks, TIMELINE_ROWS)
    long_ids = shortened([b.block_id for b in rows])
    parts.append(_section("timeline", [
        _note("Every block: when it started, in the run's time, and how long it took to "
              "where it is now, by how it ended.") if overview else "",
        overview or "",
        _note(f"Time in each state, {len(rows)} of {len(report.blocks)} blocks: failed, "
              "cancelled and in-flight ones first (marked where they ended, also when they "
              "took no time; hatched: still there when the journal ends), then the slowest; "
              "every block is in the table at the end. Time between records by their "
              "timestamps, or the manager's own measure of a reconciliation wait.")
        if timeline else
        _note("No time passed in any state between records (in a backtest every record of a "
              "block carries the same timestamp)."),
        timeline or "",
        _table(("label", "block"), long_ids, wrap=(1,)) + _defn("labels")
        if timeline and long_ids else ""]))
    attempts = attempts_svg(report)
    parts.append(_section("attempts", [attempts + _defn("attempts") if attempts
                                       else _note("No block moved.")]))
    waits = waits_svg(report)
    odd = odd_waits_note(report)
    parts.append(_section("waits", [waits + _defn("waits") if waits else _note(
        odd or "No reconciliation wait was measured (backtest reconciliation is "
        "instant).")]))
    parts.append(_section("failures", [_table(
        ("block", "timestamp", "code", "message", "resolution", "attempts"),
        [(f.block_id or "", f.timestamp, f.error_code, f.message, f.resolution,
          "" if f.attempts is None else f.attempts) for f in report.failures],
        numeric=(5,), wrap=(0, 3)) + _defn("failures")
        if report.failures else _note("No block failed and no error was logged.")]))
    halts = halts_svg(report)
    parts.append(_section("halts", [
        halts or _note("No block finished at a readable timestamp."),
        _table(("halted at", "reason", "block", "resumed at", "halted for"),
               halt_rows(report), wrap=(1, 2)) + _defn("halts") if report.halts
        else _note("The manager never halted.")]))
    parts.append(_section("blocks", [
        f"<details><summary>{_e(plural(len(report.blocks), 'block', 'blocks'))}, failed "
        "and in flight first, then the slowest</summary>",
        _table(("block", "where it is", "attempts", "seconds", "path"), block_rows(report),
               numeric=(2, 3), wrap=(0,)), _defn("blocks"), "</details>"]))
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report.title)}</title>", f"<style>{_CSS}</style>", "</head>",
        "<body>", "<header>", *head, "</header>", "<main>", *parts, "</main>",
        f"<footer><p class=\"note\">fsm-exec {_e(__version__)} report</p></footer>",
        "</body>", "</html>", ""])
