"""``fsm-exec status``: what a journal says about its manager, for the person on call.

Read-only: the journal files are opened for reading only, the directory's lock is never
taken (whether a process holds it is asked with :func:`~fsm_exec.journal.lock.lock_holder`),
and nothing is written, so it is safe while a manager runs. A torn last line (a record
being written) is skipped, as recovery would. The files are all opened first and read
through those descriptors, one consistent snapshot whatever the manager rotates meanwhile
(a rotation while they are being opened makes the opening start again).

The state is the one recovery would rebuild: the records from the newest checkpoint,
replayed (:mod:`fsm_exec.journal.state`). What a checkpoint does not hold (when and on which block
the manager halted, when the oldest queued block was accepted, when the block in flight
entered its state) is looked up in the records before it, newest first, as far as the
journal's history goes.

Ages are the time from a record's timestamp to ``now``. A live record carries the time of
its step (the call's ``timestamp`` advanced by the manager's clock; a restart's records the
wall clock), so the age of the block in flight is the time since it moved there (a journal
written before issue 25: since the call that moved it there began, at most its real time in
that state). A backtest runs on its own time (its data's), so unless
``now`` is given its report is as of its last record, not of the wall clock.

:func:`read_status` returns one JSON-ready dict (its keys are listed in the documentation's
*Operate* guide, ``docs/how-to/operate.md``); :func:`format_status` renders it for a terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fsm_exec.boundary.config import ExecutionConfig
from fsm_exec.boundary.escape import shell_word, terminal_text
from fsm_exec.boundary.timestamps import journal_time
from fsm_exec.core.errors import ERROR_CODES, runbook_link
from fsm_exec.drivers.deadline import state_deadline
from fsm_exec.journal.codec import CHECKPOINT
from fsm_exec.journal.files import JournalCorruptError
from fsm_exec.journal.fold import recovery_state
from fsm_exec.journal.lock import PROC_LOCKS, lock_holder
from fsm_exec.journal.reader import (
    JournalChanged,
    JournalRecord,
    open_journal,
    read_records,
)
from fsm_exec.journal.state import Flight, Replay, ReplayError, in_doubt, resolution_of

#: The version of the ``--json`` object's shape: changes only by adding keys.
STATUS_FORMAT = 1
#: How many queued block ids the report names.
FIRST_IDS = 10
#: The runbook section every next step points into.
RUNBOOK = runbook_link("when-the-manager-halts")
#: Codes that halt the manager (each has a runbook entry).
HALTING_CODES = ("EXEC-002", "EXEC-007", "EXEC-008", "EXEC-009", "EXEC-014", "EXEC-015")
_READ_ATTEMPTS = 5


class StatusUnreadable(ValueError):
    """The journal cannot be read: none there, or a line or record that is not valid
    (``path`` and ``line`` say where, when known)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(terminal_text(message, keep_lines=True))  # shown, never sent
        self.path, self.line = path, line


def runbook_anchor(topic: str) -> str:
    """The link to a runbook entry (``EXEC-002``, ``in-doubt``, ``stuck``)."""
    return runbook_link(topic)


# ------------------------------------------------------------------------ reading


