"""More convolutional layers and functionals, with PyTorch 2.13's signatures and semantics:
conv1d, conv_transpose2d, padding="same"/"valid", pooling with dilation / ceil_mode /
count_include_pad / divisor_override, adaptive pooling and interpolate (nearest, (bi)linear).

Shapes: N batch, C channels, O output channels, L length, H W height and width, OH OW output.
conv1d is conv2d on (N, C, 1, L); conv_transpose2d and the optioned pools are one node each
(ops/conv_transpose.py, ops/pool.py). Adaptive average pooling and interpolation are linear and
separable: y = A_h @ x @ A_w^T with small constant (OH, H) and (OW, W) matrices, so they are two
matmuls whose gradient autograd already knows (and which run as GEMMs on any backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_lab.nn import init
from tinygrad_lab.nn.conv import (
    IntPair,
    _check_image,
    _check_output,
    _pair,
    conv2d,
    max_pool2d,
)
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.ops import conv_transpose as _conv_transpose
from tinygrad_lab.ops import pool as _pool
from tinygrad_lab.tensor import Tensor, stack

PADDING_MODES = ("same", "valid")


def _single(name: str, value: int | Sequence[int], minimum: int) -> int:
    v = value if isinstance(value, (int, np.integer)) else tuple(value)
    if isinstance(v, tuple):
        if len(v) != 1:
            raise ValueError(f"{name} must be an int >= {minimum} or a 1-tuple, got {value!r}")
        v = v[0]
    if int(v) != v or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or a 1-tuple, got {value!r}")
    return int(v)


def string_padding(op: str, x: Tensor, padding: str, kernel: tuple[int, int], stride: IntPair,
                   dilation: IntPair) -> tuple[Tensor, tuple[int, int]]:
    """padding="valid" (none) or "same" (output size = input size, stride 1 only, as torch) ->
    (x, symmetric padding): "same" with an even total pads the extra row/column at the bottom
    and right, as torch, by padding x itself."""
    if padding not in PADDING_MODES:
        raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got "
                         f"{padding!r}")
    if padding == "valid":
        return x, (0, 0)
    if _pair("stride", stride, 1) != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                         f"(stride={stride!r})")
    d = _pair("dilation", dilation, 1)
    totals = [di * (k - 1) for di, k in zip(d, kernel)]
    left = (totals[0] // 2, totals[1] // 2)
    extra = (totals[0] - 2 * left[0], totals[1] - 2 * left[1])
    if extra != (0, 0):
        x = x.pad(((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return x, left


# --- convolution -------------------------------------------------------------------------------
def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
           padding: int | str = 0, dilation: int = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation (torch.nn.functional.conv1d): x (N, C, L) or unbatched (C, L),
    weight (O, C/groups, K), bias (O,) -> (N, O, OL); conv2d on (N, C, 1, L). padding: int,
    'same' or 'valid'."""
    if x.ndim == 2:  # unbatched, as torch
        return conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if x.ndim != 3:
        raise ValueError(f"conv1d: expected an input of shape (N, C, L) or (C, L), got "
                         f"{x.shape}")
    if weight.ndim != 3:
        raise ValueError(f"conv1d: weight must be (O, C/groups, K), got {weight.shape}")
    s, d = _single("stride", stride, 1), _single("dilation", dilation, 1)
    p: Any = padding if isinstance(padding, str) else (0, _single("padding", padding, 0))
    y = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, s), p, (1, d), groups)
    return y.squeeze(2)  # (N, O, 1, OL) -> (N, O, OL)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
                     padding: IntPair = 0, output_padding: IntPair = 0, groups: int = 1,
                     dilation: IntPair = 1) -> Tensor:
    """The adjoint of conv2d (torch.nn.functional.conv_transpose2d, same argument order):
    x (N, C, H, W), weight (C, O/groups, KH, KW), bias (O,) -> (N, O, OH, OW),
    OH = (H - 1) SH - 2 PH + DH (KH - 1) + output_padding + 1."""
    _check_image("conv_transpose2d", x)
    if weight.ndim != 4:
        raise ValueError(f"conv_transpose2d: weight must be (C, O/groups, KH, KW), got "
                         f"{weight.shape}")
    c = x.shape[1]
    if groups < 1 or c % groups:
        raise ValueError(f"conv_transpose2d: groups={groups} must divide the input channels "
                         f"({c})")
    if weight.shape[0] != c:
        raise ValueError(f"conv_transpose2d: input has {c} channels but weight {weight.shape} "
                         f"expects {weight.shape[0]}")
    o = weight.shape[1] * groups
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"conv_transpose2d: bias shape {bias.shape} != ({o},)")
    if x.dtype != weight.dtype:
        raise ValueError(f"conv_transpose2d: input dtype {x.dtype} != weight dtype "
                         f"{weight.dtype}")
    s, p = _pair("stride", stride, 1), _pair("padding", padding, 0)
    d, op = _pair("dilation", dilation, 1), _pair("output_padding", output_padding, 0)
    if any(q >= si and q >= di for q, si, di in zip(op, s, d)):
        raise ValueError(f"conv_transpose2d: output_padding {op} must be smaller than either "
                         f"stride {s} or dilation {d}")
    out = tuple((size - 1) * si - 2 * pi + di * (k - 1) + q + 1 for size, si, pi, di, k, q in
                zip(x.shape[2:], s, p, d, weight.shape[2:], op))
    _check_output("conv_transpose2d", x, out)  # type: ignore[arg-type]
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return _conv_transpose.ConvTranspose2d.apply(*inputs, stride=s, padding=p, dilation=d,
                                                 groups=groups, out_hw=out)


