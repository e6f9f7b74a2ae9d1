"""The masked, scaled softmax of attention scores on the GPU, forward/backward, one block per row.

Same names, signatures and maths as the references in tinygrad_lab/ops/attention.py (and
kernels/attention.py). Shapes: B batch, H heads, T query positions, S key positions; scores
(B, H, T, S) (fewer leading axes are padded with 1s) seen as R = B * H * T rows of S; the boolean
mask (mB, mH, mT, mS), each side 1 or the scores' side, seen as MR = mB * mH * mT rows of mS and
broadcast inside the kernel (never materialised). Under `causal`, row i only reads keys
j < i + 1 + S - T; the hidden entries are written as 0, and a fully hidden row is all 0.
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels._common import mask_as_4d
from tinygrad_lab.kernels.cuda._common import (
    NULL,
    CudaSource,
    i32,
    i64,
    is_cuda_float,
    launch,
    row_threads,
    scalar,
    warm_up_arrays,
)

CODE = r"""
// scores (R, S) -> y (R, S), row r = (b, h, i); mask (MR, mS) bytes or null, mshape (mB, mH, mT)
template <typename T>
__global__ void masked_softmax_forward(const T* __restrict__ x,
                                       const unsigned char* __restrict__ mask, T* __restrict__ y,
                                       int heads, int t, int s, T scale, int causal, int mb,
                                       int mh, int mt, int ms) {
    __shared__ T shared[WARP];
    const long long r = blockIdx.x;
    const long long base = r * s;
    const int i = (int)(r % t);
    const int limit = causal ? min(s, max(0, i + 1 + s - t)) : s;
    const unsigned char* mrow = nullptr;
    if (mask != nullptr) {
        const long long b = r / ((long long)heads * t), h = (r / t) % heads;
        const long long row = ((mb > 1 ? b : 0) * mh + (mh > 1 ? h : 0)) * mt + (mt > 1 ? i : 0);
        mrow = mask + row * ms;
    }
    const int step = ms > 1 ? 1 : 0;
    T m = T(-INFINITY);
    for (int j = threadIdx.x; j < limit; j += blockDim.x)
        if (mrow == nullptr || mrow[j * step]) m = nan_max(m, x[base + j] * scale);
    m = block_max(m, shared);
    if (m == T(-INFINITY)) {  // every key hidden: zeros, not NaN
        for (int j = threadIdx.x; j < s; j += blockDim.x) y[base + j] = T(0);
        return;
    }
    T sum = T(0);
    for (int j = threadIdx.x; j < limit; j += blockDim.x)
        if (mrow == nullptr || mrow[j * step]) sum += exp(x[base + j] * scale - m);
    sum = block_sum(sum, shared);
    const T inv = T(1) / sum;
    for (int j = threadIdx.x; j < s; j += blockDim.x) {
        const bool keep = j < limit && (mrow == nullptr || mrow[j * step]);
        y[base + j] = keep ? exp(x[base + j] * scale - m) * inv : T(0);
    }
}

// Fused attention forward, flash-attention style: scores are never stored. One warp per query
// row: each lane keeps D / 32 entries of q and of the output accumulator (D <= 128), and the
// row's softmax is kept online (running max m, running sum l), rescaling the accumulator when
// the max grows. q (BH, T, D), k, v (BH, S, D) -> o (BH, T, D), lse (BH, T) = logsumexp of the
// row's scaled scores (what a backward pass would need).
template <typename T>
__global__ void flash_attention_forward(const T* __restrict__ q, const T* __restrict__ k,
                                        const T* __restrict__ v, T* __restrict__ o,
                                        T* __restrict__ lse, long long rows, int t, int s, int d,
                                        T scale, int causal) {
    const int lane = threadIdx.x % WARP;
    const long long row = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= rows) return;  // the whole warp leaves together: row is the warp's
    const long long bh = row / t;
    const int i = (int)(row % t);
    const int limit = causal ? min(s, max(0, i + 1 + s - t)) : s;
    const T* kb = k + bh * s * d;
    const T* vb = v + bh * s * d;
    T qv[4], acc[4];
    for (int u = 0; u < 4; ++u) {
        const int c = lane + u * WARP;
        qv[u] = c < d ? q[row * d + c] * scale : T(0);
        acc[u] = T(0);
    }
    T m = T(-INFINITY), l = T(0);
    for (int j = 0; j < limit; ++j) {
        T part = T(0);
        for (int u = 0; u < 4; ++u) {
            const int c = lane + u * WARP;
            if (c < d) part += qv[u] * kb[(long long)j * d + c];
        }
        const T score = warp_sum(part);
        const T m_new = score > m ? score : m;
        const T correction = exp(m - m_new);  // 0 at the first key (m = -inf)
        const T p = exp(score - m_new);
        l = l * correction + p;
        for (int u = 0; u < 4; ++u) {
            const int c = lane + u * WARP;
            if (c < d) acc[u] = acc[u] * correction + p * vb[(long long)j * d + c];
        }
        m = m_new;
    }
    for (int u = 0; u < 4; ++u) {
        const int c = lane + u * WARP;
        if (c < d) o[row * d + c] = limit > 0 ? acc[u] / l : T(0);
    }
    if (lane == 0) lse[row] = limit > 0 ? m + log(l) : T(-INFINITY);
}

