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
_kernels_switch = helpers.kernels_switch  # this thread's kernel switch, read per call

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
    """numpy for NumPy arrays, cupy for CuPy arrays: lets one reference body serve both. Another
    array type names its module with `__array_namespace__` (the array API's hook), as the test
    stand-in device's arrays do (tinygrad_lab.testing.standin)."""
    if type(x) is _ndarray:
        return _numpy
    module = type(x).__module__
    if module.startswith("cupy"):
        import cupy

        return cupy
    namespace = getattr(x, "__array_namespace__", None)
    return namespace() if namespace is not None else _numpy


class Backend:
    """What an op may ask of a device: its array module and named array functions."""

    name: str = "?"  # the device type, a key of tinygrad_lab.backends.DEVICES
    device: str = "?"  # the full device name ("cpu", "cuda:1"), set by get_backend
    index: int = 0  # which device of the type, set by get_backend
    xp: Any = None

    def __init__(self) -> None:
        # resolved functions, one cache per state of the (per-thread) kernel switch:
        # [reference, kernels], so threads on different paths share them without clearing
        self._caches: tuple[dict[str, Callable[..., Any]], ...] = ({}, {})

    # --- named array functions ------------------------------------------------------------
    def resolve(self, name: str) -> Callable[..., Any]:
        """The function `call(name)` runs now: the kernel if registered and enabled, else the
        reference (wrapped in a logger at DEBUG>=2)."""
        cache = self._caches[_kernels_switch()]
        fn = cache.get(name)
        if fn is None:
            fn = self._lookup(name)
            if helpers.DEBUG >= 2:
                fn = _logged(self, name, fn)
            cache[name] = fn
        return fn

    def _lookup(self, name: str) -> Callable[..., Any]:
        if name not in REFERENCES:
            raise KeyError(f"no reference function registered under {name!r}")
        kernel = None
        if helpers.kernels_enabled():
            from tinygrad_lab.backends import DEVICES

            kernel = DEVICES[self.name].kernel(name)
        if kernel is not None:
            return self.wrap_kernel(kernel, REFERENCES[name])
        return REFERENCES[name]

    def wrap_kernel(self, kernel: Callable[..., Any],
                    reference: Callable[..., Any]) -> Callable[..., Any]:
        """Adapt a kernel to the backend's calling contract: the reference of the same name runs
        whenever the kernel returns NotImplemented (inputs it does not take)."""
        return with_fallback(kernel, reference)

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        fn = self._caches[_kernels_switch()].get(name) or self.resolve(name)
        return fn(*args, **kw)

    def is_kernel(self, name: str) -> bool:
        fn = self.resolve(name)
        return getattr(fn, "__wrapped__", fn) is not REFERENCES.get(name)

    # --- data movement ----------------------------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None) -> Array:
        """`data` as an array of this device: a host-to-device copy unless it is one already."""
        return self.xp.asarray(data, dtype=dtype)

    def scalar(self, value: Any, dtype: Any) -> Array:
        """A 0-d array holding a Python or NumPy number (a constant operand such as `x * 2.0`).
        A device writes it in place (CuPy: a fill kernel) instead of copying it from the host."""
        return self.xp.asarray(value, dtype=dtype)

    def to_numpy(self, x: Array) -> Any:
        raise NotImplementedError

    def random(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """Uniform [0, 1) numbers of `shape` and float `dtype`, made on this device (dropout
        masks): the CPU draws from tinygrad_lab.random's host generator, a GPU from its own,
        both seeded by tl.manual_seed. This default draws on the host and copies."""
        from tinygrad_lab.random import generator

        return self.asarray(generator().random(shape, dtype=dtype))

    def random_state(self) -> Any:
        """A host copy (a NumPy array) of this device's own generator's state, for checkpoints;
        None where `random` draws from the host generator (whose state is saved already)."""
        return None

    def set_random_state(self, state: Any) -> None:
        """Restore what `random_state` returned (ValueError if it does not fit)."""
        raise ValueError(f"device {self.device!r} draws from the host generator: it has no "
                         "generator state of its own to restore")

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); timers call it."""


def with_fallback(kernel: Callable[..., Any], reference: Callable[..., Any],
                  prepare: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
    """kernel(*args), or reference(*args) when the kernel returns NotImplemented.

    This is how kernels fall back: a kernel module imports only NumPy, Numba and other kernels,
    and answers NotImplemented for what it does not take (another dtype, an axis other than the
    last, too small to pay); the backend, which knows the references, runs the reference then.
    `prepare` maps each argument, positional and keyword, before the kernel sees it (the CPU
    and CUDA backends make arrays C-contiguous: the kernels' contract); the reference gets the
    arguments as given. An array a kernel writes in place (parameters, optimizer state) must be
    C-contiguous already, or the kernel would write into a copy: Optimizer checks its
    parameters, and state is allocated contiguous.
    """
    if prepare is None:

        def call_kernel(*args: Any, **kw: Any) -> Any:
            out = kernel(*args, **kw)
            return reference(*args, **kw) if out is NotImplemented else out
    else:

        def call_kernel(*args: Any, **kw: Any) -> Any:
            ready = {k: prepare(v) for k, v in kw.items()} if kw else kw
            out = kernel(*[prepare(a) for a in args], **ready)
            return reference(*args, **kw) if out is NotImplemented else out

    call_kernel.__name__ = getattr(kernel, "__name__", "kernel")
    call_kernel.__wrapped__ = kernel  # type: ignore[attr-defined]
    return call_kernel


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
