"""Fused optimizer updates on the GPU: one pass over param, grad and state, in place.

Same names, signatures and maths as the references in tinygrad_lab/optim.py (PyTorch's
single-tensor updates) and the CPU kernels of kernels/optim.py: `sgd_step`, `adam_step`,
`adamw_step`, `rmsprop_step`, `adagrad_step` update one parameter per launch.

The multi-tensor updates `sgd_multi_step`, `adam_multi_step` and `adamw_multi_step` take lists
(params, grads, states) and update every parameter of the group in ONE launch, as PyTorch's
`foreach`/`fused` paths do: a table of device pointers (one column per tensor) and a table of
(tensor, first element) per block, built on the host and copied over with each call, let every
block find its chunk. The optimizers call them through `Optimizer.step` when the device has
them (tinygrad_lab/optim.py); a GPT-2 small has ~150 parameter tensors, so this replaces ~150
launches (and their Python overhead) with one.

Scalars arrive as Python numbers and are cast to the param's dtype, so float32 params are updated
in float32 maths. Arrays updated in place must be C-contiguous CuPy arrays of the param's dtype;
for anything else a step returns NotImplemented and the reference runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

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

CHUNK = 1 << 16  # elements per block of the multi-tensor kernels (grid-stride inside)

CODE = r"""
template <typename T> struct AdamArgs {
    T b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps, wd, decay;
    int l2, decoupled;
};

template <typename T>
__device__ __forceinline__ void adam_one(T* p, const T* g, T* m, T* v, long long i, T b1, T b2,
                                         T one_b1, T one_b2, T step_size, T bc2_sqrt, T eps, T wd,
                                         T decay, int l2, int decoupled) {
    T pi = p[i], gi = g[i];
    if (l2) gi = gi + wd * pi;          // Adam: L2 decay through the gradient
    if (decoupled) pi = pi * decay;     // AdamW: p *= 1 - lr wd, before the update
    const T mi = b1 * m[i] + one_b1 * gi;
    const T vi = b2 * v[i] + one_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step_size * (mi / (sqrt(vi) / bc2_sqrt + eps));
}

template <typename T>
__device__ __forceinline__ void sgd_one(T* p, const T* g, T* b, long long i, T lr, T mom,
                                        T damp1, T wd, int l2, int use_mom, int nesterov,
                                        int first_step) {
    T d = g[i];
    if (l2) d = d + wd * p[i];
    if (use_mom) {
        const T bi = first_step ? d : mom * b[i] + damp1 * d;  // PyTorch: first buffer is g
        b[i] = bi;
        d = nesterov ? d + mom * bi : bi;
    }
    p[i] = p[i] - lr * d;
}

// param, grad, m, v (N,)
template <typename T>
__global__ void adam_step(T* p, const T* g, T* m, T* v, long long n, T b1, T b2, T one_b1,
                          T one_b2, T step_size, T bc2_sqrt, T eps, T wd, T decay, int l2,
                          int decoupled) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        adam_one(p, g, m, v, i, b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps, wd, decay, l2,
                 decoupled);
}

// param, grad (N,), velocity (N,) or null when momentum == 0
template <typename T>
__global__ void sgd_step(T* p, const T* g, T* b, long long n, T lr, T mom, T damp1, T wd, int l2,
                         int use_mom, int nesterov, int first_step) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        sgd_one(p, g, b, i, lr, mom, damp1, wd, l2, use_mom, nesterov, first_step);
}

// param, grad, square_avg (N,), buf (N,) or null when momentum == 0
template <typename T>
__global__ void rmsprop_step(T* p, const T* g, T* sq, T* buf, long long n, T lr, T alpha,
                             T one_alpha, T eps, T mom, T wd, int l2, int use_mom) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T gi = g[i];
        if (l2) gi = gi + wd * p[i];
        const T s = alpha * sq[i] + one_alpha * gi * gi;
        sq[i] = s;
        T step = gi / (sqrt(s) + eps);
        if (use_mom) {
            step = mom * buf[i] + step;
            buf[i] = step;
        }
        p[i] = p[i] - lr * step;
    }
}

// param, grad, sum_sq (N,)
template <typename T>
__global__ void adagrad_step(T* p, const T* g, T* sum_sq, long long n, T lr, T eps, T wd,
                             int l2) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        T gi = g[i];
        if (l2) gi = gi + wd * p[i];
        const T s = sum_sq[i] + gi * gi;
        sum_sq[i] = s;
        p[i] = p[i] - lr * (gi / (sqrt(s) + eps));
    }
}

