"""Embedding kernels: row gather (forward) and a race-free scatter-add (backward).

Same maths as the references in tinygrad_lab/ops/embedding.py. Shapes: V rows of the table,
D columns, N ids (every axis of ids flattened).

- forward: one task per id, each copies one row of D.
- backward: the (V, D) gradient is split into blocks of columns; each task owns one block and
  walks all N ids in order, adding g[n, block] into out[ids[n], block]. No two tasks write the
  same element, so there is no race and no per-thread copy of the table, and every element sums
  its terms in id order, as np.add.at does: the result equals the reference bit for bit. The
  price: parallelism is D / COL_BLOCK tasks, so a narrow table (D <= 16) runs on one thread.

Ids are checked (integer, 0 <= id < V) before any kernel runs, as Numba does not bounds-check;
bad ids go to the reference (NotImplemented), which raises the error naming the bad id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from tinygrad_lab.kernels._common import PARALLEL_MIN, is_float

COL_BLOCK = 16  # columns per backward task: 64 bytes of float32, one cache line


@njit(cache=True, error_model="numpy")
def _gather_rows(weight, ids, out, lo, hi):  # rows lo..hi of out (N, D) = weight[ids[lo:hi]]
    for n in range(lo, hi):
        row = weight[ids[n]]
        dst = out[n]
        for j in range(row.size):
            dst[j] = row[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _gather(weight, ids, out):  # weight (V, D), ids (N,) -> out (N, D)
    n = ids.size
    if out.size < PARALLEL_MIN or n < 2:
        _gather_rows(weight, ids, out, 0, n)
    else:
        for i in prange(n):
            _gather_rows(weight, ids, out, i, i + 1)


@njit(cache=True, error_model="numpy")
def _scatter_add_cols(g, ids, out, lo, hi):  # out[ids[n], lo:hi] += g[n, lo:hi], n in order
    for n in range(ids.size):
        src = g[n]
        dst = out[ids[n]]
        for j in range(lo, hi):
            dst[j] += src[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _scatter_add(g, ids, out):  # g (N, D), ids (N,) -> out (V, D) += rows of g by id
    dim = g.shape[1]
    blocks = (dim + COL_BLOCK - 1) // COL_BLOCK
    if g.size < PARALLEL_MIN or blocks < 2:
        _scatter_add_cols(g, ids, out, 0, dim)
    else:
        for b in prange(blocks):
            _scatter_add_cols(g, ids, out, b * COL_BLOCK, min(dim, (b + 1) * COL_BLOCK))


def _flat_ids(ids: Any) -> Any:
    return ids.reshape(-1).astype(np.int64, copy=False)  # (N,)


def _ids_in_range(ids: Any, rows: int) -> bool:
    """Integer ids, each in 0..rows-1."""
    if ids.dtype.kind not in "iu":
        return False
    return ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) < rows)


def embedding_forward(weight: Any, ids: Any) -> Any:
    """weight (V, D), integer ids (...) -> (..., D) = weight[ids]."""
    if not (is_float(weight.dtype) and weight.ndim == 2 and _ids_in_range(ids, weight.shape[0])):
        return NotImplemented
    dim = weight.shape[1]
    out = np.empty((ids.size, dim), weight.dtype)  # (N, D)
    _gather(weight, _flat_ids(ids), out)
    return out.reshape(*ids.shape, dim)


def embedding_backward(g: Any, ids: Any, num_embeddings: int) -> Any:
    """g (..., D), integer ids (...) -> (V, D): row v is the sum of g over the ids equal to v."""
    if not (is_float(g.dtype) and g.ndim == ids.ndim + 1 and _ids_in_range(ids, num_embeddings)):
        return NotImplemented
    dim = g.shape[-1]
    out = np.zeros((num_embeddings, dim), g.dtype)  # (V, D)
    _scatter_add(g.reshape(ids.size, dim), _flat_ids(ids), out)
    return out


# --- the kernels this module registers, each with small warm-up arguments -----------------------
def _example(dtype: Any) -> Any:
    return np.random.default_rng(0).standard_normal((4, 8)).astype(dtype)


KERNELS = {
    "embedding_forward": lambda dt: (_example(dt), np.array([0, 2, 2, 3])),  # weight (V, D), ids
    "embedding_backward": lambda dt: (_example(dt), np.array([0, 2, 2, 3]), 4),  # g, ids, V
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
