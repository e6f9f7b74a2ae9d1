"""Fused optimizer updates: one pass over param, grad and state, in place, in the param's dtype.

PyTorch semantics (torch.optim's single-tensor paths), same names and signatures as the
references the optimizers in tinygrad_lab/optim.py register. Shapes: N elements (every array
flattened; param, grad and each state array have one shape). Scalars arrive as Python numbers and
are cast to the param's dtype inside the kernel, so float32 params are updated in float32 maths.

Arrays updated in place must be C-contiguous and writable; for anything else (a strided view, a
dtype mismatch) a step returns NotImplemented, and the backend runs the reference of the same
name, which updates views in place correctly. Otherwise a step returns None.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from tinygrad_lab.kernels._common import F32, F64, PARALLEL_MIN, is_float

_NO_STATE = {F32: np.empty(0, F32), F64: np.empty(0, F64)}  # stands in for an unused buffer


def _flat(param: Any, grad: Any, states: tuple[Any, ...]) -> list[Any] | None:
    """param, grad and states as 1-D views the kernel may update, or None (not the kernel's)."""
    dt = param.dtype
    if not (is_float(dt) and param.flags.carray and grad.shape == param.shape):
        return None
    if grad.dtype is not dt:
        grad = grad.astype(dt)
    for s in states:
        if s.dtype is not dt or s.shape != param.shape or not s.flags.carray:
            return None
    return [param.reshape(-1), grad.reshape(-1)] + [s.reshape(-1) for s in states]


# --- SGD (momentum, dampening, Nesterov, L2 weight decay) ---------------------------------------
@njit(cache=True, error_model="numpy")
def _sgd_one(p, g, b, lr, mom, damp1, wd, l2, use_mom, nesterov, first_step):
    if l2:
        g = g + wd * p
    if use_mom:
        b = g if first_step else mom * b + damp1 * g  # PyTorch: the first buffer is g itself
        g = g + mom * b if nesterov else b
    return p - lr * g, b


@njit(parallel=True, cache=True, error_model="numpy")
def _sgd(param, grad, velocity, lr, momentum, dampening, weight_decay, nesterov, first_step):
    # param (N,), grad (N,), velocity (N,) or (0,) when momentum == 0
    t = param.dtype.type
    lr_, mom, damp1, wd = t(lr), t(momentum), t(1.0 - dampening), t(weight_decay)
    l2, use_mom = weight_decay != 0, momentum != 0
    zero = t(0)
    if param.size < PARALLEL_MIN:
        for i in range(param.size):
            b = velocity[i] if use_mom else zero
            param[i], b = _sgd_one(param[i], grad[i], b, lr_, mom, damp1, wd, l2, use_mom,
                                   nesterov, first_step)
            if use_mom:
                velocity[i] = b
    else:
        for i in prange(param.size):
            b = velocity[i] if use_mom else zero
            param[i], b = _sgd_one(param[i], grad[i], b, lr_, mom, damp1, wd, l2, use_mom,
                                   nesterov, first_step)
            if use_mom:
                velocity[i] = b


def sgd_step(
    param: Any, grad: Any, velocity: Any, lr: float, momentum: float, dampening: float,
    weight_decay: float, nesterov: bool, first_step: bool,
) -> Any:
    """g = grad + wd p;  v = g (first step) or momentum v + (1 - dampening) g;
    g = g + momentum v (Nesterov) or v;  p -= lr g.  velocity may be empty when momentum == 0."""
    use_mom = momentum != 0
    flat = _flat(param, grad, (velocity,) if use_mom else ())
    if flat is None:
        return NotImplemented
    p, g = flat[0], flat[1]
    v = flat[2] if use_mom else _NO_STATE[param.dtype]
    _sgd(p, g, v, float(lr), float(momentum), float(dampening), float(weight_decay),
         bool(nesterov), bool(first_step))


# --- Adam and AdamW -----------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    # param, grad, m, v (N,)
    t = param.dtype.type
    bias_correction1 = 1.0 - beta1**step
    step_size = t(lr / bias_correction1)
    bc2_sqrt = t(math.sqrt(1.0 - beta2**step))
    b1, b2, one_b1, one_b2 = t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2)
    eps_, wd = t(eps), t(weight_decay)
    decay = t(1.0 - lr * weight_decay)
    l2 = weight_decay != 0 and not decoupled
    if param.size < PARALLEL_MIN:
        for i in range(param.size):
            param[i], m[i], v[i] = _adam_one(param[i], grad[i], m[i], v[i], b1, b2, one_b1,
                                             one_b2, step_size, bc2_sqrt, eps_, wd, l2,
                                             decoupled, decay)
    else:
        for i in prange(param.size):
            param[i], m[i], v[i] = _adam_one(param[i], grad[i], m[i], v[i], b1, b2, one_b1,
                                             one_b2, step_size, bc2_sqrt, eps_, wd, l2,
                                             decoupled, decay)


