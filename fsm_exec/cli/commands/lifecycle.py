"""``fsm-exec lifecycle``: check a lifecycle file against the safety rules, or print the file
format's JSON Schema. Also the lifecycle files ``fsm-exec diagram`` reads."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    OK,
    USAGE,
    Refused,
    UsageError,
    complain,
    decode_text,
    plural,
    read_input,
)

#: Where ``fsm-exec diagram --write/--check`` finds the example lifecycles it draws.
EXAMPLES_DIR = "examples/lifecycles"
LIFECYCLE_SUFFIXES = (".yaml", ".yml", ".json")


def _unreadable(exc: Exception) -> str | None:
    """The reason a lifecycle file could not be read at all (rule ``file``), else None."""
    from fsm_exec.core.lifecycles import LifecycleError

    if isinstance(exc, LifecycleError) and [v.rule for v in exc.violations] == ["file"]:
        return f"{exc.violations[0].where}: {exc.violations[0].message}"
    return None


def refusal(exc: Any) -> str:
    """A refused lifecycle in words: the file, then one line per broken rule."""
    n = len(exc.violations)
    head = f"{exc.source}: " if exc.source else ""
    lines = [f"{head}lifecycle refused, {plural(n, 'broken rule', 'broken rules')}:"]
    lines += [f"  [{v.rule}] {v.where}: {v.message}" for v in exc.violations]
    return "\n".join(lines)


def read_lifecycle(path: str, *, resolve: bool = False) -> Any:
    """The lifecycle in ``path``: a :class:`UsageError` (exit 2) when the file cannot be
    read, :class:`Refused` (exit 1) listing the broken rules when it breaks any."""
    from fsm_exec.core.lifecycles import Lifecycle, LifecycleError

    try:
        return Lifecycle.load(path, resolve=resolve)
    except LifecycleError as exc:
        why = _unreadable(exc)
        if why is not None:
            raise UsageError(why) from None
        raise Refused(refusal(exc)) from None


def read_side(path: str) -> Any:
    """One side of ``diagram --diff``: a YAML lifecycle file, or a JSON file holding either a
    lifecycle or a ``block_lifecycle.json`` table (what ``diagram --write`` commits)."""
    from fsm_exec.core.lifecycles import Lifecycle, LifecycleError
    from fsm_exec.tools.diagram import LifecycleFileError, LifecycleTable

    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        return read_lifecycle(path)
    # A regular file only, and bounded (never /dev/zero read whole).
    text = decode_text(p, read_input(p, f"--diff: cannot read {path}"), "--diff")
    with contextlib.suppress(json.JSONDecodeError):
        doc = json.loads(text)
        if isinstance(doc, dict) and "version" in doc and "format" not in doc:
            try:
                return Lifecycle.from_dict(doc, source=path)
            except LifecycleError as exc:
                raise Refused(refusal(exc)) from None
    try:
        return LifecycleTable.from_json(text, path)
    except LifecycleFileError as exc:
        raise UsageError(str(exc)) from None


def example_lifecycles(directory: Path) -> dict[str, Any]:
    """The lifecycles of ``directory`` (``examples/lifecycles``), by file stem; none when it
    does not exist. Hooks are not imported: drawing only reads."""
    if not directory.is_dir():
        return {}
    return {p.stem: read_lifecycle(str(p)) for p in sorted(directory.iterdir())
            if p.suffix in LIFECYCLE_SUFFIXES}


@contextlib.contextmanager
def importable(directory: str) -> Iterator[None]:
    """``directory`` first on ``sys.path`` while hooks are resolved (as ``python -m`` puts
    the current directory there), then as before."""
    sys.path.insert(0, str(Path(directory).resolve()))
    try:
        yield
    finally:
        sys.path.pop(0)


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.core.lifecycles import DEFAULT_KINDS

    code = OK
    for path in args.files:
        try:
            with importable(args.app_dir):
                lc = read_lifecycle(path, resolve=not args.no_resolve)
        except Refused as exc:
            print(exc, file=out)
            code = max(code, FOUND)
            continue
        except UsageError as exc:  # this file cannot be read: say so, check the others
            complain(f"fsm-exec lifecycle: {exc}")
            code = USAGE
            continue
        added = [s.name for s in lc.states if s.name not in DEFAULT_KINDS]
        paths = sum(len(s.on_enter) for s in lc.states) + sum(
            g.kind == "call" for t in lc.transitions for g in t.guards)
        hooks = f", {plural(paths, 'import path', 'import paths')} resolved" \
            if paths and not args.no_resolve else ""
        print(f"{path}: lifecycle {lc.name!r} keeps every rule: "
              f"{plural(len(lc.states), 'state', 'states')} ({len(added)} added), "
              f"{plural(len(lc.transitions), 'transition', 'transitions')}{hooks}, "
              f"hash {lc.hash}", file=out)
        for t in lc.derived_transitions():  # where a lifecycle sends them its own way
            if t.dest != "pending_reconciliation" or t.guards:
                print(f"  derived: {t.words()} (follows executed: a block found executed "
                      "after a lost reply goes where executed goes)", file=out)
    return code


def cmd_schema(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.core.lifecycles import Lifecycle

    print(json.dumps(Lifecycle.json_schema(), indent=2), file=out)
    return OK


def add_parser(sub: Any) -> None:
    """The ``lifecycle`` subcommand and its own: ``check``, ``schema``."""
    fmt = argparse.RawDescriptionHelpFormatter
    g = sub.add_parser(
        "lifecycle", formatter_class=fmt, help="check a lifecycle file against the safety rules",
        description="A desk's own block lifecycle, as a YAML or JSON file (docs/lifecycles.md): "
                    "check it against the safety rules, or print the file format's JSON "
                    "Schema (for editors).",
        epilog=EXIT_CODES)
    own = g.add_subparsers(dest="lifecycle_command", metavar="COMMAND", required=True)
    c = own.add_parser(
        "check", formatter_class=fmt, help="check lifecycle files",
        description="Read each lifecycle file, check its shape and every safety rule, and "
                    "import its hooks and call guards (from --app-dir, like python -m). "
                    "Prints one line per valid file; for a refused one, each broken rule "
                    "with the state or transition that breaks it.",
        epilog="exit code 1: a lifecycle breaks a rule (each is printed); 2: a file cannot "
               "be read (not YAML/JSON, missing).\n\n" + EXIT_CODES)
    c.add_argument("files", nargs="+", metavar="FILE", help="lifecycle files (.yaml, .yml, .json)")
    c.add_argument("--no-resolve", action="store_true",
                   help="do not import the hooks and call guards (check the rules only)")
    c.add_argument("--app-dir", default=".", metavar="DIR",
                   help="import hooks from here first (default: the current directory)")
    c.set_defaults(func=cmd_check)
    s = own.add_parser("schema", formatter_class=fmt, help="print the file format's JSON Schema",
                       description="Print the JSON Schema of the lifecycle file format "
                                   "(fsm_exec/data/lifecycle.schema.json).", epilog=EXIT_CODES)
    s.set_defaults(func=cmd_schema)
