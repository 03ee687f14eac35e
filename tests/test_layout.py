"""The package's layout as users meet it: public names are real objects with real sources."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import fsm_exec
import fsm_exec.observe
import fsm_exec.testing

PUBLIC: list[tuple[ModuleType, str]] = [
    (module, name)
    for module in (fsm_exec, fsm_exec.observe, fsm_exec.testing)
    for name in module.__all__
]


@pytest.mark.parametrize(("module", "name"), PUBLIC,
                         ids=[f"{m.__name__}.{n}" for m, n in PUBLIC])
def test_every_public_class_and_function_has_its_source(module: ModuleType, name: str) -> None:
    """inspect.getsource() works on every public class and function (no rewritten
    ``__module__`` hides where it lives), and the module it names exports it."""
    obj = getattr(module, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return
    source = inspect.getsource(obj)
    assert obj.__name__ in source
    assert getattr(sys.modules[obj.__module__], obj.__name__) is obj


def test_public_exports_are_sorted_and_complete() -> None:
    """Each public module lists its exports once, in order, and each one is importable."""
    for module in (fsm_exec, fsm_exec.observe, fsm_exec.testing):
        assert len(set(module.__all__)) == len(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"



def test_the_layers_and_the_absence_of_import_circles_hold() -> None:
    """``lint-imports`` keeps every contract in pyproject.toml (the layers, top to bottom,
    and no import circle at any depth): a change that breaks the layering fails here."""
    exe = shutil.which("lint-imports")
    assert exe is not None, "import-linter is a test dependency: pip install -e '.[test]'"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([exe, "--no-logo", "--no-cache"], cwd=root, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
