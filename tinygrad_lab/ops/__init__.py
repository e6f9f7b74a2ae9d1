"""Every differentiable op, one class each, forward and backward side by side, by family.

Importing this package registers the reference body of every named array function (see
tinygrad_lab/backends/base.py), so kernels always have a reference to fall back on and be
checked against.
"""

from tinygrad_lab.ops import (
    attention,
    conv,
    elementwise,
    embedding,
    linalg,
    movement,
    nn,
    norm,
    reduce,
    split,
)

__all__ = [
    "attention",
    "conv",
    "elementwise",
    "embedding",
    "linalg",
    "movement",
    "nn",
    "norm",
    "reduce",
    "split",
]
