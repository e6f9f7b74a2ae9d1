"""Softmax, log-softmax and the fused softmax + cross-entropy on the GPU, one block per row.

Same names, signatures and maths as the references in tinygrad_lab/ops/nn.py (and
kernels/softmax.py). Shapes: R rows (every axis but the last, flattened), C entries per row; N
rows of logits for the loss. A block owns a row: its max and its sum of exponentials are block
reductions, and the row stays in L1/L2 between the passes. Any axis but the last goes to the
reference.
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels.cuda._common import (
    CudaSource,
    i32,
    is_cuda_float,
    launch,
    row_threads,
    warm_up_arrays,
)

CODE = r"""
// x (R, C) -> y (R, C); log = 1: log-softmax
template <typename T>
__global__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y, int c, int is_log) {
    __shared__ T shared[WARP];
    const T* row = x + (long long)blockIdx.x * c;
    T* out = y + (long long)blockIdx.x * c;
    T m = T(-INFINITY);
    for (int j = threadIdx.x; j < c; j += blockDim.x) m = nan_max(m, row[j]);
    m = block_max(m, shared);
    T s = T(0);
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += exp(row[j] - m);
    s = block_sum(s, shared);
    if (is_log) {
        const T shift = m + log(s);
        for (int j = threadIdx.x; j < c; j += blockDim.x) out[j] = row[j] - shift;
    } else {
        const T inv = T(1) / s;
        for (int j = threadIdx.x; j < c; j += blockDim.x) out[j] = exp(row[j] - m) * inv;
    }
}

// g, y (R, C) -> dx (R, C): softmax y * (g - sum(g y)); log-softmax g - exp(y) sum(g)
template <typename T>
__global__ void softmax_backward(const T* __restrict__ g, const T* __restrict__ y,
                                 T* __restrict__ dx, int c, int is_log) {
    __shared__ T shared[WARP];
    const long long base = (long long)blockIdx.x * c;
    T s = T(0);
    for (int j = threadIdx.x; j < c; j += blockDim.x)
        s += is_log ? g[base + j] : g[base + j] * y[base + j];
    s = block_sum(s, shared);
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const long long k = base + j;
        dx[k] = is_log ? g[k] - exp(y[k]) * s : y[k] * (g[k] - s);
    }
}

// logits (N, C), labels (N,) -> dlogits (N, C) = (softmax - onehot) / N, row_loss (N,)
template <typename T>
__global__ void cross_entropy_forward(const T* __restrict__ x, const long long* __restrict__ labels,
                                      T* __restrict__ d, T* __restrict__ row_loss, int n, int c) {
    __shared__ T shared[WARP];
    const long long base = (long long)blockIdx.x * c;
    long long k = labels[blockIdx.x];
    if (k < 0) k += c;  // negative labels count from the end (checked before the launch)
    T m = T(-INFINITY);
    for (int j = threadIdx.x; j < c; j += blockDim.x) m = nan_max(m, x[base + j]);
    m = block_max(m, shared);
    T s = T(0);
    for (int j = threadIdx.x; j < c; j += blockDim.x) s += exp(x[base + j] - m);
    s = block_sum(s, shared);
    const T scale = T(1) / (s * T(n));  // softmax / N in one multiply
    for (int j = threadIdx.x; j < c; j += blockDim.x)
        d[base + j] = exp(x[base + j] - m) * scale - (j == k ? T(1) / T(n) : T(0));
    if (threadIdx.x == 0) row_loss[blockIdx.x] = (m - x[base + k]) + log(s);
}
"""

SOURCE = CudaSource("softmax", CODE, ("softmax_forward", "softmax_backward",
                                      "cross_entropy_forward"))


def _last_axis(x: Any, axis: int) -> bool:
    """True when a kernel can take this call: a CuPy float array, axis the last, rows not empty."""
    nd = x.ndim
    return is_cuda_float(x) and nd > 0 and (axis == -1 or axis == nd - 1) and x.size > 0


def _forward(x: Any, axis: int, log: int) -> Any:
    if not _last_axis(x, axis):
        return NotImplemented
    import cupy

    c = x.shape[-1]
    y = cupy.empty(x.shape, x.dtype)
    launch(SOURCE, "softmax_forward", x.dtype, x.size // c, row_threads(c),
           (x, y, i32(c), i32(log)))  # x, y as (R, C)
    return y


def _backward(g: Any, y: Any, axis: int, log: int) -> Any:
    if not (_last_axis(g, axis) and is_cuda_float(g, y) and g.shape == y.shape):
        return NotImplemented
    import cupy

    c = g.shape[-1]
    dx = cupy.empty(g.shape, g.dtype)
    launch(SOURCE, "softmax_backward", g.dtype, g.size // c, row_threads(c),
           (g, y, dx, i32(c), i32(log)))  # (R, C) each
    return dx


def softmax_forward(x: Any, axis: int = -1) -> Any:
    """y = exp(x - max) / sum(exp(x - max)) along axis; x (..., C) -> y (..., C)."""
    return _forward(x, axis, 0)


def softmax_backward(g: Any, y: Any, axis: int = -1) -> Any:
    """dx = y * (g - sum(g * y)) along axis, y the forward output."""
    return _backward(g, y, axis, 0)


def log_softmax_forward(x: Any, axis: int = -1) -> Any:
    """y = x - max - log(sum(exp(x - max))) along axis."""
    return _forward(x, axis, 1)


def log_softmax_backward(g: Any, y: Any, axis: int = -1) -> Any:
    """dx = g - exp(y) * sum(g) along axis, y the forward output."""
    return _backward(g, y, axis, 1)


def softmax_cross_entropy_forward(logits: Any, labels: Any) -> tuple[Any, Any]:
    """(mean over rows of logsumexp(x) - x[label], (softmax(x) - onehot(labels)) / N) for logits
    (N, C) and integer labels (N,); the loss is a 0-d array of logits.dtype. A label outside
    -C..C-1 raises IndexError (one device-to-host read of a flag)."""
    if not (
        is_cuda_float(logits)
        and logits.ndim == 2
        and logits.shape[0] > 0
        and logits.shape[1] > 0
        and hasattr(labels, "dtype")
        and labels.dtype.kind in "iu"
        and labels.shape == logits.shape[:1]
    ):
        return NotImplemented
    import cupy

    n, c = logits.shape
    ids = cupy.ascontiguousarray(cupy.asarray(labels), dtype=cupy.int64)  # host labels: copied
    bad = (ids < -c) | (ids >= c)
    if bool(bad.any()):
        raise IndexError(f"index {int(ids[bad][0])} is out of bounds for axis 1 with size {c}")
    dlogits = cupy.empty(logits.shape, logits.dtype)
    row_loss = cupy.empty(n, logits.dtype)
    launch(SOURCE, "cross_entropy_forward", logits.dtype, n, row_threads(c),
           (logits, ids, dlogits, row_loss, i32(n), i32(c)))
    loss = row_loss.sum(dtype=cupy.float64) / n
    return loss.astype(logits.dtype), dlogits


def _example(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (4, 8))[0]  # (R, C)


def _labels() -> Any:
    import cupy

    return cupy.arange(4) % 8


KERNELS = {
    "softmax_forward": lambda dt: (_example(dt), -1),
    "softmax_backward": lambda dt: (_example(dt), _example(dt), -1),
    "log_softmax_forward": lambda dt: (_example(dt), -1),
    "log_softmax_backward": lambda dt: (_example(dt), _example(dt), -1),
    "softmax_cross_entropy_forward": lambda dt: (_example(dt), _labels()),
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
