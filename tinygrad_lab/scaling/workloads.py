"""One training step of a sweep size in tinygrad_lab: the model from `tinygrad_lab.models`, Adam
(lr 1e-3) and synthetic batches of the right shape and dtype.

Real data is not needed to time a step or to count its bytes: a step costs the same on random
inputs. Inputs are N(0, 1) float32 images or vectors with uniform integer labels, or uniform
token ids for the Transformer (so the loss stays near log(classes) and never overflows).

    work = build("gpt", config, batch=16, context=64, device="cpu")
    work.step()   # forward, backward, Adam step, then reads the loss (a host sync)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_lab.nn.module import Module
from tinygrad_lab.optim import Adam
from tinygrad_lab.tensor import Tensor


@dataclass
class Workload:
    """A model, its optimizer, one batch already on the device, and the step that trains on it."""

    model: Module
    optimizer: Adam
    batch: tuple[Tensor, Tensor]
    loss_fn: Callable[[Module, Any], Tensor]
    input_shape: tuple[int, ...]  # one sample's input shape (no batch axis)
    input_dtype: str

    def step(self, loss_fn: Callable[[Module, Any], Tensor] | None = None) -> float:
        from tinygrad_lab.train import train_step

        out = train_step(self.model, self.batch, loss_fn or self.loss_fn, self.optimizer)
        return float(out.loss.item())


def synthetic_batch(family: str, config: dict[str, Any], batch: int, context: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) as NumPy arrays: float32 (B, 784) / (B, C, H, W), or int64 (B, T)
    token ids with the next-token targets."""
    rng = np.random.default_rng(seed)
    if family == "mlp":
        x = rng.standard_normal((batch, config["inputs"]), dtype=np.float32)  # (B, 784)
        return x, rng.integers(0, config["classes"], size=batch)
    if family == "cnn":
        side = config["image"]
        x = rng.standard_normal((batch, config["in_channels"], side, side), dtype=np.float32)
        return x, rng.integers(0, config["classes"], size=batch)  # x (B, C, H, W)
    if family == "gpt":
        ids = rng.integers(0, config["vocab_size"], size=(batch, context + 1))  # (B, T + 1)
        return ids[:, :-1], ids[:, 1:]
    raise ValueError(f"unknown family {family!r}")


def build_model(family: str, config: dict[str, Any]) -> Module:
    from tinygrad_lab import models

    if family == "mlp":
        return models.MLP(models.MLPConfig(**config))
    if family == "cnn":
        return models.CNN(models.CNNConfig(**config))
    if family == "gpt":
        return models.GPT(models.GPTConfig(**config))
    raise ValueError(f"unknown family {family!r}")


def _loss(model: Module, batch: Any) -> Tensor:
    from tinygrad_lab.nn import functional as F

    x, y = batch
    return F.cross_entropy(model(x), y)  # logits (B, classes) or (B, T, V)


def build(family: str, config: dict[str, Any], batch: int, context: int = 1,
          device: str = "cpu", seed: int = 0) -> Workload:
    """The model on `device`, Adam over its parameters and one synthetic batch moved there."""
    import tinygrad_lab as tl
    from tinygrad_lab.train import to_device

    tl.manual_seed(seed)
    model = build_model(family, config)
    if device != "cpu":
        model.to(device)
    x, y = synthetic_batch(family, config, batch, context, seed)
    moved = to_device((x, y), device)
    return Workload(model, Adam(model.parameters(), lr=1e-3), (moved[0], moved[1]), _loss,
                    tuple(x.shape[1:]), str(x.dtype))


__all__ = ["Workload", "build", "build_model", "synthetic_batch"]