class _Notes:
    """What the records say beyond the replayed state: the halt, the block in flight's
    entry into its state, acceptance times, the last deltas, the config hash."""

    def __init__(self) -> None:
        self.halt: dict[str, Any] | None = None  # code, block_id, at
        self.unrecorded_halt: str | None = None  # a state_update says halted; no record does
        self.entered: tuple[str, str] | None = None  # (block_id, timestamp)
        self.accepted_at: dict[str, str] = {}
        self.deltas: tuple[str, Any] | None = None  # (block_id, deltas as journaled)
        self.config_hash: str | None = None
        self.execution_mode: str | None = None  # the newest component_initialization's
        self.error: dict[str, Any] | None = None  # the last error record: code, message
        self.restored_in_doubt: str | None = None  # restored unsettled, not resolved since

    def see(self, r: JournalRecord, state: Replay) -> None:
        kind, d = r.event_type, r.data
        # The replay has checked each record first: ids are strings, transitions edges.
        if kind == "block_transition":
            block_id = d["block_id"]
            self.entered = (block_id, r.timestamp)
            if "resolved_by" in d:
                self.restored_in_doubt = None
            if "deltas" in d:
                self.deltas = (block_id, d["deltas"])
            if d["trigger"] == "fail" and d.get("halts"):
                self.halt = {"code": d.get("error_code"), "block_id": block_id,
                             "at": r.timestamp}
        elif kind == "block_accepted":
            self.accepted_at[d["block_id"]] = r.timestamp
        elif kind == "manager_halted":
            if self.halt is None or self.halt["code"] != d.get("reason"):
                # not the failure that halted (already noted with its block): EXEC-009
                self.halt = {"code": d.get("reason"), "block_id": d.get("block_id"),
                             "at": r.timestamp}
            self.unrecorded_halt = None
        elif kind == "manager_resumed":
            self.halt = self.unrecorded_halt = None
        elif kind == "recovered":
            if isinstance(d.get("in_doubt"), str):
                self.entered = (d["in_doubt"], r.timestamp)  # restored: its clock restarts
                if d.get("resolution") in ("query_execution", "reroute_at_least_once"):
                    self.restored_in_doubt = d["in_doubt"]
            self.unrecorded_halt = None
        elif kind == "component_initialization":
            self.config_hash = d.get("config_hash")
            mode = d.get("execution_mode")
            self.execution_mode = mode if mode in ("backtest", "live") else None
        elif kind == "error":
            self.error = {"code": d.get("error_code"), "message": d.get("error_message"),
                          "block_id": d.get("block_id")}
        elif kind == "state_update":
            if d.get("halted") is True and not state.halted:
                if self.unrecorded_halt is None:
                    self.unrecorded_halt = r.timestamp
            elif not d.get("halted"):
                self.unrecorded_halt = None
        elif kind == CHECKPOINT:
            self.unrecorded_halt = None
            run = d.get("run")  # the run that wrote it (journals before 2026-12: none)
            if isinstance(run, dict):
                self.config_hash = run.get("config_hash")
                mode = run.get("execution_mode")
                self.execution_mode = mode if mode in ("backtest", "live") else None


class _Snapshot:
    """A journal's files, all open: what status reads, whatever the manager rotates,
    starts or prunes meanwhile (closed by the ``ExitStack`` it was opened with)."""

    def __init__(self, files: list[Path], opened: list[IO[bytes]]) -> None:
        self.files, self.opened = files, opened


