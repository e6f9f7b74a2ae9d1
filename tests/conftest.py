"""Shared test configuration: hypothesis profiles, and the `device` and `cpu_path` fixtures.

Choose a profile with HYPOTHESIS_PROFILE=dev|ci|thorough; the default is `ci` when the CI
environment variable is set, else `dev`. No profile has a deadline: the first call of a Numba
kernel compiles it, which would trip hypothesis' per-example timer.

`device` runs a test once per tinygrad_lab.testing.devices.DEVICE_CASES (cpu-kernels,
cpu-reference, standin, cuda; cuda skips without a GPU); `cpu_path` once per CPU path (kernels,
reference), for kernel-against-reference tests; `parametrize("device", ["standin"],
indirect=True)` picks cases by name. Each yields a DeviceCase (name, device, kernels)
and holds the kernel switch for the whole test, hypothesis examples included: the health check
on function-scoped fixtures is off because these fixtures hold nothing an example could change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tinygrad_lab.testing import standin
from tinygrad_lab.testing.devices import CPU_CASES, DEVICE_CASES, DeviceCase

standin.register()

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "dev", max_examples=20, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=_QUIET
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def _run_case(case: DeviceCase | str) -> Iterator[DeviceCase]:
    if isinstance(case, str):  # @pytest.mark.parametrize("device", ["standin"], indirect=True)
        case = {c.name: c for c in DEVICE_CASES}[case]
    reason = case.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with case.active():
        yield case


@pytest.fixture(params=DEVICE_CASES, ids=[c.name for c in DEVICE_CASES])
def device(request: pytest.FixtureRequest) -> Iterator[DeviceCase]:
    """Every device and CPU path: cpu-kernels, cpu-reference, standin, cuda."""
    yield from _run_case(request.param)


@pytest.fixture(params=CPU_CASES, ids=[c.name for c in CPU_CASES])
def cpu_path(request: pytest.FixtureRequest) -> Iterator[DeviceCase]:
    """The two CPU paths, cpu-kernels and cpu-reference."""
    yield from _run_case(request.param)


@pytest.fixture(autouse=True, scope="session")
def _ceilings_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Machine ceilings (tl.ceilings.get, used by tl.summarize) cached in a temporary folder for
    the session, never in the user's cache; a TINYGRAD_LAB_CACHE_DIR set by the caller wins."""
    patch = pytest.MonkeyPatch()
    if not os.environ.get("TINYGRAD_LAB_CACHE_DIR"):
        patch.setenv("TINYGRAD_LAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()
