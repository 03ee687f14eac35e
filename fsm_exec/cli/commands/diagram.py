"""``fsm-exec diagram``: draw the block lifecycle, or what a run did."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from fsm_exec.boundary.escape import CONTROL
from fsm_exec.cli._common import (
    EXIT_CODES,
    FOUND,
    OK,
    Refused,
    UsageError,
    complain,
    journal_paths,
)
from fsm_exec.cli.commands.lifecycle import EXAMPLES_DIR

DIAGRAM_DIR = "diagrams"
FORMATS = ("mermaid", "dot", "svg", "png", "markdown", "table", "text")


LIFECYCLE_JSON = "block_lifecycle.json"
#: The folder of ``--dir`` that holds the example lifecycles' diagrams.
LIFECYCLES_DIR = "lifecycles"


def review_diagrams(examples: Path | None = None) -> dict[str, str]:
    """The diagrams committed in ``diagrams/``: name -> text (``.svg`` maps to its DOT);
    with ``examples`` (``examples/lifecycles``), each example lifecycle's too, under
    ``lifecycles/``."""
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
    files |= lifecycle_diagrams(examples)
    return files


def examples_of(directory: Path, examples: Path | None) -> Path:
    """The example lifecycles drawn into ``directory``: ``examples``, else
    ``examples/lifecycles`` beside it (``diagrams/`` and ``examples/`` share a parent)."""
    return examples if examples is not None else directory.parent / EXAMPLES_DIR


def lifecycle_diagrams(examples: Path | None) -> dict[str, str]:
    """``lifecycles/<stem>.mmd|.dot|.svg`` for each lifecycle file in ``examples``."""
    from fsm_exec.cli.commands.lifecycle import example_lifecycles
    from fsm_exec.tools.diagram import lifecycle_diagram, to_dot, to_mermaid

    files: dict[str, str] = {}
    if examples is None:
        return files
    for stem, lc in example_lifecycles(examples).items():
        model = lifecycle_diagram(lc)
        files[f"{LIFECYCLES_DIR}/{stem}.mmd"] = to_mermaid(model)
        files[f"{LIFECYCLES_DIR}/{stem}.dot"] = to_dot(model)
        files[f"{LIFECYCLES_DIR}/{stem}.svg"] = to_dot(model)
    return files


def stale_diagrams(directory: Path, examples: Path | None = None) -> list[str]:
    """The files of ``directory`` that differ from what the code (and the example
    lifecycles) generate, or are missing, or draw an example that no longer exists. An SVG
    is current when it was rendered from the current DOT."""
    from fsm_exec.tools.diagram import dot_digest, svg_source_digest

    stale = []
    expected = review_diagrams(examples_of(directory, examples))
    drawn = directory / LIFECYCLES_DIR
    if drawn.is_dir():
        stale += [f"{p} (no such example lifecycle: remove it)" for p in sorted(drawn.iterdir())
                  if f"{LIFECYCLES_DIR}/{p.name}" not in expected]
    for name, text in expected.items():
        path = directory / name
        if not path.exists():
            stale.append(f"{path} (missing)")
        elif name.endswith(".svg"):
            if svg_source_digest(path.read_bytes()) != dot_digest(text):
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


def write_diagrams(directory: Path, examples: Path | None = None) -> list[Path]:
    from fsm_exec.journal.export import replace_file
    from fsm_exec.tools.diagram import render_graphviz

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in review_diagrams(examples_of(directory, examples)).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".svg"):
            replace_file(path, render_graphviz(text, "svg"))
        else:
            replace_file(path, text)
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
    root = top.stdout.strip()
    rel = Path(os.path.relpath((directory / LIFECYCLE_JSON).resolve(),
                               Path(root).resolve())).as_posix()
    # The ref is data, never an option (`--output=...` would make git write a file): it
    # must name a commit, and git is told where its options end.
    if not ref or ref.startswith("-") or CONTROL.search(ref):
        raise UsageError(f"--diff-ref: {ref!r} is not a git ref")
    commit = subprocess.run([git, "-C", root, "rev-parse", "--verify", "--quiet",
                             "--end-of-options", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        raise UsageError(f"--diff-ref: {ref!r} names no commit in {root}")
    shown = subprocess.run([git, "-C", root, "show", "--end-of-options",
                            f"{commit.stdout.strip()}:{rel}"],
                           capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        raise UsageError(f"--diff-ref: git has no {rel} at {ref!r}: "
                         f"{shown.stderr.strip().splitlines()[-1] if shown.stderr else ''}")
    try:
        return LifecycleTable.from_json(shown.stdout, f"{ref}:{rel}"), f"{rel} at {ref}"
    except LifecycleFileError as exc:
        raise UsageError(str(exc)) from None



def diff_files(paths: Sequence[str], user: Any) -> Any:
    """The model of ``--diff OLD [NEW]``: each side a lifecycle file or a
    block_lifecycle.json table; NEW is ``--lifecycle`` (``user``) if given, else the code's
    own lifecycle. Two lifecycles are compared whole (kinds, waits, hooks, guards, flags
    too); a table only by its states, edges and meanings."""
    from fsm_exec.cli.commands.lifecycle import read_side
    from fsm_exec.core.lifecycles import Lifecycle
    from fsm_exec.tools.diagram import LifecycleTable, diff_model, lifecycle_diff, lifecycle_table

    old = read_side(paths[0])
    new = read_side(paths[1]) if len(paths) > 1 else user
    since = paths[0]
    if isinstance(old, LifecycleTable) and new is None:
        return diff_model(old, since=since)  # the code's own table, as before
    if new is None:
        new = Lifecycle.default()
    if isinstance(old, LifecycleTable) or isinstance(new, LifecycleTable):
        tables = [t if isinstance(t, LifecycleTable) else lifecycle_table(t) for t in (old, new)]
        return diff_model(tables[0], tables[1], since=since)
    return lifecycle_diff(old, new, since=since)


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



def cmd_diagram(args: argparse.Namespace, out: IO[str]) -> int:
    from fsm_exec.cli.commands.lifecycle import read_lifecycle
    from fsm_exec.journal.export import replace_file
    from fsm_exec.tools.diagram import (
        GraphvizMissingError,
        JournalOffTableError,
        LifecycleFileError,
        diff_model,
        lifecycle_diagram,
        lifecycle_model,
        lifecycle_table,
        overlay_block,
        overlay_events,
        render_graphviz,
        to_dot,
        to_markdown,
        to_markdown_table,
        to_mermaid,
    )

    directory = Path(args.dir)
    examples = Path(args.examples) if args.examples else None
    if args.check:
        try:
            stale = stale_diagrams(directory, examples)
        except Refused as exc:  # an example lifecycle that breaks a rule is not drawn
            complain(f"fsm-exec diagram: {exc}")
            return FOUND
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
            for p in write_diagrams(directory, examples):
                print(f"wrote {p}", file=out)
            return OK
        if args.block and not args.events:
            raise UsageError("--block needs --events LOG")
        if (args.diff or args.diff_ref) and args.events:
            raise UsageError("--diff/--diff-ref draw the lifecycle, not a journal: "
                             "drop --events")
        if args.lifecycle and args.events:
            raise UsageError("--lifecycle draws a lifecycle file, not a journal: drop --events")
        if args.diff and len(args.diff) > 2:
            raise UsageError("--diff takes OLD, or OLD and NEW")
        if args.format == "text" and not (args.diff or args.diff_ref):
            raise UsageError("--format text is the summary of a difference: use it with "
                             "--diff or --diff-ref")
        user = read_lifecycle(args.lifecycle) if args.lifecycle else None
        if args.events:
            records = read_events(args.events)
            model = (overlay_block(records, args.block) if args.block
                     else overlay_events(records))
        elif args.diff:
            model = diff_files(args.diff, user)
        elif args.diff_ref:
            old, name = table_at_ref(args.diff_ref, directory)
            model = diff_model(old, lifecycle_table(user) if user else None, since=name)
        elif user is not None:
            model = lifecycle_diagram(user)
        else:
            model = lifecycle_model()
        if args.format == "text":
            lines = list(model.notes) or [f"no change ({model.caption})"]
            out.write("".join(f"{line}\n" for line in lines))
            return OK
        text_renderers = {"mermaid": to_mermaid, "dot": to_dot, "markdown": to_markdown,
                          "table": to_markdown_table}
        if args.format in text_renderers:
            data = text_renderers[args.format](model).encode()
        else:
            data = render_graphviz(to_dot(model), args.format)
    except Refused as exc:
        complain(f"fsm-exec diagram: {exc}")
        return FOUND
    except JournalOffTableError as exc:  # pragma: no cover - check_journal refuses it first
        complain(f"fsm-exec diagram: {exc}")
        return FOUND
    except (GraphvizMissingError, LookupError, LifecycleFileError) as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        try:
            replace_file(args.output, data)
        except OSError as exc:
            raise UsageError(f"--output: cannot write: {exc}") from None
    elif args.format == "png":
        raise UsageError("--format png needs --output FILE")
    else:
        out.write(data.decode())
    return OK


def add_parser(sub: Any) -> None:
    """The ``diagram`` subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
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
    g.add_argument("--lifecycle", metavar="FILE",
                   help="draw this lifecycle file (YAML or JSON, docs/lifecycles.md) instead "
                        "of the code's: each state kind its own shape and colour, guards and "
                        "flags on the edges, timeouts dashed")
    g.add_argument("--examples", metavar="DIR",
                   help="--write/--check also draw the lifecycle files here, into "
                        f"<dir>/{LIFECYCLES_DIR}/ (default: {EXAMPLES_DIR} beside --dir)")
    old = g.add_mutually_exclusive_group()
    old.add_argument("--diff", nargs="+", metavar="FILE",
                     help="OLD [NEW]: draw NEW (default: --lifecycle, else the code's "
                          "lifecycle) against OLD, each a lifecycle file or a "
                          "block_lifecycle.json: added and removed states and edges, changed "
                          "meanings, kinds, waits, hooks, guards; --format text lists the "
                          "changes")
    old.add_argument("--diff-ref", metavar="GIT_REF",
                     help="the same, with the block_lifecycle.json of --dir at a git ref "
                          "(e.g. origin/main)")
    g.set_defaults(func=cmd_diagram)
