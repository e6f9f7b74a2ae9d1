"""Activation kernels on the GPU: relu, tanh, sigmoid, gelu (tanh form), softplus forward/backward,
and the fused bias + activation after a dense layer's matmul.

Same names, signatures and maths as the references in tinygrad_lab/ops/elementwise.py and
ops/linalg.py (and the CPU kernels of kernels/activations.py). Shapes: N elements (any shape,
flattened), O output features. One grid-stride kernel per direction, the activation a runtime
code (the branch is uniform across the grid, so it costs nothing next to the memory traffic).
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels.cuda._common import (
    NULL,
    CudaSource,
    grid,
    i32,
    i64,
    is_cuda_float,
    launch,
    scalar,
    warm_up_arrays,
)

GELU_K = 0.7978845608028654  # sqrt(2/pi), the reference's constant
GELU_C = 0.044715

CODES = {None: 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "softplus": 5}
"""activation name -> the kernel's code; bias_act_forward takes those up to gelu."""

CODE = r"""
#define GELU_K 0.7978845608028654
#define GELU_C 0.044715

template <typename T> __device__ __forceinline__ T act_value(T v, int act, T beta, T threshold) {
    switch (act) {
    case 1: return v < T(0) ? T(0) : v;  // keeps NaN, as maximum(x, 0)
    case 2: return tanh(v);
    case 3: return sigmoid_of(v);
    case 4: return T(0.5) * v * (T(1) + tanh(T(GELU_K) * (v + T(GELU_C) * (v * v * v))));
    case 5: {
        const T z = beta * v;  // log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
        return z > threshold ? v : ((z > T(0) ? z : T(0)) + log1p(exp(-fabs(z)))) / beta;
    }
    default: return v;
    }
}

// dx for upstream g; k is the forward output (relu, tanh, sigmoid) or input (gelu, softplus)
template <typename T> __device__ __forceinline__ T act_grad(T g, T k, int act, T beta,
                                                           T threshold) {
    switch (act) {
    case 1: return g * (k > T(0) ? T(1) : T(0));  // g * mask: inf * 0 is NaN, as NumPy
    case 2: return g * (T(1) - k * k);
    case 3: return g * k * (T(1) - k);
    case 4: {
        const T t = tanh(T(GELU_K) * (k + T(GELU_C) * (k * k * k)));
        const T dt = (T(1) - t * t) * T(GELU_K) * (T(1) + T(3 * GELU_C) * k * k);
        return g * (T(0.5) * (T(1) + t) + T(0.5) * k * dt);
    }
    case 5: {
        const T z = beta * k;
        return z > threshold ? g : g * sigmoid_of(z);
    }
    default: return g;
    }
}

// x (N,) -> y (N,)
template <typename T>
__global__ void act_forward(const T* __restrict__ x, T* __restrict__ y, long long n, int act,
                            T beta, T threshold) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = act_value(x[i], act, beta, threshold);
}

// g (N,), k (N,) -> dx (N,)
template <typename T>
__global__ void act_backward(const T* __restrict__ g, const T* __restrict__ k, T* __restrict__ dx,
                             long long n, int act, T beta, T threshold) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        dx[i] = act_grad(g[i], k[i], act, beta, threshold);
}

// y (R, O) in place = act(y + b), b (O,) or null
template <typename T>
__global__ void bias_act(T* __restrict__ y, const T* __restrict__ b, long long n, int o,
                         int act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T v = b != nullptr ? y[i] + b[i % o] : y[i];
        y[i] = act_value(v, act, T(1), T(20));
    }
}
"""

SOURCE = CudaSource("activations", CODE, ("act_forward", "act_backward", "bias_act"))


def _forward(x: Any, act: int, beta: float = 1.0, threshold: float = 20.0) -> Any:
    if not is_cuda_float(x):
        return NotImplemented
    import cupy

    y = cupy.empty(x.shape, x.dtype)
    if x.size:
        launch(SOURCE, "act_forward", x.dtype, grid(x.size), 256,
               (x, y, i64(x.size), i32(act), scalar(x.dtype, beta), scalar(x.dtype, threshold)))
    return y