// Multi-tensor: ptrs (4, K) = addresses of param, grad, m, v of K tensors; sizes (K,);
// block b updates elements start[b] .. start[b] + chunk of tensor tensor_of[b].
template <typename T>
__global__ void adam_multi_step(const unsigned long long* __restrict__ ptrs,
                                const long long* __restrict__ sizes,
                                const int* __restrict__ tensor_of,
                                const long long* __restrict__ start, int k, int chunk, T b1,
                                T b2, T one_b1, T one_b2, T step_size, T bc2_sqrt, T eps, T wd,
                                T decay, int l2, int decoupled) {
    const int t = tensor_of[blockIdx.x];
    T* p = reinterpret_cast<T*>(ptrs[t]);
    const T* g = reinterpret_cast<const T*>(ptrs[k + t]);
    T* m = reinterpret_cast<T*>(ptrs[2 * k + t]);
    T* v = reinterpret_cast<T*>(ptrs[3 * k + t]);
    const long long end = min(sizes[t], start[blockIdx.x] + chunk);
    for (long long i = start[blockIdx.x] + threadIdx.x; i < end; i += blockDim.x)
        adam_one(p, g, m, v, i, b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps, wd, decay, l2,
                 decoupled);
}

// ptrs (3, K) = addresses of param, grad, velocity (0 when momentum == 0)
template <typename T>
__global__ void sgd_multi_step(const unsigned long long* __restrict__ ptrs,
                               const long long* __restrict__ sizes,
                               const int* __restrict__ tensor_of,
                               const long long* __restrict__ start, int k, int chunk, T lr, T mom,
                               T damp1, T wd, int l2, int use_mom, int nesterov, int first_step) {
    const int t = tensor_of[blockIdx.x];
    T* p = reinterpret_cast<T*>(ptrs[t]);
    const T* g = reinterpret_cast<const T*>(ptrs[k + t]);
    T* b = reinterpret_cast<T*>(ptrs[2 * k + t]);
    const long long end = min(sizes[t], start[blockIdx.x] + chunk);
    for (long long i = start[blockIdx.x] + threadIdx.x; i < end; i += blockDim.x)
        sgd_one(p, g, b, i, lr, mom, damp1, wd, l2, use_mom, nesterov, first_step);
}
"""

SOURCE = CudaSource("optim", CODE, ("adam_step", "sgd_step", "rmsprop_step", "adagrad_step",
                                    "adam_multi_step", "sgd_multi_step"))


def _fits(param: Any, grad: Any, *states: Any) -> bool:
    """param, grad and states: contiguous CuPy arrays of one float dtype and one shape."""
    return is_cuda_float(param, grad, *states) and all(
        a.shape == param.shape for a in (grad, *states))


def _grad_of(param: Any, grad: Any) -> Any:
    """grad in the param's dtype and layout (a copy only when it is not already)."""
    if type(grad).__module__.startswith("cupy") and grad.shape == param.shape:
        import cupy

        return cupy.ascontiguousarray(grad, dtype=param.dtype)
    return grad


def _adam_scalars(dt: Any, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, step: int, decoupled: bool) -> tuple[Any, ...]:
    """The T scalars and int flags after the arrays of adam_step / adam_multi_step."""
    t = lambda v: scalar(dt, v)  # noqa: E731
    step_size = lr / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    return (t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2), t(step_size), t(bc2_sqrt),
            t(eps), t(weight_decay), t(1.0 - lr * weight_decay),
            i32(weight_decay != 0 and not decoupled), i32(decoupled))


def _adam(param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float,
          eps: float, weight_decay: float, step: int, decoupled: bool) -> Any:
    grad = _grad_of(param, grad)
    if not _fits(param, grad, m, v):
        return NotImplemented
    if param.size:
        launch(SOURCE, "adam_step", param.dtype, grid(param.size), 256,
               (param, grad, m, v, i64(param.size),
                *_adam_scalars(param.dtype, lr, beta1, beta2, eps, weight_decay, int(step),
                               decoupled)))
    return None


