"""The CUDA backend: CuPy arrays; kernels from tinygrad_lab.kernels.cuda when registered."""

from __future__ import annotations

from typing import Any

from tinygrad_lab.backends.base import Array, Backend


class CUDABackend(Backend):
    name = "cuda"
    kernel_device = "cuda"

    def __init__(self) -> None:
        super().__init__()
        try:
            import cupy
        except ImportError:
            raise RuntimeError(
                "device 'cuda' needs CuPy: pip install 'tinygrad_lab[cuda]'"
            ) from None
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError when no driver or GPU
            raise RuntimeError(f"device 'cuda' is not usable here: {e}") from None
        self.xp = cupy

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, x: Array) -> Any:
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()
