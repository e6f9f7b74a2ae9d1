"""Splitting one tensor into many: `unbind` (every index along an axis) and `chunk` (pieces).

Why not k GetItem nodes: each slice's backward builds a zero gradient of the *whole* input and
the tape adds the k of them, so k slices cost O(k * size). A recurrent layer slices its input
projection (T, B, G*H) into its T time steps, which would make backward O(T^2).

Here the k parts share one node. The tape gives each node one output, so the parts hang off a
0-d placeholder tensor made by `SplitHandle`, which also owns the input array and one gradient
buffer of the input's shape:

    x --SplitHandle--> placeholder (0-d) --SplitPart(index_i)--> part_i = x[index_i]   (a view)

In backward every part writes its gradient into its slot of the buffer and returns a 0-d zero
for the placeholder; every part runs before the handle (the placeholder is their parent), and
the handle then hands the filled buffer to x once: O(size) in all, parts without a gradient
left at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tinygrad_lab.backends import Array
from tinygrad_lab.function import Ctx, Function, is_grad_enabled
from tinygrad_lab.ops.movement import GetItem

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor


class SplitHandle(Function):
    """Output: a 0-d placeholder. Keeps the input for the parts; backward returns the buffer."""

    source: Array
    buffer: Array | None

    def forward(self, ctx: Ctx, x: Array) -> Array:
        self.source = x
        self.buffer = None
        ctx.save(x.shape, x.dtype)
        return ctx.xp.zeros((), x.dtype)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        shape, dtype = ctx.saved
        buffer, self.buffer = self.buffer, None  # a second walk (retain_graph) starts from zero
        return (buffer if buffer is not None else ctx.xp.zeros(shape, dtype),)


class SplitPart(Function):
    """part = x[index] for a basic index (a view); backward adds g into the handle's buffer."""

    index: Any
    handle: SplitHandle

    def forward(self, ctx: Ctx, placeholder: Array) -> Array:
        return self.handle.source[self.index]

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        handle, xp = self.handle, ctx.xp
        if handle.buffer is None:
            handle.buffer = xp.zeros(handle.source.shape, handle.source.dtype)
        handle.buffer[self.index] += g
        return (xp.zeros((), g.dtype),)  # the placeholder's gradient carries nothing


def parts(x: Tensor, indices: Sequence[Any]) -> list[Tensor]:
    """x[index] for each basic index, as one node (see the module docstring)."""
    if not (x.requires_grad and is_grad_enabled()):  # no graph: plain views
        return [GetItem.apply(x, index=index) for index in indices]
    placeholder = SplitHandle.apply(x)
    handle = placeholder._ctx
    return [SplitPart.apply(placeholder, index=index, handle=handle) for index in indices]


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
