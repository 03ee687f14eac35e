"""Real journals for the operator commands' tests (``fsm-exec status``, ``fsm-exec cancel``):
real managers on a fake clock writing with a real EventLogger, one per situation the person
on call meets, and a second process that holds a journal."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fsm_exec import EventLogError, EventLogger, ExecutionManager, InstructionBlock
from fsm_exec.sim.venues import (
    FakeClock,
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks

#: The codes that halt the manager, each with a journal below.
HALTING_CODES = ("EXEC-002", "EXEC-007", "EXEC-008", "EXEC-009", "EXEC-014", "EXEC-015")
#: Ten minutes after the journals' timestamps (T(0)): the "now" of the status tests.
NOW = "2025-10-01T00:10:00+00:00"
STAMP = "2025-10-01T00:00:00+00:00"


class Reconciled:
    reconciliation_status = "success"


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class Journal:
    """Forwards to an EventLogger (everything the manager reads from it); ``fail`` makes the
    first record of that type fail as a full disk would, ``crash`` dies instead of writing
    the first record it matches."""

    def __init__(self, inner: EventLogger, *, fail: str | None = None,
                 crash: Any = None) -> None:
        self.inner, self.fail, self.crash = inner, fail, crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_event(self, ts: Any, kind: str, component: str, data: Any, *,
                  sync: bool = True) -> None:
        if kind == self.fail:
            self.fail = None
            raise OSError(28, "No space left on device")
        if self.crash is not None and self.crash(kind, data):
            raise Crash
        self.inner.log_event(ts, kind, component, data, sync=sync)


def manager(log_dir: Path, *, venue: Any = None, positions: Any = None, rc: Any = None,
            journal: Any = None, mode: str = "live", checkpoint_every: int | None = 100_000,
            **config: Any) -> tuple[ExecutionManager, EventLogger]:
    """A manager on a fake clock writing to a real EventLogger in ``log_dir``."""
    clock = FakeClock()
    el = EventLogger(log_dir, "live", checkpoint_every=checkpoint_every)
    em = ExecutionManager(config, StaticDataProvider(), mode,
                          positions if positions is not None else SimPositionHandler(),
                          venue if venue is not None else SimVenue(),
                          rc if rc is not None else Reconciled(),
                          event_logger=journal(el) if journal is not None else el,
                          clock=clock, sleep=clock.sleep)
    return em, el


class LostVenue(SimVenue):
    """Every route call fails with an unknown outcome and every query fails too."""

    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        raise ConnectionResetError("connection reset by peer")

    def query_execution(self, timestamp: Any, block: InstructionBlock) -> Any:
        raise TimeoutError("venue API down")


class RefusingPositions:
    def update_state(self, timestamp: Any, trigger_source: str, deltas: Any) -> None:
        raise ValueError("book locked")


class BrokenReconciliation:
    @property
    def reconciliation_status(self) -> str:
        raise RuntimeError("reconciliation service unreachable")


class Fill:
    """An object with no faithful journal form."""


class OddVenue(SimVenue):
    def route_instruction(self, timestamp: Any, block: InstructionBlock) -> Any:
        return {"fills": [{"obj": Fill()}]}


def halted_journal(log_dir: Path, code: str, ids: tuple[str, ...] = ("a", "b", "c")) -> None:
    """The first block of ``ids`` halts the manager with ``code``; the others stay queued."""
    kwargs: dict[str, Any] = {}
    if code == "EXEC-002":
        clock_rc = SimReconciliation(None, [("fail", 0)])
        kwargs = {"rc": clock_rc, "positions": SimPositionHandler(clock_rc)}
    elif code == "EXEC-007":
        kwargs = {"venue": LostVenue(), "max_retries": 2}
    elif code == "EXEC-008":
        kwargs = {"positions": RefusingPositions()}
    elif code == "EXEC-009":
        kwargs = {"journal": lambda el: Journal(el, fail="positions_updated")}
    elif code == "EXEC-014":
        kwargs = {"rc": BrokenReconciliation()}
    elif code == "EXEC-015":
        kwargs = {"venue": OddVenue()}
    else:  # pragma: no cover - a typo in a test
        raise ValueError(code)
    em, el = manager(log_dir, **kwargs)
    try:
        em.update_state(T(0), "strategy_manager", blocks(*ids))
    except EventLogError:
        assert code == "EXEC-009"
    assert em.halted and em.get_execution_status()["halt_reason"] == code
    el.close()


def crashed_in(log_dir: Path, state: str, ids: tuple[str, ...] = ("a", "b"),
               **config: Any) -> None:
    """The process dies with the first block of ``ids`` in ``state`` (the record of its
    move out of it is never written); the others stay queued."""
    def dies(kind: str, data: Any) -> bool:
        return kind == "block_transition" and data["source"] == state

    em, el = manager(log_dir, journal=lambda el: Journal(el, crash=dies), **config)
    with contextlib.suppress(Crash):
        em.update_state(T(0), "strategy_manager", blocks(*ids))
    el.close()


def queued_journal(log_dir: Path, ran: tuple[str, ...] = ("a",),
                   queued: tuple[str, ...] = ("b", "c", "d")) -> None:
    """``ran`` succeeded; ``queued`` were accepted and never started (a stopped manager)."""
    em, el = manager(log_dir)
    if ran:
        em.update_state(T(0), "strategy_manager", blocks(*ran))
    em.execute_instruction_blocks(T(0), blocks(*queued))
    el.close()


def snapshot(log_dir: Path) -> dict[str, bytes]:
    """Every file of a log directory, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(log_dir.iterdir()) if p.is_file()}


def lines_of(log_dir: Path) -> list[bytes]:
    """The lines of the manager's current journal file."""
    return (log_dir / "execution_manager_events.jsonl").read_bytes().splitlines(keepends=True)


_HOLDER = textwrap.dedent("""
    import sys
    from fsm_exec import EventLogger, ExecutionManager
    from fsm_exec.sim.venues import FakeClock, SimPositionHandler, SimVenue, StaticDataProvider
    from journals import Reconciled
    from kit import T, blocks

    journal = EventLogger(sys.argv[1], "live")
    if sys.argv[2] == "manager":
        clock = FakeClock()
        em = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                              SimVenue(), Reconciled(), event_logger=journal, clock=clock,
                              sleep=clock.sleep)
        em.recover()
        em.execute_instruction_blocks(T(60), blocks("x", "y"))
        with open(journal.path_for("ExecutionManager"), "ab") as f:  # a write in progress
            f.write(b'{"seq": 99, "timestamp": "2025-10-01T00:01:00+00:00", "event_')
    print("ready", flush=True)
    sys.stdin.readline()
""")


@contextlib.contextmanager
def other_process(log_dir: Path, what: str = "lock") -> Iterator[subprocess.Popen[str]]:
    """A second process that holds ``log_dir`` (an open EventLogger) until the block ends.
    ``what="manager"``: it also recovers a live manager there, queues ``x`` and ``y``, and
    leaves half a record at the end of the journal (a write in progress)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(log_dir), what],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
