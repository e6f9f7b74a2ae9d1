"""The CPU backend: NumPy for array maths, Numba kernels from tinygrad_lab.kernels when enabled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tinygrad_lab.backends.base import Array, Backend


def _contiguous(x: Any) -> Any:
    if isinstance(x, np.ndarray) and not x.flags.c_contiguous:
        return np.ascontiguousarray(x)
    return x


class CPUBackend(Backend):
    name = "cpu"
    xp = np
    kernel_device = "cpu"

    def wrap_kernel(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        # Kernels may assume C-contiguous arrays (their contract); make that true here, once.
        def contiguous_call(*args: Any, **kw: Any) -> Any:
            return kernel(*[_contiguous(a) for a in args], **kw)

        contiguous_call.__name__ = getattr(kernel, "__name__", "kernel")
        contiguous_call.__wrapped__ = kernel  # type: ignore[attr-defined]
        return contiguous_call

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        return np.asarray(data, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)