@njit(cache=True, error_model="numpy")
def _adam_one(p, g, m, v, b1, b2, one_b1, one_b2, step_size, bc2_sqrt, eps, wd, l2, decoupled,
              decay):
    if l2:
        g = g + wd * p  # Adam: L2 decay through the gradient
    if decoupled:
        p = p * decay  # AdamW: p *= 1 - lr wd, before the update
    m = b1 * m + one_b1 * g
    v = b2 * v + one_b2 * g * g
    denom = np.sqrt(v) / bc2_sqrt + eps
    return p - step_size * (m / denom), m, v


def adam_step(
    param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, step: int,
) -> Any:
    """Adam with bias correction, `step` the 1-based count of this update; g = grad + wd p;
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    flat = _flat(param, grad, (m, v))
    if flat is None:
        return NotImplemented
    _adam(*flat, float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
          int(step), False)


def adamw_step(
    param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, step: int,
) -> Any:
    """AdamW: p *= 1 - lr wd first (decoupled decay), then the Adam update without L2."""
    flat = _flat(param, grad, (m, v))
    if flat is None:
        return NotImplemented
    _adam(*flat, float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
          int(step), True)


# --- RMSprop ------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _rmsprop_one(p, g, sq, b, lr, alpha, one_alpha, eps, mom, wd, l2, use_mom):
    if l2:
        g = g + wd * p
    sq = alpha * sq + one_alpha * g * g
    avg = np.sqrt(sq) + eps
    if use_mom:
        b = mom * b + g / avg
        return p - lr * b, sq, b
    return p - lr * (g / avg), sq, b


@njit(parallel=True, cache=True, error_model="numpy")
def _rmsprop(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum, buf):
    # param, grad, square_avg (N,), buf (N,) or (0,) when momentum == 0
    t = param.dtype.type
    lr_, alpha_, one_alpha, eps_ = t(lr), t(alpha), t(1.0 - alpha), t(eps)
    mom, wd = t(momentum), t(weight_decay)
    l2, use_mom = weight_decay != 0, momentum != 0
    zero = t(0)
    if param.size < PARALLEL_MIN:
        for i in range(param.size):
            b = buf[i] if use_mom else zero
            param[i], square_avg[i], b = _rmsprop_one(param[i], grad[i], square_avg[i], b, lr_,
                                                      alpha_, one_alpha, eps_, mom, wd, l2,
                                                      use_mom)
            if use_mom:
                buf[i] = b
    else:
        for i in prange(param.size):
            b = buf[i] if use_mom else zero
            param[i], square_avg[i], b = _rmsprop_one(param[i], grad[i], square_avg[i], b, lr_,
                                                      alpha_, one_alpha, eps_, mom, wd, l2,
                                                      use_mom)
            if use_mom:
                buf[i] = b


def rmsprop_step(
    param: Any, grad: Any, square_avg: Any, lr: float, alpha: float, eps: float,
    weight_decay: float, momentum: float, buf: Any,
) -> Any:
    """g = grad + wd p;  s = alpha s + (1 - alpha) g^2;  a = sqrt(s) + eps;
    b = momentum b + g / a, p -= lr b (momentum > 0), else p -= lr g / a.  buf may be empty
    when momentum == 0."""
    use_mom = momentum != 0
    flat = _flat(param, grad, (square_avg, buf) if use_mom else (square_avg,))
    if flat is None:
        return NotImplemented
    b = flat[3] if use_mom else _NO_STATE[param.dtype]
    _rmsprop(flat[0], flat[1], flat[2], float(lr), float(alpha), float(eps),
             float(weight_decay), float(momentum), b)


# --- Adagrad ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _adagrad(param, grad, sum_sq, lr, eps, weight_decay):  # param, grad, sum_sq (N,)
    t = param.dtype.type
    lr_, eps_, wd = t(lr), t(eps), t(weight_decay)
    l2 = weight_decay != 0
    if param.size < PARALLEL_MIN:
        for i in range(param.size):
            param[i], sum_sq[i] = _adagrad_one(param[i], grad[i], sum_sq[i], lr_, eps_, wd, l2)
    else:
        for i in prange(param.size):
            param[i], sum_sq[i] = _adagrad_one(param[i], grad[i], sum_sq[i], lr_, eps_, wd, l2)


@njit(cache=True, error_model="numpy")
def _adagrad_one(p, g, s, lr, eps, wd, l2):
    if l2:
        g = g + wd * p
    s = s + g * g
    return p - lr * (g / (np.sqrt(s) + eps)), s


def adagrad_step(
    param: Any, grad: Any, sum_sq: Any, lr: float, eps: float, weight_decay: float
) -> Any:
    """g = grad + wd p;  s += g^2;  p -= lr g / (sqrt(s) + eps)."""
    flat = _flat(param, grad, (sum_sq,))
    if flat is None:
        return NotImplemented
    _adagrad(*flat, float(lr), float(eps), float(weight_decay))


# --- Adam and AdamW over a whole parameter group: one parallel pass -----------------------------
# The tensors' addresses go in as an int64 table (one row per tensor: param, grad, m, v), each
# turned back into an array inside the kernel, so one compiled kernel takes any number of tensors
# and the threads split all their elements in chunks, not one tensor at a time (a per-tensor call
# costs a Python round trip and a thread wake-up each, for the many small biases and gains too).
MULTI_CHUNK = 1 << 15
"""Elements per task of the multi-tensor updates: 32k float32 (4 arrays, 512 KiB) per task."""

MULTI_MIN_TENSORS = 16
"""Groups of fewer tensors take the single-tensor kernel on each: building the address table
costs about what it saves there (measured through the table: the MNIST MLP's 4 tensors, 1-2 %
of its step slower; the CNN's 8, its Adam update 8-11 % slower on 2 threads; a GPT's groups of
17 and 36 tensors, the update 1.16-1.19x faster; 202 tensors of 20M parameters on 2 threads,
1.1-2.6x faster)."""


@intrinsic
def _as_pointer(typingctx, address, like):  # type: ignore[no-untyped-def]
    """The int64 `address` as a pointer to elements of `like`'s dtype (an LLVM inttoptr)."""
    if address != types.int64 or not isinstance(like, types.Array):
        return None
    pointer = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(types.int64, like), codegen