def _replay(log_dir: Path, stack: contextlib.ExitStack
            ) -> tuple[Replay, _Notes, _Snapshot, tuple[int, int]]:
    """Replay the recovery records, noting what the report needs, from one consistent
    snapshot of the files (:func:`~fsm_exec.journal.reader.open_journal`): a rotation while
    the files are opened makes the opening start again."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            snap = _Snapshot(*open_journal(log_dir, stack=stack))
        except JournalChanged:
            if attempt == _READ_ATTEMPTS - 1:
                raise StatusUnreadable(
                    f"{log_dir}: its files changed each of the {_READ_ATTEMPTS} times they "
                    "were opened (a manager rotating without pause?); try again") from None
            continue
        except JournalCorruptError as exc:  # a file that is no regular file
            raise StatusUnreadable(exc.message, exc.path, exc.line) from None
        if not snap.files:
            raise StatusUnreadable(f"{log_dir}: holds no ExecutionManager journal")
        notes = _Notes()
        try:  # recovery's own reading (its newest checkpoint checked first), of the snapshot
            state, _, at = recovery_state(log_dir, see=notes.see,
                                          snapshot=(snap.files, snap.opened))
        except ReplayError as exc:
            r = exc.record
            assert r is not None
            raise StatusUnreadable(f"{r.path}:{r.line}: {exc}", r.path, r.line) from None
        except JournalCorruptError as exc:
            raise StatusUnreadable(exc.message, exc.path, exc.line) from None
        return state, notes, snap, at
    raise AssertionError("unreachable")  # pragma: no cover


def _history(snap: _Snapshot, at: tuple[int, int]) -> Iterator[list[JournalRecord]]:
    """The records before the newest checkpoint, a file at a time, newest file first
    (unreadable history ends the search quietly: recovery never reads it)."""
    start_file, start_line = at
    for i in range(start_file, -1, -1):
        try:
            records = [r for r in read_records(snap.files[i], snap.opened[i])
                       if i < start_file or r.line < start_line]
        except (OSError, JournalCorruptError):
            return
        yield records


_NOT_HALTED = Replay()  # the state history records are read against (only .halted is used)


def _look_back(state: Replay, notes: _Notes, snap: _Snapshot, at: tuple[int, int]
               ) -> None:
    """Fill in from the history what the records after the checkpoint did not say."""
    flight = state.flight
    oldest = next(iter(state.queue), None)
    want_halt = state.halted and notes.halt is None
    want_entry = flight is not None and (notes.entered is None
                                         or notes.entered[0] != flight.block.block_id)
    want_accept = oldest is not None and oldest not in notes.accepted_at
    want_hash = notes.config_hash is None or notes.execution_mode is None
    if not (want_halt or want_entry or want_accept or want_hash):
        return
    for records in _history(snap, at):
        seen = _Notes()
        try:
            for r in records:
                seen.see(r, _NOT_HALTED)
        except (KeyError, TypeError):  # history nobody replays may hold anything
            return
        if want_halt and seen.halt is not None:
            notes.halt, want_halt = seen.halt, False
        if want_entry and seen.entered is not None:
            assert flight is not None
            # the last move in the history is the block's own (unless a reset checkpoint
            # took the state from another journal): either way, look no further
            mine = seen.entered[0] == flight.block.block_id
            notes.entered, want_entry = (seen.entered if mine else notes.entered), False
        if want_accept and oldest in seen.accepted_at:
            assert oldest is not None
            notes.accepted_at[oldest], want_accept = seen.accepted_at[oldest], False
        if want_hash and (seen.config_hash is not None or seen.execution_mode is not None):
            notes.config_hash = notes.config_hash or seen.config_hash
            notes.execution_mode = notes.execution_mode or seen.execution_mode
            want_hash = False
        if notes.deltas is None and seen.deltas is not None:
            notes.deltas = seen.deltas
        if notes.error is None and seen.error is not None:
            notes.error = seen.error
        if not (want_halt or want_entry or want_accept or want_hash):
            return


# ------------------------------------------------------------------------ the report


def _parse_ts(text: str | None) -> dt.datetime | None:
    return journal_time(text)  # the journal's one rule


def _age(text: str | None, now: dt.datetime) -> float | None:
    t = _parse_ts(text)
    return None if t is None else round((now - t).total_seconds(), 3)


def read_status(log_dir: Path | str, *, now: dt.datetime | None = None,
                config: ExecutionConfig | None = None, config_source: str = "default",
                proc_locks: Path | str = PROC_LOCKS) -> dict[str, Any]:
    """The status report of the journal in ``log_dir``, as of ``now`` (default: the
    current UTC time; for a backtest journal, its last record's time: a backtest runs on
    its own time), with deadlines from ``config`` (default: the default config).
    Whether a manager runs is asked of the kernel's lock table, ``proc_locks``.
    Raises :class:`StatusUnreadable` when there is no journal or it cannot be read."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise StatusUnreadable(f"{log_dir}: no such directory")
    cfg = config if config is not None else ExecutionConfig()
    pid = lock_holder(log_dir, proc_locks=proc_locks)
    running = pid is not None
    with contextlib.ExitStack() as stack:
        state, notes, snap, at = _replay(log_dir, stack)
        last = state.last_record
        if last is None:
            raise StatusUnreadable(f"{log_dir}: the journal holds no records")
        _look_back(state, notes, snap, at)
    clock = "given"
    if now is None:
        own = _parse_ts(last.timestamp) if notes.execution_mode == "backtest" else None
        now, clock = (own, "journal") if own is not None else (dt.datetime.now(dt.UTC), "wall")

    halt: dict[str, Any] | None = None
    if state.halted or notes.unrecorded_halt is not None:
        code = state.halt_reason if state.halted else "EXEC-009"
        info = notes.halt if state.halted and notes.halt is not None else {}
        block_id = info.get("block_id")
        if block_id is None and code == "EXEC-009" and state.flight is not None:
            block_id = state.flight.block.block_id  # the step that could not be recorded
        when = info.get("at") if state.halted else notes.unrecorded_halt
        entry = ERROR_CODES.get(code) if isinstance(code, str) else None
        deltas = (notes.deltas[1] if notes.deltas is not None and block_id is not None
                  and notes.deltas[0] == block_id else None)
        err = notes.error
        error = (err["message"] if err is not None and err["code"] == code
                 and err["block_id"] == block_id else None)
        halt = {"code": code, "message": entry.message if entry is not None else None,
                "block_id": block_id, "at": when, "age_s": _age(when, now),
                "recorded": state.halted, "error": error, "deltas": deltas}

    flight = _flight_report(state.flight, notes, now, cfg, running)
    if flight is not None and state.flight is not None:
        table = state.table  # the lifecycle the journal was written under
        where = state.flight.state
        flight["lifecycle"] = "default" if table.lifecycle is None else table.lifecycle.name
        flight["external_triggers"] = [t for t in table.allowed(where)
                                       if table.is_external(where, t)]
    queue_ids = list(state.queue)
    oldest = queue_ids[0] if queue_ids else None
    accepted = notes.accepted_at.get(oldest) if oldest is not None else None
    health = ("unhealthy" if halt is not None or (flight is not None and flight["in_doubt"])
              else "degraded" if flight is not None and flight["stuck"] else "healthy")
    report: dict[str, Any] = {
        "format": STATUS_FORMAT,
        "readable": True,
        "log_dir": str(log_dir),
        "now": now.isoformat(),
        "clock": clock,
        "execution_mode": notes.execution_mode,
        "running": running,
        "pid": pid,
        "health": health,
        "halted": halt is not None,
        "halt": halt,
        "in_flight": flight,
        "queue": {"count": len(queue_ids), "first": queue_ids[:FIRST_IDS],
                  "oldest_block_id": oldest, "oldest_accepted_at": accepted,
                  "oldest_age_s": _age(accepted, now)},
        "counters": {"accepted": state.accepted, "executed": state.executed,
                     "failed": state.failed, "cancelled": state.cancelled,
                     "retried": state.retried, "restarts": state.restarts},
        "last_activity": {
            "seq": last.seq, "timestamp": last.timestamp, "event_type": last.event_type,
            "age_s": _age(last.timestamp, now)},
        "checkpoint_seq": state.checkpoint_seq,
        "config": {"source": config_source,
                   "matches_journal": (None if notes.config_hash is None
                                       else notes.config_hash == cfg.digest())},
    }
    report["next_step"], report["commands"], report["runbook"] = next_step(report)
    report["exit_code"] = 0 if health == "healthy" else 1
    return report


