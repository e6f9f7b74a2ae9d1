"""Compile every registered CPU kernel ahead of time and report how long each took.

Numba compiles a kernel on its first call (and caches the machine code on disk), so the first
training step would otherwise pay for every kernel it touches. `warm()` calls each kernel twice
on small float32 and float64 inputs; the first call minus the second is its compile (or cache
load) time. Backs `tinygrad-lab kernels --warm`.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tinygrad_lab import helpers
from tinygrad_lab.backends import DEFAULT_DEVICE, DEVICES, DeviceType, parse_device

DTYPES = (np.float32, np.float64)


def _example_args(device: DeviceType, name: str, dtype: Any) -> tuple[Any, ...]:
    """Fresh small arguments for one call of kernel `name` (fresh: some kernels work in place),
    from the `KERNELS` dict of the module that registers it."""
    module_name = device.kernels[name].split(":")[0]
    module = importlib.import_module(f"{device.kernel_package}.{module_name}")
    return tuple(module.KERNELS[name](np.dtype(dtype)))


def warm(verbose: bool = True, names: Iterable[str] | None = None,
         device: str = DEFAULT_DEVICE) -> list[tuple[str, float]]:
    """Compile (or load from Numba's cache) every kernel registered for the device type `device`
    (default: the CPU's Numba kernels) for float32 and float64.

    Returns (name, seconds) per kernel, seconds being the first calls minus the second calls,
    summed over both dtypes. A kernel sharing compiled code with one warmed before it (adamw_step
    with adam_step) shows about zero. Every registered kernel brings its warm-up arguments (the
    `KERNELS` dict of its module); without Numba none is registered, and a line says so when
    verbose. `names` limits the work to those kernels (default: all registered).
    """
    from tinygrad_lab.kernels import _common

    # The examples are small, and small inputs of some kernels go to the reference: not here.
    saved, _common.SMALL_TO_REFERENCE = _common.SMALL_TO_REFERENCE, 0
    try:
        return _warm(DEVICES[parse_device(device)[0]], verbose, names)
    finally:
        _common.SMALL_TO_REFERENCE = saved


def _warm(device: DeviceType, verbose: bool, names: Iterable[str] | None
          ) -> list[tuple[str, float]]:
    results: list[tuple[str, float]] = []
    wanted = set(names) if names is not None else None
    if verbose and not device.kernels:
        helpers.log(f"no kernels registered for {device.name} (or Numba/CuPy is missing)")
    for name in device.kernels:
        if wanted is not None and name not in wanted:
            continue
        fn = device.kernel(name)
        assert fn is not None, name
        seconds = 0.0
        for dtype in DTYPES:
            first = _timed_call(fn, device, name, dtype)
            second = _timed_call(fn, device, name, dtype)
            seconds += max(first - second, 0.0)
        results.append((name, seconds))
        if verbose:
            helpers.log(f"{name:<32} {seconds:8.3f} s")
    if verbose:
        total = math.fsum(s for _, s in results)
        helpers.log(f"{len(results)} kernels warmed in {total:.2f} s")
    return results


def _timed_call(fn: Callable[..., Any], device: DeviceType, name: str, dtype: Any) -> float:
    args = _example_args(device, name, dtype)
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
