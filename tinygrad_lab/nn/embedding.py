"""Embedding: a trainable lookup table from integer ids to vectors (torch.nn.Embedding).

Shapes: V rows (num_embeddings), D columns (embedding_dim); ids (...) -> (..., D).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.nn import init
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.ops.embedding import Embedding as _Embedding
from tinygrad_lab.tensor import Tensor


def embedding(ids: Any, weight: Tensor) -> Tensor:
    """weight[ids]: ids (...) integer array, Tensor or list, weight (V, D) -> (..., D).

    The gradient of weight is a scatter-add (a repeated id adds up); ids get no gradient.
    Ids outside 0..V-1 raise IndexError naming the id and V.

    >>> embedding([[0, 2], [2, 1]], weight).shape  # weight (V, D) -> (2, 2, D)
    """
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got {weight.shape}")
    data = ids.data if isinstance(ids, Tensor) else weight._backend.asarray(ids)
    return _Embedding.apply(weight, ids=data)


class Embedding(Module):
    """ids (...) -> weight[ids] (..., D); weight (V, D) starts N(0, 1), as in PyTorch.

    >>> emb = Embedding(65, 32); emb(np.array([[1, 2, 3]])).shape  # (1, 3, 32)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = np.float32) -> None:
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding: sizes must be >= 1, got num_embeddings="
                             f"{num_embeddings}, embedding_dim={embedding_dim}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(init.normal(1.0, (num_embeddings, embedding_dim), dtype))

    def forward(self, ids: Any) -> Tensor:
        return embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
