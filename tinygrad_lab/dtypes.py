"""Result dtypes, PyTorch's rules (not NumPy's): a Python scalar never widens a tensor's dtype,
and an integer or boolean input to a floating-point op gives the default float dtype (float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_FLOAT = np.dtype(np.float32)


def float_dtype(dtype: Any) -> np.dtype:
    """The dtype a floating-point op (exp, true division, sqrt, ...) computes in for an input
    of `dtype`: floats keep theirs, integers and booleans get the default float dtype."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "fc" else DEFAULT_FLOAT


def scalar_dtype(dtype: Any, value: Any) -> np.dtype:
    """The dtype of `tensor <op> value` for a Python scalar `value`: the tensor's own dtype,
    unless the scalar's category is higher (a float with an integer or bool tensor gives the
    default float; an int with a bool tensor gives int64)."""
    dtype = np.dtype(dtype)
    if isinstance(value, bool):
        return dtype
    if isinstance(value, int):
        return np.dtype(np.int64) if dtype.kind == "b" else dtype
    if isinstance(value, float):
        return dtype if dtype.kind in "fc" else DEFAULT_FLOAT
    raise TypeError(f"scalar_dtype: {value!r} is not a Python bool, int or float")


def result_dtype(a: Any, b: Any) -> np.dtype:
    """The dtype of `a <op> b` for two tensors' dtypes: the higher category wins (bool < integer
    < float), and within a category the wider type (NumPy agrees there)."""
    a, b = np.dtype(a), np.dtype(b)
    rank = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
    if rank[a.kind] != rank[b.kind]:
        return a if rank[a.kind] > rank[b.kind] else b
    return np.result_type(a, b)
