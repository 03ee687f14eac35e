"""Issue 26 item 7: a run's directory is new, so its journals start on no file. A logger that
made its directory (``backtest_run``, or any ``EventLogger`` on a missing directory) reads
nothing back, and a buffered backtest journal makes its file only when it first writes to
it. These pin that the shortcut keeps every promise: the lock is still exclusive (before any
journal file exists), nothing buffered is lost on any path (close, flush, sync, a logger
collected unclosed, a failed first write), a directory already there is appended to as
before, the files made later are ``files_like``'s, and live or fsynced journals still make
their files at once."""

from __future__ import annotations

import datetime as dt
import errno
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm_exec import (
    EventLogError,
    EventLogger,
    ExecutionManager,
    InvalidArgumentError,
    JournalLockedError,
    backtest_run,
    check_journal,
    read_journal,
)
from fsm_exec.journal import files, handles, lock
from fsm_exec.sim.venues import (
    SimPositionHandler,
    SimReconciliation,
    SimVenue,
    StaticDataProvider,
)

from kit import T, blocks

EM = "ExecutionManager"


def manager(log: Any) -> ExecutionManager:
    rc = SimReconciliation(None)
    return ExecutionManager({}, StaticDataProvider(), "backtest", SimPositionHandler(rc),
                            SimVenue(), rc, event_logger=log)


def names(log_dir: Path) -> list[str]:
    return sorted(p.name for p in log_dir.iterdir())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_run_holds_only_its_lock_until_it_writes(tmp_path: Path) -> None:
    """A run's set-up makes its directory and lock, and no journal file: the files are
    made, holding every record, when the journal is closed."""
    log = backtest_run(tmp_path, run_id="r")
    em = manager(log)
    em.update_state(T(0), "strategy_manager", blocks("a"))
    assert names(tmp_path / "r") == [".lock"]
    em.close()
    assert names(tmp_path / "r") == [".lock", "backtest_run_events.jsonl",
                                     "execution_manager_events.jsonl"]
    assert check_journal(tmp_path / "r").blocks_executed == 1
    assert [r.event_type for r in read_journal(tmp_path / "r", "BacktestRun")] == [
        "run_started"]


def test_the_lock_is_exclusive_before_any_journal_file_exists(tmp_path: Path) -> None:
    """A second writer on a run's directory is refused while no journal file is made yet,
    in this process and in another; once the run is closed, its directory is taken (and
    appended to, every record kept)."""
    log = backtest_run(tmp_path, run_id="r")
    em = manager(log)
    assert names(tmp_path / "r") == [".lock"]
    with pytest.raises(JournalLockedError, match=f"process {os.getpid()}"):
        EventLogger(tmp_path / "r", "backtest")
    code = ("import sys\nfrom fsm_exec import EventLogger, JournalLockedError\n"
            "try:\n    EventLogger(sys.argv[1], 'backtest').close()\n"
            "except JournalLockedError as e:\n    print('refused', e.pid); sys.exit(3)\n")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")],
                           capture_output=True, text=True, check=False)
    assert (other.returncode, other.stdout.split()) == (3, ["refused", str(os.getpid())])
    em.update_state(T(0), "strategy_manager", blocks("a"))
    em.close()
    again = EventLogger(tmp_path / "r", "backtest")
    again.log_event(T(1), "later", "BacktestRun", {})
    again.close()
    assert [r.seq for r in read_journal(tmp_path / "r", "BacktestRun")] == [1, 2]


def test_a_run_dropped_unclosed_writes_everything_and_leaks_nothing(tmp_path: Path) -> None:
    """A run's logger and manager garbage-collected without close(): the journal files are
    made with every record, the lock and every descriptor released."""
    gc.collect()
    before = open_fds()

    def run() -> None:
        em = manager(backtest_run(tmp_path, run_id="r"))
        em.update_state(T(0), "strategy_manager", blocks("a", "b"))

    run()
    gc.collect()
    assert open_fds() == before
    report = check_journal(tmp_path / "r")
    assert report.ok and (report.blocks_accepted, report.blocks_executed) == (2, 2)
    EventLogger(tmp_path / "r", "backtest").close()  # the lock is free


