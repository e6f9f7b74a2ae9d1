"""The devices and code paths a test suite runs over (the project's `device` fixture).

    cpu-kernels    the CPU with the Numba kernels on
    cpu-reference  the CPU on the pure-NumPy reference path
    standin        the stand-in non-CPU device (tinygrad_lab.testing.standin): no kernels, data
                   moved, host arrays in its maths caught
    cuda           the first GPU, when CuPy imports and sees one (else the case is skipped)

    >>> case = DEVICE_CASES[2]
    >>> with case.active():
    ...     y = model.to(case.device)(case.tensor(x))
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tinygrad_lab import helpers
from tinygrad_lab.backends import DEFAULT_DEVICE
from tinygrad_lab.testing import standin


@dataclass(frozen=True)
class DeviceCase:
    """One way to run a test: `device` is the name to pass to Tensor/.to(), `kernels` the kernel
    switch while it runs."""

    name: str
    device: str
    kernels: bool

    def tensor(self, data: Any, **kw: Any) -> Any:
        """A Tensor of `data` on this case's device."""
        from tinygrad_lab.tensor import Tensor

        return Tensor(data, device=self.device, **kw)

    def skip_reason(self) -> str | None:
        """Why this case cannot run here, or None."""
        return cuda_skip_reason() if self.name == "cuda" else None

    @contextlib.contextmanager
    def host_random(self) -> Iterator[None]:
        """Inside the block this device draws its random numbers (dropout masks) from the host
        generator, as the CPU does, so a layer with dropout compares with the CPU mask for mask.
        A GPU otherwise draws from its own generator, as PyTorch's does: the same seed gives
        other masks there, and only the generator's own tests can check them."""
        from tinygrad_lab.backends import get_backend
        from tinygrad_lab.backends.base import Backend

        backend = get_backend(self.device)
        if "random" in vars(backend):  # already patched by an enclosing block
            yield
            return
        backend.random = functools.partial(Backend.random, backend)  # type: ignore[method-assign]
        try:
            yield
        finally:
            del backend.random

    @contextlib.contextmanager
    def active(self) -> Iterator[DeviceCase]:
        """The kernel switch set for this case (the stand-in is registered) inside the block."""
        standin.register()
        with helpers.use_kernels() if self.kernels else helpers.reference():
            yield self


@functools.cache
def cuda_skip_reason() -> str | None:
    """None when CuPy imports and sees a GPU, else why not (one line)."""
    try:
        import cupy
    except ImportError:
        return "cuda: CuPy is not installed (pip install 'tinygrad_lab[cuda]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError: no driver or no GPU
        return f"cuda: CuPy sees no GPU ({' '.join(str(e).split())})"
    return None if count > 0 else "cuda: CuPy sees no GPU"


CPU_CASES = (
    DeviceCase("cpu-kernels", DEFAULT_DEVICE, kernels=True),
    DeviceCase("cpu-reference", DEFAULT_DEVICE, kernels=False),
)
DEVICE_CASES = (
    *CPU_CASES,
    DeviceCase("standin", standin.NAME, kernels=True),
    DeviceCase("cuda", "cuda", kernels=True),
)

__all__ = ["CPU_CASES", "DEVICE_CASES", "DeviceCase", "cuda_skip_reason"]
