"""Write docs/cli.md, the command-line reference, from fsm-exec's own argument parser.

Run ``python docs/gen_cli.py`` after changing a command or an option; ``--check`` exits 1
when the committed page is stale (``tests/test_docs.py`` checks the same).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "cli.md"
#: The width the help is wrapped at, whatever the terminal: the page is the same everywhere.
WIDTH = "100"


def parser() -> argparse.ArgumentParser:
    """fsm-exec's parser: the one place this page finds it."""
    from fsm_exec.cli.main import build_parser

    return build_parser()


def _commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    """The page: the top-level help, then each command's, as ``--help`` prints them."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        top = parser()
        parts = [
            "# Command line reference", "",
            "Generated from the argument parser by `python docs/gen_cli.py`: each section is",
            "what `--help` prints. How to use the commands day to day:",
            "[Operate](how-to/operate.md), [Review diagrams](how-to/diagrams.md).", "",
            f"## `{top.prog}`", "", "```text", top.format_help().rstrip(), "```", ""]
        for name, sub in _commands(top).items():
            parts += [f"## `{top.prog} {name}`", "", "```text", sub.format_help().rstrip(),
                      "```", ""]
            for own, subsub in _commands(sub).items():  # a command's own commands
                parts += [f"### `{top.prog} {name} {own}`", "", "```text",
                          subsub.format_help().rstrip(), "```", ""]
        return "\n".join(parts)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if PAGE.read_text() != text:
            print(f"{PAGE} is stale: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
