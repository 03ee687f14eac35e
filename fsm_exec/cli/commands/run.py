"""``fsm-exec run``: run a file of blocks through the manager."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    MODE_HELP,
    OK,
    UsageError,
    complain,
    decode_text,
    os_reason,
    plural,
    read_config,
    read_input,
    resolve_mode,
)


def _quoted(key: str, redact: Callable[[str], str] | None) -> str:
    """``key`` quoted for a message (``repr``, shortened), the config's secrets masked
    first."""
    from fsm_exec.core.errors import shorten

    text = repr(key)
    return shorten(redact(text) if redact is not None else text)


def read_batches(path: Path, redact: Callable[[str], str] | None = None
                 ) -> list[tuple[int, list[dict[str, Any]]]]:
    """The batches of a blocks file, validated whole before anything runs: each line is a
    block (a batch of one) or a JSON array of blocks (a batch). Errors name the line (and,
    for JSON, the column); a block id used twice names the line that used it first; a key
    given twice in one object is refused, naming it. ``redact`` (the config's
    :class:`~fsm_exec.boundary.config.Redactor`) masks the config's secrets in what an
    error quotes, and refuses a block holding one."""
    from fsm_exec.boundary.blocks import validate_batch
    from fsm_exec.core.errors import BlockProblem, InvalidBlockError
    from fsm_exec.journal.reader import duplicate_key

    raw = read_input(path, f"{path}: cannot read")
    # Line feeds only: a JSON string may hold U+2028, U+0085 or a form feed, which
    # str.splitlines() breaks at (a CR before the feed is JSON whitespace).
    lines = decode_text(path, raw, "cannot read").split("\n")
    batches: list[tuple[int, list[dict[str, Any]]]] = []
    first_line: dict[str, int] = {}  # block id -> the line that used it first
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}:{exc.colno}: not valid JSON: {exc.msg}") from None
        twice = duplicate_key(line)
        if twice is not None:
            raise UsageError(f"{path}:{n}: key {_quoted(twice, redact)} appears twice in one "
                             "object: which value is meant is ambiguous (JSON readers "
                             "differ); keep one")
        if item == []:
            raise UsageError(f"{path}:{n}: no blocks (an empty batch)")
        batch = item if isinstance(item, list) else [item]
        try:
            blocks = validate_batch(batch, first_line, redact)
        except InvalidBlockError as exc:
            problems = [
                BlockProblem(p.index, p.block_id, p.field, f"{p.reason} (first used on line "
                             f"{first_line.get(p.block_id, n)})")
                if p.field == "block_id" and p.reason.startswith("already queued")
                and p.block_id is not None else p
                for p in exc.problems]
            raise UsageError(f"{path}:{n}: {InvalidBlockError(problems, len(batch))}") from None
        for b in blocks:
            first_line.setdefault(b.block_id, n)
        batches.append((n, batch))
    if not batches:
        raise UsageError(f"{path}: no blocks")
    return batches


class Progress:
    """A one-line progress bar on a terminal, shown once a run takes over ``after`` s."""

    def __init__(self, total: int, stream: IO[str], *, after: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, force: bool = False) -> None:
        self.total, self.stream, self.after, self.clock = total, stream, after, clock
        self.enabled = force or stream.isatty()
        self.start = clock()
        self.last = -1.0
        self.drawn = False

    def update(self, done: int) -> None:
        now = self.clock()
        if not self.enabled or now - self.start < self.after or now - self.last < 0.1:
            return
        self.last = now
        self.drawn = True
        self.stream.write("\r" + progress_line(done, self.total, now - self.start))
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_line(done: int, total: int, seconds: float, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches "
            f"{seconds:.1f} s")


def _step(em: Any, ts: Any, batch: list[dict[str, Any]], where: str,
          failures: list[str], refused: Counter[tuple[str, str]]) -> dict[str, Any]:
    """One update with a batch; failures are recorded and the queue run on, as an
    operator would (a refused batch is dropped, a halt is resumed). ``refused`` counts the
    refused batches by (code, reason); a block's own failure is in the journal."""
    from fsm_exec.core.errors import ComponentError, InvalidBlockError, QueueFullError

    trigger: str = "strategy_manager"
    pending: list[dict[str, Any]] | None = batch
    while True:
        try:
            return dict(em.update_state(ts, trigger, pending))
        except (InvalidBlockError, QueueFullError) as exc:  # refused: it never ran
            failures.append(f"{where}: {exc}")
            refused[exc.error_code, exc.message.splitlines()[0]] += 1
        except ComponentError as exc:
            if exc.block_id is None:  # not a block's own outcome (a journal that fails)
                raise
            failures.append(f"{where}: {exc}")  # backtest fails fast, block by block
        trigger, pending = ("manual" if em.halted else "retry"), None


