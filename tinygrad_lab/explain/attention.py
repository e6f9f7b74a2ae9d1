"""The attention weights of every MultiHeadAttention in a model, for one forward pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.function import no_grad
from tinygrad_lab.nn.attention import MultiHeadAttention
from tinygrad_lab.nn.module import Module


def attention_maps(model: Module, *inputs: Any, **kw: Any) -> list[np.ndarray]:
    """Run `model(*inputs, **kw)` once without a graph, in eval mode, and return the attention
    weights (B, H, T, S) of each MultiHeadAttention it called, in call order (for the GPT:
    one per block, layer 0 first). Row t of head h says how much query position t draws on each
    key position; with a causal mask the upper triangle is 0."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not layers:
        raise ValueError(f"attention_maps: {type(model).__name__} has no MultiHeadAttention layer")
    maps: list[np.ndarray] = []

    def capture(module: MultiHeadAttention, args: tuple[Any, ...], output: Any) -> None:
        maps.append(module.attention_weights(*args[:4]).numpy())  # x, mask, causal, positions

    handles = [m.register_forward_hook(capture) for m in layers]
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            model(*inputs, **kw)
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in zip(model.modules(), modes):
            m.training = mode
    return maps
