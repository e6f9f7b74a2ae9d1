"""The device registry: one table from a device type name to its backend and its kernels.

A device name is a type, optionally with an index: `cpu`, `cuda` (the same as `cuda:0`),
`cuda:1`. `DEVICES` maps each type to a `DeviceType` (how to make its backend, and which kernel
table and package serve it); nothing else in the library spells a device name. Adding a device is
one backend module and one `register_device` call; tests add a stand-in this way
(tinygrad_lab.testing.standin).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tinygrad_lab import helpers
from tinygrad_lab.backends.base import REFERENCES, Array, Backend, array_module, reference_function


@dataclass(frozen=True)
class DeviceType:
    """One kind of device: `make_backend(index)` builds the backend of `name:index`; `kernels`
    maps an array-function name to "module:function" under `kernel_package` (None: no kernels)."""

    name: str
    make_backend: Callable[[int], Backend]
    kernel_package: str | None = None
    kernels: Mapping[str, str] = field(default_factory=dict)
    indexed: bool = False  # True: `name:N` is the N-th device and `name` means `name:0`

    def device_name(self, index: int) -> str:
        """The full name of device `index` of this type: 'cpu', 'cuda:0', 'cuda:1'."""
        return f"{self.name}:{index}" if self.indexed else self.name

    def kernel(self, name: str) -> Callable[..., Any] | None:
        """The kernel registered for array function `name`, or None (then the reference runs)."""
        if self.kernel_package is None or name not in self.kernels:
            return None
        from tinygrad_lab.kernels import lookup

        return lookup(name, self.kernel_package, self.kernels)


DEVICES: dict[str, DeviceType] = {}
"""device type name -> DeviceType; extend with `register_device`."""

DEFAULT_DEVICE = "cpu"

_INSTANCES: dict[str, Backend] = {}  # device name as given (and its full name) -> backend


def register_device(device: DeviceType, replace: bool = False) -> DeviceType:
    """Add a device type. Registering a taken name raises unless `replace` (which also drops the
    backends already made for it)."""
    if ":" in device.name or not device.name:
        raise ValueError(f"device type name {device.name!r} must be non-empty, without ':'")
    if device.name in DEVICES and not replace:
        raise ValueError(f"device type {device.name!r} is already registered")
    unregister_device(device.name)
    DEVICES[device.name] = device
    return device


def unregister_device(name: str) -> None:
    """Remove a device type and forget its backends (a no-op for an unknown name)."""
    DEVICES.pop(name, None)
    for key in [k for k, b in _INSTANCES.items() if b.name == name]:
        del _INSTANCES[key]


def parse_device(device: str) -> tuple[str, int]:
    """'cuda:1' -> ('cuda', 1); 'cuda' -> ('cuda', 0); 'cpu' -> ('cpu', 0). ValueError names what
    is wrong: not a string, an unknown type, a bad index, or an index on a type that has none."""
    if not isinstance(device, str):
        raise ValueError(f"a device name is a string such as 'cpu' or 'cuda:1', not {device!r}")
    kind, sep, index_text = device.partition(":")
    if kind not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known device types: {sorted(DEVICES)}")
    if not sep:
        return kind, 0
    if not DEVICES[kind].indexed:
        raise ValueError(f"device {device!r}: {kind!r} takes no index, write {kind!r}")
    if not index_text.isdigit() or not index_text.isascii():
        raise ValueError(f"device {device!r}: the index after ':' must be an integer >= 0")
    return kind, int(index_text)


def canonical_device(device: str) -> str:
    """The full name of a device: 'cuda' -> 'cuda:0', 'cuda:1' -> 'cuda:1', 'cpu' -> 'cpu'."""
    kind, index = parse_device(device)
    return DEVICES[kind].device_name(index)


def get_backend(device: str) -> Backend:
    """The backend of a device name; one instance per full name ('cuda' and 'cuda:0' share)."""
    backend = _INSTANCES.get(device)
    if backend is not None:
        return backend
    kind, index = parse_device(device)
    full = DEVICES[kind].device_name(index)
    backend = _INSTANCES.get(full)
    if backend is None:
        backend = DEVICES[kind].make_backend(index)
        backend.name, backend.index, backend.device = kind, index, full
        _INSTANCES[full] = backend
        if helpers.DEBUG >= 1:
            helpers.log(f"backend {type(backend).__name__} for device {full!r}")
    _INSTANCES[device] = backend
    return backend


def _cpu(index: int) -> Backend:
    from tinygrad_lab.backends.cpu import CPUBackend

    return CPUBackend()


def _cuda(index: int) -> Backend:
    from tinygrad_lab.backends.cuda import CUDABackend

    return CUDABackend(index)


def _builtin_devices() -> None:
    from tinygrad_lab.kernels import CPU_KERNELS, CUDA_KERNELS

    register_device(DeviceType("cpu", _cpu, "tinygrad_lab.kernels", CPU_KERNELS))
    register_device(
        DeviceType("cuda", _cuda, "tinygrad_lab.kernels.cuda", CUDA_KERNELS, indexed=True)
    )


_builtin_devices()

__all__ = [
    "DEFAULT_DEVICE",
    "DEVICES",
    "REFERENCES",
    "Array",
    "Backend",
    "DeviceType",
    "array_module",
    "canonical_device",
    "get_backend",
    "parse_device",
    "reference_function",
    "register_device",
    "unregister_device",
]