#: How many failures the run lists one by one, and how many reasons its summary names (the
#: journal holds them all).
LISTED_FAILURES = 20
TOP_REASONS = 5


def failure_reasons(records: Iterable[Any]) -> Counter[tuple[str, str]]:
    """The failed blocks of a journal's records by (error code, reason): the reason is the
    block's last error message without its ``block '<id>': `` prefix (so that one cause
    counts once however many blocks it failed), else what the registry says of the code."""
    from fsm_exec.core.errors import ERROR_CODES

    last_error: dict[str, str] = {}
    out: Counter[tuple[str, str]] = Counter()
    for r in records:
        bid = r.data.get("block_id")
        if r.event_type == "error" and isinstance(bid, str):
            message = str(r.data.get("error_message") or "")
            last_error[bid] = message.removeprefix(f"block {bid!r}: ")
        elif r.event_type == "block_failed":
            code = str(r.data.get("error_code") or "no code")
            reason = last_error.pop(bid, "") if isinstance(bid, str) else ""
            entry = ERROR_CODES.get(code)
            out[code, reason or (entry.message if entry else "no reason recorded")] += 1
    return out


def failure_summary(failed: Counter[tuple[str, str]], refused: Counter[tuple[str, str]],
                    top: int = TOP_REASONS) -> list[str]:
    """The lines that say why: failed blocks and refused batches by code and reason, the
    most frequent first, then what each code shown means (empty when nothing failed)."""
    from fsm_exec.core.errors import ERROR_CODES

    rows = [(n, code, reason, "block" if n == 1 else "blocks")
            for (code, reason), n in failed.items()]
    rows += [(n, code, reason, "batch refused" if n == 1 else "batches refused")
             for (code, reason), n in refused.items()]
    if not rows:
        return []
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    lines = [f"  why: {plural(failed.total(), 'block', 'blocks')} failed, "
             f"{plural(refused.total(), 'batch', 'batches')} refused; by code and reason, "
             "most first:"]
    lines += [f"  {n:>8} {what:<15} {code}  {reason}" for n, code, reason, what in rows[:top]]
    if len(rows) > top:
        rest = rows[top:]
        lines.append(f"  {sum(r[0] for r in rest):>8} more failures, for "
                     f"{plural(len(rest), 'other reason', 'other reasons')} (the journal has "
                     "each one)")
    for code in dict.fromkeys(code for _, code, _, _ in rows[:top]):
        entry = ERROR_CODES.get(code)
        if entry is not None:
            lines.append(f"  {code}: {entry.message}. {entry.resolution}")
    return lines


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (a supervisor stopping the run): the same way out as Ctrl-C."""
    raise SystemExit(143)


def _archive(log_dir: Path) -> Path:
    """Move a journal directory aside (``<dir>.<UTC time>``); nothing is deleted."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = log_dir.with_name(f"{log_dir.name}.{stamp}")
    n = 1
    while target.exists():
        target = log_dir.with_name(f"{log_dir.name}.{stamp}.{n}")
        n += 1
    log_dir.rename(target)
    return target


#: What recovery does with the block a stopped run left in flight, by resolution
#: (:func:`~fsm_exec.journal.state.resolution_of`).
_SETTLES = {
    "query_execution": "the venue may have executed it: recovery asks the venue before "
                       "anything is routed again",
    "reroute_at_least_once": "the venue may have executed it: recovery routes it again "
                             "under the same block_id (the venue cannot be asked)",
    "hand_off_then_reconcile": "the venue executed it and the journal holds its deltas: "
                               "recovery hands them off to the position handler, then "
                               "waits for reconciliation",
    "reconcile": "the venue executed it and its deltas were handed off: recovery waits "
                 "for reconciliation",
}


