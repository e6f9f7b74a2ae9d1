"""Keras' callbacks for `train.fit` (and so for the recipes and `keras.Sequential.fit`):
EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN, CSVLogger,
LearningRateScheduler, with Keras' arguments and behaviour, plus LambdaCallback and History.

    stop = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    fit(model, batches, loss_fn, opt, epochs=50, evaluate=val_fn, callbacks=[stop])

Where Keras warns and carries on, these raise: a `monitor` key absent from the logs stops the
run at the first epoch end with a ValueError naming the keys there are (a typo would otherwise
silently disable the callback).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_lab.train import Callback, History, LambdaCallback, NonFiniteLoss

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback",
           "LearningRateScheduler", "ModelCheckpoint", "ReduceLROnPlateau", "TerminateOnNaN"]

# names whose larger values are better ('auto' mode); anything else that is not a loss or an
# error needs an explicit mode
_MAXIMISED = re.compile(r"(acc|accuracy|auc|precision|recall|f1|r2|score)$")
_MINIMISED = re.compile(r"(loss|error|mse|mae|perplexity)$")


def _direction(monitor: str, mode: str, who: str) -> str:
    """'min' or 'max' for `mode` ('auto' reads the name, as Keras does)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if _MAXIMISED.search(name):
        return "max"
    if _MINIMISED.search(name):
        return "min"
    raise ValueError(f"{who}: cannot tell whether {monitor!r} should go up or down; pass "
                     "mode='min' or mode='max'")


def _monitored(logs: dict[str, Any], monitor: str, who: str) -> float:
    """logs[monitor] as a float, or ValueError naming the keys there are."""
    if monitor not in logs:
        keys = ", ".join(sorted(k for k in logs if isinstance(logs[k], (int, float))))
        raise ValueError(f"{who}: monitor {monitor!r} is not in the logs; available: {keys} "
                         "(val_ keys need fit's evaluate=, metrics their own name)")
    return float(logs[monitor])


