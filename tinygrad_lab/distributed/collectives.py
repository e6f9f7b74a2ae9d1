"""Collectives on Tensors and on raw arrays: all_reduce, broadcast, all_gather, the scalar
reduction for losses and metrics, and broadcast_parameters.

Which transport: a tensor on a "cuda" device goes through NCCL (tinygrad_lab.distributed.nccl);
every other device holds host arrays (NumPy, or an ndarray subclass such as the stand-in
device's) and goes through MPI, with mpi4py's buffer calls (no pickling). In a world of one
each collective is a copy. Results are new tensors, cut from the tape: a collective here has no
gradient (SyncBatchNorm has its own differentiable sum).

Every rank must call the same collectives in the same order with the same shapes and dtypes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_lab.backends import Array
from tinygrad_lab.distributed.world import World, init
from tinygrad_lab.nn.module import Module
from tinygrad_lab.tensor import Tensor

OPS = ("sum", "mean", "max", "min")


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"unknown reduction {op!r}; choose from {', '.join(OPS)}")


def mpi_op(op: str) -> Any:
    from mpi4py import MPI

    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]


def on_gpu(device: str) -> bool:
    return device.startswith("cuda")


# --- raw arrays, in place ---------------------------------------------------------------------
def all_reduce_array(arr: Array, op: str, device: str, world: World | None = None,
                     comm: Any = None, tag: str = "default") -> None:
    """Reduce `arr` (C-contiguous) over the ranks in place; "mean" sums here (the caller
    divides). `comm`/`tag` pick the MPI communicator or NCCL group (default: the world's)."""
    world = world or init()
    if world.comm is None:
        return
    if on_gpu(device):
        from tinygrad_lab.distributed import nccl

        nccl.group(world, device, tag).all_reduce(arr, "sum" if op == "mean" else op)
    else:
        from mpi4py import MPI

        (comm or world.comm).Allreduce(MPI.IN_PLACE, arr, op=mpi_op(op))


def broadcast_array(arr: Array, root: int, device: str, world: World | None = None,
                    comm: Any = None, tag: str = "default") -> None:
    """Overwrite `arr` (C-contiguous) on every rank with rank `root`'s."""
    world = world or init()
    if world.comm is None:
        return
    if on_gpu(device):
        from tinygrad_lab.distributed import nccl

        nccl.group(world, device, tag).broadcast(arr, root)
    else:
        (comm or world.comm).Bcast(arr, root=root)


def all_gather_array(flat: Array, device: str, world: World | None = None, comm: Any = None,
                     tag: str = "default") -> None:
    """In place: `flat` holds size equal segments, rank r's own data in segment r; afterwards
    every rank holds every segment."""
    world = world or init()
    if world.comm is None:
        return
    if on_gpu(device):
        from tinygrad_lab.distributed import nccl

        seg = flat.size // world.size
        own = flat[world.rank * seg:(world.rank + 1) * seg]
        nccl.group(world, device, tag).all_gather(own, flat)
    else:
        from mpi4py import MPI

        (comm or world.comm).Allgather(MPI.IN_PLACE, flat)


# --- tensors ----------------------------------------------------------------------------------
def _copy(t: Tensor) -> Array:
    xp = t._backend.xp
    return xp.array(t.data, copy=True, order="C")


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """A new tensor: the elementwise sum/mean/max/min of `t` over every rank (same shape and
    dtype on each rank; "mean" of an integer tensor is float64)."""
    _check_op(op)
    world = init()
    out = _copy(t)
    all_reduce_array(out, op, t.device, world)
    if op == "mean" and world.size > 1:
        out = out / world.size if out.dtype.kind != "f" else out / out.dtype.type(world.size)
    return Tensor._wrap(out, t._backend, t.device, False)


def broadcast(t: Tensor, root: int = 0) -> Tensor:
    """A new tensor holding rank `root`'s `t` on every rank."""
    out = _copy(t)
    broadcast_array(out, root, t.device)
    return Tensor._wrap(out, t._backend, t.device, False)


def all_gather(t: Tensor) -> Tensor:
    """Every rank's `t`, stacked on a new axis 0 in rank order: (world_size, *t.shape)."""
    world = init()
    xp = t._backend.xp
    flat = xp.empty((world.size, *t.shape), dtype=t.dtype)  # (R, ...)
    flat[world.rank] = t.data
    all_gather_array(flat.reshape(-1), t.device, world)
    return Tensor._wrap(flat, t._backend, t.device, False)


def all_reduce_scalars(values: dict[str, float], op: str = "mean",
                       weights: float | None = None) -> dict[str, float]:
    """Losses and metrics of every rank in one message (a float64 vector in sorted key order,
    so every rank must pass the same keys). "mean" is weighted by `weights` (this rank's
    sample count, say; default 1 per rank): sum(w v) / sum(w) over the ranks, so per-sample
    averages of uneven shards combine into the global per-sample average."""
    _check_op(op)
    world = init()
    keys = sorted(values)
    if world.comm is None:
        return {k: float(values[k]) for k in keys}
    w = 1.0 if weights is None else float(weights)
    if op == "mean":
        buf = np.array([float(values[k]) * w for k in keys] + [w], dtype=np.float64)
        all_reduce_array(buf, "sum", "cpu", world)
        return {k: float(buf[i] / buf[-1]) for i, k in enumerate(keys)}
    buf = np.array([float(values[k]) for k in keys], dtype=np.float64)
    all_reduce_array(buf, op, "cpu", world)
    return {k: float(buf[i]) for i, k in enumerate(keys)}


def _model_tensors(model: Module) -> Iterable[Tensor]:
    yield from model.parameters()
    for _, b in model.named_buffers():
        yield b


def broadcast_parameters(model: Module, root: int = 0) -> None:
    """Overwrite every parameter and buffer (running statistics too) with rank `root`'s, in
    place, so every rank starts identical. One message per tensor: this runs once."""
    world = init()
    if world.comm is None:
        return
    for t in _model_tensors(model):
        if not t.data.flags.c_contiguous:
            t.data = t._backend.xp.ascontiguousarray(t.data)
        broadcast_array(t.data, root, t.device, world)


__all__ = ["OPS", "all_gather", "all_gather_array", "all_reduce", "all_reduce_array",
           "all_reduce_scalars", "broadcast", "broadcast_array", "broadcast_parameters"]
