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