@njit(cache=True, error_model="numpy")
def _adam_multi_chunk(table, sizes, steps, like, lr, beta1, beta2, eps, weight_decay, decoupled,
                      k, start, stop):
    # elements [start, stop) of tensor k: table[k] = addresses of its param, grad, m, v
    t = like.dtype.type
    n = sizes[k]  # the chunk as views from 0: a loop from a variable start does not vectorize
    param = carray(_as_pointer(table[k, 0], like), (n,))[start:stop]
    grad = carray(_as_pointer(table[k, 1], like), (n,))[start:stop]
    m = carray(_as_pointer(table[k, 2], like), (n,))[start:stop]
    v = carray(_as_pointer(table[k, 3], like), (n,))[start:stop]
    step = steps[k]
    step_size = t(lr / (1.0 - beta1**step))
    bc2_sqrt = t(math.sqrt(1.0 - beta2**step))
    b1, b2, one_b1, one_b2 = t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2)
    eps_, wd = t(eps), t(weight_decay)
    decay = t(1.0 - lr * weight_decay)
    l2 = weight_decay != 0 and not decoupled
    for i in range(stop - start):
        param[i], m[i], v[i] = _adam_one(param[i], grad[i], m[i], v[i], b1, b2, one_b1, one_b2,
                                         step_size, bc2_sqrt, eps_, wd, l2, decoupled, decay)


