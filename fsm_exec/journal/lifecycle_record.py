"""The lifecycle a journal was written under, as its checkpoints hold it.

Every checkpoint (the first record of each file, and so the start of every recovery) says
which lifecycle its records follow: ``lifecycle``, the lifecycle's hash, and, for a user
lifecycle, ``lifecycle_definition``, its whole definition
(:meth:`~fsm_exec.core.lifecycles.Lifecycle.to_dict`). A journal of the default lifecycle
holds only the hash, exactly as journals did before lifecycles were data: old journals read
as the default lifecycle's, and the default's journal bytes are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fsm_exec.core.lifecycle import TABLE_HASH
from fsm_exec.core.running import DEFAULT_TABLE, LifecycleCallError, RunTable, table_of

#: The checkpoint field holding a user lifecycle's definition.
DEFINITION = "lifecycle_definition"


class LifecycleMismatch(ValueError):
    """A journal's lifecycle cannot be read (its definition is broken, or its hash is not
    its definition's)."""


def checkpoint_fields(table: RunTable) -> dict[str, Any]:
    """What a checkpoint says of the lifecycle ``table`` runs."""
    if table.lifecycle is None:
        return {"lifecycle": TABLE_HASH}
    return {"lifecycle": table.hash, DEFINITION: table.lifecycle.to_dict()}


def table_of_checkpoint(d: Mapping[str, Any]) -> RunTable:
    """The lifecycle a checkpoint's records follow; :class:`LifecycleMismatch` saying why
    when it cannot be read."""
    digest, definition = d.get("lifecycle"), d.get(DEFINITION)
    if definition is None:
        if digest != TABLE_HASH:
            raise LifecycleMismatch(
                f"this journal was written under another block lifecycle (table {digest!r}; "
                f"this fsm_exec's is {TABLE_HASH!r}) and does not hold its definition: its "
                "records cannot be read as this lifecycle's")
        return DEFAULT_TABLE
    if not isinstance(definition, Mapping):
        raise LifecycleMismatch(f"{DEFINITION} must be an object")
    from fsm_exec.core.lifecycles import Lifecycle, LifecycleError

    try:
        lifecycle = Lifecycle.from_dict(definition)
        table = table_of(lifecycle)
    except (LifecycleError, LifecycleCallError) as exc:
        hint = ("; an earlier fsm_exec may have accepted it, but a lifecycle that breaks a "
                "rule is unsafe to run: settle its block in flight by hand (the journal's last "
                "block_transition records name it) and go on in a new log directory under a "
                "lifecycle that keeps the rules; the new journal knows none of this one's "
                "block ids: submit again only the blocks this one still held queued, never "
                "one it started or finished (its records say which)"
                if isinstance(exc, LifecycleError) and exc.violations else "")
        raise LifecycleMismatch(f"the journal's lifecycle cannot be used: {exc}{hint}") from None
    if table.hash != digest:
        raise LifecycleMismatch(
            f"the journal's lifecycle definition has hash {table.hash!r}, but its checkpoint "
            f"says {digest!r}")
    return table


def describe(table: RunTable) -> str:
    """A lifecycle in a few words, for messages: its name and hash."""
    name = "default" if table.lifecycle is None else table.lifecycle.name
    return f"{name!r} (hash {table.hash})"
