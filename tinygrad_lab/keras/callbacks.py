"""Keras' callbacks: `Callback` (Keras-style: `self.model`, `self.params`), `History`, and the
training loop's own (tinygrad_lab.callbacks: EarlyStopping, ModelCheckpoint, ReduceLROnPlateau,
TerminateOnNaN, CSVLogger, LearningRateScheduler), which `Sequential.fit` accepts alike."""

from __future__ import annotations

import importlib
from typing import Any

from tinygrad_lab import train
from tinygrad_lab.train import LambdaCallback


class Callback(train.Callback):
    """A Keras-style callback: `self.model` is the Keras model being trained and `self.params`
    {epochs, steps, verbose}; `self.model.stop_training = True` stops after the current step.
    It is also a train.Callback, so `self.loop` is there too."""

    model: Any = None
    params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = dict(params)


class History(Callback):
    """What fit returns: `history.history["loss"]` etc., one value per epoch, `history.epoch`
    the epoch numbers; `plot(path)` draws them."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.append(epoch, {k: v for k, v in logs.items() if k != "seconds"})

    def on_train_end(self, logs: dict[str, float]) -> None:
        done = self.loop.history.epochs
        if len(done) > len(self.epoch):  # resumed: the checkpoint's epochs come first
            self.history, self.epoch = {}, []
            start = int(self.params.get("initial_epoch", 0))
            for epoch, entry in enumerate(done, start=start):
                self.append(epoch, {k: v for k, v in entry.items() if k != "seconds"})

    def plot(self, path: str) -> Any:
        """Loss and each metric per epoch (training and validation in one panel), written
        atomically to `path` (.png, .svg, .pdf) by tinygrad_lab.plot.training_curves; needs
        matplotlib. Returns the path written."""
        from tinygrad_lab.plot import training_curves

        return training_curves(self, path)


class _KerasAdapter(train.Callback):
    """Runs a duck-typed Keras callback (any object with some of Keras' on_* methods) from the
    loop's hook points; hooks it lacks are skipped."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def _call(self, name: str, *args: Any) -> None:
        fn = getattr(self.inner, name, None)
        if callable(fn):
            fn(*args)

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self._call("on_train_begin", logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        self._call("on_epoch_begin", epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict[str, float]) -> None:
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        self._call("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._call("on_epoch_end", epoch, logs)

    def on_train_end(self, logs: dict[str, float]) -> None:
        self._call("on_train_end", logs)


class _StopSync(train.Callback):
    """Keras' `model.stop_training = True` stops the loop (checked after each step and epoch),
    and a stop the loop's callbacks asked for shows on the model."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def _sync(self) -> None:
        if self.model.stop_training:
            self.loop.stop_training = True
        self.model.stop_training = self.loop.stop_training

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        self._sync()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._sync()


_LOOP_CALLBACKS = ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "TerminateOnNaN",
                   "CSVLogger", "LearningRateScheduler")


def __getattr__(name: str) -> Any:
    """The loop's callbacks, imported on first use (tinygrad_lab.callbacks)."""
    if name in _LOOP_CALLBACKS:
        return getattr(importlib.import_module("tinygrad_lab.callbacks"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Callback", "History", "LambdaCallback", *_LOOP_CALLBACKS]
