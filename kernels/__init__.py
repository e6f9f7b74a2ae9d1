"""Hand-written kernels, imported only as `tinygrad_lab.kernels` (never as a top-level package).

The tables below map a named array function to "module:function"; each kernel module declares
its own kernels in a `KERNELS` dict, which the tables collect on first use. The device registry
(tinygrad_lab.backends.DEVICES) says which table and package serve which device. Importing
tinygrad_lab imports no kernel module and compiles nothing. The contract is in kernels/README.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any


class KernelTable(Mapping[str, str]):
    """name -> "module:function": the union of the `KERNELS` dicts that the modules of a kernel
    package declare, so that a kernel is registered once, beside its code (`KERNELS` maps each
    name to its warm-up arguments, see kernels/README.md).

    Collected on first use, by importing those modules: that imports Numba (or CuPy) but compiles
    nothing, and `import tinygrad_lab` does not get here. Modules that cannot import (Numba
    missing) register nothing, so the reference path runs.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self._table: dict[str, str] | None = None

    def _collect(self) -> dict[str, str]:
        if self._table is None:
            table: dict[str, str] = {}
            path = importlib.import_module(self.package).__path__
            for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
                if info.ispkg or info.name.startswith("_"):
                    continue
                try:
                    module = importlib.import_module(f"{self.package}.{info.name}")
                except ImportError:  # numba (or cupy) missing: the reference path still works
                    continue
                for name in getattr(module, "KERNELS", {}):
                    if name in table:
                        raise RuntimeError(f"kernel {name!r} registered by {table[name]} and "
                                           f"{info.name}")
                    table[name] = f"{info.name}:{name}"
            self._table = table
        return self._table

    def __getitem__(self, name: str) -> str:
        return self._collect()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._collect())

    def __len__(self) -> int:
        return len(self._collect())


CPU_KERNELS = KernelTable(__name__)
"""name -> "module:function" under tinygrad_lab.kernels (Numba)."""

CUDA_KERNELS = KernelTable(f"{__name__}.cuda")
"""name -> "module:function" under tinygrad_lab.kernels.cuda (CUDA C through CuPy)."""


def lookup(
    name: str, package: str = __name__, table: Mapping[str, str] = CPU_KERNELS
) -> Callable[..., Any] | None:
    """The kernel `table` registers for `name`, imported from `package` (by default the Numba
    kernels of this package), or None: not registered, or its module cannot import (the backend
    then runs the reference)."""
    target = table.get(name)
    if target is None:
        return None
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(f"{package}.{module_name}")
    except ImportError:  # numba (or cupy) missing: the reference path still works
        return None
    return getattr(module, function_name)