def _backward(g: Any, k: Any, act: int, beta: float = 1.0, threshold: float = 20.0) -> Any:
    if not (is_cuda_float(g, k) and g.shape == k.shape):
        return NotImplemented
    import cupy

    dx = cupy.empty(g.shape, g.dtype)
    if g.size:
        launch(SOURCE, "act_backward", g.dtype, grid(g.size), 256,
               (g, k, dx, i64(g.size), i32(act), scalar(g.dtype, beta), scalar(g.dtype, threshold)))
    return dx


def relu_forward(x: Any) -> Any:
    """y = max(x, 0); x (...) -> y (...), a new array."""
    return _forward(x, CODES["relu"])


def relu_backward(g: Any, y: Any) -> Any:
    """dx = g * (y > 0), y the forward output."""
    return _backward(g, y, CODES["relu"])


def tanh_forward(x: Any) -> Any:
    """y = tanh(x)."""
    return _forward(x, CODES["tanh"])


def tanh_backward(g: Any, y: Any) -> Any:
    """dx = g * (1 - y**2), y the forward output."""
    return _backward(g, y, CODES["tanh"])


def sigmoid_forward(x: Any) -> Any:
    """y = 1 / (1 + exp(-x)), without overflow for large abs(x)."""
    return _forward(x, CODES["sigmoid"])


def sigmoid_backward(g: Any, y: Any) -> Any:
    """dx = g * y * (1 - y), y the forward output."""
    return _backward(g, y, CODES["sigmoid"])


def gelu_forward(x: Any) -> Any:
    """y = 0.5 x (1 + tanh(k (x + 0.044715 x**3))), k = sqrt(2/pi)."""
    return _forward(x, CODES["gelu"])


def gelu_backward(g: Any, x: Any) -> Any:
    """dx = g * gelu'(x), x the forward *input*."""
    return _backward(g, x, CODES["gelu"])


def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """y = log(1 + exp(beta x)) / beta, y = x where beta x > threshold."""
    return _forward(x, CODES["softplus"], beta, threshold)


def softplus_backward(g: Any, x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """dx = g * sigmoid(beta x), g where beta x > threshold; x the forward *input*."""
    return _backward(g, x, CODES["softplus"], beta, threshold)


def bias_act_forward(y: Any, b: Any, activation: str | None) -> Any:
    """act(y + b) for y (..., O) fresh from a matmul, b (O,) or None; activation None, 'relu',
    'tanh', 'sigmoid' or 'gelu' (NotImplemented for the others: the reference runs them). Writes
    into y and returns it."""
    code = CODES.get(activation, -1)
    if (
        not 0 <= code <= CODES["gelu"]
        or not is_cuda_float(y)
        or y.ndim == 0
        or y.size == 0
        or (b is not None and not (is_cuda_float(y, b) and b.shape == (y.shape[-1],)))
    ):
        return NotImplemented
    if b is None and code == 0:
        return y
    launch(SOURCE, "bias_act", y.dtype, grid(y.size), 256,
           (y, b if b is not None else NULL, i64(y.size), i32(y.shape[-1]), i32(code)))
    return y


# --- the kernels this module registers, each with small warm-up arguments (CuPy arrays) ---------
def _example(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (4, 8))[0]  # (R, O)


KERNELS = {
    "relu_forward": lambda dt: (_example(dt),),
    "relu_backward": lambda dt: (_example(dt), _example(dt)),
    "tanh_forward": lambda dt: (_example(dt),),
    "tanh_backward": lambda dt: (_example(dt), _example(dt)),
    "sigmoid_forward": lambda dt: (_example(dt),),
    "sigmoid_backward": lambda dt: (_example(dt), _example(dt)),
    "gelu_forward": lambda dt: (_example(dt),),
    "gelu_backward": lambda dt: (_example(dt), _example(dt)),
    "softplus_forward": lambda dt: (_example(dt), 1.0, 20.0),
    "softplus_backward": lambda dt: (_example(dt), _example(dt), 1.0, 20.0),
    "bias_act_forward": lambda dt: (_example(dt), _example(dt)[0], "gelu"),
}
"""name -> (dtype -> arguments of one small call): collected into CUDA_KERNELS, as the CPU
modules' are into CPU_KERNELS; `tinygrad-lab kernels --device cuda --warm` compiles each."""
