"""The journal over a deployment's lifetime: months of daily running, retention, idle months,
halts left for weeks, crashes at any record, restarts, a second process, clock steps.

Each failure the long-run issue names has its own test; then a simulated 400 days of a live
manager with retention at 30 days, crashes (the journal cut back to what was durable, and
sometimes a torn line) and restarts on random days, idle gaps and halts included. After
every restart: nothing accepted is lost, nothing finished runs again, a halt is still a
halt, and ``check`` is clean.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from fsm_exec import (
    BlockState,
    EventLogger,
    ExecutionManager,
    InvalidBlockError,
    JournalCorruptError,
    check_journal,
    journal_files,
    read_journal,
)
from fsm_exec.journal.lock import JournalLockedError
from fsm_exec.sim.venues import (
    FakeClock,
    NaiveVenue,
    SimPositionHandler,
    SimReconciliation,
    StaticDataProvider,
)

from kit import block, blocks

DAY0 = dt.date(2025, 1, 1)
EM = "ExecutionManager"
CONFIG = {"not_found_confirmations": 1, "not_found_min_age_seconds": 0,
          "retry_delay_seconds": 0.1, "reconciliation_timeout": 2}


class Crash(BaseException):
    """The process dies here."""


class Durable:
    """Replaces os.fsync: remembers how much of each file an fsync made durable (and skips
    the real fsync: the simulation decides what a power cut keeps)."""

    def __init__(self) -> None:
        self.size: dict[str, int] = {}

    def __call__(self, fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # pragma: no cover - not Linux
            return
        self.size[path] = os.fstat(fd).st_size


class World:
    """What outlives a process: the venue, the book, reconciliation, the clocks."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.day = DAY0
        self.clock = FakeClock()
        self.venue = NaiveVenue()  # executes every route: only the manager keeps it once
        self.rc = SimReconciliation(self.clock)
        self.positions = SimPositionHandler(self.rc)
        self.log: EventLogger | None = None
        self.em: ExecutionManager | None = None
        self.crash_after: int | None = None  # clock reads before the process dies

    def today(self) -> dt.date:
        return self.day

    def ts(self, hour: int = 12) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(hour), dt.UTC)

    def now(self) -> float:
        if self.crash_after is not None:
            self.crash_after -= 1
            if self.crash_after < 0:
                self.crash_after = None
                raise Crash
        return self.clock()

    def start(self, *, retention: int | None = 30, window: int | None = None
              ) -> ExecutionManager:
        self.log = EventLogger(self.log_dir, "live", today=self.today,
                               retention_days=retention, checkpoint_every=50)
        config = dict(CONFIG, **({"duplicate_window": window} if window else {}))
        self.em = ExecutionManager(config, StaticDataProvider(), "live", self.positions,
                                   self.venue, self.rc, event_logger=self.log,
                                   clock=self.now, sleep=self.clock.sleep)
        if self.log.has_history(EM) and self.em._needs_recovery:
            try:
                self.em.recover()
            except BaseException:
                self.log.close()
                raise
        return self.em

    def stop(self) -> None:
        assert self.log is not None
        self.log.close()
        self.log = self.em = None

    def kill(self, durable: Durable | None = None, rng: random.Random | None = None) -> None:
        """The process dies: nothing more is written; with ``durable``, a power cut also
        loses what no fsync covered (cut back to a record boundary, maybe a torn line)."""
        assert self.log is not None
        self.log._abandon()
        self.log = self.em = None
        if durable is None or rng is None:
            return
        current = self.log_dir / "execution_manager_events.jsonl"
        if not current.exists():
            return
        data = current.read_bytes()
        keep = durable.size.get(str(current.resolve()), 0)
        ends = [i + 1 for i, c in enumerate(data) if c == 0x0A and i + 1 >= keep]
        cut = rng.choice(ends) if ends else keep
        tail = data[cut:cut + rng.randrange(1, 20)] if rng.random() < 0.3 else b""
        current.write_bytes(data[:cut] + tail)


def em_of(world: World) -> ExecutionManager:
    assert world.em is not None
    return world.em


# ------------------------------------------------------------------------ the named failures


