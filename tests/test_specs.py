"""The specs and the docs say what the code does: their tables are checked against it."""

from __future__ import annotations

import pathlib
import re

import pytest

from fsm_exec import ERROR_CODES, TERMINAL_STATES, TRANSITIONS

ROOT = pathlib.Path(__file__).resolve().parent.parent


def table_rows(path: pathlib.Path, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header row starts with ``header``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("`") for c in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("doc", ["specs/block_lifecycle.md", "docs/concepts/lifecycle.md"])
def test_lifecycle_tables_match_the_code(doc: str) -> None:
    """The documented transition table is the code's table, row for row, in order."""
    rows = table_rows(ROOT / doc, "| source | trigger | dest |")
    assert [tuple(r[:3]) for r in rows] == [
        (str(e.source), str(e.trigger), str(e.dest)) for e in TRANSITIONS]


def test_spec_edge_meanings_match_the_code() -> None:
    """Each documented edge meaning is the table's own."""
    rows = table_rows(ROOT / "specs/block_lifecycle.md", "| source | trigger | dest |")
    assert [r[3] for r in rows] == [e.meaning for e in TRANSITIONS]


def test_spec_state_table_matches_the_code() -> None:
    """The documented states, their kind and meaning are the code's, in order."""
    from fsm_exec import INITIAL_STATE
    from fsm_exec.core.lifecycle import STATE_MEANINGS

    rows = table_rows(ROOT / "specs/block_lifecycle.md", "| state | kind | meaning |")
    assert rows == [[str(s), "initial" if s == INITIAL_STATE else
                     "terminal" if s in TERMINAL_STATES else "", m]
                    for s, m in STATE_MEANINGS.items()]


def test_spec_error_code_table_matches_the_registry() -> None:
    """The documented error codes are the registry, with severity, message and resolution."""
    rows = table_rows(ROOT / "specs/execution_manager.md", "| code | severity |")
    assert rows == [[c.code, str(c.severity), c.message, c.resolution]
                    for c in ERROR_CODES.values()]


def test_spec_config_table_matches_the_fields() -> None:
    """The documented config fields and defaults are ExecutionConfig's."""
    import attrs

    from fsm_exec import ExecutionConfig

    rows = table_rows(ROOT / "specs/execution_manager.md", "| field | default |")
    fields = {f.name: f.default for f in attrs.fields(ExecutionConfig)}
    assert {r[0]: r[1] for r in rows} == {k: repr(v) for k, v in fields.items()}


def test_spec_event_table_names_every_event_the_code_logs() -> None:
    """Every event type the manager logs is documented, and nothing else is."""
    source = "".join(path.read_text() for package in ("manager", "drivers")
                     for path in sorted((ROOT / "fsm_exec" / package).glob("*.py")))
    logged = set(re.findall(r'(?:\b_emit|\bemit|\b_write_held)\("([a-z_]+)"', source))
    logged.add("block_transition")
    rows = table_rows(ROOT / "specs/execution_manager.md", "| event_type | data |")
    assert {r[0] for r in rows} == logged


def test_docs_csv_columns_match_the_code() -> None:
    """The journal format page's CSV column table is CSV_COLUMNS, in order."""
    from fsm_exec import CSV_COLUMNS

    rows = table_rows(ROOT / "specs" / "journal.md", "| column | content |")
    assert tuple(r[0] for r in rows) == CSV_COLUMNS


def test_docs_mermaid_is_the_lifecycle() -> None:
    """The lifecycle page's Mermaid diagram is the one the code draws from the table."""
    from fsm_exec.tools.diagram import lifecycle_model, to_mermaid

    text = (ROOT / "docs" / "concepts" / "lifecycle.md").read_text()
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == to_mermaid(lifecycle_model())
