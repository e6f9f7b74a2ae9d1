"""Convolution and pooling kernels: im2col / col2im around the convolution's GEMM, and the
max- and average-pooling forward/backward pairs.

Same maths, names and signatures as the references in tinygrad_lab/ops/conv.py. Shapes: N batch,
C channels, H W input height and width, KH KW kernel, SH SW stride, PH PW padding, DH DW
dilation, OH OW output height and width, L = OH * OW, P = N * C planes. Each kernel is a loop
over independent tasks, thread-parallel above a size threshold: the pools over the P (image,
channel) planes, im2col over the rows of cols (so writes stream), col2im over (channel, chunk of
images). A task owns everything it writes, so the backward passes scatter with no races.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN, is_float


def _out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@njit(cache=True, error_model="numpy")
def _span(offset, stride, size, count):
    """The outputs t in [lo, hi) of 0..count whose input t*stride + offset lies in [0, size)."""
    lo = 0 if offset >= 0 else min(count, (-offset + stride - 1) // stride)
    end = size - offset  # t*stride < end
    hi = 0 if end <= 0 else min(count, (end + stride - 1) // stride)
    return lo, max(lo, hi)


# Index arithmetic is in int64 and every array index is cast to uint64 where it is used: Numba
# adds a negative-index wraparound test to each signed index, which blocks vectorization (the
# im2col copy runs ~2x faster without it). All arrays are 1-D views of C-contiguous arrays.
U = np.uint64


# --- im2col / col2im ----------------------------------------------------------------------------
BATCH_TASKS = 8
"""col2im splits each channel's images into enough chunks that there are >= this many tasks."""


