"""LayerNorm and RMSNorm kernels over the last axis, forward/backward pairs as in llm.c.

Same maths as the references in tinygrad_lab/ops/norm.py. Shapes: R rows (every axis but the
last, flattened), C channels; w, b (C,); mean, rstd (R,). Row statistics are accumulated in
float64 whatever the input dtype, by small reduction functions whose `reassoc` flag lets LLVM
sum in SIMD lanes (as in softmax.py); rows are indexed in place. Forward is one task per row.
Backward computes dx one row at a time and the weight/bias gradients into per-chunk float64
partial rows (a fixed number of chunks, added in chunk order), so the result does not depend on
the thread count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN, is_float

ROW_CHUNKS = 8  # partial dw/db rows: enough to balance a few threads, cheap to add up


# --- reductions over row r ----------------------------------------------------------------------
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_sum(x, r):  # x (R, C) -> float64 sum of x[r]
    s = 0.0
    for j in range(x.shape[1]):
        s += x[r, j]
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_centred_squares(x, r, m):  # x (R, C) -> float64 sum of (x[r] - m)**2
    s = 0.0
    for j in range(x.shape[1]):
        d = x[r, j] - m
        s += d * d
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_grad_sums(g, x, w, r, m, rs):  # -> (sum dxhat, sum dxhat * xhat), dxhat = g * w
    a = 0.0
    k = 0.0
    for j in range(x.shape[1]):
        dxhat = np.float64(g[r, j]) * w[j]
        a += dxhat
        k += dxhat * ((x[r, j] - m) * rs)
    return a, k


# --- layer norm ---------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def _layer_norm_stats(x, eps, mean, rstd, r):  # x (R, C) -> mean[r], rstd[r]
    c = x.shape[1]
    m = _row_sum(x, r) / c
    squares = _row_centred_squares(x, r, m)
    mean[r] = m  # stored after both sums: a store first (mean might alias x, for all LLVM
    rstd[r] = 1.0 / math.sqrt(squares / c + eps)  # knows) made the second sum 1.4x slower


@njit(cache=True, error_model="numpy", inline="always")
def _layer_norm_row(x, w, b, y, mean, rstd, r):  # x (R, C) -> y (R, C), with row r's statistics
    t = x.dtype.type
    m_, rs_ = t(mean[r]), t(rstd[r])  # the sums in float64, the per-element maths in x's type
    for j in range(x.shape[1]):       # (twice the SIMD lanes of float64 for float32 rows)
        y[r, j] = (x[r, j] - m_) * rs_ * w[j] + b[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _layer_norm_forward(x, w, b, eps, y, mean, rstd):  # x (R, C) -> y (R, C), mean, rstd (R,)
    # On one thread, every row's statistics first, then every row's output: two loops that
    # LLVM vectorizes well apart; one loop doing both per row took 1.5x as long ((1024, 128)
    # float32: 77 against 51 us). mean, rstd keep the float64 statistics rounded to x's type,
    # which is what the output is computed from either way.
    rows = x.shape[0]
    if x.size < PARALLEL_MIN or rows == 1:
        for r in range(rows):
            _layer_norm_stats(x, eps, mean, rstd, r)
        for r in range(rows):
            _layer_norm_row(x, w, b, y, mean, rstd, r)
    else:
        for r in prange(rows):
            _layer_norm_stats(x, eps, mean, rstd, r)
            _layer_norm_row(x, w, b, y, mean, rstd, r)


@njit(cache=True, error_model="numpy")
def _layer_norm_backward_rows(g, x, w, mean, rstd, lo, hi, dx, dw, db):
    # rows lo..hi: dx rows written; dw, db (C,) float64 partials summed from zero
    c = x.shape[1]
    for j in range(c):
        dw[j] = 0.0
        db[j] = 0.0
    t = x.dtype.type
    for r in range(lo, hi):
        m, rs = np.float64(mean[r]), np.float64(rstd[r])
        a, k = _row_grad_sums(g, x, w, r, m, rs)
        m_, rs_, a_, k_ = t(m), t(rs), t(a / c), t(k / c)  # per element in x's type
        for j in range(c):
            xhat = (x[r, j] - m_) * rs_
            dw[j] += g[r, j] * xhat  # the column sums stay float64
            db[j] += g[r, j]
            dx[r, j] = rs_ * (g[r, j] * w[j] - a_ - xhat * k_)


@njit(parallel=True, cache=True, error_model="numpy")
def _layer_norm_backward(g, x, w, mean, rstd, dx, dw, db):  # (R, C) each -> dx; dw, db (C,)
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
    for j in range(c):
        sw = 0.0
        sb = 0.0
        for k in range(chunks):
            sw += dw_part[k, j]
            sb += db_part[k, j]
        dw[j] = sw
        db[j] = sb


def _fits(x: Any, *others: Any) -> bool:
    """True when a kernel can take this call: float arrays of one dtype, rows not empty."""
    dt = x.dtype
    return is_float(dt) and x.ndim >= 1 and x.size > 0 and all(o.dtype is dt for o in others)


def layer_norm_forward(x: Any, w: Any, b: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, mean, rstd): y = (x - mean) * rstd * w + b over the last axis; x (..., C), w, b (C,)
    -> y (..., C), mean and rstd (...)."""
    if not (_fits(x, w, b) and w.shape == b.shape == x.shape[-1:]):
        return NotImplemented
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
        return NotImplemented
    c = x.shape[-1]
    dx = np.empty(x.shape, x.dtype)
    dw, db = np.empty(c, x.dtype), np.empty(c, x.dtype)
    _layer_norm_backward(g.reshape(-1, c), x.reshape(-1, c), w, mean.reshape(-1),  # (R, C)
                         rstd.reshape(-1), dx.reshape(-1, c), dw, db)
    return dx, dw, db


