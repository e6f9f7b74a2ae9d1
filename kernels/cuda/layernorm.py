"""Layer norm and RMS norm on the GPU, forward and backward, as llm.c does them.

Same names, signatures and maths as the references in tinygrad_lab/ops/norm.py (and
kernels/layernorm.py). Shapes: x (R, C) (every axis but the last flattened), w, b (C,); mean, rstd
(R,). The row kernels give each row a block (its statistics are block reductions, the row stays
in cache between the passes); the weight and bias gradients, sums over rows, are a second kernel:
a grid of (32-column tile, chunk of rows) blocks writes partial sums (chunks, C), added in a fixed
order afterwards, so the result is deterministic (no atomics).
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels.cuda._common import (
    NULL,
    CudaSource,
    i32,
    is_cuda_float,
    launch,
    row_threads,
    scalar,
    warm_up_arrays,
)

CODE = r"""
// x (R, C), w, b (C,) -> y (R, C), mean, rstd (R,); rms = 1: no centring, no b, no mean
template <typename T>
__global__ void norm_forward(const T* __restrict__ x, const T* __restrict__ w,
                             const T* __restrict__ b, T* __restrict__ y, T* __restrict__ mean,
                             T* __restrict__ rstd, int c, T eps, int rms) {
    __shared__ T shared[WARP];
    const long long base = (long long)blockIdx.x * c;
    T mu = T(0);
    if (!rms) {
        T s = T(0);
        for (int j = threadIdx.x; j < c; j += blockDim.x) s += x[base + j];
        mu = block_sum(s, shared) / T(c);
    }
    T q = T(0);  // sum of squares about mu: a second pass, as the reference's var
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T d = x[base + j] - mu;
        q += d * d;
    }
    q = block_sum(q, shared) / T(c);
    const T rs = T(1) / sqrt(q + eps);
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T v = (x[base + j] - mu) * rs * w[j];
        y[base + j] = rms ? v : v + b[j];
    }
    if (threadIdx.x == 0) {
        rstd[blockIdx.x] = rs;
        if (!rms) mean[blockIdx.x] = mu;
    }
}

// g, x (R, C), w (C,), mean, rstd (R,) -> dx (R, C); mean null for RMS norm
// dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g w (no mean(dxhat) for RMS)
template <typename T>
__global__ void norm_backward_dx(const T* __restrict__ g, const T* __restrict__ x,
                                 const T* __restrict__ w, const T* __restrict__ mean,
                                 const T* __restrict__ rstd, T* __restrict__ dx, int c) {
    __shared__ T shared[WARP];
    const long long base = (long long)blockIdx.x * c;
    const T mu = mean != nullptr ? mean[blockIdx.x] : T(0);
    const T rs = rstd[blockIdx.x];
    T s1 = T(0), s2 = T(0);
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T dxhat = g[base + j] * w[j];
        s1 += dxhat;
        s2 += dxhat * (x[base + j] - mu) * rs;
    }
    s1 = mean != nullptr ? block_sum(s1, shared) / T(c) : T(0);
    s2 = block_sum(s2, shared) / T(c);
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T xhat = (x[base + j] - mu) * rs;
        dx[base + j] = rs * (g[base + j] * w[j] - s1 - xhat * s2);
    }
}