@njit(parallel=True, cache=True, error_model="numpy")
def _adam_multi(table, sizes, steps, like, lr, beta1, beta2, eps, weight_decay, decoupled):
    # table (T, 4) int64 addresses, sizes (T,), steps (T,) 1-based counts; like: a 0-element
    # array of the tensors' dtype. Tasks: (tensor, chunk) pairs, numbered tensor after tensor.
    count = sizes.shape[0]
    first = np.empty(count + 1, np.int64)  # first task of each tensor
    first[0] = 0
    for k in range(count):
        first[k + 1] = first[k] + (sizes[k] + MULTI_CHUNK - 1) // MULTI_CHUNK
    tasks = first[count]
    owner = np.empty(tasks, np.int64)
    for k in range(count):
        for c in range(first[k], first[k + 1]):
            owner[c] = k
    if sizes.sum() < PARALLEL_MIN:
        for c in range(tasks):
            k = owner[c]
            start = (c - first[k]) * MULTI_CHUNK
            _adam_multi_chunk(table, sizes, steps, like, lr, beta1, beta2, eps, weight_decay,
                              decoupled, k, start, min(start + MULTI_CHUNK, sizes[k]))
    else:
        for c in prange(tasks):
            k = owner[c]
            start = (c - first[k]) * MULTI_CHUNK
            _adam_multi_chunk(table, sizes, steps, like, lr, beta1, beta2, eps, weight_decay,
                              decoupled, k, start, min(start + MULTI_CHUNK, sizes[k]))


_TABLES: dict[tuple[int, int], tuple[list[Any], Any]] = {}
"""(id of the first param, count) -> (weak references to the params, m and v arrays, their
address table): those arrays live as long as the optimizer and are updated in place, so only the
gradients' addresses are read anew each step (an address costs a microsecond of Python)."""


def _cached_table(params: list[Any], ms: list[Any], vs: list[Any]) -> Any:
    """The (T, 4) table with the param, m and v columns filled, from the cache when every array
    is still the one it was made for."""
    key = (id(params[0]), len(params))
    hit = _TABLES.get(key)
    arrays = [*params, *ms, *vs]
    if hit is not None and all(r() is a for r, a in zip(hit[0], arrays)):
        return hit[1]
    table = np.zeros((len(params), 4), dtype=np.int64)
    for k, (p, m, v) in enumerate(zip(params, ms, vs)):
        table[k, 0], table[k, 2], table[k, 3] = p.ctypes.data, m.ctypes.data, v.ctypes.data
    if len(_TABLES) >= 16:  # a few optimizers' groups; older ones are made again if asked
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = ([weakref.ref(a) for a in arrays], table)
    return table


def _multi_table(params: list[Any], grads: list[Any], ms: list[Any],
                 vs: list[Any]) -> tuple[Any, Any, list[Any]] | None:
    """(addresses (T, 4) int64, sizes (T,) int64, arrays to keep alive), or None when a tensor
    is not the kernel's (another dtype, not C-contiguous or not writable, shapes that differ):
    the reference then updates every tensor, views included."""
    if not params or not (len(params) == len(grads) == len(ms) == len(vs)):
        return None
    dt = params[0].dtype
    if not is_float(dt):
        return None
    keep = []
    for p, g, m, v in zip(params, grads, ms, vs):
        if g.shape != p.shape:
            return None
        for a in (p, m, v):
            if a.dtype is not dt or a.shape != p.shape or not a.flags.carray:
                return None
    table = _cached_table(params, ms, vs)
    for k, g in enumerate(grads):
        if g.dtype is not dt or not g.flags.c_contiguous:
            g = np.ascontiguousarray(g, dtype=dt)
            keep.append(g)
        table[k, 1] = g.ctypes.data
    sizes = np.array([p.size for p in params], dtype=np.int64)
    return table, sizes, keep


