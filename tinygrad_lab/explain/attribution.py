"""Attributions of a class score to the input elements, for a model mapping a batch (N, ...) to
scores (N, classes): logits, or probabilities (the Keras front's softmax output).

`target` picks the class per sample: None (the model's own prediction), an int (the same class
for every sample) or one int per sample. Each method returns an array of the inputs' shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from tinygrad_lab.function import no_grad
from tinygrad_lab.tensor import Tensor

Model = Callable[[Tensor], Tensor]


@contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """Eval mode (no dropout, running batch-norm statistics) for the duration, then each
    submodule's own mode back; plain callables pass through."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    modes = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode


def _device(model: Any) -> str:
    params = model.parameters() if hasattr(model, "parameters") else []
    return params[0].device if params else "cpu"


def _check(inputs: Any) -> np.ndarray:
    x = np.asarray(inputs)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"explain: inputs need a batch axis with at least one sample, got shape "
                         f"{x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"explain: inputs must be floating point, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("explain: inputs hold nan or inf")
    return x


def _scores(model: Model, x: np.ndarray, device: str) -> np.ndarray:
    with no_grad():
        out = model(Tensor(x, device=device)).numpy()
    if out.ndim != 2:
        raise ValueError(f"explain: the model must map (N, ...) to scores (N, classes), got "
                         f"output shape {out.shape}")
    return out


def _targets(target: Any, scores: np.ndarray) -> np.ndarray:
    n, classes = scores.shape
    if target is None:
        return scores.argmax(axis=1)
    t = np.broadcast_to(np.asarray(target), (n,)).astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= classes):
        raise ValueError(f"explain: target classes must lie in [0, {classes}), got {target}")
    return t


def _gradients(model: Model, x: np.ndarray, targets: np.ndarray, device: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """d score[i, targets[i]] / d x[i] for every sample (one backward: samples are
    independent in eval mode), and the target scores."""
    leaf = Tensor(x, requires_grad=True, device=device)
    out = model(leaf)
    picked = out[np.arange(len(targets)), targets]  # (N,)
    picked.sum().backward()
    return leaf.grad.numpy(), picked.numpy()


def saliency(model: Model, inputs: Any, target: Any = None, absolute: bool = True) -> np.ndarray:
    """The gradient of the target score with respect to each input element; its magnitude by
    default (Simonyan et al.: where a small change moves the score most)."""
    x = _check(inputs)
    device = _device(model)
    with _evaluating(model):
        targets = _targets(target, _scores(model, x, device))
        grads, _ = _gradients(model, x, targets, device)
    return np.abs(grads) if absolute else grads


def gradient_x_input(model: Model, inputs: Any, target: Any = None) -> np.ndarray:
    """gradient * input: a first-order estimate of each element's contribution against an
    all-zero input (exact for a linear model)."""
    x = _check(inputs)
    device = _device(model)
    with _evaluating(model):
        targets = _targets(target, _scores(model, x, device))
        grads, _ = _gradients(model, x, targets, device)
    return grads * x


class Attribution(NamedTuple):
    """Integrated gradients of each sample, and how far they are from completeness:
    `delta[i] = attributions[i].sum() - (score(x[i]) - score(baseline[i]))`, which shrinks
    toward 0 as `steps` grows (Sundararajan et al., Proposition 1)."""

    attributions: np.ndarray
    delta: np.ndarray
    targets: np.ndarray


def integrated_gradients(model: Model, inputs: Any, target: Any = None, baseline: Any = None,
                         steps: int = 64, batch_size: int = 256) -> Attribution:
    """(x - baseline) times the average gradient along the straight path from the baseline
    (default all zeros: a black image) to x, by the trapezoid rule over `steps` intervals.
    Unlike a plain gradient, the attributions add up to the score's change (completeness)."""
    if steps < 1:
        raise ValueError(f"integrated_gradients: steps must be >= 1, got {steps}")
    x = _check(inputs)
    base = np.zeros_like(x) if baseline is None else np.broadcast_to(
        np.asarray(baseline, dtype=x.dtype), x.shape)
    device = _device(model)
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] = 0.5 / steps  # trapezoid rule
    with _evaluating(model):
        targets = _targets(target, _scores(model, x, device))
        total = np.zeros(x.shape, dtype=np.float64)
        gaps = np.zeros(len(x))
        for i in range(len(x)):
            along = alphas.reshape(-1, *[1] * (x.ndim - 1))  # (steps + 1, 1, ...)
            path = (base[i] + along * (x[i] - base[i])).astype(x.dtype)  # (steps + 1, ...)
            grads = np.empty(path.shape)
            scores = np.empty(len(path))
            for j in range(0, len(path), batch_size):
                chunk = path[j:j + batch_size]
                grads[j:j + len(chunk)], scores[j:j + len(chunk)] = _gradients(
                    model, chunk, np.full(len(chunk), targets[i]), device)
            total[i] = np.tensordot(weights, grads, axes=1) * (x[i] - base[i])
            gaps[i] = total[i].sum() - (scores[-1] - scores[0])
    return Attribution(total.astype(x.dtype), gaps, targets)


def occlusion(model: Model, inputs: Any, target: Any = None, window: int = 4, stride: int = 2,
              fill: float = 0.0, batch_size: int = 256) -> np.ndarray:
    """How much the target score drops when a window x window patch of the image is replaced
    by `fill`, averaged over the patches covering each pixel: a model-agnostic map (no
    gradients) of what the prediction needs. Inputs (N, C, H, W) or (N, H, W); returns (N, H, W)."""
    x = _check(inputs)
    if x.ndim not in (3, 4):
        raise ValueError(f"occlusion: images need (N, C, H, W) or (N, H, W), got {x.shape}")
    if window < 1 or stride < 1:
        raise ValueError(f"occlusion: window and stride must be >= 1, got {window}, {stride}")
    h, w = x.shape[-2:]
    device = _device(model)
    tops = sorted({*range(0, max(h - window, 0) + 1, stride), max(h - window, 0)})
    lefts = sorted({*range(0, max(w - window, 0) + 1, stride), max(w - window, 0)})
    maps = np.zeros((len(x), h, w))
    with _evaluating(model):
        base_scores = _scores(model, x, device)
        targets = _targets(target, base_scores)
        for i in range(len(x)):
            patched, spots = [], []
            for top in tops:
                for left in lefts:
                    p = x[i].copy()
                    p[..., top:top + window, left:left + window] = fill
                    patched.append(p)
                    spots.append((top, left))
            drops = np.concatenate([
                base_scores[i, targets[i]] - _scores(model, np.stack(patched[j:j + batch_size]),
                                                     device)[:, targets[i]]
                for j in range(0, len(patched), batch_size)])
            covered = np.zeros((h, w))
            for (top, left), drop in zip(spots, drops):
                maps[i, top:top + window, left:left + window] += drop
                covered[top:top + window, left:left + window] += 1
            maps[i] /= np.maximum(covered, 1)
    return maps
