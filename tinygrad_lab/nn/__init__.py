"""Layers that own parameters (Module) and their stateless maths (functional)."""

from tinygrad_lab.nn import functional, init
from tinygrad_lab.nn.layers import (
    GELU,
    Flatten,
    Identity,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from tinygrad_lab.nn.module import Module, Parameter

__all__ = [
    "GELU",
    "Flatten",
    "Identity",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "functional",
    "init",
]
