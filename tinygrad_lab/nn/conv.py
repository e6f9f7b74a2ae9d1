"""Convolutional-network layers and their functional forms: conv2d, max/avg pooling, batch
normalisation and dropout, with PyTorch's signatures, defaults and initialisation.

Shapes: N batch, C channels, O output channels, H W height and width, L length (BatchNorm1d on
(N, C, L)). conv2d and the pools are one op node each (tinygrad_lab/ops/conv.py); batch_norm and
dropout are compositions of Tensor ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab import ops
from tinygrad_lab.nn import init
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.ops.elementwise import check_activation
from tinygrad_lab.tensor import Tensor

IntPair = int | tuple[int, int]


def _pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_image(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected an input of shape (N, C, H, W), got {x.shape}")


def _check_output(op: str, x: Tensor, out: tuple[int, int]) -> None:
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: input of shape {x.shape} is too small for this kernel, stride, "
                         f"padding and dilation (output would be {out[0]} x {out[1]})")


# --- functional --------------------------------------------------------------------------------
def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
           padding: IntPair | str = 0, dilation: IntPair = 1, groups: int = 1,
           activation: str | None = None) -> Tensor:
    """2-D cross-correlation: x (N, C, H, W), weight (O, C/groups, KH, KW), bias (O,) ->
    (N, O, OH, OW), OH = (H + 2 PH - DH (KH - 1) - 1) // SH + 1 (as torch.nn.functional.conv2d).

    activation (None or a name in ops.elementwise.ACTIVATIONS: 'relu', 'tanh', ...) is applied
    in the same node (like Keras' Conv2D), saving a pass over the output forward and backward.
    padding may also be 'valid' (none) or 'same' (stride 1; see spatial.string_padding).
    """
    _check_image("conv2d", x)
    check_activation(activation, "conv2d")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be (O, C/groups, KH, KW), got {weight.shape}")
    o, cg, kh, kw = weight.shape
    if groups < 1 or x.shape[1] % groups or o % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the input channels "
                         f"({x.shape[1]}) and the output channels ({o})")
    if x.shape[1] != cg * groups:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight {weight.shape} "
                         f"with groups={groups} expects {cg * groups}")
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"conv2d: bias shape {bias.shape} != ({o},)")
    if x.dtype != weight.dtype:
        raise ValueError(f"conv2d: input dtype {x.dtype} != weight dtype {weight.dtype}")
    if isinstance(padding, str):
        from tinygrad_lab.nn.spatial import string_padding

        x, padding = string_padding("conv2d", x, padding, (kh, kw), stride, dilation)
    s, p, d = _pair("stride", stride, 1), _pair("padding", padding, 0), _pair("dilation",
                                                                             dilation, 1)
    _check_output("conv2d", x, (ops.conv.output_size(x.shape[2], kh, s[0], p[0], d[0]),
                                ops.conv.output_size(x.shape[3], kw, s[1], p[1], d[1])))
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ops.conv.Conv2d.apply(*inputs, kernel_size=(kh, kw), stride=s, padding=p, dilation=d,
                          groups=groups, activation=activation)


def _pool_args(op: str, x: Tensor, kernel_size: IntPair, stride: IntPair | None,
               padding: IntPair) -> dict[str, tuple[int, int]]:
    _check_image(op, x)
    k = _pair("kernel_size", kernel_size, 1)
    s = k if stride is None else _pair("stride", stride, 1)
    p = _pair("padding", padding, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    _check_output(op, x, (ops.conv.output_size(x.shape[2], k[0], s[0], p[0]),
                          ops.conv.output_size(x.shape[3], k[1], s[1], p[1])))
    return {"kernel_size": k, "stride": s, "padding": p}


def max_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, dilation: IntPair = 1, ceil_mode: bool = False) -> Tensor:
    """Max over KH x KW windows (stride defaults to the kernel size; padding never wins).
    dilation and ceil_mode as torch (ops/pool.py; the defaults run ops/conv.py's kernels)."""
    if dilation != 1 or ceil_mode:
        from tinygrad_lab.nn.spatial import pool2d

        return pool2d("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    return ops.conv.MaxPool2d.apply(x, **_pool_args("max_pool2d", x, kernel_size, stride, padding))


def avg_pool2d(x: Tensor, kernel_size: IntPair, stride: IntPair | None = None,
               padding: IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean over KH x KW windows, zero padding counted (PyTorch's count_include_pad=True).
    ceil_mode, count_include_pad and divisor_override as torch (ops/pool.py)."""
    if ceil_mode or not count_include_pad or divisor_override is not None:
        from tinygrad_lab.nn.spatial import pool2d

        return pool2d("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode,
                      count_include_pad, divisor_override)
    return ops.conv.AvgPool2d.apply(x, **_pool_args("avg_pool2d", x, kernel_size, stride, padding))


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (axis 1) of x (N, C, ...) over every other axis.

    training: batch mean and biased variance normalise; the running stats (if given) move by
    `momentum` towards the batch mean and the *unbiased* variance, in place, as in PyTorch.
    Otherwise the running stats normalise. Then y = x_hat * weight + bias, per channel.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input (N, C, ...), got {x.shape}")
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)  # broadcasts a (C,) vector over x
    if training:
        count = x.size // max(c, 1)
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {x.shape}")
        mean = x.mean(axes, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(axes, keepdims=True)  # biased, (1, C, 1, ...)
        x_hat = centred / (var + eps).sqrt()
        if running_mean is not None and running_var is not None:
            m = momentum
            batch_mean, batch_var = mean.data.reshape(c), var.data.reshape(c)
            running_mean.data[...] = (1 - m) * running_mean.data + m * batch_mean
            running_var.data[...] = (1 - m) * running_var.data + m * batch_var * (
                count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation needs running_mean and running_var")
        xp = x._backend.xp
        inv_std = 1 / xp.sqrt(running_var.data.astype(x.dtype) + eps)
        x_hat = (x - running_mean.data.astype(x.dtype).reshape(shape)) * inv_std.reshape(shape)
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)
    return x_hat


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

    The mask is drawn on x's device (`Backend.random`: the CPU's from
    tinygrad_lab.random.generator(), a GPU's from its own generator, both seeded by
    tl.manual_seed), never copied from the host; the gradient is the same mask. Identity when
    not training or p == 0.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must lie in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = x._backend.random(x.shape, np.float32) >= p  # on x's device
    mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return x * x._const(mask)


# --- layers ------------------------------------------------------------------------------------
class Conv2d(Module):
    """torch.nn.Conv2d: weight (O, C/groups, KH, KW), bias (O,), both U(-a, a) with
    a = 1 / sqrt(C/groups * KH * KW), PyTorch's default initialisation. `activation` (None or a
    name in ops.elementwise.ACTIVATIONS) fuses the nonlinearity that follows into the same node."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: IntPair | str = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True, activation: str | None = None,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        check_activation(activation, "Conv2d")
        self.activation = activation
        for what, count in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise ValueError(f"Conv2d: {what} must be a positive integer, got {count!r}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        kh, kw = _pair("kernel_size", kernel_size, 1)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride = _pair("stride", stride, 1)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or 'valid', got "
                             f"{padding!r}")
        self.padding = padding if isinstance(padding, str) else _pair("padding", padding, 0)
        self.dilation = _pair("dilation", dilation, 1)
        self.groups = groups
        fan_in = in_channels // groups * kh * kw
        shape = (out_channels, in_channels // groups, kh, kw)
        self.weight = Parameter(init.fan_in_uniform(fan_in, out_channels, shape, dtype))
        self.bias = (Parameter(init.fan_in_uniform(fan_in, out_channels, (out_channels,), dtype))
                     if bias else None)

    def forward(self, x: Tensor) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.activation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}"
                + (f", activation={self.activation!r}" if self.activation else ""))


class MaxPool2d(Module):
    """torch.nn.MaxPool2d (without return_indices)."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, dilation: IntPair = 1, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                f", dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """torch.nn.AvgPool2d."""

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None,
                 padding: IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                f", ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}")


class _BatchNorm(Module):
    """Running mean/var buffers (start 0 and 1), affine weight/bias (start 1 and 0)."""

    input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, dtype: Any = np.float32) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)))
        self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)))

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim not in self.input_dims or x.shape[1] != self.num_features:
            raise ValueError(f"{name}({self.num_features}): expected an input of "
                             f"{' or '.join(f'{d}-D' for d in self.input_dims)} with "
                             f"{self.num_features} channels on axis 1, got {x.shape}")
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          self.training, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d over (N, C) or (N, C, L)."""

    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d over (N, C, H, W)."""

    input_dims = (4,)


class Dropout(Module):
    """Inverted dropout while training, identity in eval()."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must lie in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
