"""Splitting one tensor into many: `unbind` (every index along an axis), `chunk` (pieces) and
`split` (pieces of given sizes).

Why not k GetItem nodes: each slice's backward builds a zero gradient of the *whole* input and
the tape adds the k of them, so k slices cost O(k * size). A recurrent layer slices its input
projection (T, B, G*H) into its T time steps, which would make backward O(T^2).

Here the k parts are the outputs of one node (`Function.apply_many`): Tensor.backward gathers
the parts' gradients and calls `Split.backward` once, which writes each into its slot of one
zero gradient of the input's shape: O(size) in all, parts without a gradient left at zero. The
node keeps only the input's shape and dtype; the parts are views of the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tinygrad_lab.backends import Array
from tinygrad_lab.function import Function, is_grad_enabled
from tinygrad_lab.ops.movement import GetItem

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor


class Split(Function):
    """parts[i] = x[indices[i]] for non-overlapping basic indices (views);
    dx = the parts' gradients, each in its slot, zero elsewhere."""

    indices: tuple[Any, ...]
    flops_per_element = (0, 0)  # data movement

    def forward(self, x: Array) -> list[Array]:
        self.save(x.shape, x.dtype)
        return [x[index] for index in self.indices]

    def backward(self, grads: list[Array | None]) -> tuple[Array]:  # one per part
        shape, dtype = self.saved
        dx = self.xp.zeros(shape, dtype)
        for index, g in zip(self.indices, grads):
            if g is not None:
                dx[index] = g  # the slots do not overlap: nothing to add up
        return (dx,)


def parts(x: Tensor, indices: Sequence[Any]) -> list[Tensor]:
    """x[index] for each basic index, as one node (see the module docstring)."""
    if not (x.requires_grad and is_grad_enabled()):  # no graph: plain views
        return [GetItem.apply(x, index=index) for index in indices]
    return Split.apply_many(x, indices=tuple(indices))


def _axis(x: Tensor, axis: int, what: str) -> int:
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{what}: axis {axis} is out of range for a tensor of shape {x.shape}")
    return axis % x.ndim


def unbind(x: Tensor, axis: int = 0) -> list[Tensor]:
    """The x.shape[axis] slices along `axis`, each without that axis (torch.unbind).

    >>> steps = gx.unbind(0)  # gx (T, B, C) -> T tensors (B, C)
    """
    axis = _axis(x, axis, "unbind")
    lead = (slice(None),) * axis
    return parts(x, [(*lead, i) for i in range(x.shape[axis])])


def chunk(x: Tensor, chunks: int, axis: int = 0) -> list[Tensor]:
    """Split into pieces of ceil(n / chunks) along `axis`, the last maybe smaller (torch.chunk).

    >>> i, f, g, o = gates.chunk(4, axis=-1)  # gates (B, 4H) -> four (B, H)
    """
    if chunks < 1:
        raise ValueError(f"chunk: chunks must be >= 1, got {chunks}")
    axis = _axis(x, axis, "chunk")
    n = x.shape[axis]
    size = max(math.ceil(n / chunks), 1)
    lead = (slice(None),) * axis
    return parts(x, [(*lead, slice(start, min(start + size, n))) for start in range(0, n, size)])


def split(x: Tensor, split_size_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Pieces of `split_size` along `axis` (the last maybe smaller), or of the listed sizes,
    which must add up to the axis' length (torch.split).

    >>> q, k, v = qkv.split([C, C, C], axis=-1)  # qkv (B, T, 3C) -> three (B, T, C)
    """
    axis = _axis(x, axis, "split")
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size < 0 or (size == 0 and n > 0):
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)] if n else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} must be non-negative and add up to {n}, the "
                             f"length of axis {axis}")
    lead = (slice(None),) * axis
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return parts(x, [(*lead, slice(start, start + s)) for start, s in zip(starts, sizes)])
