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

from tinygrad_lab.kernels._common import F32, F64, PARALLEL_MIN, is_float


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
        return NotImplemented
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
        return NotImplemented
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    gx = np.empty((n, c, h, w), cols.dtype)
    _col2im(cols.reshape(-1), gx.reshape(-1), n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh,
            ow)
    return gx


# --- the convolution's epilogue: (O, N*L) GEMM output <-> (N, O, OH, OW) -----------------------
_ACTIVATION_CODES = {None: 0, "relu": 1}  # the other ACTIVATIONS go to the reference
_EMPTY = {F32: np.empty(0, F32), F64: np.empty(0, F64)}  # stands in for a missing b or out


@njit(cache=True, error_model="numpy")
def _conv_bias_act_plane(y, b, has_bias, act, out, q, n_img, chans, per_plane):
    # plane q = (n, o): out[n, o, :] = act(y[o, n*L:(n+1)*L] + b[o]), both runs contiguous
    zero = out.dtype.type(0)
    i, c = q // chans, q % chans
    src, dst = U((c * n_img + i) * per_plane), U(q * per_plane)
    shift = b[c] if has_bias else zero
    for k in range(U(per_plane)):
        v = y[src + k] + shift
        if act == 1:
            v = zero if v < zero else v  # keeps NaN, as np.maximum(v, 0)
        out[dst + k] = v


@njit(parallel=True, cache=True, error_model="numpy")
def _conv_bias_act(y, b, has_bias, act, out, n_img, chans, per_plane):
    # y (O*N*L,) -> out (N*O*L,)
    if out.size < PARALLEL_MIN:
        for q in range(n_img * chans):
            _conv_bias_act_plane(y, b, has_bias, act, out, q, n_img, chans, per_plane)
    else:
        for q in prange(n_img * chans):
            _conv_bias_act_plane(y, b, has_bias, act, out, q, n_img, chans, per_plane)


@njit(cache=True, error_model="numpy", fastmath=True)
def _segment_sum(a, start, count):
    # float64 sum of a[start:start+count]; fastmath lets LLVM split it over vector lanes
    s = 0.0
    for k in range(U(count)):
        s += a[start + k]
    return s


@njit(cache=True, error_model="numpy")
def _conv_bias_act_grad_channel(g, out, act, g2, gb, c, n_img, chans, per_plane):
    # channel c: g2[c, :] = act'(g[:, c, :]) for every image, gb[c] = its sum
    one, zero = g.dtype.type(1), g.dtype.type(0)
    total = 0.0
    for i in range(n_img):
        src, dst = U((i * chans + c) * per_plane), U((c * n_img + i) * per_plane)
        if act == 1:
            for k in range(U(per_plane)):
                g2[dst + k] = g[src + k] * (one if out[src + k] > zero else zero)  # NaN*0 = NaN
        else:
            for k in range(U(per_plane)):
                g2[dst + k] = g[src + k]
        total += _segment_sum(g2, dst, per_plane)
    gb[c] = total


@njit(parallel=True, cache=True, error_model="numpy")
def _conv_bias_act_grad(g, out, act, g2, gb, n_img, chans, per_plane):
    # g (N*O*L,) -> g2 (O*N*L,), gb (O,); one task per channel (it owns gb[c])
    if g.size < PARALLEL_MIN:
        for c in range(chans):
            _conv_bias_act_grad_channel(g, out, act, g2, gb, c, n_img, chans, per_plane)
    else:
        for c in prange(chans):
            _conv_bias_act_grad_channel(g, out, act, g2, gb, c, n_img, chans, per_plane)


def conv2d_bias_act_forward(y: Any, b: Any, activation: str | None,
                            shape: tuple[int, int, int, int]) -> Any:
    """The GEMM's y (O, N*L) -> act(y + b) as (N, O, OH, OW) = `shape`, a new array."""
    code = _ACTIVATION_CODES.get(activation, -1)
    dt = y.dtype
    if code < 0 or not is_float(dt) or (b is not None and b.dtype is not dt):
        return NotImplemented
    n, o, oh, ow = shape
    out = np.empty(shape, dt)
    has_bias = b is not None
    _conv_bias_act(y.reshape(-1), b.reshape(-1) if has_bias else _EMPTY[dt], has_bias, code,
                   out.reshape(-1), n, o, oh * ow)
    return out


def conv2d_bias_act_backward(g: Any, out: Any, activation: str | None) -> tuple[Any, Any]:
    """g (N, O, OH, OW), the forward output -> (g2 (O, N*L) = act'(g) regrouped, gb (O,))."""
    code = _ACTIVATION_CODES.get(activation, -1)
    dt = g.dtype
    if (code < 0 or not is_float(dt) or g.ndim != 4
            or (code > 0 and (out.dtype is not dt or out.shape != g.shape))):
        return NotImplemented
    n, o, oh, ow = g.shape
    g2 = np.empty((o, n * oh * ow), dt)
    gb = np.empty(o, dt)
    _conv_bias_act_grad(g.reshape(-1), out.reshape(-1) if code else _EMPTY[dt], code,
                        g2.reshape(-1), gb, n, o, oh * ow)
    return g2, gb


