"""Embedding backward on the GPU: the scatter-add of gradient rows into the table, with atomicAdd.

Same name, signature and maths as the reference in tinygrad_lab/ops/embedding.py (and
kernels/embedding.py). Shapes: V rows of the table, D columns, N ids (every axis flattened). One
thread per element of g (N, D) adds it into out[ids[n], d]: repeated ids meet in atomicAdd, so
the sum's order (and its last bits in float32) may differ from run to run, unlike np.add.at. The
forward, a gather, stays on the reference (CuPy's take is one kernel already).
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.kernels.cuda._common import (
    CudaSource,
    grid,
    i32,
    i64,
    is_cuda_float,
    launch,
    warm_up_arrays,
)

CODE = r"""
// g (N, D), ids (N,) -> out (V, D) += g[n] into row ids[n]
template <typename T>
__global__ void embedding_backward(const T* __restrict__ g, const long long* __restrict__ ids,
                                   T* __restrict__ out, long long n, int d) {
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n * d;
         k += (long long)gridDim.x * blockDim.x) {
        const long long row = ids[k / d];
        atomicAdd(out + row * d + k % d, g[k]);
    }
}
"""

SOURCE = CudaSource("embedding", CODE, ("embedding_backward",))


def embedding_backward(g: Any, ids: Any, num_embeddings: int) -> Any:
    """g (..., D), integer ids (...) -> (V, D): row v is the sum of g over the ids equal to v.
    Ids outside 0..V-1 go to the reference, which raises the error naming one (one
    device-to-host read)."""
    if not (
        is_cuda_float(g)
        and hasattr(ids, "dtype")
        and ids.dtype.kind in "iu"
        and g.ndim == ids.ndim + 1
        and g.shape[:-1] == ids.shape
    ):
        return NotImplemented
    import cupy

    flat = cupy.ascontiguousarray(cupy.asarray(ids).reshape(-1), dtype=cupy.int64)  # (N,)
    if flat.size and bool(((flat < 0) | (flat >= num_embeddings)).any()):
        return NotImplemented
    dim = g.shape[-1]
    out = cupy.zeros((num_embeddings, dim), g.dtype)  # (V, D)
    if flat.size and dim:
        launch(SOURCE, "embedding_backward", g.dtype, grid(g.size), 256,
               (g, flat, out, i64(flat.size), i32(dim)))
    return out


def _example(dtype: Any) -> Any:
    return warm_up_arrays(dtype, (4, 8))[0]  # (B, D)


def _ids() -> Any:
    import cupy

    return cupy.array([0, 2, 2, 3])


KERNELS = {
    "embedding_backward": lambda dt: (_example(dt), _ids(), 4),  # g, ids, V
}
"""name -> (dtype -> arguments of one small call): see kernels/README.md."""
