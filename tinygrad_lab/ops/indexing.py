"""Indexing by index tensors along one axis: gather, scatter, scatter_reduce (torch's
semantics), and the Tensor-level ops built on them: sort, argsort, topk, index_select,
masked_select, nonzero, repeat_interleave.

`index` is never an input of the tape (it has no gradient); it travels as a node parameter,
already an integer array on the input's device. Scatters with repeated indices add up through
the named array function "scatter_add" (and "scatter_reduce_at" for prod/amax/amin), so a
device supplies one kernel and every op here runs on it.
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any

import numpy as np

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])
"""What max/min(dim=...), sort and topk return, as torch's `torch.return_types.*`."""

SCATTER_REDUCES = ("sum", "prod", "mean", "amax", "amin")


@reference_function("scatter_reduce_at")
def scatter_reduce_at_reference(out: Array, index: Any, values: Array, ufunc: str) -> Array:
    """out[index] = ufunc(out[index], values) in place, element by element where the index
    repeats (ufunc one of multiply, maximum, minimum); returns out.

    NumPy has np.<ufunc>.at. Other array modules (CuPy before 13 has no ufunc.at, nor a
    scatter-multiply) take rounds: the values are sorted by target, and round r applies each
    target's r-th value, so no round writes one place twice."""
    xp = array_module(out)
    if xp is np:
        getattr(np, ufunc).at(out, index, values)
        return out
    where = xp.broadcast_arrays(*index)
    flat = xp.ravel_multi_index(tuple(where), out.shape).reshape(-1)
    vals = xp.broadcast_to(values, where[0].shape).reshape(-1)
    if flat.size == 0:
        return out
    order = xp.argsort(flat, kind="stable")
    targets, vals = flat[order], vals[order]
    rank = xp.arange(targets.size) - xp.searchsorted(targets, targets, side="left")
    view = out.reshape(-1)  # out is freshly made by the caller: contiguous, so a view
    op = getattr(xp, ufunc)
    for r in range(int(rank.max()) + 1):
        pick = rank == r
        t = targets[pick]
        view[t] = op(view[t], vals[pick])
    return out


def along(xp: Any, index: Array, axis: int) -> tuple[Array, ...]:
    """The NumPy index that picks out[i][j][k] = a[i][index[i][j][k]][k] (axis 1): `index`
    at `axis`, and an arange broadcasting along every other axis (torch.gather's addressing)."""
    parts: list[Array] = []
    for k, n in enumerate(index.shape):
        if k == axis:
            parts.append(index)
        else:
            shape = [1] * index.ndim
            shape[k] = n
            parts.append(xp.arange(n).reshape(shape))
    return tuple(parts)


def check_index(op: str, shape: Shape, axis: int, index: Array, src: Shape | None = None) -> None:
    """torch's rules: an integer index with as many dimensions as the input, no larger than it
    outside `axis` (and no larger than src anywhere), values in [0, shape[axis])."""
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must hold integers, got {index.dtype}")
    if index.ndim != len(shape) and not (index.ndim <= 1 and len(shape) <= 1):
        raise ValueError(f"{op}: index has {index.ndim} dimensions, the input {len(shape)}; "
                         "they must be the same")
    for k, n in enumerate(index.shape):
        if k != axis and n > shape[k]:
            raise ValueError(f"{op}: index shape {tuple(index.shape)} is larger than the input "
                             f"{tuple(shape)} at dimension {k}")
        if src is not None and n > src[k]:
            raise ValueError(f"{op}: index shape {tuple(index.shape)} is larger than src "
                             f"{tuple(src)} at dimension {k}")
    if index.size:
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= shape[axis]:
            bad = low if low < 0 else high
            raise IndexError(f"{op}: index {bad} is out of range for dimension {axis} of size "
                             f"{shape[axis]}")


class Gather(Function):
    """out[i][j][k] = a[i][index[i][j][k]][k] (axis 1);  da = g scattered back, adding where
    the index repeats."""

    axis: int
    index: Array

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0  # data movement

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)  # a scatter-add

    def forward(self, a: Array) -> Array:
        self.save(a.shape, a.dtype)
        return a[along(self.xp, self.index, self.axis)]

    def backward(self, g: Array) -> tuple[Array]:
        shape, dtype = self.saved
        out = self.xp.zeros(shape, dtype=dtype)
        return (self.call("scatter_add", out, along(self.xp, self.index, self.axis), g),)


def _src_part(src: Array, index: Array) -> Array:
    """The corner of src the index addresses (torch reads src only where index has entries)."""
    return src[tuple(slice(0, n) for n in index.shape)]


