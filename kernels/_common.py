"""What every kernel module shares: the dtypes CPU kernels take, the size where threads pay, and
how an attention mask fits the scores (the CUDA kernels read masks the same way).

Numba compiles one specialization per argument type, so the wrappers hand the `@njit` functions
1-D or 2-D C-contiguous arrays of one of two dtypes and Python floats for scalars: that keeps it
to two compilations per kernel (float32, float64), both of which `tinygrad-lab kernels --warm`
makes ahead of time. Every `@njit` also says `error_model="numpy"`: a division by zero gives
inf/NaN as in NumPy instead of raising ZeroDivisionError, and division loops can vectorize.
"""

from __future__ import annotations

from typing import Any

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
# Native float dtypes are singletons, so `dt is F32 or dt is F64` is the cheap check (a
# byte-swapped float32 is not F32, and goes to the reference).

PARALLEL_MIN = 1 << 18
"""Elements below which a cheap (memory-bound) kernel runs on one thread. Waking the sleeping
OpenMP team (passive wait, see helpers.apply_thread_env) costs 20-40 us, what one thread needs
for ~250k elements of a one-pass kernel: the MLP's (128, 512) activations stay serial, its Adam
update over 400k parameters goes parallel."""

PARALLEL_MIN_ONE_PASS = 1 << 20
"""The same for kernels that only stream their arrays once (relu, the tanh/sigmoid backwards, the
bias-gradient row sum, a bias add): one thread streams ~1M float32 elements in the time the wake
costs (2 threads, measured: relu 46 us on one thread against 60 us on two at 512k elements,
90 against 95 at 1M, 243 against 151 at 2M; the row sum of a (1024, 384) gradient 27 against
83 us)."""

PARALLEL_MIN_HEAVY = 1 << 12
"""The same for kernels that call exp/tanh per element (tens of cycles each)."""


SMALL_TO_REFERENCE = 4096
"""Below this many elements the cheapest kernels (relu, the tanh/sigmoid backwards) hand the call
to their NumPy reference: one SIMD ufunc pass beats the kernel's fixed cost of ~2 us (measured,
float32, 2 threads). Read at call time, so tests can set it to 0 and run the kernels on small
inputs too."""


def is_float(dt: np.dtype) -> bool:
    return dt is F32 or dt is F64


def mask_as_4d(mask: Any, shape4: tuple[int, ...]) -> Any | None:
    """An attention mask (any array module) viewed as 4-D (mB, mH, mT, mS), each side 1 or the
    scores' (B, H, T, S) side, or None when it would need enlarging (the reference broadcasts
    it then): what the CPU and CUDA masked-softmax kernels read without materialising."""
    if mask.ndim > 4:
        return None
    m = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    if any(a not in (1, n) for a, n in zip(m.shape, shape4)):
        return None
    return m
