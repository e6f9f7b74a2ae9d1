"""A Keras-style front: Sequential with compile / fit / evaluate / predict over tinygrad_lab.

Layers build lazily from the first input shape, as in Keras. A final Dense(activation="softmax")
trained with sparse categorical cross-entropy is run as one fused softmax-cross-entropy node on
the logits (what Keras does internally for stability); `predict` returns probabilities.

    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=10)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from tinygrad_lab import optim as _optim
from tinygrad_lab import train
from tinygrad_lab.function import no_grad
from tinygrad_lab.nn import functional as F
from tinygrad_lab.nn.layers import Linear
from tinygrad_lab.nn.module import Module
from tinygrad_lab.ops.elementwise import check_activation
from tinygrad_lab.random import generator
from tinygrad_lab.serialization import load, save
from tinygrad_lab.tensor import Tensor


# --- layers ------------------------------------------------------------------------------------
class Input:
    """Declares the shape of one sample (without the batch axis)."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in shape)


class Layer(Module):
    """A Keras layer: built from the input shape on first use; knows its output shape."""

    built = False

    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Create parameters for samples of `input_shape`; return the output sample shape."""
        self.built = True
        return input_shape


KERAS_ONLY_ACTIVATIONS = ("linear", "softmax")
"""Keras' activation strings beyond ops.elementwise.ACTIVATIONS: 'linear' is none, 'softmax' is
applied after the layer (and fused into the loss by compile)."""


class Dense(Layer):
    """units outputs, act(x @ kernel + bias); activation None, 'linear', 'softmax' or a name in
    ops.elementwise.ACTIVATIONS ('relu', 'tanh', ...)."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        check_activation(activation, "Dense", also=KERAS_ONLY_ACTIVATIONS)
        self.units = int(units)
        self.activation = None if activation == "linear" else activation
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.linear: Linear | None = None

    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        inner = None if self.activation == "softmax" else self.activation
        self.linear = Linear(input_shape[-1], self.units, bias=self.use_bias, activation=inner,
                             init=self.kernel_initializer)
        self.built = True
        return (*input_shape[:-1], self.units)

    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        assert self.linear is not None, "Dense used before build()"
        y = self.linear(x)
        return y.softmax(-1) if self.activation == "softmax" and not logits else y

    def extra_repr(self) -> str:
        return f"{self.units}, activation={self.activation!r}"


class Flatten(Layer):
    def build(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.built = True
        return (int(np.prod(input_shape)),)

    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        return x.reshape(x.shape[0], -1)


class Activation(Layer):
    """An activation by name: 'linear', 'softmax' or a name in ops.elementwise.ACTIVATIONS."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        check_activation(activation, "Activation", also=KERAS_ONLY_ACTIVATIONS)
        self.activation = activation

    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        if self.activation == "softmax":
            return x if logits else x.softmax(-1)
        if self.activation == "linear":
            return x
        return getattr(x, self.activation)()


layers = SimpleNamespace(Dense=Dense, Flatten=Flatten, Activation=Activation, Input=Input)


# --- optimizers: specs bound to parameters when the model is built --------------------------------
@dataclass
class OptimizerSpec:
    """An optimizer waiting for parameters (Keras builds the model after compile)."""

    factory: Callable[..., _optim.Optimizer]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def bind(self, params: list[Tensor]) -> _optim.Optimizer:
        return self.factory(params, **self.kwargs)


def Adam(learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7) -> OptimizerSpec:
    """Keras' Adam defaults (epsilon 1e-7)."""
    return OptimizerSpec(_optim.Adam, {"lr": learning_rate, "betas": (beta_1, beta_2),
                                       "eps": epsilon})


def AdamW(learning_rate: float = 1e-3, weight_decay: float = 0.004, beta_1: float = 0.9,
          beta_2: float = 0.999, epsilon: float = 1e-7) -> OptimizerSpec:
    return OptimizerSpec(_optim.AdamW, {"lr": learning_rate, "betas": (beta_1, beta_2),
                                        "eps": epsilon, "weight_decay": weight_decay})


def SGD(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False
        ) -> OptimizerSpec:
    return OptimizerSpec(_optim.SGD, {"lr": learning_rate, "momentum": momentum,
                                      "nesterov": nesterov})


def RMSprop(learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7) -> OptimizerSpec:
    return OptimizerSpec(_optim.RMSprop, {"lr": learning_rate, "alpha": rho, "eps": epsilon})


optimizers = SimpleNamespace(Adam=Adam, AdamW=AdamW, SGD=SGD, RMSprop=RMSprop)
_OPTIMIZER_NAMES = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}