def test_thirty_days_of_daily_running_leave_a_readable_journal(tmp_path: Path) -> None:
    """Daily running for 40 days with retention at 30: old files are pruned, and a restart
    reads the journal the library wrote (counters checked from the checkpoint on)."""
    world = World(tmp_path)
    world.start()
    for day in range(40):
        world.day = DAY0 + dt.timedelta(days=day)
        em_of(world).update_state(world.ts(), "strategy_manager", blocks(f"d{day}"))
    world.stop()
    files = journal_files(tmp_path)
    assert 29 <= len(files) <= 32  # ~30 days kept, whole files only
    report = check_journal(tmp_path)
    assert report.ok, report.problems
    assert any("history pruned" in n for n in report.notes)
    em = world.start()
    assert em.get_execution_status()["blocks_executed"] == 40


def test_a_manager_halted_for_a_month_restarts_halted_with_its_queue(tmp_path: Path) -> None:
    """Halted, then restarted 45 days later exactly as the README says: opening prunes
    nothing before recovery reads it; the queue and the halt are back, and a finished
    block submitted again is refused, not executed again."""
    world = World(tmp_path)
    em = world.start()
    em.update_state(world.ts(), "strategy_manager", blocks("done"))
    world.positions.failures.append(True)  # the next hand-off fails: EXEC-008, halt
    em.update_state(world.ts(), "strategy_manager", blocks("bad", "q1", "q2"))
    assert em.halted and em.queued_block_ids == ("q1", "q2")
    world.stop()
    world.day += dt.timedelta(days=45)
    em = world.start()
    assert em.halted and em.get_execution_status()["halt_reason"] == "EXEC-008"
    assert em.queued_block_ids == ("q1", "q2")
    with pytest.raises(InvalidBlockError, match="it finished: success"):
        em.update_state(world.ts(), "strategy_manager", [block("done")])
    em.update_state(world.ts(), "manual")
    assert world.venue.execution_order == ["done", "bad", "q1", "q2"]
    assert check_journal(tmp_path).ok


@pytest.mark.parametrize("cut", ["after the fail record", "after block_failed",
                                 "after the error record"])
def test_a_crash_between_a_halting_failure_and_its_halt_record_recovers_halted(
        tmp_path: Path, cut: str) -> None:
    """The fail record carries the halt: a journal that ends anywhere between it and
    manager_halted recovers a halted manager, never one that trades on."""
    world = World(tmp_path)
    em = world.start()
    world.positions.failures.append(True)
    em.update_state(world.ts(), "strategy_manager", blocks("bad", "next"))
    world.stop()
    current = tmp_path / "execution_manager_events.jsonl"
    lines = current.read_bytes().splitlines(keepends=True)
    kinds = [line.split(b'"event_type":"')[1].split(b'"')[0] for line in lines]
    fail = next(i for i, line in enumerate(lines) if b'"trigger":"fail"' in line)
    assert kinds[fail + 1:fail + 4] == [b"error", b"block_failed", b"manager_halted"]
    keep = {"after the fail record": fail + 1, "after the error record": fail + 2,
            "after block_failed": fail + 3}[cut]
    current.write_bytes(b"".join(lines[:keep]))
    em = world.start()
    assert em.halted and em.get_execution_status()["halt_reason"] == "EXEC-008"
    em.update_state(world.ts(), "strategy_manager")
    assert world.venue.execution_order == ["bad"]  # nothing ran while halted


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """A second EventLogger on a directory in use is refused at once, naming the
    directory and the holder's pid; once the first is closed the directory is free."""
    first = EventLogger(tmp_path, "live")
    with pytest.raises(JournalLockedError, match=rf"{tmp_path}.*process {os.getpid()}") as info:
        EventLogger(tmp_path, "live")
    assert info.value.error_code == "EXEC-018" and info.value.pid == os.getpid()
    first.close()
    EventLogger(tmp_path, "backtest").close()


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """Another process (a supervisor restart racing the old one) is refused while the
    directory is held, and takes it over once the holder is gone (the OS frees the lock)."""
    import subprocess
    import sys
    code = ("import sys\nfrom fsm_exec import EventLogger\n"
            "from fsm_exec.journal.lock import JournalLockedError\n"
            "try:\n    EventLogger(sys.argv[1], 'live').close()\n"
            "except JournalLockedError as e:\n    print('refused', e.pid); sys.exit(3)\n"
            "print('took it')\n")
    holder = EventLogger(tmp_path, "live")
    held = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=False)
    assert held.returncode == 3 and held.stdout.split() == ["refused", str(os.getpid())]
    holder._abandon()  # the process "dies" (its descriptor goes)
    free = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=False)
    assert free.stdout.strip() == "took it", free.stderr


