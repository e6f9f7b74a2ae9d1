"""The masked, scaled softmax of attention scores, forward/backward, row-parallel.

Same maths as the references in tinygrad_lab/ops/attention.py. Shapes: B batch, H heads, T query
positions, S key positions; scores (B, H, T, S) (fewer leading axes are padded with 1s) seen as
R = B * H * T rows of S; the boolean mask (mB, mH, mT, mS), each side 1 or the scores' side,
seen as MR = mB * mH * mT rows of mS (broadcast inside the kernel, never materialised). One row
(b, h, i) is one task: under `causal` only keys j < limit = i + 1 + S - T are visited, so the
hidden upper triangle costs nothing but writing its zeros. As in softmax.py, rows are indexed in
place and the reductions are small separate functions whose fastmath flags let them vectorize.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import (
    PARALLEL_MIN,
    PARALLEL_MIN_HEAVY,
    is_float,
    mask_as_4d,
)
from tinygrad_lab.kernels._math import exp
from tinygrad_lab.kernels.softmax import _row_dot  # a (R, S), b (R, S) -> float64 row dot
from tinygrad_lab.kernels.softmax import _row_max_n as _row_max  # a (R, S) -> max of a[r, :n]

_NO_MASK = np.ones((1, 1), dtype=np.bool_)  # stands in for mask=None: (MR, mS)


# --- reductions over the first n entries of row r -------------------------------------------------
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_sum(a, r, n):  # a (R, S) -> float64 sum of a[r, :n], in any order
    s = 0.0
    for j in range(n):
        s += a[r, j]
    return s


# --- one row ------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _masked_softmax_row(x, y, mask, scale, causal, has_mask, heads, t, mshape, r):
    # x (R, S) -> y (R, S), row r = (b, h, i); mask (MR, mS), mshape = (mB, mH, mT)
    s = x.shape[1]
    i = r % t
    limit = min(s, max(0, i + 1 + s - t)) if causal else s
    if has_mask:
        b, h = r // (heads * t), (r // t) % heads
        mb, mh, mt = mshape
        mr = ((b if mb > 1 else 0) * mh + (h if mh > 1 else 0)) * mt + (i if mt > 1 else 0)
        step = 1 if mask.shape[1] > 1 else 0
        for j in range(limit):
            y[r, j] = x[r, j] * scale if mask[mr, j * step] else y.dtype.type(-np.inf)
    else:
        for j in range(limit):
            y[r, j] = x[r, j] * scale
    hidden = y.dtype.type(-np.inf)  # in y's type: a float64 m would make exp float64 (libm)
    m = _row_max(y, r, limit) if limit > 0 else hidden
    if m == hidden:  # every key hidden: zeros, not NaN
        limit = 0
    else:
        for j in range(limit):
            y[r, j] = exp(y[r, j] - m)  # exp(-inf) = 0 for hidden keys
        inv = y.dtype.type(1.0 / _row_sum(y, r, limit))  # a float64 factor halves the lanes
        for j in range(limit):
            y[r, j] = y[r, j] * inv
    for j in range(limit, s):
        y[r, j] = 0


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_forward(x, mask, scale, causal, has_mask, heads, t, mshape, y):
    # x (R, S) -> y (R, S), R = B * H * T
    rows = x.shape[0]
    if x.size < PARALLEL_MIN_HEAVY or rows == 1:
        for r in range(rows):
            _masked_softmax_row(x, y, mask, scale, causal, has_mask, heads, t, mshape, r)
    else:
        for r in prange(rows):
            _masked_softmax_row(x, y, mask, scale, causal, has_mask, heads, t, mshape, r)


@njit(cache=True, error_model="numpy")
def _masked_softmax_backward_row(g, y, scale, dx, r):  # g (R, S), y (R, S) -> dx (R, S), row r
    dot = g.dtype.type(_row_dot(g, y, r))
    for j in range(g.shape[1]):
        dx[r, j] = scale * y[r, j] * (g[r, j] - dot)


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_backward(g, y, scale, dx):  # g (R, S), y (R, S) -> dx (R, S)
    if g.size < PARALLEL_MIN or g.shape[0] == 1:
        for r in range(g.shape[0]):
            _masked_softmax_backward_row(g, y, scale, dx, r)
    else:
        for r in prange(g.shape[0]):
            _masked_softmax_backward_row(g, y, scale, dx, r)


# --- keys first: the softmax down each column of (S, T) blocks ------------------------------------
# QKVAttention on the CPU computes its scores keys first, as k q^T: block z = (b, h) is S rows (keys
# j) of T columns (queries i), and each query's softmax runs down its column. Every pass is then
# elementwise along a row, with running per-column vectors (max, sum): it vectorizes along the
# row, where the row kernels above reduce across each short row (T = 64: twice the time).
# Under `causal`, key j is seen by the queries i >= j - (S - T) only: row j is visited from that
# column rounded down to a multiple of 16 (whole SIMD vectors; the hidden entries in between are
# -inf, whose exp is 0), and left of it only zeros are written. Columns are indexed with unsigned
# integers: with signed ones Numba checks each index for a negative wrap-around, and the loops
# do not vectorize.
@njit(cache=True, error_model="numpy", inline="always")
def _visible_from(j, off, causal):  # (first query that sees key j, that rounded down to 16)
    lo = max(0, j - off) if causal else 0
    return lo, lo - lo % 16


@njit(cache=True, error_model="numpy")
def _masked_softmax_columns_block(x, y, mask, scale, causal, has_mask, heads, keys, mshape, z,
                                  colmax, colsum):
    # x (R, T) -> y (R, T), R = B * H * S (S = keys); block z = (b, h) is rows z*S .. z*S + S.
    # mask (MR, mS), mshape = (mB, mH, mT) as in the row kernel; scratch colmax, colsum (T,) in
    # x's type: column sums in float64 took 1.4x the time of the whole kernel at T = 128, and
    # float32 keeps a sum of S terms in [0, 1] within S * 6e-8 of it (PyTorch sums in float too)
    t = x.shape[1]
    off = keys - t
    hidden = y.dtype.type(-np.inf)
    zero = y.dtype.type(0)
    if has_mask:
        b, h = z // heads, z % heads
        mb, mh, mt = mshape
        mbase = ((b if mb > 1 else 0) * mh + (h if mh > 1 else 0)) * mt
        istep = np.uint64(1 if mt > 1 else 0)
        jstep = 1 if mask.shape[1] > 1 else 0
    for i in range(t):
        colmax[i] = hidden
        colsum[i] = zero
    for j in range(keys):  # scaled scores, hidden ones -inf; the column maxima
        r = z * keys + j
        lo, start = _visible_from(j, off, causal)
        for i in range(start):
            y[r, i] = zero
        ulo = np.uint64(lo)
        for k in range(t - start):
            i = np.uint64(start + k)
            v = x[r, i] * scale if i >= ulo else hidden
            if has_mask:
                v = v if mask[mbase + i * istep, j * jstep] else hidden
            y[r, i] = v
            colmax[i] = v if v > colmax[i] else colmax[i]
    for i in range(t):  # a column with every key hidden: exp(-inf - 0) = 0 all down, not NaN
        colmax[i] = zero if colmax[i] == hidden else colmax[i]
    for j in range(keys):
        r = z * keys + j
        start = _visible_from(j, off, causal)[1]
        for k in range(t - start):
            i = np.uint64(start + k)
            e = exp(y[r, i] - colmax[i])
            y[r, i] = e
            colsum[i] += e
    for i in range(t):  # 1 / sum, 0 for a column without keys
        colmax[i] = y.dtype.type(1.0) / colsum[i] if colsum[i] > zero else zero
    for j in range(keys):
        r = z * keys + j
        start = _visible_from(j, off, causal)[1]
        for k in range(t - start):
            i = np.uint64(start + k)
            y[r, i] = y[r, i] * colmax[i]


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_columns_forward(x, mask, scale, causal, has_mask, heads, keys, mshape, y):
    # x (R, T) -> y (R, T), R = B * H * S: one task per (b, h) block
    blocks = x.shape[0] // keys
    t = x.shape[1]
    if x.size < PARALLEL_MIN_HEAVY or blocks == 1:
        colmax = np.empty(t, y.dtype)
        colsum = np.empty(t, y.dtype)
        for z in range(blocks):
            _masked_softmax_columns_block(x, y, mask, scale, causal, has_mask, heads, keys,
                                          mshape, z, colmax, colsum)
    else:
        for z in prange(blocks):
            _masked_softmax_columns_block(x, y, mask, scale, causal, has_mask, heads, keys,
                                          mshape, z, np.empty(t, y.dtype), np.empty(t, y.dtype))


@njit(cache=True, error_model="numpy")
def _masked_softmax_columns_backward_block(g, y, scale, causal, keys, z, dx, dots):
    # g, y (R, T) -> dx (R, T) rows of block z: dx = scale * y * (g - the column's sum of g * y);
    # dots (T,) float64 scratch (g - dot may cancel). Under `causal` the hidden entries (y = 0,
    # so dx = 0) are skipped as in the forward.
    t = g.shape[1]
    off = keys - t
    for i in range(t):
        dots[i] = 0.0
    for j in range(keys):
        r = z * keys + j
        start = _visible_from(j, off, causal)[1]
        for k in range(t - start):
            i = np.uint64(start + k)
            dots[i] += np.float64(g[r, i]) * y[r, i]
    for j in range(keys):
        r = z * keys + j
        start = _visible_from(j, off, causal)[1]
        for i in range(start):
            dx[r, i] = 0
        for k in range(t - start):
            i = np.uint64(start + k)
            dx[r, i] = scale * y[r, i] * (g[r, i] - g.dtype.type(dots[i]))


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_columns_backward(g, y, scale, causal, keys, dx):  # g, y (R, T) -> dx (R, T)
    blocks = g.shape[0] // keys
    if g.size < PARALLEL_MIN or blocks == 1:
        dots = np.empty(g.shape[1])
        for z in range(blocks):
            _masked_softmax_columns_backward_block(g, y, scale, causal, keys, z, dx, dots)
    else:
        for z in prange(blocks):
            _masked_softmax_columns_backward_block(g, y, scale, causal, keys, z, dx,
                                                   np.empty(g.shape[1]))


# --- wrappers -----------------------------------------------------------------------------------
def _mask_2d(mask: Any, shape4: tuple[int, ...]) -> tuple[Any, tuple[int, int, int]] | None:
    """The mask as (MR, mS) contiguous bool plus (mB, mH, mT), fitting scores (B, H, T, S)
    without enlarging them; None when it cannot (the reference then broadcasts it)."""
    m = mask_as_4d(np.asarray(mask), shape4)  # (mB, mH, mT, mS)
    if m is None:
        return None
    mb, mh, mt, ms = m.shape
    return np.ascontiguousarray(m, dtype=np.bool_).reshape(mb * mh * mt, ms), (mb, mh, mt)


def _fitted(scores: Any, mask: Any, keys_first: bool) -> tuple[Any, Any] | None:
    """((B, H, T, S), (mask (MR, mS), (mB, mH, mT))) for scores (..., T, S), or keys first
    (..., S, T), that a forward kernel takes; None when it does not (then the reference runs)."""
    if not (is_float(scores.dtype) and 2 <= scores.ndim <= 4 and scores.size > 0):
        return None
    b, h, rows, cols = (1,) * (4 - scores.ndim) + scores.shape
    shape4 = (b, h, cols, rows) if keys_first else (b, h, rows, cols)
    packed = (_NO_MASK, (1, 1, 1)) if mask is None else _mask_2d(mask, shape4)
    return None if packed is None else (shape4, packed)


def masked_softmax_forward(scores: Any, scale: float, causal: bool, mask: Any) -> Any:
    """y = softmax over S of scale * scores with hidden entries (causal: j > i + S - T; mask
    False) at 0 and fully hidden rows all 0; scores (..., T, S) -> y (..., T, S)."""
    fitted = _fitted(scores, mask, keys_first=False)
    if fitted is None:
        return NotImplemented
    (_, h, t, s), (mask2, mshape) = fitted
    y = np.empty(scores.shape, scores.dtype)
    _masked_softmax_forward(scores.reshape(-1, s), mask2, scores.dtype.type(scale),  # (R, S)
                            bool(causal), mask is not None, h, t, mshape, y.reshape(-1, s))
    return y


def masked_softmax_backward(g: Any, y: Any, scale: float) -> Any:
    """dx = scale * y * (g - sum(g * y)) over the last axis; g, y (..., S) -> dx (..., S)."""
    if not (is_float(g.dtype) and g.dtype is y.dtype and g.shape == y.shape and g.ndim >= 1
            and g.size > 0):
        return NotImplemented
    s = g.shape[-1]
    dx = np.empty(g.shape, g.dtype)
    _masked_softmax_backward(g.reshape(-1, s), y.reshape(-1, s), g.dtype.type(scale),  # (R, S)
                             dx.reshape(-1, s))
    return dx


def masked_softmax_columns_forward(scores_t: Any, scale: float, causal: bool, mask: Any) -> Any:
    """The masked softmax of keys-first scores (..., S, T), down each column (over S): the
    transpose of masked_softmax_forward's answer for scores_t^T. mask is laid out as there,
    broadcastable to (B, H, T, S)."""
    fitted = _fitted(scores_t, mask, keys_first=True)
    if fitted is None:
        return NotImplemented
    (_, h, t, s), (mask2, mshape) = fitted
    y = np.empty(scores_t.shape, scores_t.dtype)
    _masked_softmax_columns_forward(scores_t.reshape(-1, t), mask2,  # (R, T), R = B * H * S
                                    scores_t.dtype.type(scale), bool(causal), mask is not None,
                                    h, s, mshape, y.reshape(-1, t))
    return y


def masked_softmax_columns_backward(g_t: Any, y_t: Any, scale: float, causal: bool) -> Any:
    """dx = scale * y * (g - sum(g * y)) over the second-last axis (keys-first layout); causal:
    y came from a causal forward, and its hidden entries are skipped."""
    if not (is_float(g_t.dtype) and g_t.dtype is y_t.dtype and g_t.shape == y_t.shape
            and g_t.ndim >= 2 and g_t.size > 0):
        return NotImplemented
    s, t = g_t.shape[-2:]
    dx = np.empty(g_t.shape, g_t.dtype)
    _masked_softmax_columns_backward(g_t.reshape(-1, t), y_t.reshape(-1, t),  # (R, T)
                                     g_t.dtype.type(scale), bool(causal), s, dx.reshape(-1, t))
    return dx


def _example_scores(dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(dtype)  # (B, H, T, S)


KERNELS = {  # the kernels this module registers -> (dtype -> warm-up arguments)
    "masked_softmax_forward": lambda dt: (_example_scores(dt), 0.5, True,
                                          np.ones((2, 1, 1, 4), bool)),
    "masked_softmax_backward": lambda dt: (_example_scores(dt), _example_scores(dt), 0.5),
    "masked_softmax_columns_forward": lambda dt: (_example_scores(dt), 0.5, True,
                                                  np.ones((2, 1, 1, 4), bool)),
    "masked_softmax_columns_backward": lambda dt: (_example_scores(dt), _example_scores(dt), 0.5,
                                                   True),
}
