"""Max and average pooling with every PyTorch option: dilation, ceil_mode, count_include_pad and
divisor_override. (ops/conv.py's MaxPool2d / AvgPool2d, which have Numba kernels, serve the
default options; nn/conv.py picks.)

Shapes: N batch, C channels, H W input, OH OW output, K = KH*KW kernel offsets. Each kernel
offset (i, j) reads one strided slice of the padded input, (N, C, OH, OW); forward stacks the K
slices, backward adds into the same K slices. Within one slice no two outputs share an input,
so `+=` on a slice is a correct scatter-add on NumPy and CuPy alike (no `add.at`).

Output size, as torch: OH = floor_or_ceil((H + 2 PH - DH (KH - 1) - 1) / SH) + 1, and with
ceil_mode a last window that would start in the bottom padding is dropped. ceil_mode's extra
bottom/right rows are padding too (-inf for max, excluded from the average's count).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.backends import Array
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function

Pair = tuple[int, int]


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """torch's pooling_output_shape."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _slices(kernel_size: Pair, stride: Pair, dilation: Pair,
            out_hw: Pair) -> list[tuple[slice, slice]]:
    """The K (row, column) slices of the padded input read by kernel offsets (i, j), in order."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, stride, dilation, out_hw
    return [(slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
             slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)]


def _padded(xp: Any, x: Array, padding: Pair, extra: Pair, fill: float) -> Array:
    (ph, pw), (eh, ew) = padding, extra
    if not (ph or pw or eh or ew):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=fill)


class _Windows:
    """What both pools share (a mixin, not an op): the window geometry and the scatter-add."""

    xp: Any
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    out_hw: Pair

    def _extra(self, h: int, w: int) -> Pair:
        """Rows and columns past the bottom/right padding that the last windows reach."""
        reach = [(o - 1) * s + d * (k - 1) + 1 - (size + 2 * p) for o, s, d, k, size, p in zip(
            self.out_hw, self.stride, self.dilation, self.kernel_size, (h, w), self.padding)]
        return max(reach[0], 0), max(reach[1], 0)

    def _scatter(self, parts: list[Array], x_shape: tuple[int, ...]) -> Array:
        """The adjoint of reading the K slices: parts[k] (N, C, OH, OW) added into gx."""
        n, c, h, w = x_shape
        (ph, pw), (eh, ew) = self.padding, self._extra(h, w)
        gx = self.xp.zeros((n, c, h + 2 * ph + eh, w + 2 * pw + ew), dtype=parts[0].dtype)
        for (rows, cols), part in zip(_slices(self.kernel_size, self.stride, self.dilation,
                                              self.out_hw), parts):
            gx[:, :, rows, cols] += part
        return self.xp.ascontiguousarray(gx[:, :, ph:ph + h, pw:pw + w])


class MaxPool2dDilated(_Windows, Function):
    """y = max of each (dilated) window; the gradient goes to the window's first maximum."""

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * numel(self.kernel_size)  # a compare per window element

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)  # each gradient added at its maximum

    def forward(self, x: Array) -> Array:
        xp = self.xp
        fill = float("-inf") if x.dtype.kind == "f" else int(np.iinfo(x.dtype).min)
        xpad = _padded(xp, x, self.padding, self._extra(*x.shape[2:]), fill)
        windows = xp.stack([xpad[:, :, r, c] for r, c in _slices(
            self.kernel_size, self.stride, self.dilation, self.out_hw)])  # (K, N, C, OH, OW)
        k = windows.argmax(axis=0)  # (N, C, OH, OW), the first maximum (NaN counts as one)
        self.save(k, x.shape)
        return xp.ascontiguousarray(xp.take_along_axis(windows, k[None], axis=0)[0])

    def backward(self, g: Array) -> tuple[Array]:
        k, x_shape = self.saved
        zero = self.xp.zeros((), dtype=g.dtype)
        parts = [self.xp.where(k == i, g, zero) for i in range(numel(self.kernel_size))]
        return (self._scatter(parts, x_shape),)


class AvgPool2dPadded(_Windows, Function):
    """y = window sum / divisor: the window's size inside input and padding (count_include_pad,
    ceil_mode's extra rows never counted), its size inside the input only, or divisor_override.
    """

    count_include_pad: bool
    divisor_override: int | None

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * numel(self.kernel_size)  # K - 1 adds and one divide

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * (1 + numel(self.kernel_size))  # g / divisor, then K adds

    def _divisor(self, h: int, w: int, dtype: Any) -> Array:
        """(OH, OW) divisors, made on the device with its xp: a few tiny kernels there instead
        of a host-to-device copy on every call."""
        xp = self.xp
        if self.divisor_override is not None:
            return xp.full(self.out_hw, self.divisor_override, dtype=dtype)
        counts = []
        for o, s, k, p, size in zip(self.out_hw, self.stride, self.kernel_size, self.padding,
                                    (h, w)):
            start = xp.arange(o) * s - p  # (O,): each window's first row (column)
            end = xp.minimum(start + k, size + p)
            if not self.count_include_pad:
                start, end = xp.maximum(start, 0), xp.minimum(end, size)
            counts.append(end - start)
        return (counts[0][:, None] * counts[1][None, :]).astype(dtype)  # (OH, OW)

    def forward(self, x: Array) -> Array:
        xp = self.xp
        h, w = x.shape[2:]
        xpad = _padded(xp, x, self.padding, self._extra(h, w), 0.0)
        total = xp.zeros((*x.shape[:2], *self.out_hw), dtype=x.dtype)
        for r, c in _slices(self.kernel_size, self.stride, self.dilation, self.out_hw):
            total += xpad[:, :, r, c]
        divisor = self._divisor(h, w, x.dtype)
        self.save(divisor, x.shape)
        return total / divisor

    def backward(self, g: Array) -> tuple[Array]:
        divisor, x_shape = self.saved
        share = g / divisor
        return (self._scatter([share] * numel(self.kernel_size), x_shape),)