class _Monitor:
    """A monitored quantity that improves by more than min_delta in one direction."""

    def __init__(self, monitor: str, mode: str, min_delta: float, who: str) -> None:
        if not min_delta >= 0:
            raise ValueError(f"{who}: min_delta must be >= 0, got {min_delta}")
        self.monitor, self.who = monitor, who
        self.mode = _direction(monitor, mode, who)
        self.min_delta = float(min_delta)

    def better(self, current: float, reference: float | None) -> bool:
        if reference is None:
            return not math.isnan(current)
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def read(self, logs: dict[str, Any]) -> float:
        return _monitored(logs, self.monitor, self.who)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved (by more than `min_delta`) for `patience` epochs.

    As Keras 3: `baseline` must also be beaten for the wait to restart; epochs before
    `start_from_epoch` are not counted; with `restore_best_weights` the weights of the best
    epoch are put back when training ends, whether or not the stop fired (the last weights are
    kept only if no epoch was ever measured). `per="evaluation"` counts every evaluation
    (`fit(eval_every=N)`) instead of every epoch, for step-based runs of one long epoch. After
    training: `stopped_epoch` (0-based, 0 when it did not stop), `best`, `best_epoch`."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0,
                 per: str = "epoch") -> None:
        if patience < 0 or start_from_epoch < 0:
            raise ValueError(f"EarlyStopping: patience and start_from_epoch must be >= 0, got "
                             f"{patience} and {start_from_epoch}")
        if per not in ("epoch", "evaluation"):
            raise ValueError(f"EarlyStopping: per must be 'epoch' or 'evaluation', got {per!r}")
        self.watch = _Monitor(monitor, mode, min_delta, "EarlyStopping")
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch, self.per = int(start_from_epoch), per
        self._reset()

    def _reset(self) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best: float | None = None
        self.best_weights: dict[str, np.ndarray] | None = None
        self._count = 0  # evaluations seen (per="evaluation")

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.per == "epoch":
            self._check(epoch, logs)

    def on_evaluate(self, step: int, logs: dict[str, float]) -> None:
        if self.per == "evaluation":
            self._check(self._count, logs)
            self._count += 1

    def _check(self, index: int, logs: dict[str, float]) -> None:
        current = self.watch.read(logs)
        if index < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.loop.model.state_dict(), index
        self.wait += 1
        if self.watch.better(current, self.best):
            self.best, self.best_epoch = current, index
            if self.restore_best_weights:
                self.best_weights = self.loop.model.state_dict()
            if self.baseline is None or self.watch.better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and index > 0:
            self.stopped_epoch = index
            self.loop.stop_training = True

    def on_train_end(self, logs: dict[str, float]) -> None:
        unit = "epoch" if self.per == "epoch" else "evaluation"
        if self.stopped_epoch and self.verbose and self.loop.rank == 0:
            print(f"{unit} {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose and self.loop.rank == 0:
                print(f"restoring the weights of the best {unit} ({self.best_epoch + 1}, "
                      f"{self.monitor} {self.best})")
            self.loop.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Write a checkpoint to `path` every epoch (`save_freq="epoch"`) or every `save_freq`
    steps: the full, resumable format of `fit(checkpoint=)` (`fit(resume=path)` continues
    from it), or the weights alone with `save_weights_only`. Atomic; rank 0 only.

    `path` may hold Keras' fields: "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors" (epoch counts
    from 1; any log key). With `save_best_only` a file is written only when `monitor` beats
    the best so far (`mode` as EarlyStopping's). `meta`: a dict or a function of the logs,
    stored beside the weights (a recipe's name and settings)."""

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss",
                 verbose: int = 0, save_best_only: bool = False, mode: str = "auto",
                 save_weights_only: bool = False, save_freq: str | int = "epoch",
                 meta: dict[str, Any] | Callable[[dict[str, float]], dict[str, Any]]
                 | None = None, initial_value_threshold: float | None = None) -> None:
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or an int >= 1, got "
                             f"{save_freq!r}")
        self.path, self.monitor, self.verbose = str(path), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.save_freq, self.meta = save_freq, meta
        self.watch = (_Monitor(monitor, mode, 0.0, "ModelCheckpoint") if save_best_only
                      else None)
        self.initial_value_threshold = initial_value_threshold
        self.best: float | None = initial_value_threshold
        self.saved: list[str] = []  # every path written, in order
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self.best = self.initial_value_threshold

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        if isinstance(self.save_freq, int) and self.loop.step % self.save_freq == 0:
            self._save(self._epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, logs)

    def _save(self, epoch: int, logs: dict[str, float]) -> None:
        if self.watch is not None:
            current = self.watch.read(logs)
            if not self.watch.better(current, self.best):
                return
            if self.verbose and self.loop.rank == 0:
                print(f"epoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                      f"{current}, saving")
            self.best = current
        path = self._format(epoch, logs)
        if self.loop.rank != 0:
            return
        if self.save_weights_only:
            from tinygrad_lab.serialization import save_checkpoint

            meta = self.meta(dict(logs)) if callable(self.meta) else dict(self.meta or {})
            save_checkpoint(path, self.loop.model.state_dict(), meta)
        else:
            self.loop.save_checkpoint(path, self.meta)
        self.saved.append(path)
        if self.verbose:
            print(f"epoch {epoch + 1}: checkpoint written to {path}")

    def _format(self, epoch: int, logs: dict[str, float]) -> str:
        try:
            return self.path.format(epoch=epoch + 1, step=self.loop.step, **logs)
        except KeyError as e:
            keys = ", ".join(["epoch", "step", *sorted(logs)])
            raise ValueError(f"ModelCheckpoint: path {self.path!r} names {e}, which is not in "
                             f"the logs; available: {keys}") from None
        except (ValueError, IndexError) as e:
            raise ValueError(f"ModelCheckpoint: cannot format path {self.path!r}: {e}") from None


class ReduceLROnPlateau(Callback):
    """Multiply every optimizer's learning rate by `factor` when `monitor` has not improved by
    more than `min_delta` for `patience` epochs, then wait `cooldown` epochs; never below
    `min_lr`. The current rate is logged as `learning_rate`. Refuses to run beside fit's
    `schedulers`, which set the rate every step and would undo the change."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        if patience < 0 or cooldown < 0 or not min_lr >= 0:
            raise ValueError("ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0")
        self.watch = _Monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.verbose, self.cooldown, self.min_lr = verbose, int(cooldown), float(min_lr)
        self.wait, self.cooldown_counter, self.best = 0, 0, None

    def on_train_begin(self, logs: dict[str, float]) -> None:
        _refuse_schedulers(self)
        self.wait, self.cooldown_counter, self.best = 0, 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        current = self.watch.read(logs)
        logs["learning_rate"] = self.loop.optimizers[0].lr if self.loop.optimizers else 0.0
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.watch.better(current, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        changed = False
        for group in _lr_groups(self.loop.optimizers):
            if group["lr"] > self.min_lr:
                group["lr"], changed = max(group["lr"] * self.factor, self.min_lr), True
        if changed:
            self.cooldown_counter, self.wait = self.cooldown, 0
            if self.verbose and self.loop.rank == 0:
                print(f"epoch {epoch + 1}: ReduceLROnPlateau: learning rate now "
                      f"{self.loop.optimizers[0].lr:g}")


class _Plain:
    """An optimizer without parameter groups, seen as one group."""

    def __init__(self, opt: Any) -> None:
        self.opt = opt

    def __getitem__(self, key: str) -> float:
        return float(self.opt.lr)

    def __setitem__(self, key: str, value: float) -> None:
        self.opt.lr = float(value)


def _lr_groups(optimizers: list[Any]) -> list[Any]:
    """Every parameter group of every optimizer (each has its own "lr")."""
    groups: list[Any] = []
    for opt in optimizers:
        groups += list(getattr(opt, "param_groups", None) or [_Plain(opt)])
    return groups


def _refuse_schedulers(cb: Callback) -> None:
    if cb.loop.schedulers:
        raise ValueError(f"{type(cb).__name__}: fit also has schedulers=, which set the "
                         "learning rate every step and would undo this callback's; use one")


class LearningRateScheduler(Callback):
    """At each epoch's start, set each parameter group's learning rate (of every optimizer)
    to `schedule(epoch, lr)` of its current one (epoch from 0); the first group's is logged as
    `learning_rate`."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise TypeError("LearningRateScheduler: schedule must be a function (epoch, lr)")
        self.schedule, self.verbose = schedule, verbose

    def on_train_begin(self, logs: dict[str, float]) -> None:
        _refuse_schedulers(self)

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        for group in _lr_groups(self.loop.optimizers):
            current = group["lr"]
            lr = self.schedule(epoch, current)
            if not isinstance(lr, (int, float, np.floating)) or not 0 <= float(lr) < math.inf:
                raise ValueError(f"LearningRateScheduler: schedule({epoch}, {current}) "
                                 f"returned {lr!r}; expected a finite number >= 0")
            group["lr"] = float(lr)
        if self.verbose and self.loop.rank == 0:
            print(f"epoch {epoch + 1}: learning rate {self.loop.optimizers[0].lr:g}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        logs["learning_rate"] = self.loop.optimizers[0].lr if self.loop.optimizers else 0.0


class TerminateOnNaN(Callback):
    """Stop when a batch's loss is nan or inf. fit already refuses to apply such a step (with
    NonFiniteLoss); this callback also catches a non-finite value in `monitor`'s epoch log
    (an evaluation gone nan, say) and stops with NonFiniteLoss naming it."""

    def __init__(self, monitor: str = "loss") -> None:
        self.monitor = monitor

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        value = logs.get("batch_loss", logs.get("loss"))
        if value is not None and not math.isfinite(value):
            self.loop.stop_training = True
            raise NonFiniteLoss(f"TerminateOnNaN: batch {batch + 1}: loss {value}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        value = logs.get(self.monitor)
        if value is not None and not math.isfinite(value):
            self.loop.stop_training = True
            raise NonFiniteLoss(f"TerminateOnNaN: epoch {epoch + 1}: {self.monitor} {value}")


class CSVLogger(Callback):
    """One CSV row per epoch: `epoch` (from 0, as Keras) and every log key, sorted, written as
    each epoch ends (the file is opened per row, so a crash leaves every finished epoch there).
    `append=True` continues an existing file (a resumed run) with its columns; otherwise the
    file is replaced. Rank 0 only."""

    def __init__(self, path: str | os.PathLike[str], separator: str = ",",
                 append: bool = False) -> None:
        self.path, self.separator, self.append = Path(path), separator, append
        self.keys: list[str] | None = None

    def on_train_begin(self, logs: dict[str, float]) -> None:
        if self.loop.rank != 0:
            return
        self.keys = None
        if self.append and self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.append:
            self.path.write_text("")

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.loop.rank != 0:
            return
        rows = []
        if self.keys is None:
            self.keys = sorted(logs)
            rows.append(["epoch", *self.keys])
        rows.append([epoch] + [_csv_value(logs.get(k, "")) for k in self.keys])
        with open(self.path, "a", newline="") as f:
            csv.writer(f, delimiter=self.separator).writerows(rows)


def _csv_value(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value