@pytest.mark.parametrize("how", ["flush", "sync", "export_csv"])
def test_flush_and_sync_make_the_file_of_a_journal_not_written_yet(tmp_path: Path,
                                                                   how: str) -> None:
    """flush(), sync() and the CSV export write a new journal's buffered records to its
    file, made now; a journal never written to makes no file."""
    log = EventLogger(tmp_path / "new", "backtest")
    log.log_event(T(0), "tick", "Strategy", {"i": 1})
    assert not log.has_history("Quiet")  # opened, never written
    if how == "export_csv":
        log.export_csv(tmp_path / "out", "bt")
    else:
        getattr(log, how)()
    assert [r.data for r in read_journal(tmp_path / "new", "Strategy")] == [{"i": 1}]
    assert names(tmp_path / "new") == [".lock", "strategy_events.jsonl"]
    log.close()
    assert names(tmp_path / "new") == [".lock", "strategy_events.jsonl"]


def test_a_file_that_cannot_be_made_keeps_the_records_for_the_next_try(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write of a new journal fails to make its file (too many open files):
    EventLogError, nothing lost; the next flush makes it and writes every record once."""
    log = EventLogger(tmp_path / "new", "backtest")
    for i in range(3):
        log.log_event(T(i), "tick", "Strategy", {"i": i})
    real = files.open_append

    def no_descriptor(path: Path, owner: Any = None) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(handles, "open_append", no_descriptor)
    with pytest.raises(EventLogError, match=r"cannot open journal .*Too many open files"):
        log.flush()
    monkeypatch.setattr(handles, "open_append", real)
    log.log_event(T(3), "tick", "Strategy", {"i": 3})
    log.close()
    assert [r.data["i"] for r in read_journal(tmp_path / "new", "Strategy")] == [0, 1, 2, 3]
    assert [r.seq for r in read_journal(tmp_path / "new", "Strategy")] == [1, 2, 3, 4]


def test_a_journal_in_a_new_directory_reads_and_lists_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening journals in a directory the logger made reads no file and lists no
    directory; in a directory that was there, the journal is read back as before."""
    calls: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)
        return call

    for name in ("journal_files", "last_seq", "repair_torn_tail", "start_day"):
        monkeypatch.setattr(handles, name, counted(name, getattr(handles, name)))
    for mode in ("backtest", "live"):
        with EventLogger(tmp_path / mode, mode) as log:
            assert not log.has_history(EM)
            log.log_event(T(0), "tick", EM, {})
            log.log_event(T(0), "tick", "Other", {})
    assert calls == []
    with EventLogger(tmp_path / "live", "live") as log:  # there already: read back
        log.log_event(T(1), "tick", EM, {})
    assert "last_seq" in calls
    assert [r.seq for r in read_journal(tmp_path / "live")] == [1, 2]


@pytest.mark.parametrize(("mode", "fsync"), [("live", None), ("backtest", True)])
def test_a_durable_journal_in_a_new_directory_makes_its_file_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
        fsync: bool | None) -> None:
    """Live, or backtest with fsync=True: a new directory's journal file is made when the
    journal opens, and fsynced into the directory; its records are fsynced as before."""
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    log = EventLogger(tmp_path / "new", mode, fsync=fsync)
    assert not log.has_history(EM)
    assert names(tmp_path / "new") == [".lock", "execution_manager_events.jsonl"]
    assert len(synced) == 1  # the directory, for the new file's name
    log.log_event(T(0), "tick", EM, {})
    if mode == "backtest":
        log.close()
    assert len(synced) == 2  # the record
    assert [r.seq for r in read_journal(tmp_path / "new")] == [1]
    log.close()


