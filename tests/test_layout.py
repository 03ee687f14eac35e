"""The package's layout as users meet it: public names are real objects with real sources."""

from __future__ import annotations

import inspect
import sys
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

