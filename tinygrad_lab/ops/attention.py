"""Attention's own ops: the scaled, masked softmax over attention scores, multi-head attention on
packed q/k/v projections (one node for all heads), and rotary embedding.

Shapes: B batch, H heads, T query positions, S key positions, D head size.
Scores are (B, H, T, S). `causal` hides key j from query i when j > i + (S - T): the queries are
the last T of the S positions (so T == S is the usual lower triangle, and T < S is what a decoder
with cached keys sees). `mask` is boolean, broadcastable to (B, H, T, S), True = keep. A row with
no key left (fully masked) gives zeros, not NaN, and passes no gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tinygrad_lab import helpers
from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function

CHUNK_BYTES = 2 << 20
"""QKVAttention works through the batch in chunks whose (H, T, S) scores take about this many
bytes (the L2 caches of two cores): B8 H8 T128 (512 kB a sample) in chunks of 4 ran its backward
in 0.67x the time of the whole batch at once, on 2 threads."""

MASKED_SOFTMAX_BACKWARD_FLOPS = 5
"""Per score: scale * y * (g - sum(g * y)) is a product, a sum, a subtraction, two products."""


def masked_softmax_flops(causal: bool, mask: Array | None) -> int:
    """Forward FLOPs per score: the scaling, the select of hidden entries when there are any,
    then the softmax (max, subtract, exp, sum, divide)."""
    return 1 + (causal or mask is not None) + 5


class MaskedSoftmax(Function):
    """y = softmax over S of (scale * scores), hidden entries excluded (y = 0 there).

    dx = scale * y * (g - sum(g * y)); only y is saved (hidden entries have y = 0, so they get
    no gradient without looking at the mask again).
    """

    scale: float
    causal: bool
    mask: Array | None

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * masked_softmax_flops(self.causal, self.mask)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * MASKED_SOFTMAX_BACKWARD_FLOPS

    def forward(self, scores: Array) -> Array:
        y = self.call("masked_softmax_forward", scores, self.scale, self.causal, self.mask)
        self.save(y)
        return y

    def backward(self, g: Array) -> tuple[Array]:
        (y,) = self.saved
        return (self.call("masked_softmax_backward", g, y, self.scale),)


class QKVAttention(Function):
    """Multi-head attention on packed projections, heads split and merged inside the node:
    qkv (B, T, 3C) -> y (B, T, C), C = H * D.

    q, k, v are views of qkv (column blocks [q | k | v], each H heads of D columns), so no
    split, transpose or scatter nodes run around the attention. With rotary tables cos, sin
    (T, D), q and k are rotated first. Per head, with P = masked_softmax(q k^T / sqrt(D)):
    y = P v;  dv = P^T gy;  dP = gy v^T;  dS = softmax backward of dP;  dq = dS k;  dk = dS^T q,
    written straight into one dqkv (B, T, 3C). Saved: q, k (views, or rotated copies), v;
    backward recomputes P (one more q k^T and softmax, as FlashAttention does) rather than keep
    a (B, H, T, T) array per layer: what is saved is then the qkv buffer, O(T) per sample.
    Both passes work through the batch in chunks of about CHUNK_BYTES of scores, so a chunk's
    scores and weights are still in cache for the next product, and k^T, v^T are made
    contiguous first so each per-head product is a plain GEMM.
    """

    num_heads: int
    causal: bool
    mask: Array | None
    cos: Array | None
    sin: Array | None

    def _sizes(self, in_shapes: list[Shape]) -> tuple[int, int, int]:
        """(scores B*H*T*T, one q/k/v block B*T*C, one product B*T*T*C): every causal score
        is computed (then hidden), so none is left out."""
        b, t, c3 = in_shapes[0]
        return b * self.num_heads * t * t, b * t * (c3 // 3), b * t * t * (c3 // 3)

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # rotary on q and k (3 each per element), q k^T and P v (2 B T T C each), the softmax
        scores, block, product = self._sizes(in_shapes)
        rotary = 2 * 3 * block if self.cos is not None else 0
        return rotary + 2 * 2 * product + scores * masked_softmax_flops(self.causal, self.mask)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # P recomputed (q k^T, the softmax); dv = P^T gy, dP = gy v^T, dq = dS k, dk = dS^T q;
        # the softmax backward; rotary on dq, dk
        scores, block, product = self._sizes(in_shapes)
        rotary = 2 * 3 * block if self.cos is not None else 0
        recompute = 2 * product + scores * masked_softmax_flops(self.causal, self.mask)
        return recompute + 4 * 2 * product + scores * MASKED_SOFTMAX_BACKWARD_FLOPS + rotary

    def forward(self, qkv: Array) -> Array:
        b, t, c3 = qkv.shape
        h = self.num_heads
        d = c3 // (3 * h)
        heads = qkv.reshape(b, t, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D) view
        q, k, v = heads[0], heads[1], heads[2]  # (B, H, T, D) each
        if self.cos is not None:
            q = q * self.cos + _rotate_pairs(q) * self.sin
            k = k * self.cos + _rotate_pairs(k) * self.sin
        self.save(q, k, v)
        y = self.xp.empty((b, t, h, d), dtype=qkv.dtype)
        heads_y = y.transpose(0, 2, 1, 3)  # (B, H, T, D) view: each head's rows a BLAS matrix

        def rows_forward(rows: slice) -> None:
            p = self._weights(q[rows], k[rows], self._mask_of(rows))
            if self._keys_first():  # p is P^T (b, H, S, T)
                p = p.swapaxes(-1, -2)
            self.xp.matmul(p, v[rows], out=heads_y[rows])  # straight into (B, T, H, D)

        self._each_chunk(rows_forward, b, t, k.shape[-2], qkv.dtype)
        return y.reshape(b, t, h * d)  # (B, T, H, D) -> (B, T, C)

    def _chunks(self, b: int, t: int, s: int, dtype: Any, pieces: int = 1) -> list[slice]:
        """Slices of the batch whose (H, T, S) score arrays take about CHUNK_BYTES together, so
        each chunk's scores, weights and their gradients stay in cache from one product to the
        next, and at least `pieces` of them when the batch has that many samples."""
        per_sample = self.num_heads * t * s * np.dtype(dtype).itemsize
        step = max(1, min(CHUNK_BYTES // max(per_sample, 1), -(-b // pieces)))
        return [slice(i, min(i + step, b)) for i in range(0, b, step)]

    def _each_chunk(self, work: Callable[[slice], None], b: int, t: int, s: int,
                    dtype: Any) -> None:
        """work(rows) for every chunk of the batch (on the CPU: chunks are about cache, and a
        GPU takes the whole batch at once). On the CPU with n > 1 threads, n chunks run
        at once: each head's products are too small for BLAS to split them among threads (it
        runs them on one), so the threads take whole chunks instead (the mini-GPT's attention
        backward 1.4 -> 1.0 ms on 2 threads). Chunks write disjoint rows, and no result depends
        on how the batch was cut."""
        if self.xp is not np:  # a GPU: the whole batch in one launch per product, as before
            work(slice(0, b))
            return
        threads = helpers.num_threads()
        chunks = self._chunks(b, t, s, dtype, pieces=threads)
        if threads < 2 or len(chunks) < 2:
            for rows in chunks:
                work(rows)
            return
        _share_chunks(work, chunks, threads)

    def _mask_of(self, rows: slice) -> Array | None:
        """The mask for a chunk of the batch: cut along B when it has a batch axis of its own
        (a mask broadcast from (T, S) or (1, ...) serves every chunk as it is)."""
        mask = self.mask
        if mask is None or mask.ndim < 4 or mask.shape[0] == 1:
            return mask
        return mask[rows]

    def _keys_first(self) -> bool:
        """On the CPU the scores are computed keys first, S = k q^T (b, H, S, T), and P^T is
        kept: the softmax then runs down columns, which vectorizes along rows of T queries (the
        mini-GPT's, T = 64: 0.11 against 0.19 ms a chunk for rows). A GPU keeps queries first,
        for its row kernels (one block per row)."""
        return self.xp is np

    def _weights(self, q: Array, k: Array, mask: Array | None) -> Array:
        """P = masked_softmax(q k^T / sqrt(D)) (b, H, T, S), in forward and again in backward;
        keys first (_keys_first), P^T (b, H, S, T) instead."""
        scale = 1.0 / float(np.sqrt(q.shape[-1]))
        if self._keys_first():
            scores_t = k @ _transposed(q)  # (b, H, S, T)
            self.workspace(scores_t)
            p = self.call("masked_softmax_columns_forward", scores_t, scale, self.causal, mask)
        else:
            scores = q @ _transposed(k)  # (b, H, T, S)
            self.workspace(scores)
            p = self.call("masked_softmax_forward", scores, scale, self.causal, mask)
        self.workspace(p)
        return p

    def backward(self, g: Array) -> tuple[Array]:
        q, k, v = self.saved
        b, h, t, d = q.shape
        gy = g.reshape(b, t, h, d).transpose(0, 2, 1, 3)  # (B, H, T, D) view
        dqkv = self.xp.empty((b, t, 3, h, d), dtype=g.dtype)
        self.workspace(dqkv)
        dq_, dk_, dv_ = dqkv.transpose(2, 0, 3, 1, 4)  # (B, H, T, D) views, written in place
        xp = self.xp
        keys_first = self._keys_first()

        def rows_backward(rows: slice) -> None:
            qc, kc, vc, gc = q[rows], k[rows], v[rows], gy[rows]
            p = self._weights(qc, kc, self._mask_of(rows))  # recomputed: the forward's, bit for bit
            scale = 1.0 / float(np.sqrt(d))
            if keys_first:  # P^T, dP^T, dS^T (b, H, S, T); ds below is dS (b, H, T, S)
                xp.matmul(p, gc, out=dv_[rows])  # dv = P^T gy
                dp = vc @ _transposed(gc)  # dP^T = v gy^T
                self.workspace(dp)
                ds = self.call("masked_softmax_columns_backward", dp, p, scale,
                               self.causal).swapaxes(-1, -2)
            else:
                xp.matmul(p.swapaxes(-1, -2), gc, out=dv_[rows])  # dv = P^T gy
                dp = gc @ _transposed(vc)  # (b, H, T, S)
                self.workspace(dp)
                ds = self.call("masked_softmax_backward", dp, p, scale)
            self.workspace(ds)
            del p, dp
            if self.cos is None:
                xp.matmul(ds, kc, out=dq_[rows])  # dq = dS k
                xp.matmul(ds.swapaxes(-1, -2), qc, out=dk_[rows])  # dk = dS^T q
                return
            dq = ds @ kc  # rotation transposed: g * cos - rot(g * sin)
            dk = ds.swapaxes(-1, -2) @ qc
            dq_[rows] = dq * self.cos - _rotate_pairs(dq * self.sin)
            dk_[rows] = dk * self.cos - _rotate_pairs(dk * self.sin)

        self._each_chunk(rows_backward, b, t, k.shape[-2], g.dtype)
        return (dqkv.reshape(b, t, 3 * h * d),)  # (B, T, 3C)


class Rotary(Function):
    """RoPE (Su et al. 2021): rotate each pair (x[2i], x[2i+1]) by the angle pos * theta_i.

    y = x * cos + rot(x) * sin with rot(x)[2i] = -x[2i+1], rot(x)[2i+1] = x[2i]; rot is a
    rotation by 90 degrees, so rot^T = -rot and dx = g * cos - rot(g * sin).
    cos, sin: (T, D), broadcast over the leading axes of x (..., T, D).
    """

    cos: Array
    sin: Array
    flops_per_element = (3, 3)  # x cos + rot(x) sin; g cos - rot(g sin)

    def forward(self, x: Array) -> Array:
        return x * self.cos + _rotate_pairs(x) * self.sin

    def backward(self, g: Array) -> tuple[Array]:
        return (g * self.cos - _rotate_pairs(g * self.sin),)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _share_chunks(work: Callable[[slice], None], chunks: list[slice], threads: int) -> None:
    """work(rows) for every chunk, on the calling thread and threads - 1 pool workers at once,
    each taking the next chunk left. The caller works too rather than wait: handing every chunk
    to the pool cost a thread wake-up more (attention forward + backward 1.09x as long for the
    mini-GPT, 1.05x for the wide one, same-run alternation on 2 threads). Every thread runs
    Numba on one thread of its own, and the workers with the caller's kernel switch."""
    counter = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        while (i := next(counter)) < len(chunks):
            work(chunks[i])

    context = contextvars.copy_context()  # this thread's kernel switch, for every worker
    pool = _pool(threads - 1)
    futures = [pool.submit(context.copy().run, drain) for _ in range(threads - 1)]
    try:
        with _one_kernel_thread_here():
            drain()
    finally:
        for future in futures:
            future.result()  # a worker's error is raised here (after every worker stopped)


@contextlib.contextmanager
def _one_kernel_thread_here() -> Iterator[None]:
    """Numba kernels on this thread alone for a while (its thread count is per calling
    thread), then the count it had."""
    try:
        import numba
    except ImportError:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of `threads` workers for attention's batch chunks (the caller is one more), made
    once per count and per process (a forked child has none of its parent's threads: it makes
    its own pool)."""
    key = (os.getpid(), threads)
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="attention",
                                                initializer=_one_kernel_thread)
    return pool


def _one_kernel_thread() -> None:
    """In a chunk worker, Numba kernels run on the worker's own thread (Numba's thread count is
    per calling thread): the chunks are the parallelism, and a kernel's own team would wake
    more threads than there are cores."""
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(1)


def _transposed(x: Array) -> Array:
    """x^T over the last two axes, as a contiguous copy: the per-head products q k^T and gy v^T
    then run as plain (no-transpose) GEMMs. With k^T as a strided view, OpenBLAS took 3.4x as
    long for B8 H8 T128 D32 on 2 threads (2.2 ms against 0.65 ms, plus 0.22 ms for the copy)."""
    return array_module(x).ascontiguousarray(x.swapaxes(-1, -2))


def _rotate_pairs(x: Array) -> Array:
    """(..., D) -> (..., D): (a, b) pairs along the last axis become (-b, a)."""
    out = array_module(x).empty_like(x)
    out[..., 0::2] = -x[..., 1::2]
    out[..., 1::2] = x[..., 0::2]
    return out


def rotary_tables(positions: Any, dim: int, base: float = 10000.0,
                  dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin), each (T, D), for integer positions (T,): theta_i = base ** (-2i / D), each
    angle repeated for both members of its pair. Computed in float64, then cast."""
    if dim % 2:
        raise ValueError(f"rotary embedding needs an even head size, got {dim}")
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    theta = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)  # (D/2,)
    angles = np.repeat(pos[:, None] * theta[None, :], 2, axis=1)  # (T, D)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


