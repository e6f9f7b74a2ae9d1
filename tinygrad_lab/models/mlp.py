"""The founding MNIST model: a multi-layer perceptron, 784 -> 512 ReLU -> 10.

`MLP` is the library module (logits out, Glorot-uniform weights like Keras Dense); `keras_mlp`
builds the same network through the Keras front, as the founding example writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinygrad_lab import nn


@dataclass
class MLPConfig:
    """Every size knob: input width, the hidden widths (one entry per hidden layer), classes."""

    inputs: int = 784
    hidden: tuple[int, ...] = (512,)
    classes: int = 10
    activation: str = "relu"  # any activation nn.Linear accepts

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        if self.inputs < 1 or self.classes < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"MLPConfig: sizes must be >= 1, got inputs={self.inputs}, "
                             f"hidden={self.hidden}, classes={self.classes}")


class MLP(nn.Sequential):
    """(B, inputs) -> (B, classes) logits: Linear + activation per hidden width, then Linear."""

    def __init__(self, config: MLPConfig | None = None) -> None:
        c = config or MLPConfig()
        layers, previous = [], c.inputs
        for width in c.hidden:
            layers.append(nn.Linear(previous, width, activation=c.activation))
            previous = width
        layers.append(nn.Linear(previous, c.classes))
        super().__init__(*layers)
        self.config = c


def keras_mlp(config: MLPConfig | None = None, lr: float = 1e-3) -> Any:
    """The founding Keras example: Sequential Dense layers, softmax output, compiled with Adam and
    sparse categorical cross-entropy, reporting accuracy."""
    from tinygrad_lab import keras

    c = config or MLPConfig()
    model = keras.Sequential([keras.Input((c.inputs,)),
                              *[keras.layers.Dense(w, activation=c.activation) for w in c.hidden],
                              keras.layers.Dense(c.classes, activation="softmax")])
    model.compile(keras.optimizers.Adam(learning_rate=lr), "sparse_categorical_crossentropy",
                  ["accuracy"])
    return model


__all__ = ["MLP", "MLPConfig", "keras_mlp"]
