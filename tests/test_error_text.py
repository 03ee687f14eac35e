"""Errors are an output too: a traceback, a log line, a ``print(exc)`` in the user's loop
reach a terminal. Text from outside (a journal's fields, a collaborator's exception) reaches
an fsm_exec error's message with its control characters shown, never raw: no escape sequence
in a journal or in a venue's error can move a cursor, erase a line or write a clipboard
where the error is printed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from test_hostile_output import assert_terminal_safe
from test_journal_corpus import _journal, _lines, _outcomes, _replace

from fsm_exec import ComponentError, EventLogger, ExecutionManager, InstructionBlock
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.reader import read_journal
from fsm_exec.observe.oplog import disable_logging, enable_logging
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.check import check_journal
from fsm_exec.tools.diagram import overlay_events
from fsm_exec.tools.report import read_checked
from fsm_exec.tools.status import StatusUnreadable, read_status

from kit import blocks, rig

HOSTILE = "\x1b[2K\rhalted? no\x1b]52;c;aGk=\x07\u202e"
T = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("field", ["source", "dest", "trigger"])
def test_a_hostile_state_name_in_a_journal_reaches_no_error_raw(field: str,
                                                                tmp_path: Path) -> None:
    """A transition whose state or trigger name holds escape sequences is off the
    lifecycle: every reader refuses it at the same file:line, and the message each gives
    (recover()'s JournalCorruptError, check's problem, status's refusal, report's problem)
    shows the characters escaped."""
    lines = _lines("backtest_clean.jsonl")
    i = next(n for n, raw in enumerate(lines) if b'"block_transition"' in raw)
    path = _journal(tmp_path, _replace(lines, i, lambda r: r["data"].__setitem__(
        field, HOSTILE)))
    got = _outcomes(path)
    assert got["recover"] == (path.name, i + 1), got
    with pytest.raises(JournalCorruptError) as caught:
        rig("backtest").em.recover(path)
    texts = [str(caught.value), caught.value.message, str(check_journal(path).problem),
             str(read_checked(path)[1])]
    with pytest.raises(StatusUnreadable) as unreadable:
        read_status(tmp_path)
    texts.append(str(unreadable.value))
    with pytest.raises(ValueError, match="not an edge") as drawn:  # diagram --events
        overlay_events(read_journal(path))
    texts.append(str(drawn.value))
    for text in texts:
        assert "\\x1b[2K" in text, text  # shown, escaped
        assert_terminal_safe(text)


class HostileVenue(SimVenue):
    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        raise RuntimeError(HOSTILE + "\nERROR forged log line")


def test_a_collaborator_s_hostile_error_text_reaches_no_error_or_log_raw(
        tmp_path: Path) -> None:
    """A venue whose exception message holds escape sequences and a line break: the
    backtest's EXEC-001 error and the log line the manager writes show them escaped (one
    line: no forged log line either)."""
    lines: list[str] = []
    sink = enable_logging(lines.append, "DEBUG")
    try:
        em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                              HostileVenue(), SimReconciliation(),
                              event_logger=EventLogger(tmp_path, "backtest"))
        with pytest.raises(ComponentError) as caught:
            em.update_state(T, "strategy_manager", blocks("b1"))
        em.close()
    finally:
        logger.remove(sink)
        disable_logging()
    err = caught.value
    assert err.error_code == "EXEC-001"
    for text in (str(err), err.message, str(err.original_exception)):
        assert "\\x1b[2K" in text and "\\nERROR forged" in text, text
        assert "\n" not in text
        assert_terminal_safe(text)
    logged = [m for m in lines if "forged" in m]
    assert logged, lines
    for m in logged:
        assert "\n" not in m.rstrip("\n"), m
        assert_terminal_safe(m)


def test_a_live_manager_logs_a_hostile_error_escaped(tmp_path: Path) -> None:
    """Live (the failure retried, then the block failed): the operational log's lines and
    the journal's error record show the venue's text escaped, each log record on one
    line."""
    clock = FakeClock()
    journal = EventLogger(tmp_path, "live")
    em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                          HostileVenue(), SimReconciliation(), event_logger=journal,
                          clock=clock, sleep=clock.sleep)
    lines: list[str] = []
    sink = enable_logging(lines.append, "DEBUG")
    try:
        status = em.update_state(T, "strategy_manager", blocks("b1"))
    finally:
        logger.remove(sink)
        disable_logging()
        em.close()
    assert status["blocks_failed"] == 1
    logged = [m for m in lines if "forged" in m]
    assert logged, lines
    for m in logged:
        assert "\\x1b[2K" in m and "\n" not in m.rstrip("\n"), m
        assert_terminal_safe(m)
    errors = [r.data["error_message"] for r in read_journal(tmp_path)
              if r.event_type == "error"]
    assert errors and all("\\x1b[2K" in e and "\n" not in e for e in errors), errors


def test_a_risk_check_s_hostile_refusal_reaches_no_error_or_record_raw(
        tmp_path: Path) -> None:
    """A risk check refuses with text holding escape sequences and a line break (and a name
    holding some): the EXEC-006 error, the failed move's reason and the error record show
    them escaped, on one line."""
    def check(block: Any, market: Any) -> str:
        return HOSTILE + "\nFORGED"

    check.__name__ = "desk\x1b[31m"
    em = ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(),
                          SimVenue(), SimReconciliation(), risk_checks=[check],
                          event_logger=EventLogger(tmp_path, "backtest"))
    with pytest.raises(ComponentError) as caught:
        em.update_state(T, "strategy_manager", blocks("b1"))
    em.close()
    texts = [str(caught.value)]
    for r in read_journal(tmp_path):
        texts += [str(r.data.get(k)) for k in ("reason", "error_message") if k in r.data]
    assert caught.value.error_code == "EXEC-006" and len(texts) >= 3, texts
    for text in texts:
        assert "\\x1b[2K" in text and "\\nFORGED" in text and "\\x1b[31m" in text, text
        assert "\n" not in text
        assert_terminal_safe(text)


def test_a_journal_s_hostile_path_reaches_no_reader_s_message_raw(tmp_path: Path) -> None:
    """A log directory whose name holds escape sequences: what check (its problems and
    notes), status and report say of a journal there shows the path escaped."""
    log_dir = tmp_path / f"logs{HOSTILE}"
    lines = _lines("backtest_clean.jsonl")
    path = _journal(log_dir, [*lines[:3], *lines[4:], lines[3][:-1]])  # a gap, a torn tail
    report = check_journal(path)
    assert report.problems and report.notes
    texts = [*report.problems, *report.notes, str(read_checked(path)[1])]
    with pytest.raises(StatusUnreadable) as unreadable:
        read_status(log_dir)
    texts.append(str(unreadable.value))
    (log_dir / "execution_manager_events.2026-01-01.1.jsonl").write_bytes(b"")
    texts += check_journal(log_dir).problems
    assert any("logs\\x1b[2K" in n for n in report.notes), report.notes  # the torn tail
    for text in texts:
        assert "logs" not in text or "logs\\x1b[2K" in text, text
        assert_terminal_safe(text)
