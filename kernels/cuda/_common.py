"""What every CUDA kernel module shares: lazy compilation of its CUDA C source, launch sizes, and
the device-side helpers (warp and block reductions) every source starts with.

A family module holds one `CudaSource`: its CUDA C text (templates over the element type `T`,
float or double) and the template instances it launches. Nothing compiles at import, and CuPy is
imported on first use only: `import tinygrad_lab.kernels.cuda.softmax` works without a GPU (the
tests compile every source to PTX with NVRTC alone, see tests/test_cuda_sources.py). The first
launch compiles the source once per process and device (`cupy.RawModule`, CuPy's on-disk cache
keeps it across processes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
CTYPES = {F32: "float", F64: "double"}
"""dtype -> the C type of the template instance that serves it."""

OPTIONS = ("-std=c++17",)
"""NVRTC options of every source (CuPy adds the architecture of the current device)."""

THREADS = 256  # threads per block of the elementwise and row kernels
MAX_BLOCKS = 65536  # grid-stride loops cover the rest

PRELUDE = r"""
// --- shared by every tinygrad_lab CUDA source ---------------------------------------------------
#define WARP 32
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)  // NVRTC has no <cmath>
#endif

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// max that keeps NaN, as NumPy's max does
template <typename T> __device__ __forceinline__ T nan_max(T a, T b) {
    return (a != a || a > b) ? a : b;
}

template <typename T> __device__ __forceinline__ T warp_max(T v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum / max over the block, the answer in every thread. `shared` holds >= 32 entries; the leading
// barrier lets one buffer serve several reductions in a row.
template <typename T> __device__ T block_sum(T v, T* shared) {
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int warps = (blockDim.x + WARP - 1) / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : T(0);
    return warp_sum(v);
}

template <typename T> __device__ T block_max(T v, T* shared) {
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int warps = (blockDim.x + WARP - 1) / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < warps ? shared[lane] : T(-INFINITY);
    return warp_max(v);
}

template <typename T> __device__ __forceinline__ T sigmoid_of(T v) {
    const T e = exp(-fabs(v));  // exp of a non-positive number only: no overflow
    return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}
"""


def cupy_module() -> Any:
    """CuPy, imported on first use (a module of this package imports without it)."""
    import cupy

    return cupy


class CudaSource:
    """One family's CUDA C source: its text (PRELUDE + `code`) and the kernels it launches, each a
    template over the element type, compiled together on first use."""

    def __init__(self, name: str, code: str, kernels: tuple[str, ...]) -> None:
        self.name = name
        self.code = PRELUDE + code
        self.kernels = kernels  # template names, instantiated for float and double
        self._module: Any = None

    def name_expressions(self) -> list[str]:
        """Every template instance, as NVRTC names them: 'softmax_forward<float>', ..."""
        return [f"{k}<{t}>" for k in self.kernels for t in CTYPES.values()]

    def function(self, kernel: str, dtype: Any) -> Any:
        """The compiled `kernel<T>` for arrays of `dtype` (float32 or float64)."""
        if self._module is None:
            cupy = cupy_module()
            self._module = cupy.RawModule(code=self.code, options=OPTIONS,
                                          name_expressions=self.name_expressions())
        return self._module.get_function(f"{kernel}<{CTYPES[np.dtype(dtype)]}>")


def is_cuda_float(*arrays: Any) -> bool:
    """True when every array is a C-contiguous CuPy float32/float64 array of one dtype: what the
    kernels take (the CUDA backend makes arguments contiguous before a kernel sees them; a direct
    call with a strided array gets NotImplemented)."""
    dt = getattr(arrays[0], "dtype", None)
    if dt not in CTYPES:
        return False
    return all(type(a).__module__.startswith("cupy") and a.dtype == dt and a.flags.c_contiguous
               for a in arrays)


def scalar(dtype: Any, value: float) -> Any:
    """`value` as a NumPy scalar of the kernel's element type (a kernel argument `T`)."""
    return np.dtype(dtype).type(value)


def grid(n: int, threads: int = THREADS) -> int:
    """Blocks of a grid-stride loop over n elements."""
    return max(1, min(MAX_BLOCKS, (n + threads - 1) // threads))


def row_threads(columns: int) -> int:
    """Threads of a block that owns one row of `columns` entries: a warp for short rows, up to
    THREADS for long ones (a multiple of 32, so every warp is full)."""
    return min(THREADS, max(32, (columns + 31) // 32 * 32))


NULL = np.uint64(0)
"""A null pointer argument (an optional array left out)."""


def i32(v: int) -> Any:
    """`v` as a C int argument."""
    return np.int32(v)


def i64(v: int) -> Any:
    """`v` as a C long long argument."""
    return np.int64(v)


def warm_up_arrays(dtype: Any, *shapes: tuple[int, ...]) -> list[Any]:
    """Standard-normal CuPy arrays of `shapes` in `dtype`, drawn in turn from one generator
    seeded 0: the arguments of a module's KERNELS warm-up calls (only the shapes matter)."""
    rng = cupy_module().random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def check_scalars(where: str, args: tuple[Any, ...]) -> None:
    """Refuse a Python bool/int/float among launch arguments (NumPy scalars pass: np.float64
    subclasses float, and is exactly the C double it stands for)."""
    for a in args:
        if isinstance(a, (bool, int, float)) and not isinstance(a, np.generic):
            raise TypeError(f"{where}: untyped scalar argument {a!r}")


def launch(source: CudaSource, kernel: str, dtype: Any, blocks: Any, threads: Any,
           args: tuple[Any, ...]) -> None:
    """Run `kernel<T>` of `source` on the current device and stream. Every scalar argument must
    be a NumPy scalar of the C parameter's exact width (`i32`, `i64`, `scalar`): CuPy would pass
    a Python int as 8 bytes, shifting every later argument of an `int` parameter."""
    check_scalars(f"{source.name}.{kernel}", args)
    source.function(kernel, dtype)(blocks if isinstance(blocks, tuple) else (blocks,),
                                   threads if isinstance(threads, tuple) else (threads,), args)
