"""LayerNorm and RMSNorm kernels over the last axis, forward/backward pairs as in llm.c.

Same maths as the references in tinygrad_lab/ops/norm.py. Shapes: R rows (every axis but the
last, flattened), C channels; w, b (C,); mean, rstd (R,). Row statistics are accumulated in
float64 whatever the input dtype. Forward is one task per row. Backward computes dx one row at a
time and the weight/bias gradients into per-chunk partial rows (a fixed number of chunks, summed
in chunk order), so the result does not depend on the thread count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN, is_float

ROW_CHUNKS = 8  # partial dw/db rows: enough to balance a few threads, cheap to add up


# --- layer norm ---------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _layer_norm_row(x, w, b, eps, y):  # x (C,), w (C,), b (C,) -> y (C,); returns (mean, rstd)
    c = x.size
    s = 0.0
    for j in range(c):
        s += x[j]
    m = s / c
    v = 0.0
    for j in range(c):
        d = x[j] - m
        v += d * d
    rs = 1.0 / math.sqrt(v / c + eps)
    for j in range(c):
        y[j] = (x[j] - m) * rs * w[j] + b[j]
    return m, rs


@njit(parallel=True, cache=True, error_model="numpy")
def _layer_norm_forward(x, w, b, eps, y, mean, rstd):  # x (R, C) -> y (R, C), mean, rstd (R,)
    rows = x.shape[0]
    if x.size < PARALLEL_MIN or rows == 1:
        for r in range(rows):
            mean[r], rstd[r] = _layer_norm_row(x[r], w, b, eps, y[r])
    else:
        for r in prange(rows):
            mean[r], rstd[r] = _layer_norm_row(x[r], w, b, eps, y[r])


@njit(cache=True, error_model="numpy")
def _layer_norm_backward_rows(g, x, w, mean, rstd, lo, hi, dx, dw, db):
    # rows lo..hi: dx rows written, dw/db (C,) float64 partials accumulated from zero
    c = x.shape[1]
    for j in range(c):
        dw[j] = 0.0
        db[j] = 0.0
    for r in range(lo, hi):
        m, rs = mean[r], rstd[r]
        s_dxhat = 0.0
        s_dxhat_xhat = 0.0
        for j in range(c):
            xhat = (x[r, j] - m) * rs
            dxhat = g[r, j] * w[j]
            s_dxhat += dxhat
            s_dxhat_xhat += dxhat * xhat
            dw[j] += g[r, j] * xhat
            db[j] += g[r, j]
        a = s_dxhat / c
        k = s_dxhat_xhat / c
        for j in range(c):
            xhat = (x[r, j] - m) * rs
            dx[r, j] = rs * (g[r, j] * w[j] - a - xhat * k)


@njit(parallel=True, cache=True, error_model="numpy")
def _layer_norm_backward(g, x, w, mean, rstd, dx):  # (R, C) each -> dx (R, C), returns dw, db
    rows, c = x.shape
    chunks = max(1, min(ROW_CHUNKS, rows))
    step = (rows + chunks - 1) // chunks
    dw_part = np.empty((chunks, c))  # float64 (chunks, C)
    db_part = np.empty((chunks, c))
    if x.size < PARALLEL_MIN or chunks == 1:
        for k in range(chunks):
            _layer_norm_backward_rows(g, x, w, mean, rstd, min(rows, k * step),
                                      min(rows, (k + 1) * step), dx, dw_part[k], db_part[k])
    else:
        for k in prange(chunks):
            _layer_norm_backward_rows(g, x, w, mean, rstd, min(rows, k * step),
                                      min(rows, (k + 1) * step), dx, dw_part[k], db_part[k])
    dw = np.empty(c, x.dtype)
    db = np.empty(c, x.dtype)
    for j in range(c):
        sw = 0.0
        sb = 0.0
        for k in range(chunks):
            sw += dw_part[k, j]
            sb += db_part[k, j]
        dw[j] = sw
        db[j] = sb
    return dw, db


def _fits(x: Any, *others: Any) -> bool:
    """True when a kernel can take this call: float arrays of one dtype, rows not empty."""
    dt = x.dtype
    return (is_float(dt) and x.ndim >= 1 and x.size > 0
            and all(o.dtype is dt for o in others))


def layer_norm_forward(x: Any, w: Any, b: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, mean, rstd): y = (x - mean) * rstd * w + b over the last axis; x (..., C), w, b (C,)
    -> y (..., C), mean and rstd (...)."""
    if not _fits(x, w, b):
        from tinygrad_lab.ops import norm

        return norm.layer_norm_forward(x, w, b, eps)
    c = x.shape[-1]
    y = np.empty(x.shape, x.dtype)
    mean = np.empty(x.shape[:-1], x.dtype)
    rstd = np.empty(x.shape[:-1], x.dtype)
    _layer_norm_forward(x.reshape(-1, c), w, b, float(eps), y.reshape(-1, c),  # (R, C)
                        mean.reshape(-1), rstd.reshape(-1))  # (R,)
    return y, mean, rstd


