"""Softmax, log-softmax and fused softmax + cross-entropy kernels, row-parallel over the last axis.

Same maths as the references in tinygrad_lab/ops/nn.py. Shapes: R rows (every axis but the last,
flattened), C entries per row (classes); N rows of logits for the loss. Each row is one task:
its max, its sum of exponentials (accumulated in float64) and its outputs, while the row is in
cache. A softmax over any axis but the last goes to the reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels import _common
from tinygrad_lab.kernels._common import PARALLEL_MIN, PARALLEL_MIN_HEAVY, is_float
from tinygrad_lab.kernels._math import exp


def _last_axis(x: Any, axis: int) -> bool:
    """True when a kernel can take this call: a float array, axis the last one, rows not empty."""
    nd = x.ndim
    return is_float(x.dtype) and nd > 0 and (axis == -1 or axis == nd - 1) and x.size > 0


# --- one row ------------------------------------------------------------------------------------
# Row r of 2-D arrays, indexed in place: slicing a row view per call would cost two reference
# count updates per array per row, which is most of the time for short rows. Reductions are
# separate small functions so the elementwise loops around them vectorize; their fastmath flags
# only let LLVM reorder the max / sum into SIMD lanes (see each for why that is safe).
@njit(cache=True, error_model="numpy", fastmath={"nnan", "nsz"})
def _row_max_n(x, r, n):  # x (R, C) -> max of x[r, :n], n >= 1
    # nnan: with a NaN in the row the max may come out as anything, but that row's exp(x - max)
    # and its sum are NaN whatever the max is, so its outputs are NaN, as the reference's.
    # Eight independent running maxima: LLVM does not turn one max chain into SIMD lanes (a
    # single chain ran at a quarter of the speed of this, 2.2 vs 0.6 ms for 4M float32)
    m0 = x[r, 0]
    m1, m2, m3, m4, m5, m6, m7 = m0, m0, m0, m0, m0, m0, m0
    j = 0
    while j + 8 <= n:
        m0 = max(m0, x[r, j])
        m1 = max(m1, x[r, j + 1])
        m2 = max(m2, x[r, j + 2])
        m3 = max(m3, x[r, j + 3])
        m4 = max(m4, x[r, j + 4])
        m5 = max(m5, x[r, j + 5])
        m6 = max(m6, x[r, j + 6])
        m7 = max(m7, x[r, j + 7])
        j += 8
    m = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for k in range(j, n):
        m = max(m, x[r, k])
    return m


@njit(cache=True, error_model="numpy")
def _row_max(x, r):  # x (R, C) -> max of row r
    return _row_max_n(x, r, x.shape[1])


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_sum(a, r):  # a (R, C) -> float64 sum of row r, in any order
    s = 0.0
    for j in range(a.shape[1]):
        s += a[r, j]
    return s


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_dot(a, b, r):  # a (R, C), b (R, C) -> float64 sum of a[r] * b[r], in any order
    s = 0.0
    for j in range(a.shape[1]):
        s += np.float64(a[r, j]) * b[r, j]
    return s


@njit(cache=True, error_model="numpy")
def _softmax_row(x, y, r):  # x (R, C) -> y (R, C), row r
    m = _row_max(x, r)
    for j in range(x.shape[1]):
        y[r, j] = exp(x[r, j] - m)
    inv = y.dtype.type(1.0 / _row_sum(y, r))  # in y's type: a float64 factor halves the lanes
    for j in range(x.shape[1]):
        y[r, j] = y[r, j] * inv


@njit(cache=True, error_model="numpy")
def _log_softmax_row(x, y, r):  # x (R, C) -> y (R, C), row r
    m = _row_max(x, r)
    for j in range(x.shape[1]):
        y[r, j] = exp(x[r, j] - m)  # scratch: only their sum is needed
    shift = m + math.log(_row_sum(y, r))  # log-sum-exp of the row
    for j in range(x.shape[1]):
        y[r, j] = x[r, j] - shift


@njit(cache=True, error_model="numpy")
def _softmax_backward_row(g, y, dx, r):  # g (R, C), y (R, C) -> dx (R, C), row r
    dot = _row_dot(g, y, r)
    for j in range(g.shape[1]):
        dx[r, j] = y[r, j] * (g[r, j] - dot)


@njit(cache=True, error_model="numpy")
def _log_softmax_backward_row(g, y, dx, r):  # g (R, C), y (R, C) -> dx (R, C), row r
    total = _row_sum(g, r)
    for j in range(g.shape[1]):
        dx[r, j] = g[r, j] - exp(y[r, j]) * total


# --- softmax ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _softmax_forward(x, y):  # x (R, C) -> y (R, C)
    if x.size < PARALLEL_MIN_HEAVY or x.shape[0] == 1:
        for r in range(x.shape[0]):
            _softmax_row(x, y, r)
    else:
        for r in prange(x.shape[0]):
            _softmax_row(x, y, r)


@njit(parallel=True, cache=True, error_model="numpy")
def _softmax_backward(g, y, dx):  # g (R, C), y (R, C) -> dx (R, C)
    if g.size < PARALLEL_MIN or g.shape[0] == 1:
        for r in range(g.shape[0]):
            _softmax_backward_row(g, y, dx, r)
    else:
        for r in prange(g.shape[0]):
            _softmax_backward_row(g, y, dx, r)


def softmax_forward(x: Any, axis: int = -1) -> Any:
    """y = exp(x - max) / sum(exp(x - max)) along axis; x (..., C) -> y (..., C)."""
    if not _last_axis(x, axis):
        return NotImplemented
    classes = x.shape[-1]
    y = np.empty(x.shape, x.dtype)
    _softmax_forward(x.reshape(-1, classes), y.reshape(-1, classes))  # (R, C)
    return y


def softmax_backward(g: Any, y: Any, axis: int = -1) -> Any:
    """dx = y * (g - sum(g * y)) along axis, y the forward output; g, y (..., C) -> dx."""
    if not (_last_axis(g, axis) and g.dtype is y.dtype and g.shape == y.shape):
        return NotImplemented
    classes = g.shape[-1]
    dx = np.empty(g.shape, g.dtype)
    _softmax_backward(g.reshape(-1, classes), y.reshape(-1, classes), dx.reshape(-1, classes))
    return dx


# --- log-softmax --------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _log_softmax_forward(x, y):  # x (R, C) -> y (R, C)
    if x.size < PARALLEL_MIN_HEAVY or x.shape[0] == 1:
        for r in range(x.shape[0]):
            _log_softmax_row(x, y, r)
    else:
        for r in prange(x.shape[0]):
            _log_softmax_row(x, y, r)


@njit(parallel=True, cache=True, error_model="numpy")
def _log_softmax_backward(g, y, dx):  # g (R, C), y (R, C) -> dx (R, C)
    if g.size < PARALLEL_MIN_HEAVY or g.shape[0] == 1:
        for r in range(g.shape[0]):
            _log_softmax_backward_row(g, y, dx, r)
    else:
        for r in prange(g.shape[0]):
            _log_softmax_backward_row(g, y, dx, r)


def log_softmax_forward(x: Any, axis: int = -1) -> Any:
    """y = x - max - log(sum(exp(x - max))) along axis; x (..., C) -> y (..., C)."""
    if not _last_axis(x, axis):
        return NotImplemented
    classes = x.shape[-1]
    y = np.empty(x.shape, x.dtype)
    _log_softmax_forward(x.reshape(-1, classes), y.reshape(-1, classes))  # (R, C)
    return y


def log_softmax_backward(g: Any, y: Any, axis: int = -1) -> Any:
    """dx = g - exp(y) * sum(g) along axis, y the forward output; g, y (..., C) -> dx."""
    if g.size < 4 * _common.SMALL_TO_REFERENCE or not (
        _last_axis(g, axis) and g.dtype is y.dtype and g.shape == y.shape
    ):  # small: NumPy's SIMD exp wins (Numba's exp here is ~4x slower per element)
        return NotImplemented
    classes = g.shape[-1]
    dx = np.empty(g.shape, g.dtype)
    _log_softmax_backward(g.reshape(-1, classes), y.reshape(-1, classes), dx.reshape(-1, classes))
    return dx


# --- softmax + cross-entropy, fused -------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _cross_entropy_row(x, labels, d, r):  # x (N, C), labels (N,) -> d (N, C); row r's loss
    n, classes = x.shape
    k = labels[r] + classes if labels[r] < 0 else labels[r]  # negative labels count from the end
    if k < 0 or k >= classes:
        for j in range(classes):
            d[r, j] = np.nan
        return np.nan  # the wrapper turns a NaN loss with a bad label into IndexError
    m = _row_max(x, r)
    for j in range(classes):
        d[r, j] = exp(x[r, j] - m)
    s = _row_sum(d, r)
    scale = d.dtype.type(1.0 / (s * n))  # softmax / N in one multiply, in d's type
    for j in range(classes):
        d[r, j] = d[r, j] * scale
    d[r, k] = d[r, k] - 1.0 / n
    return (m - x[r, k]) + math.log(s)  # logsumexp(x[r]) - x[r, label]


@njit(parallel=True, cache=True, error_model="numpy")
def _softmax_cross_entropy(logits, labels, dlogits):  # logits (N, C), labels (N,) -> dlogits
    n = logits.shape[0]
    row_loss = np.empty(n)  # float64; summed in row order below, whatever the thread count
    if logits.size < PARALLEL_MIN_HEAVY or n == 1:
        for r in range(n):
            row_loss[r] = _cross_entropy_row(logits, labels, dlogits, r)
    else:
        for r in prange(n):
            row_loss[r] = _cross_entropy_row(logits, labels, dlogits, r)
    total = 0.0
    for r in range(n):
        total += row_loss[r]
    return total


def softmax_cross_entropy_forward(logits: Any, labels: Any) -> tuple[Any, Any]:
    """(mean over rows of logsumexp(x) - x[label], (softmax(x) - onehot(labels)) / N) for
    logits (N, C) and integer labels (N,); the loss is a 0-d array of logits.dtype."""
    dt = logits.dtype
    if not (
        is_float(dt)
        and logits.ndim == 2
        and logits.shape[1] > 0
        and labels.dtype.kind in "iu"
        and labels.shape == logits.shape[:1]
    ):
        return NotImplemented
    n, classes = logits.shape
    dlogits = np.empty(logits.shape, dt)
    total = _softmax_cross_entropy(logits, np.ascontiguousarray(labels, dtype=np.intp), dlogits)
    if not math.isfinite(total):
        _check_labels(labels, classes)  # a NaN from a bad label, not from the logits
    return np.array(total / max(n, 1), dtype=dt), dlogits


def _check_labels(labels: Any, classes: int) -> None:
    bad = labels[(labels < -classes) | (labels >= classes)]
    if bad.size:
        raise IndexError(f"index {bad[0]} is out of bounds for axis 1 with size {classes}")


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal((4, 8)).astype(dtype)  # (R, C)


KERNELS = {
    "softmax_forward": lambda dt: (_example(dt), -1),
    "softmax_backward": lambda dt: (_example(dt), _example(dt), -1),
    "log_softmax_forward": lambda dt: (_example(dt), -1),
    "log_softmax_backward": lambda dt: (_example(dt), _example(dt), -1),
    "softmax_cross_entropy_forward": lambda dt: (_example(dt), np.arange(4) % 8),
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
