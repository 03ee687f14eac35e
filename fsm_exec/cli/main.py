"""``fsm-exec`` (also ``python -m fsm_exec``): a thin shell over the library.

Exit codes: 0 ok, 1 a failure was found (a journal that breaks the lifecycle, stale
diagrams, a run with failed blocks), 2 a usage error (bad arguments, unreadable input),
141 the reader of the output went away (``| head``): the command stopped quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from fsm_exec._version import __version__

OK, FOUND, USAGE = 0, 1, 2
CLOSED_PIPE = 128 + 13  # what a shell reports for a tool whose reader went away (SIGPIPE)
DIAGRAM_DIR = "diagrams"
FORMATS = ("mermaid", "dot", "svg", "png", "markdown", "table")

EXIT_CODES = """\
exit codes:
    0  ok
    1  a failure was found (see the command's help)
    2  usage error: bad arguments, a file that cannot be read
  141  the reader of the output went away (| head): stopped quietly"""


MODE_HELP = "execution mode (default: $BASIS_EXECUTION_MODE, else backtest)"
#: What the live demo's journal shows (tests/test_cli.py checks it against a run).
LIVE_DEMO_SHOWS = (
    "--mode live runs the same blocks with injected faults on a simulated clock, without "
    "real waiting: a lost reply (settled by asking the venue), a refused connection "
    "(routed again), a reply after the execution timeout (used), a reconciliation that "
    "times out once and then succeeds, and one that never comes: it times out on all 3 "
    "attempts, the block fails (EXEC-002), the manager halts and the demo resumes it, as "
    "an operator would.")


class UsageError(Exception):
    """Bad input from the command line: printed, exit code 2."""


# ------------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.cli.demo import format_result, run_demo

    observers, server = serve_metrics(args.metrics_port, out)
    try:
        try:  # the environment, --id and --out are checked before anything is created
            result = run_demo(resolve_mode(args.mode), out=Path(args.out),
                              backtest_id=args.id, observers=observers)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:  # e.g. --out cannot be written
            raise UsageError(_os_reason(exc, "cannot write the outputs")) from None
        print(format_result(result), file=out)
        if server is not None:
            print("serving the run's metrics until Ctrl-C", file=out, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                wait_for_interrupt()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return OK


def serve_metrics(port: int | None, out: IO[str]) -> tuple[list[Any], Any]:
    """``--metrics-port``: a PrometheusObserver on its own registry, served over HTTP on
    127.0.0.1 (port 0: any free port); ``([], None)`` without the option."""
    if port is None:
        return [], None
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise UsageError('--metrics-port needs prometheus_client: '
                         'pip install "fsm-exec[prometheus]"') from None
    from fsm_exec.observe import PrometheusObserver

    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    try:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    except (OSError, OverflowError) as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen: {exc}") from None
    print(f"metrics: http://127.0.0.1:{server.server_port}/metrics", file=out, flush=True)
    return [observer], server


def wait_for_interrupt() -> None:  # pragma: no cover - replaced in tests; Ctrl-C ends it
    while True:
        time.sleep(3600)


def _os_reason(exc: OSError, doing: str) -> str:
    """``<doing>: <path>: <reason>``, without Python's ``[Errno N]``; an ``EventLogError``
    says it all itself."""
    if exc.strerror is None:
        return str(exc)
    return f"{doing}: {exc.filename}: {exc.strerror}" if exc.filename else (
        f"{doing}: {exc.strerror}")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)


def _decode(path: Path, raw: bytes, what: str) -> str:
    """UTF-8 text (a byte order mark is dropped); an error names the line and column."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _line_column(exc.object, exc.start)  # the text after a BOM
        raise UsageError(f"{path}:{line}:{column}: {what}: not valid UTF-8 text") from None


def resolve_mode(mode: str | None) -> str:
    """``--mode``, else ``BASIS_EXECUTION_MODE``, else backtest; every ``BASIS_*``
    variable is checked too (a usage error names the variable, never its value)."""
    from fsm_exec.boundary.config import Environment
    from fsm_exec.core.errors import ConfigError

    try:
        return Environment.read(mode).execution_mode
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


# ------------------------------------------------------------------------ run


def read_batches(path: Path) -> list[tuple[int, list[dict[str, Any]]]]:
    """The batches of a blocks file, validated whole before anything runs: each line is a
    block (a batch of one) or a JSON array of blocks (a batch). Errors name the line (and,
    for JSON, the column); a block id used twice names the line that used it first."""
    from fsm_exec.boundary.blocks import validate_batch
    from fsm_exec.core.errors import BlockProblem, InvalidBlockError

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = _decode(path, raw, "cannot read").splitlines()
    batches: list[tuple[int, list[dict[str, Any]]]] = []
    first_line: dict[str, int] = {}  # block id -> the line that used it first
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}:{exc.colno}: not valid JSON: {exc.msg}") from None
        if item == []:
            raise UsageError(f"{path}:{n}: no blocks (an empty batch)")
        batch = item if isinstance(item, list) else [item]
        try:
            blocks = validate_batch(batch, first_line)
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