def _flight_report(fl: Flight | None, notes: _Notes, now: dt.datetime, cfg: ExecutionConfig,
                   running: bool) -> dict[str, Any] | None:
    if fl is None:
        return None
    since = (notes.entered[1] if notes.entered is not None
             and notes.entered[0] == fl.block.block_id else None)
    age = _age(since, now)
    deadline = state_deadline(cfg, fl.state, fl.attempt)
    # In doubt: the venue may have executed the block and nobody knows yet. A running
    # manager is settling its block unless it says it cannot find out, or it restored the
    # block unsettled and has not asked yet; a stopped one left it for recovery.
    doubt = (fl.unresolved or notes.restored_in_doubt == fl.block.block_id
             or (not running and in_doubt(fl)))
    return {"block_id": fl.block.block_id, "action": fl.block.action, "state": fl.state,
            "attempt": fl.attempt, "handed_off": fl.handed_off, "since": since,
            "age_s": age, "deadline_s": deadline,
            "stuck": bool(running and deadline is not None and age is not None
                          and age > deadline),
            "in_doubt": doubt, "resolution": resolution_of(fl, queryable=True)}


# ------------------------------------------------------------------------ next steps

_PLACEHOLDER = "'<why>'"


def cancel_command(log_dir: str) -> str:
    """The shell command that cancels every queued block of a stopped manager."""
    return f"fsm-exec cancel {shell_word(log_dir)} --all --reason {_PLACEHOLDER}"


def trigger_command(log_dir: str, block_id: str, event: str) -> str:
    """The shell command that fires an external trigger on a stopped manager's block."""
    return (f"fsm-exec trigger {shell_word(log_dir)} {shell_word(block_id)} "
            f"{shell_word(event)} --reason {_PLACEHOLDER}")


def _then(report: dict[str, Any], commands: list[str]) -> str:
    """What follows hand reconciliation: drop the queue, or resume."""
    n = report["queue"]["count"]
    if not n:
        return "Then resume with update_state(ts, 'manual') from the strategy process."
    blocks = f"{n} queued block{'s' if n != 1 else ''}"
    if report["running"]:
        return (f"Then either drop the {blocks} (computed from positions now known to be "
                "wrong) with em.cancel(ts, reason=...) in the strategy process, or stop it "
                "and cancel them from the shell (below); or resume with "
                "update_state(ts, 'manual').")
    commands.append(cancel_command(report["log_dir"]))
    return (f"Then either drop the {blocks} (computed from positions now known to be "
            "wrong) with the command below, or start the strategy process (recover()) and "
            "resume with update_state(ts, 'manual').")


