"""torch's free-function spelling of the reduction, movement and indexing methods:
tl.gather(x, dim, index) is x.gather(dim, index), as torch.gather is. Each forwards its
arguments unchanged, so the method's docstring is the reference; einsum is only a function.
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.ops.einsum import einsum
from tinygrad_lab.tensor import Tensor

_METHODS = (
    "all", "any", "argmax", "argmin", "argsort", "cumprod", "cumsum", "flatten", "flip",
    "gather", "index_select", "logsumexp", "masked_fill", "masked_select", "max", "mean", "min",
    "minimum", "maximum", "movedim", "moveaxis", "narrow", "nonzero", "norm", "prod",
    "repeat_interleave", "roll", "scatter", "scatter_add", "scatter_reduce", "sort", "split",
    "squeeze", "std", "std_mean", "sum", "swapaxes", "swapdims", "tile", "topk", "unsqueeze",
    "var", "var_mean",
)


def _free(name: str) -> Any:
    method = getattr(Tensor, name)

    def function(input: Tensor, *args: Any, **kw: Any) -> Any:
        return method(input, *args, **kw)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"tl.{name}(x, ...) is x.{name}(...).\n\n{method.__doc__ or ''}"
    return function


for _name in _METHODS:
    globals()[_name] = _free(_name)

__all__ = ["einsum", *_METHODS]