def layer_norm_backward(g: Any, x: Any, w: Any, mean: Any, rstd: Any) -> tuple[Any, Any, Any]:
    """(dx, dw, db) for upstream g (..., C) and the saved x, w, mean, rstd."""
    if not (_fits(x, g, w, mean, rstd) and g.shape == x.shape):
        from tinygrad_lab.ops import norm

        return norm.layer_norm_backward(g, x, w, mean, rstd)
    c = x.shape[-1]
    dx = np.empty(x.shape, x.dtype)
    dw, db = _layer_norm_backward(g.reshape(-1, c), x.reshape(-1, c), w,  # (R, C)
                                  mean.reshape(-1), rstd.reshape(-1), dx.reshape(-1, c))
    return dx, dw, db


# --- rms norm -----------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _rms_norm_row(x, w, eps, y):  # x (C,), w (C,) -> y (C,); returns rstd
    c = x.size
    s = 0.0
    for j in range(c):
        s += x[j] * x[j]
    rs = 1.0 / math.sqrt(s / c + eps)
    for j in range(c):
        y[j] = x[j] * rs * w[j]
    return rs


@njit(parallel=True, cache=True, error_model="numpy")
def _rms_norm_forward(x, w, eps, y, rstd):  # x (R, C) -> y (R, C), rstd (R,)
    rows = x.shape[0]
    if x.size < PARALLEL_MIN or rows == 1:
        for r in range(rows):
            rstd[r] = _rms_norm_row(x[r], w, eps, y[r])
    else:
        for r in prange(rows):
            rstd[r] = _rms_norm_row(x[r], w, eps, y[r])


@njit(cache=True, error_model="numpy")
def _rms_norm_backward_rows(g, x, w, rstd, lo, hi, dx, dw):
    c = x.shape[1]
    for j in range(c):
        dw[j] = 0.0
    for r in range(lo, hi):
        rs = rstd[r]
        s_dxhat_xhat = 0.0
        for j in range(c):
            xhat = x[r, j] * rs
            s_dxhat_xhat += g[r, j] * w[j] * xhat
            dw[j] += g[r, j] * xhat
        k = s_dxhat_xhat / c
        for j in range(c):
            dx[r, j] = rs * (g[r, j] * w[j] - x[r, j] * rs * k)


@njit(parallel=True, cache=True, error_model="numpy")
def _rms_norm_backward(g, x, w, rstd, dx):  # (R, C) each -> dx (R, C), returns dw
    rows, c = x.shape
    chunks = max(1, min(ROW_CHUNKS, rows))
    step = (rows + chunks - 1) // chunks
    dw_part = np.empty((chunks, c))  # float64 (chunks, C)
    if x.size < PARALLEL_MIN or chunks == 1:
        for k in range(chunks):
            _rms_norm_backward_rows(g, x, w, rstd, min(rows, k * step),
                                    min(rows, (k + 1) * step), dx, dw_part[k])
    else:
        for k in prange(chunks):
            _rms_norm_backward_rows(g, x, w, rstd, min(rows, k * step),
                                    min(rows, (k + 1) * step), dx, dw_part[k])
    dw = np.empty(c, x.dtype)
    for j in range(c):
        sw = 0.0
        for k in range(chunks):
            sw += dw_part[k, j]
        dw[j] = sw
    return dw


def rms_norm_forward(x: Any, w: Any, eps: float) -> tuple[Any, Any]:
    """(y, rstd): y = x * rstd * w, rstd = 1 / sqrt(mean(x**2) + eps); x (..., C) -> y (..., C),
    rstd (...)."""
    if not _fits(x, w):
        from tinygrad_lab.ops import norm

        return norm.rms_norm_forward(x, w, eps)
    c = x.shape[-1]
    y = np.empty(x.shape, x.dtype)
    rstd = np.empty(x.shape[:-1], x.dtype)
    _rms_norm_forward(x.reshape(-1, c), w, float(eps), y.reshape(-1, c), rstd.reshape(-1))
    return y, rstd


def rms_norm_backward(g: Any, x: Any, w: Any, rstd: Any) -> tuple[Any, Any]:
    """(dx, dw) for upstream g (..., C) and the saved x, w, rstd."""
    if not (_fits(x, g, w, rstd) and g.shape == x.shape):
        from tinygrad_lab.ops import norm

        return norm.rms_norm_backward(g, x, w, rstd)
    c = x.shape[-1]
    dx = np.empty(x.shape, x.dtype)
    dw = _rms_norm_backward(g.reshape(-1, c), x.reshape(-1, c), w, rstd.reshape(-1),  # (R, C)
                            dx.reshape(-1, c))
    return dx, dw
