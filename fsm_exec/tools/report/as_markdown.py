"""The report as Markdown with Mermaid (a gantt timeline, xychart bars), for a pull-request
comment."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from fsm_exec.boundary.escape import markdown_text, terminal_text
from fsm_exec.tools.diagram import (
    to_markdown_table,
    to_mermaid,
)

if TYPE_CHECKING:  # pragma: no cover
    pass
from fsm_exec.tools.report.axes import (
    clock_axis_format,
    gantt_axis_format,
    mermaid_count_axis,
    outcome,
    short_labels,
    shortened,
    timeline_rows,
    wait_buckets,
)
from fsm_exec.tools.report.build import (
    PLOT_YEARS,
    SECTIONS,
    TABLE_NOTES,
    TIMELINE_ROWS,
    RunReport,
    attempt_buckets,
    block_rows,
    halt_rows,
    odd_waits_note,
    parse_ts,
    plottable,
    total_definition,
)

# ------------------------------------------------------------------------ Markdown


def _mermaid_name(text: str) -> str:
    # Gantt and xychart text: letters, digits and a few marks; anything else (Mermaid's
    # colon, hash, semicolon, quotes; a backtick that would end the fence; control
    # characters, shown as their escapes first) becomes "-".
    return re.sub(r"[^A-Za-z0-9 ._,()+/=-]", "-", terminal_text(text))


_md = markdown_text


class _Escaped(str):
    """A cell already written as Markdown (by :func:`markdown_text`): not escaped again."""


def _md_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(c if isinstance(c, _Escaped) else _md(c) for c in row) + " |"
            for row in rows]
    return [*out, ""]


def _gantt_config(sections: Sequence[str]) -> list[str]:
    # Room on the left for the longest section name (Mermaid's default is 75 px).
    width = 40 + 8 * max((len(s) for s in sections), default=8)
    return ["---", "config:", "  gantt:", f"    leftPadding: {width}", "---"]


def _gantt_timeline(report: RunReport) -> list[str]:
    rows = timeline_rows(report.blocks, TIMELINE_ROWS)
    labels = [label + (f" ({tag})" if (tag := outcome(b)) else "")
              for label, b in zip(short_labels([b.block_id for b in rows]), rows, strict=True)]
    span = max((b.seconds for b in rows), default=0.0)
    out = ["```mermaid", *_gantt_config(labels), "gantt",
           "    title Time in each state: failed, cancelled and in flight first, then slowest",
           "    dateFormat x", f"    axisFormat {gantt_axis_format(span)}",
           "    todayMarker off"]
    for label, b in zip(labels, rows, strict=True):
        out.append(f"    section {_mermaid_name(label)}")
        for v in b.visits:
            if v.seconds <= 0:
                continue
            tag = "crit, " if b.failed else "active, " if v.open else ""
            start = round(v.start * 1000)
            out.append(f"    {_mermaid_name(v.state)} :{tag}{start}, "
                       f"{max(start + 1, round((v.start + v.seconds) * 1000))}")
        if outcome(b) is not None or b.seconds <= 0:  # where it ended, even at no time
            out.append(f"    {_mermaid_name(b.final)} :milestone, "
                       f"{'crit, ' if b.failed else ''}{round(b.seconds * 1000)}, 0ms")
    return [*out, "```", ""]


def _gantt_halts(report: RunReport) -> list[str]:
    done = [t for ts, _ in report.finished for t in [plottable(parse_ts(ts))] if t]
    moments = done + [t for h in report.halts for t in (
        plottable(parse_ts(h.start)), plottable(parse_ts(h.end)) if h.end else None) if t]
    span = (max(moments) - min(moments)).total_seconds() if moments else 0.0
    out = ["```mermaid", *_gantt_config(["run", "manager"]), "gantt",
           "    title Halts and resumes (UTC)", "    dateFormat x",
           f"    axisFormat {clock_axis_format(span)}", "    todayMarker off",
           "    section run"]
    if done:
        first, last = min(done), max(done)
        out.append(f"    blocks finishing :{_ms(first)}, {max(_ms(last), _ms(first) + 1)}")
    out.append("    section manager")
    for h in report.halts:
        a = plottable(parse_ts(h.start))
        if a is None:
            continue
        end = plottable(parse_ts(h.end)) if h.end else (max(done) if done else a)
        name = _mermaid_name(f"halted {h.reason}")
        if end is None or end <= a:
            out.append(f"    {name} :milestone, crit, {_ms(a)}, 0ms")
        else:
            out.append(f"    {name} :crit, {_ms(a)}, {_ms(end)}")
    out += ["```", ""]
    stamped = sum(1 for ts, _ in report.finished if parse_ts(ts)) + sum(
        1 for h in report.halts if parse_ts(h.start))
    drawn = len(done) + sum(1 for h in report.halts if plottable(parse_ts(h.start)))
    if stamped > drawn:
        out += [f"{stamped - drawn} not drawn: timestamps outside the years "
                f"{PLOT_YEARS[0]}-{PLOT_YEARS[1]}.", ""]
    return out


def _ms(t: dt.datetime) -> int:
    return round(t.timestamp() * 1000)


def _bars(title: str, xlabel: str, ylabel: str, xs: Sequence[str],
          ys: Sequence[int]) -> list[str]:
    high = mermaid_count_axis(max(ys, default=0))  # from 0, never around one value
    return ["```mermaid", "xychart-beta", f'    title "{_mermaid_name(title)}"',
            f'    x-axis "{xlabel}" [{", ".join(xs)}]', f'    y-axis "{ylabel}" 0 --> {high}',
            f"    bar [{', '.join(str(y) for y in ys)}]", "```", ""]


def to_markdown(report: RunReport) -> str:
    """The report as Markdown with Mermaid, for a pull-request comment."""
    h = dict(SECTIONS)
    out = [f"# {_md(report.title)}", "", f"From {_md(', '.join(report.sources))}.", ""]
    if report.problem:
        out += [f"> **This journal breaks the lifecycle:** {_md(report.problem)}. Everything "
                "below is drawn from the records before that line.", ""]
    if report.in_doubt:
        out += [f"> Block {_md(report.in_doubt, code=True)} is still in flight when the "
                "journal ends.", ""]
    out += [f"## {h['totals']}", "", *_md_table(
        ("", "", "what it counts"),
        [(name, value, total_definition(name)) for name, value in report.totals])]
    out += [f"## {h['lifecycle']}", "", f"{_md(report.overlay.caption)}.", "", "```mermaid",
            to_mermaid(report.overlay).rstrip("\n"), "```", "",
            to_markdown_table(report.overlay), _md(TABLE_NOTES["lifecycle"]), ""]
    out += [f"## {h['timeline']}", ""]
    if any(b.seconds > 0 for b in report.blocks):
        out += _gantt_timeline(report)
        rows = timeline_rows(report.blocks, TIMELINE_ROWS)
        out += [f"{len(rows)} of {len(report.blocks)} blocks: every failed, cancelled and "
                "in-flight one first (a milestone where it ended, also when it took no "
                "time), then the slowest; every block is in the table at the end.", ""]
        long_ids = shortened([b.block_id for b in rows])
        if long_ids:
            out += [*_md_table(("label", "block"), long_ids), _md(TABLE_NOTES["labels"]), ""]
    else:
        out += ["No time passed in any state between records (in a backtest every record of "
                "a block carries the same timestamp).", ""]
    out += [f"## {h['attempts']}", ""]
    bars, ranges = attempt_buckets(report.blocks)
    if bars:
        out += _bars("Attempts per block", "attempts", "blocks",
                     [f'"{label}"' for label, _ in bars], [n for _, n in bars])
        if ranges:
            out += ["Attempts over 5 are grouped in ranges.", ""]
        out += [*_md_table(("attempts", "blocks"), bars), _md(TABLE_NOTES["attempts"]), ""]
    else:
        out += ["No block moved.", ""]
    out += [f"## {h['waits']}", ""]
    if report.waits:
        xs_w, ys_w = wait_buckets([w for w, _ in report.waits])
        out += _bars("Reconciliation waits", "seconds waited (bucket start)", "waits",
                     [f'"{x}"' for x in xs_w], ys_w)
        if report.odd_waits:
            out += [str(odd_waits_note(report)), ""]
        ended = Counter(what for _, what in report.waits)
        out += [*_md_table(("ended by", "waits", "longest (s)"), [
            (what, n, f"{max(w for w, x in report.waits if x == what):g}")
            for what, n in sorted(ended.items())]), _md(TABLE_NOTES["waits"]), ""]
    else:
        out += [odd_waits_note(report) or "No reconciliation wait was measured (backtest "
                "reconciliation is instant).", ""]
    out += [f"## {h['failures']}", ""]
    if report.failures:
        out += _md_table(("block", "timestamp", "code", "message", "resolution", "attempts"),
                         [(_Escaped(_md(f.block_id, code=True)) if f.block_id else "", f.timestamp,
                           f.error_code,
                           f.message, f.resolution, "" if f.attempts is None else f.attempts)
                          for f in report.failures])
        out += [_md(TABLE_NOTES["failures"]), ""]
    else:
        out += ["No block failed and no error was logged.", ""]
    out += [f"## {h['halts']}", ""]
    if report.halts:
        out += _gantt_halts(report)
        out += _md_table(("halted at", "reason", "block", "resumed at", "halted for"),
                         halt_rows(report))
        out += [_md(TABLE_NOTES["halts"]), ""]
    else:
        out += ["The manager never halted.", ""]
    out += [f"## {h['blocks']}", "", "<details><summary>"
            f"{len(report.blocks)} block{'s' * (len(report.blocks) != 1)}, failed and in "
            "flight first, then the slowest</summary>", "",
            *_md_table(("block", "where it is", "attempts", "seconds", "path"),
                       block_rows(report)), _md(TABLE_NOTES["blocks"]), "", "</details>", ""]
    return "\n".join(out)
