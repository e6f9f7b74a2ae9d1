"""Collectives on CUDA arrays through NCCL (cupy.cuda.nccl), one GPU per rank.

Imported only when a tensor lives on a "cuda" device, so the CPU path never imports CuPy. Each
`NcclGroup` is one NCCL communicator over the MPI world, made from a unique id that rank 0 draws
and MPI broadcasts; its rank is the MPI rank and its GPU the tensors' device (`local_device`
gives each rank cuda:<local_rank % GPUs>). Blocking calls run on the current stream (CuPy's
default), so they are ordered with the maths around them; `start_all_reduce` runs on the
group's own stream, after an event that says the gradients are written, and returns a handle
whose `wait()` makes the current stream wait for the result (no host sync).

Users that issue collectives independently (data-parallel buckets, ZeRO, everything else) each
get their own communicator (`tag`): NCCL requires one communicator's calls in the same order on
every rank, and two streams feeding one communicator can deadlock.
"""

from __future__ import annotations

from typing import Any

from tinygrad_lab.distributed.world import World

_groups: dict[tuple[int, str], NcclGroup] = {}


def device_index(device: str) -> int:
    """N of "cuda:N" (0 for a bare "cuda")."""
    return int(device.split(":")[1]) if ":" in device else 0


class NcclGroup:
    """One NCCL communicator over every rank of `world`, for GPU `device_index`."""

    def __init__(self, world: World, device_index: int) -> None:
        import cupy
        from cupy.cuda import nccl

        self.cupy, self.nccl, self.device_index = cupy, nccl, device_index
        uid = nccl.get_unique_id() if world.rank == 0 else None
        uid = world.comm.bcast(uid, root=0)
        with cupy.cuda.Device(device_index):
            self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self.dtypes = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32,
                       "int64": nccl.NCCL_INT64, "uint8": nccl.NCCL_UINT8,
                       "int8": nccl.NCCL_INT8}
        self.ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}

    def _dtype(self, arr: Any) -> int:
        name = str(arr.dtype)
        if name not in self.dtypes:
            raise TypeError(f"NCCL collectives take {', '.join(self.dtypes)}; got {name}")
        return self.dtypes[name]

    def _current(self) -> int:
        return self.cupy.cuda.get_current_stream().ptr

    def all_reduce(self, arr: Any, op: str = "sum") -> None:
        """In place, on the current stream; `arr` C-contiguous on this group's GPU."""
        with self.cupy.cuda.Device(self.device_index):
            self.comm.allReduce(arr.data.ptr, arr.data.ptr, arr.size, self._dtype(arr),
                                self.ops[op], self._current())

    def broadcast(self, arr: Any, root: int) -> None:
        with self.cupy.cuda.Device(self.device_index):
            self.comm.bcast(arr.data.ptr, arr.size, self._dtype(arr), root, self._current())

    def all_gather(self, send: Any, recv: Any) -> None:
        """recv (size * send.size elements) gets every rank's `send`, in rank order; `send`
        may be recv's own segment (in place)."""
        with self.cupy.cuda.Device(self.device_index):
            self.comm.allGather(send.data.ptr, recv.data.ptr, send.size, self._dtype(send),
                                self._current())

    def start_all_reduce(self, arr: Any) -> NcclHandle:
        """Sum `arr` over the ranks in place on the group's stream, after the work queued so
        far on the current stream (which wrote it)."""
        cuda = self.cupy.cuda
        with cuda.Device(self.device_index):
            written = cuda.Event(disable_timing=True)
            written.record(cuda.get_current_stream())
            self.stream.wait_event(written)
            self.comm.allReduce(arr.data.ptr, arr.data.ptr, arr.size, self._dtype(arr),
                                self.ops["sum"], self.stream.ptr)
            done = cuda.Event(disable_timing=True)
            done.record(self.stream)
        return NcclHandle(self, done)


class NcclHandle:
    """A started NCCL all-reduce: `test()` polls, `wait()` orders the current stream after it."""

    def __init__(self, group: NcclGroup, done: Any) -> None:
        self.group, self.done = group, done

    def test(self) -> bool:
        return bool(self.done.done)

    def wait(self) -> None:
        with self.group.cupy.cuda.Device(self.group.device_index):
            self.group.cupy.cuda.get_current_stream().wait_event(self.done)


def group(world: World, device: str, tag: str = "default") -> NcclGroup:
    """The NCCL communicator of `tag` for `device` (made on first use: a collective call, so
    every rank must reach it in the same order)."""
    key = (device_index(device), tag)
    found = _groups.get(key)
    if found is None:
        found = _groups[key] = NcclGroup(world, key[0])
    return found


__all__ = ["NcclGroup", "NcclHandle", "device_index", "group"]