# --- a first layer's weight gradient: no regrouped g2 ------------------------------------------
WEIGHT_GRAD_MAX_ROWS = 32
"""conv2d_weight_grad takes cols of at most this many rows (C*KH*KW: a first layer's 1 or 3
channels): its dot products stream g once, where the reference regroups g into g2 and runs a
GEMM with 9 to 27 columns, which BLAS runs far below its peak (the MNIST CNN's first layer:
0.57 + 0.70 ms). With more rows a GEMM is the faster way."""
CHANNEL_BLOCK = 4  # output channels per task: a task reads an image's cols once for all of them


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _dot_at(a, b, start, count):  # sum of a[:count] * b[start:start + count] in a's type, any order
    s = a.dtype.type(0)
    for k in range(U(count)):
        s += a[k] * b[start + k]
    return s


@njit(cache=True, error_model="numpy")
def _conv_weight_grad_block(g, out, act, cols, gw, gb, c0, c1, n_img, chans, per_plane, gm):
    # channels c0..c1: gm = act'(g[n, c, :]) per image; gw[c, r] = sum over images of
    # gm . cols[r, n*L:(n+1)*L], gb[c] = sum of gm; g, out (N*O*L,), cols (R*N*L,), gw (O*R,)
    one, zero = g.dtype.type(1), g.dtype.type(0)
    rows = gw.size // chans
    acc = np.zeros((c1 - c0, rows))  # float64 over the images
    total = np.zeros(c1 - c0)
    for n in range(n_img):
        for c in range(c0, c1):
            src = U((n * chans + c) * per_plane)
            if act == 1:
                for k in range(U(per_plane)):
                    gm[k] = g[src + k] * (one if out[src + k] > zero else zero)  # NaN*0 = NaN
            else:
                for k in range(U(per_plane)):
                    gm[k] = g[src + k]
            total[c - c0] += _segment_sum(gm, U(0), per_plane)
            for r in range(rows):
                acc[c - c0, r] += _dot_at(gm, cols, U((r * n_img + n) * per_plane), per_plane)
    for c in range(c0, c1):
        gb[c] = total[c - c0]
        for r in range(rows):
            gw[U(c * rows + r)] = acc[c - c0, r]


