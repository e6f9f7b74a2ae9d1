"""Every differentiable op, one class each, forward and backward side by side, by family.

Importing this package registers the reference body of every named array function (see
tinygrad_lab/backends/base.py), so kernels always have a reference to fall back on and be
checked against.
"""

from tinygrad_lab.ops import attention, elementwise, linalg, movement, nn, norm, reduce

__all__ = ["elementwise", "linalg", "movement", "nn", "reduce"]
__all__ += ["attention", "norm"]

from tinygrad_lab.ops import conv  # noqa: E402

__all__ += ["conv"]

from tinygrad_lab.ops import embedding, split  # noqa: E402

__all__ += ["embedding", "split"]
