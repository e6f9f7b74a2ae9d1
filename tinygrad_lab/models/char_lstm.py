"""A character-level LSTM language model (char-rnn): Embedding -> LSTM -> Linear to the vocabulary.

Shape letters: T time steps, B batch, E embedding size, H hidden size, V vocabulary.
Time-major like torch.nn.LSTM: ids (T, B) -> logits (T, B, V).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_lab import nn
from tinygrad_lab.function import no_grad
from tinygrad_lab.models.gpt import sample_logits
from tinygrad_lab.tensor import Tensor


@dataclass
class CharLSTMConfig:
    """Every size knob: vocabulary, embedding width, LSTM hidden width and depth."""

    vocab_size: int = 65
    embed: int = 64  # E
    hidden: int = 256  # H
    layers: int = 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"CharLSTMConfig: {name} must be >= 1, got {getattr(self, name)}")


class CharLSTM(nn.Module):
    """ids (T, B) -> logits (T, B, V), and the LSTM's final state (to continue from)."""

    def __init__(self, config: CharLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed)
        self.lstm = nn.LSTM(config.embed, config.hidden, num_layers=config.layers)
        self.head = nn.Linear(config.hidden, config.vocab_size, init="fan_in_uniform")

    def forward(self, ids: Any, state: Any = None) -> tuple[Tensor, Any]:
        x = self.embed(ids)  # (T, B, E)
        h, state = self.lstm(x, state)  # (T, B, H)
        return self.head(h), state  # (T, B, V)


def generate(model: CharLSTM, ids: np.ndarray, length: int, temperature: float = 1.0,
             top_k: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """`length` ids sampled after reading the prompt ids (P,), which set the state first."""
    if len(ids) == 0:
        raise ValueError("generate: the prompt must hold at least one id")
    if not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0, got {temperature}")
    rng = rng or np.random.default_rng()
    device = model.parameters()[0].device
    out: list[int] = []
    was_training = model.training
    model.eval()
    with no_grad():
        prompt = Tensor(np.asarray(ids, dtype=np.int64)[:, None], device=device)  # (P, 1)
        logits, state = model(prompt)  # (P, 1, V)
        for _ in range(length):
            out.append(sample_logits(logits[-1, 0].numpy(), temperature, top_k, rng))
            step = Tensor(np.array([[out[-1]]], dtype=np.int64), device=device)  # (1, 1)
            logits, state = model(step, state)  # (1, 1, V)
    model.train(was_training)
    return np.asarray(out, dtype=np.int64)


__all__ = ["CharLSTM", "CharLSTMConfig", "generate"]
