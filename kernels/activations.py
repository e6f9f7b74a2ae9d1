"""Activation kernels: relu, tanh, sigmoid, gelu, softplus as forward/backward pairs, and the fused
bias + activation that follows a dense layer's matmul.

Same maths as the references in tinygrad_lab/ops/elementwise.py and ops/linalg.py. Shapes: N
elements (an input of any shape, flattened), R rows, O output features. Each `_name` kernel is a
thread-parallel loop above a size threshold and a plain loop below it, in one compiled function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels import _common
from tinygrad_lab.kernels._common import (
    F32,
    F64,
    PARALLEL_MIN_HEAVY,
    PARALLEL_MIN_ONE_PASS,
    is_float,
)
from tinygrad_lab.kernels._math import exp, log1p, tanh

GELU_K = float(np.sqrt(2.0 / np.pi))  # the reference's constant, sqrt(2/pi)
GELU_C = 0.044715


# --- per-element maths, shared by the serial and parallel loops ---------------------------------
# Constants are made in the element's own type: in Numba, float32 * 0.5 would be float64 maths.
@njit(cache=True, error_model="numpy")
def _relu(v):
    # `v < 0 ? 0 : v` keeps NaN (and -0.0), as np.maximum(x, 0) does
    return type(v)(0) if v < 0 else v


@njit(cache=True, error_model="numpy")
def _sigmoid(v):
    one = type(v)(1)
    e = exp(-abs(v))  # exp of a non-positive number only: no overflow
    return one / (one + e) if v >= 0 else e / (one + e)


@njit(cache=True, error_model="numpy")
def _gelu_inner(v):
    # k (x + c x^3), the argument of tanh
    return type(v)(GELU_K) * (v + type(v)(GELU_C) * (v * v * v))


@njit(cache=True, error_model="numpy")
def _gelu_gate(v):
    # 0.5 (1 + tanh(u)) written as sigmoid(2u) = 1 / (1 + exp(-2u)): one exp and one division,
    # no tanh (whose two branches a vector loop must both compute), and no cancellation in
    # 1 + tanh(u) for large negative u. exp overflows to inf there: the gate is then 0.
    one = type(v)(1)
    return one / (one + exp(type(v)(-2) * _gelu_inner(v)))


# --- relu ---------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _relu_forward(x, y):  # x (N,) -> y (N,)
    if x.size < PARALLEL_MIN_ONE_PASS:
        for i in range(x.size):
            y[i] = _relu(x[i])
    else:
        for i in prange(x.size):
            y[i] = _relu(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def _relu_backward(g, y, dx):  # g (N,), y (N,) -> dx (N,)
    one, zero = g.dtype.type(1), g.dtype.type(0)
    if g.size < PARALLEL_MIN_ONE_PASS:
        for i in range(g.size):
            dx[i] = g[i] * (one if y[i] > 0 else zero)  # g * mask: inf * 0 is NaN, as NumPy
    else:
        for i in prange(g.size):
            dx[i] = g[i] * (one if y[i] > 0 else zero)


def relu_forward(x: Any) -> Any:
    """y = max(x, 0); x (...) -> y (...), a new array."""
    if x.size < _common.SMALL_TO_REFERENCE or not is_float(x.dtype):
        return NotImplemented
    y = np.empty(x.shape, x.dtype)
    _relu_forward(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(g: Any, y: Any) -> Any:
    """dx = g * (y > 0), y the forward output; g, y (...) -> dx (...)."""
    if g.size < _common.SMALL_TO_REFERENCE or not (
        is_float(g.dtype) and g.dtype is y.dtype and g.shape == y.shape
    ):
        return NotImplemented
    dx = np.empty(g.shape, g.dtype)
    _relu_backward(g.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


# --- tanh ---------------------------------------------------------------------------------------
# No tanh_forward kernel: NumPy's float32 tanh is one SIMD pass that the Numba loop (with the
# vectorized tanh of _math) does not beat (0.64-0.77x measured on 2 threads), so Tensor.tanh stays
# on the reference. The backward fuses three NumPy passes into one.
@njit(parallel=True, cache=True, error_model="numpy")
def _tanh_backward(g, y, dx):  # g (N,), y (N,) -> dx (N,)
    one = g.dtype.type(1)
    if g.size < PARALLEL_MIN_ONE_PASS:
        for i in range(g.size):
            dx[i] = g[i] * (one - y[i] * y[i])
    else:
        for i in prange(g.size):
            dx[i] = g[i] * (one - y[i] * y[i])


def tanh_backward(g: Any, y: Any) -> Any:
    """dx = g * (1 - y**2), y the forward output; g, y (...) -> dx (...)."""
    if g.size < _common.SMALL_TO_REFERENCE or not (
        is_float(g.dtype) and g.dtype is y.dtype and g.shape == y.shape
    ):
        return NotImplemented
    dx = np.empty(g.shape, g.dtype)
    _tanh_backward(g.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


# --- sigmoid ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _sigmoid_forward(x, y):  # x (N,) -> y (N,)
    if x.size < PARALLEL_MIN_HEAVY:
        for i in range(x.size):
            y[i] = _sigmoid(x[i])
    else:
        for i in prange(x.size):
            y[i] = _sigmoid(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def _sigmoid_backward(g, y, dx):  # g (N,), y (N,) -> dx (N,)
    one = g.dtype.type(1)
    if g.size < PARALLEL_MIN_ONE_PASS:
        for i in range(g.size):
            dx[i] = g[i] * y[i] * (one - y[i])
    else:
        for i in prange(g.size):
            dx[i] = g[i] * y[i] * (one - y[i])


def sigmoid_forward(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), computed without overflow; x (...) -> y (...)."""
    if not is_float(x.dtype):
        return NotImplemented
    y = np.empty(x.shape, x.dtype)
    _sigmoid_forward(x.reshape(-1), y.reshape(-1))
    return y


