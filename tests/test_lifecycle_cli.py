"""``fsm-exec lifecycle check``, ``fsm-exec diagram --lifecycle`` and ``--diff A B``, the
diagrams of a user lifecycle (state kinds visible), and the example lifecycles with their
committed diagrams."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from test_diagram import dot_accepts, mermaid_parse

from fsm_exec import Lifecycle
from fsm_exec.cli.commands.diagram import stale_diagrams, write_diagrams
from fsm_exec.cli.main import main
from fsm_exec.tools.diagram import (
    dot_digest,
    lifecycle_diagram,
    lifecycle_diff,
    svg_source_digest,
    to_dot,
    to_markdown,
    to_mermaid,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "lifecycles"
FOUR_EYES = EXAMPLES / "four_eyes.yaml"
CHAIN = EXAMPLES / "chain_confirmations.yaml"
WINDOW = EXAMPLES / "maintenance_window.yaml"


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def broken_doc() -> dict[str, Any]:
    """Four-eyes with a way back from retrying and a wait nothing ends."""
    return {"version": 1, "name": "desk", "extends": "default",
            "states": {"held": {"kind": "before_route", "meaning": "Held.", "wait": {}}},
            "transitions": [
                {"trigger": "hold", "source": "queued", "dest": "held", "external": True,
                 "meaning": "Hold."},
                {"trigger": "park", "source": "retrying", "dest": "held", "external": True,
                 "meaning": "Park."},
                {"trigger": "cancel", "source": "held", "dest": "cancelled",
                 "meaning": "Cancel."}]}


# --- fsm-exec lifecycle check ---------------------------------------------------------------


def test_check_a_valid_lifecycle_prints_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 0 and one line: name, states, transitions, the hooks resolved, the hash."""
    monkeypatch.chdir(ROOT)  # examples.lifecycle_hooks imports from here (--app-dir .)
    code, out = cli("lifecycle", "check", "examples/lifecycles/four_eyes.yaml")
    assert code == 0
    lc = Lifecycle.load(FOUR_EYES, resolve=False)
    assert out == ("examples/lifecycles/four_eyes.yaml: lifecycle 'four-eyes' keeps every "
                   "rule: 8 states (1 added), 16 transitions, 1 import path resolved, hash "
                   f"{lc.hash}\n")


def test_check_names_each_broken_rule_and_exits_1(tmp_path: Path) -> None:
    """Exit 1: the file, then each broken rule with the state or transition."""
    path = write(tmp_path / "desk.json", broken_doc())
    code, out = cli("lifecycle", "check", path)
    assert code == 1
    assert out.splitlines() == [
        f"{path}: lifecycle refused, 2 broken rules:",
        "  [no-way-back] retrying --park--> held: retrying is in flight: the venue may hold "
        "the block, so it never goes back to the before-route state held (only retrying "
        "--reroute--> routing, once the venue confirmed it does not hold it)",
        "  [wait-ends] held: nothing ends the wait: give the state an external transition, a "
        "poll transition or a timeout"]


def test_check_of_several_files_exits_1_if_any_is_refused(tmp_path: Path) -> None:
    """Each file gets its own verdict; one refused file makes the exit code 1."""
    bad = write(tmp_path / "desk.json", broken_doc())
    code, out = cli("lifecycle", "check", "--no-resolve", FOUR_EYES, bad)
    assert code == 1
    assert out.startswith(f"{FOUR_EYES}: lifecycle 'four-eyes' keeps every rule: 8 states "
                          "(1 added), 16 transitions, hash ")
    assert f"{bad}: lifecycle refused, 2 broken rules:" in out


def test_check_names_where_a_block_found_executed_goes() -> None:
    """A lifecycle that redirects executed is told where the derived found_executed goes
    (a lost reply found executed waits for the confirmations too); the default's own
    found_executed is not mentioned."""
    code, out = cli("lifecycle", "check", "--no-resolve", CHAIN)
    assert code == 0
    assert out.splitlines()[1] == (
        "  derived: retrying --found_executed--> awaiting_confirmations (follows executed: a "
        "block found executed after a lost reply goes where executed goes)")
    assert "derived" not in cli("lifecycle", "check", "--no-resolve", FOUR_EYES)[1]


