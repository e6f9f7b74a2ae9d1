"""Memory prediction for one training step, before running it at full size:

    est = tl.memory.estimate(model, (784,), "adam", batch_size=128)
    est.bytes["activations"], est.total, est.saved_per_sample

- parameters, gradients, optimizer state: from the parameters' shapes (gradients = trainable
  parameters; Adam/AdamW 2 arrays per parameter, SGD with momentum 1, RMSprop 1 (+1 with
  momentum), Adagrad 1, SGD without momentum none);
- activations and temporaries: from each op's own saving rule, by running forward and backward
  on two tiny batches (2 and 4 samples) under a private ledger that records the live bytes after
  every allocation. Every such figure is affine in the batch size (a + b * B: the op's shapes
  scale with B), so the two probes give each moment's figures at any B, and the predicted peak
  is the largest moment, not a sum of per-category peaks.

The step predicted is `train.train_step`'s, in steady state: forward runs while the previous
step's gradients are still held (train_step clears them after forward), backward frees what
each node saved as it walks, then the optimizer updates in place. The batch (inputs and int64
labels) is counted as a temporary. The model is left as it was: gradients, RNG state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinygrad_lab import function, random
from tinygrad_lab.memory.ledger import ALL, CATEGORIES, Ledger
from tinygrad_lab.tensor import Tensor

_G, _A, _T = (CATEGORIES.index(c) for c in ("gradients", "activations", "temporaries"))
PROBE_BATCHES = (2, 4)


@dataclass
class Estimate:
    """Predicted bytes: `bytes` each category's own peak, `total` the peak of their sum (at one
    moment, so not the sum of `bytes`), `at_peak` the categories at that moment, `phase` where
    it falls ("forward", "backward" or "optimizer"). Per sample: `saved_per_sample` (bytes
    saved for backward, live at the end of forward) and `saved_by_op` (the same by op)."""

    bytes: dict[str, int]
    total: int
    at_peak: dict[str, int]
    phase: str
    batch_size: int
    saved_per_sample: float
    saved_by_op: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        cats = ", ".join(f"{c} {b:,}" for c, b in self.bytes.items())
        return f"Estimate(batch {self.batch_size}: peak {self.total:,} B in {self.phase}; {cats})"


def optimizer_state_bytes(optimizer: Any, params: Sequence[Tensor]) -> int:
    """Bytes of optimizer state for `params`: optimizer a name ("adam", "adamw", "sgd",
    "sgd-momentum", "rmsprop", "adagrad"), an Optimizer (its own parameters), a list of them,
    or None."""
    from tinygrad_lab import optim

    if optimizer is None:
        return 0
    if isinstance(optimizer, (list, tuple)):
        return sum(optimizer_state_bytes(o, params) for o in optimizer)
    trainable = sum(int(p.nbytes) for p in params if p.requires_grad)
    local = getattr(optimizer, "local_optimizer", None)
    if local is not None:  # ZeRO-1 (tinygrad_lab.distributed): this rank's slice only
        return optimizer_state_bytes(local, params)
    if isinstance(optimizer, str):
        per = {"adam": 2, "adamw": 2, "sgd": 0, "sgd-momentum": 1, "rmsprop": 1, "adagrad": 1}
        if optimizer.lower() not in per:
            raise ValueError(f"estimate: unknown optimizer {optimizer!r}; choose from "
                             f"{', '.join(per)} or pass an Optimizer")
        return per[optimizer.lower()] * trainable
    own = sum(int(p.nbytes) for p in optimizer.params)
    if isinstance(optimizer, optim.Adam):  # AdamW too
        return 2 * own
    if isinstance(optimizer, optim.SGD):
        return own if optimizer.momentum else 0
    if isinstance(optimizer, optim.RMSprop):
        return own * (1 + bool(optimizer.momentum) + bool(optimizer.centered))
    if isinstance(optimizer, optim.Adagrad):
        return own
    return sum(int(getattr(v, "nbytes", 0)) for p in optimizer.params  # another optimizer:
               for v in optimizer.init_state(p).values())  # ask it, one parameter at a time


def _default_loss(out: Tensor) -> tuple[Tensor, int]:
    """Cross-entropy against int64 labels of the logits' leading shape (what the batch holds)."""
    from tinygrad_lab.nn import functional as F

    labels = np.zeros(out.shape[:-1], dtype=np.int64)
    return F.cross_entropy(out, out._backend.asarray(labels)), int(labels.nbytes)