def sigmoid_backward(g: Any, y: Any) -> Any:
    """dx = g * y * (1 - y), y the forward output; g, y (...) -> dx (...)."""
    if g.size < _common.SMALL_TO_REFERENCE or not (
        is_float(g.dtype) and g.dtype is y.dtype and g.shape == y.shape
    ):
        return NotImplemented
    dx = np.empty(g.shape, g.dtype)
    _sigmoid_backward(g.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


# --- gelu (tanh approximation) ------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _gelu_forward(x, y):  # x (N,) -> y (N,)
    if x.size < PARALLEL_MIN_HEAVY:
        for i in range(x.size):
            y[i] = x[i] * _gelu_gate(x[i])
    else:
        for i in prange(x.size):
            y[i] = x[i] * _gelu_gate(x[i])


@njit(cache=True, error_model="numpy")
def _gelu_grad(g, v):
    # with s = sigmoid(2u) = 0.5 (1 + tanh(u)): d/dx [x s] = s + x s (1 - s) 2 u',
    # u' = k (1 + 3 c x^2); the same as 0.5 (1 + t) + 0.5 x (1 - t^2) u'
    one = type(v)(1)
    s = _gelu_gate(v)
    du2 = type(v)(2 * GELU_K) * (one + type(v)(3 * GELU_C) * v * v)
    return g * (s + v * s * (one - s) * du2)


@njit(parallel=True, cache=True, error_model="numpy")
def _gelu_backward(g, x, dx):  # g (N,), x (N,) -> dx (N,)
    if g.size < PARALLEL_MIN_HEAVY:
        for i in range(g.size):
            dx[i] = _gelu_grad(g[i], x[i])
    else:
        for i in prange(g.size):
            dx[i] = _gelu_grad(g[i], x[i])


def gelu_forward(x: Any) -> Any:
    """y = 0.5 x (1 + tanh(k (x + 0.044715 x**3))), k = sqrt(2/pi); x (...) -> y (...)."""
    if not is_float(x.dtype):
        return NotImplemented
    y = np.empty(x.shape, x.dtype)
    _gelu_forward(x.reshape(-1), y.reshape(-1))
    return y


def gelu_backward(g: Any, x: Any) -> Any:
    """dx = g * gelu'(x), x the forward *input*; g, x (...) -> dx (...)."""
    if not (is_float(g.dtype) and g.dtype is x.dtype and g.shape == x.shape):
        return NotImplemented
    dx = np.empty(g.shape, g.dtype)
    _gelu_backward(g.reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx


# --- softplus (PyTorch's: x itself where beta x > threshold) ------------------------------------
@njit(cache=True, error_model="numpy")
def _softplus(v, beta, threshold):
    z = beta * v
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): exp of a non-positive number only, no overflow;
    # computed for every z and then selected, so that the loop has no branch and vectorizes
    soft = ((z if z > 0 else type(v)(0)) + log1p(exp(-abs(z)))) / beta
    return v if z > threshold else soft


@njit(parallel=True, cache=True, error_model="numpy")
def _softplus_forward(x, beta, threshold, y):  # x (N,) -> y (N,)
    b, t = x.dtype.type(beta), x.dtype.type(threshold)  # float32 maths for float32 x
    if x.size < PARALLEL_MIN_HEAVY:
        for i in range(x.size):
            y[i] = _softplus(x[i], b, t)
    else:
        for i in prange(x.size):
            y[i] = _softplus(x[i], b, t)


@njit(parallel=True, cache=True, error_model="numpy")
def _softplus_backward(g, x, beta, threshold, dx):  # g (N,), x (N,) -> dx (N,)
    b, t = x.dtype.type(beta), x.dtype.type(threshold)
    if g.size < PARALLEL_MIN_HEAVY:
        for i in range(g.size):
            z = b * x[i]
            dx[i] = g[i] if z > t else g[i] * _sigmoid(z)
    else:
        for i in prange(g.size):
            z = b * x[i]
            dx[i] = g[i] if z > t else g[i] * _sigmoid(z)


def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """y = log(1 + exp(beta x)) / beta, y = x where beta x > threshold; x (...) -> y (...)."""
    if not is_float(x.dtype):
        return NotImplemented
    y = np.empty(x.shape, x.dtype)
    _softplus_forward(x.reshape(-1), float(beta), float(threshold), y.reshape(-1))
    return y


def softplus_backward(g: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """dx = g * sigmoid(beta x), g where beta x > threshold; x the forward *input*."""
    if not (is_float(g.dtype) and g.dtype is x.dtype and g.shape == x.shape):
        return NotImplemented
    dx = np.empty(g.shape, g.dtype)
    _softplus_backward(g.reshape(-1), x.reshape(-1), float(beta), float(threshold),
                       dx.reshape(-1))
    return dx


# --- dense layer epilogue: act(y + b) -----------------------------------------------------------
_ACTIVATION_CODES = {None: 0, "relu": 1, "tanh": 2, "sigmoid": 3}  # others: the reference


@njit(cache=True, error_model="numpy")
def _bias_act_row(row, b, has_bias, act):  # row (O,) in place, b (O,)
    # One sweep per row; `act` and `has_bias` are loop-invariant, so LLVM unswitches the loop.
    for j in range(row.size):
        v = row[j] + b[j] if has_bias else row[j]
        if act == 1:
            v = _relu(v)
        elif act == 2:
            v = tanh(v)
        elif act == 3:
            v = _sigmoid(v)
        row[j] = v


@njit(parallel=True, cache=True, error_model="numpy")
def _bias_act(y, b, has_bias, act):  # y (R, O) in place, b (O,) (ignored unless has_bias)
    limit = PARALLEL_MIN_ONE_PASS if act <= 1 else PARALLEL_MIN_HEAVY
    if y.size < limit or y.shape[0] == 1:
        for r in range(y.shape[0]):
            _bias_act_row(y[r], b, has_bias, act)
    else:
        for r in prange(y.shape[0]):
            _bias_act_row(y[r], b, has_bias, act)


_NO_BIAS = {F32: np.empty(0, F32), F64: np.empty(0, F64)}  # stands in for b=None


def bias_act_forward(y: Any, b: Any, activation: str | None) -> Any:
    """act(y + b) for y (..., O) fresh from a matmul, b (O,) or None; activation None, 'relu',
    'tanh' or 'sigmoid' here (NotImplemented for the others: the reference runs them). Writes into
    y and returns it (a private copy when y is not writable)."""
    dt = y.dtype
    code = _ACTIVATION_CODES.get(activation, -1)
    if (
        code < 0
        or not is_float(dt)
        or y.ndim == 0
        or y.size == 0
        or (b is not None and (b.dtype is not dt or b.shape != (y.shape[-1],)))
    ):
        return NotImplemented
    if b is None and code == 0:
        return y
    if not y.flags.carray:  # not C-contiguous, aligned and writable: work on a copy
        y = np.array(y, dtype=dt, order="C")
    out_features = y.shape[-1]
    has_bias = b is not None
    _bias_act(
        y.reshape(-1, out_features),  # (R, O), a view
        b.reshape(-1) if has_bias else _NO_BIAS[dt],
        has_bias,
        code,
    )
    return y


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal((4, 8)).astype(dtype)  # (R, O)


KERNELS = {
    "relu_forward": lambda dt: (_example(dt),),
    "relu_backward": lambda dt: (_example(dt), _example(dt)),
    "tanh_backward": lambda dt: (_example(dt), _example(dt)),
    "sigmoid_forward": lambda dt: (_example(dt),),
    "sigmoid_backward": lambda dt: (_example(dt), _example(dt)),
    "gelu_forward": lambda dt: (_example(dt),),
    "gelu_backward": lambda dt: (_example(dt), _example(dt)),
    "softplus_forward": lambda dt: (_example(dt), 1.0, 20.0),
    "softplus_backward": lambda dt: (_example(dt), _example(dt), 1.0, 20.0),
    "bias_act_forward": lambda dt: (_example(dt), _example(dt)[0], "relu"),
}
"""name -> (dtype -> arguments of one small call): collected by tinygrad_lab.kernels into
CPU_KERNELS; `tinygrad-lab kernels --warm` compiles each kernel with its arguments."""