@pytest.mark.parametrize(("content", "why"), [
    ("version: 1\nname: [desk\n", "not YAML: expected ',' or ']', but got '<stream end>' "
                                  "(line 3, column 1)"),
    ("- just\n- a list\n", "the file must hold a mapping (version, name, states, "
                           "transitions), got a list"),
])
def test_check_of_an_unreadable_file_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, why: str) -> None:
    """Bad YAML: exit 2, the file, line and column on stderr, no traceback."""
    path = tmp_path / "desk.yaml"
    path.write_text(content)
    code, out = cli("lifecycle", "check", path)
    assert (code, out) == (2, "")
    assert capsys.readouterr().err == f"fsm-exec lifecycle: {path}: {why}\n"


def test_check_of_a_file_of_the_wrong_shape_names_the_paths(tmp_path: Path) -> None:
    """A readable file of the wrong shape is refused (exit 1), each problem at its path."""
    path = write(tmp_path / "desk.json", {"version": 1, "name": "x", "states": {
        "held": {"kind": "before_route", "meaning": "m", "wait": {"timeout": 5}}}})
    code, out = cli("lifecycle", "check", path)
    assert code == 1
    assert out.splitlines()[1:] == [
        "  [schema] $.states['held'].wait: extra fields found (timeout)"]


def test_hooks_are_imported_from_the_app_dir(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--app-dir puts a directory first on sys.path while hooks resolve (the examples'
    hooks import from the repository root); --no-resolve imports nothing; sys.path is left
    as it was."""
    here = {"", ".", str(ROOT)}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in here])
    for name in ("examples", "examples.lifecycle_hooks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    before = list(sys.path)
    code, out = cli("lifecycle", "check", "--app-dir", tmp_path, CHAIN)
    assert code == 1
    assert out.splitlines()[1] == (
        "  [hook-path] awaiting_confirmations --confirmed--> pending_reconciliation: guard "
        "examples.lifecycle_hooks:confirmed does not resolve: cannot import "
        "'examples.lifecycle_hooks': ModuleNotFoundError: No module named 'examples'")
    assert cli("lifecycle", "check", "--no-resolve", "--app-dir", tmp_path, CHAIN)[0] == 0
    assert cli("lifecycle", "check", "--app-dir", ROOT, CHAIN)[0] == 0
    assert sys.path == before


def test_lifecycle_schema_prints_the_json_schema() -> None:
    """fsm-exec lifecycle schema prints the shipped JSON Schema."""
    code, out = cli("lifecycle", "schema")
    assert code == 0
    assert json.loads(out) == Lifecycle.json_schema()


# --- the diagrams of a lifecycle ------------------------------------------------------------


def test_the_diagram_shows_each_state_kind_and_a_legend() -> None:
    """Mermaid: a shape per kind (rounded, hexagon, parallelogram, stadium), a class per
    kind, a legend subgraph; guards in brackets, flags in words, the timeout dashed."""
    lc = Lifecycle.load(FOUR_EYES, resolve=False)
    text = to_mermaid(lifecycle_diagram(lc))
    for line in ['    awaiting_approval("awaiting_approval")', '    routing{{"routing"}}',
                 '    pending_reconciliation[/"pending_reconciliation"/]',
                 '    failed(["failed"])',
                 '    queued -->|"start [notional_above 100000]"| awaiting_approval',
                 '    queued -->|"start [else]"| routing',
                 '    awaiting_approval -->|"approve (external)"| routing',
                 '    awaiting_approval -.->|"timeout (3600 s)"| cancelled',
                 '    subgraph legend["state kinds"]',
                 "    class queued,awaiting_approval kind_before_route",
                 "    class routing,retrying kind_in_flight",
                 "    class pending_reconciliation kind_settling",
                 "    class success,failed,cancelled kind_terminal"]:
        assert line in text.splitlines(), line
    dot = to_dot(lifecycle_diagram(lc))
    assert '"routing" [label="routing", tooltip=' in dot
    assert "shape=hexagon" in dot and "shape=parallelogram" in dot
    assert "subgraph cluster_legend {" in dot
    assert "State kinds, by shape and colour" in to_markdown(lifecycle_diagram(lc))


def test_the_code_lifecycle_diagram_has_no_kinds() -> None:
    """The code's own diagrams are unchanged: no kind classes, no legend (the committed
    diagrams/ stay current: tests/test_diagram.py)."""
    from fsm_exec.tools.diagram import lifecycle_model

    text = to_mermaid(lifecycle_model())
    assert "kind_" not in text and "legend" not in text


def test_the_diff_says_every_change_in_words() -> None:
    """Kinds, waits, hooks, guards and flags are changes too, beside added and removed
    states and edges; each changed state or edge is drawn as changed."""
    old = Lifecycle.load(FOUR_EYES, resolve=False)
    doc = old.to_dict()
    doc["name"] = "four-eyes-2"
    state = doc["states"]["awaiting_approval"]
    state["wait"] = {"timeout_seconds": 600.0, "timeout_to": "cancelled"}
    state["on_enter"] = ["desk.hooks:page"]
    doc["transitions"][0]["guards"] = [{"notional_above": {"value": "50000"}}]
    doc["transitions"] = [t for t in doc["transitions"] if t["trigger"] != "reject"]
    new = Lifecycle.from_dict(doc)
    model = lifecycle_diff(old, new, since="v1")
    assert model.notes == (
        "removed edge awaiting_approval --reject--> cancelled",
        "wait of state awaiting_approval: waits, timeout 3600 s to cancelled -> waits, "
        "timeout 600 s to cancelled",
        "hooks of state awaiting_approval: examples.lifecycle_hooks:request_approval -> "
        "desk.hooks:page",
        "guards or flags of edge queued --start--> awaiting_approval: [notional_above 100000]"
        " -> [notional_above 50000]",
    )
    assert model.caption == "4 changes since v1"
    changed = {s.name for s in model.states if s.change == "changed"}
    assert changed == {"awaiting_approval"}
    assert {(e.source, e.trigger, e.change) for e in model.edges if e.change} == {
        ("queued", "start", "changed"), ("awaiting_approval", "reject", "removed")}


def test_diagram_lifecycle_draws_a_file(tmp_path: Path) -> None:
    """--lifecycle FILE draws it (Mermaid by default, DOT); a lifecycle that breaks a rule is
    not drawn (exit 1, each rule named); an unreadable one is a usage error."""
    code, out = cli("diagram", "--lifecycle", FOUR_EYES)
    assert code == 0 and out == to_mermaid(lifecycle_diagram(
        Lifecycle.load(FOUR_EYES, resolve=False)))
    code, out = cli("diagram", "--lifecycle", CHAIN, "--format", "dot")
    assert code == 0 and out.startswith("digraph block_lifecycle {")
    bad = write(tmp_path / "desk.json", broken_doc())
    assert cli("diagram", "--lifecycle", bad) == (1, "")
    assert cli("diagram", "--lifecycle", tmp_path / "none.yaml") == (2, "")


def test_diagram_lifecycle_svg(tmp_path: Path) -> None:
    """SVG through Graphviz, like the code's diagram."""
    dot_accepts("digraph { }")  # skips without Graphviz
    out = tmp_path / "four_eyes.svg"
    assert cli("diagram", "--lifecycle", FOUR_EYES, "--format", "svg", "-o", out) == (0, "")
    text = to_dot(lifecycle_diagram(Lifecycle.load(FOUR_EYES, resolve=False)))
    assert svg_source_digest(out.read_bytes()) == dot_digest(text)