def _interrupted(stop: BaseException, log_dir: Path, done: int, total: int, mode: str, *,
                 queryable: bool) -> str:
    """What a stopped run leaves, in a few lines: what is in doubt, how to go on. Read from
    the journal (closed by now) through the fold every reader uses, so it says what
    ``fsm-exec status`` and recovery will find, not what the process last believed.
    ``queryable``: the venue can be asked what it executed (``query_execution``)."""
    from fsm_exec.boundary.escape import shell_word
    from fsm_exec.journal.fold import replay
    from fsm_exec.journal.reader import recovery_records
    from fsm_exec.journal.state import resolution_of

    why = "interrupted (Ctrl-C)" if isinstance(stop, KeyboardInterrupt) else "terminated"
    lines = [f"fsm-exec run: {why} after {done} of {total} batches"]
    try:
        state = replay(recovery_records(log_dir))
    except (ValueError, OSError) as exc:
        lines[0] += "."
        lines.append(f"  the journal in {log_dir} cannot be read back ({exc}): "
                     f"`fsm-exec check {shell_word(str(log_dir))}` says why.")
    else:
        lines[0] += (f"; the journal holds {state.executed} blocks executed, "
                     f"{state.failed} failed, {len(state.queue)} queued.")
        fl = state.flight
        if fl is not None:
            resolution = resolution_of(fl, queryable=queryable)
            lines.append(f"  block {fl.block.block_id} is {fl.state} (attempt {fl.attempt}): "
                         f"{_SETTLES[str(resolution)]}.")
        if state.halted:
            lines.append(f"  the manager is halted: {state.halt_reason}")
    if mode == "live":
        lines.append(f"  The journal in {log_dir} holds everything: run the same command "
                     "again to resume from it (or --fresh to move it aside and start over); "
                     f"`fsm-exec status {shell_word(str(log_dir))}` shows where it stands.")
    else:
        lines.append("  A backtest is run again from the start: run the same command again.")
    return "\n".join(lines)


def _held_ids(log_dir: Path) -> dict[str, str | None]:
    """Every block id the journal in ``log_dir`` ever accepted, with the content digest of
    its block (``None``: not known); :class:`UsageError` when that cannot be told (history
    deleted by retention, a broken journal)."""
    from fsm_exec.journal.history import accepted_digests_in

    try:
        return accepted_digests_in(log_dir)
    except ValueError as exc:
        raise UsageError(f"{log_dir}: cannot resume from this journal: {exc}; give --fresh "
                         "to move it aside and start again") from None


def _not_run_again(batch: list[dict[str, Any]], held: dict[str, str | None], where: str,
                   failures: list[str], refused: Counter[tuple[str, str]]
                   ) -> list[dict[str, Any]]:
    """The blocks of ``batch`` a resumed run still runs: those whose id the journal does not
    hold. One it holds is skipped as done when it asks for what the journal's block asked
    for (or the journal cannot say); one that asks for something else (the file was edited)
    is not run, its id being taken, and its whole batch (a batch is accepted whole or not
    at all) is reported refused: never skipped in silence."""
    from fsm_exec.boundary.blocks import content_digest, convert_batch
    from fsm_exec.core.errors import InvalidBlockError

    left = []
    for b in batch:
        block_id = b["block_id"]
        if block_id not in held:
            left.append(b)
            continue
        was = held[block_id]
        try:
            now = content_digest(convert_batch([b], ())[0][0])
        except InvalidBlockError:  # valid when the journal took it: changed too
            now = "invalid"
        if was is not None and now != was:
            why = ("the journal holds another block under its id: the batch is not run (a "
                   "changed block needs a new block_id)")
            failures.append(f"{where}: block {block_id!r}: {why}")
            refused["EXEC-004", why] += 1
            return []
    return left


