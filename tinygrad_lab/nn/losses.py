"""Loss functions (torch.nn.functional's names, arguments and reductions) and their layers.

Built from Tensor ops only; index and mask arrays come from the tensor's own backend (`xp`), so
every loss runs unchanged on CuPy. One difference from PyTorch, kept for the models here: the
class axis of `cross_entropy` / `nll_loss` is the *last* one (logits (..., C), labels (...)),
not axis 1.

Reductions are torch's: "mean" over no elements is nan; a class-weighted "mean" divides by the
sum of the picked weights (torch's weighted mean), not by the number of samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.nn.module import Module
from tinygrad_lab.ops.nn import SoftmaxCrossEntropy
from tinygrad_lab.tensor import Tensor, where

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(name: str, reduction: str, also: tuple[str, ...] = ()) -> None:
    if reduction not in _REDUCTIONS + also:
        choices = ", ".join(repr(r) for r in _REDUCTIONS + also)
        raise ValueError(f"{name}: reduction must be one of {choices}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _like(name: str, what: str, x: Tensor, value: Any) -> Tensor:
    """`value` as a tensor beside x, of x's shape exactly (no silent broadcasting)."""
    t = value if isinstance(value, Tensor) else x._const(value)
    if t.dtype.kind != "f":
        t = t.astype(x.dtype)
    if t.shape != x.shape:
        raise ValueError(f"{name}: {what} shape {t.shape} != input shape {x.shape}")
    return t


# --- class-index losses -------------------------------------------------------------------------
def _labels(name: str, scores: Tensor, labels: Any, ignore_index: int) -> tuple[Any, bool]:
    """The labels as an integer array on scores' device, checked; and whether any equals
    ignore_index.

    Why one value is read back for labels already on a device, and not none: CuPy's fancy
    indexing wraps an out-of-range label around and answers a plausible loss (silent garbage),
    and a check that reads nothing back cannot raise. So one fused pass on the device codes
    each label (0 valid, 1 ignored, 2 out of range) and its maximum is the one value read: the
    range check and the ignore_index test in a single read, the whole labels never copied.
    Host labels are checked where they are, before the one copy that moves them."""
    classes = scores.shape[-1]
    raw = labels.data if isinstance(labels, Tensor) else labels
    on_host = (type(raw) is np.ndarray or isinstance(raw, np.generic)
               or not hasattr(raw, "dtype"))  # NumPy data, lists, Python ints
    host = np.asarray(raw) if on_host else None
    data = None if on_host else scores._backend.asarray(raw)  # a no-op for its own arrays
    held = host if host is not None else data
    if held.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers, got {held.dtype}")
    if tuple(held.shape) != scores.shape[:-1]:
        raise ValueError(
            f"{name}: labels shape {tuple(held.shape)} does not match logits shape "
            f"{scores.shape} (expected {scores.shape[:-1]})"
        )
    if host is not None:
        ignored = host == ignore_index
        bad = ~ignored & ((host < 0) | (host >= classes))
        worst = 2 if bad.any() else int(ignored.any())
    elif data.size:
        xp = scores._backend.xp
        ignored = data == ignore_index
        code = xp.where(ignored, 1, xp.where((data < 0) | (data >= classes), 2, 0))
        worst = int(code.max())  # the one read back
    else:
        worst = 0
    if worst == 2:
        values = host if host is not None else scores._backend.to_numpy(data)  # failing anyway
        bad = (values != ignore_index) & ((values < 0) | (values >= classes))
        raise ValueError(f"{name}: labels must lie in [0, {classes}) or equal ignore_index "
                         f"({ignore_index}); got {int(values[bad].reshape(-1)[0])}")
    if data is None:
        data = scores._backend.asarray(host)
    return data, worst == 1


def _class_weight(name: str, scores: Tensor, weight: Any) -> Tensor | None:
    if weight is None:
        return None
    w = weight if isinstance(weight, Tensor) else scores._const(weight)
    if w.shape != scores.shape[-1:]:
        raise ValueError(f"{name}: weight shape {w.shape} != ({scores.shape[-1]},) (one per "
                         "class)")
    return w.astype(scores.dtype)


def _nll(name: str, logp: Tensor, data: Any, weight: Any, ignore_index: int,
         reduction: str, label_smoothing: float = 0.0) -> Tensor:
    """torch's nll_loss (and cross_entropy's smoothing term) over log-probabilities (..., C)
    and checked integer labels `data` (...) on their device."""
    xp = logp._backend.xp
    classes = logp.shape[-1]
    out_shape = logp.shape[:-1]
    flat = logp.reshape(-1, classes)  # (M, C)
    flat_labels = data.reshape(-1)
    valid = flat_labels != ignore_index
    safe = xp.where(valid, flat_labels, 0)
    rows = xp.arange(flat.shape[0])
    picked = flat[rows, safe]  # (M,)
    keep = Tensor._wrap(valid.astype(logp.dtype), logp._backend, logp.device, False)
    w = _class_weight(name, logp, weight)
    w_sample = keep if w is None else w[safe] * keep  # (M,): 0 where ignored
    loss = -picked * w_sample
    denominator = w_sample.sum()
    if label_smoothing:
        smooth = -(flat if w is None else flat * w).sum(-1) * keep  # (M,)
        if reduction == "mean":
            return ((1 - label_smoothing) * loss.sum() / denominator
                    + label_smoothing / classes * smooth.sum() / denominator)
        loss = (1 - label_smoothing) * loss + label_smoothing / classes * smooth
    if reduction == "mean":
        return loss.sum() / denominator  # 0 / 0 = nan with nothing to average, as torch
    if reduction == "sum":
        return loss.sum()
    return loss.reshape(*out_shape)