@njit(parallel=True, cache=True, error_model="numpy")
def _conv_weight_grad(g, out, act, cols, gw, gb, n_img, chans, per_plane):
    # g (N*O*L,) -> gw (O*R,), gb (O,); one task per block of channels (it owns their gw rows)
    tasks = (chans + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    if g.size < PARALLEL_MIN:
        gm = np.empty(per_plane, g.dtype)
        for t in range(tasks):
            _conv_weight_grad_block(g, out, act, cols, gw, gb, t * CHANNEL_BLOCK,
                                    min(chans, (t + 1) * CHANNEL_BLOCK), n_img, chans,
                                    per_plane, gm)
    else:
        for t in prange(tasks):
            _conv_weight_grad_block(g, out, act, cols, gw, gb, t * CHANNEL_BLOCK,
                                    min(chans, (t + 1) * CHANNEL_BLOCK), n_img, chans,
                                    per_plane, np.empty(per_plane, g.dtype))


def conv2d_weight_grad(g: Any, kept: Any, activation: str | None, cols: Any) -> tuple[Any, Any]:
    """(gw (O, R), gb (O,)) from g (N, O, OH, OW), the forward output and cols (R, N*L) of a
    convolution with one group; above WEIGHT_GRAD_MAX_ROWS rows, the regrouping kernel and a
    GEMM, as the reference does."""
    code = _ACTIVATION_CODES.get(activation, -1)
    dt = g.dtype
    if (code < 0 or not is_float(dt) or g.ndim != 4 or cols.dtype is not dt or cols.ndim != 2
            or cols.shape[0] == 0 or g.size == 0
            or (code > 0 and (kept.dtype is not dt or kept.shape != g.shape))):
        return NotImplemented
    n, o, oh, ow = g.shape
    if cols.shape[1] != n * oh * ow:
        return NotImplemented
    if cols.shape[0] > WEIGHT_GRAD_MAX_ROWS:
        g2, gb = conv2d_bias_act_backward(g, kept, activation)  # (O, N*L), (O,)
        return g2 @ cols.T, gb
    gw = np.empty((o, cols.shape[0]), dt)
    gb = np.empty(o, dt)
    _conv_weight_grad(g.reshape(-1), kept.reshape(-1) if code else _EMPTY[dt], code,
                      np.ascontiguousarray(cols).reshape(-1), gw.reshape(-1), gb, n, o, oh * ow)
    return gw, gb


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
            at = a0 * w + b0
            best = x[U(src + at)]
            nan = best != best
            # selects, not branches (random data would mispredict half the compares); a NaN
            # only raises a flag here (folding it into the select costs 4x)
            if a1 - a0 == 2 and b1 - b0 == 2:  # the common 2x2 window, unrolled: ~1.7x faster
                for k in (at + 1, at + w, at + w + 1):
                    v = x[U(src + k)]
                    nan |= v != v
                    better = v > best
                    best = v if better else best
                    at = k if better else at
            else:
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        v = x[U(src + a * w + b)]
                        nan |= v != v
                        better = v > best
                        best = v if better else best
                        at = a * w + b if better else at
            if nan:  # rare: the first NaN in window order wins, as in np.argmax
                found = False
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        v = x[U(src + a * w + b)]
                        if v != v and not found:
                            best, at, found = v, a * w + b, True
            y[U(out + t * ow + u)] = best
            idx[U(out + t * ow + u)] = at


@njit(cache=True, error_model="numpy")
def _maxpool_plane_2x2(x, y, idx, p, h, w, oh, ow):
    # the usual pooling (2x2 windows, stride 2, no padding) of plane p: every window whole, so
    # no bounds per output; the same selects and NaN rule as _maxpool_plane, in window order
    src, out = p * h * w, p * oh * ow
    for t in range(oh):
        top = U(src + 2 * t * w)
        row = U(out + t * ow)
        for u in range(ow):
            at = U(2 * t * w + 2 * u)
            a = top + U(2 * u)
            best, v1, v2, v3 = x[a], x[a + U(1)], x[a + U(w)], x[a + U(w + 1)]
            nan = (best != best) | (v1 != v1) | (v2 != v2) | (v3 != v3)
            better = v1 > best
            best = v1 if better else best
            at = at + U(1) if better else at
            better = v2 > best
            best = v2 if better else best
            at = U(2 * t * w + w + 2 * u) if better else at
            better = v3 > best
            best = v3 if better else best
            at = U(2 * t * w + w + 2 * u + 1) if better else at
            if nan:  # rare: the first NaN in window order wins, as in np.argmax
                for k in (U(0), U(1), U(w), U(w + 1)):
                    if x[a + k] != x[a + k]:
                        best = x[a + k]
                        at = U(2 * t * w + 2 * u) + k
                        break
            y[row + U(u)] = best
            idx[row + U(u)] = at


@njit(cache=True, error_model="numpy")
def _maxpool_any_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0:
        _maxpool_plane_2x2(x, y, idx, p, h, w, oh, ow)
    else:
        _maxpool_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


@njit(parallel=True, cache=True, error_model="numpy")
def _maxpool_forward(x, y, idx, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    if x.size < PARALLEL_MIN or planes == 1:
        for p in range(planes):
            _maxpool_any_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    else:
        for p in prange(planes):
            _maxpool_any_plane(x, y, idx, p, h, w, kh, kw, sh, sw, ph, pw, oh, ow)


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
        return NotImplemented
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
        return NotImplemented
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
        return NotImplemented
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
        return NotImplemented
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    gx = np.empty(x_shape, g.dtype)
    _avgpool_backward(g.reshape(-1), gx.reshape(-1), n * c, h, w, kh, kw, sh, sw, ph, pw,
                      g.shape[2], g.shape[3])
    return gx


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(shape: tuple[int, ...], dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


_K, _S, _P, _D = (3, 3), (1, 1), (1, 1), (1, 1)  # a 3x3 'same' convolution of (2, 3, 5, 5)
KERNELS = {
    "im2col": lambda dt: (_example((2, 3, 5, 5), dt), _K, _S, _P, _D),
    "col2im": lambda dt: (_example((27, 50), dt), (2, 3, 5, 5), _K, _S, _P, _D),
    "conv2d_bias_act_forward": lambda dt: (_example((4, 50), dt), _example((4,), dt), "relu",
                                           (2, 4, 5, 5)),
    "conv2d_bias_act_backward": lambda dt: (_example((2, 4, 5, 5), dt),
                                            _example((2, 4, 5, 5), dt), "relu"),
    "conv2d_weight_grad": lambda dt: (_example((2, 4, 5, 5), dt), _example((2, 4, 5, 5), dt),
                                      "relu", _example((9, 50), dt)),
    "maxpool2d_forward": lambda dt: (_example((2, 3, 6, 6), dt), (2, 2), (2, 2), (0, 0)),
    "maxpool2d_backward": lambda dt: (_example((2, 3, 3, 3), dt),
                                      np.zeros((2, 3, 3, 3), np.int64), (2, 3, 6, 6)),
    "avgpool2d_forward": lambda dt: (_example((2, 3, 6, 6), dt), (2, 2), (2, 2), (0, 0)),
    "avgpool2d_backward": lambda dt: (_example((2, 3, 3, 3), dt), (2, 3, 6, 6), (2, 2), (2, 2),
                                      (0, 0)),
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
