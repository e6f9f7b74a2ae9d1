"""The CUDA backend: CuPy arrays; kernels from tinygrad_lab.kernels.cuda when registered.

`cuda:N` is GPU N: its backend makes device N current when it is made, and allocates, copies,
draws random numbers and runs kernels under it. CuPy runs maths on the current device (and
refuses arrays that live on another), so a process that uses two GPUs switches with
`with cupy.cuda.Device(n):` around each one's work.

What differs from the CPU, in one place:
- kernels get C-contiguous arrays (`wrap_kernel`), positional and keyword, as on the CPU;
- constants such as `x * 2.0` are filled on the device (`scalar`), never copied from the host;
- dropout masks come from the GPU's own generator (`random`), seeded by tl.manual_seed through
  tinygrad_lab.random.device_seed, so they differ from a CPU run's, as in PyTorch;
- scatter-add is cupyx.scatter_add (ops/scatter.py), and strided views are made without
  NumPy's `writeable` flag (ops/conv.py).
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
        self._rng: Any = None  # made on first use, remade after each tl.manual_seed
        self._rng_epoch = -1

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

    def scalar(self, value: Any, dtype: Any) -> Array:
        with self._gpu:
            return self.xp.full((), value, dtype=dtype)  # a fill kernel, no host copy

    def to_numpy(self, x: Array) -> Any:
        with self._gpu:
            return self.xp.asnumpy(x)

    def random(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """Uniform [0, 1) drawn on this GPU by its own generator (cupy.random.Generator)."""
        with self._gpu:
            return self._generator().random(shape, dtype=dtype)

    def _generator(self) -> Any:
        """This GPU's generator, remade from tl.manual_seed's device seed after each seeding."""
        from tinygrad_lab import random

        if self._rng is None or self._rng_epoch != random.seed_epoch():
            with self._gpu:
                self._rng = self.xp.random.default_rng(random.device_seed(self.device))
            self._rng_epoch = random.seed_epoch()
        return self._rng

    def random_state(self) -> Any:
        """The cuRAND states of the generator's threads (cupy's XORWOW keeps them in one int8
        device array, `bit_generator._state`), copied to the host: a checkpoint's explicit
        read, so a resumed run draws the dropout masks the interrupted one would have."""
        with self._gpu:
            return self.xp.asnumpy(self._generator().bit_generator._state)

    def set_random_state(self, state: Any) -> None:
        with self._gpu:
            held = self._generator().bit_generator._state
            if tuple(state.shape) != tuple(held.shape) or state.dtype != held.dtype:
                raise ValueError(f"device {self.device!r}: a random generator state of "
                                 f"{state.dtype}{tuple(state.shape)} does not fit this GPU's "
                                 f"{held.dtype}{tuple(held.shape)} (another GPU model?)")
            held[...] = self.xp.asarray(state)

    def synchronize(self) -> None:
        with self._gpu:
            self.xp.cuda.get_current_stream().synchronize()
