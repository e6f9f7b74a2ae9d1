"""Normalisation layers over the last axis: LayerNorm and RMSNorm, and their functional forms.

Both are one fused node each (tinygrad_lab/ops/norm.py); the layers own the gain (and bias).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.ops import norm as _norm
from tinygrad_lab.tensor import Tensor


def _check(name: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if x.ndim == 0 or x.shape[-1:] != weight.shape:
        raise ValueError(f"{name}: input shape {x.shape} does not end in the weight's shape "
                         f"{weight.shape}")
    if bias is not None and bias.shape != weight.shape:
        raise ValueError(f"{name}: bias shape {bias.shape} != weight shape {weight.shape}")


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance, as
    torch.nn.functional.layer_norm); x (..., C), weight and bias (C,)."""
    _check("layer_norm", x, weight, bias)
    return _norm.LayerNorm.apply(x, weight, bias, eps=float(eps))


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(mean(x**2) + eps) * weight over the last axis; x (..., C), weight (C,)."""
    _check("rms_norm", x, weight, None)
    return _norm.RMSNorm.apply(x, weight, eps=float(eps))


def _features(normalized_shape: int | Sequence[int]) -> int:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"normalised shape must be one positive size (the last axis), got "
                         f"{normalized_shape}")
    return int(shape[0])


class LayerNorm(Module):
    """Layer normalisation over the last axis (Ba et al. 2016); weight starts at 1, bias at 0.

    >>> ln = LayerNorm(128); y = ln(x)  # x (B, T, 128) -> y (B, T, 128)
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.features = _features(normalized_shape)
        self.eps = float(eps)
        self.weight = Parameter(np.ones(self.features, dtype=dtype))
        self.bias = Parameter(np.zeros(self.features, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps:g}"


class RMSNorm(Module):
    """Root-mean-square normalisation over the last axis (Zhang & Sennrich 2019): no centring,
    no bias; weight starts at 1. `eps` defaults to 1e-6 (torch uses the dtype's eps if None)."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-6,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.features = _features(normalized_shape)
        self.eps = float(eps)
        self.weight = Parameter(np.ones(self.features, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.features}, eps={self.eps:g}"


# --- normalisation over channel groups and instances (compositions of Tensor ops) ---------------
def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.group_norm: x (N, C, ...) split into num_groups groups of C/G
    channels, each (sample, group) normalised over its channels and positions (biased
    variance), then y = x_hat * weight + bias per channel; weight and bias (C,)."""
    if x.ndim < 2:
        raise ValueError(f"group_norm: expected an input (N, C, ...), got {x.shape}")
    n, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: num_groups={num_groups} must divide the channels ({c})")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"group_norm: {what} shape {t.shape} != ({c},)")
    per_group = c // num_groups * int(np.prod(x.shape[2:]))  # no -1: N may be 0
    grouped = x.reshape(n, num_groups, per_group)  # (N, G, C/G * positions)
    centred = grouped - grouped.mean(-1, keepdims=True)
    var = (centred * centred).mean(-1, keepdims=True)  # (N, G, 1), biased
    x_hat = (centred / (var + eps).sqrt()).reshape(*x.shape)
    return _affine(x_hat, weight, bias)


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    shape = (1, x_hat.shape[1]) + (1,) * (x_hat.ndim - 2)  # a (C,) vector over (N, C, ...)
    if weight is not None:
        x_hat = x_hat * weight.reshape(*shape)
    if bias is not None:
        x_hat = x_hat + bias.reshape(*shape)
    return x_hat


def instance_norm(x: Tensor, running_mean: Tensor | None = None,
                  running_var: Tensor | None = None, weight: Tensor | None = None,
                  bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.instance_norm: each (sample, channel) of x (N, C, ...) normalised
    over its positions. With use_input_stats, running stats (if given) move by `momentum`
    towards the batch average of the instances' mean and unbiased variance, in place, as torch;
    without, the running stats normalise."""
    if x.ndim < 3:
        raise ValueError(f"instance_norm: expected an input (N, C, ...) with positions, got "
                         f"{x.shape}")
    c = x.shape[1]
    axes = tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        count = int(np.prod(x.shape[2:]))
        if count <= 1:
            raise ValueError(f"instance_norm: expected more than 1 spatial element when "
                             f"training, got input of shape {x.shape}")
        mean = x.mean(axes, keepdims=True)  # (N, C, 1, ...)
        centred = x - mean
        var = (centred * centred).mean(axes, keepdims=True)  # (N, C, 1, ...), biased
        x_hat = centred / (var + eps).sqrt()
        if running_mean is not None and running_var is not None:
            mean_c = mean.data.reshape(x.shape[0], c).mean(0)  # (C,)
            var_c = var.data.reshape(x.shape[0], c).mean(0) * (count / (count - 1))
            running_mean.data[...] = (1 - momentum) * running_mean.data + momentum * mean_c
            running_var.data[...] = (1 - momentum) * running_var.data + momentum * var_c
    else:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean and "
                             "running_var")
        mean = x._const(running_mean.data.astype(x.dtype).reshape(shape))
        inv_std = x._const((1 / (running_var.data.astype(x.dtype) + eps) ** 0.5).reshape(shape))
        x_hat = (x - mean) * inv_std
    return _affine(x_hat, weight, bias)


class GroupNorm(Module):
    """torch.nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True): weight starts at 1,
    bias at 0, each (C,)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype: Any = np.float32) -> None:
        super().__init__()
        if num_groups < 1 or num_channels < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_groups={num_groups} must divide num_channels="
                             f"{num_channels}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, float(eps)
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected (N, {self.num_channels}, ...), got {x.shape}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps:g}, " \
            f"affine={self.weight is not None}"


class _InstanceNorm(Module):
    """affine=False and track_running_stats=False by default, as torch; (C, ...) unbatched
    inputs work too."""

    spatial_dims = 2

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, float(eps), momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)))

    def forward(self, x: Tensor) -> Tensor:
        d = self.spatial_dims
        if x.ndim not in (d + 1, d + 2) or x.shape[-d - 1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected "
                             f"(N, {self.num_features}, ...) with {d} spatial axes, or the "
                             f"unbatched (C, ...), got {x.shape}")
        batched = x.ndim == d + 2
        stats = self.track_running_stats
        y = instance_norm(x if batched else x.unsqueeze(0),
                          self.running_mean if stats else None,
                          self.running_var if stats else None, self.weight, self.bias,
                          self.training or not stats, self.momentum, self.eps)
        return y if batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """torch.nn.InstanceNorm1d over (N, C, L) or (C, L)."""

    spatial_dims = 1


class InstanceNorm2d(_InstanceNorm):
    """torch.nn.InstanceNorm2d over (N, C, H, W) or (C, H, W)."""

    spatial_dims = 2