def _halt_step(report: dict[str, Any], commands: list[str]) -> str:
    halt = report["halt"]
    code, b = halt["code"], halt["block_id"]
    block = repr(b) if b is not None else "the block"
    fl = report["in_flight"]
    if code == "EXEC-002":
        head = (f"Reconcile positions by hand: the venue executed {block} and its deltas "
                "reached the position handler, but reconciliation failed or never "
                "confirmed them.")
    elif code == "EXEC-007":
        head = (f"Ask the venue whether {block} executed (its outcome could not be found "
                "out), and make positions match what it says.")
    elif code == "EXEC-008":
        head = (f"Apply the deltas of {block} to positions by hand: the venue executed it, "
                "but the position handler refused them.")
    elif code == "EXEC-009":
        head = ("Fix the journal's disk first (space, permissions): a journal write failed "
                "and the manager stopped before acting on the unrecorded step.")
        if fl is not None:
            head += (f" {fl['block_id']!r} is still {fl['state']}; the resume settles it "
                     "without routing it again.")
        if not halt["recorded"]:
            head += (" The halt itself is not in the journal: a manager started again on "
                     "it will not be halted.")
        return f"{head} Then resume with update_state(ts, 'manual') from the strategy process."
    elif code == "EXEC-014":
        head = (f"Fix the reconciliation component (reading its status raised), then check "
                f"positions: the venue executed {block} and its deltas were handed off.")
    elif code == "EXEC-015":
        head = (f"Apply the venue's fill for {block} by hand (its reply could not be recorded "
                "and never reached the position handler), and fix the adapter to return "
                "plain data.")
    else:
        entry = ERROR_CODES.get(code) if isinstance(code, str) else None
        head = (entry.resolution if entry is not None else
                f"The manager halted ({code}): reconcile positions by hand.")
        return head
    return f"{head} {_then(report, commands)}"


def next_step(report: dict[str, Any]) -> tuple[str, list[str], str]:
    """What the person on call should do, the shell commands for it, and the runbook entry
    that says more."""
    fl, halt, n = report["in_flight"], report["halt"], report["queue"]["count"]
    commands: list[str] = []
    if halt is not None:
        code = halt["code"]
        topic = code if code in HALTING_CODES else "when-the-manager-halts"
        return _halt_step(report, commands), commands, runbook_anchor(topic)
    if fl is not None and fl["in_doubt"]:
        b = fl["block_id"]
        if report["running"]:
            return (f"The manager cannot find out whether the venue executed {b!r}: it asks "
                    "again on every attempt and halts with EXEC-007 when they run out. Check "
                    "the venue's connection and its query_execution.", commands,
                    runbook_anchor("in-doubt"))
        return (f"{b!r} was {fl['state']} when the manager stopped: the venue may have "
                "executed it. Start the strategy process: recover() asks the venue "
                "(query_execution) before routing it again (a venue without query_execution "
                "gets it again under the same block_id). To look first, ask the venue "
                f"whether {b!r} executed.", commands, runbook_anchor("in-doubt"))
    if fl is not None and fl["stuck"]:
        where = ("the reconciliation component" if fl["state"] == "pending_reconciliation"
                 else "the venue")
        return (f"{fl['block_id']!r} has been {fl['state']} for {_duration(fl['age_s'])}, "
                f"past its deadline of {_duration(fl['deadline_s'])}: check {where}. The "
                "manager is not halted and needs no resume.", commands,
                runbook_anchor("stuck"))
    if not report["running"] and fl is not None and fl["resolution"] == "resume":
        b, triggers = fl["block_id"], fl.get("external_triggers", [])
        commands.extend(trigger_command(report["log_dir"], b, t) for t in triggers)
        ends = (f" An operator may fire {', '.join(triggers)} (the commands below)."
                if triggers else "")
        return (f"{b!r} waits in {fl['state']} (a state of lifecycle "
                f"{fl.get('lifecycle')!r}): start the strategy process; recover() resumes "
                f"it there, its polls and timeout checked on each update_state.{ends}",
                commands, RUNBOOK)
    if not report["running"] and fl is not None:
        hand = "hands the deltas to the position handler, then " if not fl["handed_off"] else ""
        return (f"{fl['block_id']!r} waits for reconciliation: start the strategy process; "
                f"recover() {hand}waits for reconciliation (the venue is not called again).",
                commands, RUNBOOK)
    if not report["running"] and n:
        commands.append(cancel_command(report["log_dir"]))
        return (f"{n} block{'s' if n != 1 else ''} queued: they run when the strategy process "
                "starts again (recover(), then update_state). To drop them first, run the "
                "command below.", commands, RUNBOOK)
    return "Nothing to do.", commands, RUNBOOK


