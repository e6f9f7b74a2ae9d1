"""Optimizers. Each update is one named array function, in place over (param, grad, state), so
the CPU backend runs a fused Numba pass (kernels/optim.py). There is no CuPy kernel yet: on
"cuda" the references below run on CuPy arrays, and a fused CuPy step would plug in by name.

The reference bodies below are the definition of each update (PyTorch's conventions, which
follow the papers): the kernels are tested against them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tinygrad_lab import function
from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.tensor import Tensor


class Optimizer:
    """Holds parameters, per-parameter state and the learning rate (schedulers change `lr`)."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        # a tensor listed twice (tied weights gathered by hand) must be updated once per step
        unique: dict[int, Tensor] = {}
        for p in params:
            unique.setdefault(id(p), p)
        self.params: list[Tensor] = list(unique.values())
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in self.params:
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} "
                                 "does not require grad")
            if not p.data.flags.c_contiguous:
                raise ValueError("optimizer parameters must be C-contiguous arrays")
        if not lr >= 0:  # also rejects nan
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = float(lr)
        self.state: dict[int, dict[str, Any]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            state = self.state.get(id(p))
            if state is None:
                state = self.state[id(p)] = self.init_state(p)
                if function._memory is not None:
                    function._memory.add_all(state.values(), "optimizer_state", p._device)
            state["step"] += 1
            if function.is_observed():  # profiling: time and count the update
                function.timed_update(self, p, state)
            else:
                self.update(p, p.grad.data, state)
            p._bump_version()  # in place: backward refuses values saved from p before this

    def init_state(self, p: Tensor) -> dict[str, Any]:
        return {"step": 0}

    def update(self, p: Tensor, grad: Array, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def update_flops(self) -> int:
        """FLOPs of one update per parameter element, counted on the reference update below
        (the convention of tinygrad_lab/flops.py; lr and bias-correction scalars are free).
        An optimizer that does not say counts 0."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "state": {i: self.state.get(id(p)) for i, p in
                                          enumerate(self.params)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (from this optimizer's parameters, in the same
        order): the learning rate and, per parameter index, its step count and arrays (copied
        to the parameter's device). A parameter without state starts fresh, as before its
        first step."""
        entries = state["state"]
        extra = sorted(set(int(i) for i in entries) - set(range(len(self.params))))
        if extra:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter "
                             f"index {extra[0]}, but the optimizer has {len(self.params)}")
        restored: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(self.params):
            saved = entries.get(i, entries.get(str(i)))
            if saved is None:
                continue
            fresh = self.init_state(p)
            if set(saved) != set(fresh):
                raise ValueError(f"{type(self).__name__}.load_state_dict: parameter {i} has "
                                 f"state {sorted(saved)}, expected {sorted(fresh)}")
            xp = p._backend.xp
            for key, value in saved.items():
                if key == "step":
                    fresh[key] = int(value)
                    continue
                if tuple(value.shape) != tuple(fresh[key].shape):
                    raise ValueError(f"{type(self).__name__}.load_state_dict: parameter {i}'s "
                                     f"{key!r} has shape {tuple(value.shape)}, expected "
                                     f"{tuple(fresh[key].shape)}")
                fresh[key] = xp.array(value, dtype=fresh[key].dtype, copy=True)
            restored[id(p)] = fresh
        self.lr = float(state["lr"])
        self.state = restored


class SGD(Optimizer):
    """p -= lr * d, d = g (+ wd p), with momentum v = mu v + (1 - dampening) d; Nesterov uses
    d + mu v. Matches torch.optim.SGD (Sutskever et al. 2013 for Nesterov)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        size = p.shape if self.momentum else (0,)
        return {"step": 0, "velocity": xp.zeros(size, dtype=p.dtype)}

    def update_flops(self) -> int:
        # + wd p; v = mu v + (1 - dampening) d; d + mu v; p -= lr d
        return 2 * bool(self.weight_decay) + 3 * bool(self.momentum) + 2 * self.nesterov + 2

    def update(self, p: Tensor, grad: Array, state: dict[str, Any]) -> None:
        p._backend.call("sgd_step", p.data, grad, state["velocity"], self.lr, self.momentum,
                        self.dampening, self.weight_decay, self.nesterov, state["step"] == 1)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight_decay is L2 added to the gradient."""

    decoupled = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):  # also nan
            raise ValueError(f"{type(self).__name__}: betas must be two numbers in [0, 1), "
                             f"got {tuple(betas)}")
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        return {"step": 0, "m": xp.zeros(p.shape, p.dtype), "v": xp.zeros(p.shape, p.dtype)}

    def update_flops(self) -> int:
        # m: 3, v: 4, the two bias corrections, p -= lr m_hat / (sqrt(v_hat) + eps): 5; weight
        # decay adds 2 (g + wd p), decoupled 1 (p *= 1 - lr wd)
        return 14 + (1 if self.decoupled else 2) * bool(self.weight_decay)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any]) -> None:
        name = "adamw_step" if self.decoupled else "adam_step"
        p._backend.call(name, p.data, grad, state["m"], state["v"], self.lr, self.beta1,
                        self.beta2, self.eps, self.weight_decay, state["step"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr wd, then Adam."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """s = alpha s + (1 - alpha) g^2;  p -= lr g / (sqrt(s) + eps) (with optional momentum)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        self.alpha, self.eps = float(alpha), float(eps)
        self.weight_decay, self.momentum = float(weight_decay), float(momentum)

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        buf = xp.zeros(p.shape if self.momentum else (0,), p.dtype)
        return {"step": 0, "square_avg": xp.zeros(p.shape, p.dtype), "buf": buf}

    def update_flops(self) -> int:
        # s: 4, g / (sqrt(s) + eps): 3, p -= lr step: 2; + wd p; buf = mu buf + step
        return 9 + 2 * bool(self.weight_decay) + 2 * bool(self.momentum)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any]) -> None:
        p._backend.call("rmsprop_step", p.data, grad, state["square_avg"], self.lr, self.alpha,
                        self.eps, self.weight_decay, self.momentum, state["buf"])


