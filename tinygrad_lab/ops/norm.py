"""Normalisation over the last axis: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich
2019), each one fused node.

Shapes: x (..., C), normalised over C; weight and bias (C,); mean and rstd (...), one per row.
Forward saves x, the weight and the per-row statistics (two numbers a row), never the normalised
x: backward recomputes xhat = (x - mean) * rstd while the row is in cache, as llm.c does.
"""

from __future__ import annotations

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.function import Function


class LayerNorm(Function):
    """y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps), over the last axis.

    With xhat = (x - mean) * rstd and dxhat = g * w:
    dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    dw = sum over rows of g * xhat, db = sum over rows of g.
    """

    eps: float
    flops_per_element = (7, 13)  # counted term by term on layer_norm_forward / _backward

    def forward(self, x: Array, w: Array, b: Array) -> Array:
        y, mean, rstd = self.call("layer_norm_forward", x, w, b, self.eps)
        self.save(x, w, mean, rstd)  # the fused backward needs all four for any gradient
        return y

    def backward(self, g: Array) -> tuple[Array, Array, Array]:
        x, w, mean, rstd = self.saved
        return self.call("layer_norm_backward", g, x, w, mean, rstd)


class RMSNorm(Function):
    """y = x * rstd * w, rstd = 1 / sqrt(mean(x**2) + eps), over the last axis.

    With xhat = x * rstd and dxhat = g * w: dx = rstd * (dxhat - xhat * mean(dxhat * xhat)),
    dw = sum over rows of g * xhat.
    """

    eps: float
    flops_per_element = (4, 9)  # counted term by term on rms_norm_forward / _backward

    def forward(self, x: Array, w: Array) -> Array:
        y, rstd = self.call("rms_norm_forward", x, w, self.eps)
        self.save(x, w, rstd)
        return y

    def backward(self, g: Array) -> tuple[Array, Array]:
        x, w, rstd = self.saved
        return self.call("rms_norm_backward", g, x, w, rstd)


# --- references -------------------------------------------------------------------------------
def _rows_sum(a: Array, channels: int) -> Array:
    """Sum of a (..., C) over every axis but the last -> (C,)."""
    return a.reshape(-1, channels).sum(axis=0)


@reference_function("layer_norm_forward")
def layer_norm_forward(x: Array, w: Array, b: Array, eps: float) -> tuple[Array, Array, Array]:
    """(y, mean, rstd) for x (..., C), w, b (C,); mean and rstd (...) in x's dtype."""
    xp = array_module(x)
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    rstd = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
    y = centred * rstd * w + b
    return y, mean[..., 0], rstd[..., 0]


@reference_function("layer_norm_backward")
def layer_norm_backward(g: Array, x: Array, w: Array, mean: Array,
                        rstd: Array) -> tuple[Array, Array, Array]:
    """(dx, dw, db) for upstream g (..., C) and the saved x, w, mean, rstd."""
    channels = x.shape[-1]
    rstd_ = rstd[..., None]
    xhat = (x - mean[..., None]) * rstd_
    dxhat = g * w
    dx = rstd_ * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                  - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, _rows_sum(g * xhat, channels), _rows_sum(g, channels)


@reference_function("rms_norm_forward")
def rms_norm_forward(x: Array, w: Array, eps: float) -> tuple[Array, Array]:
    """(y, rstd) for x (..., C), w (C,); rstd (...) in x's dtype."""
    xp = array_module(x)
    ms = (x * x).mean(axis=-1, keepdims=True)
    rstd = (1 / xp.sqrt(ms + eps)).astype(x.dtype, copy=False)
    return x * rstd * w, rstd[..., 0]


@reference_function("rms_norm_backward")
def rms_norm_backward(g: Array, x: Array, w: Array, rstd: Array) -> tuple[Array, Array]:
    """(dx, dw) for upstream g (..., C) and the saved x, w, rstd."""
    rstd_ = rstd[..., None]
    xhat = x * rstd_
    dxhat = g * w
    dx = rstd_ * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, _rows_sum(g * xhat, x.shape[-1])
