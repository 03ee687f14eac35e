"""The report's charts as data, without a browser: axis limits and ticks, labels, which
blocks the timeline shows, one meaning per counter (issue 24 item 5)."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest

from fsm_exec.tools.report import RunReport, build_report, to_html, to_markdown
from fsm_exec.tools.report.axes import (
    LABEL_CHARS,
    bar_limits,
    block_points,
    clock_ticks,
    count_axis,
    gantt_axis_format,
    mermaid_count_axis,
    nice_step,
    short_label,
    short_labels,
    time_limits,
    timeline_rows,
    wait_bins,
    wait_buckets,
)
from fsm_exec.tools.report.build import TABLE_NOTES, TIMELINE_ROWS, total_definition

from report_journals import block_id, fast_dir, write_journal

charts = pytest.importorskip("fsm_exec.tools.report.charts")
pytest.importorskip("matplotlib")

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def reports() -> dict[str, RunReport]:
    """Reports of one block, of 64-character ids (failed and cancelled blocks among them),
    and of a thousand blocks."""
    with fast_dir() as root:
        return {
            "one": build_report(write_journal(root / "one", 1)),
            "ids64": build_report(write_journal(root / "ids64", 40, id_width=64,
                                                failing_every=6, cancelled=3)),
            "many": build_report(write_journal(root / "many", 1000, failing_every=97,
                                               cancelled=4)),
        }


def tick_labels(axis: Any) -> list[str]:
    axis.figure.canvas.draw()  # tick labels are made when drawn
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


# ------------------------------------------------------------------------ axes.py


def test_count_axis_is_whole_numbers_from_zero_with_room() -> None:
    """One value gets 0..2 in steps of 1, never a window around it; big counts get round
    steps and no more than six ticks."""
    assert count_axis(1) == (2, [0, 1, 2])
    assert count_axis(0) == (2, [0, 1, 2])
    assert count_axis(4) == (5, [0, 1, 2, 3, 4, 5])
    for top in (7, 10, 99, 151, 10_000, 123_456):
        high, ticks = count_axis(top)
        assert high > top and ticks[0] == 0 and ticks[-1] == high and len(ticks) <= 6
        assert len({b - a for a, b in itertools.pairwise(ticks)}) == 1
    assert mermaid_count_axis(1) == 10 and mermaid_count_axis(151) % 10 == 0


def test_one_bar_is_centred_in_room_for_three() -> None:
    """A single bar's axis is as wide as three bars' and centred on it."""
    low, high = bar_limits(1)
    assert (low + high) / 2 == pytest.approx(0) and high - low == pytest.approx(3.2)
    assert bar_limits(5) == (-0.6, 4.6)


def test_waits_start_at_zero_also_when_all_alike() -> None:
    """Waits all of 0.75 s are binned from 0 to just past 0.75, not 0.25..1.25."""
    edges = wait_bins([0.75, 0.75])
    assert edges[0] == 0 and 0.75 < edges[-1] < 0.8
    assert wait_bins([])[-1] == 1.0
    labels, counts = wait_buckets([0.75])
    assert labels == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"]
    assert counts == [0, 0, 0, 0, 0, 0, 0, 1]
    assert nice_step(2.55, 8) == 0.5 and nice_step(0, 8) == 1.0


def test_one_instant_gets_a_minute_around_it() -> None:
    """Every block finished at one timestamp: half a minute each side, not years; a span
    gets 3% of itself each side."""
    assert time_limits([T0, T0]) == (T0 - dt.timedelta(seconds=30),
                                     T0 + dt.timedelta(seconds=30))
    low, high = time_limits([T0, T0 + dt.timedelta(hours=1)])
    assert high - low == dt.timedelta(hours=1, seconds=216)


@pytest.mark.parametrize(("span", "fmt"), [
    (0.75, "%S.%L s"), (9.9, "%S.%L s"), (10, "%M:%S"), (3599, "%M:%S"), (7200, "%H:%M:%S")])
def test_the_gantt_axis_format_follows_the_span(span: float, fmt: str) -> None:
    """Sub-10-second timelines show milliseconds (no row of '00:00' ticks)."""
    assert gantt_axis_format(span) == fmt


def test_clock_ticks_follow_the_span() -> None:
    """Milliseconds under 10 s, seconds under 2 h, then minutes with the date, then days."""
    assert clock_ticks(1) == ("%H:%M:%S.%f", 3)
    assert clock_ticks(600) == ("%H:%M:%S", 0)
    assert clock_ticks(86400) == ("%m-%d %H:%M", 0)
    assert clock_ticks(10 * 86400) == ("%Y-%m-%d", 0)


def test_long_ids_are_shortened_in_the_middle_and_stay_distinct() -> None:
    """64-character ids become labels of LABEL_CHARS that keep both ends, all different;
    short ids are untouched."""
    ids = [block_id(i, 64) for i in range(12)] + ["short"]
    labels = short_labels(ids)
    assert all(len(label) <= LABEL_CHARS for label in labels)
    assert len(set(labels)) == len(labels)
    assert labels[-1] == "short"
    assert short_label("a" * 30 + "-tail1").endswith("-tail1")
    alike = ["x" * 40 + "same-end", "y" + "x" * 39 + "same-end", "x" * 40 + "same-end2"]
    assert len(set(short_labels(alike))) == 3


def test_the_timeline_shows_failed_cancelled_and_in_flight_blocks_first(
        reports: dict[str, RunReport]) -> None:
    """Failed and cancelled blocks lead the timeline even at no time; with more of them
    than fit, a third of the rows are failed, a sixth cancelled, the rest the slowest."""
    rows = timeline_rows(reports["ids64"].blocks, TIMELINE_ROWS)
    tags = [("failed" if b.failed else b.final) for b in rows]
    n_failed, n_cancelled = tags.count("failed"), tags.count("cancelled")
    assert tags[:n_failed + n_cancelled] == ["failed"] * n_failed + ["cancelled"] * n_cancelled
    assert (n_failed, n_cancelled) == (7, 3)
    assert any(b.seconds == 0 for b in rows[:n_failed])
    many = timeline_rows(reports["many"].blocks, TIMELINE_ROWS)
    assert len(many) == TIMELINE_ROWS
    assert sum(b.failed for b in many) == TIMELINE_ROWS // 3
    assert sum(b.final == "cancelled" for b in many) == 4
    slowest = max(b.seconds for b in reports["many"].blocks if b.final == "success")
    assert many[-1].seconds == pytest.approx(slowest, abs=1e-6)  # sums of visits' floats


def test_the_overview_has_every_block(reports: dict[str, RunReport]) -> None:
    """block_points holds every block, by how it ended."""
    for report in reports.values():
        points = block_points(report.blocks)
        assert sum(len(v) for v in points.values()) == len(report.blocks)
    assert {k: len(v) for k, v in block_points(reports["ids64"].blocks).items()} == {
        "success": 33, "failed": 7, "cancelled": 3}


# ------------------------------------------------------------------------ the figures


def test_one_block_charts_have_sensible_axes(reports: dict[str, RunReport]) -> None:
    """One block: attempts from 0 to 2 in whole numbers with the bar centred; the waits
    axis from 0; the finished axis 0..2 and time ticks all different, around its instant."""
    report = reports["one"]
    attempts = charts.attempts_figure(report).axes[0]
    assert attempts.get_ylim() == (0, 2) and list(attempts.get_yticks()) == [0, 1, 2]
    assert sum(attempts.get_xlim()) == pytest.approx(0)
    waits = charts.waits_figure(report).axes[0]
    assert waits.get_xlim()[0] == 0 and waits.get_ylim() == (0, 2)
    halts = charts.halts_figure(report).axes[0]
    assert halts.get_ylim() == (0, 2)
    labels = tick_labels(halts.xaxis)
    assert len(labels) >= 3 and len(set(labels)) == len(labels)
    assert all(label.count(":") == 2 for label in labels)  # times of day, not dates
    assert halts.get_xlabel().startswith("time (UTC), 20")


def test_the_timeline_labels_are_short_and_tagged(reports: dict[str, RunReport]) -> None:
    """64-character ids are shortened on the timeline, each failed or cancelled row says
    so, and the figure marks where those blocks ended."""
    fig = charts.timeline_figure(reports["ids64"])
    ax = fig.axes[0]
    labels = tick_labels(ax.yaxis)
    assert len(labels) == TIMELINE_ROWS
    assert all(len(label.split(" (")[0]) <= LABEL_CHARS for label in labels)
    assert sum(label.endswith("(failed)") for label in labels) == 7
    assert sum(label.endswith("(cancelled)") for label in labels) == 3
    marks = [line for line in ax.get_lines() if line.get_marker() in ("X", "s")]
    assert len(marks) == 10


def test_many_blocks_keep_round_axes(reports: dict[str, RunReport]) -> None:
    """A thousand blocks: count axes above the tallest bar with at most six ticks, time
    ticks all different."""
    report = reports["many"]
    attempts = charts.attempts_figure(report).axes[0]
    tallest = max(p.get_height() for p in attempts.patches)
    assert attempts.get_ylim()[1] > tallest and len(attempts.get_yticks()) <= 6
    overview = charts.overview_figure(report).axes[0]
    labels = tick_labels(overview.xaxis)
    assert len(set(labels)) == len(labels) >= 3
    halts = charts.halts_figure(report).axes[0]
    assert len(set(tick_labels(halts.xaxis))) == len(tick_labels(halts.xaxis))


# ------------------------------------------------------------------------ the pages


def test_every_counter_has_one_definition(reports: dict[str, RunReport]) -> None:
    """Every totals row has a one-line definition; 'retries' counts moves into retrying
    (the manager's blocks_retried), apart from 'blocks with several attempts'."""
    totals = dict(reports["many"].totals)
    assert all(total_definition(name) for name in totals)
    assert "blocks retried" not in totals
    assert int(totals["retries"]) == sum(
        1 for b in reports["many"].blocks for v in b.visits if v.state == "retrying")
    assert int(totals["blocks with several attempts"]) == sum(
        1 for b in reports["many"].blocks if b.attempts > 1)


def test_the_pages_define_their_tables_and_list_shortened_ids(
        reports: dict[str, RunReport]) -> None:
    """HTML and Markdown: a definition under each table, and every shortened id in full."""
    report = reports["ids64"]
    page, md = to_html(report), to_markdown(report)
    for note in TABLE_NOTES.values():
        assert note.split(":")[0] in page
    assert page.count('class="defn"') >= 5
    rows = timeline_rows(report.blocks, TIMELINE_ROWS)
    for b in rows:
        assert b.block_id in page and b.block_id in md
    assert "what it counts" in page and "what it counts" in md


def test_the_markdown_gantt_has_every_tagged_block_and_a_readable_axis(
        reports: dict[str, RunReport]) -> None:
    """The gantt keeps failed and cancelled blocks (a milestone at no time) and uses
    milliseconds for a sub-10-second timeline; bar charts count from 0."""
    md = to_markdown(reports["ids64"])
    gantt = md.split("```mermaid\n")[2].split("```")[0]
    assert "axisFormat %S.%L s" in gantt
    assert gantt.count(":milestone") == 10
    assert gantt.count("section ") == TIMELINE_ROWS
    assert 'y-axis "blocks" 0 --> ' in md


def test_report_chart_figures_are_none_without_data(tmp_path: Path) -> None:
    """A journal with no block draws no chart (and says so in the page)."""
    path = tmp_path / "j.jsonl"
    path.write_text("")
    report = build_report(path)
    for figure in (charts.timeline_figure, charts.overview_figure, charts.attempts_figure,
                   charts.waits_figure, charts.halts_figure):
        assert figure(report) is None
