"""The MPI world this process belongs to: rank, size, the ranks on this host, and the abort hook.

A process started by `mpiexec -n N` is one of N ranks; a plain `python` process is a world of
one, so the same script runs both ways. Whether mpiexec started us is read from the environment
its launcher sets (Hydra/MPICH: PMI_RANK, PMI_SIZE; Open MPI: OMPI_COMM_WORLD_*; PMIx: PMIX_RANK),
so a world of one never imports mpi4py (nor initialises MPI).

    world = dist.init()          # idempotent: World(rank, size, local_rank, local_size, comm)
    if dist.is_main(): print(...)
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

_INSTALL = "pip install 'tinygrad_lab[distributed]'"
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks. `comm` is mpi4py's COMM_WORLD, or None in a world
    of one (then every collective is a copy). local_rank/local_size count the ranks on this
    host (they pick the GPU: local_rank % GPUs)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    comm: Any = None


_world: World | None = None
_abort_hook_installed = False
ABORT_GRACE_SECONDS = 0.25
"""How long a failing rank waits, after printing its error, before MPI_Abort."""


def launched_size() -> int | None:
    """The world size the MPI launcher announced in the environment; None when no launcher
    started this process (or one that names no size: then 0)."""
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    if any(name in os.environ for name in _RANK_VARS):
        return 0
    return None


def init() -> World:
    """Read the MPI world (once; later calls return the same World). Outside mpiexec, or under
    `mpiexec -n 1`, a world of one with no MPI at all. With more ranks, imports mpi4py (which
    initialises MPI) and installs the abort hook, so an uncaught exception on any rank ends
    every rank instead of leaving them waiting in a collective."""
    global _world
    if _world is not None:
        return _world
    size = launched_size()
    if (size is None or size == 1) and "mpi4py.MPI" not in sys.modules:
        _world = World()
        return _world
    try:
        from mpi4py import MPI
    except ImportError:
        if not size:  # a launcher that does not say how many: run alone
            _world = World()
            return _world
        raise RuntimeError(f"started by mpiexec as one of {size} ranks, but mpi4py is not "
                           f"installed: {_INSTALL}") from None
    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())  # the ranks on this host
    _world = World(comm.Get_rank(), comm.Get_size(), local.Get_rank(), local.Get_size(),
                   comm if comm.Get_size() > 1 else None)
    local.Free()
    if _world.size > 1:
        install_abort_hook()
    return _world


def rank() -> int:
    return init().rank


def world_size() -> int:
    return init().size


def local_rank() -> int:
    return init().local_rank


def local_size() -> int:
    return init().local_size


def is_main() -> bool:
    """Rank 0: the one that prints and writes checkpoints."""
    return init().rank == 0


def barrier() -> None:
    comm = init().comm
    if comm is not None:
        comm.Barrier()


def local_device(device: str) -> str:
    """The device this rank should use for `device`: a bare "cuda" becomes one GPU per rank,
    cuda:<local_rank % GPUs on this host>; "cpu" and an explicit "cuda:N" are kept."""
    if device != "cuda":
        return device
    import cupy  # only when a GPU is asked for

    count = cupy.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("device 'cuda' asked for, but CuPy sees no GPU")
    return f"cuda:{init().local_rank % count}"


def install_abort_hook() -> None:
    """On an uncaught exception: print the traceback, then `rank R: <its last line>` to stderr,
    and MPI_Abort the world with status 1, so every rank exits non-zero at once (without it,
    the other ranks would wait in their next collective forever). init() calls it when the
    world has more than one rank; a no-op in a world of one, and when installed already."""
    global _abort_hook_installed
    world = init()
    if world.comm is None or _abort_hook_installed:
        return
    previous = sys.excepthook

    def abort_on_exception(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        try:
            previous(kind, value, tb)
            last = traceback.format_exception_only(kind, value)[-1].strip()
            sys.stderr.write(f"rank {world.rank}: {last}\n")
            sys.stderr.flush()
            # mpiexec forwards our stderr through its proxy; MPI_Abort kills the job at once
            # and can beat the last lines there, so give the forwarding a moment
            time.sleep(ABORT_GRACE_SECONDS)
        finally:
            world.comm.Abort(1)

    sys.excepthook = abort_on_exception
    _abort_hook_installed = True


__all__ = ["World", "barrier", "init", "install_abort_hook", "is_main", "launched_size",
           "local_device", "local_rank", "local_size", "rank", "world_size"]