def test_diagram_diff_of_two_lifecycle_files(tmp_path: Path) -> None:
    """--diff A B: Mermaid with the difference highlighted; --format text, the summary."""
    code, out = cli("diagram", "--diff", FOUR_EYES, WINDOW, "--format", "text")
    assert code == 0
    assert out.splitlines() == [
        "added state held",
        "removed state awaiting_approval",
        "added edge queued --start--> held",
        "added edge held --window_over--> routing",
        "added edge held --cancel--> cancelled",
        "added edge held --timeout--> cancelled",
        "removed edge queued --start--> awaiting_approval",
        "removed edge awaiting_approval --approve--> routing",
        "removed edge awaiting_approval --reject--> cancelled",
        "removed edge awaiting_approval --cancel--> cancelled",
        "removed edge awaiting_approval --fail--> failed",
        "removed edge awaiting_approval --timeout--> cancelled"]
    code, text = cli("diagram", "--diff", FOUR_EYES, WINDOW)
    assert code == 0
    assert '    held("held<br>(added)")' in text
    assert "    queued ==>|" in text and "    awaiting_approval -.->|" in text
    code, same = cli("diagram", "--diff", FOUR_EYES, FOUR_EYES, "--format", "text")
    assert (code, same.startswith("no change (no change since ")) == (0, True)