def test_a_venue_call_abandoned_on_its_thread_queues_safely(tmp_path: Path) -> None:
    """A venue call abandoned at execution_timeout that queues follow-up blocks from its
    worker thread while the main thread journals: records stay whole with unique seqs,
    and every block it was told was accepted is recovered."""
    release = threading.Event()
    accepted: list[str] = []
    world = World(tmp_path)

    class Slow(NaiveVenue):
        def route_instruction(self, ts: Any, b: Any) -> Any:
            if b.block_id == "slow":
                release.wait(5)
                for i in range(20):
                    em.execute_instruction_blocks(world.ts(), blocks(f"follow-{i}"))
                    accepted.append(f"follow-{i}")
            return super().route_instruction(ts, b)

    world.venue = Slow()
    em = ExecutionManager({"execution_timeout": 0.05, "max_retries": 1,
                           "not_found_confirmations": 1, "not_found_min_age_seconds": 0},
                          StaticDataProvider(), "live", world.positions, world.venue,
                          world.rc, event_logger=EventLogger(tmp_path, "live"))
    threading.Timer(0.08, release.set).start()  # after the manager abandoned the call
    em.update_state(world.ts(), "strategy_manager",
                    blocks("slow", *[f"m{i}" for i in range(20)]))
    for _ in range(200):
        if len(accepted) == 20:
            break
        threading.Event().wait(0.01)
    assert len(accepted) == 20
    em._log.close()  # type: ignore[union-attr]
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert check_journal(tmp_path).ok
    with EventLogger(tmp_path, "live") as log:
        again = ExecutionManager({}, StaticDataProvider(), "live", SimPositionHandler(),
                                 NaiveVenue(), SimReconciliation(), event_logger=log)
        again.recover()
        for b in accepted:
            assert again.block_state(b) is not None, b


def test_a_gap_in_seq_is_named_and_refused_unless_a_checkpoint_covers_it(
        tmp_path: Path) -> None:
    """A rotated file lost in a partial restore: the next file's checkpoint holds the state,
    so check names the missing range as pruned history and recovery goes on; records
    missing inside the newest file are an error for both, naming the file and the range."""
    world = World(tmp_path)
    world.start()
    for day in range(4):
        world.day = DAY0 + dt.timedelta(days=day)
        em_of(world).update_state(world.ts(), "strategy_manager", blocks(f"d{day}"))
        em_of(world).execute_instruction_blocks(world.ts(), blocks(f"q{day}"))
    world.stop()
    files = journal_files(tmp_path)
    files[-2].unlink()  # the file before the current one
    # The next file starts with a checkpoint holding everything (the queue and its
    # payloads included): the missing records are irrelevant, reported as pruned history.
    report = check_journal(tmp_path)
    assert report.ok and any("history pruned: seq" in n for n in report.notes), report
    em = world.start()
    assert em.queued_block_ids
    em.update_state(world.ts(), "strategy_manager", blocks("x1", "x2"))
    world.stop()
    files = journal_files(tmp_path)
    middle = files[-1].read_bytes().splitlines(keepends=True)
    files[-1].write_bytes(b"".join(middle[:4] + middle[6:]))  # two records vanish mid-file
    report = check_journal(tmp_path)
    assert not report.ok and any("are missing" in p and str(files[-1]) in p
                                 for p in report.problems), report.problems
    with pytest.raises(JournalCorruptError, match=r"records seq \d+-\d+ are missing"):
        world.start()


def test_the_clock_stepping_back_over_midnight_changes_nothing_readers_see(
        tmp_path: Path) -> None:
    """An NTP correction steps the UTC day back (and a jump a year ahead): files are named
    by the days they started, but readers order by seq, so check and recovery are fine."""
    world = World(tmp_path)
    world.start()
    for day in (0, 1, 0, 400, 2, 1):
        world.day = DAY0 + dt.timedelta(days=day)
        n = len(world.venue.execution_order)
        em_of(world).update_state(world.ts(), "strategy_manager", blocks(f"d{day}-{n}"))
        world.stop()
        world.start()
    world.stop()
    report = check_journal(tmp_path)
    assert report.ok, report.problems
    em = world.start()
    assert em.get_execution_status()["blocks_executed"] == 6