def _src_grad(xp: Any, part: Array, src_shape: Shape) -> Array:
    """A gradient for the index-shaped corner of src, as a gradient of all of src."""
    if tuple(part.shape) == tuple(src_shape):
        return part
    out = xp.zeros(src_shape, dtype=part.dtype)
    out[tuple(slice(0, n) for n in part.shape)] = part
    return out


class Scatter(Function):
    """out = a, then out[i][index[i][j][k]][k] = src[i][j][k] (axis 1);  da = g where nothing
    was written, dsrc = g gathered at the written places. Where an index repeats, one write
    wins (which one is unspecified, as in torch)."""

    axis: int
    index: Array

    flops_per_element = (0, 0)  # data movement

    def forward(self, a: Array, src: Array) -> Array:
        self.save(src.shape)
        out = a.copy()
        out[along(self.xp, self.index, self.axis)] = _src_part(src, self.index)
        return out

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        (src_shape,) = self.saved
        need_a, need_src = self.needs_input_grad
        where = along(self.xp, self.index, self.axis)
        ga = None
        if need_a:
            ga = g.copy()
            ga[where] = 0
        gsrc = _src_grad(self.xp, g[where], src_shape) if need_src else None
        return ga, gsrc


class ScatterReduce(Function):
    """out = a, then each src[i][j][k] is reduced into out[i][index[i][j][k]][k] (axis 1) with
    `reduce` (sum, prod, mean, amax, amin); include_self=False leaves a's own value out of the
    places that receive something. Gradients as torch's: sum and mean pass g (over the count),
    amax/amin split g evenly among the elements equal to the result, prod sends the product of
    the other elements (exact with zeros)."""

    axis: int
    index: Array
    reduce: str
    include_self: bool

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0]) + numel(self.index.shape)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 4 * (numel(in_shapes[0]) + numel(self.index.shape))

    def forward(self, a: Array, src: Array) -> Array:
        xp = self.xp
        where = along(xp, self.index, self.axis)
        part = _src_part(src, self.index)
        counted = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)  # a float scatter-add
        count = self.call("scatter_add", xp.zeros(a.shape, dtype=counted), where,
                          xp.ones(self.index.shape, dtype=counted))
        touched = count > 0
        # a's own value takes part where include_self, and wherever nothing arrives
        selfc = xp.ones_like(touched) if self.include_self else ~touched
        reduce = self.reduce
        if reduce in ("sum", "mean"):
            out = xp.where(selfc, a, xp.zeros_like(a))
            self.call("scatter_add", out, where, part)
            if reduce == "mean":
                denom = xp.maximum(count + selfc, 1).astype(a.dtype)
                out = out // denom if a.dtype.kind in "iub" else out / denom
        elif reduce == "prod":
            out = xp.where(selfc, a, xp.ones_like(a))
            self.call("scatter_reduce_at", out, where, part, "multiply")
        else:
            if a.dtype.kind == "f":
                fill = -np.inf if reduce == "amax" else np.inf
            else:
                info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
                fill = (info.min if reduce == "amax" else info.max) if info else reduce == "amin"
            out = xp.where(selfc, a, xp.full_like(a, fill))
            ufunc = "maximum" if reduce == "amax" else "minimum"
            self.call("scatter_reduce_at", out, where, part, ufunc)
        if self.recording:
            self.save(a, part, src.shape, out, count, selfc)
        return out

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, part, src_shape, out, count, selfc = self.saved
        xp = self.xp
        where = along(xp, self.index, self.axis)
        zero = xp.zeros_like(g)
        if self.reduce == "sum":
            ga, gpart = xp.where(selfc, g, zero), g[where]
        elif self.reduce == "mean":
            gm = g / xp.maximum(count + selfc, 1)
            ga, gpart = xp.where(selfc, gm, zero), gm[where]
        elif self.reduce in ("amax", "amin"):
            self_tie = selfc & (a == out)
            part_tie = part == out[where]
            ties = self.call("scatter_add", self_tie.astype(g.dtype), where,
                             part_tie.astype(g.dtype))
            gm = g / ties
            ga, gpart = xp.where(self_tie, gm, zero), gm[where] * part_tie
        else:  # prod: the product of the other contributors, counting zeros to stay exact
            zeros = self.call("scatter_add", (selfc & (a == 0)).astype(g.dtype), where,
                              (part == 0).astype(g.dtype))
            nonzero = xp.where(selfc & (a != 0), a, xp.ones_like(a))
            self.call("scatter_reduce_at", nonzero, where,
                      xp.where(part != 0, part, xp.ones_like(part)), "multiply")

            def others(v: Array, z: Array, p: Array) -> Array:
                safe = xp.where(v != 0, v, xp.ones_like(v))
                return xp.where(v != 0, (z == 0) * (p / safe), (z == 1) * p)

            ga = xp.where(selfc, g * others(a, zeros, nonzero), zero)
            gpart = g[where] * others(part, zeros[where], nonzero[where])
        need_a, need_src = self.needs_input_grad
        return (ga if need_a else None,
                _src_grad(xp, gpart, src_shape) if need_src else None)


