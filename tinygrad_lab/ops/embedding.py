"""Embedding lookup: rows of a (V, D) table picked by integer ids of any shape.

Shapes: V rows (num_embeddings, the vocabulary), D columns (embedding size), ids (...).

    forward:  out[..., :] = weight[ids[...], :]                                  (..., D)
    backward: dweight[v, :] = sum of g[p, :] over the positions p where ids[p] == v     (V, D)

The backward is a scatter-add: a repeated id adds up its gradients, an id that does not occur
gets zero. Both halves are named array functions with a Numba kernel in kernels/embedding.py.
"""

from __future__ import annotations

import numpy as _numpy

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.function import Function
from tinygrad_lab.ops.scatter import add_at, check_index_range


class Embedding(Function):
    """out = weight[ids], ids (...) integer -> out (..., D); dweight = scatter-add of g by ids.

    Only the number of rows is saved for backward (the ids are a parameter of the node).
    """

    ids: Array
    flops_per_element = (0, 1)  # a gather; backward adds each gradient row into its table row

    def forward(self, weight: Array) -> Array:
        self.save(weight.shape[0])
        return self.call("embedding_forward", weight, self.ids)

    def backward(self, g: Array) -> tuple[Array]:
        (num_embeddings,) = self.saved
        return (self.call("embedding_backward", g, self.ids, num_embeddings),)


def check_ids(ids: Array, num_embeddings: int) -> None:
    """Integer ids in 0..num_embeddings-1, else TypeError / IndexError naming the bad id.

    Negative ids are errors too (NumPy's take would silently count them from the end, CuPy's
    wraps every out-of-range id around). One device-side reduction, one value read back
    (ops/scatter.py says why the check stays on for every device).
    """
    check_index_range(ids, num_embeddings, "embedding")


def _on_host(ids: Array) -> bool:
    return array_module(ids) is _numpy


@reference_function("embedding_forward")
def embedding_forward(weight: Array, ids: Array) -> Array:
    """weight (V, D), ids (...) -> (..., D)."""
    check_ids(ids, weight.shape[0])
    return array_module(weight).take(weight, ids, axis=0)


@reference_function("embedding_backward")
def embedding_backward(g: Array, ids: Array, num_embeddings: int) -> Array:
    """g (..., D), ids (...) -> (V, D) with V = num_embeddings; repeated ids add (add_at).

    Device ids are not checked again: the Embedding node's forward checked these very ids, and
    a second read back per step would stall the device for nothing. Host ids (free to check)
    are."""
    if _on_host(ids):
        check_ids(ids, num_embeddings)
    xp = array_module(g)
    dim = g.shape[-1]
    out = xp.zeros((num_embeddings, dim), g.dtype)
    add_at(out, ids.reshape(-1), g.reshape(ids.size, dim))  # (N,) ids, (N, D) rows
    return out
