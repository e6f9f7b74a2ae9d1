"""A stand-in non-CPU device for tests: NumPy maths on the non-CPU code path.

    >>> from tinygrad_lab.testing import standin
    >>> standin.register()                      # device type "standin": "standin", "standin:1"
    >>> model.to("standin"); y = model(x.to("standin"))

Its arrays are `StandinArray`, a thin `numpy.ndarray` subclass, so every CI run exercises what a
GPU run would, without a GPU:
- no kernels: every named array function runs its reference through the backend's `xp`;
- data moves: `Tensor.to()`/`Module.to()` copy into StandinArrays, `.numpy()` copies out;
- a plain host array (not 0-d) mixed into its maths raises `HostArrayError`, as CuPy raises for
  a NumPy operand: a constant built with `np.` inside an op, a module attribute `Module.to()` did
  not move, a NumPy index array. Python and NumPy scalars and 0-d arrays are allowed.
- two indices are two devices (`standin:0`, `standin:1`), so mixing them is caught as well.

`xp` is a module-like wrapper of numpy whose functions return StandinArrays and refuse host array
arguments, except `asarray`/`array` (the explicit host-to-device copy, as in CuPy). Where CuPy's
API is narrower than NumPy's, `xp` is narrowed to match, so code that only NumPy runs fails here
first: `as_strided` takes no `writeable`, ufuncs have no `.at` (CuPy 12's; use the named array
function "scatter_add", which runs `xp.scatter_add`, the stand-in of `cupyx.scatter_add`).

Every copy between host and device is counted (`counting()`): `asarray`/`array` of host data,
`to_numpy`, and reading a value back (`float()`, `int()`, `bool()`, `.item()`, `.tolist()`),
which on a GPU is a copy and a synchronisation. Random numbers are drawn "on the device"
(`StandinBackend.random`) from the host generator's stream, so a stand-in run matches a CPU run
bit for bit; `register(name, own_generator=True)` registers a variant that draws from a
generator of its own instead, seeded and saved as a GPU's is (`random_state`), so checkpoints
and resumes of a GPU run are tested here too.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tinygrad_lab.backends import DEVICES, Backend, DeviceType, register_device

NAME = "standin"


class HostArrayError(TypeError):
    """A plain NumPy (host) array was mixed into stand-in device maths."""


_logs: list[list[tuple[str, tuple[int, ...]]]] = []  # the open counting() blocks' logs


def _transfer(kind: str, shape: Any) -> None:
    """Note one host<->device copy in every open counting() block."""
    for log in _logs:
        log.append((kind, tuple(shape)))


@contextlib.contextmanager
def counting() -> Iterator[list[tuple[str, tuple[int, ...]]]]:
    """Record the host<->device copies made inside the block, as (kind, shape) pairs in order:
    kind "to_device" (asarray/array of host data), "to_host" (to_numpy) or "read" (a value read
    back: float(), int(), bool(), .item(), .tolist())."""
    log: list[tuple[str, tuple[int, ...]]] = []
    _logs.append(log)
    try:
        yield log
    finally:
        _logs.remove(log)


def _is_host(x: Any) -> bool:
    return isinstance(x, np.ndarray) and not isinstance(x, StandinArray) and x.ndim > 0


def _check(what: str, values: Any) -> None:
    """Raise HostArrayError if `values` (nested lists, tuples, dicts) hold a host array."""
    stack = [values]
    while stack:
        v = stack.pop()
        if _is_host(v):
            raise HostArrayError(
                f"host array mixed into standin maths: {what} got a numpy.ndarray of shape "
                f"{v.shape} (make it with the backend's xp, or move it with backend.asarray)"
            )
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())


def _host(x: Any) -> Any:
    """StandinArrays (also inside lists and tuples) as plain ndarray views, for NumPy itself."""
    if isinstance(x, StandinArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_host(v) for v in x)
    return x


def _device(x: Any) -> Any:
    """Plain ndarrays (also inside tuples and lists) as StandinArray views, and NumPy scalars as
    0-d StandinArrays (a full reduction on a GPU answers a 0-d device array, not a scalar)."""
    if isinstance(x, np.ndarray) and not isinstance(x, StandinArray):
        return x.view(StandinArray)
    if isinstance(x, np.generic):
        return np.asarray(x).view(StandinArray)
    if isinstance(x, (list, tuple)):
        return type(x)(_device(v) for v in x)
    return x


class StandinArray(np.ndarray):
    """An ndarray that stands for device memory: maths with a host array raises."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kw: Any) -> Any:
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        if method == "at":
            raise AttributeError(_NO_AT.format(name=name))
        _check(name, (inputs, kw))
        out = kw.get("out")
        if out is not None:
            kw["out"] = _host(out)
        result = getattr(ufunc, method)(*_host(inputs), **kw)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _device(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        _check(func.__name__, (args, kwargs))
        return _device(func(*_host(args), **{k: _host(v) for k, v in kwargs.items()}))

    def __getitem__(self, index: Any) -> Any:
        _check("indexing", index)
        return _device(np.ndarray.__getitem__(self.view(np.ndarray), _host(index)))

    def __setitem__(self, index: Any, value: Any) -> None:
        _check("item assignment", (index, value))
        np.ndarray.__setitem__(self.view(np.ndarray), _host(index), _host(value))

    def __array_namespace__(self, api_version: Any = None) -> Any:
        return xp

    # reading a value back is a device-to-host copy (and, on a GPU, a synchronisation)
    def __float__(self) -> float:
        _transfer("read", self.shape)
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        _transfer("read", self.shape)
        return int(self.view(np.ndarray))

    def __bool__(self) -> bool:
        _transfer("read", self.shape)
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        _transfer("read", self.shape)
        return self.view(np.ndarray).item(*args)

    def tolist(self) -> Any:
        _transfer("read", self.shape)
        return self.view(np.ndarray).tolist()


_NO_AT = ("{name}: the stand-in device, like CuPy before 13, has no ufunc.at; call the named "
          "array function 'scatter_add' (ops/scatter.py add_at) instead")


def _method(name: str) -> Callable[..., Any]:
    """An ndarray method that checks its arguments and answers a StandinArray (these methods
    bypass __array_ufunc__/__array_function__, or answer plain ndarrays)."""
    base = getattr(np.ndarray, name)

    def method(self: StandinArray, *args: Any, **kw: Any) -> Any:
        _check(f"ndarray.{name}", (args, kw))
        return _device(base(self.view(np.ndarray), *_host(args), **kw))

    method.__name__ = name
    return method


for _name in ("choose", "compress", "dot", "nonzero", "put", "repeat", "searchsorted", "take"):
    setattr(StandinArray, _name, _method(_name))


def _absent(name: str) -> property:
    def refuse(self: StandinArray) -> Any:
        raise AttributeError(f"ndarray.{name}: NumPy arrays have it, CuPy arrays do not")

    return property(refuse)


for _name in ("getfield", "resize", "setfield", "to_device"):  # not on cupy.ndarray
    setattr(StandinArray, _name, _absent(_name))


class _Ufunc:
    """A numpy ufunc whose call and methods (reduce, at, outer, ...) check their operands."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args: Any, **kw: Any) -> Any:
        _check(self.__name__, (args, kw))
        return _device(self._ufunc(*args, **kw))

    def __getattr__(self, name: str) -> Any:
        if name == "at":
            raise AttributeError(_NO_AT.format(name=f"{self.__name__}.at"))
        value = getattr(self._ufunc, name)
        return _checked(f"{self.__name__}.{name}", value) if callable(value) else value


def _checked(name: str, fn: Callable[..., Any], transfer: bool = False) -> Callable[..., Any]:
    def call(*args: Any, **kw: Any) -> Any:
        if not transfer:
            _check(name, (args, kw))
        elif args and not isinstance(args[0], StandinArray):  # host data onto the device
            _transfer("to_device", np.shape(args[0]))
        return _device(fn(*args, **kw))

    call.__name__ = name
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


_TRANSFERS = {"asarray", "array", "asanyarray"}  # host -> device copies, allowed as in CuPy


def _as_strided(x: Any, shape: Any = None, strides: Any = None) -> Any:
    """CuPy's signature: no `writeable` (nor `subok`)."""
    _check("as_strided", x)
    return _device(np.lib.stride_tricks.as_strided(_host(x), shape=shape, strides=strides))


def _scatter_add(a: Any, slices: Any, value: Any) -> None:
    """cupyx.scatter_add(a, slices, value): a[slices] += value, repeated indices adding up."""
    _check("scatter_add", (a, slices, value))
    if not isinstance(a, StandinArray):
        raise HostArrayError("scatter_add: the target is not a standin array")
    np.add.at(_host(a), _host(slices), _host(value))


_NARROWED = {"lib.stride_tricks.as_strided": _as_strided, "scatter_add": _scatter_add}
"""Functions whose stand-in has CuPy's (narrower) signature, by dotted name under xp."""


class _Namespace:
    """numpy, seen from the stand-in device (its functions, ufuncs and submodules wrapped)."""

    def __init__(self, module: types.ModuleType, name: str, path: str = "") -> None:
        self._module = module
        self.__name__ = name
        self._path = path  # dotted, under xp ("" for xp itself)

    def __getattr__(self, name: str) -> Any:
        dotted = f"{self._path}.{name}".lstrip(".")
        if dotted in _NARROWED:
            setattr(self, name, _NARROWED[dotted])
            return _NARROWED[dotted]
        value = getattr(self._module, name)
        if not name.startswith("_") and not _in_cupy(dotted):
            raise AttributeError(f"xp.{dotted}: NumPy has it, CuPy does not, so the stand-in "
                                 "device does not either (a GPU run would fail here)")
        if isinstance(value, np.ufunc):
            wrapped: Any = _Ufunc(value)
        elif isinstance(value, types.ModuleType):
            wrapped = _Namespace(value, f"{self.__name__}.{name}", dotted)
        elif callable(value) and not isinstance(value, type):
            wrapped = _checked(name, value, transfer=name in _TRANSFERS)
        else:  # dtypes, classes, constants
            wrapped = value
        setattr(self, name, wrapped)
        return wrapped


def _in_cupy(dotted: str) -> bool:
    """Whether CuPy has `cupy.<dotted>`; True when CuPy is not installed (nothing to compare)."""
    if _CUPY is None:
        return True
    where: Any = _CUPY
    for part in dotted.split("."):
        where = getattr(where, part, _MISSING)
        if where is _MISSING:
            return False
    return True


_MISSING = object()
try:  # importing CuPy needs no GPU; only its API is read
    import cupy as _CUPY
except ImportError:  # pragma: no cover - the cuda extra is not installed
    _CUPY = None

xp: Any = _Namespace(np, "tinygrad_lab.testing.standin.xp")
"""The stand-in device's array module."""


class StandinBackend(Backend):
    """NumPy maths on StandinArrays; no kernels (its kernel table is empty)."""

    name = NAME

    def __init__(self, own_generator: bool = False) -> None:
        super().__init__()
        self.xp = xp
        self.own_generator = own_generator
        self._rng: np.random.Generator | None = None  # own_generator's, made on first use
        self._rng_epoch = -1

    def asarray(self, data: Any, dtype: Any = None) -> StandinArray:
        if isinstance(data, StandinArray):
            return data if dtype is None or data.dtype == dtype else data.astype(dtype)
        _transfer("to_device", np.shape(data))
        return np.array(data, dtype=dtype).view(StandinArray)  # a copy, as a device transfer

    def scalar(self, value: Any, dtype: Any) -> StandinArray:
        return np.full((), value, dtype=dtype).view(StandinArray)  # made on the device

    def to_numpy(self, x: Any) -> np.ndarray:
        _transfer("to_host", np.shape(x))
        return np.array(_host(x))  # a copy, as from a device

    def random(self, shape: tuple[int, ...], dtype: Any) -> StandinArray:
        """Uniform [0, 1) drawn on the device, from the host generator's stream (a GPU has its
        own generator; this one matches CPU runs exactly, which the tests compare against)."""
        from tinygrad_lab.random import generator

        rng = self._generator() if self.own_generator else generator()
        return rng.random(shape, dtype=dtype).view(StandinArray)

    def _generator(self) -> np.random.Generator:
        """The device's own generator (own_generator): seeded as CUDABackend's is, by
        tl.manual_seed through tinygrad_lab.random.device_seed."""
        from tinygrad_lab import random

        if self._rng is None or self._rng_epoch != random.seed_epoch():
            self._rng = np.random.default_rng(random.device_seed(self.device))
            self._rng_epoch = random.seed_epoch()
        return self._rng

    def random_state(self) -> np.ndarray | None:
        """own_generator: its PCG64 state as uint64 words (state and increment, high then low
        64 bits; the cached 32-bit half); else None, as the CPU's (the host stream)."""
        if not self.own_generator:
            return None
        s = self._generator().bit_generator.state
        words = [s["state"]["state"], s["state"]["inc"]]
        return np.array([w >> 64 for w in words] + [w & _LOW for w in words]
                        + [s["has_uint32"], s["uinteger"]], dtype=np.uint64)

    def set_random_state(self, state: np.ndarray) -> None:
        if not self.own_generator:
            super().set_random_state(state)
        if np.shape(state) != (6,):
            raise ValueError(f"device {self.device!r}: a random state of shape "
                             f"{np.shape(state)}, expected (6,)")
        w = [int(v) for v in np.asarray(state)]
        words = {"state": w[0] << 64 | w[2], "inc": w[1] << 64 | w[3]}
        self._generator().bit_generator.state = {
            "bit_generator": "PCG64", "state": words, "has_uint32": w[4], "uinteger": w[5]}


_LOW = (1 << 64) - 1


def register(name: str = NAME, own_generator: bool = False) -> DeviceType:
    """Register the stand-in device type under `name` (again: the existing registration);
    `own_generator`: its random numbers come from a generator of its own, as a GPU's do."""
    if name in DEVICES:
        return DEVICES[name]
    return register_device(
        DeviceType(name, lambda index: StandinBackend(own_generator), None, {}, indexed=True)
    )


__all__ = ["NAME", "HostArrayError", "StandinArray", "StandinBackend", "counting", "register",
           "xp"]
