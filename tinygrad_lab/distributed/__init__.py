"""Data-parallel training over MPI (CPU tensors) or NCCL (CUDA tensors): the world, collectives,
DataParallel with bucketed, overlapped gradient all-reduce, a distributed sampler, SyncBatchNorm
and ZeRO-1 optimizer-state sharding. The README's "Distributed training" says how they fit.

    from tinygrad_lab import distributed as dist
    world = dist.init()                         # a plain `python` process: a world of one
    dp = dist.DataParallel(model)               # broadcasts rank 0's weights
    sampler = dist.DistributedSampler(len(x), seed=0)
    train_step(model, batch, loss_fn, opt, grad_hook=dp.grad_hook)   # or fit(distributed=dp)

Launch: `mpiexec -n 4 python train.py` (MPICH or Open MPI; `pip install
'tinygrad_lab[distributed]'` brings mpi4py and MPICH's mpiexec).
"""

from tinygrad_lab.distributed.collectives import (
    all_gather,
    all_reduce,
    all_reduce_scalars,
    broadcast,
    broadcast_parameters,
)
from tinygrad_lab.distributed.data_parallel import Bucket, DataParallel
from tinygrad_lab.distributed.sampler import DistributedSampler
from tinygrad_lab.distributed.sync_batch_norm import SyncBatchNorm, convert_sync_batchnorm
from tinygrad_lab.distributed.world import (
    World,
    barrier,
    init,
    install_abort_hook,
    is_main,
    launched_size,
    local_device,
    local_rank,
    local_size,
    rank,
    world_size,
)
from tinygrad_lab.distributed.zero import ZeroRedundancyOptimizer, shard_optimizer

__all__ = ["Bucket", "DataParallel", "DistributedSampler", "SyncBatchNorm",
           "World", "ZeroRedundancyOptimizer", "all_gather", "all_reduce", "all_reduce_scalars",
           "barrier", "broadcast", "broadcast_parameters", "convert_sync_batchnorm", "init",
           "install_abort_hook", "is_main", "launched_size", "local_device", "local_rank",
           "local_size", "rank", "shard_optimizer", "world_size"]
