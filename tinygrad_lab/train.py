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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tinygrad_lab import optim
from tinygrad_lab.backends import DEFAULT_DEVICE, canonical_device, get_backend
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.tensor import Tensor

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


def fit(model: Module, batches: Callable[[int], Iterable[Batch]], loss_fn: LossFn,
        optimizers: optim.Optimizer | Sequence[optim.Optimizer], *, epochs: int = 1,
        device: str | None = None, clip: float | None = None,
        grad_hook: GradHook | None = None, schedulers: Sequence[Any] = (),
        batch_metrics: Callable[[Any, Batch], dict[str, float]] | None = None,
        evaluate: Callable[[Module], dict[str, float]] | None = None,
        eval_every: int | None = None, callbacks: Sequence[Callback] = (),
        distributed: bool | DataParallel = False) -> History:
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
    - `distributed`: True (or a `distributed.DataParallel` of `model`) trains data-parallel
      over the MPI ranks (a plain process is a world of one). `batches(epoch)` must yield this
      rank's share of each global batch, the same number of batches on every rank. Rank 0's
      parameters are broadcast first; gradients are averaged before `grad_hook` and clipping;
      the loss and `batch_metrics` in every log are the global batch's (summed over the ranks,
      weighted by samples), `evaluate`'s results are averaged over the ranks (evaluate the
      whole set on every rank, or equal shards), and `loop.stop_training` set on any rank stops
      them all after the same step. `loop.rank` / `loop.world_size` tell callbacks where they
      run; CheckpointAtEnd writes on rank 0 only.
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
            try:  # reads the loss once: the step's one host sync (distributed: in the hook)
                out = train_step(model, batch, loss_fn, opts, clip=clip, grad_hook=grad_hook,
                                 check_finite=agreement is None)
            except NonFiniteLoss as e:
                if owned:
                    dp.remove_hooks()
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
            seen += count
            sums["loss"] += loss * count
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            logs = {k: v / seen for k, v in sums.items()}
            batch_logs = dict(logs, batch_loss=loss, size=count)
            for cb in callbacks:
                cb.on_train_batch_end(index, batch_logs)
            if eval_every is not None and loop.step % eval_every == 0:
                run_evaluation(batch_logs)
                last_eval_step = loop.step
            if loop.stop_training and agreement is None:  # distributed: at the next step
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
        if agreement is not None:
            loop.stop_training = agreement.any_stop()
        if loop.stop_training:
            break
    if owned:
        dp.remove_hooks()  # the model trains alone again
    final = loop.history.epochs[-1] if loop.history.epochs else {}
    for cb in callbacks:
        cb.on_train_end(dict(final))
    return loop.history


__all__ = ["Batch", "Callback", "CheckpointAtEnd", "GradHook", "History", "LambdaCallback",
           "Loop", "LossFn", "NonFiniteLoss", "StepOutput", "fit", "to_device", "train_step"]
