"""Optimizers. Each update is one named array function, in place over (param, grad, state), so
the CPU backend runs a fused Numba pass (kernels/optim.py), and CUDA a fused CUDA kernel
(kernels/cuda/optim.py), there one launch for a whole parameter group (`*_multi_step`).

The reference bodies below are the definition of each update (PyTorch's conventions, which
follow the papers): the kernels are tested against them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_lab import function
from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.tensor import Tensor


class Optimizer:
    """Holds parameter groups, per-parameter state and each group's hyper-parameters.

    `params` is an iterable of tensors, or of dicts `{"params": [...], "lr": ..., ...}` (torch's
    parameter groups): a key a group leaves out takes the constructor's value. `lr` reads the
    first group's learning rate and sets every group's; schedulers set each group's own."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float,
                 **defaults: Any) -> None:
        self.defaults: dict[str, Any] = {"lr": lr, **defaults}
        self.param_groups: list[dict[str, Any]] = []
        self.params: list[Tensor] = []
        self.state: dict[int, dict[str, Any]] = {}
        items = [params] if isinstance(params, Tensor) else list(params)
        groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        for group in groups:
            self.add_param_group(group)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (torch's add_param_group)."""
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group is a dict with a 'params' key, got "
                            f"{type(group).__name__}")
        unknown = sorted(set(group) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise ValueError(f"{name}: unknown hyper-parameter(s) {unknown} in a parameter "
                             f"group; {name} takes {sorted(self.defaults)}")
        raw = group["params"]
        # a tensor listed twice (tied weights gathered by hand) must be updated once per step
        unique: dict[int, Tensor] = {}
        for p in [raw] if isinstance(raw, Tensor) else raw:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameters must be Tensors, got {type(p).__name__}")
            unique.setdefault(id(p), p)
        taken = {id(p) for p in self.params}
        for p in unique.values():
            if id(p) in taken:
                raise ValueError(f"{name}: a parameter of shape {p.shape} appears in more than "
                                 "one parameter group")
            if not p.requires_grad:
                raise ValueError(f"{name}: a parameter of shape {p.shape} does not require grad")
            if not p.data.flags.c_contiguous:
                raise ValueError("optimizer parameters must be C-contiguous arrays")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self.check_hyper(full)
        full["lr"] = float(full["lr"])
        full["params"] = list(unique.values())
        self.param_groups.append(full)
        self.params.extend(full["params"])

    def check_hyper(self, group: dict[str, Any]) -> None:
        """Raise ValueError on a bad hyper-parameter of one group (subclasses add theirs)."""
        if not group["lr"] >= 0:  # also rejects nan
            raise ValueError(f"learning rate must be >= 0, got {group['lr']}")

    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"learning rate must be >= 0, got {value}")
        for group in self.param_groups:
            group["lr"] = float(value)

    def _group_for(self, p: Tensor) -> dict[str, Any]:
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return group
        return self.param_groups[0]  # a stand-in (a sharded optimizer's views): the first

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        if _fused_step(self):  # one multi-tensor launch per group, where the device has one
            return
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        for p in self.params:
            if p.grad is None:
                continue
            state = self._stepped_state(p)
            if function.is_observed():  # profiling: time and count the update
                function.timed_update(self, p, state)
            else:
                self.update(p, p.grad.data, state, group_of.get(id(p), self.param_groups[0]))
            p._bump_version()  # in place: backward refuses values saved from p before this

    def init_state(self, p: Tensor) -> dict[str, Any]:
        return {"step": 0}

    def _stepped_state(self, p: Tensor) -> dict[str, Any]:
        """p's state for this step, its step count already advanced: made at the first step,
        on p's device, and moved along once after a Module.to moved p."""
        state = self.state.get(id(p))
        if state is None:
            state = self.state[id(p)] = self.init_state(p)
            if function._memory is not None:
                function._memory.add_all(state.values(), "optimizer_state", p._device)
        _follow(self, p, state)
        state["step"] += 1
        return state

    def update(self, p: Tensor, grad: Array, state: dict[str, Any],
               group: dict[str, Any] | None = None) -> None:
        """Update p in place from its gradient and state, with `group`'s hyper-parameters
        (p's own group when None)."""
        raise NotImplementedError

    def update_flops(self) -> int:
        """FLOPs of one update per parameter element, counted on the reference update below
        (the convention of tinygrad_lab/flops.py; lr and bias-correction scalars are free).
        An optimizer that does not say counts 0."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: `state` by parameter index, `param_groups` with the hyper-parameters
        and each group's parameter indices; `lr` is the first group's (older checkpoints)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [index[id(p)] for p in g["params"] if id(p) in index]}
                  for g in self.param_groups]
        return {"lr": self.lr, "state": {i: self.state.get(id(p)) for i, p in
                                          enumerate(self.params)}, "param_groups": groups}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (from this optimizer's parameters, in the same
        order): each group's hyper-parameters (or the one `lr` of an older state dict) and,
        per parameter index, its step count and arrays (copied to the parameter's device). A
        parameter without state starts fresh, as before its first step."""
        name = type(self).__name__
        entries = state["state"]
        extra = sorted(set(int(i) for i in entries) - set(range(len(self.params))))
        if extra:
            raise ValueError(f"{name}.load_state_dict: state for parameter "
                             f"index {extra[0]}, but the optimizer has {len(self.params)}")
        saved_groups = state.get("param_groups")
        if saved_groups is not None:
            sizes = [len(g["params"]) for g in saved_groups]
            if sizes != [len(g["params"]) for g in self.param_groups]:
                raise ValueError(f"{name}.load_state_dict: parameter groups of sizes {sizes}, "
                                 "expected "
                                 f"{[len(g['params']) for g in self.param_groups]}")
        before = [dict(g) for g in self.param_groups]
        if saved_groups is not None:  # first: the state's shapes follow the hyper-parameters
            for group, saved_group in zip(self.param_groups, saved_groups):
                group.update({k: v for k, v in saved_group.items() if k != "params"})
        try:
            self.state = self._restored_state(entries)
        except ValueError:
            for group, old in zip(self.param_groups, before):
                group.clear()
                group.update(old)
            raise
        if saved_groups is None:
            self.lr = float(state["lr"])

    def _restored_state(self, entries: dict[Any, Any]) -> dict[int, dict[str, Any]]:
        name = type(self).__name__
        restored: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(self.params):
            saved = entries.get(i, entries.get(str(i)))
            if saved is None:
                continue
            fresh = self.init_state(p)
            if set(saved) != set(fresh):
                raise ValueError(f"{name}.load_state_dict: parameter {i} has "
                                 f"state {sorted(saved)}, expected {sorted(fresh)}")
            xp = p._backend.xp
            for key, value in saved.items():
                if key == "step":
                    fresh[key] = int(value)
                    continue
                if tuple(value.shape) != tuple(fresh[key].shape):
                    raise ValueError(f"{name}.load_state_dict: parameter {i}'s "
                                     f"{key!r} has shape {tuple(value.shape)}, expected "
                                     f"{tuple(fresh[key].shape)}")
                fresh[key] = xp.array(value, dtype=fresh[key].dtype, copy=True)
            restored[id(p)] = fresh
        return restored


