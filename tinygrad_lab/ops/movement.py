"""Ops that move data without arithmetic: reshape, permute, expand, indexing, concatenation.

Also `sum_to_shape`, the one helper that undoes broadcasting in backward (called by
Tensor.backward for every input whose gradient came back broadcast).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.backends import Array, Backend, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function
from tinygrad_lab.ops.scatter import add_at


@reference_function("sum_to_shape")
def sum_to_shape_reference(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum g over the axes broadcasting added or stretched, so it has `shape` again."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


def sum_to_shape(backend: Backend, g: Array, shape: tuple[int, ...]) -> Array:
    return backend.call("sum_to_shape", g, tuple(shape))


@reference_function("scatter_add")
def scatter_add_reference(out: Array, index: Any, values: Array) -> Array:
    """out[index] += values in place, adding up where the index repeats (NumPy's np.add.at,
    CuPy's cupyx.scatter_add); returns out. `index` is any NumPy index (a tuple of slices and
    integer arrays on out's device)."""
    return add_at(out, index, values)  # one body per array module: ops/scatter.py


class Reshape(Function):
    """A new shape over the same elements; backward reshapes back."""

    flops_per_element = (0, 0)  # data movement

    shape: tuple[int, ...]

    def forward(self, a: Array) -> Array:
        self.save(a.shape)
        return a.reshape(self.shape)

    def backward(self, g: Array) -> tuple[Array]:
        (shape,) = self.saved
        return (g.reshape(shape),)


class Permute(Function):
    """Reorder axes; backward applies the inverse permutation."""

    flops_per_element = (0, 0)  # data movement

    axes: tuple[int, ...]

    def forward(self, a: Array) -> Array:
        return a.transpose(self.axes)

    def backward(self, g: Array) -> tuple[Array]:
        return (g.transpose(tuple(np.argsort(self.axes))),)


class Expand(Function):
    """Broadcast to a larger shape (a view); backward sums back (done by Tensor.backward)."""

    flops_per_element = (0, 0)  # data movement

    shape: tuple[int, ...]

    def forward(self, a: Array) -> Array:
        return self.xp.broadcast_to(a, self.shape)

    def backward(self, g: Array) -> tuple[Array]:
        return (g,)


def _is_advanced(index: Any) -> bool:
    """True when the index holds an array (integer or boolean): NumPy's advanced indexing."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") and not isinstance(p, np.generic) for p in parts)


class GetItem(Function):
    """z = a[index] for basic and integer-array indexing; backward scatters g back, adding
    where an index repeats (the named array function "scatter_add")."""

    index: Any

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0  # data movement

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) if _is_advanced(self.index) else 0  # a scatter-add, or a copy

    def forward(self, a: Array) -> Array:
        self.save(a.shape, a.dtype)
        return a[self.index]

    def backward(self, g: Array) -> tuple[Array]:
        shape, dtype = self.saved
        xp = self.xp
        out = xp.zeros(shape, dtype=dtype)
        if _is_advanced(self.index):
            self.call("scatter_add", out, self.index, g)  # repeated indices add up
        else:
            out[self.index] = g
        return (out,)


PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
             "circular": "wrap"}
"""torch's padding modes and NumPy's names for them."""


def pad_source_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """For each of the n + lo + hi positions of a padded axis, the input position it copies
    (host metadata; constant padding's new positions are -1)."""
    if mode == "constant":
        return np.concatenate([np.full(lo, -1), np.arange(n), np.full(hi, -1)]).astype(np.intp)
    return np.pad(np.arange(n), (lo, hi), mode=PAD_MODES[mode]).astype(np.intp)


class Pad(Function):
    """Padding with a constant, or the input's own values (reflect, replicate, circular):
    backward slices the padding away, or, for copied values, adds each padded position's
    gradient back to the position it copies, one axis at a time (the modes pad axis by axis)."""

    flops_per_element = (0, 0)  # data movement

    widths: tuple[tuple[int, int], ...]
    mode: str = "constant"
    value: float = 0.0

    def forward(self, a: Array) -> Array:
        self.save(a.shape)
        if self.mode == "constant":
            return self.xp.pad(a, self.widths, constant_values=self.value)
        return self.xp.pad(a, self.widths, mode=PAD_MODES[self.mode])

    def backward(self, g: Array) -> tuple[Array]:
        (shape,) = self.saved
        if self.mode == "constant":
            index = tuple(slice(lo, lo + s) for (lo, _), s in zip(self.widths, shape))
            return (g[index],)
        for axis, ((lo, hi), n) in enumerate(zip(self.widths, shape)):
            if lo == hi == 0:
                continue
            src = self.backend.asarray(pad_source_index(n, lo, hi, self.mode))
            out = self.xp.zeros(g.shape[:axis] + (n,) + g.shape[axis + 1:], dtype=g.dtype)
            g = self.call("scatter_add", out, (slice(None),) * axis + (src,), g)
        return (g,)


class Flip(Function):
    """Reverse the order along `axes`; backward flips back."""

    flops_per_element = (0, 0)  # data movement

    axes: tuple[int, ...]

    def forward(self, a: Array) -> Array:
        return self.xp.flip(a, axis=self.axes) if self.axes else a

    def backward(self, g: Array) -> tuple[Array]:
        return (self.xp.flip(g, axis=self.axes) if self.axes else g,)


class Roll(Function):
    """Shift elements cyclically by `shifts` along `axes` (None: the flattened array);
    backward rolls back."""

    flops_per_element = (0, 0)  # data movement

    shifts: tuple[int, ...]
    axes: tuple[int, ...] | None

    def forward(self, a: Array) -> Array:
        if self.axes is None:
            return self.xp.roll(a, self.shifts[0])
        return self.xp.roll(a, self.shifts, axis=self.axes)

    def backward(self, g: Array) -> tuple[Array]:
        back = tuple(-s for s in self.shifts)
        if self.axes is None:
            return (self.xp.roll(g, back[0]),)
        return (self.xp.roll(g, back, axis=self.axes),)


class Concatenate(Function):
    """Join along an existing axis; backward splits g at the same offsets."""

    flops_per_element = (0, 0)  # data movement

    axis: int

    def forward(self, *arrays: Array) -> Array:
        self.save(tuple(a.shape[self.axis] for a in arrays))
        return self.xp.concatenate(arrays, axis=self.axis)

    def backward(self, g: Array) -> tuple[Array, ...]:
        (sizes,) = self.saved
        offsets = np.cumsum(sizes)[:-1]
        return tuple(self.xp.split(g, [int(o) for o in offsets], axis=self.axis))


class ToDevice(Function):
    """Copy between devices; the gradient is copied back."""

    flops_per_element = (0, 0)  # data movement

    target: Backend

    def forward(self, a: Array) -> Array:
        return self.target.asarray(self.backend.to_numpy(a))  # self.backend: the source's

    def backward(self, g: Array) -> tuple[Array]:
        return (self.backend.asarray(self.target.to_numpy(g)),)


# --- index and padding arguments (host metadata) ------------------------------------------------
def _is_int(item: Any) -> bool:
    """An integer index: a Python or NumPy integer, or a 0-d integer array (a 0-d tensor)."""
    if isinstance(item, (bool, np.bool_)):
        return False
    if isinstance(item, (int, np.integer)):
        return True
    return getattr(item, "ndim", None) == 0 and item.dtype.kind in "iu"


def _is_array(item: Any) -> bool:
    return hasattr(item, "shape") and not isinstance(item, np.generic) and item.ndim > 0


def split_torch_index(index: Any, ndim: int) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """torch's reading of an index mixing integers and index arrays, as two NumPy indices.

    torch applies integers first, as basic indexing (a select that drops the axis), and only
    then the index arrays; NumPy counts integers among the advanced indices. They differ when a
    slice separates an integer from an array: on shape (2, 3, 4), x[0, :, [0, 2]] is (3, 2) in
    torch, (2, 3) in NumPy. Returns (basic, advanced) to apply one after the other, or None
    when the index mixes no integer with an array (NumPy and torch agree)."""
    parts = index if isinstance(index, tuple) else (index,)
    if not (any(_is_int(p) for p in parts) and any(_is_array(p) for p in parts)):
        return None
    used = sum(p.ndim if _is_array(p) and p.dtype == np.bool_ else 0 if p is None or
               p is Ellipsis else 1 for p in parts)
    basic: list[Any] = []
    advanced: list[Any] = []
    for p in parts:
        if p is Ellipsis:
            basic.append(Ellipsis)
            advanced.extend([slice(None)] * (ndim - used))
        elif _is_int(p):
            basic.append(p)
        elif _is_array(p):
            k = p.ndim if p.dtype == np.bool_ else 1
            basic.extend([slice(None)] * k)
            advanced.append(p)
        else:  # a slice or None: one axis of the intermediate, kept as is afterwards
            basic.append(p)
            advanced.append(slice(None))
    return tuple(basic), tuple(advanced)


def pad_widths(widths: Any, shape: tuple[int, ...], mode: str) -> tuple[tuple[int, int], ...]:
    """Checked (before, after) pairs, one per axis (a shorter spec raises rather than being
    broadcast over every axis, as np.pad would)."""
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {tuple(PAD_MODES)}, got {mode!r}")
    pairs = tuple((int(a), int(b)) for a, b in widths)
    if len(pairs) != len(shape):
        raise ValueError(f"pad: widths has {len(pairs)} (before, after) pairs for a tensor with "
                         f"{len(shape)} dimensions; give one pair per dimension")
    for axis, ((lo, hi), n) in enumerate(zip(pairs, shape)):
        if mode == "constant":
            if n + min(lo, 0) + min(hi, 0) < 0:
                raise ValueError(f"pad: cropping {-lo}, {-hi} from dimension {axis} of size {n}")
            continue
        if lo < 0 or hi < 0:
            raise ValueError(f"pad: negative padding ({lo}, {hi}) is for mode='constant' only")
        if (lo or hi) and n == 0:
            raise ValueError(f"pad: mode={mode!r} cannot pad dimension {axis} of size 0")
        if mode == "reflect" and max(lo, hi) >= n:
            raise ValueError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the size "
                             f"{n} of dimension {axis}")
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(f"pad: circular padding ({lo}, {hi}) must be at most the size {n} "
                             f"of dimension {axis}")
    return pairs


def torch_pad_widths(pad: Any, ndim: int) -> tuple[tuple[int, int], ...]:
    """torch's flat pad spec (last dimension first: (left, right, top, bottom, ...)) as one
    (before, after) pair per axis."""
    flat = [int(p) for p in pad]
    if len(flat) % 2 or len(flat) // 2 > ndim:
        raise ValueError(f"pad: the flat spec {tuple(flat)} needs an even length of at most "
                         f"2 * {ndim} (pairs for the last dimensions, last first)")
    pairs = [(0, 0)] * ndim
    for i in range(len(flat) // 2):
        pairs[ndim - 1 - i] = (flat[2 * i], flat[2 * i + 1])
    return tuple(pairs)
