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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinygrad_lab import optim
from tinygrad_lab.backends import DEFAULT_DEVICE, canonical_device, get_backend
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.tensor import Tensor

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
    the gradient norm before clipping (when clipped)."""

    loss: Tensor
    outputs: Any = None
    loss_value: float | None = None
    grad_norm: float | None = None


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


def to_device(batch: Batch, device: str) -> Batch:
    """Each array of the batch as a Tensor on `device`, moved once (Tensors already there stay)."""
    backend = get_backend(device)
    moved = []
    for item in batch:
        if isinstance(item, Tensor):
            moved.append(item if item._backend is backend else item.detach().to(device))
        elif item is None:
            moved.append(None)
        else:
            moved.append(Tensor(item, device=device))
    return tuple(moved)


def fit(model: Module, batches: Callable[[int], Iterable[Batch]], loss_fn: LossFn,
        optimizers: optim.Optimizer | Sequence[optim.Optimizer], *, epochs: int = 1,
        device: str | None = None, clip: float | None = None,
        grad_hook: GradHook | None = None, schedulers: Sequence[Any] = (),
        batch_metrics: Callable[[Any, Batch], dict[str, float]] | None = None,
        evaluate: Callable[[Module], dict[str, float]] | None = None,
        eval_every: int | None = None, callbacks: Sequence[Callback] = ()) -> History:
    """Train `model` for `epochs` passes over `batches(epoch)`, one `train_step` per batch.

    - `device`: the model is moved there once (default: where its parameters are) and each batch
      once per step, before the step.
    - `schedulers`: stepped after every optimizer step.
    - `batch_metrics(outputs, batch)`: sums over the batch's samples (e.g. correct predictions),
      averaged over the epoch's samples into the epoch logs beside `loss`.
    - `evaluate(model)`: run in eval mode without a graph, every `eval_every` steps and at the end
      of each epoch (or only at epoch ends when eval_every is None); its dict joins the logs.
    - A loss that is not finite stops the run before its gradients are applied, with
      NonFiniteLoss (a FloatingPointError) naming the epoch and step.
    """
    if epochs < 0:
        raise ValueError(f"fit: epochs must be >= 0, got {epochs}")
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
    loop = Loop(model, opts, History(), device)
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
        model.train(was_training)
        logs.update(result)
        loop.history.evaluations.append({"step": loop.step, **result})
        for cb in callbacks:
            cb.on_evaluate(loop.step, dict(result))

    model.train()
    for cb in callbacks:
        cb.on_train_begin({})
    last_eval_step = -1
    for epoch in range(epochs):
        loop.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        sums: dict[str, float] = {"loss": 0.0}
        seen, epoch_seconds, logs = 0, 0.0, {}
        for index, batch in enumerate(batches(epoch)):
            for cb in callbacks:
                cb.on_train_batch_begin(index, {})
            start = time.perf_counter()
            batch = to_device(batch, device)
            try:  # reads the loss once: the step's one host sync
                out = train_step(model, batch, loss_fn, opts, clip=clip, grad_hook=grad_hook,
                                 check_finite=True)
            except NonFiniteLoss as e:
                raise NonFiniteLoss(
                    f"{e} at epoch {epoch + 1}, step {index + 1} (global step {loop.step + 1}); "
                    "lower the learning rate or check the data") from None
            assert out.loss_value is not None
            loss = out.loss_value
            elapsed = time.perf_counter() - start
            epoch_seconds += elapsed
            loop.train_seconds += elapsed
            loop.step += 1
            for schedule in schedulers:
                schedule.step()
            count = len(batch[0]) if getattr(batch[0], "shape", ()) else 1
            seen += count
            sums["loss"] += loss * count
            if batch_metrics is not None:
                for k, v in batch_metrics(out.outputs, batch).items():
                    sums[k] = sums.get(k, 0.0) + v
            logs = {k: v / seen for k, v in sums.items()}
            batch_logs = dict(logs, batch_loss=loss, size=count)
            for cb in callbacks:
                cb.on_train_batch_end(index, batch_logs)
            if eval_every is not None and loop.step % eval_every == 0:
                run_evaluation(batch_logs)
                last_eval_step = loop.step
            if loop.stop_training:
                break
        if last_eval_step != loop.step:
            run_evaluation(logs)
            last_eval_step = loop.step
        elif loop.history.evaluations:
            logs.update({k: v for k, v in loop.history.evaluations[-1].items() if k != "step"})
        logs["samples_per_second"] = seen / epoch_seconds if epoch_seconds > 0 else 0.0
        logs["seconds"] = epoch_seconds
        loop.history.epochs.append(logs)
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        if loop.stop_training:
            break
    final = loop.history.epochs[-1] if loop.history.epochs else {}
    for cb in callbacks:
        cb.on_train_end(dict(final))
    return loop.history


__all__ = ["Batch", "Callback", "CheckpointAtEnd", "GradHook", "History", "LambdaCallback",
           "Loop", "LossFn", "NonFiniteLoss", "StepOutput", "fit", "to_device", "train_step"]
