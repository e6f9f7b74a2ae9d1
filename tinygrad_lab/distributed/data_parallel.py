"""DataParallel: every rank runs the whole model on its own batch; the gradients are averaged
across ranks between backward and the optimizer step, so every rank takes the same step.

    dp = dist.DataParallel(model)                       # broadcasts rank 0's weights first
    train_step(dp, batch, loss_fn, opt, grad_hook=dp.grad_hook)
    train.fit(model, batches, loss_fn, [opt], distributed=dp)   # the loop does the same

Bucketing and overlap. The parameters are grouped, in reverse order of registration (about the
order backward finishes them), into buckets of at most `bucket_mb` MiB of one dtype. Each
parameter has a post-accumulate-grad hook (Tensor.register_post_accumulate_grad_hook): when the
last gradient of a bucket is complete, the bucket is packed into one contiguous buffer and its
all-reduce started without blocking (MPI `Iallreduce`, or NCCL on a side stream), while backward
goes on with the layers below; each later hook call polls the requests in flight, which is what
drives MPI's progress without a progress thread. `grad_hook` (train_step calls it after
backward) starts what is left, waits, and writes the averages back into `.grad`. Buckets start
in index order only (bucket k waits for bucket k-1), so every rank posts the same collectives
in the same order even if its backward finished the gradients in another order.

A parameter that got no gradient on this rank (unused in this forward) counts as zeros, so
every rank still sends every bucket; after the step it has a gradient (the average of the
ranks that had one, divided by all of them), even when no rank used it.

Weighting: each bucket carries one extra element, this rank's weight, and the result is divided
by the sum of the weights. With the default (no weight) that is the world size: the plain mean
of per-rank gradients, exact when every rank has the same batch size. When per-rank batches
differ, set `dp.weight = len(batch)` before backward (the rank's sample count; it is cleared
after each step): the result is then the gradient of the mean loss over all ranks' samples.

With one rank DataParallel is a pass-through: no hooks, no buffers, no MPI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tinygrad_lab import function as _function
from tinygrad_lab.backends import Array
from tinygrad_lab.distributed.collectives import broadcast_parameters, on_gpu
from tinygrad_lab.distributed.world import World, init
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.tensor import HookHandle, Tensor

MiB = 1 << 20


@dataclass(eq=False)
class Bucket:
    """Parameters whose gradients travel in one message: `buffer` holds their gradients end to
    end (`offsets[i]` is where parameter i starts) and one weight slot at the end."""

    index: int
    params: list[Parameter]
    offsets: list[int] = field(default_factory=list)
    numel: int = 0
    buffer: Array | None = None
    ready: int = 0
    handle: Any = None

    @property
    def nbytes(self) -> int:
        """Bytes this rank sends per step for this bucket (the weight slot included)."""
        return (self.numel + 1) * self.params[0].data.itemsize


def make_buckets(params: list[Parameter], bucket_bytes: float) -> list[Bucket]:
    """Consecutive parameters (already in the order their gradients complete) packed into
    buckets of at most `bucket_bytes` (a larger parameter gets a bucket of its own), one dtype
    and device per bucket."""
    buckets: list[Bucket] = []
    current: Bucket | None = None
    for p in params:
        size = p.size * p.data.itemsize
        if (current is None or p.dtype != current.params[0].dtype
                or p.device != current.params[0].device
                or (current.numel * p.data.itemsize + size > bucket_bytes)):
            current = Bucket(len(buckets), [])
            buckets.append(current)
        current.params.append(p)
        current.offsets.append(current.numel)
        current.numel += p.size
    return buckets


class _MPIHandle:
    def __init__(self, request: Any) -> None:
        self.request = request

    def test(self) -> bool:
        return bool(self.request.Test())

    def wait(self) -> None:
        self.request.Wait()


class DataParallel(Module):
    """Wraps `model` for data-parallel training (see the module docstring). Calls and attribute
    reads go to the model, and parameter and state-dict names are the model's own (no
    "module." prefix), so checkpoints load into an unwrapped model.

    After each step: `bytes_per_step` (bytes this rank sent), `comm_seconds` (time grad_hook
    waited for communication), `buckets` (the Bucket list, in the order they are sent),
    `buckets_in_backward` (how many of them started while backward was still running)."""

    def __init__(self, model: Module, bucket_mb: float = 25.0, *, world: World | None = None,
                 broadcast: bool = True) -> None:
        super().__init__()
        if not bucket_mb > 0:
            raise ValueError(f"DataParallel: bucket_mb must be > 0, got {bucket_mb}")
        self.module = model
        self.world = world or init()
        self.bucket_mb = float(bucket_mb)
        self.weight: float | None = None
        self.bytes_per_step = 0
        self.comm_seconds = 0.0
        self.buckets_in_backward = 0
        self.buckets: list[Bucket] = []
        self._where: dict[int, Bucket] = {}
        self._next = 0  # the next bucket to start
        self._flight: list[Any] = []  # handles started and not yet seen complete
        self._hooks: list[HookHandle] = []
        self._comm: Any = None
        self._nccl: Any = None  # the NCCL communicator of a model on a GPU
        if self.world.size == 1:
            return
        if broadcast:
            broadcast_parameters(model)
        self._comm = self.world.comm.Dup()  # its own: ordered apart from other collectives
        self._build()

    def _build(self) -> None:
        """Buckets and their buffers on the parameters' device; hooks on every parameter."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.buckets = make_buckets(list(reversed(params)), self.bucket_mb * MiB)
        self._where = {}
        for bucket in self.buckets:
            first = bucket.params[0]
            bucket.buffer = first._backend.xp.zeros(bucket.numel + 1, dtype=first.dtype)
            for p in bucket.params:
                self._where[id(p)] = bucket
        self.bytes_per_step = sum(b.nbytes for b in self.buckets)
        device = params[0].device if params else "cpu"
        if on_gpu(device):  # made now, not mid-backward: a collective call on every rank
            from tinygrad_lab.distributed import nccl

            index = nccl.device_index(device)
            if self._nccl is None or self._nccl.device_index != index:
                self._nccl = nccl.NcclGroup(self.world, index)
        self.remove_hooks()
        self._hooks = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]

    # --- the wrapped model ----------------------------------------------------------------
    def forward(self, *args: Any, **kw: Any) -> Any:
        return self.module(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("module")
        if module is None:
            raise AttributeError(name)
        return getattr(module, name)

    def _named(self, prefix: str, own: Any) -> Any:
        return self.module._named(prefix, own)

    def to(self, device: str) -> Module:
        """Move the model, and the buckets with it."""
        self.module.to(device)
        if self.world.size > 1:
            self._build()
        return self

    def remove_hooks(self) -> None:
        """Unregister the gradient hooks (the model trains alone again)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # --- during backward --------------------------------------------------------------------
    def _on_grad(self, p: Tensor) -> None:
        bucket = self._where[id(p)]
        if bucket.handle is not None:
            raise RuntimeError(
                "DataParallel: a gradient arrived after its bucket was sent; run one backward "
                "per step, then grad_hook (accumulating gradients over several backward calls "
                "is not supported)")
        bucket.ready += 1
        while (self._next < len(self.buckets)
               and self.buckets[self._next].ready == len(self.buckets[self._next].params)):
            self._start(self.buckets[self._next])
        if self._flight:  # poll: MPI makes progress on non-blocking requests only inside calls
            self._flight = [h for h in self._flight if not h.test()]

    def _start(self, bucket: Bucket) -> None:
        buf = bucket.buffer
        assert buf is not None
        w = 1.0 if self.weight is None else float(self.weight)
        for p, start in zip(bucket.params, bucket.offsets):
            view = buf[start:start + p.size]
            if p.grad is None:
                view[...] = 0
            elif w == 1.0:
                view[...] = p.grad.data.reshape(-1)
            else:
                view[...] = p.grad.data.reshape(-1) * w
        buf[-1] = w
        if self._nccl is not None and on_gpu(bucket.params[0].device):
            bucket.handle = self._nccl.start_all_reduce(buf)
        else:
            from mpi4py import MPI

            bucket.handle = _MPIHandle(self._comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM))
        self._flight.append(bucket.handle)
        self._next += 1

    # --- after backward ---------------------------------------------------------------------
    def grad_hook(self, params: list[Parameter]) -> None:
        """train_step's grad_hook: finish the all-reduces and leave the weighted mean of every
        rank's gradient in each parameter's `.grad` (identical on every rank)."""
        if self.world.size == 1:
            return
        for p in params:
            if id(p) not in self._where and p.requires_grad:
                raise ValueError(f"DataParallel.grad_hook: a parameter of shape {p.shape} is "
                                 "not one of the wrapped model's")
        start = time.perf_counter()
        self.buckets_in_backward = self._next
        try:
            while self._next < len(self.buckets):  # the rest: unused gradients count as zeros
                self._start(self.buckets[self._next])
            for bucket in self.buckets:
                bucket.handle.wait()
            self.comm_seconds = time.perf_counter() - start
            memory = _function._memory
            for bucket in self.buckets:
                buf = bucket.buffer
                assert buf is not None
                total = buf[-1:]  # the sum of the weights, kept on the device
                for p, offset in zip(bucket.params, bucket.offsets):
                    g = (buf[offset:offset + p.size] / total).reshape(p.shape)
                    p.grad = Tensor._wrap(g, p._backend, p.device, False)
                    if memory is not None:
                        memory.add(g, "gradients", p._device)
        finally:
            self._reset()

    def _reset(self) -> None:
        for bucket in self.buckets:
            bucket.ready, bucket.handle = 0, None
        self._next, self._flight, self.weight = 0, [], None

    def extra_repr(self) -> str:
        return (f"world_size={self.world.size}, buckets={len(self.buckets)}, "
                f"bucket_mb={self.bucket_mb}")


__all__ = ["Bucket", "DataParallel", "make_buckets"]
