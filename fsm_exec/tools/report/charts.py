"""The report's plots, drawn by matplotlib as inline SVG (imported only when called)."""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
from fsm_exec.boundary.escape import terminal_text
from fsm_exec.tools.report.axes import (
    bar_limits,
    block_points,
    clock_label,
    clock_ticks,
    count_axis,
    outcome,
    short_labels,
    time_limits,
    timeline_rows,
    wait_bins,
)
from fsm_exec.tools.report.build import (
    PLOT_YEARS,
    TIMELINE_ROWS,
    ReportDependencyError,
    RunReport,
    attempt_buckets,
    odd_waits_note,
    parse_ts,
    plottable,
)

# ------------------------------------------------------------------------ plots (HTML)


def require_matplotlib() -> None:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ReportDependencyError(
            "the HTML report draws its plots with matplotlib: pip install "
            "'fsm-exec[report]' (or use --format markdown)") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _drawn(chart: Callable[[RunReport], str | None]) -> Callable[[RunReport], str | None]:
    """``chart`` drawn with text from a journal as text: never as mathtext (``$...$``) or
    through TeX (texts read the settings when they are created)."""
    @functools.wraps(chart)
    def draw(report: RunReport) -> str | None:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False,
                                    "svg.fonttype": "none", "svg.hashsalt": "fsm-exec"}):
            return chart(report)
    return draw


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _left_out(ax: Any, text: str) -> None:
    """Say on the chart what it leaves out (and why)."""
    ax.set_title(text, fontsize=8, color="#c62828", loc="left")


def _colours(states: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(states)}


#: How each tagged end is marked on the timeline (matplotlib marker, colour).
_ENDS = {"failed": ("X", "#c62828"), "cancelled": ("s", "#757575"),
         "in flight": (">", "#ef6c00")}


def _counts(ax: Any, top: int) -> None:
    """A count axis (y): whole numbers from 0, room above ``top``."""
    high, ticks = count_axis(top)
    ax.set_ylim(0, high)
    ax.set_yticks(ticks)


def timeline_figure(report: RunReport) -> Figure | None:
    """Time each block spent in each state: failed, cancelled and in-flight blocks first
    (their end marked, also when they took no time), then the slowest; ``None`` when no
    time passed in any state (a backtest)."""
    if not any(b.seconds > 0 for b in report.blocks):
        return None
    rows = timeline_rows(report.blocks, TIMELINE_ROWS)
    colours = _colours(report.states)
    fig = _figure(9.5, 0.9 + 0.3 * max(len(rows), 2))
    ax = fig.add_subplot()
    used: dict[str, Any] = {}
    longest = max(b.seconds for b in rows)
    for y, b in enumerate(rows):
        for v in b.visits:
            if v.seconds <= 0:
                continue
            bar = ax.barh(y, v.seconds, left=v.start, height=0.7,
                          color=colours.get(v.state, "grey"), hatch="//" if v.open else None,
                          edgecolor="white", linewidth=0.5)
            used.setdefault(v.state, bar)
        tag = outcome(b)
        if tag is not None:
            marker, colour = _ENDS[tag]
            (mark,) = ax.plot([b.seconds], [y], linestyle="none", marker=marker, color=colour,
                              markersize=7, clip_on=False)
            used.setdefault(tag, mark)
    labels = short_labels([b.block_id for b in rows])
    ax.set_yticks(range(len(rows)),
                  [terminal_text(label) + (f" ({tag})" if (tag := outcome(b)) else "")
                   for label, b in zip(labels, rows, strict=True)], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
    ax.set_xlim(0, longest * 1.04 if longest > 0 else 1.0)
    ax.set_xlabel("seconds since the block was queued")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(used.values(), used.keys(), loc="outside lower center", fontsize=8,
               frameon=False, ncols=min(len(used), 6))
    return fig


def attempts_figure(report: RunReport) -> Figure | None:
    """How many blocks took how many attempts (one bar per count, ranges past 5)."""
    bars_of, ranges = attempt_buckets(report.blocks)
    if not bars_of:
        return None
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    xs = list(range(len(bars_of)))
    bars = ax.bar(xs, [n for _, n in bars_of], width=0.6, color="#4292c6")
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(xs, [label for label, _ in bars_of],
                  fontsize=8 if ranges else None, rotation=30 if ranges else 0)
    ax.set_xlim(*bar_limits(len(bars_of)))
    _counts(ax, max(n for _, n in bars_of))
    if ranges:
        _left_out(ax, "attempts over 5 grouped in ranges")
    ax.set_xlabel("attempts (highest attempt number)")
    ax.set_ylabel("blocks")
    return fig


def waits_figure(report: RunReport) -> Figure | None:
    """Reconciliation waits the manager measured, stacked by what ended each; the x axis
    from 0 to just past the longest."""
    if not report.waits:
        return None
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(what for _, what in report.waits))
    palette = ["#4292c6", "#e6550d", "#756bb1", "#31a354"]
    data = [[s for s, what in report.waits if what == g] for g in groups]
    edges = wait_bins([s for s, _ in report.waits])
    ax.hist(data, bins=edges, stacked=True,
            color=[palette[i % 4] for i in range(len(groups))],
            label=[f"ended by {terminal_text(g)}" for g in groups])
    ax.set_xlim(edges[0], edges[-1])
    import numpy as np

    totals, _ = np.histogram([s for s, _ in report.waits], bins=edges)
    _counts(ax, int(totals.max()))
    odd = odd_waits_note(report)
    if odd:
        _left_out(ax, odd)
    ax.set_xlabel("seconds waited for reconciliation")
    ax.set_ylabel("waits")
    ax.legend(fontsize=8, frameon=False)
    return fig


