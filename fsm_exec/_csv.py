"""The CSV export of the journals: streamed from the JSONL files, spreadsheet-safe cells."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import orjson

_BACKTEST_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

#: The CSV columns, in order. ``data`` holds the whole event data as JSON.
CSV_COLUMNS: tuple[str, ...] = ("seq", "timestamp", "component", "event_type", "block_id",
                                "source", "dest", "trigger", "attempt", "error_code", "data")
_BROKEN_OUT = CSV_COLUMNS[4:10]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """A spreadsheet-safe cell: numbers stay numbers; text that a spreadsheet would run as a
    formula (starting with = + - @ tab CR LF) is prefixed with a quote (OWASP)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def check_backtest_id(backtest_id: object) -> str:
    """``backtest_id`` if it is a safe directory name, else ``ValueError``."""
    if not isinstance(backtest_id, str) or _BACKTEST_ID.fullmatch(backtest_id) is None:
        raise ValueError("backtest_id must be 1-128 letters, digits or ._- and must not "
                         "start with a dot")
    return backtest_id


def export_csv(log_dir: Path | str, results_dir: Path | str, backtest_id: str) -> Path:
    """Stream every journal in ``log_dir`` to ``<results_dir>/<backtest_id>/events.csv``."""
    from ._journal import _components, _files_of, read_records

    check_backtest_id(backtest_id)
    root = Path(results_dir).resolve()
    out_dir = (root / backtest_id).resolve()
    if not out_dir.is_relative_to(root) or out_dir == root:
        raise ValueError("backtest_id must name a directory inside results_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "events.csv"
    tmp = out.with_name(out.name + ".tmp")
    log_dir = Path(log_dir)
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for stem in _components(log_dir):
                for path in _files_of(log_dir, stem):
                    for r in read_records(path):
                        d = r.data
                        w.writerow([r.seq, csv_cell(r.timestamp), csv_cell(r.component),
                                    csv_cell(r.event_type),
                                    *(csv_cell(d.get(c)) for c in _BROKEN_OUT),
                                    csv_cell(orjson.dumps(d).decode())])
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed export leaves nothing half-written
    return out
