"""Every differentiable op, one class each, forward and backward side by side, by family.

Importing this package registers the reference body of every named array function (see
tinygrad_lab/backends/base.py), so kernels always have a reference to fall back on and be
checked against.
"""

from tinygrad_lab.ops import (
    attention,
    conv,
    conv_transpose,
    einsum,
    elementwise,
    embedding,
    indexing,
    linalg,
    maths,
    movement,
    nn,
    norm,
    pool,
    reduce,
    split,
)

__all__ = [
    "attention",
    "conv",
    "conv_transpose",
    "elementwise",
    "einsum",
    "embedding",
    "indexing",
    "linalg",
    "maths",
    "movement",
    "nn",
    "norm",
    "pool",
    "reduce",
    "split",
]