def cross_entropy(logits: Tensor, labels: Any, weight: Any = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy from logits (..., C): integer labels (...) or class probabilities
    of logits' shape (torch.nn.functional.cross_entropy, class axis last).

    `weight` (C,) rescales each class; labels equal to `ignore_index` count for nothing;
    `label_smoothing` mixes the target with the uniform distribution. The plain case (integer
    labels, mean, no weight, smoothing or ignored label) runs one fused node: loss and gradient
    in a single pass.
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    if logits.ndim == 0:
        raise ValueError("cross_entropy: logits need a class axis, got a 0-d tensor")
    held = getattr(labels, "dtype", None)  # a Tensor's, an array's (NumPy or CuPy)
    kind = np.dtype(held).kind if held is not None else np.asarray(labels).dtype.kind
    if kind == "f":  # class probabilities
        if tuple(np.shape(labels) if held is None else labels.shape) != logits.shape:
            raise TypeError(f"cross_entropy: labels must be integers of shape "
                            f"{logits.shape[:-1]} or class probabilities of logits' shape "
                            f"{logits.shape}; got floats of shape {tuple(np.shape(labels))}")
        return _soft_cross_entropy(logits, labels, weight, reduction, label_smoothing)
    classes = logits.shape[-1]
    data, ignored = _labels("cross_entropy", logits, labels, ignore_index)
    if reduction == "mean" and weight is None and not label_smoothing and logits.size and \
            not ignored:
        flat = logits.reshape(-1, classes) if logits.ndim != 2 else logits  # (M, C)
        return SoftmaxCrossEntropy.apply(flat, labels=data.reshape(-1))
    return _nll("cross_entropy", logits.log_softmax(-1), data, weight, ignore_index,
                reduction, label_smoothing)


def _soft_cross_entropy(logits: Tensor, probs: Any, weight: Any, reduction: str,
                        label_smoothing: float) -> Tensor:
    target = _like("cross_entropy", "probability target", logits, probs)
    classes = logits.shape[-1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    logp = logits.log_softmax(-1)
    w = _class_weight("cross_entropy", logits, weight)
    loss = -(logp * target if w is None else logp * target * w).sum(-1)  # (...)
    if reduction == "mean":  # per sample, whatever the weights (torch's)
        count = loss.size
        return loss.sum() * (1.0 / count if count else float("nan"))
    return _reduce(loss, reduction)


def nll_loss(log_probs: Tensor, labels: Any, weight: Any = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer labels (...) under log-probabilities (..., C), with
    torch's class weights, ignore_index and weighted mean."""
    _check_reduction("nll_loss", reduction)
    if log_probs.ndim == 0:
        raise ValueError("nll_loss: log_probs need a class axis, got a 0-d tensor")
    data, _ = _labels("nll_loss", log_probs, labels, ignore_index)
    return _nll("nll_loss", log_probs, data, weight, ignore_index, reduction)


# --- regression losses --------------------------------------------------------------------------
def mse_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Squared error, reduced; both arguments are differentiated (torch's). Shapes must match
    exactly (no silent broadcasting)."""
    _check_reduction("mse_loss", reduction)
    diff = prediction - _like("mse_loss", "target", prediction, target)
    return _reduce(diff * diff, reduction)


def l1_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Absolute error |x - y|, reduced (gradient sign(x - y), 0 at a tie as torch)."""
    _check_reduction("l1_loss", reduction)
    return _reduce((prediction - _like("l1_loss", "target", prediction, target)).abs(),
                   reduction)


def smooth_l1_loss(prediction: Tensor, target: Any, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d**2 / beta where |d| < beta, else |d| - 0.5 beta (d = x - y); beta = 0 is l1."""
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    d = (prediction - _like("smooth_l1_loss", "target", prediction, target)).abs()
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def huber_loss(prediction: Tensor, target: Any, reduction: str = "mean",
               delta: float = 1.0) -> Tensor:
    """0.5 d**2 where |d| < delta, else delta (|d| - 0.5 delta): smooth_l1 times delta."""
    _check_reduction("huber_loss", reduction)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    d = (prediction - _like("huber_loss", "target", prediction, target)).abs()
    return _reduce(where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


# --- probabilistic losses -----------------------------------------------------------------------
def binary_cross_entropy(probs: Tensor, target: Any, weight: Any = None,
                         reduction: str = "mean") -> Tensor:
    """-w (y log p + (1 - y) log(1 - p)), each log clamped at -100 as torch's (so p = 0 or 1
    gives a finite loss). Prefer binary_cross_entropy_with_logits: it is stable."""
    _check_reduction("binary_cross_entropy", reduction)
    y = _like("binary_cross_entropy", "target", probs, target)
    log_p = probs.log().maximum(-100.0)
    log_q = (1 - probs).log().maximum(-100.0)
    loss = -(y * log_p + (1 - y) * log_q)
    if weight is not None:
        loss = loss * (weight if isinstance(weight, Tensor) else probs._const(weight))
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(logits: Tensor, target: Any, weight: Any = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """BCE of sigmoid(x), stable for any x: (1 - y) x + (1 + (pw - 1) y) softplus(-x), times
    weight. `pos_weight` (broadcast along the last axis) weighs the positive term."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    y = _like("binary_cross_entropy_with_logits", "target", logits, target)
    # softplus(-x) = max(-x, 0) + log1p(exp(-|x|)): no threshold, torch's formula exactly
    soft = (-logits).softplus(threshold=float("inf"))
    if pos_weight is None:
        loss = (1 - y) * logits + soft
    else:
        pw = pos_weight if isinstance(pos_weight, Tensor) else logits._const(pos_weight)
        loss = (1 - y) * logits + ((pw - 1) * y + 1) * soft
    if weight is not None:
        loss = loss * (weight if isinstance(weight, Tensor) else logits._const(weight))
    return _reduce(loss, reduction)


def kl_div(log_probs: Tensor, target: Any, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """KL(target || exp(input)) pointwise: y (log y - x), 0 where y = 0 (or exp(y) (y - x)
    with log_target). "batchmean" divides the sum by the batch size (the true KL); "mean", the
    default as torch's, by the number of elements."""
    _check_reduction("kl_div", reduction, also=("batchmean",))
    y = _like("kl_div", "target", log_probs, target)
    if log_target:
        loss = y.exp() * (y - log_probs)
    else:
        positive = y > 0
        safe = where(positive, y, 1.0)  # log of 1 where y = 0: the term is 0 there (xlogy)
        loss = where(positive, y * safe.log(), 0.0) - y * log_probs
    if reduction == "batchmean":
        batch = log_probs.shape[0] if log_probs.ndim else 1
        return loss.sum() * (1.0 / batch if batch else float("nan"))
    return _reduce(loss, reduction)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 x2) / (max(|x1|, eps) max(|x2|, eps)) along `dim` (broadcasting x1 against x2)."""
    x2 = x1._const(x2)
    n1 = (x1 * x1).sum(dim, keepdims=True).sqrt().maximum(eps)
    n2 = (x2 * x2).sum(dim, keepdims=True).sqrt().maximum(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


# --- layers ------------------------------------------------------------------------------------
class _Loss(Module):
    """A loss as a layer: `loss(input, target)` calls the functional with the stored options."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Any) -> Tensor:
        return cross_entropy(logits, labels, self.weight, self.ignore_index, self.reduction,
                             self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight: Any = None, ignore_index: int = -100,
                 reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, log_probs: Tensor, labels: Any) -> Tensor:
        return nll_loss(log_probs, labels, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    def forward(self, prediction: Tensor, target: Any) -> Tensor:
        return mse_loss(prediction, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, prediction: Tensor, target: Any) -> Tensor:
        return l1_loss(prediction, target, self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = beta

    def forward(self, prediction: Tensor, target: Any) -> Tensor:
        return smooth_l1_loss(prediction, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def forward(self, prediction: Tensor, target: Any) -> Tensor:
        return huber_loss(prediction, target, self.reduction, self.delta)


class BCELoss(_Loss):
    def __init__(self, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = weight

    def forward(self, probs: Tensor, target: Any) -> Tensor:
        return binary_cross_entropy(probs, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight: Any = None, reduction: str = "mean",
                 pos_weight: Any = None) -> None:
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return binary_cross_entropy_with_logits(logits, target, self.weight, self.reduction,
                                                self.pos_weight)


class KLDivLoss(_Loss):
    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, log_probs: Tensor, target: Any) -> Tensor:
        return kl_div(log_probs, target, self.reduction, self.log_target)


class CosineSimilarity(Module):
    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return cosine_similarity(x1, x2, self.dim, self.eps)


__all__ = [
    "BCELoss", "BCEWithLogitsLoss", "CosineSimilarity", "CrossEntropyLoss", "HuberLoss",
    "KLDivLoss", "L1Loss", "MSELoss", "NLLLoss", "SmoothL1Loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cosine_similarity", "cross_entropy", "huber_loss",
    "kl_div", "l1_loss", "mse_loss", "nll_loss", "smooth_l1_loss",
]