class Adagrad(Optimizer):
    """s += g^2;  p -= lr g / (sqrt(s) + eps) (Duchi et al. 2011)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def init_state(self, p: Tensor) -> dict[str, Any]:
        return {"step": 0, "sum_sq": p._backend.xp.zeros(p.shape, p.dtype)}

    def update_flops(self) -> int:
        # s += g g: 2, p -= lr g / (sqrt(s) + eps): 5; + wd p
        return 7 + 2 * bool(self.weight_decay)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any]) -> None:
        p._backend.call("adagrad_step", p.data, grad, state["sum_sq"], self.lr, self.eps,
                        self.weight_decay)


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most max_norm; returns the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.data.astype("float64") ** 2).sum()) for g in grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g.data = g.data * scale
            if function._memory is not None:
                function._memory.add(g.data, "gradients", g._device)
    return total


# --- reference updates: in place, the definition the kernels are checked against -------------
@reference_function("sgd_step")
def sgd_step(param: Array, grad: Array, velocity: Array, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, first_step: bool) -> None:
    d = grad + weight_decay * param if weight_decay else grad
    if momentum:
        if first_step:
            velocity[...] = d
        else:
            velocity *= momentum
            velocity += (1 - dampening) * d
        d = d + momentum * velocity if nesterov else velocity
    param -= lr * d


@reference_function("adam_step")
def adam_step(param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, step: int) -> None:
    xp = array_module(param)
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * (g * g)
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    param -= lr * m_hat / (xp.sqrt(v_hat) + eps)


@reference_function("adamw_step")
def adamw_step(param: Array, grad: Array, m: Array, v: Array, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float, step: int) -> None:
    if weight_decay:
        param *= 1 - lr * weight_decay
    adam_step(param, grad, m, v, lr, beta1, beta2, eps, 0.0, step)


@reference_function("rmsprop_step")
def rmsprop_step(param: Array, grad: Array, square_avg: Array, lr: float, alpha: float,
                 eps: float, weight_decay: float, momentum: float, buf: Array) -> None:
    xp = array_module(param)
    g = grad + weight_decay * param if weight_decay else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * (g * g)
    step = g / (xp.sqrt(square_avg) + eps)
    if momentum:
        buf *= momentum
        buf += step
        step = buf
    param -= lr * step


@reference_function("adagrad_step")
def adagrad_step(param: Array, grad: Array, sum_sq: Array, lr: float, eps: float,
                 weight_decay: float) -> None:
    xp = array_module(param)
    g = grad + weight_decay * param if weight_decay else grad
    sum_sq += g * g
    param -= lr * g / (xp.sqrt(sum_sq) + eps)


# Learning-rate schedulers live in tinygrad_lab/schedulers.py; re-exported here as in torch.optim
from tinygrad_lab.schedulers import (  # noqa: E402, F401
    CosineAnnealingLR,
    LinearLR,
    LinearWarmup,
    LRScheduler,
    SequentialLR,
    StepLR,
)
