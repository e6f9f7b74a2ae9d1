"""The CUDA backend: CuPy arrays; kernels from tinygrad_lab.kernels.cuda when registered.

`cuda:N` is GPU N: its backend makes device N current when it is made, and allocates and copies
under it. CuPy runs maths on the current device (and refuses arrays that live on another), so a
process that uses two GPUs switches with `with cupy.cuda.Device(n):` around each one's work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinygrad_lab.backends.base import Array, Backend, with_fallback


class CUDABackend(Backend):
    name = "cuda"

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        device = f"cuda:{index}"
        try:
            import cupy
        except ImportError:
            raise RuntimeError(
                f"device {device!r} needs CuPy: pip install 'tinygrad_lab[cuda]'"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDARuntimeError when no driver or GPU
            reason = " ".join(str(e).split())
            raise RuntimeError(
                f"device {device!r} is not usable here (no NVIDIA driver or GPU?): {reason}"
            ) from None
        if not 0 <= index < count:
            raise RuntimeError(
                f"device {device!r} does not exist: CuPy sees {count} GPU(s)"
                + (f", cuda:0 to cuda:{count - 1}" if count else "")
            )
        self.xp = cupy
        self.index = index
        self._gpu = cupy.cuda.Device(index)
        self._gpu.use()

    def wrap_kernel(self, kernel: Callable[..., Any],
                    reference: Callable[..., Any]) -> Callable[..., Any]:
        # Kernels may assume C-contiguous arrays (their contract); make that true here, once.
        cupy = self.xp

        def contiguous(a: Any) -> Any:
            return cupy.ascontiguousarray(a) if isinstance(a, cupy.ndarray) else a

        call_kernel = with_fallback(kernel, reference, prepare=contiguous)

        def on_device(*args: Any, **kw: Any) -> Any:
            with self._gpu:
                return call_kernel(*args, **kw)

        on_device.__name__ = call_kernel.__name__
        on_device.__wrapped__ = kernel  # type: ignore[attr-defined]
        return on_device

    def asarray(self, data: Any, dtype: Any = None) -> Array:
        with self._gpu:
            return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, x: Array) -> Any:
        with self._gpu:
            return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        with self._gpu:
            self.xp.cuda.get_current_stream().synchronize()