def _follow(opt: Optimizer, p: Tensor, state: dict[str, Any]) -> None:
    """Keep p's optimizer state on p's device: copied there once, at the first step after
    Module.to moved p. (The backend each state dict was made on is remembered per parameter.)"""
    homes = opt.__dict__.setdefault("_homes", {})
    home = homes.get(id(p))
    if home is not None and home[0] is state:
        if home[1] is p._backend:
            return
        for key, value in state.items():
            if hasattr(value, "shape"):
                state[key] = p._backend.asarray(home[1].to_numpy(value))
    homes[id(p)] = (state, p._backend)


class SGD(Optimizer):
    """p -= lr * d, d = g (+ wd p), with momentum v = mu v + (1 - dampening) d; Nesterov uses
    d + mu v. Matches torch.optim.SGD (Sutskever et al. 2013 for Nesterov)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.01,
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, lr, momentum=float(momentum), dampening=float(dampening),
                         weight_decay=float(weight_decay), nesterov=bool(nesterov))
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        size = p.shape if self._group_for(p)["momentum"] else (0,)
        return {"step": 0, "velocity": xp.zeros(size, dtype=p.dtype)}

    def update_flops(self) -> int:
        # + wd p; v = mu v + (1 - dampening) d; d + mu v; p -= lr d
        return 2 * bool(self.weight_decay) + 3 * bool(self.momentum) + 2 * self.nesterov + 2

    def update(self, p: Tensor, grad: Array, state: dict[str, Any],
               group: dict[str, Any] | None = None) -> None:
        h = group or self._group_for(p)
        p._backend.call("sgd_step", p.data, grad, state["velocity"], h["lr"], h["momentum"],
                        h["dampening"], h["weight_decay"], h["nesterov"], state["step"] == 1)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight_decay is L2 added to the gradient."""

    decoupled = False

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, betas=tuple(betas), eps=float(eps),
                         weight_decay=float(weight_decay))
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        betas = tuple(group["betas"])
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):  # also nan
            raise ValueError(f"{type(self).__name__}: betas must be two numbers in [0, 1), "
                             f"got {betas}")

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        return {"step": 0, "m": xp.zeros(p.shape, p.dtype), "v": xp.zeros(p.shape, p.dtype)}

    def update_flops(self) -> int:
        # m: 3, v: 4, the two bias corrections, p -= lr m_hat / (sqrt(v_hat) + eps): 5; weight
        # decay adds 2 (g + wd p), decoupled 1 (p *= 1 - lr wd)
        return 14 + (1 if self.decoupled else 2) * bool(self.weight_decay)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any],
               group: dict[str, Any] | None = None) -> None:
        h = group or self._group_for(p)
        name = "adamw_step" if self.decoupled else "adam_step"
        beta1, beta2 = (float(b) for b in h["betas"])
        p._backend.call(name, p.data, grad, state["m"], state["v"], h["lr"], beta1, beta2,
                        h["eps"], h["weight_decay"], state["step"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr wd, then Adam."""

    decoupled = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """s = alpha s + (1 - alpha) g^2;  p -= lr g / (sqrt(s) + eps) (with optional momentum).
    `centered` divides by the standard deviation instead: sqrt(s - m^2) + eps, with m the
    running mean of g (Graves 2013), as torch.optim.RMSprop."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.01,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(params, lr, alpha=float(alpha), eps=float(eps),
                         weight_decay=float(weight_decay), momentum=float(momentum),
                         centered=bool(centered))
        self.alpha, self.eps = float(alpha), float(eps)
        self.weight_decay, self.momentum = float(weight_decay), float(momentum)
        self.centered = bool(centered)

    def check_hyper(self, group: dict[str, Any]) -> None:
        super().check_hyper(group)
        if not 0.0 <= group["alpha"] <= 1.0 or not group["momentum"] >= 0.0:
            raise ValueError(f"RMSprop: need 0 <= alpha <= 1 and momentum >= 0, got "
                             f"{group['alpha']} and {group['momentum']}")

    def init_state(self, p: Tensor) -> dict[str, Any]:
        xp = p._backend.xp
        h = self._group_for(p)
        buf = xp.zeros(p.shape if h["momentum"] else (0,), p.dtype)
        state = {"step": 0, "square_avg": xp.zeros(p.shape, p.dtype), "buf": buf}
        if h["centered"]:
            state["grad_avg"] = xp.zeros(p.shape, p.dtype)
        return state

    def update_flops(self) -> int:
        # s: 4, g / (sqrt(s) + eps): 3, p -= lr step: 2; + wd p; buf = mu buf + step;
        # centered: m (3) and s - m^2 (2)
        return (9 + 2 * bool(self.weight_decay) + 2 * bool(self.momentum)
                + 5 * self.centered)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any],
               group: dict[str, Any] | None = None) -> None:
        h = group or self._group_for(p)
        if h["centered"]:  # no fused kernel: the reference runs
            rmsprop_centered_step(p.data, grad, state["square_avg"], state["grad_avg"], h["lr"],
                                  h["alpha"], h["eps"], h["weight_decay"], h["momentum"],
                                  state["buf"])
            return
        p._backend.call("rmsprop_step", p.data, grad, state["square_avg"], h["lr"], h["alpha"],
                        h["eps"], h["weight_decay"], h["momentum"], state["buf"])


