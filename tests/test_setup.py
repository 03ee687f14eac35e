"""What a newcomer meets first: the Quick start, the install lines, the clone, the test output
and the benchmark without its extra."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def quick_start() -> tuple[str, list[str]]:
    """The line right above the Quick start's code block, and the block's lines."""
    section = README.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    before, block = section.split("```sh\n", 1)
    return before.strip().splitlines()[-1], block.split("```", 1)[0].splitlines()


def test_quick_start_says_how_to_make_a_virtual_environment_first() -> None:
    """One line above the Quick start's two lines says how to make and activate a venv (PEP 668)."""
    line, block = quick_start()
    assert "PEP 668" in line
    assert "`python3 -m venv .venv && . .venv/bin/activate`" in line
    assert block == ["python3 -m pip install . && python3 -m fsm_exec demo",
                     "python3 -m pip install tox && python3 -m tox"]


def test_the_clone_can_hold_a_virtual_environment_named_venv() -> None:
    """No file named .venv is shipped (it made `python3 -m venv .venv` fail); .venv/ is ignored."""
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".venv/" in ignored
    if (ROOT / ".git").exists():  # what is shipped is what git tracks
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", ".venv"],
                                 capture_output=True, text=True, check=True).stdout
        assert tracked == ""
    else:
        assert not (ROOT / ".venv").is_file()


def test_the_docs_say_how_to_install_the_testing_extra_from_an_index_and_a_clone() -> None:
    """The fuzzing guide installs the testing extra: `"fsm-exec[testing]"` from an index,
    `".[testing]"` in a clone."""
    text = " ".join((ROOT / "docs" / "how-to" / "fuzz.md").read_text().split())
    assert 'pip install "fsm-exec[testing]"` from an index' in text
    assert '`pip install ".[testing]"` in a clone' in text


def test_default_test_output_shows_skip_reasons(tmp_path: Path) -> None:
    """The project's pytest options list skipped tests with their reasons (and still failures)."""
    addopts = configparser.ConfigParser(interpolation=None)
    addopts.read(ROOT / "setup.cfg")
    opts = addopts["tool:pytest"]["addopts"].split()
    (chars,) = [o[2:] for o in opts if o.startswith("-r")]
    assert {"s", "f", "E"} <= set(chars)
    test = tmp_path / "test_skips.py"
    test.write_text("import pytest\n\n"
                    "def test_renderer():\n    pytest.skip('Graphviz is not installed')\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "setup.cfg"),
                           "--rootdir", str(tmp_path), str(test)], capture_output=True,
                          text=True, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"SKIPPED \[1\] .*test_skips.py:\d+: Graphviz is not installed",
                     proc.stdout), proc.stdout


def test_benchmark_without_its_extra_says_what_to_install() -> None:
    """`python benchmarks/bench.py` without python-statemachine names the extra, no traceback."""
    hide = ("import runpy, sys; sys.modules['statemachine'] = None; "
            "sys.argv = ['benchmarks/bench.py']; "
            "runpy.run_path('benchmarks/bench.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                          timeout=120, check=False, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert 'pip install ".[bench]"' in proc.stderr
    assert "python-statemachine" in proc.stderr
