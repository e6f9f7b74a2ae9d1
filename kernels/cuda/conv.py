"""im2col / col2im on the GPU: the layout changes around the convolution's GEMM.

Same names, signatures and maths as the references in tinygrad_lab/ops/conv.py (and
kernels/conv.py). Shapes: N batch, C channels, H W input height and width, KH KW kernel, SH SW
stride, PH PW padding, DH DW dilation, OH OW output size, L = OH * OW; cols (C*KH*KW, N*L).
im2col: one thread per element of cols (consecutive threads write consecutive columns).
col2im: one thread per element of gx, gathering the (at most KH*KW) columns that cover it in
kernel-offset order, as the reference adds them: no atomics, the same sum every run.
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels.cuda._common import (
    CudaSource,
    grid,
    i32,
    is_cuda_float,
    launch,
    warm_up_arrays,
)

CODE = r"""
struct Geometry {
    int n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};
// every kernel takes the geometry as 14 int arguments, in the struct's order
#define GEOMETRY_ARGS int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, \
    int pw, int dh, int dw, int oh, int ow
#define GEOMETRY {n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow}

// x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW)
template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols, GEOMETRY_ARGS) {
    const Geometry g = GEOMETRY;
    const long long width = (long long)g.n * g.oh * g.ow;
    const long long total = (long long)g.c * g.kh * g.kw * width;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)gridDim.x * blockDim.x) {
        const long long row = k / width, col = k % width;
        const int j = (int)(row % g.kw), i = (int)((row / g.kw) % g.kh);
        const int c = (int)(row / (g.kw * g.kh));
        const int u = (int)(col % g.ow), t = (int)((col / g.ow) % g.oh);
        const int n = (int)(col / ((long long)g.ow * g.oh));
        const int hh = t * g.sh - g.ph + i * g.dh, ww = u * g.sw - g.pw + j * g.dw;
        cols[k] = (hh >= 0 && hh < g.h && ww >= 0 && ww < g.w)
                      ? x[(((long long)n * g.c + c) * g.h + hh) * g.w + ww] : T(0);
    }
}

// cols (C*KH*KW, N*OH*OW) -> gx (N, C, H, W), overlapping windows adding up
template <typename T>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ gx, GEOMETRY_ARGS) {
    const Geometry g = GEOMETRY;
    const long long width = (long long)g.n * g.oh * g.ow;
    const long long total = (long long)g.n * g.c * g.h * g.w;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)gridDim.x * blockDim.x) {
        const int ww = (int)(k % g.w), hh = (int)((k / g.w) % g.h);
        const int c = (int)((k / ((long long)g.w * g.h)) % g.c);
        const int n = (int)(k / ((long long)g.w * g.h * g.c));
        T acc = T(0);
        for (int i = 0; i < g.kh; ++i) {
            const int th = hh + g.ph - i * g.dh;  // = t * sh
            if (th < 0 || th % g.sh != 0 || th / g.sh >= g.oh) continue;
            const int t = th / g.sh;
            for (int j = 0; j < g.kw; ++j) {
                const int tw = ww + g.pw - j * g.dw;  // = u * sw
                if (tw < 0 || tw % g.sw != 0 || tw / g.sw >= g.ow) continue;
                const long long row = ((long long)c * g.kh + i) * g.kw + j;
                acc += cols[row * width + ((long long)n * g.oh + t) * g.ow + tw / g.sw];
            }
        }
        gx[k] = acc;
    }
}
"""

SOURCE = CudaSource("conv", CODE, ("im2col", "col2im"))


def _out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _geometry(x_shape: tuple[int, ...], kernel_size: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int]
              ) -> tuple[tuple[Any, ...], int, int] | None:
    """The kernels' 14 geometry arguments (int32) and (OH, OW); None when a size does not fit
    in int32, a stride is not positive, or the output is empty (the reference takes those)."""
    n, c, h, w = (int(v) for v in x_shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    values = (n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    if oh <= 0 or ow <= 0 or min(values) < 0 or max(values) >= 2**31 or min(sh, sw) <= 0:
        return None
    return tuple(i32(v) for v in values), oh, ow


def im2col(x: Any, kernel_size: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW); see the reference for the layout."""
    if not is_cuda_float(x) or x.ndim != 4:
        return NotImplemented
    geometry = _geometry(x.shape, kernel_size, stride, padding, dilation)
    if geometry is None:
        return NotImplemented
    import cupy

    g, oh, ow = geometry
    n, c = x.shape[:2]
    (kh, kw) = kernel_size
    cols = cupy.empty((c * kh * kw, n * oh * ow), x.dtype)
    if cols.size:
        launch(SOURCE, "im2col", x.dtype, grid(cols.size), 256, (x, cols, *g))
    return cols


def col2im(cols: Any, x_shape: tuple[int, int, int, int], kernel_size: tuple[int, int],
           stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """cols (C*KH*KW, N*OH*OW) -> gx (N, C, H, W), overlapping windows adding up."""
    if not is_cuda_float(cols) or cols.ndim != 2:
        return NotImplemented
    geometry = _geometry(x_shape, kernel_size, stride, padding, dilation)
    if geometry is None:
        return NotImplemented
    import cupy

    g, oh, ow = geometry
    n, c, h, w = x_shape
    (kh, kw) = kernel_size
    if cols.shape != (c * kh * kw, n * oh * ow):
        return NotImplemented
    gx = cupy.empty((n, c, h, w), cols.dtype)
    if gx.size:
        launch(SOURCE, "col2im", cols.dtype, grid(gx.size), 256, (cols, gx, *g))
    return gx


def _example(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (2, 3, 6, 6))[0]  # (N, C, H, W)


def _example_cols(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (27, 2 * 36))[0]  # (C KH KW, N H' W')


KERNELS = {
    "im2col": lambda dt: (_example(dt), (3, 3), (1, 1), (1, 1), (1, 1)),
    "col2im": lambda dt: (_example_cols(dt), (2, 3, 6, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