class Adagrad(Optimizer):
    """s += g^2;  p -= lr g / (sqrt(s) + eps) (Duchi et al. 2011)."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.01,
                 eps: float = 1e-10, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, eps=float(eps), weight_decay=float(weight_decay))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def init_state(self, p: Tensor) -> dict[str, Any]:
        return {"step": 0, "sum_sq": p._backend.xp.zeros(p.shape, p.dtype)}

    def update_flops(self) -> int:
        # s += g g: 2, p -= lr g / (sqrt(s) + eps): 5; + wd p
        return 7 + 2 * bool(self.weight_decay)

    def update(self, p: Tensor, grad: Array, state: dict[str, Any],
               group: dict[str, Any] | None = None) -> None:
        h = group or self._group_for(p)
        p._backend.call("adagrad_step", p.data, grad, state["sum_sq"], h["lr"], h["eps"],
                        h["weight_decay"])


def clip_grad_norm_(params: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0) -> Tensor:
    """Scale all gradients so their global norm is at most max_norm; returns the norm before,
    as a 0-d Tensor on the gradients' device (torch's `total_norm`, in their dtype).

    `params` is one tensor or an iterable of them; `norm_type` is p of the p-norm (inf: the
    largest |g|), as torch's. Nothing is read back: each device reduces its gradients to one
    number there, and every gradient is multiplied by min(1, max_norm / (norm + 1e-6)) computed
    on the device (torch's clamped coefficient: a factor of exactly 1 leaves a small gradient's
    bits as they were), so a clipped training step needs no host sync. Read the norm (`.item()`)
    only to log it. Gradients on several devices add their parts up on the first one's."""
    items = [params] if isinstance(params, Tensor) else list(params)
    grads = [p.grad for p in items if p.grad is not None]
    p_norm = float(norm_type)
    if not p_norm > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 (or inf), got {norm_type}")
    if not grads:  # torch: tensor(0.), where the parameters are
        where = items[0] if items else Tensor(0.0)
        return Tensor._wrap(where._backend.scalar(0.0, where._backend.xp.float32),
                            where._backend, where.device, False)
    first = grads[0]
    xp = first._backend.xp
    if p_norm == 2 and all(g._backend is first._backend for g in grads):
        # one fused pass over every gradient (float64 sums), then the same clamped coefficient
        total = first._backend.call("sum_of_squares", [g.data for g in grads]) ** 0.5
        _scale_grads(grads, xp.minimum(max_norm / (total + 1e-6), 1.0))
        return Tensor._wrap(first._backend.asarray(total.astype(first.dtype)), first._backend,
                            first.device, False)
    parts = []
    for g in grads:
        gxp = g._backend.xp
        mag = gxp.abs(g.data.astype(gxp.float64))
        if math.isinf(p_norm):
            if not g.size:  # torch: a max over nothing has no value
                raise ValueError("clip_grad_norm_: the inf-norm of an empty gradient is "
                                 "undefined")
            part = gxp.max(mag)
        else:
            part = gxp.sum(mag * mag if p_norm == 2 else mag**p_norm)  # 0-d, on the device
        if g.device != first.device:  # a device-to-device move, as torch's
            part = first._backend.asarray(g._backend.to_numpy(part))
        parts.append(part)
    stacked = xp.stack(parts)  # (number of gradients,) float64, on the first device
    total = xp.max(stacked) if math.isinf(p_norm) else xp.sum(stacked) ** (1.0 / p_norm)
    _scale_grads(grads, xp.minimum(max_norm / (total + 1e-6), 1.0))  # 0-d, float64
    total = first._backend.asarray(total.astype(first.dtype))  # a 0-d array (NumPy: no scalar)
    return Tensor._wrap(total, first._backend, first.device, False)


