"""A hypothesis state machine over the journal's life: blocks are logged, files rotate,
time jumps (forward, back, a year), retention prunes, the process restarts or crashes and
its journal is cut back to what was durable (sometimes torn). Invariant: what recovery
rebuilds is what a reference manager that never crashed holds.

Runs under the suite's hypothesis profile (``HYPOTHESIS_PROFILE=ci`` in tox: derandomized);
``HYPOTHESIS_PROFILE=fsm-exec-nightly`` searches far longer.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from fsm_exec import EventLogger, ExecutionManager, check_journal
from fsm_exec.sim.venues import (
    FakeClock,
    FaultyVenue,
    NaiveVenue,
    RecordingEventLogger,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import blocks

EM = "ExecutionManager"
CONFIG = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0, "max_retries": 3,
          "retry_delay_seconds": 0.1, "reconciliation_timeout": 2}


class Side:
    """One manager and its outside world (venue, book, reconciliation, clock)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.venue = NaiveVenue()
        self.faulty = FaultyVenue(self.venue, clock=self.clock)
        self.rc = SimReconciliation(self.clock)
        self.positions = SimPositionHandler(self.rc)

    def manager(self, log: Any) -> ExecutionManager:
        return ExecutionManager(dict(CONFIG), StaticDataProvider(), "live", self.positions,
                                self.faulty, self.rc, event_logger=log, clock=self.clock,
                                sleep=self.clock.sleep)


class JournalLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fsm-exec-life-"))
        self.day = dt.date(2025, 1, 1)
        self.durable: dict[str, int] = {}
        self.real_fsync = os.fsync
        os.fsync = self._fsync  # type: ignore[assignment]  # what a power cut keeps
        self.ref = Side()
        self.ref_em = self.ref.manager(RecordingEventLogger())
        self.sut = Side()
        self.log = self._open()
        self.em = self.sut.manager(self.log)
        self.n = 0
        self.hour = 0
        self.ids: list[str] = []

    def teardown(self) -> None:
        os.fsync = self.real_fsync
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -------------------------------------------------------------- plumbing
    def _fsync(self, fd: int) -> None:
        self.durable[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size

    def _open(self) -> EventLogger:
        return EventLogger(self.dir, "live", today=lambda: self.day, retention_days=30,
                           checkpoint_every=25)

    def _ts(self) -> dt.datetime:
        self.hour += 1
        return dt.datetime.combine(dt.date(2025, 1, 1), dt.time(0), dt.UTC) + \
            dt.timedelta(hours=self.hour)

    def _both(self, call: str, *args: Any) -> None:
        ts = self._ts()
        for em in (self.ref_em, self.em):
            getattr(em, call)(ts, *args)

    def _restart(self) -> None:
        self.log = self._open()
        self.em = self.sut.manager(self.log)
        self.em.recover()
        # What the crash may have lost is only what nothing was done on (a trailing
        # success, a state update): the next update settles it, on both sides alike.
        self._both("update_state", "retry")

    # -------------------------------------------------------------- rules
    @rule(k=st.integers(1, 3), only_queue=st.booleans())
    def submit(self, k: int, only_queue: bool) -> None:
        batch = []
        for _ in range(k):
            self.n += 1
            batch.append(f"b{self.n}")
        self.ids.extend(batch)
        if only_queue:
            self._both("execute_instruction_blocks", blocks(*batch))
        else:
            self._both("update_state", "strategy_manager", blocks(*batch))

    @rule()
    def tick(self) -> None:
        self._both("update_state", "retry")

    @rule()
    def resume(self) -> None:
        self._both("update_state", "manual")

    @rule(fault=st.sampled_from(["lost_response", "reject", "error"]))
    def venue_fault(self, fault: str) -> None:
        self.ref.faulty.faults.append(fault)
        self.sut.faulty.faults.append(fault)

    @rule()
    def next_hand_off_fails(self) -> None:
        self.ref.positions.failures.append(True)
        self.sut.positions.failures.append(True)

    @rule(pick=st.integers(0, 10))
    def cancel_one(self, pick: int) -> None:
        queued = self.ref_em.queued_block_ids
        if not queued:
            return
        target = [queued[pick % len(queued)]]
        ts = self._ts()
        for em in (self.ref_em, self.em):
            em.cancel(ts, target, reason="operator")

    @rule(days=st.sampled_from([1, 2, 31, 45, -1, 365]))
    def time_passes(self, days: int) -> None:
        """A new day (rotation at the next safe point), an idle month (retention), the
        clock stepping back a day, or jumping a year."""
        self.day += dt.timedelta(days=days)

    @rule()
    def restart(self) -> None:
        self.log.close()
        self._restart()

    @rule(keep=st.integers(0, 1000), torn=st.booleans())
    def crash(self, keep: int, torn: bool) -> None:
        """The process dies between two calls; a power cut may drop what no fsync covered
        (cut at a record boundary), maybe leaving a torn line."""
        self.log._abandon()
        current = self.dir / "execution_manager_events.jsonl"
        if current.exists():
            data = current.read_bytes()
            durable = self.durable.get(str(current.resolve()), 0)
            ends = [i + 1 for i, c in enumerate(data) if c == 0x0A and i + 1 >= durable]
            cut = ends[keep % len(ends)] if ends else durable
            current.write_bytes(data[:cut] + (data[cut:cut + 7] if torn else b""))
        self._restart()

    # -------------------------------------------------------------- invariants
    @invariant()
    def recovery_is_what_never_crashed(self) -> None:
        ref, sut = self.ref_em, self.em
        for b in self.ids:
            assert sut.block_state(b) == ref.block_state(b), (b, sut.block_state(b),
                                                             ref.block_state(b))
        keys = ("blocks_accepted", "blocks_executed", "blocks_failed", "blocks_cancelled",
                "queue_length", "halted", "halt_reason")
        s, r = sut.get_execution_status(), ref.get_execution_status()
        assert {k: s[k] for k in keys} == {k: r[k] for k in keys}
        order = self.sut.venue.execution_order
        assert len(order) == len(set(order)), f"executed twice: {order}"
        assert sorted(order) == sorted(self.ref.venue.execution_order)

    @invariant()
    def the_journal_checks_clean(self) -> None:
        self.log.sync()
        report = check_journal(self.dir)
        assert report.ok, report.problems


TestJournalLife = JournalLife.TestCase
TestJournalLife.settings = settings(TestJournalLife.settings, stateful_step_count=25)
