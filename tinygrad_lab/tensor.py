"""Tensor: an array, the device it lives on, and the node of the tape that made it.

Every method that does maths is one line calling an op's `apply`; the maths and its derivative
live in tinygrad_lab/ops/. `backward()` walks the tape once in reverse topological order.
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tinygrad_lab import dtypes as _dtypes
from tinygrad_lab import function as _function
from tinygrad_lab.backends import DEFAULT_DEVICE, Array, Backend, get_backend
from tinygrad_lab.function import Function, check_versions, is_observed, timed_backward
from tinygrad_lab.ops import elementwise, indexing, linalg, maths, movement, nn, reduce, split
from tinygrad_lab.ops.movement import sum_to_shape

Shape = tuple[int, ...]
_FLOAT_KINDS = "f"
_NO_VERSIONS = (0, 0)  # a node's inputs' versions when it recorded none (all were 0)
_TENSOR_KINDS = "biuf"
"""The dtype kinds a tensor holds: bool, signed and unsigned integers, floating point."""


def _check_dtype(dtype: np.dtype, what: str = "tensor") -> None:
    if dtype.kind not in _TENSOR_KINDS:
        raise TypeError(f"a {what} holds bool, integer or floating-point values, not {dtype} "
                        "(convert the values to numbers first)")


def _as_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis}: an axis appears more than once")
    return () if ndim == 0 else tuple(sorted(out))  # a 0-d tensor's axis 0/-1: itself


def _dim_aliases(method: Callable[..., Any]) -> Callable[..., Any]:
    """Let a reduction take torch's `dim=`/`keepdim=` for the house's `axis=`/`keepdims=`."""

    @functools.wraps(method)
    def reduction(self: Any, *args: Any, dim: Any = None, keepdim: bool | None = None,
                  **kw: Any) -> Any:
        if dim is not None:
            if args or "axis" in kw:
                raise TypeError(f"{method.__name__}: give axis or dim, not both")
            kw["axis"] = dim
        if keepdim is not None:
            kw["keepdims"] = keepdim
        return method(self, *args, **kw)

    return reduction


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad.numpy()  # array([2., 4.], dtype=float32)
    """

    # _output: which output of _ctx this is, set only when _ctx has several (Function.apply_many);
    # _post_grad_hooks: set only on a leaf that has some (register_post_accumulate_grad_hook)
    # _data: the array (`data` reads it; assigning `data` counts as an in-place update);
    # _version: bumped by every in-place update the engine makes (optimizer steps, zero_(),
    # `data` assignment, load_state_dict), checked by backward for values saved from it
    __slots__ = ("_data", "_version", "grad", "requires_grad", "_ctx", "_output", "_backend",
                 "_device", "_post_grad_hooks", "__weakref__")
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(
        self,
        data: Any,
        requires_grad: bool = False,
        dtype: Any = None,
        device: str = DEFAULT_DEVICE,
    ) -> None:
        backend = get_backend(device)
        if isinstance(data, Tensor):
            data = data._data
        if hasattr(data, "__cuda_array_interface__") or isinstance(data, np.ndarray):
            _check_dtype(data.dtype)
            arr = backend.asarray(data, dtype=dtype)
            if arr is data:  # a copy, as torch.tensor: tl.from_numpy shares the caller's array
                arr = arr.copy()
        else:
            host = np.asarray(data)
            _check_dtype(host.dtype)
            if dtype is None and not hasattr(data, "dtype"):
                dtype = np.float32  # Python scalars and lists become float32
            arr = backend.asarray(np.asarray(host, dtype=dtype))
        _check_dtype(arr.dtype)
        self._data: Array = arr
        self._version = 0
        self.grad: Tensor | None = None
        self._backend: Backend = backend
        self._device: str = backend.device
        self._ctx: Function | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)
        if _function._memory is not None:
            _function._memory.add(arr, "temporaries", self._device)

    @classmethod
    def _wrap(cls, data: Array, backend: Backend, device: str, requires_grad: bool) -> Tensor:
        """Fast constructor for op outputs: no conversion, no checks."""
        t = cls.__new__(cls)
        t._data = data
        t._version = 0
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = None
        t._backend = backend
        t._device = device
        return t

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self._data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(
                f"only floating-point tensors can require gradients; this one is {self._data.dtype}"
                " (cast with .astype('float32') first)"
            )
        self.requires_grad = flag
        return self

    # --- the array, and in-place updates -------------------------------------------------
    def _set_data(self, value: Array) -> None:
        self._data = value
        self._version += 1

    data = property(operator.attrgetter("_data"), _set_data, doc=(
        "The array. Assigning it is an in-place update of the tensor: it bumps the version "
        "counter that backward checks. Writes into the array itself (t.data[...] = v) are not "
        "seen."))

    @property
    def version(self) -> int:
        """How many in-place updates the engine has made to this tensor (optimizer steps,
        zero_(), `data` assignment, load_state_dict); backward refuses values saved before one."""
        return self._version

    def _bump_version(self) -> None:
        """Record an in-place update made through the array (an optimizer step, a load)."""
        self._version += 1

    def zero_(self) -> Tensor:
        """Fill with zeros in place (an in-place update: bumps the version)."""
        self._data[...] = 0
        self._version += 1
        return self

    # --- properties ----------------------------------------------------------------------
    @property
    def shape(self) -> Shape:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def device(self) -> str:
        return self._device

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return int(self._data.size)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        dev = f", device={self.device!r}" if self.device != DEFAULT_DEVICE else ""
        body = np.array2string(self.numpy(), precision=4, separator=", ", threshold=20)
        return f"Tensor({body}, dtype={self.dtype}{dev}{grad})"

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(f"truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    # --- conversion ----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        return self._backend.to_numpy(self._data)

    def item(self) -> Any:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """Same data, cut from the tape."""
        return Tensor._wrap(self._data, self._backend, self._device, False)

    def to(self, device: str) -> Tensor:
        """Copy to another device; gradients flow back across the move."""
        backend = get_backend(device)
        if backend is self._backend:
            return self
        moved = movement.ToDevice.apply(self, target=backend)
        moved._backend, moved._device = backend, backend.device
        return moved

    def astype(self, dtype: Any) -> Tensor:
        if np.dtype(dtype) == self.dtype:
            return self
        if np.dtype(dtype).kind != "f":  # integer/bool results carry no gradient: off the tape
            return Tensor._wrap(self._data.astype(dtype), self._backend, self._device, False)
        return elementwise.Cast.apply(self, dtype=np.dtype(dtype))

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    # --- autograd ------------------------------------------------------------------------
    def backward(self, gradient: Tensor | Array | None = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires it.

        A scalar output starts from 1; any other output needs `gradient` of its own shape.
        The tape is freed as it is walked unless retain_graph=True.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no graph)")
        xp = self._backend.xp
        if gradient is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs an explicit "
                    "gradient of that shape: t.backward(gradient)"
                )
            seed = xp.ones(self._data.shape, dtype=self.dtype)
        else:
            seed = gradient._data if isinstance(gradient, Tensor) else xp.asarray(gradient)
            if tuple(seed.shape) != self.shape:
                raise ValueError(
                    f"backward(): gradient shape {tuple(seed.shape)} does not match the tensor's "
                    f"shape {self.shape}"
                )
            # a copy: the seed can end up as a leaf's .grad, which must not alias the caller's array
            seed = seed.astype(self.dtype, copy=True)
        grads: dict[int, Array] = {id(self): seed}
        if _function._memory is not None:
            _function._memory.add(seed, "temporaries", self._device)
        leaf_arrays: set[int] = set()
        order = _topological_order(self)
        observed = is_observed()  # profiling or DEBUG>=2: time each node's backward
        pending = _PendingLeaves(order, grads, leaf_arrays) if _hooked_leaves else None
        # nodes with several outputs (Function.apply_many): their outputs' gradients, gathered
        # until the walk reaches one of the node's inputs, which comes after all its outputs
        gathered: dict[int, list[Array | None]] = {}
        waiting: dict[int, list[Function]] = {}  # input id -> such nodes to run on reaching it
        for node in reversed(order):
            if waiting and id(node) in waiting:
                for fn in waiting.pop(id(node)):
                    out_grads = gathered.pop(id(fn), None)  # None: run from another input
                    if out_grads is not None:
                        check_versions(fn)
                        _send_to_inputs(fn, timed_backward(fn, out_grads), grads, retain_graph,
                                        pending)
            g = grads.pop(id(node), None)
            if g is None:
                continue
            ctx = node._ctx
            if ctx is None:
                _accumulate_leaf(node, g, leaf_arrays)
                if pending is not None:  # a leaf some consumer of which got no gradient
                    pending.release(node)
                continue
            if ctx.saved is None:
                raise RuntimeError(
                    "backward() through a graph that was already freed; call the first "
                    "backward(retain_graph=True) to walk it twice"
                )
            # refuse values saved for backward that an in-place update changed since forward
            parents, versions = ctx.parents, ctx.versions or _NO_VERSIONS
            if node._version or parents[0]._version != versions[0] or (len(parents) > 1 and (
                    len(parents) > 2 or parents[1]._version != versions[1])):
                check_versions(ctx, node)
            if ctx.outputs is not None:
                out_grads = gathered.get(id(ctx))
                if out_grads is None:
                    out_grads = gathered[id(ctx)] = [None] * ctx.outputs
                    for parent in ctx.parents:
                        waiting.setdefault(id(parent), []).append(ctx)
                out_grads[node._output] = g
                continue
            _send_to_inputs(ctx, timed_backward(ctx, g) if observed else ctx.backward(g), grads,
                            retain_graph, pending)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> HookHandle:
        """Call `hook(self)` in each backward once this leaf's `.grad` is complete: right after
        its last consumer node has sent its share, while the rest of the tape is still walked
        (so data-parallel training can start a gradient's all-reduce early). Once per backward,
        however often the leaf was used; not at all when no gradient reached it. As PyTorch's
        `Tensor.register_post_accumulate_grad_hook`; `handle.remove()` unregisters."""
        if self._ctx is not None or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                               "requires grad has an accumulated gradient")
        hooks = _hooks_of(self)
        if hooks is None:
            hooks = self._post_grad_hooks = []
            _count_hooked(1)
            weakref.finalize(self, _count_hooked, -1)
        hooks.append(hook)
        return HookHandle(self, hook)

    def zero_grad(self) -> None:
        self.grad = None

    def tape(self) -> str:
        """The graph that made this tensor, inputs first: one line per node with its op, the
        shapes in and out, and the bytes it saved for backward."""
        lines = []
        total = 0
        counted: set[int] = set()  # a node with several outputs is on the line of each
        for i, node in enumerate(_topological_order(self)):
            ctx = node._ctx
            if ctx is None:
                kind = "parameter" if node.requires_grad else "constant"
                lines.append(f"{i:>4}  {kind:<20} {node.shape} {node.dtype}")
                continue
            saved = ctx.saved_bytes()
            if id(ctx) not in counted:
                counted.add(id(ctx))
                total += saved
            ins = ", ".join(str(p.shape) for p in ctx.parents)
            out = f"[{node._output}/{ctx.outputs}]" if ctx.outputs is not None else ""
            lines.append(f"{i:>4}  {ctx.name + out:<20} ({ins}) -> {node.shape}  saved {saved:,} B")
        lines.append(f"saved for backward: {total:,} bytes")
        return "\n".join(lines)

    # --- elementwise -----------------------------------------------------------------------
    def _const(self, value: Any) -> Tensor:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, (float, int, bool)):  # PyTorch: a Python scalar never widens
            arr = self._backend.scalar(value, _dtypes.scalar_dtype(self.dtype, value))
            return Tensor._wrap(arr, self._backend, self._device, False)
        if value is None:
            raise TypeError("operand is None, not a number, array or tensor")
        kind = getattr(value, "dtype", None)
        held = np.asarray(value).dtype if kind is None else np.dtype(kind)
        _check_dtype(held, "operand")
        # an array of a higher category (floats for an int tensor) keeps its own dtype
        dtype = _dtypes.result_dtype(self.dtype, held)
        dtype = self.dtype if dtype.kind == self.dtype.kind else dtype
        if isinstance(value, np.generic):  # made on the device, not copied
            arr = self._backend.scalar(value, dtype)
        else:
            arr = self._backend.asarray(value, dtype=dtype)
        return Tensor._wrap(arr, self._backend, self._device, False)

    def _floating(self) -> Tensor:
        """Self, cast to the default float dtype if it holds integers or booleans: what a
        floating-point op (exp, true division, sqrt, ...) computes on, as in PyTorch."""
        return self if self.dtype.kind == "f" else self.astype(_dtypes.float_dtype(self.dtype))

    def _binary(self, fn: type[Function], other: Any, reverse: bool = False,
                floating: bool = False) -> Tensor:
        other = self._const(other)
        a, b = (other, self) if reverse else (self, other)
        if a.dtype != b.dtype:  # PyTorch's promotion (dtypes.py), not NumPy's
            common = _dtypes.result_dtype(a.dtype, b.dtype)
            if a.ndim and not b.ndim and b.dtype.kind == a.dtype.kind:
                common = a.dtype  # a 0-d operand of the same category never widens
            elif b.ndim and not a.ndim and a.dtype.kind == b.dtype.kind:
                common = b.dtype
            a, b = a.astype(common), b.astype(common)
        if floating:
            a, b = a._floating(), b._floating()
        try:
            return fn.apply(a, b)
        except ValueError:
            _check_broadcast(fn.__name__.lower(), a.shape, b.shape)
            raise

    def add(self, other: Any) -> Tensor:
        return self._binary(elementwise.Add, other)

    def sub(self, other: Any) -> Tensor:
        return self._binary(elementwise.Sub, other)

    def mul(self, other: Any) -> Tensor:
        return self._binary(elementwise.Mul, other)

    def div(self, other: Any, rounding_mode: str | None = None) -> Tensor:
        if rounding_mode is not None:  # torch.div's "trunc" / "floor" (ops/maths.py)
            return self._div_rounded(other, rounding_mode)
        return self._binary(elementwise.Div, other, floating=True)

    def pow(self, exponent: Any) -> Tensor:
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            base = self.astype(_dtypes.scalar_dtype(self.dtype, exponent))
            return elementwise.PowScalar.apply(base, exponent=exponent)
        return self._binary(elementwise.Pow, exponent)

    def maximum(self, other: Any) -> Tensor:
        return self._binary(elementwise.Maximum, other)

    def minimum(self, other: Any) -> Tensor:
        return self._binary(elementwise.Minimum, other)

    def neg(self) -> Tensor:
        return elementwise.Neg.apply(self)

    def exp(self) -> Tensor:
        return elementwise.Exp.apply(self._floating())

    def log(self) -> Tensor:
        return elementwise.Log.apply(self._floating())

    def sqrt(self) -> Tensor:
        return elementwise.Sqrt.apply(self._floating())

    def abs(self) -> Tensor:
        return elementwise.Abs.apply(self)

    def tanh(self) -> Tensor:
        return elementwise.Tanh.apply(self._floating())

    def sigmoid(self) -> Tensor:
        return elementwise.Sigmoid.apply(self._floating())

    def relu(self) -> Tensor:
        return elementwise.Relu.apply(self)

    def gelu(self, approximate: str = "tanh") -> Tensor:
        """GELU. approximate="tanh" (the default here, as in GPT-2 and BERT, and what
        activation="gelu" fuses) or "none", the exact x Phi(x) with erf (PyTorch's default)."""
        if approximate == "none":
            return elementwise.GeluExact.apply(self._floating())
        if approximate != "tanh":
            raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
        return elementwise.Gelu.apply(self._floating())

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        """log(1 + exp(beta x)) / beta, x itself where beta x > threshold (PyTorch's)."""
        return elementwise.Softplus.apply(self._floating(), beta=float(beta),
                                          threshold=float(threshold))

    def square(self) -> Tensor:
        return self * self

    def clip(self, low: float | None = None, high: float | None = None) -> Tensor:
        if low is None and high is None:
            raise ValueError("clip: at least one of 'low' (min) or 'high' (max) must not be None")
        return elementwise.Clip.apply(self, low=low, high=high)

    __add__ = add
    __sub__ = sub
    __mul__ = mul
    __truediv__ = div
    __pow__ = pow
    __neg__ = neg

    def __radd__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Add, other, reverse=True)

    def __rsub__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Sub, other, reverse=True)

    def __rmul__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Mul, other, reverse=True)

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Div, other, reverse=True, floating=True)

    def __rpow__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Pow, other, reverse=True)

    def __matmul__(self, other: Any) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return self._const(other).matmul(self)

    # --- maths: trigonometric, logarithmic, rounding, remainders (ops/maths.py) ---------------
    # Integer and boolean inputs to a floating-point function compute in float32, as in PyTorch.
    def sin(self) -> Tensor:
        return maths.Sin.apply(self._floating())

    def cos(self) -> Tensor:
        return maths.Cos.apply(self._floating())

    def tan(self) -> Tensor:
        return maths.Tan.apply(self._floating())

    def asin(self) -> Tensor:
        return maths.Asin.apply(self._floating())

    def acos(self) -> Tensor:
        return maths.Acos.apply(self._floating())

    def atan(self) -> Tensor:
        return maths.Atan.apply(self._floating())

    def sinh(self) -> Tensor:
        return maths.Sinh.apply(self._floating())

    def cosh(self) -> Tensor:
        return maths.Cosh.apply(self._floating())

    arcsin, arccos, arctan = asin, acos, atan  # PyTorch's NumPy-style aliases

    def reciprocal(self) -> Tensor:
        return maths.Reciprocal.apply(self._floating())

    def rsqrt(self) -> Tensor:
        return maths.Rsqrt.apply(self._floating())

    def log2(self) -> Tensor:
        return maths.Log2.apply(self._floating())

    def log1p(self) -> Tensor:
        return maths.Log1p.apply(self._floating())

    def exp2(self) -> Tensor:
        return maths.Exp2.apply(self._floating())

    def expm1(self) -> Tensor:
        return maths.Expm1.apply(self._floating())

    def erf(self) -> Tensor:
        return maths.Erf.apply(self._floating())

    def _rounding(self, fn: str, decimals: int = 0) -> Tensor:
        if self.dtype.kind != "f":  # integers and booleans are whole already: a copy, off tape
            data = self._backend.xp.sign(self._data) if fn == "sign" and self.dtype.kind != "b" \
                else self._data.copy()
            return Tensor._wrap(data, self._backend, self._device, False)
        return maths.Rounding.apply(self, fn=fn, decimals=int(decimals))

    def floor(self) -> Tensor:
        return self._rounding("floor")

    def ceil(self) -> Tensor:
        return self._rounding("ceil")

    def round(self, decimals: int = 0) -> Tensor:
        """Half to even, as PyTorch and NumPy; `decimals` places (negative: tens, hundreds)."""
        return self._rounding("round", decimals)

    def trunc(self) -> Tensor:
        return self._rounding("trunc")

    fix = trunc

    def sign(self) -> Tensor:
        return self._rounding("sign")

    def isnan(self) -> Tensor:
        return Tensor._wrap(self._backend.xp.isnan(self._data), self._backend, self._device, False)

    def isinf(self) -> Tensor:
        return Tensor._wrap(self._backend.xp.isinf(self._data), self._backend, self._device, False)

    def isfinite(self) -> Tensor:
        return Tensor._wrap(self._backend.xp.isfinite(self._data), self._backend, self._device,
                            False)

    def atan2(self, other: Any) -> Tensor:
        """The angle of the point (other, self), in (-pi, pi]."""
        return self._binary(maths.Atan2, other, floating=True)

    arctan2 = atan2

    def fmod(self, other: Any) -> Tensor:
        """self - trunc(self / other) * other: the sign of self (C's fmod)."""
        return self._binary(maths.Fmod, other)

    def remainder(self, other: Any) -> Tensor:
        """self - floor(self / other) * other: the sign of other (Python's %)."""
        return self._binary(maths.Remainder, other)

    def floor_divide(self, other: Any) -> Tensor:
        """floor(self / other); integers stay integers (and a zero divisor raises)."""
        return self._binary(maths.FloorDivide, other)

    def _div_rounded(self, other: Any, rounding_mode: str | None, reverse: bool = False) -> Tensor:
        """div with PyTorch's rounding_mode: None (true division), "trunc" or "floor"."""
        if rounding_mode is None:
            return self._binary(elementwise.Div, other, reverse=reverse, floating=True)
        ops = {"trunc": maths.TruncDivide, "floor": maths.FloorDivide}
        if rounding_mode not in ops:
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got "
                             f"{rounding_mode!r}")
        return self._binary(ops[rounding_mode], other, reverse=reverse)

    __mod__ = remainder
    __floordiv__ = floor_divide

    def __rmod__(self, other: Any) -> Tensor:
        return self._binary(maths.Remainder, other, reverse=True)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return self._binary(maths.FloorDivide, other, reverse=True)

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two axes from diagonal `diagonal` down; zeros above."""
        return self._triangle(False, diagonal)

    def triu(self, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two axes from diagonal `diagonal` up; zeros below."""
        return self._triangle(True, diagonal)

    def _triangle(self, upper: bool, diagonal: int) -> Tensor:
        name = "triu" if upper else "tril"
        if self.ndim < 2:
            raise ValueError(f"{name}: the tensor needs at least 2 dimensions, got shape "
                             f"{self.shape}")
        if not isinstance(diagonal, (int, np.integer)) or isinstance(diagonal, bool):
            raise TypeError(f"{name}: diagonal must be an int, got {diagonal!r}")
        return maths.Triangle.apply(self, upper=upper, diagonal=int(diagonal))

    # --- named comparisons and logic (no gradient, boolean results) -------------------------
    def eq(self, other: Any) -> Tensor:
        return self._compare(other, "equal")

    def ne(self, other: Any) -> Tensor:
        return self._compare(other, "not_equal")

    def lt(self, other: Any) -> Tensor:
        return self._compare(other, "less")

    def le(self, other: Any) -> Tensor:
        return self._compare(other, "less_equal")

    def gt(self, other: Any) -> Tensor:
        return self._compare(other, "greater")

    def ge(self, other: Any) -> Tensor:
        return self._compare(other, "greater_equal")

    greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne

    def equal(self, other: Tensor) -> bool:
        """True when both have the same shape and elements (torch.equal)."""
        return self.shape == other.shape and bool(self._compare(other, "equal")._data.all())

    def logical_and(self, other: Any) -> Tensor:
        return self._compare(other, "logical_and")

    def logical_or(self, other: Any) -> Tensor:
        return self._compare(other, "logical_or")

    def logical_xor(self, other: Any) -> Tensor:
        return self._compare(other, "logical_xor")

    def logical_not(self) -> Tensor:
        out = self._backend.xp.logical_not(self._data)
        return Tensor._wrap(out, self._backend, self._device, False)

    def isclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
                equal_nan: bool = False) -> Tensor:
        """|self - other| <= atol + rtol |other| elementwise (equal infinities are close; NaNs
        only with equal_nan); PyTorch's defaults."""
        if rtol < 0 or atol < 0:
            raise ValueError(f"isclose: rtol and atol must be non-negative, got {rtol}, {atol}")
        other_data = other._data if isinstance(other, Tensor) else other
        if isinstance(other_data, np.ndarray):
            other_data = self._backend.asarray(other_data)
        try:
            out = self._backend.xp.isclose(self._data, other_data, rtol=rtol, atol=atol,
                                           equal_nan=equal_nan)
        except ValueError:
            _check_broadcast("isclose", self.shape, getattr(other_data, "shape", ()))
            raise
        return Tensor._wrap(out, self._backend, self._device, False)

    def allclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
                 equal_nan: bool = False) -> bool:
        """isclose everywhere: a Python bool."""
        return bool(self.isclose(other, rtol, atol, equal_nan)._data.all())

    # --- more activations (ops/elementwise.py, registered in ACTIVATIONS) -------------------
    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        return elementwise.LeakyRelu.apply(self._floating(), negative_slope=float(negative_slope))

    def elu(self, alpha: float = 1.0) -> Tensor:
        return elementwise.Elu.apply(self._floating(), alpha=float(alpha))

    def selu(self) -> Tensor:
        return elementwise.Selu.apply(self._floating())

    def silu(self) -> Tensor:
        """x * sigmoid(x), also called swish."""
        return elementwise.Silu.apply(self._floating())

    swish = silu

    def mish(self) -> Tensor:
        return elementwise.Mish.apply(self._floating())

    def softsign(self) -> Tensor:
        return elementwise.Softsign.apply(self._floating())

    def hardtanh(self, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
        if min_val > max_val:
            raise ValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
        return elementwise.Hardtanh.apply(self._floating(), min_val=float(min_val),
                                          max_val=float(max_val))

    def relu6(self) -> Tensor:
        return elementwise.Relu6.apply(self._floating())

    def hardsigmoid(self) -> Tensor:
        return elementwise.Hardsigmoid.apply(self._floating())

    def hardswish(self) -> Tensor:
        return elementwise.Hardswish.apply(self._floating())

    def glu(self, dim: int = -1) -> Tensor:
        """a * sigmoid(b) for the two halves a, b of axis `dim` (torch's F.glu)."""
        if self.ndim == 0:
            raise ValueError("glu: a 0-d tensor has no dimension to halve")
        axis = _one_axis("glu", dim, self.ndim)
        if self.shape[axis] % 2:
            raise ValueError(f"glu: dimension {dim} of shape {self.shape} has odd size "
                             f"{self.shape[axis]}; it must halve")
        a, b = self.chunk(2, axis) if self.shape[axis] else (self, self)
        return a * b.sigmoid()

    # --- comparisons: no gradient, boolean results ------------------------------------------
    def _compare(self, other: Any, ufunc: str) -> Tensor:
        other_data = other._data if isinstance(other, Tensor) else other
        if isinstance(other_data, np.ndarray):  # a host array: onto this tensor's device
            other_data = self._backend.asarray(other_data)
        try:
            out = getattr(self._backend.xp, ufunc)(self._data, other_data)
        except ValueError:
            _check_broadcast(ufunc, self.shape, getattr(other_data, "shape", ()))
            raise
        return Tensor._wrap(out, self._backend, self._device, False)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, "less")

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, "less_equal")

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, "greater")

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, "greater_equal")

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "equal")

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "not_equal")

    @_dim_aliases
    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Index of the (first) maximum along `axis`, or in the flattened tensor (int64)."""
        return self._arg("argmax", axis, keepdims)

    @_dim_aliases
    def argmin(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        """Index of the (first) minimum along `axis`, or in the flattened tensor (int64)."""
        return self._arg("argmin", axis, keepdims)

    def _arg(self, fn: str, axis: int | None, keepdims: bool) -> Tensor:
        if axis is not None:
            axis = _one_axis(fn, axis, max(self.ndim, 1))
        if self.size == 0 and (axis is None or self.shape[axis] == 0):
            raise ValueError(f"{fn}: cannot reduce an empty tensor of shape {self.shape}")
        data = self._data if self.ndim else self._data.reshape(1)
        out = getattr(self._backend.xp, fn)(data, axis=axis, keepdims=keepdims and self.ndim > 0)
        out = out.astype(np.int64, copy=False).reshape(out.shape if self.ndim else ())
        return Tensor._wrap(out, self._backend, self._device, False)

    # --- reductions ------------------------------------------------------------------------
    @_dim_aliases
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.Sum.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)

    @_dim_aliases
    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = _as_axes(axis, self.ndim)
        count = self.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        # over nothing: 0 * nan = nan, as torch (not 0)
        return self._floating().sum(axes, keepdims) * (1.0 / count if count else float("nan"))

    @_dim_aliases
    def var(self, axis: int | Sequence[int] | None = None, keepdims: bool = False,
            correction: float | None = None, *, ddof: float | None = None,
            unbiased: bool | None = None) -> Tensor:
        """sum((x - mean)**2) / (n - correction) over `axis` (torch.var). The default is
        torch's, correction=1 (the unbiased estimate), not NumPy's ddof=0; ddof is NumPy's
        name for correction and unbiased=True/False torch's older one (1/0): give at most
        one of the three. The second positional argument is keepdims, as in the house's
        other reductions (torch's old var(dim, unbiased) form takes unbiased= by name here)."""
        c = Tensor._correction("var", correction, ddof, unbiased)
        axes = _as_axes(axis, self.ndim)
        count = self.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        centred = self._floating() - self.mean(axes, keepdims=True)
        # n <= correction divides by 0, as torch: inf (nan where the squares sum to 0)
        scale = 1.0 / (count - c) if count > c else float("inf")
        return (centred * centred).sum(axes, keepdims) * scale

    @staticmethod
    def _correction(fn: str, correction: Any, ddof: Any, unbiased: Any) -> float:
        """The one divisor offset of var/std from torch's correction, NumPy's ddof or torch's old
        unbiased flag; torch's default 1 when none is given. Two at once is an error, as torch."""
        given = [n for n, v in (("correction", correction), ("ddof", ddof), ("unbiased", unbiased))
                 if v is not None]
        if len(given) > 1:
            raise TypeError(f"{fn}: give one of correction, ddof, unbiased, not "
                            f"{' and '.join(given)}")
        if unbiased is not None:
            if not isinstance(unbiased, (bool, np.bool_)):
                raise TypeError(f"{fn}: unbiased must be True or False, got {unbiased!r}")
            return 1.0 if unbiased else 0.0
        value = correction if correction is not None else ddof
        if value is None:
            return 1.0
        if not isinstance(value, (int, float, np.number)):  # a bool counts as 0/1, as in torch
            raise TypeError(f"{fn}: {given[0]} must be a number, got {value!r}")
        return float(value)

    def max(self, axis: int | Sequence[int] | Tensor | None = None, keepdims: bool = False, *,
            dim: int | None = None, keepdim: bool | None = None) -> Any:
        """The house form, max(axis, keepdims): the values (ties share the gradient). torch's
        form, max(dim=d): the namedtuple (values, indices) along d, the gradient going to the
        index. max(tensor): the elementwise maximum, as torch.max(a, b)."""
        return self._extreme(True, axis, keepdims, dim, keepdim)

    def min(self, axis: int | Sequence[int] | Tensor | None = None, keepdims: bool = False, *,
            dim: int | None = None, keepdim: bool | None = None) -> Any:
        """As max: min(axis, keepdims) values; min(dim=d) (values, indices); min(tensor)."""
        return self._extreme(False, axis, keepdims, dim, keepdim)

    def _extreme(self, largest: bool, axis: Any, keepdims: bool, dim: int | None,
                 keepdim: bool | None) -> Any:
        keepdims = keepdims if keepdim is None else keepdim
        if isinstance(axis, Tensor):
            return self.maximum(axis) if largest else self.minimum(axis)
        if dim is None:
            fn = reduce.Max if largest else reduce.Min
            return fn.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)
        if axis is not None:
            raise TypeError(f"{'max' if largest else 'min'}: give axis or dim, not both")
        indices = (self.argmax if largest else self.argmin)(dim, keepdims=True)
        values = self.gather(dim, indices)
        if not keepdims and self.ndim:
            values, indices = values.squeeze(dim), indices.squeeze(dim)
        return indexing.ValuesIndices(values, indices)

    # --- movement --------------------------------------------------------------------------
    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return movement.Reshape.apply(self, shape=_resolve_shape(self.shape, new))  # type: ignore[arg-type]

    def view(self, *shape: int | Sequence[int]) -> Tensor:
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge the axes start_dim..end_dim into one (torch.flatten); a 0-d tensor becomes 1-D."""
        if self.ndim == 0:
            _one_axis("flatten", start_dim, 1), _one_axis("flatten", end_dim, 1)
            return self.reshape(1)
        start, end = _one_axis("flatten", start_dim, self.ndim), _one_axis("flatten", end_dim,
                                                                          self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(*self.shape[:start], -1 if self.size else
                            int(np.prod(self.shape[start:end + 1])), *self.shape[end + 1:])

    def permute(self, *axes: int | Sequence[int]) -> Tensor:
        order = tuple(axes[0]) if len(axes) == 1 and not isinstance(axes[0], int) else axes
        if sorted(int(a) % self.ndim for a in order) != list(range(self.ndim)):  # type: ignore
            raise ValueError(f"permute: {order} is not a permutation of the axes of {self.shape}")
        return movement.Permute.apply(self, axes=tuple(int(a) % self.ndim for a in order))  # type: ignore

    def transpose(self, axis0: int = -2, axis1: int = -1) -> Tensor:
        """Swap two axes (the last two by default; a 1-D tensor is returned as is)."""
        if self.ndim < 2:
            return self
        order = list(range(self.ndim))
        order[axis0], order[axis1] = order[axis1], order[axis0]
        return self.permute(order)

    def expand(self, *shape: int | Sequence[int]) -> Tensor:
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        lead = len(new) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {new}")
        target = tuple(
            s if n == -1 else n for s, n in zip((1,) * lead + self.shape, new)  # type: ignore
        )
        _check_broadcast("expand", self.shape, target, result=target)
        return movement.Expand.apply(self, shape=target)

    def unsqueeze(self, axis: int) -> Tensor:
        axis = _one_axis("unsqueeze", axis, self.ndim + 1)
        return self.reshape(*self.shape[:axis], 1, *self.shape[axis:])

    def squeeze(self, axis: int | Sequence[int] | None = None) -> Tensor:
        """Drop size-1 axes: all of them, or those of `axis` (one or several) that have size 1
        (torch.squeeze; a 0-d tensor's axis 0/-1 is itself)."""
        if axis is None:
            return self.reshape(*[s for s in self.shape if s != 1])
        axes = _as_axes(axis, self.ndim) or ()
        return self.reshape(*[s for i, s in enumerate(self.shape) if not (i in axes and s == 1)])

    def __getitem__(self, index: Any) -> Tensor:
        """NumPy's indexing, except that integers are applied before index arrays, as torch
        does: x[0, :, [0, 2]] on (2, 3, 4) is (3, 2) (NumPy: (2, 3))."""
        index = _normalise_index(index, self._backend)
        two_step = movement.split_torch_index(index, self.ndim)
        if two_step is not None:
            basic, advanced = two_step
            return movement.GetItem.apply(movement.GetItem.apply(self, index=basic),
                                          index=advanced)
        return movement.GetItem.apply(self, index=index)

    def unbind(self, axis: int = 0) -> list[Tensor]:
        """The slices along `axis`, without it (torch.unbind); one node, O(size) backward."""
        return split.unbind(self, axis)

    def chunk(self, chunks: int, axis: int = 0) -> list[Tensor]:
        """Pieces of ceil(n / chunks) along `axis` (torch.chunk); one node, O(size) backward."""
        return split.chunk(self, chunks, axis)

    def pad(self, widths: Sequence[tuple[int, int]], mode: str = "constant",
            value: float = 0.0) -> Tensor:
        """Padding with NumPy's pad_width convention: one (before, after) pair per axis (F.pad
        takes torch's flat last-axis-first spec). mode: constant (`value`; negative widths
        crop), reflect, replicate, circular."""
        pairs = movement.pad_widths(widths, self.shape, mode)
        if mode != "constant" and value != 0.0:
            raise ValueError(f"pad: value is for mode='constant', not {mode!r}")
        grow = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
        out = movement.Pad.apply(self, widths=grow, mode=mode, value=float(value)) \
            if any(lo or hi for lo, hi in grow) else self
        if any(lo < 0 or hi < 0 for lo, hi in pairs):  # crop
            out = out[tuple(slice(-min(lo, 0), n - (-min(hi, 0)))
                            for (lo, hi), n in zip(pairs, out.shape))]
        return out

    # --- reductions, movement and indexing in torch's spelling (ops/reduce.py, movement.py,
    # indexing.py, split.py); `dim`/`keepdim` are aliases of the house `axis`/`keepdims` --------
    @_dim_aliases
    def prod(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Product over `axis` (all: None); exact gradients where elements are zero."""
        return reduce.Prod.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)

    @_dim_aliases
    def std(self, axis: int | Sequence[int] | None = None, keepdims: bool = False,
            correction: float | None = None, *, ddof: float | None = None,
            unbiased: bool | None = None) -> Tensor:
        """sqrt(var(...)) (torch.std): var's arguments and default, correction=1."""
        return self.var(axis, keepdims, correction, ddof=ddof, unbiased=unbiased).sqrt()

    @_dim_aliases
    def var_mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False,
                 correction: float | None = None, *, ddof: float | None = None,
                 unbiased: bool | None = None) -> tuple[Tensor, Tensor]:
        """(var, mean) over the same axes (torch.var_mean); var's default, correction=1."""
        return (self.var(axis, keepdims, correction, ddof=ddof, unbiased=unbiased),
                self.mean(axis, keepdims))

    @_dim_aliases
    def std_mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False,
                 correction: float | None = None, *, ddof: float | None = None,
                 unbiased: bool | None = None) -> tuple[Tensor, Tensor]:
        """(std, mean) over the same axes (torch.std_mean); var's default, correction=1."""
        return (self.std(axis, keepdims, correction, ddof=ddof, unbiased=unbiased),
                self.mean(axis, keepdims))

    def _boolean(self, fn: str, axis: Any, keepdims: bool) -> Tensor:
        out = getattr(self._backend.xp, fn)(self._data, axis=_as_axes(axis, self.ndim),
                                             keepdims=keepdims)
        return Tensor._wrap(self._backend.xp.asarray(out, dtype=bool), self._backend,
                            self._device, False)

    @_dim_aliases
    def all(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Whether every element (over `axis`) is non-zero: a bool tensor, no gradient."""
        return self._boolean("all", axis, keepdims)

    @_dim_aliases
    def any(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Whether some element (over `axis`) is non-zero: a bool tensor, no gradient."""
        return self._boolean("any", axis, keepdims)

    @_dim_aliases
    def logsumexp(self, axis: int | Sequence[int] | None = None, keepdims: bool = False
                  ) -> Tensor:
        """log(sum(exp(x))) over `axis`, shifted by the maximum (no overflow)."""
        return reduce.LogSumExp.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)

    def _scan(self, fn: type[Function], name: str, axis: int | None, dim: int | None) -> Tensor:
        axis = dim if dim is not None else axis
        if axis is None:
            raise TypeError(f"{name}: needs the axis (dim) to accumulate along")
        if self.ndim == 0:
            _one_axis(name, axis, 1)
            return fn.apply(self.reshape(1), axis=0).reshape(())
        return fn.apply(self, axis=_one_axis(name, axis, self.ndim))

    def cumsum(self, axis: int | None = None, *, dim: int | None = None) -> Tensor:
        """Running sum along `axis` (torch.cumsum(x, dim))."""
        return self._scan(reduce.CumSum, "cumsum", axis, dim)

    def cumprod(self, axis: int | None = None, *, dim: int | None = None) -> Tensor:
        """Running product along `axis` (torch.cumprod(x, dim)); exact gradients with zeros."""
        return self._scan(reduce.CumProd, "cumprod", axis, dim)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        """(values, indices) along dim (torch.sort); always stable."""
        return indexing.sort(self, dim, descending, stable)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """Indices that sort along dim (torch.argsort); always stable."""
        return indexing.argsort(self, dim, descending, stable)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
        """(values, indices) of the k largest (smallest) along dim (torch.topk); always sorted,
        which sorted=False allows (ops/indexing.py)."""
        return indexing.topk(self, k, dim, largest, sorted)

    def norm(self, p: float | str = 2, dim: int | Sequence[int] | None = None,
             keepdim: bool = False) -> Tensor:
        """The vector p-norm over `dim` (all: None): p = 2 (or 'fro'), 1, inf, -inf, 0 or any
        other number (torch.norm; matrix norms such as 'nuc' are not here). The gradient at
        a zero vector is 0, as torch's."""
        if p == "fro":
            p = 2
        if isinstance(p, str):
            raise ValueError(f"norm: p must be a number or 'fro', got {p!r}")
        a = self.abs()
        if p == float("inf"):
            return a.max(dim, keepdim)
        if p == float("-inf"):
            return a.min(dim, keepdim)
        if p == 0:
            return (self != 0).astype(self.dtype if self.dtype.kind == "f" else np.float32).sum(
                dim, keepdim)
        if p == 1:
            return a.sum(dim, keepdim)
        s = (self * self if p == 2 else a ** p).sum(dim, keepdim)
        zero = s == 0  # no gradient through s ** (1/p) at 0 (it is infinite there)
        return where(zero, 0.0, where(zero, 1.0, s) ** (1.0 / p))

    def flip(self, *dims: int | Sequence[int]) -> Tensor:
        """Reverse the order along `dims` (torch.flip)."""
        axes = dims[0] if len(dims) == 1 and not isinstance(dims[0], int) else dims
        return movement.Flip.apply(self, axes=_as_axes(axes, self.ndim) or ())  # type: ignore

    def roll(self, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None
             ) -> Tensor:
        """Shift cyclically along `dims` (None: over the flattened tensor, shape kept)."""
        many = not isinstance(shifts, (int, np.integer))
        shift = tuple(int(s) for s in shifts) if many else (int(shifts),)  # type: ignore
        if dims is None:
            if len(shift) != 1:
                raise ValueError("roll: without dims, shifts must be one int")
            return movement.Roll.apply(self, shifts=shift, axes=None)
        axes = tuple(dims) if not isinstance(dims, (int, np.integer)) else (int(dims),)
        if len(axes) != len(shift):
            raise ValueError(f"roll: shifts {shifts} and dims {dims} differ in length")
        axes = tuple(_one_axis("roll", a, max(self.ndim, 1)) for a in axes)
        if self.ndim == 0:
            return self
        return movement.Roll.apply(self, shifts=shift, axes=axes)

    def repeat(self, *sizes: int | Sequence[int]) -> Tensor:
        """Tile the whole tensor sizes[i] times along each axis, new leading axes for extra
        sizes (torch.repeat; NumPy's tile). Built from reshape and expand."""
        reps = tuple(sizes[0]) if len(sizes) == 1 and not isinstance(sizes[0], int) else sizes
        reps = tuple(int(r) for r in reps)  # type: ignore
        if len(reps) < self.ndim:
            raise ValueError(f"repeat: {len(reps)} sizes for a tensor with {self.ndim} "
                             "dimensions; give at least one per dimension")
        if any(r < 0 for r in reps):
            raise ValueError(f"repeat: sizes must not be negative, got {reps}")
        shape = (1,) * (len(reps) - self.ndim) + self.shape
        x = self.reshape(*[d for s in shape for d in (1, s)])  # (1, s0, 1, s1, ...)
        x = x.expand(*[d for r, s in zip(reps, shape) for d in (r, s)])  # (r0, s0, r1, s1, ...)
        return x.reshape(*[r * s for r, s in zip(reps, shape)])

    def tile(self, *dims: int | Sequence[int]) -> Tensor:
        """repeat, with fewer sizes than dimensions read as leading 1s (torch.tile)."""
        reps = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else dims
        return self.repeat(*((1,) * (self.ndim - len(reps)) + tuple(reps)))  # type: ignore

    def repeat_interleave(self, repeats: Any, dim: int | None = None) -> Tensor:
        """Each element (or slice along dim) repeated in place (torch.repeat_interleave)."""
        return indexing.repeat_interleave(self, repeats, dim)

    def gather(self, dim: int, index: Any) -> Tensor:
        """out[i][j][k] = self[i][index[i][j][k]][k] for dim 1 (torch.gather)."""
        return indexing.gather(self, dim, index)

    def scatter(self, dim: int, index: Any, src: Any = None, *, value: Any = None,
                reduce: str | None = None) -> Tensor:
        """A copy with src (or `value`) written at index along dim (torch.scatter)."""
        return indexing.scatter(self, dim, index, src, value=value, reduce=reduce)

    def scatter_add(self, dim: int, index: Any, src: Any) -> Tensor:
        """A copy with src added at index along dim, repeats adding up (torch.scatter_add)."""
        return indexing.scatter_add(self, dim, index, src)

    def scatter_reduce(self, dim: int, index: Any, src: Any, reduce: str,
                       include_self: bool = True) -> Tensor:
        """A copy with src reduced in at index along dim: sum, prod, mean, amax, amin."""
        return indexing.scatter_reduce(self, dim, index, src, reduce, include_self)

    def index_select(self, dim: int, index: Any) -> Tensor:
        """The slices at the 1-D `index` along dim (torch.index_select)."""
        return indexing.index_select(self, dim, index)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """`value` where mask (broadcast) is True, self elsewhere (no gradient where filled)."""
        return where(mask, value, self)

    def masked_select(self, mask: Any) -> Tensor:
        """The elements where mask (broadcast) is True, as a 1-D tensor."""
        return indexing.masked_select(self, mask)

    def nonzero(self, as_tuple: bool = False) -> Any:
        """Indices of the non-zero elements: (n, ndim) int64, or a tuple of ndim 1-D tensors."""
        return indexing.nonzero(self, as_tuple)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """The `length` elements from `start` along dim (a view in torch, a slice here)."""
        axis = _one_axis("narrow", dim, self.ndim)
        n = self.shape[axis]
        start = start + n if -n <= start < 0 else start
        if not 0 <= start <= n or length < 0 or start + length > n:
            raise IndexError(f"narrow: start {start} and length {length} do not fit dimension "
                             f"{axis} of size {n}")
        return self[(slice(None),) * axis + (slice(start, start + length),)]

    def movedim(self, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
        """Move axes to new positions, the others keeping their order (torch.movedim)."""
        src = (source,) if isinstance(source, (int, np.integer)) else tuple(source)
        dst = (destination,) if isinstance(destination, (int, np.integer)) else tuple(destination)
        if len(src) != len(dst):
            raise ValueError(f"movedim: source {source} and destination {destination} differ "
                             "in length")
        src = tuple(_one_axis("movedim", a, self.ndim) for a in src)
        dst = tuple(_one_axis("movedim", a, self.ndim) for a in dst)
        if len(set(src)) != len(src) or len(set(dst)) != len(dst):
            raise ValueError("movedim: repeated dims in source or destination")
        rest = iter(a for a in range(self.ndim) if a not in src)
        where_to = dict(zip(dst, src))
        return self.permute([where_to[i] if i in where_to else next(rest)
                             for i in range(self.ndim)])

    moveaxis = movedim

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        """Swap two axes (torch.swapaxes / transpose(dim0, dim1), both checked)."""
        a, b = _one_axis("swapaxes", axis0, self.ndim), _one_axis("swapaxes", axis1, self.ndim)
        order = list(range(self.ndim))
        order[a], order[b] = order[b], order[a]
        return self.permute(order) if a != b else self

    swapdims = swapaxes

    def split(self, split_size_or_sections: int | Sequence[int], dim: int = 0) -> list[Tensor]:
        """Pieces of split_size along dim, or of the listed sizes (torch.split); one node."""
        return split.split(self, split_size_or_sections, dim)

    # --- linear algebra ---------------------------------------------------------------------
    def matmul(self, other: Any) -> Tensor:
        other = self._const(other)
        a, b = self, other
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{a.shape} and {b.shape}")
        squeeze_first = a.ndim == 1
        squeeze_last = b.ndim == 1
        if squeeze_first:
            a = a.reshape(1, a.shape[0])
        if squeeze_last:
            b = b.reshape(b.shape[0], 1)
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: shapes {self.shape} and {other.shape} are not aligned: "
                f"{a.shape[-1]} (last dim of the first) != {b.shape[-2]} (second-to-last dim of "
                "the second)"
            )
        try:
            out = linalg.MatMul.apply(a, b)
        except ValueError:
            try:
                _check_broadcast("matmul", a.shape[:-2], b.shape[:-2])
            except ValueError:  # name the operands' shapes, not just their batch dimensions
                raise ValueError(
                    f"matmul: batch dimensions of shapes {self.shape} and {other.shape} cannot "
                    "be broadcast together"
                ) from None
            raise
        if squeeze_first:
            out = out.reshape(*out.shape[:-2], out.shape[-1])
        if squeeze_last:
            out = out.reshape(*out.shape[:-1])
        return out

    # --- nn --------------------------------------------------------------------------------
    def softmax(self, axis: int = -1) -> Tensor:
        if self.ndim == 0:  # torch: dim 0/-1 of a 0-d tensor is the tensor itself
            return self.reshape(1).softmax(_one_axis("softmax", axis, 1)).reshape(())
        return nn.Softmax.apply(self._floating(), axis=_one_axis("softmax", axis, self.ndim))

    def log_softmax(self, axis: int = -1) -> Tensor:
        if self.ndim == 0:  # torch: dim 0/-1 of a 0-d tensor is the tensor itself
            return self.reshape(1).log_softmax(_one_axis("log_softmax", axis, 1)).reshape(())
        return nn.LogSoftmax.apply(self._floating(), axis=_one_axis("log_softmax", axis, self.ndim))

    # --- constructors ------------------------------------------------------------------------
    @staticmethod
    def zeros(*shape: int, dtype: Any = np.float32, device: str = DEFAULT_DEVICE,
              requires_grad: bool = False) -> Tensor:
        return _filled(shape, 0.0, dtype, device, requires_grad)

    @staticmethod
    def ones(*shape: int, dtype: Any = np.float32, device: str = DEFAULT_DEVICE,
             requires_grad: bool = False) -> Tensor:
        return _filled(shape, 1.0, dtype, device, requires_grad)

    def zeros_like(self) -> Tensor:
        return Tensor.zeros(*self.shape, dtype=self.dtype, device=self.device)

    def ones_like(self) -> Tensor:
        return Tensor.ones(*self.shape, dtype=self.dtype, device=self.device)


