"""SyncBatchNorm: batch normalisation whose batch statistics are those of every rank's batch
together, so N ranks with per-rank batch b normalise exactly as one process with batch N*b.

What is synchronised, layer by layer:
- plain `nn.BatchNorm*d` under DataParallel: nothing. Each rank normalises with its own batch's
  mean and variance, and its running statistics follow its own batches (they drift apart; only
  the parameters stay identical). Training then equals one process whose batch-norm layers
  see each rank's b samples separately ("ghost" batches), not one process with batch N*b.
- `SyncBatchNorm` (training): the per-channel sum, the count and the sum of squared deviations
  are all-reduced in forward, so mean and biased variance are the global batch's; backward
  all-reduces the matching gradient sums (the all-reduce's derivative is an all-reduce). The
  running statistics move with the global statistics, so they stay identical on every rank.
  Three small all-reduces per layer in forward (count, sum, squares), two in backward.
- evaluation: the running statistics, no communication.

    model = dist.SyncBatchNorm.convert_sync_batchnorm(model)   # before DataParallel
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.backends import Array
from tinygrad_lab.distributed.collectives import all_reduce_array
from tinygrad_lab.distributed.world import World, init
from tinygrad_lab.function import Function
from tinygrad_lab.nn.conv import _BatchNorm
from tinygrad_lab.nn.module import Module
from tinygrad_lab.tensor import Tensor


class AllReduceSum(Function):
    """y = sum over ranks of x (every rank gets y). The loss being the sum of every rank's
    loss, dL/dx_r = sum over ranks of dL_r'/dy: backward all-reduces the gradient too."""

    world: World
    flops_per_element = (1, 1)

    def forward(self, x: Array) -> Array:
        y = self.xp.array(x, copy=True, order="C")
        all_reduce_array(y, "sum", self.backend.device, self.world)
        return y

    def backward(self, g: Array) -> tuple[Array]:
        g = self.xp.array(g, copy=True, order="C")
        all_reduce_array(g, "sum", self.backend.device, self.world)
        return (g,)


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                    weight: Tensor | None, bias: Tensor | None, momentum: float = 0.1,
                    eps: float = 1e-5, world: World | None = None) -> Tensor:
    """Training-mode batch_norm over the batches of every rank together (x: (N, C, ...))."""
    world = world or init()
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)  # broadcasts a (C,) vector over x
    count_buf = np.array([x.size // max(c, 1)], dtype=np.int64)
    all_reduce_array(count_buf, "sum", "cpu", world)
    count = int(count_buf[0])
    if count <= 1:
        raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all "
                         f"ranks when training, got {count}")
    mean = AllReduceSum.apply(x.sum(axes, keepdims=True), world=world) / count  # (1, C, 1..)
    centred = x - mean
    var = AllReduceSum.apply((centred * centred).sum(axes, keepdims=True), world=world) / count
    x_hat = centred / (var + eps).sqrt()
    if running_mean is not None and running_var is not None:
        m = momentum
        batch_mean, batch_var = mean.data.reshape(c), var.data.reshape(c)
        running_mean.data[...] = (1 - m) * running_mean.data + m * batch_mean
        running_var.data[...] = (1 - m) * running_var.data + m * batch_var * (count / (count - 1))
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape)
    return x_hat


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C), (N, C, L) or (N, C, H, W) whose training statistics span every
    rank's batch (module docstring); in a world of one, or in eval(), plain batch_norm."""

    input_dims = (2, 3, 4)

    def forward(self, x: Tensor) -> Tensor:
        world = init()
        if not self.training or world.size == 1:
            return super().forward(x)
        if x.ndim not in self.input_dims or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm({self.num_features}): expected an input of 2-D, "
                             f"3-D or 4-D with {self.num_features} channels on axis 1, got "
                             f"{x.shape}")
        return sync_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               self.momentum, self.eps, world)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module) -> Module:
        """Replace every BatchNorm1d/2d inside `module` (or `module` itself) by a SyncBatchNorm
        holding the same Parameter and buffer objects (so optimizers built before still
        work); returns the module."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            return _as_sync(cls, module)
        for m in list(module.modules()):
            for name, value in list(m.__dict__.items()):
                if isinstance(value, _BatchNorm) and not isinstance(value, cls):
                    setattr(m, name, _as_sync(cls, value))
                elif isinstance(value, list):
                    for i, item in enumerate(value):
                        if isinstance(item, _BatchNorm) and not isinstance(item, cls):
                            value[i] = _as_sync(cls, item)
        return module


def _as_sync(cls: type[SyncBatchNorm], bn: _BatchNorm) -> SyncBatchNorm:
    sync: Any = cls.__new__(cls)
    sync.__dict__.update(bn.__dict__)
    return sync


def convert_sync_batchnorm(module: Module) -> Module:
    """SyncBatchNorm.convert_sync_batchnorm(module)."""
    return SyncBatchNorm.convert_sync_batchnorm(module)


__all__ = ["AllReduceSum", "SyncBatchNorm", "convert_sync_batchnorm", "sync_batch_norm"]
