"""Shared test set-up: the project runs on the hypothesis profiles its kit ships
(``HYPOTHESIS_PROFILE=ci`` in tox and CI: derandomized)."""

import os

from hypothesis import settings

from fsm_exec.testing import register_profiles

register_profiles()
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", parent=settings.get_profile("fsm-exec-ci"))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
