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
    where an index repeats (np.add.at)."""

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
            xp.add.at(out, self.index, g)  # repeated indices add up
        else:
            out[self.index] = g
        return (out,)


class Pad(Function):
    """Zero padding; backward slices the padding away."""

    flops_per_element = (0, 0)  # data movement

    widths: tuple[tuple[int, int], ...]

    def forward(self, a: Array) -> Array:
        self.save(a.shape)
        return self.xp.pad(a, self.widths)

    def backward(self, g: Array) -> tuple[Array]:
        (shape,) = self.saved
        index = tuple(slice(lo, lo + s) for (lo, _), s in zip(self.widths, shape))
        return (g[index],)


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
