"""Device name -> backend instance. Adding a device = one module + one line in _FACTORIES."""

from __future__ import annotations

from collections.abc import Callable

from tinygrad_lab import helpers
from tinygrad_lab.backends.base import REFERENCES, Array, Backend, array_module, reference_function

_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


def _cpu() -> Backend:
    from tinygrad_lab.backends.cpu import CPUBackend

    return CPUBackend()


def _cuda() -> Backend:
    from tinygrad_lab.backends.cuda import CUDABackend

    return CUDABackend()


_FACTORIES["cpu"] = _cpu
_FACTORIES["cuda"] = _cuda


def get_backend(device: str) -> Backend:
    """The backend for a device name ('cpu', 'cuda', 'cuda:0' is read as 'cuda')."""
    backend = _INSTANCES.get(device)
    if backend is not None:
        return backend
    key = device.split(":")[0]
    if key not in _FACTORIES:
        raise ValueError(f"unknown device {device!r}; known devices: {sorted(_FACTORIES)}")
    backend = _INSTANCES.get(key) or _FACTORIES[key]()
    _INSTANCES[key] = backend
    _INSTANCES[device] = backend
    if helpers.DEBUG >= 1:
        helpers.log(f"backend {backend.name} for device {device!r}, xp={backend.xp.__name__}")
    return backend


__all__ = ["REFERENCES", "Array", "Backend", "array_module", "get_backend", "reference_function"]
