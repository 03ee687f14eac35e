"""The kit's hypothesis profiles, and the step count and phases its machines run with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, settings

PROFILES: Mapping[str, dict[str, Any]] = {
    # quick local runs while editing an adapter
    "fsm-exec-fast": {"max_examples": 25, "stateful_step_count": 25, "deadline": None},
    # deterministic CI: the same examples every run
    "fsm-exec-ci": {"max_examples": 200, "deadline": None, "derandomize": True,
                    "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]},
    # a long nightly search: what `python -m fsm_exec.testing nightly` runs the machine
    # under (seeded per round: see _nightly.py)
    "fsm-exec-nightly": {"max_examples": 5000, "stateful_step_count": 100,
                         "deadline": None, "suppress_health_check": [HealthCheck.too_slow]},
}


def register_profiles() -> tuple[str, ...]:
    """Register hypothesis profiles ``fsm-exec-fast``, ``fsm-exec-ci`` (derandomized) and
    ``fsm-exec-nightly``; load one with ``settings.load_profile(name)`` or
    ``pytest --hypothesis-profile=name``. Returns their names. Each is hypothesis's
    default profile with these values, whatever profile is loaded when this is called."""
    for name, values in PROFILES.items():
        settings.register_profile(name, parent=settings.get_profile("default"), **values)
    return tuple(PROFILES)



DEFAULT_STEPS = settings.get_profile("default").stateful_step_count
KIT_STEPS = 20  # steps per example for kit machines, unless a profile says otherwise
DEFAULT_PHASES = tuple(settings.get_profile("default").phases)
#: Kit machines skip the explain phase unless a profile sets the phases.
KIT_PHASES = tuple(p for p in DEFAULT_PHASES if p is not Phase.explain)
