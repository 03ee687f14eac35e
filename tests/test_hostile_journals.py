"""Hostile journals through every reader and every output (issue 21's property): a real
journal randomly corrupted (flipped bytes; any field replaced by a value of another type, an
extreme size, control characters, Markdown, HTML or ANSI payloads) is given to ``check``,
``status``, ``report`` (HTML and Markdown), ``diagram --events`` and ``recover()``. None
prints a traceback, raises anything but an fsm_exec error, hangs (each case runs under a time
limit), or lets a payload through unescaped."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_output import assert_markdown_safe, assert_terminal_safe
from test_journal_corpus import VALID, _dumps, _lines

from fsm_exec import ComponentError, ExecutionManager, JournalCorruptError, read_journal
from fsm_exec.cli.main import main
from fsm_exec.sim.venues import SimPositionHandler, SimReconciliation, SimVenue, StaticDataProvider
from fsm_exec.tools.diagram import overlay_events

#: Values a corruption puts in a field: other types, extreme sizes, and payloads meant for
#: a terminal, a Markdown renderer, a browser and matplotlib.
PAYLOADS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(), st.booleans(),
    st.none(), st.text(max_size=40),
    st.sampled_from(["\x1b[1A\x1b[2K\rhalted? no", "\r\n# Totals\n| forged | row |",
                     "<img src=https://example.com/x.png>", "<script>alert(1)</script>",
                     "\x1b]8;;https://example.com\x07link\x1b]8;;\x07", "\x1b]52;c;aGk=\x07",
                     "$\\frac{1}{0}$", "\u202eexe.gnp", "[x](https://example.com)",
                     "9999-12-31T23:00:00+00:00", "0001-01-01T00:00:00+01:00", "x" * 70,
                     {"__decimal__": "12,5"}, {"__int__": 1.5}, {"__nope__": 1}, [[[[[]]]]],
                     1_000_000_000, -1e300]),
    st.lists(st.integers(), max_size=3),
)
#: Every command a reader runs, with its arguments after the journal.
COMMANDS: dict[str, tuple[str, ...]] = {
    "check": ("check",), "status": ("status",),
    "report-markdown": ("report", "--format", "markdown"),
    "report-html": ("report", "--format", "html"),
    "diagram-events": ("diagram", "--format", "markdown", "--events"),
}
LIMIT_S = 60.0  # a generous bound on a shared machine: a reader that blocks never returns


def _corrupt(data: st.DataObject) -> list[bytes]:
    lines = _lines(data.draw(st.sampled_from(VALID), label="journal"))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        if data.draw(st.booleans(), label="flip"):
            raw = bytearray(lines[i])
            at = data.draw(st.integers(0, len(raw) - 2), label="at")
            raw[at] ^= data.draw(st.integers(1, 255), label="mask")
            lines[i] = bytes(raw)
            continue
        try:
            record = orjson.loads(lines[i])
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        data_field = record.get("data")
        target = (data_field if isinstance(data_field, dict) and data_field
                  and data.draw(st.booleans(), label="in data") else record)
        key = data.draw(st.sampled_from(sorted(target)), label="key")
        target[key] = data.draw(PAYLOADS, label="value")
        lines[i] = _dumps(record)
    return lines


def _within_limit(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a thread; fails the case if it has not returned in ``LIMIT_S``."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # reported below, in the test's thread
            box.append(("raised", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(LIMIT_S)
    assert box, f"did not return within {LIMIT_S:g}s"
    kind, value = box[0]
    if kind == "raised":
        raise value
    return value


def _command(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_hostile_journal_is_read_safely_by_every_reader_and_output(
        data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every command either reads the corrupted journal or refuses it (exit 1 or 2) with a
    message; none raises, prints a traceback or hangs; terminal and Markdown outputs hold no
    raw control character, CR, HTML or forged structure; the HTML report holds no image or
    script; recover() raises only fsm_exec errors."""
    log_dir = tmp_path_factory.mktemp("hostile")
    (log_dir / "execution_manager_events.jsonl").write_bytes(b"".join(_corrupt(data)))
    have_matplotlib = importlib.util.find_spec("matplotlib") is not None
    for name, head in COMMANDS.items():
        if name == "report-html" and not have_matplotlib:
            continue
        out_file = tmp_path_factory.mktemp("out") / ("r.html" if "html" in name else "r.md")
        args = [*head, str(log_dir)]
        if name.startswith("report"):
            args += ["--output", str(out_file)]
        code, out, err = _within_limit(lambda: _command(args))  # noqa: B023 - runs now
        assert code in (0, 1, 2), (name, code, err)
        assert "Traceback" not in out + err, (name, err)
        assert_terminal_safe(out + err)
        if name.startswith("report") and out_file.exists():
            text = out_file.read_text()
            if name == "report-markdown":
                assert_markdown_safe(text)
            else:
                assert "<img" not in text and "<script" not in text
        elif name == "diagram-events" and code == 0:
            assert_markdown_safe(out)
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(), SimVenue(),
                          SimReconciliation())
    # JournalCorruptError (a ComponentError) naming file:line, or another refusal, whose
    # message shows what it quotes of the journal escaped
    try:
        _within_limit(lambda: em.recover(log_dir))
    except ComponentError as exc:
        assert_terminal_safe(str(exc))


@pytest.mark.parametrize("kind", ["block_transition", "positions_updated"])
def test_a_move_without_its_block_id_is_corrupt_for_every_reader(
        kind: str, tmp_path: Path) -> None:
    """One flipped byte (``block_id`` -> ``clock_id``) in a move: the reader refuses the
    record naming file:line (overlay_events raised a KeyError on it), so diagram --events
    and check say so."""
    lines = _lines(next(n for n in VALID if "live" in n))
    i = next(n for n, raw in enumerate(lines) if f'"event_type":"{kind}"'.encode() in raw)
    lines[i] = lines[i].replace(b'"block_id"', b'"clock_id"', 1)
    path = tmp_path / "execution_manager_events.jsonl"
    path.write_bytes(b"".join(lines))
    with pytest.raises(JournalCorruptError, match=rf"events\.jsonl:{i + 1}: .*block_id"):
        overlay_events(read_journal(path))
    for args in (["diagram", "--format", "markdown", "--events", str(tmp_path)],
                 ["check", str(tmp_path)]):
        code, out, err = _command(args)
        assert code in (1, 2) and "Traceback" not in err, (args, err)
        assert f"execution_manager_events.jsonl:{i + 1}" in out + err, (args, out, err)
