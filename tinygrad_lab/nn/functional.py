"""Stateless layer maths over Tensors: what layers call, and what users call without a layer."""

from __future__ import annotations

from typing import Any

# The functional forms that have a layer are defined next to it; this module gathers them.
from tinygrad_lab.nn.attention import apply_rotary, masked_softmax, scaled_dot_product_attention
from tinygrad_lab.nn.conv import avg_pool2d, batch_norm, conv2d, dropout, max_pool2d
from tinygrad_lab.nn.embedding import embedding
from tinygrad_lab.nn.layers import linear
from tinygrad_lab.nn.losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cosine_similarity,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from tinygrad_lab.nn.norm import group_norm, instance_norm, layer_norm, rms_norm
from tinygrad_lab.nn.spatial import (
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    conv1d,
    conv_transpose2d,
    interpolate,
)
from tinygrad_lab.ops.elementwise import ACTIVATIONS
from tinygrad_lab.tensor import Tensor

# Every registered activation, as a function of the same name: F.relu(x) is x.relu(),
# F.softplus(x, beta=2.0) is x.softplus(beta=2.0) (ops/elementwise.py:ACTIVATIONS).
globals().update({name: getattr(Tensor, name) for name in ACTIVATIONS})
glu = Tensor.glu  # halves an axis: not elementwise, so not in the registry
swish = Tensor.silu  # silu's other name


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.log_softmax(axis)


def pad(x: Tensor, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:
    """torch.nn.functional.pad: `pad` is flat and last dimension first, (left, right, top,
    bottom, ...); mode constant (`value`, negative widths crop), reflect, replicate, circular.
    Unlike torch, the non-constant modes take any number of leading dimensions."""
    from tinygrad_lab.ops.movement import torch_pad_widths

    return x.pad(torch_pad_widths(pad, x.ndim), mode, 0.0 if value is None else value)


def l1_penalty(parameters: list[Tensor], scale: float) -> Tensor:
    """scale * sum |w|: L1 regularisation, added to the loss (drives weights to exactly 0)."""
    if not parameters:
        raise ValueError("l1_penalty: got an empty parameter list")
    total = parameters[0].abs().sum()
    for p in parameters[1:]:
        total = total + p.abs().sum()
    return total * scale


def l2_penalty(parameters: list[Tensor], scale: float) -> Tensor:
    """scale * sum w**2: L2 regularisation, added to the loss (weight decay's cousin)."""
    if not parameters:
        raise ValueError("l2_penalty: got an empty parameter list")
    total = (parameters[0] * parameters[0]).sum()
    for p in parameters[1:]:
        total = total + (p * p).sum()
    return total * scale


__all__ = [
    "adaptive_avg_pool2d", "adaptive_max_pool2d", "conv1d", "conv_transpose2d", "group_norm",
    "instance_norm", "interpolate",
    "apply_rotary", "avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout", "embedding",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_similarity",
    "huber_loss", "kl_div", "l1_loss", "smooth_l1_loss",
    "l1_penalty", "l2_penalty", "layer_norm", "linear", "log_softmax", "masked_softmax",
    "max_pool2d", "mse_loss", "nll_loss", "rms_norm", "scaled_dot_product_attention", "softmax",
    "pad",
    "glu", "swish", *ACTIVATIONS,
]
