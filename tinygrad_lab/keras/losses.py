"""Keras' losses by class and name. Each gives one loss per sample (`per_sample`), so per-sample
weights (`class_weight`) and the mean are the model's; `__call__(y_true, y_pred)` is the mean.

`logits=True` in `per_sample` means y_pred holds logits: either the user said `from_logits`, or
the model fused a final softmax into the loss (what Keras does internally for stability)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinygrad_lab.nn import functional as F
from tinygrad_lab.tensor import Tensor

_EPS = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1 - eps]


def _labels(y: Any) -> np.ndarray:
    return np.asarray(y.numpy() if isinstance(y, Tensor) else y)


def _targets(y_true: Any, y_pred: Tensor) -> Tensor:
    """Dense targets as a constant of the output's dtype and shape."""
    return y_pred._const(_labels(y_true).astype(y_pred.dtype).reshape(y_pred.shape))


def _mean_last(per: Tensor) -> Tensor:
    """Keras' per-sample value: the mean over the last axis, unless the output is (B,)."""
    return per.mean(-1) if per.ndim > 1 else per


class Loss:
    """Base: `per_sample(y_pred, y_true, logits)` -> a (B,) or (B, ...) Tensor."""

    name = "loss"
    from_logits = False
    sparse = False  # integer class labels (one per sample or per time step)
    softmax_fusable = False  # a final softmax may be folded into this loss

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Tensor) -> Tensor:
        return self.per_sample(y_pred, y_true, self.from_logits).mean()

    def get_config(self) -> dict[str, Any]:
        return asdict(self) if hasattr(self, "__dataclass_fields__") else {}


@dataclass
class SparseCategoricalCrossentropy(Loss):
    """Integer labels; from_logits=False expects probabilities (a softmax output)."""

    from_logits: bool = False
    name: str = "sparse_categorical_crossentropy"
    sparse = True
    softmax_fusable = True

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _labels(y_true).astype(np.int64)
        if logits:
            return F.cross_entropy(y_pred, y, reduction="none")
        classes = y_pred.shape[-1]
        flat = y_pred.reshape(-1, classes)  # (B*, C)
        picked = flat[np.arange(flat.shape[0]), y.reshape(-1)].clip(_EPS, 1.0)
        return -(picked.log()).reshape(*y_pred.shape[:-1])


@dataclass
class CategoricalCrossentropy(Loss):
    """One-hot (or soft) labels of the output's shape; probabilities unless from_logits."""

    from_logits: bool = False
    name: str = "categorical_crossentropy"
    softmax_fusable = True

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _targets(y_true, y_pred)
        if logits:
            return -(y * y_pred.log_softmax(-1)).sum(-1)
        probs = y_pred / y_pred.sum(-1, keepdims=True)  # Keras renormalises too
        return -(y * probs.clip(_EPS, 1.0).log()).sum(-1)


@dataclass
class BinaryCrossentropy(Loss):
    """Targets in [0, 1] of the output's shape; the mean over the last axis per sample."""

    from_logits: bool = False
    name: str = "binary_crossentropy"

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _targets(y_true, y_pred)
        if logits:  # max(x, 0) - x y + log(1 + exp(-|x|)): never overflows
            per = y_pred.relu() - y_pred * y + ((-y_pred.abs()).exp() + 1.0).log()
        else:
            p = y_pred.clip(_EPS, 1.0 - _EPS)
            per = -(y * p.log() + (1.0 - y) * (1.0 - p).log())
        return _mean_last(per)


@dataclass
class MeanSquaredError(Loss):
    name: str = "mean_squared_error"

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _targets(y_true, y_pred)
        return _mean_last((y_pred - y).square())


@dataclass
class MeanAbsoluteError(Loss):
    name: str = "mean_absolute_error"

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _targets(y_true, y_pred)
        return _mean_last((y_pred - y).abs())


class LossFunction(Loss):
    """A loss given as a function `fn(y_true, y_pred) -> Tensor` (per sample, or already a
    mean), as Keras accepts in compile; y_true arrives as a Tensor of y_pred's dtype."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.name = fn, getattr(fn, "__name__", "loss")

    def per_sample(self, y_pred: Tensor, y_true: Any, logits: bool) -> Tensor:
        y = _labels(y_true)
        value = self.fn(y_pred._const(y.astype(y_pred.dtype)), y_pred)
        if not isinstance(value, Tensor):
            raise TypeError(f"loss function {self.name!r} must return a Tensor, got "
                            f"{type(value).__name__}")
        return value


NAMES: dict[str, type[Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
}
_CLASSES: dict[str, type[Loss]] = {cls.__name__: cls for cls in NAMES.values()}


def get(identifier: Any) -> Loss:
    """A Loss, a name in NAMES, or a config {"class_name", "config"} as `serialize` writes."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in NAMES:
            raise ValueError(f"unknown loss {identifier!r}; choose from {sorted(NAMES)}")
        return NAMES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunction(identifier)
    raise TypeError(f"loss must be a name or a keras loss, got {identifier!r}")


def serialize(loss: Loss) -> dict[str, Any]:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "Loss", "LossFunction",
           "MeanAbsoluteError",
           "MeanSquaredError", "SparseCategoricalCrossentropy", "get", "serialize"]
