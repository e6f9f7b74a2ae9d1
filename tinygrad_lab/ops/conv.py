"""Convolution and pooling over NCHW images: Conv2d (im2col -> one BLAS matmul -> reshape), and
MaxPool2d / AvgPool2d.

The data movement around the matmul is done by named array functions, so Numba kernels
(kernels/conv.py) can replace the NumPy references defined here: `im2col` / `col2im`,
`conv2d_bias_act_forward` / `_backward` (the GEMM's epilogue) and the pooling pairs.

Shapes: N batch, C input channels, O output channels, G groups, H W input height and width,
KH KW kernel, OH OW output height and width, L = OH * OW output pixels per image. Hyperparameters
are (height, width) pairs: kernel_size, stride, padding (zeros on both sides), dilation.

The im2col layout is (C*KH*KW, N*OH*OW): rows ordered like the flattened weight (O, C*KH*KW),
so the forward is one GEMM W (O, C*KH*KW) @ cols, and the weight gradient is one GEMM
g (O, N*L) @ cols^T without copying cols. The price is one transposing copy of the output,
(O, N, L) -> (N, O, L), into which the bias add and the activation are folded
(`conv2d_bias_act_forward`), and one of the gradient back (`conv2d_bias_act_backward`, which
also applies the activation's derivative and sums the bias gradient).
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.backends import REFERENCES, Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function
from tinygrad_lab.ops import elementwise
from tinygrad_lab.ops.linalg import bias_act_forward
from tinygrad_lab.ops.scatter import add_at

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1, as PyTorch."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _windows(xp: Any, x: Array, shape: tuple[int, ...], strides: tuple[int, ...]) -> Array:
    """A strided view of x (no copy), read-only where the array type has the flag (NumPy's;
    CuPy's as_strided takes no `writeable` and its arrays have no such flag)."""
    view = xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    if hasattr(view.flags, "writeable"):
        view.flags.writeable = False
    return view


def _pad_hw(xp: Any, x: Array, padding: Pair, value: float = 0.0) -> Array:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


# --- convolution -------------------------------------------------------------------------------
class Conv2d(Function):
    """y[n, o] = act(b[o] + sum_{c in group(o), kh, kw} w[o, c, kh, kw] x[n, c, ...window...]).

    x (N, C, H, W), w (O, C/G, KH, KW), b (O,) -> y (N, O, OH, OW); activation None or a name
    in elementwise.ACTIVATIONS (one node, like the dense layer's). Forward: cols = im2col(x),
    y = W @ cols. Backward, with g2 = act'(g) as (O, N*L): gw = g2 @ cols^T, gb = row sums of
    g2, gx = col2im(W^T @ g2). Saves cols (not x), so backward does no second im2col.
    """

    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int
    activation: str | None

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the GEMM: 2 (C/G) KH KW per output, then the bias add and the activation
        act_forward = elementwise.activation_flops(self.activation)[0]
        per_out = 2 * numel(in_shapes[1][1:]) + (len(in_shapes) == 3) + act_forward
        return numel(out_shape) * per_out

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # act'(g) and the bias gradient (a sum over N*L), the GEMM for gw, the GEMM for gcols
        # and col2im adding each of the N*L*C*KH*KW columns' entries into gx
        act_backward = elementwise.activation_flops(self.activation)[1]
        need = self.needs_input_grad
        window = numel(in_shapes[1][1:])  # (C/G) KH KW
        pixels = numel(out_shape) // in_shapes[1][0]  # N*L
        cols = pixels * window * self.groups  # the im2col matrix: C KH KW rows, N*L columns
        return (numel(out_shape) * (act_backward + (len(need) == 3 and need[2])
                                    + 2 * window * (need[0] + need[1]))
                + (cols if need[0] else 0))

    def forward(self, x: Array, w: Array, b: Array | None = None) -> Array:
        n, _, h, wd = x.shape
        o, g = w.shape[0], self.groups
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size, self.stride, self.padding, self.dilation)
        oh, ow = output_size(h, kh, sh, ph, dh), output_size(wd, kw, sw, pw, dw)
        cols = self.call("im2col", x, self.kernel_size, self.stride, self.padding, self.dilation)
        if g == 1:
            y = w.reshape(o, -1) @ cols  # (O, N*L)
        else:
            cols3 = cols.reshape(g, cols.shape[0] // g, n * oh * ow)  # no -1: N may be 0
            y = w.reshape(g, o // g, -1) @ cols3  # (G, O/G, N*L)
        self.workspace(cols, y)  # counted while they live, saved or not
        act = self.activation
        if act and elementwise.ACTIVATIONS[act].keeps == "input":  # its backward needs the input
            kept = self.call("conv2d_bias_act_forward", y.reshape(o, n * oh * ow), b, None,
                             (n, o, oh, ow))
            out = self.call(f"{act}_forward", kept)
        else:
            out = self.call("conv2d_bias_act_forward", y.reshape(o, n * oh * ow), b, act,
                            (n, o, oh, ow))
            kept = out if act else None
        need_x, need_w = self.needs_input_grad[:2]
        # gw needs cols, gx needs w: a frozen layer keeps no cols, an input layer no weights
        self.save(cols if need_w else None, w if need_x else None, x.shape, w.shape, kept)
        return out

    def backward(self, gy: Array) -> tuple[Array | None, ...]:
        cols, _, _, w_shape, kept = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        if (self.groups == 1 and need_w and not need_x  # a first layer: gw and gb straight
                and self.backend.is_kernel("conv2d_weight_grad")):  # from gy, where a kernel can
            gw, gb = self.call("conv2d_weight_grad", gy, kept, self.activation, cols)
            gx, gw = None, gw.reshape(w_shape)
        else:
            gx, gw, gb = self._grads_through_g2(gy)
        if len(self.needs_input_grad) == 3:
            return gx, gw, (gb if self.needs_input_grad[2] else None)
        return gx, gw

    def _grads_through_g2(self, gy: Array) -> tuple[Array | None, Array | None, Array]:
        """(gx, gw, gb) by way of g2 = act'(gy) regrouped as (O, N*L): the GEMMs and col2im."""
        cols, w, x_shape, w_shape, kept = self.saved
        n, o, oh, ow = gy.shape
        g = self.groups
        need_x, need_w = self.needs_input_grad[:2]
        gx = gw = None
        g2, gb = self.call("conv2d_bias_act_backward", gy, kept, self.activation)  # (O, N*L), (O,)
        self.workspace(g2)
        if g == 1:
            if need_w:
                gw = _weight_grad_gemm(g2, cols).reshape(w_shape)
            if need_x:
                gcols = w.reshape(o, -1).T @ g2  # (C*KH*KW, N*L)
        else:
            g3 = g2.reshape(g, o // g, n * oh * ow)  # (G, O/G, N*L): no -1, N may be 0
            if need_w:
                gw = (g3 @ cols.reshape(g, cols.shape[0] // g, n * oh * ow).transpose(0, 2, 1)
                      ).reshape(w_shape)
            if need_x:
                gcols = w.reshape(g, o // g, -1).transpose(0, 2, 1) @ g3  # (G, C/G*KH*KW, N*L)
                gcols = gcols.reshape(g * gcols.shape[1], n * oh * ow)  # (C*KH*KW, N*L)
        if need_x:
            self.workspace(gcols)
            gx = self.call("col2im", gcols, x_shape, self.kernel_size, self.stride, self.padding,
                           self.dilation)
        return gx, gw, gb


def _weight_grad_gemm(g2: Array, cols: Array) -> Array:
    """g2 (O, N*L) @ cols^T (N*L, R) -> (O, R), as (cols @ g2^T)^T when R > O: OpenBLAS runs
    these long-K products faster with the larger side first (alternating, 2 threads: the MNIST
    CNN's O 64, R 288, N*L 7744 in 0.91x the time; R 576, O 64: 0.83x; O 256, R 64 the other
    way round: 1.10x as long)."""
    if cols.shape[0] > g2.shape[0]:
        return (cols @ g2.T).T
    return g2 @ cols.T


@reference_function("conv2d_bias_act_forward")
def conv2d_bias_act_forward(y: Array, b: Array | None, activation: str | None,
                            shape: tuple[int, int, int, int]) -> Array:
    """The GEMM's y (O, N*L) -> act(y + b) as (N, O, OH, OW) = `shape`, a new array."""
    xp = array_module(y)
    n, o, oh, ow = shape
    out = xp.empty(shape, dtype=y.dtype)
    yt = y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)  # (N, O, OH, OW), a strided view
    if b is None:
        out[...] = yt
    else:
        xp.add(yt, b.reshape(o, 1, 1), out=out)
    return bias_act_forward(out, None, activation) if activation else out


@reference_function("conv2d_bias_act_backward")
def conv2d_bias_act_backward(g: Array, kept: Array | None,
                             activation: str | None) -> tuple[Array, Array]:
    """g (N, O, OH, OW), and what the activation keeps (its output, or for gelu and softplus the
    biased input; None without activation) -> (g2, gb): g2 = act'(g) as (O, N*L), gb (O,) its
    row sums (the bias gradient)."""
    xp = array_module(g)
    n, o, oh, ow = g.shape
    if activation:
        g = REFERENCES[f"{activation}_backward"](g, kept)
    g2 = xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, n * oh * ow)  # (O, N*L)
    return g2, g2.sum(axis=1)


@reference_function("conv2d_weight_grad")
def conv2d_weight_grad(g: Array, kept: Array | None, activation: str | None,
                       cols: Array) -> tuple[Array, Array]:
    """(gw (O, C*KH*KW), gb (O,)) of a one-group convolution whose input takes no gradient,
    from g (N, O, OH, OW), what the activation keeps and the saved cols (C*KH*KW, N*L): its
    backward needs no g2 of its own, so a kernel may skip regrouping it."""
    g2, gb = conv2d_bias_act_backward(g, kept, activation)
    return g2 @ cols.T, gb


@reference_function("im2col")
def im2col(x: Array, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    """x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW), a new array.

    cols[(c, kh, kw), (n, oh, ow)] = x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW], zero where
    that falls in the padding.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    oh, ow = output_size(h, kh, sh, padding[0], dh), output_size(w, kw, sw, padding[1], dw)
    xpad = _pad_hw(xp, x, padding)
    s_n, s_c, s_h, s_w = xpad.strides
    view = _windows(xp, xpad, (c, kh, kw, n, oh, ow),
                    (s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw))  # (C, KH, KW, N, OH, OW)
    cols = xp.empty(view.shape, dtype=x.dtype)
    cols[...] = view
    return cols.reshape(c * kh * kw, n * oh * ow)


@reference_function("col2im")
def col2im(cols: Array, x_shape: tuple[int, int, int, int], kernel_size: Pair, stride: Pair,
           padding: Pair, dilation: Pair) -> Array:
    """The adjoint of im2col: cols (C*KH*KW, N*OH*OW) -> gx (N, C, H, W), overlapping windows
    adding up (in kernel-offset order)."""
    xp = array_module(cols)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            gx[:, :, rows, columns] += cols6[:, i, j].transpose(1, 0, 2, 3)  # (N, C, OH, OW)
    if ph or pw:
        gx = xp.ascontiguousarray(gx[:, :, ph:ph + h, pw:pw + w])
    return gx


# --- pooling -----------------------------------------------------------------------------------
class MaxPool2d(Function):
    """y[n, c, oh, ow] = max of the window; the gradient goes to the (first) maximum only.

    x (N, C, H, W) -> y (N, C, OH, OW). Saves the argmax (flat index into each H*W plane).
    """

    kernel_size: Pair
    stride: Pair
    padding: Pair

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * numel(self.kernel_size)  # a compare per window element

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)  # each gradient added at its maximum

    def forward(self, x: Array) -> Array:
        y, idx = self.call("maxpool2d_forward", x, self.kernel_size, self.stride, self.padding)
        self.save(idx, x.shape)
        return y

    def backward(self, g: Array) -> tuple[Array]:
        idx, x_shape = self.saved
        return (self.call("maxpool2d_backward", g, idx, x_shape),)


class AvgPool2d(Function):
    """y = mean of each KH x KW window, zero padding counted (PyTorch's count_include_pad=True);
    dx spreads g / (KH*KW) over the window."""

    kernel_size: Pair
    stride: Pair
    padding: Pair

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # a window's KH*KW - 1 adds and one divide
        return numel(out_shape) * numel(self.kernel_size)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # g / (KH*KW), then added into each of the window's KH*KW places
        return numel(out_shape) * (1 + numel(self.kernel_size))

    def forward(self, x: Array) -> Array:
        self.save(x.shape)
        return self.call("avgpool2d_forward", x, self.kernel_size, self.stride, self.padding)

    def backward(self, g: Array) -> tuple[Array]:
        (x_shape,) = self.saved
        return (self.call("avgpool2d_backward", g, x_shape, self.kernel_size, self.stride,
                          self.padding),)


def _pool_windows(xp: Any, x: Array, kernel_size: Pair, stride: Pair, padding: Pair,
                  fill: float) -> Array:
    """A view (N, C, OH, OW, KH, KW) of the windows of x padded with `fill`."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    xpad = _pad_hw(xp, x, padding, fill)
    s_n, s_c, s_h, s_w = xpad.strides
    return _windows(xp, xpad, (n, c, oh, ow, kh, kw), (s_n, s_c, s_h * sh, s_w * sw, s_h, s_w))


@reference_function("maxpool2d_forward")
def maxpool2d_forward(x: Array, kernel_size: Pair, stride: Pair,
                      padding: Pair) -> tuple[Array, Array]:
    """x (N, C, H, W) -> (y (N, C, OH, OW), idx (N, C, OH, OW) int64).

    idx is the flat index h * W + w of the window's first maximum in its H*W plane (a NaN counts
    as the maximum; a window of -inf picks its first element inside the image).
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    fill = float("-inf") if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
    win = _pool_windows(xp, x, kernel_size, stride, padding, fill)
    oh, ow = win.shape[2], win.shape[3]
    flat = win.reshape(n, c, oh, ow, kh * kw)  # a copy
    k = flat.argmax(axis=-1)  # (N, C, OH, OW)
    y = xp.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    rows = xp.arange(oh).reshape(oh, 1) * sh - ph
    columns = xp.arange(ow) * sw - pw
    hh, ww = rows + k // kw, columns + k % kw
    inside = (hh >= 0) & (hh < h) & (ww >= 0) & (ww < w)
    first = xp.maximum(rows, 0) * w + xp.maximum(columns, 0)  # (OH, OW)
    idx = xp.where(inside, hh * w + ww, first).astype(xp.int64)
    return xp.ascontiguousarray(y), idx


@reference_function("maxpool2d_backward")
def maxpool2d_backward(g: Array, idx: Array, x_shape: tuple[int, int, int, int]) -> Array:
    """g (N, C, OH, OW), idx from maxpool2d_forward -> gx (N, C, H, W); repeated indices add."""
    xp = array_module(g)
    n, c, h, w = x_shape
    gx = xp.zeros((n * c, h * w), dtype=g.dtype)
    m = g.shape[2] * g.shape[3]  # OH*OW
    planes = xp.arange(n * c).reshape(n * c, 1)
    add_at(gx, (planes, idx.reshape(n * c, m)), g.reshape(n * c, m))
    return gx.reshape(x_shape)


@reference_function("avgpool2d_forward")
def avgpool2d_forward(x: Array, kernel_size: Pair, stride: Pair, padding: Pair) -> Array:
    """x (N, C, H, W) -> y (N, C, OH, OW), each the window sum / (KH*KW)."""
    xp = array_module(x)
    win = _pool_windows(xp, x, kernel_size, stride, padding, 0.0)
    return win.sum(axis=(4, 5)) / (kernel_size[0] * kernel_size[1])


@reference_function("avgpool2d_backward")
def avgpool2d_backward(g: Array, x_shape: tuple[int, int, int, int], kernel_size: Pair,
                       stride: Pair, padding: Pair) -> Array:
    """g (N, C, OH, OW) -> gx (N, C, H, W): g / (KH*KW) added over each window."""
    xp = array_module(g)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    oh, ow = g.shape[2], g.shape[3]
    share = g / (kh * kw)
    gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            gx[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += share
    if ph or pw:
        gx = xp.ascontiguousarray(gx[:, :, ph:ph + h, pw:pw + w])
    return gx
