"""Reading a long journal costs what its newest files hold: a checkpoint in a file past
``ROTATE_BYTES`` starts a new file, recovery and ``status`` read only from the checkpoint
before the newest (which the newest is checked against: at most the two newest files; the
checkpoint names the run that wrote it, so status needs no history), whatever the
journal's length. No timings: the files each reader opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fsm_exec import EventLogger, ExecutionManager
from fsm_exec.journal import reader
from fsm_exec.journal.files import journal_files
from fsm_exec.testing import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)
from fsm_exec.tools.status import read_status

from kit import T, block


def _manager(log: EventLogger, **config: Any) -> ExecutionManager:
    clock = FakeClock()
    rc = SimReconciliation(clock)
    return ExecutionManager({"strategy_mode": "x", **config}, StaticDataProvider(),
                            "backtest", SimPositionHandler(rc), SimVenue(), rc,
                            event_logger=log, clock=clock, sleep=clock.sleep)


@pytest.fixture
def long_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A backtest of 120 blocks, a checkpoint every 25 records, files of 4 kB at most."""
    monkeypatch.setattr("fsm_exec.journal.writer.ROTATE_BYTES", 4_000, raising=False)
    log = EventLogger(tmp_path / "logs", "backtest", checkpoint_every=25)
    em = _manager(log)
    for i in range(120):
        em.update_state(T(60 * i), "strategy_manager", [block(f"b{i}")])
        em.update_state(T(60 * i + 30), "strategy_manager")
    log.close()
    return tmp_path / "logs"


def _opened(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The journal files read from now on (every reader reads a file through the reader's
    two views of it: its lines, or its batches of lines for the CSV export)."""
    seen: set[str] = set()
    for name in ("journal_lines", "journal_batches"):
        real = getattr(reader, name)

        def spy(path: Path | str, *args: Any, real: Any = real) -> Any:
            seen.add(Path(path).name)
            return real(path, *args)

        monkeypatch.setattr(reader, name, spy)
    return seen


def test_a_checkpoint_in_a_big_file_starts_a_new_one(long_journal: Path) -> None:
    """Past ROTATE_BYTES, the next checkpoint rotates: many files, each starting with a
    checkpoint, none much bigger than the limit."""
    files = journal_files(long_journal)
    assert len(files) >= 5
    for p in files:
        assert p.read_bytes().startswith(b'{"seq":')
        assert b'"event_type":"checkpoint"' in p.read_bytes().split(b"\n", 1)[0]
        assert p.stat().st_size < 4_000 + 25 * 400


def test_recover_and_status_read_only_the_newest_files(long_journal: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """recover() and status open the newest two files at most (the newest checkpoint's, and
    the one holding the checkpoint before it, which the newest is checked against): the
    older ones (most of the journal) are never read, so their time does not grow with the
    journal's length; both still see everything (120 blocks executed, the run's config
    hash and mode)."""
    files = journal_files(long_journal)
    newest = {p.name for p in files[-2:]}
    assert len(files) >= 5
    opened = _opened(monkeypatch)
    with EventLogger(long_journal, "backtest") as log:
        report = _manager(log).recover()
    assert report.blocks_executed == 120
    assert files[-1].name in opened and opened <= newest
    files = journal_files(long_journal)  # recover() wrote a checkpoint (maybe a new file)
    newest = {p.name for p in files[-2:]}
    opened.clear()
    status = read_status(long_journal)
    assert files[-1].name in opened and opened <= newest
    assert status["counters"]["executed"] == 120
    assert status["execution_mode"] == "backtest"
    assert status["config"]["matches_journal"] is False  # the journal's hash was found
