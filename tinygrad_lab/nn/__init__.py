"""Layers that own parameters (Module) and their stateless maths (functional)."""

from tinygrad_lab.nn import functional, init
from tinygrad_lab.nn.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TransformerBlock,
)
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
from tinygrad_lab.nn.norm import LayerNorm, RMSNorm

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
__all__ += [
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
]

from tinygrad_lab.nn.conv import (  # noqa: E402
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    MaxPool2d,
)

__all__ += ["AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "MaxPool2d"]

from tinygrad_lab.nn.embedding import Embedding  # noqa: E402
from tinygrad_lab.nn.recurrent import GRU, LSTM, RNN  # noqa: E402

__all__ += ["GRU", "LSTM", "RNN", "Embedding"]
