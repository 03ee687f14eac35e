"""The event log: JSON lines per component, buffered in backtest, fsynced in live mode, so
that it doubles as the crash-recovery journal. Its codec: :mod:`~fsm_exec.journal.codec`;
files: :mod:`~fsm_exec.journal.files`; reader: :mod:`~fsm_exec.journal.reader`; CSV export:
:mod:`~fsm_exec.journal.export`; what it holds open: :mod:`~fsm_exec.journal.handles`."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fsm_exec.core.errors import EventLogError
from fsm_exec.core.interrupts import interrupts_deferred
from fsm_exec.journal.codec import (
    APPEND_NEWLINE,
    CHECKPOINT,
    DUMPS,
    MAX_LINE_BYTES,
    encode_default,
    iso_timestamp,
)
from fsm_exec.journal.export import export_csv
from fsm_exec.journal.files import (
    FileOwner,
    files_of,
    first_seq,
    fsync_dir,
    journal_files,
    journal_name,
    journal_stem_of,
    last_seq,
    open_append,
    repair_torn_tail,
)
from fsm_exec.journal.handles import (
    CLOSED,
    ROTATE_BYTES,
    Held,
    Journal,
    file_bytes,
    flush,
    no_time,
    open_journal,
    open_loggers,
    prune,
    release,
    settle,
    too_long,
    utc_today,
    write_line,
)
from fsm_exec.journal.handles import JournalLossError as JournalLossError
from fsm_exec.journal.idle import STATE_UPDATE, IdleRun, encode_line
from fsm_exec.journal.lock import Owners, take_directory
from fsm_exec.journal.schema import MANAGER
from fsm_exec.observe.oplog import MIRRORED, mirror

MODES = ("backtest", "live")


_MAX_RETENTION_DAYS = 36_500


FsyncListener = Callable[[float], None]


class EventLogger:
    """Writes each component's events to ``<log_dir>/<component>_events.jsonl``.

    One writer per directory: opening takes an exclusive OS lock (``.lock``; released by the
    OS if the process dies), and a second logger on the same directory, in this process or
    another, is refused with :class:`JournalLockedError` naming the holder's pid. Writes
    from any thread are serialized: a record is written whole, with the next ``seq``, or not
    at all.

    ``backtest``: buffered writes (flushed when full, at :meth:`close` or the end of a
    ``with`` block, and, for a logger never closed, when it is garbage-collected or at
    interpreter exit), never fsynced unless ``fsync=True``: a backtest is rerun, not
    recovered. ``live``: every record is written before :meth:`log_event` returns and
    fsynced with it unless ``sync=False`` (then the next synced record or :meth:`sync` makes
    it durable). ``fsync``: ``None`` (the default) fsyncs as the mode says; ``True`` in
    backtest fsyncs as live mode does (a backtest journal meant to survive a power cut);
    ``False`` is refused in live mode. Opening a directory that holds a journal appends
    to it (a torn last line is set aside as ``<file>.torn``) and never deletes anything.
    ``files_like``: every file it creates (a new journal file, a ``.torn``, the lock) gets
    the owner, group and permission bits of this file (an operator's tool run as root on
    a service user's journal: changing the owner needs root). ``new_dir``: ``log_dir``
    must not exist yet (it is made, its parents too): one already there is refused with
    :class:`EventLogError` (what :func:`~fsm_exec.backtest_run` uses). A directory this
    logger made (``new_dir`` or not) holds no journal to read back; there a backtest
    journal's file is made when its records are first written to it (a flush).

    Components that checkpoint (the :class:`~fsm_exec.ExecutionManager`) start every new
    file with a checkpoint (:meth:`checkpoint`), on their first write after a restart and
    when the day changes (live, UTC or as ``today`` says) or ``checkpoint_every`` records
    have passed; only then are whole rotated files older than ``retention_days`` that end
    before the newest checkpoint deleted (``None`` keeps everything). Other components
    rotate daily and are pruned by age. A write that fails raises :class:`EventLogError`
    (``EXEC-009``), and so does a directory that cannot be opened or locked (a full disk:
    nothing is left taken).
    """

    def __init__(self, log_dir: Path | str = "logs/events", mode: str = "backtest", *,
                 retention_days: int | None = 30, today: Callable[[], dt.date] = utc_today,
                 buffer_bytes: int = 1 << 20, checkpoint_every: int | None = 100_000,
                 fsync: bool | None = None, files_like: Path | str | None = None,
                 new_dir: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if fsync is not None and type(fsync) is not bool:
            raise ValueError(f"fsync must be None (the mode's way), True or False, got "
                             f"{fsync!r}")
        if fsync is False and mode == "live":
            raise ValueError("fsync=False is refused in live mode: a live journal is the "
                             "crash-recovery record, every barrier is fsynced")
        if retention_days is not None and (
                type(retention_days) is not int
                or not 1 <= retention_days <= _MAX_RETENTION_DAYS):
            raise ValueError(f"retention_days must be None (keep everything) or a whole "
                             f"number of days from 1 to {_MAX_RETENTION_DAYS}, got "
                             f"{retention_days!r}")
        if checkpoint_every is not None and (type(checkpoint_every) is not int
                                             or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be None or an int >= 1, got "
                             f"{checkpoint_every!r}")
        if type(buffer_bytes) is not int or buffer_bytes < 0:
            raise ValueError(f"buffer_bytes must be an int >= 0, got {buffer_bytes!r}")
        if type(new_dir) is not bool:
            raise ValueError(f"new_dir must be True or False, got {new_dir!r}")
        self.log_dir = log_dir if isinstance(log_dir, Path) else Path(log_dir)  # no parse
        self.mode = mode
        #: The run this journal belongs to (set by :func:`~fsm_exec.backtest_run`): a
        #: manager writing here takes it as its ``name`` unless given one.
        self.run_id: str | None = None
        self.retention_days = retention_days
        self.checkpoint_every = checkpoint_every
        self._today = today
        self._buffer = buffer_bytes
        self._live = mode == "live"
        # Records (and new files) are fsynced: always in live mode, in backtest if asked.
        self._durable = self._live or bool(fsync)
        self._buffered = not self._live and buffer_bytes > 0  # the backtest hot path
        self._last_component: str | None = None  # the journal written to last, at hand
        self._last_journal: Journal | None = None
        self._closed = False
        self._last_ts: Any = object()
        self._last_iso = ""
        self._good_iso = ""  # the last timestamp text no_time() let through
        self._write_lock = threading.RLock()
        self._fsync_listeners: list[FsyncListener] = []
        self._fsynced: list[float] = []  # timings not yet given to the listeners
        self._owners = Owners()  # component -> its one manager in this process
        try:
            # the files it creates are the journal's owner's (an operator's tool as root)
            self._owner = FileOwner.like(files_like) if files_like is not None else None
        except OSError as exc:
            raise EventLogError(f"cannot read the owner of {files_like}: {exc.strerror}",
                                exc) from exc
        # made (or refused, new_dir) and locked; on failure nothing is left taken
        lock_fd, self._new_dir = take_directory(self.log_dir, self._owner, new=new_dir)
        # A buffered backtest journal in a new directory makes its file when it first
        # writes to it (a flush): a run's set-up touches no journal file.
        self._defer = self._new_dir and self._buffered and not self._durable
        # Everything taken from here on is in _held: released by close(), or by the
        # finalizer if this logger is dropped unclosed (or alive at interpreter exit).
        self._held = Held(lock_fd, self._durable)
        self._journals = self._held.journals
        self._finalizer = weakref.finalize(self, release, self._held)
        open_loggers.add(self)

    # -------------------------------------------------------------- journals
    def path_for(self, component: str) -> Path:
        """The current journal file of ``component``."""
        return self.log_dir / journal_name(component)

    def has_history(self, component: str) -> bool:
        """True if ``component`` has records in this directory (from this process or an
        earlier one): a manager must then recover before it writes. Opens the component's
        journal (the manager writes to it next): a journal opened on no file has history
        only once something is written to it, without a file read."""
        j = self._journals.get(component)
        if j is not None and (j.seq or j.buf or j.idle):
            return True
        if j is None and not self._closed:  # opened now: the manager writes to it next
            with self._write_lock:
                j = self._journal(component)
        if j is not None and j.fresh:  # no file was there: only what was written since
            return bool(j.seq or j.buf)
        return any(p.stat().st_size for p in journal_files(self.log_dir, component))

    def claim(self, component: str, owner: object) -> None:
        """Make ``owner`` the one writer of ``component``'s journal here, or refuse with
        :class:`JournalLockedError` (``EXEC-018``): see
        :meth:`~fsm_exec.journal.lock.Owners.claim`."""
        self._owners.claim(self.log_dir, component, owner)

    def taken_by_another(self, component: str, owner: object) -> bool:
        """True if a manager other than ``owner`` holds ``component``'s journal here and
        still serves it (what :meth:`claim` would refuse for ``owner``)."""
        return self._owners.taken_by_another(component, owner)

    def add_fsync_listener(self, listener: FsyncListener) -> None:
        """Call ``listener(seconds)`` after every fsync of a journal file (metrics)."""
        self._fsync_listeners.append(listener)

    def remove_fsync_listener(self, listener: FsyncListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        with contextlib.suppress(ValueError):
            self._fsync_listeners.remove(listener)

    def _open(self, component: str) -> Journal:
        if self._closed:
            raise EventLogError("event logger is closed")
        name = journal_name(component)
        for other in self._journals.values():
            if other.path.name == name:  # "Foo" and "foo" share a file: one writer, one seq
                self._journals[component] = other
                return other
        path = self.log_dir / name
        try:
            j = open_journal(self.log_dir, component, path, self._today(), owner=self._owner,
                             durable=self._durable, new_dir=self._new_dir, defer=self._defer)
        except OSError as exc:
            raise EventLogError(f"cannot open journal {path}: {exc.strerror}", exc) from exc
        self._journals[component] = j
        return j

    def _journal(self, component: str) -> Journal:
        if component is self._last_component:
            j = self._last_journal
            assert j is not None
            return j
        j = self._journals.get(component) or self._open(component)
        self._last_component, self._last_journal = component, j
        return j

    def _resync(self, j: Journal, *, report: bool = True) -> None:
        """A write was cut short (an interrupt) or an fsync failed: believe the file, not
        memory. If the file holds fewer records than were counted (a failed fsync lost
        them), raise :class:`JournalLossError` once the count agrees again (``report``):
        whoever acted on those records must learn it."""
        counted = j.seq
        self._flush_journal(j)
        try:
            repair_torn_tail(j.path, self._owner)
            seq = 0
            for p in reversed(files_of(self.log_dir, journal_stem_of(j.path))):
                seq = last_seq(p)
                if seq:
                    break
        except OSError as exc:
            raise EventLogError(f"cannot read journal {j.path}: {exc.strerror}", exc) from exc
        j.seq = seq
        j.unsynced = True
        j.dirty = False
        if report and seq < counted:
            raise JournalLossError(j.path, seq + 1, counted)

    def resync(self, component: str | None = None) -> None:
        """Make memory agree with the files again after an interrupted write, and push
        buffered records to the files: ``component``'s journal, or all of them
        (``ExecutionManager.reopen`` calls it for its own, which it recovers from)."""
        with self._write_lock:
            journals = (set(self._journals.values()) if component is None
                        else {j for c, j in self._journals.items() if c == component})
            for j in journals:
                if j.dirty:
                    self._resync(j, report=False)  # the reader recovers from the files
                else:
                    self._flush_journal(j)

    def _rotate(self, j: Journal, today: dt.date) -> None:
        """Close the current file under a name of its own, and start a new current file."""
        if j.fresh and not (j.seq or j.buf or j.idle):  # an empty new file: nothing to close
            j.day = today
            return
        self._flush_journal(j)
        if j.unsynced and self._durable:
            self._fsync(j)
        j.fresh = False
        first = first_seq(j.path)
        if first is not None:
            stem = journal_stem_of(j.path)
            target = j.path.with_name(f"{stem}.{j.day.isoformat()}.{first}.jsonl")
            os.close(j.fd)
            j.fd = -1
            os.rename(j.path, target)
            j.fd = open_append(j.path, self._owner)
            if self._durable:
                fsync_dir(self.log_dir)
        j.day = today

    # -------------------------------------------------------------- checkpoints
    def checkpoint_due(self, component: str) -> str | None:
        """What a checkpointing component should write at its next safe point: ``rotate``
        (a new day, or ``checkpoint_every`` records since the last checkpoint in a file of
        :data:`ROTATE_BYTES` or more: a new file that starts with a checkpoint),
        ``checkpoint`` (``checkpoint_every`` records since the last one), or ``None``."""
        j = self._journals.get(component)
        if j is None or not j.managed:
            return None
        if self._live and self._today() > j.day:
            return "rotate"
        if self.checkpoint_every is not None and j.since_checkpoint >= self.checkpoint_every:
            # a file past ROTATE_BYTES: the checkpoint starts a new one, so that a reader
            # starting from the newest checkpoint reads one bounded file (flat in length)
            return "rotate" if file_bytes(j) >= ROTATE_BYTES else "checkpoint"
        return None

    def checkpoint(self, component: str, data: dict[str, Any], *, timestamp: Any = None,
                   new_file: bool = True) -> int:
        """Write a checkpoint record for ``component`` (everything its recovery needs), as
        the first record of a new file when ``new_file`` (the current one is rotated), and
        make it durable before anything else is written; then prune old files. Returns the
        checkpoint's ``seq``. From now on the component's files rotate only here."""
        with self._write_lock:
            j = self._journal(component)
            if j.dirty:
                self._resync(j)
            today = self._today()
            try:
                if new_file:
                    self._rotate(j, today)
                # written_on first: start_day reads it from the line's first bytes
                record_data = {"written_on": today.isoformat(), **data}
                # Written through (and fsynced) when records are durable; a backtest
                # journal's is buffered like any record (nothing to make durable).
                iso = iso_timestamp(timestamp)
                if component == MANAGER and (refused := no_time(j, CHECKPOINT, iso)):
                    raise refused
                self._write(j, iso, CHECKPOINT, component, record_data, sync=True,
                            force=self._durable)
            except OSError as exc:
                j.dirty = True  # a failed fsync (rotation's, or its own): read the file back
                if isinstance(exc, EventLogError):
                    raise
                raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}",
                                    exc) from exc
            j.managed = True
            j.since_checkpoint = 0
            if new_file:
                with contextlib.suppress(OSError):  # housekeeping never fails a write
                    prune(self.log_dir, j, today, self.retention_days)
            seq = j.seq
        if self._fsynced:
            self._tell_fsyncs()
        return seq

    # -------------------------------------------------------------- writing
    def log_event(self, timestamp: Any, event_type: str, component: str,
                  data: dict[str, Any], *, sync: bool = True, checked: bool = False) -> None:
        """Append one record to ``component``'s journal.

        Live: the record is written before this returns and, with ``sync`` (the default),
        fsynced together with every record written before it. ``sync=False`` leaves the
        fsync to the next synced record or :meth:`sync` (group commit): the manager uses it
        for records that no action of its depends on. Safe from any thread. ``data`` is
        the caller's no more: a buffered journal encodes it when it writes the record (a
        ``state_update`` may be held back for the calls after it), so change a copy.
        ``checked``: the caller proved ``data`` free of NaN and infinities (which orjson
        writes as ``null``): a buffered journal does not scan the line for them; and
        ``timestamp`` a time (the manager's canonical one), not looked at again.
        """
        with self._write_lock:
            j = (self._last_journal if component is self._last_component
                 else self._journal(component))
            if j is None or self._closed:
                raise EventLogError("event logger is closed")
            if j.dirty:
                self._resync(j)
            if type(timestamp) is str:
                iso = timestamp  # the manager's canonical timestamps: as they are
            elif timestamp is self._last_ts and timestamp is not None:
                iso = self._last_iso  # the events of one update share its timestamp
            else:
                iso = iso_timestamp(timestamp)
                self._last_ts, self._last_iso = timestamp, iso
            if iso is not self._good_iso:  # (one look a call: its records share it)
                if checked:
                    self._good_iso = iso  # the manager's canonical time
                elif component == MANAGER:
                    if refused := no_time(j, event_type, iso):
                        raise refused
                    self._good_iso = iso
            if self._buffered:
                # The backtest hot path: _write, inlined (five of these per block).
                if event_type == STATE_UPDATE:  # held back: the next calls may join it
                    run = j.idle
                    if run is not None and run.join(component, iso, data):
                        return  # one more call that changed nothing: no bytes
                    if run is not None:
                        settle(j)
                    j.idle = IdleRun(component, iso, data)
                    return
                if j.idle is not None:
                    settle(j)  # the idle calls before this record, first
                seq = j.seq + 1
                record = {"seq": seq, "timestamp": iso, "event_type": event_type,
                          "component": component, "data": data}
                try:
                    line = DUMPS(record, default=encode_default, option=APPEND_NEWLINE)
                except orjson.JSONEncodeError:
                    line = encode_line(record)  # the careful path names what it cannot
                else:  # NaN and infinities are written null: the careful path (rare)
                    if not checked and b"null" in line:
                        line = encode_line(record)
                n = len(line)
                if n > MAX_LINE_BYTES:
                    raise too_long(j, event_type, n, MAX_LINE_BYTES)
                j.dirty = True
                if j.buffered and j.buffered + n > self._buffer:
                    self._flush_journal(j)  # room first: if that fails, this is not written
                j.buf += line
                j.buffered += n
                j.seq = seq
                j.since_checkpoint += 1
                j.dirty = False
                if event_type in MIRRORED:
                    mirror(event_type, component, data)
                return
            if self._live and not j.managed:
                try:
                    today = self._today()
                    if today > j.day:
                        self._rotate(j, today)
                        prune(self.log_dir, j, today, self.retention_days)
                except OSError as exc:
                    j.dirty = True  # read the files back before the next write
                    raise EventLogError(f"cannot write journal {j.path}: {exc.strerror}",
                                        exc) from exc
            self._write(j, iso, event_type, component, data, sync=sync)
        if self._fsynced:
            self._tell_fsyncs()
        if event_type in MIRRORED:
            mirror(event_type, component, data)

    def join_idle(self, component: str, iso: str, ms: float) -> bool:
        """One more call of ``component`` that says what its held-back ``state_update`` says
        (the caller knows: it wrote that record, and nothing of it changed since) but its
        time taken, ``ms``: True if it joined the run (no bytes, as :meth:`log_event` would
        have joined it), False if no run is held back (then log the call's record)."""
        with self._write_lock:
            j = self._journals.get(component)
            if j is None or j.idle is None or j.dirty or self._closed:
                return False
            return j.idle.extend(iso, ms)

    def _write(self, j: Journal, iso: str, event_type: str, component: str,
               data: dict[str, Any], *, sync: bool, force: bool = False) -> None:
        """Encode and write one record with the next seq; ``dirty`` until it is counted."""
        if j.idle is not None:
            settle(j)  # the idle calls before it, first
        seq = j.seq + 1
        line = encode_line({"seq": seq, "timestamp": iso, "event_type": event_type,
                            "component": component, "data": data})
        if len(line) > MAX_LINE_BYTES:
            raise too_long(j, event_type, len(line), MAX_LINE_BYTES)
        j.dirty = True
        if self._live or force or not self._buffer:
            self._flush_journal(j)
            self._write_durably(j, line, sync)
        else:
            if j.buffered and j.buffered + len(line) > self._buffer:
                # Make room first: if that fails, this record is not written at all.
                self._flush_journal(j)
            j.buf += line
            j.buffered += len(line)
        j.seq = seq
        j.since_checkpoint += 1
        j.dirty = False

    def _write_durably(self, j: Journal, line: bytes, sync: bool = True) -> None:
        write_line(j, line, self._fsync if sync and self._durable else None)

    def _fsync(self, j: Journal) -> None:
        timed = bool(self._fsync_listeners)
        t0 = time.perf_counter() if timed else 0.0
        os.fsync(j.fd)
        j.unsynced = False
        if timed:  # told once the write is whole and counted, outside the lock
            self._fsynced.append(time.perf_counter() - t0)

    def _tell_fsyncs(self) -> None:
        """Give the fsync timings taken so far to the listeners: after the lock is released
        and the records are counted, so that a listener may write (or fail) freely."""
        with self._write_lock:
            taken, self._fsynced = self._fsynced, []
        for took in taken:
            for listener in self._fsync_listeners:
                with contextlib.suppress(Exception):  # metrics never break the journal
                    listener(took)

    _flush_journal = staticmethod(flush)

    def sync(self) -> None:
        """Make every record written so far durable (fsync what is not yet; buffered
        backtest records are written to the files first)."""
        with self._write_lock:
            for j in set(self._journals.values()):
                if j.fd == CLOSED:
                    continue
                self._flush_journal(j)
                if j.unsynced and self._durable:
                    try:
                        self._fsync(j)
                    except OSError as exc:
                        # What no fsync covered may be gone from the file (a kernel may drop
                        # the pages): read the last seq back before the next write, so no
                        # record after it leaves a gap.
                        j.dirty = True
                        raise EventLogError(f"cannot write journal {j.path}: "
                                            f"{exc.strerror}", exc) from exc
        if self._fsynced:
            self._tell_fsyncs()

    def flush(self) -> None:
        """Push buffered records to the files (backtest); live records are already there."""
        with self._write_lock:
            for j in set(self._journals.values()):
                if j.fd != CLOSED:
                    self._flush_journal(j)

    def close(self) -> None:
        """Flush (and fsync, if its records are fsynced) and close every journal, and
        release the directory's lock. Safe to call twice; a ``with`` block calls it."""
        if self._closed:
            return
        with self._write_lock, interrupts_deferred():  # an interrupt: raised once closed
            failure: EventLogError | None = None
            try:
                for j in set(self._journals.values()):  # every journal, whatever fails
                    if j.fd == CLOSED:
                        continue
                    try:
                        self._flush_journal(j)
                        if j.unsynced and self._durable:
                            try:
                                self._fsync(j)
                            except OSError as exc:
                                raise EventLogError(f"cannot write journal {j.path}: "
                                                    f"{exc.strerror}", exc) from exc
                    except EventLogError as exc:
                        failure = failure or exc
                if failure is not None:
                    raise failure
            finally:
                self._let_go()
                open_loggers.discard(self)
        if self._fsynced:
            self._tell_fsyncs()

    def _let_go(self) -> None:
        """Close every file and the lock's descriptor, writing nothing more."""
        self._closed = True
        self._finalizer.detach()
        for j in set(self._journals.values()):
            j.buf.clear()
            j.idle = None
        # Nothing buffered is left to write: this closes the files and the lock's
        # descriptor (in a forked child the parent's keeps the lock).
        release(self._held)
        self._last_component, self._last_journal = None, None

    def _abandon(self) -> None:
        """Forget everything without writing (a forked child's inherited copy, or what a
        killed process leaves)."""
        self._let_go()
        self._write_lock = threading.RLock()

    def __enter__(self) -> EventLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TypeError("an EventLogger owns open files and a directory lock: it is not "
                        "pickled; open a new one in the other process")

    # -------------------------------------------------------------- exporting
    def export_csv(self, results_dir: Path | str, backtest_id: str, *,
                   workers: int = 1) -> Path:
        """:func:`~fsm_exec.export_csv` of these journals (written out first)."""
        self.flush()
        return export_csv(self.log_dir, results_dir, backtest_id, workers=workers)