def _adam_multi_call(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any],
                     lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                     steps: Any, decoupled: bool) -> Any:
    counts = steps if isinstance(steps, (list, tuple)) else [steps] * len(params)
    if len(params) < MULTI_MIN_TENSORS:  # a few tensors: the single-tensor kernel on each
        flats = [_flat(p, g, (m, v)) for p, g, m, v in zip(params, grads, ms, vs)]
        if any(f is None for f in flats):
            return NotImplemented
        for flat, t in zip(flats, counts):
            _adam(*flat, float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                  int(t), decoupled)
        return None
    packed = _multi_table(params, grads, ms, vs)
    if packed is None:
        return NotImplemented
    table, sizes, keep = packed
    _adam_multi(table, sizes, np.array(counts, dtype=np.int64), _NO_STATE[params[0].dtype],
                float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), decoupled)
    del keep  # the converted gradients lived through the kernel
    return None


def adam_multi_step(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any], lr: float,
                    beta1: float, beta2: float, eps: float, weight_decay: float,
                    steps: Any) -> Any:
    """`adam_step` on every (param, grad, m, v) of the lists in one parallel pass; steps: one
    1-based count per tensor, or one for all."""
    return _adam_multi_call(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, steps,
                            False)


def adamw_multi_step(params: list[Any], grads: list[Any], ms: list[Any], vs: list[Any],
                     lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                     steps: Any) -> Any:
    """`adamw_step` on every (param, grad, m, v) of the lists in one parallel pass."""
    return _adam_multi_call(params, grads, ms, vs, lr, beta1, beta2, eps, weight_decay, steps,
                            True)


# --- the squared global norm of many gradients (clip_grad_norm_) ---------------------------------
@njit(fastmath={"reassoc", "contract"}, cache=True, error_model="numpy")
def _squares(x):  # x (N,) -> sum of x**2 in float64
    # reassociation lets LLVM keep vector partial sums (4x faster than one running sum); no other
    # fast-math flag, so a nan or inf gradient still makes the norm nan or inf
    total = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        total += v * v
    return total


def sum_of_squares(arrays: list[Any]) -> Any:
    """sum(x**2) over every array, accumulated in float64: a 0-d float64 array. Arrays of one
    float dtype, each C-contiguous (others: the reference). One thread, one array after another:
    a GPT's 53 gradients (818k float32) take 65 us, against 280 us for one threaded pass over
    an address table (reading 53 addresses alone costs 50 us)."""
    if not arrays:
        return NotImplemented
    dt = arrays[0].dtype
    if not is_float(dt) or any(a.dtype is not dt or not a.flags.c_contiguous for a in arrays):
        return NotImplemented
    total = 0.0
    for a in arrays:
        total += _squares(a.reshape(-1))
    return np.asarray(total, dtype=np.float64)


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(dtype: Any, n: int = 2) -> list[Any]:
    """A parameter, its gradient, and n - 2 zeroed state arrays, all (32,)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(32).astype(dtype) for _ in range(2)] + [
        np.zeros(32, dtype) for _ in range(n - 2)]


KERNELS = {
    "sgd_step": lambda dt: (*_example(dt, 3), 0.1, 0.9, 0.0, 0.0, False, False),
    "adam_step": lambda dt: (*_example(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1),
    "adamw_step": lambda dt: (*_example(dt, 4), 1e-3, 0.9, 0.999, 1e-8, 0.01, 1),
    "rmsprop_step": lambda dt: (*_example(dt, 3), 1e-2, 0.99, 1e-8, 0.0, 0.9, np.zeros(32, dt)),
    "adagrad_step": lambda dt: (*_example(dt, 3), 1e-2, 1e-10, 0.0),
    "adam_multi_step": lambda dt: (*([a] for a in _example(dt, 4)), 1e-3, 0.9, 0.999, 1e-8, 0.0,
                                   [1]),
    "adamw_multi_step": lambda dt: (*([a] for a in _example(dt, 4)), 1e-3, 0.9, 0.999, 1e-8,
                                    0.01, [1]),
    "sum_of_squares": lambda dt: (_example(dt, 3),),
}
"""name -> (dtype -> arguments of one small call; fresh, the steps work in place): see
kernels/README.md."""