def _probe(model: Any, input_shape: tuple[int, ...], batch: int, dtype: np.dtype,
           loss: Callable[[Tensor], Any] | None) -> tuple[list[tuple[str, tuple[int, ...]]],
                                                          dict[str, int], int]:
    """One forward and backward at `batch` under a private ledger: (the timeline of live bytes
    by category, activation bytes by op at the end of forward, label bytes)."""
    params = model.parameters()
    device = params[0].device if params else "cpu"
    grads = [p.grad for p in params]
    rng = random.generator().bit_generator.state
    previous, ledger = function._memory, Ledger(timeline=True)
    function._memory = ledger
    try:
        for p in params:
            p.grad = None
            ledger.add(p.data, "parameters", p.device)
        ledger.events = []  # the timeline starts with the batch
        x = Tensor(np.zeros((batch, *input_shape), dtype=dtype), device=device)  # held, as a
        result = (loss or _default_loss)(model(x))  # training loop holds its batch
        value, label_bytes = result if isinstance(result, tuple) else (result, 0)
        by_op = dict(ledger.op_live)
        ledger.events.append(("forward", tuple(ledger.live[ALL])))
        ledger.phase = "backward"
        value.backward()
        del value, result
        ledger.events.append(("optimizer", tuple(ledger.live[ALL])))
        return ledger.events, by_op, label_bytes
    finally:
        function._memory = previous
        ledger.close()
        for p, g in zip(params, grads):
            p.grad = g
        random.generator().bit_generator.state = rng


def _by_phase(events: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
    """Each phase's largest moment, and the end: the fallback when the two probes' timelines
    differ in length (some allocation depended on the batch size)."""
    best: dict[str, tuple[int, ...]] = {}
    for phase, row in events:
        if phase not in best or sum(row) > sum(best[phase]):
            best[phase] = row
    return list(best.items())


def estimate(model: Any, input_shape: Sequence[int], optimizer: Any = None, batch_size: int = 1,
             dtype: Any = np.float32, loss: Callable[[Tensor], Any] | None = None,
             probe: tuple[int, int] = PROBE_BATCHES) -> Estimate:
    """Predict the bytes of one training step of `model` on batches of `batch_size` inputs of
    shape `input_shape` (one sample, no batch axis) and `dtype` (an integer dtype: token ids,
    zeros). `loss(outputs) -> loss` (or (loss, bytes the batch holds for its targets)) defaults
    to cross-entropy with int64 labels. See the module docstring for the method."""
    params = model.parameters()
    param_bytes = sum(int(p.nbytes) for p in params)
    grad_bytes = sum(int(p.nbytes) for p in params if p.requires_grad)
    state_bytes = optimizer_state_bytes(optimizer, params)
    b1, b2 = probe
    runs = [_probe(model, tuple(input_shape), b, np.dtype(dtype), loss) for b in (b1, b2)]
    (ev1, ops1, lab1), (ev2, ops2, lab2) = runs
    if len(ev1) != len(ev2) or any(p != q for (p, _), (q, _) in zip(ev1, ev2)):
        ev1, ev2 = _by_phase(ev1), _by_phase(ev2)
    t = (batch_size - b1) / (b2 - b1)

    def at(v1: float, v2: float) -> int:
        return max(0, round(v1 + (v2 - v1) * t))

    labels = at(lab1, lab2)
    best: tuple[int, str, list[int]] = (-1, "", [])
    peaks = [param_bytes, grad_bytes, state_bytes, 0, 0]
    for (phase, r1), (_, r2) in zip(ev1, ev2):
        row = [param_bytes, 0, state_bytes, at(r1[_A], r2[_A]), at(r1[_T], r2[_T]) + labels]
        # forward (and the update) run with a whole set of gradients alive; backward's grow
        row[_G] = grad_bytes if phase != "backward" else at(r1[_G], r2[_G])
        peaks = [max(p, v) for p, v in zip(peaks, row)]
        if sum(row) > best[0]:
            best = (sum(row), phase, row)
    span = b2 - b1
    return Estimate(
        bytes=dict(zip(CATEGORIES, peaks)), total=best[0],
        at_peak=dict(zip(CATEGORIES, best[2])), phase=best[1], batch_size=batch_size,
        saved_per_sample=(_forward_end(ev2)[_A] - _forward_end(ev1)[_A]) / span,
        saved_by_op={op: (ops2.get(op, 0) - ops1.get(op, 0)) / span for op in ops2})


def _forward_end(events: list[tuple[str, tuple[int, ...]]]) -> tuple[int, ...]:
    return [row for phase, row in events if phase == "forward"][-1]


__all__ = ["PROBE_BATCHES", "Estimate", "estimate", "optimizer_state_bytes"]
