"""Learning-rate schedulers: each `step()` sets the optimizer's `lr` from the step count.

The values are torch.optim.lr_scheduler's (the tests compare them step by step), for the one
learning rate our optimizers have. Each schedule is a closed form `lr_at(t)` of its own step
count t, so schedules compose without drift. As in PyTorch:

- creating a scheduler already sets the learning rate of step 0;
- `step()` goes after `opt.step()`, once per step (or per epoch, as you choose);
- every schedule starts from the optimizer's learning rate when its first scheduler was created
  (kept as `opt.initial_lr`), so several schedulers on one optimizer agree on the base;
- `get_last_lr()` returns a list, one entry per parameter group (ours have one).

    opt = optim.Adam(model.parameters(), lr=1e-3)
    warmup = LinearWarmup(opt, warmup_steps=100)
    cosine = CosineAnnealingLR(opt, T_max=900)
    schedule = SequentialLR(opt, [warmup, cosine], milestones=[100])
    for step in range(1000):
        ...; opt.step(); schedule.step()
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearLR",
    "LinearWarmup",
    "SequentialLR",
    "StepLR",
]


class LRScheduler:
    """Base: holds the optimizer, the base learning rate and the step count (`last_epoch`)."""

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with an `lr`, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        if not hasattr(optimizer, "initial_lr"):
            optimizer.initial_lr = float(optimizer.lr)
        self.base_lr: float = optimizer.initial_lr
        self.last_epoch = 0  # PyTorch's name: the number of step() calls so far
        self._apply(self.lr_at(0))

    def lr_at(self, t: int) -> float:
        """The learning rate after t steps."""
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self._apply(self.lr_at(self.last_epoch))

    def get_last_lr(self) -> list[float]:
        return [self._last_lr]

    def _apply(self, lr: float) -> None:
        self.optimizer.lr = lr
        self._last_lr = lr

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_epoch, self.base_lr = int(state["last_epoch"]), float(state["base_lr"])
        self._apply(self.lr_at(self.last_epoch))


class StepLR(LRScheduler):
    """lr = base * gamma ** (t // step_size): decay by gamma every step_size steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) (1 + cos(pi t / T_max)) / 2  (Loshchilov & Hutter 2017,
    without restarts): base at t = 0, eta_min at t = T_max, then back up as PyTorch's does."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        cosine = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


class LinearLR(LRScheduler):
    """lr = base * factor, factor going linearly from start_factor (t = 0) to end_factor
    (t >= total_iters); PyTorch's defaults."""

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5) -> None:
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: need 0 < start_factor <= 1 and 0 <= end_factor <= 1, "
                             f"got {start_factor} and {end_factor}")
        if total_iters < 0:
            raise ValueError(f"LinearLR: total_iters must be >= 0, got {total_iters}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = int(total_iters)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        done = min(t, self.total_iters) / self.total_iters if self.total_iters else 1.0
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * done)


class LinearWarmup(LinearLR):
    """lr = base * min(1, (t + 1) / warmup_steps): base/warmup_steps at step 0, base from step
    warmup_steps - 1 on. PyTorch: LinearLR(start_factor=1/W, end_factor=1, total_iters=W-1)."""

    def __init__(self, optimizer: Any, warmup_steps: int) -> None:
        if warmup_steps < 1:
            raise ValueError(f"LinearWarmup: warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer, 1.0 / warmup_steps, 1.0, warmup_steps - 1)


class SequentialLR(LRScheduler):
    """Run schedulers one after another: schedulers[i] from milestones[i-1] on, each restarted
    at its own step 0 (torch.optim.lr_scheduler.SequentialLR). E.g. warm-up, then cosine."""

    def __init__(self, optimizer: Any, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int]) -> None:
        self.schedulers, self.milestones = list(schedulers), [int(m) for m in milestones]
        if not self.schedulers:
            raise ValueError("SequentialLR: needs at least one scheduler")
        if len(self.milestones) != len(self.schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(self.schedulers)} schedulers need "
                             f"{len(self.schedulers) - 1} milestones, got {len(self.milestones)}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"SequentialLR: milestones must increase, got {self.milestones}")
        for i, s in enumerate(self.schedulers):
            if s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} ({type(s).__name__}) belongs to "
                                 "another optimizer")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        i = bisect.bisect_right(self.milestones, t)
        start = self.milestones[i - 1] if i else 0
        return self.schedulers[i].lr_at(t - start)