// partial sums over a chunk of rows: part_dw[k, j] = sum g xhat, part_db[k, j] = sum g
// grid (C / 32, chunks), block (32, 8): thread (tx, ty) takes column j, rows ty, ty + 8, ...
template <typename T>
__global__ void norm_backward_params(const T* __restrict__ g, const T* __restrict__ x,
                                     const T* __restrict__ mean, const T* __restrict__ rstd,
                                     T* __restrict__ part_dw, T* __restrict__ part_db, int r,
                                     int c, int rows_per_chunk) {
    __shared__ T sdw[8][WARP + 1];
    __shared__ T sdb[8][WARP + 1];
    const int j = blockIdx.x * WARP + threadIdx.x;
    const int lo = blockIdx.y * rows_per_chunk;
    const int hi = min(r, lo + rows_per_chunk);
    T dw = T(0), db = T(0);
    if (j < c) {
        for (int i = lo + threadIdx.y; i < hi; i += blockDim.y) {
            const long long k = (long long)i * c + j;
            const T mu = mean != nullptr ? mean[i] : T(0);
            dw += g[k] * (x[k] - mu) * rstd[i];
            db += g[k];
        }
    }
    sdw[threadIdx.y][threadIdx.x] = dw;
    sdb[threadIdx.y][threadIdx.x] = db;
    __syncthreads();
    if (threadIdx.y == 0 && j < c) {
        for (int t = 1; t < blockDim.y; ++t) {
            dw += sdw[t][threadIdx.x];
            db += sdb[t][threadIdx.x];
        }
        part_dw[(long long)blockIdx.y * c + j] = dw;
        if (part_db != nullptr) part_db[(long long)blockIdx.y * c + j] = db;
    }
}
"""

SOURCE = CudaSource("layernorm", CODE, ("norm_forward", "norm_backward_dx",
                                        "norm_backward_params"))

ROWS_PER_CHUNK = 64  # rows summed by one block of the parameter-gradient kernel
MAX_CHUNKS = 1024


def _fits(x: Any, *others: Any) -> bool:
    """CuPy float arrays of one dtype, rows not empty."""
    return is_cuda_float(x, *others) and x.ndim >= 1 and x.size > 0


def _param_grads(g: Any, x: Any, mean: Any, rstd: Any, with_db: bool) -> tuple[Any, Any]:
    """(dw, db) = sums over rows of g * xhat and of g (db None unless with_db)."""
    import cupy

    c = x.shape[-1]
    r = x.size // c
    per_chunk = max(ROWS_PER_CHUNK, -(-r // MAX_CHUNKS))
    chunks = -(-r // per_chunk)
    part_dw = cupy.empty((chunks, c), x.dtype)
    part_db = cupy.empty((chunks, c), x.dtype) if with_db else None
    launch(SOURCE, "norm_backward_params", x.dtype, (-(-c // 32), chunks), (32, 8),
           (g, x, mean if mean is not None else NULL, rstd, part_dw,
            part_db if part_db is not None else NULL, i32(r), i32(c), i32(per_chunk)))
    return part_dw.sum(axis=0), part_db.sum(axis=0) if part_db is not None else None


def _forward(x: Any, w: Any, b: Any, eps: float, rms: bool) -> tuple[Any, Any, Any]:
    """(y, mean, rstd) of the one forward kernel; no bias and no mean (None) for rms."""
    import cupy

    c = x.shape[-1]
    y = cupy.empty(x.shape, x.dtype)
    mean = None if rms else cupy.empty(x.shape[:-1], x.dtype)
    rstd = cupy.empty(x.shape[:-1], x.dtype)
    launch(SOURCE, "norm_forward", x.dtype, x.size // c, row_threads(c),
           (x, w, NULL if b is None else b, y, NULL if mean is None else mean, rstd, i32(c),
            scalar(x.dtype, eps), i32(int(rms))))
    return y, mean, rstd


def _backward(g: Any, x: Any, w: Any, mean: Any, rstd: Any) -> tuple[Any, Any, Any] | None:
    """(dx, dw, db) of the one backward kernel, mean None (and no db) for rms; None when the
    arrays do not fit (the caller answers NotImplemented)."""
    stats = (rstd,) if mean is None else (mean, rstd)
    if not (_fits(x, g, w, *stats) and g.shape == x.shape and w.shape == x.shape[-1:]
            and all(s.size == x.size // x.shape[-1] for s in stats)):
        return None
    import cupy

    c = x.shape[-1]
    dx = cupy.empty(x.shape, x.dtype)
    launch(SOURCE, "norm_backward_dx", x.dtype, x.size // c, row_threads(c),
           (g, x, w, NULL if mean is None else mean, rstd, dx, i32(c)))
    dw, db = _param_grads(g, x, mean, rstd, mean is not None)
    return dx, dw, db


def layer_norm_forward(x: Any, w: Any, b: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, mean, rstd): y = (x - mean) * rstd * w + b over the last axis; x (..., C), w, b (C,)
    -> y (..., C), mean and rstd (...)."""
    if not (_fits(x, w, b) and w.shape == b.shape == x.shape[-1:]):
        return NotImplemented
    return _forward(x, w, b, eps, rms=False)


def layer_norm_backward(g: Any, x: Any, w: Any, mean: Any, rstd: Any) -> tuple[Any, Any, Any]:
    """(dx, dw, db) for upstream g (..., C) and the saved x, w, mean, rstd."""
    grads = None if mean is None else _backward(g, x, w, mean, rstd)
    return NotImplemented if grads is None else grads


def rms_norm_forward(x: Any, w: Any, eps: float) -> tuple[Any, Any]:
    """(y, rstd): y = x * rstd * w, rstd = 1 / sqrt(mean(x**2) + eps); x (..., C) -> y (..., C),
    rstd (...)."""
    if not (_fits(x, w) and w.shape == x.shape[-1:]):
        return NotImplemented
    y, _, rstd = _forward(x, w, None, eps, rms=True)
    return y, rstd


def rms_norm_backward(g: Any, x: Any, w: Any, rstd: Any) -> tuple[Any, Any]:
    """(dx, dw) for upstream g (..., C) and the saved x, w, rstd."""
    grads = _backward(g, x, w, None, rstd)
    return NotImplemented if grads is None else grads[:2]


def _ones(dtype: Any) -> Any:
    import cupy

    return cupy.ones(4, dtype)


KERNELS = {  # registered kernels -> (dtype -> warm-up arguments); x (R, C) = (4, 8)
    "layer_norm_forward": lambda dt: (*warm_up_arrays(dt, (4, 8), (8,), (8,)), 1e-5),
    "layer_norm_backward": lambda dt: (*warm_up_arrays(dt, (4, 8), (4, 8), (8,), (4,)), _ones(dt)),
    "rms_norm_forward": lambda dt: (*warm_up_arrays(dt, (4, 8), (8,)), 1e-6),
    "rms_norm_backward": lambda dt: (*warm_up_arrays(dt, (4, 8), (4, 8), (8,)), _ones(dt)),
}
