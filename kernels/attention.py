"""The masked, scaled softmax of attention scores, forward/backward, row-parallel.

Same maths as the references in tinygrad_lab/ops/attention.py. Shapes: B batch, H heads, T query
positions, S key positions; scores (B, H, T, S) (fewer leading axes are padded with 1s), the
boolean mask (mB, mH, mT, mS) with each side 1 or the scores' side (broadcast inside the kernel,
never materialised). One row (b, h, i) is one task: under `causal` only keys j <= i + (S - T)
are visited at all, so the hidden upper triangle costs nothing but writing its zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN, PARALLEL_MIN_HEAVY, is_float

_NO_MASK = np.ones((1, 1, 1, 1), dtype=np.bool_)


@njit(cache=True, error_model="numpy")
def _masked_softmax_row(x, y, scale, limit, mrow, has_mask, mstep):
    # x (S,) -> y (S,); keys j < limit are visible unless the mask row hides them
    found = False
    m = x[0] * scale
    for j in range(limit):
        if has_mask and not mrow[j * mstep]:
            continue
        v = x[j] * scale
        if not found or v > m:
            m = v
            found = True
    if not found:  # every key hidden: zeros, not NaN
        for j in range(y.size):
            y[j] = 0
        return
    s = 0.0
    for j in range(limit):
        if has_mask and not mrow[j * mstep]:
            y[j] = 0
        else:
            e = np.exp(x[j] * scale - m)
            y[j] = e
            s += e
    for j in range(limit, y.size):
        y[j] = 0
    inv = 1.0 / s
    for j in range(limit):
        y[j] = y[j] * inv


@njit(cache=True, error_model="numpy")
def _row_task(x, y, mask, scale, causal, has_mask, r):  # row r of x, y (B, H, T, S)
    _, heads, t, s = x.shape
    b = r // (heads * t)
    h = (r // t) % heads
    i = r % t
    limit = min(s, i + 1 + s - t) if causal else s
    if limit < 0:
        limit = 0
    mb, mh, mt, ms = mask.shape
    mrow = mask[b if mb > 1 else 0, h if mh > 1 else 0, i if mt > 1 else 0]  # (mS,)
    _masked_softmax_row(x[b, h, i], y[b, h, i], scale, limit, mrow, has_mask,
                        1 if ms > 1 else 0)


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_forward(x, mask, scale, causal, has_mask, y):  # x (B, H, T, S) -> y
    rows = x.shape[0] * x.shape[1] * x.shape[2]
    if x.size < PARALLEL_MIN_HEAVY or rows == 1:
        for r in range(rows):
            _row_task(x, y, mask, scale, causal, has_mask, r)
    else:
        for r in prange(rows):
            _row_task(x, y, mask, scale, causal, has_mask, r)


@njit(cache=True, error_model="numpy")
def _masked_softmax_backward_row(g, y, scale, dx):  # g (S,), y (S,) -> dx (S,)
    dot = 0.0
    for j in range(g.size):
        dot += g[j] * y[j]
    d = g.dtype.type(dot)
    for j in range(g.size):
        dx[j] = scale * y[j] * (g[j] - d)


@njit(parallel=True, cache=True, error_model="numpy")
def _masked_softmax_backward(g, y, scale, dx):  # g (R, S), y (R, S) -> dx (R, S)
    if g.size < PARALLEL_MIN or g.shape[0] == 1:
        for r in range(g.shape[0]):
            _masked_softmax_backward_row(g[r], y[r], scale, dx[r])
    else:
        for r in prange(g.shape[0]):
            _masked_softmax_backward_row(g[r], y[r], scale, dx[r])


def _mask_4d(mask: Any, shape: tuple[int, ...]) -> Any:
    """The mask as a (mB, mH, mT, mS) contiguous bool array fitting shape (B, H, T, S) without
    enlarging it, or None when it cannot be (the reference then broadcasts it)."""
    m = np.asarray(mask)
    if m.ndim > 4:
        return None
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)  # (mB, mH, mT, mS)
    if any(a not in (1, n) for a, n in zip(m.shape, shape)):
        return None
    return np.ascontiguousarray(m, dtype=np.bool_)


def masked_softmax_forward(scores: Any, scale: float, causal: bool, mask: Any) -> Any:
    """y = softmax over S of scale * scores with hidden entries (causal: j > i + S - T; mask
    False) at 0 and fully hidden rows all 0; scores (..., T, S) -> y (..., T, S)."""
    shape = scores.shape
    ok = is_float(scores.dtype) and 2 <= scores.ndim <= 4 and scores.size > 0
    shape4 = (1,) * (4 - scores.ndim) + shape if ok else shape
    m4 = _NO_MASK if mask is None or not ok else _mask_4d(mask, shape4)
    if not ok or m4 is None:
        from tinygrad_lab.ops import attention

        return attention.masked_softmax_forward(scores, scale, causal, mask)
    y = np.empty(shape, scores.dtype)
    _masked_softmax_forward(scores.reshape(shape4), m4, scores.dtype.type(scale), bool(causal),
                            mask is not None, y.reshape(shape4))  # (B, H, T, S)
    return y


def masked_softmax_backward(g: Any, y: Any, scale: float) -> Any:
    """dx = scale * y * (g - sum(g * y)) over the last axis; g, y (..., S) -> dx (..., S)."""
    if not (is_float(g.dtype) and g.dtype is y.dtype and g.shape == y.shape and g.ndim >= 1
            and g.size > 0):
        from tinygrad_lab.ops import attention

        return attention.masked_softmax_backward(g, y, scale)
    s = g.shape[-1]
    dx = np.empty(g.shape, g.dtype)
    _masked_softmax_backward(g.reshape(-1, s), y.reshape(-1, s), g.dtype.type(scale),  # (R, S)
                             dx.reshape(-1, s))
    return dx