def test_diagram_diff_against_the_code_and_a_table(tmp_path: Path) -> None:
    """One side may be the committed block_lifecycle.json; with one file, the new side is
    --lifecycle, else the code's lifecycle."""
    table = ROOT / "diagrams" / "block_lifecycle.json"
    code, out = cli("diagram", "--diff", table, CHAIN, "--format", "text")
    assert code == 0
    assert out.splitlines() == [
        "added state awaiting_confirmations",
        "added edge routing --executed--> awaiting_confirmations",
        "added edge awaiting_confirmations --confirmed--> pending_reconciliation",
        "added edge awaiting_confirmations --fail--> failed",
        "added edge retrying --found_executed--> awaiting_confirmations",  # follows executed
        "added edge awaiting_confirmations --timeout--> failed",
        "removed edge routing --executed--> pending_reconciliation",
        "removed edge retrying --found_executed--> pending_reconciliation"]
    assert cli("diagram", "--diff", CHAIN, "--format", "text")[1].splitlines()[0] == \
        "removed state awaiting_confirmations"
    assert cli("diagram", "--diff", table, "--lifecycle", CHAIN, "--format", "text") == (
        0, out)
    assert cli("diagram", "--diff", table, "--format", "text") == (
        0, "no change (no change since " + str(table) + ")\n")