_function._wrap = Tensor._wrap


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A CPU tensor that shares `array`'s memory, as torch.from_numpy: writes into either are
    seen by the other (Tensor(array) copies, as torch.tensor does). Writing into the array
    after a forward that saved it makes backward compute the gradient of the new values; the
    engine cannot see such writes (they bump no version)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    _check_dtype(array.dtype)
    backend = get_backend("cpu")
    t = Tensor._wrap(array, backend, backend.device, False)
    if _function._memory is not None:
        _function._memory.add(array, "temporaries", backend.device)
    return t.requires_grad_(True) if requires_grad else t


# --- free functions on tensors ------------------------------------------------------------------
def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Concatenate along an existing axis (NumPy's concatenate)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    ndim = tensors[0].ndim
    axis = axis % max(ndim, 1)
    for t in tensors[1:]:
        if t.ndim != ndim or any(
            s != r for i, (s, r) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis
        ):
            raise ValueError(
                f"cat: shapes {tensors[0].shape} and {t.shape} differ outside axis {axis}"
            )
    return movement.Concatenate.apply(*tensors, axis=axis)


concatenate = cat


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along a new axis (NumPy's stack)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for t in tensors[1:]:
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: shapes {tensors[0].shape} and {t.shape} differ")
    axis = axis % (tensors[0].ndim + 1)
    return cat([t.unsqueeze(axis) for t in tensors], axis=axis)


def where(condition: Tensor | Array, x: Any, y: Any) -> Tensor:
    """Pick x where condition holds, else y; gradient flows to the branch that was picked."""
    ref = x if isinstance(x, Tensor) else y
    if not isinstance(ref, Tensor):
        raise TypeError("where: x or y must be a Tensor")
    cond = condition if isinstance(condition, Tensor) else ref._const(condition)
    cond = Tensor._wrap(cond._data.astype(bool, copy=False), ref._backend, ref.device, False)
    a, b = ref._const(x), ref._const(y)
    try:
        return elementwise.Where.apply(cond, a, b)
    except ValueError:
        _check_broadcast("where", cond.shape, a.shape)
        _check_broadcast("where", np.broadcast_shapes(cond.shape, a.shape), b.shape)
        raise


def _filled(shape: Iterable[Any], value: float, dtype: Any, device: str, rg: bool) -> Tensor:
    dims = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else tuple(shape)  # type: ignore
    backend = get_backend(device)
    arr = backend.xp.full(dims, value, dtype=dtype)
    t = Tensor._wrap(arr, backend, backend.device, False)
    if _function._memory is not None:
        _function._memory.add(arr, "temporaries", backend.device)
    if rg:
        t.requires_grad_(True)
    return t


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from root, each after all its inputs (iterative: deep RNN graphs)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        ctx = node._ctx
        if ctx is not None:
            for parent in ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _send_to_inputs(node: Function, in_grads: Sequence[Array | None], grads: dict[int, Array],
                    retain_graph: bool, pending: _PendingLeaves | None = None) -> None:
    """Add a node's input gradients into `grads`, summed back to each input's shape and cast to
    its dtype (and complete the hooked leaves it was the last consumer of); then free what the
    node saved, unless the graph is to be walked again."""
    memory = _function._memory
    for parent, pg, need in zip(node.parents, in_grads, node.needs_input_grad):
        if not need or pg is None:
            continue
        if pg.shape != parent._data.shape:
            pg = sum_to_shape(node.backend, pg, parent._data.shape)
        if pg.dtype != parent._data.dtype:
            pg = pg.astype(parent._data.dtype)
        key = id(parent)
        prev = grads.get(key)
        grads[key] = pg if prev is None else prev + pg
        if memory is not None:
            memory.add(grads[key], "temporaries", parent._device)
    if pending is not None:
        pending.consumed(node)
    if not retain_graph:
        if memory is not None:
            memory.release(node)
        node.saved = None  # type: ignore[assignment]
        node.parents = ()


# --- post-accumulate-grad hooks ------------------------------------------------------------------
_hooked_leaves = 0
"""How many live tensors have hooks: a backward while none has pays one test of this int.
The hooks themselves live on their tensor (a hook that refers back to it, as a bound method of
the model's wrapper does, is then a cycle the garbage collector can free)."""


def _count_hooked(change: int) -> None:
    global _hooked_leaves
    _hooked_leaves += change


def _hooks_of(t: Tensor) -> list[Callable[[Tensor], None]] | None:
    return getattr(t, "_post_grad_hooks", None)  # the slot is unset on most tensors


class HookHandle:
    """What register_post_accumulate_grad_hook returns: `remove()` unregisters the hook."""

    def __init__(self, tensor: Tensor, hook: Callable[[Tensor], None]) -> None:
        self.tensor, self.hook = weakref.ref(tensor), hook

    def remove(self) -> None:
        t = self.tensor()
        hooks = None if t is None else _hooks_of(t)
        if hooks is not None and self.hook in hooks:
            hooks.remove(self.hook)


class _PendingLeaves:
    """The hooked leaves of one backward walk, each with the number of consumer edges (node,
    input slot) whose gradient it still waits for.

    Why a count: the walk visits tensors in reverse topological order, which puts a leaf after
    every node that consumes it, but not right after the last one. `_topological_order` is a
    depth-first post-order that appends a leaf as soon as the search first reaches it, so the
    weight of the *last* layer (reached first, beside the deep input subtree) sits near the
    start of the order and is visited near the end of the reverse walk, after the whole
    network. The gradient is complete earlier: once every node that uses the leaf has run its
    backward. Each node runs at most once per walk (a multi-output node once for all its
    outputs), so counting its edges to the leaf and counting down as each node sends finds
    that moment exactly. A node that got no gradient never runs and never counts down; such a
    leaf's hooks run when the walk reaches the leaf itself (`release`), the old place."""

    def __init__(self, order: list[Tensor], grads: dict[int, Array], seen: set[int]) -> None:
        self.grads, self.seen = grads, seen
        self.waiting: dict[int, int] = {}
        nodes: set[int] = set()
        for t in order:
            ctx = t._ctx
            if ctx is None or id(ctx) in nodes:
                continue
            nodes.add(id(ctx))
            for parent, need in zip(ctx.parents, ctx.needs_input_grad):
                if need and parent._ctx is None and _hooks_of(parent):
                    self.waiting[id(parent)] = self.waiting.get(id(parent), 0) + 1

    def consumed(self, node: Function) -> None:
        """`node` has sent its input gradients: count its edges down; a leaf at zero is done."""
        for parent, need in zip(node.parents, node.needs_input_grad):
            left = self.waiting.get(id(parent)) if need else None
            if left is None:
                continue
            if left > 1:
                self.waiting[id(parent)] = left - 1
                continue
            del self.waiting[id(parent)]
            g = self.grads.pop(id(parent), None)
            if g is not None:  # else no gradient reached it: no hook, as PyTorch
                _accumulate_leaf(parent, g, self.seen)
                self.release(parent)

    def release(self, leaf: Tensor) -> None:
        """Run the hooks of a leaf whose .grad is complete."""
        self.waiting.pop(id(leaf), None)
        for hook in list(_hooks_of(leaf) or ()):
            hook(leaf)


def _accumulate_leaf(leaf: Tensor, g: Array, seen: set[int]) -> None:
    if not leaf.requires_grad:
        return
    if id(g) in seen or (getattr(g, "base", None) is not None):
        g = g.copy()  # never hand one array to two leaves, nor a view of another array
    seen.add(id(g))
    if leaf.grad is None:
        leaf.grad = Tensor._wrap(g, leaf._backend, leaf.device, False)
    else:
        leaf.grad = Tensor._wrap(leaf.grad._data + g, leaf._backend, leaf.device, False)
    if _function._memory is not None:
        _function._memory.add(leaf.grad._data, "gradients", leaf._device)


def _check_broadcast(op: str, a: Shape, b: Shape, result: Shape | None = None) -> None:
    try:
        shape = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        raise ValueError(
            f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together"
        ) from None
    if result is not None and shape != tuple(result):
        raise ValueError(f"{op}: cannot expand shape {tuple(a)} to {tuple(result)}")


def _one_axis(op: str, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % ndim


def _resolve_shape(old: Shape, new: Sequence[int]) -> Shape:
    new = tuple(int(s) for s in new)
    size = int(np.prod(old))
    if new.count(-1) > 1:
        raise ValueError(f"reshape: at most one -1 allowed, got {new}")
    if -1 in new:
        known = int(np.prod([s for s in new if s != -1]))
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape {old} (size {size}) to {new}")
        new = tuple(size // known if s == -1 else s for s in new)
    if int(np.prod(new)) != size:
        raise ValueError(f"reshape: cannot reshape {old} (size {size}) to {new}")
    return new


def _normalise_index(index: Any, backend: Backend) -> Any:
    """Tensors, lists and NumPy arrays inside an index become arrays on `backend`'s device."""
    if isinstance(index, tuple):
        return tuple(_normalise_index(i, backend) for i in index)
    if isinstance(index, Tensor):
        return index._data if index._backend is backend else backend.asarray(index.numpy())
    if isinstance(index, (list, np.ndarray)):
        return backend.asarray(index)
    return index