def _time_axis(ax: Any, moments: Sequence[dt.datetime]) -> None:
    """An x axis of the run's own time: its range with a little room, whole times of day
    as ticks (milliseconds for a short run), the date in the label."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter

    low, high = time_limits(moments)
    ax.set_xlim(mdates.date2num(low), mdates.date2num(high))  # type: ignore[no-untyped-call]
    fmt, cut = clock_ticks((high - low).total_seconds())

    def tick(value: float, pos: int | None = None) -> str:
        text = str(mdates.num2date(value, tz=dt.UTC).strftime(fmt))  # type: ignore[no-untyped-call]
        return text[:len(text) - cut]

    ax.xaxis.set_major_locator(
        mdates.AutoDateLocator(minticks=3, maxticks=7))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(FuncFormatter(tick))
    ax.set_xlabel(clock_label(min(moments), max(moments)))


#: How each end is drawn on the overview (marker, colour, size).
_POINTS = {"success": ("o", "#2171b5", 9), "failed": ("X", "#c62828", 36),
           "cancelled": ("s", "#757575", 25), "in flight": (">", "#ef6c00", 36)}


def overview_figure(report: RunReport) -> Figure | None:
    """Every block: when it started (the run's time) and how long it took, by how it
    ended; drawn as pixels inside the SVG past a few thousand points."""
    points = block_points(report.blocks)
    if not points:
        return None
    import matplotlib.dates as mdates

    fig = _figure(9.5, 3.0)
    ax = fig.add_subplot()
    many = sum(len(v) for v in points.values()) > 2000
    longest = 0.0
    for end in sorted(points, key=lambda e: (e != "success", e)):  # outcomes drawn on top
        marker, colour, size = _POINTS.get(end, ("D", "#756bb1", 25))
        xs = [float(mdates.date2num(t)) for t, _ in points[end]]  # type: ignore[no-untyped-call]
        ys = [s for _, s in points[end]]
        longest = max(longest, *ys)
        ax.scatter(xs, ys, s=size, marker=marker, color=colour, linewidths=0,
                   rasterized=many, label=f"{terminal_text(end)} ({len(xs)})", clip_on=False)
    _time_axis(ax, [t for v in points.values() for t, _ in v])
    ax.set_ylim(0, longest * 1.08 if longest > 0 else 1.0)
    ax.set_ylabel("seconds it took")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def halts_figure(report: RunReport) -> Figure | None:
    """Blocks finished over the run's own time, one line per end state, with the halts
    shaded; ``None`` when no block finished at a readable timestamp."""
    stamped = [(t, s) for ts, s in report.finished for t in [parse_ts(ts)] if t]
    done = [(t, s) for t, s in stamped if plottable(t)]
    halts = [h for h in report.halts if plottable(parse_ts(h.start))]
    left_out = len(stamped) - len(done) + len(report.halts) - len(halts)
    if not done:
        return None
    import matplotlib.dates as mdates

    def x(t: dt.datetime) -> float:
        return float(mdates.date2num(t))  # type: ignore[no-untyped-call]

    moments = [t for t, _ in done] + [t for h in halts for t in (
        parse_ts(h.start), plottable(parse_ts(h.end)) if h.end else None) if t]
    high = time_limits(moments)[1]
    fig = _figure(9.5, 3.0)
    ax = fig.add_subplot()
    colours = _colours(report.states)
    top = 0
    for state in dict.fromkeys(s for _, s in done):
        times = [x(t) for t, s in done if s == state]
        counts = list(range(1, len(times) + 1))
        top = max(top, len(times))
        # On to the end of the axis: a state whose blocks all ended at once is a line, too.
        ax.step([*times, x(high)], [*counts, counts[-1]], where="post",
                color=colours[state], marker="o" if len(times) <= 20 else None,
                markevery=list(range(len(times))), markersize=3,
                label=f"ended in {terminal_text(state)}")
    for n, h in enumerate(halts):
        a = parse_ts(h.start)
        if a is None:  # pragma: no cover - plottable above
            continue
        b = plottable(parse_ts(h.end)) if h.end else done[-1][0]
        ax.axvline(x(a), color="#c62828", linewidth=1.2, label="halted" if n == 0 else None)
        if b and b > a:
            ax.axvspan(x(a), x(b), color="#c62828", alpha=0.12)
        if h.end and b:
            ax.axvline(x(b), color="#2e7d32", linewidth=1.2, linestyle="--",
                       label="resumed" if n == 0 else None)
    _time_axis(ax, moments)
    _counts(ax, top)
    if left_out:
        _left_out(ax, f"{left_out} not drawn: timestamps outside the years "
                      f"{PLOT_YEARS[0]}-{PLOT_YEARS[1]}")
    ax.set_ylabel("blocks finished")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return fig


def _svg_of(figure: Callable[[RunReport], Figure | None]) -> Callable[[RunReport], str | None]:
    """The chart as inline SVG text (``None`` when it has nothing to draw)."""
    @_drawn
    @functools.wraps(figure)
    def svg(report: RunReport) -> str | None:
        fig = figure(report)
        return None if fig is None else _svg(fig)
    return svg


overview_svg = _svg_of(overview_figure)
timeline_svg = _svg_of(timeline_figure)
attempts_svg = _svg_of(attempts_figure)
waits_svg = _svg_of(waits_figure)
halts_svg = _svg_of(halts_figure)
