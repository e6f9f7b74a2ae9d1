"""Optimizer-state sharding (ZeRO stage 1, Rajbhandari et al. 2020): each rank keeps the state
(Adam's m and v, a momentum buffer) of a 1/R slice of the parameters only, updates that slice,
and the updated slices are all-gathered so every rank ends the step with every parameter.

    opt = dist.ZeroRedundancyOptimizer(optim.Adam, model.parameters(), lr=1e-3)
    # or: opt = dist.shard_optimizer(optim.Adam(model.parameters(), lr=1e-3))
    train_step(dp, batch, loss_fn, opt, grad_hook=dp.grad_hook)   # gradients averaged by dp

The slicing is flat: the parameters of one dtype and device are laid end to end, padded to a
multiple of R, and rank r owns elements [r*S, (r+1)*S) with S = ceil(total / R), so the state
per rank is 1/R of the whole to within R elements, whatever the parameter sizes (a parameter
may be split between two ranks). The slices are contiguous 1-D views into the parameters, and
the wrapped optimizer (a shallow copy of the one given, holding the views) updates them in
place with its usual update. That is exact for optimizers whose update is elementwise, as all
of tinygrad_lab.optim's are: ZeRO-1 gives bit for bit the parameters of plain data-parallel.
The state is made on the first step by Optimizer.step, so the memory accounting
(`tl.memory`, category optimizer_state) counts this rank's slice only; `tl.memory.estimate`
predicts the slice too.

One message per dtype per step (MPI Allgather in place, or NCCL allGather). The gradients are
still all-reduced whole (data-parallel's buckets): stage 1 saves optimizer state, not
gradient memory. Parameter groups keep their own hyper-parameters (lr, weight_decay, betas, ...):
the wrapped optimizer has the same groups, each over this rank's views of its parameters.
`state_dict()` holds this rank's slice only, with each group's view indices.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tinygrad_lab import optim
from tinygrad_lab.backends import Array
from tinygrad_lab.distributed.collectives import all_gather_array, on_gpu
from tinygrad_lab.distributed.world import World, init
from tinygrad_lab.tensor import Tensor


@dataclass(eq=False)
class _Group:
    """The parameters of one dtype and device, end to end: `offsets[i]` is where parameter i
    starts; this rank owns [lo, hi); `flat` (segment * R elements) is the gather buffer."""

    params: list[Tensor]
    offsets: list[int] = field(default_factory=list)
    total: int = 0
    segment: int = 0
    lo: int = 0
    hi: int = 0
    flat: Array | None = None
    shards: list[tuple[Tensor, Tensor, int, int, int]] = field(default_factory=list)
    """(parameter, view tensor, start, stop, offset): the slice [start, stop) of the
    flattened elements of the parameter (which starts at `offset` in the group) that this rank
    owns, and the leaf tensor that shows the slice to the optimizer."""


class ZeroRedundancyOptimizer(optim.Optimizer):
    """`opt_class(params, **hyper)` with its state sharded over the ranks (module docstring).

    `params` are all the parameters (train_step hands them to grad_hook and clipping);
    `state` and `local_optimizer` are this rank's slice. `lr` reads and sets the wrapped
    optimizer's, so the schedulers work unchanged."""

    def __init__(self, opt_class: type[optim.Optimizer], params: Iterable[Tensor], *,
                 world: World | None = None, **hyper: Any) -> None:
        self._shard(opt_class(params, **hyper), world)

    def _shard(self, full: optim.Optimizer, world: World | None) -> None:
        if full.state:
            raise ValueError("shard_optimizer: shard an optimizer before its first step (its "
                             "state is already whole on every rank)")
        self.world = world or init()
        self.params = list(full.params)
        r, size = self.world.rank, self.world.size
        groups: dict[tuple[str, str], _Group] = {}
        for p in self.params:
            key = (str(p.dtype), p.device)
            if key not in groups:
                groups[key] = _Group([])
            g = groups[key]
            g.params.append(p)
            g.offsets.append(g.total)
            g.total += p.size
        view_of: dict[int, Tensor] = {}  # parameter id -> the view of its slice on this rank
        for g in groups.values():
            g.segment = -(-g.total // size)
            g.lo, g.hi = min(r * g.segment, g.total), min((r + 1) * g.segment, g.total)
            for p, offset in zip(g.params, g.offsets):
                start, stop = max(g.lo - offset, 0), min(g.hi - offset, p.size)
                if start < stop:
                    view = Tensor._wrap(p.data.reshape(-1)[start:stop], p._backend, p.device,
                                        True)
                    g.shards.append((p, view, start, stop, offset))
                    view_of[id(p)] = view
            if size > 1:
                first = g.params[0]
                g.flat = first._backend.xp.zeros(g.segment * size, dtype=first.dtype)
        self.groups = list(groups.values())
        # the same parameter groups, each with its own hyper-parameters, over this rank's views
        # only (a group may hold no view on a rank: it stays, so group indices agree)
        local = copy.copy(full)
        local.param_groups = [
            {**{k: v for k, v in group.items() if k != "params"},
             "params": [view_of[id(p)] for p in group["params"] if id(p) in view_of]}
            for group in full.param_groups]
        local.params = [v for group in local.param_groups for v in group["params"]]
        local.state = {}
        self.local_optimizer = local
        self._comm = self.world.comm.Dup() if self.world.comm is not None else None
        for g in self.groups:
            if g.flat is not None and on_gpu(g.params[0].device):
                from tinygrad_lab.distributed import nccl

                nccl.group(self.world, g.params[0].device, "zero")  # made now, on every rank

    # --- the Optimizer interface ------------------------------------------------------------
    @property
    def lr(self) -> float:  # type: ignore[override]
        return self.local_optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.local_optimizer.lr = float(value)

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped optimizer's groups (hyper-parameters as given; "params" are this rank's
        views), so a scheduler sets each group's own learning rate."""
        return self.local_optimizer.param_groups

    @property
    def state(self) -> dict[int, dict[str, Any]]:  # type: ignore[override]
        return self.local_optimizer.state

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update this rank's slice with its (already averaged) gradients, then gather every
        rank's slice into every parameter."""
        for g in self.groups:
            for p, view, start, stop, _ in g.shards:
                # views again each step: Module.to or a load may have replaced p.data
                view.data = p.data.reshape(-1)[start:stop]
                grad = p.grad
                view.grad = (None if grad is None else
                             Tensor._wrap(grad.data.reshape(-1)[start:stop], p._backend,
                                          p.device, False))
        self.local_optimizer.step()
        for g in self.groups:
            for _, view, _, _, _ in g.shards:
                view.grad = None
            if g.flat is not None:
                self._gather(g)

    def _gather(self, g: _Group) -> None:
        flat = g.flat
        assert flat is not None
        for p, _, start, stop, offset in g.shards:  # this rank's slice into its segment
            begin = offset + start - g.lo + self.world.rank * g.segment
            flat[begin:begin + stop - start] = p.data.reshape(-1)[start:stop]
        device = g.params[0].device
        all_gather_array(flat, device, self.world, comm=self._comm, tag="zero")
        for p, offset in zip(g.params, g.offsets):
            p.data.reshape(-1)[...] = flat[offset:offset + p.size]
            p._bump_version()

    def update_flops(self) -> int:
        return self.local_optimizer.update_flops()

    def state_dict(self) -> dict[str, Any]:
        """This rank's slice: the wrapped optimizer's state_dict (state by view index, each
        parameter group's hyper-parameters and view indices), with the slice bounds."""
        out = self.local_optimizer.state_dict()
        out["shard"] = self._shard_info()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned on this rank (the same world and parameters)."""
        saved = state.get("shard")
        if saved is not None and _plain(saved) != _plain(self._shard_info()):
            raise ValueError(f"ZeroRedundancyOptimizer.load_state_dict: the state is of shard "
                             f"{saved}, this rank holds {self._shard_info()}")
        self.local_optimizer.load_state_dict(state)

    def _shard_info(self) -> dict[str, Any]:
        return {"rank": self.world.rank, "world_size": self.world.size,
                "ranges": [(g.lo, g.hi) for g in self.groups]}

    def __repr__(self) -> str:
        mine = sum(s[1].size for g in self.groups for s in g.shards)
        total = sum(g.total for g in self.groups)
        return (f"ZeroRedundancyOptimizer({type(self.local_optimizer).__name__}, rank "
                f"{self.world.rank} of {self.world.size}: {mine} of {total} elements)")


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """Shard info comparable after a JSON round trip (tuples become lists)."""
    return {k: [list(r) for r in v] if k == "ranges" else v for k, v in info.items()}


def shard_optimizer(opt: optim.Optimizer, *, world: World | None = None
                    ) -> ZeroRedundancyOptimizer:
    """`opt` (not stepped yet) with its state sharded over the ranks: the same
    hyper-parameters, each rank keeping the state of its slice only."""
    zero = ZeroRedundancyOptimizer.__new__(ZeroRedundancyOptimizer)
    zero._shard(opt, world)
    return zero


__all__ = ["ZeroRedundancyOptimizer", "shard_optimizer"]
