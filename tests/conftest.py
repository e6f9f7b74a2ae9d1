"""Shared test configuration: hypothesis profiles.

Choose one with HYPOTHESIS_PROFILE=dev|ci|thorough; the default is `ci` when the CI environment
variable is set, else `dev`. No profile has a deadline: the first call of a Numba kernel compiles
it, which would trip hypothesis' per-example timer.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
