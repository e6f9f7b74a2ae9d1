"""Tensor: an array, the device it lives on, and the node of the tape that made it.

Every method that does maths is one line calling an op's `apply`; the maths and its derivative
live in tinygrad_lab/ops/. `backward()` walks the tape once in reverse topological order.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tinygrad_lab import function as _function
from tinygrad_lab.backends import DEFAULT_DEVICE, Array, Backend, get_backend
from tinygrad_lab.function import Function, check_versions, is_observed, timed_backward
from tinygrad_lab.ops import elementwise, linalg, movement, nn, reduce, split
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
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(out))


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
        if type(value) not in (float, int, bool):  # not a Python number: check what it holds
            if value is None:
                raise TypeError("operand is None, not a number, array or tensor")
            kind = getattr(value, "dtype", None)
            _check_dtype(np.asarray(value).dtype if kind is None else np.dtype(kind), "operand")
        dtype = self.dtype
        if dtype.kind != "f" and isinstance(value, float):
            dtype = np.dtype(np.float32)
        arr = self._backend.asarray(value, dtype=dtype)
        return Tensor._wrap(arr, self._backend, self._device, False)

    def _binary(self, fn: type[Function], other: Any, reverse: bool = False) -> Tensor:
        other = self._const(other)
        a, b = (other, self) if reverse else (self, other)
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

    def div(self, other: Any) -> Tensor:
        return self._binary(elementwise.Div, other)

    def pow(self, exponent: Any) -> Tensor:
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return elementwise.PowScalar.apply(self, exponent=exponent)
        return self._binary(elementwise.Pow, exponent)

    def maximum(self, other: Any) -> Tensor:
        return self._binary(elementwise.Maximum, other)

    def minimum(self, other: Any) -> Tensor:
        return -((-self).maximum(-self._const(other)))

    def neg(self) -> Tensor:
        return elementwise.Neg.apply(self)

    def exp(self) -> Tensor:
        return elementwise.Exp.apply(self)

    def log(self) -> Tensor:
        return elementwise.Log.apply(self)

    def sqrt(self) -> Tensor:
        return elementwise.Sqrt.apply(self)

    def abs(self) -> Tensor:
        return elementwise.Abs.apply(self)

    def tanh(self) -> Tensor:
        return elementwise.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        return elementwise.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        return elementwise.Relu.apply(self)

    def gelu(self) -> Tensor:
        """GELU, tanh approximation (as in GPT-2 and BERT)."""
        return elementwise.Gelu.apply(self)

    def softplus(self, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
        """log(1 + exp(beta x)) / beta, x itself where beta x > threshold (PyTorch's)."""
        return elementwise.Softplus.apply(self, beta=float(beta), threshold=float(threshold))

    def square(self) -> Tensor:
        return self * self

    def clip(self, low: float | None = None, high: float | None = None) -> Tensor:
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
        return self._binary(elementwise.Div, other, reverse=True)

    def __rpow__(self, other: Any) -> Tensor:
        return self._binary(elementwise.Pow, other, reverse=True)

    def __matmul__(self, other: Any) -> Tensor:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return self._const(other).matmul(self)

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

    def argmax(self, axis: int | None = None, keepdims: bool = False) -> Tensor:
        out = self._backend.xp.argmax(self._data, axis=axis, keepdims=keepdims)
        return Tensor._wrap(out, self._backend, self._device, False)

    # --- reductions ------------------------------------------------------------------------
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.Sum.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = _as_axes(axis, self.ndim)
        count = self.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axes, keepdims) * (1.0 / max(count, 1))

    def var(
        self, axis: int | Sequence[int] | None = None, keepdims: bool = False, ddof: int = 0
    ) -> Tensor:
        axes = _as_axes(axis, self.ndim)
        count = self.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        centred = self - self.mean(axes, keepdims=True)
        return (centred * centred).sum(axes, keepdims) * (1.0 / max(count - ddof, 1))

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return reduce.Max.apply(self, axis=_as_axes(axis, self.ndim), keepdims=keepdims)

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return -((-self).max(axis, keepdims))

    # --- movement --------------------------------------------------------------------------
    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return movement.Reshape.apply(self, shape=_resolve_shape(self.shape, new))  # type: ignore[arg-type]

    def view(self, *shape: int | Sequence[int]) -> Tensor:
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0) -> Tensor:
        start = start_dim % max(self.ndim, 1)
        return self.reshape(*self.shape[:start], -1)

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
        axis = axis % (self.ndim + 1)
        return self.reshape(*self.shape[:axis], 1, *self.shape[axis:])

    def squeeze(self, axis: int | None = None) -> Tensor:
        if axis is None:
            return self.reshape(*[s for s in self.shape if s != 1])
        axis = axis % self.ndim
        if self.shape[axis] != 1:
            return self
        return self.reshape(*self.shape[:axis], *self.shape[axis + 1 :])

    def __getitem__(self, index: Any) -> Tensor:
        return movement.GetItem.apply(self, index=_normalise_index(index, self._backend))

    def unbind(self, axis: int = 0) -> list[Tensor]:
        """The slices along `axis`, without it (torch.unbind); one node, O(size) backward."""
        return split.unbind(self, axis)

    def chunk(self, chunks: int, axis: int = 0) -> list[Tensor]:
        """Pieces of ceil(n / chunks) along `axis` (torch.chunk); one node, O(size) backward."""
        return split.chunk(self, chunks, axis)

    def pad(self, widths: Sequence[tuple[int, int]]) -> Tensor:
        """Zero padding, NumPy's pad_width convention (one (before, after) pair per axis)."""
        return movement.Pad.apply(self, widths=tuple((int(a), int(b)) for a, b in widths))

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
        return nn.Softmax.apply(self, axis=_one_axis("softmax", axis, self.ndim))

    def log_softmax(self, axis: int = -1) -> Tensor:
        return nn.LogSoftmax.apply(self, axis=_one_axis("log_softmax", axis, self.ndim))

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
