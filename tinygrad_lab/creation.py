"""Tensor constructors, PyTorch's names, defaults and dtype rules: tl.zeros, tl.arange, tl.rand, ...

Every constructor takes `dtype=`, `device=` and `requires_grad=` (keyword-only). Floating-point
results default to float32; `arange` of integers and `randint` give int64; `full` takes its dtype
from the fill value (bool, int64 or float32), as torch.full does.

Random tensors draw with the device's own generator (`Backend.random`, as dropout masks do):
the CPU's is the project's seeded host generator (tinygrad_lab.random); a GPU's is seeded from
`tl.manual_seed` and draws on the device, so nothing crosses the bus; a device without one draws
on the host once and copies. Either way `tl.manual_seed(s)` makes every draw repeatable (a GPU's
values differ from the CPU's, as in PyTorch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_lab import dtypes as _dtypes
from tinygrad_lab import function as _function
from tinygrad_lab.backends import DEFAULT_DEVICE, Array, Backend, get_backend
from tinygrad_lab.random import generator
from tinygrad_lab.tensor import Tensor

Size = tuple[int, ...]
_INT64 = np.dtype(np.int64)


def _size(name: str, size: Sequence[Any]) -> Size:
    """zeros(2, 3), zeros((2, 3)) and zeros([2, 3]) all mean (2, 3)."""
    dims = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"{name}: a size is a sequence of ints, got {d!r} in {tuple(dims)}")
        if d < 0:
            raise ValueError(f"{name}: sizes must be non-negative, got {tuple(dims)}")
        out.append(int(d))
    return tuple(out)


def _dtype(name: str, dtype: Any, default: Any) -> np.dtype:
    dt = np.dtype(default if dtype is None else dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"{name}: dtype must be bool, integer or floating point, not {dt}")
    return dt


def _new(arr: Array, backend: Backend, requires_grad: bool) -> Tensor:
    t = Tensor._wrap(arr, backend, backend.device, False)
    if _function._memory is not None:
        _function._memory.add(arr, "temporaries", backend.device)
    return t.requires_grad_(True) if requires_grad else t


def _number(name: str, what: str, value: Any) -> float | int:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name}: {what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {what} must be finite, got {value}")
    return value.item() if isinstance(value, np.number) else value


# --- filled ------------------------------------------------------------------------------------
def zeros(*size: Any, dtype: Any = None, device: str = DEFAULT_DEVICE,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, float32 by default (torch.zeros)."""
    backend = get_backend(device)
    arr = backend.xp.zeros(_size("zeros", size), dtype=_dtype("zeros", dtype, np.float32))
    return _new(arr, backend, requires_grad)