#: TOML parser messages that quote the file (a character or a key): only their fixed part
#: is shown, since a config holds secrets.
_TOML_QUOTING = {"Found invalid character": "invalid character",
                 "Illegal character": "illegal character in a string",
                 "Cannot declare": "a table declared twice",
                 "Cannot mutate immutable namespace": "cannot add to an immutable table",
                 "Cannot redefine namespace": "cannot redefine a table",
                 "Duplicate inline table key": "duplicate key in an inline table"}
_TOML_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _toml_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, int, str]:
    """Line, column and reason of a TOML error, never quoting the file."""
    msg = str(exc)
    at = _TOML_AT.search(msg)
    reason = msg[:at.start()] if at else msg
    if at and at[1]:
        line, column = int(at[1]), int(at[2])
    else:  # the end of the document
        line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
    for prefix, fixed in _TOML_QUOTING.items():
        if reason.startswith(prefix):
            return line, column, fixed
    if not reason.startswith(("Expected ", "Unescaped ")):  # those quote the grammar
        reason = re.split(r"['\"{]", reason, maxsplit=1)[0].rstrip(" :")
    return line, column, reason


def read_config(path: Path | None) -> dict[str, Any]:
    """A system-wide config file: TOML or JSON. An error names the file, line and column
    and says why, but never shows the file's content (a config holds secrets)."""
    if path is None:
        return {}
    if path.suffix not in (".toml", ".json"):
        raise UsageError(f"{path}: a config file must end in .toml or .json")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    text = _decode(path, raw, "cannot read the config")
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, column, reason = _toml_error(exc, text)
        raise UsageError(f"{path}:{line}:{column}: not valid TOML: {reason}") from None
    except json.JSONDecodeError as exc:
        reason = exc.msg.partition(": ")[0]  # the pure-Python scanner may quote the file
        raise UsageError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the config must be a table/object")
    return data


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
          failures: list[str]) -> dict[str, Any]:
    """One update with a batch; failures are recorded and the queue run on, as an
    operator would (a refused batch is dropped, a halt is resumed)."""
    from fsm_exec.core.errors import ComponentError, InvalidBlockError, QueueFullError

    trigger: str = "strategy_manager"
    pending: list[dict[str, Any]] | None = batch
    while True:
        try:
            return dict(em.update_state(ts, trigger, pending))
        except (InvalidBlockError, QueueFullError) as exc:  # refused: it never ran
            failures.append(f"{where}: {exc}")
        except ComponentError as exc:
            if exc.block_id is None:  # not a block's own outcome (a journal that fails)
                raise
            failures.append(f"{where}: {exc}")  # backtest fails fast, block by block
        trigger, pending = ("manual" if em.halted else "retry"), None


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


