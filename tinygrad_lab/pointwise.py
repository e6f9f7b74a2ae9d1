"""PyTorch's free functions of the pointwise ops: tl.sin(x) is x.sin(), tl.atan2(a, b) is
a.atan2(b), ... (each is the Tensor method itself). Exported from tinygrad_lab.

`div` is the one with more to it: torch.div's rounding_mode (None, "trunc" or "floor").
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.tensor import Tensor

# unary maths (ops/maths.py)
sin, cos, tan, asin, acos, atan = Tensor.sin, Tensor.cos, Tensor.tan, Tensor.asin, Tensor.acos, \
    Tensor.atan
arcsin, arccos, arctan = Tensor.arcsin, Tensor.arccos, Tensor.arctan
sinh, cosh = Tensor.sinh, Tensor.cosh
reciprocal, rsqrt, log2, log1p, exp2, expm1, erf = Tensor.reciprocal, Tensor.rsqrt, \
    Tensor.log2, Tensor.log1p, Tensor.exp2, Tensor.expm1, Tensor.erf
floor, ceil, round, trunc, fix, sign = Tensor.floor, Tensor.ceil, Tensor.round, Tensor.trunc, \
    Tensor.fix, Tensor.sign
isnan, isinf, isfinite = Tensor.isnan, Tensor.isinf, Tensor.isfinite
# the ones that existed before as methods only
exp, log, sqrt, abs, tanh, sigmoid, relu = Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs, \
    Tensor.tanh, Tensor.sigmoid, Tensor.relu
# binary
atan2, arctan2, fmod, remainder, floor_divide = Tensor.atan2, Tensor.arctan2, Tensor.fmod, \
    Tensor.remainder, Tensor.floor_divide
eq, ne, lt, le, gt, ge = Tensor.eq, Tensor.ne, Tensor.lt, Tensor.le, Tensor.gt, Tensor.ge
greater, greater_equal, less, less_equal, not_equal = Tensor.greater, Tensor.greater_equal, \
    Tensor.less, Tensor.less_equal, Tensor.not_equal
equal = Tensor.equal
logical_and, logical_or, logical_xor, logical_not = Tensor.logical_and, Tensor.logical_or, \
    Tensor.logical_xor, Tensor.logical_not
isclose, allclose = Tensor.isclose, Tensor.allclose


def div(input: Tensor, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """input / other: true division (None, integers give float32), or rounded toward zero
    ("trunc") or down ("floor"), integers staying integers (torch.div). Rounded quotients have
    zero gradient, as in PyTorch."""
    return input.div(other, rounding_mode=rounding_mode)


divide = div

__all__ = [
    "abs", "acos", "allclose", "arccos", "arcsin", "arctan", "arctan2", "asin", "atan", "atan2",
    "ceil", "cos", "cosh", "div", "divide", "eq", "equal", "erf", "exp", "exp2", "expm1", "fix",
    "floor", "floor_divide", "fmod", "ge", "greater", "greater_equal", "gt", "isclose",
    "isfinite", "isinf", "isnan", "le", "less", "less_equal", "log", "log1p", "log2",
    "logical_and", "logical_not", "logical_or", "logical_xor", "lt", "ne", "not_equal",
    "reciprocal", "relu", "remainder", "round", "rsqrt", "sigmoid", "sign", "sin", "sinh",
    "sqrt", "tan", "tanh", "trunc",
]
