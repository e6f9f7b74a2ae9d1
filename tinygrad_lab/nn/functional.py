"""Stateless layer maths over Tensors: what layers call, and what users call without a layer."""

from __future__ import annotations

from typing import Any

import numpy as np

# The functional forms that have a layer are defined next to it; this module gathers them.
from tinygrad_lab.nn.attention import apply_rotary, masked_softmax, scaled_dot_product_attention
from tinygrad_lab.nn.conv import avg_pool2d, batch_norm, conv2d, dropout, max_pool2d
from tinygrad_lab.nn.embedding import embedding
from tinygrad_lab.nn.layers import linear
from tinygrad_lab.nn.norm import layer_norm, rms_norm
from tinygrad_lab.ops.elementwise import ACTIVATIONS
from tinygrad_lab.ops.nn import SoftmaxCrossEntropy
from tinygrad_lab.tensor import Tensor

# Every registered activation, as a function of the same name: F.relu(x) is x.relu(),
# F.softplus(x, beta=2.0) is x.softplus(beta=2.0) (ops/elementwise.py:ACTIVATIONS).
globals().update({name: getattr(Tensor, name) for name in ACTIVATIONS})


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x.log_softmax(axis)


def _labels_array(logits: Tensor, labels: Any) -> Any:
    data = labels.data if isinstance(labels, Tensor) else logits._backend.asarray(labels)
    if data.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got {data.dtype}")
    if tuple(data.shape) != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: labels shape {tuple(data.shape)} does not match logits shape "
            f"{logits.shape} (expected {logits.shape[:-1]})"
        )
    classes = logits.shape[-1]
    if data.size and (int(data.min()) < 0 or int(data.max()) >= classes):
        raise ValueError(
            f"cross_entropy: labels must lie in [0, {classes}); got min {int(data.min())}, "
            f"max {int(data.max())}"
        )
    return data


def cross_entropy(logits: Tensor, labels: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy from logits (..., C) and integer labels (...), stable.

    'mean' (the default) runs one fused node: loss and gradient in a single pass.
    """
    data = _labels_array(logits, labels)
    classes = logits.shape[-1]
    flat = logits.reshape(-1, classes) if logits.ndim != 2 else logits
    flat_labels = data.reshape(-1)
    if reduction == "mean":
        return SoftmaxCrossEntropy.apply(flat, labels=flat_labels)
    per_sample = -flat.log_softmax(-1)[np.arange(flat.shape[0]), flat_labels]
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample.reshape(*logits.shape[:-1])
    raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def nll_loss(log_probs: Tensor, labels: Any) -> Tensor:
    """Mean negative log-likelihood of integer labels under log-probabilities (N, C)."""
    data = _labels_array(log_probs, labels)
    flat = log_probs.reshape(-1, log_probs.shape[-1])
    return -flat[np.arange(flat.shape[0]), data.reshape(-1)].mean()


def mse_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error; shapes must match exactly (no silent broadcasting)."""
    target_t = target if isinstance(target, Tensor) else prediction._const(target)
    if target_t.shape != prediction.shape:
        raise ValueError(
            f"mse_loss: prediction shape {prediction.shape} != target shape {target_t.shape}"
        )
    diff = prediction - target_t.detach()
    if reduction == "mean":
        return (diff * diff).mean()
    if reduction == "sum":
        return (diff * diff).sum()
    raise ValueError(f"mse_loss: reduction must be 'mean' or 'sum', got {reduction!r}")


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
    "apply_rotary", "avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout", "embedding",
    "l1_penalty", "l2_penalty", "layer_norm", "linear", "log_softmax", "masked_softmax",
    "max_pool2d", "mse_loss", "nll_loss", "rms_norm", "scaled_dot_product_attention", "softmax",
    *ACTIVATIONS,
]
