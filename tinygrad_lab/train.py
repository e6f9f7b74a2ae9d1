"""One training step and the one loop around it: every recipe, `keras.fit` and every benchmark
train through here, so a device, a gradient hook or a callback added here reaches all of them.

    step = train_step(model, (x, y), loss_fn, [opt], clip=1.0)   # forward, backward, hook, step
    history = fit(model, batches, loss_fn, [opt], epochs=3, evaluate=val_fn, callbacks=[...])

The step is the unit the benchmarks time. Between backward and the optimizer step sits
`grad_hook(params)`: the one place where gradients are averaged across ranks, inspected or
rescaled before clipping. The loop adds what a run needs around the step: batches moved to the
device once, evaluation every N steps or each epoch, Keras-style callback hook points
(`on_train_batch_end`, `on_epoch_end`, ... and `loop.stop_training`), schedulers, and a NaN stop
that names the step. It reads the loss once per step (`.item()`), the only host sync it makes.

`fit(..., distributed=True)` (or a `distributed.DataParallel`) trains data-parallel over the MPI
ranks: parameters broadcast from rank 0 at the start, gradients averaged by the DataParallel's
hook, and each step's loss, sample count and metric sums summed over the ranks in one small
all-reduce, so every rank's logs, callbacks and stop decisions are the same (see `_RankAgreement`).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from tinygrad_lab import optim
from tinygrad_lab.backends import DEFAULT_DEVICE, canonical_device, get_backend
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.tensor import Tensor, from_numpy

if TYPE_CHECKING:
    from tinygrad_lab.distributed import DataParallel

Batch = tuple[Any, ...]
"""(inputs, targets, ...): NumPy arrays or Tensors; the loop moves them to the device once."""

LossFn = Callable[[Module, Batch], "Tensor | tuple[Tensor, Any]"]
"""loss_fn(model, batch) -> loss, or (loss, outputs) when metrics need the outputs (logits)."""

GradHook = Callable[[list[Parameter]], None]
"""grad_hook(params): runs after backward, before clipping and the optimizer step."""


@dataclass
class StepOutput:
    """What one training step leaves: the loss (a device tensor: reading it syncs), the outputs
    loss_fn returned beside it, the loss as a float when the step read it (check_finite), and
    the gradient norm before clipping (when clipped: a 0-d device tensor, like the loss, so
    clipping reads nothing back; `.item()` it to log it)."""

    loss: Tensor
    outputs: Any = None
    loss_value: float | None = None
    grad_norm: Tensor | None = None


class NonFiniteLoss(FloatingPointError):
    """The loss was nan or inf; raised before backward, so the parameters are untouched."""


def _as_list(optimizers: optim.Optimizer | Sequence[optim.Optimizer]) -> list[optim.Optimizer]:
    return [optimizers] if isinstance(optimizers, optim.Optimizer) else list(optimizers)


def train_step(model: Module, batch: Batch, loss_fn: LossFn,
               optimizers: optim.Optimizer | Sequence[optim.Optimizer], *,
               clip: float | None = None, grad_hook: GradHook | None = None,
               check_finite: bool = False) -> StepOutput:
    """Forward, backward, `grad_hook`, optional global-norm clipping, then every optimizer's step.

    Gradients are cleared before backward, so a step never adds to the previous one's. With
    `check_finite` the loss is read once after forward (one host sync) and a nan/inf loss raises
    NonFiniteLoss before any gradient is computed, so no parameter is ever updated from it.
    """
    opts = _as_list(optimizers)
    result = loss_fn(model, batch)
    loss, outputs = result if isinstance(result, tuple) else (result, None)
    loss_value = None
    if check_finite:
        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"loss became {loss_value}")
    for opt in opts:
        opt.zero_grad()
    loss.backward()
    params = [p for opt in opts for p in opt.params]
    if grad_hook is not None:
        grad_hook(params)
    grad_norm = optim.clip_grad_norm_(params, clip) if clip else None
    for opt in opts:
        opt.step()
    return StepOutput(loss, outputs, loss_value, grad_norm)


# --- callbacks ------------------------------------------------------------------------------------
class Callback:
    """Hook points of the loop, named and ordered as Keras names them; `self.loop` is the running
    Loop (its model, step count, history; set `loop.stop_training = True` to stop after the
    current step). Every method is optional."""

    loop: Loop

    def on_train_begin(self, logs: dict[str, float]) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict[str, float]) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None: ...
    def on_evaluate(self, step: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, logs: dict[str, float]) -> None: ...


class LambdaCallback(Callback):
    """A callback from plain functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`."""

    def __init__(self, **hooks: Callable[..., None]) -> None:
        known = {name for name in vars(Callback) if name.startswith("on_")}
        unknown = sorted(set(hooks) - known)
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hook(s) {unknown}; known: {sorted(known)}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


class CheckpointAtEnd(Callback):
    """Write the model's weights and `meta` to `path` once training ends (atomically: a failed
    or NaN-stopped run never replaces what was there). `meta` may be a function of the final
    logs, so the checkpoint can record the last validation loss."""

    def __init__(self, path: str,
                 meta: Callable[[dict[str, float]], dict[str, Any]] | dict[str, Any]) -> None:
        self.path, self.meta = path, meta

    def on_train_end(self, logs: dict[str, float]) -> None:
        from tinygrad_lab.serialization import save_checkpoint

        if self.loop.rank != 0:  # a distributed run: every rank holds the same weights
            return
        meta = self.meta(logs) if callable(self.meta) else self.meta
        save_checkpoint(self.path, self.loop.model.state_dict(), meta)


# --- the loop -------------------------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch logs (training loss and metrics averaged over samples, samples/s, and the last
    evaluation) and every evaluation with the step it ran at."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    def column(self, key: str) -> list[float]:
        return [logs[key] for logs in self.epochs if key in logs]

    def plot(self, path: str | os.PathLike[str], keys: Sequence[str] | None = None) -> Any:
        """Training curves to a picture at `path`: one panel per quantity (loss, then each
        metric), training and `val_` values together (`plot.training_curves`)."""
        from tinygrad_lab.plot import training_curves

        return training_curves(self, path, keys)


@dataclass
class Loop:
    """The state of a running `fit`, visible to callbacks."""

    model: Module
    optimizers: list[optim.Optimizer]
    history: History
    device: str
    epoch: int = 0
    step: int = 0
    stop_training: bool = False
    train_seconds: float = 0.0
    rank: int = 0  # this process's rank in a distributed fit; only rank 0 writes or prints
    world_size: int = 1
    schedulers: list[Any] = field(default_factory=list)
    # where the loop stands (for a checkpoint written from a callback) and the writer fit sets
    position: dict[str, Any] = field(default_factory=dict)
    _writer: Callable[..., None] | None = field(default=None, repr=False)

    def save_checkpoint(self, path: str | os.PathLike[str],
                        meta: dict[str, Any] | Callable[[dict[str, float]], dict[str, Any]]
                        | None = None) -> None:
        """Write the full, resumable checkpoint of where the loop stands now (the format of
        `Checkpointing`; `fit(resume=path)` continues from it) from a callback's hook; rank 0
        only. From on_epoch_end it resumes at the next epoch, from on_train_batch_end at the
        next batch."""
        if self._writer is None:
            raise RuntimeError("Loop.save_checkpoint: only a running fit can write one")
        if self.rank == 0:
            self._writer(path, {} if meta is None else meta, dict(self.position))


def to_device(batch: Batch, device: str) -> Batch:
    """Each array of the batch as a Tensor on `device`, moved once (Tensors already there stay).

    A NumPy batch bound for the CPU is shared, not copied (`from_numpy`): the loop never writes
    into it, and a copy per step would cost a pass over the batch for nothing."""
    backend = get_backend(device)
    moved = []
    for item in batch:
        if isinstance(item, Tensor):
            moved.append(item if item._backend is backend else item.detach().to(device))
        elif item is None:
            moved.append(None)
        elif type(item) is np.ndarray and backend.device == DEFAULT_DEVICE:
            moved.append(from_numpy(item))
        else:
            moved.append(Tensor(item, device=device))
    return tuple(moved)


def _batch_size(batch: Batch) -> int:
    return len(batch[0]) if getattr(batch[0], "shape", ()) else 1


def _chain(*hooks: GradHook | None) -> GradHook:
    present = [hook for hook in hooks if hook is not None]

    def chained(params: list[Parameter]) -> None:
        for hook in present:
            hook(params)

    return chained


class _AgreedStop(Exception):
    """A rank asked to stop at the previous step: every rank leaves before this step's update."""


class _RankAgreement:
    """Keeps the ranks of a distributed fit in step. After the gradients' all-reduce, before
    clipping and the optimizer step, one all-reduce sums each rank's loss x samples, samples,
    metric sums (`batch_metrics`) and stop flag. So every rank logs the global batch's loss and
    metrics, a nan loss on any rank stops every rank before the update, and a stop asked at step
    k by any rank's callbacks reaches every rank at step k + 1, which none applies: all stop
    after step k, as one process would. Costs one small all-reduce per step.
    """

    def __init__(self, dist: Any, dp: DataParallel, loop: Loop, loss_fn: LossFn,
                 batch_metrics: Callable[[Any, Batch], dict[str, float]] | None) -> None:
        self.dist, self.dp, self.loop = dist, dp, loop
        self.inner, self.batch_metrics = loss_fn, batch_metrics
        self.pending: tuple[Batch, Any] | None = None
        self.totals: dict[str, float] = {}

    def loss_fn(self, model: Module, batch: Batch) -> Any:
        result = self.inner(model, batch)
        self.pending = (batch, result)
        self.dp.weight = _batch_size(batch)  # uneven shards: the gradient of the global mean
        return result

    def grad_hook(self, params: list[Parameter]) -> None:
        assert self.pending is not None
        batch, result = self.pending
        self.pending = None
        loss, outputs = result if isinstance(result, tuple) else (result, None)
        count = _batch_size(batch)
        local = {"__loss": float(loss.item()) * count, "__samples": float(count),
                 "__stop": float(self.loop.stop_training)}
        if self.batch_metrics is not None:
            local.update(self.batch_metrics(outputs, batch))
        self.totals = self.dist.all_reduce_scalars(local, op="sum")
        if not math.isfinite(self.totals["__loss"]):
            mean = self.totals["__loss"] / self.totals["__samples"]
            raise NonFiniteLoss(f"loss became {mean} (on at least one rank)")
        if self.totals["__stop"] > 0:
            raise _AgreedStop

    def global_batch(self) -> tuple[int, float, dict[str, float]]:
        """(samples, mean loss, metric sums) of the last step over every rank."""
        totals = dict(self.totals)
        samples, loss = int(totals.pop("__samples")), totals.pop("__loss")
        totals.pop("__stop")
        return samples, loss / samples, totals

    def any_stop(self) -> bool:
        """Whether any rank asked to stop (at an epoch's end: one all-reduce)."""
        return self.dist.all_reduce_scalars({"stop": float(self.loop.stop_training)},
                                            op="max")["stop"] > 0


# --- resumable checkpoints ------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped `fit` between two steps (after writing the last completed
    step's checkpoint when it was given one); `signum` is the signal (exit status 128 + it)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class Checkpointing:
    """What `fit(..., checkpoint=)` writes: a full checkpoint (weights, every optimizer's and
    scheduler's state, the loop's position, the RNG states, the epoch's running sums, history
    and `meta`) to `path`, atomically:

    - every `every` steps or epochs (`unit` "steps" or "epochs"; 0: never on the way),
    - at the end of training (`at_end`),
    - on Ctrl-C or SIGTERM (`on_interrupt`): the loop finishes the current step, writes it and
      raises `Interrupted` (a KeyboardInterrupt); a second signal stops at once.

    `meta` (a dict, or a function of the latest logs) is the recipe's own (name, config,
    vocabulary); `rngs` are NumPy generators the batches are drawn from besides tinygrad_lab's
    own (saved and restored with it). `fit(..., resume=path)` continues from such a file so
    that the resumed run ends with the same weights, bit for bit, as an uninterrupted one
    (same seed and thread count). Only rank 0 of a distributed run writes."""

    path: str | os.PathLike[str] | None
    every: int = 0
    unit: str = "steps"
    meta: dict[str, Any] | Callable[[dict[str, float]], dict[str, Any]] = field(
        default_factory=dict)
    rngs: Sequence[np.random.Generator] = ()
    at_end: bool = True
    on_interrupt: bool = True

    def __post_init__(self) -> None:
        if self.unit not in ("steps", "epochs"):
            raise ValueError(f"Checkpointing: unit must be 'steps' or 'epochs', got {self.unit!r}")
        if self.every < 0:
            raise ValueError(f"Checkpointing: every must be >= 0, got {self.every}")


_FORMAT = 1


def _rng_states(rngs: Sequence[np.random.Generator]) -> list[dict[str, Any]]:
    from tinygrad_lab.random import generator

    return [generator().bit_generator.state] + [r.bit_generator.state for r in rngs]


def _set_rng_states(rngs: Sequence[np.random.Generator], states: list[dict[str, Any]]) -> None:
    from tinygrad_lab.random import generator

    if len(states) != 1 + len(rngs):
        raise ValueError(f"the checkpoint holds {len(states) - 1} extra random generator(s), "
                         f"this run has {len(rngs)}")
    for gen, state in zip([generator(), *rngs], states):
        gen.bit_generator.state = state


def _device_rng_states(model: Module) -> dict[str, np.ndarray]:
    """The own generator state of each device the model is on (a GPU draws its dropout masks
    there, not from the host stream), as checkpoint arrays `rng/<device>`."""
    backends = {p.device: p._backend for p in model.parameters()}
    states = {f"rng/{d}": b.random_state() for d, b in backends.items()}
    return {k: v for k, v in states.items() if v is not None}


def _set_device_rng_states(model: Module, arrays: dict[str, np.ndarray], where: str) -> None:
    """Restore what _device_rng_states saved, so the resumed run draws the masks the
    interrupted one would have; a state that does not fit (another GPU model) only warns."""
    import warnings

    backends = {p.device: p._backend for p in model.parameters()}
    for device, backend in backends.items():
        state = arrays.get(f"rng/{device}")
        if state is None:  # written on another device, or by an older version
            continue
        try:
            backend.set_random_state(state)
        except ValueError as e:
            warnings.warn(f"resuming from {where}: {e}; the dropout masks will differ from "
                          "the interrupted run's", stacklevel=3)


def _host_array(value: Any) -> np.ndarray:
    return value.get() if type(value).__module__.split(".")[0] == "cupy" else np.asarray(value)


def flat_optimizer_state(state: dict[int, Any], prefix: str
                         ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """An optimizer's per-parameter `state` (its state_dict()["state"]) as host arrays named
    `{prefix}{index}/{key}` and the step counts by index: a checkpoint keeps arrays as tensors
    and the steps in its JSON. The Keras front's model.save writes the same layout."""
    arrays: dict[str, np.ndarray] = {}
    steps: dict[str, int] = {}
    for index, entry in state.items():
        for key, value in (entry or {}).items():
            if key == "step":
                steps[str(index)] = int(value)
            else:
                arrays[f"{prefix}{index}/{key}"] = _host_array(value)
    return arrays, steps


def optimizer_state_entries(arrays: dict[str, Any], steps: dict[str, int], prefix: str
                            ) -> dict[int, dict[str, Any]]:
    """The inverse of flat_optimizer_state: per-parameter entries for load_state_dict."""
    entries: dict[int, dict[str, Any]] = {}
    for index, step in steps.items():
        name = f"{prefix}{index}/"
        entry: dict[str, Any] = {k[len(name):]: v for k, v in arrays.items() if k.startswith(name)}
        entry["step"] = step
        entries[int(index)] = entry
    return entries


def _training_state(loop: Loop, schedulers: Sequence[Any], position: dict[str, Any]
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(optimizer arrays by name, the JSON part) of a full checkpoint at `position`."""
    arrays: dict[str, np.ndarray] = {}
    optimizers = []
    for i, opt in enumerate(loop.optimizers):
        opt_arrays, steps = flat_optimizer_state(opt.state_dict()["state"], f"optim/{i}/")
        arrays.update(opt_arrays)
        optimizers.append({"type": type(opt).__name__, "lr": opt.lr, "steps": steps,
                           "params": len(opt.params),
                           "group_lrs": [g["lr"] for g in getattr(opt, "param_groups", ())]})
    meta = {"format": _FORMAT, "step": loop.step, "train_seconds": loop.train_seconds,
            "optimizers": optimizers, "schedulers": [s.state_dict() for s in schedulers],
            "history": {"epochs": loop.history.epochs,
                        "evaluations": loop.history.evaluations}, **position}
    return arrays, meta


def _restore(loop: Loop, schedulers: Sequence[Any], state: dict[str, np.ndarray],
             meta: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> dict[str, Any]:
    """Load a full checkpoint into the model, optimizers, schedulers and loop; returns its
    training part (the position and RNG states)."""
    train = meta.get("train")
    if not isinstance(train, dict) or train.get("format") != _FORMAT:
        raise ValueError(f"cannot resume from {where}: it holds weights only, not a training "
                         "state (written by an older version, or by save_checkpoint)")
    saved = train["optimizers"]
    if len(saved) != len(loop.optimizers) or len(train["schedulers"]) != len(schedulers):
        raise ValueError(f"cannot resume from {where}: it has {len(saved)} optimizer(s) and "
                         f"{len(train['schedulers'])} scheduler(s), this run "
                         f"{len(loop.optimizers)} and {len(schedulers)}")
    loop.model.load_state_dict(state)
    for i, (opt, info) in enumerate(zip(loop.optimizers, saved)):
        if info["type"] != type(opt).__name__ or info["params"] != len(opt.params):
            raise ValueError(f"cannot resume from {where}: optimizer {i} is a {info['type']} of "
                             f"{info['params']} parameters, this run's a {type(opt).__name__} of "
                             f"{len(opt.params)}")
        entries = optimizer_state_entries(arrays, info["steps"], f"optim/{i}/")
        try:
            opt.load_state_dict({"lr": info["lr"], "state": entries})
        except ValueError as e:
            raise ValueError(f"cannot resume from {where}: {e}") from None
    for schedule, sched_state in zip(schedulers, train["schedulers"]):
        schedule.load_state_dict(sched_state)
    for opt, info in zip(loop.optimizers, saved):
        opt.lr = float(info["lr"])  # the lr of the step the checkpoint ends on
        groups = getattr(opt, "param_groups", ())
        if len(info.get("group_lrs", ())) == len(groups) > 1:  # each group's own
            for group, lr in zip(groups, info["group_lrs"]):
                group["lr"] = float(lr)
    loop.step, loop.train_seconds = int(train["step"]), float(train["train_seconds"])
    loop.history.epochs = list(train["history"]["epochs"])
    loop.history.evaluations = list(train["history"]["evaluations"])
    return train


def fit(model: Module, batches: Callable[[int], Iterable[Batch]], loss_fn: LossFn,
        optimizers: optim.Optimizer | Sequence[optim.Optimizer], *, epochs: int = 1,
        device: str | None = None, clip: float | None = None,
        grad_hook: GradHook | None = None, schedulers: Sequence[Any] = (),
        batch_metrics: Callable[[Any, Batch], dict[str, float]] | None = None,
        evaluate: Callable[[Module], dict[str, float]] | None = None,
        eval_every: int | None = None, callbacks: Sequence[Callback] = (),
        distributed: bool | DataParallel = False, initial_epoch: int = 0,
        checkpoint: Checkpointing | None = None, resume: Any = None,
        metrics: Sequence[Any] = ()) -> History:
    """Train `model` for `epochs` passes over `batches(epoch)`, one `train_step` per batch.

    - `device`: the model is moved there once (default: where its parameters are) and each batch
      once per step, before the step.
    - `schedulers`: stepped after every optimizer step.
    - `batch_metrics(outputs, batch)`: sums over the batch's samples (e.g. correct predictions),
      averaged over the epoch's samples into the epoch logs beside `loss`.
    - `metrics`: stateful `tinygrad_lab.metrics.Metric`s (update_state / result / reset_state):
      reset as each epoch begins, updated after every step with the batch's last element (the
      targets) and the outputs loss_fn returned beside the loss, both as host arrays, and their
      results logged under `metric.name` at the epoch's end. Distributed, their counts are
      summed over the ranks first. A resumed epoch counts only the batches after the resume.
    - `evaluate(model)`: run in eval mode without a graph, every `eval_every` steps and at the end
      of each epoch (or only at epoch ends when eval_every is None); its dict joins the logs.
      A nan in it (a mean over an empty set) raises ValueError rather than being logged.
    - An epoch whose `batches(epoch)` yields nothing raises ValueError (no loss to report).
    - A loss that is not finite stops the run before its gradients are applied, with
      NonFiniteLoss (a FloatingPointError) naming the epoch and step.
    - `distributed`: True (or a `distributed.DataParallel` of `model`) trains data-parallel
      over the MPI ranks (a plain process is a world of one). `batches(epoch)` must yield this
      rank's share of each global batch, the same number of batches on every rank. Rank 0's
      parameters are broadcast first; gradients are averaged before `grad_hook` and clipping;
      the loss and `batch_metrics` in every log are the global batch's (summed over the ranks,
      weighted by samples), `evaluate`'s results are averaged over the ranks (evaluate the
      whole set on every rank, or equal shards), and `loop.stop_training` set on any rank stops
      them all after the same step. `loop.rank` / `loop.world_size` tell callbacks where they
      run; CheckpointAtEnd writes on rank 0 only.
    - `initial_epoch`: start at this epoch (Keras' argument: epochs initial_epoch..epochs-1).
    - `checkpoint`: a `Checkpointing` (full, resumable checkpoints every N steps or epochs, at
      the end, and on Ctrl-C / SIGTERM). `resume`: a path to such a checkpoint (or the
      `load_checkpoint(path, with_arrays=True)` triple): the weights, optimizer and scheduler
      states, step, history and RNG states are restored and the batches the interrupted epoch
      already trained on are drawn again and skipped, so the run continues exactly where the
      checkpoint ends. No checkpoint ever holds a nan or inf (NonFiniteLoss instead).
    """
    if epochs < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
    metrics = list(metrics)
    for metric in metrics:
        if not all(hasattr(metric, a) for a in ("name", "update_state", "result",
                                                 "reset_state")):
            raise TypeError(f"fit: metrics must be tinygrad_lab.metrics.Metric objects, got "
                            f"{metric!r} (metrics.get(name) makes one from a name)")
        if distributed is not False and not getattr(metric, "summable", True):
            raise ValueError(f"fit: metric {metric.name!r} cannot be summed over the ranks of "
                             "a distributed fit")
    names = [metric.name for metric in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"fit: two metrics share a name: {names}")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"fit: eval_every must be >= 1, got {eval_every}")
    opts = _as_list(optimizers)
    params = model.parameters()
    if device is None:
        device = params[0].device if params else DEFAULT_DEVICE
    else:
        device = canonical_device(device)  # "cuda" -> "cuda:0", and bad names fail here
        if any(p.device != device for p in params):
            model.to(device)
    loop = Loop(model, opts, History(), device, schedulers=list(schedulers))
    if not 0 <= initial_epoch <= max(epochs, 0):
        raise ValueError(f"fit: initial_epoch must be in [0, epochs], got {initial_epoch}")
    extra_rngs = list(checkpoint.rngs) if checkpoint is not None else []
    start_epoch, partial = initial_epoch, None
    if resume is not None:
        from tinygrad_lab.serialization import load_checkpoint

        where = str(resume) if not isinstance(resume, tuple) else "the checkpoint"
        r_state, r_meta, r_arrays = (resume if isinstance(resume, tuple) else
                                     load_checkpoint(resume, with_arrays=True))
        partial = _restore(loop, schedulers, r_state, r_meta, r_arrays, where)
        _set_rng_states(extra_rngs, partial["rng"])
        _set_device_rng_states(model, r_arrays, where)
        start_epoch = int(partial["epoch"])
    agreement: _RankAgreement | None = None
    owned = False  # a DataParallel fit built, whose hooks it removes at the end
    if distributed is not False:
        from tinygrad_lab import distributed as dist

        world = dist.init()
        loop.rank, loop.world_size = world.rank, world.size
        if distributed is not True:
            dp = distributed
        elif isinstance(model, dist.DataParallel):
            dp = model
        else:  # built, it broadcasts rank 0's weights: every rank starts from the same
            dp, owned = dist.DataParallel(model), True
        agreement = _RankAgreement(dist, dp, loop, loss_fn, batch_metrics)
        loss_fn = agreement.loss_fn
        grad_hook = _chain(dp.grad_hook, agreement.grad_hook,
                           None if grad_hook == dp.grad_hook else grad_hook)
    for cb in callbacks:
        cb.loop = loop

    def run_evaluation(logs: dict[str, float]) -> None:
        if evaluate is None:
            return
        was_training = model.training
        model.eval()
        from tinygrad_lab.function import no_grad

        with no_grad():
            result = evaluate(model)
        if agreement is not None:  # the same on every rank, whatever each evaluated
            result = agreement.dist.all_reduce_scalars(result, op="mean")
        model.train(was_training)
        bad = {k: v for k, v in result.items() if isinstance(v, Real) and math.isnan(v)}
        if bad:  # a mean over an empty set, or a diverged model: no figure to log either way
            raise ValueError(f"fit: evaluate returned {bad} at epoch {loop.epoch + 1}, step "
                             f"{loop.step}: an empty evaluation set, or a diverged model")
        logs.update(result)
        loop.history.evaluations.append({"step": loop.step, **result})
        for cb in callbacks:
            cb.on_evaluate(loop.step, dict(result))

    writes = checkpoint is not None and checkpoint.path is not None and loop.rank == 0
    signals: list[int] = []  # Ctrl-C / SIGTERM seen: stop after the current step
    previous_handlers: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        if signals:  # a second signal: stop now
            raise Interrupted(f"interrupted by {signal.Signals(signum).name}", signum)
        signals.append(signum)

    if (writes and checkpoint is not None and checkpoint.on_interrupt and agreement is None
            and threading.current_thread() is threading.main_thread()):
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, on_signal)

    def save_to(path: str | os.PathLike[str], meta_spec: Any, position: dict[str, Any]) -> None:
        """The full checkpoint at `position` to `path` (a nan anywhere: NonFiniteLoss)."""
        from tinygrad_lab.serialization import NonFiniteWeights, save_checkpoint

        logs = dict(loop.history.epochs[-1]) if loop.history.epochs else {}
        if loop.history.evaluations:
            logs.update({k: v for k, v in loop.history.evaluations[-1].items() if k != "step"})
        meta = dict(meta_spec(logs) if callable(meta_spec) else meta_spec)
        arrays, train_meta = _training_state(loop, schedulers, position)
        train_meta["rng"] = _rng_states(extra_rngs)
        arrays.update(_device_rng_states(model))
        meta["train"] = train_meta
        try:
            save_checkpoint(path, model.state_dict(), meta, arrays)
        except NonFiniteWeights as e:
            raise NonFiniteLoss(f"{e} after global step {loop.step}; not written (lower the "
                                "learning rate or check the data)") from None

    loop._writer = save_to

    def write(position: dict[str, Any]) -> None:
        """The `checkpoint`'s file at `position` (rank 0 only)."""
        if not writes:  # no path, or not rank 0
            return
        assert checkpoint is not None and checkpoint.path is not None
        save_to(checkpoint.path, checkpoint.meta, position)

    def stop_if_signalled(position: dict[str, Any]) -> None:
        if not signals:
            return
        write(position)
        name = signal.Signals(signals[0]).name
        raise Interrupted(f"interrupted by {name} after global step {loop.step}; checkpoint of "
                          f"that step written to {checkpoint.path if checkpoint else None}",
                          signals[0])

    try:
        return _run_loop(
            model=model, batches=batches, loss_fn=loss_fn, opts=opts, epochs=epochs,
            device=device, clip=clip, grad_hook=grad_hook, schedulers=schedulers,
            batch_metrics=batch_metrics, eval_every=eval_every, callbacks=callbacks, loop=loop,
            agreement=agreement, run_evaluation=run_evaluation, checkpoint=checkpoint,
            extra_rngs=extra_rngs, start_epoch=start_epoch, partial=partial, write=write,
            stop_if_signalled=stop_if_signalled, metric_objects=metrics)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        if owned:
            dp.remove_hooks()


def _position(epoch: int, batch: int, epoch_rng: list[dict[str, Any]], sums: dict[str, float],
              seen: int, epoch_seconds: float, last_eval_step: int) -> dict[str, Any]:
    """Where the loop stands after `batch` batches of `epoch` (0-based), for a checkpoint."""
    return {"epoch": epoch, "batch": batch, "epoch_rng": epoch_rng, "sums": dict(sums),
            "seen": seen, "epoch_seconds": epoch_seconds, "last_eval_step": last_eval_step}


def _run_loop(*, model: Module, batches: Callable[[int], Iterable[Batch]], loss_fn: LossFn,
              opts: list[optim.Optimizer], epochs: int, device: str, clip: float | None,
              grad_hook: GradHook | None, schedulers: Sequence[Any],
              batch_metrics: Callable[[Any, Batch], dict[str, float]] | None,
              eval_every: int | None, callbacks: Sequence[Callback], loop: Loop,
              agreement: _RankAgreement | None, run_evaluation: Callable[..., None],
              checkpoint: Checkpointing | None, extra_rngs: list[np.random.Generator],
              start_epoch: int, partial: dict[str, Any] | None, write: Callable[..., None],
              stop_if_signalled: Callable[..., None],
              metric_objects: Sequence[Any] = ()) -> History:
    model.train()
    for cb in callbacks:
        cb.on_train_begin({})
    last_eval_step = int(partial["last_eval_step"]) if partial is not None else -1
    every = checkpoint.every if checkpoint is not None and checkpoint.path is not None else 0
    for epoch in range(start_epoch, epochs):
        loop.epoch = epoch
        for metric in metric_objects:
            metric.reset_state()
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        sums: dict[str, float] = {"loss": 0.0}
        seen, epoch_seconds, logs = 0, 0.0, {}
        epoch_rng = _rng_states(extra_rngs)  # before the epoch's batches draw from them
        iterator = iter(batches(epoch))
        skip = 0
        if partial is not None and epoch == start_epoch and partial["batch"]:
            # the interrupted epoch: draw its first batches again (the same random streams
            # from the epoch's start), skip them, then go on from the checkpoint's RNG states
            skip, epoch_rng = int(partial["batch"]), partial["epoch_rng"]
            _set_rng_states(extra_rngs, epoch_rng)
            iterator = iter(batches(epoch))
            for done in range(skip):
                if next(iterator, None) is None:
                    raise ValueError(f"cannot resume: epoch {epoch + 1} now yields {done} "
                                     f"batches, the checkpoint had trained on {skip}")
            _set_rng_states(extra_rngs, partial["rng"])
            sums, seen = dict(partial["sums"]), int(partial["seen"])
            epoch_seconds = float(partial["epoch_seconds"])
            logs = {k: v / seen for k, v in sums.items()} if seen else {}

        index = skip - 1
        for index, batch in enumerate(iterator, start=skip):
            for cb in callbacks:
                cb.on_train_batch_begin(index, {})
            start = time.perf_counter()
            batch = to_device(batch, device)
            try:  # reads the loss once: the step's one host sync (distributed: in the hook)
                out = train_step(model, batch, loss_fn, opts, clip=clip, grad_hook=grad_hook,
                                 check_finite=agreement is None)
            except NonFiniteLoss as e:
                raise NonFiniteLoss(
                    f"{e} at epoch {epoch + 1}, step {index + 1} (global step {loop.step + 1}); "
                    "lower the learning rate or check the data") from None
            except _AgreedStop:
                break
            elapsed = time.perf_counter() - start
            epoch_seconds += elapsed
            loop.train_seconds += elapsed
            loop.step += 1
            for schedule in schedulers:
                schedule.step()
            if agreement is None:
                assert out.loss_value is not None
                count, loss = _batch_size(batch), out.loss_value
                metrics = batch_metrics(out.outputs, batch) if batch_metrics is not None else {}
            else:  # the global batch's, summed over the ranks in the hook
                count, loss, metrics = agreement.global_batch()
            if metric_objects:
                _update_metrics(metric_objects, batch, out.outputs)
            seen += count
            sums["loss"] += loss * count
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            logs = {k: v / seen for k, v in sums.items()}
            batch_logs = dict(logs, batch_loss=loss, size=count)
            loop.position = _position(epoch, index + 1, epoch_rng, sums, seen, epoch_seconds,
                                      last_eval_step)
            for cb in callbacks:
                cb.on_train_batch_end(index, batch_logs)
            if eval_every is not None and loop.step % eval_every == 0:
                run_evaluation(batch_logs)
                last_eval_step = loop.step
            if every and checkpoint is not None and checkpoint.unit == "steps" \
                    and loop.step % every == 0:
                write(_position(epoch, index + 1, epoch_rng, sums, seen, epoch_seconds,
                                last_eval_step))
            stop_if_signalled(_position(epoch, index + 1, epoch_rng, sums, seen, epoch_seconds,
                                        last_eval_step))
            if loop.stop_training and agreement is None:  # distributed: at the next step
                break
        if index < 0:  # no batch at all: a loss of 0.0 would be a made-up figure
            raise ValueError(f"fit: the data yielded no batches in epoch {epoch + 1}")
        for metric in metric_objects:
            if agreement is not None:  # every rank's counts, summed
                metric.merge(lambda values, op: agreement.dist.all_reduce_scalars(values, op=op))
            logs[metric.name] = float(metric.result())
        if last_eval_step != loop.step:
            run_evaluation(logs)
            last_eval_step = loop.step
        elif loop.history.evaluations:
            logs.update({k: v for k, v in loop.history.evaluations[-1].items() if k != "step"})
        logs["samples_per_second"] = seen / epoch_seconds if epoch_seconds > 0 else 0.0
        logs["seconds"] = epoch_seconds
        loop.history.epochs.append(logs)
        loop.position = _position(epoch + 1, 0, epoch_rng, sums, seen, epoch_seconds,
                                  last_eval_step)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if every and checkpoint is not None and checkpoint.unit == "epochs" \
                and (epoch + 1) % every == 0:
            write(_position(epoch + 1, 0, epoch_rng, sums, seen, epoch_seconds, last_eval_step))
        stop_if_signalled(_position(epoch + 1, 0, epoch_rng, sums, seen, epoch_seconds,
                                    last_eval_step))
        if agreement is not None:
            loop.stop_training = agreement.any_stop()
        if loop.stop_training:
            break
    final = loop.history.epochs[-1] if loop.history.epochs else {}
    for cb in callbacks:  # first: so that weights a callback restores (EarlyStopping) are saved
        cb.on_train_end(dict(final))
    if checkpoint is not None and checkpoint.at_end:
        write({"epoch": epochs, "batch": 0, "last_eval_step": last_eval_step})
    return loop.history


def _to_host(value: Any) -> Any:
    """A Tensor, CuPy or NumPy array as a NumPy array (a tuple of them element by element)."""
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_host(v) for v in value)
    return _host_array(value)


def _update_metrics(metrics: Sequence[Any], batch: Batch, outputs: Any) -> None:
    """Each metric's update with the batch's targets (its last element) and the outputs."""
    if outputs is None:
        raise ValueError("fit: metrics need the outputs: loss_fn must return (loss, outputs)")
    y_true, y_pred = _to_host(batch[-1]), _to_host(outputs)
    for metric in metrics:
        metric.update_state(y_true, y_pred)


__all__ = ["Batch", "Callback", "CheckpointAtEnd", "Checkpointing", "GradHook", "History",
           "Interrupted", "LambdaCallback", "Loop", "LossFn", "NonFiniteLoss", "StepOutput",
           "fit", "to_device", "train_step"]
