"""What every command shares: exit codes, usage errors, reading the config file."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from fsm_exec.boundary.escape import terminal_text

OK, FOUND, USAGE = 0, 1, 2
CLOSED_PIPE = 128 + 13  # what a shell reports for a tool whose reader went away (SIGPIPE)

EXIT_CODES = """\
exit codes:
    0  ok
    1  a failure was found (see the command's help)
    2  usage error: bad arguments, a file that cannot be read
  141  the reader of the output went away (| head): stopped quietly"""


MODE_HELP = "execution mode (default: $BASIS_EXECUTION_MODE, else backtest)"


class UsageError(Exception):
    """Bad input from the command line: printed, exit code 2."""


class Refused(Exception):
    """Input that is readable but wrong (a journal that breaks the lifecycle): exit 1."""


def os_reason(exc: OSError, doing: str) -> str:
    """``<doing>: <path>: <reason>``, without Python's ``[Errno N]``; an ``EventLogError``
    says it all itself."""
    if exc.strerror is None:
        return str(exc)
    return f"{doing}: {exc.filename}: {exc.strerror}" if exc.filename else (
        f"{doing}: {exc.strerror}")


def parse_time(option: str, text: str | None) -> dt.datetime | None:
    """A time option (``--now``, ``--at``): an ISO 8601 time with an offset (``Z`` for UTC)
    read by the package's one parser, or ``None`` when not given; else :class:`UsageError`
    naming the option and saying what to give."""
    if text is None:
        return None
    from fsm_exec.boundary.canonical import parse_timestamp

    when = parse_timestamp(text, naive_is_utc=True)  # the package's one parser
    if when is None:
        raise UsageError(f"{option}: not an ISO 8601 time: {text!r}")
    if parse_timestamp(text) is None:  # it parsed only as a naive time
        raise UsageError(f"{option}: give an offset (e.g. {text}Z or {text}+00:00)")
    return when


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)


def decode_text(path: Path, raw: bytes, what: str) -> str:
    """UTF-8 text (a byte order mark is dropped); an error names the line and column."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = line_column(exc.object, exc.start)  # the text after a BOM
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
    raw = read_input(path, f"{path}: cannot read the config")
    text = decode_text(path, raw, "cannot read the config")
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

def journal_paths(paths: Sequence[str]) -> list[Path]:
    """The journal paths of a command line, the one test every command that reads a
    journal applies before reading it (``check``, ``report``, ``diagram --events``): each
    must exist; a directory must hold a journal, and its journal files be regular files;
    a file must be a regular file whose first line is a journal record (or a ``*.jsonl``
    that is not JSON at all: a torn or corrupt journal, for the reader to report). Else
    :class:`UsageError`, exit 2, with one message per case."""
    from fsm_exec.journal.files import journal_files

    files = [Path(p) for p in paths]
    for p in files:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
        if p.is_dir():
            inside = journal_files(p)
            if not inside:
                raise UsageError(f"{p}: holds no ExecutionManager journal")
            for f in inside:
                regular_file(f)
        elif not _looks_like_a_journal(p):
            raise UsageError(f"{p}: not a journal (its first line is not a journal record); "
                             "pass a log directory or its *_events.jsonl files")
    return files


def regular_file(path: Path) -> None:
    """Refuse (:class:`UsageError`, exit 2) a path that is not a regular file, before
    anything reads it: ``PATH: a device, not a regular file ...`` (the reader's wording,
    :func:`fsm_exec.journal.files.not_regular`)."""
    from fsm_exec.journal.files import not_regular

    try:
        problem = not_regular(path.stat().st_mode)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if problem is not None:
        raise UsageError(f"{path}: {problem}")


#: The largest file a command reads whole (a blocks file, prices, a config, a lifecycle
#: table): a bound on what one input may cost.
MAX_INPUT_BYTES = 1 << 30


def read_input(path: Path, cannot: str) -> bytes:
    """The bytes of a file a command reads whole: a regular file only (else
    :class:`UsageError`, exit 2, before anything is read), of at most
    :data:`MAX_INPUT_BYTES`. ``cannot`` starts the message of an ``OSError``."""
    from fsm_exec.journal.files import JournalCorruptError, open_regular

    try:
        with open_regular(path) as f:
            raw = f.read(MAX_INPUT_BYTES + 1)
    except JournalCorruptError as exc:  # a device, a named pipe, a directory
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"{cannot}: {exc.strerror or exc}") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise UsageError(f"{path}: larger than {MAX_INPUT_BYTES} bytes (the most a command "
                         "reads)")
    return raw


def _looks_like_a_journal(path: Path) -> bool:
    """The reader's own test (``journal.reader.looks_like_a_journal``), as a usage error
    when the file cannot be read (a device, a named pipe: refused before reading)."""
    from fsm_exec.journal.files import JournalCorruptError
    from fsm_exec.journal.reader import looks_like_a_journal as sniff

    try:
        return sniff(path)
    except JournalCorruptError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None




def complain(text: str) -> None:
    """A message on stderr, its control characters shown as their escapes (it may quote a
    journal, a venue's error or a file name)."""
    print(terminal_text(text, keep_lines=True), file=sys.stderr)


class ShownText:
    """What a command prints, with control characters and escape sequences shown as their
    escapes (``\\x1b``): text quoted from a journal or a collaborator can move no cursor,
    erase no line, hide no link. Lines still end at line feeds (the command's own, and
    nothing else: values are escaped whole where they are quoted)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(terminal_text(text, keep_lines=True))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()