// g, y (R, S) -> dx (R, S) = scale y (g - sum(g y))
template <typename T>
__global__ void masked_softmax_backward(const T* __restrict__ g, const T* __restrict__ y,
                                        T* __restrict__ dx, int s, T scale) {
    __shared__ T shared[WARP];
    const long long base = (long long)blockIdx.x * s;
    T dot = T(0);
    for (int j = threadIdx.x; j < s; j += blockDim.x) dot += g[base + j] * y[base + j];
    dot = block_sum(dot, shared);
    for (int j = threadIdx.x; j < s; j += blockDim.x)
        dx[base + j] = y[base + j] * (g[base + j] - dot) * scale;
}
"""

SOURCE = CudaSource("attention", CODE, ("masked_softmax_forward", "masked_softmax_backward",
                                        "flash_attention_forward"))

FLASH_MAX_HEAD_DIM = 128  # four entries of q and of the accumulator per lane
FLASH_WARPS = 4  # query rows per block


def _mask_2d(mask: Any, shape4: tuple[int, ...]) -> tuple[Any, tuple[int, int, int, int]] | None:
    """The mask as (MR, mS) contiguous uint8 on the device plus (mB, mH, mT, mS), fitting scores
    (B, H, T, S) without enlarging them; None when it cannot (the reference broadcasts it)."""
    import cupy

    m = mask_as_4d(cupy.asarray(mask), shape4)  # (mB, mH, mT, mS)
    if m is None:
        return None
    mb, mh, mt, ms = m.shape
    packed = cupy.ascontiguousarray(m.astype(cupy.bool_, copy=False)).view(cupy.uint8)
    return packed.reshape(mb * mh * mt, ms), (mb, mh, mt, ms)


def masked_softmax_forward(scores: Any, scale: float, causal: bool, mask: Any) -> Any:
    """y = softmax over S of scale * scores with hidden entries (causal: j > i + S - T; mask
    False) at 0 and fully hidden rows all 0; scores (..., T, S) -> y (..., T, S)."""
    if not (is_cuda_float(scores) and 2 <= scores.ndim <= 4 and scores.size > 0):
        return NotImplemented
    b, h, t, s = (1,) * (4 - scores.ndim) + tuple(scores.shape)
    packed = None if mask is None else _mask_2d(mask, (b, h, t, s))
    if mask is not None and packed is None:
        return NotImplemented
    import cupy

    y = cupy.empty(scores.shape, scores.dtype)
    mask_arg, (mb, mh, mt, ms) = packed if packed is not None else (NULL, (1, 1, 1, 1))
    launch(SOURCE, "masked_softmax_forward", scores.dtype, scores.size // s, row_threads(s),
           (scores, mask_arg, y, i32(h), i32(t), i32(s), scalar(scores.dtype, scale),
            i32(bool(causal)), i32(mb), i32(mh), i32(mt), i32(ms)))
    return y


def masked_softmax_backward(g: Any, y: Any, scale: float) -> Any:
    """dx = scale * y * (g - sum(g * y)) over the last axis; g, y (..., S) -> dx (..., S)."""
    if not (is_cuda_float(g, y) and g.shape == y.shape and g.ndim >= 1 and g.size > 0):
        return NotImplemented
    import cupy

    s = g.shape[-1]
    dx = cupy.empty(g.shape, g.dtype)
    launch(SOURCE, "masked_softmax_backward", g.dtype, g.size // s, row_threads(s),
           (g, y, dx, i32(s), scalar(g.dtype, scale)))
    return dx


def flash_attention_forward(q: Any, k: Any, v: Any, scale: float | None = None,
                            causal: bool = False) -> Any:
    """(o, lse): o = softmax(scale q k^T, causal as masked_softmax_forward) v without storing
    the scores, lse = the rows' logsumexp; q (..., T, D), k, v (..., S, D) with the same leading
    axes, D <= 128, scale 1/sqrt(D) by default. float32 and float64; NotImplemented otherwise.

    Not a registered kernel yet: no op calls a fused attention (scaled_dot_product_attention is
    matmul, masked_softmax, matmul, each differentiable); this is the forward such an op would
    call, tested against that composition (tests/test_cuda_kernels.py, benchmarks/gpu_check.py).
    """
    if not (is_cuda_float(q, k, v) and q.ndim >= 2 and k.shape == v.shape
            and q.shape[:-2] == k.shape[:-2] and q.shape[-1] == k.shape[-1]
            and 0 < q.shape[-1] <= FLASH_MAX_HEAD_DIM and q.size > 0 and k.shape[-2] > 0):
        return NotImplemented
    import cupy

    t, d, s = q.shape[-2], q.shape[-1], k.shape[-2]
    rows = q.size // d  # BH * T
    scale = 1.0 / d**0.5 if scale is None else scale
    o = cupy.empty(q.shape, q.dtype)
    lse = cupy.empty(q.shape[:-1], q.dtype)
    blocks = -(-rows // FLASH_WARPS)
    launch(SOURCE, "flash_attention_forward", q.dtype, blocks, FLASH_WARPS * 32,
           (q, k, v, o, lse, i64(rows), i32(t), i32(s), i32(d), scalar(q.dtype, scale),
            i32(bool(causal))))
    return o, lse


def _example_scores(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (2, 2, 4, 4))[0]  # (B, H, T, S)


def _example_mask() -> Any:
    import cupy

    return cupy.ones((2, 1, 1, 4), bool)


KERNELS = {  # the kernels this module registers -> (dtype -> warm-up arguments)
    "masked_softmax_forward": lambda dt: (_example_scores(dt), 0.5, True, _example_mask()),
    "masked_softmax_backward": lambda dt: (_example_scores(dt), _example_scores(dt), 0.5),
}