@njit(cache=True, error_model="numpy")
def _im2col_row(x, cols, r, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    # x (N*C*H*W,) -> row r = (c, i, j) of cols (C*KH*KW, N*L) as (C*KH*KW*N*L,), in order
    c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
    zero = cols.dtype.type(0)
    r_lo, r_hi = _span(i * dh - ph, sh, h, oh)
    offset = j * dw - pw
    c_lo, c_hi = _span(offset, sw, w, ow)
    row = r * n_img * oh * ow
    for n in range(n_img):
        plane = (n * chans + c) * h * w
        for t in range(oh):
            out = U(row + (n * oh + t) * ow)
            if t < r_lo or t >= r_hi:
                for u in range(U(ow)):
                    cols[out + u] = zero
                continue
            for u in range(U(c_lo)):
                cols[out + u] = zero
            src = U(plane + (t * sh - ph + i * dh) * w + c_lo * sw + offset)
            dst = out + U(c_lo)
            if sw == 1:
                for k in range(U(c_hi - c_lo)):
                    cols[dst + k] = x[src + k]
            else:
                for k in range(U(c_hi - c_lo)):
                    cols[dst + k] = x[src + k * U(sw)]
            for u in range(U(c_hi), U(ow)):
                cols[out + u] = zero


@njit(parallel=True, cache=True, error_model="numpy")
def _im2col(x, cols, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    # one task per row of cols, so each task's writes are one sequential stream
    rows = chans * kh * kw
    if cols.size < PARALLEL_MIN:
        for r in range(rows):
            _im2col_row(x, cols, r, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    else:
        for r in prange(rows):
            _im2col_row(x, cols, r, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)


@njit(cache=True, error_model="numpy")
def _col2im_task(cols, gx, c, n0, n1, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh,
                 ow):
    # rows (c, :, :) of cols, columns of images n0..n1 -> planes (n0..n1, c) of gx (N*C*H*W,)
    zero = gx.dtype.type(0)
    for n in range(n0, n1):
        plane = U((n * chans + c) * h * w)
        for q in range(U(h * w)):
            gx[plane + q] = zero
    for i in range(kh):
        r_lo, r_hi = _span(i * dh - ph, sh, h, oh)
        for j in range(kw):
            row = ((c * kh + i) * kw + j) * n_img * oh * ow
            offset = j * dw - pw
            c_lo, c_hi = _span(offset, sw, w, ow)
            for n in range(n0, n1):
                plane = (n * chans + c) * h * w
                for t in range(r_lo, r_hi):
                    dst = U(plane + (t * sh - ph + i * dh) * w + c_lo * sw + offset)
                    src = U(row + (n * oh + t) * ow + c_lo)
                    for k in range(U(c_hi - c_lo)):
                        gx[dst + k * U(sw)] += cols[src + k]


@njit(parallel=True, cache=True, error_model="numpy")
def _col2im(cols, gx, n_img, chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    # one task per (channel, chunk of images): each owns its gx planes, so no races
    chunks = max(1, min(n_img, (BATCH_TASKS + chans - 1) // max(chans, 1)))
    step = max(1, (n_img + chunks - 1) // chunks)
    tasks = chans * chunks
    if cols.size < PARALLEL_MIN:
        for q in range(tasks):
            c, k = q // chunks, q % chunks
            _col2im_task(cols, gx, c, min(n_img, k * step), min(n_img, (k + 1) * step), n_img,
                         chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    else:
        for q in prange(tasks):
            c, k = q // chunks, q % chunks
            _col2im_task(cols, gx, c, min(n_img, k * step), min(n_img, (k + 1) * step), n_img,
                         chans, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)


def im2col(x: Any, kernel_size: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW); see the reference for the layout."""
    if not is_float(x.dtype) or x.ndim != 4:
        from tinygrad_lab.ops import conv

        return conv.im2col(x, kernel_size, stride, padding, dilation)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    cols = np.empty((c * kh * kw, n * oh * ow), x.dtype)
    _im2col(x.reshape(-1), cols.reshape(-1), n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    return cols


def col2im(cols: Any, x_shape: tuple[int, int, int, int], kernel_size: tuple[int, int],
           stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> Any:
    """cols (C*KH*KW, N*OH*OW) -> gx (N, C, H, W), overlapping windows adding up."""
    if not is_float(cols.dtype) or cols.ndim != 2:
        from tinygrad_lab.ops import conv

        return conv.col2im(cols, x_shape, kernel_size, stride, padding, dilation)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    gx = np.empty((n, c, h, w), cols.dtype)
    _col2im(cols.reshape(-1), gx.reshape(-1), n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh,
            ow)
    return gx


# --- max pooling --------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _maxpool_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    # plane p: x (P*H*W,) -> y, idx (P*L,)
    src, out = p * h * w, p * oh * ow
    for t in range(oh):
        h0 = t * sh - ph
        a0, a1 = max(h0, 0), min(h0 + kh, h)
        for u in range(ow):
            w0 = u * sw - pw
            b0, b1 = max(w0, 0), min(w0 + kw, w)
            best = x[U(src + a0 * w + b0)]
            at = a0 * w + b0
            for a in range(a0, a1):
                for b in range(b0, b1):
                    v = x[U(src + a * w + b)]
                    # the first maximum in window order, a NaN winning and staying (np.argmax);
                    # selects, not branches: random data would mispredict half the compares
                    better = (v > best) | ((v != v) & (best == best))
                    best = v if better else best
                    at = a * w + b if better else at
            y[U(out + t * ow + u)] = best
            idx[U(out + t * ow + u)] = at


@njit(parallel=True, cache=True, error_model="numpy")
def _maxpool_forward(x, y, idx, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    if x.size < PARALLEL_MIN or planes == 1:
        for p in range(planes):
            _maxpool_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    else:
        for p in prange(planes):
            _maxpool_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


@njit(cache=True, error_model="numpy")
def _maxpool_backward_plane(g, idx, gx, p, hw, per_plane):
    # plane p: g, idx (P*L,) -> gx (P*H*W,); each gradient to its argmax, repeats adding up
    zero = gx.dtype.type(0)
    base = U(p * hw)
    for q in range(U(hw)):
        gx[base + q] = zero
    start = U(p * per_plane)
    for q in range(U(per_plane)):
        gx[base + U(idx[start + q])] += g[start + q]


@njit(parallel=True, cache=True, error_model="numpy")
def _maxpool_backward(g, idx, gx, planes, hw, per_plane):
    if gx.size < PARALLEL_MIN or planes == 1:
        for p in range(planes):
            _maxpool_backward_plane(g, idx, gx, p, hw, per_plane)
    else:
        for p in prange(planes):
            _maxpool_backward_plane(g, idx, gx, p, hw, per_plane)


def maxpool2d_forward(x: Any, kernel_size: tuple[int, int], stride: tuple[int, int],
                      padding: tuple[int, int]) -> tuple[Any, Any]:
    """x (N, C, H, W) -> (y (N, C, OH, OW), idx (N, C, OH, OW) int64, flat index in H*W)."""
    if not is_float(x.dtype) or x.ndim != 4:
        from tinygrad_lab.ops import conv

        return conv.maxpool2d_forward(x, kernel_size, stride, padding)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    y = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.int64)
    _maxpool_forward(x.reshape(-1), y.reshape(-1), idx.reshape(-1), n * c, h, w, kh, kw, sh, sw,
                     ph, pw, oh, ow)
    return y, idx


def maxpool2d_backward(g: Any, idx: Any, x_shape: tuple[int, int, int, int]) -> Any:
    """g (N, C, OH, OW), idx from maxpool2d_forward -> gx (N, C, H, W)."""
    if not is_float(g.dtype) or idx.dtype != np.int64 or g.shape != idx.shape or g.ndim != 4:
        from tinygrad_lab.ops import conv

        return conv.maxpool2d_backward(g, idx, x_shape)
    n, c, h, w = x_shape
    gx = np.empty(x_shape, g.dtype)
    _maxpool_backward(g.reshape(-1), idx.reshape(-1), gx.reshape(-1), n * c, h * w,
                      g.shape[2] * g.shape[3])
    return gx


# --- average pooling ----------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _avgpool_plane(x, y, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    # plane p: x (P*H*W,) -> y (P*L,), window sums / (KH*KW), padding adding zeros
    src, out = p * h * w, p * oh * ow
    count = y.dtype.type(kh * kw)
    for t in range(oh):
        h0 = t * sh - ph
        a0, a1 = max(h0, 0), min(h0 + kh, h)
        for u in range(ow):
            w0 = u * sw - pw
            b0, b1 = max(w0, 0), min(w0 + kw, w)
            s = y.dtype.type(0)
            for a in range(a0, a1):
                for b in range(b0, b1):
                    s += x[U(src + a * w + b)]
            y[U(out + t * ow + u)] = s / count


@njit(parallel=True, cache=True, error_model="numpy")
def _avgpool_forward(x, y, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    if x.size < PARALLEL_MIN or planes == 1:
        for p in range(planes):
            _avgpool_plane(x, y, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    else:
        for p in prange(planes):
            _avgpool_plane(x, y, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


@njit(cache=True, error_model="numpy")
def _avgpool_backward_plane(g, gx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    # plane p: g (P*L,) -> gx (P*H*W,), g / (KH*KW) added over each window
    src, out = p * oh * ow, p * h * w
    zero = gx.dtype.type(0)
    for q in range(U(h * w)):
        gx[U(out) + q] = zero
    count = gx.dtype.type(kh * kw)
    for t in range(oh):
        h0 = t * sh - ph
        a0, a1 = max(h0, 0), min(h0 + kh, h)
        for u in range(ow):
            w0 = u * sw - pw
            b0, b1 = max(w0, 0), min(w0 + kw, w)
            share = g[U(src + t * ow + u)] / count
            for a in range(a0, a1):
                for b in range(b0, b1):
                    gx[U(out + a * w + b)] += share


@njit(parallel=True, cache=True, error_model="numpy")
def _avgpool_backward(g, gx, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    if gx.size < PARALLEL_MIN or planes == 1:
        for p in range(planes):
            _avgpool_backward_plane(g, gx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    else:
        for p in prange(planes):
            _avgpool_backward_plane(g, gx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


def avgpool2d_forward(x: Any, kernel_size: tuple[int, int], stride: tuple[int, int],
                      padding: tuple[int, int]) -> Any:
    """x (N, C, H, W) -> y (N, C, OH, OW), window sums / (KH*KW) (padding counted as zeros)."""
    if not is_float(x.dtype) or x.ndim != 4:
        from tinygrad_lab.ops import conv

        return conv.avgpool2d_forward(x, kernel_size, stride, padding)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = _out(h, kh, sh, ph), _out(w, kw, sw, pw)
    y = np.empty((n, c, oh, ow), x.dtype)
    _avgpool_forward(x.reshape(-1), y.reshape(-1), n * c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    return y


def avgpool2d_backward(g: Any, x_shape: tuple[int, int, int, int], kernel_size: tuple[int, int],
                       stride: tuple[int, int], padding: tuple[int, int]) -> Any:
    """g (N, C, OH, OW) -> gx (N, C, H, W): g / (KH*KW) added over each window."""
    if not is_float(g.dtype) or g.ndim != 4:
        from tinygrad_lab.ops import conv

        return conv.avgpool2d_backward(g, x_shape, kernel_size, stride, padding)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    gx = np.empty(x_shape, g.dtype)
    _avgpool_backward(g.reshape(-1), gx.reshape(-1), n * c, h, w, kh, kw, sh, sw, ph, pw,
                      g.shape[2], g.shape[3])
    return gx
