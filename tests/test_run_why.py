"""``fsm-exec run`` says why: failures by code and reason, and ``--prices FILE`` for the data
provider (issue 24, item 4)."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fsm_exec.cli._common import UsageError
from fsm_exec.cli.commands.run import TOP_REASONS, failure_summary
from fsm_exec.cli.main import main
from fsm_exec.cli.prices import load_price_file, tokens_named

from kit import block


def cli(*argv: str | Path) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


def write_blocks(path: Path, *items: Any) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def perp_blocks(path: Path, n: int) -> Path:
    return write_blocks(path, *(block(f"b{i}", "ETH-PERP") for i in range(n)))


def why_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  why:"))
    return lines[start:]


def test_run_says_why_every_block_failed(tmp_path: Path) -> None:
    """100 blocks that all fail EXEC-005 for a missing ETH-PERP price: the summary gives the
    code, the reason once, its count, what the code means and how to give prices."""
    blocks = perp_blocks(tmp_path / "b.jsonl", 100)
    code, text = cli("run", blocks, "--out", tmp_path / "out")
    assert code == 1
    why = why_lines(text)
    assert why[0] == "  why: 100 blocks failed, 0 batches refused; by code and reason, most first:"
    assert why[1].split() == ["100", "blocks", "EXEC-005", "check_prices:", "instructions[0]:",
                              "no", "finite", "positive", "price", "for", "token", "'ETH-PERP'"]
    assert why[2].startswith("  EXEC-005: Price validation failed. ")
    assert "give --prices FILE" in why[3]
    listed = [line for line in text.splitlines() if line.startswith("  failed: ")]
    assert len(listed) == 20  # the first ones; the rest are counted
    assert "  ... and 80 more failed (the journal has each one)" in text


def test_run_with_prices_holding_the_token_succeeds(tmp_path: Path) -> None:
    """The same blocks with --prices naming ETH-PERP all execute: exit 0, no why."""
    blocks = perp_blocks(tmp_path / "b.jsonl", 100)
    prices = tmp_path / "p.csv"
    prices.write_text("timestamp,ETH,ETH-PERP\n2025-01-01T00:00:00Z,3000,2999.5\n")
    code, text = cli("run", blocks, "--out", tmp_path / "out", "--prices", prices)
    assert code == 0, text
    assert "  blocks executed          100" in text
    assert "why:" not in text and "failed:" not in text


def test_run_summary_names_refused_batches_and_mixed_reasons(tmp_path: Path) -> None:
    """A refused batch (over max_queue_size) is counted apart from failed blocks; reasons
    sort by count, then code."""
    config = tmp_path / "c.toml"
    config.write_text("max_queue_size = 1\n")
    blocks = write_blocks(tmp_path / "b.jsonl", block("a", "BTC-X"), block("b", "BTC-X"),
                          block("c", "DOGE"), [block("d"), block("e")])
    code, text = cli("run", blocks, "--out", tmp_path / "out", "--config", config)
    assert code == 1
    why = why_lines(text)
    assert why[0].startswith("  why: 3 blocks failed, 1 batch refused;")
    assert why[1].split()[:3] == ["2", "blocks", "EXEC-005"] and "'BTC-X'" in why[1]
    assert why[2].split()[:4] == ["1", "batch", "refused", "EXEC-003"]  # ties: by code
    assert why[3].split()[:3] == ["1", "block", "EXEC-005"] and "'DOGE'" in why[3]


def test_failure_summary_names_the_top_reasons_and_counts_the_rest() -> None:
    """Past the top reasons, one line counts the rest; no failure, no summary."""
    failed = Counter({("EXEC-006", f"check {i}"): 10 - i for i in range(TOP_REASONS + 2)})
    lines = failure_summary(failed, Counter())
    assert [line.split()[0] for line in lines[1:TOP_REASONS + 1]] == [
        "10", "9", "8", "7", "6"]
    assert lines[TOP_REASONS + 1].split() == [
        "9", "more", "failures,", "for", "2", "other", "reasons", "(the", "journal", "has",
        "each", "one)"]
    assert failure_summary(Counter(), Counter()) == []


def test_the_summary_escapes_a_reason_for_the_terminal(tmp_path: Path) -> None:
    """A token with an escape sequence is shown as its escape, never sent to the terminal."""
    blocks = write_blocks(tmp_path / "b.jsonl", block("a", "X\x1b[2J"))
    code, text = cli("run", blocks, "--out", tmp_path / "out")
    assert code == 1
    assert "\x1b" not in text and "\\x1b[2J" in why_lines(text)[1]


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read: No such file or directory"),
    ("ETH\n3000\n", "no column 'ETH-PERP', which the blocks name (first on line 1); its "
                    "columns: ETH"),
    ("timestamp\n2025-01-01\n", "no price columns"),
    ("ETH,ETH-PERP\n", "no rows of prices"),
    ("ETH,ETH-PERP\n3000,abc\n", "row 1: column 'ETH-PERP': not a finite price > 0: 'abc'"),
    ("ETH,ETH-PERP\n3000,-1\n", "row 1: column 'ETH-PERP': not a finite price > 0: '-1'"),
    ("ETH,ETH-PERP\n3000,\n", "row 1: column 'ETH-PERP': no price"),
    ("ETH,ETH-PERP\n3000,1,2\n", ":2: more values than columns"),
    ("timestamp,ETH-PERP\nyesterday,1\n", "row 1: column 'timestamp': not an ISO 8601 time"),
])
def test_a_bad_prices_file_is_a_usage_error_and_creates_nothing(
        content: str | None, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or unreadable prices file, or one missing a column the blocks name, is
    exit 2 naming the file (and the column); nothing is written."""
    blocks = perp_blocks(tmp_path / "b.jsonl", 2)
    prices = tmp_path / "p.csv"
    if content is not None:
        prices.write_text(content)
    assert cli("run", blocks, "--out", tmp_path / "out", "--prices", prices)[0] == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fsm-exec run: --prices {prices}") and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_latest_row_prices_the_run(tmp_path: Path) -> None:
    """With timestamps, the row with the latest one (in any order); without, the last row.
    A column no block names may be empty."""
    p = tmp_path / "p.csv"
    p.write_text("timestamp,ETH,BTC\n2025-01-02T00:00:00Z,2,\n2025-01-01T00:00:00+00:00,1,5\n")
    assert load_price_file(p, {"ETH": 1}) == {"ETH": 2.0}
    p.write_text("ETH,BTC\n1,5\n2,6\n")
    assert load_price_file(p, {"ETH": 1}) == {"ETH": 2.0, "BTC": 6.0}


def test_tokens_named_gives_the_first_line_of_each() -> None:
    """Each token with the line that first names it."""
    batches = [(1, [block("a", "ETH")]), (3, [block("b", "BTC"), block("c", "ETH")]),
               (4, [block("d", None)])]
    assert tokens_named(batches) == {"ETH": 1, "BTC": 3}


def test_parquet_is_read_through_pandas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .parquet file goes through pandas.read_parquet; an engine that is missing is a
    usage error saying so."""
    pd = pytest.importorskip("pandas")
    p = tmp_path / "p.parquet"
    p.write_bytes(b"PAR1")  # a regular file (read_parquet is replaced below)
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
                          "ETH": [1.0, 2.0]})
    seen: list[Path] = []

    def read(path: Path) -> Any:
        seen.append(path)
        return frame

    monkeypatch.setattr(pd, "read_parquet", read)
    assert load_price_file(p, {"ETH": 1}) == {"ETH": 2.0}
    assert seen == [p]

    def no_engine(path: Path) -> Any:
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(UsageError, match="cannot read Parquet: Unable to find a usable engine"):
        load_price_file(p, {"ETH": 1})