class Conv1d(Module):
    """torch.nn.Conv1d: weight (O, C/groups, K), bias (O,), U(-a, a), a = 1/sqrt(C/groups K)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | str = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv1d: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        if isinstance(padding, str) and padding not in PADDING_MODES:
            raise ValueError(f"Conv1d: padding must be an int, 'same' or 'valid', got {padding!r}")
        k = _single("kernel_size", kernel_size, 1)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.dilation = _single("stride", stride, 1), _single("dilation", dilation, 1)
        self.padding = padding if isinstance(padding, str) else _single("padding", padding, 0)
        self.groups = groups
        fan_in = in_channels // groups * k
        shape = (out_channels, in_channels // groups, k)
        self.weight = Parameter(init.fan_in_uniform(fan_in, out_channels, shape, dtype))
        self.bias = (Parameter(init.fan_in_uniform(fan_in, out_channels, (out_channels,), dtype))
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")


class ConvTranspose2d(Module):
    """torch.nn.ConvTranspose2d: weight (C, O/groups, KH, KW), bias (O,), both U(-a, a) with
    a = 1/sqrt(O/groups KH KW) (torch computes the fan-in from weight.shape[1])."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                 groups: int = 1, bias: bool = True, dilation: IntPair = 1,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose2d: groups={groups} must divide in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        kh, kw = _pair("kernel_size", kernel_size, 1)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding = _pair("stride", stride, 1), _pair("padding", padding, 0)
        self.output_padding = _pair("output_padding", output_padding, 0)
        self.dilation, self.groups = _pair("dilation", dilation, 1), groups
        fan_in = out_channels // groups * kh * kw
        shape = (in_channels, out_channels // groups, kh, kw)
        self.weight = Parameter(init.fan_in_uniform(fan_in, out_channels, shape, dtype))
        self.bias = (Parameter(init.fan_in_uniform(fan_in, out_channels, (out_channels,), dtype))
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                self.output_padding, self.groups, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}")


# --- pooling with every option -----------------------------------------------------------------
def pool2d(op: str, x: Tensor, kernel_size: IntPair, stride: IntPair | None, padding: IntPair,
           dilation: IntPair = 1, ceil_mode: bool = False, count_include_pad: bool = True,
           divisor_override: int | None = None) -> Tensor:
    """max_pool2d / avg_pool2d with torch's options, checked as torch checks them."""
    _check_image(op, x)
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    p, d = _pair("padding", padding, 0), _pair("dilation", dilation, 1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    if divisor_override is not None and (int(divisor_override) != divisor_override
                                         or divisor_override < 1):
        raise ValueError(f"{op}: divisor_override must be a positive int, got "
                         f"{divisor_override!r}")
    out = tuple(_pool.pool_output_size(size, ki, si, pi, di, bool(ceil_mode)) for size, ki, si,
                pi, di in zip(x.shape[2:], k, s, p, d))
    _check_output(op, x, out)  # type: ignore[arg-type]
    params = {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "out_hw": out}
    if op == "max_pool2d":
        return _pool.MaxPool2dDilated.apply(x, **params)
    return _pool.AvgPool2dPadded.apply(x, count_include_pad=bool(count_include_pad),
                                       divisor_override=divisor_override, **params)


# --- adaptive pooling --------------------------------------------------------------------------
def _output_hw(op: str, x: Tensor, output_size: Any) -> tuple[int, int]:
    """torch's output_size: an int, or a pair whose None entries keep the input's size."""
    pair = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else \
        tuple(output_size)
    if len(pair) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    out = tuple(size if v is None else v for v, size in zip(pair, x.shape[-2:]))
    if any(int(v) != v or v < 1 for v in out):
        raise ValueError(f"{op}: output_size entries must be positive ints or None, got "
                         f"{output_size!r}")
    return int(out[0]), int(out[1])


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive bins: [floor(i size / out), ceil((i + 1) size / out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    m = np.zeros((out, size))
    for i, (a, b) in enumerate(_bins(size, out)):
        m[i, a:b] = 1.0 / (b - a)
    return m


def _check_spatial(op: str, x: Tensor) -> None:
    if x.ndim not in (3, 4) or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{op}: expected (N, C, H, W) or (C, H, W) with H, W > 0, got {x.shape}")


def _separable(x: Tensor, rows: np.ndarray, cols: np.ndarray) -> Tensor:
    """rows (OH, H) @ x (..., H, W) @ cols^T (W, OW): each matrix a constant of x's dtype."""
    y = x @ x._const(np.ascontiguousarray(cols.T).astype(x.dtype))  # (..., H, OW)
    return x._const(rows.astype(x.dtype)) @ y  # (..., OH, OW)


def adaptive_avg_pool2d(x: Tensor, output_size: Any) -> Tensor:
    """Mean over torch's adaptive bins: (N, C, H, W) or (C, H, W) -> (..., OH, OW)."""
    _check_spatial("adaptive_avg_pool2d", x)
    oh, ow = _output_hw("adaptive_avg_pool2d", x, output_size)
    h, w = x.shape[-2:]
    return _separable(x, _adaptive_matrix(h, oh), _adaptive_matrix(w, ow))


def adaptive_max_pool2d(x: Tensor, output_size: Any) -> Tensor:
    """Max over torch's adaptive bins: (N, C, H, W) or (C, H, W) -> (..., OH, OW). Bins of one
    size (OH divides H, OW divides W: global pooling among them) are one max_pool2d node, whose
    gradient goes to the first maximum as torch's; otherwise one max node per output cell (meant
    for small outputs), which splits a tie's gradient evenly."""
    _check_spatial("adaptive_max_pool2d", x)
    oh, ow = _output_hw("adaptive_max_pool2d", x, output_size)
    h, w = x.shape[-2:]
    if h % oh == 0 and w % ow == 0 and x.shape[0] > 0:
        x4 = x if x.ndim == 4 else x.unsqueeze(0)  # (C, H, W) -> (1, C, H, W)
        y = max_pool2d(x4, (h // oh, w // ow))
        return y if x.ndim == 4 else y.squeeze(0)
    rows = [stack([x[..., a:b, c:e].max(axis=(-2, -1)) for c, e in _bins(w, ow)], axis=-1)
            for a, b in _bins(h, oh)]  # OH tensors (..., OW)
    return stack(rows, axis=-2)


class AdaptiveAvgPool2d(Module):
    """torch.nn.AdaptiveAvgPool2d(output_size)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size!r}"


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """torch.nn.AdaptiveMaxPool2d(output_size) (without return_indices)."""

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_max_pool2d(x, self.output_size)


# --- interpolation -----------------------------------------------------------------------------
INTERPOLATE_MODES = ("nearest", "linear", "bilinear")


def _nearest_matrix(size: int, out: int, scale: float | None) -> np.ndarray:
    """torch's nearest: source = min(floor(dst * s), size - 1), s = 1 / scale_factor or
    size / out, computed in float32 as torch does."""
    s = np.float32(1.0 / scale) if scale is not None else np.float32(size) / np.float32(out)
    src = np.minimum(np.floor(np.arange(out, dtype=np.float32) * s).astype(np.int64), size - 1)
    m = np.zeros((out, size))
    m[np.arange(out), src] = 1.0
    return m


def _linear_matrix(size: int, out: int, scale: float | None, align_corners: bool) -> np.ndarray:
    """torch's linear weights: source = dst * (size - 1) / (out - 1) with align_corners, else
    (dst + 0.5) / scale - 0.5 clamped at 0; the two neighbours share 1 by distance."""
    dst = np.arange(out, dtype=np.float64)
    if align_corners:
        src = dst * ((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        s = 1.0 / scale if scale is not None else size / out
        src = np.maximum((dst + 0.5) * s - 0.5, 0.0)
    i0 = src.astype(np.int64)  # floor: src >= 0
    i1 = np.where(i0 < size - 1, i0 + 1, i0)
    lam = src - i0
    m = np.zeros((out, size))
    np.add.at(m, (np.arange(out), i0), 1.0 - lam)  # host metadata, not device maths
    np.add.at(m, (np.arange(out), i1), lam)
    return m


def interpolate(x: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None) -> Tensor:
    """torch.nn.functional.interpolate for modes 'nearest' ((N, C, L) or (N, C, H, W)),
    'linear' ((N, C, L)) and 'bilinear' ((N, C, H, W)). Exactly one of size and scale_factor.
    Each axis is a constant (out, in) matrix; y = A_h @ x @ A_w^T."""
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"interpolate: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"interpolate: expected a floating-point input, got {x.dtype}")
    spatial = x.ndim - 2
    if spatial not in (1, 2) or (mode == "linear" and spatial != 1) or (
            mode == "bilinear" and spatial != 2):
        need = {"linear": "3-D (N, C, L)", "bilinear": "4-D (N, C, H, W)"}.get(
            mode, "3-D (N, C, L) or 4-D (N, C, H, W)")
        raise ValueError(f"interpolate: mode {mode!r} needs a {need} input, got {x.shape}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners can only be set with the interpolating "
                         "modes 'linear' and 'bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    sizes_in = x.shape[2:]

    def per_axis(name: str, value: Any) -> tuple[Any, ...]:
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * spatial
        if len(values) != spatial:
            raise ValueError(f"interpolate: {name} needs {spatial} entries for input {x.shape}, "
                             f"got {value!r}")
        return values

    if size is not None:
        out = per_axis("size", size)
        if any(int(v) != v or v < 1 for v in out):
            raise ValueError(f"interpolate: size entries must be positive ints, got {size!r}")
        scales: tuple[float | None, ...] = (None,) * spatial
    else:
        scales = tuple(float(v) for v in per_axis("scale_factor", scale_factor))
        if any(not v > 0 for v in scales):  # type: ignore[operator]
            raise ValueError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        out = tuple(math.floor(n * v) for n, v in zip(sizes_in, scales))  # type: ignore[operator]
        if any(v < 1 for v in out):
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} gives output size "
                             f"{out} for input {x.shape}")
        if recompute_scale_factor:
            scales = (None,) * spatial
    if any(n < 1 for n in sizes_in):
        raise ValueError(f"interpolate: input spatial sizes must be positive, got {x.shape}")
    mats = [_nearest_matrix(n, int(o), sc) if mode == "nearest" else
            _linear_matrix(n, int(o), sc, bool(align_corners))
            for n, o, sc in zip(sizes_in, out, scales)]
    if spatial == 1:
        return x @ x._const(np.ascontiguousarray(mats[0].T).astype(x.dtype))
    return _separable(x, mats[0], mats[1])


class Upsample(Module):
    """torch.nn.Upsample(size=None, scale_factor=None, mode='nearest', align_corners=None)."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None) -> None:
        super().__init__()
        if mode not in INTERPOLATE_MODES:
            raise ValueError(f"Upsample: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size!r}" if self.size is not None else \
            f"scale_factor={self.scale_factor!r}"
        return f"{what}, mode={self.mode!r}"
