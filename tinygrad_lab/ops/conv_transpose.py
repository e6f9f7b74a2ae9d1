"""Transposed convolution (torch.nn.functional.conv_transpose2d), one node: the adjoint of Conv2d
with respect to its input, so it reuses Conv2d's named array functions the other way round.

Shapes: N batch, C input channels, O output channels, G groups, H W input, OH OW output, K =
KH*KW. weight (C, O/G, KH, KW), PyTorch's layout. Forward: cols = W^T @ x (O*K, N*H*W), then
col2im scatters them into y (N, O, OH, OW); backward: gcols = im2col(g), gx = W @ gcols,
gw = x @ gcols^T, gb = g summed over N, OH, OW.

OH = (H - 1) SH - 2 PH + DH (KH - 1) + output_padding + 1. When output_padding >= stride (torch
allows it while it is below the dilation) the im2col of the output has more than H rows of
windows; the extra ones touch no input and are zero-padded (forward) or dropped (backward).
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.backends import Array
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function
from tinygrad_lab.ops.conv import output_size

Pair = tuple[int, int]


class ConvTranspose2d(Function):
    """y = col2im(W^T @ x) + b; x (N, C, H, W), w (C, O/G, KH, KW), b (O,) -> (N, O, OH, OW)."""

    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int
    out_hw: Pair

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the GEMM: 2 (O/G) K per input element; col2im adds every column entry; the bias add
        window = numel(in_shapes[1][1:])  # (O/G) K
        x_size = numel(in_shapes[0])
        cols = self.groups * window * (x_size // in_shapes[0][1])  # O K N H W
        return 2 * x_size * window + cols + (numel(out_shape) if len(in_shapes) == 3 else 0)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # one GEMM for gx, one for gw (im2col only copies), the bias gradient's sum
        need = self.needs_input_grad
        gemm = 2 * numel(in_shapes[0]) * numel(in_shapes[1][1:])
        return gemm * (need[0] + need[1]) + (numel(out_shape) if len(need) == 3 and need[2] else 0)

    def _geometry(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[Any, ...]:
        n, c, h, w = x_shape
        kh, kw = w_shape[2:]
        o = w_shape[1] * self.groups
        oh, ow = self.out_hw
        # the windows im2col finds in the output: H x W, or more when output_padding >= stride
        fh = output_size(oh, kh, self.stride[0], self.padding[0], self.dilation[0])
        fw = output_size(ow, kw, self.stride[1], self.padding[1], self.dilation[1])
        return n, c, h, w, o, (kh, kw), oh, ow, fh, fw

    def forward(self, x: Array, w: Array, b: Array | None = None) -> Array:
        xp = self.xp
        n, c, h, wd, o, k, oh, ow, fh, fw = self._geometry(x.shape, w.shape)
        g = self.groups
        xg = xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(g, c // g, n * h * wd)
        wg = w.reshape(g, c // g, o // g * k[0] * k[1])  # (G, C/G, O/G*K)
        cols = (wg.transpose(0, 2, 1) @ xg).reshape(o * k[0] * k[1], n, h, wd)  # (O*K, N, H, W)
        if (fh, fw) != (h, wd):
            cols = xp.pad(cols, ((0, 0), (0, 0), (0, fh - h), (0, fw - wd)))
        self.workspace(cols)
        y = self.call("col2im", cols.reshape(o * k[0] * k[1], n * fh * fw), (n, o, oh, ow), k,
                      self.stride, self.padding, self.dilation)
        if b is not None:
            y += b.reshape(1, o, 1, 1)
        need_x, need_w = self.needs_input_grad[:2]
        self.save(xg if need_w else None, w if need_x else None, x.shape, w.shape)
        return y

    def backward(self, gy: Array) -> tuple[Array | None, ...]:
        xg, w, x_shape, w_shape = self.saved
        n, c, h, wd, o, k, oh, ow, fh, fw = self._geometry(x_shape, w_shape)
        g = self.groups
        gcols = self.call("im2col", gy, k, self.stride, self.padding, self.dilation)
        if (fh, fw) != (h, wd):  # windows past the input's last row/column: no input there
            gcols = gcols.reshape(gcols.shape[0], n, fh, fw)[:, :, :h, :wd]
        gcols = self.xp.ascontiguousarray(gcols).reshape(g, o // g * k[0] * k[1], n * h * wd)
        self.workspace(gcols)
        need = self.needs_input_grad
        gx = gw = gb = None
        if need[0]:
            gx = w.reshape(g, c // g, o // g * k[0] * k[1]) @ gcols  # (G, C/G, N*H*W)
            gx = self.xp.ascontiguousarray(gx.reshape(c, n, h, wd).transpose(1, 0, 2, 3))
        if need[1]:
            gw = (xg @ gcols.transpose(0, 2, 1)).reshape(w_shape)  # (G, C/G, O/G*K)
        if len(need) == 3:
            gb = gy.sum(axis=(0, 2, 3)) if need[2] else None
            return gx, gw, gb
        return gx, gw
