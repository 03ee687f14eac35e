"""``fsm-exec run --prices FILE``: the prices the run's data provider gives every block.

A price file is a table with one column per token (``ETH``, ``ETH-PERP``, ...) and, optionally,
a ``timestamp`` column (ISO 8601): CSV, or Parquet when pandas (and a Parquet engine) is
installed. The run is one simulated moment, so it prices every block at the file's latest row:
the row with the latest timestamp, else the last row. Every token the blocks name must be a
column; every price in that row must be a finite number > 0.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fsm_exec.cli._common import UsageError, decode_text, read_input, regular_file

TIMESTAMP = "timestamp"


def _refuse_duplicate_columns(path: Path, columns: Sequence[str]) -> None:
    """A column named twice is a :class:`UsageError` naming it and where: which of the two
    prices a block would get is anyone's guess (a CSV reader keeps the last)."""
    first: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if name in first:
            raise UsageError(f"--prices {path}:1: column {name!r} is named twice (columns "
                             f"{first[name]} and {i}): keep one")
        first[name] = i


def read_price_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a price file (``.parquet`` through pandas, else CSV); a file
    that cannot be read is a :class:`UsageError` naming it and saying why."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pandas as pd
        except ImportError:
            raise UsageError(f"--prices {path}: reading Parquet needs pandas: pip install "
                             "'fsm-exec[pandas]' pyarrow (or give a CSV file)") from None
        regular_file(path)  # pandas would read a device for ever
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:  # no engine (pyarrow or fastparquet)
            raise UsageError(f"--prices {path}: cannot read Parquet: {exc}") from None
        except OSError as exc:
            raise UsageError(f"--prices {path}: cannot read: {exc.strerror or exc}") from None
        except Exception as exc:  # the engine's own errors, of many types
            raise UsageError(f"--prices {path}: not a readable Parquet file: "
                             f"{type(exc).__name__}") from None
        columns = [str(c) for c in frame.columns]
        _refuse_duplicate_columns(path, columns)
        return columns, [dict(zip(columns, row, strict=True))
                         for row in frame.itertuples(index=False, name=None)]
    raw = read_input(path, f"--prices {path}: cannot read")
    text = decode_text(path, raw, "cannot read the prices")
    try:
        reader = csv.DictReader(text.splitlines())
        columns = [c.strip() for c in reader.fieldnames or []]
        _refuse_duplicate_columns(path, columns)
        rows = []
        for n, row in enumerate(reader, start=2):
            if None in row:
                raise UsageError(f"--prices {path}:{n}: more values than columns")
            rows.append({k.strip(): v for k, v in row.items()})
    except csv.Error as exc:
        raise UsageError(f"--prices {path}: not valid CSV: {exc}") from None
    return columns, rows


def _when(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        t = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def load_price_file(path: Path, needed: Mapping[str, int]) -> dict[str, float]:
    """The prices of the file's latest row, checked: ``needed`` maps each token the blocks
    name to the first line that names it; a token with no column is a :class:`UsageError`
    naming the column (and the line), as is a price that is not a finite number > 0."""
    columns, rows = read_price_rows(path)
    tokens = [c for c in columns if c != TIMESTAMP]
    if not tokens:
        raise UsageError(f"--prices {path}: no price columns (the first line must name the "
                         "tokens, e.g. timestamp,ETH,ETH-PERP)")
    if not rows:
        raise UsageError(f"--prices {path}: no rows of prices")
    missing = [t for t in needed if t not in tokens]
    if missing:
        t = missing[0]
        raise UsageError(
            f"--prices {path}: no column {t!r}, which the blocks name (first on line "
            f"{needed[t]}); its columns: {', '.join(columns)}")
    at = len(rows) - 1  # the latest row: by timestamp if the file has them, else the last
    if TIMESTAMP in columns:
        stamps = []
        for i, row in enumerate(rows):
            when = _when(row[TIMESTAMP])
            if when is None:
                raise UsageError(f"--prices {path}: row {i + 1}: column 'timestamp': not an "
                                 f"ISO 8601 time: {str(row[TIMESTAMP])[:40]!r}")
            stamps.append(when)
        at = max(range(len(rows)), key=lambda i: (stamps[i], i))
    prices: dict[str, float] = {}
    for token in tokens:
        value = rows[at][token]
        if value is None or (isinstance(value, str) and not value.strip()):
            if token in needed:
                raise UsageError(f"--prices {path}: row {at + 1}: column {token!r}: no price")
            continue
        try:
            price = float(value)
        except (TypeError, ValueError):
            price = math.nan
        if not (math.isfinite(price) and price > 0):
            raise UsageError(f"--prices {path}: row {at + 1}: column {token!r}: not a finite "
                             f"price > 0: {str(value)[:40]!r}")
        prices[token] = price
    return prices


def tokens_named(batches: Iterable[tuple[int, Sequence[Mapping[str, Any]]]]) -> dict[str, int]:
    """Each token the blocks name, with the first line naming it."""
    out: dict[str, int] = {}
    for line, batch in batches:
        for block in batch:
            for instr in block.get("instructions") or ():
                token = instr.get("token") if isinstance(instr, Mapping) else None
                if isinstance(token, str):
                    out.setdefault(token, line)
    return out
