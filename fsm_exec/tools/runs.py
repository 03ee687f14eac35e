"""The runs under a base directory (made by :func:`~fsm_exec.backtest_run`), each with its
id, parameters and outcome counts, as ``fsm-exec runs BASE_DIR`` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from fsm_exec.journal.files import JournalCorruptError, journal_files
from fsm_exec.journal.lock import LOCK_NAME
from fsm_exec.journal.reader import read_journal
from fsm_exec.journal.runs import RUN_COMPONENT, RUN_STARTED
from fsm_exec.tools.check import check_journal


@attrs.frozen
class RunSummary:
    """One run: its id and parameters (as its journal holds them), when it started, and
    what its manager's journal says: whether it passes the check, and the block counts
    (``None`` when the run has no manager journal)."""

    run_id: str
    path: str
    started: str | None
    params: Any
    ok: bool | None
    problem: str | None
    accepted: int | None
    executed: int | None
    failed: int | None
    cancelled: int | None
    queued: int | None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def list_runs(base_dir: Path | str) -> list[RunSummary]:
    """Every run directory directly under ``base_dir`` (one holding a ``BacktestRun``
    journal), in the order they started (then by id)."""
    base = Path(base_dir)
    runs = [summarize(d) for d in sorted(base.iterdir())
            if d.is_dir() and (journal_files(d, RUN_COMPONENT) or _nothing_written(d))]
    return sorted(runs, key=lambda r: (r.started or "", r.run_id))


def _nothing_written(run_dir: Path) -> bool:
    """A directory holding a journal's lock and nothing else: a run whose journals are not
    written yet (still going, or killed before its first write; they are made at their
    first write, see :class:`~fsm_exec.EventLogger`)."""
    return [p.name for p in run_dir.iterdir()] == [LOCK_NAME]


def summarize(run_dir: Path) -> RunSummary:
    """One run directory's summary (a journal that cannot be read is reported, not
    raised)."""
    run_id, started, params = run_dir.name, None, None
    try:
        for r in read_journal(run_dir, RUN_COMPONENT):
            if r.event_type == RUN_STARTED and isinstance(r.data, dict):
                rid = r.data.get("run_id")
                run_id = rid if isinstance(rid, str) else run_id
                started, params = r.timestamp, r.data.get("params")
                break
    except (OSError, JournalCorruptError):
        pass
    if not journal_files(run_dir):
        problem = ("nothing written yet (a run still going, or one killed before its "
                   "journal was first written)" if _nothing_written(run_dir)
                   else "no ExecutionManager journal")
        return RunSummary(run_id, str(run_dir), started, params, None, problem, None, None,
                          None, None, None)
    report = check_journal(run_dir)
    return RunSummary(run_id, str(run_dir), started, params, report.ok, report.problem,
                      report.blocks_accepted, report.blocks_executed, report.blocks_failed,
                      report.blocks_cancelled, len(report.queued))
