"""Reductions over axes (NumPy names: axis, keepdims). `mean` and `var` are Tensor compositions."""

from __future__ import annotations

from tinygrad_lab.backends import Array
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function


def _keepdims_shape(shape: tuple[int, ...], axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else s for i, s in enumerate(shape))


class Sum(Function):
    """z = sum(a, axis);  dz/da = 1 broadcast back over the reduced axes."""

    axis: tuple[int, ...] | None
    keepdims: bool

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0  # a broadcast

    def forward(self, a: Array) -> Array:
        self.save(a.shape)
        return self.xp.sum(a, axis=self.axis, keepdims=self.keepdims)

    def backward(self, g: Array) -> tuple[Array]:
        (shape,) = self.saved
        g = g.reshape(_keepdims_shape(shape, self.axis))
        return (self.xp.broadcast_to(g, shape),)


class Max(Function):
    """z = max(a, axis);  the gradient goes to the maxima, split evenly among ties."""

    axis: tuple[int, ...] | None
    keepdims: bool

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the mask (a compare) and its count (a sum) run in forward for backward's sake;
        # then g / count per output and the product with the mask per input element
        return 3 * numel(in_shapes[0]) + numel(out_shape)

    def forward(self, a: Array) -> Array:
        if a.size == 0:
            raise ValueError(f"max: cannot reduce an empty tensor of shape {a.shape}")
        m = self.xp.max(a, axis=self.axis, keepdims=True)
        if self.recording:
            mask = a == m
            self.save(mask, mask.sum(axis=self.axis, keepdims=True))
        return m if self.keepdims else m.reshape(
            tuple(s for i, s in enumerate(a.shape) if self.axis is not None and i not in self.axis)
        )

    def backward(self, g: Array) -> tuple[Array]:
        mask, count = self.saved
        g = g.reshape(_keepdims_shape(mask.shape, self.axis))
        return ((g / count) * mask,)