@pytest.mark.parametrize("argv", [
    ["--diff", "a.yaml", "b.yaml", "c.yaml"],
    ["--format", "text"],
    ["--lifecycle", "a.yaml", "--events", "logs"],
])
def test_diagram_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Three --diff files, a text summary without a diff, --lifecycle with --events: exit 2."""
    assert cli("diagram", *argv) == (2, "")
    assert capsys.readouterr().err.startswith("fsm-exec diagram: ")


def test_lifecycle_diagrams_parse_in_mermaid_and_graphviz(tmp_path: Path) -> None:
    """Mermaid's own parser and Graphviz accept the example diagrams and their diffs."""
    lcs = {p.stem: Lifecycle.load(p, resolve=False) for p in sorted(EXAMPLES.glob("*.yaml"))}
    default = Lifecycle.default()
    models = {name: lifecycle_diagram(lc) for name, lc in lcs.items()}
    models |= {f"diff_{name}": lifecycle_diff(default, lc) for name, lc in lcs.items()}
    models["diff_both"] = lifecycle_diff(lcs["four_eyes"], lcs["maintenance_window"])
    for name, model in models.items():
        accepted = dot_accepts(to_dot(model))
        assert accepted.returncode == 0, (name, accepted.stderr.decode())
    proc = mermaid_parse({k: to_mermaid(m) for k, m in models.items()}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the examples and their committed diagrams ----------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_example_keeps_every_rule_and_its_hooks_import(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The three desks of issue 22 are valid, their hooks and call guards import."""
    monkeypatch.syspath_prepend(str(ROOT))
    lc = Lifecycle.load(path)
    assert lc.violations(resolve=True) == []
    assert len(lc.states) == 8


def test_the_examples_are_the_three_desks() -> None:
    """four_eyes, maintenance_window, chain_confirmations: each the kind of state it is about."""
    kinds = {p.stem: {s.name: s.kind for s in Lifecycle.load(p, resolve=False).states}
             for p in EXAMPLES.glob("*.yaml")}
    assert kinds["four_eyes"]["awaiting_approval"] == "before_route"
    assert kinds["maintenance_window"]["held"] == "before_route"
    assert kinds["chain_confirmations"]["awaiting_confirmations"] == "settling"


def test_the_example_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """request_approval records the block; confirmed holds at 12 confirmations and raises
    for a dropped transaction."""
    monkeypatch.syspath_prepend(str(ROOT))
    import datetime as dt
    import importlib

    from fsm_exec import GuardContext

    hooks = importlib.import_module("examples.lifecycle_hooks")

    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    ctx = GuardContext({"block_id": "b-1"}, now, now, "awaiting_confirmations")
    hooks.request_approval(ctx)
    assert hooks.APPROVAL_REQUESTS[-1] == "b-1"
    monkeypatch.setitem(hooks.CONFIRMATIONS, "b-1", 11)
    assert hooks.confirmed(ctx) is False
    monkeypatch.setitem(hooks.CONFIRMATIONS, "b-1", 12)
    assert hooks.confirmed(ctx) is True
    monkeypatch.setattr(hooks, "DROPPED", {"b-1"})
    with pytest.raises(hooks.TransactionDroppedError, match="dropped or re-orged"):
        hooks.confirmed(ctx)


def test_the_committed_lifecycle_diagrams_are_current() -> None:
    """diagrams/lifecycles/ holds a .mmd, .dot and .svg per example, as generated."""
    assert stale_diagrams(ROOT / "diagrams") == []
    names = {p.name for p in (ROOT / "diagrams" / "lifecycles").iterdir()}
    assert names == {f"{p.stem}.{ext}" for p in EXAMPLES.glob("*.yaml")
                     for ext in ("mmd", "dot", "svg")}


def test_check_finds_stale_missing_and_orphan_lifecycle_diagrams(tmp_path: Path) -> None:
    """--check names the diagrams of an example that changed (the SVG: not rendered from the
    current DOT), those of a new one (missing), and those whose example is gone; an example
    that breaks a rule fails the check (exit 1)."""
    dot_accepts("digraph { }")  # --write renders SVG
    examples = tmp_path / "examples" / "lifecycles"
    examples.mkdir(parents=True)
    shutil.copy(WINDOW, examples / "window.yaml")
    shutil.copy(CHAIN, examples / "chain.yaml")
    diagrams = tmp_path / "diagrams"
    write_diagrams(diagrams)
    assert stale_diagrams(diagrams) == []
    chain = (examples / "chain.yaml").read_text()
    (examples / "chain.yaml").write_text(chain.replace("enough confirmations", "12 blocks"))
    (examples / "window.yaml").rename(examples / "held.yaml")
    drawn = diagrams / "lifecycles"
    assert stale_diagrams(diagrams) == [
        f"{drawn / 'window.dot'} (no such example lifecycle: remove it)",
        f"{drawn / 'window.mmd'} (no such example lifecycle: remove it)",
        f"{drawn / 'window.svg'} (no such example lifecycle: remove it)",
        f"{drawn / 'chain.dot'}",  # the meanings are tooltips in DOT only
        f"{drawn / 'chain.svg'} (not rendered from the current DOT)",
        f"{drawn / 'held.mmd'} (missing)",
        f"{drawn / 'held.dot'} (missing)",
        f"{drawn / 'held.svg'} (missing)"]
    code, out = cli("diagram", "--check", "--dir", diagrams)
    assert code == 1 and "regenerate with: fsm-exec diagram --write" in out
    write(examples / "bad.json", broken_doc())
    assert cli("diagram", "--check", "--dir", diagrams) == (1, "")


def test_diagram_diff_reads_json_lifecycles(tmp_path: Path) -> None:
    """A JSON side holding a lifecycle (not a table) is read as one; a broken one is not
    drawn (exit 1)."""
    new = write(tmp_path / "four_eyes.json", Lifecycle.load(FOUR_EYES, resolve=False).to_dict())
    code, out = cli("diagram", "--diff", FOUR_EYES, new, "--format", "text")
    assert code == 0 and out.startswith("no change")
    assert cli("diagram", "--diff", write(tmp_path / "bad.json", broken_doc()), new) == (1, "")


@pytest.mark.parametrize(("name", "content", "why"), [
    ("dup.yaml", "version: 1\nname: x\nstates:\n  held: {kind: before_route, meaning: a}\n"
                 "  held: {kind: settling, meaning: b}\n",
     "not YAML: the key 'held' appears twice in one mapping (line 5, column 3)"),
    ("dup.json", '{"version": 1, "name": "x", "name": "y"}',
     "not a lifecycle: the key 'name' appears twice in one mapping (a second state or field "
     "of that name would silently replace the first)"),
])
def test_a_key_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      name: str, content: str, why: str) -> None:
    """YAML and JSON keep the last of two equal keys silently (a state defined twice would
    replace the first unseen): refused instead, naming the key (and, in YAML, the line);
    the other files are still checked, and the exit code is 2."""
    path = tmp_path / name
    path.write_text(content)
    code, out = cli("lifecycle", "check", "--no-resolve", path, FOUR_EYES)
    assert code == 2
    assert out.startswith(f"{FOUR_EYES}: lifecycle 'four-eyes' keeps every rule")
    assert capsys.readouterr().err == f"fsm-exec lifecycle: {path}: {why}\n"


def test_the_example_files_are_valid_under_the_schema() -> None:
    """Each examples/lifecycles/*.yaml, as written, is the JSON Schema's shape."""
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    validator = jsonschema.Draft202012Validator(Lifecycle.json_schema())
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path
