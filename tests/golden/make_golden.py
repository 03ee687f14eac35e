"""Writes the golden journals in this folder: ``python tests/golden/make_golden.py``.

The good journals come from real, deterministic runs (fake clock, fixed timestamps); the bad
ones are copies of a good one with one line broken, so the offending line is known. The test
suite replays them all, and checks that the good ones are still what the code writes: the
journal format is a contract (a journal written by one version must recover in the next), so
changing it means running this script and reviewing the diff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fsm_exec import EventLogger, ExecutionManager, journal_files  # noqa: E402
from fsm_exec.sim.venues import (  # noqa: E402
    FakeClock,
    FaultyVenue,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import blocks  # noqa: E402

T0 = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
INIT_STAMP = "2025-10-01T00:00:00+00:00"


class _Crash(BaseException):
    pass


class _DiesAt:
    def __init__(self, journal: EventLogger, n: int) -> None:
        self.journal, self.left = journal, n

    def log_event(self, ts: Any, kind: str, component: str, data: Any) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Crash
        self.journal.log_event(ts, kind, component, data)


def _manager(log_dir: Path, mode: str, *, faults: Sequence[Any] = (),
             recon: Sequence[Any] = (),
             dies_after: int | None = None, **config: Any) -> ExecutionManager:
    clock = FakeClock()
    rc = SimReconciliation(clock, recon)
    journal = EventLogger(log_dir, mode, today=lambda: T0.date())
    log: Any = journal if dies_after is None else _DiesAt(journal, dies_after)
    em = ExecutionManager({"strategy_mode": "eth_basis", **config}, StaticDataProvider(),
                          mode, SimPositionHandler(rc),
                          FaultyVenue(_VENUE, list(faults), clock=clock), rc,
                          event_logger=log, clock=clock, sleep=clock.sleep)
    em._golden_journal = journal  # type: ignore[attr-defined]
    return em


_VENUE = SimVenue()


def _close(em: ExecutionManager) -> None:
    em._golden_journal.close()  # type: ignore[attr-defined]


def _fix_init_stamps(path: Path) -> None:
    """Records written outside a call carry the wall clock (``clock: wall``), checkpoints
    written in a call the wall clock under its own name (``wall_clock``): pin both for a
    stable golden file."""
    lines = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        data = rec["data"]
        if "wall_clock" in data or data.get("clock") == "wall":
            if "wall_clock" in data:
                data["wall_clock"] = INIT_STAMP
            else:
                rec["timestamp"] = INIT_STAMP
            line = json.dumps(rec, separators=(",", ":"))
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def write_good(out: Path) -> dict[str, Path]:
    """The good journals, written into ``out``; returns name -> file."""
    global _VENUE
    made: dict[str, Path] = {}

    def take(name: str, log_dir: Path) -> None:
        """The whole journal (every file, in seq order) as one golden file."""
        dst = out / f"{name}.jsonl"
        dst.write_bytes(b"".join(p.read_bytes() for p in journal_files(log_dir)))
        _fix_init_stamps(dst)
        made[name] = dst

    work = out / "_work"
    _VENUE = SimVenue()
    em = _manager(work / "a", "backtest")
    em.update_state(T0, "strategy_manager", blocks("a1", "a2"))
    em.update_state(T0 + dt.timedelta(hours=1), "strategy_manager", blocks("a3"))
    _close(em)
    take("backtest_clean", work / "a")

    _VENUE = SimVenue()
    em = _manager(work / "b", "live", reconciliation_timeout=10, max_retries=3,
                  faults=["error", None, "lost_response", "reject", "reject", "reject"],
                  recon=[("ok", 0.3), ("ok", 12)])
    em.update_state(T0, "strategy_manager", blocks("b1", "b2", "b3"))
    _close(em)
    take("live_faults", work / "b")

    _VENUE = SimVenue()
    em = _manager(work / "c", "live", dies_after=10)
    with contextlib.suppress(_Crash):
        em.update_state(T0, "strategy_manager", blocks("c1", "c2", "c3"))
    _close(em)
    take("crashed", work / "c")
    em = _manager(work / "c", "live")
    em.recover()
    em.update_state(T0 + dt.timedelta(minutes=5), "retry")
    _close(em)
    take("crashed_then_recovered", work / "c")

    for p in sorted(work.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    work.rmdir()
    return made


#: bad journal name -> (good journal it is cut from, 1-based line, how the line is broken)
BAD: dict[str, tuple[str, int, str]] = {
    "bad_edge": ("backtest_clean", 7, "dest=failed"),
    "bad_counters": ("backtest_clean", 11, "blocks_executed=5"),
    "bad_seq": ("backtest_clean", 6, "seq=3"),
    "bad_batch": ("live_faults", 3, "swap_with_next"),
    "bad_json": ("live_faults", 8, "truncate"),
    "bad_two_in_flight": ("crashed", 11, "start_c3"),
}


def write_bad(out: Path) -> None:
    for name, (good, line, how) in BAD.items():
        lines = (out / f"{good}.jsonl").read_text().splitlines()
        if how == "start_c3":  # a second block starts while c2 is still in flight
            last = json.loads(lines[-1])
            lines.append(json.dumps({
                "seq": last["seq"] + 1, "timestamp": last["timestamp"],
                "event_type": "block_transition", "component": "ExecutionManager",
                "data": {"block_id": "c3", "source": "queued", "dest": "routing",
                         "trigger": "start", "attempt": 1}}, separators=(",", ":")))
            assert len(lines) == line
            (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
            continue
        rec = json.loads(lines[line - 1])
        if how == "truncate":
            lines[line - 1] = lines[line - 1][: len(lines[line - 1]) // 2]
        elif how == "swap_with_next":
            nxt = json.loads(lines[line])
            rec["data"], nxt["data"] = nxt["data"], rec["data"]
            lines[line - 1] = json.dumps(rec, separators=(",", ":"))
            lines[line] = json.dumps(nxt, separators=(",", ":"))
        else:
            key, value = how.split("=")
            target = rec if key == "seq" else rec["data"]
            target[key] = int(value) if value.isdigit() else value
            lines[line - 1] = json.dumps(rec, separators=(",", ":"))
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write_good(HERE)
    write_bad(HERE)
    print("golden journals written to", HERE)
