"""Reductions over axes (NumPy names: axis, keepdims; Tensor methods also take torch's
dim/keepdim). `mean`, `var`, `std` and `norm` are Tensor compositions."""

from __future__ import annotations

import numpy as np

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
    _pick = "max"

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the mask (a compare) and its count (a sum) run in forward for backward's sake;
        # then g / count per output and the product with the mask per input element
        return 3 * numel(in_shapes[0]) + numel(out_shape)

    def forward(self, a: Array) -> Array:
        if a.size == 0 and (self.axis is None or any(a.shape[i] == 0 for i in self.axis)):
            raise ValueError(f"{self._pick}: cannot reduce an empty tensor of shape {a.shape}")
        m = getattr(self.xp, self._pick)(a, axis=self.axis, keepdims=True)
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


class Min(Max):
    """z = min(a, axis), computed as a minimum (not -max(-a): that is wrong on unsigned
    integers, the most negative integer, and booleans); gradient as Max's."""

    _pick = "min"
    flops, backward_flops = Max.flops, Max.backward_flops  # the same count as Max's


def _to_last(a: Array, axis: tuple[int, ...] | None) -> tuple[Array, tuple[int, ...]]:
    """a with the reduced axes moved last and flattened into one: (rest..., n); and the
    permutation used (to undo it)."""
    axes = tuple(range(a.ndim)) if axis is None else axis
    rest = tuple(i for i in range(a.ndim) if i not in axes)
    perm = rest + tuple(axes)
    n = numel(tuple(a.shape[i] for i in axes))
    return a.transpose(perm).reshape(tuple(a.shape[i] for i in rest) + (n,)), perm


class Prod(Function):
    """z = prod(a, axis);  dz/da_i = product of the other elements of its slice, computed
    with exclusive cumulative products from both ends, so zeros give exact gradients (no
    division by a)."""

    axis: tuple[int, ...] | None
    keepdims: bool

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 4 * numel(in_shapes[0])

    def forward(self, a: Array) -> Array:
        if self.recording:
            self.save(a)
        return self.xp.prod(a, axis=self.axis, keepdims=self.keepdims)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        xp = self.xp
        if a.size == 0:
            return (xp.zeros(a.shape, dtype=a.dtype),)
        flat, perm = _to_last(a, self.axis)  # (rest..., n)
        ones = xp.ones(flat.shape[:-1] + (1,), dtype=a.dtype)
        left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.flip(
            xp.concatenate([flat[..., 1:], ones], axis=-1), axis=-1), axis=-1), axis=-1)
        others = left * right  # (rest..., n): the product of every element but one
        g = g.reshape(_keepdims_shape(a.shape, self.axis)).transpose(perm)
        g = g.reshape(others.shape[:-1] + (1,))
        moved_shape = tuple(a.shape[i] for i in perm)
        da = (g * others).reshape(moved_shape).transpose(tuple(int(i) for i in _inverse(perm)))
        return (da,)


def _inverse(perm: tuple[int, ...]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


class CumSum(Function):
    """z_i = sum_{j<=i} a_j along `axis`;  da_j = sum_{i>=j} g_i (a reversed cumsum)."""

    axis: int
    flops_per_element = (1, 1)

    def forward(self, a: Array) -> Array:
        return self.xp.cumsum(a, axis=self.axis)

    def backward(self, g: Array) -> tuple[Array]:
        xp = self.xp
        return (xp.flip(xp.cumsum(xp.flip(g, axis=self.axis), axis=self.axis), axis=self.axis),)


class CumProd(Function):
    """z_i = prod_{j<=i} a_j along `axis`;  da_j = sum_{i>=j} g_i prod_{k<=i, k!=j} a_k.

    Without zeros that is revcumsum(g z) / a; slices holding a zero take the exact O(n^2) sum."""

    axis: int
    flops_per_element = (1, 4)

    def forward(self, a: Array) -> Array:
        z = self.xp.cumprod(a, axis=self.axis)
        self.save(a, z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        a, z = self.saved
        xp, axis = self.xp, self.axis
        if not bool((a == 0).any()):
            return (xp.flip(xp.cumsum(xp.flip(g * z, axis=axis), axis=axis), axis=axis) / a,)
        a_l, g_l = xp.moveaxis(a, axis, -1), xp.moveaxis(g, axis, -1)  # (..., n)
        n = a_l.shape[-1]
        da = xp.zeros_like(a_l)
        for j in range(n):  # a_j replaced by 1: the products that leave a_j out
            without = xp.concatenate([a_l[..., :j], xp.ones_like(a_l[..., j:j + 1]),
                                      a_l[..., j + 1:]], axis=-1)
            partial = xp.cumprod(without, axis=-1)[..., j:]
            da[..., j] = (g_l[..., j:] * partial).sum(axis=-1)
        return (xp.moveaxis(da, -1, axis),)


class LogSumExp(Function):
    """z = log(sum(exp(a), axis)), shifted by the maximum for stability;
    dz/da = exp(a - z) (the softmax over the reduced axes)."""

    axis: tuple[int, ...] | None
    keepdims: bool

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 4 * numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 3 * numel(in_shapes[0])

    def forward(self, a: Array) -> Array:
        xp = self.xp
        kept = _keepdims_shape(a.shape, self.axis)
        if a.size == 0:
            m = xp.zeros(kept, dtype=a.dtype)
        else:
            m = xp.max(a, axis=self.axis, keepdims=True)
            m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))  # all -inf: no shift
        with np.errstate(divide="ignore"):  # all -inf: log(0) = -inf, as torch
            z = xp.log(xp.sum(xp.exp(a - m), axis=self.axis, keepdims=True)) + m  # (kept)
        self.save(a, z)
        return z if self.keepdims else z.reshape(
            tuple(s for i, s in enumerate(a.shape) if self.axis is not None and i not in self.axis)
        )

    def backward(self, g: Array) -> tuple[Array]:
        a, z = self.saved
        g = g.reshape(z.shape)
        return (g * self.xp.exp(a - z),)