def test_a_directory_made_by_another_writer_meanwhile_is_read_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory made here whose lock file another writer made first (it came and went
    between the two) is not new: its journal is read back and appended to."""
    log_dir = tmp_path / "d"
    with EventLogger(tmp_path / "other", "backtest") as other:
        other.log_event(T(0), "tick", EM, {})
    real = lock._make_dir

    def raced(path: Path, new: bool) -> bool:
        made = real(path, new)
        for p in (tmp_path / "other").iterdir():  # the other writer's lock and journal
            (path / p.name).write_bytes(p.read_bytes())
        return made

    monkeypatch.setattr(lock, "_make_dir", raced)
    with EventLogger(log_dir, "backtest") as log:
        log.log_event(T(1), "tick", EM, {})
    assert [r.seq for r in read_journal(log_dir)] == [1, 2]


def test_new_dir_refuses_a_directory_already_there(tmp_path: Path) -> None:
    """new_dir=True makes the directory (its parents too) and refuses one already there,
    or a file in its place, leaving it as it was; backtest_run names the run id."""
    with EventLogger(tmp_path / "a" / "b", "backtest", new_dir=True):
        pass
    for there in (tmp_path / "a" / "b", tmp_path / "a" / "b" / ".lock"):
        with pytest.raises(EventLogError) as info:
            EventLogger(there, "backtest", new_dir=True)
        assert isinstance(info.value.original_exception, FileExistsError)
    assert names(tmp_path / "a" / "b") == [".lock"]
    with pytest.raises(EventLogError, match="cannot create log directory"):
        EventLogger(tmp_path / "a" / "b" / ".lock" / "c", "backtest", new_dir=True)
    (tmp_path / "r").write_text("a file")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        backtest_run(tmp_path, run_id="r")
    with pytest.raises(InvalidArgumentError, match="new directory"):
        backtest_run(tmp_path, run_id="s", new_dir=False)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="new_dir must be True or False"):
        EventLogger(tmp_path / "t", "backtest", new_dir=1)  # type: ignore[arg-type]
    assert not (tmp_path / "t").exists()


def test_backtest_run_makes_its_base_directory(tmp_path: Path) -> None:
    """The base directory is made when missing, its parents too."""
    with backtest_run(tmp_path / "x" / "runs", run_id="r"):
        pass
    assert names(tmp_path / "x" / "runs" / "r") == [".lock", "backtest_run_events.jsonl"]


def test_the_lock_file_names_its_holder_alone(tmp_path: Path) -> None:
    """The lock file holds the holder's pid and nothing else: a longer pid an earlier
    holder left is cut, never left behind after ours."""
    (tmp_path / lock.LOCK_NAME).write_text("4194304999999\n")
    with EventLogger(tmp_path, "backtest"):
        assert (tmp_path / lock.LOCK_NAME).read_text() == f"{os.getpid()}\n"
        assert lock.lock_holder(tmp_path) == os.getpid()
    with EventLogger(tmp_path / "new", "backtest"):
        assert (tmp_path / "new" / lock.LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_files_made_later_are_files_like_s(tmp_path: Path) -> None:
    """files_like: the lock and a journal file made at the first flush of a new directory
    take the permission bits (and owner) of the given file."""
    model = tmp_path / "model"
    model.write_text("")
    os.chmod(model, 0o604)
    log = EventLogger(tmp_path / "new", "backtest", files_like=model)
    log.log_event(T(0), "tick", EM, {})
    log.close()
    for name in (lock.LOCK_NAME, "execution_manager_events.jsonl"):
        info = (tmp_path / "new" / name).stat()
        assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (
            0o604, model.stat().st_uid, model.stat().st_gid), name
    assert files.journal_files(tmp_path / "new") == [
        tmp_path / "new" / "execution_manager_events.jsonl"]


def test_a_run_under_a_file_is_refused_as_a_directory_that_cannot_be_made(
        tmp_path: Path) -> None:
    """A base directory that is a file: EventLogError naming the run's directory (not a
    run id already used)."""
    (tmp_path / "base").write_text("")
    with pytest.raises(EventLogError, match=r"cannot create log directory .*base.r"):
        backtest_run(tmp_path / "base", run_id="r")


def test_a_run_alive_at_interpreter_exit_makes_its_files(tmp_path: Path) -> None:
    """A run's journals never written to a file yet, still referenced at interpreter exit
    (a framework with no end-of-run hook): their files are made, holding every record."""
    script = (
        "import sys\n"
        "from fsm_exec import backtest_run\n"
        f"log = backtest_run({str(tmp_path)!r}, run_id='r')\n"
        "for i in range(100):\n"
        "    log.log_event(1759276800 + i, 'tick', 'Strategy', {'i': i})\n"
        "sys.exit(0)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(list(read_journal(tmp_path / "r", "Strategy"))) == 100
    assert [r.event_type for r in read_journal(tmp_path / "r", "BacktestRun")] == [
        "run_started"]


_DAY = dt.date(2025, 10, 1)
_OPS = st.lists(st.one_of(
    st.tuples(st.just("log"), st.sampled_from(["A", "B", "a"]), st.integers(1, 4)),
    st.tuples(st.just("checkpoint"), st.sampled_from(["A", "B"]), st.booleans()),
    st.tuples(st.just("flush")), st.tuples(st.just("sync")),
    st.tuples(st.just("history"), st.sampled_from(["A", "B", "C"]))), max_size=25)


@given(_OPS, st.sampled_from([1, 300, 1 << 20]), st.sampled_from([None, 3]))
@settings(deadline=None)
def test_a_new_directory_writes_what_an_empty_one_does(
        ops: list[tuple[Any, ...]], buffer_bytes: int, every: int | None) -> None:
    """Differential: the same writes, checkpoints (rotating files), flushes, syncs and
    history questions on a logger in a directory it made (files made at their first
    write) and on one in an empty directory that was there (files opened at once, read
    back): the same answers, and after close the same files holding the same bytes (a
    journal never written to aside: only the directory that was there has its empty
    file)."""
    with tempfile.TemporaryDirectory() as tmp:
        there = Path(tmp) / "there"
        there.mkdir()
        logs = [EventLogger(Path(tmp) / "new", "backtest", today=lambda: _DAY,
                            buffer_bytes=buffer_bytes, checkpoint_every=every),
                EventLogger(there, "backtest", today=lambda: _DAY,
                            buffer_bytes=buffer_bytes, checkpoint_every=every)]
        assert [log._new_dir for log in logs] == [True, False]
        t = 0
        for op in ops:
            answers: list[Any] = []
            for log in logs:
                if op[0] == "log":
                    for i in range(op[2]):
                        log.log_event(T(t + i), "tick", op[1], {"i": t + i})
                elif op[0] == "checkpoint":
                    answers.append(log.checkpoint(op[1], {"t": t}, timestamp=T(t),
                                                  new_file=op[2]))
                elif op[0] == "history":
                    answers.append(log.has_history(op[1]))
                else:
                    getattr(log, op[0])()
                answers.append(log.checkpoint_due("A"))
            assert answers[: len(answers) // 2] == answers[len(answers) // 2:], op
            t += 10
        for log in logs:
            log.close()
        new, old = ({p.name: p.read_bytes() for p in d.iterdir() if p.name != ".lock"}
                    for d in (Path(tmp) / "new", there))
        assert new == {k: v for k, v in old.items() if v}


def test_a_run_not_written_yet_is_listed(tmp_path: Path) -> None:
    """fsm-exec runs lists a run whose journals are not written yet (going on, or killed
    before its first write: its directory holds only its lock), saying so; once closed it
    is listed with its record."""
    from fsm_exec.tools.runs import list_runs

    em = manager(backtest_run(tmp_path, run_id="going"))
    (tmp_path / "other").mkdir()  # not a run: an empty directory
    (going,) = list_runs(tmp_path)
    assert (going.run_id, going.started, going.ok) == ("going", None, None)
    assert going.problem is not None and going.problem.startswith("nothing written yet")
    em.close()
    (done,) = list_runs(tmp_path)
    assert done.started is not None and done.ok and done.problem is None
