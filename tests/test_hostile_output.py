"""Hostile text in a journal reaches every output only as text (issue 21, items 2-4): a
venue's error, a strategy's action, block ids (within the id pattern) and reasons holding
terminal escapes, carriage returns, Markdown, HTML and mathtext are shown, never obeyed, by
``status``, ``check``, ``report`` (HTML and Markdown) and ``diagram --events``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm_exec.boundary.escape import CONTROL, markdown_text, terminal_text
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import SimVenue

from journals import Crash, Journal, manager
from kit import T, blocks

#: Text from outside: it erases the line above, forges a heading and a table row, fetches
#: an image, runs a script, hides a link (OSC 8), writes the clipboard (OSC 52), reverses
#: the text after it (bidi), and is mathtext to matplotlib.
HOSTILE = ("\x1b[1A\x1b[2K\rfine\r\n# Totals\n| forged | row |\n<img src=https://example.com/x.png>"
           "<script>alert(1)</script> \x1b]8;;https://example.com\x07link\x1b]8;;\x07 "
           "\x1b]52;c;ZWNobyBoaQ==\x07 \u202egnp.exe $\\frac{1}{0}$ `code` [a](https://x) "
           "*em* _em_ \x9b2K")
#: Printable hostile text the boundary lets into an action (no control characters).
PRINTABLE = "<img src=https://example.com/a.png> $x^2$ | # h `c` [l](https://x) *e*"
#: Block ids within the id pattern that Markdown and Mermaid would still read as syntax.
IDS = ("_em_:1", "a.b-c:__init__", "x")


class HostileVenue(SimVenue):
    """Every call fails with hostile text: the journal quotes it in reasons and errors."""

    def route_instruction(self, timestamp: Any, block: Any) -> Any:
        raise ConnectionResetError(HOSTILE)

    def query_execution(self, timestamp: Any, block: Any) -> Any:
        raise TimeoutError(HOSTILE)


def _poison_actions(log_dir: Path) -> None:
    """Give every journaled ``action`` hostile control characters, as a journal written
    before the boundary refused them (or edited by hand) would hold."""
    for path in log_dir.glob("*.jsonl"):
        lines = []
        for line in path.read_text().splitlines():
            record = json.loads(line)
            for key in ("action",):
                if key in record["data"]:
                    record["data"][key] = HOSTILE
            for entry in (record["data"].get("queue") or []):
                if isinstance(entry, dict) and "action" in entry:
                    entry["action"] = HOSTILE
            lines.append(json.dumps(record))
        path.write_text("\n".join(lines) + "\n")


def halted(log_dir: Path) -> Path:
    """A live manager halted by a venue whose every answer is hostile text."""
    em, el = manager(log_dir, venue=HostileVenue(), max_retries=1)
    batch = blocks(*IDS)
    batch[0]["action"] = PRINTABLE
    em.update_state(T(0), "strategy_manager", batch)
    assert em.halted
    el.close()
    return log_dir


def poisoned(log_dir: Path) -> Path:
    """The halted journal with hostile control characters in every ``action``, as a hand
    edit would leave it: the boundary refuses such an action, so every reader refuses the
    journal (naming the line), quoting the text with its escapes visible."""
    halted(log_dir)
    _poison_actions(log_dir)
    return log_dir


def in_flight(log_dir: Path) -> Path:
    """The process died with a block routing: status shows its action, the report's
    banner its id."""
    def dies(kind: str, data: Any) -> bool:
        return kind == "block_transition" and data["source"] == "routing"

    em, el = manager(log_dir, journal=lambda el: Journal(el, crash=dies))
    batch = blocks(*IDS)
    batch[0]["action"] = PRINTABLE
    with pytest.raises(Crash):
        em.update_state(T(0), "strategy_manager", batch)
    el.close()
    return log_dir


@pytest.fixture(scope="module", params=["halted", "in_flight", "poisoned"])
def journal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp(request.param) / "logs"
    return {"halted": halted, "in_flight": in_flight,
            "poisoned": poisoned}[request.param](log_dir)


def is_poisoned(journal: Path) -> bool:
    """True for the journal every reader refuses (its actions hold control characters)."""
    return journal.parent.name.startswith("poisoned")


def run(*args: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_terminal_safe(text: str) -> None:
    """Nothing in ``text`` acts on a terminal: line feeds are the only control character."""
    assert CONTROL.search(text.replace("\n", "")) is None, repr(
        CONTROL.search(text.replace("\n", "")))


def assert_markdown_safe(text: str) -> None:
    """No raw CR anywhere (so none inside a table row), no HTML, no forged structure."""
    assert "\r" not in text
    assert CONTROL.search(text.replace("\n", "")) is None
    assert "<img" not in text and "<script" not in text
    assert re.search(r"(?<!\\)\]\(", text) is None  # no link or image
    assert not re.search(r"^# Totals", text, re.MULTILINE)
    assert not re.search(r"^\| forged", text, re.MULTILINE)
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line  # a row is never cut short


# ------------------------------------------------------------------------ terminal


def test_status_shows_hostile_text_without_obeying_it(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``fsm-exec status`` prints a venue's error text and a block's action with their
    escapes visible (``\\x1b``): nothing can erase the halted line or hide a link."""
    code, out, err = run("status", journal, capsys=capsys)
    assert_terminal_safe(out + err)
    if is_poisoned(journal):  # refused, the action quoted visibly
        assert code == 2 and "\\x1b[1A\\x1b[2K" in err and "$.data.action" in err
        return
    assert code == 1, err
    if journal.parent.name.startswith("halted"):
        assert "\\x1b[1A\\x1b[2K" in out  # the venue's error, shown visibly
        assert "halted       EXEC-007" in out
    else:
        assert "IN DOUBT" in out