# --- references -------------------------------------------------------------------------------
def keep_mask(shape: tuple[int, ...], causal: bool, mask: Array | None, xp: Any = np) -> Array:
    """Boolean (..., T, S) (or broadcastable to it): True where a score takes part."""
    t, s = shape[-2], shape[-1]
    keep = None
    if causal:
        rows = xp.arange(t)[:, None]
        cols = xp.arange(s)[None, :]
        keep = cols <= rows + (s - t)  # (T, S)
    if mask is not None:
        m = xp.asarray(mask, dtype=bool)
        keep = m if keep is None else keep & m
    return keep


@reference_function("masked_softmax_forward")
def masked_softmax_forward(scores: Array, scale: float, causal: bool,
                           mask: Array | None) -> Array:
    """y (..., T, S) = softmax(scale * scores) over S with hidden entries at exactly 0."""
    xp = array_module(scores)
    z = scores * scores.dtype.type(scale)
    keep = keep_mask(scores.shape, causal, mask, xp)
    if keep is None:
        e = xp.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    z = xp.where(keep, z, -xp.inf)
    m = z.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # a fully hidden row: no max, and exp(-inf) = 0 anyway
    e = xp.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    return e / xp.where(s > 0, s, 1)


@reference_function("masked_softmax_backward")
def masked_softmax_backward(g: Array, y: Array, scale: float) -> Array:
    """dx = scale * y * (g - sum(g * y)) over the last axis."""
    return y * (g - (g * y).sum(axis=-1, keepdims=True)) * y.dtype.type(scale)


@reference_function("masked_softmax_columns_forward")
def masked_softmax_columns_forward(scores_t: Array, scale: float, causal: bool,
                                   mask: Array | None) -> Array:
    """The same weights for keys-first scores (..., S, T), transposed: the softmax runs down
    each column (over S); mask as for masked_softmax_forward, broadcastable to (B, H, T, S)."""
    return masked_softmax_forward(scores_t.swapaxes(-1, -2), scale, causal, mask).swapaxes(-1, -2)


@reference_function("masked_softmax_columns_backward")
def masked_softmax_columns_backward(g_t: Array, y_t: Array, scale: float, causal: bool) -> Array:
    """dx = scale * y * (g - sum(g * y)) over the second-last axis (keys first). `causal` says y
    came from a causal forward: its hidden entries are 0, which a kernel may skip (dx = 0)."""
    return y_t * (g_t - (g_t * y_t).sum(axis=-2, keepdims=True)) * y_t.dtype.type(scale)