def _interrupted(stop: BaseException, em: Any, log_dir: Path, done: int, total: int,
                 mode: str) -> str:
    """What a stopped run leaves, in a few lines: what is in doubt, how to go on."""
    why = "interrupted (Ctrl-C)" if isinstance(stop, KeyboardInterrupt) else "terminated"
    status = em.get_execution_status()
    lines = [f"fsm-exec run: {why} after {done} of {total} batches; "
             f"{status['blocks_executed']} blocks executed, {status['queue_length']} queued."]
    state = status["current_block_state"]
    if status["current_block"] is not None:
        what = ("the venue executed it: recovery hands its deltas off if that was not "
                "recorded, then waits for reconciliation" if state == "pending_reconciliation"
                else "the venue may have executed it: recovery asks the venue before "
                     "anything is routed again")
        lines.append(f"  block {status['current_block']} was {state}: {what}.")
    if mode == "live":
        lines.append(f"  The journal in {log_dir} holds everything: run the same command "
                     "again to resume from it (or --fresh to move it aside and start over); "
                     f"`fsm-exec status {log_dir}` shows where it stands.")
    else:
        lines.append("  A backtest is run again from the start: run the same command again.")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.config import ExecutionConfig
    from fsm_exec.cli.demo import (
        OWNER_MARKER,
        check_output_paths,
        claim_output_dir,
        csv_paths,
        load_prices,
    )
    from fsm_exec.core.errors import ComponentError
    from fsm_exec.journal.export import check_backtest_id
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
    batches = read_batches(path)
    config = read_config(Path(args.config) if args.config else None)
    backtest_id = args.id or re.sub(r"[^A-Za-z0-9._-]", "-", f"run-{path.stem}")[:128]
    try:
        check_backtest_id(backtest_id)
        ExecutionConfig.from_dict(config)  # refuse a bad config before writing anything
    except ComponentError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"--id: {exc}") from None
    out_dir = Path(args.out)
    log_dir = out_dir / "logs" / "events"
    resuming = False
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
                (log_dir / OWNER_MARKER).write_text("fsm-exec run\n")
            else:
                resuming = True
        elif not resuming:
            claim_output_dir(log_dir, "fsm-exec run")
        journal = EventLogger(log_dir, mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(_os_reason(exc, "cannot write the outputs")) from None
    last = load_prices()[max(load_prices())]
    # The simulated outside world reconciles at once, also a block handed off before a
    # restart (a SimReconciliation would wait for a hand-off this process never saw).
    reconciliation = InstantReconciliation()
    em = ExecutionManager(config, StaticDataProvider(last), mode,
                          SimPositionHandler(), SimVenue(), reconciliation,
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
    done = 0
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        for i, (line, batch) in enumerate(batches):
            if resuming:  # batches are atomic: one the journal already holds is skipped
                batch = [b for b in batch if em.block_state(b["block_id"]) is None]
            _step(em, t0 + dt.timedelta(minutes=i), batch, f"{path}:{line}", failures)
            progress.update(i + 1)
            done = i + 1
        status = _step(em, t0 + dt.timedelta(minutes=len(batches)), [], f"{path}:end",
                       failures)
    except (KeyboardInterrupt, SystemExit) as stop:
        progress.close()
        journal.close()
        print(_interrupted(stop, em, log_dir, done, len(batches), mode), file=sys.stderr)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
        seconds = time.perf_counter() - started
        if not journal._closed:
            journal.export_csv(out_dir / "results", backtest_id)
            journal.close()
    events_csv, deltas_csv = csv_paths(out_dir, backtest_id)
    diagram = out_dir / "run_diagram.md"
    diagram.write_text(to_markdown(overlay_events(read_journal(log_dir),
                                                  title=f"Block lifecycle: {path.name}")))
    n = status["blocks_executed"] + status["blocks_failed"]
    print(f"{path}: {_plural(len(batches), 'batch', 'batches')}, "
          f"{_plural(status['blocks_accepted'], 'block', 'blocks')}, {mode} mode", file=out)
    for key in ("blocks_executed", "blocks_failed", "blocks_retried", "queue_length"):
        print(f"  {key.replace('_', ' '):<18}{status[key]:>10}", file=out)
    print(f"  {'halted':<18}{status['halted']!s:>10}", file=out)
    if seconds > 0:
        print(f"  {'time':<18}{seconds * 1000:>7.1f} ms   ({n / seconds:,.0f} blocks/s)",
              file=out)
    print(f"  journal:          {journal.path_for('ExecutionManager')}", file=out)
    print(f"  events CSV:       {events_csv}", file=out)
    print(f"  deltas CSV:       {deltas_csv}", file=out)
    print(f"  run diagram:      {diagram}", file=out)
    for f in failures:
        print(f"  failed: {f}", file=out)
    return FOUND if failures or status["blocks_failed"] or status["halted"] else OK


# ------------------------------------------------------------------------ check


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.journal.files import journal_files
    from fsm_exec.tools.check import check_journal

    sources = [Path(p) for p in args.logs]
    for p in sources:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_dir() and not journal_files(p):
            raise UsageError(f"{p}: holds no ExecutionManager journal")
        if p.is_file() and not looks_like_a_journal(p):
            raise UsageError(f"{p}: not a journal (its first line is not a journal record); "
                             "pass a log directory or its *_events.jsonl files")
    try:
        report = check_journal(sources[0] if len(sources) == 1 else sources)
    except OSError as exc:  # e.g. a directory among several files
        raise UsageError(f"cannot read: {exc}") from None
    print(report.summary(), file=out)
    return OK if report.ok else FOUND


_RECORD_FIELDS = frozenset(("seq", "timestamp", "event_type", "component", "data"))


def looks_like_a_journal(path: Path) -> bool:
    """Cheap: the first line is a JSON object with the journal's fields or, when it is not
    JSON at all (torn, corrupt, empty), the file is named ``*.jsonl``. Whether it is a good
    journal is for the check to say."""
    from fsm_exec.journal.files import JournalCorruptError, open_regular

    try:
        with open_regular(path) as f:  # a named pipe or a device: refused, never blocks
            first = f.readline(1 << 20)
    except JournalCorruptError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        record = json.loads(first.decode("utf-8-sig"))
    except ValueError:  # not JSON, not UTF-8, or nothing at all
        return path.suffix == ".jsonl"
    return isinstance(record, dict) and record.keys() >= _RECORD_FIELDS


# ------------------------------------------------------------------------ diagram

LIFECYCLE_JSON = "block_lifecycle.json"


def review_diagrams() -> dict[str, str]:
    """The diagrams committed in ``diagrams/``: name -> text (``.svg`` maps to its DOT)."""
    import tempfile

    from fsm_exec.cli.demo import run_demo
    from fsm_exec.journal.reader import read_journal
    from fsm_exec.tools.diagram import (
        current_table,
        lifecycle_model,
        overlay_events,
        to_dot,
        to_markdown,
        to_mermaid,
    )

    with tempfile.TemporaryDirectory() as tmp:
        run_demo("live", out=tmp, report=False)
        demo = overlay_events(read_journal(Path(tmp) / "logs" / "events"),
                              title="Block lifecycle: the live demo run")
    files: dict[str, str] = {LIFECYCLE_JSON: current_table().to_json()}
    for stem, model in (("block_lifecycle", lifecycle_model()), ("demo_live_run", demo)):
        files[f"{stem}.mmd"] = to_mermaid(model)
        files[f"{stem}.dot"] = to_dot(model)
        files[f"{stem}.svg"] = to_dot(model)
        files[f"{stem}.md"] = to_markdown(model)
    return files


def stale_diagrams(directory: Path) -> list[str]:
    """The files of ``directory`` that differ from what the code generates (or are
    missing). An SVG is current when it was rendered from the current DOT."""
    from fsm_exec.tools.diagram import _digest, svg_source_digest

    stale = []
    for name, text in review_diagrams().items():
        path = directory / name
        if not path.exists():
            stale.append(f"{path} (missing)")
        elif name.endswith(".svg"):
            if svg_source_digest(path.read_bytes()) != _digest(text):
                stale.append(f"{path} (not rendered from the current DOT)")
        elif path.read_text() != text:
            stale.append(str(path))
    return stale


def lifecycle_changes(directory: Path) -> list[str]:
    """What changed in the code's lifecycle since ``directory``'s block_lifecycle.json, in
    words (nothing when the file is current or cannot be read: --check names it then)."""
    from fsm_exec.tools.diagram import (
        LifecycleFileError,
        LifecycleTable,
        current_table,
        diff_tables,
    )

    path = directory / LIFECYCLE_JSON
    try:
        old = LifecycleTable.from_json(path.read_text(), str(path))
    except (OSError, LifecycleFileError):
        return []
    return diff_tables(old, current_table()).lines()


def write_diagrams(directory: Path) -> list[Path]:
    from fsm_exec.tools.diagram import render_graphviz

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in review_diagrams().items():
        path = directory / name
        if name.endswith(".svg"):
            path.write_bytes(render_graphviz(text, "svg"))
        else:
            path.write_text(text)
        written.append(path)
    return written


def table_at_ref(ref: str, directory: Path) -> tuple[Any, str]:
    """The lifecycle table committed at git ``ref`` (``<directory>/block_lifecycle.json``
    there), and a name for it."""
    import os
    import shutil
    import subprocess

    from fsm_exec.tools.diagram import LifecycleFileError, LifecycleTable

    git = shutil.which("git")
    if git is None:
        raise UsageError("--diff-ref needs git")
    here = directory if directory.is_dir() else Path.cwd()
    top = subprocess.run([git, "-C", str(here), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, check=False)
    if top.returncode != 0:
        raise UsageError(f"--diff-ref: {here} is not in a git repository")
    rel = Path(os.path.relpath((directory / LIFECYCLE_JSON).resolve(),
                               Path(top.stdout.strip()).resolve())).as_posix()
    shown = subprocess.run([git, "-C", top.stdout.strip(), "show", f"{ref}:{rel}"],
                           capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        raise UsageError(f"--diff-ref: git has no {rel} at {ref!r}: "
                         f"{shown.stderr.strip().splitlines()[-1] if shown.stderr else ''}")
    try:
        return LifecycleTable.from_json(shown.stdout, f"{ref}:{rel}"), f"{rel} at {ref}"
    except LifecycleFileError as exc:
        raise UsageError(str(exc)) from None


def journal_paths(paths: Sequence[str]) -> list[Path]:
    """The journal paths of a command line: each must exist, and a directory must hold a
    journal (else :class:`UsageError`, exit 2, as ``check`` does)."""
    from fsm_exec.journal.files import journal_files

    files = [Path(p) for p in paths]
    for p in files:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_dir() and not journal_files(p):
            raise UsageError(f"{p}: holds no ExecutionManager journal")
    return files


def read_events(paths: Sequence[str]) -> list[Any]:
    """The records of the journals at ``paths``, checked against the lifecycle first: a
    journal that breaks it (or a corrupt line) raises :class:`Refused` naming the first
    offending ``file:line``; one without records is a :class:`UsageError`."""
    from fsm_exec.tools.report import read_checked

    files = journal_paths(paths)
    try:
        records, problem = read_checked(files[0] if len(files) == 1 else files)
    except OSError as exc:  # e.g. a directory among several journal files
        raise UsageError(str(exc)) from None
    if problem:
        raise Refused(f"the journal breaks the lifecycle: {problem}; nothing drawn")
    if not records:
        raise UsageError(f"{', '.join(paths)}: no journal records")
    return records


class Refused(Exception):
    """Input that is readable but wrong (a journal that breaks the lifecycle): exit 1."""


def cmd_diagram(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.diagram import (
        GraphvizMissingError,
        JournalOffTableError,
        LifecycleFileError,
        LifecycleTable,
        diff_model,
        lifecycle_model,
        overlay_block,
        overlay_events,
        render_graphviz,
        to_dot,
        to_markdown,
        to_markdown_table,
        to_mermaid,
    )

    directory = Path(args.dir)
    if args.check:
        stale = stale_diagrams(directory)
        for s in stale:
            print(f"stale: {s}", file=out)
        changes = lifecycle_changes(directory)
        if changes:
            print(f"the lifecycle changed since {directory / LIFECYCLE_JSON}:", file=out)
            for line in changes:
                print(f"  {line}", file=out)
        if stale:
            print("regenerate with: fsm-exec diagram --write", file=out)
            return FOUND
        print(f"{directory}: all diagrams current", file=out)
        return OK
    try:
        if args.write:
            for p in write_diagrams(directory):
                print(f"wrote {p}", file=out)
            return OK
        if args.block and not args.events:
            raise UsageError("--block needs --events LOG")
        if (args.diff or args.diff_ref) and args.events:
            raise UsageError("--diff/--diff-ref draw the lifecycle, not a journal: "
                             "drop --events")
        if args.events:
            records = read_events(args.events)
            model = (overlay_block(records, args.block) if args.block
                     else overlay_events(records))
        elif args.diff:
            try:
                old = LifecycleTable.from_json(Path(args.diff).read_text(), args.diff)
            except OSError as exc:
                raise UsageError(f"--diff: cannot read {args.diff}: {exc.strerror}") from None
            model = diff_model(old, since=args.diff)
        elif args.diff_ref:
            old, name = table_at_ref(args.diff_ref, directory)
            model = diff_model(old, since=name)
        else:
            model = lifecycle_model()
        text_renderers = {"mermaid": to_mermaid, "dot": to_dot, "markdown": to_markdown,
                          "table": to_markdown_table}
        if args.format in text_renderers:
            data = text_renderers[args.format](model).encode()
        else:
            data = render_graphviz(to_dot(model), args.format)
    except Refused as exc:
        print(f"fsm-exec diagram: {exc}", file=sys.stderr)
        return FOUND
    except JournalOffTableError as exc:  # pragma: no cover - check_journal refuses it first
        print(f"fsm-exec diagram: {exc}", file=sys.stderr)
        return FOUND
    except (GraphvizMissingError, LookupError, LifecycleFileError) as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"--output: cannot write: {exc}") from None
    elif args.format == "png":
        raise UsageError("--format png needs --output FILE")
    else:
        out.write(data.decode())
    return OK


# ------------------------------------------------------------------------ report


def cmd_report(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.report import ReportDependencyError, build_report, to_html, to_markdown

    files = journal_paths(args.logs)
    try:
        report = build_report(files[0] if len(files) == 1 else files, title=args.title)
    except OSError as exc:  # e.g. a directory among several journal files
        raise UsageError(str(exc)) from None
    if not report.records and not report.problem:
        raise UsageError(f"{', '.join(args.logs)}: no journal records")
    fmt = args.format or ("markdown" if (args.output or "").endswith(".md") else "html")
    try:
        text = to_html(report) if fmt == "html" else to_markdown(report)
    except ReportDependencyError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output: cannot write: {exc}") from None
        print(f"wrote {args.output}", file=out)
    else:
        out.write(text)
    if report.problem:
        print(f"fsm-exec report: the journal breaks the lifecycle: {report.problem}; the "
              "report shows the records before it", file=sys.stderr)
        return FOUND
    return OK


# ------------------------------------------------------------------------ status


def _parse_now(text: str | None) -> dt.datetime | None:
    """``--now``: an ISO 8601 time with an offset (``Z`` for UTC), or ``None``."""
    if text is None:
        return None
    try:
        now = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now: not an ISO 8601 time: {text!r}") from None
    if now.tzinfo is None:
        raise UsageError(f"--now: give an offset (e.g. {text}Z or {text}+00:00)")
    return now


def cmd_status(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.boundary.config import ExecutionConfig
    from fsm_exec.core.errors import ComponentError
    from fsm_exec.tools.status import STATUS_FORMAT, StatusUnreadable, format_status, read_status

    now = _parse_now(args.now)
    config, source = None, "the default config"
    if args.config:
        try:
            config = ExecutionConfig.from_dict(read_config(Path(args.config)))
        except ComponentError as exc:
            raise UsageError(str(exc)) from None
        source = args.config
    try:
        report = read_status(args.log_dir, now=now, config=config, config_source=source)
    except (StatusUnreadable, OSError) as exc:
        if args.json:
            print(json.dumps({
                "format": STATUS_FORMAT, "readable": False, "log_dir": args.log_dir,
                "error": str(exc), "path": getattr(exc, "path", None),
                "line": getattr(exc, "line", None), "exit_code": USAGE}, indent=2), file=out)
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        out.write(format_status(report))
    return int(report["exit_code"])


# ------------------------------------------------------------------------ cancel


def cmd_cancel(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.tools.cancel import CancelRefused, cancel_offline

    if args.all == bool(args.ids):
        raise UsageError("name the blocks to cancel, or --all (not both)")
    try:
        result = cancel_offline(args.log_dir, None if args.all else args.ids,
                                reason=args.reason)
    except CancelRefused as exc:
        raise UsageError(str(exc)) from None
    if not result.cancelled:
        print(f"{args.log_dir}: nothing queued, nothing cancelled", file=out)
    else:
        print(f"{args.log_dir}: cancelled {_plural(len(result.cancelled), 'block', 'blocks')} "
              f"(reason: {args.reason}): {', '.join(result.cancelled)}", file=out)
    left = result.queued
    print(f"  still queued: {', '.join(left) if left else 'none'}", file=out)
    if result.in_flight is not None:
        print(f"  in flight: {result.in_flight} (settled by recover() when the strategy "
              "process starts; a block in flight cannot be cancelled)", file=out)
    if result.halted:
        print(f"  the manager stays halted ({result.halt_reason}): resume it from the strategy "
              "process with update_state(ts, 'manual')", file=out)
    return OK


# ------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="fsm-exec", formatter_class=fmt,
        description="Run trading instruction blocks through fsm_exec's ExecutionManager, "
                    "draw the block lifecycle, and check journals.",
        epilog="examples:\n  fsm-exec demo\n  fsm-exec demo --mode live --out /tmp/demo\n"
               "  fsm-exec run blocks.jsonl --config system.toml\n"
               "  fsm-exec diagram --events logs/events --block hedge-20251001T18\n"
               "  fsm-exec check logs/events\n"
               "  fsm-exec status logs/events\n"
               "  fsm-exec cancel logs/events --all --reason 'positions reconciled by hand'\n\n"
               + EXIT_CODES)
    p.add_argument("--version", action="version", version=f"fsm-exec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser(
        "demo", formatter_class=fmt, help="run the bundled example strategy",
        description="Run the bundled example: an ETH basis strategy's instruction blocks "
                    "over a bundled month of hourly prices, on simulated venues (spot, "
                    "staking, lending, perp). Writes logs/events/"
                    "execution_manager_events.jsonl, results/<id>/events.csv, "
                    "results/<id>/deltas.csv and run_diagram.md under --out, with a run "
                    "report (report.html; report.md without matplotlib), and prints a "
                    "summary. The environment and the arguments are checked before anything "
                    "is created.\n\n"
                    f"{LIVE_DEMO_SHOWS}",
        epilog=EXIT_CODES)
    d.add_argument("--mode", choices=("backtest", "live"), help=MODE_HELP)
    d.add_argument("--out", default=".", metavar="DIR",
                   help="where to write the outputs (default: the current directory)")
    d.add_argument("--id", help="backtest id for the CSV folder (default: demo-<mode>)")
    d.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve the run's Prometheus metrics at http://127.0.0.1:PORT/metrics "
                        "(0: any free port) while it runs, then until Ctrl-C (needs "
                        "pip install \"fsm-exec[prometheus]\")")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "run", formatter_class=fmt, help="run a file of blocks through the manager",
        description="Run the blocks of a JSON-lines file through the manager with the bundled "
                    "simulated collaborators (an idempotent venue, a position handler, "
                    "instant reconciliation, the bundled prices). Each line is a block, or a "
                    "JSON array of blocks submitted as one batch; blank lines and lines "
                    "starting with # are skipped. The whole file (and the config, the "
                    "environment and the arguments) is validated before anything is created; "
                    "an error names the line. Writes logs/events/"
                    "execution_manager_events.jsonl, results/<id>/events.csv, "
                    "results/<id>/deltas.csv and run_diagram.md under --out. A live journal "
                    "already there is never deleted: the run resumes from it (blocks it "
                    "holds are not submitted again), or --fresh moves it aside; a backtest "
                    "journal is replaced only if an earlier `fsm-exec run` wrote it. Failed "
                    "blocks are reported and the queue runs on (a halt is resumed, as an "
                    "operator would). Ctrl-C or SIGTERM stops it with a short account of "
                    "what is in doubt (exit 130 or 143).",
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
    r.set_defaults(func=cmd_run)

    g = sub.add_parser(
        "diagram", formatter_class=fmt, help="draw the block lifecycle, or what a run did",
        description="Draw the block lifecycle from the code's table; with --events, what a "
                    "journal shows (how often each edge was taken, where blocks ended); with "
                    "--block, one block's path, numbered, with attempts; with --diff or "
                    "--diff-ref, what changed since an older table. SVG and PNG need "
                    "Graphviz's dot program. A journal that breaks the lifecycle is not "
                    "drawn.\n\n"
                    "--write regenerates the review diagrams in --dir; --check exits 1, "
                    "naming each stale file, when they differ from what the code generates, "
                    "and says in words how the lifecycle changed.",
        epilog="exit code 1: a diagram is stale (--check), or the journal breaks the "
               "lifecycle (the first offending file:line is printed).\n\n" + EXIT_CODES)
    g.add_argument("--format", choices=FORMATS, default="mermaid")
    g.add_argument("--events", nargs="+", metavar="LOG",
                   help="journal files, or a log directory")
    g.add_argument("--block", metavar="ID", help="draw this block's path (needs --events)")
    g.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="check the review diagrams")
    mode.add_argument("--write", action="store_true", help="regenerate the review diagrams")
    g.add_argument("--dir", default=DIAGRAM_DIR,
                   help=f"review diagram folder (default: {DIAGRAM_DIR})")
    old = g.add_mutually_exclusive_group()
    old.add_argument("--diff", metavar="OLD.json",
                     help="draw the lifecycle against an older block_lifecycle.json: added "
                          "and removed states and edges, changed meanings")
    old.add_argument("--diff-ref", metavar="GIT_REF",
                     help="the same, with the block_lifecycle.json of --dir at a git ref "
                          "(e.g. origin/main)")
    g.set_defaults(func=cmd_diagram)

    rp = sub.add_parser(
        "report", formatter_class=fmt, help="a run report of a journal (HTML or Markdown)",
        description="Write a run report of a journal for a reviewer or an operator: the "
                    "totals, the lifecycle overlay, a per-block timeline of the time spent "
                    "in each state (failed and slowest blocks first), histograms of attempts "
                    "and reconciliation waits, the failures with their codes' resolutions, "
                    "and the halts and resumes on the time axis.\n\n"
                    "HTML (the default): one self-contained file, no script, nothing fetched "
                    "when viewed; its plots need matplotlib (pip install 'fsm-exec[report]') "
                    "and its diagram Graphviz's dot. --format markdown: the same with Mermaid "
                    "(a gantt timeline), for a pull-request comment.",
        epilog="exit code 1: the journal breaks the lifecycle; the report is still written, "
               "from the records before the first offending file:line, and says so.\n\n"
               + EXIT_CODES)
    rp.add_argument("logs", nargs="+", metavar="LOG",
                    help="a log directory, or journal files in order")
    rp.add_argument("--output", "-o", metavar="FILE",
                    help="write here (default: stdout); a .md name implies --format markdown")
    rp.add_argument("--format", choices=("html", "markdown"),
                    help="html (default) or markdown")
    rp.add_argument("--title", help="the report's title (default: names the journal)")
    rp.set_defaults(func=cmd_report)

    st = sub.add_parser(
        "status", formatter_class=fmt, help="what a journal says about its manager, now",
        description="Read a manager's journal, without taking its lock or writing anything "
                    "(safe while the manager runs), and print what the person on call "
                    "needs: whether a process holds the journal (its pid), whether the "
                    "manager halted and why (code, block, time), the block in flight (state, "
                    "attempt, time in that state against its deadline, whether it is in "
                    "doubt and what recovery would do with it), the queue (count, first ids, "
                    "age of the oldest), the counters, the last record, and the next step, "
                    "with a link into the README's runbook. Deadlines come from --config "
                    "(the manager's own config file), else the defaults.",
        epilog="exit codes:\n"
               "    0  healthy: running or not, nothing halted, in doubt or stuck\n"
               "    1  needs attention: halted, a block in doubt, or a block stuck past its "
               "deadline\n"
               "    2  unreadable: no journal, or a corrupt one (the file:line is named)\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    st.add_argument("log_dir", metavar="LOG_DIR", help="the manager's log directory")
    st.add_argument("--json", action="store_true",
                    help="print one JSON object (keys in the README) instead of text")
    st.add_argument("--config", metavar="FILE",
                    help="the system-wide config the manager runs with (.toml or .json), for "
                         "its deadlines (default: the default config)")
    st.add_argument("--now", metavar="TIME",
                    help="measure ages as of this ISO 8601 time with an offset (default: now)")
    st.set_defaults(func=cmd_status)

    ca = sub.add_parser(
        "cancel", formatter_class=fmt, help="cancel queued blocks of a stopped manager",
        description="Cancel queued blocks in the journal of a manager that is not running: "
                    "they end cancelled and are never routed. The journal's lock is taken "
                    "first, so this is refused while a manager holds the directory (cancel "
                    "from inside it with em.cancel(ts, ids, reason=...) instead). Only "
                    "queued blocks can be cancelled: an id that is unknown, in flight or "
                    "finished refuses the whole call, and nothing is changed. A halted "
                    "manager stays halted; resuming is the strategy process's decision "
                    "(update_state(ts, 'manual')): there is no resume command.",
        epilog="exit codes:\n"
               "    0  cancelled (or nothing was queued)\n"
               "    2  refused, nothing changed: the directory is in use (the holder's pid "
               "is named), no readable journal, an id that is not queued, no --reason\n"
               "  141  the reader of the output went away (| head): stopped quietly")
    ca.add_argument("log_dir", metavar="LOG_DIR", help="the manager's log directory")
    ca.add_argument("ids", nargs="*", metavar="ID", help="the queued blocks to cancel")
    ca.add_argument("--all", action="store_true", help="cancel every queued block")
    ca.add_argument("--reason", required=True, metavar="TEXT",
                    help="why (journaled with each cancelled block)")
    ca.set_defaults(func=cmd_cancel)

    c = sub.add_parser(
        "check", formatter_class=fmt, help="check journals against the lifecycle",
        description="Replay journals against the block lifecycle: every transition an edge "
                    "of the table from the block's current state, blocks started in order "
                    "and one at a time, nothing moving after a terminal state, counters "
                    "agreeing. A block left in flight (a crash) is reported in doubt.",
        epilog="exit code 1: the journal breaks a rule; the first offending file:line is "
               "printed.\n\n" + EXIT_CODES)
    c.add_argument("logs", nargs="+", metavar="LOG",
                   help="a log directory, or journal files in order")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    stream = sys.stdout if out is None else out
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            sys.stdout.flush()  # some argparse versions ignore a failed write: flush sees it
            return int(exc.code) if isinstance(exc.code, int) else USAGE
        try:
            code = int(args.func(args, stream))
        except UsageError as exc:
            print(f"fsm-exec {args.command}: {exc}", file=sys.stderr)
            code = USAGE
        stream.flush()  # a reader that went away is noticed here, not at exit
        return code
    except BrokenPipeError:  # `fsm-exec ... | head -1`: stop quietly, as Unix tools do
        _drop_closed_pipes()
        return CLOSED_PIPE


def _drop_closed_pipes() -> None:
    """Point stdout and stderr at /dev/null, so that flushing them at exit cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, s.fileno())
    finally:
        os.close(devnull)