def adam_step(
    param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, step: int,
) -> Any:
    """Adam with bias correction, `step` the 1-based count of this update; g = grad + wd p;
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    return _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, False)


def adamw_step(
    param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, step: int,
) -> Any:
    """AdamW: p *= 1 - lr wd first (decoupled decay), then the Adam update without L2."""
    return _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, True)


def _sgd_scalars(dt: Any, lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool, first_step: bool) -> tuple[Any, ...]:
    return (scalar(dt, lr), scalar(dt, momentum), scalar(dt, 1.0 - dampening),
            scalar(dt, weight_decay), i32(weight_decay != 0), i32(momentum != 0),
            i32(bool(nesterov)), i32(bool(first_step)))


def sgd_step(
    param: Any, grad: Any, velocity: Any, lr: float, momentum: float, dampening: float,
    weight_decay: float, nesterov: bool, first_step: bool,
) -> Any:
    """g = grad + wd p;  v = g (first step) or momentum v + (1 - dampening) g;
    g = g + momentum v (Nesterov) or v;  p -= lr g.  velocity may be empty when momentum == 0."""
    grad = _grad_of(param, grad)
    use_mom = momentum != 0
    if not _fits(param, grad, *((velocity,) if use_mom else ())):
        return NotImplemented
    if param.size:
        launch(SOURCE, "sgd_step", param.dtype, grid(param.size), 256,
               (param, grad, velocity if use_mom else NULL, i64(param.size),
                *_sgd_scalars(param.dtype, lr, momentum, dampening, weight_decay, nesterov,
                              first_step)))
    return None


def rmsprop_step(
    param: Any, grad: Any, square_avg: Any, lr: float, alpha: float, eps: float,
    weight_decay: float, momentum: float, buf: Any,
) -> Any:
    """g = grad + wd p;  s = alpha s + (1 - alpha) g^2;  a = sqrt(s) + eps;
    b = momentum b + g / a, p -= lr b (momentum > 0), else p -= lr g / a."""
    grad = _grad_of(param, grad)
    use_mom = momentum != 0
    if not _fits(param, grad, square_avg, *((buf,) if use_mom else ())):
        return NotImplemented
    if param.size:
        t = lambda v: scalar(param.dtype, v)  # noqa: E731
        launch(SOURCE, "rmsprop_step", param.dtype, grid(param.size), 256,
               (param, grad, square_avg, buf if use_mom else NULL, i64(param.size), t(lr),
                t(alpha), t(1.0 - alpha), t(eps), t(momentum), t(weight_decay),
                i32(weight_decay != 0), i32(use_mom)))
    return None


def adagrad_step(
    param: Any, grad: Any, sum_sq: Any, lr: float, eps: float, weight_decay: float
) -> Any:
    """g = grad + wd p;  s += g^2;  p -= lr g / (sqrt(s) + eps)."""
    grad = _grad_of(param, grad)
    if not _fits(param, grad, sum_sq):
        return NotImplemented
    if param.size:
        t = lambda v: scalar(param.dtype, v)  # noqa: E731
        launch(SOURCE, "adagrad_step", param.dtype, grid(param.size), 256,
               (param, grad, sum_sq, i64(param.size), t(lr), t(eps), t(weight_decay),
                i32(weight_decay != 0)))
    return None


# --- multi-tensor -------------------------------------------------------------------------------
def _tables(columns: list[list[Any]]) -> tuple[Any, Any, Any, Any, int] | None:
    """Device tables for one multi-tensor launch over K tensors: pointers (len(columns), K) (0
    for an empty state), sizes (K,), and per block its tensor and first element; None when
    there is nothing to update."""
    import cupy

    params = columns[0]
    sizes = np.array([p.size for p in params], np.int64)
    chunks = -(-sizes // CHUNK)  # blocks per tensor
    if not chunks.sum():
        return None
    tensor_of = np.repeat(np.arange(len(params), dtype=np.int32), chunks)
    first = np.concatenate([np.arange(c, dtype=np.int64) * CHUNK for c in chunks])
    ptrs = np.array([[a.data.ptr if a.size else 0 for a in col] for col in columns], np.uint64)
    return (cupy.asarray(ptrs), cupy.asarray(sizes), cupy.asarray(tensor_of),
            cupy.asarray(first), int(chunks.sum()))


def _by_step(steps: Any, count: int) -> dict[int, list[int]]:
    """Tensor indices grouped by step count (one launch per distinct count, usually one)."""
    steps = [int(steps)] * count if isinstance(steps, (int, np.integer)) else [int(s)
                                                                             for s in steps]
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(steps):
        groups.setdefault(s, []).append(i)
    return groups


def _launch_multi(kernel: str, dt: Any, columns: list[list[Any]], groups: dict[int, list[int]],
                  scalars: Callable[[int], tuple[Any, ...]]) -> None:
    """One launch of the multi-tensor `kernel` per group of tensor indices (those sharing a
    step count or first-step flag, `groups` from _by_step), over those tensors of each of the
    `columns` (params, grads, states); `scalars(key)` are that group's scalar arguments."""
    for key, idx in groups.items():
        tables = _tables([[col[i] for i in idx] for col in columns])
        if tables is None:
            continue
        ptrs, sizes, tensor_of, first, blocks = tables
        launch(SOURCE, kernel, dt, blocks, 256,
               (ptrs, sizes, tensor_of, first, i32(len(idx)), i32(CHUNK), *scalars(key)))