def _scale_grads(grads: list[Tensor], coef: Array) -> None:
    """Multiply every gradient by the 0-d float64 `coef` (on the first gradient's device), in
    place where a gradient owns a writable host array, as torch's `mul_` does. On the host the
    coefficient is read for free, and a factor of exactly 1 (nothing to clip) is skipped: the
    product would leave every bit as it is."""
    first = grads[0]
    if first._backend.xp is np and float(coef) >= 1.0:
        return
    for g in grads:
        factor = coef if g.device == first.device else g._backend.asarray(
            first._backend.to_numpy(coef))
        factor = factor.astype(g.dtype)  # the product in the gradient's own type, as torch's
        data = g.data
        if isinstance(data, np.ndarray) and data.flags.writeable and data.base is None:
            np.multiply(data, factor, out=data)
            continue
        g.data = data * factor
        if function._memory is not None:
            function._memory.add(g.data, "gradients", g._device)


@reference_function("sum_of_squares")
def sum_of_squares(arrays: list[Array]) -> Array:
    """The sum of every element squared over all `arrays` (one device), as a 0-d float64 array:
    the squared global 2-norm that gradient clipping takes."""
    xp = array_module(arrays[0])
    parts = [xp.sum(xp.square(a.astype(xp.float64))) for a in arrays]
    return xp.sum(xp.stack(parts)) if parts else xp.zeros((), xp.float64)


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