# --- Tensor-level ops (no backward of their own) -------------------------------------------------
def _axis(op: str, axis: int, ndim: int) -> int:
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise IndexError(f"{op}: dim {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % max(ndim, 1)


def index_array(x: Tensor, index: Any, op: str) -> Array:
    """An index (Tensor, array, list) as an integer array on x's device."""
    from tinygrad_lab.tensor import Tensor

    if isinstance(index, Tensor):
        arr = index._data if index._backend is x._backend else x._backend.asarray(index.numpy())
    elif hasattr(index, "shape") and not isinstance(index, (np.ndarray, np.generic)):
        arr = x._backend.asarray(index)  # a device array already (CuPy refuses np.asarray)
    else:
        host = np.asarray(index)
        if host.dtype.kind not in "iu" and host.size == 0:
            host = host.astype(np.intp)
        arr = x._backend.asarray(host)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must hold integers, got {arr.dtype}")
    return arr


def gather(x: Tensor, dim: int, index: Any) -> Tensor:
    """out[i][j][k] = x[i][index[i][j][k]][k] for dim 1 (torch.gather)."""
    idx = index_array(x, index, "gather")
    if x.ndim == 0:  # a 0-d tensor is gathered as one of shape (1,)
        return gather(x.reshape(1), dim, idx.reshape(-1)).reshape(idx.shape)
    axis = _axis("gather", dim, x.ndim)
    check_index("gather", x.shape, axis, idx)
    return Gather.apply(x, axis=axis, index=idx)


def _scatter_args(x: Tensor, dim: int, index: Any, src: Any, op: str) -> tuple[int, Array, Tensor]:
    from tinygrad_lab.tensor import Tensor

    idx = index_array(x, index, op)
    axis = _axis(op, dim, x.ndim)
    if not isinstance(src, Tensor):  # a scalar value: every written place gets it
        src = Tensor._wrap(x._backend.xp.full(idx.shape, src, dtype=x.dtype), x._backend,
                           x.device, False)
    check_index(op, x.shape, axis, idx, src.shape)
    return axis, idx, src


def scatter(x: Tensor, dim: int, index: Any, src: Any = None, *, value: Any = None,
            reduce: str | None = None) -> Tensor:
    """x with src (or a scalar `value`) written at index along dim (torch.scatter); a new
    tensor (torch's in-place scatter_ has no counterpart). reduce="add"/"multiply" as torch's."""
    if (src is None) == (value is None):
        raise TypeError("scatter: give exactly one of src and value")
    src = value if src is None else src
    if reduce is not None:
        names = {"add": "sum", "multiply": "prod"}
        if reduce not in names:
            raise ValueError(f"scatter: reduce must be 'add' or 'multiply', got {reduce!r}")
        return scatter_reduce(x, dim, index, src, names[reduce])
    axis, idx, src_t = _scatter_args(x, dim, index, src, "scatter")
    return Scatter.apply(x, src_t, axis=axis, index=idx)


def scatter_reduce(x: Tensor, dim: int, index: Any, src: Any, reduce: str,
                   include_self: bool = True) -> Tensor:
    """Reduce src into x at index along dim (torch.scatter_reduce): sum, prod, mean, amax,
    amin; include_self=False leaves x's value out where something arrives."""
    if reduce not in SCATTER_REDUCES:
        raise ValueError(f"scatter_reduce: reduce must be one of {SCATTER_REDUCES}, got "
                         f"{reduce!r}")
    axis, idx, src_t = _scatter_args(x, dim, index, src, "scatter_reduce")
    return ScatterReduce.apply(x, src_t, axis=axis, index=idx, reduce=reduce,
                               include_self=bool(include_self))


def scatter_add(x: Tensor, dim: int, index: Any, src: Any) -> Tensor:
    """x plus src added at index along dim, repeats adding up (torch.scatter_add)."""
    return scatter_reduce(x, dim, index, src, "sum")


def _wrap_int(x: Tensor, arr: Array) -> Tensor:
    from tinygrad_lab.tensor import Tensor

    return Tensor._wrap(arr.astype(np.int64, copy=False), x._backend, x.device, False)


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """Indices that sort x along dim (torch.argsort); always stable: ties keep their order,
    descending too."""
    if x.ndim == 0:
        return _wrap_int(x, x._backend.xp.zeros((), dtype=np.int64))
    axis = _axis("argsort", dim, x.ndim)
    xp, a = x._backend.xp, x._data
    if not descending:
        return _wrap_int(x, xp.argsort(a, axis=axis, kind="stable"))
    # descending and stable: sort the reversed array ascending, reverse, map the positions back
    n = a.shape[axis]
    flipped = xp.flip(xp.argsort(xp.flip(a, axis=axis), axis=axis, kind="stable"), axis=axis)
    return _wrap_int(x, (n - 1) - flipped)


def sort(x: Tensor, dim: int = -1, descending: bool = False,
         stable: bool = False) -> ValuesIndices:
    """(values, indices) sorted along dim (torch.sort); the values' gradient goes back to
    where each came from (a gather). Always stable: equal values keep their order, descending
    too, which is torch's order with stable=True; stable=False lets torch order ties as it
    likes, so the stable order is a valid answer there too and `stable` changes nothing."""
    indices = argsort(x, dim, descending)
    if x.ndim == 0:
        return ValuesIndices(x, indices)
    return ValuesIndices(gather(x, dim, indices), indices)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True,
         sorted: bool = True) -> ValuesIndices:
    """The k largest (or smallest) values along dim and their indices (torch.topk). Always
    sorted, largest first (smallest first with largest=False): sorted=False lets torch return
    the k in any order, so sorted output is valid there too. Among equal values the earliest
    index wins (a stable sort); torch leaves that choice open."""
    n = x.shape[_axis("topk", dim, x.ndim)] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for a dimension of size {n}")
    values, indices = sort(x, dim, descending=largest)
    if x.ndim == 0:
        return ValuesIndices(values, indices)
    axis = _axis("topk", dim, x.ndim)
    keep = (slice(None),) * axis + (slice(0, k),)
    return ValuesIndices(values[keep], _wrap_int(x, indices._data[keep]))