def test_status_json_is_json(journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status --json`` stays JSON, which escapes control characters itself."""
    code, out, err = run("status", journal, "--json", capsys=capsys)
    assert_terminal_safe(out + err)
    if not is_poisoned(journal):
        assert code == 1
        json.loads(out)


def test_check_shows_hostile_text_without_obeying_it(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``fsm-exec check`` prints no raw control character."""
    _, out, err = run("check", journal, capsys=capsys)
    assert_terminal_safe(out + err)


def test_diagram_events_on_a_terminal_is_safe(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``diagram --events`` in every text format prints no raw control character."""
    for fmt in ("mermaid", "dot", "markdown", "table"):
        code, out, err = run("diagram", "--events", journal, "--format", fmt, capsys=capsys)
        assert code == (1 if is_poisoned(journal) else 0), err
        assert_terminal_safe(out + err)


def test_every_command_escapes_what_it_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error quoting a hostile path is printed with its escapes visible."""
    code, out, err = run("check", tmp_path / "no\x1b[2Jsuch", capsys=capsys)
    assert code == 2
    assert_terminal_safe(out + err)
    assert "no\\x1b[2Jsuch" in err


def test_terminal_text_shows_every_control_character() -> None:
    """terminal_text leaves no control character, and shows each one as an escape."""
    for c in map(chr, [*range(0x20), *range(0x7f, 0xa0), 0x2028, 0x2029, 0x202e, 0x2066]):
        shown = terminal_text(f"a{c}b")
        assert CONTROL.search(shown) is None
        assert shown.startswith("a\\") and shown.endswith("b")
    assert terminal_text("plain, \u00e9t\u00e9") == "plain, \u00e9t\u00e9"


# ------------------------------------------------------------------------ Markdown


def test_markdown_report_quotes_hostile_text_as_text(
        journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Markdown report shows a venue's error text, actions and ids as text: a CR
    cannot end a table row, no heading, row, link, image or HTML of its own."""
    out_file = tmp_path / "r.md"
    code, _, err = run("report", journal, "-o", out_file, capsys=capsys)
    if is_poisoned(journal):
        assert code != 0 and "\\x1b[1A" in err
        assert_terminal_safe(err)
        return
    assert code == 0, err
    md = out_file.read_text()
    assert_markdown_safe(md)
    if journal.parent.name.startswith("halted"):  # the venue's error, in the failures
        assert "\\\\x1b\\[1A" in md  # the escape, itself escaped for Markdown


def test_diagram_markdown_quotes_hostile_text_as_text(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``diagram --events --format markdown`` (and ``--block``) escapes for Markdown."""
    code, out, err = run("diagram", "--events", journal, "--format", "markdown",
                         capsys=capsys)
    if is_poisoned(journal):
        assert code != 0 and out == ""
        assert_terminal_safe(err)
        return
    assert code == 0, err
    assert_markdown_safe(out)
    code, out, err = run("diagram", "--events", journal, "--block", IDS[0], "--format",
                         "markdown", capsys=capsys)
    assert code == 0, err
    assert_markdown_safe(out)


@pytest.mark.parametrize("text", [HOSTILE, PRINTABLE, "a\rb", "x|y", "<b>", "$x$", "[a](b)",
                                  "_a_", "**b**", "`c`", "# h", "~~s~~", "&lt;img&gt;"])
def test_markdown_text_is_one_inert_run(text: str) -> None:
    """markdown_text gives one line with no raw HTML, no unescaped syntax character."""
    shown = markdown_text(text)
    assert "\n" not in shown and "\r" not in shown and "<" not in shown
    assert re.search(r"(?<!\\)[`*\[\]$|#~]", shown) is None, shown
    assert re.search(r"&(?!amp;|lt;|gt;)", shown) is None, shown


_URLISH = st.sampled_from(["https://", "HTTP://", "ftp://", "www.", "WWW.", "http:", ".",
                           "/", ":", "evil.example", "(", ")", "*", "_", "~", " ", "a", "[",
                           "]", "<", ">", "!", "&", "#", "`", "\\", "|", "-", "+", "1.",
                           "2)", "    ", "---", "@", "xmpp:", "&amp;", "&#32;", "=", "\t"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_URLISH, max_size=12).map("".join)),
       st.booleans())
def test_markdown_text_renders_as_the_text_on_github(text: str, code: bool) -> None:
    """Rendered by GitHub's own renderer (cmark-gfm, as a PR comment is): markdown_text
    gives no link (a bare ``https://`` or ``www.`` address in a venue's error was a clickable
    link in a PR comment), no image, no HTML, and shows exactly the text (with its control
    characters escaped): no list, rule or code block where it starts a line, its edge
    spaces kept. (Mail and ``xmpp:`` addresses are the autolinks left: cmark-gfm links them
    whatever is escaped.)"""
    import html as html_module

    cmarkgfm = pytest.importorskip("cmarkgfm")
    html = cmarkgfm.github_flavored_markdown_to_html(markdown_text(text, code=code))
    assert "<img" not in html and "<script" not in html
    links = re.findall(r'<a href="([^"]*)"', html)
    assert all(href.startswith(("mailto:", "xmpp:")) for href in links), (text, html)
    if not code:
        shown = html_module.unescape(re.sub(r"<[^>]+>", "", html)).strip("\n")
        assert shown == terminal_text(text), (text, html)


def test_markdown_code_spans_only_identifiers() -> None:
    """markdown_text(code=True) puts identifiers in a code span, anything else as text."""
    assert markdown_text("hedge-1:a.b", code=True) == "`hedge-1:a.b`"
    assert markdown_text("a`b", code=True) == "a\\`b"
    assert markdown_text("a\nb", code=True) == "a\\\\nb"


def test_the_in_flight_banner_and_gantt_sections_stay_one_line() -> None:
    """The in-flight banner and the gantt section names quote a hostile id on one line:
    no newline or backtick writes a line of its own, no CR ends the gantt section."""
    import attrs

    from fsm_exec.tools.report import build_report, to_markdown
    from fsm_exec.tools.report.build import BlockSummary, Visit

    report = build_report(Path(__file__).parent / "golden" / "live_faults.jsonl")
    evil = "a\r\nb`c\r# Totals"
    fake = BlockSummary(evil, (Visit("routing", 0.0, 5.0, open=True),), "routing", False, 1,
                        False, None)
    md = to_markdown(attrs.evolve(report, in_doubt=evil, blocks=(fake, *report.blocks)))
    assert_markdown_safe(md)
    (banner,) = [line for line in md.splitlines() if line.startswith("> Block")]
    assert "still in flight" in banner
    (section,) = [line for line in md.splitlines() if line.startswith("    section a")]
    assert "`" not in section and "#" not in section


def test_html_report_has_no_html_from_the_journal(
        journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The HTML report escapes every quoted string: no image, no script, no raw control
    character (its charts draw the mathtext in ids as text)."""
    pytest.importorskip("matplotlib")
    out_file = tmp_path / "r.html"
    code, _, err = run("report", journal, "-o", out_file, capsys=capsys)
    if is_poisoned(journal):
        assert code != 0
        assert_terminal_safe(err)
        return
    assert code == 0, err
    page = out_file.read_text()
    assert "<img" not in page and "<script" not in page
    assert "Content-Security-Policy" in page
    # no raw control character (a U+202E would reverse the rest of a cell)
    assert CONTROL.search(page.replace("\n", "")) is None



# ------------------------------------------------------------------------ any hostile text

#: Pieces hostile text is made of: controls, escape-sequence parts, bidi controls,
#: Markdown, HTML and mathtext syntax, and some plain letters.
_HOSTILE_PIECES = st.sampled_from(
    [*map(chr, range(0x20)), "\x7f", "\x9b", "\u2028", "\u202e", "\u2066", "[", "]", "(",
     ")", "<", ">", "/", "$", "`", "|", "*", "_", "#", "~", "&", "\\", "!", ";", ":", "=",
     '"', "'", "a", "1", " ", "img", "script", "src=", "https://x", "\u00e9"])
#: The free-text fields (an ``action`` is a block's field: the boundary's rules refuse control
#: characters in it, and every reader refuses a journal holding one: see ``poisoned``).
_QUOTED_FIELDS = ("reason", "error_message", "message")


def _with_text(log_dir: Path, texts: list[str]) -> None:
    """Every quoted string field of the journal replaced, in turn, by one of ``texts``."""
    path = log_dir / "execution_manager_events.jsonl"
    lines, n = [], 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key in _QUOTED_FIELDS:
            if isinstance(record["data"].get(key), str):
                record["data"][key] = texts[n % len(texts)]
                n += 1
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.lists(_HOSTILE_PIECES, min_size=1, max_size=12).map("".join),
                      min_size=1, max_size=4))
def test_any_hostile_text_reaches_every_output_as_text(
        texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever text a journal quotes (reasons, a venue's errors), every command
    exits with one of its codes (no traceback) and its outputs carry it inertly: no raw
    control character on the terminal, no raw CR, HTML, link or forged row in Markdown, no
    HTML or control character in the HTML report."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("any")
    log_dir = halted(base / "logs")
    _with_text(log_dir, texts)
    outputs = []
    for argv in (["check", log_dir], ["status", log_dir], ["status", log_dir, "--json"],
                 ["diagram", "--events", log_dir, "--format", "markdown"],
                 ["diagram", "--events", log_dir, "--block", IDS[0], "--format", "markdown"],
                 ["report", log_dir, "--format", "markdown"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv], out=out)
        assert code in (0, 1), (argv, err.getvalue())
        assert_terminal_safe(out.getvalue() + err.getvalue())
        outputs.append(out.getvalue())
    for md in outputs[3:]:
        assert_markdown_safe(md)
    if importlib.util.find_spec("matplotlib") is not None:
        page = io.StringIO()
        assert main(["report", str(log_dir)], out=page) == 0
        assert "<img" not in page.getvalue() and "<script" not in page.getvalue()
        assert CONTROL.search(page.getvalue().replace("\n", "")) is None