# --- losses and metrics --------------------------------------------------------------------------
@dataclass
class SparseCategoricalCrossentropy:
    """Integer labels; from_logits=False expects probabilities (a softmax output)."""

    from_logits: bool = False
    name: str = "sparse_categorical_crossentropy"


@dataclass
class MeanSquaredError:
    name: str = "mean_squared_error"


losses = SimpleNamespace(SparseCategoricalCrossentropy=SparseCategoricalCrossentropy,
                         MeanSquaredError=MeanSquaredError)
_LOSS_NAMES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
_METRICS = ("accuracy", "mse", "mae")


class History:
    """What fit returns: `history.history["loss"]` etc., one value per epoch."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)


# --- the model -----------------------------------------------------------------------------------
class Sequential(Module):
    """A stack of Keras layers with compile / fit / evaluate / predict."""

    def __init__(self, layers: Sequence[Layer | Input] | None = None, name: str = "sequential"
                 ) -> None:
        super().__init__()
        self.name = name
        self.layers: list[Layer] = []
        self.input_shape: tuple[int, ...] | None = None
        self.optimizer: _optim.Optimizer | None = None
        self._optimizer_spec: OptimizerSpec | _optim.Optimizer | None = None
        self.loss: Any = None
        self.metrics: list[str] = []
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
        shape = tuple(input_shape)
        self.input_shape = shape
        for layer in self.layers:
            shape = layer.build(shape) if not layer.built else _output_shape(layer, shape)
        self.output_shape = shape

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self.built:
            if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(f"model expects samples of shape {self.input_shape}, "
                                 f"got data of shape {x.shape}")
            self.build(x.shape[1:])
        if self._optimizer_spec is not None and self.optimizer is None:
            spec = self._optimizer_spec
            self.optimizer = spec.bind(self.parameters()) if isinstance(spec, OptimizerSpec) \
                else spec

    # --- compile -------------------------------------------------------------------------------
    def compile(self, optimizer: str | OptimizerSpec | _optim.Optimizer = "adam",
                loss: str | Any = "sparse_categorical_crossentropy",
                metrics: Sequence[str] | None = None) -> None:
        if isinstance(optimizer, str):
            if optimizer.lower() not in _OPTIMIZER_NAMES:
                raise ValueError(f"compile: unknown optimizer {optimizer!r}; "
                                 f"choose from {sorted(_OPTIMIZER_NAMES)}")
            optimizer = _OPTIMIZER_NAMES[optimizer.lower()]()
        if isinstance(loss, str):
            if loss not in _LOSS_NAMES:
                raise ValueError(f"compile: unknown loss {loss!r}; "
                                 f"choose from {sorted(_LOSS_NAMES)}")
            loss = _LOSS_NAMES[loss]()
        for m in metrics or []:
            if m not in _METRICS:
                raise ValueError(f"compile: unknown metric {m!r}; choose from {list(_METRICS)}")
        self._optimizer_spec = optimizer
        self.optimizer = None
        self.loss = loss
        self.metrics = list(metrics or [])
        if self.input_shape is not None and not self.built:
            self.build(self.input_shape)
        if self.built:
            self._ensure_built(np.zeros((1, *self.input_shape)))  # type: ignore[misc]

    # --- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        for layer in self.layers[:-1]:
            x = layer(x)
        return self.layers[-1](x, logits=logits)

    def _fused_softmax_loss(self) -> bool:
        last = self.layers[-1]
        return (isinstance(self.loss, SparseCategoricalCrossentropy)
                and getattr(last, "activation", None) == "softmax")

    def _loss(self, x: Tensor, y: np.ndarray) -> tuple[Tensor, Tensor]:
        """(loss, output used for metrics) for one batch."""
        loss_fn = self.loss
        if isinstance(loss_fn, SparseCategoricalCrossentropy):
            if self._fused_softmax_loss() or loss_fn.from_logits:
                out = self.forward(x, logits=True)
                return F.cross_entropy(out, y), out
            probs = self.forward(x)
            _check_labels(y, probs.shape[-1], "sparse_categorical_crossentropy")
            picked = probs[np.arange(len(y)), y].clip(1e-7, 1.0)
            return -(picked.log().mean()), probs
        if isinstance(loss_fn, MeanSquaredError):
            out = self.forward(x)
            return F.mse_loss(out, y.reshape(out.shape).astype(out.dtype)), out
        raise RuntimeError("call compile() before fit() or evaluate()")

    def _metric_sums(self, out: np.ndarray, y: np.ndarray) -> dict[str, float]:
        sums = {}
        for m in self.metrics:
            if m == "accuracy":
                pred = out.argmax(-1) if out.ndim > 1 and out.shape[-1] > 1 else (out > 0.5)
                # a per-sample mean, so (B, T) labels (one per time step) still give a fraction
                per_sample = max(int(np.prod(y.shape[1:])), 1)
                sums[m] = float((pred.reshape(y.shape) == y).sum()) / per_sample
            elif m == "mse":
                sq = (out.reshape(y.shape) - y) ** 2
                sums[m] = float(sq.mean(axis=tuple(range(1, y.ndim))).sum() if y.ndim > 1
                                else sq.sum())
            elif m == "mae":
                sums[m] = float(np.abs(out.reshape(y.shape) - y).sum() / max(y[0].size, 1))
        return sums

    def _prepare(self, x: Any, y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
        dtype = self.parameters()[0].dtype if self.built else np.dtype(np.float32)
        if x.dtype != dtype:
            x = x.astype(dtype)
        if y is None:
            return x, None
        y = np.asarray(y.numpy() if isinstance(y, Tensor) else y)
        if len(x) != len(y):
            raise ValueError(f"x and y hold different numbers of samples: {len(x)} and {len(y)}")
        if isinstance(self.loss, SparseCategoricalCrossentropy):
            if y.dtype.kind not in "iu":
                if not np.all(np.mod(y, 1) == 0):
                    raise ValueError("sparse_categorical_crossentropy needs integer labels")
                y = y.astype(np.int64)
            if self.built:  # every path (fused, from_logits, probabilities): before any step
                _check_labels(y, self._sample_output_shape(x.shape[1:])[-1],
                              "sparse_categorical_crossentropy")
        elif y.dtype != x.dtype:
            y = y.astype(x.dtype)
        return x, y

    def _sample_output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape of one sample of `sample_shape` (no batch axis)."""
        shape = tuple(sample_shape)
        for layer in self.layers:
            shape = _output_shape(layer, shape)
        return shape

    # --- fit / evaluate / predict ---------------------------------------------------------------
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, verbose: int = 1, distributed: bool = False,
            initial_epoch: int = 0, checkpoint: train.Checkpointing | None = None,
            resume: Any = None) -> History:
        """Train; returns a History with loss, metrics and val_* per epoch (Keras semantics:
        validation_split takes the last fraction of x and y, before shuffling).

        `distributed=True`: data-parallel over the MPI ranks (`train.fit`'s `distributed`).
        `batch_size` stays the global batch, split evenly over the ranks (it must divide); each
        epoch a `DistributedSampler` deals each rank every world-th sample of one shared
        permutation, so the ranks' step-j batches together are the one-process step-j batch.
        Every rank validates on the whole validation set; only rank 0 shows progress.
        `initial_epoch`: resume at that epoch (Keras' argument; epochs counts from 0, so
        `fit(..., epochs=5, initial_epoch=3)` trains epochs 4 and 5). `checkpoint` and `resume`
        are `train.fit`'s: a resumable checkpoint (weights, optimizer state, RNG states, the
        loop's position) written every N epochs, at the end and on Ctrl-C / SIGTERM, and the
        checkpoint to continue from, bit for bit."""
        if self.loss is None:
            raise RuntimeError("call compile() before fit()")
        if epochs < 0 or batch_size < 1:
            raise ValueError(f"fit: epochs must be >= 0 and batch_size >= 1, got {epochs}, "
                             f"{batch_size}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        x_arr, _ = self._prepare(x)
        self._ensure_built(x_arr)
        x_arr, y_arr = self._prepare(x, y)
        assert y_arr is not None and self.optimizer is not None
        if len(x_arr) == 0:
            raise ValueError(f"fit: x holds no samples (shape {x_arr.shape}); nothing to train on")
        if validation_split and validation_data is None:
            n_val = int(len(x_arr) * validation_split)
            if n_val == 0 or n_val == len(x_arr):  # Keras refuses such a split too
                raise ValueError(
                    f"fit: validation_split={validation_split} of {len(x_arr)} samples leaves "
                    f"{n_val} for validation and {len(x_arr) - n_val} for training; both need "
                    "at least one: give more data or another validation_split")
            validation_data = (x_arr[len(x_arr) - n_val:], y_arr[len(y_arr) - n_val:])
            x_arr, y_arr = x_arr[: len(x_arr) - n_val], y_arr[: len(y_arr) - n_val]
        elif validation_data is not None:  # checked now, not after the first epoch's training
            val_x, val_y = self._prepare(*validation_data)
            if len(val_x) == 0:
                raise ValueError("fit: validation_data holds no samples; pass None to skip "
                                 "validation")
            validation_data = (val_x, val_y)
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
                yield x_arr[idx], y_arr[idx]

        def loss_fn(model: Module, batch: Any) -> tuple[Tensor, Tensor]:
            return self._loss(batch[0], batch[1].numpy())

        def metric_sums(out: Tensor, batch: Any) -> dict[str, float]:
            return self._metric_sums(out.numpy(), batch[1].numpy())

        def validate(model: Module) -> dict[str, float]:
            assert validation_data is not None
            val = self.evaluate(*validation_data, batch_size=max(batch_size, 256), verbose=0,
                                return_dict=True)
            return {f"val_{k}": v for k, v in val.items()}

        loop_history = train.fit(
            self, batches, loss_fn, self.optimizer, epochs=epochs, batch_metrics=metric_sums,
            evaluate=validate if validation_data is not None else None,
            callbacks=[_ProgressCallback(steps, epochs, verbose)], distributed=distributed,
            initial_epoch=initial_epoch, checkpoint=checkpoint, resume=resume)
        history = History()
        for epoch, logs in enumerate(loop_history.epochs, start=initial_epoch):
            history.append(epoch, {k: v for k, v in logs.items() if k != "seconds"})
        self.eval()
        return history

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

    def evaluate(self, x: Any, y: Any, batch_size: int = 256, verbose: int = 1,
                 return_dict: bool = False) -> Any:
        """Loss and metrics over (x, y); a list [loss, *metrics] like Keras, or a dict."""
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
        totals: dict[str, float] = {"loss": 0.0}
        with no_grad():
            for start in range(0, len(x_arr), batch_size):
                xb, yb = x_arr[start:start + batch_size], y_arr[start:start + batch_size]
                loss, out = self._loss(Tensor(xb), yb)
                totals["loss"] += float(loss.item()) * len(xb)
                for k, v in self._metric_sums(out.data, yb).items():
                    totals[k] = totals.get(k, 0.0) + v
        logs = {k: v / max(len(x_arr), 1) for k, v in totals.items()}
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs if return_dict else [logs["loss"], *[logs[m] for m in self.metrics]]

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Outputs for x (probabilities after a softmax layer) as a NumPy array; no samples give
        an empty array of shape (0, *output shape)."""
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
        x_arr, _ = self._prepare(x)
        self._ensure_built(x_arr)
        self.eval()
        outs = []
        with no_grad():
            for start in range(0, len(x_arr), batch_size):
                outs.append(self.forward(Tensor(x_arr[start:start + batch_size])).numpy())
        if not outs:
            return np.zeros((0, *self._sample_output_shape(x_arr.shape[1:])), dtype=x_arr.dtype)
        return np.concatenate(outs)

    # --- persistence and display ------------------------------------------------------------------
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

    def summary(self, print_fn: Callable[[str], None] | None = None) -> str:
        rows = [f'Model: "{self.name}"', f"{'Layer':<28}{'Output shape':<20}{'Param #':>10}"]
        shape = self.input_shape
        for layer in self.layers:
            if shape is not None:
                shape = _output_shape(layer, shape)
            count = layer.num_parameters() if layer.built else 0
            rows.append(f"{type(layer).__name__:<28}{str((None, *shape)) if shape else '?':<20}"
                        f"{count:>10,}")
        rows.append(f"Total params: {self.num_parameters():,}")
        text = "\n".join(rows)
        (print_fn or print)(text)
        return text


def _check_labels(y: np.ndarray, classes: int, where: str) -> None:
    """Integer class labels must lie in [0, classes): -1 would index the last class."""
    if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{where}: labels must lie in [0, {classes}); got min {int(y.min())}, "
                         f"max {int(y.max())}")


def _output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(layer, Dense):
        return (*shape[:-1], layer.units)
    if isinstance(layer, Flatten):
        return (int(np.prod(shape)),)
    return shape


class Progbar:
    """Keras-like progress: a live bar on a terminal, one line per epoch otherwise."""

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
