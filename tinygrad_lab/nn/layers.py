"""Basic layers: Linear, activations, Sequential, Flatten, Identity."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_lab.nn import init as initialisers  # `init` is also Linear's argument
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.ops.elementwise import check_activation
from tinygrad_lab.ops.linalg import Linear as _Linear
from tinygrad_lab.tensor import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None,
           activation: str | None = None) -> Tensor:
    """act(x @ weight + bias), x (..., I), weight (I, O), bias (O,): one fused node; activation
    None or a name in ops.elementwise.ACTIVATIONS."""
    check_activation(activation, "linear")
    if x.shape[-1:] != weight.shape[:1]:
        raise ValueError(
            f"linear: input shape {x.shape} does not fit weight shape {weight.shape} "
            f"(last input dim {x.shape[-1] if x.ndim else None} != {weight.shape[0]})"
        )
    if bias is not None and bias.shape != weight.shape[1:]:
        raise ValueError(f"linear: bias shape {bias.shape} != ({weight.shape[1]},)")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return _Linear.apply(*inputs, activation=activation)


class Linear(Module):
    """y = act(x @ weight + bias); weight is (in_features, out_features) as in Keras Dense.

    `init="glorot_uniform"` (Keras' default, the default here), "he_uniform", "he_normal" or
    "fan_in_uniform" (PyTorch's). The bias starts at zero, as in Keras. `activation`: None or a
    name in ops.elementwise.ACTIVATIONS, fused into the same node.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str | None = None, init: str = "glorot_uniform",
                 dtype: Any = np.float32) -> None:
        super().__init__()
        check_activation(activation, "Linear")
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        make = initialisers.get(init)
        self.weight = Parameter(make(in_features, out_features, (in_features, out_features), dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias, self.activation)

    def extra_repr(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}{act}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class GELU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.gelu()


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Softmax(Module):
    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(self.axis)


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """(B, ...) -> (B, prod(...))."""

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_dim)


class Sequential(Module):
    """Layers applied in order; `model[i]` and `len(model)` as in PyTorch."""

    def __init__(self, *layers: Module | Iterable[Module]) -> None:
        super().__init__()
        if len(layers) == 1 and not isinstance(layers[0], Module):
            layers = tuple(layers[0])  # type: ignore[assignment]
        self.layers: list[Module] = list(layers)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def append(self, layer: Module) -> None:
        self.layers.append(layer)
