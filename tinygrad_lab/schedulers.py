"""Learning-rate schedulers: each `step()` sets every parameter group's `lr`.

The values are torch.optim.lr_scheduler's (the tests compare them step by step, alone and
composed). As in PyTorch:

- `step()` is the chainable (recursive) form: each scheduler scales the group's *current* lr,
  so two schedulers stepped on one optimizer compose (StepLR's halvings multiply into the
  cosine); `lr_at(t)` is the closed form of a scheduler alone (torch's `_get_closed_form_lr`);
- creating a scheduler already sets the learning rate of step 0;
- `step()` goes after `opt.step()`, once per step (or per epoch, as you choose);
- every schedule starts from each group's learning rate when the first scheduler was created
  (kept as the group's `initial_lr`), so several schedulers on one optimizer agree on the base;
- `get_last_lr()` returns a list, one entry per parameter group.

An object with only an `lr` attribute (no `param_groups`) is scheduled as one group.

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


class _LrAttribute:
    """The one parameter group of an optimizer that has only an `lr` attribute."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer

    def __getitem__(self, key: str) -> float:
        return getattr(self.optimizer, key)

    def __setitem__(self, key: str, value: float) -> None:
        setattr(self.optimizer, key, value)

    def setdefault(self, key: str, value: float) -> float:
        if not hasattr(self.optimizer, key):
            setattr(self.optimizer, key, value)
        return getattr(self.optimizer, key)


def _groups(optimizer: Any) -> list[Any]:
    groups = getattr(optimizer, "param_groups", None)
    return list(groups) if groups is not None else [_LrAttribute(optimizer)]


class LRScheduler:
    """Base: holds the optimizer, the base learning rates and the step count (`last_epoch`).

    A subclass gives `get_lr()` (the chainable step, from the groups' current lrs) and
    `closed_form(base_lr, t)`."""

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "lr") and not hasattr(optimizer, "param_groups"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with an `lr`, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in _groups(optimizer):
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs: list[float] = [float(g["initial_lr"]) for g in _groups(optimizer)]
        self.last_epoch = -1  # PyTorch's name: the number of step() calls so far, once made
        self._initial_step()

    @property
    def base_lr(self) -> float:
        """The first group's base learning rate."""
        return self.base_lrs[0]

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The next learning rate of each group, from its current one (torch's get_lr)."""
        raise NotImplementedError

    def closed_form(self, base_lr: float, t: int) -> float:
        """The learning rate after t steps of this scheduler alone, from base_lr."""
        raise NotImplementedError

    def lr_at(self, t: int) -> float:
        """The first group's learning rate after t steps of this scheduler alone."""
        return self.closed_form(self.base_lrs[0], t)

    def step(self) -> None:
        self._step_count += 1
        self._update(None)

    def _update(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:  # a restart at `epoch` (SequentialLR's milestones): the closed form
            self.last_epoch = epoch
            values = [self.closed_form(base, epoch) for base in self.base_lrs]
        self._apply(values)

    def _current(self) -> list[float]:
        return [float(g["lr"]) for g in _groups(self.optimizer)]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def _apply(self, values: list[float]) -> None:
        for group, lr in zip(_groups(self.optimizer), values):
            group["lr"] = float(lr)
        self._last_lr = self._current()

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lr": self.base_lrs[0],
                "base_lrs": list(self.base_lrs), "last_lr": list(self._last_lr),
                "step_count": self._step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the step count, the bases and the groups' learning rates of that step."""
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(v) for v in state.get("base_lrs", [state["base_lr"]])]
        self._step_count = int(state.get("step_count", self.last_epoch + 1))
        last = state.get("last_lr")
        self._apply([float(v) for v in last] if last is not None else
                    [self.closed_form(b, self.last_epoch) for b in self.base_lrs])


class StepLR(LRScheduler):
    """lr = base * gamma ** (t // step_size): decay by gamma every step_size steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return self._current()
        return [lr * self.gamma for lr in self._current()]

    def closed_form(self, base_lr: float, t: int) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base - eta_min) (1 + cos(pi t / T_max)) / 2  (Loshchilov & Hutter 2017,
    without restarts): base at t = 0, eta_min at t = T_max, then back up as PyTorch's does.
    Stepped, it scales the current lr by the ratio of successive cosines (torch's recursion)."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        t, T, low = self.last_epoch, self.T_max, self.eta_min  # noqa: N806
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and t > 0:
            return [self.closed_form(base, t) for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - low) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base in zip(self._current(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - low) + low for lr in self._current()]

    def closed_form(self, base_lr: float, t: int) -> float:
        cosine = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return self.eta_min + (base_lr - self.eta_min) * cosine


class LinearLR(LRScheduler):
    """lr = base * factor, factor going linearly from start_factor (t = 0) to end_factor
    (t >= total_iters); PyTorch's defaults. total_iters=0 keeps start_factor, as torch."""

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

    def get_lr(self) -> list[float]:
        t, start, end = self.last_epoch, self.start_factor, self.end_factor
        if t == 0:
            return [lr * start for lr in self._current()]
        if self._is_initial or t > self.total_iters:
            return self._current()
        factor = 1.0 + (end - start) / (self.total_iters * start + (t - 1) * (end - start))
        return [lr * factor for lr in self._current()]

    def closed_form(self, base_lr: float, t: int) -> float:
        if not self.total_iters:
            return base_lr * self.start_factor
        done = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * done)


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
        self.optimizer = optimizer
        self.base_lrs = [float(g["initial_lr"]) for g in _groups(optimizer)]
        self.last_epoch = 0
        self._step_count = 1
        # as torch: back to the initial lrs, undo the schedulers' own initial steps, then make
        # the initial step of the one that runs at step 0
        self._apply(self.base_lrs)
        _undo_initial_steps(self)
        first = self.schedulers[bisect.bisect_right(self.milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        i = bisect.bisect_right(self.milestones, self.last_epoch)
        scheduler = self.schedulers[i]
        if i > 0 and self.milestones[i - 1] == self.last_epoch:
            scheduler._update(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def closed_form(self, base_lr: float, t: int) -> float:
        i = bisect.bisect_right(self.milestones, t)
        start = self.milestones[i - 1] if i else 0
        return self.schedulers[i].closed_form(base_lr, t - start)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s, saved in zip(self.schedulers, state.get("schedulers", [])):
            s.load_state_dict(saved)
        super().load_state_dict(state)


def _undo_initial_steps(scheduler: LRScheduler) -> None:
    for s in getattr(scheduler, "schedulers", None) or []:
        if hasattr(s, "schedulers"):
            _undo_initial_steps(s)
        else:
            s.last_epoch -= 1