# ------------------------------------------------------------------------ text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 120:
        return f"{sign}{s:.1f} s"
    if s < 7200:
        return f"{sign}{s / 60:.0f} min"
    if s < 172800:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.1f} d"


def _at(ts: str | None, age: float | None, clock: str = "wall") -> str:
    if ts is None:
        return "at an unknown time"
    if clock == "journal":  # a backtest's own time: before its last record, not "ago"
        if age is not None and age < 0:
            return f"at {ts} ({_duration(-age)} after the last record)"
        return (f"at {ts} (the last record)" if age == 0 else
                f"at {ts} ({_duration(age)} before the last record)")
    if age is not None and age < 0:
        return f"at {ts} ({_duration(-age)} after now)"
    return f"at {ts} ({_duration(age)} ago)"


def _wrap(text: str, width: int = 88, indent: str = " " * 15) -> list[str]:
    """``text`` in lines of at most ``width`` (commands and words are never split)."""
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False)


def format_status(report: dict[str, Any]) -> str:
    """The report for a terminal: one line per topic, the next step last."""
    clock = report.get("clock", "wall")
    as_of = (f"as of its last record, {report['now']}: a backtest runs on its own time"
             if clock == "journal" else f"as of {report['now']}")
    lines = [f"fsm-exec status: {report['log_dir']} ({as_of})"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<13}{text}")

    row("manager", f"running (pid {report['pid']})" if report["running"] else "not running")
    fl, halt, q = report["in_flight"], report["halt"], report["queue"]
    why = ("halted" if halt is not None else "block in doubt" if fl and fl["in_doubt"]
           else "block stuck" if fl and fl["stuck"] else "")
    row("health", f"{report['health']}: {why}" if why else report["health"])
    if halt is not None:
        message = f" {halt['message']}" if halt["message"] else ""
        row("halted", f"{halt['code']}{message}")
        block = f"block {halt['block_id']}" if halt["block_id"] is not None else "no block"
        row("", f"{block}, {_at(halt['at'], halt['age_s'], clock)}"
            + ("" if halt["recorded"] else " (from a state_update: the halt record was lost)"))
        if halt["error"]:
            for i, line in enumerate(_wrap(f"error: {terminal_text(halt['error'])}", width=71,
                                           indent="")):
                row("", line if i == 0 else "  " + line)
        if halt["deltas"] is not None:
            text = json.dumps(halt["deltas"], sort_keys=True)
            row("", f"deltas {text if len(text) <= 160 else text[:157] + '...'}")
    if fl is None:
        row("in flight", "none")
    else:
        deadline = (f", deadline {_duration(fl['deadline_s'])}"
                    if fl["deadline_s"] is not None else "")
        stuck = ": STUCK" if fl["stuck"] else ""
        row("in flight", f"{fl['block_id']} ({fl['action']}) {fl['state']}, attempt "
            f"{fl['attempt']}")
        row("", f"in this state since {fl['since'] or 'an unknown time'} "
            f"({_duration(fl['age_s'])}{deadline}{stuck})")
        if fl["in_doubt"]:
            row("", "IN DOUBT: the venue may have executed it")
        row("", f"recovery would: {fl['resolution']}")
    if q["count"]:
        more = ", ..." if q["count"] > len(q["first"]) else ""
        row("queue", f"{q['count']} block{'s' if q['count'] != 1 else ''}: "
            f"{', '.join(q['first'])}{more}")
        row("", f"oldest {q['oldest_block_id']} accepted "
            f"{_at(q['oldest_accepted_at'], q['oldest_age_s'], clock)}")
    else:
        row("queue", "empty")
    c = report["counters"]
    row("counters", ", ".join(f"{k} {v}" for k, v in c.items()))
    last = report["last_activity"]
    row("last record", f"seq {last['seq']} {last['event_type']} "
        f"{_at(last['timestamp'], last['age_s'], clock)}")
    cfg = report["config"]
    if cfg["matches_journal"] is False:
        row("config", f"deadlines from {cfg['source']}, which is not the config the manager "
            "started with (pass --config FILE)")
    lines.append("  next step")
    lines.extend(_wrap(report["next_step"]))
    lines.extend(f"{' ' * 15}$ {c}" for c in report["commands"])
    row("runbook", report["runbook"])
    # Every line quotes the journal (ids, actions, a venue's error): shown, never obeyed.
    return "\n".join(terminal_text(line) for line in lines) + "\n"