# --- rms norm -----------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_squares(x, r):  # x (R, C) -> float64 sum of x[r]**2
    s = 0.0
    for j in range(x.shape[1]):
        v = np.float64(x[r, j])
        s += v * v
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_dxhat_xhat(g, x, w, r, rs):  # -> sum over j of g * w * x * rs
    k = 0.0
    for j in range(x.shape[1]):
        k += np.float64(g[r, j]) * w[j] * (x[r, j] * rs)
    return k


@njit(cache=True, error_model="numpy")
def _rms_norm_row(x, w, eps, y, rstd, r):  # x (R, C) -> y (R, C), rstd (R,)
    c = x.shape[1]
    rs = 1.0 / math.sqrt(_row_squares(x, r) / c + eps)
    for j in range(c):
        y[r, j] = x[r, j] * rs * w[j]
    rstd[r] = rs


@njit(parallel=True, cache=True, error_model="numpy")
def _rms_norm_forward(x, w, eps, y, rstd):  # x (R, C) -> y (R, C), rstd (R,)
    rows = x.shape[0]
    if x.size < PARALLEL_MIN or rows == 1:
        for r in range(rows):
            _rms_norm_row(x, w, eps, y, rstd, r)
    else:
        for r in prange(rows):
            _rms_norm_row(x, w, eps, y, rstd, r)


@njit(cache=True, error_model="numpy")
def _rms_norm_backward_rows(g, x, w, rstd, lo, hi, dx, dw):
    c = x.shape[1]
    for j in range(c):
        dw[j] = 0.0
    for r in range(lo, hi):
        rs = np.float64(rstd[r])
        k = _row_dxhat_xhat(g, x, w, r, rs) / c
        for j in range(c):
            xhat = x[r, j] * rs
            dw[j] += g[r, j] * xhat
            dx[r, j] = rs * (g[r, j] * w[j] - xhat * k)


@njit(parallel=True, cache=True, error_model="numpy")
def _rms_norm_backward(g, x, w, rstd, dx, dw):  # (R, C) each -> dx (R, C); dw (C,)
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
    for j in range(c):
        sw = 0.0
        for k in range(chunks):
            sw += dw_part[k, j]
        dw[j] = sw


def rms_norm_forward(x: Any, w: Any, eps: float) -> tuple[Any, Any]:
    """(y, rstd): y = x * rstd * w, rstd = 1 / sqrt(mean(x**2) + eps); x (..., C) -> y (..., C),
    rstd (...)."""
    if not (_fits(x, w) and w.shape == x.shape[-1:]):
        return NotImplemented
    c = x.shape[-1]
    y = np.empty(x.shape, x.dtype)
    rstd = np.empty(x.shape[:-1], x.dtype)
    _rms_norm_forward(x.reshape(-1, c), w, float(eps), y.reshape(-1, c), rstd.reshape(-1))
    return y, rstd


def rms_norm_backward(g: Any, x: Any, w: Any, rstd: Any) -> tuple[Any, Any]:
    """(dx, dw) for upstream g (..., C) and the saved x, w, rstd."""
    if not (_fits(x, g, w, rstd) and g.shape == x.shape):
        return NotImplemented
    c = x.shape[-1]
    dx = np.empty(x.shape, x.dtype)
    dw = np.empty(c, x.dtype)
    _rms_norm_backward(g.reshape(-1, c), x.reshape(-1, c), w, rstd.reshape(-1),  # (R, C)
                       dx.reshape(-1, c), dw)
    return dx, dw


def _example(dtype: Any, *shapes: tuple[int, ...]) -> list[Any]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


KERNELS = {  # registered kernels -> (dtype -> warm-up arguments); x (R, C) = (4, 8)
    "layer_norm_forward": lambda dt: (*_example(dt, (4, 8), (8,), (8,)), 1e-5),
    "layer_norm_backward": lambda dt: (*_example(dt, (4, 8), (4, 8), (8,), (4,)),
                                       np.ones(4, dt)),
    "rms_norm_forward": lambda dt: (*_example(dt, (4, 8), (8,)), 1e-6),
    "rms_norm_backward": lambda dt: (*_example(dt, (4, 8), (4, 8), (8,)), np.ones(4, dt)),
}
