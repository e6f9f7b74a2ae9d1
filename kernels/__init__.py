"""Hand-written kernels, imported only as `tinygrad_lab.kernels` (never as a top-level package).

`lookup(name, device)` maps a named array function to its kernel, importing the kernel module on
first use, so importing tinygrad_lab compiles nothing. The contract is in kernels/README.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

CPU_KERNELS: dict[str, str] = {
    # activations.py: elementwise forward/backward pairs and the dense-layer epilogue
    "relu_forward": "activations:relu_forward",
    "relu_backward": "activations:relu_backward",
    "tanh_backward": "activations:tanh_backward",
    "sigmoid_forward": "activations:sigmoid_forward",
    "sigmoid_backward": "activations:sigmoid_backward",
    "gelu_forward": "activations:gelu_forward",
    "gelu_backward": "activations:gelu_backward",
    "bias_act_forward": "activations:bias_act_forward",
    # softmax.py: row-parallel over the last axis
    "softmax_forward": "softmax:softmax_forward",
    "softmax_backward": "softmax:softmax_backward",
    "log_softmax_forward": "softmax:log_softmax_forward",
    "log_softmax_backward": "softmax:log_softmax_backward",
    "softmax_cross_entropy_forward": "softmax:softmax_cross_entropy_forward",
    # reduce.py: the bias gradient (..., O) -> (O,)
    "sum_to_shape": "reduce:sum_to_shape",
    # optim.py: fused in-place optimizer updates
    "sgd_step": "optim:sgd_step",
    "adam_step": "optim:adam_step",
    "adamw_step": "optim:adamw_step",
    "rmsprop_step": "optim:rmsprop_step",
    "adagrad_step": "optim:adagrad_step",
    # layernorm.py: row-parallel normalisation over the last axis, forward/backward pairs
    "layer_norm_forward": "layernorm:layer_norm_forward",
    "layer_norm_backward": "layernorm:layer_norm_backward",
    "rms_norm_forward": "layernorm:rms_norm_forward",
    "rms_norm_backward": "layernorm:rms_norm_backward",
    # attention.py: the scaled, causal/boolean-masked softmax of attention scores
    "masked_softmax_forward": "attention:masked_softmax_forward",
    "masked_softmax_backward": "attention:masked_softmax_backward",
    # conv.py: im2col/col2im around the convolution GEMM, pooling pairs; parallel over N*C planes
    "im2col": "conv:im2col",
    "col2im": "conv:col2im",
    "conv2d_bias_act_forward": "conv:conv2d_bias_act_forward",
    "conv2d_bias_act_backward": "conv:conv2d_bias_act_backward",
    "maxpool2d_forward": "conv:maxpool2d_forward",
    "maxpool2d_backward": "conv:maxpool2d_backward",
    "avgpool2d_forward": "conv:avgpool2d_forward",
    "avgpool2d_backward": "conv:avgpool2d_backward",
    # embedding.py: row gather; scatter-add parallel over column blocks (race-free)
    "embedding_forward": "embedding:embedding_forward",
    "embedding_backward": "embedding:embedding_backward",
}
"""name -> "module:function" under tinygrad_lab.kernels (Numba)."""

CUDA_KERNELS: dict[str, str] = {}
"""name -> "module:function" under tinygrad_lab.kernels.cuda (CuPy)."""

_TABLES = {"cpu": CPU_KERNELS, "cuda": CUDA_KERNELS}
_PACKAGES = {"cpu": "tinygrad_lab.kernels", "cuda": "tinygrad_lab.kernels.cuda"}


def lookup(name: str, device: str) -> Callable[..., Any] | None:
    """The kernel registered for `name` on `device`, or None (the backend then uses the
    reference)."""
    target = _TABLES.get(device, {}).get(name)
    if target is None:
        return None
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(f"{_PACKAGES[device]}.{module_name}")
    except ImportError:  # numba (or cupy) missing: the reference path still works
        return None
    return getattr(module, function_name)


def registered(device: str = "cpu") -> dict[str, str]:
    return dict(_TABLES[device])
