"""The CPU backend: NumPy for array maths, Numba kernels from tinygrad_lab.kernels when enabled."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from tinygrad_lab.backends.base import Array, Backend, with_fallback


def _contiguous(x: Any) -> Any:
    if isinstance(x, np.ndarray) and not x.flags.c_contiguous:
        return np.ascontiguousarray(x)
    return x


def keep_freed_memory() -> bool:
    """Ask glibc malloc to keep freed blocks instead of returning them to the OS.

    A training step frees and re-allocates the same large arrays every step. By default glibc
    serves blocks above 128 KiB with mmap and unmaps them on free, so every step pays ~2,000 page
    faults (zero-filling fresh pages) for the MNIST MLP alone. Raising the mmap and trim
    thresholds keeps those pages in the heap for reuse, the same trade PyTorch's caching
    allocators make. Process-wide; opt out with TINYGRAD_LAB_MALLOC_TUNING=0.
    """
    if os.environ.get("TINYGRAD_LAB_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        return ok and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


class CPUBackend(Backend):
    name = "cpu"
    xp = np

    def __init__(self) -> None:
        super().__init__()
        keep_freed_memory()

    def wrap_kernel(self, kernel: Callable[..., Any],
                    reference: Callable[..., Any]) -> Callable[..., Any]:
        # Kernels may assume C-contiguous arrays (their contract); make that true here, once.
        return with_fallback(kernel, reference, prepare=_contiguous)

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        return np.asarray(data, dtype=dtype)

    def random(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """From the host generator (so a checkpoint's generator state covers dropout too)."""
        from tinygrad_lab.random import generator

        return generator().random(shape, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)
