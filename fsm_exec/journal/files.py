"""A journal's files: their names, their order (by the ``seq`` they hold), their first and
last records read cheaply, and the repair of a torn last line."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import stat
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from fsm_exec.boundary.escape import terminal_text
from fsm_exec.core.errors import ComponentError
from fsm_exec.journal.codec import MAX_LINE_BYTES

JOURNAL_SUFFIX = "_events.jsonl"
_DATED = re.compile(r"^(?P<stem>.+_events)\.(?P<day>\d{4}-\d{2}-\d{2})(?:\.(?P<n>\d+))?\.jsonl$")


class JournalCorruptError(ComponentError, ValueError):
    """A journal line cannot be read; names the file and the line. The message shows
    the control characters of what it quotes (the reason, the path) escaped."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path, self.line = str(path), line  # line 0: the file as a whole
        where, why = terminal_text(path), terminal_text(reason, keep_lines=True)
        super().__init__("EXEC-013", f"{where}:{line}: {why}" if line else f"{where}: {why}")



@attrs.frozen
class FileOwner:
    """The owner, group and permission bits of a journal's files: what a file created for
    that journal by another user (``sudo fsm-exec cancel``, as root) is given, so that the
    journal's own manager can still write it."""

    uid: int
    gid: int
    mode: int

    @classmethod
    def like(cls, path: Path | str) -> FileOwner:
        """The owner, group and permission bits of the file at ``path``."""
        info = os.stat(path)
        return cls(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))

    def give(self, fd: int) -> None:
        """Make the open file ``fd`` this owner's, with these bits (a change of owner
        needs root)."""
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (self.uid, self.gid):
            os.fchown(fd, self.uid, self.gid)
        if stat.S_IMODE(info.st_mode) != self.mode:
            os.fchmod(fd, self.mode)


_APPEND = os.O_WRONLY | os.O_APPEND


def open_append(path: Path, owner: FileOwner | None = None) -> int:
    """``path`` opened for appending, created when it is missing (mode 0644, less the
    umask). A file created for ``owner`` is made under a temporary name in the same
    directory, given its owner, group and bits, and only then renamed into place: it
    never bears its name with another owner, whenever the process dies."""
    if owner is None:
        return os.open(path, _APPEND | os.O_CREAT, 0o644)
    with contextlib.suppress(FileNotFoundError):
        return os.open(path, _APPEND)
    new = path.with_name(f".{path.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        new.unlink()  # left by a process of this pid that died here
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        owner.give(fd)
        os.rename(new, path)
    except BaseException:
        with contextlib.suppress(OSError):
            new.unlink()
        raise
    finally:
        os.close(fd)
    return os.open(path, _APPEND)


def not_regular(mode: int) -> str | None:
    """Why a file of ``mode`` (``st_mode``) is not read: ``"a device, not a regular
    file"``; ``None`` for a regular file. The one wording of every reader and command."""
    if stat.S_ISREG(mode):
        return None
    kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory"
            if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a special file")
    return f"{kind}, not a regular file (only a regular file is read)"


def open_regular(path: Path | str) -> IO[bytes]:
    """``path`` opened for reading if it is a regular file (a link to one included); a
    named pipe, a device (``/dev/zero``), a socket or a directory is refused with
    :class:`JournalCorruptError` (``PATH: a device, not a regular file ...``, see
    :func:`not_regular`) at once, before anything is read (the open never blocks:
    ``O_NONBLOCK``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        problem = not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise JournalCorruptError(path, 0, problem)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@functools.lru_cache(maxsize=256)
def journal_name(component: str) -> str:
    """``ExecutionManager`` -> ``execution_manager_events.jsonl``."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", component)
    snake = re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower()
    if not snake:
        raise ValueError(f"component name {component!r} has no letters or digits")
    return snake + JOURNAL_SUFFIX



def shares_file(a: str, b: str) -> bool:
    """Whether the writer puts the records of components ``a`` and ``b`` in one file."""
    try:
        return journal_name(a) == journal_name(b)
    except ValueError:  # a name with no letters or digits: no file of its own
        return False


def journal_files(log_dir: Path | str, component: str = "ExecutionManager") -> list[Path]:
    """A component's journal files in the order of the ``seq`` they hold (never by the
    dates in their names): rotated ones, then the current one."""
    return files_of(Path(log_dir), journal_name(component)[: -len(".jsonl")])


#: How a record's line starts (the writer puts ``seq`` first, and a checkpoint's
#: ``written_on`` first in its data): read from a bounded prefix, however long the line.
_SEQ_PREFIX = re.compile(rb'\{"seq":(\d{1,19}),')
_WRITTEN_ON_PREFIX = re.compile(
    rb'\{"seq":\d{1,19},"timestamp":"[^"]{1,64}","event_type":"checkpoint",'
    rb'"component":"[^"\\]{1,256}","data":\{"written_on":"(\d{4}-\d{2}-\d{2})"')
_PREFIX = 1024


