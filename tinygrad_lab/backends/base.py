"""The seam between ops and devices.

An op never touches NumPy or CuPy for device work directly. It asks its context for `xp` (the
backend's array module) or calls a *named array function* through `Backend.call`, which picks the
hand-written kernel for that name when one is registered and enabled, else the reference function
registered by the op module. A new device is one new module subclassing `Backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as _numpy

from tinygrad_lab import helpers

_ndarray = _numpy.ndarray

Array = Any  # a NumPy or CuPy ndarray

REFERENCES: dict[str, Callable[..., Any]] = {}
"""name -> reference implementation (NumPy/CuPy through `array_module`)."""


def reference_function(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the reference (pure NumPy/CuPy) body of a named array function."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REFERENCES:
            raise RuntimeError(f"array function {name!r} registered twice")
        REFERENCES[name] = fn
        return fn

    return register


def array_module(x: Array) -> Any:
    """numpy for NumPy arrays, cupy for CuPy arrays: lets one reference body serve both."""
    if type(x) is _ndarray:
        return _numpy
    module = type(x).__module__
    if module.startswith("cupy"):
        import cupy

        return cupy
    import numpy

    return numpy


class Backend:
    """What an op may ask of a device: its array module and named array functions."""

    name: str = "?"
    xp: Any = None
    kernel_device: str = "cpu"  # which folder of tinygrad_lab.kernels serves this backend

    def __init__(self) -> None:
        self._resolved: dict[str, Callable[..., Any]] = {}
        helpers.on_switch(self._resolved.clear)

    # --- named array functions ------------------------------------------------------------
    def resolve(self, name: str) -> Callable[..., Any]:
        """The function `call(name)` runs now: the kernel if registered and enabled, else the
        reference (wrapped in a logger at DEBUG>=2)."""
        fn = self._resolved.get(name)
        if fn is None:
            fn = self._lookup(name)
            if helpers.DEBUG >= 2:
                fn = _logged(self, name, fn)
            self._resolved[name] = fn
        return fn

    def _lookup(self, name: str) -> Callable[..., Any]:
        kernel = None
        if helpers.kernels_enabled():
            from tinygrad_lab.kernels import lookup

            kernel = lookup(name, self.kernel_device)
        if kernel is not None:
            return self.wrap_kernel(kernel)
        if name not in REFERENCES:
            raise KeyError(f"no reference function registered under {name!r}")
        return REFERENCES[name]

    def wrap_kernel(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        """Adapt a kernel to the backend's calling contract (e.g. contiguous inputs)."""
        return kernel

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        fn = self._resolved.get(name) or self.resolve(name)
        return fn(*args, **kw)

    def is_kernel(self, name: str) -> bool:
        fn = self.resolve(name)
        return getattr(fn, "__wrapped__", fn) is not REFERENCES.get(name)

    # --- data movement ----------------------------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None) -> Array:
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, x: Array) -> Any:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); timers call it."""


def _logged(backend: Backend, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    import time

    kind = "reference" if fn is REFERENCES.get(name) else "kernel"

    def logged(*args: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kw)
        backend.synchronize()
        ms = (time.perf_counter() - start) * 1e3
        shapes = [tuple(a.shape) for a in args if hasattr(a, "shape")]
        helpers.log(f"[{backend.name}] {name:<32} {kind:<9} {shapes} {ms:.3f} ms")
        return out

    logged.__wrapped__ = fn  # type: ignore[attr-defined]
    return logged