def rmsprop_centered_step(param: Array, grad: Array, square_avg: Array, grad_avg: Array,
                          lr: float, alpha: float, eps: float, weight_decay: float,
                          momentum: float, buf: Array) -> None:
    """RMSprop divided by the running standard deviation of g (torch's centered=True)."""
    xp = array_module(param)
    g = grad + weight_decay * param if weight_decay else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * (g * g)
    grad_avg *= alpha
    grad_avg += (1 - alpha) * g
    step = g / (xp.sqrt(square_avg - grad_avg * grad_avg) + eps)
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


# --- multi-tensor updates: one call for a whole parameter group ------------------------------
# A device kernel of these names (kernels/cuda/optim.py) updates every tensor of the lists in one
# launch; the references define them as the per-parameter updates above, in order.
def _per_param(value: Any, n: int) -> list[Any]:
    """A multi-tensor step's per-parameter argument: a list or tuple as given, one value n times."""
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


@reference_function("sgd_multi_step")
def sgd_multi_step(params: list[Array], grads: list[Array], velocities: list[Array], lr: float,
                   momentum: float, dampening: float, weight_decay: float, nesterov: bool,
                   first_steps: Any) -> None:
    """`sgd_step` for each (param, grad, velocity); first_steps: one flag per param, or one."""
    for p, g, v, first in zip(params, grads, velocities, _per_param(first_steps, len(params))):
        sgd_step(p, g, v, lr, momentum, dampening, weight_decay, nesterov, first)


@reference_function("adam_multi_step")
def adam_multi_step(params: list[Array], grads: list[Array], ms: list[Array], vs: list[Array],
                    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                    steps: Any) -> None:
    """`adam_step` for each (param, grad, m, v); steps: one 1-based count per param, or one."""
    for p, g, m, v, t in zip(params, grads, ms, vs, _per_param(steps, len(params))):
        adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, t)


@reference_function("adamw_multi_step")
def adamw_multi_step(params: list[Array], grads: list[Array], ms: list[Array], vs: list[Array],
                     lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                     steps: Any) -> None:
    """`adamw_step` for each (param, grad, m, v); steps: one 1-based count per param, or one."""
    for p, g, m, v, t in zip(params, grads, ms, vs, _per_param(steps, len(params))):
        adamw_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, t)


def _fused_step(opt: Optimizer) -> bool:
    """`opt.step()` as one multi-tensor call per parameter group, for SGD, Adam and AdamW
    themselves (not subclasses, which may change `update`) when the parameters' device has a
    kernel for it (CUDA); False, having done nothing, otherwise (then `step` updates one
    parameter at a time, as it also does under profiling)."""
    kind = type(opt)
    name = {SGD: "sgd_multi_step", Adam: "adam_multi_step", AdamW: "adamw_multi_step"}.get(kind)
    live = [p for p in opt.params if p.grad is not None]
    if name is None or not live or function.is_observed():
        return False
    backend = live[0]._backend
    grouped = sum(len(g["params"]) for g in opt.param_groups)
    if (grouped != len(opt.params) or any(p._backend is not backend for p in live)
            or not backend.is_kernel(name)):
        return False
    for h in opt.param_groups:
        params = [p for p in h["params"] if p.grad is not None]
        states = [opt._stepped_state(p) for p in params]
        if not params:
            continue
        data, grads = [p.data for p in params], [p.grad.data for p in params]
        if kind is SGD:
            backend.call(name, data, grads, [s["velocity"] for s in states], h["lr"],
                         h["momentum"], h["dampening"], h["weight_decay"], h["nesterov"],
                         [s["step"] == 1 for s in states])
        else:
            beta1, beta2 = (float(b) for b in h["betas"])
            backend.call(name, data, grads, [s["m"] for s in states], [s["v"] for s in states],
                         h["lr"], beta1, beta2, h["eps"], h["weight_decay"],
                         [s["step"] for s in states])
        for p in params:
            p._bump_version()  # in place: backward refuses values saved from p before this
    return True


# Learning-rate schedulers live in tinygrad_lab/schedulers.py; re-exported here as in torch.optim
from tinygrad_lab.schedulers import (  # noqa: E402, F401
    CosineAnnealingLR,
    LinearLR,
    LinearWarmup,
    LRScheduler,
    SequentialLR,
    StepLR,
)