def index_select(x: Tensor, dim: int, index: Any) -> Tensor:
    """The slices of x at `index` (1-D) along dim (torch.index_select)."""
    idx = index_array(x, index, "index_select")
    if idx.ndim > 1:
        raise ValueError(f"index_select: index must be 0-d or 1-D, got shape {tuple(idx.shape)}")
    if x.ndim == 0:
        return gather(x, 0, idx.reshape(-1)).reshape(())
    axis = _axis("index_select", dim, x.ndim)
    n = x.shape[axis]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"index_select: index out of range for dimension {axis} of size {n}")
    return x[(slice(None),) * axis + (idx.reshape(-1),)]


def nonzero(x: Tensor, as_tuple: bool = False) -> Any:
    """The indices of the non-zero elements (torch.nonzero): an (n, ndim) int64 tensor, or with
    as_tuple a tuple of ndim 1-D tensors (a 0-d tensor counts as 1-D)."""
    a = x._data if x.ndim else x._data.reshape(1)
    where = x._backend.xp.nonzero(a)
    if as_tuple:
        return tuple(_wrap_int(x, w) for w in where)
    if x.ndim == 0:
        return _wrap_int(x, x._backend.xp.zeros((int(where[0].size), 0), dtype=np.int64))
    return _wrap_int(x, x._backend.xp.stack(where, axis=1))


def masked_select(x: Tensor, mask: Any) -> Tensor:
    """The elements of x where mask (broadcast together) is True, as a 1-D tensor."""
    from tinygrad_lab.tensor import Tensor

    m = mask._data if isinstance(mask, Tensor) else x._backend.asarray(np.asarray(mask))
    if m.dtype != np.bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got {m.dtype}")
    shape = np.broadcast_shapes(x.shape, tuple(m.shape)) or (1,)  # 0-d: as shape (1,)
    xb = x.reshape(1) if not x.shape else x
    xb = xb.expand(*shape) if shape != xb.shape else xb
    where = x._backend.xp.nonzero(x._backend.xp.broadcast_to(m.reshape(m.shape or (1,)), shape))
    return xb[tuple(where)]


def repeat_interleave(x: Tensor, repeats: Any, dim: int | None = None) -> Tensor:
    """Each element (dim None: of the flattened x) or slice along dim repeated `repeats`
    times, an int or one count per slice (torch.repeat_interleave)."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    axis = _axis("repeat_interleave", dim, x.ndim)
    n = x.shape[axis] if x.ndim else 1
    reps = np.asarray(repeats.numpy() if hasattr(repeats, "numpy") else repeats)
    if reps.dtype.kind not in "iu" or reps.ndim > 1 or (reps.ndim == 1 and reps.size not in (1, n)):
        raise ValueError(f"repeat_interleave: repeats must be an int or {n} ints, got {repeats!r}")
    if (reps < 0).any():
        raise ValueError("repeat_interleave: repeats must not be negative")
    source = np.repeat(np.arange(n), np.broadcast_to(reps.reshape(-1), (n,)))
    if x.ndim == 0:
        return x.reshape(1)[x._backend.asarray(source)]
    return x[(slice(None),) * axis + (x._backend.asarray(source),)]