def _first_line_prefix(path: Path) -> bytes | None:
    """The first :data:`_PREFIX` bytes of a file's first line, if that line is whole
    (ends in a newline); ``None`` if the file has no whole line or cannot be read. Reads
    on to the newline in chunks, so a first line of any length costs no more memory."""
    try:
        with open_regular(path) as f:
            info = os.fstat(f.fileno())
            # Never past the file's end as it was: not on for ever into a file that grows
            # as it is read.
            left = info.st_size
            head = f.read(min(_PREFIX, left))
            if b"\n" in head:
                return head
            left -= len(head)
            while left > 0 and (chunk := f.read(min(1 << 20, left))):
                if b"\n" in chunk:
                    return head
                left -= len(chunk)
    except (OSError, JournalCorruptError):  # not a regular file: no journal
        return None
    return None


def first_seq(path: Path) -> int | None:
    """The ``seq`` of a file's first record; ``None`` if it has none (empty, torn, not a
    journal)."""
    head = _first_line_prefix(path)
    if head is None:
        return None
    m = _SEQ_PREFIX.match(head)
    if m:
        return int(m[1])
    first = _first_record(path)  # keys in another order: read the whole line
    seq = first.get("seq") if type(first) is dict else None
    return seq if type(seq) is int else None


def _first_record(path: Path) -> Any:
    """The first line of ``path`` parsed (a whole line known to be there), or ``None``."""
    try:
        with open_regular(path) as f:
            return orjson.loads(f.readline(MAX_LINE_BYTES))
    except (OSError, orjson.JSONDecodeError, JournalCorruptError):
        return None


def files_of(log_dir: Path, stem: str) -> list[Path]:
    found: list[Path] = []
    if log_dir.is_dir():
        for p in log_dir.iterdir():
            m = _DATED.match(p.name)
            if (m and m["stem"] == stem) or p.name == f"{stem}.jsonl":
                found.append(p)
    keyed = []
    for p in found:
        first = first_seq(p)
        # Files without a record (a new current file) sort after every file that has one.
        keyed.append((first is None, first or 0, p.name != f"{stem}.jsonl", p.name, p))
    return [k[-1] for k in sorted(keyed)]


def components_in(log_dir: Path) -> list[str]:
    """Journal stems present in a directory (``execution_manager_events`` ...), sorted."""
    stems = set()
    if log_dir.is_dir():
        for p in log_dir.iterdir():
            m = _DATED.match(p.name)
            if m:
                stems.add(m["stem"])
            elif p.name.endswith(JOURNAL_SUFFIX):
                stems.add(p.name[: -len(".jsonl")])
    return sorted(stems)


def _tail_offsets(f: IO[bytes], size: int) -> tuple[int, int]:
    """(offset just after the last newline, offset where that last full line starts)."""
    found: list[int] = []
    pos = size
    while pos > 0 and len(found) < 2:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        buf = f.read(pos - start)
        i = len(buf)
        while len(found) < 2:
            i = buf.rfind(b"\n", 0, i)
            if i < 0:
                break
            found.append(start + i)
        pos = start
    if not found:
        return 0, 0
    return found[0] + 1, (found[1] + 1 if len(found) > 1 else 0)


def last_seq(path: Path) -> int:
    """The seq of the last complete line of ``path`` (0 if none)."""
    size = path.stat().st_size
    if not size:
        return 0
    with open(path, "rb") as f:
        full_end, line_start = _tail_offsets(f, size)
        if full_end == 0:
            return 0
        f.seek(line_start)
        line = f.read(full_end - line_start)
    try:
        seq = orjson.loads(line)["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        n = _count_lines(path, full_end)
        raise JournalCorruptError(path, n, "the last line is not a journal record") from None
    if type(seq) is not int:
        raise JournalCorruptError(path, _count_lines(path, full_end), "seq is not an integer")
    return seq


def _count_lines(path: Path, upto: int) -> int:
    with open(path, "rb") as f:
        return f.read(upto).count(b"\n")


def repair_torn_tail(path: Path, owner: FileOwner | None = None) -> bytes:
    """Set aside a torn last line (a crash mid-write: no final newline) and truncate the
    file to its last complete line. Returns the bytes set aside (empty if none). A
    ``<file>.torn`` this creates is ``owner``'s (see :func:`open_append`)."""
    size = path.stat().st_size
    if not size:
        return b""
    with open(path, "r+b") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return b""
        full_end, _ = _tail_offsets(f, size)
        f.seek(full_end)
        torn = f.read()
        aside = path.with_name(path.name + ".torn")
        with os.fdopen(open_append(aside, owner), "ab") as t:
            t.write(torn + b"\n")
            t.flush()
            os.fsync(t.fileno())
        f.truncate(full_end)
        f.flush()
        os.fsync(f.fileno())
    return torn


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_day(path: Path, fallback: dt.date) -> dt.date:
    """The day a file was started: its first checkpoint's ``written_on``, else its name's
    date, else the day it was last written (UTC), else ``fallback``."""
    head = _first_line_prefix(path)
    written = _WRITTEN_ON_PREFIX.match(head) if head is not None else None
    if written:
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(written[1].decode())
    elif head is not None:  # a file of an earlier version: written_on last in its data
        try:
            return dt.date.fromisoformat(_first_record(path)["data"]["written_on"])
        except (KeyError, TypeError, ValueError):
            pass
    m = _DATED.match(path.name)
    if m:
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(m["day"])
    try:
        return min(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date(), fallback)
    except OSError:
        return fallback



def journal_stem_of(path: Path) -> str:
    """``.../execution_manager_events.jsonl`` -> ``execution_manager_events``."""
    m = _DATED.match(path.name)
    return m["stem"] if m else path.name[: -len(".jsonl")]

