"""Hand-written kernels, imported only as `tinygrad_lab.kernels` (never as a top-level package).

`lookup(name, device)` maps a named array function to its kernel, importing the kernel module on
first use, so importing tinygrad_lab compiles nothing. The contract is in kernels/README.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

CPU_KERNELS: dict[str, str] = {}
"""name -> "module:function" under tinygrad_lab.kernels (Numba)."""

CUDA_KERNELS: dict[str, str] = {}
"""name -> "module:function" under tinygrad_lab.kernels.cuda (CuPy)."""

_TABLES = {"cpu": CPU_KERNELS, "cuda": CUDA_KERNELS}
_PACKAGES = {"cpu": "tinygrad_lab.kernels", "cuda": "tinygrad_lab.kernels.cuda"}


def lookup(name: str, device: str) -> Callable[..., Any] | None:
    """The kernel registered for `name` on `device`, or None (the backend then uses the reference)."""
    target = _TABLES.get(device, {}).get(name)
    if target is None:
        return None
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(f"{_PACKAGES[device]}.{module_name}")
    except ImportError:  # numba (or cupy) missing: the reference path still works
        return None
    return getattr(module, function_name)


def registered(device: str = "cpu") -> dict[str, str]:
    return dict(_TABLES[device])
