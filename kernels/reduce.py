"""Reduction kernels: `sum_to_shape` for the bias-gradient case (..., O) -> (O,).

Same maths as `sum_to_shape_reference` in tinygrad_lab/ops/movement.py, which takes every other
case. Shapes: N rows (all leading axes, flattened), O columns. The rows are split into chunks;
each thread sums its chunks' rows into a partial (O,) row in row order, then the partials are
added. Each sum runs along rows, like NumPy's axis-0 reduction, and vectorizes across columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN_ONE_PASS, is_float

ROW_CHUNKS = 8  # partial rows: enough to balance a few threads, few enough that adding them is free


@njit(cache=True, error_model="numpy")
def _sum_rows_into(g, lo, hi, acc):  # g (N, O), rows lo..hi -> acc (O,) = their sum
    for j in range(acc.size):
        acc[j] = 0
    for r in range(lo, hi):
        row = g[r]
        for j in range(acc.size):
            acc[j] += row[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _sum_rows(g):  # g (N, O) -> (O,)
    # Arrays come from np.empty: in a parallel=True function np.zeros is itself a parallel loop.
    n, out_features = g.shape
    out = np.empty(out_features, g.dtype)
    chunks = min(ROW_CHUNKS, n // 2)
    if g.size < PARALLEL_MIN_ONE_PASS or chunks < 2:
        _sum_rows_into(g, 0, n, out)
        return out
    partial = np.empty((chunks, out_features), g.dtype)  # (chunks, O)
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _sum_rows_into(g, min(n, c * step), min(n, (c + 1) * step), partial[c])
    for j in range(out_features):
        out[j] = partial[0, j]
    for c in range(1, chunks):
        for j in range(out_features):
            out[j] += partial[c, j]
    return out


def sum_to_shape(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum g over the axes broadcasting added or stretched, so it has `shape` again.

    Kernel case: g (..., O) -> (O,) or (1, ..., 1, O), the gradient of a broadcast bias.
    """
    gshape, k = g.shape, len(shape)
    if (
        k >= 1
        and len(gshape) >= max(k, 2)
        and shape[-1] == gshape[-1]
        and is_float(g.dtype)
        and g.size > 0
        and (k == 1 or all(s == 1 for s in shape[:-1]))
    ):
        out_features = gshape[-1]
        return _sum_rows(g.reshape(-1, out_features)).reshape(shape)  # (N, O) -> shape
    return NotImplemented


# --- the kernels this module registers, each with small warm-up arguments -----------------------
KERNELS = {
    "sum_to_shape": lambda dt: (np.random.default_rng(0).standard_normal((4, 8)).astype(dt), (8,)),
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