@pytest.mark.parametrize("days", [0, -1, 36_501, 10 ** 9, 1.5, True])
def test_absurd_retention_is_refused_and_none_keeps_everything(tmp_path: Path,
                                                               days: Any) -> None:
    """retention_days must be a whole number of days up to 100 years: a "keep forever"
    10**9 is refused at construction (it used to overflow at midnight); None keeps all."""
    with pytest.raises(ValueError, match="retention_days"):
        EventLogger(tmp_path, "live", retention_days=days)


def test_retention_none_keeps_every_file(tmp_path: Path) -> None:
    """With retention_days=None nothing is ever deleted, however old."""
    world = World(tmp_path)
    world.start(retention=None)
    for day in range(0, 400, 40):
        world.day = DAY0 + dt.timedelta(days=day)
        em_of(world).update_state(world.ts(), "strategy_manager", blocks(f"d{day}"))
    world.stop()
    assert len(journal_files(tmp_path)) == 10 and check_journal(tmp_path).ok


def test_the_duplicate_window_is_a_config_field_carried_across_restarts(
        tmp_path: Path) -> None:
    """A finished block_id is refused while it is inside the duplicate_window (carried in
    every checkpoint, so restarts and pruning keep it), and routed again once it is out."""
    world = World(tmp_path)
    em = world.start(window=3)
    em.update_state(world.ts(), "strategy_manager", blocks("b0", "b1", "b2"))
    world.stop()
    world.day += dt.timedelta(days=40)  # a new file, the old one pruned
    em = world.start(window=3)
    with pytest.raises(InvalidBlockError, match="b0"):
        em.execute_instruction_blocks(world.ts(), [block("b0")])
    em.update_state(world.ts(), "strategy_manager", blocks("b3"))
    em.update_state(world.ts(), "strategy_manager", [block("b0")])  # out of the window
    assert world.venue.execution_order.count("b0") == 2


def test_a_journal_of_another_lifecycle_or_format_is_refused(tmp_path: Path) -> None:
    """A checkpoint written under another lifecycle table, or an unknown format, refuses
    recovery saying which, instead of guessing."""
    world = World(tmp_path)
    world.start().update_state(world.ts(), "strategy_manager", blocks("a"))
    world.stop()
    current = tmp_path / "execution_manager_events.jsonl"
    text = current.read_text()
    from fsm_exec.core.lifecycle import TABLE_HASH
    current.write_text(text.replace(TABLE_HASH, "0123456789abcdef"))
    with pytest.raises(JournalCorruptError, match="another block lifecycle"):
        world.start()
    current.write_text(text.replace('"format":2', '"format":7'))
    with pytest.raises(JournalCorruptError, match="journal format 7 is unknown"):
        world.start()


def test_a_forked_child_never_writes_the_parents_records(tmp_path: Path) -> None:
    """A child forked with an open buffered logger drops it: at exit it writes nothing, so
    the parent's records are not written twice (no duplicate seq, no duplicate CSV rows)."""
    log = EventLogger(tmp_path, "backtest")
    log.log_event("2025-01-01T00:00:00+00:00", "tick", EM, {"n": 1})
    pid = os.fork()
    if pid == 0:  # the child: what the interpreter's exit would do (atexit), then out
        from fsm_exec.journal.handles import close_all as _close_all
        _close_all()
        os._exit(0)
    os.waitpid(pid, 0)
    log.log_event("2025-01-01T00:00:00+00:00", "tick", EM, {"n": 2})
    log.close()
    seqs = [r.seq for r in read_journal(tmp_path)]
    assert seqs == [1, 2]


# ------------------------------------------------------------------------ 400 days


#: Seeds of the 400-day run: 3 in CI; ``FSM_EXEC_LONGRUN_SEEDS=200`` for a nightly run.
LONGRUN_SEEDS = range(1, 1 + int(os.environ.get("FSM_EXEC_LONGRUN_SEEDS", "3")))