def cmd_run(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.config import OWN_FIELDS, ExecutionConfig, Redactor
    from fsm_exec.cli.demo import (
        OWNER_MARKER,
        check_output_paths,
        claim_output_dir,
        csv_paths,
        load_prices,
    )
    from fsm_exec.core.errors import ComponentError
    from fsm_exec.journal.export import check_backtest_id, replace_file
    from fsm_exec.journal.files import journal_files
    from fsm_exec.journal.reader import read_journal
    from fsm_exec.journal.writer import EventLogger
    from fsm_exec.manager.manager import ExecutionManager
    from fsm_exec.sim.venues import (
        InstantReconciliation,
        SimPositionHandler,
        SimVenue,
        StaticDataProvider,
    )
    from fsm_exec.tools.diagram import overlay_events, to_markdown

    # Everything is checked before anything is created.
    mode = resolve_mode(args.mode)
    path = Path(args.blocks)
    # The config first: its redactor masks its secrets in whatever an error about the
    # blocks file quotes (a template that put the api_key in the wrong field).
    config = read_config(Path(args.config) if args.config else None)
    try:
        ExecutionConfig.from_dict(config)  # refuse a bad config before writing anything
        redact = Redactor(config, OWN_FIELDS)
    except ComponentError as exc:
        raise UsageError(str(exc)) from None
    batches = read_batches(path, redact)
    if args.prices is not None:
        from fsm_exec.cli.prices import load_price_file, tokens_named

        prices = load_price_file(Path(args.prices), tokens_named(batches))
    else:
        prices = load_prices()[max(load_prices())]
    backtest_id = args.id or re.sub(r"[^A-Za-z0-9._-]", "-", f"run-{path.stem}")[:128]
    try:
        check_backtest_id(backtest_id)
    except ValueError as exc:
        raise UsageError(f"--id: {exc}") from None
    out_dir = Path(args.out)
    log_dir = out_dir / "logs" / "events"
    resuming = False
    held: dict[str, str | None] = {}
    try:
        check_output_paths(out_dir, backtest_id, "fsm-exec run")
        if mode == "live" and journal_files(log_dir):
            # A live journal is the record of what the venue may have done: never deleted.
            # Only one that `fsm-exec run` wrote is resumed (its simulated venue must never
            # act on a real manager's queue).
            claim_output_dir(log_dir, "fsm-exec run", dry_run=True)
            if args.fresh:
                archived = _archive(log_dir)
                print(f"the journal in {log_dir} was moved to {archived}", file=out)
                log_dir.mkdir(parents=True)
                replace_file(log_dir / OWNER_MARKER, "fsm-exec run\n")
            else:
                resuming = True
                # every id the journal ever accepted (its whole history, not only the
                # duplicate window): a resume skips them; read before anything is written
                held = _held_ids(log_dir)
        elif not resuming:
            claim_output_dir(log_dir, "fsm-exec run")
        journal = EventLogger(log_dir, mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(os_reason(exc, "cannot write the outputs")) from None
    # The simulated outside world reconciles at once, also a block handed off before a
    # restart (a SimReconciliation would wait for a hand-off this process never saw).
    reconciliation = InstantReconciliation()
    venue = SimVenue()
    em = ExecutionManager(config, StaticDataProvider(prices), mode,
                          SimPositionHandler(), venue, reconciliation,
                          event_logger=journal)
    if resuming:
        try:
            report = em.recover()
        except ComponentError as exc:
            journal.close()
            raise UsageError(f"{log_dir}: cannot resume from this journal: {exc}; give "
                             "--fresh to move it aside and start again") from None
        print(f"resuming from {log_dir}: {report.blocks_executed} blocks done, "
              f"{len(report.queued)} queued" + (f", {report.in_doubt} in doubt "
                                                f"({report.resolution})"
                                                if report.in_doubt else ""), file=out)
    progress = Progress(len(batches), sys.stderr)
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    started = time.perf_counter()
    failures: list[str] = []
    refused: Counter[tuple[str, str]] = Counter()
    done = 0
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        for i, (line, batch) in enumerate(batches):
            if resuming:  # batches are atomic: one the journal already holds is skipped,
                # however long ago it finished (not only inside the duplicate window)
                batch = _not_run_again(batch, held, f"{path}:{line}", failures, refused)
            _step(em, t0 + dt.timedelta(minutes=i), batch, f"{path}:{line}", failures,
                  refused)
            progress.update(i + 1)
            done = i + 1
        status = _step(em, t0 + dt.timedelta(minutes=len(batches)), [], f"{path}:end",
                       failures, refused)
    except (KeyboardInterrupt, SystemExit) as stop:
        progress.close()
        journal.close()
        complain(_interrupted(stop, log_dir, done, len(batches), mode,
                              queryable=callable(getattr(venue, "query_execution", None))))
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
        seconds = time.perf_counter() - started
        if not journal._closed:
            try:  # refused up front; a link planted since is still never followed
                journal.export_csv(out_dir / "results", backtest_id)
            except (ValueError, OSError) as exc:
                doing = "cannot write the CSV files"
                why = os_reason(exc, doing) if isinstance(exc, OSError) else f"{doing}: {exc}"
                raise UsageError(f"{why} (the journal in {log_dir} holds the run)") from None
            finally:
                journal.close()
    events_csv, deltas_csv = csv_paths(out_dir, backtest_id)
    diagram = out_dir / "run_diagram.md"
    records = [r for r in read_journal(log_dir) if r.component == "ExecutionManager"]
    replace_file(diagram, to_markdown(overlay_events(records,
                                                  title=f"Block lifecycle: {path.name}")))
    n = status["blocks_executed"] + status["blocks_failed"]
    print(f"{path}: {plural(len(batches), 'batch', 'batches')}, "
          f"{plural(status['blocks_accepted'], 'block', 'blocks')}, {mode} mode", file=out)
    for key, label in (("blocks_executed", "blocks executed"),
                       ("blocks_failed", "blocks failed"),
                       ("blocks_retried", "retries"),  # moves into retrying, not blocks
                       ("queue_length", "queue length")):
        print(f"  {label:<18}{status[key]:>10}", file=out)
    print(f"  {'halted':<18}{status['halted']!s:>10}", file=out)
    if seconds > 0:
        print(f"  {'time':<18}{seconds * 1000:>7.1f} ms   ({n / seconds:,.0f} blocks/s)",
              file=out)
    print(f"  journal:          {journal.path_for('ExecutionManager')}", file=out)
    print(f"  events CSV:       {events_csv}", file=out)
    print(f"  deltas CSV:       {deltas_csv}", file=out)
    print(f"  run diagram:      {diagram}", file=out)
    for f in failures[:LISTED_FAILURES]:
        print(f"  failed: {f}", file=out)
    if len(failures) > LISTED_FAILURES:
        print(f"  ... and {len(failures) - LISTED_FAILURES} more failed (the journal has "
              "each one)", file=out)
    reasons = failure_reasons(records)
    for said in failure_summary(reasons, refused):
        print(said, file=out)
    if args.prices is None and any(code == "EXEC-005" for code, _ in reasons):
        print("  fsm-exec run prices blocks from the bundled ETH, stETH and USDT series: "
              "give --prices FILE (a column per token) for the others.", file=out)
    return FOUND if failures or status["blocks_failed"] or status["halted"] else OK


def add_parser(sub: Any) -> None:
    """The ``run`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser(
        "run", formatter_class=fmt, help="run a file of blocks through the manager",
        description="Run the blocks of a JSON-lines file through the manager with the bundled "
                    "simulated collaborators (an idempotent venue, a position handler, "
                    "instant reconciliation, and prices: the latest of the bundled ETH, "
                    "stETH and USDT series, or of --prices FILE). Each line is a block, or a "
                    "JSON array of blocks submitted as one batch; blank lines and lines "
                    "starting with # are skipped. The whole file (and the config, the "
                    "environment and the arguments) is validated before anything is created; "
                    "an error names the line. Writes logs/events/"
                    "execution_manager_events.jsonl, results/<id>/events.csv, "
                    "results/<id>/deltas.csv and run_diagram.md under --out. A live journal "
                    "already there is never deleted: the run resumes from it (every block "
                    "its history holds is skipped, however long ago it ran, and one whose "
                    "id it holds for another block is refused; a journal whose "
                    "oldest records were deleted is refused), or --fresh moves it aside; a "
                    "backtest "
                    "journal is replaced only if an earlier `fsm-exec run` wrote it. Failed "
                    "blocks are reported and the queue runs on (a halt is resumed, as an "
                    "operator would); the summary ends with why: failed blocks and refused "
                    "batches by error code and reason, most frequent first. Ctrl-C or "
                    "SIGTERM stops it with a short account of what is in doubt (exit 130 "
                    "or 143).",
        epilog="exit code 1: a block failed or the manager halted.\n\n" + EXIT_CODES)
    r.add_argument("blocks", metavar="BLOCKS.jsonl")
    r.add_argument("--mode", choices=("backtest", "live"), help=MODE_HELP)
    r.add_argument("--config", metavar="FILE",
                   help="system-wide config (.toml or .json); keys the manager does not use "
                        "are ignored and never printed or logged")
    r.add_argument("--out", default=".", metavar="DIR", help="where to write the outputs")
    r.add_argument("--id", help="backtest id for the CSV folder (default: run-<file stem>)")
    r.add_argument("--fresh", action="store_true",
                   help="live: move a journal already in --out aside (logs/events.<time>) "
                        "and start a new one, instead of resuming from it")
    r.add_argument("--prices", metavar="FILE",
                   help="prices for the data provider: a CSV (or, with pandas, Parquet) "
                        "table with a column per token and an optional timestamp column; "
                        "every block is priced at its latest row. Every token the blocks "
                        "name must have a column")
    r.set_defaults(func=cmd_run)
