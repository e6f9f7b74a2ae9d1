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


# --- wrappers -----------------------------------------------------------------------------------
def _mask_2d(mask: Any, shape4: tuple[int, ...]) -> tuple[Any, tuple[int, int, int]] | None:
    """The mask as (MR, mS) contiguous bool plus (mB, mH, mT), fitting scores (B, H, T, S)
    without enlarging them; None when it cannot (the reference then broadcasts it)."""
    m = mask_as_4d(np.asarray(mask), shape4)  # (mB, mH, mT, mS)
    if m is None:
        return None
    mb, mh, mt, ms = m.shape
    return np.ascontiguousarray(m, dtype=np.bool_).reshape(mb * mh * mt, ms), (mb, mh, mt)


def masked_softmax_forward(scores: Any, scale: float, causal: bool, mask: Any) -> Any:
    """y = softmax over S of scale * scores with hidden entries (causal: j > i + S - T; mask
    False) at 0 and fully hidden rows all 0; scores (..., T, S) -> y (..., T, S)."""
    shape = scores.shape
    fits = is_float(scores.dtype) and 2 <= scores.ndim <= 4 and scores.size > 0
    if fits:
        b, h, t, s = (1,) * (4 - scores.ndim) + shape
        packed = (_NO_MASK, (1, 1, 1)) if mask is None else _mask_2d(mask, (b, h, t, s))
    if not fits or packed is None:
        return NotImplemented
    y = np.empty(shape, scores.dtype)
    _masked_softmax_forward(scores.reshape(-1, s), packed[0], scores.dtype.type(scale),  # (R, S)
                            bool(causal), mask is not None, h, t, packed[1], y.reshape(-1, s))
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


def _example_scores(dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(dtype)  # (B, H, T, S)


KERNELS = {  # the kernels this module registers -> (dtype -> warm-up arguments)
    "masked_softmax_forward": lambda dt: (_example_scores(dt), 0.5, True,
                                          np.ones((2, 1, 1, 4), bool)),
    "masked_softmax_backward": lambda dt: (_example_scores(dt), _example_scores(dt), 0.5),
}