def ones(*size: Any, dtype: Any = None, device: str = DEFAULT_DEVICE,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones, float32 by default (torch.ones)."""
    backend = get_backend(device)
    arr = backend.xp.ones(_size("ones", size), dtype=_dtype("ones", dtype, np.float32))
    return _new(arr, backend, requires_grad)


def empty(*size: Any, dtype: Any = None, device: str = DEFAULT_DEVICE,
          requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor (its values are whatever the memory held), float32 by default."""
    backend = get_backend(device)
    arr = backend.xp.empty(_size("empty", size), dtype=_dtype("empty", dtype, np.float32))
    return _new(arr, backend, requires_grad)


def _fill_dtype(value: Any) -> np.dtype:
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(bool)
    if isinstance(value, (int, np.integer)):
        return _INT64
    return _dtypes.DEFAULT_FLOAT


def full(size: Sequence[int], fill_value: Any, *, dtype: Any = None,
         device: str = DEFAULT_DEVICE, requires_grad: bool = False) -> Tensor:
    """A tensor of `fill_value`; its dtype, unless given, follows the value: bool, int64 for an
    int, float32 for a float (torch.full)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if not isinstance(fill_value, (bool, int, float, np.number, np.bool_)):
        raise TypeError(f"full: fill_value must be a number, got {fill_value!r}")
    backend = get_backend(device)
    dt = _dtype("full", dtype, _fill_dtype(fill_value))
    shape = _size("full", (size,) if isinstance(size, (int, np.integer)) else tuple(size))
    return _new(backend.xp.full(shape, fill_value, dtype=dt), backend, requires_grad)


# --- ranges ------------------------------------------------------------------------------------
def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None,
           device: str = DEFAULT_DEVICE, requires_grad: bool = False) -> Tensor:
    """start, start + step, ... up to but excluding end (arange(n) is 0 .. n-1). int64 when
    start, end and step are all ints, else float32 (torch.arange); values are start + i step,
    computed in float64 and then cast, so float steps do not accumulate error."""
    if end is None:
        start, end = 0, start
    start, end, step = (_number("arange", what, v) for what, v in
                        (("start", start), ("end", end), ("step", step)))
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(f"arange: end ({end}) and start ({start}) are inconsistent with the "
                         f"sign of step ({step})")
    integral = all(isinstance(v, int) for v in (start, end, step))
    dt = _dtype("arange", dtype, _INT64 if integral else _dtypes.DEFAULT_FLOAT)
    n = max(math.ceil((end - start) / step), 0) if not integral else max(
        -((start - end) // step), 0)
    backend = get_backend(device)
    xp = backend.xp
    if integral:
        arr = xp.arange(start, start + n * step, step, dtype=_INT64)[:n].astype(dt, copy=False)
    else:
        arr = (xp.arange(n, dtype=np.float64) * step + start).astype(dt, copy=False)
    return _new(arr, backend, requires_grad)


def linspace(start: Any, end: Any, steps: int, *, dtype: Any = None,
             device: str = DEFAULT_DEVICE, requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from start to end, both included; float32 by default. The
    first half counts up from start and the second down from end, as torch.linspace, so both
    ends are exact."""
    start = _number("linspace", "start", start)
    end = _number("linspace", "end", end)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"linspace: steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    backend = get_backend(device)
    xp = backend.xp
    dt = _dtype("linspace", dtype, _dtypes.DEFAULT_FLOAT)
    i = xp.arange(int(steps), dtype=np.float64)
    if steps == 1:
        values = i + start
    else:
        delta = (end - start) / (steps - 1)
        values = xp.where(i < steps // 2, start + i * delta, end - (steps - 1 - i) * delta)
    if dt.kind in "iub":
        values = xp.trunc(values)
    return _new(values.astype(dt, copy=False), backend, requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: str = DEFAULT_DEVICE,
        requires_grad: bool = False) -> Tensor:
    """The n x m identity (m = n by default), float32 by default (torch.eye)."""
    rows, cols = _size("eye", (n, n if m is None else m))
    backend = get_backend(device)
    arr = backend.xp.eye(rows, cols, dtype=_dtype("eye", dtype, np.float32))
    return _new(arr, backend, requires_grad)


# --- random ------------------------------------------------------------------------------------
def _draw(backend: Backend, kind: str, shape: Size, dtype: np.dtype, low: int = 0,
          high: int = 0) -> Array:
    """Values drawn by the device's own generator (`Backend.random`, uniform [0, 1) in float64):
    the CPU's is the project's host generator, a GPU's is seeded from it by tl.manual_seed, and
    a device without one draws on the host and copies once. Normals are Box-Muller transforms
    of two uniforms, integers floor(low + u (high - low)); an integer range wider than 2**53
    (more than a float64 resolves) is drawn by the host generator instead."""
    xp = backend.xp
    if kind == "integers":
        if high - low > 2**53:
            arr = backend.asarray(generator().integers(low, high, size=shape, dtype=np.int64))
            return arr.astype(dtype, copy=False)
        u = backend.random(shape, np.float64)
        arr = xp.minimum(xp.floor(u * float(high - low)).astype(np.int64) + low, high - 1)
    elif kind == "normal":
        u1 = 1.0 - backend.random(shape, np.float64)  # in (0, 1]: log(u1) is finite
        u2 = backend.random(shape, np.float64)
        arr = xp.sqrt(-2.0 * xp.log(u1)) * xp.cos((2.0 * math.pi) * u2)
    else:
        arr = backend.random(shape, dtype if dtype in (np.float32, np.float64) else np.float64)
    return arr.astype(dtype, copy=False)


def _float_dtype(name: str, dtype: Any) -> np.dtype:
    dt = _dtype(name, dtype, _dtypes.DEFAULT_FLOAT)
    if dt.kind != "f":
        raise TypeError(f"{name}: draws floating-point values; dtype {dt} is not one")
    return dt


def rand(*size: Any, dtype: Any = None, device: str = DEFAULT_DEVICE,
         requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1), float32 by default (torch.rand), from the seeded generator."""
    backend = get_backend(device)
    arr = _draw(backend, "random", _size("rand", size), _float_dtype("rand", dtype))
    return _new(arr, backend, requires_grad)


def randn(*size: Any, dtype: Any = None, device: str = DEFAULT_DEVICE,
          requires_grad: bool = False) -> Tensor:
    """Standard normal, float32 by default (torch.randn), from the seeded generator."""
    backend = get_backend(device)
    arr = _draw(backend, "normal", _size("randn", size), _float_dtype("randn", dtype))
    return _new(arr, backend, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, *, dtype: Any = None,
            device: str = DEFAULT_DEVICE, requires_grad: bool = False) -> Tensor:
    """Integers uniform on [low, high), int64 by default: randint(high, size) or
    randint(low, high, size), as torch.randint."""
    if size is None:  # randint(high, size)
        if high is None:
            raise TypeError("randint: needs a size: randint(high, size) or "
                            "randint(low, high, size)")
        low, high, size = 0, low, high
    for what, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"randint: {what} must be an int, got {v!r}")
    if low >= high:
        raise ValueError(f"randint: low ({low}) must be less than high ({high})")
    backend = get_backend(device)
    shape = _size("randint", (size,) if isinstance(size, (int, np.integer)) else tuple(size))
    arr = _draw(backend, "integers", shape, _dtype("randint", dtype, _INT64), int(low), int(high))
    return _new(arr, backend, requires_grad)


# --- *_like: the shape (and by default the dtype and device) of another tensor -----------------
def _like(name: str, input: Tensor, dtype: Any, device: str | None) -> tuple[Size, Any, str]:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    return input.shape, input.dtype if dtype is None else dtype, device or input.device


def zeros_like(input: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("zeros_like", input, dtype, device)
    return zeros(shape, dtype=dt, device=dev, requires_grad=requires_grad)


def ones_like(input: Tensor, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("ones_like", input, dtype, device)
    return ones(shape, dtype=dt, device=dev, requires_grad=requires_grad)


def empty_like(input: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("empty_like", input, dtype, device)
    return empty(shape, dtype=dt, device=dev, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value: Any, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("full_like", input, dtype, device)
    return full(shape, fill_value, dtype=dt, device=dev, requires_grad=requires_grad)


def rand_like(input: Tensor, *, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("rand_like", input, dtype, device)
    return rand(shape, dtype=dt, device=dev, requires_grad=requires_grad)


def randn_like(input: Tensor, *, dtype: Any = None, device: str | None = None,
               requires_grad: bool = False) -> Tensor:
    shape, dt, dev = _like("randn_like", input, dtype, device)
    return randn(shape, dtype=dt, device=dev, requires_grad=requires_grad)


# --- triangular parts (differentiable: ops/maths.py Triangle) ----------------------------------
def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two axes, from diagonal `diagonal` down (torch.tril)."""
    return input.tril(diagonal)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two axes, from diagonal `diagonal` up (torch.triu)."""
    return input.triu(diagonal)


__all__ = [
    "arange", "empty", "empty_like", "eye", "full", "full_like", "linspace", "ones", "ones_like",
    "rand", "rand_like", "randint", "randn", "randn_like", "tril", "triu", "zeros", "zeros_like",
]
