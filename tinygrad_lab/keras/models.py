"""Sequential with compile / fit / evaluate / predict / summary / save, and `load_model`.

A final Dense(activation="softmax") trained with a (sparse) categorical cross-entropy runs as one
fused softmax-cross-entropy on the logits (what Keras does internally for stability); `predict`
returns probabilities. `fit` runs tinygrad_lab.train.fit: callbacks written for it (`self.loop`)
and Keras-style ones (`self.model`, `model.stop_training = True`) both work.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinygrad_lab import metrics as _metrics
from tinygrad_lab import optim as _optim
from tinygrad_lab import train
from tinygrad_lab.backends import DEFAULT_DEVICE, canonical_device
from tinygrad_lab.function import no_grad
from tinygrad_lab.keras import losses as _losses
from tinygrad_lab.keras import optimizers as _optimizers
from tinygrad_lab.keras.callbacks import History, _KerasAdapter, _StopSync
from tinygrad_lab.keras.layers import Embedding, Input, Layer, deserialize, serialize
from tinygrad_lab.nn import functional as F
from tinygrad_lab.nn.module import Module
from tinygrad_lab.random import generator
from tinygrad_lab.serialization import load, load_checkpoint, save, save_checkpoint
from tinygrad_lab.tensor import Tensor

BUILTIN_METRICS = ("accuracy", "acc", "mse", "mae")
"""Computed from per-batch sums here (Keras' accuracy follows the loss: sparse labels, one-hot
rows or 0/1 targets); any other name, or a Metric object, is a tinygrad_lab.metrics Metric."""

_FORMAT = "tinygrad_lab.keras/1"


class Sequential(Module):
    """A stack of Keras layers with compile / fit / evaluate / predict."""

    def __init__(self, layers: Sequence[Layer | Input] | None = None, name: str = "sequential"
                 ) -> None:
        super().__init__()
        self.name = name
        self.layers: list[Layer] = []
        self.input_shape: tuple[int, ...] | None = None
        self.optimizer: _optim.Optimizer | None = None
        self._optimizer_spec: _optimizers.OptimizerSpec | _optim.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.metrics: list[str] = []
        self._metric_objects: list[_metrics.Metric] = []
        self.device: str | None = None
        self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | Input) -> None:
        if isinstance(layer, Input):
            self.input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a keras layer, got {type(layer).__name__}")
        if not self.layers and getattr(layer, "input_shape", None) is not None:
            self.input_shape = layer.input_shape
        self.layers.append(layer)

    # --- building ----------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return all(layer.built for layer in self.layers) and bool(self.layers)

    def build(self, input_shape: Sequence[int]) -> None:
        shape = tuple(int(s) for s in input_shape)
        self.input_shape = shape
        for layer in self.layers:
            shape = layer.build(shape) if not layer.built else layer.compute_output_shape(shape)
        self.output_shape = shape
        if self.device is not None:
            self.to(self.device)

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self.built:
            if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(f"model expects samples of shape {self.input_shape}, "
                                 f"got data of shape {x.shape}")
            self.build(x.shape[1:])
        if self._optimizer_spec is not None and self.optimizer is None:
            spec = self._optimizer_spec
            trainable = [p for p in self.parameters() if p.requires_grad]
            self.optimizer = (spec.bind(trainable)
                              if isinstance(spec, _optimizers.OptimizerSpec) else spec)

    def _input_dtype(self) -> np.dtype:
        if self.layers and isinstance(self.layers[0], Embedding):
            return np.dtype(np.int64)  # token ids
        params = self.parameters() if self.built else []
        return params[0].dtype if params else np.dtype(np.float32)

    # --- compile -------------------------------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = "sparse_categorical_crossentropy",
                metrics: Sequence[Any] | None = None, device: str | None = None) -> None:
        """Choose the optimizer (a name, a keras optimizer or a bound Optimizer), the loss (a
        name or a keras loss) and the metrics (names or tinygrad_lab.metrics Metric objects);
        `device` ("cpu", "cuda", ...) is where the model trains and predicts."""
        try:
            optimizer = _optimizers.get(optimizer)
            loss = _losses.get(loss)
        except ValueError as e:
            raise ValueError(f"compile: {e}") from None
        objects = []
        names = []
        for m in metrics or []:
            if isinstance(m, str) and m in BUILTIN_METRICS:
                names.append("accuracy" if m == "acc" else m)
                continue
            try:
                metric = _metrics.get(m)
            except (ValueError, TypeError) as e:
                raise ValueError(f"compile: {e}") from None
            objects.append(metric)
            names.append(metric.name)
        self._optimizer_spec = optimizer
        self.optimizer = None
        self.loss = loss
        self.metrics = names
        self._metric_objects = objects
        if device is not None:
            self.device = canonical_device(device)
            if self.built:
                self.to(self.device)
        if self.input_shape is not None and not self.built:
            self.build(self.input_shape)
        if self.built:
            self._ensure_built(np.zeros((1, *self.input_shape), self._input_dtype()))  # type: ignore[misc]

    # --- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        for layer in self.layers[:-1]:
            x = layer(x)
        return self.layers[-1](x, logits=logits)

    def call(self, x: Any, training: bool = False) -> Tensor:
        """Keras' `model(x)` on NumPy or a Tensor; a graph is kept (for custom loops)."""
        self.train(training)
        return self.forward(x if isinstance(x, Tensor) else Tensor(np.asarray(x)))

    def _fused_softmax_loss(self) -> bool:
        last = self.layers[-1]
        return (self.loss is not None and self.loss.softmax_fusable and last.fuses_softmax
                and getattr(last, "activation", None) == "softmax")

    def regularization_loss(self) -> Tensor | None:
        """The sum of every layer's weight penalties (None when no layer has one)."""
        terms = [t for layer in self.layers for t in layer.regularization_losses()]
        if not terms:
            return None
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    def _loss(self, x: Tensor, y: Any, weights: np.ndarray | None = None,
              regularize: bool = True) -> tuple[Tensor, Tensor]:
        """(loss, output for metrics: probabilities after a softmax) for one batch;
        `weights` (B,) weigh each sample's loss (class_weight)."""
        loss_fn = self.loss
        if loss_fn is None:
            raise RuntimeError("call compile() before fit() or evaluate()")
        fused = self._fused_softmax_loss()
        as_logits = fused or loss_fn.from_logits
        out = self.forward(x, logits=as_logits)
        if loss_fn.sparse and as_logits and weights is None:  # one fused node, labels stay put
            loss = F.cross_entropy(out, y.data if isinstance(y, Tensor) else y)
        else:
            y_host = y.numpy() if isinstance(y, Tensor) else np.asarray(y)
            if loss_fn.sparse and not as_logits:
                _check_labels(y_host, out.shape[-1], loss_fn.name)
            per = loss_fn.per_sample(out, y_host, as_logits)  # (B,) or (B, T)
            if weights is not None:
                w = weights.astype(per.dtype).reshape(-1, *([1] * (per.ndim - 1)))
                per = per * per._const(w)
            loss = per.mean()
        if regularize:
            penalty = self.regularization_loss()
            if penalty is not None:
                loss = loss + penalty
        shown = out.detach().softmax(-1) if fused else out.detach()
        return loss, shown

    def _metric_sums(self, out: np.ndarray, y: np.ndarray) -> dict[str, float]:
        sums = {}
        for m in self.metrics:
            if m == "accuracy":
                sums[m] = self._correct(out, y)
            elif m == "mse":
                sq = (out.reshape(y.shape) - y) ** 2
                sums[m] = float(sq.mean(axis=tuple(range(1, y.ndim))).sum() if y.ndim > 1
                                else sq.sum())
            elif m == "mae":
                sums[m] = float(np.abs(out.reshape(y.shape) - y).sum() / max(y[0].size, 1))
        return sums

    def _correct(self, out: np.ndarray, y: np.ndarray) -> float:
        """Keras' accuracy, summed per sample: sparse labels against the argmax, one-hot rows'
        argmax against it, or 0/1 targets against `out > 0.5`."""
        if isinstance(self.loss, (_losses.CategoricalCrossentropy,)) and y.ndim == out.ndim:
            hits = out.argmax(-1) == y.argmax(-1)
        elif isinstance(self.loss, _losses.BinaryCrossentropy) or out.shape[-1] == 1 \
                or out.ndim == 1:
            threshold = 0.0 if self.loss is not None and self.loss.from_logits else 0.5
            hits = (out.reshape(y.shape) > threshold) == (y > 0.5)
        else:
            hits = out.argmax(-1).reshape(y.shape) == y
        per_sample = max(int(np.prod(hits.shape[1:])), 1)  # (B, T) labels: a fraction each
        return float(hits.sum()) / per_sample

    def _prepare(self, x: Any, y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
        dtype = self._input_dtype()
        if x.dtype != dtype:
            if dtype.kind in "iu" and x.size and not np.all(np.mod(x, 1) == 0):
                raise ValueError("an Embedding model needs integer token ids as x")
            x = x.astype(dtype)
        if y is None:
            return x, None
        y = np.asarray(y.numpy() if isinstance(y, Tensor) else y)
        if len(x) != len(y):
            raise ValueError(f"x and y hold different numbers of samples: {len(x)} and {len(y)}")
        if self.loss is not None and self.loss.sparse:
            if y.dtype.kind not in "iu":
                if not np.all(np.mod(y, 1) == 0):
                    raise ValueError("sparse_categorical_crossentropy needs integer labels")
                y = y.astype(np.int64)
            if self.built:  # every path (fused, from_logits, probabilities): before any step
                _check_labels(y, self._sample_output_shape(x.shape[1:])[-1], self.loss.name)
        elif y.dtype != np.float32 and y.dtype.kind in "iufb":
            y = y.astype(self.parameters()[0].dtype if self.built else np.float32)
        return x, y

    def _sample_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape of one sample of `sample_shape` (no batch axis)."""
        shape = tuple(sample_shape)
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def _sample_weights(self, y: np.ndarray, class_weight: dict[int, float] | None
                        ) -> np.ndarray | None:
        """Per-sample weights from Keras' class_weight {class: weight} (classes not named: 1)."""
        if not class_weight:
            return None
        if y.ndim >= 2 and y.shape[-1] > 1 and self.loss is not None and not self.loss.sparse:
            labels = y.argmax(-1)  # one-hot rows
        else:
            labels = np.rint(y).astype(np.int64)
        labels = labels.reshape(len(y), -1)[:, 0] if labels.ndim > 1 else labels
        table = np.ones(max(int(labels.max(initial=0)), *map(int, class_weight)) + 1, np.float32)
        for cls, weight in class_weight.items():
            if not float(weight) >= 0:
                raise ValueError(f"fit: class_weight[{cls}] must be >= 0, got {weight}")
            table[int(cls)] = float(weight)
        return table[labels]

    # --- fit / evaluate / predict ---------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int | None = None,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, verbose: int | str = "auto", callbacks: Sequence[Any] = (),
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            initial_epoch: int = 0,
            device: str | None = None, distributed: bool = False,
            checkpoint: train.Checkpointing | None = None, resume: Any = None) -> History:
        """Train; returns a History (`history.history["loss"]` etc., one value per epoch; Keras
        semantics: validation_split takes the last fraction of x and y, before shuffling).

        `callbacks`: train.Callback objects (tinygrad_lab.callbacks: EarlyStopping, ...) and
        Keras-style ones (`self.model` is this model; `model.stop_training = True` stops after
        the current step). `class_weight` {class: weight} and `sample_weight` (N,) weigh each
        sample's loss (their product when both are given); `batch_size` None is Keras' 32.
        `initial_epoch`: Keras' (epochs counts from 0, so `epochs=5, initial_epoch=3` trains
        epochs 4 and 5). `device`: where to train (default: compile's, else the CPU).
        `verbose`: 0 silent, 1 a live bar on a terminal (one line per epoch otherwise), 2 one
        line per epoch; "auto" is 1.

        `distributed=True`: data-parallel over the MPI ranks (`train.fit`'s `distributed`).
        `batch_size` stays the global batch, split evenly over the ranks (it must divide); each
        epoch a `DistributedSampler` deals each rank every world-th sample of one shared
        permutation, so the ranks' step-j batches together are the one-process step-j batch.
        Every rank validates on the whole validation set; only rank 0 shows progress.
        `checkpoint` and `resume` are `train.fit`'s: a resumable checkpoint (weights, optimizer
        state, RNG states, the loop's position) written every N epochs, at the end and on
        Ctrl-C / SIGTERM, and the checkpoint to continue from, bit for bit."""
        if self.loss is None:
            raise RuntimeError("call compile() before fit()")
        verbose = 1 if verbose == "auto" else int(verbose)
        batch_size = 32 if batch_size is None else batch_size
        if epochs < 0 or batch_size < 1:
            raise ValueError(f"fit: epochs must be >= 0 and batch_size >= 1, got {epochs}, "
                             f"{batch_size}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if device is not None:
            self.device = canonical_device(device)
        x_arr, _ = self._prepare(x)
        self._ensure_built(x_arr)
        x_arr, y_arr = self._prepare(x, y)
        assert y_arr is not None and self.optimizer is not None
        if len(x_arr) == 0:
            raise ValueError(f"fit: x holds no samples (shape {x_arr.shape}); nothing to train on")
        given = None
        if sample_weight is not None:
            given = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
            if len(given) != len(x_arr) or not np.all(given >= 0):  # also catches nan
                raise ValueError(f"fit: sample_weight must hold {len(x_arr)} weights >= 0, got "
                                 f"{len(given)}")
        if validation_split and validation_data is None:
            n_val = int(len(x_arr) * validation_split)
            if n_val == 0 or n_val == len(x_arr):  # Keras refuses such a split too
                raise ValueError(
                    f"fit: validation_split={validation_split} of {len(x_arr)} samples leaves "
                    f"{n_val} for validation and {len(x_arr) - n_val} for training; both need "
                    "at least one: give more data or another validation_split")
            validation_data = (x_arr[len(x_arr) - n_val:], y_arr[len(y_arr) - n_val:])
            x_arr, y_arr = x_arr[: len(x_arr) - n_val], y_arr[: len(y_arr) - n_val]
            given = given[: len(x_arr)] if given is not None else None
        elif validation_data is not None:  # checked now, not after the first epoch's training
            val_x, val_y = self._prepare(*validation_data[:2])
            if len(val_x) == 0:
                raise ValueError("fit: validation_data holds no samples; pass None to skip "
                                 "validation")
            validation_data = (val_x, val_y)
        weights = self._sample_weights(y_arr, class_weight)
        if given is not None:
            weights = given if weights is None else weights * given
        n = len(x_arr)
        steps = math.ceil(n / batch_size)
        sampler = None
        if distributed:
            sampler, ranks = self._sampler(n, batch_size, shuffle)
            batch_size //= ranks
            steps = math.ceil(len(sampler) / batch_size)

        def batches(epoch: int) -> Any:
            if sampler is not None:
                sampler.set_epoch(epoch)
                order = np.fromiter(sampler, dtype=np.int64)
            else:
                order = generator().permutation(n) if shuffle else np.arange(n)
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                if weights is None:
                    yield x_arr[idx], y_arr[idx]
                else:  # the targets last: train.fit's metrics read them there
                    yield x_arr[idx], weights[idx], y_arr[idx]

        def loss_fn(model: Module, batch: Any) -> tuple[Tensor, Tensor]:
            w = batch[1].numpy() if len(batch) > 2 else None
            return self._loss(batch[0], batch[-1], w)

        def metric_sums(out: Tensor, batch: Any) -> dict[str, float]:
            return self._metric_sums(out.numpy(), batch[-1].numpy())

        def validate(model: Module) -> dict[str, float]:
            assert validation_data is not None
            val = self.evaluate(*validation_data, batch_size=max(batch_size, 256), verbose=0,
                                return_dict=True)
            return {f"val_{k}": v for k, v in val.items()}

        history = History()
        user = [cb if isinstance(cb, train.Callback) else _KerasAdapter(cb) for cb in callbacks]
        params = {"epochs": epochs, "steps": steps, "verbose": verbose,
                  "initial_epoch": initial_epoch}
        for cb in [history, *callbacks]:
            _attach(cb, self, params)
        self.stop_training = False
        hooks = [_ProgressCallback(steps, epochs, verbose), history, *user, _StopSync(self)]
        train.fit(
            self, batches, loss_fn, self.optimizer, epochs=epochs, batch_metrics=metric_sums,
            metrics=self._metric_objects,
            evaluate=validate if validation_data is not None else None, callbacks=hooks,
            device=self.device or self._device(), distributed=distributed,
            initial_epoch=initial_epoch, checkpoint=checkpoint, resume=resume)
        self.eval()
        self.history = history
        return history

    def _device(self) -> str:
        params = self.parameters()
        return params[0].device if params else (self.device or DEFAULT_DEVICE)

    @staticmethod
    def _sampler(n: int, batch_size: int, shuffle: bool) -> tuple[Any, int]:
        """(this rank's DistributedSampler over n samples, the world size); the sampler's seed
        is drawn from the seeded generator and agreed on (the ranks need not have drawn
        alike)."""
        from tinygrad_lab import distributed as dist

        world = dist.init()
        if batch_size % world.size:
            raise ValueError(f"fit: batch_size {batch_size} (the global batch) must be "
                             f"divisible by the {world.size} ranks")
        drawn = {"seed": float(generator().integers(2**31))}
        seed = int(dist.all_reduce_scalars(drawn, op="max")["seed"])
        return dist.DistributedSampler(n, seed=seed, shuffle=shuffle), world.size

    def evaluate(self, x: Any, y: Any, batch_size: int = 256, verbose: int | str = "auto",
                 return_dict: bool = False) -> Any:
        """Loss and metrics over (x, y); a list [loss, *metrics] like Keras, or a dict. The
        loss includes the weight penalties, as Keras'."""
        if batch_size < 1:
            raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
        x_arr, _ = self._prepare(x)
        self._ensure_built(x_arr)
        x_arr, y_arr = self._prepare(x, y)
        assert y_arr is not None
        if len(x_arr) == 0:  # a mean over no samples: no number to report
            raise ValueError(f"evaluate: x holds no samples (shape {x_arr.shape}); a loss "
                             "over an empty set is undefined")
        self.eval()
        objects = [copy.deepcopy(m) for m in self._metric_objects]  # fit's own keep counting
        for metric in objects:
            metric.reset_state()
        totals: dict[str, float] = {"loss": 0.0}
        device = self._device()
        with no_grad():
            for start in range(0, len(x_arr), batch_size):
                xb, yb = x_arr[start:start + batch_size], y_arr[start:start + batch_size]
                loss, out = self._loss(Tensor(xb, device=device), yb, regularize=False)
                totals["loss"] += float(loss.item()) * len(xb)
                out_host = out.numpy()
                for k, v in self._metric_sums(out_host, yb).items():
                    totals[k] = totals.get(k, 0.0) + v
                for metric in objects:
                    metric.update_state(yb, out_host)
            penalty = self.regularization_loss()
        logs = {k: v / max(len(x_arr), 1) for k, v in totals.items()}
        if penalty is not None:
            logs["loss"] += float(penalty.item())
        logs.update({m.name: float(m.result()) for m in objects})
        logs = {k: logs[k] for k in ("loss", *self.metrics)}
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs if return_dict else [logs[k] for k in logs]

    def predict(self, x: Any, batch_size: int = 256, verbose: int | str = 0) -> np.ndarray:
        """Outputs for x (probabilities after a softmax layer) as a NumPy array; no samples give
        an empty array of shape (0, *output shape)."""
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
        x_arr, _ = self._prepare(x)
        self._ensure_built(x_arr)
        self.eval()
        outs = []
        device = self._device()
        with no_grad():
            for start in range(0, len(x_arr), batch_size):
                outs.append(self.forward(Tensor(x_arr[start:start + batch_size],
                                                device=device)).numpy())
        if not outs:
            return np.zeros((0, *self._sample_output_shape(x_arr.shape[1:])), dtype=np.float32)
        return np.concatenate(outs)

    # --- persistence ------------------------------------------------------------------------------
    def save_weights(self, path: str) -> None:
        """Write every weight to an .npz file (.safetensors by that name) atomically; weights
        holding nan or inf are refused, so a diverged model never replaces a good file."""
        save(self.state_dict(), path, check_finite=True)

    def load_weights(self, path: str) -> None:
        if not self.built:
            if self.input_shape is None:
                raise RuntimeError("load_weights: build the model first (give an Input shape)")
            self.build(self.input_shape)
        self.load_state_dict(load(path))

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight and moving statistic, layer by layer (Keras' order)."""
        return [value for layer in self.layers for value in layer.state_dict().values()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Load what `get_weights` returned (same count, order and shapes)."""
        if not self.built and self.input_shape is not None:
            self.build(self.input_shape)
        targets = [(layer, name) for layer in self.layers for name in layer.state_dict()]
        if len(weights) != len(targets):
            raise ValueError(f"set_weights: the model has {len(targets)} weights, got "
                             f"{len(weights)}")
        for layer in self.layers:
            names = list(layer.state_dict())
            mine, weights = weights[:len(names)], weights[len(names):]
            layer.load_state_dict(dict(zip(names, mine)))

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; there are "
                         f"{[layer.name for layer in self.layers]}")

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape or []) or None,
                "layers": [serialize(layer) for layer in self.layers]}

    def save(self, path: str | os.PathLike[str]) -> None:
        """The whole model in one safetensors file, written atomically: the architecture (each
        layer's config as JSON in the file's metadata), the compile settings, the weights and
        the optimizer's state, so `load_model(path)` predicts identically and trains on from
        where this one stopped. No pickle: loading runs no code from the file."""
        if not self.built:
            raise RuntimeError("save: the model is not built yet (give an Input or call fit)")
        meta: dict[str, Any] = {"format": _FORMAT, "model": self.get_config()}
        arrays: dict[str, np.ndarray] = {}
        if self.loss is not None:
            if isinstance(self.loss, _losses.LossFunction):
                raise ValueError("save: a loss given as a function cannot be saved; compile "
                                 "with a loss name or keras.losses class, or use save_weights")
            spec = self._optimizer_spec
            meta["compile"] = {
                "optimizer": spec.get_config() if isinstance(spec, _optimizers.OptimizerSpec)
                else None,
                "loss": _losses.serialize(self.loss),
                "metrics": list(self.metrics)}
        if self.optimizer is not None:
            state = self.optimizer.state_dict()
            arrays, steps = train.flat_optimizer_state(state["state"], "optimizer/")
            meta["optimizer_state"] = {"type": type(self.optimizer).__name__,
                                       "lr": float(state["lr"]), "steps": steps}
            if state.get("param_groups") is not None:  # hyper-parameters, by group
                meta["optimizer_state"]["param_groups"] = state["param_groups"]
        save_checkpoint(path, self.state_dict(), meta, arrays)

    # --- display ------------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], None] | None = None,
                batch_size: int | None = None) -> str:
        """Keras' table (layer, output shape, parameters) with a memory column: the layer's
        parameters, their gradients and optimizer state, plus its output per sample. Below:
        trainable / non-trainable counts and, once built, tinygrad_lab.memory's estimate of one
        training step (per sample, or for `batch_size`)."""
        labels = [f"{layer.name} ({type(layer).__name__})" for layer in self.layers]
        width = max([len(label) + 2 for label in labels] + [30])
        rows = [f'Model: "{self.name}"',
                f"{'Layer (type)':<{width}}{'Output shape':<22}{'Param #':>10}{'Memory':>12}"]
        shape = self.input_shape
        spec = self.optimizer or _spec_name(self._optimizer_spec)
        for layer, label in zip(self.layers, labels):
            if shape is not None:
                shape = layer.compute_output_shape(shape)
            count = layer.num_parameters() if layer.built else 0
            count += sum(b.size for _, b in layer.named_buffers(persistent_only=True))
            memory = _layer_bytes(layer, spec, shape)
            rows.append(f"{label:<{width}}{str((None, *shape)) if shape else '?':<22}"
                        f"{count:>10,}{_fmt_bytes(memory):>12}")
        trainable = sum(p.size for p in self.parameters() if p.requires_grad)
        frozen = sum(p.size for p in self.parameters() if not p.requires_grad)
        frozen += sum(b.size for _, b in self.named_buffers(persistent_only=True))
        rows.append(f"Total params: {trainable + frozen:,}")
        rows.append(f"Trainable params: {trainable:,}")
        rows.append(f"Non-trainable params: {frozen:,}")
        if self.built and self.input_shape is not None:
            rows.extend(_estimate_rows(self, spec, batch_size))
        text = "\n".join(rows)
        (print_fn or print)(text)
        return text


def _attach(cb: Any, model: Sequential, params: dict[str, Any]) -> None:
    """Keras' callback wiring: `cb.model` and `cb.params` (set_model / set_params if defined)."""
    for method, value in (("set_model", model), ("set_params", params)):
        fn = getattr(cb, method, None)
        if callable(fn):
            fn(value)
            continue
        try:
            setattr(cb, method[4:], value)
        except AttributeError:  # a read-only property of the callback's own
            pass


def _spec_name(spec: Any) -> str | None:
    if isinstance(spec, _optimizers.OptimizerSpec):
        name = spec.name.lower()
        return "sgd-momentum" if name == "sgd" and spec.kwargs.get("momentum") else name
    return None


def _layer_bytes(layer: Layer, optimizer: Any, shape: tuple[int, ...] | None) -> int:
    """Parameters + gradients + optimizer state of `layer`, + its output for one sample."""
    from tinygrad_lab.memory.predict import optimizer_state_bytes

    params = layer.parameters() if layer.built else []
    total = sum(int(p.nbytes) for p in params) * 2  # the weights and their gradients
    if isinstance(optimizer, _optim.Optimizer):
        mine = {id(p) for p in params}
        per = optimizer_state_bytes(optimizer, optimizer.params)
        own = sum(int(p.nbytes) for p in optimizer.params)
        share = sum(int(p.nbytes) for p in optimizer.params if id(p) in mine)
        total += per * share // max(own, 1)
    elif optimizer is not None:
        total += optimizer_state_bytes(optimizer, params)
    if shape is not None:
        total += int(np.prod(shape)) * 4
    return total


def _estimate_rows(model: Sequential, optimizer: Any, batch_size: int | None) -> list[str]:
    """tinygrad_lab.memory.estimate of one training step, as summary lines."""
    from tinygrad_lab.memory import estimate

    state, training = model.state_dict(), model.training  # the probes run in training mode:
    try:  # BatchNormalization's moving statistics would move
        est = estimate(model, model.input_shape or (), optimizer, batch_size=batch_size or 1,
                       dtype=model._input_dtype(), loss=lambda out: out.square().mean())
    except Exception as e:  # noqa: BLE001 - the table is still worth showing
        return [f"Memory estimate unavailable: {type(e).__name__}: {e}"]
    finally:
        model.load_state_dict(state)
        model.train(training)
    b = est.bytes
    return [f"Memory of one training step (batch {batch_size or 1}): parameters "
            f"{_fmt_bytes(b['parameters'])}, gradients {_fmt_bytes(b['gradients'])}, optimizer "
            f"state {_fmt_bytes(b['optimizer_state'])}; peak {_fmt_bytes(est.total)}",
            f"Activations saved for backward: {_fmt_bytes(est.saved_per_sample)} per sample"]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def load_model(path: str | os.PathLike[str], compile: bool = True) -> Sequential:
    """The model `Sequential.save` wrote: layers rebuilt from their JSON configs (only known
    layer classes; nothing in the file is executed), weights loaded, and, with `compile`, the
    optimizer, loss and metrics, with the optimizer's state, so training goes on from there."""
    try:
        state, meta, arrays = load_checkpoint(path, with_arrays=True)
    except ValueError as e:
        raise ValueError(f"{path}: not a model saved by keras Model.save ({e})") from None
    if meta.get("format") != _FORMAT or not isinstance(meta.get("model"), dict):
        raise ValueError(f"{path}: not a model saved by keras Model.save (no architecture in "
                         "it); for weights alone use load_weights")
    config = meta["model"]
    model = Sequential([deserialize(entry) for entry in config["layers"]],
                       name=config.get("name", "sequential"))
    if config.get("input_shape"):
        model.input_shape = tuple(config["input_shape"])
    if model.input_shape is None:
        raise ValueError(f"{path}: the saved model has no input shape")
    model.build(model.input_shape)
    model.load_state_dict(state)
    settings = meta.get("compile")
    if compile and settings is not None:
        saved = meta.get("optimizer_state")
        optimizer: Any = settings.get("optimizer")
        if optimizer is None:  # compiled with a bound tinygrad_lab Optimizer: the same class,
            cls = getattr(_optim, str((saved or {}).get("type")), None)  # its hyper-parameters
            if not (isinstance(cls, type) and issubclass(cls, _optim.Optimizer)):  # from the
                raise ValueError(f"{path}: unknown optimizer {saved!r}")  # state's groups
            optimizer = cls([p for p in model.parameters() if p.requires_grad])
        model.compile(optimizer, settings["loss"], settings.get("metrics") or None)
        if saved is not None and model.optimizer is not None:
            entries = train.optimizer_state_entries(arrays, saved["steps"], "optimizer/")
            state_dict: dict[str, Any] = {"lr": saved["lr"], "state": entries}
            if "param_groups" in saved:
                state_dict["param_groups"] = saved["param_groups"]
            model.optimizer.load_state_dict(state_dict)
    model.eval()
    return model


def _check_labels(y: np.ndarray, classes: int, where: str) -> None:
    """Integer class labels must lie in [0, classes): -1 would index the last class."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{where}: labels must lie in [0, {classes}); got min {int(y.min())}, "
                         f"max {int(y.max())}")


class Progbar:
    """Keras-like progress: a live bar on a terminal (verbose=1), one line per epoch otherwise
    (verbose=2, or output that is not a terminal); nothing with verbose=0."""

    def __init__(self, steps: int, epoch: int, epochs: int, verbose: int) -> None:
        self.steps, self.verbose = steps, verbose
        self.live = verbose == 1 and sys.stdout.isatty()
        self.last_draw = 0.0
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)

    def update(self, step: int, logs: dict[str, float], rate: float) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step < self.steps:
            return
        self.last_draw = now
        width = 30
        done = int(width * step / self.steps)
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        metrics = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        sys.stdout.write(f"\r{step}/{self.steps} [{bar}] - {metrics} - {rate:,.0f} samples/s")
        sys.stdout.flush()

    def finish(self, logs: dict[str, float], elapsed: float) -> None:
        if not self.verbose:
            return
        metrics = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if k != "samples_per_second")
        rate = logs.get("samples_per_second", 0.0)
        ms = 1e3 * elapsed / max(self.steps, 1)
        prefix = "\r" if self.live else ""
        print(f"{prefix}{self.steps}/{self.steps} - {elapsed:.1f}s {ms:.1f}ms/step - {metrics} - "
              f"{rate:,.0f} samples/s", flush=True)


class _ProgressCallback(train.Callback):
    """Drives a Progbar from the training loop's hook points."""

    def __init__(self, steps: int, epochs: int, verbose: int) -> None:
        self.steps, self.epochs, self.verbose = steps, epochs, verbose

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        verbose = self.verbose if self.loop.rank == 0 else 0  # distributed: rank 0 shows it
        self.bar = Progbar(self.steps, epoch, self.epochs, verbose)
        self.start, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        self.seen += int(logs["size"])
        shown = {k: v for k, v in logs.items() if k not in ("batch_loss", "size")}
        self.bar.update(batch + 1, shown, self.seen / (time.perf_counter() - self.start))

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.bar.finish({k: v for k, v in logs.items() if k != "seconds"}, logs["seconds"])


Model = Sequential

__all__ = ["Model", "Progbar", "Sequential", "load_model"]