def _adam_multi(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any], lr: float,
                beta1: float, beta2: float, eps: float, weight_decay: float, steps: Any,
                decoupled: bool) -> Any:
    if not params or not (len(params) == len(grads) == len(ms) == len(vs)):
        return NotImplemented
    grads = [_grad_of(p, g) for p, g in zip(params, grads)]
    dt = params[0].dtype
    if not all(_fits(p, g, m, v) and p.dtype == dt for p, g, m, v in zip(params, grads, ms, vs)):
        return NotImplemented
    _launch_multi("adam_multi_step", dt, [params, grads, ms, vs], _by_step(steps, len(params)),
                  lambda step: _adam_scalars(dt, lr, beta1, beta2, eps, weight_decay, step,
                                             decoupled))
    return None


def adam_multi_step(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any], lr: float,
                    beta1: float, beta2: float, eps: float, weight_decay: float,
                    steps: Any) -> Any:
    """`adam_step` for every (param, grad, m, v) of the lists in one launch (per distinct step
    count); steps: one 1-based count per param, or one for all."""
    return _adam_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, steps, False)


def adamw_multi_step(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any],
                     lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                     steps: Any) -> Any:
    """`adamw_step` for every (param, grad, m, v) of the lists in one launch."""
    return _adam_multi(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, steps, True)


def sgd_multi_step(params: list[Any], grads: list[Any], velocities: list[Any], lr: float,
                   momentum: float, dampening: float, weight_decay: float, nesterov: bool,
                   first_steps: Any) -> Any:
    """`sgd_step` for every (param, grad, velocity) of the lists in one launch (per distinct
    first-step flag); first_steps: one flag per param, or one for all."""
    if not params or not (len(params) == len(grads) == len(velocities)):
        return NotImplemented
    grads = [_grad_of(p, g) for p, g in zip(params, grads)]
    dt = params[0].dtype
    use_mom = momentum != 0
    if not all(_fits(p, g, *((b,) if use_mom else ())) and p.dtype == dt
               for p, g, b in zip(params, grads, velocities)):
        return NotImplemented
    flags = first_steps if isinstance(first_steps, (list, tuple)) else [first_steps] * len(params)
    _launch_multi("sgd_multi_step", dt, [params, grads, velocities],
                  _by_step([int(bool(f)) for f in flags], len(params)),
                  lambda first: _sgd_scalars(dt, lr, momentum, dampening, weight_decay, nesterov,
                                             bool(first)))
    return None


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(dtype: Any, n: int = 2) -> list[Any]:
    """A parameter, its gradient, and n - 2 zeroed state arrays, all (32,)."""
    import cupy

    return warm_up_arrays(dtype, (32,), (32,)) + [cupy.zeros(32, dtype) for _ in range(n - 2)]


def _group(dtype: Any, n: int) -> list[list[Any]]:
    """Two parameters' worth of _example, as the lists of a multi-tensor step."""
    first, second = _example(dtype, n), _example(dtype, n)
    return [[a, b] for a, b in zip(first, second)]


KERNELS = {
    "sgd_step": lambda dt: (*_example(dt, 3), 0.1, 0.9, 0.0, 0.0, False, False),
    "adam_step": lambda dt: (*_example(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1),
    "adamw_step": lambda dt: (*_example(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.01, 1),
    "rmsprop_step": lambda dt: (*_example(dt, 3), 1e-2, 0.99, 1e-8, 0.0, 0.9, _example(dt, 3)[2]),
    "adagrad_step": lambda dt: (*_example(dt, 3), 1e-2, 1e-10, 0.0),
    "sgd_multi_step": lambda dt: (*_group(dt, 3), 0.1, 0.9, 0.0, 0.0, False, [True, True]),
    "adam_multi_step": lambda dt: (*_group(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.0, [1, 1]),
    "adamw_multi_step": lambda dt: (*_group(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.01, [1, 1]),
}
"""name -> (dtype -> arguments of one small call; fresh, the steps work in place)."""