@pytest.mark.parametrize("seed", LONGRUN_SEEDS)
def test_four_hundred_days_of_a_live_deployment(tmp_path: Path, seed: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """400 simulated days, retention 30: daily blocks, resubmissions, halts left for weeks,
    idle months, clean restarts and crashes (inside calls, cut back to the durable records,
    sometimes torn). After every restart: nothing accepted lost, nothing finished run
    again, a halt still a halt, check clean."""
    rng = random.Random(seed)
    durable = Durable()
    monkeypatch.setattr(os, "fsync", durable)
    world = World(tmp_path / "logs")
    world.start()
    confirmed: list[str] = []  # accepted: the call that submitted them returned
    halted = False
    n = restarts = crashes = 0

    def after_restart() -> None:
        em = em_of(world)
        status = em.get_execution_status()
        for b in confirmed:
            assert em.block_state(b) is not None, f"{b} was lost"
        order = world.venue.execution_order
        assert len(order) == len(set(order)), f"executed twice: {order}"
        if halted:
            assert status["halted"], "a halt was forgotten"
        report = check_journal(world.log_dir)
        assert report.ok, report.problems

    day = 0
    while day < 400:
        world.day = DAY0 + dt.timedelta(days=day)
        em = em_of(world)
        roll = rng.random()
        try:
            if roll < 0.08 and confirmed:  # a finished or queued block submitted again
                with pytest.raises(InvalidBlockError):
                    em.update_state(world.ts(), "strategy_manager",
                                    [block(rng.choice(confirmed))])
            if halted and rng.random() < 0.1:
                em.update_state(world.ts(9), "manual")
                halted = False
            if rng.random() < 0.06:
                world.positions.failures.append(True)  # this day's hand-off fails: halt
            if rng.random() < 0.12:
                world.crash_after = rng.randrange(1, 12)  # the process dies mid-call
            batch = []
            for _ in range(rng.randrange(0, 4)):
                n += 1
                batch.append(block(f"b{n}"))
            status = em.update_state(world.ts(), "strategy_manager", batch or None)
            confirmed.extend(b["block_id"] for b in batch)
            halted = halted or status["halted"]
            world.crash_after = None
            if rng.random() < 0.05:
                world.stop()
                world.start()
                restarts += 1
                after_restart()
        except Crash:
            world.crash_after = None
            crashes += 1
            world.kill(durable, rng)
            world.start()
            halted = halted or em_of(world).halted
            after_restart()
        day += rng.choice([1] * 20 + [rng.randrange(31, 60)])  # now and then an idle month
    world.crash_after = None
    world.positions.failures.clear()
    em = em_of(world)
    em.update_state(world.ts(), "manual")
    assert not em.halted and em.queued_block_ids == ()
    for b in confirmed:
        assert em.block_state(b) in (BlockState.SUCCESS, BlockState.FAILED, None), b
    order = world.venue.execution_order
    assert len(order) == len(set(order))
    if seed <= 3:  # the CI seeds are known to crash and restart often (others may not)
        assert crashes >= 3 and restarts >= 3, (crashes, restarts)
    days = {p.name.split(".")[1] for p in journal_files(world.log_dir)[:-1]}
    assert len(days) <= 32, sorted(days)  # retention (30 days) kept it bounded
    print(f"{len(confirmed)} blocks, {crashes} crashes, {restarts} restarts, "
          f"{len(journal_files(world.log_dir))} files kept")


@pytest.mark.parametrize(("before", "after"), [(5, 2), (2, 5)])
def test_a_restart_with_another_duplicate_window_reads_back(tmp_path: Path, before: int,
                                                            after: int) -> None:
    """The operator changes duplicate_window between two runs on the same day (one file):
    the new run's checkpoint holds the new window's ids. The journal still checks clean
    and recovers, and the new window decides what is refused (a wider one cannot recall
    what the narrower one had already forgotten)."""
    world = World(tmp_path)
    em = world.start(window=before)
    em.update_state(world.ts(), "strategy_manager", blocks("b0", "b1", "b2", "b3", "b4"))
    world.stop()
    em = world.start(window=after)
    em.update_state(world.ts(), "strategy_manager", blocks("c0"))
    world.stop()
    assert check_journal(tmp_path).ok, check_journal(tmp_path).problems
    em = world.start(window=after)
    remembered = [*["b0", "b1", "b2", "b3", "b4"][-before:], "c0"][-after:]
    for old in remembered:
        with pytest.raises(InvalidBlockError, match=old):
            em.execute_instruction_blocks(world.ts(), [block(old)])
    forgotten = "b2"
    assert forgotten not in remembered
    em.update_state(world.ts(), "strategy_manager", [block(forgotten)])
    assert world.venue.execution_order.count(forgotten) == 2
    world.stop()
    assert check_journal(tmp_path).ok
