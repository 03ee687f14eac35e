"""What the optional observers share: the error for a missing extra, and one manager each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fsm_exec.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from fsm_exec.manager.manager import ExecutionManager


def missing_extra(who: str, extra: str, distribution: str) -> ImportError:
    """The error for an observer built without its optional dependency."""
    return ImportError(f"{who} needs {distribution}, which is not installed: "
                       f'pip install "fsm-exec[{extra}]"')


class OneManager:
    """An observer that follows one manager at a time: the one it was attached to, or the
    replacement ``reopen()`` built for it (the old one is retired by then)."""

    _manager: ExecutionManager | None = None

    def _follow(self, manager: ExecutionManager) -> None:
        """Attach to ``manager``, unless another manager still in use has this observer."""
        old = self._manager
        if old is not None and old is not manager and not old.interrupted:
            raise InvalidArgumentError(
                f"this {type(self).__name__} already observes another manager; give each "
                "manager its own observer (reopen() hands it on to the replacement)")
        self._manager = manager
